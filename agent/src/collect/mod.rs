//! Collectors: a closed family behind one trait, registered in one tagged enum.
//!
//! Each protocol is one file. [`CollectorConfig`] is the only registration
//! point (`protocol = "..."` in `[[collector]]`), and [`AnyCollector`] the only
//! dispatch: adding a protocol means adding a variant to both, and the
//! compiler finds every `match` to extend.
//!
//! Collectors never fail a whole poll for one bad sensor: a [`Poll`] carries
//! readings *and* per-sensor faults; unreadable sensors are reported as
//! readings with [`Quality::Unreadable`] so the gap is visible downstream.

pub mod host;
pub mod i2c;
pub mod ipmi;
pub mod sim;
pub mod smart;
pub mod snmp;

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Identity of a series as the agent knows it (the catalog maps it to a compact id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub metric: String,
    pub component: String,
    pub unit: String,
    pub labels: BTreeMap<String, String>,
}

/// Trustworthiness of a reading (mirrors `umbra.telemetry.v1.Quality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Ok,
    Nan,
    Stale,
    Unreadable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Shared: a collector that keeps its keys hands out a reference per
    /// poll instead of copying strings and label maps.
    pub series: Arc<SeriesKey>,
    pub value: f64,
    pub quality: Quality,
}

/// A sensor that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorFault {
    pub sensor: String,
    pub reason: String,
}

/// How much an [`Event`] matters (mirrors `umbra.telemetry.v1.Severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// Something a device logged (a BMC SEL entry, ...), forwarded in the
/// poll's batch: spooled and delivered like its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The device's own time for it, when it has an absolute one.
    pub device_time_ms: Option<i64>,
    /// e.g. `ipmi-sel`.
    pub source: &'static str,
    pub component: String,
    pub severity: Severity,
    pub description: String,
    pub attributes: BTreeMap<String, String>,
}

/// A field-replaceable part a collector found on the device (a disk with
/// its model, serial and firmware, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The same id its series use as component (`disk:wwn-0x5000...`).
    pub id: String,
    pub kind: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    /// As the device reports it; 0 = unknown.
    pub power_on_hours: u64,
}

/// Result of one poll: partial success is the normal case.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Poll {
    pub readings: Vec<Reading>,
    pub faults: Vec<SensorFault>,
    pub events: Vec<Event>,
    /// Components seen in this poll (every poll: the pipeline sends only changes).
    pub components: Vec<Component>,
}

impl Poll {
    /// Every series in `series` as a gap (NaN) of the given quality.
    pub fn gap<'a>(&mut self, series: impl IntoIterator<Item = &'a SeriesKey>, quality: Quality) {
        self.readings.extend(series.into_iter().map(|s| Reading {
            series: Arc::new(s.clone()),
            value: f64::NAN,
            quality,
        }));
    }

    /// A reading of a series the collector remembers in `known`, so that
    /// [`Poll::device_failed`] can mark it unreadable when the device goes.
    pub fn push_known(
        &mut self,
        known: &mut BTreeSet<SeriesKey>,
        series: SeriesKey,
        value: f64,
        quality: Quality,
    ) {
        known.insert(series.clone());
        self.readings.push(Reading {
            series: series.into(),
            value,
            quality,
        });
    }

    /// A device that could not be read: every series it reported before
    /// becomes `Unreadable`, and the reason a fault.
    pub fn device_failed<'a>(
        &mut self,
        known: impl IntoIterator<Item = &'a SeriesKey>,
        sensor: String,
        reason: String,
    ) {
        self.gap(known, Quality::Unreadable);
        self.faults.push(SensorFault { sensor, reason });
    }
}

/// One source of readings, polled on a schedule.
pub trait Collector: Send {
    /// Name for logs, e.g. `sim` or `host`.
    fn name(&self) -> &'static str;
    /// Poll every sensor once; `ts_ms` is the scheduled tick time.
    fn poll(&mut self, ts_ms: i64) -> impl Future<Output = Poll> + Send;
}

/// `[[collector]]` entries, tagged by `protocol`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum CollectorConfig {
    /// Host statistics (sysinfo) and Linux hwmon sensors.
    Host(host::Config),
    /// Replays a hardware profile with scripted degradation (demo and tests).
    Sim(sim::Config),
    /// Disk health through `smartctl --json`.
    Smart(smart::Config),
    /// A switch or PDU over SNMP v2c/v3 (IF-MIB, ENTITY-SENSOR-MIB).
    Snmp(snmp::Config),
    /// Chips on I2C/SMBus via Linux i2c-dev (PMBus, ADXL345, TMP75, MAX31790).
    I2c(i2c::Config),
    /// A BMC over IPMI 2.0 RMCP+ LAN.
    Ipmi(ipmi::Config),
}

impl CollectorConfig {
    pub fn interval(&self) -> Duration {
        match self {
            CollectorConfig::Host(c) => c.interval,
            CollectorConfig::Sim(c) => c.interval,
            CollectorConfig::Smart(c) => c.interval,
            CollectorConfig::Snmp(c) => c.interval,
            CollectorConfig::I2c(c) => c.interval,
            CollectorConfig::Ipmi(c) => c.interval,
        }
    }

    /// Per-poll deadline: a hung device costs one tick, never the agent.
    pub fn timeout(&self) -> Duration {
        match self {
            // Many disks, each with its own deadline: the poll may use its interval.
            CollectorConfig::Smart(c) => c.interval,
            _ => self.interval().min(Duration::from_secs(10)),
        }
    }

    /// The device label of its metrics: the configured `device`, or
    /// `local` for collectors of the host's own hardware.
    pub fn device(&self) -> String {
        match self {
            CollectorConfig::Snmp(c) => c.device.clone(),
            CollectorConfig::Ipmi(c) => c.device.clone(),
            _ => "local".into(),
        }
    }

    /// A password or community written into the config itself.
    pub fn has_inline_secret(&self) -> bool {
        match self {
            CollectorConfig::Snmp(c) => {
                c.community.is_inline()
                    || c.v3.as_ref().is_some_and(|v| {
                        v.auth_password.is_inline()
                            || v.privacy_password.as_ref().is_some_and(|p| p.is_inline())
                    })
            }
            CollectorConfig::Ipmi(c) => c.password.is_inline(),
            _ => false,
        }
    }

    pub fn validate(&self, profile: &hwprofiles::Profile) -> Result<(), String> {
        if self.interval() < Duration::from_millis(10) {
            return Err(format!(
                "collector interval {:?} is below 10ms",
                self.interval()
            ));
        }
        match self {
            CollectorConfig::Host(_) => Ok(()),
            CollectorConfig::Sim(c) => c.validate(profile),
            CollectorConfig::Smart(c) => c.validate(),
            CollectorConfig::Snmp(c) => c.validate(),
            CollectorConfig::I2c(c) => c.validate(profile),
            CollectorConfig::Ipmi(c) => c.validate(),
        }
    }

    /// Build the collector. The only construction site.
    pub fn build(&self, host_id: &str, profile: &hwprofiles::Profile) -> AnyCollector {
        match self {
            CollectorConfig::Host(c) => {
                AnyCollector::Host(Box::new(host::HostCollector::new(c.clone())))
            }
            CollectorConfig::Sim(c) => {
                AnyCollector::Sim(sim::SimCollector::new(c.clone(), host_id, profile))
            }
            CollectorConfig::Smart(c) => AnyCollector::Smart(smart::SmartCollector::with_profile(
                c.clone(),
                Some(profile),
            )),
            CollectorConfig::Snmp(c) => {
                AnyCollector::Snmp(Box::new(snmp::SnmpCollector::new(c.clone())))
            }
            CollectorConfig::I2c(c) => {
                AnyCollector::I2c(i2c::I2cCollector::with_profile(c.clone(), profile))
            }
            CollectorConfig::Ipmi(c) => AnyCollector::Ipmi(Box::new(ipmi::IpmiCollector::new(
                c.clone(),
                Some(profile.clone()),
            ))),
        }
    }
}

/// Static dispatch over the family.
pub enum AnyCollector {
    /// Boxed: sysinfo's `System` is large.
    Host(Box<host::HostCollector>),
    Sim(sim::SimCollector),
    Smart(smart::SmartCollector),
    Snmp(Box<snmp::SnmpCollector>),
    I2c(i2c::I2cCollector),
    Ipmi(Box<ipmi::IpmiCollector>),
}

impl std::fmt::Debug for AnyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Collector for AnyCollector {
    fn name(&self) -> &'static str {
        match self {
            AnyCollector::Host(c) => c.name(),
            AnyCollector::Sim(c) => c.name(),
            AnyCollector::Smart(c) => c.name(),
            AnyCollector::Snmp(c) => c.name(),
            AnyCollector::I2c(c) => c.name(),
            AnyCollector::Ipmi(c) => c.name(),
        }
    }

    async fn poll(&mut self, ts_ms: i64) -> Poll {
        match self {
            AnyCollector::Host(c) => c.poll(ts_ms).await,
            AnyCollector::Sim(c) => c.poll(ts_ms).await,
            AnyCollector::Smart(c) => c.poll(ts_ms).await,
            AnyCollector::Snmp(c) => c.poll(ts_ms).await,
            AnyCollector::I2c(c) => c.poll(ts_ms).await,
            AnyCollector::Ipmi(c) => c.poll(ts_ms).await,
        }
    }
}
