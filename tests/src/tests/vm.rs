//! The agent on a real Linux kernel with real device drivers: a throw-away
//! qemu guest (TCG) boots Debian's kernel with the agent in its initramfs
//! (tests/testbed/vm) and runs
//!
//! - in-band IPMI through `/dev/ipmi0` (`ipmi_si` KCS → the same `ipmi_sim`
//!   the LAN tests use, over its VM serial port);
//! - a TMP75 and a PMBus PSU on `i2c-stub`, an SMBus-only adapter (so the
//!   agent's SMBus path, not `I2C_RDWR`);
//! - real `smartctl` on QEMU's NVMe (critical warning 4 set) and AHCI disks,
//!   found by `--scan-open`.
//!
//! The host kernel has neither IPMI, I2C nor disk drivers, so this is the
//! only place these paths meet a kernel. Needs `qemu-system-x86`,
//! `busybox-static`, `i2c-tools` and the kernel under `.testbed/vm/kroot`
//! (`scripts/deps` fetches all of them).

use super::ipmi::{console, start_bmc};
use crate::{bin, repo_root};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::process::Command;

/// The lines between `=== NAME-BEGIN` and `=== NAME-END` of the console.
fn section<'a>(out: &'a str, name: &str) -> Result<Vec<&'a str>> {
    let begin = format!("=== {name}-BEGIN");
    let end = format!("=== {name}-END");
    let from = out
        .find(&begin)
        .with_context(|| format!("no {begin} in the guest console:\n{out}"))?;
    let to = out[from..]
        .find(&end)
        .with_context(|| format!("no {end} in the guest console:\n{out}"))?;
    Ok(out[from + begin.len()..from + to]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Boot the guest once against `serial` (ipmi_sim's VM port); its console.
fn boot_guest(serial: u16) -> Result<String> {
    let kit = repo_root().join("tests/testbed/vm");
    let kroot = repo_root().join(".testbed/vm/kroot");
    ensure!(
        kroot.join("boot").is_dir(),
        "{} missing: run scripts/deps (it fetches the guest kernel)",
        kroot.display()
    );
    let work = tempfile::tempdir()?;
    let initrd = work.path().join("initramfs.gz");
    let st = Command::new(kit.join("initramfs.sh"))
        .arg(&kroot)
        .arg(bin("umbra-agent"))
        .arg(&initrd)
        .status()?;
    ensure!(st.success(), "initramfs.sh failed");
    let out = Command::new(kit.join("run.sh"))
        .arg(&kroot)
        .arg(&initrd)
        .arg(serial.to_string())
        .arg(work.path())
        .output()
        .context("qemu-system-x86_64 (scripts/deps installs it)")?;
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    ensure!(
        out.status.success(),
        "guest run failed ({}): {}\n{console}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(console)
}

/// `probe` lines → (collector, metric, component, label string) → (value, quality).
fn probe_values(lines: &[&str]) -> BTreeMap<(String, String, String, String), (f64, String)> {
    let mut m = BTreeMap::new();
    for l in lines {
        // collector metric component... value quality labels; components may hold spaces.
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() < 5 || f[0] == "FAULT" || l.starts_with("rc=") {
            continue;
        }
        let labels_last = f[f.len() - 1].contains('=') || f[f.len() - 1].is_empty();
        let (labels, rest) = if labels_last {
            (f[f.len() - 1], &f[..f.len() - 1])
        } else {
            ("", &f[..])
        };
        let n = rest.len();
        let Ok(value) = rest[n - 2].parse::<f64>() else {
            continue;
        };
        m.insert(
            (
                rest[0].to_owned(),
                rest[1].to_owned(),
                rest[2..n - 2].join(" "),
                labels.to_owned(),
            ),
            (value, rest[n - 1].to_owned()),
        );
    }
    m
}

#[test]
fn agent_reads_in_band_ipmi_smbus_chips_and_real_smartctl_in_a_guest() -> Result<()> {
    let bmc = start_bmc()?;
    // Changed before boot through the simulator's console: the guest must
    // see the BMC's current state, not the SDR defaults.
    console(bmc.console, &["sensor_set_value 0x20 0 1 97 1"])?;
    let out = boot_guest(bmc.serial)?;

    // In-band sensor list == the same list over RMCP+ from the host.
    let inband = section(&out, "UMBRA-SENSORS")?;
    assert_eq!(inband.last(), Some(&"rc=0"), "{inband:?}");
    let lan = Command::new(bin("umbra-agent"))
        .args(["ipmi-sensors", &bmc.addr.to_string(), "-U", "admin"])
        .args(["-P", "password"])
        .output()?;
    ensure!(lan.status.success(), "{lan:?}");
    let lan = String::from_utf8(lan.stdout)?;
    let lan: Vec<&str> = lan.lines().collect();
    assert_eq!(&inband[..inband.len() - 1], &lan[..]);
    assert!(lan.contains(&"CPU1 Temp | 97 | 1 | Critical"), "{lan:?}");

    let probe = section(&out, "UMBRA-PROBE")?;
    assert_eq!(probe.last(), Some(&"rc=0"), "{probe:?}");
    let faults: Vec<_> = probe.iter().filter(|l| l.starts_with("FAULT")).collect();
    assert!(faults.is_empty(), "{faults:?}");
    let v = probe_values(&probe);
    let get = |c: &str, m: &str, comp: &str, labels: &str| {
        v.get(&(c.into(), m.into(), comp.into(), labels.into()))
            .map(|(x, q)| (*x, q.as_str()))
    };

    // The in-band ipmi collector: every SDR sensor, the PSU's discrete state,
    // chassis power.
    let bmc_labels = |n: u8| format!("bmc=bmc,sensor_number={n}");
    assert_eq!(
        get(
            "ipmi",
            "temperature_celsius",
            "bmc/CPU1 Temp",
            &bmc_labels(1)
        ),
        Some((97.0, "Ok"))
    );
    assert_eq!(
        get("ipmi", "fan_speed_rpm", "bmc/Fan1", &bmc_labels(3)),
        Some((5400.0, "Ok"))
    );
    assert_eq!(
        get("ipmi", "psu_present", "bmc/PSU1 Status", &bmc_labels(8)),
        Some((1.0, "Ok"))
    );
    assert_eq!(
        get("ipmi", "chassis_power_on", "bmc/chassis", "bmc=bmc"),
        Some((1.0, "Ok"))
    );

    // SMBus-only adapter: the register values init wrote with i2cset,
    // decoded by the TMP75 and PMBus drivers.
    let tmp = "address=0x48,bus=/dev/i2c-0";
    let psu = "address=0x58,bus=/dev/i2c-0";
    assert_eq!(
        get("i2c", "temperature_celsius", "INLET", tmp),
        Some((27.5, "Ok"))
    );
    for (metric, want) in [
        ("psu_input_voltage_volts", 120.25),
        ("psu_input_current_amps", 9.0),
        ("psu_input_power_watts", 1456.0),
        ("psu_output_voltage_volts", 12.0),
        ("psu_output_current_amps", 44.0),
        ("psu_output_power_watts", 1056.0),
        ("psu_temperature_celsius", 35.0),
        ("psu_fan_speed_rpm", 4800.0),
        ("psu_power_good", 0.0),
    ] {
        assert_eq!(
            get("i2c", metric, "PSU1", psu),
            Some((want, "Ok")),
            "{metric}"
        );
    }

    // Real smartctl on emulated disks, keyed by model+serial (QEMU gives no WWN).
    let nvme = "disk:QEMU_NVMe_Ctrl_UMBRANVME01";
    let sata = "disk:UMBRA-TESTDISK_UMBRASATA01";
    assert_eq!(
        get("smart", "nvme_critical_warning", nvme, ""),
        Some((4.0, "Ok"))
    );
    assert_eq!(
        get("smart", "smart_health_passed", nvme, ""),
        Some((0.0, "Ok"))
    );
    assert_eq!(
        get("smart", "smart_health_passed", sata, ""),
        Some((1.0, "Ok"))
    );
    assert_eq!(
        get("smart", "smart_attribute_raw", sata, "id=9").map(|(_, q)| q),
        Some("Ok")
    );
    Ok(())
}
