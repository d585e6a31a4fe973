//! `snmp`: a switch or PDU over SNMP v2c: IF-MIB port state, error/discard
//! counters and octet rates, and ENTITY-SENSOR-MIB sensors (temperatures,
//! fans, voltages, currents, power) with their scale and precision.
//!
//! Transport: `transport::snmp`; table decoding and counter rates:
//! `firmware_shims::snmp::mib`. An unreachable or broken device costs only
//! its own readings: every series it reported before is marked
//! `Unreadable`, with the reason as a fault.

use super::{Collector, Poll, Quality, SensorFault, SeriesKey};
/// `[collector.v3]`, shared with the coordinator's switch executor.
pub use crate::transport::snmp::V3Config;
use crate::transport::snmp::{ClientConfig, SnmpClient, SnmpError};
use firmware_shims::snmp::ber::Oid;
use firmware_shims::snmp::mib::{self, CounterRate, SensorKind, SensorStatus, Table};
use firmware_shims::snmp::Value;
use serde::Deserialize;
use service::secret::Secret;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Name of the device in series (label `device`, component prefix).
    pub device: String,
    /// `host:port` of its SNMP agent.
    pub target: String,
    /// v2c community: a string, `{ file = ".." }` or `{ credential = ".." }`.
    #[serde(default = "default_community")]
    pub community: Secret,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_max_repetitions")]
    pub max_repetitions: u32,
    /// SNMPv3 USM instead of `community`.
    #[serde(default)]
    pub v3: Option<V3Config>,
    /// The device's hwprofile: its `snmp` sources are read on every poll,
    /// named by the profile; ones the device lacks are reported as faults.
    #[serde(default)]
    pub hwprofile: Option<String>,
    #[serde(default = "default_profiles_dir")]
    pub hwprofiles_dir: std::path::PathBuf,
}

fn default_profiles_dir() -> std::path::PathBuf {
    crate::config::DEFAULT_HWPROFILES_DIR.into()
}

const fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_community() -> Secret {
    Secret::default_value("public")
}
const fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
const fn default_retries() -> u32 {
    2
}
const fn default_max_repetitions() -> u32 {
    25
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.device.is_empty() || self.device.contains('/') {
            return Err(format!(
                "snmp: device name {:?} must be non-empty without '/'",
                self.device
            ));
        }
        if let Some(v3) = &self.v3 {
            v3.user()?;
        }
        self.profile()?;
        self.addr().map(|_| ())
    }

    /// The device profile, if one is configured.
    pub fn profile(&self) -> Result<Option<hwprofiles::Profile>, String> {
        let Some(id) = &self.hwprofile else {
            return Ok(None);
        };
        let p = crate::config::find_profile(id, &self.hwprofiles_dir)
            .map_err(|e| format!("snmp: {e}"))?;
        if !p
            .sensors
            .iter()
            .any(|s| matches!(s.source, Some(hwprofiles::Source::Snmp { .. })))
        {
            return Err(format!("snmp: hwprofile {id} has no snmp sources"));
        }
        Ok(Some(p))
    }

    fn addr(&self) -> Result<std::net::SocketAddr, String> {
        use std::net::ToSocketAddrs;
        self.target
            .to_socket_addrs()
            .map_err(|e| format!("snmp: target {:?}: {e}", self.target))?
            .next()
            .ok_or_else(|| format!("snmp: target {:?} resolves to nothing", self.target))
    }
}

pub struct SnmpCollector {
    cfg: Config,
    client: Option<SnmpClient>,
    rates: HashMap<(String, &'static str), CounterRate>,
    /// Every series reported, to mark unreadable when the device fails.
    known: BTreeSet<SeriesKey>,
    /// (sensor, OID, decimals) of the device profile's snmp sources.
    profiled: Vec<(hwprofiles::Sensor, Oid, u8)>,
}

const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";

impl SnmpCollector {
    pub fn new(cfg: Config) -> SnmpCollector {
        // Validation already loaded it once; a failure here is reported by validate().
        let profiled = cfg
            .profile()
            .ok()
            .flatten()
            .map(|p| {
                p.sensors
                    .into_iter()
                    .filter_map(|s| match &s.source {
                        Some(hwprofiles::Source::Snmp { oid, decimals }) => {
                            let o = oid.parse().ok()?;
                            let d = *decimals;
                            Some((s, o, d))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        SnmpCollector {
            cfg,
            client: None,
            rates: HashMap::new(),
            known: BTreeSet::new(),
            profiled,
        }
    }

    async fn client(&mut self) -> Result<&mut SnmpClient, String> {
        if self.client.is_none() {
            let addr = self.cfg.addr()?;
            let c = SnmpClient::new(
                addr,
                ClientConfig {
                    community: self.cfg.community.expose().to_owned(),
                    timeout: self.cfg.timeout,
                    retries: self.cfg.retries,
                    max_repetitions: self.cfg.max_repetitions,
                    v3: self.cfg.v3.as_ref().map(V3Config::user).transpose()?,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("set above"))
    }

    async fn read(&mut self) -> Result<Snapshot, String> {
        let c = self.client().await?;
        let e = |x: SnmpError| x.to_string();
        let uptime = match c.get(&[oid(SYS_UPTIME)]).await.map_err(e)?.remove(0).1 {
            Value::TimeTicks(t) => u64::from(t),
            other => return Err(format!("sysUpTime.0 is {other:?}")),
        };
        let mut tables = Vec::new();
        for entry in [mib::IF_ENTRY, mib::IFX_ENTRY, mib::ENT_SENSOR_ENTRY] {
            let walk = c.walk(&oid(entry)).await.map_err(e)?;
            tables.push(Table::from_walk(&oid(entry), &walk));
        }
        // Only the name and description columns of the (large) entPhysicalTable.
        let phys = oid(mib::ENT_PHYSICAL_ENTRY);
        let mut names = Table::default();
        if !tables[2].0.is_empty() {
            for col in [7, 2] {
                let walk = c.walk(&phys.child(&[col])).await.map_err(e)?;
                names.merge(Table::from_walk(&phys, &walk));
            }
        }
        let mut profiled = Vec::new();
        let oids: Vec<Oid> = self.profiled.iter().map(|(_, o, _)| o.clone()).collect();
        let c = self.client.as_mut().expect("connected above");
        for chunk in oids.chunks(16) {
            profiled.extend(
                c.get(chunk)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|(_, v)| v),
            );
        }
        Ok(Snapshot {
            profiled,
            uptime,
            interfaces: mib::interfaces(&tables[0], &tables[1]),
            sensors: mib::sensors(&tables[2], &names),
        })
    }

    fn key(
        &self,
        metric: &str,
        component: &str,
        unit: &str,
        extra: &[(&str, String)],
    ) -> SeriesKey {
        let mut labels: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        labels.insert("device".into(), self.cfg.device.clone());
        SeriesKey {
            metric: metric.to_owned(),
            component: format!("{}/{component}", self.cfg.device),
            unit: unit.to_owned(),
            labels,
        }
    }
}

/// (metric, (value, width in bits), unit) of one interface counter.
type CounterColumn = (&'static str, Option<(u64, u32)>, &'static str);

struct Snapshot {
    /// Values of the profile's OIDs, in `SnmpCollector::profiled` order.
    profiled: Vec<Value>,
    uptime: u64,
    interfaces: Vec<mib::Interface>,
    sensors: Vec<mib::Sensor>,
}

fn oid(s: &str) -> Oid {
    s.parse().expect("valid OID literal")
}

impl Collector for SnmpCollector {
    fn name(&self) -> &'static str {
        "snmp"
    }

    async fn poll(&mut self, ts_ms: i64) -> Poll {
        let mut poll = Poll::default();
        let snap = match self.read().await {
            Ok(s) => s,
            Err(reason) => {
                let sensor = format!("{} ({})", self.cfg.device, self.cfg.target);
                poll.device_failed(&self.known, sensor, reason);
                return poll;
            }
        };
        for i in &snap.interfaces {
            let port = format!("port:{}", i.name);
            let idx = [("ifindex", i.index.to_string())];
            for (metric, v) in [("if_admin_up", i.admin_up), ("if_oper_up", i.oper_up)] {
                if let Some(v) = v {
                    let k = self.key(metric, &port, "bool", &idx);
                    poll.push_known(&mut self.known, k, f64::from(u8::from(v)), Quality::Ok);
                }
            }
            let counters: [CounterColumn; 6] = [
                ("if_in_errors", i.in_errors.map(|v| (v, 32)), "errors"),
                ("if_out_errors", i.out_errors.map(|v| (v, 32)), "errors"),
                ("if_in_discards", i.in_discards.map(|v| (v, 32)), "packets"),
                (
                    "if_out_discards",
                    i.out_discards.map(|v| (v, 32)),
                    "packets",
                ),
                ("if_in_octets", i.in_octets, "bytes"),
                ("if_out_octets", i.out_octets, "bytes"),
            ];
            for (metric, v, unit) in counters {
                let Some((value, bits)) = v else { continue };
                #[allow(clippy::cast_precision_loss)]
                let total = value as f64;
                let k = self.key(&format!("{metric}_total"), &port, unit, &idx);
                poll.push_known(&mut self.known, k, total, Quality::Ok);
                let rate = self
                    .rates
                    .entry((port.clone(), metric))
                    .or_default()
                    .update(value, bits, snap.uptime, ts_ms);
                if let Some(r) = rate {
                    let k = self.key(
                        &format!("{metric}_per_second"),
                        &port,
                        &format!("{unit}/s"),
                        &idx,
                    );
                    poll.push_known(&mut self.known, k, r, Quality::Ok);
                }
            }
        }
        for s in &snap.sensors {
            let (metric, unit) = s.kind.metric();
            let component = format!("sensor:{}", s.name);
            let idx = [("entity", s.index.to_string())];
            let (value, quality) = match s.status {
                SensorStatus::Ok => (s.value, Quality::Ok),
                _ => (f64::NAN, Quality::Unreadable),
            };
            let k = self.key(metric, &component, unit, &idx);
            poll.push_known(&mut self.known, k, value, quality);
            let k = self.key("sensor_status_ok", &component, "bool", &idx);
            poll.push_known(
                &mut self.known,
                k,
                f64::from(u8::from(s.status == SensorStatus::Ok)),
                Quality::Ok,
            );
            if s.status != SensorStatus::Ok && s.kind == SensorKind::Rpm {
                poll.faults.push(SensorFault {
                    sensor: format!("{}/{component}", self.cfg.device),
                    reason: format!("fan sensor {:?}", s.status),
                });
            }
        }
        // The device profile's own sensors, named as the profile says.
        let profiled = std::mem::take(&mut self.profiled);
        for ((sensor, oid, decimals), value) in profiled.iter().zip(&snap.profiled) {
            let k = self.key(
                &sensor.metric,
                &sensor.component,
                sensor.unit.as_str(),
                &[("profile_sensor", sensor.id.clone())],
            );
            match value.as_f64() {
                Some(v) => poll.push_known(
                    &mut self.known,
                    k,
                    v / 10f64.powi(i32::from(*decimals)),
                    Quality::Ok,
                ),
                None => {
                    poll.push_known(&mut self.known, k, f64::NAN, Quality::Unreadable);
                    poll.faults.push(SensorFault {
                        sensor: format!("{}/{}", self.cfg.device, sensor.component),
                        reason: format!(
                            "hwprofile sensor {} ({oid}) is not on the device: {value:?}",
                            sensor.id
                        ),
                    });
                }
            }
        }
        self.profiled = profiled;
        poll
    }
}
