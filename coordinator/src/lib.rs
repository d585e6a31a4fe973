//! umbra-coordinator: ingests agent streams into a RocksDB series store and
//! serves the fleet API (`umbractl`).
#![forbid(unsafe_code)]

pub mod model;
pub mod store;
