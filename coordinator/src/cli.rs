//! The `umbra-coordinator` command line (umbractl's is [`crate::ctl::Cli`]);
//! parsed in `main.rs`, also read by `cargo xtask dist` for the man page.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// sysexits EX_USAGE / EX_CONFIG-style exit for an invalid configuration.
pub const EXIT_CONFIG: i32 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "umbra-coordinator",
    version,
    about = "Umbra coordinator: telemetry ingest, series store, fleet API",
    long_about = "Umbra coordinator: telemetry ingest, series store, fleet API.\n\n\
Accepts agents' telemetry streams over gRPC (mutual TLS), stores series \
in RocksDB under storage.data_dir (default /var/lib/umbra/coordinator) \
and serves the fleet API that umbractl uses. Prometheus metrics are \
served on [metrics] listen. The TLS key may be a path (not readable by \
every user) or { credential = \"coordinator.key\" } (systemd LoadCredential=).\n\n\
Environment: UMBRA_COORDINATOR_CONFIG (the config path), UMBRA_LOG (log \
filter), CREDENTIALS_DIRECTORY (set by systemd).\n\
Exit status: 0 ok, 64 invalid configuration, 1 any other failure."
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/umbra/coordinator.toml",
        env = "UMBRA_COORDINATOR_CONFIG"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve (the default).
    Run,
    /// Check the configuration and exit (0 = valid, 64 = invalid).
    Validate,
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definitions_are_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
        <crate::ctl::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
