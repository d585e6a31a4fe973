//! The SKAB protocol: one forecaster shared by all sensor channels (windows
//! are normalised, so vibration RMS and temperature share shape knowledge),
//! trained on the anomaly-free run and the first `normal_prefix` rows of
//! each experiment (anomaly-free by SKAB's design); per experiment and
//! channel, surprise calibrated on that prefix; the step's score is the
//! smallest channel tail probability times the channel count (Bonferroni);
//! the same for each channel's distance from its normal level (a robust
//! z-score against the prefix), because a forecaster adapts to a new level
//! within a window and stops being surprised while the fault persists;
//! alarms with hysteresis. Reported: point-wise precision/recall/F1 on the
//! `anomaly` column after the prefix, and the delay from each changepoint
//! to the first alarm.

use crate::anomaly::{surprises, Calibration, Hysteresis};
use crate::data::skab::Run;
use crate::forecast::{self, Forecaster};
use crate::nn::Result;
use std::fmt;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub forecast: forecast::Config,
    pub hysteresis: Hysteresis,
    pub normal_prefix: usize,
    pub max_train_windows: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            forecast: forecast::Config {
                window: 32,
                horizon: 1,
                hidden: 32,
                epochs: 6,
                batch: 128,
                learning_rate: 5e-3,
                stride: 1,
                seed: 1,
            },
            hysteresis: Hysteresis::default(),
            normal_prefix: 400,
            max_train_windows: 20_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub runs: usize,
    pub channels: usize,
    pub train_windows: usize,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub changepoints: usize,
    /// Steps (seconds) from a changepoint to the first alarm at or after it,
    /// for changepoints followed by an alarm before the next changepoint.
    pub delays: Vec<usize>,
    /// Per run, for plots: the detector's surprise (−log10 of the combined
    /// tail probability) per step, the labeled anomaly spans, the normal
    /// prefix and the alarm onsets; `ts` is the step index.
    pub traces: Vec<crate::plot::Trace>,
}

impl Report {
    #[allow(clippy::cast_precision_loss)]
    pub fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    #[allow(clippy::cast_precision_loss)]
    pub fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// |x − median| / MAD of the first `prefix` values, per step (a robust
/// z-score against the normal level; MAD floored so flat channels do not
/// divide by zero).
fn level_distance(col: &[f32], prefix: usize) -> Vec<f64> {
    let mut normal: Vec<f64> = col[..prefix]
        .iter()
        .map(|&v| f64::from(v))
        .filter(|v| v.is_finite())
        .collect();
    if normal.is_empty() {
        return vec![f64::NAN; col.len()];
    }
    normal.sort_by(f64::total_cmp);
    let median = normal[normal.len() / 2];
    let mut dev: Vec<f64> = normal.iter().map(|v| (v - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = dev[dev.len() / 2].max(1e-6 * median.abs()).max(1e-9);
    col.iter()
        .map(|&v| (f64::from(v) - median).abs() / mad)
        .collect()
}

fn column(run: &Run, c: usize) -> Vec<f32> {
    run.rows
        .iter()
        .map(|r| r.get(c).copied().unwrap_or(f32::NAN))
        .collect()
}

pub fn run(
    runs: &[Run],
    free: Option<&Run>,
    cfg: &Config,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<Report> {
    let channels = runs.first().map_or(0, |r| r.channels.len());
    let mut train: Vec<Vec<f32>> = Vec::new();
    for c in 0..channels {
        if let Some(f) = free {
            train.push(column(f, c));
        }
        for r in runs {
            let col = column(r, c);
            train.push(col[..cfg.normal_prefix.min(col.len())].to_vec());
        }
    }
    let epochs_total = cfg.forecast.epochs;
    let (model, epochs) =
        Forecaster::train_capped(cfg.forecast, &train, cfg.max_train_windows, |e| {
            progress("train", e.epoch, epochs_total);
        })?;
    let mut rep = Report {
        runs: runs.len(),
        channels,
        train_windows: epochs.last().map_or(0, |e| e.windows),
        ..Report::default()
    };
    let p = cfg.normal_prefix;
    #[allow(clippy::cast_precision_loss)]
    let bonferroni = channels.max(1) as f64;
    for (i, r) in runs.iter().enumerate() {
        let n = r.rows.len();
        let mut score = vec![f64::NAN; n];
        for c in 0..channels {
            let col = column(r, c);
            // Two views of "unlike normal": the forecast's surprise (sudden
            // changes) and the distance from the normal prefix's level
            // (changes the forecaster has since adapted to).
            let z = surprises(&model, &col, 512)?;
            let level = level_distance(&col, p.min(n));
            for signal in [&z, &level] {
                let cal = Calibration::fit(signal[..p.min(n)].iter().copied());
                for t in p.min(n)..n {
                    let s = (cal.tail(signal[t]) * 2.0 * bonferroni).min(1.0);
                    if !s.is_nan() && (score[t].is_nan() || s < score[t]) {
                        score[t] = s;
                    }
                }
            }
        }
        let alarms = cfg.hysteresis.alarms(&score);
        let mut spans = Vec::new();
        let mut open: Option<i64> = None;
        for t in 0..=n {
            let anomalous = r.anomaly.get(t).copied().unwrap_or(false);
            let ti = i64::try_from(t).unwrap_or(i64::MAX);
            match (open, anomalous) {
                (None, true) => open = Some(ti),
                (Some(a), false) => {
                    spans.push((a, ti - 1));
                    open = None;
                }
                _ => {}
            }
        }
        #[allow(clippy::cast_possible_truncation)]
        rep.traces.push(crate::plot::Trace {
            name: r.path.display().to_string(),
            ts: (0..n)
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX))
                .collect(),
            values: score
                .iter()
                .map(|&s| {
                    if s.is_nan() {
                        f32::NAN // the normal prefix: not scored, drawn as a gap
                    } else {
                        (-s.max(1e-12).log10()) as f32
                    }
                })
                .collect(),
            windows: spans,
            probation: p.min(n),
            onsets: crate::anomaly::onsets(&alarms),
        });
        for (t, &alarm) in alarms.iter().enumerate().skip(p.min(n)) {
            match (alarm, r.anomaly.get(t).copied().unwrap_or(false)) {
                (true, true) => rep.tp += 1,
                (true, false) => rep.fp += 1,
                (false, true) => rep.fn_ += 1,
                (false, false) => {}
            }
        }
        let cps: Vec<usize> = (p.min(n)..n)
            .filter(|&t| r.changepoint.get(t) == Some(&true))
            .collect();
        rep.changepoints += cps.len();
        for (k, &cp) in cps.iter().enumerate() {
            let next = cps.get(k + 1).copied().unwrap_or(n);
            if let Some(t) = (cp..next).find(|&t| alarms[t]) {
                rep.delays.push(t - cp);
            }
        }
        progress("score", i + 1, runs.len());
    }
    Ok(rep)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SKAB: {} runs, {} channels; shared LSTM forecaster trained on {} windows (anomaly-free run + normal prefixes)",
            self.runs, self.channels, self.train_windows
        )?;
        writeln!(
            f,
            "anomaly points: precision {:.1}%, recall {:.1}%, F1 {:.3} (tp {}, fp {}, fn {})",
            100.0 * self.precision(),
            100.0 * self.recall(),
            self.f1(),
            self.tp,
            self.fp,
            self.fn_
        )?;
        let mut d = self.delays.clone();
        d.sort_unstable();
        writeln!(
            f,
            "changepoints: {} of {} followed by an alarm; delay median {} s, max {} s",
            d.len(),
            self.changepoints,
            d.get(d.len() / 2).map_or("-".into(), ToString::to_string),
            d.last().map_or("-".into(), ToString::to_string)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with_fault(seed: u64, fault: std::ops::Range<usize>) -> Run {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = 1000;
        let rows = (0..n)
            .map(|t| {
                #[allow(clippy::cast_precision_loss)]
                let phase = t as f32 / 20.0;
                let shift = if fault.contains(&t) { 3.0 } else { 0.0 };
                vec![
                    1.0 + 0.1 * phase.sin() + 0.02 * rng.f32(),
                    80.0 + shift + 0.3 * rng.f32(),
                ]
            })
            .collect();
        Run {
            path: "synthetic.csv".into(),
            channels: vec!["vibration".into(), "temperature".into()],
            rows,
            anomaly: (0..n).map(|t| fault.contains(&t)).collect(),
            changepoint: (0..n).map(|t| t == fault.start || t == fault.end).collect(),
        }
    }

    #[test]
    fn a_persistent_level_fault_is_found_point_by_point() {
        let runs = [run_with_fault(1, 600..800), run_with_fault(2, 500..650)];
        let cfg = Config {
            forecast: forecast::Config {
                epochs: 3,
                hidden: 16,
                ..Config::default().forecast
            },
            ..Config::default()
        };
        let r = run(&runs, None, &cfg, |_, _, _| {}).unwrap();
        assert!(r.f1() > 0.8, "{r}");
        assert!(r.delays.len() >= 2, "{r}");
        assert!(r.to_string().contains("F1"));
        // One plot trace per run, its labeled spans and alarm onsets.
        assert_eq!(r.traces.len(), r.runs);
        assert!(r.traces.iter().all(|t| t.values.len() == t.ts.len()));
        assert!(r
            .traces
            .iter()
            .any(|t| !t.windows.is_empty() && !t.onsets.is_empty()));
    }
}
