//! Trained models, versioned per kind ("forecaster/temperature",
//! "failure/disk", ...), each stored with its evaluation, and one active
//! version per kind that inference uses. Versions only grow; activating an
//! older one is how a regression is rolled back.
//!
//! `meta` keys: `'M' kind 0x00 version(8)` → the model bytes;
//! `'m' kind 0x00 version(8)` → [`ModelRecord`] (JSON);
//! `'a' kind` → the active version (u64 BE).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub kind: String,
    pub version: u64,
    pub created_ms: i64,
    /// What it was trained on, for humans ("hosts 1..40, 2026-10-01..11-01").
    pub trained_on: String,
    /// Metrics measured on held-out data when it was trained.
    pub evaluation: serde_json::Value,
    pub bytes: u64,
}

pub(crate) fn kind_ok(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 128
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b))
}

fn key(tag: u8, kind: &str, version: u64) -> Vec<u8> {
    let mut k = prefix(tag, kind);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn prefix(tag: u8, kind: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + 10);
    k.push(tag);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k
}

pub(crate) fn blob_key(kind: &str, version: u64) -> Vec<u8> {
    key(b'M', kind, version)
}

pub(crate) fn record_key(kind: &str, version: u64) -> Vec<u8> {
    key(b'm', kind, version)
}

pub(crate) fn active_key(kind: &str) -> Vec<u8> {
    let mut k = vec![b'a'];
    k.extend_from_slice(kind.as_bytes());
    k
}
