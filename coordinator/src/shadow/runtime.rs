//! The shadow lifecycles inside the coordinator: after every risk run, each
//! host's risk (its riskiest component) goes to its [`Lifecycle`]; confirmed
//! hosts go through the [`rails`](super::rails); every transition, page and
//! admission verdict is written to the audit log in the store, and the
//! lifecycles are persisted so a restart resumes them.
//!
//! Modes (`[shadow] mode`): `off` tracks nothing; `dry-run` (the default)
//! runs the engine and the rails on live risks and records what it *would*
//! do (the plan), executing nothing and paging no one. The executors
//! (Redfish, switch ports, traffic, replication, paging) are not built yet,
//! so the modes that act are refused by the config.

use super::engine::{Command, Event, Lifecycle, Ms, Phase, Policy};
use super::rails::{self, Member, Rails, View};
use crate::risk::Risk;
use crate::store::{Store, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Off,
    DryRun,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub policy: Policy,
    pub rails: Rails,
}

/// The lifecycles, shared by the risk loop, the fleet API and `/metrics`.
#[derive(Debug, Default)]
pub struct Shadows {
    inner: Mutex<State>,
    mode: Option<Mode>,
}

#[derive(Debug, Default, Clone)]
pub struct State {
    pub lifecycles: BTreeMap<String, Lifecycle>,
    /// Latest admission verdict per confirmed host (audited on change).
    pub verdicts: BTreeMap<String, String>,
}

impl Shadows {
    /// "off" or "dry-run" (what this coordinator was started with).
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Some(Mode::DryRun) => "dry-run",
            Some(Mode::Off) | None => "off",
        }
    }

    /// Resume the persisted lifecycles.
    pub fn load(store: &Store, mode: Mode) -> Result<Shadows, StoreError> {
        let mut state = State::default();
        for (target, v) in store.lifecycles()? {
            match serde_json::from_value::<Lifecycle>(v) {
                Ok(lc) => {
                    state.lifecycles.insert(target, lc);
                }
                Err(e) => {
                    tracing::error!(%target, error = %e, "unreadable lifecycle state: starting it afresh")
                }
            }
        }
        Ok(Shadows {
            inner: Mutex::new(state),
            mode: Some(mode),
        })
    }

    pub fn snapshot(&self) -> State {
        self.inner.lock().expect("poisoned").clone()
    }
}

/// The plan a start would carry out with `policy`, for the audit log.
pub fn plan(policy: &Policy) -> Vec<String> {
    let mut steps = vec![
        "provision a spare (Redfish)".to_owned(),
        "replicate state".to_owned(),
        format!("mirror {} % of requests", policy.mirror_percent),
    ];
    steps.extend(
        policy
            .ramp
            .iter()
            .map(|p| format!("shift {p} % of traffic")),
    );
    steps.push("promote the shadow".to_owned());
    steps
}

fn audit(store: &Store, now: Ms, record: serde_json::Value) {
    if let Err(e) = store.append_audit(now, &record) {
        tracing::error!(error = %e, "writing the shadow audit log failed");
    }
}

/// One step after a risk run: feed each host's risk, apply the rails to
/// the confirmed ones, record everything.
pub fn step(
    store: &Store,
    shadows: &Shadows,
    settings: &Settings,
    risks: &[Risk],
    now: Ms,
) -> Result<(), StoreError> {
    if settings.mode == Mode::Off {
        return Ok(());
    }
    let dry_run = settings.mode == Mode::DryRun;
    // A host's risk is its riskiest component's.
    let mut per_host: BTreeMap<&str, (f64, f64, &str)> = BTreeMap::new();
    for r in risks {
        let e = per_host.entry(&r.host).or_insert((0.0, 0.0, ""));
        if r.probability[1] >= e.1 {
            *e = (r.probability[0], r.probability[1], &r.component);
        }
    }
    let hosts = store.hosts()?;
    let mut state = shadows.inner.lock().expect("poisoned");
    for (host, (p24h, p7d, component)) in &per_host {
        let lc = state
            .lifecycles
            .entry((*host).to_owned())
            .or_insert_with(|| Lifecycle::new(*host, now));
        let before = lc.phase.clone();
        let commands = lc.on_event(
            now,
            &Event::Risk {
                p24h: *p24h,
                p7d: *p7d,
            },
            &settings.policy,
        );
        if lc.phase != before {
            audit(
                store,
                now,
                json!({
                    "target": host, "event": "transition", "from": before.name(),
                    "to": lc.phase.name(), "p24h": p24h, "p7d": p7d,
                    "component": component, "dry_run": dry_run,
                }),
            );
        }
        for c in commands {
            let (kind, detail) = match c {
                Command::Page { severity, summary } => (
                    "page",
                    json!({ "severity": format!("{severity:?}"), "summary": summary }),
                ),
                Command::Resolve { summary } => ("resolve", json!({ "summary": summary })),
                Command::Do(a) => ("action", json!(format!("{a:?}"))),
            };
            audit(
                store,
                now,
                json!({ "target": host, "event": kind, "detail": detail, "dry_run": dry_run, "executed": false }),
            );
        }
        if lc.phase != before || before == Phase::Healthy {
            store.put_lifecycle(host, &serde_json::to_value(&*lc).expect("serialisable"))?;
        }
    }

    // The rails, over confirmed hosts, riskiest first.
    let members: Vec<Member> = hosts
        .iter()
        .map(|h| Member {
            target: h.host_id.clone(),
            domains: [
                ("rack", &h.failure_domain.rack),
                ("pdu", &h.failure_domain.pdu),
                ("tor", &h.failure_domain.tor),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}:{v}"))
            .collect(),
        })
        .collect();
    let mut confirmed: Vec<(&str, f64)> = state
        .lifecycles
        .iter()
        .filter(|(_, lc)| matches!(lc.phase, Phase::Confirmed { .. }))
        .map(|(t, lc)| (t.as_str(), lc.p7d))
        .collect();
    confirmed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let confirmed: Vec<&str> = confirmed.into_iter().map(|(t, _)| t).collect();
    let view = View {
        members: &members,
        active: state
            .lifecycles
            .iter()
            .filter(|(_, lc)| lc.phase.holds_spare())
            .map(|(t, _)| t.as_str())
            .collect(),
        unhealthy: state
            .lifecycles
            .iter()
            .filter(|(_, lc)| matches!(lc.phase, Phase::AtRisk { .. } | Phase::Confirmed { .. }))
            .map(|(t, _)| t.as_str())
            .collect::<BTreeSet<_>>(),
        starts: &[],
    };
    let verdicts = rails::admit(&settings.rails, &view, &confirmed, now);
    let mut seen = BTreeSet::new();
    for (target, verdict) in verdicts {
        let text = match &verdict {
            Ok(()) => "admitted".to_owned(),
            Err(refusal) => format!("held: {refusal}"),
        };
        seen.insert(target.clone());
        if state.verdicts.get(&target) != Some(&text) {
            let record = match verdict {
                Ok(()) => json!({
                    "target": target, "event": "admission", "verdict": "admitted",
                    "dry_run": dry_run, "executed": false,
                    "plan": plan(&settings.policy),
                }),
                Err(refusal) => json!({
                    "target": target, "event": "admission", "verdict": "held",
                    "reason": refusal.to_string(), "dry_run": dry_run,
                }),
            };
            audit(store, now, record);
            state.verdicts.insert(target, text);
        }
    }
    state.verdicts.retain(|t, _| seen.contains(t));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailureDomain, HostRecord};

    fn risk(host: &str, component: &str, p7d: f64) -> Risk {
        Risk {
            host: host.into(),
            component: component.into(),
            probability: [p7d / 10.0, p7d],
            explanation: String::new(),
            model_version: 1,
            evaluated_ms: 0,
            history_days: 1,
        }
    }

    fn host(id: &str, rack: &str) -> HostRecord {
        HostRecord {
            host_id: id.into(),
            hwprofile_id: "p".into(),
            agent_version: "0".into(),
            failure_domain: FailureDomain {
                rack: rack.into(),
                ..FailureDomain::default()
            },
            components: vec![],
            last_seen_ms: 0,
            sample_rate: 0.0,
            stats: Default::default(),
            stored_samples: 0,
            series_count: 0,
        }
    }

    #[test]
    fn dry_run_confirms_audits_the_plan_and_holds_what_the_rails_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).unwrap();
        for (h, rack) in [
            ("a1", "r1"),
            ("a2", "r1"),
            ("b1", "r2"),
            ("b2", "r2"),
            ("b3", "r2"),
        ] {
            store.put_host(&host(h, rack)).unwrap();
        }
        let settings = Settings {
            mode: Mode::DryRun,
            policy: Policy {
                confirm: 2,
                ..Policy::default()
            },
            rails: Rails {
                max_concurrent_per_domain: 1,
                max_fraction_per_domain: 1.0,
                pause_unhealthy_fraction: 0.6,
                max_confirmed_fraction: 0.5,
                ..Rails::default()
            },
        };
        let shadows = Shadows::default();
        // a1's worst disk is at risk; b1 too; a2 healthy.
        let risks = [
            risk("a1", "disk:x", 0.9),
            risk("a1", "disk:y", 0.1),
            risk("a2", "disk:z", 0.05),
            risk("b1", "disk:w", 0.8),
        ];
        for t in [1_000, 2_000, 3_000] {
            step(&store, &shadows, &settings, &risks, t).unwrap();
        }
        let s = shadows.snapshot();
        assert!(matches!(s.lifecycles["a1"].phase, Phase::Confirmed { .. }));
        assert!(matches!(s.lifecycles["b1"].phase, Phase::Confirmed { .. }));
        assert_eq!(s.lifecycles["a2"].phase, Phase::Healthy);
        assert_eq!(s.verdicts["a1"], "admitted");
        assert_eq!(s.verdicts["b1"], "admitted");
        let log = store.audit(0, 100).unwrap();
        let admissions: Vec<_> = log
            .iter()
            .filter(|(_, r)| r["event"] == "admission")
            .collect();
        assert_eq!(
            admissions.len(),
            2,
            "audited once per verdict change: {log:?}"
        );
        assert!(admissions[0].1["plan"].as_array().unwrap().len() >= 7);
        assert!(log.iter().all(|(_, r)| r["executed"] != true));
        assert!(log.iter().any(|(_, r)| r["event"] == "transition"
            && r["to"] == "confirmed"
            && r["target"] == "a1"));

        // Restart: lifecycles resume from the store.
        let resumed = Shadows::load(&store, Mode::DryRun).unwrap().snapshot();
        assert_eq!(resumed.lifecycles["a1"], s.lifecycles["a1"]);

        // Risk falls back: cancelled and resolved.
        let calm = [risk("a1", "disk:x", 0.1), risk("b1", "disk:w", 0.8)];
        step(&store, &shadows, &settings, &calm, 4_000).unwrap();
        assert_eq!(shadows.snapshot().lifecycles["a1"].phase, Phase::Cancelled);

        // Three of five hosts confirmed at once: more than half the fleet.
        let storm = [
            risk("a1", "d", 0.9),
            risk("a2", "d", 0.9),
            risk("b2", "d", 0.9),
        ];
        for t in [5_000, 6_000] {
            step(&store, &shadows, &settings, &storm, t).unwrap();
        }
        let held = shadows.snapshot().verdicts;
        assert!(
            held["a1"].starts_with("held:") && held["a1"].contains("suspect"),
            "{held:?}"
        );
    }

    #[test]
    fn off_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).unwrap();
        let settings = Settings {
            mode: Mode::Off,
            policy: Policy::default(),
            rails: Rails::default(),
        };
        let shadows = Shadows::default();
        step(&store, &shadows, &settings, &[risk("a", "d", 0.99)], 1).unwrap();
        assert!(shadows.snapshot().lifecycles.is_empty());
        assert!(store.audit(0, 10).unwrap().is_empty());
    }
}
