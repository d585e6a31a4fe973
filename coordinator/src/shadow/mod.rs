//! The shadow lifecycle: a pure decision engine per protected target
//! ([`engine`]), fleet-wide safety rails deciding which confirmed targets
//! may start ([`rails`]) and the choice of a spare ([`spare`]). Executors
//! (Redfish, switch ports, traffic, replication, paging) act on the
//! engine's commands at the edges.

pub mod engine;
pub mod rails;
pub mod runtime;
pub mod spare;
