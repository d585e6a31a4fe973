//! `cargo xtask bench ipmi`: a full sensor sweep of OpenIPMI's `ipmi_sim` over
//! RMCP+ (cipher suite 3): the agent's client (`umbra-agent ipmi-sensors`,
//! release build: session, SDR repository, every reading) against
//! `ipmitool sdr list` and FreeIPMI `ipmi-sensors` (with its SDR cache, as it
//! runs normally), alternating runs, whole-process wall time.

use super::proc::{wait_for, Peer};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::{Command, Stdio};

pub fn run(root: &Path, rounds: usize) -> Result<String> {
    super::build_release(root, &["-p", "agent", "--bin", "umbra-agent"])?;
    let agent = root.join("target/release/umbra-agent");
    let kit = root.join("tests/testbed/ipmi");
    let work = tempfile::tempdir()?;
    let state = work.path();
    std::fs::create_dir_all(state.join("ipmi_sim/bmc1"))?;
    let sdrs = Command::new("sh").arg(kit.join("gen-sdrs.sh")).output()?;
    std::fs::write(state.join("bmc1.sdrs"), &sdrs.stdout)?;
    if !Command::new("sdrcomp")
        .arg("-o")
        .arg(state.join("ipmi_sim/bmc1/sdr.20.main"))
        .arg(state.join("bmc1.sdrs"))
        .status()?
        .success()
    {
        bail!("sdrcomp failed (scripts/deps installs openipmi)");
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let console = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let serial = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let subst = |name: &str| -> Result<String> {
        Ok(std::fs::read_to_string(kit.join(name))?
            .replace("@PORT@", &port.to_string())
            .replace("@CONSOLE@", &console.to_string())
            .replace("@SERIAL@", &serial.to_string())
            .replace("@TESTBED@", &kit.display().to_string())
            .replace("@STATE@", &state.display().to_string()))
    };
    std::fs::write(state.join("lan.conf"), subst("lan.conf.in")?)?;
    std::fs::write(state.join("bmc1.emu"), subst("bmc1.emu.in")?)?;
    std::fs::write(state.join("exhaust_temp"), "31\n")?;
    let _bmc = Peer::spawn(
        "ipmi_sim",
        Command::new("ipmi_sim")
            .arg("-c")
            .arg(state.join("lan.conf"))
            .arg("-f")
            .arg(state.join("bmc1.emu"))
            .arg("-s")
            .arg(state)
            .arg("-n"),
        &state.join("ipmi_sim.log"),
    )?;
    let target = format!("127.0.0.1:{port}");
    let p = port.to_string();
    let ipmitool = || {
        let mut c = Command::new("ipmitool");
        c.args([
            "-I",
            "lanplus",
            "-C",
            "3",
            "-H",
            "127.0.0.1",
            "-p",
            &p,
            "-U",
            "admin",
            "-P",
            "password",
            "sdr",
            "list",
        ]);
        c
    };
    wait_for("ipmi_sim", std::time::Duration::from_secs(20), || {
        ipmitool()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })?;
    let cache = state.join("freeipmi-cache");
    std::fs::create_dir_all(&cache)?;
    let ours = || {
        let mut c = Command::new(&agent);
        c.args([
            "ipmi-sensors",
            &target,
            "-U",
            "admin",
            "-P",
            "password",
            "--cipher-suite",
            "3",
        ]);
        c
    };
    let freeipmi = || {
        let mut c = Command::new("ipmi-sensors");
        c.args([
            "-h",
            &target,
            "-u",
            "admin",
            "-p",
            "password",
            "-l",
            "USER",
            "--driver-type=LAN_2_0",
            "-W",
            "opensesspriv",
            "-I",
            "3",
        ])
        .arg(format!("--sdr-cache-directory={}", cache.display()));
        c
    };
    let n = super::output_lines(ours())?;
    let n_ipmitool = super::output_lines(ipmitool())?;
    let n_freeipmi = super::output_lines(freeipmi())?.saturating_sub(1); // header line
    if n != n_ipmitool || n != n_freeipmi {
        bail!("sensor counts differ: umbra {n}, ipmitool {n_ipmitool}, ipmi-sensors {n_freeipmi}");
    }
    let (mut a, mut b, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(super::wall_time(ours())?);
        b.push(super::wall_time(ipmitool())?);
        f.push(super::wall_time(freeipmi())?);
    }
    let (ma, mb, mf) = (
        super::median(&mut a),
        super::median(&mut b),
        super::median(&mut f),
    );
    Ok(format!(
        "Full sensor sweep of ipmi_sim over RMCP+ (suite 3, {n} sensors, session + SDR + readings), \
         median of {rounds} alternating runs, wall time per sweep:\n\n\
         | client | median s |\n|---|---:|\n| umbra-agent ipmi-sensors | {ma:.3} |\n\
         | ipmitool sdr list | {mb:.3} |\n| FreeIPMI ipmi-sensors (SDR cached) | {mf:.3} |\n\n\
         ratio Umbra / FreeIPMI: **{:.2}x**; Umbra / ipmitool: **{:.2}x** the wall time\n",
        ma / mf,
        ma / mb
    ))
}
