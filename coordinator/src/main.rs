//! umbra-coordinator: parse args, init tracing, load + validate config, run.

use anyhow::Context;
use clap::Parser;
use coordinator::cli::{Cli, Command, EXIT_CONFIG};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UMBRA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match coordinator::config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("umbra-coordinator: invalid configuration: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if matches!(cli.command, Some(Command::Validate)) {
        println!("{}: ok", cli.config.display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(coordinator::run(config, shutdown_signal()))
        .context("umbra-coordinator")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested");
}
