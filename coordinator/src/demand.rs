//! Resource-demand forecast per host: CPU, memory, network and storage,
//! the next [`HORIZON_H`] hours with 90 % intervals.
//!
//! - Input ([`hourly`]): the host collector's series as hourly means from
//!   the 1-hour rollups (a resource with several series, e.g. network
//!   receive + transmit or storage over mounts, is their sum per hour; an
//!   hour without data is NaN, which the forecaster fills or refuses).
//! - Model: one LSTM forecaster (`predict::forecast`, Gaussian per step)
//!   per resource, shared by every host, stored as `forecast/<resource>`
//!   and trained by the feedback loop ([`train`]) on every host's history.
//! - Evaluation, stored with each version: on each series' last
//!   [`HORIZON_H`] hours, which training never saw, the forecast's mean
//!   absolute error against the seasonal-naive forecast (the same hour one
//!   day earlier) and the share of actual values inside the 90 % interval.

use crate::learn::{Activate, Settings};
use crate::model::SeriesMeta;
use crate::store::{Resolution, Store, StoreError};
use predict::forecast::{Config, Forecaster};
use serde_json::json;

/// Hours of history a forecast reads.
pub const WINDOW_H: usize = 48;
/// Hours forecast.
pub const HORIZON_H: usize = 24;
const HOUR_MS: i64 = 3_600_000;
/// z of the two-sided 90 % Gaussian interval.
const Z90: f32 = 1.645;

/// A forecast resource: the metrics summed into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub name: &'static str,
    pub metrics: &'static [&'static str],
    pub unit: &'static str,
}

pub const RESOURCES: [Resource; 4] = [
    Resource {
        name: "cpu",
        metrics: &["host_cpu_usage_percent"],
        unit: "percent",
    },
    Resource {
        name: "memory",
        metrics: &["host_memory_used_bytes"],
        unit: "bytes",
    },
    Resource {
        name: "network",
        metrics: &[
            "host_network_receive_bytes_per_second",
            "host_network_transmit_bytes_per_second",
        ],
        unit: "bytes_per_second",
    },
    Resource {
        name: "storage",
        metrics: &["host_filesystem_used_bytes"],
        unit: "bytes",
    },
];

impl Resource {
    /// The model kind of this resource's forecaster.
    pub fn kind(&self) -> String {
        format!("forecast/{}", self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemandError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model {kind}: {reason}")]
    Model { kind: String, reason: String },
    #[error("no data for host {0}")]
    UnknownHost(String),
}

fn model_err(kind: &str) -> impl Fn(predict::nn::ModelError) -> DemandError + '_ {
    move |e| DemandError::Model {
        kind: kind.to_owned(),
        reason: e.to_string(),
    }
}

/// Hourly means of `host`'s `resource` for the `hours` hours from `from_ms`
/// (floored to the hour): the sum over its series per hour; NaN where no
/// series has data that hour.
pub fn hourly(
    store: &Store,
    series: &[SeriesMeta],
    host: &str,
    resource: &Resource,
    from_ms: i64,
    hours: usize,
) -> Result<Vec<f32>, StoreError> {
    let start = from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let end = start + i64::try_from(hours).unwrap_or(i64::MAX) * HOUR_MS;
    let mut out = vec![f32::NAN; hours];
    for m in series
        .iter()
        .filter(|m| m.id.host == host && resource.metrics.contains(&m.id.metric.as_str()))
    {
        for b in store.rollup(m.key, Resolution::Hour, start, end)? {
            if b.count == 0 || !b.sum.is_finite() {
                continue;
            }
            let Ok(i) = usize::try_from((b.start_ms - start) / HOUR_MS) else {
                continue;
            };
            if let Some(slot) = out.get_mut(i) {
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                let mean = (b.sum / b.count as f64) as f32;
                *slot = if slot.is_nan() { mean } else { *slot + mean };
            }
        }
    }
    Ok(out)
}

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at_ms: i64,
    pub mean: f64,
    /// The 90 % interval (the lower bound not below 0).
    pub lower: f64,
    pub upper: f64,
}

/// One resource's forecast for a host.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceForecast {
    pub resource: &'static str,
    pub unit: &'static str,
    /// The last observed hourly mean.
    pub last: Option<f64>,
    pub points: Vec<Point>,
    pub model_version: u64,
    /// `lstm`, or the naive baseline served because it beat the LSTM on
    /// the held-out hours at training.
    pub method: &'static str,
    /// The interval's measured coverage when the model was trained.
    pub coverage: Option<f64>,
    /// Why there is no forecast (no model, too little history).
    pub missing: Option<String>,
}

/// Forecast every resource of `host` from the hours before `now_ms`.
pub fn forecast(
    store: &Store,
    host: &str,
    now_ms: i64,
) -> Result<Vec<ResourceForecast>, DemandError> {
    let series = store.series(Some(host))?;
    if series.is_empty() {
        return Err(DemandError::UnknownHost(host.to_owned()));
    }
    let this_hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let from = this_hour - i64::try_from(WINDOW_H).unwrap_or(0) * HOUR_MS;
    let mut out = Vec::new();
    for r in &RESOURCES {
        let kind = r.kind();
        let window = hourly(store, &series, host, r, from, WINDOW_H)?;
        let mut f = ResourceForecast {
            resource: r.name,
            unit: r.unit,
            last: window
                .iter()
                .rev()
                .find(|v| v.is_finite())
                .map(|v| f64::from(*v)),
            points: Vec::new(),
            model_version: 0,
            method: Method::Lstm.name(),
            coverage: None,
            missing: None,
        };
        let Some(version) = store.active_model(&kind)? else {
            f.missing = Some(format!(
                "no active {kind} model (umbractl retrain --demand)"
            ));
            out.push(f);
            continue;
        };
        let bytes = store
            .model_bytes(&kind, version)?
            .ok_or_else(|| DemandError::Model {
                kind: kind.clone(),
                reason: format!("version {version}: bytes missing"),
            })?;
        let model = Forecaster::from_bytes(&bytes).map_err(model_err(&kind))?;
        if model.config().window != WINDOW_H {
            f.missing = Some(format!(
                "{kind} version {version} reads {} hours, not {WINDOW_H}",
                model.config().window
            ));
            out.push(f);
            continue;
        }
        f.model_version = version;
        let evaluation = store
            .model(&kind, version)?
            .map(|m| m.evaluation)
            .unwrap_or_default();
        f.coverage = evaluation["coverage_90"].as_f64();
        let method = evaluation["method"]
            .as_str()
            .and_then(Method::from_name)
            .unwrap_or(Method::Lstm);
        f.method = method.name();
        if method != Method::Lstm {
            let key = format!("{}_q90_spreads", method.name());
            // Widths in spreads, stored as f64 from f32 (null: no error sample).
            #[allow(clippy::cast_possible_truncation)]
            let q: Vec<f32> = evaluation[key.as_str()]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_f64().map_or(f32::INFINITY, |x| x as f32))
                        .collect()
                })
                .unwrap_or_default();
            let finite = window.iter().filter(|v| v.is_finite()).count();
            if q.len() != HORIZON_H || finite * 2 < WINDOW_H {
                f.missing = Some(format!(
                    "{kind} version {version}: no usable {} forecast",
                    method.name()
                ));
            } else {
                let sp = spread(&window);
                f.points = (0..HORIZON_H)
                    .map(|k| {
                        let m = naive(method, &window, k);
                        Point {
                            at_ms: this_hour + i64::try_from(k).unwrap_or(0) * HOUR_MS,
                            mean: f64::from(m),
                            lower: f64::from(m - q[k] * sp).max(0.0),
                            upper: f64::from(m + q[k] * sp),
                        }
                    })
                    .filter(|p| p.mean.is_finite())
                    .collect();
            }
            out.push(f);
            continue;
        }
        match model
            .kernel()
            .map_err(model_err(&kind))?
            .predict(&[&window])
            .map_err(model_err(&kind))?
            .pop()
            .flatten()
        {
            Some(fc) => {
                f.points = fc
                    .mean
                    .iter()
                    .zip(&fc.std)
                    .zip(1..)
                    .map(|((m, s), k)| Point {
                        at_ms: this_hour + (k - 1) * HOUR_MS,
                        mean: f64::from(*m),
                        lower: f64::from(m - Z90 * s).max(0.0),
                        upper: f64::from(m + Z90 * s),
                    })
                    .collect();
            }
            None => {
                f.missing = Some(format!(
                    "fewer than half of the last {WINDOW_H} hours have data"
                ))
            }
        }
        out.push(f);
    }
    Ok(out)
}

/// What training one resource's forecaster did.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    pub resource: &'static str,
    /// `None`: not trained, see `evaluation["skipped"]`.
    pub version: Option<u64>,
    pub activated: bool,
    pub evaluation: serde_json::Value,
}

/// How a resource is forecast: the LSTM, or a naive baseline where the
/// LSTM lost to it on the held-out hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Lstm,
    SeasonalNaive,
    LastValue,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Lstm, Method::SeasonalNaive, Method::LastValue];

    pub fn name(self) -> &'static str {
        match self {
            Method::Lstm => "lstm",
            Method::SeasonalNaive => "seasonal_naive",
            Method::LastValue => "last_value",
        }
    }

    fn from_name(n: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == n)
    }
}

/// A naive method's forecast of step `k` after `window`.
fn naive(m: Method, window: &[f32], k: usize) -> f32 {
    match m {
        Method::SeasonalNaive => predict::naive::seasonal(window, k),
        _ => predict::naive::last_value(window),
    }
}

/// A window's spread (standard deviation of its finite values, floored):
/// naive intervals are multiples of it, so one width fits hosts of any scale.
fn spread(window: &[f32]) -> f32 {
    let v: Vec<f32> = window.iter().copied().filter(|x| x.is_finite()).collect();
    #[allow(clippy::cast_precision_loss)]
    let n = v.len().max(1) as f32;
    let mean = v.iter().sum::<f32>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n;
    var.sqrt().max(1e-3 * mean.abs()).max(1e-6)
}

/// Per step, the 90th percentile of a naive method's absolute error in
/// window spreads, over origins every 24 h in the training series.
fn naive_q90(m: Method, fit: &[Vec<f32>]) -> Vec<f32> {
    let mut errs: Vec<Vec<f32>> = vec![Vec::new(); HORIZON_H];
    for h in fit {
        let mut o = WINDOW_H;
        while o + HORIZON_H <= h.len() {
            let w = &h[o - WINDOW_H..o];
            let sp = spread(w);
            for (k, e) in errs.iter_mut().enumerate() {
                let (p, a) = (naive(m, w, k), h[o + k]);
                if p.is_finite() && a.is_finite() {
                    e.push((p - a).abs() / sp);
                }
            }
            o += 24;
        }
    }
    errs.into_iter()
        .map(|mut e| {
            if e.is_empty() {
                return f32::INFINITY;
            }
            e.sort_by(f32::total_cmp);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let i = ((e.len() - 1) as f32 * 0.9).round() as usize;
            e[i]
        })
        .collect()
}

/// One method's score on the held-out tails.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score {
    mae: f64,
    coverage: f64,
    steps: usize,
}

/// Score every method on each series' held-out tail (its last
/// [`HORIZON_H`] hours after the [`WINDOW_H`] before them).
fn evaluate(
    model: &Forecaster,
    q90: &[Vec<f32>; 2],
    tails: &[Vec<f32>],
) -> Result<[Score; 3], predict::nn::ModelError> {
    let kernel = model.kernel()?;
    let (mut err, mut inside, mut n) = ([0.0f64; 3], [0usize; 3], 0usize);
    for t in tails {
        let (input, actual) = t.split_at(WINDOW_H);
        let Some(fc) = kernel.predict(&[input])?.pop().flatten() else {
            continue;
        };
        let sp = spread(input);
        for (k, a) in actual.iter().enumerate() {
            let preds = [
                (fc.mean[k], Z90 * fc.std[k]),
                (naive(Method::SeasonalNaive, input, k), q90[0][k] * sp),
                (naive(Method::LastValue, input, k), q90[1][k] * sp),
            ];
            if !a.is_finite() || preds.iter().any(|(p, _)| !p.is_finite()) {
                continue;
            }
            for (j, (p, half)) in preds.into_iter().enumerate() {
                err[j] += f64::from((p - a).abs());
                if (p - half..=p + half).contains(a) {
                    inside[j] += 1;
                }
            }
            n += 1;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let d = n.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    Ok([0, 1, 2].map(|j| Score {
        mae: err[j] / d,
        coverage: inside[j] as f64 / d,
        steps: n,
    }))
}

/// Train and store one forecaster per resource from every host's history
/// (at most `settings.max_days`), each evaluated on the held-out last
/// [`HORIZON_H`] hours of every series. Activated unless
/// `settings.activate` is `never`. Blocking.
pub fn train(store: &Store, settings: &Settings, now_ms: i64) -> Result<Vec<Trained>, DemandError> {
    let series = store.series(None)?;
    let hosts: std::collections::BTreeSet<&str> =
        series.iter().map(|m| m.id.host.as_str()).collect();
    let this_hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let hours = settings.max_days.max(1) * 24;
    let from = this_hour - i64::try_from(hours).unwrap_or(i64::MAX) * HOUR_MS;
    let mut out = Vec::new();
    for r in &RESOURCES {
        let (mut fit, mut tails) = (Vec::new(), Vec::new());
        for host in &hosts {
            let h = hourly(store, &series, host, r, from, hours)?;
            // Leading and trailing hours without data are not part of the series.
            let Some(first) = h.iter().position(|v| v.is_finite()) else {
                continue;
            };
            let last = h.iter().rposition(|v| v.is_finite()).unwrap_or(first);
            let h = &h[first..=last];
            if h.len() < WINDOW_H + 2 * HORIZON_H {
                continue;
            }
            let cut = h.len() - HORIZON_H;
            fit.push(h[..cut].to_vec());
            tails.push(h[cut - WINDOW_H..].to_vec());
        }
        if fit.is_empty() {
            out.push(Trained {
                resource: r.name,
                version: None,
                activated: false,
                evaluation: json!({"skipped": format!("no host has {} hours of {} data", WINDOW_H + 2 * HORIZON_H, r.name)}),
            });
            continue;
        }
        let kind = r.kind();
        let cfg = Config {
            window: WINDOW_H,
            horizon: HORIZON_H,
            hidden: 32,
            epochs: 8,
            seed: settings.seed,
            ..Config::default()
        };
        let (model, epochs) =
            Forecaster::train_capped(cfg, &fit, 20_000, |_| {}).map_err(model_err(&kind))?;
        let q90 = [
            naive_q90(Method::SeasonalNaive, &fit),
            naive_q90(Method::LastValue, &fit),
        ];
        let scores = evaluate(&model, &q90, &tails).map_err(model_err(&kind))?;
        // The method served: the lowest held-out MAE (the LSTM on ties).
        let (best, _) =
            Method::ALL
                .into_iter()
                .zip(scores)
                .fold((Method::Lstm, scores[0]), |b, (m, s)| {
                    if s.mae < b.1.mae {
                        (m, s)
                    } else {
                        b
                    }
                });
        let chosen = scores[Method::ALL.iter().position(|m| *m == best).unwrap_or(0)];
        let evaluation = json!({
            "dataset": "coordinator", "series": fit.len(), "window_hours": WINDOW_H,
            "horizon_hours": HORIZON_H, "eval_steps": chosen.steps,
            "method": best.name(), "mae": chosen.mae, "coverage_90": chosen.coverage,
            "lstm_mae": scores[0].mae, "lstm_coverage_90": scores[0].coverage,
            "seasonal_naive_mae": scores[1].mae, "last_value_mae": scores[2].mae,
            "seasonal_naive_q90_spreads": q90[0], "last_value_q90_spreads": q90[1],
            "final_loss": epochs.last().map(|e| e.loss),
        });
        let version = store
            .put_model(
                &kind,
                &model.to_bytes().map_err(model_err(&kind))?,
                &format!(
                    "coordinator store: {} hosts' hourly {} (last {HORIZON_H} h held out)",
                    fit.len(),
                    r.name
                ),
                evaluation.clone(),
                now_ms,
            )?
            .version;
        let activated = settings.activate != Activate::Never;
        if activated {
            store.activate_model(&kind, version)?;
        }
        out.push(Trained {
            resource: r.name,
            version: Some(version),
            activated,
            evaluation,
        });
    }
    Ok(out)
}

/// A human-readable summary of one training run.
pub fn report(trained: &[Trained]) -> String {
    let mut out = String::new();
    for t in trained {
        let e = &t.evaluation;
        match t.version {
            Some(v) => out.push_str(&format!(
                "forecast/{:<8} version {v}{}: {} series, held-out {} h MAE: LSTM {:.4}, seasonal naive {:.4}, last value {:.4}; serves {} (90 % interval coverage {:.1} %)\n",
                t.resource,
                if t.activated { " (active)" } else { "" },
                e["series"],
                e["horizon_hours"],
                e["lstm_mae"].as_f64().unwrap_or(f64::NAN),
                e["seasonal_naive_mae"].as_f64().unwrap_or(f64::NAN),
                e["last_value_mae"].as_f64().unwrap_or(f64::NAN),
                e["method"].as_str().unwrap_or("?"),
                e["coverage_90"].as_f64().unwrap_or(f64::NAN) * 100.0,
            )),
            None => out.push_str(&format!(
                "forecast/{:<8} not trained: {}\n",
                t.resource,
                e["skipped"].as_str().unwrap_or("?")
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostRecord, Quality, Sample, SeriesId};
    use crate::store::{IngestWrite, StoreConfig};

    /// Hosts with 20 days of daily-cycle CPU (one sample per 10 min), a
    /// growing storage use, and nothing for memory or network.
    fn demand_store(dir: &std::path::Path, now: i64) -> Store {
        let store = Store::open(
            dir,
            StoreConfig {
                sync_writes: false,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        let start = now.div_euclid(HOUR_MS) * HOUR_MS - 20 * 24 * HOUR_MS;
        for h in 0..6 {
            let host = format!("d{h}");
            let id = |metric: &str, labels: &[(&str, &str)]| SeriesId {
                host: host.clone(),
                metric: metric.into(),
                component: "HOST".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            };
            let (cpu, _) = store
                .resolve_series(&id("host_cpu_usage_percent", &[]), "percent")
                .unwrap();
            let (disk_a, _) = store
                .resolve_series(
                    &id("host_filesystem_used_bytes", &[("mount", "/")]),
                    "bytes",
                )
                .unwrap();
            let (disk_b, _) = store
                .resolve_series(
                    &id("host_filesystem_used_bytes", &[("mount", "/var")]),
                    "bytes",
                )
                .unwrap();
            let steps = 20 * 24 * 6;
            let at = |i: i64| start + i * 600_000;
            #[allow(clippy::cast_precision_loss)]
            let cpu_s: Vec<Sample> = (0..steps)
                .map(|i| {
                    let hour = (i / 6) % 24;
                    let v = 30.0
                        + 5.0 * f64::from(h)
                        + 20.0 * (std::f64::consts::TAU * hour as f64 / 24.0).sin()
                        + ((i * 7919) % 13) as f64 * 0.3;
                    Sample {
                        ts_ms: at(i),
                        value: v,
                        quality: Quality::Ok,
                    }
                })
                .collect();
            #[allow(clippy::cast_precision_loss)]
            let disk = |base: f64| -> Vec<Sample> {
                (0..steps)
                    .map(|i| Sample {
                        ts_ms: at(i),
                        value: base + 1e6 * i as f64,
                        quality: Quality::Ok,
                    })
                    .collect()
            };
            store
                .ingest(IngestWrite {
                    host: &host,
                    epoch: 1,
                    sequence: 1,
                    series: vec![(cpu, cpu_s), (disk_a, disk(1e11)), (disk_b, disk(5e10))],
                    host_record: HostRecord {
                        host_id: host.clone(),
                        ..HostRecord::default()
                    },
                    events: Vec::new(),
                })
                .unwrap();
        }
        store
    }

    #[test]
    fn hourly_sums_series_of_a_resource_and_marks_missing_hours() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now_ms();
        let store = demand_store(dir.path(), now);
        let series = store.series(None).unwrap();
        let storage = &RESOURCES[3];
        let start = now.div_euclid(HOUR_MS) * HOUR_MS - 20 * 24 * HOUR_MS;
        let h = hourly(&store, &series, "d0", storage, start, 3).unwrap();
        // Hour 0: samples 0..6 of both mounts, each mean base + 2.5e6.
        assert!((f64::from(h[0]) - (1.5e11 + 5e6)).abs() < 1e5, "{h:?}");
        let before = hourly(&store, &series, "d0", storage, start - 2 * HOUR_MS, 2).unwrap();
        assert!(before.iter().all(|v| v.is_nan()));
        let network = hourly(&store, &series, "d0", &RESOURCES[2], start, 3).unwrap();
        assert!(network.iter().all(|v| v.is_nan()), "no network series");
    }

    #[test]
    fn trained_forecasters_learn_the_daily_cycle_and_are_scored_against_seasonal_naive() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now_ms();
        let store = demand_store(dir.path(), now);
        let before = forecast(&store, "d1", now).unwrap();
        assert!(before.iter().all(|f| f
            .missing
            .as_deref()
            .is_some_and(|m| m.contains("no active"))));

        let trained = train(&store, &Settings::default(), now).unwrap();
        let by = |n: &str| trained.iter().find(|t| t.resource == n).unwrap();
        assert_eq!(by("memory").version, None, "no memory data");
        assert!(by("memory").evaluation["skipped"]
            .as_str()
            .unwrap()
            .contains("memory"));
        let cpu = by("cpu");
        assert!(cpu.activated);
        let e = &cpu.evaluation;
        let (mae, naive, cov) = (
            e["mae"].as_f64().unwrap(),
            e["seasonal_naive_mae"].as_f64().unwrap(),
            e["coverage_90"].as_f64().unwrap(),
        );
        assert_eq!(e["eval_steps"], 6 * 24);
        // A flat forecast of this ±20 % daily cycle has an MAE near 12.7;
        // an LSTM that learned it stays within a point (0.23 when written).
        // Seasonal naive is better still on this exactly periodic series
        // (0.10), so it is what gets served, with its own interval.
        assert!(e["lstm_mae"].as_f64().unwrap() < 1.0, "{e}");
        let best = ["lstm", "seasonal_naive", "last_value"]
            .into_iter()
            .min_by(|a, b| {
                let m = |n: &str| e[format!("{n}_mae").as_str()].as_f64().unwrap();
                m(a).total_cmp(&m(b))
            })
            .unwrap();
        assert_eq!(e["method"], best, "{e}");
        assert!((mae - e[format!("{best}_mae").as_str()].as_f64().unwrap()).abs() < 1e-12);
        assert!(naive > 0.0 && cov >= 0.5, "{e}");
        assert_eq!(
            e["seasonal_naive_q90_spreads"].as_array().unwrap().len(),
            HORIZON_H
        );

        let f = forecast(&store, "d1", now).unwrap();
        let cpu_f = f.iter().find(|f| f.resource == "cpu").unwrap();
        assert_eq!(cpu_f.points.len(), HORIZON_H, "{cpu_f:?}");
        assert_eq!(cpu_f.model_version, cpu.version.unwrap());
        assert_eq!(cpu_f.method, best);
        assert!(cpu_f
            .points
            .iter()
            .all(|p| p.lower <= p.mean && p.mean <= p.upper && p.lower >= 0.0));
        assert!(
            cpu_f.points.iter().all(|p| (0.0..120.0).contains(&p.mean)),
            "{cpu_f:?}"
        );
        let storage = f.iter().find(|f| f.resource == "storage").unwrap();
        let last = storage.last.unwrap();
        assert!(
            storage.points[HORIZON_H - 1].mean > last * 0.98,
            "storage keeps growing: {storage:?}"
        );
        assert!(f
            .iter()
            .find(|f| f.resource == "network")
            .unwrap()
            .missing
            .is_some());
        assert!(matches!(
            forecast(&store, "nobody", now),
            Err(DemandError::UnknownHost(_))
        ));
        let text = report(&trained);
        assert!(
            text.contains("forecast/cpu") && text.contains("coverage"),
            "{text}"
        );
        assert!(
            text.contains("not trained: no host has 96 hours of memory data"),
            "{text}"
        );
    }
}
