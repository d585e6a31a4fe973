//! Standard MIB tables, from walk results to typed rows: IF-MIB interfaces
//! (RFC 2863) and ENTITY-SENSOR-MIB sensors (RFC 3433), plus counter rates
//! that survive 32-bit wrap and agent restarts. Vendor tables come from
//! hwprofiles.

use super::ber::Oid;
use super::Value;
use std::collections::BTreeMap;

/// Walk results of one table: column number → (row index suffix → value).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Table(pub BTreeMap<u32, BTreeMap<Vec<u32>, Value>>);

impl Table {
    /// Group `walk` (OIDs under `entry`, i.e. `<entry>.<column>.<index...>`).
    pub fn from_walk(entry: &Oid, walk: &[(Oid, Value)]) -> Table {
        let mut t = Table::default();
        for (oid, v) in walk {
            if let Some([col, index @ ..]) = oid.0.strip_prefix(entry.0.as_slice()) {
                if !index.is_empty() {
                    t.0.entry(*col)
                        .or_default()
                        .insert(index.to_vec(), v.clone());
                }
            }
        }
        t
    }

    pub fn merge(&mut self, other: Table) {
        for (c, rows) in other.0 {
            self.0.entry(c).or_default().extend(rows);
        }
    }

    fn get(&self, col: u32, index: &[u32]) -> Option<&Value> {
        self.0.get(&col)?.get(index)
    }

    fn int(&self, col: u32, index: &[u32]) -> Option<i64> {
        match self.get(col, index)? {
            Value::Integer(v) => Some(*v),
            Value::Gauge32(v) | Value::Counter32(v) => Some(i64::from(*v)),
            _ => None,
        }
    }

    fn counter(&self, col: u32, index: &[u32]) -> Option<u64> {
        match self.get(col, index)? {
            Value::Counter32(v) => Some(u64::from(*v)),
            Value::Counter64(v) => Some(*v),
            _ => None,
        }
    }

    fn text(&self, col: u32, index: &[u32]) -> Option<String> {
        match self.get(col, index)? {
            Value::OctetString(b) => {
                let s = String::from_utf8_lossy(b).trim().to_owned();
                (!s.is_empty()).then_some(s)
            }
            _ => None,
        }
    }

    fn indices(&self, col: u32) -> impl Iterator<Item = &Vec<u32>> {
        self.0.get(&col).into_iter().flat_map(BTreeMap::keys)
    }
}

/// `ifEntry` (1.3.6.1.2.1.2.2.1) and `ifXEntry` (1.3.6.1.2.1.31.1.1.1).
pub const IF_ENTRY: &str = "1.3.6.1.2.1.2.2.1";
pub const IFX_ENTRY: &str = "1.3.6.1.2.1.31.1.1.1";

/// One interface's state and counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interface {
    pub index: u32,
    /// ifName, else ifDescr, else `if<index>`.
    pub name: String,
    pub admin_up: Option<bool>,
    pub oper_up: Option<bool>,
    pub in_errors: Option<u64>,
    pub out_errors: Option<u64>,
    pub in_discards: Option<u64>,
    pub out_discards: Option<u64>,
    /// (value, counter width in bits): ifHCInOctets (64) when present, else ifInOctets (32).
    pub in_octets: Option<(u64, u32)>,
    pub out_octets: Option<(u64, u32)>,
}

/// Interfaces from the ifTable and ifXTable walks.
pub fn interfaces(if_table: &Table, ifx_table: &Table) -> Vec<Interface> {
    let mut out = Vec::new();
    for idx in if_table
        .indices(1)
        .chain(if_table.indices(2))
        .collect::<std::collections::BTreeSet<_>>()
    {
        let [index] = idx.as_slice() else { continue };
        let name = ifx_table
            .text(1, idx)
            .or_else(|| if_table.text(2, idx))
            .unwrap_or_else(|| format!("if{index}"));
        let status = |col| if_table.int(col, idx).map(|s| s == 1);
        let octets = |hc_col, col| {
            ifx_table
                .counter(hc_col, idx)
                .map(|v| (v, 64))
                .or_else(|| if_table.counter(col, idx).map(|v| (v, 32)))
        };
        out.push(Interface {
            index: *index,
            name,
            admin_up: status(7),
            oper_up: status(8),
            in_discards: if_table.counter(13, idx),
            in_errors: if_table.counter(14, idx),
            out_discards: if_table.counter(19, idx),
            out_errors: if_table.counter(20, idx),
            in_octets: octets(6, 10),
            out_octets: octets(10, 16),
        });
    }
    out
}

/// `entPhySensorEntry` (1.3.6.1.2.1.99.1.1.1) and `entPhysicalEntry` (1.3.6.1.2.1.47.1.1.1.1).
pub const ENT_SENSOR_ENTRY: &str = "1.3.6.1.2.1.99.1.1.1";
pub const ENT_PHYSICAL_ENTRY: &str = "1.3.6.1.2.1.47.1.1.1.1";

/// `EntitySensorDataType` (RFC 3433).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorKind {
    Other,
    Unknown,
    VoltsAc,
    VoltsDc,
    Amperes,
    Watts,
    Hertz,
    Celsius,
    PercentRh,
    Rpm,
    Cmm,
    TruthValue,
}

impl SensorKind {
    fn from_code(c: i64) -> SensorKind {
        match c {
            3 => SensorKind::VoltsAc,
            4 => SensorKind::VoltsDc,
            5 => SensorKind::Amperes,
            6 => SensorKind::Watts,
            7 => SensorKind::Hertz,
            8 => SensorKind::Celsius,
            9 => SensorKind::PercentRh,
            10 => SensorKind::Rpm,
            11 => SensorKind::Cmm,
            12 => SensorKind::TruthValue,
            2 => SensorKind::Unknown,
            _ => SensorKind::Other,
        }
    }

    /// Canonical (metric, unit) for telemetry.
    pub fn metric(self) -> (&'static str, &'static str) {
        match self {
            SensorKind::VoltsAc => ("voltage_ac_volts", "volts"),
            SensorKind::VoltsDc => ("voltage_volts", "volts"),
            SensorKind::Amperes => ("current_amps", "amps"),
            SensorKind::Watts => ("power_watts", "watts"),
            SensorKind::Hertz => ("frequency_hertz", "hertz"),
            SensorKind::Celsius => ("temperature_celsius", "celsius"),
            SensorKind::PercentRh => ("humidity_percent", "percent"),
            SensorKind::Rpm => ("fan_speed_rpm", "rpm"),
            SensorKind::Cmm => ("airflow_cmm", "cmm"),
            SensorKind::TruthValue => ("state_ok", "bool"),
            SensorKind::Other | SensorKind::Unknown => ("sensor_value", ""),
        }
    }
}

/// `EntitySensorStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorStatus {
    Ok,
    Unavailable,
    NonOperational,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub index: u32,
    /// entPhysicalName, else entPhysicalDescr, else `entity-<index>`.
    pub name: String,
    pub kind: SensorKind,
    /// In base units: value × 10^(3·(scale−9)) / 10^precision.
    pub value: f64,
    pub status: SensorStatus,
}

/// Sensors from the ENTITY-SENSOR-MIB walk and the ENTITY-MIB names.
pub fn sensors(sensor_table: &Table, physical: &Table) -> Vec<Sensor> {
    let mut out = Vec::new();
    for idx in sensor_table.indices(4) {
        let [index] = idx.as_slice() else { continue };
        let (Some(kind), Some(raw)) = (sensor_table.int(1, idx), sensor_table.int(4, idx)) else {
            continue;
        };
        // entPhySensorScale: 1 = yocto (10^-24) .. 9 = units .. 17 = yotta (10^24).
        let scale = sensor_table.int(2, idx).unwrap_or(9).clamp(1, 17);
        let precision = sensor_table.int(3, idx).unwrap_or(0).clamp(-8, 9);
        let exponent = i32::try_from(3 * (scale - 9) - precision).unwrap_or(0);
        // Divide by an exact power of ten for negative exponents, so 282
        // with precision 1 is the double nearest 28.2, not 28.200000000000003.
        #[allow(clippy::cast_precision_loss)]
        let value = if exponent >= 0 {
            raw as f64 * 10f64.powi(exponent)
        } else {
            raw as f64 / 10f64.powi(-exponent)
        };
        let status = match sensor_table.int(5, idx) {
            Some(2) => SensorStatus::Unavailable,
            Some(3) => SensorStatus::NonOperational,
            _ => SensorStatus::Ok,
        };
        let name = physical
            .text(7, idx)
            .or_else(|| physical.text(2, idx))
            .unwrap_or_else(|| format!("entity-{index}"));
        out.push(Sensor {
            index: *index,
            name,
            kind: SensorKind::from_code(kind),
            value,
            status,
        });
    }
    out
}

/// Rate of one monotonic counter between polls.
///
/// - A 32-bit counter that went down is taken to have wrapped once (poll
///   often enough that two wraps cannot happen: at 10 Gb/s ifInOctets wraps
///   every 3.4 s, which is why ifHCInOctets is preferred); a 64-bit one that
///   went down was reset.
/// - An agent restart (sysUpTime went backwards) or a counter discontinuity
///   resets the baseline: no rate for that interval, never a huge spike.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CounterRate {
    last: Option<(u64, u32, u64, i64)>, // (value, bits, agent uptime ticks, poll time ms)
}

impl CounterRate {
    /// Feed one reading; returns the per-second rate since the previous one.
    pub fn update(&mut self, value: u64, bits: u32, uptime_ticks: u64, now_ms: i64) -> Option<f64> {
        let prev = self.last.replace((value, bits, uptime_ticks, now_ms));
        let (pv, pbits, pup, pt) = prev?;
        let dt_ms = now_ms - pt;
        if dt_ms <= 0 || pbits != bits || uptime_ticks < pup {
            return None; // clock trouble, counter switched width, or agent restarted
        }
        let delta = if value >= pv {
            value - pv
        } else if bits == 32 {
            (1u64 << 32) - pv + value
        } else {
            return None;
        };
        #[allow(clippy::cast_precision_loss)]
        let rate = delta as f64 * 1000.0 / dt_ms as f64;
        Some(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(s: &str) -> Oid {
        s.parse().unwrap()
    }

    #[test]
    fn counter_rates_survive_wrap_and_restarts() {
        let mut r = CounterRate::default();
        assert_eq!(
            r.update(u64::from(u32::MAX) - 99, 32, 1000, 0),
            None,
            "first reading: baseline"
        );
        // Wrapped: 100 to the top, then 900 more, in 10 s.
        assert_eq!(r.update(900, 32, 2000, 10_000), Some(100.0));
        assert_eq!(r.update(1900, 32, 3000, 20_000), Some(100.0));
        // The switch rebooted: uptime went back, counter restarted from 0.
        assert_eq!(r.update(50, 32, 10, 30_000), None);
        assert_eq!(r.update(150, 32, 1010, 40_000), Some(10.0));
        // A 64-bit counter going down is a reset, not a wrap.
        let mut h = CounterRate::default();
        h.update(5_000, 64, 100, 0);
        assert_eq!(h.update(10, 64, 200, 1000), None);
        assert_eq!(h.update(1010, 64, 300, 2000), Some(1000.0));
    }

    #[test]
    fn sensors_apply_scale_and_precision() {
        let e = oid(ENT_SENSOR_ENTRY);
        let walk = vec![
            (e.child(&[1, 7]), Value::Integer(4)), // voltsDC
            (e.child(&[2, 7]), Value::Integer(9)), // units
            (e.child(&[3, 7]), Value::Integer(2)), // 2 decimals
            (e.child(&[4, 7]), Value::Integer(1242)),
            (e.child(&[5, 7]), Value::Integer(1)),
            (e.child(&[1, 9]), Value::Integer(6)), // watts
            (e.child(&[2, 9]), Value::Integer(8)), // milli
            (e.child(&[3, 9]), Value::Integer(0)),
            (e.child(&[4, 9]), Value::Integer(6015)),
            (e.child(&[5, 9]), Value::Integer(1)),
            (e.child(&[1, 11]), Value::Integer(10)), // rpm, unavailable
            (e.child(&[4, 11]), Value::Integer(0)),
            (e.child(&[5, 11]), Value::Integer(2)),
        ];
        let names = Table::from_walk(
            &oid(ENT_PHYSICAL_ENTRY),
            &[(
                oid(ENT_PHYSICAL_ENTRY).child(&[7, 7]),
                Value::OctetString(b"PSU1 12V".to_vec()),
            )],
        );
        let s = sensors(&Table::from_walk(&e, &walk), &names);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].name.as_str(), s[0].kind, s[0].value),
            ("PSU1 12V", SensorKind::VoltsDc, 12.42)
        );
        assert_eq!(s[1].value, 6.015);
        assert_eq!(
            (s[2].name.as_str(), s[2].status),
            ("entity-11", SensorStatus::Unavailable)
        );
    }

    #[test]
    fn interfaces_prefer_if_name_and_hc_counters() {
        let i = oid(IF_ENTRY);
        let x = oid(IFX_ENTRY);
        let ift = Table::from_walk(
            &i,
            &[
                (i.child(&[1, 5]), Value::Integer(5)),
                (
                    i.child(&[2, 5]),
                    Value::OctetString(b"Ethernet1/5".to_vec()),
                ),
                (i.child(&[7, 5]), Value::Integer(1)),
                (i.child(&[8, 5]), Value::Integer(2)),
                (i.child(&[10, 5]), Value::Counter32(7)),
                (i.child(&[14, 5]), Value::Counter32(9)),
            ],
        );
        let ifx = Table::from_walk(
            &x,
            &[
                (x.child(&[1, 5]), Value::OctetString(b"Eth1/5".to_vec())),
                (x.child(&[6, 5]), Value::Counter64(1 << 40)),
            ],
        );
        let v = interfaces(&ift, &ifx);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "Eth1/5");
        assert_eq!(
            (v[0].admin_up, v[0].oper_up, v[0].in_errors),
            (Some(true), Some(false), Some(9))
        );
        assert_eq!(v[0].in_octets, Some((1 << 40, 64)));
        assert_eq!(v[0].out_octets, None);
    }
}
