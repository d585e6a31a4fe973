//! Failure risk per disk: the active `failure/disk` model over each disk's
//! daily SMART history.
//!
//! - [`disks`] finds every disk's raw SMART attribute series in the catalog
//!   (the `id` label of the agent's SMART collector; the raw value may sit
//!   under a profile's own metric name).
//! - [`daily`] turns hourly rollups into the model's daily input: the
//!   day's largest raw value per attribute (Backblaze's daily snapshots are
//!   what the model was trained on; raw SMART counters only grow), from
//!   the disk's first day with data to its last, at most [`SEQ_DAYS`] for
//!   scoring (training reads more); [`drives`] does it for every disk in
//!   the store, with its model and firmware from the inventory.
//! - [`evaluate`] scores every disk with one model version; [`run`] is the
//!   coordinator's loop: it reloads the model when the active version
//!   changes (hot swap: the next run uses it, no restart) and publishes to
//!   the [`Board`] that the fleet API and `/metrics` read.
//!
//! Pure where it can be: [`daily`] and [`Board`] do no I/O.

use crate::model::SeriesMeta;
use crate::paging::Notice;
use crate::shadow::runtime::Output;
use crate::store::{Bucket, HostComponent, Resolution, Store, StoreError};
use predict::data::backblaze::{attribute_index, Drive, ATTRIBUTES, USAGE_ATTRIBUTE};
use predict::eval::backblaze::{example_for, explanation, MODEL_HORIZONS, SEQ_DAYS};
use predict::failure::FailureModel;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The model kind the disk risk uses.
pub const DISK_MODEL: &str = "failure/disk";
/// Names of the model's horizons ([`MODEL_HORIZONS`], in days).
pub const WINDOWS: [&str; MODEL_HORIZONS.len()] = ["24h", "7d"];
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Metrics of the SMART collector that carry an attribute's normalised
/// value or threshold, not its raw value.
const NOT_RAW: [&str; 2] = ["smart_attribute_normalized", "smart_attribute_threshold"];

#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model {kind} version {version}: {reason}")]
    Model {
        kind: &'static str,
        version: u64,
        reason: String,
    },
}

/// One component's risk.
#[derive(Debug, Clone, PartialEq)]
pub struct Risk {
    pub host: String,
    pub component: String,
    /// Calibrated P(failure within each of [`WINDOWS`]).
    pub probability: [f64; MODEL_HORIZONS.len()],
    pub explanation: String,
    pub model_version: u64,
    pub evaluated_ms: i64,
    pub history_days: u32,
    /// In the feedback loop's un-mitigated holdout (never shadowed).
    pub holdout: bool,
}

/// The latest risks, shared by the loop, the fleet API and `/metrics`.
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<BoardState>,
}

#[derive(Debug, Default, Clone)]
pub struct BoardState {
    /// By (host, component).
    pub risks: BTreeMap<(String, String), Risk>,
    pub last_run_ms: i64,
    pub model_version: Option<u64>,
    pub runs: u64,
    pub failed_runs: u64,
}

impl Board {
    /// Replace the risks with one run's.
    pub fn publish(&self, risks: Vec<Risk>, model_version: u64, now_ms: i64) {
        let mut s = self.inner.lock().expect("poisoned");
        s.risks = risks
            .into_iter()
            .map(|r| ((r.host.clone(), r.component.clone()), r))
            .collect();
        s.model_version = Some(model_version);
        s.last_run_ms = now_ms;
        s.runs += 1;
    }

    fn failed(&self) {
        self.inner.lock().expect("poisoned").failed_runs += 1;
    }

    /// Without an active model there are no risks (not zero risks).
    fn clear(&self) {
        let mut s = self.inner.lock().expect("poisoned");
        s.risks.clear();
        s.model_version = None;
    }

    pub fn snapshot(&self) -> BoardState {
        self.inner.lock().expect("poisoned").clone()
    }

    /// Risks ordered by P(7 d), highest first (optionally one host's).
    pub fn ranked(&self, host: Option<&str>) -> Vec<Risk> {
        let s = self.inner.lock().expect("poisoned");
        let mut out: Vec<Risk> = s
            .risks
            .values()
            .filter(|r| host.is_none_or(|h| h == r.host))
            .cloned()
            .collect();
        let last = MODEL_HORIZONS.len() - 1;
        out.sort_by(|a, b| b.probability[last].total_cmp(&a.probability[last]));
        out
    }
}

/// A disk: (host, component) → its raw series per attribute.
pub fn disks(series: &[SeriesMeta]) -> BTreeMap<(String, String), Vec<(u16, u64)>> {
    let mut out: BTreeMap<(String, String), Vec<(u16, u64)>> = BTreeMap::new();
    for m in series {
        if NOT_RAW.contains(&m.id.metric.as_str()) {
            continue;
        }
        let Some(attr) = m.id.labels.get("id").and_then(|v| v.parse::<u16>().ok()) else {
            continue;
        };
        if (attribute_index(attr).is_none() && attr != USAGE_ATTRIBUTE)
            || !m.id.component.starts_with("disk:")
        {
            continue;
        }
        out.entry((m.id.host.clone(), m.id.component.clone()))
            .or_default()
            .push((attr, m.key));
    }
    out
}

/// The model's input drive from hourly buckets per attribute: one row per
/// UTC day from the first day with any data to the last (at most
/// `max_days`: [`SEQ_DAYS`] for scoring, the retained history for
/// training), each attribute's largest value that day (NaN: no data).
/// `None` when there is no data at all.
pub fn daily(component: &str, buckets: &[(u16, Vec<Bucket>)], max_days: usize) -> Option<Drive> {
    // Per day: the attributes, then the usage attribute.
    let mut by_day: BTreeMap<i64, ([f32; ATTRIBUTES.len()], f32)> = BTreeMap::new();
    for (attr, bs) in buckets {
        let j = attribute_index(*attr);
        if j.is_none() && *attr != USAGE_ATTRIBUTE {
            continue;
        }
        for b in bs.iter().filter(|b| b.count > 0 && b.max.is_finite()) {
            let row = by_day
                .entry(b.start_ms.div_euclid(DAY_MS))
                .or_insert(([f32::NAN; ATTRIBUTES.len()], f32::NAN));
            #[allow(clippy::cast_possible_truncation)]
            let v = b.max as f32;
            let slot = match j {
                Some(j) => &mut row.0[j],
                None => &mut row.1,
            };
            *slot = if slot.is_nan() { v } else { slot.max(v) };
        }
    }
    let (&first, _) = by_day.first_key_value()?;
    let (&last, _) = by_day.last_key_value()?;
    let start = first.max(last - i64::try_from(max_days).unwrap_or(i64::MAX) + 1);
    let rows: Vec<(i32, ([f32; ATTRIBUTES.len()], f32))> = (start..=last)
        .map(|d| {
            let row = by_day
                .get(&d)
                .copied()
                .unwrap_or(([f32::NAN; ATTRIBUTES.len()], f32::NAN));
            (i32::try_from(d).unwrap_or(i32::MAX), row)
        })
        .collect();
    Some(Drive {
        serial: component.to_owned(),
        model: String::new(),
        firmware: String::new(),
        capacity_bytes: 0, // unknown to the coordinator: the model reads NaN as "average"
        days: rows.iter().map(|r| r.0).collect(),
        raw: rows.iter().map(|r| r.1 .0).collect(),
        written: rows.iter().map(|r| r.1 .1).collect(),
        failed_on: None,
    })
}

/// Every disk in `store` as the model reads it: its [`daily`] rows of the
/// last `max_days` before `now_ms` (disks without data left out), with its
/// model and firmware from its host's inventory (empty when unknown: the
/// model then reads the fleet's average failure rate).
pub fn drives(
    store: &Store,
    now_ms: i64,
    max_days: usize,
) -> Result<Vec<(HostComponent, Drive)>, StoreError> {
    let from = now_ms - (i64::try_from(max_days).unwrap_or(i64::MAX) + 1) * DAY_MS;
    let hosts: BTreeMap<String, crate::model::HostRecord> = store
        .hosts()?
        .into_iter()
        .map(|h| (h.host_id.clone(), h))
        .collect();
    let mut out = Vec::new();
    for ((host, component), series) in disks(&store.series(None)?) {
        let mut buckets = Vec::with_capacity(series.len());
        for (attr, key) in series {
            buckets.push((attr, store.rollup(key, Resolution::Hour, from, now_ms + 1)?));
        }
        let Some(mut drive) = daily(&component, &buckets, max_days) else {
            continue;
        };
        let known = hosts
            .get(&host)
            .and_then(|h| h.components.iter().find(|c| c.id == component));
        if let Some(c) = known {
            drive.model.clone_from(&c.model);
            drive.firmware.clone_from(&c.firmware);
        }
        out.push(((host, component), drive));
    }
    Ok(out)
}

/// Score every disk in `store` with `model`.
pub fn evaluate(
    store: &Store,
    model: &FailureModel,
    version: u64,
    now_ms: i64,
) -> Result<Vec<Risk>, RiskError> {
    let mut out = Vec::new();
    for ((host, component), drive) in drives(store, now_ms, SEQ_DAYS)? {
        let last = drive.days.len() - 1;
        let e = example_for(model, &drive, last, vec![false; MODEL_HORIZONS.len()], 1.0);
        let model_err = |e: predict::nn::ModelError| RiskError::Model {
            kind: DISK_MODEL,
            version,
            reason: e.to_string(),
        };
        let p = model
            .predict(std::slice::from_ref(&e))
            .map_err(model_err)?
            .pop()
            .unwrap_or_default();
        let mut probability = [f64::NAN; MODEL_HORIZONS.len()];
        for (slot, v) in probability.iter_mut().zip(p) {
            *slot = v;
        }
        out.push(Risk {
            host,
            component,
            probability,
            explanation: explanation(model, &e, MODEL_HORIZONS.len() - 1, 3),
            model_version: version,
            evaluated_ms: now_ms,
            history_days: u32::try_from(drive.days.len()).unwrap_or(u32::MAX),
            holdout: false,
        });
    }
    Ok(out)
}

pub fn load(store: &Store, version: u64) -> Result<FailureModel, RiskError> {
    let bytes = store
        .model_bytes(DISK_MODEL, version)?
        .ok_or_else(|| RiskError::Model {
            kind: DISK_MODEL,
            version,
            reason: "bytes missing".into(),
        })?;
    FailureModel::from_bytes(&bytes).map_err(|e| RiskError::Model {
        kind: DISK_MODEL,
        version,
        reason: e.to_string(),
    })
}

/// What acts on the risks after each run.
#[derive(Debug, Clone)]
pub struct Shadowing {
    pub shadows: Arc<crate::shadow::runtime::Shadows>,
    pub settings: crate::shadow::runtime::Settings,
    pub pagers: Arc<crate::paging::Pagers>,
    /// Use the active model's tuned threshold (`[learn] apply_threshold`).
    pub apply_threshold: bool,
}

/// The loaded model: version, model, its tuned threshold.
type Loaded = (u64, FailureModel, Option<f64>);

/// `settings` with the policy's `enter` moved to a tuned threshold, `exit`
/// keeping its ratio to `enter` (the hysteresis band scales with it).
pub fn with_threshold(
    settings: &crate::shadow::runtime::Settings,
    tuned: Option<f64>,
) -> crate::shadow::runtime::Settings {
    let mut s = settings.clone();
    if let Some(t) = tuned {
        let ratio = s.policy.exit / s.policy.enter;
        s.policy.enter = t;
        s.policy.exit = t * ratio;
    }
    s
}

/// One run: load the active model if it changed, score, publish, and feed
/// the shadow lifecycles.
fn run_once(
    store: &Store,
    board: &Board,
    shadowing: &Shadowing,
    loaded: &mut Option<Loaded>,
) -> Result<Output, RiskError> {
    let Some(active) = store.active_model(DISK_MODEL)? else {
        if loaded.take().is_some() {
            tracing::info!(kind = DISK_MODEL, "no active model any more: risks cleared");
        }
        board.clear();
        return Ok(Output::default());
    };
    if loaded.as_ref().is_none_or(|(v, _, _)| *v != active) {
        let model = load(store, active)?;
        let tuned = if shadowing.apply_threshold {
            crate::learn::tuned_enter(store, active)?
        } else {
            None
        };
        tracing::info!(
            kind = DISK_MODEL,
            version = active,
            tuned_enter = ?tuned,
            "model loaded for inference"
        );
        *loaded = Some((active, model, tuned));
    }
    let (version, model, tuned) = loaded.as_ref().expect("just loaded");
    let now = crate::now_ms();
    let mut risks = evaluate(store, model, *version, now)?;
    for r in &mut risks {
        r.holdout = crate::learn::is_holdout(&r.host, shadowing.settings.holdout_percent);
    }
    let settings = with_threshold(&shadowing.settings, *tuned);
    let mut out = crate::shadow::runtime::step(store, &shadowing.shadows, &settings, &risks, now)?;
    out.notices.extend(crate::shadow::runtime::device_failures(
        store,
        &shadowing.shadows,
        &settings,
        now,
    )?);
    board.publish(risks, *version, now);
    Ok(out)
}

/// Deliver a step's pages to every receiver, refresh the open ones where
/// the receiver needs it, and audit and count each delivery.
pub async fn deliver(
    store: &Store,
    shadows: &crate::shadow::runtime::Shadows,
    pagers: &crate::paging::Pagers,
    out: Output,
) {
    if pagers.is_empty() {
        return;
    }
    let now = crate::now_ms();
    let refreshes = out.refresh.into_iter().map(|mut p| {
        p.at_ms = now;
        (Notice::Trigger(p), true)
    });
    for (notice, refresh_only) in out.notices.into_iter().map(|n| (n, false)).chain(refreshes) {
        for o in pagers.deliver(&notice, refresh_only).await {
            let ok = o.result.is_ok();
            shadows.count_delivery(o.receiver, ok);
            let kind = match &notice {
                Notice::Trigger(_) if refresh_only => "refresh",
                Notice::Trigger(_) => "trigger",
                Notice::Resolve(_) => "resolve",
            };
            if let Err(e) = &o.result {
                tracing::error!(receiver = o.receiver, target = %notice.page().target, error = %e, "page not delivered");
            }
            // Refreshes repeat every run: only their failures are audited.
            if refresh_only && ok {
                continue;
            }
            let record = serde_json::json!({
                "target": notice.page().target, "event": "page_delivery",
                "receiver": o.receiver, "kind": kind, "delivered": ok,
                "error": o.result.err().map(|e| e.to_string()),
            });
            if let Err(e) = store.append_audit(now, &record) {
                tracing::error!(error = %e, "writing the shadow audit log failed");
            }
        }
    }
}

/// Score every `every` until the task is dropped.
pub async fn run(store: Arc<Store>, board: Arc<Board>, shadowing: Shadowing, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut loaded: Option<Loaded> = None;
    loop {
        tick.tick().await;
        let (s, b, sh) = (store.clone(), board.clone(), shadowing.clone());
        let mut l = loaded.take();
        let res = tokio::task::spawn_blocking(move || {
            let r = run_once(&s, &b, &sh, &mut l);
            (r, l)
        })
        .await;
        match res {
            Ok((Ok(out), l)) => {
                loaded = l;
                deliver(&store, &shadowing.shadows, &shadowing.pagers, out).await;
            }
            Ok((Err(e), l)) => {
                loaded = l;
                board.failed();
                tracing::error!(error = %e, "risk evaluation failed");
            }
            Err(e) => {
                board.failed();
                tracing::error!(error = %e, "risk evaluation panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeriesId;

    fn meta(key: u64, host: &str, metric: &str, component: &str, id: Option<&str>) -> SeriesMeta {
        SeriesMeta {
            key,
            id: SeriesId {
                host: host.into(),
                metric: metric.into(),
                component: component.into(),
                labels: id
                    .map(|i| ("id".to_owned(), i.to_owned()))
                    .into_iter()
                    .collect(),
            },
            unit: "raw".into(),
        }
    }

    #[test]
    fn disks_take_raw_attribute_series_whatever_their_metric_name() {
        let series = [
            meta(1, "h1", "smart_attribute_raw", "disk:wwn-1", Some("197")),
            meta(2, "h1", "disk_reallocated_sectors", "disk:wwn-1", Some("5")),
            meta(
                3,
                "h1",
                "smart_attribute_normalized",
                "disk:wwn-1",
                Some("5"),
            ),
            meta(
                4,
                "h1",
                "smart_attribute_threshold",
                "disk:wwn-1",
                Some("5"),
            ),
            meta(5, "h1", "smart_attribute_raw", "disk:wwn-1", Some("240")), // not a model input
            meta(6, "h1", "fan_rpm", "FAN1", None),
            meta(7, "h2", "smart_attribute_raw", "disk:wwn-2", Some("9")),
        ];
        let d = disks(&series);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[&("h1".into(), "disk:wwn-1".into())],
            vec![(197, 1), (5, 2)]
        );
        assert_eq!(d[&("h2".into(), "disk:wwn-2".into())], vec![(9, 7)]);
    }

    fn bucket(day: i64, hour: i64, max: f64) -> Bucket {
        Bucket {
            start_ms: day * DAY_MS + hour * 3_600_000,
            min: max,
            max,
            sum: max,
            count: 1,
        }
    }

    #[test]
    fn history_is_the_daily_maximum_from_the_first_day_with_data() {
        let i5 = attribute_index(5).unwrap();
        let i197 = attribute_index(197).unwrap();
        let h = daily(
            "disk:x",
            &[
                (
                    5,
                    vec![
                        bucket(100, 1, 2.0),
                        bucket(100, 20, 3.0),
                        bucket(102, 0, 8.0),
                    ],
                ),
                (197, vec![bucket(101, 5, 1.0), bucket(102, 5, f64::NAN)]),
            ],
            SEQ_DAYS,
        )
        .unwrap();
        assert_eq!(h.days, vec![100, 101, 102]);
        assert_eq!(h.raw[0][i5], 3.0);
        assert!(h.raw[1][i5].is_nan(), "no reading that day");
        assert_eq!(h.raw[2][i5], 8.0);
        assert!(h.raw[0][i197].is_nan());
        assert_eq!(h.raw[1][i197], 1.0);
        assert!(h.raw[2][i197].is_nan(), "a NaN reading is no reading");
        assert!(daily("disk:x", &[(5, vec![])], SEQ_DAYS).is_none());
    }

    #[test]
    fn history_keeps_the_last_seq_days() {
        let bs: Vec<Bucket> = (0..40).map(|d| bucket(d, 0, d as f64)).collect();
        let h = daily("disk:x", &[(5, bs)], SEQ_DAYS).unwrap();
        assert_eq!(h.days.len(), SEQ_DAYS);
        assert_eq!(*h.days.last().unwrap(), 39);
        assert_eq!(h.raw.last().unwrap()[attribute_index(5).unwrap()], 39.0);
    }

    #[test]
    fn the_board_ranks_by_the_longest_window_and_clears_without_a_model() {
        let b = Board::default();
        let r = |host: &str, p: f64| Risk {
            host: host.into(),
            component: "disk:a".into(),
            probability: [p / 10.0, p],
            explanation: String::new(),
            model_version: 3,
            evaluated_ms: 1,
            history_days: 1,
            holdout: false,
        };
        b.publish(vec![r("h1", 0.1), r("h2", 0.7), r("h3", 0.3)], 3, 1000);
        let ranked: Vec<String> = b.ranked(None).into_iter().map(|r| r.host).collect();
        assert_eq!(ranked, ["h2", "h3", "h1"]);
        assert_eq!(b.ranked(Some("h3")).len(), 1);
        assert_eq!(b.snapshot().model_version, Some(3));
        b.clear();
        assert!(b.ranked(None).is_empty());
        assert_eq!(b.snapshot().model_version, None);
    }
}
