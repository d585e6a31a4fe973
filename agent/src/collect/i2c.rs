//! `i2c`: chips on the host's I2C/SMBus buses through Linux i2c-dev
//! (`transport::i2c`: plain I2C, or SMBus commands on SMBus-only adapters), with the `no_std` drivers of
//! `firmware_shims::i2c`: PMBus PSUs, ADXL345 vibration, TMP75/LM75
//! temperature, MAX31790 fan tachometers. Bus I/O is blocking, so each poll
//! runs on the blocking pool; a device that fails costs only its own
//! readings (marked `Unreadable`, with the reason).

use super::{Collector, Poll, Quality, SeriesKey};
use crate::transport::i2c::{LinuxBus, Mode};
use embedded_hal::i2c::I2c;
use firmware_shims::i2c::{adxl345, max31790, pmbus, tmp75, Error};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Chips to read. Empty: the host profile's `i2c` sources.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Bus of profile sources that do not name one.
    #[serde(default)]
    pub bus: Option<PathBuf>,
}

const fn default_interval() -> Duration {
    Duration::from_secs(10)
}

/// One chip: where it is, which driver, which component it measures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// e.g. `/dev/i2c-1`.
    pub bus: PathBuf,
    /// 7-bit address.
    pub address: u8,
    pub driver: Driver,
    /// Component measured (PSU1, FAN3, ...); for `max31790`, the prefix of
    /// its fans unless `fans` names them.
    pub component: String,
    /// `max31790`: component per channel (index = channel 0..=5).
    #[serde(default)]
    pub fans: Vec<String>,
    /// `max31790`: tach pulses per revolution.
    #[serde(default = "default_pulses")]
    pub pulses_per_rev: u8,
    /// `adxl345`: samples per vibration window (at 100 Hz).
    #[serde(default = "default_window")]
    pub window: usize,
}

const fn default_pulses() -> u8 {
    2
}
const fn default_window() -> usize {
    64
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    Pmbus,
    Tmp75,
    Adxl345,
    Max31790,
}

impl Config {
    /// The devices to read: configured ones, else the profile's `i2c`
    /// sources (one device per bus and address; its component is the first
    /// sensor's that names it).
    pub fn devices(&self, profile: &hwprofiles::Profile) -> Result<Vec<Device>, String> {
        if !self.devices.is_empty() {
            return Ok(self.devices.clone());
        }
        let mut out: Vec<Device> = Vec::new();
        for s in &profile.sensors {
            let Some(hwprofiles::Source::I2c {
                bus,
                address,
                driver,
            }) = &s.source
            else {
                continue;
            };
            let bus = match (bus, &self.bus) {
                (Some(b), _) => PathBuf::from(b),
                (None, Some(b)) => b.clone(),
                (None, None) => {
                    return Err(format!(
                        "i2c: hwprofile {} sensor {} names no bus: set `bus` in the collector",
                        profile.id, s.id
                    ))
                }
            };
            if out.iter().any(|d| d.bus == bus && d.address == *address) {
                continue;
            }
            let driver: Driver = Deserialize::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(driver))
            .map_err(|e| format!("i2c: hwprofile {} sensor {}: {e}", profile.id, s.id))?;
            out.push(Device {
                bus,
                address: *address,
                driver,
                component: s.component.clone(),
                fans: Vec::new(),
                pulses_per_rev: default_pulses(),
                window: default_window(),
            });
        }
        if out.is_empty() {
            return Err(format!(
                "i2c: no devices configured and hwprofile {} names none",
                profile.id
            ));
        }
        Ok(out)
    }

    pub fn validate(&self, profile: &hwprofiles::Profile) -> Result<(), String> {
        let devices = self.devices(profile)?;
        for d in &devices {
            if d.address > 0x77 || d.address < 0x08 {
                return Err(format!(
                    "i2c: address 0x{:02x} is outside 0x08..=0x77",
                    d.address
                ));
            }
            if d.driver == Driver::Max31790 && d.fans.len() > 6 {
                return Err("i2c: a MAX31790 has 6 channels".into());
            }
            if d.driver == Driver::Adxl345 && !(1..=1000).contains(&d.window) {
                return Err("i2c: adxl345 window must be 1..=1000 samples".into());
            }
        }
        Ok(())
    }
}

/// (metric, unit, component, value) of one device read.
pub type Values = Vec<(&'static str, &'static str, String, f64)>;

fn describe<E: core::fmt::Debug>(e: Error<E>) -> String {
    match e {
        Error::Bus(e) => format!("bus error: {e:?}"),
        Error::WrongDevice { expected, found } => {
            format!("wrong device: identity 0x{found:02x}, expected 0x{expected:02x}")
        }
        Error::Invalid => "invalid reading".into(),
    }
}

/// Read one device with its driver over any embedded-hal bus.
pub fn read_device<I: I2c>(i2c: I, d: &Device) -> Result<Values, String> {
    let c = || d.component.clone();
    let mut out: Values = Vec::new();
    match d.driver {
        Driver::Pmbus => {
            let r = pmbus::Psu::new(i2c, d.address)
                .read_all()
                .map_err(describe)?;
            out.extend([
                ("psu_input_voltage_volts", "volts", c(), f64::from(r.vin)),
                ("psu_input_current_amps", "amps", c(), f64::from(r.iin)),
                ("psu_input_power_watts", "watts", c(), f64::from(r.pin)),
                ("psu_output_current_amps", "amps", c(), f64::from(r.iout)),
                ("psu_output_power_watts", "watts", c(), f64::from(r.pout)),
                (
                    "psu_temperature_celsius",
                    "celsius",
                    c(),
                    f64::from(r.temperature),
                ),
                ("psu_fan_speed_rpm", "rpm", c(), f64::from(r.fan_rpm)),
                ("psu_status_word", "bits", c(), f64::from(r.status.0)),
                (
                    "psu_power_good",
                    "bool",
                    c(),
                    f64::from(u8::from(!r.status.power_not_good())),
                ),
            ]);
            if let Some(v) = r.vout {
                out.push(("psu_output_voltage_volts", "volts", c(), f64::from(v)));
            }
        }
        Driver::Tmp75 => {
            let t = tmp75::Tmp75::new(i2c, d.address)
                .read_celsius()
                .map_err(describe)?;
            out.push(("temperature_celsius", "celsius", c(), f64::from(t)));
        }
        Driver::Adxl345 => {
            let mut acc = adxl345::Adxl345::init(i2c, d.address).map_err(describe)?;
            let mut samples = Vec::with_capacity(d.window);
            for i in 0..d.window {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(10)); // 100 Hz output rate
                }
                samples.push(acc.sample().map_err(describe)?);
            }
            let v = adxl345::vibration(&samples).ok_or("no samples")?;
            out.push(("vibration_rms_g", "g", c(), f64::from(v.rms_g)));
            out.push(("vibration_peak_g", "g", c(), f64::from(v.peak_g)));
        }
        Driver::Max31790 => {
            let mut m = max31790::Max31790::new(i2c, d.address, d.pulses_per_rev);
            let channels = if d.fans.is_empty() { 6 } else { d.fans.len() };
            for ch in 0..channels {
                let name = d
                    .fans
                    .get(ch)
                    .cloned()
                    .unwrap_or_else(|| format!("{}{}", d.component, ch + 1));
                let ch8 = u8::try_from(ch).expect("<= 6 channels");
                let fan = m.fan(ch8).map_err(describe)?;
                out.push(("fan_speed_rpm", "rpm", name.clone(), f64::from(fan.rpm)));
                out.push(("fan_fault", "bool", name, f64::from(u8::from(fan.fault))));
            }
        }
    }
    Ok(out)
}

pub struct I2cCollector {
    cfg: Config,
    known: Vec<BTreeSet<SeriesKey>>,
}

impl I2cCollector {
    pub fn new(cfg: Config) -> I2cCollector {
        let known = vec![BTreeSet::new(); cfg.devices.len()];
        I2cCollector { cfg, known }
    }

    /// With the devices of [`Config::devices`] (validated configurations
    /// always have some; otherwise there is nothing to read).
    pub fn with_profile(mut cfg: Config, profile: &hwprofiles::Profile) -> I2cCollector {
        cfg.devices = cfg.devices(profile).unwrap_or_default();
        I2cCollector::new(cfg)
    }
}

fn key(d: &Device, metric: &str, unit: &str, component: String) -> SeriesKey {
    SeriesKey {
        metric: metric.to_owned(),
        component,
        unit: unit.to_owned(),
        labels: [
            ("bus".to_owned(), d.bus.display().to_string()),
            ("address".to_owned(), format!("0x{:02x}", d.address)),
        ]
        .into_iter()
        .collect(),
    }
}

impl Collector for I2cCollector {
    fn name(&self) -> &'static str {
        "i2c"
    }

    async fn poll(&mut self, _ts_ms: i64) -> Poll {
        let devices = self.cfg.devices.clone();
        let results = tokio::task::spawn_blocking(move || {
            devices
                .iter()
                .map(|d| {
                    LinuxBus::open(&d.bus, Mode::Auto)
                        .map_err(|e| format!("open {}: {e}", d.bus.display()))
                        .and_then(|bus| read_device(bus, d))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|e| vec![Err(format!("i2c worker failed: {e}")); self.cfg.devices.len()]);
        let mut poll = Poll::default();
        for ((d, result), known) in self.cfg.devices.iter().zip(results).zip(&mut self.known) {
            match result {
                Ok(values) => {
                    for (metric, unit, component, value) in values {
                        poll.push_known(known, key(d, metric, unit, component), value, Quality::Ok);
                    }
                }
                Err(reason) => {
                    let sensor = format!("{} {}@0x{:02x}", d.component, d.bus.display(), d.address);
                    poll.device_failed(known.iter(), sensor, reason);
                }
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};

    fn device(driver: Driver, address: u8) -> Device {
        Device {
            bus: "/dev/i2c-1".into(),
            address,
            driver,
            component: "PSU1".into(),
            fans: Vec::new(),
            pulses_per_rev: 2,
            window: 4,
        }
    }

    #[test]
    fn a_psu_reads_into_canonical_metrics() {
        let a = 0x58;
        let w = |cmd: u8, v: u16| T::write_read(a, vec![cmd], v.to_le_bytes().to_vec());
        let expect = [
            T::write_read(a, vec![pmbus::VOUT_MODE], vec![0x17]),
            w(pmbus::READ_VIN, 0xF1E1),
            w(pmbus::READ_IIN, 0xD240),
            w(pmbus::READ_PIN, 0x0AD8),
            w(pmbus::READ_VOUT, 6144),
            w(pmbus::READ_IOUT, 0xE2C0),
            w(pmbus::READ_POUT, 0x0A10),
            w(pmbus::READ_TEMPERATURE_1, 0xE230),
            w(pmbus::READ_FAN_SPEED_1, 0x1A58),
            w(pmbus::STATUS_WORD, 0x0000),
        ];
        let mut bus = Mock::new(&expect);
        let v = read_device(bus.clone(), &device(Driver::Pmbus, a)).unwrap();
        bus.done();
        let get = |m: &str| v.iter().find(|x| x.0 == m).map(|x| x.3);
        assert_eq!(get("psu_output_voltage_volts"), Some(12.0));
        assert_eq!(get("psu_input_power_watts"), Some(1456.0));
        assert_eq!(get("psu_power_good"), Some(1.0));
    }

    #[test]
    fn a_wrong_chip_is_a_clear_error() {
        let expect = [T::write_read(0x53, vec![adxl345::DEVID], vec![0x42])];
        let mut bus = Mock::new(&expect);
        let e = read_device(bus.clone(), &device(Driver::Adxl345, 0x53)).unwrap_err();
        bus.done();
        assert_eq!(e, "wrong device: identity 0x42, expected 0xe5");
    }

    #[tokio::test]
    async fn a_missing_bus_costs_only_its_own_readings() {
        let mut c = I2cCollector::new(Config {
            interval: Duration::from_secs(10),
            devices: vec![Device {
                bus: "/nonexistent/i2c-9".into(),
                ..device(Driver::Tmp75, 0x48)
            }],
            bus: None,
        });
        let p = c.poll(0).await;
        assert!(p.readings.is_empty());
        assert!(
            p.faults[0].reason.contains("open /nonexistent/i2c-9"),
            "{:?}",
            p.faults
        );
    }

    #[test]
    fn config_is_validated() {
        let bad: Config = toml::from_str(
            "[[devices]]\nbus = \"/dev/i2c-1\"\naddress = 0x78\ndriver = \"tmp75\"\ncomponent = \"T1\"\n",
        )
        .unwrap();
        let empty = hwprofiles::parse(hwprofiles::builtin::SIM_1U, "sim").unwrap();
        assert!(bad.validate(&empty).unwrap_err().contains("0x78"));
        assert!(toml::from_str::<Config>("[[devices]]\nbus = \"/dev/i2c-1\"\naddress = 0x48\ndriver = \"lm99\"\ncomponent = \"T1\"\n").is_err());
        // Nothing configured and nothing in the profile: nothing to read.
        let none: Config = toml::from_str("").unwrap();
        assert!(none.validate(&empty).unwrap_err().contains("names none"));
    }

    #[test]
    fn profile_i2c_sources_become_devices() {
        let text = "vendor = \"acme\"\nmodel = \"x1\"\n\
            [[sensor]]\nid = \"psu1_vin\"\nmetric = \"psu_input_voltage_volts\"\nkind = \"voltage\"\nunit = \"volts\"\ncomponent = \"PSU1\"\nsource = { protocol = \"i2c\", address = 0x58, driver = \"pmbus\" }\n\
            [[sensor]]\nid = \"psu1_temp\"\nmetric = \"psu_temperature_celsius\"\nkind = \"temperature\"\nunit = \"celsius\"\ncomponent = \"PSU1\"\nsource = { protocol = \"i2c\", address = 0x58, driver = \"pmbus\" }\n\
            [[sensor]]\nid = \"inlet\"\nmetric = \"inlet_temperature_celsius\"\nkind = \"temperature\"\nunit = \"celsius\"\ncomponent = \"BOARD\"\nsource = { protocol = \"i2c\", bus = \"/dev/i2c-3\", address = 0x48, driver = \"tmp75\" }\n";
        let profile = hwprofiles::parse(text, "acme.toml").unwrap();
        let no_bus: Config = toml::from_str("").unwrap();
        assert!(no_bus
            .devices(&profile)
            .unwrap_err()
            .contains("psu1_vin names no bus"));
        let cfg: Config = toml::from_str("bus = \"/dev/i2c-1\"").unwrap();
        cfg.validate(&profile).unwrap();
        let d = cfg.devices(&profile).unwrap();
        let got: Vec<_> = d
            .iter()
            .map(|d| {
                (
                    d.bus.to_str().unwrap(),
                    d.address,
                    d.driver,
                    d.component.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/i2c-1", 0x58, Driver::Pmbus, "PSU1"),
                ("/dev/i2c-3", 0x48, Driver::Tmp75, "BOARD")
            ],
            "one device per bus and address"
        );
    }
}
