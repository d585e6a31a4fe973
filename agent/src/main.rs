//! umbra-agent: parse args, init tracing, load + validate config, run.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Exit status for an invalid configuration (sysexits EX_USAGE).
const EXIT_CONFIG: i32 = 64;

#[derive(Parser)]
#[command(
    name = "umbra-agent",
    version,
    about = "Umbra host agent: hardware telemetry with a durable spool"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/umbra/agent.toml",
        env = "UMBRA_AGENT_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Collect and stream (the default).
    Run,
    /// Check the configuration and exit (0 = valid, 64 = invalid).
    Validate,
    /// Poll every configured collector once and print what it read:
    /// `collector metric component value quality` lines, then `FAULT` lines
    /// (exit 0 even with faults; they are the point of a probe).
    Probe,
    /// Print the spool's accounting as JSON (refuses while an agent runs).
    SpoolStatus,
    /// Walk an SNMP subtree with the agent's own v2c client (no config
    /// needed): `OID = value` lines, for checking a device before adding it.
    Snmpwalk {
        /// host:port of the SNMP agent.
        target: String,
        /// Subtree root, numeric (e.g. 1.3.6.1.2.1.2.2).
        oid: String,
        #[arg(long, default_value = "public")]
        community: String,
        #[arg(long, default_value_t = 25)]
        max_repetitions: u32,
    },
    /// Read every sensor of a BMC with the agent's own IPMI client, over LAN
    /// (RMCP+) or in-band: `name | value | unit-code | status` lines.
    IpmiSensors {
        /// host:port of the BMC, or a device path such as /dev/ipmi0 for the
        /// host's own BMC in-band.
        target: String,
        /// User (LAN only).
        #[arg(long, short = 'U', default_value = "")]
        user: String,
        /// Password (LAN only; or set UMBRA_IPMI_PASSWORD).
        #[arg(long, short = 'P', env = "UMBRA_IPMI_PASSWORD", default_value = "")]
        password: String,
        /// Cipher suite: 3 or 17.
        #[arg(long, default_value_t = 3)]
        cipher_suite: u8,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UMBRA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(Command::IpmiSensors {
        target,
        user,
        password,
        cipher_suite,
    }) = &cli.command
    {
        return ipmi_sensors(target, user, password, *cipher_suite);
    }
    if let Some(Command::Snmpwalk {
        target,
        oid,
        community,
        max_repetitions,
    }) = &cli.command
    {
        return snmpwalk(target, oid, community, *max_repetitions);
    }
    let config = match agent::config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("umbra-agent: invalid configuration: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => {
            println!(
                "{}: ok ({} collectors, profile {})",
                cli.config.display(),
                config.collectors.len(),
                config.profile.id
            );
            Ok(())
        }
        Command::Probe => {
            use std::io::Write;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            let polls = rt.block_on(agent::probe(&config));
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for (name, poll) in &polls {
                for r in &poll.readings {
                    let labels: Vec<String> = r
                        .series
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    writeln!(
                        out,
                        "{name} {} {} {} {:?} {}",
                        r.series.metric,
                        r.series.component,
                        r.value,
                        r.quality,
                        labels.join(",")
                    )?;
                }
            }
            for (name, poll) in &polls {
                for f in &poll.faults {
                    writeln!(out, "FAULT {name} {}: {}", f.sensor, f.reason)?;
                }
            }
            Ok(())
        }
        Command::SpoolStatus => {
            let s = agent::spool::inspect(&config.spool_dir(), config.spool.clone())?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(())
        }
        Command::Snmpwalk { .. } | Command::IpmiSensors { .. } => {
            unreachable!("handled before loading the configuration")
        }
        Command::Run => {
            // One thread: the agent's work is a few small polls a second and
            // one gRPC stream; a multi-threaded runtime cost more in thread
            // hand-offs (context switches were ~11% of its CPU) than it
            // saved. Blocking device I/O still goes to the blocking pool.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            rt.block_on(agent::run(config, shutdown_signal()))
                .context("umbra-agent")
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

fn snmpwalk(target: &str, oid: &str, community: &str, max_repetitions: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(target)
        .with_context(|| format!("target {target:?}"))?
        .next()
        .with_context(|| format!("target {target:?} resolves to nothing"))?;
    let root = oid
        .parse()
        .map_err(|e| anyhow::anyhow!("OID {oid:?}: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = rt.block_on(async {
        let cfg = agent::transport::snmp::ClientConfig {
            community: community.to_owned(),
            max_repetitions,
            ..Default::default()
        };
        agent::transport::snmp::SnmpClient::new(addr, cfg)
            .await?
            .walk(&root)
            .await
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (o, v) in rows {
        writeln!(out, "{o} = {v:?}")?;
    }
    Ok(())
}

fn ipmi_sensors(target: &str, user: &str, password: &str, cipher_suite: u8) -> anyhow::Result<()> {
    use agent::transport::ipmi::{BmcClient, LanConfig};
    use firmware_shims::ipmi::lan::Privilege;
    use firmware_shims::ipmi::sdr::Record;
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lines = rt.block_on(async {
        let timeout = std::time::Duration::from_secs(1);
        let mut c = if target.starts_with('/') {
            BmcClient::open(std::path::Path::new(target), timeout * 5)?
        } else {
            anyhow::ensure!(!user.is_empty(), "IPMI over LAN needs --user");
            let addr = std::net::ToSocketAddrs::to_socket_addrs(target)
                .with_context(|| format!("target {target:?}"))?
                .next()
                .with_context(|| format!("target {target:?} resolves to nothing"))?;
            let cfg = LanConfig {
                user: user.to_owned(),
                password: password.to_owned(),
                privilege: Privilege::User,
                cipher_suite,
                timeout,
                retries: 2,
            };
            BmcClient::lan(addr, cfg).await?
        };
        let mut lines = Vec::new();
        for r in c.sdr_repository().await? {
            if let Record::Full(s) | Record::Compact(s) = r {
                let reading = c.sensor_reading(s.number).await?;
                let value = s.convert(reading.raw).map_or_else(
                    || format!("0x{:02x}", reading.states_lo),
                    |v| format!("{v}"),
                );
                lines.push(format!(
                    "{} | {value} | {} | {:?}",
                    s.name,
                    s.base_unit,
                    reading.threshold_status()
                ));
            }
        }
        c.close().await;
        anyhow::Ok(lines)
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
