//! Migration readiness: which hosts' workloads to move first, as one
//! documented, configurable score in [0, 1] (`[readiness]`).
//!
//! ```text
//! score = (w_risk · risk + w_util · (1 − utilisation) + w_hist · history)
//!         / (w_risk + w_util + w_hist)
//! ```
//!
//! - `risk`: the host's highest P(fail within 7 d) (0 without a model).
//! - `utilisation`: the larger of CPU use and memory use (used / total),
//!   latest readings, in [0, 1]; an idle host is cheaper to drain, so low
//!   utilisation raises readiness. Unknown: 0.5, and the explanation says so.
//! - `history`: the highest historical failure rate among the host's
//!   component models (failures recorded for components of that model /
//!   components of that model in the fleet, shrunk toward the fleet-wide
//!   rate with a prior of [`PRIOR_COMPONENTS`] components), divided by
//!   `max_failure_rate` and capped at 1.
//!
//! [`score`] is pure; [`fleet`] gathers the inputs from the store and the
//! risk board.

use crate::risk::Board;
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;

/// Weight of the fleet-wide failure rate in a model's rate, in components.
pub const PRIOR_COMPONENTS: f64 = 10.0;

/// `[readiness]`, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub risk: f64,
    pub utilisation: f64,
    pub history: f64,
    /// The failure rate that counts as the worst history (term = 1).
    pub max_failure_rate: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            risk: 0.6,
            utilisation: 0.25,
            history: 0.15,
            max_failure_rate: 0.1,
        }
    }
}

impl Weights {
    pub fn validate(&self) -> Result<(), String> {
        let ws = [self.risk, self.utilisation, self.history];
        if ws.iter().any(|w| !w.is_finite() || *w < 0.0) || ws.iter().sum::<f64>() <= 0.0 {
            return Err("weights must be finite, >= 0, and not all 0".into());
        }
        if !(self.max_failure_rate > 0.0 && self.max_failure_rate <= 1.0) {
            return Err("max_failure_rate must be in (0, 1]".into());
        }
        Ok(())
    }
}

/// What the score is made of (each `None` when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Inputs {
    pub p7d: Option<f64>,
    pub utilisation: Option<f64>,
    pub failure_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub score: f64,
    pub inputs: Inputs,
    /// e.g. "risk 0.82×0.60, ease 0.70×0.25 (cpu/mem 30 %), history 0.40×0.15".
    pub explanation: String,
}

fn unit(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The readiness score of one host. Pure.
pub fn score(inputs: Inputs, w: &Weights) -> Readiness {
    let risk = unit(inputs.p7d.unwrap_or(0.0));
    let util = inputs.utilisation.filter(|u| u.is_finite()).map(unit);
    let ease = 1.0 - util.unwrap_or(0.5);
    let rate = inputs.failure_rate.filter(|r| r.is_finite()).unwrap_or(0.0);
    let history = unit(rate / w.max_failure_rate);
    let total = w.risk + w.utilisation + w.history;
    let score = (w.risk * risk + w.utilisation * ease + w.history * history) / total;
    let util_text = util.map_or_else(
        || "utilisation unknown".to_owned(),
        |u| format!("utilisation {:.0} %", u * 100.0),
    );
    Readiness {
        score,
        inputs,
        explanation: format!(
            "risk {risk:.2}×{:.2} + ease {ease:.2}×{:.2} ({util_text}) + history {history:.2}×{:.2} (failure rate {:.1} %)",
            w.risk / total,
            w.utilisation / total,
            w.history / total,
            rate * 100.0
        ),
    }
}

/// Historical failure rate per component model: recorded failures of
/// components of that model over the fleet's components of it, shrunk
/// toward the fleet-wide rate. Pure: `components` are (host, component id,
/// model), `failed` the (host, component id) with a failure record.
pub fn failure_rates(
    components: &[(String, String, String)],
    failed: &std::collections::BTreeSet<(String, String)>,
) -> BTreeMap<String, f64> {
    let mut by_model: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let (mut n_all, mut f_all) = (0.0, 0.0);
    for (host, id, model) in components {
        if model.is_empty() {
            continue;
        }
        let f = if failed.contains(&(host.clone(), id.clone())) {
            1.0
        } else {
            0.0
        };
        let e = by_model.entry(model).or_default();
        e.0 += 1.0;
        e.1 += f;
        n_all += 1.0;
        f_all += f;
    }
    let fleet = if n_all > 0.0 { f_all / n_all } else { 0.0 };
    by_model
        .into_iter()
        .map(|(m, (n, f))| {
            (
                m.to_owned(),
                (f + PRIOR_COMPONENTS * fleet) / (n + PRIOR_COMPONENTS),
            )
        })
        .collect()
}

/// Every known host's readiness, highest first.
pub fn fleet(
    store: &Store,
    board: &Board,
    w: &Weights,
) -> Result<Vec<(String, Readiness)>, StoreError> {
    let hosts = store.hosts()?;
    let failed: std::collections::BTreeSet<(String, String)> =
        store.failures()?.into_iter().map(|(k, _)| k).collect();
    let components: Vec<(String, String, String)> = hosts
        .iter()
        .flat_map(|h| {
            h.components
                .iter()
                .map(|c| (h.host_id.clone(), c.id.clone(), c.model.clone()))
        })
        .collect();
    let rates = failure_rates(&components, &failed);
    let risks = board.snapshot().risks;
    let series = store.series(None)?;
    let mut out = Vec::new();
    for h in &hosts {
        let last = |metric: &str| -> Result<Option<f64>, StoreError> {
            match series
                .iter()
                .find(|m| m.id.host == h.host_id && m.id.metric == metric)
            {
                Some(m) => Ok(store
                    .last(m.key)?
                    .map(|s| s.value)
                    .filter(|v| v.is_finite())),
                None => Ok(None),
            }
        };
        let cpu = last("host_cpu_usage_percent")?.map(|v| v / 100.0);
        let mem = match (
            last("host_memory_used_bytes")?,
            last("host_memory_total_bytes")?,
        ) {
            (Some(u), Some(t)) if t > 0.0 => Some(u / t),
            _ => None,
        };
        let utilisation = match (cpu, mem) {
            (Some(c), Some(m)) => Some(c.max(m)),
            (c, m) => c.or(m),
        };
        let p7d = risks
            .values()
            .filter(|r| r.host == h.host_id)
            .map(|r| r.probability[r.probability.len() - 1])
            .filter(|p| p.is_finite())
            .reduce(f64::max);
        let failure_rate = h
            .components
            .iter()
            .filter_map(|c| rates.get(&c.model))
            .copied()
            .reduce(f64::max);
        out.push((
            h.host_id.clone(),
            score(
                Inputs {
                    p7d,
                    utilisation,
                    failure_rate,
                },
                w,
            ),
        ));
    }
    out.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_the_documented_weighted_mean() {
        let w = Weights::default();
        let r = score(
            Inputs {
                p7d: Some(0.8),
                utilisation: Some(0.3),
                failure_rate: Some(0.05),
            },
            &w,
        );
        // 0.6·0.8 + 0.25·0.7 + 0.15·0.5
        assert!((r.score - (0.48 + 0.175 + 0.075)).abs() < 1e-12, "{r:?}");
        assert!(
            r.explanation.contains("utilisation 30 %"),
            "{}",
            r.explanation
        );
        // Unknowns: no risk counts 0, unknown utilisation 0.5, and it says so.
        let u = score(Inputs::default(), &w);
        assert!((u.score - 0.25 * 0.5).abs() < 1e-12);
        assert!(u.explanation.contains("utilisation unknown"));
        // NaN and out-of-range inputs cannot leave [0, 1].
        let wild = score(
            Inputs {
                p7d: Some(f64::NAN),
                utilisation: Some(7.0),
                failure_rate: Some(3.0),
            },
            &w,
        );
        assert!((0.0..=1.0).contains(&wild.score));
        // Weights are relative: scaling them changes nothing.
        let double = Weights {
            risk: 1.2,
            utilisation: 0.5,
            history: 0.3,
            ..w
        };
        let i = Inputs {
            p7d: Some(0.3),
            utilisation: Some(0.9),
            failure_rate: Some(0.01),
        };
        assert!((score(i, &w).score - score(i, &double).score).abs() < 1e-12);
        // Riskier ranks higher, all else equal; so does idler.
        let more = Inputs {
            p7d: Some(0.6),
            ..i
        };
        assert!(score(more, &w).score > score(i, &w).score);
        let idle = Inputs {
            utilisation: Some(0.1),
            ..i
        };
        assert!(score(idle, &w).score > score(i, &w).score);
        assert!(Weights { risk: -1.0, ..w }.validate().is_err());
        assert!(Weights {
            risk: 0.0,
            utilisation: 0.0,
            history: 0.0,
            ..w
        }
        .validate()
        .is_err());
        assert!(Weights {
            max_failure_rate: 0.0,
            ..w
        }
        .validate()
        .is_err());
    }

    #[test]
    fn failure_rates_are_per_model_and_shrunk_toward_the_fleet() {
        let mut comps = Vec::new();
        for i in 0..40 {
            comps.push((
                format!("h{i}"),
                "disk:a".to_owned(),
                if i < 10 { "BAD-1" } else { "GOOD-2" }.to_owned(),
            ));
        }
        comps.push(("h0".into(), "psu:1".into(), String::new())); // no model: not counted
        let failed: std::collections::BTreeSet<(String, String)> = (0..4)
            .map(|i| (format!("h{i}"), "disk:a".to_owned()))
            .collect();
        let r = failure_rates(&comps, &failed);
        let fleet = 4.0 / 40.0;
        assert!((r["BAD-1"] - (4.0 + 10.0 * fleet) / 20.0).abs() < 1e-12);
        assert!((r["GOOD-2"] - (10.0 * fleet) / 40.0).abs() < 1e-12);
        assert!(r["BAD-1"] > fleet && r["GOOD-2"] < fleet);
        assert_eq!(r.len(), 2);
    }
}
