//! The collector against a stand-in `smartctl` (this machine has no disks):
//! a script that prints *real* smartctl JSON outputs per device and exits with
//! their real exit status, so the process, timeout and parsing paths are the
//! production ones.

use super::*;
use std::path::Path;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-shims/tests/data/smartctl")
}

/// A fake smartctl in `dir`: `dir/dev/<basename>` holds `FIXTURE EXIT`,
/// `hang` or `garbage`; every invocation's arguments go to `dir/calls`.
fn fake_smartctl(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    let script = dir.join("smartctl");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
D='{d}'
echo "$*" >> "$D/calls"
case "$*" in *--scan-open*) cat "$D/scan.json"; exit 0;; esac
for a in "$@"; do dev="$a"; done
spec=$(cat "$D/dev/$(basename "$dev")" 2>/dev/null) || {{ cat '{f}/error-unable-to-detect.json'; exit 1; }}
case "$spec" in
  hang) exec sleep 30;;
  garbage) echo 'Segmentation fault'; exit 139;;
esac
set -- $spec
cat '{f}'/"$1"; exit "$2"
"#,
            d = dir.display(),
            f = fixtures().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn set(dir: &Path, dev: &str, spec: &str) {
    std::fs::write(dir.join("dev").join(dev), spec).unwrap();
}

fn cfg(smartctl: PathBuf, devices: &[&str]) -> Config {
    Config {
        interval: Duration::from_secs(60),
        smartctl,
        devices: devices.iter().map(|d| (*d).to_owned()).collect(),
        ata_attributes: default_attributes(),
        timeout: Duration::from_millis(500),
    }
}

fn value(p: &Poll, component: &str, metric: &str, id: Option<&str>) -> Option<(f64, Quality)> {
    p.readings
        .iter()
        .find(|r| {
            r.series.component == component
                && r.series.metric == metric
                && r.series.labels.get("id").map(String::as_str) == id
        })
        .map(|r| (r.value, r.quality))
}

const SEAGATE: &str = "disk:wwn-0x5000c500499602d2";
const MICRON: &str = "disk:nvme-eui.00a0750137589752";

#[tokio::test]
async fn discovered_disks_are_read_by_stable_identity() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_smartctl(dir.path());
    std::fs::write(
        dir.path().join("scan.json"),
        r#"{"smartctl":{"exit_status":0},"devices":[
            {"name":"/dev/sda","type":"sat","protocol":"ATA"},
            {"name":"/dev/nvme0","type":"nvme","protocol":"NVMe"}]}"#,
    )
    .unwrap();
    set(dir.path(), "sda", "ata-seagate-exos-x16.json 0");
    set(dir.path(), "nvme0", "nvme-micron-7300.json 0");
    let mut c = SmartCollector::new(cfg(bin, &[]));
    let p = c.poll(0).await;
    assert!(p.faults.is_empty(), "{:?}", p.faults);
    assert_eq!(
        value(&p, SEAGATE, "smart_attribute_raw", Some("194")),
        Some((26.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, SEAGATE, "smart_attribute_raw", Some("5")),
        Some((0.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, SEAGATE, "smart_attribute_normalized", Some("5")),
        Some((100.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, SEAGATE, "smart_attribute_raw", Some("1")),
        None,
        "not configured"
    );
    assert_eq!(
        value(&p, SEAGATE, "disk_power_on_hours", None),
        Some((13114.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, MICRON, "nvme_percentage_used", None),
        Some((0.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, MICRON, "disk_temperature_celsius", None),
        Some((22.0, Quality::Ok))
    );
    // Both disks are inventory components, under the ids their series use.
    let seagate = p.components.iter().find(|c| c.id == SEAGATE).unwrap();
    assert_eq!(
        (seagate.kind.as_str(), seagate.power_on_hours),
        ("disk", 13114)
    );
    assert!(seagate.model.starts_with("ST16000NM"), "{seagate:?}");
    assert!(!seagate.serial.is_empty() && !seagate.firmware.is_empty());
    let micron = p.components.iter().find(|c| c.id == MICRON).unwrap();
    assert_eq!(micron.kind, "nvme");
    // Never wakes a sleeping disk; passes the scanned -d type along.
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    let reads: Vec<&str> = calls
        .lines()
        .filter(|l| !l.contains("--scan-open"))
        .collect();
    assert_eq!(reads.len(), 2);
    assert!(
        reads
            .iter()
            .all(|l| l.contains("--json") && l.contains("--nocheck=standby")),
        "{calls}"
    );
    assert!(reads[0].contains("--device sat /dev/sda"), "{calls}");
}

/// The host profile names attribute raw values; an attribute a disk lacks is
/// a fault naming the profile sensor (not fatal), and NVMe disks (no ATA
/// attributes) are not held to ATA sources.
#[tokio::test]
async fn profile_smart_sources_name_attributes_and_report_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_smartctl(dir.path());
    set(dir.path(), "sda", "ata-seagate-exos-x16.json 0");
    set(dir.path(), "nvme0", "nvme-micron-7300.json 0");
    let text = "vendor = \"acme\"\nmodel = \"x1\"\n\
        [[sensor]]\nid = \"realloc\"\nmetric = \"disk_reallocated_sectors\"\nkind = \"smart_attribute\"\nunit = \"count\"\ncomponent = \"DISKS\"\nsource = { protocol = \"smart\", attribute = 5 }\n\
        [[sensor]]\nid = \"helium\"\nmetric = \"disk_helium_level\"\nkind = \"smart_attribute\"\nunit = \"percent\"\ncomponent = \"DISKS\"\nsource = { protocol = \"smart\", attribute = 22 }\n";
    let profile = hwprofiles::parse(text, "acme.toml").unwrap();
    let mut c = SmartCollector::with_profile(cfg(bin, &["/dev/sda", "/dev/nvme0"]), Some(&profile));
    let p = c.poll(0).await;
    assert_eq!(
        value(&p, SEAGATE, "disk_reallocated_sectors", Some("5")),
        Some((0.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, SEAGATE, "smart_attribute_raw", Some("5")),
        None,
        "renamed"
    );
    assert_eq!(
        value(&p, SEAGATE, "smart_attribute_normalized", Some("5")),
        Some((100.0, Quality::Ok))
    );
    // Attribute 22 (helium) is not on this drive: reported once, for sda only.
    assert_eq!(p.faults.len(), 1, "{:?}", p.faults);
    assert_eq!(p.faults[0].sensor, "/dev/sda");
    assert!(
        p.faults[0].reason.contains("helium (SMART attribute 22)"),
        "{:?}",
        p.faults
    );
}

#[tokio::test]
async fn sleeping_failing_and_hung_disks_cost_only_their_own_readings() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_smartctl(dir.path());
    set(dir.path(), "sda", "ata-seagate-exos-x16.json 0");
    set(dir.path(), "sdb", "ata-toshiba-mg05-error-log.json 64");
    set(dir.path(), "nvme0", "nvme-micron-7300.json 0");
    let mut c = SmartCollector::new(cfg(bin, &["/dev/sda", "/dev/sdb", "/dev/nvme0"]));
    let first = c.poll(0).await;
    assert!(first.faults.is_empty(), "{:?}", first.faults);
    let n_sda = first
        .readings
        .iter()
        .filter(|r| r.series.component == SEAGATE)
        .count();
    // The error-log bit is data, not a failure.
    assert!(first
        .readings
        .iter()
        .any(|r| r.series.metric == "smart_error_log_entries" && r.value == 2.0));

    // sda falls asleep, sdb answers garbage, nvme0 hangs.
    set(dir.path(), "sda", "standby.json 2");
    set(dir.path(), "sdb", "garbage");
    set(dir.path(), "nvme0", "hang");
    let started = std::time::Instant::now();
    let second = c.poll(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the hung disk was not cut off"
    );
    let stale: Vec<_> = second
        .readings
        .iter()
        .filter(|r| r.series.component == SEAGATE)
        .collect();
    assert_eq!(stale.len(), n_sda);
    assert!(stale
        .iter()
        .all(|r| r.quality == Quality::Stale && r.value.is_nan()));
    let reasons: Vec<(&str, &str)> = second
        .faults
        .iter()
        .map(|f| (f.sensor.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].0 == "/dev/sdb" && reasons[0].1.contains("not smartctl JSON"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == "/dev/nvme0" && reasons[1].1.contains("timed out"),
        "{reasons:?}"
    );
    assert_eq!(
        value(&second, MICRON, "nvme_percentage_used", None).map(|v| v.1),
        Some(Quality::Unreadable)
    );
}

#[tokio::test]
async fn missing_smartctl_and_unknown_devices_are_faults() {
    let mut c = SmartCollector::new(cfg("/nonexistent/smartctl".into(), &["/dev/sda"]));
    let p = c.poll(0).await;
    assert!(p.readings.is_empty());
    assert!(
        p.faults[0].reason.contains("running /nonexistent/smartctl"),
        "{:?}",
        p.faults
    );

    let dir = tempfile::tempdir().unwrap();
    let mut c = SmartCollector::new(cfg(fake_smartctl(dir.path()), &["/dev/vda"]));
    let p = c.poll(0).await;
    assert!(
        p.faults[0].reason.contains("Unable to detect device type"),
        "{:?}",
        p.faults
    );
}

#[test]
fn config_is_validated() {
    let c: Config = toml::from_str("devices = [\"sda\"]").unwrap();
    assert!(c.validate().unwrap_err().contains("absolute"));
    assert!(
        toml::from_str::<Config>("device = [\"/dev/sda\"]").is_err(),
        "unknown key"
    );
    let c: Config = toml::from_str("").unwrap();
    assert_eq!(
        (c.interval, c.ata_attributes.len()),
        (Duration::from_secs(600), 8)
    );
}
