//! Persistent series catalog: `SeriesKey` ↔ compact `u32` id.
//!
//! Ids are assigned once and never reused, so a spooled batch written before a
//! restart still means the same series after it. The file is append-only JSON
//! lines, fsynced before any batch that uses a new id is spooled; a torn last
//! line (crash mid-append) is ignored.

use crate::collect::SeriesKey;
use proto::telemetry::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    defs: Vec<pb::SeriesDef>,
    next: u32,
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
            defs,
            next,
        })
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
}
