//! Umbra's prediction engine, free of I/O beyond reading dataset files:
//! the coordinator feeds it stored series, `umbractl eval` feeds it public
//! datasets.
//!
//! - [`data`]: loaders (Backblaze SMART snapshots, ...).
//! - [`metrics`]: alarm evaluation against failure labels (precision,
//!   recall, lead time, false alarms per 1,000 drive-days) with Wilson
//!   intervals, because the public failure counts are small.
//! - [`eval`]: the evaluation protocols, one per dataset, printing a report.
//! - [`forecast`]: the LSTM forecaster (Gaussian per step), shared per
//!   metric family; [`nn`]: candle helpers (seeded init, weight export).
#![deny(unsafe_code)]

pub mod anomaly;
pub mod calibrate;
pub mod data;
pub mod eval;
pub mod failure;
pub mod forecast;
pub mod metrics;
pub mod naive;
pub mod nn;
pub mod plot;
