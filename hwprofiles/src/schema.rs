//! The validated profile types and their serde wire form.
//!
//! `Raw*` types mirror the TOML (with `deny_unknown_fields`); [`crate::validate`]
//! turns them into the public types, which are always valid.

use serde::Deserialize;
use std::time::Duration;

/// Physical unit of a sensor's value (after scaling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Celsius,
    Rpm,
    Volts,
    Amps,
    Watts,
    /// Vibration, RMS acceleration.
    G,
    Percent,
    Bytes,
    Count,
    Hours,
    Ratio,
}

impl Unit {
    /// Short spelling used in the telemetry catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Celsius => "celsius",
            Unit::Rpm => "rpm",
            Unit::Volts => "volts",
            Unit::Amps => "amps",
            Unit::Watts => "watts",
            Unit::G => "g",
            Unit::Percent => "percent",
            Unit::Bytes => "bytes",
            Unit::Count => "count",
            Unit::Hours => "hours",
            Unit::Ratio => "ratio",
        }
    }
}

/// What a sensor measures; constrains which [`Unit`] it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    Temperature,
    Fan,
    Voltage,
    Current,
    Power,
    Vibration,
    SmartAttribute,
    ErrorCounter,
    Utilisation,
}

impl SensorKind {
    /// Units that make sense for this kind.
    pub fn allowed_units(self) -> &'static [Unit] {
        match self {
            SensorKind::Temperature => &[Unit::Celsius],
            SensorKind::Fan => &[Unit::Rpm, Unit::Percent],
            SensorKind::Voltage => &[Unit::Volts],
            SensorKind::Current => &[Unit::Amps],
            SensorKind::Power => &[Unit::Watts],
            SensorKind::Vibration => &[Unit::G],
            SensorKind::SmartAttribute => &[Unit::Count, Unit::Hours, Unit::Celsius, Unit::Percent],
            SensorKind::ErrorCounter => &[Unit::Count],
            SensorKind::Utilisation => &[Unit::Percent, Unit::Ratio, Unit::Bytes],
        }
    }
}

/// Vendor thresholds; any subset may be given, but those given must be ordered
/// `lower_critical < lower_warning < upper_warning < upper_critical`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub lower_critical: Option<f64>,
    pub lower_warning: Option<f64>,
    pub upper_warning: Option<f64>,
    pub upper_critical: Option<f64>,
}

/// Shape of a scripted degradation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DegradationKind {
    /// Value moves by `rate` units per hour.
    Linear,
    /// Value is multiplied by `(1 + rate)` per hour (rate may be negative).
    Exponential,
    /// Value jumps by `rate` once, at `start_after`.
    Step,
}

/// A scripted change applied by the `sim` collector after `start_after`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Degradation {
    pub kind: DegradationKind,
    pub start_after: Duration,
    pub rate: f64,
}

/// How the `sim` collector produces this sensor's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimBehaviour {
    pub nominal: f64,
    /// Standard deviation of white noise added to each reading.
    pub noise: f64,
    /// Amplitude and period of a sinusoidal load pattern.
    pub amplitude: f64,
    pub period: Duration,
    /// Decimal places the simulated device reports (real BMCs quantise).
    pub resolution_digits: u8,
    pub degradation: Option<Degradation>,
}

/// One sensor of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// Profile-unique id, e.g. `fan3_rpm`.
    pub id: String,
    /// Canonical metric name shared across vendors, e.g. `fan_speed_rpm`.
    pub metric: String,
    pub kind: SensorKind,
    pub unit: Unit,
    /// Component the sensor belongs to, e.g. `FAN3`, `PSU1`.
    pub component: String,
    pub thresholds: Thresholds,
    pub sim: Option<SimBehaviour>,
    /// Where a real collector finds this sensor on the device.
    pub source: Option<Source>,
}

/// A sensor's address on real hardware, per protocol.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// IPMI: the SDR ID string of the sensor.
    Ipmi { sensor: String },
    /// SNMP: the numeric OID of the value, read as `value / 10^decimals`
    /// (ENTITY-SENSOR-MIB precision, vendor tables in tenths, ...).
    Snmp {
        oid: String,
        #[serde(default)]
        decimals: u8,
    },
    /// SMART: an ATA attribute id (raw value).
    Smart { attribute: u8 },
    /// I2C: 7-bit address and driver, on `bus` (e.g. `/dev/i2c-1`) or, when
    /// the profile cannot know it, on the bus the `i2c` collector names.
    I2c {
        #[serde(default)]
        bus: Option<String>,
        address: u8,
        driver: String,
    },
}

/// A field-replaceable component listed in the profile's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub id: String,
    pub kind: String,
    pub model: String,
    /// Components sharing a group back each other up (PSU1 + PSU2 in
    /// "psu"): losing one is degraded redundancy, not an outage. Groups
    /// always have at least two members.
    pub redundancy_group: Option<String>,
}

/// Known vendor deviations from the specifications a collector must work
/// around. A closed set: each variant is honoured in code (grep for it), and
/// an unknown name in a profile is a load error, not silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quirk {
    /// The BMC marks sensors "scanning disabled" although they read fine;
    /// read them anyway instead of reporting them unreadable. FreeIPMI's
    /// `ignorescanningdisabled`, confirmed there on Dell PowerEdge 2900,
    /// 2950, R410, R610 and HP Integrity rx3600.
    IpmiIgnoreScanningDisabled,
    /// SDR records give analog readings (with conversion factors) on
    /// sensors whose event/reading type is discrete; convert them as analog
    /// values. FreeIPMI's `discretereading`, confirmed there on HP ProLiant
    /// DL380 G7 and ML310 G5.
    IpmiDiscreteReading,
}

impl Quirk {
    pub fn as_str(self) -> &'static str {
        match self {
            Quirk::IpmiIgnoreScanningDisabled => "ipmi_ignore_scanning_disabled",
            Quirk::IpmiDiscreteReading => "ipmi_discrete_reading",
        }
    }
}

/// Failure-domain hint: what else a failure of this chassis's shared parts
/// takes down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enclosure {
    /// One host per chassis: its PSUs and fans are its own.
    #[default]
    Standalone,
    /// Nodes of a multi-node chassis or blade enclosure share PSUs and fans:
    /// their failure domain is the enclosure, not the host.
    Shared,
}

/// A validated hardware profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `<vendor>/<model>`, e.g. `umbra/sim-1u`.
    pub id: String,
    pub vendor: String,
    pub model: String,
    pub description: String,
    pub enclosure: Enclosure,
    /// Deduplicated, in profile order.
    pub quirks: Vec<Quirk>,
    pub components: Vec<Component>,
    pub sensors: Vec<Sensor>,
}

impl Profile {
    pub fn has_quirk(&self, q: Quirk) -> bool {
        self.quirks.contains(&q)
    }

    /// The sensor with this id.
    pub fn sensor(&self, id: &str) -> Option<&Sensor> {
        self.sensors.iter().find(|s| s.id == id)
    }
}

// ---- wire form -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    pub(crate) vendor: String,
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) enclosure: Enclosure,
    #[serde(default)]
    pub(crate) quirks: Vec<Quirk>,
    #[serde(default, rename = "component")]
    pub(crate) components: Vec<RawComponent>,
    #[serde(rename = "sensor")]
    pub(crate) sensors: Vec<RawSensor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawComponent {
    pub(crate) id: String,
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) redundancy_group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSensor {
    pub(crate) id: String,
    pub(crate) metric: String,
    pub(crate) kind: SensorKind,
    pub(crate) unit: Unit,
    pub(crate) component: String,
    #[serde(default)]
    pub(crate) thresholds: Thresholds,
    pub(crate) sim: Option<RawSim>,
    #[serde(default)]
    pub(crate) source: Option<Source>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSim {
    pub(crate) nominal: f64,
    #[serde(default)]
    pub(crate) noise: f64,
    #[serde(default)]
    pub(crate) amplitude: f64,
    /// humantime, e.g. "1h"
    #[serde(default)]
    pub(crate) period: Option<String>,
    #[serde(default = "default_resolution_digits")]
    pub(crate) resolution_digits: u8,
    pub(crate) degradation: Option<RawDegradation>,
}

const fn default_resolution_digits() -> u8 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDegradation {
    pub(crate) kind: DegradationKind,
    /// humantime, e.g. "10m"
    pub(crate) start_after: String,
    pub(crate) rate: f64,
}
