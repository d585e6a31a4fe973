//! Resource-demand forecasting on real series (`umbractl eval demand`):
//! the forecaster the coordinator uses for CPU, memory, network and storage
//! (48 hourly means in, the next 24 out, Gaussian per step), on the hourly
//! means of NAB's real series (`real*` categories: AWS CloudWatch CPU,
//! network and disk, ad exchange, traffic, tweet counts), against seasonal
//! naive (the same hour a day earlier) and last value.
//!
//! Protocol: per series, the last [`ORIGINS`] days are test; one model is
//! trained on every series' hours before its test days; it then forecasts
//! 24 h from each test day's start (rolling origin: inputs include the
//! earlier test days, as they would in production). Errors are scaled per
//! series by the in-sample MAE of seasonal naive on its training hours
//! (MASE), so series of different units average; coverage is the share of
//! actual hours inside the 90 % interval.

use crate::data::nab::Series;
use crate::forecast::{Config, Forecaster};
use crate::nn::Result;
use std::fmt;

pub const WINDOW_H: usize = 48;
pub const HORIZON_H: usize = 24;
/// Test days per series (rolling origins).
pub const ORIGINS: usize = 3;
const Z90: f32 = 1.645;

/// Hourly means of a series from its first hour; NaN for empty hours.
pub fn hourly(s: &Series) -> Vec<f32> {
    let Some(&t0) = s.ts.first() else {
        return Vec::new();
    };
    let start = t0.div_euclid(3600);
    let n = s.ts.last().map_or(0, |t| t.div_euclid(3600) - start + 1);
    let mut acc = vec![(0f64, 0u32); usize::try_from(n).unwrap_or(0)];
    for (t, v) in s.ts.iter().zip(&s.values) {
        let Ok(i) = usize::try_from(t.div_euclid(3600) - start) else {
            continue;
        };
        if v.is_finite() {
            if let Some(a) = acc.get_mut(i) {
                a.0 += f64::from(*v);
                a.1 += 1;
            }
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    acc.into_iter()
        .map(|(sum, n)| {
            if n == 0 {
                f32::NAN
            } else {
                (sum / f64::from(n)) as f32
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct MethodScore {
    pub name: &'static str,
    /// Mean over series of MAE / in-sample seasonal-naive MAE.
    pub mase: f64,
    /// Series where this method's MAE is below seasonal naive's.
    pub wins_over_seasonal: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub series: usize,
    pub skipped: usize,
    pub train_hours: usize,
    pub test_steps: usize,
    pub methods: Vec<MethodScore>,
    /// The forecaster's 90 % interval: share of actual hours inside it.
    pub coverage_90: f64,
    pub train_seconds: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "demand forecast: {} series ({} too short), {} training hours, {} test hours ({ORIGINS} rolling 24 h origins per series)",
            self.series, self.skipped, self.train_hours, self.test_steps
        )?;
        writeln!(
            f,
            "    {:<40} {:>8} {:>22}",
            "method", "MASE", "series better than SN"
        )?;
        for m in &self.methods {
            writeln!(
                f,
                "    {:<40} {:>8.3} {:>16}/{}",
                m.name, m.mase, m.wins_over_seasonal, self.series
            )?;
        }
        writeln!(
            f,
            "forecaster 90 % interval coverage: {:.1} % (training {:.1} s)",
            self.coverage_90 * 100.0,
            self.train_seconds
        )
    }
}

/// Run the protocol on `series` (those outside `real*` categories are left
/// out, as are series too short for training plus the test days).
pub fn run(series: &[Series], seed: u64, mut progress: impl FnMut(usize, usize)) -> Result<Report> {
    let need = WINDOW_H + HORIZON_H + ORIGINS * HORIZON_H + 24;
    let mut skipped = 0;
    let mut kept = Vec::new();
    for s in series.iter().filter(|s| s.name.starts_with("real")) {
        let h = hourly(s);
        if h.len() < need || h.iter().filter(|v| v.is_finite()).count() * 2 < h.len() {
            skipped += 1;
            continue;
        }
        kept.push(h);
    }
    let cut = |h: &Vec<f32>| h.len() - ORIGINS * HORIZON_H;
    let fit: Vec<Vec<f32>> = kept.iter().map(|h| h[..cut(h)].to_vec()).collect();
    let cfg = Config {
        window: WINDOW_H,
        horizon: HORIZON_H,
        hidden: 32,
        epochs: 8,
        seed,
        ..Config::default()
    };
    let t = std::time::Instant::now();
    let epochs = cfg.epochs;
    let (model, _) = Forecaster::train_capped(cfg, &fit, 20_000, |e| progress(e.epoch, epochs))?;
    let train_seconds = t.elapsed().as_secs_f64();
    let kernel = model.kernel()?;

    let names = [
        "LSTM forecaster (production)",
        "seasonal naive (24 h ago)",
        "last value",
    ];
    let mut mase = [0.0f64; 3];
    let mut wins = [0usize; 3];
    let (mut inside, mut steps) = (0usize, 0usize);
    for h in &kept {
        let c = cut(h);
        // In-sample seasonal-naive MAE on the training hours: the scale.
        let pairs: Vec<f64> = (24..c)
            .filter(|&i| h[i].is_finite() && h[i - 24].is_finite())
            .map(|i| f64::from((h[i] - h[i - 24]).abs()))
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let scale = (pairs.iter().sum::<f64>() / pairs.len().max(1) as f64).max(1e-9);
        let mut err = [0.0f64; 3];
        let mut n = 0usize;
        for o in (0..ORIGINS).map(|k| c + k * HORIZON_H) {
            let input = &h[o - WINDOW_H..o];
            let Some(fc) = kernel.predict(&[input])?.pop().flatten() else {
                continue;
            };
            let last = crate::naive::last_value(input);
            for k in 0..HORIZON_H {
                let a = h[o + k];
                let sn = crate::naive::seasonal(input, k);
                if !a.is_finite() || !sn.is_finite() || !last.is_finite() {
                    continue;
                }
                let (m, s) = (fc.mean[k], fc.std[k]);
                for (e, p) in err.iter_mut().zip([m, sn, last]) {
                    *e += f64::from((p - a).abs());
                }
                if (m - Z90 * s..=m + Z90 * s).contains(&a) {
                    inside += 1;
                }
                n += 1;
            }
        }
        steps += n;
        #[allow(clippy::cast_precision_loss)]
        let nf = n.max(1) as f64;
        for j in 0..3 {
            mase[j] += err[j] / nf / scale;
            if err[j] < err[1] {
                wins[j] += 1;
            }
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let ns = kept.len().max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    Ok(Report {
        series: kept.len(),
        skipped,
        train_hours: fit.iter().map(Vec::len).sum(),
        test_steps: steps,
        methods: (0..3)
            .map(|j| MethodScore {
                name: names[j],
                mase: mase[j] / ns,
                wins_over_seasonal: wins[j],
            })
            .collect(),
        coverage_90: inside as f64 / steps.max(1) as f64,
        train_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, hours: i64, f: impl Fn(i64) -> f32) -> Series {
        // 5-minute samples, as NAB's CloudWatch series.
        let ts: Vec<i64> = (0..hours * 12).map(|i| 1_399_996_800 + i * 300).collect();
        Series {
            name: name.into(),
            values: ts.iter().map(|t| f((t - 1_399_996_800) / 3600)).collect(),
            ts,
            windows: Vec::new(),
        }
    }

    #[test]
    fn hourly_means_cover_gaps_with_nan() {
        let mut s = series("realX/a.csv", 3, |h| h as f32);
        s.ts.drain(12..24); // hour 1 missing
        s.values.drain(12..24);
        let h = hourly(&s);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0], 0.0);
        assert!(h[1].is_nan());
        assert_eq!(h[2], 2.0);
    }

    #[test]
    fn the_forecaster_learns_daily_load_and_only_real_series_count() {
        let daily = |phase: f32, level: f32| {
            move |h: i64| {
                #[allow(clippy::cast_precision_loss)]
                let x = std::f32::consts::TAU * (h % 24) as f32 / 24.0 + phase;
                level + 10.0 * x.sin() + ((h * 7919) % 7) as f32 * 0.2
            }
        };
        let mut data: Vec<Series> = (0..6)
            .map(|i| {
                series(
                    &format!("realTest/s{i}.csv"),
                    24 * 14,
                    daily(i as f32, 40.0 + i as f32),
                )
            })
            .collect();
        data.push(series(
            "artificialNoAnomaly/x.csv",
            24 * 14,
            daily(0.0, 1.0),
        ));
        data.push(series("realTest/short.csv", 30, daily(0.0, 1.0)));
        let r = run(&data, 1, |_, _| {}).unwrap();
        assert_eq!(
            (r.series, r.skipped),
            (6, 1),
            "artificial series are not counted at all"
        );
        assert_eq!(r.test_steps, 6 * ORIGINS * HORIZON_H);
        let by = |n: &str| {
            r.methods
                .iter()
                .find(|m| m.name.starts_with(n))
                .unwrap()
                .mase
        };
        // Last value misses the daily cycle by far; the forecaster learns it.
        assert!(by("LSTM") < 0.5 * by("last value"), "{r}");
        assert!(
            (by("seasonal") - 1.0).abs() < 0.5,
            "seasonal naive scores near its own scale: {r}"
        );
        assert!(r.coverage_90 > 0.5, "{r}");
    }
}
