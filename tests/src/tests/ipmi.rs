//! The agent's IPMI LAN client against OpenIPMI's `ipmi_sim` (a real RMCP+
//! BMC implementation): session with suite 3, SDR repository, readings that
//! match ipmitool's, values changed at run time through the simulator's
//! console, chassis power, wrong password and insecure suites refused.

use crate::{free_port, free_udp_port, repo_root, Proc};
use agent::transport::ipmi::{BmcClient, IpmiError, LanConfig};
use anyhow::Result;
use firmware_shims::ipmi::lan::{LanError, Privilege};
use firmware_shims::ipmi::sdr::{Record, ThresholdStatus};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

pub(crate) struct Bmc {
    _proc: Proc,
    pub(crate) addr: SocketAddr,
    pub(crate) console: u16,
    /// ipmi_sim's VM serial port (in-band KCS for a qemu guest).
    pub(crate) serial: u16,
    _dir: tempfile::TempDir,
}

pub(crate) fn start_bmc() -> Result<Bmc> {
    let kit = repo_root().join("tests/testbed/ipmi");
    let dir = tempfile::tempdir()?;
    let state = dir.path();
    std::fs::create_dir_all(state.join("ipmi_sim/bmc1"))?;
    let sdrs = Command::new("sh").arg(kit.join("gen-sdrs.sh")).output()?;
    anyhow::ensure!(sdrs.status.success(), "gen-sdrs.sh failed");
    std::fs::write(state.join("bmc1.sdrs"), &sdrs.stdout)?;
    let st = Command::new("sdrcomp")
        .arg("-o")
        .arg(state.join("ipmi_sim/bmc1/sdr.20.main"))
        .arg(state.join("bmc1.sdrs"))
        .status()?;
    anyhow::ensure!(
        st.success(),
        "sdrcomp failed (package openipmi; scripts/deps installs it)"
    );
    let (port, console, serial) = (free_udp_port(), free_port(), free_port());
    let subst = |name: &str| -> Result<String> {
        Ok(std::fs::read_to_string(kit.join(name))?
            .replace("@PORT@", &port.to_string())
            .replace("@CONSOLE@", &console.to_string())
            .replace("@SERIAL@", &serial.to_string())
            .replace("@TESTBED@", &kit.display().to_string())
            .replace("@KIT@/ipmi", &kit.display().to_string())
            .replace("@STATE@", &state.display().to_string()))
    };
    std::fs::write(state.join("lan.conf"), subst("lan.conf.in")?)?;
    std::fs::write(state.join("bmc1.emu"), subst("bmc1.emu.in")?)?;
    std::fs::write(state.join("exhaust_temp"), "31\n")?;
    let mut cmd = Command::new("ipmi_sim");
    cmd.arg("-c")
        .arg(state.join("lan.conf"))
        .arg("-f")
        .arg(state.join("bmc1.emu"))
        .arg("-s")
        .arg(state)
        .arg("-n");
    let mut proc = Proc::spawn_cmd("ipmi_sim", cmd, state.join("ipmi_sim.log"))?;
    std::thread::sleep(Duration::from_millis(300));
    proc.ensure_running()?;
    Ok(Bmc {
        _proc: proc,
        addr: format!("127.0.0.1:{port}").parse()?,
        console,
        serial,
        _dir: dir,
    })
}

fn cfg(user: &str, password: &str, suite: u8) -> LanConfig {
    LanConfig {
        user: user.into(),
        password: password.into(),
        privilege: Privilege::Administrator,
        cipher_suite: suite,
        timeout: Duration::from_millis(500),
        retries: 2,
    }
}

/// The `ipmi` collector's configuration for the test BMC ("node7").
fn collector_config(bmc: &Bmc) -> agent::collect::ipmi::Config {
    agent::collect::ipmi::Config {
        interval: Duration::from_secs(1),
        device: "node7".into(),
        interface: agent::collect::ipmi::Interface::Lan,
        target: bmc.addr.to_string(),
        path: "/dev/ipmi0".into(),
        user: "admin".into(),
        password: service::secret::Secret::inline("password"),
        privilege: "user".into(),
        cipher_suite: 3,
        timeout: Duration::from_millis(500),
        retries: 1,
        sel_lookback: Duration::from_secs(24 * 3600),
    }
}

/// The simulator's console speaks its emu command language, one per line.
pub(crate) fn console(port: u16, commands: &[&str]) -> Result<()> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    for c in commands {
        writeln!(s, "{c}")?;
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_sensors_over_rmcp_plus_like_ipmitool() -> Result<()> {
    let bmc = start_bmc()?;
    let mut c = BmcClient::lan(bmc.addr, cfg("admin", "password", 3)).await?;
    let records = c.sdr_repository().await?;
    assert!(matches!(&records[0], Record::McLocator { name, .. } if name == "Sim BMC"));
    let sensors: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Full(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let mut seen = Vec::new();
    for s in &sensors {
        let r = c.sensor_reading(s.number).await?;
        seen.push((s.name.clone(), s.convert(r.raw)));
    }
    for (name, want) in [
        ("CPU1 Temp", 45.0),
        ("Fan1", 5400.0),
        ("PSU1 Vout 12V", 12.1),
        ("PSU1 Current", 8.5),
        ("PSU1 Power", 256.0),
    ] {
        assert!(
            seen.contains(&(name.to_owned(), Some(want))),
            "{name}: {seen:?}"
        );
    }
    // A failing fan and an overheating CPU, set through the simulator's console.
    console(
        bmc.console,
        &[
            "sensor_set_value 0x20 0 1 97 1",
            "sensor_set_value 0x20 0 3 8 1",
        ],
    )?;
    let cpu = c.sensor_reading(1).await?;
    assert_eq!(cpu.raw, 97);
    assert_eq!(cpu.threshold_status(), ThresholdStatus::Critical);
    let fan = c.sensor_reading(3).await?;
    assert_eq!(
        (fan.raw, fan.threshold_status()),
        (8, ThresholdStatus::Critical)
    );
    assert!(c.power_on().await?);
    // With generate-event set, the crossings were logged in the SEL.
    let sel = c.sel_entries(0).await?;
    let text: Vec<String> = sel.iter().map(|e| e.describe()).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("sensor 1 ") && t.contains("upper critical going high")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("sensor 3 ") && t.contains("lower critical going low")),
        "{text:?}"
    );
    let last = sel.last().map_or(0, |e| e.record_id);
    assert!(
        c.sel_entries(last).await?.is_empty(),
        "nothing newer than the last entry"
    );
    let (added, _erased) = c.sdr_stamp().await?;
    assert!(added > 0, "SDR repository change stamp");
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_insecure_suites_are_refused() -> Result<()> {
    for suite in [0u8, 1, 2, 6] {
        let e = BmcClient::lan("127.0.0.1:9".parse()?, cfg("admin", "password", suite))
            .await
            .unwrap_err();
        assert!(
            matches!(e, IpmiError::Lan(LanError::InsecureSuite(s)) if s == suite),
            "{e}"
        );
    }
    let bmc = start_bmc()?;
    let mut c = BmcClient::lan(bmc.addr, cfg("admin", "wrongpass", 3)).await?;
    let e = c.sensor_reading(1).await.unwrap_err();
    assert!(
        matches!(
            e,
            IpmiError::Lan(LanError::BadKeyExchange | LanError::Refused(..))
        ),
        "a wrong password must fail the RAKP exchange: {e}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ipmi_collector_reports_sensors_psu_state_and_outages() -> Result<()> {
    use agent::collect::ipmi::{Config, IpmiCollector};
    use agent::collect::{Collector, Poll, Quality, Severity};
    let bmc = start_bmc()?;
    let config = collector_config(&bmc);
    config.validate().map_err(anyhow::Error::msg)?;
    assert!(Config {
        cipher_suite: 0,
        ..config.clone()
    }
    .validate()
    .unwrap_err()
    .contains("not allowed"));
    let value = |p: &Poll, metric: &str, component: &str| {
        p.readings
            .iter()
            .find(|r| r.series.metric == metric && r.series.component == component)
            .map(|r| (r.value, r.quality))
    };
    let mut c = IpmiCollector::new(config, None);
    let p = c.poll(0).await;
    assert!(p.faults.is_empty(), "{:?}", p.faults);
    assert_eq!(
        value(&p, "fan_speed_rpm", "node7/Fan1"),
        Some((5400.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, "voltage_volts", "node7/PSU1 Vout 12V"),
        Some((12.1, Quality::Ok))
    );
    assert_eq!(
        value(&p, "temperature_celsius", "node7/Exhaust Temp").map(|v| v.1),
        Some(Quality::Ok)
    );
    assert_eq!(
        value(&p, "psu_present", "node7/PSU1 Status"),
        Some((1.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, "psu_failed", "node7/PSU1 Status"),
        Some((0.0, Quality::Ok))
    );
    assert_eq!(
        value(&p, "chassis_power_on", "node7/chassis"),
        Some((1.0, Quality::Ok))
    );

    // PSU failure asserted on the BMC (sensor-specific offset 1).
    console(bmc.console, &["sensor_set_bit 0x20 0 8 1 1 1"])?;
    let p = c.poll(1).await;
    assert_eq!(
        value(&p, "psu_failed", "node7/PSU1 Status"),
        Some((1.0, Quality::Ok))
    );
    // The BMC logged it in its SEL: forwarded once, as a critical event.
    let failure = |p: &Poll| {
        p.events
            .iter()
            .filter(|e| {
                e.description
                    .contains("power supply failure detected asserted")
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let events = failure(&p);
    assert_eq!(events.len(), 1, "{:?}", p.events);
    assert_eq!(events[0].component, "node7/PSU1 Status");
    assert_eq!(events[0].severity, Severity::Critical);
    assert_eq!(events[0].source, "ipmi-sel");
    assert_eq!(events[0].attributes["sensor_type"], "0x08");
    assert_eq!(
        value(&p, "sel_new_entries", "node7/sel").map(|v| v.0),
        Some(p.events.len() as f64)
    );
    assert!(failure(&c.poll(1).await).is_empty(), "forwarded once");
    // An agent restarted afterwards forwards it again on its first poll
    // (within the lookback): nothing logged while it was down is lost.
    let mut restarted = IpmiCollector::new(collector_config(&bmc), None);
    assert_eq!(failure(&restarted.poll(2).await).len(), 1);
    assert_eq!(
        value(&p, "sensor_threshold_status", "node7/CPU1 Temp"),
        Some((0.0, Quality::Ok))
    );

    // The BMC disappears: its series turn unreadable, the agent carries on.
    drop(bmc);
    let p = c.poll(2).await;
    assert!(!p.readings.is_empty() && p.readings.iter().all(|r| r.quality == Quality::Unreadable));
    assert!(!p.faults.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hwprofile_names_components_and_reports_missing_sensors() -> Result<()> {
    use agent::collect::ipmi::IpmiCollector;
    use agent::collect::{Collector, Quality};
    let profiles = hwprofiles::load_dir(&repo_root().join("hwprofiles/profiles"))?;
    let mut profile = profiles
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| p.id == "openipmi/ipmi-sim")
        .expect("profile shipped");
    // A sensor this BMC does not have: reported, not fatal.
    let mut extra = profile.sensors[0].clone();
    extra.id = "cpu2_temp".into();
    extra.source = Some(hwprofiles::Source::Ipmi {
        sensor: "CPU2 Temp".into(),
    });
    profile.sensors.push(extra);
    let bmc = start_bmc()?;
    let mut c = IpmiCollector::new(collector_config(&bmc), Some(profile));
    let p = c.poll(0).await;
    let get = |metric: &str, component: &str| {
        p.readings
            .iter()
            .find(|r| r.series.metric == metric && r.series.component == component)
            .map(|r| (r.value, r.quality))
    };
    assert_eq!(
        get("cpu_temperature_celsius", "CPU1"),
        Some((45.0, Quality::Ok))
    );
    assert_eq!(
        get("psu_output_voltage_volts", "PSU1"),
        Some((12.1, Quality::Ok))
    );
    assert_eq!(get("fan_speed_rpm", "FAN2"), Some((5200.0, Quality::Ok)));
    assert_eq!(p.faults.len(), 1, "{:?}", p.faults);
    assert!(
        p.faults[0]
            .reason
            .contains("cpu2_temp (\"CPU2 Temp\") is not on the BMC"),
        "{:?}",
        p.faults
    );
    Ok(())
}

/// A sensor whose scanning the BMC reports disabled is unreadable (IPMI 2.0:
/// software must ignore it), unless the host's profile carries the
/// `ipmi_ignore_scanning_disabled` quirk (BMCs that set the bit wrongly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanning_disabled_sensors_follow_the_profile_quirk() -> Result<()> {
    use agent::collect::ipmi::IpmiCollector;
    use agent::collect::{Collector, Quality};
    let bmc = start_bmc()?;
    let profile = |quirks: &str| -> Result<hwprofiles::Profile> {
        let text = std::fs::read_to_string(
            repo_root().join("hwprofiles/profiles/servers/openipmi/ipmi-sim.toml"),
        )?;
        let text = text.replacen(
            "[[component]]",
            &format!("quirks = [{quirks}]\n\n[[component]]"),
            1,
        );
        Ok(hwprofiles::parse(&text, "ipmi-sim.toml")?)
    };
    let fan2 = |p: &agent::collect::Poll| {
        p.readings
            .iter()
            .find(|r| r.series.metric == "fan_speed_rpm" && r.series.component == "FAN2")
            .map(|r| (r.value, r.quality))
    };
    let mut strict = IpmiCollector::new(collector_config(&bmc), Some(profile("")?));
    assert_eq!(fan2(&strict.poll(0).await), Some((5200.0, Quality::Ok)));
    // Fan2 (sensor 4): events on, scanning off (ipmitool shows it "disabled", "ns").
    console(
        bmc.console,
        &["sensor_set_event_support 0x20 0 4 enable no-scanning per-state 000000000000000 000000000000000 000000000000000 000000000000000"],
    )?;
    let p = strict.poll(1).await;
    let (v, q) = fan2(&p).unwrap_or_else(|| panic!("FAN2 not reported: {:?}", p.faults));
    assert!(v.is_nan() && q == Quality::Unreadable, "{v} {q:?}");
    // Fan1 still reads: the bit is per sensor.
    assert!(p
        .readings
        .iter()
        .any(|r| r.series.component == "FAN1" && r.quality == Quality::Ok));
    let mut lenient = IpmiCollector::new(
        collector_config(&bmc),
        Some(profile("\"ipmi_ignore_scanning_disabled\"")?),
    );
    assert_eq!(fan2(&lenient.poll(0).await), Some((5200.0, Quality::Ok)));
    Ok(())
}
