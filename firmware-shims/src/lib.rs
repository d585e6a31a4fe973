//! I/O-free protocol decoding and vendor quirks.
//!
//! Nothing here opens a socket, a device or a file: callers hand in bytes (or
//! a transport trait object) and get typed data or a typed error back. That
//! keeps every decoder testable on recorded data and fuzzable.
//!
//! - [`smart`]: `smartctl --json` output (smartmontools ≥ 7) → [`smart::Report`].
//! - [`snmp`]: BER, SNMP PDUs, v2c and v3 (USM) messages, standard MIB tables.
//! - [`ipmi`]: SDR records, ID strings, linearisation, sensor readings.
//! - [`i2c`]: `no_std` embedded-hal drivers (PMBus PSU, ADXL345, TMP75, MAX31790).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

pub mod i2c;

#[cfg(feature = "std")]
pub mod ipmi;

#[cfg(feature = "std")]
pub mod smart;

#[cfg(feature = "std")]
pub mod snmp;
