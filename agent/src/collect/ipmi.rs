//! `ipmi`: a BMC over RMCP+ LAN, or the host's own BMC in-band through
//! `/dev/ipmi0` (`interface = "open"`): every analog sensor of its SDR (converted
//! with the record's linearisation, with threshold status), sensor-specific
//! discrete states (power supply presence/failure, ...), and chassis power.
//!
//! One session per BMC, reused across polls; the SDR repository is read once
//! and re-read only when its change stamp moves. A BMC that hangs or answers
//! garbage costs only its own readings (marked `Unreadable`, with the reason).

use super::{Collector, Event, Poll, Quality, SensorFault, SeriesKey, Severity};
use crate::transport::ipmi::{BmcClient, IpmiError, LanConfig};
use firmware_shims::ipmi::lan::Privilege;
use firmware_shims::ipmi::sdr::{self, AnalogFormat, Record, Sensor, ThresholdStatus};
use firmware_shims::ipmi::sel::{self, SelEntry};
use hwprofiles::Quirk;
use serde::Deserialize;
use service::secret::Secret;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Name of the BMC's host in series (component prefix, label `bmc`).
    pub device: String,
    /// `lan` (RMCP+ to `target`) or `open` (in-band, through `path`).
    #[serde(default)]
    pub interface: Interface,
    /// `host:port` of the BMC (port 623 normally); `lan` only.
    #[serde(default)]
    pub target: String,
    /// The `ipmi_devintf` device; `open` only.
    #[serde(default = "default_path")]
    pub path: std::path::PathBuf,
    #[serde(default)]
    pub user: String,
    /// A secret: string, `{ file = ".." }` or `{ credential = ".." }`.
    #[serde(default = "no_password")]
    pub password: Secret,
    /// `user`, `operator` or `administrator`: the session's explicit privilege.
    #[serde(default = "default_privilege")]
    pub privilege: String,
    /// 3 (HMAC-SHA1, AES-128) or 17 (HMAC-SHA256, AES-128). Nothing weaker.
    #[serde(default = "default_suite")]
    pub cipher_suite: u8,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// On the first poll after start, SEL entries this recent are forwarded
    /// (what the agent may have missed while it was down).
    #[serde(default = "default_sel_lookback", with = "humantime_serde")]
    pub sel_lookback: Duration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Interface {
    #[default]
    Lan,
    Open,
}

const fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_path() -> std::path::PathBuf {
    "/dev/ipmi0".into()
}
fn no_password() -> Secret {
    Secret::default_value("")
}

fn default_privilege() -> String {
    "user".into()
}
const fn default_suite() -> u8 {
    3
}
const fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
const fn default_sel_lookback() -> Duration {
    Duration::from_secs(24 * 3600)
}
const fn default_retries() -> u32 {
    2
}

impl Config {
    fn privilege(&self) -> Result<Privilege, String> {
        match self.privilege.as_str() {
            "user" => Ok(Privilege::User),
            "operator" => Ok(Privilege::Operator),
            "administrator" | "admin" => Ok(Privilege::Administrator),
            other => Err(format!(
                "ipmi: privilege {other:?} is not user, operator or administrator"
            )),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.interface == Interface::Open {
            if !self.target.is_empty()
                || !self.user.is_empty()
                || !self.password.expose().is_empty()
            {
                return Err(
                    "ipmi: interface \"open\" is in-band: target, user and password do not apply"
                        .into(),
                );
            }
            return self.validate_device();
        }
        if self.target.is_empty() || self.user.is_empty() {
            return Err("ipmi: interface \"lan\" needs target and user".into());
        }
        self.privilege()?;
        firmware_shims::ipmi::lan::CipherSuite::from_id(self.cipher_suite)
            .map_err(|e| format!("ipmi: {e}"))?;
        if self.password.expose().len() > 20 || self.user.len() > 16 {
            return Err("ipmi: user name over 16 or password over 20 characters".into());
        }
        self.validate_device()
    }

    fn validate_device(&self) -> Result<(), String> {
        if self.device.is_empty() || self.device.contains('/') {
            return Err(format!(
                "ipmi: device name {:?} must be non-empty without '/'",
                self.device
            ));
        }
        Ok(())
    }
}

pub struct IpmiCollector {
    cfg: Config,
    client: Option<BmcClient>,
    sdr: Option<((u32, u32), Vec<Sensor>)>,
    known: BTreeSet<SeriesKey>,
    /// (erase stamp, last SEL record id seen); `None` until the first poll.
    sel: Option<(u32, u16)>,
    /// SEL events read but not yet handed out by `poll`.
    events: Vec<Event>,
    /// The host's hwprofile, when it maps IPMI sensors to components.
    profile: Option<hwprofiles::Profile>,
    /// Profile sensors the BMC does not have (reported as faults, not fatal).
    mismatches: Vec<String>,
    /// The host profile's quirks (whether or not it maps sensors).
    quirks: Vec<Quirk>,
}

/// (metric, unit, component) the profile gives an SDR sensor name.
fn mapped(profile: Option<&hwprofiles::Profile>, name: &str) -> Option<(String, String, String)> {
    profile?.sensors.iter().find_map(|p| match &p.source {
        Some(hwprofiles::Source::Ipmi { sensor }) if sensor == name => Some((
            p.metric.clone(),
            p.unit.as_str().to_owned(),
            p.component.clone(),
        )),
        _ => None,
    })
}

/// Whether a sensor carries an analog value: threshold sensors do; a
/// discrete sensor with analog conversion factors does only on BMCs with
/// [`Quirk::IpmiDiscreteReading`].
fn has_analog_reading(s: &Sensor, quirks: &[Quirk]) -> bool {
    s.is_threshold()
        || (quirks.contains(&Quirk::IpmiDiscreteReading)
            && s.format != AnalogFormat::None
            && s.m != 0)
}

/// The value of an analog reading. A reading the BMC flags unavailable, or
/// whose sensor scanning is disabled, is `Unreadable` (IPMI 2.0 §35.14:
/// software must ignore it), unless the profile says this BMC sets that bit
/// wrongly ([`Quirk::IpmiIgnoreScanningDisabled`]).
fn analog_value(s: &Sensor, r: &sdr::Reading, quirks: &[Quirk]) -> (f64, Quality) {
    let scanning = r.scanning_enabled || quirks.contains(&Quirk::IpmiIgnoreScanningDisabled);
    match (r.unavailable || !scanning, s.convert(r.raw)) {
        (false, Some(v)) => (v, Quality::Ok),
        _ => (f64::NAN, Quality::Unreadable),
    }
}

/// A SEL entry as an event, on the component of the sensor that logged it
/// (the profile's name for it when it maps that sensor).
fn sel_event(
    device: &str,
    sensors: &[Sensor],
    profile: Option<&hwprofiles::Profile>,
    entry: &SelEntry,
) -> Event {
    let sensor = sensors
        .iter()
        .find(|s| s.number == entry.sensor_number && u16::from(s.owner) == entry.generator & 0xff);
    let component = match sensor {
        Some(s) => mapped(profile, &s.name).map_or_else(
            || format!("{device}/{}", s.name),
            |(_, _, component)| component,
        ),
        None => format!("{device}/sensor {}", entry.sensor_number),
    };
    let mut attributes: BTreeMap<String, String> = [
        ("bmc", device.to_owned()),
        ("record_id", entry.record_id.to_string()),
        ("sensor_number", entry.sensor_number.to_string()),
        ("sensor_type", format!("0x{:02x}", entry.sensor_type)),
        ("event_type", format!("0x{:02x}", entry.event_type)),
        ("offset", entry.offset.to_string()),
        (
            "event_data",
            format!(
                "{:02x}{:02x}{:02x}",
                entry.data[0], entry.data[1], entry.data[2]
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if entry.unix_ms().is_none() {
        attributes.insert("bmc_timestamp".into(), entry.timestamp.to_string());
    }
    Event {
        device_time_ms: entry.unix_ms(),
        source: "ipmi-sel",
        component,
        severity: match entry.severity() {
            sel::Severity::Info => Severity::Info,
            sel::Severity::Warning => Severity::Warning,
            sel::Severity::Critical => Severity::Critical,
        },
        description: match sensor {
            Some(s) => format!("{}: {}", s.name, entry.describe()),
            None => entry.describe(),
        },
        attributes,
    }
}

/// Canonical metric and unit of an IPMI base unit code (IPMI 2.0 Table 43-15).
fn unit(code: u8) -> (&'static str, &'static str) {
    match code {
        1 => ("temperature_celsius", "celsius"),
        4 => ("voltage_volts", "volts"),
        5 => ("current_amps", "amps"),
        6 => ("power_watts", "watts"),
        18 => ("fan_speed_rpm", "rpm"),
        _ => ("sensor_value", "unspecified"),
    }
}

fn key(device: &str, metric: &str, unit: &str, s: &Sensor) -> SeriesKey {
    SeriesKey {
        metric: metric.to_owned(),
        component: format!("{device}/{}", s.name),
        unit: unit.to_owned(),
        labels: [
            ("bmc".to_owned(), device.to_owned()),
            ("sensor_number".to_owned(), s.number.to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

impl IpmiCollector {
    /// `profile`: the host's hwprofile; its `ipmi` sources name the
    /// components and metrics of the BMC's sensors.
    pub fn new(cfg: Config, profile: Option<hwprofiles::Profile>) -> IpmiCollector {
        let quirks = profile
            .as_ref()
            .map(|p| p.quirks.clone())
            .unwrap_or_default();
        let profile = profile.filter(|p| {
            p.sensors
                .iter()
                .any(|s| matches!(s.source, Some(hwprofiles::Source::Ipmi { .. })))
        });
        IpmiCollector {
            cfg,
            client: None,
            sdr: None,
            known: BTreeSet::new(),
            sel: None,
            events: Vec::new(),
            profile,
            mismatches: Vec::new(),
            quirks,
        }
    }

    async fn read(&mut self) -> Result<Vec<(SeriesKey, f64, Quality)>, String> {
        let device = self.cfg.device.clone();
        if self.client.is_none() && self.cfg.interface == Interface::Open {
            self.client =
                Some(BmcClient::open(&self.cfg.path, self.cfg.timeout).map_err(|e| e.to_string())?);
        }
        if self.client.is_none() {
            let addr = tokio::net::lookup_host(&self.cfg.target)
                .await
                .map_err(|e| format!("target {:?}: {e}", self.cfg.target))?
                .next()
                .ok_or_else(|| format!("target {:?} resolves to nothing", self.cfg.target))?;
            let lan = LanConfig {
                user: self.cfg.user.clone(),
                password: self.cfg.password.expose().to_owned(),
                privilege: self.cfg.privilege()?,
                cipher_suite: self.cfg.cipher_suite,
                timeout: self.cfg.timeout,
                retries: self.cfg.retries,
            };
            self.client = Some(BmcClient::lan(addr, lan).await.map_err(|e| e.to_string())?);
        }
        let client = self.client.as_mut().expect("set above");
        let e = |e: IpmiError| e.to_string();
        let stamp = client.sdr_stamp().await.map_err(e)?;
        if self.sdr.as_ref().is_none_or(|(s, _)| *s != stamp) {
            let sensors: Vec<Sensor> = client
                .sdr_repository()
                .await
                .map_err(e)?
                .into_iter()
                .filter_map(|r| match r {
                    Record::Full(s) | Record::Compact(s) => Some(s),
                    _ => None,
                })
                .collect();
            if let Some(p) = &self.profile {
                let names: BTreeSet<&str> =
                    sensors.iter().map(|s: &Sensor| s.name.as_str()).collect();
                self.mismatches = p
                    .sensors
                    .iter()
                    .filter_map(|ps| match &ps.source {
                        Some(hwprofiles::Source::Ipmi { sensor })
                            if !names.contains(sensor.as_str()) =>
                        {
                            Some(format!(
                                "hwprofile {}: sensor {} ({sensor:?}) is not on the BMC",
                                p.id, ps.id
                            ))
                        }
                        _ => None,
                    })
                    .collect();
            }
            self.sdr = Some((stamp, sensors));
        }
        let sensors = &self.sdr.as_ref().expect("read above").1;
        let mut out = Vec::new();
        for s in sensors {
            let analog = has_analog_reading(s, &self.quirks);
            let series = || match mapped(self.profile.as_ref(), &s.name) {
                Some((m, u, component)) => {
                    let mut k = key(&device, &m, &u, s);
                    k.component = component;
                    k
                }
                None => {
                    let (m, u) = unit(s.base_unit);
                    key(&device, m, u, s)
                }
            };
            let r = match client.sensor_reading(s.number).await {
                Ok(r) => r,
                // One sensor that cannot be read (completion code) is that sensor's problem.
                Err(IpmiError::Completion { .. }) => {
                    if analog {
                        out.push((series(), f64::NAN, Quality::Unreadable));
                    }
                    continue;
                }
                Err(other) => return Err(other.to_string()),
            };
            if analog {
                let (v, q) = analog_value(s, &r, &self.quirks);
                out.push((series(), v, q));
            }
            if s.is_threshold() {
                let status = match r.threshold_status() {
                    ThresholdStatus::Ok => 0.0,
                    ThresholdStatus::NonCritical => 1.0,
                    ThresholdStatus::Critical => 2.0,
                    ThresholdStatus::NonRecoverable => 3.0,
                };
                out.push((
                    key(&device, "sensor_threshold_status", "level", s),
                    status,
                    Quality::Ok,
                ));
            } else if s.sensor_type == 0x08 && s.event_reading_type == 0x6f {
                // Power supply, sensor-specific offsets: 0 presence, 1 failure, 2 predictive failure.
                let bits = r.states_lo;
                out.push((
                    key(&device, "psu_present", "bool", s),
                    f64::from(bits & 1),
                    Quality::Ok,
                ));
                out.push((
                    key(&device, "psu_failed", "bool", s),
                    f64::from((bits >> 1) & 1),
                    Quality::Ok,
                ));
                out.push((
                    key(&device, "psu_predictive_failure", "bool", s),
                    f64::from((bits >> 2) & 1),
                    Quality::Ok,
                ));
            } else {
                out.push((
                    key(&device, "sensor_discrete_state", "bits", s),
                    f64::from(u16::from(r.states_lo) | (u16::from(r.states_hi) << 8)),
                    Quality::Ok,
                ));
            }
        }
        // New SEL entries: forwarded as events (and logged), counted as a
        // series. Record ids only grow until the SEL is cleared, which moves
        // its erase stamp: then every entry is new again.
        let info = client.sel_info().await.map_err(e)?;
        if self.sel.is_some_and(|(erase, _)| erase != info.last_erase) {
            self.sel = Some((info.last_erase, 0));
        }
        let after = self.sel.map_or(0, |(_, after)| after);
        let entries = client.sel_entries(after).await.map_err(e)?;
        // First poll since start: forward only what happened within the
        // lookback (what a restart may have missed), measured on the BMC's
        // own SEL clock, which may count from BMC start rather than 1970.
        // The coordinator stores an event once however often it is sent.
        let since = match self.sel {
            Some(_) => None,
            None if entries.is_empty() => None,
            None => {
                let now = client.sel_time().await.map_err(e)?;
                let back = u32::try_from(self.cfg.sel_lookback.as_secs()).unwrap_or(u32::MAX);
                Some(now.saturating_sub(back).max(1))
            }
        };
        let mut new = 0u32;
        for entry in &entries {
            if since.is_some_and(|since| entry.timestamp < since) {
                continue;
            }
            new += 1;
            tracing::warn!(bmc = %device, record = entry.record_id, "SEL: {}", entry.describe());
            self.events
                .push(sel_event(&device, sensors, self.profile.as_ref(), entry));
        }
        let last = entries.last().map_or(after, |l| l.record_id);
        self.sel = Some((info.last_erase, last));
        out.push((
            SeriesKey {
                metric: "sel_new_entries".into(),
                component: format!("{device}/sel"),
                unit: "count".into(),
                labels: [("bmc".to_owned(), device.clone())].into_iter().collect(),
            },
            f64::from(new),
            Quality::Ok,
        ));
        let on = client.power_on().await.map_err(e)?;
        out.push((
            SeriesKey {
                metric: "chassis_power_on".into(),
                component: format!("{}/chassis", self.cfg.device),
                unit: "bool".into(),
                labels: [("bmc".to_owned(), self.cfg.device.clone())]
                    .into_iter()
                    .collect(),
            },
            f64::from(u8::from(on)),
            Quality::Ok,
        ));
        Ok(out)
    }
}

impl Collector for IpmiCollector {
    fn name(&self) -> &'static str {
        "ipmi"
    }

    async fn poll(&mut self, _ts_ms: i64) -> Poll {
        let mut poll = Poll::default();
        match self.read().await {
            Ok(values) => {
                for (series, value, quality) in values {
                    poll.push_known(&mut self.known, series, value, quality);
                }
                for m in &self.mismatches {
                    poll.faults.push(SensorFault {
                        sensor: self.cfg.device.clone(),
                        reason: m.clone(),
                    });
                }
            }
            Err(reason) => {
                let sensor = format!("{} ({})", self.cfg.device, self.cfg.target);
                poll.device_failed(&self.known, sensor, reason);
            }
        }
        // Events read before a later command failed are still handed out.
        poll.events = std::mem::take(&mut self.events);
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Config {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn in_band_and_lan_configs_are_validated() {
        let open = parse("device = \"bmc\"\ninterface = \"open\"\n");
        assert_eq!(open.path, std::path::Path::new("/dev/ipmi0"));
        open.validate().unwrap();
        let e = parse("device = \"bmc\"\ninterface = \"open\"\ntarget = \"10.0.0.1:623\"\n")
            .validate()
            .unwrap_err();
        assert!(e.contains("in-band"), "{e}");
        let lan =
            "device = \"bmc\"\ntarget = \"10.0.0.1:623\"\nuser = \"admin\"\npassword = \"x\"\n";
        parse(lan).validate().unwrap();
        let e = parse("device = \"bmc\"\ntarget = \"10.0.0.1:623\"\n")
            .validate()
            .unwrap_err();
        assert!(e.contains("needs target and user"), "{e}");
        let e = parse(&format!("{lan}cipher_suite = 0\n"))
            .validate()
            .unwrap_err();
        assert!(e.contains("cipher suite"), "{e}");
        assert!(toml::from_str::<Config>("device = \"bmc\"\ninterface = \"kcs\"\n").is_err());
    }

    fn sensor(event_reading_type: u8, format: AnalogFormat) -> Sensor {
        Sensor {
            record_id: 1,
            owner: 0x20,
            lun: 0,
            number: 3,
            entity_id: 29,
            entity_instance: 1,
            sensor_type: 0x04,
            event_reading_type,
            base_unit: 18,
            format,
            linearization: 0,
            m: 100,
            b: 0,
            b_exp: 0,
            r_exp: 0,
            thresholds: sdr::Thresholds::default(),
            name: "Fan 1".into(),
        }
    }

    fn reading(raw: u8, scanning_enabled: bool, unavailable: bool) -> sdr::Reading {
        sdr::Reading {
            raw,
            scanning_enabled,
            unavailable,
            states_lo: 0,
            states_hi: 0,
        }
    }

    #[test]
    fn scanning_disabled_readings_are_unreadable_unless_the_profile_says_otherwise() {
        let s = sensor(0x01, AnalogFormat::Unsigned);
        assert_eq!(
            analog_value(&s, &reading(54, true, false), &[]),
            (5400.0, Quality::Ok)
        );
        let (v, q) = analog_value(&s, &reading(54, false, false), &[]);
        assert!(v.is_nan() && q == Quality::Unreadable);
        let dell = [Quirk::IpmiIgnoreScanningDisabled];
        assert_eq!(
            analog_value(&s, &reading(54, false, false), &dell),
            (5400.0, Quality::Ok)
        );
        // "Reading unavailable" is honoured even with the quirk.
        let (v, q) = analog_value(&s, &reading(54, true, true), &dell);
        assert!(v.is_nan() && q == Quality::Unreadable);
    }

    #[test]
    fn discrete_sensors_with_analog_factors_are_read_only_with_the_quirk() {
        let discrete = sensor(0x07, AnalogFormat::Unsigned);
        assert!(!has_analog_reading(&discrete, &[]));
        let hp = [Quirk::IpmiDiscreteReading];
        assert!(has_analog_reading(&discrete, &hp));
        assert_eq!(
            analog_value(&discrete, &reading(30, true, false), &hp),
            (3000.0, Quality::Ok)
        );
        // Without analog data format or factors there is nothing to convert.
        assert!(!has_analog_reading(&sensor(0x07, AnalogFormat::None), &hp));
        assert!(!has_analog_reading(&Sensor { m: 0, ..discrete }, &hp));
        assert!(has_analog_reading(
            &sensor(0x01, AnalogFormat::Unsigned),
            &[]
        ));
    }

    #[tokio::test]
    async fn a_missing_ipmi_device_costs_only_its_own_readings() {
        let mut c = IpmiCollector::new(
            parse("device = \"bmc\"\ninterface = \"open\"\npath = \"/nonexistent/ipmi0\"\n"),
            None,
        );
        let p = c.poll(0).await;
        assert!(p.readings.iter().all(|r| r.quality == Quality::Unreadable));
        assert!(
            p.faults
                .iter()
                .any(|f| f.reason.contains("/nonexistent/ipmi0")),
            "{:?}",
            p.faults
        );
    }
}
