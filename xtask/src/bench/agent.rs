//! `cargo xtask bench agent [SECONDS]`: the agent's footprint at 1 Hz over
//! 200 sensors (a generated 200-sensor `sim` profile, streaming to a real
//! coordinator) against Debian's `prometheus-node-exporter` scraped once a
//! second on the same host: peak RSS, and CPU time per sample (per metric
//! sample exposed per scrape for node_exporter).

use super::proc::{wait_for, Peer};
use super::vm::Conn;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SENSORS: usize = 200;

fn profile() -> String {
    let mut p = String::from(
        "vendor = \"bench\"\nmodel = \"sensors-200\"\ndescription = \"200 simulated sensors\"\n\n",
    );
    for c in 0..20 {
        let _ = write!(p, "[[component]]\nid = \"C{c}\"\nkind = \"fan\"\n\n");
    }
    for i in 0..SENSORS {
        let _ = write!(
            p,
            "[[sensor]]\nid = \"s{i}\"\nmetric = \"bench_temperature_celsius\"\nkind = \"temperature\"\n\
             unit = \"celsius\"\ncomponent = \"C{}\"\n\
             sim = {{ nominal = 40.0, noise = 0.5, amplitude = 5.0, period = \"1h\", resolution_digits = 1 }}\n\n",
            i % 20
        );
    }
    p
}

pub fn run(root: &Path, seconds: u64, fsync: bool) -> Result<String> {
    super::build_release(root, &["-p", "coordinator", "--bins"])?;
    // The agent as it is packaged: the size-optimised `agent-release` profile.
    super::build_profile(
        root,
        "agent-release",
        &["-p", "agent", "--bin", "umbra-agent"],
    )?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    std::fs::create_dir_all(dir.join("profiles"))?;
    std::fs::write(dir.join("profiles/sensors-200.toml"), profile())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(
        dir.join("coordinator.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[tls]\ninsecure_plaintext = true\n[storage]\ndata_dir = \"{}\"\nsync_writes = false\n",
            dir.join("data").display()
        ),
    )?;
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "host_id = \"bench\"\nhwprofile = \"bench/sensors-200\"\nhwprofiles_dir = \"{}\"\nstate_dir = \"{}\"\n\
             [coordinator]\nurl = \"http://127.0.0.1:{port}\"\ninsecure_plaintext = true\n\
             [spool]\nfsync = {fsync}\n\
             [[collector]]\nprotocol = \"sim\"\ninterval = \"1s\"\n",
            dir.join("profiles").display(),
            dir.join("agent").display()
        ),
    )?;
    let _coord = Peer::spawn(
        "umbra-coordinator",
        Command::new(root.join("target/release/umbra-coordinator"))
            .arg("-c")
            .arg(dir.join("coordinator.toml"))
            .env("UMBRA_LOG", "warn"),
        &dir.join("coordinator.log"),
    )?;
    wait_for("coordinator", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    let agent_bin = root.join("target/agent-release/umbra-agent");
    let agent = Peer::spawn(
        "umbra-agent",
        Command::new(&agent_bin)
            .arg("-c")
            .arg(dir.join("agent.toml"))
            .env("UMBRA_LOG", "warn"),
        &dir.join("agent.log"),
    )?;
    std::thread::sleep(Duration::from_secs(3)); // start-up and first connection
    let (cpu0, fine0) = (agent.cpu_s()?, agent.cpu_s_fine()?);
    std::thread::sleep(Duration::from_secs(seconds));
    let (agent_ticks, agent_cpu) = (agent.cpu_s()? - cpu0, agent.cpu_s_fine()? - fine0);
    check_fine("umbra-agent", agent_ticks, agent_cpu)?;
    let agent_rss = agent.peak_rss()?;
    agent.stop()?;
    let st = Command::new(&agent_bin)
        .arg("-c")
        .arg(dir.join("agent.toml"))
        .arg("spool-status")
        .output()?;
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).context("spool-status")?;
    let produced = st["produced_samples"]
        .as_u64()
        .context("produced_samples")?;
    // The samples of the measured window only: 200 per second.
    #[allow(clippy::cast_precision_loss)]
    let agent_samples = (SENSORS as u64 * seconds) as f64;
    if produced < SENSORS as u64 * seconds {
        bail!("the agent produced only {produced} samples");
    }

    let nport = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let ne = Peer::spawn(
        "node_exporter",
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{nport}")),
        &dir.join("node_exporter.log"),
    )?;
    wait_for("node_exporter", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", nport)).is_ok()
    })?;
    let mut conn = Conn::open(nport)?;
    let scrape = |c: &mut Conn| -> Result<u64> {
        let (status, body) = c.request("GET", "/metrics", b"")?;
        if status != 200 {
            bail!("node_exporter: HTTP {status}");
        }
        Ok(body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .count() as u64)
    };
    scrape(&mut conn)?; // warm-up
    let (cpu0, fine0) = (ne.cpu_s()?, ne.cpu_s_fine()?);
    let start = Instant::now();
    let mut ne_samples = 0u64;
    for i in 0..seconds {
        ne_samples += scrape(&mut conn)?;
        let next = Duration::from_secs(i + 1);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let (ne_ticks, ne_cpu) = (ne.cpu_s()? - cpu0, ne.cpu_s_fine()? - fine0);
    check_fine("node_exporter", ne_ticks, ne_cpu)?;
    let ne_rss = ne.peak_rss()?;
    #[allow(clippy::cast_precision_loss)]
    let (a_per, n_per) = (
        agent_cpu / agent_samples * 1e6,
        ne_cpu / ne_samples as f64 * 1e6,
    );
    let mib = |b: u64| {
        #[allow(clippy::cast_precision_loss)]
        let f = b as f64;
        f / 1048576.0
    };
    Ok(format!(
        "{seconds} s at 1 Hz. umbra-agent: {SENSORS} sim sensors, streaming to a local coordinator \
         (spool on disk, fsync of unacknowledged batches: {fsync}). node_exporter: Debian defaults, scraped once a second.\n\n\
         CPU from /proc/PID/task/*/schedstat (ns); in 10 ms ticks from /proc/PID/stat: \
         agent {agent_ticks:.2} s, node_exporter {ne_ticks:.2} s.\n\n\
         | process | peak RSS MiB | CPU s | samples | CPU µs/sample |\n|---|---:|---:|---:|---:|\n\
         | umbra-agent | {:.1} | {agent_cpu:.3} | {agent_samples:.0} | {a_per:.2} |\n\
         | prometheus-node-exporter | {:.1} | {ne_cpu:.3} | {ne_samples} | {n_per:.2} |\n\n\
         ratios (Umbra / node_exporter): RSS **{:.2}x**, CPU per sample **{:.2}x**\n",
        mib(agent_rss),
        mib(ne_rss),
        mib(agent_rss) / mib(ne_rss),
        a_per / n_per
    ))
}

/// The fine (per-thread) CPU time misses threads that exited during the
/// window; refuse a result where it falls short of the tick count by more
/// than the ticks' own resolution.
fn check_fine(name: &str, ticks: f64, fine: f64) -> Result<()> {
    if fine + 0.02 < ticks {
        bail!("{name}: per-thread CPU {fine:.3} s < {ticks:.2} s from /proc/PID/stat (threads exited?)");
    }
    Ok(())
}
