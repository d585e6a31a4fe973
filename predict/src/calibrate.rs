//! Probability calibration and reliability metrics.
//!
//! A model's raw score is not a probability: class weighting and negative
//! subsampling (needed when failures are 1 in 10,000 drive-days) shift it.
//! [`Platt`] fits `P = σ(a·logit + b)` on held-out data (two parameters:
//! safe with few positives); [`Isotonic`] fits a monotone step function
//! (pool adjacent violators; needs more positives). [`Reliability`] reports
//! how well probabilities match frequencies: Brier score, expected
//! calibration error and the reliability curve.

use serde::{Deserialize, Serialize};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `P = σ(a·x + b)` on a raw score `x` (a logit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Platt {
    /// Maximum likelihood by Newton's method, with Platt's smoothed targets
    /// ((n₊+1)/(n₊+2), 1/(n₋+2)) so a separable sample does not diverge.
    /// `weights` count each example (e.g. the inverse of a subsampling rate).
    pub fn fit(scores: &[f64], labels: &[bool], weights: Option<&[f64]>) -> Platt {
        let w = |i: usize| weights.map_or(1.0, |w| w[i]);
        let (mut pos, mut neg) = (0.0, 0.0);
        for (i, &y) in labels.iter().enumerate() {
            if y {
                pos += w(i);
            } else {
                neg += w(i);
            }
        }
        let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
        let target = |y: bool| if y { t_pos } else { t_neg };
        // Weighted cross-entropy against the smoothed targets, computed
        // stably from the logit f = a·x + b.
        let objective = |a: f64, b: f64| -> f64 {
            let mut l = 0.0;
            for (i, (&x, &y)) in scores.iter().zip(labels).enumerate() {
                if !x.is_finite() {
                    continue;
                }
                let f = a * x + b;
                let t = target(y);
                // −[t·log σ(f) + (1−t)·log(1−σ(f))] = log(1+e^f) − t·f
                let softplus = if f > 0.0 {
                    f + (-f).exp().ln_1p()
                } else {
                    f.exp().ln_1p()
                };
                l += w(i) * (softplus - t * f);
            }
            l
        };
        let (mut a, mut b) = (0.0, ((pos + 1.0) / (neg + 1.0)).ln());
        let mut current = objective(a, b);
        // Newton's method with backtracking (Lin, Lin and Weng's variant of
        // Platt's algorithm): a full step can overshoot badly when the
        // classes are nearly separable.
        for _ in 0..100 {
            let (mut g_a, mut g_b, mut h_aa, mut h_ab, mut h_bb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
            for (i, (&x, &y)) in scores.iter().zip(labels).enumerate() {
                if !x.is_finite() {
                    continue;
                }
                let p = sigmoid(a * x + b);
                let d = (p - target(y)) * w(i);
                let q = p * (1.0 - p) * w(i);
                g_a += d * x;
                g_b += d;
                h_aa += q * x * x;
                h_ab += q * x;
                h_bb += q;
            }
            if g_a.abs() + g_b.abs() < 1e-9 {
                break;
            }
            let det = h_aa * h_bb - h_ab * h_ab;
            if det.abs() < 1e-300 {
                break;
            }
            let da = (h_bb * g_a - h_ab * g_b) / det;
            let db = (h_aa * g_b - h_ab * g_a) / det;
            let mut step = 1.0;
            let mut improved = false;
            while step > 1e-10 {
                let (na, nb) = (a - step * da, b - step * db);
                let l = objective(na, nb);
                if l < current - 1e-4 * step * (g_a * da + g_b * db) {
                    (a, b, current) = (na, nb, l);
                    improved = true;
                    break;
                }
                step /= 2.0;
            }
            if !improved {
                break;
            }
        }
        Platt { a, b }
    }

    pub fn apply(&self, score: f64) -> f64 {
        sigmoid(self.a * score + self.b)
    }
}

/// A monotone (non-decreasing) step function from score to probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isotonic {
    /// Upper score bound of each block, ascending, and its probability.
    steps: Vec<(f64, f64)>,
}

impl Isotonic {
    /// Pool adjacent violators on (score, label) pairs.
    pub fn fit(scores: &[f64], labels: &[bool]) -> Isotonic {
        let mut pairs: Vec<(f64, f64)> = scores
            .iter()
            .zip(labels)
            .filter(|(s, _)| s.is_finite())
            .map(|(&s, &y)| (s, if y { 1.0 } else { 0.0 }))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks of (max score, sum of labels, count).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for (s, y) in pairs {
            blocks.push((s, y, 1.0));
            while blocks.len() >= 2 {
                let n = blocks.len();
                let (_, s1, c1) = blocks[n - 2];
                let (hi, s2, c2) = blocks[n - 1];
                if s1 / c1 <= s2 / c2 {
                    break;
                }
                blocks.truncate(n - 2);
                blocks.push((hi, s1 + s2, c1 + c2));
            }
        }
        Isotonic {
            steps: blocks.into_iter().map(|(hi, s, c)| (hi, s / c)).collect(),
        }
    }

    pub fn apply(&self, score: f64) -> f64 {
        let i = self.steps.partition_point(|&(hi, _)| hi < score);
        self.steps
            .get(i)
            .or(self.steps.last())
            .map_or(f64::NAN, |&(_, p)| p)
    }
}

/// How well probabilities match observed frequencies.
#[derive(Debug, Clone, PartialEq)]
pub struct Reliability {
    pub brier: f64,
    /// Expected calibration error over equal-width bins, weighted by count.
    pub ece: f64,
    /// Per non-empty bin: (mean predicted, observed frequency, count).
    pub curve: Vec<(f64, f64, usize)>,
}

impl Reliability {
    pub fn of(probs: &[f64], labels: &[bool], bins: usize) -> Reliability {
        let bins = bins.max(1);
        let mut acc = vec![(0.0, 0.0, 0usize); bins];
        let mut brier = 0.0;
        let mut n = 0usize;
        for (&p, &y) in probs.iter().zip(labels) {
            if !p.is_finite() {
                continue;
            }
            let y = if y { 1.0 } else { 0.0 };
            brier += (p - y) * (p - y);
            n += 1;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
            acc[b].0 += p;
            acc[b].1 += y;
            acc[b].2 += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let total = n.max(1) as f64;
        let curve: Vec<(f64, f64, usize)> = acc
            .into_iter()
            .filter(|b| b.2 > 0)
            .map(|(p, y, c)| {
                #[allow(clippy::cast_precision_loss)]
                let c_f = c as f64;
                (p / c_f, y / c_f, c)
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let ece = curve
            .iter()
            .map(|&(p, y, c)| (p - y).abs() * c as f64 / total)
            .sum();
        Reliability {
            brier: brier / total,
            ece,
            curve,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels drawn from a known link: true P = σ(2x − 1).
    fn sample(n: usize, seed: u64) -> (Vec<f64>, Vec<bool>) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let xs: Vec<f64> = (0..n).map(|_| rng.f64() * 6.0 - 3.0).collect();
        let ys = xs
            .iter()
            .map(|&x| rng.f64() < sigmoid(2.0 * x - 1.0))
            .collect();
        (xs, ys)
    }

    #[test]
    fn platt_recovers_a_known_link_and_its_curve_is_calibrated() {
        let (xs, ys) = sample(20_000, 1);
        let p = Platt::fit(&xs, &ys, None);
        assert!((p.a - 2.0).abs() < 0.15 && (p.b + 1.0).abs() < 0.1, "{p:?}");
        let (tx, ty) = sample(20_000, 2);
        let probs: Vec<f64> = tx.iter().map(|&x| p.apply(x)).collect();
        let r = Reliability::of(&probs, &ty, 10);
        assert!(r.ece < 0.02, "{r:?}");
        for &(pred, obs, c) in &r.curve {
            if c > 500 {
                assert!((pred - obs).abs() < 0.05, "bin {pred} vs {obs} ({c})");
            }
        }
        // An uncalibrated (too confident) mapping is caught by the metric.
        let over: Vec<f64> = tx.iter().map(|&x| sigmoid(6.0 * x - 3.0)).collect();
        assert!(Reliability::of(&over, &ty, 10).ece > 0.05);
    }

    #[test]
    fn isotonic_is_monotone_and_calibrated() {
        let (xs, ys) = sample(20_000, 3);
        let iso = Isotonic::fit(&xs, &ys);
        let mut last = 0.0;
        for i in 0..=60 {
            let p = iso.apply(f64::from(i) / 10.0 - 3.0);
            assert!(p >= last - 1e-12);
            last = p;
        }
        let (tx, ty) = sample(20_000, 4);
        let probs: Vec<f64> = tx.iter().map(|&x| iso.apply(x)).collect();
        assert!(Reliability::of(&probs, &ty, 10).ece < 0.03);
    }

    #[test]
    fn platt_stays_finite_on_separable_scores() {
        // Positives all score above negatives (a full Newton step diverges).
        let xs: Vec<f64> = (0..1000).map(|i| -7.0 + f64::from(i) * 0.004).collect();
        let ys: Vec<bool> = (0..1000).map(|i| i >= 990).collect();
        let w: Vec<f64> = ys.iter().map(|&y| if y { 1.0 } else { 50.0 }).collect();
        let p = Platt::fit(&xs, &ys, Some(&w));
        assert!(p.a.is_finite() && p.a > 0.0 && p.a < 100.0, "{p:?}");
        let top = p.apply(-3.0);
        assert!(top > 0.0 && top < 1.0, "{top}");
        assert!(p.apply(-3.0) > p.apply(-5.0));
    }

    #[test]
    fn weighted_platt_undoes_negative_subsampling() {
        let (xs, ys) = sample(40_000, 5);
        // Keep 1 in 10 negatives, weight them by 10.
        let mut rng = fastrand::Rng::with_seed(6);
        let (mut sx, mut sy, mut sw) = (Vec::new(), Vec::new(), Vec::new());
        for (&x, &y) in xs.iter().zip(&ys) {
            if y || rng.f64() < 0.1 {
                sx.push(x);
                sy.push(y);
                sw.push(if y { 1.0 } else { 10.0 });
            }
        }
        let p = Platt::fit(&sx, &sy, Some(&sw));
        assert!((p.b + 1.0).abs() < 0.2, "{p:?}");
    }
}
