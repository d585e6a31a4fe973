//! Hardware events (BMC SEL entries, ...) per host, each stored once.
//!
//! Agents resend events (at-least-once delivery; a restarted agent forwards
//! recent SEL entries again), so an event is keyed by a hash of what
//! identifies it on the device (source, component, device time, description,
//! attributes such as the SEL record id) rather than by when it arrived. The
//! first arrival is kept; later copies change nothing. Events are rare
//! (a BMC's SEL holds hundreds to a few thousand entries), so listing scans
//! a host's events and sorts them by time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareEvent {
    pub host: String,
    /// The device's time when it has one, else when the agent saw it.
    pub time_ms: i64,
    pub device_time_ms: Option<i64>,
    pub observed_ms: i64,
    pub source: String,
    pub component: String,
    pub severity: Severity,
    pub description: String,
    pub attributes: BTreeMap<String, String>,
}

impl HardwareEvent {
    /// Stable identity on the device: FNV-1a 64 over the identifying fields,
    /// each terminated by a NUL (no field may contain one: ingest checks).
    /// Defined here, not by a library's hasher, so it never changes between
    /// versions.
    pub fn identity(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes.iter().chain(&[0u8]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(self.source.as_bytes());
        eat(self.component.as_bytes());
        eat(&self.device_time_ms.unwrap_or(0).to_be_bytes());
        eat(self.description.as_bytes());
        for (k, v) in &self.attributes {
            eat(k.as_bytes());
            eat(v.as_bytes());
        }
        h
    }
}

/// `meta` key: 'e' host 0x00 identity(8).
pub(crate) fn key(host: &str, identity: u64) -> Vec<u8> {
    let mut k = prefix(Some(host));
    k.extend_from_slice(&identity.to_be_bytes());
    k
}

/// Prefix of one host's events, or of every event.
pub(crate) fn prefix(host: Option<&str>) -> Vec<u8> {
    let mut k = vec![b'e'];
    if let Some(h) = host {
        k.extend_from_slice(h.as_bytes());
        k.push(0);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(observed_ms: i64) -> HardwareEvent {
        HardwareEvent {
            host: "h1".into(),
            time_ms: observed_ms,
            device_time_ms: None,
            observed_ms,
            source: "ipmi-sel".into(),
            component: "node7/PSU1 Status".into(),
            severity: Severity::Critical,
            description: "power supply failure detected asserted".into(),
            attributes: [("record_id".to_owned(), "2".to_owned())].into(),
        }
    }

    #[test]
    fn identity_ignores_arrival_and_sees_the_device_fields() {
        assert_eq!(event(1).identity(), event(2).identity());
        let mut other = event(1);
        other.attributes.insert("record_id".into(), "3".into());
        assert_ne!(event(1).identity(), other.identity());
        // Field boundaries matter: ("ab", "c") is not ("a", "bc").
        let (mut a, mut b) = (event(1), event(1));
        a.source = "ab".into();
        a.component = "c".into();
        b.source = "a".into();
        b.component = "bc".into();
        assert_ne!(a.identity(), b.identity());
    }
}
