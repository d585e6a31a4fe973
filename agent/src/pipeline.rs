//! Scheduler → spool: one task per collector, ticking on wall-clock-aligned
//! boundaries, each poll appended to the spool as one batch.

use crate::catalog::Catalog;
use crate::collect::{AnyCollector, Collector, Component, Poll, Quality, Severity};
use crate::spool::{Spool, SpoolError};
use proto::telemetry::v1 as pb;
use std::collections::BTreeMap;
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
    /// Signalled after every append.
    pub appended: Notify,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
        let mut series = Vec::with_capacity(poll.readings.len());
        {
            let mut catalog = self.catalog.lock().expect("poisoned");
            for r in &poll.readings {
                let (id, def) = catalog.resolve(&r.series)?;
                new_series.extend(def);
                let mut q = r.quality;
                if q == Quality::Ok && r.value.is_nan() {
                    q = Quality::Nan;
                }
                series.push(pb::SeriesSamples {
                    series_id: id,
                    timestamps_ms: vec![ts_ms],
                    values: vec![r.value],
                    quality: if q == Quality::Ok {
                        vec![]
                    } else {
                        vec![quality(q)]
                    },
                });
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
        let n = u32::try_from(series.len()).unwrap_or(u32::MAX);
        let seq = self
            .spool
            .lock()
            .expect("poisoned")
            .append(n, |sequence, stats| pb::SampleBatch {
                sequence,
                new_series,
                series,
                stats: Some(stats.to_proto()),
                events,
                components,
            })?;
        self.appended.notify_one();
        Ok(Some(seq))
    }
}

/// Poll `collector` every `interval` until `shutdown` flips to true.
pub async fn run_collector(
    mut collector: AnyCollector,
    interval: Duration,
    timeout: Duration,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(1000).max(1);
    // Align ticks to wall-clock multiples of the interval: regular timestamps
    // compress to ~1 bit each in the store.
    let now = now_ms();
    let first = now - now.rem_euclid(interval_ms) + interval_ms;
    let delay = Duration::from_millis(u64::try_from(first - now).unwrap_or(0));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + delay, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let name = collector.name();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let now = now_ms();
        let ts = now - now.rem_euclid(interval_ms);
        let started = tokio::time::Instant::now();
        let poll = match tokio::time::timeout(timeout, collector.poll(ts)).await {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(
                    collector = name,
                    ?timeout,
                    "poll timed out; readings of this tick are missing"
                );
                continue;
            }
        };
        for f in &poll.faults {
            tracing::debug!(collector = name, sensor = %f.sensor, reason = %f.reason, "sensor unreadable");
        }
        match shared.record(&poll, ts) {
            Ok(_) => {
                tracing::trace!(collector = name, readings = poll.readings.len(), took = ?started.elapsed(), "polled")
            }
            Err(e) => tracing::error!(collector = name, error = %e, "could not spool a poll"),
        }
    }
    tracing::debug!(collector = name, "collector stopped");
}
