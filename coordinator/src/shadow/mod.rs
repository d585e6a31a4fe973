//! The shadow lifecycle: a pure decision engine per protected target
//! ([`engine`]), fleet-wide safety rails deciding which confirmed targets
//! may start ([`rails`]) and the choice of a spare ([`spare`]). Executors
//! act on the engine's commands at the edges: [`execute`] runs pending
//! actions of live lifecycles through an `Actuator` (execute mode);
//! [`traffic`] drives one shift through HAProxy (`actuate::haproxy`).

pub mod actuator;
pub mod engine;
pub mod execute;
pub mod rails;
pub mod replay;
pub mod runtime;
pub mod spare;
pub mod traffic;
