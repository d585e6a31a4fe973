//! Transports: the I/O half of each protocol. Encoding and decoding live in
//! `firmware-shims`; these own sockets, timeouts, retries and pacing.

pub mod i2c;
pub mod ipmi;
/// The SNMP client is its own crate: the coordinator sets switch ports with it.
pub use snmp_client as snmp;
