use super::*;
use proptest::prelude::*;

fn repository() -> Vec<Record> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ipmi/ipmi_sim-bmc1.sdr"
    );
    parse_repository(&std::fs::read(p).unwrap()).unwrap()
}

fn sensor(records: &[Record], name: &str) -> Sensor {
    records
        .iter()
        .find_map(|r| match r {
            Record::Full(s) | Record::Compact(s) if s.name == name => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name}"))
}

/// Every reading ipmitool converted from the same BMC converts the same way.
#[test]
fn ipmi_sim_repository_converts_like_ipmitool() {
    let r = repository();
    assert!(
        matches!(&r[0], Record::McLocator { slave_address: 0x20, name, .. } if name == "Sim BMC")
    );
    for (name, raw, want, unit) in [
        ("CPU1 Temp", 0x2d, 45.0, 1),
        ("Inlet Temp", 0x18, 24.0, 1),
        ("Fan1", 0x36, 5400.0, 18),
        ("Fan2", 0x34, 5200.0, 18),
        ("PSU1 Vout 12V", 0x79, 12.1, 4),
        ("PSU1 Current", 0x55, 8.5, 5),
        ("PSU1 Power", 0x40, 256.0, 6),
    ] {
        let s = sensor(&r, name);
        assert!(s.is_threshold(), "{name}");
        assert_eq!((s.convert(raw), s.base_unit), (Some(want), unit), "{name}");
    }
    let cpu = sensor(&r, "CPU1 Temp");
    assert_eq!(
        (cpu.sensor_type, cpu.entity_id),
        (0x01, 0x03),
        "temperature of a processor"
    );
    let t = cpu.thresholds;
    assert_eq!(
        (
            t.unc.and_then(|x| cpu.convert(x)),
            t.uc.and_then(|x| cpu.convert(x)),
            t.unr.and_then(|x| cpu.convert(x))
        ),
        (Some(85.0), Some(95.0), Some(105.0))
    );
    assert_eq!((t.lnc, t.lc, t.lnr), (None, None, None));
    let v = sensor(&r, "PSU1 Vout 12V");
    assert_eq!(
        (
            v.thresholds.lc.and_then(|x| v.convert(x)),
            v.thresholds.uc.and_then(|x| v.convert(x))
        ),
        (Some(11.0), Some(13.0))
    );
    let psu = sensor(&r, "PSU1 Status");
    assert!(r
        .iter()
        .any(|x| matches!(x, Record::Compact(s) if s.name == "PSU1 Status")));
    assert_eq!(
        (psu.sensor_type, psu.event_reading_type),
        (0x08, 0x6f),
        "power supply, sensor-specific"
    );
    assert_eq!(psu.convert(0), None, "discrete: no numeric value");
}

#[test]
fn readings_and_threshold_status() {
    let fan = Reading::parse(&[0x36, 0xc0, 0x00, 0x00]).unwrap();
    assert_eq!(
        (fan.raw, fan.scanning_enabled, fan.unavailable),
        (0x36, true, false)
    );
    assert_eq!(fan.threshold_status(), ThresholdStatus::Ok);
    // CPU at 97 °C in TESTBEDS: upper critical (bit 4) and non-critical (bit 3) going high.
    assert_eq!(
        Reading::parse(&[0x61, 0xc0, 0x18])
            .unwrap()
            .threshold_status(),
        ThresholdStatus::Critical
    );
    assert_eq!(
        Reading::parse(&[0, 0xc0, 0x20]).unwrap().threshold_status(),
        ThresholdStatus::NonRecoverable
    );
    let psu = Reading::parse(&[0x00, 0xc0, 0x01, 0x00]).unwrap();
    assert_eq!(psu.states_lo & 1, 1, "presence detected");
    assert!(Reading::parse(&[0x00, 0xe0]).unwrap().unavailable);
    assert_eq!(Reading::parse(&[0x00]), None);
}

#[test]
fn id_strings_in_every_encoding() {
    assert_eq!(id_string(0xc4, b"Fan1"), "Fan1");
    // 6-bit packed "FAN3": F=0x26 A=0x21 N=0x2e 3=0x13 -> bytes 0x66 0xE8 0x4E.
    assert_eq!(id_string(0x83, &[0x66, 0xe8, 0x4e]), "FAN3");
    assert_eq!(id_string(0x42, &[0x12, 0xbc]), "12-.");
    assert_eq!(
        id_string(0xc9, b"CPU1"),
        "CPU1",
        "length past the end is clamped"
    );
}

#[test]
fn linearisation_signs_and_exponents() {
    let mut s = sensor(&repository(), "PSU1 Current");
    s.format = AnalogFormat::TwosComplement;
    assert_eq!(s.convert(0xff), Some(-0.1));
    s.b = -5;
    s.b_exp = 1;
    s.r_exp = 0;
    s.m = 2;
    assert_eq!(s.convert(30), Some(10.0), "2*30 + (-5)*10");
    s.linearization = 8;
    assert_eq!(s.convert(30), Some(100.0), "x^2");
    s.linearization = 1;
    s.b = 0;
    assert_eq!(s.convert(0), None, "ln 0 is not a reading");
    s.linearization = 0x70;
    assert_eq!(s.convert(1), None, "OEM non-linear");
}

#[test]
fn truncated_and_foreign_repositories_are_errors() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ipmi/ipmi_sim-bmc1.sdr"
    );
    let bytes = std::fs::read(p).unwrap();
    assert_eq!(parse_repository(&bytes[..30]), Err(SdrError::Truncated(23)));
    let mut v = bytes.clone();
    v[2] = 0x40;
    assert_eq!(
        parse_repository(&v),
        Err(SdrError::Version {
            at: 0,
            version: 0x40
        })
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(records) = parse_repository(&b) {
            for r in records {
                if let Record::Full(s) | Record::Compact(s) = r {
                    for x in [0u8, 1, 127, 128, 255] {
                        let _ = s.convert(x);
                    }
                }
            }
        }
        let _ = Reading::parse(&b);
    }
}

/// sdrcomp packs an all-capitals ID ("FAN2 12") as 6-bit ASCII; ipmitool and
/// FreeIPMI print it as garbage (TESTBEDS.md), the decoder must not.
#[test]
fn six_bit_packed_id_from_sdrcomp() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ipmi/ipmi_sim-6bit-id.sdr"
    );
    let records = parse_repository(&std::fs::read(p).unwrap()).unwrap();
    let fan2 = sensor(&records, "FAN2 12");
    assert_eq!(fan2.number, 4);
    assert_eq!(fan2.convert(0x34), Some(5200.0));
}
