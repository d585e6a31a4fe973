//! The series store: RocksDB with four column families (see [`keys`]).
//!
//! Write path: one RocksDB `WriteBatch` per ingested stream message, holding
//! one compressed *partial* chunk per (series, window) touched, the batch's
//! sequence ledger (for idempotence) and the host record, written with the
//! WAL (and fsync when `sync_writes`). Nothing is acknowledged before that
//! write returns. [`Store::compact`] later merges the partial chunks of closed
//! windows into one *sealed* chunk per window and computes the 1-minute and
//! 1-hour rollups; reads merge sealed and partial chunks, so results do not
//! depend on whether compaction has run.

mod bits;
pub mod chunk;
pub mod events;
mod keys;
pub mod ledger;
pub mod models;
pub mod rollup;

pub use rollup::{Bucket, Resolution};

use crate::model::{HostRecord, Sample, SeriesId, SeriesMeta};
pub use events::{HardwareEvent, Severity};
use ledger::Ledger;
pub use models::ModelRecord;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

const CF_CATALOG: &str = "catalog";
const CF_SAMPLES: &str = "samples";
const CF_ROLLUPS: &str = "rollups";
const CF_META: &str = "meta";

/// A RocksDB key as returned by iterators.
type ChunkKey = Box<[u8]>;
/// (host, component).
pub type HostComponent = (String, String);

/// Chunk ids are reserved from the meta CF in blocks of this size.
const CHUNK_ID_BLOCK: u64 = 1 << 20;

/// Store settings (validated coordinator config).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Width of a chunk window; a window is sealed once closed.
    pub window: Duration,
    /// Time after a window's end before it is sealed (late samples still
    /// arriving after that are merged by a later compaction).
    pub seal_grace: Duration,
    /// fsync the WAL before acknowledging (survives power loss, not just crashes).
    pub sync_writes: bool,
    pub raw_retention: Duration,
    pub rollup_1m_retention: Duration,
    pub rollup_1h_retention: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            window: Duration::from_secs(2 * 3600),
            seal_grace: Duration::from_secs(10 * 60),
            sync_writes: true,
            raw_retention: Duration::from_secs(35 * 86_400),
            rollup_1m_retention: Duration::from_secs(180 * 86_400),
            rollup_1h_retention: Duration::from_secs(5 * 365 * 86_400),
        }
    }
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt {what} for series {series}: {source}")]
    Chunk {
        what: &'static str,
        series: u64,
        source: chunk::ChunkError,
    },
    #[error("corrupt record {0}")]
    Corrupt(String),
}

/// Result of [`Store::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Stored {
        samples: u64,
        /// The message's events not stored before (copies are skipped).
        new_events: Vec<HardwareEvent>,
    },
    /// This (host, epoch, sequence) was already stored; nothing written.
    Duplicate,
}

/// One stream message, resolved to series keys.
#[derive(Debug)]
pub struct IngestWrite<'a> {
    pub host: &'a str,
    pub epoch: u64,
    pub sequence: u64,
    pub series: Vec<(u64, Vec<Sample>)>,
    /// Host record to persist atomically with the samples; its
    /// `stored_samples` is advanced by the number of samples written.
    pub host_record: HostRecord,
    /// Hardware events of the message, stored in the same write.
    pub events: Vec<HardwareEvent>,
}

/// What a compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactStats {
    pub windows_sealed: u64,
    pub partials_merged: u64,
}

/// RocksDB-backed series store. Cheap to share (`Arc<Store>`); all methods block.
pub struct Store {
    db: DB,
    cfg: StoreConfig,
    window_ms: i64,
    write_opts: WriteOptions,
    /// (next, reserved limit) of chunk ids.
    chunk_ids: Mutex<(u64, u64)>,
    /// canonical series id -> key. Guards series key allocation too.
    catalog: Mutex<HashMap<Vec<u8>, u64>>,
    /// Ingest writes hold it shared; compaction of a window holds it exclusively
    /// between reading partial chunks and deleting them.
    gate: RwLock<()>,
    /// (window, series) whose compaction marker is known to be durable: the
    /// hot path writes each marker once, not once per batch.
    dirty: Mutex<HashSet<(i64, u64)>>,
    /// Tie-breaker of audit keys; starts at the open time in µs so keys
    /// stay unique across restarts.
    next_audit: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        let cfs = [CF_CATALOG, CF_SAMPLES, CF_ROLLUPS, CF_META].map(|name| {
            let mut o = Options::default();
            // Chunks are already entropy-coded; compress only the text-ish families.
            o.set_compression_type(if name == CF_SAMPLES {
                rocksdb::DBCompressionType::None
            } else {
                rocksdb::DBCompressionType::Lz4
            });
            ColumnFamilyDescriptor::new(name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(cfg.sync_writes);
        let window_ms = millis(cfg.window).max(1);
        let store = Store {
            db,
            cfg,
            window_ms,
            write_opts,
            chunk_ids: Mutex::new((0, 0)),
            catalog: Mutex::new(HashMap::new()),
            gate: RwLock::new(()),
            dirty: Mutex::new(HashSet::new()),
            next_audit: std::sync::atomic::AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ),
        };
        store.load_catalog()?;
        Ok(store)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn load_catalog(&self) -> Result<(), StoreError> {
        let mut cat = self.catalog.lock().expect("poisoned");
        for item in self.db.prefix_iterator_cf(self.cf(CF_CATALOG), b"n") {
            let (k, v) = item?;
            if k.first() != Some(&b'n') {
                break;
            }
            let key =
                keys::u64_from_be(&v).ok_or_else(|| StoreError::Corrupt("catalog name".into()))?;
            cat.insert(k[1..].to_vec(), key);
        }
        Ok(())
    }

    fn counter(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META), keys::counter(name))?
            .and_then(|v| keys::u64_from_be(&v))
            .unwrap_or(0))
    }

    fn next_chunk_id(&self) -> Result<u64, StoreError> {
        let mut ids = self.chunk_ids.lock().expect("poisoned");
        if ids.0 >= ids.1 {
            let start = self.counter("chunk_ids")?.max(ids.1);
            let limit = start + CHUNK_ID_BLOCK;
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            self.db.put_cf_opt(
                self.cf(CF_META),
                keys::counter("chunk_ids"),
                limit.to_be_bytes(),
                &wo,
            )?;
            *ids = (start, limit);
        }
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// The key of `id`, creating the catalog entry if it is new (`true`).
    pub fn resolve_series(&self, id: &SeriesId, unit: &str) -> Result<(u64, bool), StoreError> {
        let canonical = id.canonical();
        let mut cat = self.catalog.lock().expect("poisoned");
        if let Some(&k) = cat.get(&canonical) {
            return Ok((k, false));
        }
        let key = self.counter("series")? + 1;
        let meta = SeriesMeta {
            key,
            id: id.clone(),
            unit: unit.to_owned(),
        };
        let mut b = WriteBatch::default();
        b.put_cf(
            self.cf(CF_CATALOG),
            keys::catalog_name(&canonical),
            key.to_be_bytes(),
        );
        b.put_cf(
            self.cf(CF_CATALOG),
            keys::catalog_key(key),
            serde_json::to_vec(&meta).expect("serialisable"),
        );
        b.put_cf(self.cf(CF_META), keys::counter("series"), key.to_be_bytes());
        self.db.write_opt(b, &self.write_opts)?;
        cat.insert(canonical, key);
        Ok((key, true))
    }

    /// Stored sequences of (host, epoch).
    pub fn ledger(&self, host: &str, epoch: u64) -> Result<Ledger, StoreError> {
        self.db
            .get_cf(self.cf(CF_META), keys::sequence(host, epoch))?
            .map_or(Ok(Ledger::default()), |v| {
                Ledger::decode(&v)
                    .map_err(|e| StoreError::Corrupt(format!("host {host} epoch {epoch}: {e}")))
            })
    }

    /// Highest stored sequence of (host, epoch); 0 if none.
    pub fn last_sequence(&self, host: &str, epoch: u64) -> Result<u64, StoreError> {
        Ok(self.ledger(host, epoch)?.high_water_mark())
    }

    fn window_of(&self, ts: i64) -> i64 {
        // Saturating: at the extreme low end a window may start early, never late.
        ts.div_euclid(self.window_ms).saturating_mul(self.window_ms)
    }

    /// Durably store one stream message, unless its sequence was already
    /// stored. The caller serialises calls per host (ingest holds a per-host
    /// lock), which makes check-then-write atomic.
    pub fn ingest(&self, w: IngestWrite<'_>) -> Result<IngestOutcome, StoreError> {
        let mut ledger = self.ledger(w.host, w.epoch)?;
        if ledger.is_duplicate(w.sequence) {
            return Ok(IngestOutcome::Duplicate);
        }
        ledger.insert(w.sequence);
        let samples_cf = self.cf(CF_SAMPLES);
        let meta_cf = self.cf(CF_META);
        let mut batch = WriteBatch::default();
        let mut stored = 0u64;
        // Held from the dirty-marker decision to the write, so a compaction
        // cannot delete a marker this write relies on in between.
        let _shared = self.gate.read().expect("poisoned");
        let mut new_dirty = Vec::new();
        for (key, samples) in &w.series {
            let mut by_window: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
            for s in samples {
                by_window
                    .entry(self.window_of(s.ts_ms))
                    .or_default()
                    .push(*s);
            }
            for (window, samples) in by_window {
                stored += samples.len() as u64;
                batch.put_cf(
                    samples_cf,
                    keys::partial(*key, window, self.next_chunk_id()?),
                    chunk::encode_fast(&samples),
                );
                if !self
                    .dirty
                    .lock()
                    .expect("poisoned")
                    .contains(&(window, *key))
                {
                    batch.put_cf(meta_cf, keys::dirty(window, *key), []);
                    new_dirty.push((window, *key));
                }
            }
        }
        let mut new_events = Vec::new();
        for e in w.events {
            let key = events::key(w.host, e.identity());
            let copy_in_batch = new_events
                .iter()
                .any(|n: &HardwareEvent| n.identity() == e.identity());
            if copy_in_batch || self.db.get_pinned_cf(meta_cf, &key)?.is_some() {
                continue;
            }
            batch.put_cf(meta_cf, key, serde_json::to_vec(&e).expect("serialisable"));
            new_events.push(e);
        }
        batch.put_cf(meta_cf, keys::sequence(w.host, w.epoch), ledger.encode());
        let mut record = w.host_record;
        record.stored_samples += stored;
        batch.put_cf(
            meta_cf,
            keys::host(w.host),
            serde_json::to_vec(&record).expect("serialisable"),
        );
        self.db.write_opt(batch, &self.write_opts)?;
        self.dirty.lock().expect("poisoned").extend(new_dirty);
        Ok(IngestOutcome::Stored {
            samples: stored,
            new_events,
        })
    }

    /// Hardware events of `host` (or every host) at or after `since_ms` and
    /// at least `min_severity`, newest first, at most `limit`.
    pub fn events(
        &self,
        host: Option<&str>,
        since_ms: i64,
        min_severity: Severity,
        limit: usize,
    ) -> Result<Vec<HardwareEvent>, StoreError> {
        let prefix = events::prefix(host);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let e: HardwareEvent = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("event record: {e}")))?;
            if e.time_ms >= since_ms && e.severity >= min_severity {
                out.push(e);
            }
        }
        out.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(a.host.cmp(&b.host)));
        out.truncate(limit);
        Ok(out)
    }

    /// Store a new version of a model kind; returns its record. The
    /// version is one past the newest stored; the model is not activated.
    pub fn put_model(
        &self,
        kind: &str,
        bytes: &[u8],
        trained_on: &str,
        evaluation: serde_json::Value,
        now_ms: i64,
    ) -> Result<ModelRecord, StoreError> {
        if !models::kind_ok(kind) {
            return Err(StoreError::Corrupt(format!(
                "model kind {kind:?}: want 1..=128 of [a-z0-9-_./]"
            )));
        }
        // One writer at a time picks the version (model writes are rare).
        let _guard = self.catalog.lock().expect("poisoned");
        let version = self.models(kind)?.last().map_or(1, |r| r.version + 1);
        let record = ModelRecord {
            kind: kind.to_owned(),
            version,
            created_ms: now_ms,
            trained_on: trained_on.to_owned(),
            evaluation,
            bytes: bytes.len() as u64,
        };
        let meta = self.cf(CF_META);
        let mut b = WriteBatch::default();
        b.put_cf(meta, models::blob_key(kind, version), bytes);
        b.put_cf(
            meta,
            models::record_key(kind, version),
            serde_json::to_vec(&record).expect("serialisable"),
        );
        self.db.write_opt(b, &self.write_opts)?;
        Ok(record)
    }

    /// Every stored version of `kind`, oldest first.
    pub fn models(&self, kind: &str) -> Result<Vec<ModelRecord>, StoreError> {
        let prefix = models::prefix(b'm', kind);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("model record {kind}: {e}")))?,
            );
        }
        Ok(out)
    }

    /// One stored version's record (its evaluation), by a point read.
    pub fn model(&self, kind: &str, version: u64) -> Result<Option<ModelRecord>, StoreError> {
        self.db
            .get_cf(self.cf(CF_META), models::record_key(kind, version))?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("model record {kind}: {e}")))
            })
            .transpose()
    }

    /// A stored model's bytes.
    pub fn model_bytes(&self, kind: &str, version: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META), models::blob_key(kind, version))?)
    }

    /// Make `version` the one inference uses (it must exist).
    pub fn activate_model(&self, kind: &str, version: u64) -> Result<(), StoreError> {
        if self.model_bytes(kind, version)?.is_none() {
            return Err(StoreError::Corrupt(format!(
                "no model {kind} version {version}"
            )));
        }
        self.db.put_cf_opt(
            self.cf(CF_META),
            models::active_key(kind),
            version.to_be_bytes(),
            &self.write_opts,
        )?;
        Ok(())
    }

    /// The active version of `kind`, if any.
    pub fn active_model(&self, kind: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META), models::active_key(kind))?
            .and_then(|v| keys::u64_from_be(&v)))
    }

    /// Persist a shadow lifecycle's state (JSON) under its target.
    pub fn put_lifecycle(&self, target: &str, state: &serde_json::Value) -> Result<(), StoreError> {
        self.put_keyed_json(b'L', target, Some(state))
    }

    /// Every persisted lifecycle: (target, state).
    pub fn lifecycles(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.keyed_json(b'L', "lifecycle")
    }

    /// Persist a target's open page (`None`: it was resolved).
    pub fn put_open_page(
        &self,
        target: &str,
        page: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.put_keyed_json(b'G', target, page)
    }

    /// Every open page: (target, page).
    pub fn open_pages(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.keyed_json(b'G', "open page")
    }

    /// Persist which spare a target's shadow uses (`None`: released).
    pub fn put_assignment(
        &self,
        target: &str,
        assignment: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.put_keyed_json(b'S', target, assignment)
    }

    /// `target`'s spare assignment, if any (a point read).
    pub fn assignment(&self, target: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let mut k = vec![b'S'];
        k.extend_from_slice(target.as_bytes());
        self.db
            .get_cf(self.cf(CF_META), k)?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("spare assignment of {target}: {e}")))
            })
            .transpose()
    }

    /// Every spare assignment: (target, assignment).
    pub fn assignments(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.keyed_json(b'S', "spare assignment")
    }

    /// Record a component's failure label (`'F' host NUL component`), as
    /// the feedback loop's training reads it. Recording it again replaces it.
    pub fn put_failure(
        &self,
        host: &str,
        component: &str,
        label: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.put_keyed_json(b'F', &format!("{host}\0{component}"), Some(label))
    }

    /// Every recorded failure label: ((host, component), label).
    pub fn failures(&self) -> Result<Vec<(HostComponent, serde_json::Value)>, StoreError> {
        self.keyed_json(b'F', "failure label")?
            .into_iter()
            .map(|(k, v)| match k.split_once('\0') {
                Some((h, c)) => Ok(((h.to_owned(), c.to_owned()), v)),
                None => Err(StoreError::Corrupt(format!("failure label key {k:?}"))),
            })
            .collect()
    }

    fn put_keyed_json(
        &self,
        prefix: u8,
        key: &str,
        value: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let mut k = vec![prefix];
        k.extend_from_slice(key.as_bytes());
        match value {
            Some(v) => self.db.put_cf_opt(
                self.cf(CF_META),
                k,
                serde_json::to_vec(v).expect("serialisable"),
                &self.write_opts,
            )?,
            None => self
                .db
                .delete_cf_opt(self.cf(CF_META), k, &self.write_opts)?,
        }
        Ok(())
    }

    fn keyed_json(
        &self,
        prefix: u8,
        what: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), [prefix]) {
            let (k, v) = item?;
            if k.first() != Some(&prefix) {
                break;
            }
            let key = String::from_utf8_lossy(&k[1..]).into_owned();
            let value = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("{what} of {key}: {e}")))?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Append a record to the shadow audit log (key: time, then a counter
    /// so records of the same millisecond keep their order).
    pub fn append_audit(&self, ts_ms: i64, record: &serde_json::Value) -> Result<(), StoreError> {
        let seq = self
            .next_audit
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut k = vec![b'A'];
        k.extend_from_slice(&ts_ms.max(0).to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        self.db.put_cf_opt(
            self.cf(CF_META),
            k,
            serde_json::to_vec(record).expect("serialisable"),
            &self.write_opts,
        )?;
        Ok(())
    }

    /// Audit records at or after `since_ms`, oldest first, at most `limit`.
    pub fn audit(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        let mut from = vec![b'A'];
        from.extend_from_slice(&since_ms.max(0).to_be_bytes());
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_META),
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.first() != Some(&b'A') || out.len() >= limit {
                break;
            }
            let ts = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt("audit key".into()))?;
            let rec = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))?;
            out.push((ts, rec));
        }
        Ok(out)
    }

    /// Every kind with an active model, and its version.
    pub fn active_models(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), b"a") {
            let (k, v) = item?;
            if k.first() != Some(&b'a') {
                break;
            }
            let kind = String::from_utf8_lossy(&k[1..]).into_owned();
            let version = keys::u64_from_be(&v)
                .ok_or_else(|| StoreError::Corrupt(format!("active model of {kind}")))?;
            out.push((kind, version));
        }
        Ok(out)
    }

    /// Persist a host record on its own (hello, disconnect).
    pub fn put_host(&self, record: &HostRecord) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CF_META),
            keys::host(&record.host_id),
            serde_json::to_vec(record).expect("serialisable"),
            &self.write_opts,
        )?;
        Ok(())
    }

    pub fn host(&self, host: &str) -> Result<Option<HostRecord>, StoreError> {
        self.db
            .get_cf(self.cf(CF_META), keys::host(host))?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("host {host}: {e}")))
            })
            .transpose()
    }

    pub fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), b"h") {
            let (k, v) = item?;
            if k.first() != Some(&b'h') {
                break;
            }
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("host record: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Every catalog entry, optionally only those of `host`.
    pub fn series(&self, host: Option<&str>) -> Result<Vec<SeriesMeta>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_CATALOG), b"k") {
            let (k, v) = item?;
            if k.first() != Some(&b'k') {
                break;
            }
            let meta: SeriesMeta = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("catalog: {e}")))?;
            if host.is_none_or(|h| h == meta.id.host) {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// Decode every chunk of (series, window), sealed first then partials in
    /// write order; returns the samples and the partial keys read.
    fn read_window(
        &self,
        series: u64,
        window: i64,
    ) -> Result<(Vec<Sample>, Vec<ChunkKey>), StoreError> {
        let prefix = keys::window_prefix(series, window);
        let mut samples = Vec::new();
        let mut partial_keys = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(CF_SAMPLES),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            chunk::decode_into(&v, &mut samples).map_err(|source| StoreError::Chunk {
                what: "chunk",
                series,
                source,
            })?;
            if k.get(16) == Some(&keys::PARTIAL) {
                partial_keys.push(k);
            }
        }
        // Stable: equal timestamps keep write order, so results do not change
        // when partial chunks are sealed.
        samples.sort_by_key(|s| s.ts_ms);
        Ok((samples, partial_keys))
    }

    /// Samples of `series` with `start <= ts < end`, ordered by timestamp
    /// (equal timestamps in write order).
    pub fn range(&self, series: u64, start: i64, end: i64) -> Result<Vec<Sample>, StoreError> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let from = keys::window_prefix(series, self.window_of(start));
        let mut windows = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_SAMPLES),
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (k, _) = item?;
            let Some((s, w)) = keys::parse_chunk_key(&k) else {
                break;
            };
            if s != series || w >= end {
                break;
            }
            if windows.last() != Some(&w) {
                windows.push(w);
            }
        }
        for w in windows {
            let (samples, _) = self.read_window(series, w)?;
            out.extend(
                samples
                    .into_iter()
                    .filter(|s| s.ts_ms >= start && s.ts_ms < end),
            );
        }
        Ok(out)
    }

    /// The newest sample of `series` (largest timestamp; the last written on ties).
    pub fn last(&self, series: u64) -> Result<Option<Sample>, StoreError> {
        let upper = keys::partial(series, i64::MAX, u64::MAX);
        let mut iter = self.db.iterator_cf(
            self.cf(CF_SAMPLES),
            IteratorMode::From(&upper, Direction::Reverse),
        );
        let Some(item) = iter.next() else {
            return Ok(None);
        };
        let (k, _) = item?;
        let Some((s, w)) = keys::parse_chunk_key(&k) else {
            return Ok(None);
        };
        if s != series {
            return Ok(None);
        }
        Ok(self.read_window(series, w)?.0.pop())
    }

    /// Rollup buckets of `series` at `res` for `[start, end)`: precomputed for
    /// sealed windows, computed on the fly for open ones.
    pub fn rollup(
        &self,
        series: u64,
        res: Resolution,
        start: i64,
        end: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let mut out = Vec::new();
        let mut w = self.window_of(start);
        let rollups = self.cf(CF_ROLLUPS);
        while w < end {
            let pre = self
                .db
                .get_cf(rollups, keys::rollup(series, res.code(), w))?;
            let buckets = match pre {
                Some(v) => rollup::decode(&v)
                    .ok_or_else(|| StoreError::Corrupt(format!("rollup of {series}")))?,
                None => rollup::compute(&self.read_window(series, w)?.0, res),
            };
            out.extend(buckets.into_iter().filter(|b| {
                b.start_ms >= start.div_euclid(res.millis()).saturating_mul(res.millis())
                    && b.start_ms < end
            }));
            w = w.saturating_add(self.window_ms);
            if w == i64::MAX {
                break;
            }
        }
        Ok(out)
    }

    /// Seal every window that closed before `now_ms - seal_grace` and has
    /// partial chunks: merge them into one sealed chunk and store its rollups.
    pub fn compact(&self, now_ms: i64) -> Result<CompactStats, StoreError> {
        let cutoff = now_ms
            .saturating_sub(millis(self.cfg.seal_grace))
            .saturating_sub(self.window_ms);
        let meta = self.cf(CF_META);
        let mut todo = Vec::new();
        for item in self.db.iterator_cf(
            meta,
            IteratorMode::From(&keys::dirty(i64::MIN, 0), Direction::Forward),
        ) {
            let (k, _) = item?;
            let Some((w, s)) = keys::parse_dirty(&k) else {
                break;
            };
            if w > cutoff {
                break;
            }
            todo.push((w, s));
        }
        let mut stats = CompactStats::default();
        for (window, series) in todo {
            let _exclusive = self.gate.write().expect("poisoned");
            let (samples, partials) = self.read_window(series, window)?;
            let mut b = WriteBatch::default();
            b.put_cf(
                self.cf(CF_SAMPLES),
                keys::sealed(series, window),
                chunk::encode(&samples),
            );
            for k in &partials {
                b.delete_cf(self.cf(CF_SAMPLES), k);
            }
            for res in [Resolution::Minute, Resolution::Hour] {
                let buckets = rollup::compute(&samples, res);
                if res == Resolution::Minute && buckets.iter().all(|b| b.count == 1) {
                    // The series is polled at or above a minute: this level would
                    // only copy the raw samples (reads compute it from them).
                    continue;
                }
                b.put_cf(
                    self.cf(CF_ROLLUPS),
                    keys::rollup(series, res.code(), window),
                    rollup::encode(&buckets),
                );
            }
            b.delete_cf(meta, keys::dirty(window, series));
            self.db.write_opt(b, &self.write_opts)?;
            self.dirty
                .lock()
                .expect("poisoned")
                .remove(&(window, series));
            stats.windows_sealed += 1;
            stats.partials_merged += partials.len() as u64;
        }
        Ok(stats)
    }

    /// Delete raw chunks and rollups older than their retention.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<(), StoreError> {
        let raw_cut = self.window_of(now_ms.saturating_sub(millis(self.cfg.raw_retention)));
        let series: Vec<u64> = self
            .catalog
            .lock()
            .expect("poisoned")
            .values()
            .copied()
            .collect();
        let mut b = WriteBatch::default();
        for s in series {
            b.delete_range_cf(
                self.cf(CF_SAMPLES),
                keys::window_prefix(s, i64::MIN),
                keys::window_prefix(s, raw_cut),
            );
            for (res, keep) in [
                (Resolution::Minute, self.cfg.rollup_1m_retention),
                (Resolution::Hour, self.cfg.rollup_1h_retention),
            ] {
                let cut = self.window_of(now_ms.saturating_sub(millis(keep)));
                b.delete_range_cf(
                    self.cf(CF_ROLLUPS),
                    keys::rollup(s, res.code(), i64::MIN),
                    keys::rollup(s, res.code(), cut),
                );
            }
        }
        b.delete_range_cf(
            self.cf(CF_META),
            keys::dirty(i64::MIN, 0),
            keys::dirty(raw_cut, 0),
        );
        // Events are kept as long as the longest rollups: they are the
        // failure labels that models train on.
        let event_cut = now_ms.saturating_sub(millis(self.cfg.rollup_1h_retention));
        let prefix = events::prefix(None);
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            // A record that does not parse is left for an operator to see.
            if serde_json::from_slice::<HardwareEvent>(&v).is_ok_and(|e| e.time_ms < event_cut) {
                b.delete_cf(self.cf(CF_META), k);
            }
        }
        self.db.write_opt(b, &self.write_opts)?;
        Ok(())
    }

    /// Flush memtables and compact all column families (benchmarks, tests).
    pub fn flush_and_compact(&self) -> Result<(), StoreError> {
        // Rewrite the bottommost level too, so tombstones (deleted partial
        // chunks, compaction markers) are really gone.
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for cf in [CF_CATALOG, CF_SAMPLES, CF_ROLLUPS, CF_META] {
            self.db.flush_cf(self.cf(cf))?;
            self.db
                .compact_range_cf_opt(self.cf(cf), None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }

    /// Bytes of live SST files plus WAL-backed memtables, all column families.
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for cf in [CF_CATALOG, CF_SAMPLES, CF_ROLLUPS, CF_META] {
            total += self
                .db
                .property_int_value_cf(self.cf(cf), "rocksdb.total-sst-files-size")?
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Bytes of live SST files of the samples column family alone.
    pub fn sample_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.column_family_bytes()?[1].1)
    }

    /// Bytes of live SST files per column family: catalog, samples, rollups, meta.
    pub fn column_family_bytes(&self) -> Result<[(&'static str, u64); 4], StoreError> {
        let mut out = [CF_CATALOG, CF_SAMPLES, CF_ROLLUPS, CF_META].map(|n| (n, 0));
        for (name, bytes) in &mut out {
            *bytes = self
                .db
                .property_int_value_cf(self.cf(name), "rocksdb.total-sst-files-size")?
                .unwrap_or(0);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
