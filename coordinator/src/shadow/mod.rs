//! The shadow lifecycle: a pure decision engine per protected target
//! ([`engine`]), fleet-wide safety rails deciding which confirmed targets
//! may start ([`rails`]) and the choice of a spare ([`spare`]). Executors
//! act on the engine's commands at the edges: [`traffic`] drives the
//! shift through HAProxy (`actuate::haproxy`); Redfish provisioning
//! (`actuate::redfish`) and paging (`paging`) are built; switch-port and
//! replication executors are not yet.

pub mod engine;
pub mod rails;
pub mod replay;
pub mod runtime;
pub mod spare;
pub mod traffic;
