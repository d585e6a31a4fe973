//! The feedback loop: retrain the disk failure model from what this
//! coordinator has stored, and tune the shadowing threshold from the
//! precision and recall it observes.
//!
//! - Labels ([`dataset`]): failures recorded by operators
//!   (`umbractl failed`, stored as `'F'` records) and SMART overall health
//!   turning to failed (`smart_health_passed` = 0); the earlier one counts.
//! - Censoring: once a shadow has taken a host's traffic (a real, not
//!   dry-run, transition to shifting, failing over or promoted), whether
//!   its disks would have failed is unknown. Their days from `HORIZON`
//!   days before that point on are dropped and they carry no label (a
//!   failure recorded before the mitigation still counts).
//! - Holdout ([`is_holdout`]): a small, stable share of hosts (by a hash of
//!   the host id) that the shadow runtime never mitigates, so failures of
//!   high-risk disks keep happening where they can be seen; without it
//!   every confirmed risk would be censored and the labels would drift
//!   toward "risky disks do not fail". Holdout hosts get the fleet's
//!   ordinary reactive handling when they do fail.
//! - Training and evaluation reuse the Backblaze protocol
//!   (`predict::eval::backblaze`): train drives before the time cut, test
//!   on other drives after it, the rule-of-thumb baseline on the same days.
//! - Activation ([`Activate`]): by default a new version becomes active only
//!   if its Brier score of P(7 d) on the test days is no worse than the
//!   active version's on the same days.
//! - Threshold tuning ([`tune`]): on the test days, the lowest P(7 d) whose
//!   alarms reach the target precision (so recall is as high as the
//!   precision floor allows). Stored with the model's evaluation; applied to
//!   the shadow policy's `enter` only when `[learn] apply_threshold`.

use crate::risk::{DAY_MS, DISK_MODEL};
use crate::store::{Resolution, Store, StoreError};
use predict::data::backblaze::{Drive, Fleet};
use predict::eval::backblaze::{self as bb, is_test_drive, Method, Split};
use predict::failure::FailureModel;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest horizon of the failure model, in days: labels of a day are
/// known once this many days have passed.
pub const HORIZON_DAYS: i32 = 7;

/// Phases after which a shadow carries the host's traffic.
const MITIGATING: [&str; 3] = ["shifting", "failing_over", "promoted"];

/// When a newly trained version becomes active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activate {
    /// If its test Brier score of P(7 d) is no worse than the active one's.
    IfBetter,
    Always,
    /// Stored only; an operator activates it.
    Never,
}

/// `[learn]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Retrain this often; `None`: only on request (`umbractl retrain`).
    pub interval: Option<Duration>,
    /// Hosts never mitigated, percent of the fleet (0 disables).
    pub holdout_percent: u8,
    /// Fewer labelled failures than this: no training.
    pub min_failures: usize,
    /// Precision the tuned threshold must reach on the test days.
    pub target_precision: f64,
    /// Use the active model's tuned threshold as the shadow policy's `enter`.
    pub apply_threshold: bool,
    pub activate: Activate,
    /// Days of history read per disk.
    pub max_days: usize,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Some(Duration::from_secs(7 * 86_400)),
            holdout_percent: 2,
            min_failures: 5,
            target_precision: 0.5,
            apply_threshold: false,
            activate: Activate::IfBetter,
            max_days: 180,
            seed: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("training: {0}")]
    Model(#[from] predict::nn::ModelError),
    #[error("{found} labelled failures in the stored history, at least {need} needed to train (record failures with `umbractl failed`)")]
    TooFewFailures { found: usize, need: usize },
    #[error("a retraining is already running")]
    Busy,
    #[error("demand forecasters: {0}")]
    Demand(String),
    #[error("failure label of {host} {component}: {reason}")]
    Label {
        host: String,
        component: String,
        reason: String,
    },
}

/// Whether `host` is in the un-mitigated holdout of `percent` percent:
/// FNV-1a of the salted host id, salted so it is independent of the
/// train/test split by serial.
pub fn is_holdout(host: &str, percent: u8) -> bool {
    bb::serial_hash(&format!("umbra-holdout\0{host}")) % 100 < u64::from(percent)
}

/// A recorded failure (`'F'` in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureLabel {
    pub at_ms: i64,
    /// `operator` or `smart_health`.
    pub source: String,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub operator: String,
}

/// What the training set was made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DatasetStats {
    pub disks: usize,
    pub drive_days: usize,
    pub failures: usize,
    pub operator_labels: usize,
    pub smart_health_labels: usize,
    /// Disks whose host a shadow mitigated (days cut, no label).
    pub censored: usize,
    pub holdout_disks: usize,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    /// One drive per disk, serial `host/component`.
    pub fleet: Fleet,
    pub stats: DatasetStats,
}

/// When a real (not dry-run) shadow first took each host's traffic.
pub fn mitigations(store: &Store) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut out = BTreeMap::new();
    for (ts, r) in store.audit(0, usize::MAX)? {
        let real = r["dry_run"] == json!(false) && r["event"] == "transition";
        let to = r["to"].as_str().unwrap_or_default();
        if real && MITIGATING.contains(&to) {
            if let Some(host) = r["target"].as_str() {
                out.entry(host.to_owned()).or_insert(ts);
            }
        }
    }
    Ok(out)
}

/// Every disk's failure label: operator records and SMART health failures
/// within `[from_ms, until_ms)`, the earliest per disk.
fn labels(
    store: &Store,
    from_ms: i64,
    until_ms: i64,
) -> Result<BTreeMap<(String, String), FailureLabel>, LearnError> {
    let mut out: BTreeMap<(String, String), FailureLabel> = BTreeMap::new();
    let mut keep = |key: (String, String), l: FailureLabel| {
        let e = out.entry(key).or_insert_with(|| l.clone());
        if l.at_ms < e.at_ms {
            *e = l;
        }
    };
    for ((host, component), v) in store.failures()? {
        let l: FailureLabel = serde_json::from_value(v).map_err(|e| LearnError::Label {
            host: host.clone(),
            component: component.clone(),
            reason: e.to_string(),
        })?;
        keep((host, component), l);
    }
    for m in store.series(None)? {
        if m.id.metric != "smart_health_passed" || !m.id.component.starts_with("disk:") {
            continue;
        }
        let failed = store
            .rollup(m.key, Resolution::Hour, from_ms, until_ms)?
            .into_iter()
            .find(|b| b.count > 0 && b.min < 0.5);
        if let Some(b) = failed {
            keep(
                (m.id.host.clone(), m.id.component.clone()),
                FailureLabel {
                    at_ms: b.start_ms,
                    source: "smart_health".into(),
                    note: "SMART overall health: failed".into(),
                    operator: String::new(),
                },
            );
        }
    }
    Ok(out)
}

fn day_of(ms: i64) -> i32 {
    i32::try_from(ms.div_euclid(DAY_MS)).unwrap_or(i32::MAX)
}

/// The training set from the store: each disk's daily history (at most
/// `max_days`), labelled and censored as the module doc says.
pub fn dataset(store: &Store, settings: &Settings, now_ms: i64) -> Result<Dataset, LearnError> {
    let max_days = settings.max_days.max(1);
    let from = now_ms - (i64::try_from(max_days).unwrap_or(i64::MAX) + 1) * DAY_MS;
    let labels = labels(store, from, now_ms + 1)?;
    let mitigated = mitigations(store)?;
    let mut stats = DatasetStats::default();
    let mut drives = Vec::new();
    for ((host, component), mut d) in crate::risk::drives(store, now_ms, max_days)? {
        d.serial = format!("{host}/{component}");
        let label = labels.get(&(host.clone(), component.clone()));
        let mut failed_on = label.map(|l| day_of(l.at_ms));
        // A day's input is what was known by its end; no rows past the failure.
        let mut last = failed_on.unwrap_or(i32::MAX);
        if let Some(&m) = mitigated.get(&host) {
            let m_day = day_of(m);
            if failed_on.is_none_or(|f| f >= m_day) {
                failed_on = None;
                last = m_day - HORIZON_DAYS - 1;
                stats.censored += 1;
            }
        }
        let keep = d.days.iter().take_while(|&&day| day <= last).count();
        d.days.truncate(keep);
        d.raw.truncate(keep);
        d.written.truncate(keep);
        if d.days.is_empty() {
            continue;
        }
        d.failed_on = failed_on;
        if let (Some(_), Some(l)) = (failed_on, label) {
            stats.failures += 1;
            match l.source.as_str() {
                "smart_health" => stats.smart_health_labels += 1,
                _ => stats.operator_labels += 1,
            }
        }
        if is_holdout(&host, settings.holdout_percent) {
            stats.holdout_disks += 1;
        }
        stats.disks += 1;
        stats.drive_days += d.days.len();
        drives.push(d);
    }
    let first_day = drives.iter().filter_map(|d| d.days.first()).min().copied();
    let last_day = drives.iter().filter_map(|d| d.days.last()).max().copied();
    Ok(Dataset {
        fleet: Fleet {
            rows: stats.drive_days,
            first_day: first_day.unwrap_or(0),
            last_day: last_day.unwrap_or(0),
            drives,
        },
        stats,
    })
}

/// One point of the precision/recall curve over P(7 d) thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Operating {
    pub threshold: f64,
    /// Alarm days followed by a failure within [`HORIZON_DAYS`] / alarm days.
    pub precision: f64,
    /// Failures with an alarm 1..=[`HORIZON_DAYS`] days before / failures.
    pub recall: f64,
    pub alarm_days: usize,
}

/// The outcome of [`tune`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tuning {
    /// The tuned threshold (`None`: see `reason`).
    pub enter: Option<f64>,
    pub target_precision: f64,
    pub failures: usize,
    pub drive_days: usize,
    /// Thresholds where recall changes, ascending.
    pub curve: Vec<Operating>,
    pub reason: String,
}

/// A drive's daily P(7 d) as [`tune`] reads it.
#[derive(Debug, Clone)]
pub struct Scored<'a> {
    pub days: &'a [i32],
    pub p7d: Vec<f64>,
    pub failed_on: Option<i32>,
}

/// The lowest threshold on P(7 d) whose alarms reach `target_precision`
/// over the days in `from_day..=last_day - HORIZON_DAYS` (days whose label
/// is known), i.e. the highest recall the precision floor allows. Pure.
pub fn tune(
    drives: &[Scored<'_>],
    from_day: i32,
    last_day: i32,
    target_precision: f64,
    min_failures: usize,
) -> Tuning {
    // (p, positive day?, failure id if positive)
    let mut days: Vec<(f64, Option<usize>)> = Vec::new();
    let mut failures = 0;
    for (i, d) in drives.iter().enumerate() {
        let counted = d.failed_on.is_some_and(|f| f >= from_day && f <= last_day);
        if counted {
            failures += 1;
        }
        for (&day, &p) in d.days.iter().zip(&d.p7d) {
            if day < from_day || day + HORIZON_DAYS > last_day || !p.is_finite() {
                continue;
            }
            if d.failed_on.is_some_and(|f| day >= f) {
                continue;
            }
            let positive = d
                .failed_on
                .is_some_and(|f| (1..=HORIZON_DAYS).contains(&(f - day)));
            days.push((p, (positive && counted).then_some(i)));
        }
    }
    let drive_days = days.len();
    let mut tuning = Tuning {
        enter: None,
        target_precision,
        failures,
        drive_days,
        curve: Vec::new(),
        reason: String::new(),
    };
    if failures < min_failures.max(1) {
        tuning.reason =
            format!("{failures} failures in the tuning days, at least {min_failures} needed");
        return tuning;
    }
    days.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut alarms, mut true_alarms) = (0usize, 0usize);
    let mut caught = std::collections::BTreeSet::new();
    #[allow(clippy::cast_precision_loss)]
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut i = 0;
    while i < days.len() {
        // All days of equal score alarm together.
        let t = days[i].0;
        while i < days.len() && days[i].0 >= t {
            alarms += 1;
            if let Some(f) = days[i].1 {
                true_alarms += 1;
                caught.insert(f);
            }
            i += 1;
        }
        let point = Operating {
            threshold: t,
            precision: ratio(true_alarms, alarms),
            recall: ratio(caught.len(), failures),
            alarm_days: alarms,
        };
        if tuning.curve.last().is_none_or(|p| p.recall < point.recall) {
            tuning.curve.push(point);
        }
        if point.precision >= target_precision {
            tuning.enter = Some(t);
        }
    }
    tuning.curve.reverse();
    tuning.reason = match tuning.enter {
        Some(t) => format!("lowest P(7d) with precision >= {target_precision}: {t:.4}"),
        None => format!("no threshold reaches precision {target_precision}"),
    };
    tuning
}

/// The evaluation JSON stored with a failure model: the Backblaze-protocol
/// report of `method` plus its reliability (shared by `umbractl train` and
/// the feedback loop).
pub fn evaluation_json(
    report: &bb::Report,
    model: &bb::LstmFailure,
    reliability: &predict::calibrate::Reliability,
    dataset: &str,
) -> serde_json::Value {
    let by_horizon = report
        .methods
        .iter()
        .find(|m| m.name == Method::name(model))
        .map(|m| {
            m.by_horizon
                .iter()
                .map(|h| {
                    json!({
                        "horizon": h.horizon, "failures": h.failures, "caught": h.caught,
                        "drive_days": h.drive_days, "alarm_days": h.alarm_days,
                        "true_alarm_days": h.true_alarm_days, "lead_times_days": h.lead_times,
                    })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    json!({
        "dataset": dataset,
        "test_drives": report.test_drives,
        "test_failures": report.test_failures,
        "by_horizon_days": by_horizon,
        "p7d_brier": reliability.brier,
        "p7d_ece": reliability.ece,
        "train_examples": model.train_examples,
        "train_positives": model.train_positives,
    })
}

/// What one retraining did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub version: u64,
    pub activated: bool,
    /// Why it was (not) activated.
    pub activation: String,
    pub evaluation: serde_json::Value,
    /// The human-readable evaluation report.
    pub report: String,
}

/// Train a new `failure/disk` version from the store, evaluate it against
/// the rule of thumb and the active version, tune its threshold, store it,
/// and activate it as [`Settings::activate`] says. Blocking.
pub fn retrain(
    store: &Store,
    settings: &Settings,
    now_ms: i64,
    progress: impl FnMut(usize, usize),
) -> Result<Outcome, LearnError> {
    let data = dataset(store, settings, now_ms)?;
    let found = data.fleet.failures();
    if found < settings.min_failures.max(1) {
        return Err(LearnError::TooFewFailures {
            found,
            need: settings.min_failures.max(1),
        });
    }
    let fleet = &data.fleet;
    let model = bb::LstmFailure::train(fleet, settings.seed, progress)?;
    let report = bb::run(fleet, &[&bb::RuleOfThumb, &model]);
    let rel = bb::test_reliability(fleet, &model);
    let mut evaluation = evaluation_json(&report, &model, &rel, "coordinator");

    // The active version on the same test days.
    let active = match store.active_model(DISK_MODEL)? {
        Some(v) => crate::risk::load(store, v)
            .ok()
            .map(|m: FailureModel| (v, bb::test_reliability_of(fleet, &m).brier)),
        None => None,
    };
    let (activated, activation) = match (settings.activate, active) {
        (Activate::Never, _) => (false, "activation: never (operator activates)".to_owned()),
        (Activate::Always, _) => (true, "activation: always".to_owned()),
        (Activate::IfBetter, None) => (true, "no active version".to_owned()),
        (Activate::IfBetter, Some((v, b))) if rel.brier <= b => (
            true,
            format!("test Brier {:.5} <= active version {v}'s {b:.5}", rel.brier),
        ),
        (Activate::IfBetter, Some((v, b))) => (
            false,
            format!("test Brier {:.5} > active version {v}'s {b:.5}", rel.brier),
        ),
    };

    let split = Split::of(fleet);
    let test: Vec<&Drive> = fleet
        .drives
        .iter()
        .filter(|d| is_test_drive(&d.serial))
        .collect();
    let scored: Vec<Scored<'_>> = test
        .iter()
        .map(|d| Scored {
            days: &d.days,
            p7d: model.probabilities(d).into_iter().map(|p| p[1]).collect(),
            failed_on: d.failed_on,
        })
        .collect();
    let tuning = tune(
        &scored,
        split.cut_day,
        split.last_day,
        settings.target_precision,
        settings.min_failures.min(3),
    );
    evaluation["tuning"] = serde_json::to_value(&tuning).expect("serialisable");
    evaluation["dataset_stats"] = serde_json::to_value(&data.stats).expect("serialisable");
    evaluation["active_version_brier"] = active.map_or(json!(null), |(_, b)| json!(b));
    let s = &data.stats;
    let trained_on = format!(
        "coordinator store: {} disks, {} drive-days, {} failures ({} operator, {} SMART health), {} censored by shadows, {} in the holdout, seed {}",
        s.disks, s.drive_days, s.failures, s.operator_labels, s.smart_health_labels, s.censored, s.holdout_disks, settings.seed
    );
    let version = store
        .put_model(
            DISK_MODEL,
            &model.model.to_bytes()?,
            &trained_on,
            evaluation.clone(),
            now_ms,
        )?
        .version;
    if activated {
        store.activate_model(DISK_MODEL, version)?;
    }
    let record = json!({
        "target": "fleet", "event": "retrain", "kind": DISK_MODEL, "version": version,
        "activated": activated, "activation": activation, "failures": s.failures,
        "disks": s.disks, "p7d_brier": rel.brier, "tuned_enter": tuning.enter,
    });
    store.append_audit(now_ms, &record)?;
    let mut text = format!("{report}");
    text.push_str(&format!(
        "\nP(fail within 7 d) on test drive-days: Brier {:.5}, ECE {:.5}\n{}\nthreshold: {}\n",
        rel.brier, rel.ece, trained_on, tuning.reason
    ));
    Ok(Outcome {
        version,
        activated,
        activation,
        evaluation,
        report: text,
    })
}

/// The active model's tuned threshold, if it has one.
pub fn tuned_enter(store: &Store, version: u64) -> Result<Option<f64>, StoreError> {
    Ok(store
        .model(DISK_MODEL, version)?
        .and_then(|m| m.evaluation["tuning"]["enter"].as_f64())
        .filter(|t| t.is_finite() && *t > 0.0 && *t < 1.0))
}

/// One retraining at a time.
#[derive(Debug, Default)]
pub struct Learner {
    busy: std::sync::Mutex<()>,
}

impl Learner {
    /// [`retrain`], refused while another runs.
    pub fn retrain(
        &self,
        store: &Store,
        settings: &Settings,
        now_ms: i64,
        progress: impl FnMut(usize, usize),
    ) -> Result<Outcome, LearnError> {
        let _guard = self.busy.try_lock().map_err(|_| LearnError::Busy)?;
        retrain(store, settings, now_ms, progress)
    }

    /// [`crate::demand::train`], refused while another retraining runs.
    pub fn retrain_demand(
        &self,
        store: &Store,
        settings: &Settings,
        now_ms: i64,
    ) -> Result<Vec<crate::demand::Trained>, LearnError> {
        let _guard = self.busy.try_lock().map_err(|_| LearnError::Busy)?;
        crate::demand::train(store, settings, now_ms).map_err(|e| match e {
            crate::demand::DemandError::Store(e) => LearnError::Store(e),
            other => LearnError::Demand(other.to_string()),
        })
    }
}

/// Retrain the demand forecasters and the failure model every
/// [`Settings::interval`] (the first run one interval after start) until
/// the task is dropped; failures are logged, the failure model's audited.
pub async fn run(
    store: std::sync::Arc<Store>,
    learner: std::sync::Arc<Learner>,
    settings: Settings,
) {
    let Some(every) = settings.interval else {
        return;
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (s, l, cfg) = (store.clone(), learner.clone(), settings.clone());
        let res = tokio::task::spawn_blocking(move || {
            match l.retrain_demand(&s, &cfg, crate::now_ms()) {
                Ok(t) => tracing::info!(report = %crate::demand::report(&t), "demand forecasters retrained"),
                Err(e) => tracing::warn!(error = %e, "demand forecasters not retrained"),
            }
            l.retrain(&s, &cfg, crate::now_ms(), |_, _| {})
        })
        .await;
        match res {
            Ok(Ok(o)) => {
                tracing::info!(version = o.version, activated = o.activated, activation = %o.activation, "failure model retrained")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "retraining skipped");
                let record = json!({"target": "fleet", "event": "retrain", "error": e.to_string()});
                if let Err(e) = store.append_audit(crate::now_ms(), &record) {
                    tracing::error!(error = %e, "writing the audit log failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "retraining panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostRecord, Quality, Sample, SeriesId};
    use crate::store::{IngestWrite, StoreConfig};

    fn scored(days: &[i32], p: &[f64], failed_on: Option<i32>) -> Scored<'static> {
        Scored {
            days: Box::leak(days.to_vec().into_boxed_slice()),
            p7d: p.to_vec(),
            failed_on,
        }
    }

    #[test]
    fn tuning_picks_the_lowest_threshold_that_reaches_the_target_precision() {
        let days: Vec<i32> = (0..30).collect();
        // Two failing drives: high scores in the week before failing.
        let mut a = vec![0.05; 30];
        a[18..25].fill(0.8); // fails on day 25
        let mut b = vec![0.05; 30];
        b[12..15].fill(0.4); // fails on day 15, only a weak, late warning
                             // A healthy drive with one false alarm at 0.6 and noise at 0.4.
        let mut c = vec![0.05; 30];
        c[5] = 0.6;
        c[6] = 0.4;
        c[7] = 0.4;
        let drives = [
            scored(&days, &a, Some(25)),
            scored(&days, &b, Some(15)),
            scored(&days, &c, None),
        ];
        let t = tune(&drives, 0, 29, 0.8, 1);
        assert_eq!(t.failures, 2);
        // Days 0..=22 are scored (their 7-day future is known). At 0.8: 5
        // alarms (a's days 18..=22), all true, recall 1/2. At 0.6: 6 alarms,
        // 5 true (0.83 ≥ 0.8). At 0.4: 11 alarms, 8 true (0.73 < 0.8).
        assert_eq!(t.enter, Some(0.6), "{t:?}");
        let at = |th: f64| t.curve.iter().find(|p| p.threshold == th).copied();
        assert_eq!(at(0.8).map(|p| (p.precision, p.recall)), Some((1.0, 0.5)));
        let low = at(0.4).expect("recall rises at 0.4");
        assert_eq!((low.alarm_days, low.recall), (11, 1.0));
        // A looser target reaches the full recall; an impossible one nothing.
        assert_eq!(tune(&drives, 0, 29, 0.7, 1).enter, Some(0.4));
        let none = tune(&drives, 0, 29, 1.01, 1);
        assert_eq!(none.enter, None);
        assert!(none.reason.contains("no threshold"), "{}", none.reason);
        // Too few failures: no tuning at all.
        let few = tune(&drives, 0, 29, 0.5, 3);
        assert_eq!((few.enter, few.curve.len()), (None, 0));
        // Days whose 7-day future is not yet known are not scored.
        let early = tune(&drives, 0, 20, 0.5, 1);
        assert_eq!(early.failures, 1, "the day-25 failure is past the end");
    }

    #[test]
    fn the_holdout_is_stable_and_about_its_share() {
        let hosts: Vec<String> = (0..10_000).map(|i| format!("node-{i:05}.dc1")).collect();
        let n = hosts.iter().filter(|h| is_holdout(h, 5)).count();
        assert!((350..=650).contains(&n), "{n} of 10000 at 5 %");
        assert!(hosts.iter().all(|h| !is_holdout(h, 0)));
        assert!(hosts.iter().all(|h| is_holdout(h, 100)));
        // Nested: a host held out at 2 % is held out at 5 %.
        assert!(hosts
            .iter()
            .filter(|h| is_holdout(h, 2))
            .all(|h| is_holdout(h, 5)));
    }

    const HOUR: i64 = 3_600_000;

    /// A fleet of one-disk hosts over 40 days: attribute 5 grows in the
    /// 8 days before a failing disk's failure. Returns the store and, per
    /// failing host, its failure day index.
    fn fleet_store(dir: &std::path::Path, now: i64) -> (Store, Vec<(String, i64)>) {
        let store = Store::open(
            dir,
            StoreConfig {
                sync_writes: false,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        let first = now.div_euclid(DAY_MS) * DAY_MS - 40 * DAY_MS;
        let mut failing = Vec::new();
        for h in 0..120 {
            let host = format!("h{h:03}");
            let comp = "disk:wwn-0x5000c5000000".to_owned() + &h.to_string();
            // Every third host fails, spread over days 9..=38.
            let fail_day = (h % 3 == 0).then(|| 9 + (h / 3) % 30);
            let series = |metric: &str, id: Option<&str>| SeriesId {
                host: host.clone(),
                metric: metric.into(),
                component: comp.clone(),
                labels: id
                    .map(|i| ("id".to_owned(), i.to_owned()))
                    .into_iter()
                    .collect(),
            };
            let mut writes = Vec::new();
            let days = fail_day.unwrap_or(39) + 1;
            for (attr, metric) in [
                (5, "smart_attribute_raw"),
                (197, "smart_attribute_raw"),
                (9, "smart_attribute_raw"),
            ] {
                let (key, _) = store
                    .resolve_series(&series(metric, Some(&attr.to_string())), "raw")
                    .unwrap();
                let samples = (0..days)
                    .map(|d| {
                        let left = fail_day.map_or(i64::MAX, |f| f - d);
                        let v = match attr {
                            9 => 20_000.0 + 24.0 * d as f64,
                            _ if left <= 8 => {
                                ((9 - left) * (9 - left)) as f64
                                    * (1.0 + ((h * 7 + d) % 5) as f64 / 5.0)
                            }
                            _ => 0.0,
                        };
                        Sample {
                            ts_ms: first + d * DAY_MS + 12 * HOUR,
                            value: v,
                            quality: Quality::Ok,
                        }
                    })
                    .collect();
                writes.push((key, samples));
            }
            if let Some(f) = fail_day {
                let at = first + f * DAY_MS + 13 * HOUR;
                if h % 2 == 0 {
                    let label = FailureLabel {
                        at_ms: at,
                        source: "operator".into(),
                        note: String::new(),
                        operator: "test".into(),
                    };
                    store
                        .put_failure(&host, &comp, &serde_json::to_value(label).unwrap())
                        .unwrap();
                } else {
                    let (key, _) = store
                        .resolve_series(&series("smart_health_passed", None), "bool")
                        .unwrap();
                    writes.push((
                        key,
                        vec![
                            Sample {
                                ts_ms: at - DAY_MS,
                                value: 1.0,
                                quality: Quality::Ok,
                            },
                            Sample {
                                ts_ms: at,
                                value: 0.0,
                                quality: Quality::Ok,
                            },
                        ],
                    ));
                }
                failing.push((host.clone(), f));
            }
            store
                .ingest(IngestWrite {
                    host: &host,
                    epoch: 1,
                    sequence: 1,
                    series: writes,
                    host_record: HostRecord {
                        host_id: host.clone(),
                        ..HostRecord::default()
                    },
                    events: Vec::new(),
                })
                .unwrap();
        }
        (store, failing)
    }

    #[test]
    fn retraining_reads_labels_censors_mitigated_hosts_and_activates_only_if_better() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now_ms();
        let (store, failing) = fleet_store(dir.path(), now);
        let settings = Settings {
            holdout_percent: 0,
            min_failures: 5,
            target_precision: 0.3,
            ..Settings::default()
        };
        // A real shadow took one failing host's traffic a week before its
        // failure: its label is unverifiable from then on.
        let (mitigated, f) = failing[10].clone();
        let first = now.div_euclid(DAY_MS) * DAY_MS - 40 * DAY_MS;
        let m_at = first + (f - 7) * DAY_MS;
        store
            .append_audit(m_at, &json!({"target": mitigated, "event": "transition", "from": "mirroring", "to": "shifting", "dry_run": false}))
            .unwrap();
        // A dry-run transition mitigates nothing.
        store
            .append_audit(m_at, &json!({"target": failing[11].0, "event": "transition", "to": "promoted", "dry_run": true}))
            .unwrap();

        let data = dataset(&store, &settings, now).unwrap();
        assert_eq!(
            data.stats.disks, 120,
            "day {f}: the mitigated disk keeps its early days"
        );
        assert_eq!(data.stats.failures, failing.len() - 1);
        assert_eq!(
            data.stats.operator_labels + data.stats.smart_health_labels,
            data.stats.failures
        );
        assert!(data.stats.operator_labels > 10 && data.stats.smart_health_labels > 10);
        assert_eq!(data.stats.censored, 1);
        let d = data
            .fleet
            .drives
            .iter()
            .find(|d| d.serial.starts_with(&format!("{mitigated}/")));
        let d = d.expect("the mitigated disk's early days stay");
        assert_eq!(d.failed_on, None);
        let m_day = i32::try_from(m_at.div_euclid(DAY_MS)).unwrap();
        assert!(!d.days.is_empty());
        assert!(d.days.iter().all(|&day| day < m_day - HORIZON_DAYS));
        // Rows stop at the failure day.
        for (host, _) in failing.iter().filter(|(h, _)| *h != mitigated) {
            let d = data
                .fleet
                .drives
                .iter()
                .find(|d| d.serial.starts_with(&format!("{host}/")))
                .unwrap();
            assert_eq!(d.days.last().copied(), d.failed_on, "{host}");
        }

        let first_run = retrain(&store, &settings, now, |_, _| {}).unwrap();
        assert!(first_run.activated, "{}", first_run.activation);
        assert_eq!(
            store.active_model(DISK_MODEL).unwrap(),
            Some(first_run.version)
        );
        let e = &first_run.evaluation;
        assert_eq!(e["dataset"], "coordinator");
        assert_eq!(e["dataset_stats"]["censored"], 1);
        assert!(e["p7d_brier"].as_f64().unwrap().is_finite());
        assert!(e["tuning"]["failures"].as_u64().unwrap() >= 1, "{e}");
        assert!(
            first_run.report.contains("baseline"),
            "{}",
            first_run.report
        );

        // The same data and seed again: equal Brier, so it activates under
        // if_better; under never it is stored only.
        let again = retrain(&store, &settings, now, |_, _| {}).unwrap();
        assert!(again.activated, "{}", again.activation);
        assert!(again
            .activation
            .contains(&format!("active version {}", first_run.version)));
        let kept = retrain(
            &store,
            &Settings {
                activate: Activate::Never,
                ..settings.clone()
            },
            now,
            |_, _| {},
        )
        .unwrap();
        assert!(!kept.activated);
        assert_eq!(store.active_model(DISK_MODEL).unwrap(), Some(again.version));
        let audited = store
            .audit(0, usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|(_, r)| r["event"] == "retrain")
            .count();
        assert_eq!(audited, 3);

        // Too few labels: a clear refusal, nothing stored.
        let strict = Settings {
            min_failures: 1000,
            ..settings
        };
        let err = retrain(&store, &strict, now, |_, _| {}).unwrap_err();
        assert!(
            matches!(err, LearnError::TooFewFailures { need: 1000, .. }),
            "{err}"
        );
        assert_eq!(store.models(DISK_MODEL).unwrap().len(), 3);
    }

    #[test]
    fn a_tuned_threshold_moves_enter_and_keeps_the_hysteresis_ratio() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let base = crate::shadow::runtime::Settings {
            mode: crate::shadow::runtime::Mode::DryRun,
            policy: crate::shadow::engine::Policy::default(),
            rails: crate::shadow::rails::Rails::default(),
            holdout_percent: 0,
            unreachable_after_ms: crate::shadow::runtime::DEFAULT_UNREACHABLE_AFTER_MS,
        };
        let same = crate::risk::with_threshold(&base, None);
        assert_eq!(same.policy, base.policy);
        let moved = crate::risk::with_threshold(&base, Some(0.25));
        assert_eq!(moved.policy.enter, 0.25);
        assert!((moved.policy.exit - 0.25 * 0.3 / 0.5).abs() < 1e-12);
        assert!(moved.policy.validate().is_ok());
        // tuned_enter reads the stored evaluation; nonsense is ignored.
        for (i, t) in [json!(0.2), json!(1.5), json!(null)]
            .into_iter()
            .enumerate()
        {
            let v = store
                .put_model(
                    DISK_MODEL,
                    &b"x"[..],
                    "t",
                    json!({"tuning": {"enter": t}}),
                    i as i64,
                )
                .unwrap()
                .version;
            let want = (i == 0).then_some(0.2);
            assert_eq!(tuned_enter(&store, v).unwrap(), want);
        }
    }
}
