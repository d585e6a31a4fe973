//! Persistent series catalog: `SeriesKey` ↔ compact `u32` id.
//!
//! Ids are assigned once and never reused, so a spooled batch written before a
//! restart still means the same series after it. The file is append-only JSON
//! lines, fsynced before any batch that uses a new id is spooled; a torn last
//! line (crash mid-append) is ignored.
//!
//! Collectors build their series keys once and hand out the same
//! `Arc<SeriesKey>` every poll, so [`Catalog::resolve_shared`] looks keys up
//! by address first (one multiply instead of hashing and comparing four
//! strings per reading, the largest user-space cost of a poll in the
//! agent's profile). The cache holds a clone of each `Arc`, so an address
//! cannot be reused while cached; entries only the cache still holds are
//! pruned when the cache outgrows the catalog.

use crate::collect::SeriesKey;
use proto::telemetry::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("series catalog {path}: {source}")]
pub struct CatalogError {
    path: PathBuf,
    source: std::io::Error,
}

#[derive(Serialize, Deserialize)]
struct Line {
    id: u32,
    metric: String,
    component: String,
    unit: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    file: File,
    ids: HashMap<SeriesKey, u32>,
    /// Address of a shared key → (that key, its id).
    by_address: HashMap<usize, (Arc<SeriesKey>, u32), BuildHasherDefault<AddressHasher>>,
    defs: Vec<pb::SeriesDef>,
    next: u32,
}

/// Hashes one `usize` (an address) by a multiply with a 64-bit odd constant
/// (Fibonacci hashing); hashbrown takes its top bits.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn def(id: u32, k: &SeriesKey) -> pb::SeriesDef {
    pb::SeriesDef {
        id,
        metric: k.metric.clone(),
        component: k.component.clone(),
        unit: k.unit.clone(),
        labels: k.labels.clone().into_iter().collect(),
    }
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let err = |source| CatalogError {
            path: path.to_owned(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e)),
        };
        let mut ids = HashMap::new();
        let mut defs = Vec::new();
        let mut next = 1;
        let mut good_len = 0usize;
        for raw in text.split_inclusive('\n') {
            let parsed = raw
                .ends_with('\n')
                .then(|| serde_json::from_str::<Line>(raw.trim_end()))
                .and_then(Result::ok);
            let Some(l) = parsed else {
                tracing::warn!(path = %path.display(), "ignoring a torn or corrupt catalog line");
                break;
            };
            good_len += raw.len();
            let key = SeriesKey {
                metric: l.metric,
                component: l.component,
                unit: l.unit,
                labels: l.labels,
            };
            next = next.max(l.id + 1);
            defs.push(def(l.id, &key));
            ids.insert(key, l.id);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        if good_len < text.len() {
            file.set_len(good_len as u64).map_err(err)?;
        }
        Ok(Catalog {
            path: path.to_owned(),
            file,
            ids,
            by_address: HashMap::default(),
            defs,
            next,
        })
    }

    /// [`Catalog::resolve`] for a key a collector reuses across polls.
    pub fn resolve_shared(
        &mut self,
        key: &Arc<SeriesKey>,
    ) -> Result<(u32, Option<pb::SeriesDef>), CatalogError> {
        let address = Arc::as_ptr(key) as usize;
        if let Some((_, id)) = self.by_address.get(&address) {
            return Ok((*id, None));
        }
        let resolved = self.resolve(key)?;
        if self.by_address.len() >= 2 * self.ids.len() + 64 {
            // Keys their collectors dropped (rebuilt each poll, or a
            // collector restarted): only this cache still holds them.
            self.by_address.retain(|_, (k, _)| Arc::strong_count(k) > 1);
        }
        self.by_address.insert(address, (key.clone(), resolved.0));
        Ok(resolved)
    }

    /// The id of `key`; a new key gets the next id and is made durable before
    /// returning its definition (to be sent in the batch's `new_series`).
    pub fn resolve(
        &mut self,
        key: &SeriesKey,
    ) -> Result<(u32, Option<pb::SeriesDef>), CatalogError> {
        if let Some(&id) = self.ids.get(key) {
            return Ok((id, None));
        }
        let id = self.next;
        let line = Line {
            id,
            metric: key.metric.clone(),
            component: key.component.clone(),
            unit: key.unit.clone(),
            labels: key.labels.clone(),
        };
        let mut text = serde_json::to_string(&line).expect("serialisable");
        text.push('\n');
        let err = |source| CatalogError {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(err)?;
        self.file.sync_data().map_err(|source| CatalogError {
            path: self.path.clone(),
            source,
        })?;
        self.next += 1;
        self.ids.insert(key.clone(), id);
        let d = def(id, key);
        self.defs.push(d.clone());
        Ok((id, Some(d)))
    }

    pub fn all(&self) -> Vec<pb::SeriesDef> {
        self.defs.clone()
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(m: &str) -> SeriesKey {
        SeriesKey {
            metric: m.into(),
            component: "FAN1".into(),
            unit: "rpm".into(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn ids_are_stable_across_reopen_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.jsonl");
        {
            let mut c = Catalog::open(&path).unwrap();
            assert_eq!(c.resolve(&k("a")).unwrap().0, 1);
            assert!(c.resolve(&k("b")).unwrap().1.is_some());
            assert!(c.resolve(&k("a")).unwrap().1.is_none());
        }
        // a crash mid-append leaves half a line
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":3,\"metr").unwrap();
        drop(f);
        let mut c = Catalog::open(&path).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.resolve(&k("b")).unwrap(), (2, None));
        assert_eq!(c.resolve(&k("c")).unwrap().0, 3);
        drop(c);
        assert_eq!(Catalog::open(&path).unwrap().len(), 3);
    }

    #[test]
    fn shared_keys_resolve_by_address_to_the_same_ids_and_the_cache_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.jsonl")).unwrap();
        let a = Arc::new(k("a"));
        let (id, def) = c.resolve_shared(&a).unwrap();
        assert!(def.is_some());
        assert_eq!(c.resolve_shared(&a).unwrap(), (id, None));
        // An equal key in another allocation is the same series.
        assert_eq!(c.resolve_shared(&Arc::new(k("a"))).unwrap(), (id, None));
        assert_eq!(c.resolve(&k("a")).unwrap(), (id, None));
        // A collector that rebuilds its keys every poll: same ids, and the
        // cache does not grow without bound.
        for _ in 0..1000 {
            let b = Arc::new(k("b"));
            assert_eq!(c.resolve_shared(&b).unwrap().0, id + 1);
        }
        assert!(
            c.by_address.len() <= 2 * c.len() + 64 + 1,
            "{}",
            c.by_address.len()
        );
        assert_eq!(c.len(), 2);
    }
}
