use super::*;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/smartctl")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn report(name: &str) -> Report {
    match parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}")) {
        Outcome::Report(r) => *r,
        other => panic!("{name}: expected a report, got {other:?}"),
    }
}

fn attr(r: &Report, id: u8) -> &AtaAttribute {
    r.ata_attributes
        .iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("attribute {id}"))
}

#[test]
fn ata_attributes_identity_and_packed_raw_values() {
    let r = report("ata-seagate-exos-x16.json");
    assert_eq!(r.protocol, Protocol::Ata);
    assert_eq!(r.identity.model.as_deref(), Some("ST16000NM001G-2KK103"));
    assert_eq!(r.identity.wwn.as_deref(), Some("wwn-0x5000c500499602d2"));
    assert_eq!(
        r.identity.component_id().as_deref(),
        Some("disk:wwn-0x5000c500499602d2")
    );
    assert_eq!(
        (r.smart_passed, r.power_on_hours, r.temperature_c),
        (Some(true), Some(13114), Some(26.0))
    );
    // 194's raw.value packs min/max (98784247834); smartctl's string leads with 26.
    assert_eq!(attr(&r, 194).raw, 26);
    assert_eq!(attr(&r, 190).raw, 26);
    // 188 has no drivedb format: the whole 48-bit value, as Backblaze records it.
    assert_eq!(attr(&r, 188).raw, 51_540_393_996);
    let a5 = attr(&r, 5);
    assert_eq!(
        (a5.value, a5.worst, a5.thresh, a5.raw, a5.prefailure),
        (100, 100, 10, 0, true)
    );
    assert_eq!(
        attr(&r, 240).raw,
        12_523,
        "12523h+17m+08.635s reads as hours"
    );
    assert_eq!(r.exit, ExitStatus(0));
}

#[test]
fn error_log_and_failed_command_bits_come_with_the_report() {
    let r = report("ata-toshiba-mg05-error-log.json");
    assert!(r.exit.error_log_has_errors());
    assert_eq!(r.error_log_count, Some(2));
    assert_eq!(attr(&r, 9).raw, 37_603);
    assert_eq!(attr(&r, 194).raw, 24);
    let k = report("ata-kingston-sa400-exit4.json");
    assert!(k.exit.smart_command_failed() && !k.exit.disk_failing());
}

#[test]
fn nvme_health_log_and_eui64() {
    let r = report("nvme-micron-7300.json");
    assert_eq!(r.protocol, Protocol::Nvme);
    assert_eq!(
        r.identity.eui64.as_deref(),
        Some("nvme-eui.00a0750137589752")
    );
    let h = r.nvme.as_ref().unwrap();
    assert_eq!(
        (h.critical_warning, h.percentage_used, h.available_spare),
        (0, 0, 100)
    );
    assert_eq!(
        (h.media_errors, h.num_err_log_entries, h.temperature_c),
        (0, 1, Some(22))
    );
    assert_eq!(
        (r.power_on_hours, r.temperature_c, r.error_log_count),
        (Some(5100), Some(22.0), Some(1))
    );
    let s = report("nvme-samsung-pm9a3.json");
    let h = s.nvme.unwrap();
    assert_eq!(
        (
            h.percentage_used,
            h.unsafe_shutdowns,
            h.available_spare_threshold
        ),
        (3, 34, 10)
    );
}

#[test]
fn qemu_disks_decode_with_an_empty_self_test_log() {
    let r = report("ata-qemu.json");
    assert_eq!(r.identity.serial.as_deref(), Some("QM00005"));
    assert_eq!(
        r.self_test,
        Some(SelfTests {
            total: 0,
            failed: 0,
            last_passed: None
        })
    );
    assert!(r.identity.wwn.is_none());
    assert!(r.identity.component_id().is_some(), "model + serial");
    let n = report("nvme-qemu.json");
    assert_eq!(n.nvme.unwrap().critical_warning, 0);
}

#[test]
fn sleeping_disk_is_standby_not_an_error() {
    assert_eq!(
        parse(&fixture("standby.json")),
        Ok(Outcome::Standby {
            device: "/dev/sdb".into(),
            mode: "STANDBY".into()
        })
    );
}

#[test]
fn device_that_cannot_be_opened_is_a_clear_error() {
    let e = parse(&fixture("error-unable-to-detect.json")).unwrap_err();
    assert_eq!(
        e,
        SmartError::Failed {
            exit: 1,
            messages: vec!["/dev/vda: Unable to detect device type".into()]
        }
    );
    assert!(e.to_string().contains("Unable to detect device type"));
}

#[test]
fn scan_lists_devices_with_their_types() {
    let out = br#"{"json_format_version":[1,0],"smartctl":{"version":[7,3],"exit_status":0},
        "devices":[{"name":"/dev/sda","info_name":"/dev/sda [SAT]","type":"sat","protocol":"ATA"},
                   {"name":"/dev/nvme0","info_name":"/dev/nvme0","type":"nvme","protocol":"NVMe"}]}"#;
    assert_eq!(
        parse_scan(out).unwrap(),
        vec![
            ScanDevice {
                name: "/dev/sda".into(),
                kind: "sat".into()
            },
            ScanDevice {
                name: "/dev/nvme0".into(),
                kind: "nvme".into()
            },
        ]
    );
    // This machine's real answer: no devices.
    let none = br#"{"json_format_version":[1,0],"smartctl":{"version":[7,3],"svn_revision":"5338",
        "argv":["smartctl","-j","--scan-open"],"exit_status":0}}"#;
    assert_eq!(parse_scan(none).unwrap(), vec![]);
}

#[test]
fn not_smartctl_output_is_refused() {
    assert!(matches!(
        parse(b"Segmentation fault"),
        Err(SmartError::Json(_))
    ));
    assert_eq!(parse(b"{\"device\": {}}"), Err(SmartError::NotSmartctl));
}

#[test]
fn self_test_logs_count_failures_newest_first() {
    let ata = br#"{"smartctl":{"exit_status":128},"model_name":"X","ata_smart_self_test_log":{"standard":{"table":[
        {"status":{"value":121,"passed":false}},{"status":{"value":0,"passed":true}}]}}}"#;
    let Ok(Outcome::Report(r)) = parse(ata) else {
        panic!()
    };
    assert!(r.exit.self_test_log_has_errors());
    assert_eq!(
        r.self_test,
        Some(SelfTests {
            total: 2,
            failed: 1,
            last_passed: Some(false)
        })
    );
    let nvme = br#"{"smartctl":{"exit_status":0},"model_name":"N","nvme_self_test_log":{"table":[
        {"self_test_result":{"value":0}},{"self_test_result":{"value":7}},{"self_test_result":{"value":15}}]}}"#;
    let Ok(Outcome::Report(r)) = parse(nvme) else {
        panic!()
    };
    assert_eq!(
        r.self_test,
        Some(SelfTests {
            total: 2,
            failed: 1,
            last_passed: Some(true)
        })
    );
}

/// Every real output in the development data set decodes to a report with
/// the basics present.
#[test]
fn every_real_output_in_the_data_set_decodes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/smartctl");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("{} absent: skipped", dir.display());
        return;
    };
    let mut n = 0;
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let r = match parse(&std::fs::read(&p).unwrap()) {
            Ok(Outcome::Report(r)) => r,
            other => panic!("{}: {other:?}", p.display()),
        };
        assert!(r.identity.model.is_some(), "{}", p.display());
        assert!(r.power_on_hours.is_some(), "{}", p.display());
        match r.protocol {
            Protocol::Ata => assert!(!r.ata_attributes.is_empty(), "{}", p.display()),
            Protocol::Nvme => assert!(r.nvme.is_some(), "{}", p.display()),
            _ => panic!("{}: unexpected protocol", p.display()),
        }
        n += 1;
    }
    assert!(n >= 100, "only {n} files");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&b);
    }

    /// Damaged real output: truncated anywhere, it errors or decodes; never panics.
    #[test]
    fn truncated_real_output_never_panics(cut in 0usize..20_000) {
        let full = fixture("ata-seagate-exos-x16.json");
        let _ = parse(&full[..cut.min(full.len())]);
    }
}
