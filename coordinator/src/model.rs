//! Domain types of the coordinator. Wire types (`proto`) are converted to and
//! from these at the edges (`ingest`, `fleet`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How trustworthy a sample's value is. Mirrors `umbra.telemetry.v1.Quality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Quality {
    Ok = 0,
    Nan = 1,
    Stale = 2,
    Unreadable = 3,
}

impl Quality {
    /// Total mapping from the 2-bit stored form; unknown values read as `Unreadable`.
    pub fn from_u8(v: u8) -> Quality {
        match v {
            0 => Quality::Ok,
            1 => Quality::Nan,
            2 => Quality::Stale,
            _ => Quality::Unreadable,
        }
    }
}

/// One timestamped reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ts_ms: i64,
    pub value: f64,
    pub quality: Quality,
}

/// Identity of a series: unique across the fleet, stable across agent restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesId {
    pub host: String,
    pub metric: String,
    pub component: String,
    pub labels: BTreeMap<String, String>,
}

impl SeriesId {
    /// Canonical byte form used as the catalog key (fields NUL-separated;
    /// NUL is rejected in names at ingest).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for part in [&self.host, &self.metric, &self.component] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
        for (k, v) in &self.labels {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }
}

/// Catalog entry: what the compact key of a series stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesMeta {
    pub key: u64,
    pub id: SeriesId,
    pub unit: String,
}

/// Failure domain of a host: where a shared fault would hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureDomain {
    pub site: String,
    pub rack: String,
    pub pdu: String,
    pub tor: String,
}

/// A field-replaceable component reported by an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub id: String,
    pub kind: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub installed_unix_s: i64,
    pub power_on_hours: u64,
}

/// Spool counters last reported by an agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    pub produced_samples: u64,
    pub dropped_batches: u64,
    pub dropped_samples: u64,
    pub backlog_batches: u64,
    pub backlog_bytes: u64,
    pub backlog_samples: u64,
    pub rejected_samples: u64,
    pub corrupt_segments: u64,
    #[serde(default)]
    pub in_doubt_samples: u64,
    #[serde(default)]
    pub unresolved_samples: u64,
}

/// What the coordinator remembers about a host (persisted in the meta column family).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host_id: String,
    pub hwprofile_id: String,
    pub agent_version: String,
    pub failure_domain: FailureDomain,
    pub components: Vec<Component>,
    pub last_seen_ms: i64,
    /// Samples per second, exponentially smoothed over batches.
    pub sample_rate: f64,
    pub stats: AgentStats,
    /// Samples stored for this host (duplicates excluded).
    pub stored_samples: u64,
    pub series_count: u64,
}
