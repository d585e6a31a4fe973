//! What both daemons (`umbra-agent`, `umbra-coordinator`) need as services
//! and is not their business logic:
//!
//! - [`metrics`]: the Prometheus text exposition format (families, label
//!   escaping, histograms) — each daemon renders its own state at scrape time;
//! - [`http`]: the `/metrics` listener (HTTP/1.1 over hyper, GET only);
//! - [`secret`]: passwords and keys from files or systemd credentials, with
//!   the permission checks that keep them out of world-readable places.

pub mod http;
pub mod metrics;
pub mod secret;
