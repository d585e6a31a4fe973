//! Scheduler → spool: one task per collector, ticking on wall-clock-aligned
//! boundaries, each poll appended to the spool as one batch.

use crate::catalog::Catalog;
use crate::collect::{AnyCollector, Collector, Component, Poll, Quality, Reading, Severity};
use crate::spool::{Spool, SpoolError};
use proto::telemetry::v1 as pb;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// State shared by the collectors and the uplink.
#[derive(Debug)]
pub struct Shared {
    pub spool: Mutex<Spool>,
    pub catalog: Mutex<Catalog>,
    /// The host's components by id: the profile's, plus what collectors
    /// discovered. `Hello` sends all of it; batches send changes.
    pub inventory: Mutex<BTreeMap<String, pb::Component>>,
    /// Signalled after every append (wakes the uplink).
    pub appended: Notify,
    /// Signalled after every append and ack (wakes the spool syncer).
    pub spool_changed: Notify,
    /// The agent's own counters (`/metrics`).
    pub metrics: crate::metrics::AgentMetrics,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The quality a reading is spooled with: an `Ok` reading whose value is
/// NaN is `Nan`.
fn effective_quality(r: &Reading) -> Quality {
    if r.quality == Quality::Ok && r.value.is_nan() {
        Quality::Nan
    } else {
        r.quality
    }
}

fn quality(q: Quality) -> i32 {
    (match q {
        Quality::Ok => pb::Quality::Ok,
        Quality::Nan => pb::Quality::Nan,
        Quality::Stale => pb::Quality::Stale,
        Quality::Unreadable => pb::Quality::Unreadable,
    }) as i32
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

impl Shared {
    /// Merge what a poll saw into the inventory; the new or changed entries.
    /// A collector knows only part of a component (a profile's PSU model,
    /// a disk's serial): fields it leaves empty keep their known value.
    fn inventory_changes(&self, seen: &[Component]) -> Vec<pb::Component> {
        let mut inventory = self.inventory.lock().expect("poisoned");
        let mut changed = Vec::new();
        for c in seen {
            let entry = inventory
                .entry(c.id.clone())
                .or_insert_with(|| pb::Component {
                    id: c.id.clone(),
                    ..pb::Component::default()
                });
            let before = entry.clone();
            for (field, value) in [
                (&mut entry.kind, &c.kind),
                (&mut entry.model, &c.model),
                (&mut entry.serial, &c.serial),
                (&mut entry.firmware, &c.firmware),
            ] {
                if !value.is_empty() {
                    field.clone_from(value);
                }
            }
            if c.power_on_hours != 0 {
                entry.power_on_hours = c.power_on_hours;
            }
            if *entry != before {
                changed.push(entry.clone());
            }
        }
        changed
    }

    /// Turn one poll into one spooled batch; returns its sequence (None if empty).
    pub fn record(&self, poll: &Poll, ts_ms: i64) -> Result<Option<u64>, RecordError> {
        let components = self.inventory_changes(&poll.components);
        if poll.readings.is_empty() && poll.events.is_empty() && components.is_empty() {
            return Ok(None);
        }
        let mut new_series = Vec::new();
        // (series id, value, quality) per reading; encoded straight into the
        // spool record below.
        let mut samples: Vec<(u32, f64, i32)> = Vec::with_capacity(poll.readings.len());
        {
            let mut catalog = self.catalog.lock().expect("poisoned");
            for r in &poll.readings {
                let (id, def) = catalog.resolve_shared(&r.series)?;
                new_series.extend(def);
                samples.push((id, r.value, quality(effective_quality(r))));
            }
        }
        let events: Vec<pb::HardwareEvent> = poll
            .events
            .iter()
            .map(|e| pb::HardwareEvent {
                device_time_ms: e.device_time_ms.unwrap_or(0),
                observed_ms: ts_ms,
                source: e.source.to_owned(),
                component: e.component.clone(),
                severity: match e.severity {
                    Severity::Info => pb::Severity::Info,
                    Severity::Warning => pb::Severity::Warning,
                    Severity::Critical => pb::Severity::Critical,
                }
                .into(),
                description: e.description.clone(),
                attributes: e.attributes.clone().into_iter().collect(),
            })
            .collect();
        let n = u32::try_from(samples.len()).unwrap_or(u32::MAX);
        let seq =
            self.spool
                .lock()
                .expect("poisoned")
                .append_encoded(n, |sequence, stats, buf| {
                    encode_batch(
                        buf,
                        sequence,
                        &new_series,
                        ts_ms,
                        &samples,
                        &stats.to_proto(),
                        &events,
                        &components,
                    );
                })?;
        self.appended.notify_one();
        self.spool_changed.notify_one();
        Ok(Some(seq))
    }
}

/// Encode a `SampleBatch` of one-sample series (one poll) without building
/// a `SeriesSamples` (with its two Vecs) per reading: the same bytes prost
/// writes for the message (field order, packed repeated fields, the quality
/// list only when not OK), checked against prost in a test.
#[allow(clippy::too_many_arguments)]
fn encode_batch(
    buf: &mut Vec<u8>,
    sequence: u64,
    new_series: &[pb::SeriesDef],
    ts_ms: i64,
    samples: &[(u32, f64, i32)],
    stats: &pb::AgentStats,
    events: &[pb::HardwareEvent],
    components: &[pb::Component],
) {
    use prost::encoding::{self as enc, encoded_len_varint, WireType};
    if sequence != 0 {
        enc::uint64::encode(1, &sequence, buf);
    }
    for d in new_series {
        enc::message::encode(2, d, buf);
    }
    #[allow(clippy::cast_sign_loss)]
    let ts = ts_ms as u64;
    for &(id, value, q) in samples {
        #[allow(clippy::cast_sign_loss)]
        let q_len = if q == 0 {
            0
        } else {
            2 + encoded_len_varint(q as u64)
        };
        let id_len = if id == 0 {
            0
        } else {
            1 + encoded_len_varint(u64::from(id))
        };
        let ts_len = encoded_len_varint(ts);
        let len = id_len + 2 + ts_len + 2 + 8 + q_len;
        enc::encode_key(3, WireType::LengthDelimited, buf);
        enc::encode_varint(len as u64, buf);
        if id != 0 {
            enc::encode_key(1, WireType::Varint, buf);
            enc::encode_varint(u64::from(id), buf);
        }
        enc::encode_key(2, WireType::LengthDelimited, buf);
        enc::encode_varint(ts_len as u64, buf);
        enc::encode_varint(ts, buf);
        enc::encode_key(3, WireType::LengthDelimited, buf);
        enc::encode_varint(8, buf);
        buf.extend_from_slice(&value.to_le_bytes());
        if q != 0 {
            enc::encode_key(4, WireType::LengthDelimited, buf);
            #[allow(clippy::cast_sign_loss)]
            let qv = q as u64;
            enc::encode_varint(encoded_len_varint(qv) as u64, buf);
            enc::encode_varint(qv, buf);
        }
    }
    enc::message::encode(4, stats, buf);
    for e in events {
        enc::message::encode(5, e, buf);
    }
    for c in components {
        enc::message::encode(6, c, buf);
    }
}

/// Poll `collector` every `interval` until `shutdown` flips to true.
///
/// `slot` is the collector's index in `shared.metrics.collectors`.
pub async fn run_collector(
    slot: usize,
    mut collector: AnyCollector,
    interval: Duration,
    timeout: Duration,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(1000).max(1);
    // Align ticks to wall-clock multiples of the interval: regular timestamps
    // compress to ~1 bit each in the store.
    let mut tick = crate::tick::Ticker::aligned(interval, now_ms());
    let name = collector.name();
    let m = &shared.metrics.collectors[slot];
    loop {
        tokio::select! {
            t = tick.tick() => {
                if let Err(e) = t {
                    tracing::error!(collector = name, error = %e, "tick source failed; collector stopped");
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let now = now_ms();
        let ts = now - now.rem_euclid(interval_ms);
        let started = tokio::time::Instant::now();
        m.polls.fetch_add(1, Relaxed);
        let poll = match tokio::time::timeout(timeout, collector.poll(ts)).await {
            Ok(p) => p,
            Err(_) => {
                m.timeouts.fetch_add(1, Relaxed);
                tracing::warn!(
                    collector = name,
                    ?timeout,
                    "poll timed out; readings of this tick are missing"
                );
                continue;
            }
        };
        m.duration.observe_duration(started.elapsed());
        m.last_poll_unix_s.store(now_ms() / 1000, Relaxed);
        m.faults.store(poll.faults.len() as u64, Relaxed);
        for f in &poll.faults {
            tracing::debug!(collector = name, sensor = %f.sensor, reason = %f.reason, "sensor unreadable");
        }
        match shared.record(&poll, ts) {
            Ok(_) => {
                m.readings.fetch_add(poll.readings.len() as u64, Relaxed);
                let bad = poll
                    .readings
                    .iter()
                    .filter(|r| effective_quality(r) != Quality::Ok);
                m.bad_readings.fetch_add(bad.count() as u64, Relaxed);
                m.events.fetch_add(poll.events.len() as u64, Relaxed);
                tracing::trace!(collector = name, readings = poll.readings.len(), took = ?started.elapsed(), "polled")
            }
            Err(e) => tracing::error!(collector = name, error = %e, "could not spool a poll"),
        }
    }
    tracing::debug!(collector = name, "collector stopped");
}

/// fsync the spool's unacknowledged records when their `fsync_delay` runs
/// out (records acknowledged before then need none). Runs until `stop`.
pub async fn run_syncer(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let deadline = shared.spool.lock().expect("poisoned").sync_deadline();
        tokio::select! {
            _ = stop.changed() => return,
            // An append sets a deadline, an ack may clear it: look again.
            () = shared.spool_changed.notified() => {}
            () = tokio::time::sleep_until(deadline.unwrap_or_else(std::time::Instant::now).into()), if deadline.is_some() => {
                let now = std::time::Instant::now();
                let synced = shared.spool.lock().expect("poisoned").sync_if_due(now);
                if let Err(e) = synced {
                    // The next append meets the same disk and fails loudly;
                    // the records stay where they are.
                    tracing::error!(error = %e, "spool fsync failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_direct_encoding_is_what_prost_writes() {
        let defs = vec![pb::SeriesDef {
            id: 7,
            metric: "fan_speed_rpm".into(),
            component: "FAN1".into(),
            unit: "rpm".into(),
            labels: [("a".to_owned(), "b".to_owned())].into(),
        }];
        let samples = [
            (7, 5400.0, 0),
            (8, f64::NAN, 1),
            (300, -1.5, 3),
            (0, 0.0, 0),
        ];
        let stats = pb::AgentStats {
            produced_samples: 12,
            ..pb::AgentStats::default()
        };
        let events = vec![pb::HardwareEvent {
            source: "ipmi-sel".into(),
            component: "x".into(),
            description: "d".into(),
            ..pb::HardwareEvent::default()
        }];
        let components = vec![pb::Component {
            id: "disk:1".into(),
            ..pb::Component::default()
        }];
        for ts in [1_700_000_000_000i64, 0, -5] {
            let mut ours = Vec::new();
            encode_batch(
                &mut ours,
                42,
                &defs,
                ts,
                &samples,
                &stats,
                &events,
                &components,
            );
            let theirs = pb::SampleBatch {
                sequence: 42,
                new_series: defs.clone(),
                series: samples
                    .iter()
                    .map(|&(id, v, q)| pb::SeriesSamples {
                        series_id: id,
                        timestamps_ms: vec![ts],
                        values: vec![v],
                        quality: if q == 0 { vec![] } else { vec![q] },
                    })
                    .collect(),
                stats: Some(stats),
                events: events.clone(),
                components: components.clone(),
            };
            assert_eq!(ours, theirs.encode_to_vec(), "ts {ts}");
            // And it decodes to the same message (NaN compares bitwise here).
            let back = pb::SampleBatch::decode(ours.as_slice()).unwrap();
            assert_eq!(back.series.len(), 4);
            assert!(back.series[1].values[0].is_nan());
        }
    }
}
