//! Durable, bounded, at-least-once on-disk spool of sample batches.
//!
//! ```text
//! <dir>/lock                 advisory lock: one agent per spool
//! <dir>/state.json           epoch + accounting (atomic write: tmp, fsync, rename)
//! <dir>/<first_seq:020>.seg  append-only segments of records
//! <dir>/rejected/<seq>.pb    batches the coordinator refused as malformed
//! record = len:u32le crc32:u32le | seq:u64le samples:u32le produced_total:u64le payload
//!          (crc covers everything after itself; payload = encoded SampleBatch)
//! ```
//!
//! Invariants:
//! - Sequence numbers are strictly increasing within an epoch and never reused,
//!   even across crashes (next = max(last record, consumed) + 1).
//! - A record leaves the spool only when it is *consumed*: acknowledged by the
//!   coordinator, rejected (and quarantined), or dropped because the spool is
//!   full. Consumption is a prefix: everything `<= consumed_through` is gone.
//! - Every dropped or rejected sample is counted exactly once: the counters are
//!   fsynced in `state.json` together with `consumed_through` before the
//!   segment file is deleted, and records `<= consumed_through` found on
//!   start-up are discarded without being counted again.
//! - A record dropped from a full spool *after it was sent* but before its ack
//!   is neither counted as dropped nor as delivered: it is *in doubt* (the
//!   coordinator may have stored it) until the coordinator's answer (`Ack` of
//!   that batch, or a `Resolution`) decides it. "Sent" is over-approximated
//!   across crashes by a durable reservation (`sent_reserved`, raised in steps
//!   of [`SEND_RESERVATION`] before sending), so a record that may have reached
//!   the coordinator is never counted as dropped.
//! - Durability against power loss (`fsync`): a record is fsynced at most
//!   `fsync_delay` after it was written *unless the coordinator acknowledged
//!   it first* (its ack means the batch is durable there, see ARCHITECTURE.md
//!   invariant 2). In steady state acks arrive within milliseconds and the
//!   spool never fsyncs; during an outage it fsyncs once per `fsync_delay`.
//!   A process crash loses nothing either way (the page cache survives it);
//!   a power loss can lose at most `fsync_delay` of unacknowledged batches.
//!   Should that happen, the coordinator's `Welcome` names sequences this
//!   spool forgot and [`Spool::resume_after`] skips past them, so sequence
//!   numbers are never reused for different data.
//! - Acknowledgements reach `state.json` lazily (at most every 30 s, and on a
//!   clean stop): after a crash, recently acknowledged records are pending
//!   again and are resent; the coordinator's ledger stores them once, and
//!   if the spool overflows first they are in doubt like any sent record.
//!   Drops, rejections and in-doubt changes are saved durably at once.
//! - A torn tail (crash mid-append) is truncated; a corrupt record in the middle
//!   of a segment skips the rest of that segment, counted in `corrupt_segments`
//!   and logged, never a crash loop.

use prost::Message;
use proto::telemetry::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
const META: usize = 20;
/// Records above this size are refused (a batch is never this large).
pub const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Longest time an acknowledgement may go unrecorded in state.json.
/// The coordinator's `Welcome` names the last stored sequence on every
/// (re)connect, so a stale record here costs resends only while the
/// coordinator is unreachable.
const ACK_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// How far ahead of the last sent sequence the durable send reservation runs:
/// one fsynced state write per this many sends.
pub const SEND_RESERVATION: u64 = 64;

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool {0} is locked by another process (is an agent already running?)")]
    Locked(PathBuf),
    #[error("record of {0} bytes is larger than the spool limit")]
    TooLarge(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Spool limits.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// Make unacknowledged records survive power loss, not only process
    /// crashes (which the page cache covers either way).
    pub fsync: bool,
    /// How long an unacknowledged record may wait for its fsync; zero
    /// fsyncs every append.
    pub fsync_delay: std::time::Duration,
}

/// Persistent accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub epoch: u64,
    /// Every record with `seq <= consumed_through` is acknowledged, rejected or dropped.
    pub consumed_through: u64,
    pub produced_samples: u64,
    pub dropped_batches: u64,
    pub dropped_samples: u64,
    pub rejected_batches: u64,
    pub rejected_samples: u64,
    pub corrupt_segments: u64,
    /// No record above this sequence was ever sent. `None` (a state written
    /// before this field existed) means any record may have been sent.
    #[serde(default)]
    pub sent_reserved: Option<u64>,
    /// Dropped after being sent; awaiting the coordinator's verdict.
    #[serde(default)]
    pub in_doubt: Vec<InDoubt>,
    /// In-doubt batches the coordinator could no longer tell about.
    #[serde(default)]
    pub unresolved_batches: u64,
    #[serde(default)]
    pub unresolved_samples: u64,
}

/// A batch dropped after it was sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct InDoubt {
    pub seq: u64,
    pub samples: u32,
}

/// The coordinator's answer about in-doubt sequences.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub stored: Vec<u64>,
    pub not_stored: Vec<u64>,
    pub unknown: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
struct RecordMeta {
    seq: u64,
    offset: u64,
    len: u32,
    samples: u32,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    records: VecDeque<RecordMeta>,
    bytes: u64,
}

/// Counters for monitoring, the `Hello`/batch stats and `spool-status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub produced_samples: u64,
    pub dropped_batches: u64,
    pub dropped_samples: u64,
    pub rejected_batches: u64,
    pub rejected_samples: u64,
    pub corrupt_segments: u64,
    pub backlog_batches: u64,
    pub backlog_samples: u64,
    pub backlog_bytes: u64,
    pub in_doubt_batches: u64,
    pub in_doubt_samples: u64,
    pub unresolved_batches: u64,
    pub unresolved_samples: u64,
    pub consumed_through: u64,
    pub next_seq: u64,
}

impl Stats {
    pub fn to_proto(self) -> pb::AgentStats {
        pb::AgentStats {
            produced_samples: self.produced_samples,
            dropped_batches: self.dropped_batches,
            dropped_samples: self.dropped_samples,
            backlog_batches: self.backlog_batches,
            backlog_bytes: self.backlog_bytes,
            backlog_samples: self.backlog_samples,
            rejected_samples: self.rejected_samples,
            corrupt_segments: self.corrupt_segments,
            in_doubt_samples: self.in_doubt_samples,
            unresolved_samples: self.unresolved_samples,
        }
    }
}

/// The spool. Not thread-safe by itself; the agent wraps it in a mutex.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    cfg: SpoolConfig,
    state: State,
    segments: VecDeque<Segment>,
    active: Option<File>,
    next_seq: u64,
    /// Highest sequence that may have been sent (this run, or before a crash).
    sent_through: u64,
    /// When state.json was last written by an ack (acks save lazily).
    last_ack_save: std::time::Instant,
    /// Records written but neither fsynced nor acknowledged: when the oldest
    /// was written, and the newest sequence among them.
    unsynced: Option<(std::time::Instant, u64)>,
    _lock: File,
}

fn crc(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

impl Spool {
    /// Open or create the spool in `dir`, recovering from crashes.
    pub fn open(dir: &Path, cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir.join("rejected")).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked(dir.to_owned()));
        }
        let state = load_state(dir)?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            cfg,
            state,
            segments: VecDeque::new(),
            active: None,
            next_seq: 1,
            sent_through: 0,
            last_ack_save: std::time::Instant::now(),
            unsynced: None,
            _lock: lock,
        };
        spool.recover()?;
        Ok(spool)
    }

    fn recover(&mut self) -> Result<(), SpoolError> {
        let mut files: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                files.push((first, path));
            }
        }
        files.sort();
        let mut last_seq = self.state.consumed_through;
        let mut produced = self.state.produced_samples;
        let mut corrupt = 0u64;
        let count = files.len();
        for (i, (_, path)) in files.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let (records, good_len, problem) = scan_segment(&path)?;
            if let Some(problem) = problem {
                if is_last && problem == ScanProblem::TornTail {
                    tracing::warn!(segment = %path.display(), at = good_len, "truncating torn tail of the spool (crash during append)");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io(&path))?;
                    f.set_len(good_len).map_err(io(&path))?;
                    f.sync_all().map_err(io(&path))?;
                } else {
                    corrupt += 1;
                    tracing::error!(segment = %path.display(), at = good_len, ?problem, "corrupt spool segment: skipping the rest of it");
                }
            }
            let mut seg = Segment {
                path: path.clone(),
                records: VecDeque::new(),
                bytes: good_len,
            };
            for (meta, produced_total) in records {
                last_seq = last_seq.max(meta.seq);
                produced = produced.max(produced_total);
                if meta.seq > self.state.consumed_through {
                    seg.records.push_back(meta);
                }
            }
            if seg.records.is_empty() {
                std::fs::remove_file(&path).map_err(io(&path))?;
            } else {
                self.segments.push_back(seg);
            }
        }
        self.state.produced_samples = produced;
        if corrupt > 0 {
            self.state.corrupt_segments += corrupt;
            tracing::error!(
                corrupt_segments = self.state.corrupt_segments,
                "spool had corrupt segments"
            );
        }
        self.next_seq = last_seq + 1;
        // Anything up to the reservation may have been sent before this start.
        self.sent_through = self
            .state
            .sent_reserved
            .map_or(last_seq, |r| r.min(last_seq));
        self.save_state(true)?;
        Ok(())
    }

    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            produced_samples: self.state.produced_samples,
            dropped_batches: self.state.dropped_batches,
            dropped_samples: self.state.dropped_samples,
            rejected_batches: self.state.rejected_batches,
            rejected_samples: self.state.rejected_samples,
            corrupt_segments: self.state.corrupt_segments,
            in_doubt_batches: self.state.in_doubt.len() as u64,
            in_doubt_samples: self
                .state
                .in_doubt
                .iter()
                .map(|d| u64::from(d.samples))
                .sum(),
            unresolved_batches: self.state.unresolved_batches,
            unresolved_samples: self.state.unresolved_samples,
            consumed_through: self.state.consumed_through,
            next_seq: self.next_seq,
            ..Stats::default()
        };
        for seg in &self.segments {
            for r in &seg.records {
                s.backlog_batches += 1;
                s.backlog_samples += u64::from(r.samples);
                s.backlog_bytes += (HEADER + META) as u64 + u64::from(r.len);
            }
        }
        s
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn save_state(&self, durable: bool) -> Result<(), SpoolError> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        let body = serde_json::to_vec_pretty(&self.state).expect("serialisable");
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        if durable {
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if durable {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
        }
        Ok(())
    }

    /// Append a batch. `build` receives the assigned sequence number and the
    /// current stats and returns the batch to store; returns the sequence.
    pub fn append(
        &mut self,
        samples: u32,
        build: impl FnOnce(u64, Stats) -> pb::SampleBatch,
    ) -> Result<u64, SpoolError> {
        self.append_encoded(samples, |seq, stats, buf| {
            build(seq, stats)
                .encode(buf)
                .expect("a Vec grows as needed");
        })
    }

    /// Append a batch whose encoded `SampleBatch` `write` puts into the
    /// buffer itself (the pipeline's hot path, which skips building the
    /// message structs); otherwise as [`Spool::append`].
    pub fn append_encoded(
        &mut self,
        samples: u32,
        write: impl FnOnce(u64, Stats, &mut Vec<u8>),
    ) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        let mut stats = self.stats();
        stats.produced_samples += u64::from(samples);
        let produced_total = self.state.produced_samples + u64::from(samples);
        let mut rec = Vec::with_capacity(HEADER + META + 64 * samples as usize + 256);
        rec.extend_from_slice(&[0; HEADER]);
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&samples.to_le_bytes());
        rec.extend_from_slice(&produced_total.to_le_bytes());
        write(seq, stats, &mut rec);
        let body_len = rec.len() - HEADER;
        if rec.len() > MAX_RECORD || rec.len() as u64 > self.cfg.max_bytes {
            return Err(SpoolError::TooLarge(rec.len()));
        }
        let len32 = u32::try_from(body_len).map_err(|_| SpoolError::TooLarge(rec.len()))?;
        let c = crc(&rec[HEADER..]);
        rec[..4].copy_from_slice(&len32.to_le_bytes());
        rec[4..8].copy_from_slice(&c.to_le_bytes());

        // Make room: drop the oldest segments, counting exactly what is lost.
        while self.total_bytes() + rec.len() as u64 > self.cfg.max_bytes
            && !self.segments.is_empty()
        {
            if self.segments.len() == 1 {
                // Dropping the active segment: writes continue in a fresh one.
                self.active = None;
            }
            self.drop_oldest()?;
        }
        let needs_new = match (self.active.as_ref(), self.segments.back()) {
            (Some(_), Some(seg)) => {
                seg.bytes + rec.len() as u64 > self.cfg.segment_bytes && seg.bytes > 0
            }
            _ => true,
        };
        if needs_new {
            // The segment being left behind gets its pending fsync now: later
            // syncs only reach the active file.
            self.sync_now()?;
            let path = self.dir.join(format!("{seq:020}.seg"));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .map_err(io(&path))?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
            self.active = Some(f);
            self.segments.push_back(Segment {
                path,
                records: VecDeque::new(),
                bytes: 0,
            });
        }
        let seg = self.segments.back_mut().expect("active segment exists");
        let file = self.active.as_mut().expect("active file exists");
        let offset = seg.bytes;
        file.write_all(&rec).map_err(io(&seg.path))?;
        if self.cfg.fsync {
            if self.cfg.fsync_delay.is_zero() {
                file.sync_data().map_err(io(&seg.path))?;
            } else {
                let since = self.unsynced.map_or_else(std::time::Instant::now, |u| u.0);
                self.unsynced = Some((since, seq));
            }
        }
        seg.bytes += rec.len() as u64;
        seg.records.push_back(RecordMeta {
            seq,
            offset,
            len: len32,
            samples,
        });
        self.state.produced_samples = produced_total;
        self.next_seq = seq + 1;
        Ok(seq)
    }

    fn drop_oldest(&mut self) -> Result<(), SpoolError> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(());
        };
        let (mut batches, mut samples, mut through) = (0u64, 0u64, self.state.consumed_through);
        let mut in_doubt = 0u64;
        for r in &seg.records {
            through = through.max(r.seq);
            if r.seq <= self.sent_through {
                // It may be stored already: the coordinator decides, later.
                self.state.in_doubt.push(InDoubt {
                    seq: r.seq,
                    samples: r.samples,
                });
                in_doubt += 1;
            } else {
                batches += 1;
                samples += u64::from(r.samples);
            }
        }
        self.state.dropped_batches += batches;
        self.state.dropped_samples += samples;
        self.state.consumed_through = through;
        // Counters are durable before the data disappears: never lost, never double counted.
        self.save_state(true)?;
        std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
        if batches + in_doubt > 0 {
            tracing::warn!(
                batches,
                samples,
                in_doubt,
                total_dropped = self.state.dropped_samples,
                "spool full: dropped oldest batches"
            );
        }
        Ok(())
    }

    /// Note that `seq` is about to be sent. Raises the durable send
    /// reservation first when `seq` is beyond it.
    pub fn mark_sent(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.sent_through = self.sent_through.max(seq);
        if self.state.sent_reserved.is_none_or(|r| seq > r) {
            self.state.sent_reserved = Some(seq + SEND_RESERVATION);
            self.save_state(true)?;
        }
        Ok(())
    }

    /// Write the latest acknowledgements to state.json (acks save lazily)
    /// and fsync pending records; called on a clean stop.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        self.sync_now()?;
        self.save_state(true)
    }

    /// When the oldest unacknowledged, unsynced record is due for its fsync
    /// (`None`: nothing is waiting).
    pub fn sync_deadline(&self) -> Option<std::time::Instant> {
        self.unsynced.map(|(since, _)| since + self.cfg.fsync_delay)
    }

    /// fsync the active segment if a record's deadline has passed at `now`;
    /// returns whether it synced.
    pub fn sync_if_due(&mut self, now: std::time::Instant) -> Result<bool, SpoolError> {
        if self.sync_deadline().is_some_and(|d| d <= now) {
            self.sync_now()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn sync_now(&mut self) -> Result<(), SpoolError> {
        if self.unsynced.take().is_some() {
            if let (Some(file), Some(seg)) = (self.active.as_ref(), self.segments.back()) {
                file.sync_data().map_err(io(&seg.path))?;
            }
        }
        Ok(())
    }

    /// Start after the coordinator's highest stored sequence (its `Welcome`):
    /// everything up to it is consumed. Normally that sequence is one this
    /// spool still has or already consumed; if it is beyond every record
    /// here, records the coordinator stored were lost (a power loss inside
    /// `fsync_delay`), and new batches must not reuse their sequences.
    pub fn resume_after(&mut self, last_stored: u64) -> Result<(), SpoolError> {
        if last_stored <= self.state.consumed_through {
            return Ok(());
        }
        if last_stored >= self.next_seq {
            tracing::warn!(
                last_stored,
                next_seq = self.next_seq,
                "the coordinator has batches this spool no longer holds (lost to a power failure before their fsync?): continuing after them"
            );
            self.next_seq = last_stored + 1;
            self.sent_through = self.sent_through.max(last_stored);
            return self.consume_through(last_stored, true, true);
        }
        self.ack(last_stored)
    }

    /// Sequences dropped after being sent, awaiting the coordinator's verdict.
    pub fn in_doubt(&self) -> Vec<u64> {
        self.state.in_doubt.iter().map(|d| d.seq).collect()
    }

    /// Apply the coordinator's verdicts: stored batches were delivered, the
    /// rest become dropped (or unresolved). Sequences not in doubt are ignored.
    pub fn resolve(&mut self, r: &Resolution) -> Result<(), SpoolError> {
        let before = self.state.in_doubt.len();
        let (mut dropped, mut unresolved) = (0u64, 0u64);
        let state = &mut self.state;
        state.in_doubt.retain(|d| {
            let n = u64::from(d.samples);
            if r.stored.contains(&d.seq) {
                false
            } else if r.not_stored.contains(&d.seq) {
                state.dropped_batches += 1;
                state.dropped_samples += n;
                dropped += n;
                false
            } else if r.unknown.contains(&d.seq) {
                state.unresolved_batches += 1;
                state.unresolved_samples += n;
                unresolved += n;
                false
            } else {
                true
            }
        });
        if self.state.in_doubt.len() != before {
            tracing::info!(
                resolved = before - self.state.in_doubt.len(),
                dropped_samples = dropped,
                unresolved_samples = unresolved,
                "in-doubt batches resolved"
            );
            self.save_state(true)?;
        }
        Ok(())
    }

    /// Sequence numbers of unconsumed records after `after`, oldest first.
    pub fn pending_after(&self, after: u64, max: usize) -> Vec<u64> {
        self.segments
            .iter()
            .flat_map(|s| s.records.iter())
            .filter(|r| r.seq > after)
            .take(max)
            .map(|r| r.seq)
            .collect()
    }

    fn find(&self, seq: u64) -> Option<(&Segment, RecordMeta)> {
        self.segments
            .iter()
            .find_map(|s| s.records.iter().find(|r| r.seq == seq).map(|r| (s, *r)))
    }

    /// Read a record's payload (re-verifying its checksum); `None` if the record
    /// is no longer in the spool (dropped meanwhile).
    pub fn read(&self, seq: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        let Some((seg, meta)) = self.find(seq) else {
            return Ok(None);
        };
        // The uplink reads most records right after their append: from the
        // active segment, through the handle already open for writing.
        let opened;
        let f = match (&self.active, self.segments.back()) {
            (Some(active), Some(last)) if last.path == seg.path => active,
            _ => {
                opened = File::open(&seg.path).map_err(io(&seg.path))?;
                &opened
            }
        };
        let mut buf = vec![0u8; HEADER + meta.len as usize];
        f.read_exact_at(&mut buf, meta.offset)
            .map_err(io(&seg.path))?;
        if crc(&buf[HEADER..]) != u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) {
            return Err(SpoolError::Io {
                path: seg.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("record {seq} changed on disk"),
                ),
            });
        }
        buf.drain(..HEADER + META);
        Ok(Some(buf))
    }

    /// Cumulative acknowledgement: every record `<= seq` is consumed.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(i) = self.state.in_doubt.iter().position(|d| d.seq == seq) {
            // Dropped while in flight, and the coordinator has it: delivered.
            self.state.in_doubt.remove(i);
            return self.save_state(true);
        }
        // A lost ack only causes a resend, which the coordinator deduplicates
        // (and, should the spool overflow first, the resent batch is in doubt
        // and resolved exactly): state.json is rewritten at most every
        // ACK_SAVE_INTERVAL on this path, not once per ack.
        let save = self.last_ack_save.elapsed() >= ACK_SAVE_INTERVAL;
        self.consume_through(seq, false, save)
    }

    fn consume_through(&mut self, seq: u64, durable: bool, save: bool) -> Result<(), SpoolError> {
        if self.unsynced.is_some_and(|(_, newest)| newest <= seq) {
            // The coordinator holds all of them durably: no fsync needed.
            self.unsynced = None;
        }
        if seq > self.state.consumed_through {
            self.state.consumed_through = seq;
            for seg in &mut self.segments {
                while seg.records.front().is_some_and(|r| r.seq <= seq) {
                    seg.records.pop_front();
                }
            }
        }
        if save || durable {
            self.save_state(durable)?;
            self.last_ack_save = std::time::Instant::now();
        }
        self.remove_empty_segments()
    }

    fn remove_empty_segments(&mut self) -> Result<(), SpoolError> {
        let mut saved = false;
        while self.segments.front().is_some_and(|s| s.records.is_empty()) {
            let is_active = self.segments.len() == 1;
            if is_active {
                // Keep writing into the active segment unless it is full.
                if self.segments[0].bytes < self.cfg.segment_bytes {
                    break;
                }
                self.active = None;
            }
            if !saved {
                // The records about to vanish are what recovery would otherwise
                // learn produced_samples and the next sequence from: persist
                // consumption first, or a crash could reuse sequence numbers
                // (and the coordinator would drop new batches as replays).
                self.save_state(true)?;
                self.last_ack_save = std::time::Instant::now();
                saved = true;
            }
            let seg = self.segments.pop_front().expect("checked");
            std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
        }
        Ok(())
    }

    /// The coordinator refused `seq` for good: move it to `rejected/`, count
    /// it, and consume everything up to it (counters and consumption are made
    /// durable together, so the batch is counted exactly once).
    pub fn reject(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        if let Some(i) = self.state.in_doubt.iter().position(|d| d.seq == seq) {
            // Dropped while in flight, then refused: the payload is gone, the count is not.
            let d = self.state.in_doubt.remove(i);
            self.state.rejected_batches += 1;
            self.state.rejected_samples += u64::from(d.samples);
            tracing::error!(
                seq,
                samples = d.samples,
                reason,
                "coordinator rejected a batch (already dropped from the spool)"
            );
            return self.save_state(true);
        }
        if seq <= self.state.consumed_through {
            return Ok(());
        }
        if let Some(payload) = self.read(seq)? {
            let path = self.dir.join("rejected").join(format!("{seq:020}.pb"));
            std::fs::write(&path, &payload).map_err(io(&path))?;
            let samples = self.find(seq).map_or(0, |(_, m)| m.samples);
            self.state.rejected_batches += 1;
            self.state.rejected_samples += u64::from(samples);
            tracing::error!(seq, samples, reason, quarantined = %path.display(), "coordinator rejected a batch");
        }
        self.consume_through(seq, true, true)
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum ScanProblem {
    /// The file ends inside a record.
    TornTail,
    /// A complete record fails its checksum or is structurally impossible.
    Corrupt,
}

/// Intact records (meta, produced_total), length of the intact prefix, and
/// the problem that stopped the scan, if any.
type Scan = (Vec<(RecordMeta, u64)>, u64, Option<ScanProblem>);

/// Read every intact record of a segment.
fn scan_segment(path: &Path) -> Result<Scan, SpoolError> {
    let mut f = File::open(path).map_err(io(path))?;
    let file_len = f.seek(SeekFrom::End(0)).map_err(io(path))?;
    f.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut data = Vec::with_capacity(usize::try_from(file_len).unwrap_or(0));
    f.read_to_end(&mut data).map_err(io(path))?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut last_seq = 0u64;
    while pos < data.len() {
        let Some(head) = data.get(pos..pos + HEADER) else {
            return Ok((out, pos as u64, Some(ScanProblem::TornTail)));
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4")) as usize;
        let want = u32::from_le_bytes(head[4..8].try_into().expect("4"));
        if !(META..=MAX_RECORD).contains(&len) {
            return Ok((out, pos as u64, Some(ScanProblem::Corrupt)));
        }
        let Some(body) = data.get(pos + HEADER..pos + HEADER + len) else {
            return Ok((out, pos as u64, Some(ScanProblem::TornTail)));
        };
        if crc(body) != want {
            // A bad checksum on the very last record is a torn write too.
            let problem = if pos + HEADER + len == data.len() {
                ScanProblem::TornTail
            } else {
                ScanProblem::Corrupt
            };
            return Ok((out, pos as u64, Some(problem)));
        }
        let seq = u64::from_le_bytes(body[..8].try_into().expect("8"));
        let samples = u32::from_le_bytes(body[8..12].try_into().expect("4"));
        let produced = u64::from_le_bytes(body[12..20].try_into().expect("8"));
        if seq <= last_seq {
            return Ok((out, pos as u64, Some(ScanProblem::Corrupt)));
        }
        last_seq = seq;
        out.push((
            RecordMeta {
                seq,
                offset: pos as u64,
                len: u32::try_from(len).expect("len <= MAX_RECORD"),
                samples,
            },
            produced,
        ));
        pos += HEADER + len;
    }
    Ok((out, pos as u64, None))
}

fn load_state(dir: &Path) -> Result<State, SpoolError> {
    let path = dir.join("state.json");
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
            Ok(s) => Ok(s),
            Err(e) => {
                let aside = dir.join("state.json.corrupt");
                tracing::error!(error = %e, moved_to = %aside.display(), "spool state is corrupt: starting a new epoch (unacknowledged batches may be stored twice)");
                std::fs::rename(&path, &aside).map_err(io(&path))?;
                Ok(State {
                    epoch: new_epoch(),
                    ..State::default()
                })
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
            epoch: new_epoch(),
            ..State::default()
        }),
        Err(source) => Err(SpoolError::Io { path, source }),
    }
}

fn new_epoch() -> u64 {
    // Non-zero so "0 = unknown" never collides.
    fastrand::u64(1..)
}

/// Read-only view of a spool directory for `umbra-agent spool-status` (takes
/// the lock, so it refuses to run beside a live agent).
pub fn inspect(dir: &Path, cfg: SpoolConfig) -> Result<Stats, SpoolError> {
    Ok(Spool::open(dir, cfg)?.stats())
}

#[cfg(test)]
mod tests;
