//! Semantic checks that serde cannot express.

use crate::schema::*;
use std::time::Duration;

/// A profile that parsed but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("vendor and model must be non-empty lowercase [a-z0-9-_.]")]
    BadId,
    #[error("sensor id {0:?} used twice")]
    DuplicateSensor(String),
    #[error("sensor {sensor:?}: unit {unit:?} does not fit kind {kind:?}")]
    UnitMismatch {
        sensor: String,
        kind: SensorKind,
        unit: Unit,
    },
    #[error("sensor {0:?}: thresholds are not ordered lower_critical < lower_warning < upper_warning < upper_critical")]
    ThresholdOrder(String),
    #[error("sensor {0:?}: a threshold is not finite")]
    ThresholdNotFinite(String),
    #[error("sensor {sensor:?}: {what}")]
    BadSim { sensor: String, what: String },
    #[error("sensor {sensor:?}: component {component:?} is not in the inventory")]
    UnknownComponent { sensor: String, component: String },
    #[error("sensor {0:?}: metric name must be snake_case [a-z0-9_]")]
    BadMetric(String),
    #[error("component id {0:?} used twice")]
    DuplicateComponent(String),
    #[error("sensor {sensor:?}: source: {why}")]
    BadSource { sensor: String, why: String },
    #[error("quirk {0:?} listed twice")]
    DuplicateQuirk(&'static str),
    #[error("redundancy group {0:?} has one member: a group needs at least two")]
    LonelyRedundancyGroup(String),
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn duration(sensor: &str, what: &str, text: &str) -> Result<Duration, ProfileError> {
    humantime_lite(text).ok_or_else(|| ProfileError::BadSim {
        sensor: sensor.to_owned(),
        what: format!("{what}: {text:?} is not a duration like \"90s\", \"10m\", \"2h\""),
    })
}

/// Minimal duration syntax: an integer followed by one of ms/s/m/h/d.
fn humantime_lite(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

pub(crate) fn validate(raw: RawProfile) -> Result<Profile, ProfileError> {
    if !ident_ok(&raw.vendor) || !ident_ok(&raw.model) {
        return Err(ProfileError::BadId);
    }
    let mut components: Vec<Component> = Vec::with_capacity(raw.components.len());
    for c in raw.components {
        if components.iter().any(|x| x.id == c.id) {
            return Err(ProfileError::DuplicateComponent(c.id));
        }
        components.push(Component {
            id: c.id,
            kind: c.kind,
            model: c.model,
            redundancy_group: c.redundancy_group,
        });
    }
    for g in components
        .iter()
        .filter_map(|c| c.redundancy_group.as_ref())
    {
        let members = components
            .iter()
            .filter(|c| c.redundancy_group.as_ref() == Some(g))
            .count();
        if members < 2 {
            return Err(ProfileError::LonelyRedundancyGroup(g.clone()));
        }
    }
    let mut quirks = Vec::with_capacity(raw.quirks.len());
    for q in raw.quirks {
        if quirks.contains(&q) {
            return Err(ProfileError::DuplicateQuirk(q.as_str()));
        }
        quirks.push(q);
    }
    let mut sensors: Vec<Sensor> = Vec::with_capacity(raw.sensors.len());
    for s in raw.sensors {
        if sensors.iter().any(|x| x.id == s.id) {
            return Err(ProfileError::DuplicateSensor(s.id));
        }
        if !s
            .metric
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || s.metric.is_empty()
        {
            return Err(ProfileError::BadMetric(s.id));
        }
        if !s.kind.allowed_units().contains(&s.unit) {
            return Err(ProfileError::UnitMismatch {
                sensor: s.id,
                kind: s.kind,
                unit: s.unit,
            });
        }
        if !components.is_empty() && !components.iter().any(|c| c.id == s.component) {
            return Err(ProfileError::UnknownComponent {
                sensor: s.id,
                component: s.component,
            });
        }
        check_thresholds(&s.id, &s.thresholds)?;
        let sim = match s.sim {
            None => None,
            Some(r) => Some(sim(&s.id, r)?),
        };
        if let Some(src) = &s.source {
            check_source(&s.id, src)?;
        }
        sensors.push(Sensor {
            id: s.id,
            metric: s.metric,
            kind: s.kind,
            unit: s.unit,
            component: s.component,
            thresholds: s.thresholds,
            sim,
            source: s.source,
        });
    }
    Ok(Profile {
        id: format!("{}/{}", raw.vendor, raw.model),
        vendor: raw.vendor,
        model: raw.model,
        description: raw.description,
        enclosure: raw.enclosure,
        quirks,
        components,
        sensors,
    })
}

fn check_source(id: &str, src: &Source) -> Result<(), ProfileError> {
    let bad = |why: &str| {
        Err(ProfileError::BadSource {
            sensor: id.to_owned(),
            why: why.to_owned(),
        })
    };
    match src {
        // SDR ID strings hold at most 16 characters.
        Source::Ipmi { sensor } if sensor.is_empty() || sensor.len() > 16 => {
            bad("IPMI sensor name must be 1..=16 characters")
        }
        Source::Snmp { oid, .. }
            if oid.trim_start_matches('.').split('.').count() < 2
                || oid
                    .trim_start_matches('.')
                    .split('.')
                    .any(|p| p.parse::<u32>().is_err()) =>
        {
            bad("SNMP OID must be numeric, e.g. 1.3.6.1.2.1.99.1.1.1.4.5")
        }
        Source::Snmp { decimals, .. } if *decimals > 9 => bad("SNMP decimals must be 0..=9"),
        Source::I2c { address, .. } if !(0x08..=0x77).contains(address) => {
            bad("I2C address outside 0x08..=0x77")
        }
        Source::I2c { driver, .. }
            if !["pmbus", "tmp75", "adxl345", "max31790"].contains(&driver.as_str()) =>
        {
            bad("I2C driver must be pmbus, tmp75, adxl345 or max31790")
        }
        Source::I2c { bus: Some(b), .. } if !b.starts_with("/dev/i2c-") => {
            bad("I2C bus must be a /dev/i2c-N path")
        }
        _ => Ok(()),
    }
}

fn check_thresholds(id: &str, t: &Thresholds) -> Result<(), ProfileError> {
    let ordered: Vec<f64> = [
        t.lower_critical,
        t.lower_warning,
        t.upper_warning,
        t.upper_critical,
    ]
    .into_iter()
    .flatten()
    .collect();
    if ordered.iter().any(|v| !v.is_finite()) {
        return Err(ProfileError::ThresholdNotFinite(id.to_owned()));
    }
    if ordered.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ProfileError::ThresholdOrder(id.to_owned()));
    }
    Ok(())
}

fn sim(id: &str, r: RawSim) -> Result<SimBehaviour, ProfileError> {
    let bad = |what: &str| ProfileError::BadSim {
        sensor: id.to_owned(),
        what: what.to_owned(),
    };
    if !r.nominal.is_finite() || !r.noise.is_finite() || r.noise < 0.0 || !r.amplitude.is_finite() {
        return Err(bad(
            "nominal, noise and amplitude must be finite; noise >= 0",
        ));
    }
    if r.resolution_digits > 6 {
        return Err(bad("resolution_digits must be <= 6"));
    }
    let period = match r.period {
        Some(p) => duration(id, "period", &p)?,
        None => Duration::from_secs(3600),
    };
    if period.is_zero() {
        return Err(bad("period must be > 0"));
    }
    let degradation = match r.degradation {
        None => None,
        Some(d) => {
            if !d.rate.is_finite() {
                return Err(bad("degradation rate must be finite"));
            }
            Some(Degradation {
                kind: d.kind,
                start_after: duration(id, "start_after", &d.start_after)?,
                rate: d.rate,
            })
        }
    };
    Ok(SimBehaviour {
        nominal: r.nominal,
        noise: r.noise,
        amplitude: r.amplitude,
        period,
        resolution_digits: r.resolution_digits,
        degradation,
    })
}

#[cfg(test)]
mod tests {
    use crate::{parse, LoadError, ProfileError};

    pub(super) fn invalid(text: &str) -> ProfileError {
        match parse(text, "t") {
            Err(LoadError::Invalid { source, .. }) => source,
            other => panic!("expected a semantic error, got {other:?}"),
        }
    }

    pub(super) const HEAD: &str = "vendor = \"acme\"\nmodel = \"x1\"\n";

    #[test]
    fn unit_must_fit_kind() {
        let e = invalid(&format!(
            "{HEAD}[[sensor]]\nid=\"t\"\nmetric=\"temp\"\nkind=\"temperature\"\nunit=\"rpm\"\ncomponent=\"CPU\"\n"
        ));
        assert!(matches!(e, ProfileError::UnitMismatch { .. }), "{e}");
    }

    #[test]
    fn thresholds_must_be_ordered() {
        let e = invalid(&format!(
            "{HEAD}[[sensor]]\nid=\"t\"\nmetric=\"temp\"\nkind=\"temperature\"\nunit=\"celsius\"\ncomponent=\"CPU\"\nthresholds={{upper_warning=90.0, upper_critical=80.0}}\n"
        ));
        assert_eq!(e, ProfileError::ThresholdOrder("t".into()));
    }

    #[test]
    fn duplicate_sensor_ids_rejected() {
        let s = "[[sensor]]\nid=\"t\"\nmetric=\"temp\"\nkind=\"temperature\"\nunit=\"celsius\"\ncomponent=\"CPU\"\n";
        assert_eq!(
            invalid(&format!("{HEAD}{s}{s}")),
            ProfileError::DuplicateSensor("t".into())
        );
    }

    #[test]
    fn sensor_component_must_be_in_inventory() {
        let e = invalid(&format!(
            "{HEAD}[[component]]\nid=\"PSU1\"\nkind=\"psu\"\n[[sensor]]\nid=\"t\"\nmetric=\"temp\"\nkind=\"temperature\"\nunit=\"celsius\"\ncomponent=\"CPU\"\n"
        ));
        assert!(matches!(e, ProfileError::UnknownComponent { .. }), "{e}");
    }

    #[test]
    fn bad_duration_is_reported() {
        let e = invalid(&format!(
            "{HEAD}[[sensor]]\nid=\"t\"\nmetric=\"temp\"\nkind=\"temperature\"\nunit=\"celsius\"\ncomponent=\"CPU\"\nsim={{nominal=40.0, period=\"soon\"}}\n"
        ));
        assert!(matches!(e, ProfileError::BadSim { .. }), "{e}");
    }
}

#[cfg(test)]
mod source_tests {
    use super::tests::{invalid, HEAD};
    use crate::ProfileError;
    #[test]
    fn sources_are_validated() {
        let base = "vendor = \"t\"\nmodel = \"m\"\n[[sensor]]\nid = \"a\"\nmetric = \"x\"\nkind = \"fan\"\nunit = \"rpm\"\ncomponent = \"F\"\n";
        let ok = format!("{base}source = {{ protocol = \"ipmi\", sensor = \"Fan1\" }}\n");
        assert!(crate::parse(&ok, "t").is_ok());
        for (src, why) in [
            (
                "{ protocol = \"ipmi\", sensor = \"A name far too long\" }",
                "1..=16",
            ),
            ("{ protocol = \"snmp\", oid = \"ifInErrors.3\" }", "numeric"),
            (
                "{ protocol = \"i2c\", address = 0x80, driver = \"pmbus\" }",
                "0x08..=0x77",
            ),
            (
                "{ protocol = \"i2c\", address = 0x40, driver = \"lm99\" }",
                "driver",
            ),
        ] {
            let e = crate::parse(&format!("{base}source = {src}\n"), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{src}: {e}");
        }
        assert!(crate::parse(
            &format!("{base}source = {{ protocol = \"modbus\", reg = 1 }}\n"),
            "t"
        )
        .is_err());
    }

    const SENSOR: &str = "[[sensor]]\nid=\"t\"\nmetric=\"temp\"\nkind=\"temperature\"\nunit=\"celsius\"\ncomponent=\"PSU1\"\n";

    #[test]
    fn quirks_are_a_closed_set_without_repeats() {
        let ok = crate::parse(
            &format!("{HEAD}quirks = [\"ipmi_discrete_reading\"]\n{SENSOR}"),
            "t",
        )
        .unwrap();
        assert!(ok.has_quirk(crate::Quirk::IpmiDiscreteReading));
        assert!(!ok.has_quirk(crate::Quirk::IpmiIgnoreScanningDisabled));
        let unknown = crate::parse(&format!("{HEAD}quirks = [\"be_nice\"]\n{SENSOR}"), "t")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("ipmi_ignore_scanning_disabled"),
            "{unknown}"
        );
        assert_eq!(
            invalid(&format!(
                "{HEAD}quirks = [\"ipmi_discrete_reading\", \"ipmi_discrete_reading\"]\n{SENSOR}"
            )),
            ProfileError::DuplicateQuirk("ipmi_discrete_reading")
        );
    }

    #[test]
    fn redundancy_groups_need_two_members() {
        let one = format!(
            "{HEAD}[[component]]\nid=\"PSU1\"\nkind=\"psu\"\nredundancy_group=\"psu\"\n{SENSOR}"
        );
        assert_eq!(
            invalid(&one),
            ProfileError::LonelyRedundancyGroup("psu".into())
        );
        let two = format!(
            "{HEAD}enclosure = \"shared\"\n[[component]]\nid=\"PSU1\"\nkind=\"psu\"\nredundancy_group=\"psu\"\n[[component]]\nid=\"PSU2\"\nkind=\"psu\"\nredundancy_group=\"psu\"\n{SENSOR}"
        );
        let p = crate::parse(&two, "t").unwrap();
        assert_eq!(p.enclosure, crate::Enclosure::Shared);
        assert_eq!(p.components[1].redundancy_group.as_deref(), Some("psu"));
    }
}
