//! Request mirroring to a shadow: nginx's `mirror` module copies requests,
//! HAProxy decides which copies reach the shadow, and the share is changed
//! through HAProxy's runtime API, so changing it reloads nothing.
//!
//! Why not nginx alone: its share (`split_clients`) lives in the
//! configuration, and a reload closes idle keep-alive connections, which
//! races with clients sending their next request on them (the e2e test
//! saw 9 failed of 1.5 million requests that way). HAProxy 2.6 cannot copy
//! requests itself. So (documented in `packaging/README.md`, exercised by
//! the e2e test `tests::execute`):
//!
//! ```nginx
//! location / {
//!     mirror /_umbra_mirror;                      # a copy of every request
//!     proxy_pass http://haproxy_live;
//! }
//! location = /_umbra_mirror {
//!     internal;
//!     proxy_pass http://haproxy_mirror$request_uri;
//! }
//! ```
//!
//! ```haproxy
//! frontend fe_mirror                              # haproxy_mirror
//!     http-request set-var(txn.pct) str(share),map_str_int(/etc/haproxy/umbra-mirror.map,0)
//!     http-request return status 204 if { rand(100),sub(txn.pct) ge 0 }
//!     default_backend mirror                      # its server: the shadow
//! ```
//!
//! `umbra-mirror.map` holds `share 0`; [`Mirror::set_percent`] sets the
//! entry (`set map`) and reads it back (`show map`). The copies nginx makes
//! of unmirrored requests end in HAProxy's local 204 (one loopback request
//! each); the shadow's responses are discarded by nginx, and HAProxy's
//! counters for the mirror backend are the mirrored traffic's KPIs.
//! State-based: setting the same share again is harmless.

use super::haproxy::{Haproxy, HaproxyError};
use serde::Deserialize;
use std::path::PathBuf;

/// `mirror = { map = ... }` of a protected service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The map file HAProxy's mirror frontend reads the share from (as
    /// named in its configuration).
    pub map: PathBuf,
    /// The entry holding the share, percent.
    #[serde(default = "default_key")]
    pub key: String,
}

fn default_key() -> String {
    "share".into()
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Haproxy(#[from] HaproxyError),
    #[error("mirror share {0} %: want 0..=100")]
    Share(u8),
    #[error("mirror map {map}: {key} reads {got:?} after setting {want}")]
    ReadBack {
        map: String,
        key: String,
        got: Option<String>,
        want: u8,
    },
}

/// The value of `key` in `show map` output (`<ref> <key> <value>` lines).
pub fn parse_map_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, k, v) = (f.next()?, f.next()?, f.next()?);
        (k == key).then(|| v.to_owned())
    })
}

#[derive(Debug, Clone)]
pub struct Mirror {
    lb: Haproxy,
    cfg: MirrorConfig,
}

impl Mirror {
    pub fn new(lb: Haproxy, cfg: MirrorConfig) -> Result<Mirror, String> {
        let map = cfg.map.display().to_string();
        for name in [cfg.key.as_str(), map.as_str()] {
            super::haproxy::checked(name).map_err(|e| format!("mirror: {e}"))?;
        }
        Ok(Mirror { lb, cfg })
    }

    /// Send `percent` of requests' copies to the shadow (0: none).
    pub async fn set_percent(&self, percent: u8) -> Result<(), MirrorError> {
        if percent > 100 {
            return Err(MirrorError::Share(percent));
        }
        let map = self.cfg.map.display().to_string();
        let key = &self.cfg.key;
        let answer = self
            .lb
            .command(&format!("set map {map} {key} {percent}"))
            .await?;
        if !answer.trim().is_empty() {
            // No such entry yet (or another refusal): add it instead.
            let added = self
                .lb
                .command(&format!("add map {map} {key} {percent}"))
                .await?;
            if !added.trim().is_empty() {
                return Err(HaproxyError::Refused {
                    command: format!("set/add map {map} {key}"),
                    answer: format!("{} / {}", answer.trim(), added.trim()),
                }
                .into());
            }
        }
        let shown = self.lb.command(&format!("show map {map}")).await?;
        let got = parse_map_value(&shown, key);
        if got.as_deref() != Some(percent.to_string().as_str()) {
            return Err(MirrorError::ReadBack {
                map,
                key: key.clone(),
                got,
                want: percent,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_values_are_read_by_key() {
        let text = "0x55a0be3da170 share 50\n0x55a0be3da1a0 other 7\n\n";
        assert_eq!(parse_map_value(text, "share").as_deref(), Some("50"));
        assert_eq!(parse_map_value(text, "other").as_deref(), Some("7"));
        assert_eq!(parse_map_value(text, "nope"), None);
        assert_eq!(parse_map_value("Unknown map identifier.\n", "share"), None);
    }

    #[test]
    fn names_that_would_inject_commands_are_refused() {
        let lb = Haproxy::new(crate::actuate::haproxy::HaproxyConfig {
            socket: "/nonexistent".into(),
            backend: "app".into(),
            primary: "p".into(),
            shadow: "s".into(),
            timeout: std::time::Duration::from_secs(1),
        })
        .unwrap();
        let cfg = |map: &str, key: &str| MirrorConfig {
            map: map.into(),
            key: key.into(),
        };
        assert!(Mirror::new(lb.clone(), cfg("/etc/haproxy/m.map", "share")).is_ok());
        for (m, k) in [("/x.map", "a b"), ("/x.map; shutdown", "k"), ("/x.map", "")] {
            assert!(Mirror::new(lb.clone(), cfg(m, k)).is_err(), "{m} {k}");
        }
    }
}
