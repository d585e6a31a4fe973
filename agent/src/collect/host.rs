//! `host`: CPU, memory and load from sysinfo; network throughput from
//! `/proc/net/dev` (every interface but loopback, as rates between polls);
//! used and total bytes of configured filesystems (statvfs); plus every
//! Linux hwmon sensor (temperatures, fans, voltages, currents, power) under
//! a configurable root. CPU, memory, network and storage are the inputs of
//! the coordinator's resource-demand forecast.

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
    /// `/proc/net/dev` (a fixture file in tests).
    #[serde(default = "default_net_dev")]
    pub net_dev: PathBuf,
    /// Mount points whose usage is reported.
    #[serde(default = "default_filesystems")]
    pub filesystems: Vec<PathBuf>,
}

const fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_hwmon_root() -> PathBuf {
    PathBuf::from("/sys/class/hwmon")
}
fn default_net_dev() -> PathBuf {
    PathBuf::from("/proc/net/dev")
}
fn default_filesystems() -> Vec<PathBuf> {
    vec![PathBuf::from("/")]
}

pub struct HostCollector {
    cfg: Config,
    sys: sysinfo::System,
    /// The previous poll's network counters: (time ms, per interface
    /// (received, transmitted) bytes).
    net: Option<(i64, NetCounters)>,
}

impl HostCollector {
    pub fn new(cfg: Config) -> HostCollector {
        let mut sys = sysinfo::System::new();
        sys.refresh_cpu_usage();
        HostCollector {
            cfg,
            sys,
            net: None,
        }
    }
}

type NetCounters = std::collections::BTreeMap<String, (u64, u64)>;

/// Received and transmitted byte counters per interface from
/// `/proc/net/dev` text, loopback left out. Malformed lines are skipped.
fn parse_net_dev(text: &str) -> NetCounters {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes ...
            (name != "lo" && f.len() >= 16).then(|| (name.to_owned(), (f[0], f[8])))
        })
        .collect()
}

/// Bytes per second received and transmitted between two samples of the
/// counters, over interfaces present in both. An interface whose counter
/// went backwards (reset, re-created) is left out of that interval.
fn net_rates(prev: &NetCounters, now: &NetCounters, dt_s: f64) -> (f64, f64) {
    let (mut rx, mut tx) = (0u64, 0u64);
    for (name, (r, t)) in now {
        if let Some((pr, pt)) = prev.get(name) {
            if r >= pr && t >= pt {
                rx += r - pr;
                tx += t - pt;
            }
        }
    }
    #[allow(clippy::cast_precision_loss)]
    (rx as f64 / dt_s, tx as f64 / dt_s)
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

    async fn poll(&mut self, ts_ms: i64) -> Poll {
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
        match std::fs::read_to_string(&self.cfg.net_dev) {
            Ok(text) => {
                let now = parse_net_dev(&text);
                if let Some((t0, prev)) = &self.net {
                    #[allow(clippy::cast_precision_loss)]
                    let dt = (ts_ms - t0) as f64 / 1000.0;
                    if dt > 0.0 {
                        let (rx, tx) = net_rates(prev, &now, dt);
                        poll.readings.push(h(
                            "host_network_receive_bytes_per_second",
                            "bytes_per_second",
                            rx,
                        ));
                        poll.readings.push(h(
                            "host_network_transmit_bytes_per_second",
                            "bytes_per_second",
                            tx,
                        ));
                    }
                }
                self.net = Some((ts_ms, now));
            }
            Err(e) => poll.faults.push(SensorFault {
                sensor: self.cfg.net_dev.display().to_string(),
                reason: e.to_string(),
            }),
        }
        for fs in &self.cfg.filesystems {
            let mount = fs.display().to_string();
            let series =
                |m: &str| std::sync::Arc::new(key(m, "HOST", "bytes", &[("mount", &mount)]));
            match rustix::fs::statvfs(fs) {
                Ok(st) => {
                    let frsize = st.f_frsize;
                    #[allow(clippy::cast_precision_loss)]
                    let (size, used) = (
                        (st.f_blocks.saturating_mul(frsize)) as f64,
                        (st.f_blocks
                            .saturating_sub(st.f_bfree)
                            .saturating_mul(frsize)) as f64,
                    );
                    for (m, v) in [
                        ("host_filesystem_size_bytes", size),
                        ("host_filesystem_used_bytes", used),
                    ] {
                        poll.readings.push(Reading {
                            series: series(m),
                            value: v,
                            quality: Quality::Ok,
                        });
                    }
                }
                Err(e) => {
                    poll.faults.push(SensorFault {
                        sensor: mount.clone(),
                        reason: e.to_string(),
                    });
                    for m in ["host_filesystem_size_bytes", "host_filesystem_used_bytes"] {
                        poll.readings.push(Reading {
                            series: series(m),
                            value: f64::NAN,
                            quality: Quality::Unreadable,
                        });
                    }
                }
            }
        }
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

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 9000000   100    0    0    0     0          0         0  9000000   100    0    0    0     0       0          0
  eth0: 1000000    10    0    0    0     0          0         0   500000     5    0    0    0     0       0          0
  eth1:    2000     1    0    0    0     0          0         0     3000     1    0    0    0     0       0          0
 bogus: not numbers
";

    #[test]
    fn net_dev_is_parsed_without_loopback_and_rates_survive_counter_resets() {
        let a = parse_net_dev(NET_DEV);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a["eth0"], (1_000_000, 500_000));
        let mut b = a.clone();
        b.insert("eth0".into(), (3_000_000, 1_500_000));
        b.insert("eth1".into(), (0, 0)); // reset: left out of this interval
        b.insert("eth2".into(), (5, 5)); // new: no previous counter
        assert_eq!(net_rates(&a, &b, 2.0), (1_000_000.0, 500_000.0));
        assert!(parse_net_dev("garbage").is_empty());
    }

    #[tokio::test]
    async fn host_stats_are_present() {
        let dir = tempfile::tempdir().unwrap();
        let net_dev = dir.path().join("net_dev");
        std::fs::write(&net_dev, NET_DEV).unwrap();
        let mut c = HostCollector::new(Config {
            interval: Duration::from_secs(1),
            hwmon_root: "/nonexistent".into(),
            net_dev: net_dev.clone(),
            filesystems: vec![dir.path().to_owned(), "/nonexistent-mount".into()],
        });
        let poll = c.poll(1_000).await;
        let get = |p: &Poll, m: &str| {
            p.readings
                .iter()
                .filter(|r| r.series.metric == m)
                .map(|r| r.value)
                .collect::<Vec<f64>>()
        };
        assert!(get(&poll, "host_memory_total_bytes")[0] > 0.0);
        assert!(
            get(&poll, "host_network_receive_bytes_per_second").is_empty(),
            "a rate needs two polls"
        );
        let size = get(&poll, "host_filesystem_size_bytes");
        assert!(size[0] > 0.0 && size[1].is_nan(), "{size:?}");
        assert!(get(&poll, "host_filesystem_used_bytes")[0] <= size[0]);
        assert_eq!(poll.faults.len(), 1, "the missing mount: {:?}", poll.faults);
        std::fs::write(&net_dev, NET_DEV.replace("1000000", "1100000")).unwrap();
        let next = c.poll(11_000).await;
        assert_eq!(
            get(&next, "host_network_receive_bytes_per_second"),
            [10_000.0]
        );
        assert_eq!(get(&next, "host_network_transmit_bytes_per_second"), [0.0]);
    }
}
