//! `smart`: disk health from `smartctl --json` (smartmontools ≥ 7).
//!
//! Transport only: runs smartctl per device with `--nocheck=standby` (a
//! sleeping disk is not spun up: its series are reported `Stale`), under a
//! per-device timeout, one device at a time. Decoding is
//! `firmware_shims::smart`. Series are keyed by the disk's WWN / EUI-64 /
//! model+serial, never by `/dev/sdX`, so a disk keeps its history across
//! reboots and re-enumeration. A device that fails costs only its own
//! readings (marked `Unreadable`, with the reason as a fault).

use super::{Collector, Component, Poll, Quality, Reading, SensorFault, SeriesKey};
use firmware_shims::smart::{self, Outcome, Report};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The smartctl binary.
    #[serde(default = "default_smartctl")]
    pub smartctl: PathBuf,
    /// Devices to read (`/dev/sda`, or `/dev/sda:sat` to pass a `-d` type).
    /// Empty: discover with `smartctl --scan-open` on every poll.
    #[serde(default)]
    pub devices: Vec<String>,
    /// ATA attribute ids reported (raw and normalised).
    #[serde(default = "default_attributes")]
    pub ata_attributes: Vec<u8>,
    /// Per-device deadline for one smartctl run.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

const fn default_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_smartctl() -> PathBuf {
    PathBuf::from("smartctl")
}
/// Reallocated sectors, power-on hours, reported uncorrectable, command
/// timeouts, temperature, pending and offline-uncorrectable sectors, UDMA
/// CRC errors: the attributes with predictive value in published fleet data.
fn default_attributes() -> Vec<u8> {
    vec![5, 9, 187, 188, 194, 197, 198, 199]
}
const fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("smart: timeout must be positive".into());
        }
        for d in &self.devices {
            if !d.starts_with('/') {
                return Err(format!("smart: device {d:?} is not an absolute path"));
            }
        }
        Ok(())
    }
}

/// A profile's name for an ATA attribute's raw value.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub attribute: u8,
    /// Profile sensor id (for mismatch reports).
    pub sensor: String,
    pub metric: String,
    pub unit: String,
}

/// The `smart` sources of a host profile.
/// The first sensor naming an attribute wins (disks are found at run time,
/// so a profile names an attribute once for all of them).
pub fn mapped_attributes(profile: &hwprofiles::Profile) -> Vec<Mapped> {
    let mut out: Vec<Mapped> = Vec::new();
    for s in &profile.sensors {
        if let Some(hwprofiles::Source::Smart { attribute }) = s.source {
            if !out.iter().any(|m| m.attribute == attribute) {
                out.push(Mapped {
                    attribute,
                    sensor: s.id.clone(),
                    metric: s.metric.clone(),
                    unit: s.unit.as_str().to_owned(),
                });
            }
        }
    }
    out
}

pub struct SmartCollector {
    cfg: Config,
    /// Attributes the host profile names (read even if not configured).
    mapped: Vec<Mapped>,
    profile_id: String,
    /// Series last reported per device path, to mark them stale/unreadable
    /// when the device sleeps or fails.
    last: BTreeMap<String, Vec<SeriesKey>>,
}

impl SmartCollector {
    pub fn new(cfg: Config) -> SmartCollector {
        SmartCollector::with_profile(cfg, None)
    }

    /// `profile`: the host's hwprofile; its `smart` sources name attributes'
    /// raw values (metric and unit), and are reported when a disk lacks them.
    pub fn with_profile(mut cfg: Config, profile: Option<&hwprofiles::Profile>) -> SmartCollector {
        let mapped = profile.map(mapped_attributes).unwrap_or_default();
        for m in &mapped {
            if !cfg.ata_attributes.contains(&m.attribute) {
                cfg.ata_attributes.push(m.attribute);
            }
        }
        SmartCollector {
            cfg,
            mapped,
            profile_id: profile.map(|p| p.id.clone()).unwrap_or_default(),
            last: BTreeMap::new(),
        }
    }

    async fn smartctl(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let mut cmd = tokio::process::Command::new(&self.cfg.smartctl);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(self.cfg.timeout, cmd.output()).await {
            Err(_) => Err(format!("smartctl timed out after {:?}", self.cfg.timeout)),
            Ok(Err(e)) => Err(format!("running {}: {e}", self.cfg.smartctl.display())),
            // A non-zero exit status is information (bit field), not failure:
            // the JSON says what happened.
            Ok(Ok(out)) => Ok(out.stdout),
        }
    }

    async fn devices(&self, poll: &mut Poll) -> Vec<(String, Option<String>)> {
        if !self.cfg.devices.is_empty() {
            return self
                .cfg
                .devices
                .iter()
                .map(|d| match d.split_once(':') {
                    Some((path, kind)) => (path.to_owned(), Some(kind.to_owned())),
                    None => (d.clone(), None),
                })
                .collect();
        }
        let scanned = self
            .smartctl(&["--json", "--scan-open"])
            .await
            .and_then(|out| smart::parse_scan(&out).map_err(|e| e.to_string()));
        match scanned {
            Ok(devs) => devs.into_iter().map(|d| (d.name, Some(d.kind))).collect(),
            Err(reason) => {
                poll.faults.push(SensorFault {
                    sensor: "smartctl --scan-open".into(),
                    reason,
                });
                Vec::new()
            }
        }
    }
}

impl Collector for SmartCollector {
    fn name(&self) -> &'static str {
        "smart"
    }

    async fn poll(&mut self, _ts_ms: i64) -> Poll {
        let mut poll = Poll::default();
        for (device, kind) in self.devices(&mut poll).await {
            let mut args = vec!["--json", "--all", "--nocheck=standby"];
            if let Some(k) = kind.as_deref().filter(|k| !k.is_empty()) {
                args.extend(["--device", k]);
            }
            args.push(&device);
            let outcome = self
                .smartctl(&args)
                .await
                .and_then(|out| smart::parse(&out).map_err(|e| e.to_string()));
            match outcome {
                Ok(Outcome::Report(r)) => {
                    match readings(&r, &self.cfg.ata_attributes, &self.mapped) {
                        Some(rs) => {
                            if r.protocol == smart::Protocol::Ata {
                                for m in &self.mapped {
                                    if !r.ata_attributes.iter().any(|a| a.id == m.attribute) {
                                        poll.faults.push(SensorFault {
                                        sensor: device.clone(),
                                        reason: format!(
                                            "hwprofile {}: sensor {} (SMART attribute {}) is not reported by this disk",
                                            self.profile_id, m.sensor, m.attribute
                                        ),
                                    });
                                    }
                                }
                            }
                            poll.components.extend(component(&r));
                            self.last
                                .insert(device, rs.iter().map(|r| (*r.series).clone()).collect());
                            poll.readings.extend(rs);
                        }
                        None => poll.faults.push(SensorFault {
                            sensor: device,
                            reason:
                                "no stable identity (no WWN, EUI-64 or model+serial): not reported"
                                    .into(),
                        }),
                    }
                }
                Ok(Outcome::Standby { mode, .. }) => {
                    tracing::debug!(%device, %mode, "disk asleep: not woken");
                    poll.gap(self.last.get(&device).into_iter().flatten(), Quality::Stale);
                }
                Err(reason) => {
                    poll.device_failed(
                        self.last.get(&device).into_iter().flatten(),
                        device,
                        reason,
                    );
                }
            }
        }
        poll
    }
}

/// The disk as an inventory component (same id as its series).
pub fn component(r: &Report) -> Option<Component> {
    let id = r.identity.component_id()?;
    let text = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_owned();
    Some(Component {
        id,
        kind: match r.protocol {
            smart::Protocol::Nvme => "nvme",
            _ => "disk",
        }
        .into(),
        model: text(&r.identity.model),
        serial: text(&r.identity.serial),
        firmware: text(&r.identity.firmware),
        power_on_hours: r.power_on_hours.unwrap_or(0),
    })
}

/// The series of one report; `None` without a stable component id.
/// Attributes in `mapped` have their raw value under the profile's metric
/// and unit instead of `smart_attribute_raw`.
pub fn readings(r: &Report, attributes: &[u8], mapped: &[Mapped]) -> Option<Vec<Reading>> {
    let component = r.identity.component_id()?;
    let mut out = Vec::new();
    let mut push = |metric: &str, unit: &str, labels: &[(&str, String)], value: f64| {
        out.push(Reading {
            series: std::sync::Arc::new(SeriesKey {
                metric: metric.to_owned(),
                component: component.clone(),
                unit: unit.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            }),
            value,
            quality: Quality::Ok,
        });
    };
    #[allow(clippy::cast_precision_loss)]
    let f = |v: u64| v as f64;
    push("smart_exit_status", "bits", &[], f64::from(r.exit.0));
    if let Some(p) = r.smart_passed {
        push("smart_health_passed", "bool", &[], f64::from(u8::from(p)));
    }
    if let Some(h) = r.power_on_hours {
        push("disk_power_on_hours", "hours", &[], f(h));
    }
    if let Some(c) = r.power_cycles {
        push("disk_power_cycles", "count", &[], f(c));
    }
    if let Some(t) = r.temperature_c {
        push("disk_temperature_celsius", "celsius", &[], t);
    }
    if let Some(n) = r.error_log_count {
        push("smart_error_log_entries", "count", &[], f(n));
    }
    for a in r
        .ata_attributes
        .iter()
        .filter(|a| attributes.contains(&a.id))
    {
        let id = [("id", a.id.to_string())];
        match mapped.iter().find(|m| m.attribute == a.id) {
            Some(m) => push(&m.metric, &m.unit, &id, f(a.raw)),
            None => push("smart_attribute_raw", "raw", &id, f(a.raw)),
        }
        push(
            "smart_attribute_normalized",
            "normalized",
            &id,
            f64::from(a.value),
        );
        push(
            "smart_attribute_threshold",
            "normalized",
            &id,
            f64::from(a.thresh),
        );
    }
    if let Some(n) = &r.nvme {
        push(
            "nvme_critical_warning",
            "bits",
            &[],
            f64::from(n.critical_warning),
        );
        push(
            "nvme_available_spare_percent",
            "percent",
            &[],
            f64::from(n.available_spare),
        );
        push(
            "nvme_available_spare_threshold_percent",
            "percent",
            &[],
            f64::from(n.available_spare_threshold),
        );
        push(
            "nvme_percentage_used",
            "percent",
            &[],
            f64::from(n.percentage_used),
        );
        push("nvme_media_errors", "count", &[], f(n.media_errors));
        push("nvme_unsafe_shutdowns", "count", &[], f(n.unsafe_shutdowns));
        push(
            "nvme_data_units_written",
            "count",
            &[],
            f(n.data_units_written),
        );
    }
    if let Some(s) = r.self_test {
        push("smart_selftest_failed", "count", &[], f(s.failed));
        if let Some(p) = s.last_passed {
            push(
                "smart_selftest_last_passed",
                "bool",
                &[],
                f64::from(u8::from(p)),
            );
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
