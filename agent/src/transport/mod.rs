//! Transports: the I/O half of each protocol. Encoding and decoding live in
//! `firmware-shims`; these own sockets, timeouts, retries and pacing.

pub mod i2c;
pub mod ipmi;
pub mod snmp;
