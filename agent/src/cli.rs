//! The `umbra-agent` command line (parsed in `main.rs`; also read by
//! `cargo xtask dist` to write the man page).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Exit status for an invalid configuration (sysexits EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "umbra-agent",
    version,
    about = "Umbra host agent: hardware telemetry with a durable spool",
    long_about = "Umbra host agent: hardware telemetry with a durable spool.\n\n\
Reads IPMI (LAN and /dev/ipmi0), SNMP, I2C, SMART and host sensors as the \
configuration says, spools every poll to disk (state_dir, default \
/var/lib/umbra/agent) and streams it to the coordinator over gRPC; nothing \
is lost across agent restarts or coordinator outages while the spool has \
room. SIGTERM or SIGINT stops the collectors and drains the spool for \
coordinator.drain_timeout. Prometheus metrics are served on [metrics] listen.\n\n\
Secrets (BMC passwords, SNMP communities, the TLS key) may be given as \
{ file = \"...\" } or { credential = \"...\" } (systemd LoadCredential=); a \
config holding one inline must not be readable by every user.\n\n\
Environment: UMBRA_AGENT_CONFIG (the config path), UMBRA_LOG (log filter, \
e.g. info or agent=debug), CREDENTIALS_DIRECTORY (set by systemd).\n\
Exit status: 0 ok, 64 invalid configuration, 1 any other failure."
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/umbra/agent.toml",
        env = "UMBRA_AGENT_CONFIG"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
