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
    /// Print the spool's accounting as JSON (refuses while an agent runs).
    SpoolStatus,
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
        Command::SpoolStatus => {
            let s = agent::spool::inspect(&config.spool_dir(), config.spool.clone())?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(())
        }
        Command::Run => {
            let rt = tokio::runtime::Builder::new_multi_thread()
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
