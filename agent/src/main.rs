//! umbra-agent: parse args, init tracing, load + validate config, run.

use agent::cli::{Cli, Command, EXIT_CONFIG};
use anyhow::Context;
use clap::Parser;

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
