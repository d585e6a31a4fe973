//! `host`: CPU, memory and load from sysinfo, plus every Linux hwmon sensor
//! (temperatures, fans, voltages, currents, power) under a configurable root.

use super::{Collector, Poll, Quality, Reading, SensorFault, SeriesKey};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Root of the hwmon class directory (a fixture directory in tests).
    #[serde(default = "default_hwmon_root")]
    pub hwmon_root: PathBuf,
}

const fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_hwmon_root() -> PathBuf {
    PathBuf::from("/sys/class/hwmon")
}

pub struct HostCollector {
    cfg: Config,
    sys: sysinfo::System,
}

impl HostCollector {
    pub fn new(cfg: Config) -> HostCollector {
        let mut sys = sysinfo::System::new();
        sys.refresh_cpu_usage();
        HostCollector { cfg, sys }
    }
}

fn key(metric: &str, component: &str, unit: &str, labels: &[(&str, &str)]) -> SeriesKey {
    SeriesKey {
        metric: metric.to_owned(),
        component: component.to_owned(),
        unit: unit.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// hwmon attribute prefix → (metric, unit, divisor to SI-ish units).
const HWMON: &[(&str, &str, &str, f64)] = &[
    ("temp", "hwmon_temperature_celsius", "celsius", 1000.0),
    ("fan", "hwmon_fan_speed_rpm", "rpm", 1.0),
    ("in", "hwmon_voltage_volts", "volts", 1000.0),
    ("curr", "hwmon_current_amps", "amps", 1000.0),
    ("power", "hwmon_power_watts", "watts", 1_000_000.0),
];

/// Read every `<type><n>_input` of every hwmon device under `root`.
pub fn read_hwmon(root: &Path) -> Poll {
    let mut poll = Poll::default();
    let Ok(devices) = std::fs::read_dir(root) else {
        return poll;
    };
    let mut devices: Vec<PathBuf> = devices.filter_map(|e| e.ok().map(|e| e.path())).collect();
    devices.sort();
    for dev in devices {
        let dev_name = dev
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("hwmon")
            .to_owned();
        let chip = std::fs::read_to_string(dev.join("name"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| dev_name.clone());
        let Ok(files) = std::fs::read_dir(&dev) else {
            continue;
        };
        let mut inputs: Vec<String> = files
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with("_input"))
            .collect();
        inputs.sort();
        for file in inputs {
            let attr = file.trim_end_matches("_input");
            let Some(&(_, metric, unit, div)) = HWMON.iter().find(|(p, ..)| {
                attr.strip_prefix(p)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            }) else {
                continue;
            };
            let label = std::fs::read_to_string(dev.join(format!("{attr}_label")))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| attr.to_owned());
            let component = format!("{chip}/{label}");
            let series = key(
                metric,
                &component,
                unit,
                &[("chip", &chip), ("sensor", attr), ("hwmon", &dev_name)],
            )
            .into();
            match std::fs::read_to_string(dev.join(&file)).map(|s| s.trim().parse::<f64>()) {
                Ok(Ok(raw)) => poll.readings.push(Reading {
                    series,
                    value: raw / div,
                    quality: Quality::Ok,
                }),
                Ok(Err(e)) => {
                    poll.faults.push(SensorFault {
                        sensor: format!("{dev_name}/{file}"),
                        reason: format!("not a number: {e}"),
                    });
                    poll.readings.push(Reading {
                        series,
                        value: f64::NAN,
                        quality: Quality::Unreadable,
                    });
                }
                Err(e) => {
                    // e.g. EIO/ENODATA from a sensor the driver cannot read right now
                    poll.faults.push(SensorFault {
                        sensor: format!("{dev_name}/{file}"),
                        reason: e.to_string(),
                    });
                    poll.readings.push(Reading {
                        series,
                        value: f64::NAN,
                        quality: Quality::Unreadable,
                    });
                }
            }
        }
    }
    poll
}

impl Collector for HostCollector {
    fn name(&self) -> &'static str {
        "host"
    }

    async fn poll(&mut self, _ts_ms: i64) -> Poll {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        let mut poll = read_hwmon(&self.cfg.hwmon_root);
        let load = sysinfo::System::load_average();
        let h = |m: &str, u: &str, v: f64| Reading {
            series: key(m, "HOST", u, &[]).into(),
            value: v,
            quality: Quality::Ok,
        };
        poll.readings.push(h(
            "host_cpu_usage_percent",
            "percent",
            f64::from(self.sys.global_cpu_usage()),
        ));
        #[allow(clippy::cast_precision_loss)]
        {
            poll.readings.push(h(
                "host_memory_used_bytes",
                "bytes",
                self.sys.used_memory() as f64,
            ));
            poll.readings.push(h(
                "host_memory_total_bytes",
                "bytes",
                self.sys.total_memory() as f64,
            ));
        }
        poll.readings.push(h("host_load1", "ratio", load.one));
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwmon_fixture_is_read_with_units_labels_and_faults() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("hwmon0");
        std::fs::create_dir_all(&dev).unwrap();
        for (f, v) in [
            ("name", "nct6775"),
            ("temp1_input", "45000"),
            ("temp1_label", "CPUTIN"),
            ("fan2_input", "1234"),
            ("in0_input", "12100"),
            ("power1_input", "256000000"),
            ("curr1_input", "garbage"),
            ("temp1_max", "90000"),
        ] {
            std::fs::write(dev.join(f), v).unwrap();
        }
        let poll = read_hwmon(dir.path());
        let get = |m: &str| poll.readings.iter().find(|r| r.series.metric == m).unwrap();
        assert_eq!(get("hwmon_temperature_celsius").value, 45.0);
        assert_eq!(
            get("hwmon_temperature_celsius").series.component,
            "nct6775/CPUTIN"
        );
        assert_eq!(get("hwmon_fan_speed_rpm").value, 1234.0);
        assert_eq!(get("hwmon_voltage_volts").value, 12.1);
        assert_eq!(get("hwmon_power_watts").value, 256.0);
        let bad = get("hwmon_current_amps");
        assert_eq!(bad.quality, Quality::Unreadable);
        assert_eq!(poll.faults.len(), 1);
        assert_eq!(poll.readings.len(), 5, "temp1_max is not an input");
    }

    #[test]
    fn missing_hwmon_root_is_empty_not_an_error() {
        assert_eq!(read_hwmon(Path::new("/nonexistent/hwmon")), Poll::default());
    }

    #[tokio::test]
    async fn host_stats_are_present() {
        let mut c = HostCollector::new(Config {
            interval: Duration::from_secs(1),
            hwmon_root: "/nonexistent".into(),
        });
        let poll = c.poll(0).await;
        let total = poll
            .readings
            .iter()
            .find(|r| r.series.metric == "host_memory_total_bytes")
            .unwrap();
        assert!(total.value > 0.0);
    }
}
