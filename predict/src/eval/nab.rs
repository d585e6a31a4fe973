//! The NAB protocol: one forecaster shared by every series, trained on each
//! series' probationary prefix (the first 15%, unlabeled, as NAB defines
//! it); per series, surprise calibrated on that same prefix; alarms with
//! hysteresis on the rest. Reported: labeled windows detected (an alarm
//! starting inside the window), how early in the window, and alarms starting
//! outside every window per week of scored data.

use crate::anomaly::{onsets, surprises, Calibration, Hysteresis};
use crate::data::nab::Series;
use crate::forecast::{self, Forecaster};
use crate::metrics::wilson;
use crate::nn::Result;
use std::fmt;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub forecast: forecast::Config,
    pub hysteresis: Hysteresis,
    /// Unlabeled prefix of each series the detector may learn from.
    pub probation: f64,
    /// Training windows in all (the stride grows to stay under it).
    pub max_train_windows: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            forecast: forecast::Config {
                window: 48,
                horizon: 1,
                hidden: 32,
                epochs: 6,
                batch: 128,
                learning_rate: 5e-3,
                stride: 1,
                seed: 1,
            },
            hysteresis: Hysteresis::default(),
            probation: 0.15,
            max_train_windows: 20_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub series: usize,
    pub train_windows: usize,
    pub final_loss: f64,
    pub windows: usize,
    pub detected: usize,
    /// Hours from window start to the first alarm, per detected window.
    pub delay_hours: Vec<f64>,
    /// Hours from the first alarm to the window end.
    pub lead_hours: Vec<f64>,
    pub false_alarms: usize,
    pub weeks: f64,
    /// NAB scores of the alarm onsets, per application profile.
    pub nab: Vec<(&'static str, super::nab_score::Score)>,
    /// Each series as scored, for plots.
    pub traces: Vec<crate::plot::Trace>,
}

/// Progress: ("train", epoch, epochs) then ("score", series, total).
pub fn run(
    data: &[Series],
    cfg: &Config,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<Report> {
    let prefix = |s: &Series| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let n = (s.values.len() as f64 * cfg.probation) as usize;
        n
    };
    let train: Vec<Vec<f32>> = data
        .iter()
        .map(|s| s.values[..prefix(s)].to_vec())
        .collect();
    let epochs_total = cfg.forecast.epochs;
    let (model, epochs) =
        Forecaster::train_capped(cfg.forecast, &train, cfg.max_train_windows, |e| {
            progress("train", e.epoch, epochs_total);
        })?;
    let profiles = [
        super::nab_score::STANDARD,
        super::nab_score::REWARD_LOW_FP,
        super::nab_score::REWARD_LOW_FN,
    ];
    let mut r = Report {
        nab: profiles
            .iter()
            .map(|p| (p.name, super::nab_score::Score::default()))
            .collect(),
        series: data.len(),
        train_windows: epochs.last().map_or(0, |e| e.windows),
        final_loss: epochs.last().map_or(f64::NAN, |e| e.loss),
        ..Report::default()
    };
    for (i, s) in data.iter().enumerate() {
        let p = prefix(s);
        let z = surprises(&model, &s.values, 512)?;
        let cal = Calibration::fit(z[..p].iter().copied());
        let scores: Vec<f64> = z
            .iter()
            .enumerate()
            .map(|(t, &z)| if t < p { f64::NAN } else { cal.tail(z) })
            .collect();
        let starts = onsets(&cfg.hysteresis.alarms(&scores));
        let scored_from = s.ts.get(p).copied().unwrap_or(i64::MAX);
        #[allow(clippy::cast_precision_loss)]
        {
            r.weeks += (s.ts.last().copied().unwrap_or(0) - scored_from).max(0) as f64 / 604_800.0;
        }
        let windows: Vec<(i64, i64)> = s
            .windows
            .iter()
            .copied()
            .filter(|&(_, end)| end >= scored_from)
            .collect();
        r.windows += windows.len();
        for &(a, b) in &windows {
            if let Some(first) = starts
                .iter()
                .map(|&k| s.ts[k])
                .find(|t| (a..=b).contains(t))
            {
                r.detected += 1;
                #[allow(clippy::cast_precision_loss)]
                {
                    r.delay_hours.push((first - a) as f64 / 3600.0);
                    r.lead_hours.push((b - first) as f64 / 3600.0);
                }
            }
        }
        let mut flagged = vec![false; s.ts.len()];
        for &k in &starts {
            flagged[k] = true;
        }
        for (p, (_, total)) in profiles.iter().zip(r.nab.iter_mut()) {
            total.add(super::nab_score::score(&s.ts, &s.windows, &flagged, p));
        }
        r.traces.push(crate::plot::Trace {
            name: s.name.clone(),
            ts: s.ts.clone(),
            values: s.values.clone(),
            windows: s.windows.clone(),
            probation: p,
            onsets: starts.clone(),
        });
        r.false_alarms += starts
            .iter()
            .filter(|&&k| !windows.iter().any(|&(a, b)| (a..=b).contains(&s.ts[k])))
            .count();
        progress("score", i + 1, data.len());
    }
    Ok(r)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lo, hi) = wilson(self.detected, self.windows);
        #[allow(clippy::cast_precision_loss)]
        let rate = if self.windows == 0 {
            f64::NAN
        } else {
            self.detected as f64 / self.windows as f64
        };
        writeln!(
            f,
            "NAB: {} series; shared LSTM forecaster trained on {} windows of the probationary prefixes (final NLL {:.3})",
            self.series, self.train_windows, self.final_loss
        )?;
        writeln!(
            f,
            "windows detected: {}/{} = {:.1}% [95% CI {:.1}%, {:.1}%]",
            self.detected,
            self.windows,
            100.0 * rate,
            100.0 * lo,
            100.0 * hi
        )?;
        writeln!(
            f,
            "first alarm: median {:.1} h after window start, {:.1} h before window end",
            median(&self.delay_hours),
            median(&self.lead_hours)
        )?;
        writeln!(
            f,
            "false alarms: {} outside windows in {:.1} weeks = {:.2} per week",
            self.false_alarms,
            self.weeks,
            self.false_alarms as f64 / self.weeks.max(f64::MIN_POSITIVE)
        )?;
        let scores: Vec<String> = self
            .nab
            .iter()
            .map(|(name, s)| format!("{name} {:.1}", s.normalised()))
            .collect();
        writeln!(
            f,
            "NAB score (alarm onsets as detections; 0 = none, 100 = perfect): {}",
            scores.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::nab;

    /// A NAB-format corpus on disk: noisy daily cycles, one with a level
    /// shift inside its labeled window.
    fn corpus(dir: &std::path::Path) {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut windows = serde_json::Map::new();
        std::fs::create_dir_all(dir.join("data/synthetic")).unwrap();
        for (name, shift) in [("a.csv", true), ("b.csv", false)] {
            let mut text = String::from("timestamp,value\n");
            let t0 = 1_400_000_000i64;
            for i in 0..1500i64 {
                #[allow(clippy::cast_precision_loss)]
                let mut v =
                    50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin() + rng.f64();
                if shift && (1200..1260).contains(&i) {
                    v += 40.0;
                }
                text.push_str(&format!("{},{v:.3}\n", fmt_ts(t0 + i * 300)));
            }
            std::fs::write(dir.join("data/synthetic").join(name), text).unwrap();
            let w = if shift {
                // Steps 1190..=1300 around the shift at 1200..1260.
                serde_json::json!([[
                    format!("{}.000000", fmt_ts(t0 + 1190 * 300)),
                    format!("{}.000000", fmt_ts(t0 + 1300 * 300))
                ]])
            } else {
                serde_json::json!([])
            };
            windows.insert(format!("synthetic/{name}"), w);
        }
        std::fs::write(
            dir.join("combined_windows.json"),
            serde_json::Value::Object(windows).to_string(),
        )
        .unwrap();
    }

    fn fmt_ts(ts: i64) -> String {
        let (y, m, d) = civil(ts.div_euclid(86_400));
        let s = ts.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }

    /// Civil date of a day number (inverse of `civil_day`, for the fixture).
    fn civil(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    #[test]
    fn a_level_shift_in_its_window_is_detected_with_few_false_alarms() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path());
        let data = nab::load(dir.path()).unwrap();
        assert_eq!(data.len(), 2);
        // The window must cover the shift (steps 1200..1260 from t0).
        let (a, b) = data[0].windows[0];
        assert!(a <= data[0].ts[1200] && data[0].ts[1259] <= b);
        let cfg = Config {
            forecast: forecast::Config {
                epochs: 4,
                hidden: 16,
                ..Config::default().forecast
            },
            probation: 0.5,
            ..Config::default()
        };
        let r = run(&data, &cfg, |_, _, _| {}).unwrap();
        assert_eq!((r.windows, r.detected), (1, 1), "{r}");
        assert!(r.false_alarms <= 2, "{r}");
        assert!(r.to_string().contains("windows detected: 1/1"));
        // Detected about 10 rows into a 111-row window, at most two false
        // alarms: well above the null detector's 0, below a perfect 100.
        let standard = r.nab[0].1.normalised();
        assert!(standard > 50.0 && standard < 100.0, "{r}");
        assert!(r.to_string().contains("NAB score"), "{r}");
    }
}
