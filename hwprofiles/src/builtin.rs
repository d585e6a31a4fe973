//! Profiles embedded in the binaries, so the demo runs with no files installed.

/// The simulated 1U server used by the demo and the end-to-end tests.
pub const SIM_1U: &str = include_str!("../profiles/servers/umbra/sim-1u.toml");
