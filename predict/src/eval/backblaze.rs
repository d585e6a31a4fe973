//! The Backblaze protocol: per-drive daily alarms, caught failures 1..=N
//! days ahead (N = 7 and 14), on drives and days the methods never trained
//! on.
//!
//! Split, by drive serial AND by time: a stable hash of the serial puts 30%
//! of drives in the test set; the day range is cut in the middle. Methods
//! train on train drives before the cut (with labels whose horizon ends
//! before the cut, so no future leaks in) and are scored on test drives from
//! the cut on. The Backblaze rule of thumb (any raw value > 0 of SMART 5,
//! 187, 188, 197, 198) is always reported on the same days.

use crate::calibrate::Reliability;
use crate::data::backblaze::{attribute_index, Drive, Fleet, ATTRIBUTES};
use crate::failure::{self, Example, FailureModel, GroupRates};
use crate::metrics::{evaluate, wilson, AlarmReport, DriveAlarms};
use crate::nn::Result;
use std::fmt;

/// Share of drives (by serial hash) held out for testing, in percent.
pub const TEST_PERCENT: u64 = 30;
pub const HORIZONS: [i32; 2] = [7, 14];

/// FNV-1a of the serial (or any text): stable across runs, platforms and
/// versions. The coordinator's holdout hashes host ids with it too.
pub fn serial_hash(serial: &str) -> u64 {
    serial.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn is_test_drive(serial: &str) -> bool {
    serial_hash(serial) % 100 < TEST_PERCENT
}

/// Where train ends and test begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub first_day: i32,
    /// First test day; train days are before it.
    pub cut_day: i32,
    pub last_day: i32,
}

impl Split {
    pub fn of(fleet: &Fleet) -> Split {
        let span = fleet.last_day - fleet.first_day + 1;
        Split {
            first_day: fleet.first_day,
            cut_day: fleet.first_day + span / 2,
            last_day: fleet.last_day,
        }
    }
}

/// A way of raising alarms, trained on the training part of a fleet.
pub trait Method {
    fn name(&self) -> String;
    /// Alarm per day of `drive`, each decided from that day's and earlier data.
    fn alarms(&self, drive: &Drive) -> Vec<bool>;
}

/// Backblaze's published rule of thumb: any raw value > 0 of SMART 5
/// (reallocated sectors), 187 (reported uncorrectable), 188 (command
/// timeouts), 197 (pending sectors) or 198 (offline uncorrectable).
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleOfThumb;

impl Method for RuleOfThumb {
    fn name(&self) -> String {
        "baseline: any raw SMART 5/187/188/197/198 > 0".into()
    }
    fn alarms(&self, drive: &Drive) -> Vec<bool> {
        let idx: Vec<usize> = [5, 187, 188, 197, 198]
            .iter()
            .filter_map(|&a| attribute_index(a))
            .collect();
        drive
            .raw
            .iter()
            .map(|r| idx.iter().any(|&i| r[i] > 0.0))
            .collect()
    }
}

/// Sequence length (days) the failure model reads.
pub const SEQ_DAYS: usize = 14;
/// Horizons of the failure model: 1 day (≈ 24 h) and 7 days.
pub const MODEL_HORIZONS: [u32; 2] = [1, 7];
/// Healthy drive-days allowed to alarm, per 1,000 (sets the threshold).
pub const ALARM_BUDGET_PER_1000: f64 = 10.0;

/// The static covariates, in model input order.
pub const STATICS: [&str; 4] = [
    "power-on years",
    "log2 capacity (TB)",
    "log1p(LBAs written)",
    "model/firmware failure rate (log, relative to the fleet)",
];

/// A drive's groups for [`GroupRates`], general to specific: its model,
/// then model and firmware (when known).
pub fn group_keys(d: &Drive) -> Vec<String> {
    let mut keys = Vec::new();
    if !d.model.is_empty() {
        keys.push(format!("model:{}", d.model));
        if !d.firmware.is_empty() {
            keys.push(format!("firmware:{}\u{0}{}", d.model, d.firmware));
        }
    }
    keys
}

/// Model input of a drive at day index `i`: the last [`SEQ_DAYS`] days of
/// log1p(raw SMART) (padded with the first day), and the [`STATICS`]:
/// power-on years, log2 capacity in TB (NaN when unknown), log1p of the
/// day's total LBAs written (usage; NaN when not reported) and the
/// drive's model/firmware failure rate from `groups`.
pub fn example(
    d: &Drive,
    i: usize,
    labels: Vec<bool>,
    weight: f32,
    groups: &GroupRates,
) -> Example {
    let n = ATTRIBUTES.len();
    let mut seq = Vec::with_capacity(SEQ_DAYS * n);
    for k in 0..SEQ_DAYS {
        let j = (i + k + 1).saturating_sub(SEQ_DAYS);
        seq.extend(d.raw[j].iter().map(|&v| {
            if v.is_finite() {
                v.max(0.0).ln_1p()
            } else {
                f32::NAN
            }
        }));
    }
    let hours = d.raw[i][attribute_index(9).expect("9 is read")];
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let tb = if d.capacity_bytes == 0 {
        f32::NAN
    } else {
        (d.capacity_bytes as f64 / 1e12).max(1e-3).log2() as f32
    };
    let written = d
        .written
        .get(i)
        .copied()
        .filter(|v| v.is_finite())
        .map_or(f32::NAN, |v| v.max(0.0).ln_1p());
    Example {
        seq,
        statics: vec![
            hours / 8766.0,
            tb,
            written,
            groups.log_relative(&group_keys(d)),
        ],
        labels,
        weight,
    }
}

/// [`example`] as `model` takes it (with its group encoding; a model saved
/// before the usage and group covariates existed takes the first two).
pub fn example_for(
    model: &FailureModel,
    d: &Drive,
    i: usize,
    labels: Vec<bool>,
    weight: f32,
) -> Example {
    let mut e = example(d, i, labels, weight, model.groups());
    e.statics.truncate(model.config().statics);
    e
}

fn labels(d: &Drive, day: i32) -> Vec<bool> {
    MODEL_HORIZONS
        .iter()
        .map(|&h| {
            d.failed_on
                .is_some_and(|f| (1..=i32::try_from(h).unwrap_or(i32::MAX)).contains(&(f - day)))
        })
        .collect()
}

type DayRef = (usize, usize);

/// The LSTM failure model as an alarm method: alarm when the 7-day score
/// reaches the threshold that lets [`ALARM_BUDGET_PER_1000`] of the
/// training set's healthy drive-days alarm.
pub struct LstmFailure {
    pub model: FailureModel,
    /// On the raw 7-day logit.
    pub threshold: f64,
    pub train_examples: usize,
    pub train_positives: usize,
}

impl LstmFailure {
    /// Train on train drives before the cut (labels complete: day + 7 <
    /// cut), every positive and a weighted sample of negatives; calibrate on
    /// a fifth of the train drives held out by a second hash.
    pub fn train(
        fleet: &Fleet,
        seed: u64,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<LstmFailure> {
        let split = Split::of(fleet);
        let horizon =
            i32::try_from(*MODEL_HORIZONS.iter().max().expect("horizons")).unwrap_or(i32::MAX);
        let mut rng = fastrand::Rng::with_seed(seed);
        // (drive index, day index) of positive and negative examples.
        let (mut pos, mut neg): (Vec<DayRef>, Vec<DayRef>) = (Vec::new(), Vec::new());
        for (di, d) in fleet.drives.iter().enumerate() {
            if is_test_drive(&d.serial) {
                continue;
            }
            for (i, &day) in d.days.iter().enumerate() {
                if day + horizon >= split.cut_day || d.failed_on.is_some_and(|f| day >= f) {
                    continue;
                }
                if labels(d, day).iter().any(|&y| y) {
                    pos.push((di, i));
                } else {
                    neg.push((di, i));
                }
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = ((pos.len() * 50) as f64 / neg.len().max(1) as f64).min(1.0);
        #[allow(clippy::cast_possible_truncation)]
        let weight = (1.0 / rate) as f32;
        // Group failure rates from train drives, failures before the cut only.
        let keys: Vec<(Vec<String>, bool)> = fleet
            .drives
            .iter()
            .filter(|d| !is_test_drive(&d.serial))
            .map(|d| {
                (
                    group_keys(d),
                    d.failed_on.is_some_and(|f| f < split.cut_day),
                )
            })
            .collect();
        let groups = GroupRates::fit(keys.iter().map(|(k, f)| (k.as_slice(), *f)));
        let (mut fit, mut held) = (Vec::new(), Vec::new());
        for &(di, i) in pos.iter().chain(neg.iter()) {
            let d = &fleet.drives[di];
            let y = labels(d, d.days[i]);
            let positive = y.iter().any(|&b| b);
            if !positive && rng.f64() >= rate {
                continue;
            }
            let e = example(d, i, y, if positive { 1.0 } else { weight }, &groups);
            if (serial_hash(&d.serial) / 100).is_multiple_of(5) {
                held.push(e);
            } else {
                fit.push(e);
            }
        }
        let cfg = failure::Config {
            seq_len: SEQ_DAYS,
            features: ATTRIBUTES.len(),
            statics: STATICS.len(),
            horizons: MODEL_HORIZONS.to_vec(),
            hidden: 16,
            epochs: 30,
            batch: 64,
            learning_rate: 3e-3,
            seed,
        };
        let epochs = cfg.epochs;
        let mut model = FailureModel::new(cfg)?;
        model.train(&fit)?;
        progress(epochs, epochs);
        // Platt needs positives: with fewer than 10 held out, calibrate on
        // all training examples (in-sample, so somewhat optimistic; the
        // report's reliability on test drives shows how much).
        let held_pos = held.iter().filter(|e| e.labels.iter().any(|&y| y)).count();
        if held_pos >= 10 {
            model.calibrate(&held)?;
        } else {
            let all: Vec<Example> = fit.iter().chain(&held).cloned().collect();
            model.calibrate(&all)?;
        }
        // Threshold on the raw 7-day logit (calibration is monotone, and a
        // flat calibration must not erase the ranking): the weighted
        // (1 − budget) quantile over the fit set's healthy days.
        let z = model.logits(&fit)?;
        let mut healthy: Vec<(f64, f32)> = fit
            .iter()
            .zip(&z)
            .filter(|(e, _)| !e.labels.iter().any(|&y| y))
            .map(|(e, z)| (z[1], e.weight))
            .collect();
        healthy.sort_by(|a, b| b.0.total_cmp(&a.0));
        let total: f64 = healthy.iter().map(|h| f64::from(h.1)).sum();
        let budget = total * ALARM_BUDGET_PER_1000 / 1000.0;
        let mut acc = 0.0;
        let mut threshold = f64::INFINITY;
        for (z, w) in healthy {
            acc += f64::from(w);
            if acc > budget {
                break;
            }
            threshold = z;
        }
        Ok(LstmFailure {
            train_positives: fit.iter().filter(|e| e.labels.iter().any(|&y| y)).count(),
            train_examples: fit.len(),
            model,
            threshold,
        })
    }

    /// Calibrated P(fail within each horizon) for every day of `d`.
    pub fn probabilities(&self, d: &Drive) -> Vec<Vec<f64>> {
        probabilities(&self.model, d)
    }
}

impl Method for LstmFailure {
    fn name(&self) -> String {
        format!(
            "LSTM failure model, 7-day score at the threshold for {} healthy alarm-days per 1,000 in training ({} train examples, {} positive)",
            ALARM_BUDGET_PER_1000, self.train_examples, self.train_positives
        )
    }
    fn alarms(&self, drive: &Drive) -> Vec<bool> {
        match self.model.logits(&day_examples(&self.model, drive)) {
            Ok(z) => z.iter().map(|z| z[1] >= self.threshold).collect(),
            Err(_) => vec![false; drive.days.len()],
        }
    }
}

/// The `k` test drives with the highest P(fail within 7 d) on their last
/// observed day, each with its explanation, e.g. `S1F0… ST3000DM001:
/// P(fail 7d)=0.29; SMART 197 +12.0%/day (Δp 0.21), ...` (trends are of the
/// model's log1p(raw) features, relative to their level).
pub fn top_risks(fleet: &Fleet, m: &LstmFailure, k: usize) -> Vec<String> {
    let mut scored: Vec<(f64, &Drive)> = fleet
        .drives
        .iter()
        .filter(|d| is_test_drive(&d.serial) && !d.days.is_empty())
        .filter_map(|d| {
            let last = d.days.len() - 1;
            let e = example_for(&m.model, d, last, vec![false; MODEL_HORIZONS.len()], 1.0);
            let p = m.model.predict(std::slice::from_ref(&e)).ok()?;
            Some((p[0][1], d))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(k)
        .map(|(p, d)| {
            let last = d.days.len() - 1;
            let e = example_for(&m.model, d, last, vec![false; MODEL_HORIZONS.len()], 1.0);
            let why = explanation(&m.model, &e, 1, 3);
            let outcome = match d.failed_on {
                Some(f) => format!("failed on day {f}"),
                None => "no failure in the data".into(),
            };
            format!(
                "{} {}: P(fail 7d)={p:.3}; {why} [{outcome}]",
                d.serial, d.model
            )
        })
        .collect()
}

/// The `k` attributes that raise `e`'s risk for horizon index `h` most,
/// e.g. `SMART 197 +12.0%/day (Δp 0.21), SMART 5 flat (Δp 0.02)` (trend of
/// the model's log1p(raw) feature relative to its level; Δp: the drop in
/// probability when the attribute's history is replaced by its training
/// mean). Attributes that lower the risk are left out.
pub fn explanation(model: &FailureModel, e: &Example, h: usize, k: usize) -> String {
    let why = model.explain(e, h).unwrap_or_default();
    let parts: Vec<String> = why
        .iter()
        .filter(|c| c.delta_p > 0.0)
        .take(k)
        .map(|c| {
            let trend = if c.trend_per_step.is_finite() && c.trend_per_step != 0.0 {
                format!("{:+.1}%/day", 100.0 * c.trend_per_step)
            } else {
                "flat".into()
            };
            format!(
                "SMART {} {trend} (Δp {:.3})",
                ATTRIBUTES[c.feature], c.delta_p
            )
        })
        .collect();
    if parts.is_empty() {
        "no attribute raises the risk".into()
    } else {
        parts.join(", ")
    }
}

/// `model`'s input of every day of `d` (labels unset).
fn day_examples(model: &FailureModel, d: &Drive) -> Vec<Example> {
    (0..d.days.len())
        .map(|i| example_for(model, d, i, vec![false; MODEL_HORIZONS.len()], 1.0))
        .collect()
}

/// `model`'s calibrated P(fail within each horizon) for every day of `d`
/// (NaN where the model refuses the input).
pub fn probabilities(model: &FailureModel, d: &Drive) -> Vec<Vec<f64>> {
    model
        .predict(&day_examples(model, d))
        .unwrap_or_else(|_| vec![vec![f64::NAN; MODEL_HORIZONS.len()]; d.days.len()])
}

/// Calibration of P(7 d) on the test drives' days whose 7-day future is in
/// the data.
pub fn test_reliability(fleet: &Fleet, m: &LstmFailure) -> Reliability {
    test_reliability_of(fleet, &m.model)
}

/// [`test_reliability`] of any failure model (e.g. the one active now,
/// to compare with a newly trained one on the same days).
pub fn test_reliability_of(fleet: &Fleet, model: &FailureModel) -> Reliability {
    let split = Split::of(fleet);
    let (mut probs, mut ys) = (Vec::new(), Vec::new());
    for d in fleet.drives.iter().filter(|d| is_test_drive(&d.serial)) {
        let p = probabilities(model, d);
        for (i, &day) in d.days.iter().enumerate() {
            if day < split.cut_day
                || day + 7 > split.last_day
                || d.failed_on.is_some_and(|f| day >= f)
            {
                continue;
            }
            probs.push(p[i][1]);
            ys.push(labels(d, day)[1]);
        }
    }
    Reliability::of(&probs, &ys, 10)
}

#[derive(Debug, Clone)]
pub struct MethodResult {
    pub name: String,
    pub by_horizon: Vec<AlarmReport>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub split: Split,
    pub drives: usize,
    pub rows: usize,
    pub failures: usize,
    pub train_drives: usize,
    pub train_failures: usize,
    pub test_drives: usize,
    pub test_failures: usize,
    pub methods: Vec<MethodResult>,
}

/// Score `methods` on the test part of `fleet`.
pub fn run(fleet: &Fleet, methods: &[&dyn Method]) -> Report {
    let split = Split::of(fleet);
    let (test, train): (Vec<&Drive>, Vec<&Drive>) =
        fleet.drives.iter().partition(|d| is_test_drive(&d.serial));
    let failed_in = |ds: &[&Drive], lo: i32, hi: i32| {
        ds.iter()
            .filter(|d| d.failed_on.is_some_and(|f| (lo..=hi).contains(&f)))
            .count()
    };
    let methods = methods
        .iter()
        .map(|m| {
            let alarms: Vec<Vec<bool>> = test.iter().map(|d| m.alarms(d)).collect();
            let by_horizon = HORIZONS
                .iter()
                .map(|&h| {
                    evaluate(
                        h,
                        split.cut_day,
                        split.last_day,
                        test.iter().zip(&alarms).map(|(d, a)| DriveAlarms {
                            days: &d.days,
                            alarms: a,
                            failed_on: d.failed_on,
                        }),
                    )
                })
                .collect();
            MethodResult {
                name: m.name(),
                by_horizon,
            }
        })
        .collect();
    Report {
        split,
        drives: fleet.drives.len(),
        rows: fleet.rows,
        failures: fleet.failures(),
        train_drives: train.len(),
        train_failures: failed_in(&train, split.first_day, split.cut_day - 1),
        test_drives: test.len(),
        test_failures: failed_in(&test, split.cut_day, split.last_day),
        methods,
    }
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.split;
        writeln!(
            f,
            "Backblaze: {} drive-days, {} drives, {} failures; days {}..={} (cut at {})",
            self.rows, self.drives, self.failures, s.first_day, s.last_day, s.cut_day
        )?;
        writeln!(
            f,
            "train: {} drives ({}% by serial hash), {} failures before the cut; test: {} drives, {} failures from the cut on",
            self.train_drives,
            100 - TEST_PERCENT,
            self.train_failures,
            self.test_drives,
            self.test_failures
        )?;
        for m in &self.methods {
            writeln!(f, "\n{}", m.name)?;
            writeln!(
                f,
                "  {:>3}  {:>7} {:>17}  {:>7} {:>17}  {:>8}  {:>13}  {:>11}",
                "N",
                "recall",
                "95% CI",
                "prec.",
                "95% CI",
                "caught",
                "false/1k d-d",
                "lead d min/med/max"
            )?;
            for r in &m.by_horizon {
                let (rl, rh) = wilson(r.caught, r.failures);
                let (pl, ph) = wilson(r.true_alarm_days, r.alarm_days);
                let lead = r
                    .lead_time_summary()
                    .map_or("-".into(), |(a, b, c)| format!("{a}/{b}/{c}"));
                writeln!(
                    f,
                    "  {:>3}  {:>7} {:>17}  {:>7} {:>17}  {:>8}  {:>13.2}  {:>11}",
                    r.horizon,
                    pct(r.recall()),
                    format!("[{}, {}]", pct(rl), pct(rh)),
                    pct(r.precision()),
                    format!("[{}, {}]", pct(pl), pct(ph)),
                    format!("{}/{}", r.caught, r.failures),
                    r.false_alarms_per_1000_drive_days(),
                    lead
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(
        serial: &str,
        days: std::ops::Range<i32>,
        failed: bool,
        bad_from: Option<i32>,
    ) -> Drive {
        let i5 = attribute_index(5).unwrap();
        let days: Vec<i32> = days.collect();
        let raw = days
            .iter()
            .map(|&d| {
                let mut r = [0.0; ATTRIBUTES.len()];
                if bad_from.is_some_and(|b| d >= b) {
                    r[i5] = 8.0;
                }
                r
            })
            .collect();
        Drive {
            serial: serial.into(),
            model: "M".into(),
            firmware: String::new(),
            written: Vec::new(),
            capacity_bytes: 1,
            failed_on: failed.then(|| *days.last().unwrap()),
            days,
            raw,
        }
    }

    #[test]
    fn models_saved_before_the_usage_and_group_covariates_still_score() {
        let d = drive("S1", 0..20, false, Some(10));
        for statics in [2, STATICS.len()] {
            let m = FailureModel::new(failure::Config {
                seq_len: SEQ_DAYS,
                features: ATTRIBUTES.len(),
                statics,
                horizons: MODEL_HORIZONS.to_vec(),
                hidden: 4,
                epochs: 1,
                batch: 8,
                learning_rate: 1e-3,
                seed: 1,
            })
            .unwrap();
            let p = probabilities(&m, &d);
            assert_eq!(p.len(), 20);
            assert!(
                p.iter().flatten().all(|v| v.is_finite()),
                "{statics}: {p:?}"
            );
            assert_eq!(
                example_for(&m, &d, 3, vec![false; 2], 1.0).statics.len(),
                statics
            );
        }
    }

    #[test]
    fn the_rule_of_thumb_is_scored_on_test_drives_after_the_cut() {
        // Serials chosen so that both sides of the hash split are used.
        let serials: Vec<String> = (0..40).map(|i| format!("S{i}")).collect();
        let test: Vec<&String> = serials.iter().filter(|s| is_test_drive(s)).collect();
        assert!(test.len() >= 5 && test.len() < 40);
        let mut drives = Vec::new();
        for s in &serials {
            drives.push(drive(s, 0..20, false, None));
        }
        // A test drive that fails on day 18 with reallocations from day 14: caught (lead 4).
        drives[serials.iter().position(|s| s == test[0]).unwrap()] =
            drive(test[0], 0..19, true, Some(14));
        // A test drive failing silently on day 17: missed.
        drives[serials.iter().position(|s| s == test[1]).unwrap()] =
            drive(test[1], 0..18, true, None);
        // A healthy test drive with reallocated sectors: false alarms every test day.
        drives[serials.iter().position(|s| s == test[2]).unwrap()] =
            drive(test[2], 0..20, false, Some(0));
        let fleet = Fleet {
            rows: drives.iter().map(|d| d.days.len()).sum(),
            drives,
            first_day: 0,
            last_day: 19,
        };
        let r = run(&fleet, &[&RuleOfThumb]);
        assert_eq!(r.split.cut_day, 10);
        assert_eq!(r.test_failures, 2);
        let h7 = &r.methods[0].by_horizon[0];
        assert_eq!(
            (h7.failures, h7.caught, h7.lead_times.clone()),
            (2, 1, vec![4])
        );
        // Alarms: the failing drive on days 14..=17 (4 true), the healthy one on 10..=19 (10 false).
        assert_eq!((h7.alarm_days, h7.true_alarm_days), (14, 4));
        let text = r.to_string();
        assert!(text.contains("baseline") && text.contains("1/2"), "{text}");
    }
}
