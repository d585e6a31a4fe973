//! The failure model: probability that a component fails within each
//! horizon (default 1 day and 7 days), from the recent sequence of its
//! metrics plus static covariates (age, usage, size, ...).
//!
//! An LSTM reads the sequence (features standardised with training
//! statistics); its last state, concatenated with the standardised static
//! covariates, feeds one logistic output per horizon. Failures are rare, so
//! training keeps every positive, subsamples negatives, and weights each
//! example by the inverse of its sampling rate in the loss (weighted binary
//! cross-entropy on logits, in its stable softplus form). Raw outputs are
//! then calibrated per horizon with [`Platt`] on held-out components.

use crate::calibrate::Platt;
use crate::nn::{self, ModelError, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::rnn::{LSTMConfig, LSTM, RNN};
use candle_nn::{Linear, Module, Optimizer, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub seq_len: usize,
    pub features: usize,
    pub statics: usize,
    /// Horizons in steps (days for daily data).
    pub horizons: Vec<u32>,
    pub hidden: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// One component at one time: its last `seq_len` steps and covariates.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// `seq_len × features`, oldest first; NaN = missing.
    pub seq: Vec<f32>,
    pub statics: Vec<f32>,
    /// Per horizon: did it fail within it? (Ignored for prediction.)
    pub labels: Vec<bool>,
    /// Loss weight (inverse sampling rate).
    pub weight: f32,
}

/// One feature's part in a risk (see [`FailureModel::explain`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    /// Index of the sequence feature.
    pub feature: usize,
    /// Probability minus the probability with this feature at its mean.
    pub delta_p: f64,
    /// Least-squares slope per step divided by the mean |level| (NaN when
    /// fewer than two finite values or a zero level).
    pub trend_per_step: f64,
}

fn relative_slope(ys: &[f64]) -> f64 {
    let pts: Vec<(f64, f64)> = ys
        .iter()
        .enumerate()
        .filter(|(_, y)| y.is_finite())
        .map(|(x, &y)| {
            #[allow(clippy::cast_precision_loss)]
            let x = x as f64;
            (x, y)
        })
        .collect();
    if pts.len() < 2 {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let level = pts.iter().map(|p| p.1.abs()).sum::<f64>() / n;
    if sxx == 0.0 || level == 0.0 {
        return f64::NAN;
    }
    sxy / sxx / level
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Standard {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Standard {
    fn fit(rows: impl Iterator<Item = Vec<f32>>, width: usize) -> Standard {
        let (mut sum, mut sq, mut n) = (vec![0f64; width], vec![0f64; width], vec![0f64; width]);
        for r in rows {
            for (i, v) in r.iter().enumerate().take(width) {
                if v.is_finite() {
                    sum[i] += f64::from(*v);
                    sq[i] += f64::from(*v) * f64::from(*v);
                    n[i] += 1.0;
                }
            }
        }
        #[allow(clippy::cast_possible_truncation)]
        let mean: Vec<f32> = (0..width)
            .map(|i| (sum[i] / n[i].max(1.0)) as f32)
            .collect();
        #[allow(clippy::cast_possible_truncation)]
        let std = (0..width)
            .map(|i| {
                let m = sum[i] / n[i].max(1.0);
                ((sq[i] / n[i].max(1.0) - m * m).max(0.0).sqrt() as f32).max(1e-3)
            })
            .collect();
        Standard { mean, std }
    }

    /// Standardised and clipped; missing → 0 (the training mean).
    fn apply(&self, i: usize, v: f32) -> f32 {
        if v.is_finite() {
            ((v - self.mean[i]) / self.std[i]).clamp(-10.0, 10.0)
        } else {
            0.0
        }
    }
}

/// Failure rates of categorical groups (a component model, a model and
/// firmware), learned from training components and saved with the model so
/// inference encodes a group as training did. A group's rate is shrunk
/// toward its parent's (the model's toward the fleet's) with a prior of
/// [`GroupRates::PRIOR`] components, so a rare or unseen group reads as
/// its parent: it generalises to models it never saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupRates {
    /// Components seen and failed, fleet-wide.
    pub fleet: (u32, u32),
    /// Per group key: (components, failed).
    pub groups: std::collections::BTreeMap<String, (u32, u32)>,
}

impl GroupRates {
    pub const PRIOR: f64 = 20.0;

    /// Count each component once under each of its keys (e.g. its model,
    /// and model + firmware).
    pub fn fit<'a>(items: impl IntoIterator<Item = (&'a [String], bool)>) -> GroupRates {
        let mut g = GroupRates::default();
        for (keys, failed) in items {
            g.fleet.0 += 1;
            g.fleet.1 += u32::from(failed);
            for k in keys {
                let e = g.groups.entry(k.clone()).or_default();
                e.0 += 1;
                e.1 += u32::from(failed);
            }
        }
        g
    }

    fn rate(&self) -> f64 {
        (f64::from(self.fleet.1) + 0.5) / (f64::from(self.fleet.0) + 1.0)
    }

    /// ln(rate / fleet rate) of the most specific of `keys` (ordered from
    /// general to specific), each shrunk toward the one before; 0 for
    /// groups never seen. Finite.
    pub fn log_relative(&self, keys: &[String]) -> f32 {
        let fleet = self.rate();
        let mut rate = fleet;
        for k in keys {
            if let Some(&(n, f)) = self.groups.get(k) {
                rate = (f64::from(f) + Self::PRIOR * rate) / (f64::from(n) + Self::PRIOR);
            }
        }
        #[allow(clippy::cast_possible_truncation)]
        let v = (rate / fleet).ln() as f32;
        if v.is_finite() {
            v
        } else {
            0.0
        }
    }
}

pub struct FailureModel {
    cfg: Config,
    /// Categorical covariates' encoding (see [`GroupRates`]).
    groups: GroupRates,
    varmap: VarMap,
    lstm: LSTM,
    head: Linear,
    seq_norm: Standard,
    static_norm: Standard,
    /// Per horizon, fitted by [`FailureModel::calibrate`].
    platt: Vec<Platt>,
}

impl std::fmt::Debug for FailureModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureModel")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl FailureModel {
    pub fn new(cfg: Config) -> Result<FailureModel> {
        if cfg.seq_len == 0 || cfg.features == 0 || cfg.horizons.is_empty() || cfg.hidden == 0 {
            return Err(ModelError::Data("empty failure-model shape".into()));
        }
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let lstm = candle_nn::rnn::lstm(
            cfg.features,
            cfg.hidden,
            LSTMConfig::default(),
            vb.pp("lstm"),
        )?;
        let head = candle_nn::linear(cfg.hidden + cfg.statics, cfg.horizons.len(), vb.pp("head"))?;
        nn::reseed(&varmap, cfg.seed)?;
        let (f, s) = (cfg.features, cfg.statics);
        Ok(FailureModel {
            groups: GroupRates::default(),
            platt: vec![Platt { a: 1.0, b: 0.0 }; cfg.horizons.len()],
            cfg,
            varmap,
            lstm,
            head,
            seq_norm: Standard {
                mean: vec![0.0; f],
                std: vec![1.0; f],
            },
            static_norm: Standard {
                mean: vec![0.0; s],
                std: vec![1.0; s],
            },
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn groups(&self) -> &GroupRates {
        &self.groups
    }

    /// Keep the group encoding the training examples were built with.
    pub fn set_groups(&mut self, groups: GroupRates) {
        self.groups = groups;
    }

    fn check(&self, e: &Example) -> Result<()> {
        if e.seq.len() != self.cfg.seq_len * self.cfg.features
            || e.statics.len() != self.cfg.statics
        {
            return Err(ModelError::Data(format!(
                "example of {} sequence values and {} covariates; the model takes {}×{} and {}",
                e.seq.len(),
                e.statics.len(),
                self.cfg.seq_len,
                self.cfg.features,
                self.cfg.statics
            )));
        }
        Ok(())
    }

    fn tensors(&self, batch: &[&Example]) -> Result<(Tensor, Tensor)> {
        let (l, f, s) = (self.cfg.seq_len, self.cfg.features, self.cfg.statics);
        let mut xs = Vec::with_capacity(batch.len() * l * f);
        let mut ss = Vec::with_capacity(batch.len() * s);
        for e in batch {
            self.check(e)?;
            xs.extend(
                e.seq
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| self.seq_norm.apply(i % f, v)),
            );
            ss.extend(
                e.statics
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| self.static_norm.apply(i, v)),
            );
        }
        Ok((
            Tensor::from_vec(xs, (batch.len(), l, f), &Device::Cpu)?,
            Tensor::from_vec(ss, (batch.len(), s), &Device::Cpu)?,
        ))
    }

    /// Raw logits, (batch, horizons).
    fn forward(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let states = self.lstm.seq(x)?;
        let h = states
            .last()
            .ok_or_else(|| ModelError::Data("empty sequence".into()))?
            .h();
        let z = if self.cfg.statics > 0 {
            Tensor::cat(&[h, s], D::Minus1)?
        } else {
            h.clone()
        };
        Ok(self.head.forward(&z)?)
    }

    /// Fit feature statistics and weights on `train`; returns the mean loss per epoch.
    pub fn train(&mut self, train: &[Example]) -> Result<Vec<f64>> {
        if !train.iter().any(|e| e.labels.iter().any(|&y| y)) {
            return Err(ModelError::Data(
                "no positive (failing) example to learn from".into(),
            ));
        }
        for e in train {
            self.check(e)?;
        }
        let f = self.cfg.features;
        self.seq_norm = Standard::fit(
            train
                .iter()
                .flat_map(|e| e.seq.chunks(f).map(<[f32]>::to_vec)),
            f,
        );
        self.static_norm = Standard::fit(train.iter().map(|e| e.statics.clone()), self.cfg.statics);
        let mut opt = candle_nn::AdamW::new(
            nn::vars(&self.varmap),
            candle_nn::ParamsAdamW {
                lr: self.cfg.learning_rate,
                weight_decay: 1e-3,
                ..candle_nn::ParamsAdamW::default()
            },
        )?;
        let k = self.cfg.horizons.len();
        let mut rng = fastrand::Rng::with_seed(self.cfg.seed);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut losses = Vec::new();
        for _ in 0..self.cfg.epochs {
            rng.shuffle(&mut order);
            let (mut total, mut batches) = (0.0, 0usize);
            for chunk in order.chunks(self.cfg.batch.max(1)) {
                let batch: Vec<&Example> = chunk.iter().map(|&i| &train[i]).collect();
                let (x, s) = self.tensors(&batch)?;
                let y: Vec<f32> = batch
                    .iter()
                    .flat_map(|e| e.labels.iter().map(|&b| f32::from(u8::from(b))))
                    .collect();
                let w: Vec<f32> = batch
                    .iter()
                    .flat_map(|e| std::iter::repeat_n(e.weight, k))
                    .collect();
                let y = Tensor::from_vec(y, (batch.len(), k), &Device::Cpu)?;
                let w = Tensor::from_vec(w, (batch.len(), k), &Device::Cpu)?;
                let logits = self.forward(&x, &s)?;
                // softplus(z) − y·z, stable: relu(z) + log(1 + e^{−|z|}) − y·z.
                let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
                let per = (softplus - (&y * &logits)?)?;
                let loss = ((per * &w)?.sum_all()? / w.sum_all()?.to_scalar::<f32>()? as f64)?;
                opt.backward_step(&loss)?;
                total += f64::from(loss.to_scalar::<f32>()?);
                batches += 1;
            }
            #[allow(clippy::cast_precision_loss)]
            losses.push(total / batches.max(1) as f64);
        }
        Ok(losses)
    }

    /// Raw logits per example and horizon.
    pub fn logits(&self, examples: &[Example]) -> Result<Vec<Vec<f64>>> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(1024) {
            let batch: Vec<&Example> = chunk.iter().collect();
            let (x, s) = self.tensors(&batch)?;
            for row in self.forward(&x, &s)?.to_vec2::<f32>()? {
                out.push(row.into_iter().map(f64::from).collect());
            }
        }
        Ok(out)
    }

    /// Fit the per-horizon calibration on held-out examples (weighted like training).
    pub fn calibrate(&mut self, held_out: &[Example]) -> Result<()> {
        let logits = self.logits(held_out)?;
        let weights: Vec<f64> = held_out.iter().map(|e| f64::from(e.weight)).collect();
        for h in 0..self.cfg.horizons.len() {
            let x: Vec<f64> = logits.iter().map(|l| l[h]).collect();
            let y: Vec<bool> = held_out.iter().map(|e| e.labels[h]).collect();
            self.platt[h] = Platt::fit(&x, &y, Some(&weights));
        }
        Ok(())
    }

    /// Calibrated probability of failure within each horizon.
    pub fn predict(&self, examples: &[Example]) -> Result<Vec<Vec<f64>>> {
        Ok(self
            .logits(examples)?
            .into_iter()
            .map(|l| {
                l.iter()
                    .zip(&self.platt)
                    .map(|(&z, p)| p.apply(z))
                    .collect()
            })
            .collect())
    }

    /// Why the model gives `example` its risk for horizon `h`: for each
    /// sequence feature, how much the probability drops when that feature's
    /// history is replaced by its training mean (occlusion), and its trend
    /// over the sequence (least-squares slope per step, relative to its
    /// mean level, so "−4 %/day" reads as it sounds). Sorted by the drop,
    /// largest first.
    pub fn explain(&self, example: &Example, h: usize) -> Result<Vec<Contribution>> {
        self.check(example)?;
        if h >= self.cfg.horizons.len() {
            return Err(ModelError::Data(format!("no horizon {h}")));
        }
        let (l, f) = (self.cfg.seq_len, self.cfg.features);
        let mut variants = vec![example.clone()];
        for j in 0..f {
            let mut e = example.clone();
            for t in 0..l {
                e.seq[t * f + j] = self.seq_norm.mean[j];
            }
            variants.push(e);
        }
        let p = self.predict(&variants)?;
        let base = p[0][h];
        let mut out: Vec<Contribution> = (0..f)
            .map(|j| {
                let ys: Vec<f64> = (0..l).map(|t| f64::from(example.seq[t * f + j])).collect();
                Contribution {
                    feature: j,
                    delta_p: base - p[j + 1][h],
                    trend_per_step: relative_slope(&ys),
                }
            })
            .collect();
        out.sort_by(|a, b| b.delta_p.total_cmp(&a.delta_p));
        Ok(out)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Saved<'a> {
            kind: &'static str,
            config: &'a Config,
            seq_norm: &'a Standard,
            static_norm: &'a Standard,
            platt: &'a [Platt],
            groups: &'a GroupRates,
            weights: nn::Weights,
        }
        serde_json::to_vec(&Saved {
            kind: "umbra.failure.v1",
            config: &self.cfg,
            seq_norm: &self.seq_norm,
            static_norm: &self.static_norm,
            platt: &self.platt,
            groups: &self.groups,
            weights: nn::export(&self.varmap)?,
        })
        .map_err(|e| ModelError::Format(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<FailureModel> {
        #[derive(Deserialize)]
        struct Saved {
            kind: String,
            config: Config,
            seq_norm: Standard,
            static_norm: Standard,
            platt: Vec<Platt>,
            /// Absent in models saved before it existed.
            #[serde(default)]
            groups: GroupRates,
            weights: nn::Weights,
        }
        let s: Saved =
            serde_json::from_slice(bytes).map_err(|e| ModelError::Format(e.to_string()))?;
        if s.kind != "umbra.failure.v1" {
            return Err(ModelError::Format(format!(
                "not a failure model: {:?}",
                s.kind
            )));
        }
        if s.config.hidden > 4096 || s.config.features > 4096 || s.config.statics > 4096 {
            return Err(ModelError::Format("config out of range".into()));
        }
        let (f, st, k) = (s.config.features, s.config.statics, s.config.horizons.len());
        if s.seq_norm.mean.len() != f
            || s.seq_norm.std.len() != f
            || s.static_norm.mean.len() != st
            || s.static_norm.std.len() != st
            || s.platt.len() != k
        {
            return Err(ModelError::Format(
                "normalisation or calibration does not fit the config".into(),
            ));
        }
        let mut m = FailureModel::new(s.config)?;
        nn::import(&m.varmap, &s.weights)?;
        m.seq_norm = s.seq_norm;
        m.static_norm = s.static_norm;
        m.platt = s.platt;
        m.groups = s.groups;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Components of a synthetic fleet: a degrading one's error counter
    /// grows in the days before it fails; healthy ones stay noisy around 0.
    fn fleet(n: usize, seed: u64) -> Vec<Example> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| {
                let failing = rng.f32() < 0.1;
                let age = rng.f32() * 5.0;
                let seq: Vec<f32> = (0..10)
                    .flat_map(|t| {
                        #[allow(clippy::cast_precision_loss)]
                        let ramp = if failing { (t as f32) * 0.8 } else { 0.0 };
                        let missing = rng.f32() < 0.05;
                        [
                            if missing { f32::NAN } else { ramp + rng.f32() },
                            40.0 + 2.0 * rng.f32(),
                        ]
                    })
                    .collect();
                Example {
                    seq,
                    statics: vec![age],
                    labels: vec![failing, failing],
                    weight: 1.0,
                }
            })
            .collect()
    }

    fn cfg() -> Config {
        Config {
            seq_len: 10,
            features: 2,
            statics: 1,
            horizons: vec![1, 7],
            hidden: 8,
            epochs: 15,
            batch: 32,
            learning_rate: 1e-2,
            seed: 3,
        }
    }

    fn auc(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (s1, &y1) in scores.iter().zip(labels) {
            for (s0, &y0) in scores.iter().zip(labels) {
                if y1 && !y0 {
                    pairs += 1.0;
                    if s1 > s0 {
                        wins += 1.0;
                    } else if s1 == s0 {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn separates_degrading_components_from_healthy_ones_with_calibrated_probabilities() {
        let mut m = FailureModel::new(cfg()).unwrap();
        let losses = m.train(&fleet(600, 1)).unwrap();
        assert!(losses.last().unwrap() < &losses[0], "{losses:?}");
        m.calibrate(&fleet(400, 2)).unwrap();
        let test = fleet(500, 3);
        let p = m.predict(&test).unwrap();
        let p7: Vec<f64> = p.iter().map(|v| v[1]).collect();
        let y: Vec<bool> = test.iter().map(|e| e.labels[1]).collect();
        assert!(auc(&p7, &y) > 0.95, "AUC {}", auc(&p7, &y));
        let r = crate::calibrate::Reliability::of(&p7, &y, 10);
        assert!(r.ece < 0.05, "{r:?}");
        assert!(p7.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn explanations_name_the_degrading_metric_and_its_trend() {
        let mut m = FailureModel::new(cfg()).unwrap();
        m.train(&fleet(600, 1)).unwrap();
        m.calibrate(&fleet(400, 2)).unwrap();
        let failing = fleet(200, 8)
            .into_iter()
            .find(|e| e.labels[1] && e.seq.iter().all(|v| v.is_finite()))
            .unwrap();
        let why = m.explain(&failing, 1).unwrap();
        assert_eq!(why[0].feature, 0, "{why:?}");
        assert!(why[0].delta_p > 0.1, "{why:?}");
        // Feature 0 ramps by 0.8 per step from ~0.5: a strong upward trend.
        assert!(why[0].trend_per_step > 0.1, "{why:?}");
        assert!(why[1].delta_p < why[0].delta_p / 2.0, "{why:?}");
        assert!(m.explain(&failing, 5).is_err());
        assert!((relative_slope(&[1.0, 2.0, 3.0]) - 0.5).abs() < 1e-12);
        assert!(relative_slope(&[f64::NAN, 1.0]).is_nan());
    }

    #[test]
    fn group_rates_shrink_toward_their_parent_and_unseen_groups_read_as_the_fleet() {
        let key = |m: &str, f: &str| vec![format!("model:{m}"), format!("firmware:{m}/{f}")];
        let mut items: Vec<(Vec<String>, bool)> = Vec::new();
        for i in 0..200 {
            // Model A fails 10 % (firmware A1 all of those), model B 1 %.
            items.push((key("A", if i < 40 { "A1" } else { "A2" }), i < 20));
            items.push((key("B", "B1"), i < 2));
        }
        let g = GroupRates::fit(items.iter().map(|(k, f)| (k.as_slice(), *f)));
        assert_eq!(g.fleet, (400, 22));
        let a1 = g.log_relative(&key("A", "A1"));
        let a2 = g.log_relative(&key("A", "A2"));
        let b = g.log_relative(&key("B", "B1"));
        assert!(a1 > a2 && a2 > b, "{a1} {a2} {b}");
        assert!(a1 > 1.0 && b < -1.0, "{a1} {b}");
        // Unseen firmware of a known model reads as the model; unseen
        // model as the fleet.
        let a_new = g.log_relative(&key("A", "A9"));
        assert!((a_new - g.log_relative(&key("A", "")[..1])).abs() < 1e-6);
        assert_eq!(g.log_relative(&key("Z", "Z1")), 0.0);
        assert_eq!(GroupRates::default().log_relative(&key("A", "A1")), 0.0);
    }

    #[test]
    fn save_load_round_trip_and_bad_input() {
        let mut m = FailureModel::new(Config { epochs: 2, ..cfg() }).unwrap();
        m.train(&fleet(100, 4)).unwrap();
        m.calibrate(&fleet(100, 5)).unwrap();
        let test = fleet(20, 6);
        let g = FailureModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(g.predict(&test).unwrap(), m.predict(&test).unwrap());
        let mut wrong = test[0].clone();
        wrong.statics.clear();
        assert!(m.predict(&[wrong]).is_err());
        let healthy: Vec<Example> = fleet(50, 7)
            .into_iter()
            .map(|mut e| {
                e.labels = vec![false, false];
                e
            })
            .collect();
        assert!(FailureModel::new(cfg()).unwrap().train(&healthy).is_err());
        assert!(FailureModel::from_bytes(b"{\"kind\":\"x\"}").is_err());
    }
}
