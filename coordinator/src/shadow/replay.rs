//! Offline replay (`umbractl replay`): the shadow policy run over stored
//! history. For each step in a past interval, every disk is scored with the
//! given model on the data it had then (`risk::evaluate` at that time), the
//! risks go through fresh lifecycles and the rails exactly as the live
//! runtime would, and everything the policy would have done is reported:
//! transitions, pages, admissions, starts. Nothing is written and nothing
//! executes; actions are reported, not simulated, so a replayed lifecycle
//! stops at its first action (their outcomes are not in the history).
//! The history is read at hourly resolution (the model's daily rows come
//! from hourly rollups), so a replayed time sees its whole hour.

use super::engine::{Command, Event, Lifecycle, Ms, Phase};
use super::runtime::{admit_confirmed, riskiest, Settings};
use crate::risk::{evaluate, RiskError};
use crate::store::Store;
use predict::failure::FailureModel;
use serde_json::json;
use std::collections::BTreeMap;

/// At most this many steps per replay (each scores every disk).
pub const MAX_STEPS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{steps} steps (from {from_ms} to {until_ms} every {step_ms} ms): at most {MAX_STEPS}; use a longer step")]
    TooManySteps {
        steps: i64,
        from_ms: Ms,
        until_ms: Ms,
        step_ms: Ms,
    },
    #[error("the step must be positive and the interval not empty")]
    Interval,
    #[error(transparent)]
    Risk(#[from] RiskError),
}

/// What the policy would have done at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub time_ms: Ms,
    pub record: serde_json::Value,
}

fn describe(c: &Command) -> serde_json::Value {
    match c {
        Command::Page { severity, summary } => {
            json!({ "event": "page", "severity": format!("{severity:?}"), "summary": summary })
        }
        Command::Resolve { summary } => json!({ "event": "resolve", "summary": summary }),
        Command::Do(a) => json!({ "event": "action", "action": format!("{a:?}") }),
    }
}

pub fn replay(
    store: &Store,
    model: &FailureModel,
    version: u64,
    settings: &Settings,
    from_ms: Ms,
    until_ms: Ms,
    step_ms: Ms,
) -> Result<Vec<Replayed>, ReplayError> {
    if step_ms <= 0 || until_ms < from_ms {
        return Err(ReplayError::Interval);
    }
    let steps = (until_ms - from_ms) / step_ms + 1;
    if steps > MAX_STEPS {
        return Err(ReplayError::TooManySteps {
            steps,
            from_ms,
            until_ms,
            step_ms,
        });
    }
    let hosts = store.hosts().map_err(RiskError::from)?;
    let policy = &settings.policy;
    let mut lifecycles: BTreeMap<String, Lifecycle> = BTreeMap::new();
    let mut verdicts: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    let mut push = |t: Ms, target: &str, mut record: serde_json::Value| {
        record["target"] = json!(target);
        out.push(Replayed { time_ms: t, record });
    };
    for i in 0..steps {
        let t = from_ms + i * step_ms;
        let risks = evaluate(store, model, version, t)?;
        for (host, r) in riskiest(&risks, settings.holdout_percent) {
            let lc = lifecycles
                .entry(host.to_owned())
                .or_insert_with(|| Lifecycle::new(host, t));
            let before = lc.phase.clone();
            let commands = lc.on_event(
                t,
                &Event::Risk {
                    p24h: r.probability[0],
                    p7d: r.probability[1],
                },
                policy,
            );
            if lc.phase != before {
                push(
                    t,
                    host,
                    json!({ "event": "transition", "from": before.name(), "to": lc.phase.name(),
                            "p24h": r.probability[0], "p7d": r.probability[1],
                            "component": r.component, "explanation": r.explanation }),
                );
            }
            for c in &commands {
                push(t, host, describe(c));
            }
        }
        for (target, verdict) in admit_confirmed(&hosts, &lifecycles, &settings.rails, t) {
            let text = match &verdict {
                Ok(()) if policy.manual_approval => "awaiting approval".to_owned(),
                Ok(()) => "admitted".to_owned(),
                Err(refusal) => format!("held: {refusal}"),
            };
            if verdicts.get(&target) != Some(&text) {
                push(t, &target, json!({ "event": "admission", "verdict": text }));
                verdicts.insert(target.clone(), text);
            }
            if verdict.is_ok() && !policy.manual_approval {
                let lc = lifecycles.get_mut(&target).expect("admitted ones exist");
                let before = lc.phase.clone();
                let commands = lc.on_event(t, &Event::Start, policy);
                if lc.phase != before {
                    push(
                        t,
                        &target,
                        json!({ "event": "transition", "from": before.name(), "to": lc.phase.name() }),
                    );
                }
                for c in &commands {
                    push(t, &target, describe(c));
                }
            }
        }
        verdicts.retain(|t, _| {
            lifecycles
                .get(t)
                .is_some_and(|lc| matches!(lc.phase, Phase::Confirmed { .. }))
        });
    }
    Ok(out)
}
