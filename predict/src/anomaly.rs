//! Anomaly scores: how surprising each actual value is under the
//! forecaster's one-step-ahead distribution, calibrated against the
//! surprise seen on normal data, with hysteresis so one spike does not page.
//!
//! - surprise: |z| = |actual − mean| / std of the one-step forecast;
//! - calibration: the score is the empirical tail probability of that |z|
//!   among the |z| of normal (training) data — a model whose spread is off
//!   by a constant factor is still scored correctly, and a score of 0.01
//!   means "1 in 100 normal steps look this odd". Beyond the top decile the
//!   tail is extrapolated (peaks over threshold with an exponential tail),
//!   so a short calibration sample still resolves small probabilities;
//! - hysteresis: an alarm is raised when `confirm` of the last `over` steps
//!   score at or below `alpha`, and cleared after `quiet` steps in a row
//!   above it.

use crate::forecast::Forecaster;
use crate::nn::Result;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hysteresis {
    pub alpha: f64,
    pub confirm: usize,
    pub over: usize,
    pub quiet: usize,
}

impl Default for Hysteresis {
    fn default() -> Hysteresis {
        Hysteresis {
            alpha: 0.01,
            confirm: 3,
            over: 5,
            quiet: 10,
        }
    }
}

impl Hysteresis {
    /// Alarm state per step from tail probabilities (NaN: no score, counts
    /// as unremarkable).
    pub fn alarms(&self, scores: &[f64]) -> Vec<bool> {
        let mut out = Vec::with_capacity(scores.len());
        let mut on = false;
        let mut calm = 0usize;
        for i in 0..scores.len() {
            let low = |s: f64| s <= self.alpha;
            let from = (i + 1).saturating_sub(self.over.max(1));
            let hits = scores[from..=i].iter().filter(|&&s| low(s)).count();
            if on {
                calm = if low(scores[i]) { 0 } else { calm + 1 };
                if calm >= self.quiet {
                    on = false;
                }
            } else if hits >= self.confirm {
                on = true;
                calm = 0;
            }
            out.push(on);
        }
        out
    }
}

/// Indices where an alarm starts (false → true).
pub fn onsets(alarms: &[bool]) -> Vec<usize> {
    (0..alarms.len())
        .filter(|&i| alarms[i] && (i == 0 || !alarms[i - 1]))
        .collect()
}

/// |z| of each step's value under the one-step forecast from the window
/// before it; NaN for the first `window` steps, for missing values, and for
/// windows the forecaster refuses.
pub fn surprises(model: &Forecaster, series: &[f32], batch: usize) -> Result<Vec<f64>> {
    let w = model.config().window;
    let mut out = vec![f64::NAN; series.len()];
    let starts: Vec<usize> = (w..series.len()).collect();
    for chunk in starts.chunks(batch.max(1)) {
        let windows: Vec<&[f32]> = chunk.iter().map(|&t| &series[t - w..t]).collect();
        for (&t, f) in chunk.iter().zip(model.predict(&windows)?) {
            if let (Some(f), true) = (f, series[t].is_finite()) {
                let z = (series[t] - f.mean[0]) / f.std[0].max(1e-9);
                out[t] = f64::from(z.abs());
            }
        }
    }
    Ok(out)
}

/// Empirical tail probabilities against normal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// |z| of normal steps, ascending.
    sorted: Vec<f64>,
}

impl Calibration {
    pub fn fit(normal: impl IntoIterator<Item = f64>) -> Calibration {
        let mut sorted: Vec<f64> = normal.into_iter().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        Calibration { sorted }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// P(normal |z| >= z): empirical (with the +1 correction, never 0) up
    /// to the 90th percentile, then an exponential tail fitted to the
    /// exceedances over it (mean excess), when there are at least 10.
    pub fn tail(&self, z: f64) -> f64 {
        if !z.is_finite() {
            return f64::NAN;
        }
        #[allow(clippy::cast_precision_loss)]
        let m = self.sorted.len() as f64;
        let at_or_above = |x: f64| self.sorted.len() - self.sorted.partition_point(|&v| v < x);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let q = ((m * 0.9) as usize).min(self.sorted.len().saturating_sub(1));
        if let Some(&u) = self.sorted.get(q) {
            let exceed: Vec<f64> = self.sorted[q..].iter().map(|v| v - u).collect();
            #[allow(clippy::cast_precision_loss)]
            let beta = exceed.iter().sum::<f64>() / exceed.len() as f64;
            if z > u && exceed.len() >= 10 && beta > 0.0 {
                #[allow(clippy::cast_precision_loss)]
                let base = (at_or_above(u) as f64 + 1.0) / (m + 1.0);
                return base * (-(z - u) / beta).exp();
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let p = (at_or_above(z) as f64 + 1.0) / (m + 1.0);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spike_does_not_alarm_a_run_does_and_quiet_clears() {
        let h = Hysteresis {
            alpha: 0.01,
            confirm: 3,
            over: 5,
            quiet: 3,
        };
        let mut s = vec![0.5; 30];
        s[5] = 0.001; // lone spike
        for v in &mut s[10..14] {
            *v = 0.001;
        }
        let a = h.alarms(&s);
        assert!(!a[5] && !a[6], "a lone spike pages nobody");
        assert!(
            !a[11] && a[12] && a[13],
            "the third low step in five raises it"
        );
        assert!(a[15] && !a[16], "three quiet steps clear it");
        assert_eq!(onsets(&a), [12]);
        // NaN scores are unremarkable.
        assert!(h.alarms(&[f64::NAN; 10]).iter().all(|x| !x));
    }

    #[test]
    fn calibration_gives_empirical_tails_and_extrapolates_beyond_the_sample() {
        let c = Calibration::fit((0..99).map(f64::from).chain([f64::NAN]));
        assert_eq!(c.len(), 99);
        assert!((c.tail(0.0) - 1.0).abs() < 1e-12);
        assert!((c.tail(50.0) - 50.0 / 100.0).abs() < 1e-12);
        // Top decile: u = 89, 10 exceedances (0..=9), mean excess 4.5.
        assert!((c.tail(89.0) - 11.0 / 100.0).abs() < 1e-12);
        let far = c.tail(200.0);
        assert!(far > 0.0 && far < 1e-9, "{far}");
        assert!(c.tail(120.0) > far, "monotone");
        assert!(c.tail(f64::NAN).is_nan());
        // Exponential normal data: the fitted tail matches the true one.
        let mut rng = fastrand::Rng::with_seed(3);
        let c = Calibration::fit((0..20_000).map(|_| -(1.0 - rng.f64()).ln()));
        let p = c.tail(8.0);
        let truth = (-8.0f64).exp();
        assert!(p / truth > 0.7 && p / truth < 1.4, "{p} vs {truth}");
    }
}
