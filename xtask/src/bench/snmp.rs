//! `cargo xtask bench snmp`: an IF-MIB walk of a real switch dump (snmpsim
//! serving snmpsim-data's Cisco Nexus 5000) by the agent's SNMP client
//! (`umbra-agent snmpwalk`, release build) against net-snmp's `snmpbulkwalk`,
//! same peer, same subtree, same max-repetitions, alternating runs.

use super::proc::{wait_for, Peer};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ROOT: &str = "1.3.6.1.2.1.2.2";
const COMMUNITY: &str = "cisco-n5000";

pub fn run(root: &Path, rounds: usize) -> Result<String> {
    super::build_release(root, &["-p", "agent", "--bin", "umbra-agent"])?;
    let agent = root.join("target/release/umbra-agent");
    let responder = root.join(".testbed/venv/bin/snmpsim-command-responder");
    let data = root.join(".testbed/snmp/data");
    if !responder.exists() || !data.join("cisco-n5000.snmprec.bz2").exists() {
        bail!("snmpsim or its data missing: run scripts/deps, then `cargo nextest run -p tests snmp` once");
    }
    let work = tempfile::tempdir()?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let target = format!("127.0.0.1:{port}");
    let _sim = Peer::spawn(
        "snmpsim",
        Command::new(&responder)
            .env("SNMPSIM_ALLOW_ROOT", "true")
            .arg(format!(
                "--cache-dir={}",
                root.join(".testbed/snmp/cache").display()
            ))
            .arg("--log-level=error")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--agent-udpv4-endpoint={target}")),
        &work.path().join("snmpsim.log"),
    )?;
    wait_for("snmpsim", Duration::from_secs(60), || {
        Command::new("snmpget")
            .args([
                "-v2c",
                "-c",
                COMMUNITY,
                "-t",
                "0.3",
                "-r",
                "0",
                &target,
                "1.3.6.1.2.1.1.1.0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })?;
    let ours = || {
        let mut c = Command::new(&agent);
        c.args([
            "snmpwalk",
            &target,
            ROOT,
            "--community",
            COMMUNITY,
            "--max-repetitions",
            "25",
        ]);
        c
    };
    let theirs = || {
        let mut c = Command::new("snmpbulkwalk");
        c.args([
            "-v2c", "-c", COMMUNITY, "-On", "-Cr25", "-t", "5", "-r", "1", &target, ROOT,
        ]);
        c
    };
    // Same number of rows from both, or the comparison means nothing.
    let (n_ours, n_theirs) = (super::output_lines(ours())?, super::output_lines(theirs())?);
    if n_ours != n_theirs {
        bail!("row counts differ: umbra {n_ours}, snmpbulkwalk {n_theirs}");
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(super::wall_time(ours())?);
        b.push(super::wall_time(theirs())?);
    }
    let (ma, mb) = (super::median(&mut a), super::median(&mut b));
    Ok(format!(
        "IF-MIB ifTable walk ({n_ours} varbinds, {COMMUNITY} dump on snmpsim, max-repetitions 25), \
         median of {rounds} alternating runs, wall time per walk:\n\n\
         | client | median s |\n|---|---:|\n| umbra-agent snmpwalk | {ma:.3} |\n| snmpbulkwalk | {mb:.3} |\n\n\
         ratio (Umbra / snmpbulkwalk): **{:.2}x** the wall time\n",
        ma / mb
    ))
}
