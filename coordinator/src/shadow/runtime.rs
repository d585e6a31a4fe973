//! The shadow lifecycles inside the coordinator: after every risk run, each
//! host's risk (its riskiest component) goes to its [`Lifecycle`]; confirmed
//! hosts go through the [`rails`](super::rails); every transition, page and
//! admission verdict is written to the audit log in the store, and the
//! lifecycles are persisted so a restart resumes them.
//!
//! Modes (`[shadow] mode`): `off` tracks nothing; `dry-run` (the default)
//! runs the engine and the rails on live risks and records what it *would*
//! do (the plan), executing nothing. Pages still go out in dry-run (marked
//! as such): on-call learns about a predicted failure whether or not the
//! coordinator may act on it. [`step`] returns them as [`Notice`]s for the
//! caller to deliver (I/O stays out of this module). `execute` also starts
//! admitted lifecycles (`Event::Start`); their actions are then carried
//! out by [`super::execute`], which feeds the outcomes back through
//! [`apply`].

use super::engine::{Command, Event, Lifecycle, Ms, Phase, Policy, Severity};
use super::rails::{self, Member, Rails, View};
use crate::paging::{Notice, Page};
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
    /// Act: admitted lifecycles start and their actions are carried out.
    Execute,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub policy: Policy,
    pub rails: Rails,
    /// Hosts in the feedback loop's holdout ([`crate::learn::is_holdout`])
    /// are never shadowed.
    pub holdout_percent: u8,
    /// A host whose agent has not been heard from in this long is
    /// unreachable: a confirmed failure ([`device_failures`]).
    pub unreachable_after_ms: Ms,
}

/// Default of [`Settings::unreachable_after_ms`]: two minutes.
pub const DEFAULT_UNREACHABLE_AFTER_MS: Ms = 120_000;

/// The lifecycles, shared by the risk loop, the fleet API and `/metrics`.
#[derive(Debug, Default)]
pub struct Shadows {
    inner: Mutex<State>,
    mode: Option<Mode>,
    /// Page deliveries per (receiver, delivered?).
    deliveries: Mutex<BTreeMap<(&'static str, bool), u64>>,
}

#[derive(Debug, Default, Clone)]
pub struct State {
    pub lifecycles: BTreeMap<String, Lifecycle>,
    /// Latest admission verdict per confirmed host (audited on change).
    pub verdicts: BTreeMap<String, String>,
    /// Open pages per target, until their lifecycle resolves them.
    pub pages: BTreeMap<String, Page>,
}

/// What a step asks the caller to deliver.
#[derive(Debug, Default)]
pub struct Output {
    /// New or updated pages and resolutions, in order.
    pub notices: Vec<Notice>,
    /// Pages still open and unchanged, for receivers that forget alerts
    /// unless they are re-sent (Alertmanager).
    pub refresh: Vec<Page>,
}

impl Shadows {
    /// "off" or "dry-run" (what this coordinator was started with).
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Some(Mode::DryRun) => "dry-run",
            Some(Mode::Execute) => "execute",
            Some(Mode::Off) | None => "off",
        }
    }

    /// Resume the persisted lifecycles and open pages.
    pub fn load(store: &Store, mode: Mode) -> Result<Shadows, StoreError> {
        let mut state = State::default();
        for (target, v) in store.open_pages()? {
            match serde_json::from_value::<Page>(v) {
                Ok(p) => {
                    state.pages.insert(target, p);
                }
                Err(e) => tracing::error!(%target, error = %e, "unreadable open page: dropped"),
            }
        }
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
            deliveries: Mutex::default(),
        })
    }

    pub fn count_delivery(&self, receiver: &'static str, delivered: bool) {
        *self
            .deliveries
            .lock()
            .expect("poisoned")
            .entry((receiver, delivered))
            .or_default() += 1;
    }

    pub fn deliveries(&self) -> BTreeMap<(&'static str, bool), u64> {
        self.deliveries.lock().expect("poisoned").clone()
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

/// An operator's decision (`umbractl approve|deny|rollback|pause|resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Approve,
    Deny,
    Rollback,
    Pause,
    Resume,
}

impl std::str::FromStr for Control {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Control, ControlError> {
        Ok(match s {
            "approve" => Control::Approve,
            "deny" => Control::Deny,
            "rollback" => Control::Rollback,
            "pause" => Control::Pause,
            "resume" => Control::Resume,
            other => return Err(ControlError::UnknownAction(other.to_owned())),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("unknown action {0:?}: want approve, deny, rollback, pause or resume")]
    UnknownAction(String),
    #[error("no shadow lifecycle for {0:?}")]
    NoLifecycle(String),
    #[error("{target} is {phase}{}: nothing to {action}", if *.paused { " (paused)" } else { "" })]
    NotApplicable {
        target: String,
        phase: &'static str,
        paused: bool,
        action: &'static str,
    },
    #[error("shadow lifecycles are off")]
    Off,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Control {
    fn name(self) -> &'static str {
        match self {
            Control::Approve => "approve",
            Control::Deny => "deny",
            Control::Rollback => "rollback",
            Control::Pause => "pause",
            Control::Resume => "resume",
        }
    }
}

/// Apply an operator's decision to `target`'s lifecycle: audited with the
/// operator and reason, persisted; returns the lifecycle after it and the
/// pages it produced (for the caller to deliver). A decision the phase
/// cannot take (approving a healthy host) changes nothing and says so.
#[allow(clippy::too_many_arguments)]
pub fn control(
    store: &Store,
    shadows: &Shadows,
    settings: &Settings,
    target: &str,
    decision: Control,
    operator: &str,
    reason: &str,
    now: Ms,
) -> Result<(Lifecycle, Vec<Notice>), ControlError> {
    if settings.mode == Mode::Off {
        return Err(ControlError::Off);
    }
    let dry_run = settings.mode == Mode::DryRun;
    let mut state = shadows.inner.lock().expect("poisoned");
    let State {
        lifecycles, pages, ..
    } = &mut *state;
    let lc = lifecycles
        .get_mut(target)
        .ok_or_else(|| ControlError::NoLifecycle(target.to_owned()))?;
    let before = lc.clone();
    let event = match decision {
        Control::Approve => Event::Approve,
        Control::Deny => Event::Deny,
        Control::Rollback => Event::Rollback(format!("{operator}: {reason}")),
        Control::Pause => Event::Pause,
        Control::Resume => Event::Resume,
    };
    let commands = lc.on_event(now, &event, &settings.policy);
    if *lc == before {
        return Err(ControlError::NotApplicable {
            target: target.to_owned(),
            phase: lc.phase.name(),
            paused: lc.paused,
            action: decision.name(),
        });
    }
    audit(
        store,
        now,
        json!({
            "target": target, "event": "operator", "action": decision.name(),
            "operator": operator, "reason": reason, "from": before.phase.name(),
            "to": lc.phase.name(), "paused": lc.paused, "dry_run": dry_run,
        }),
    );
    let note = RiskNote::from_page(pages.get(target));
    let notices = record_commands(store, pages, lc, &note, commands, dry_run, now)?;
    store.put_lifecycle(target, &serde_json::to_value(&*lc).expect("serialisable"))?;
    Ok((lc.clone(), notices))
}

/// `umbractl` commands that show or steer `target`'s lifecycle in `phase`.
pub fn commands_for(target: &str, phase: &Phase) -> Vec<String> {
    let mut c = vec![
        format!("umbractl shadows --host {target}"),
        format!("umbractl risk --host {target}"),
        format!("umbractl audit --target {target}"),
    ];
    match phase {
        Phase::Confirmed { approved: false } => {
            c.push(format!("umbractl approve {target}"));
            c.push(format!("umbractl deny {target}"));
        }
        p if p.holds_spare() => {
            c.push(format!("umbractl pause {target}"));
            c.push(format!("umbractl rollback {target}"));
        }
        _ => {}
    }
    c
}

/// What a page says of the target's risk besides its lifecycle (whose
/// latest P(7 d) and phase the page takes from the lifecycle itself).
#[derive(Debug, Default)]
struct RiskNote {
    component: String,
    p24h: f64,
    /// The window the headline probability is for ("24h" or "7d").
    window: String,
    explanation: String,
}

impl RiskNote {
    /// Outside a risk run, what is known of the risk is on the target's
    /// open page, if any.
    fn from_page(page: Option<&Page>) -> RiskNote {
        page.map_or_else(
            || RiskNote {
                window: "7d".to_owned(),
                ..RiskNote::default()
            },
            |p| RiskNote {
                component: p.component.clone(),
                p24h: p.p24h,
                window: p.window.clone(),
                explanation: p.explanation.clone(),
            },
        )
    }
}

/// The paging side of `lc`'s `commands`: open or update its page
/// (persisted), or resolve it with the severity it was opened at; every
/// command audited. Returns the pages to deliver.
fn record_commands(
    store: &Store,
    pages: &mut BTreeMap<String, Page>,
    lc: &Lifecycle,
    note: &RiskNote,
    commands: Vec<Command>,
    dry_run: bool,
    now: Ms,
) -> Result<Vec<Notice>, StoreError> {
    let target = lc.target.as_str();
    let page = |severity: Severity, summary: &str| Page {
        key: Page::dedup_key(target),
        target: target.to_owned(),
        component: note.component.clone(),
        severity,
        summary: summary.to_owned(),
        p24h: note.p24h,
        p7d: lc.p7d,
        window: note.window.clone(),
        explanation: note.explanation.clone(),
        phase: lc.phase.name().to_owned(),
        dry_run,
        commands: commands_for(target, &lc.phase),
        at_ms: now,
    };
    let mut notices = Vec::new();
    for c in commands {
        let (kind, detail) = match &c {
            Command::Page { severity, summary } => {
                let p = page(*severity, summary);
                store.put_open_page(
                    target,
                    Some(&serde_json::to_value(&p).expect("serialisable")),
                )?;
                pages.insert(target.to_owned(), p.clone());
                notices.push(Notice::Trigger(p));
                (
                    "page",
                    json!({ "severity": format!("{severity:?}"), "summary": summary }),
                )
            }
            Command::Resolve { summary } => {
                // Resolve what was opened (its severity), with the news.
                let severity = pages.remove(target).map_or(Severity::Info, |p| p.severity);
                store.put_open_page(target, None)?;
                notices.push(Notice::Resolve(page(severity, summary)));
                ("resolve", json!({ "summary": summary }))
            }
            Command::Do(a) => ("action", json!(format!("{a:?}"))),
        };
        audit(
            store,
            now,
            json!({ "target": target, "event": kind, "detail": detail, "dry_run": dry_run, "executed": !dry_run && kind == "action" }),
        );
    }
    Ok(notices)
}

/// The rails over the confirmed lifecycles, riskiest first: each one's
/// verdict (admitted, or held with the reason).
pub fn admit_confirmed(
    hosts: &[crate::model::HostRecord],
    lifecycles: &BTreeMap<String, Lifecycle>,
    rails: &Rails,
    now: Ms,
) -> Vec<(String, Result<(), rails::Refusal>)> {
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
    let mut confirmed: Vec<(&str, f64)> = lifecycles
        .iter()
        .filter(|(_, lc)| matches!(lc.phase, Phase::Confirmed { .. }))
        .map(|(t, lc)| (t.as_str(), lc.p7d))
        .collect();
    confirmed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let confirmed: Vec<&str> = confirmed.into_iter().map(|(t, _)| t).collect();
    let view = View {
        members: &members,
        active: lifecycles
            .iter()
            .filter(|(_, lc)| lc.phase.holds_spare())
            .map(|(t, _)| t.as_str())
            .collect(),
        unhealthy: lifecycles
            .iter()
            .filter(|(_, lc)| matches!(lc.phase, Phase::AtRisk { .. } | Phase::Confirmed { .. }))
            .map(|(t, _)| t.as_str())
            .collect::<BTreeSet<_>>(),
        starts: &[],
    };
    rails::admit(rails, &view, &confirmed, now)
}

/// Each host's risk: its riskiest component's (by P(7 d)). Hosts in the
/// feedback loop's holdout are left out: they are never shadowed.
pub fn riskiest(risks: &[Risk], holdout_percent: u8) -> BTreeMap<&str, &Risk> {
    let mut per_host: BTreeMap<&str, &Risk> = BTreeMap::new();
    for r in risks {
        if crate::learn::is_holdout(&r.host, holdout_percent) {
            continue;
        }
        let e = per_host.entry(&r.host).or_insert(r);
        if r.probability[1] >= e.probability[1] {
            *e = r;
        }
    }
    per_host
}

fn verdict_ok(verdicts: &BTreeMap<String, String>, target: &str) -> bool {
    verdicts.get(target).is_some_and(|v| v == "admitted")
}

/// Feed `event` to `lc`: a phase change is audited, the commands recorded
/// (pages, actions), the lifecycle persisted when it changed.
fn transition(
    store: &Store,
    pages: &mut BTreeMap<String, Page>,
    lc: &mut Lifecycle,
    event: &Event,
    settings: &Settings,
    now: Ms,
) -> Result<Vec<Notice>, StoreError> {
    let dry_run = settings.mode != Mode::Execute;
    let before = lc.clone();
    let commands = lc.on_event(now, event, &settings.policy);
    if lc.phase != before.phase {
        let mut record = json!({
            "target": lc.target, "event": "transition", "from": before.phase.name(),
            "to": lc.phase.name(), "dry_run": dry_run,
        });
        match event {
            Event::Done(a) => record["after"] = json!(format!("{a:?} done")),
            Event::Failed(a, why) => record["after"] = json!(format!("{a:?} failed: {why}")),
            _ => {}
        }
        // The sample the step was judged on: the event's own, or, where a
        // tick ended the dwell after it, the one taken in the phase.
        let judged_on = match event {
            Event::Kpi(k) => Some(k),
            _ => before.evidence(),
        };
        if let Some(k) = judged_on {
            record["kpi"] = serde_json::to_value(k).expect("serialisable");
        }
        if let Phase::Replacing { reason, .. } | Phase::RollingBack { reason } = &lc.phase {
            record["reason"] = json!(reason);
        }
        audit(store, now, record);
    }
    if let Event::Done(a) | Event::Failed(a, _) = event {
        if before.pending.is_some_and(|(p, _)| p == *a) {
            let error = match event {
                Event::Failed(_, why) => json!(why),
                _ => json!(null),
            };
            audit(
                store,
                now,
                json!({"target": lc.target, "event": "action_result", "action": format!("{a:?}"), "ok": error.is_null(), "error": error}),
            );
        }
    }
    let note = RiskNote::from_page(pages.get(&lc.target));
    let notices = record_commands(store, pages, lc, &note, commands, dry_run, now)?;
    if *lc != before {
        store.put_lifecycle(
            &lc.target,
            &serde_json::to_value(&*lc).expect("serialisable"),
        )?;
    }
    Ok(notices)
}

/// Feed an executor's outcome, a KPI sample or a tick to `target`'s
/// lifecycle (execute mode); returns the pages to deliver. With `started`
/// (the pending action and since when, as the executor started it), the
/// event applies only if the lifecycle still waits for exactly that: the
/// late answer of an action that timed out and was commanded again is
/// dropped. A target without a lifecycle is ignored.
pub fn apply(
    store: &Store,
    shadows: &Shadows,
    settings: &Settings,
    target: &str,
    started: Option<(super::engine::Action, Ms)>,
    event: &Event,
    now: Ms,
) -> Result<Vec<Notice>, StoreError> {
    let mut state = shadows.inner.lock().expect("poisoned");
    let State {
        lifecycles, pages, ..
    } = &mut *state;
    match lifecycles.get_mut(target) {
        Some(lc) if started.is_none_or(|s| lc.pending == Some(s)) => {
            transition(store, pages, lc, event, settings, now)
        }
        Some(_) => {
            audit(
                store,
                now,
                json!({"target": target, "event": "stale_outcome", "detail": format!("{event:?}")}),
            );
            Ok(Vec::new())
        }
        None => Ok(Vec::new()),
    }
}

/// Why a host counts as failed now, if it does: its agent unreachable for
/// `unreachable_after_ms`, or a disk's SMART overall health reading failed
/// in its latest sample. Pure over what the store says.
pub fn confirmed_failure(
    store: &Store,
    host: &crate::model::HostRecord,
    unreachable_after_ms: Ms,
    now: Ms,
) -> Result<Option<String>, StoreError> {
    if host.last_seen_ms > 0 && now - host.last_seen_ms >= unreachable_after_ms {
        return Ok(Some(format!(
            "agent unreachable for {} s",
            (now - host.last_seen_ms) / 1000
        )));
    }
    for m in store.series(Some(&host.host_id))? {
        if m.id.metric != "smart_health_passed" {
            continue;
        }
        if let Some(last) = store.last(m.key)? {
            if last.value == 0.0 {
                return Ok(Some(format!(
                    "{}: SMART overall health failed",
                    m.id.component
                )));
            }
        }
    }
    Ok(None)
}

/// Confirmed failures of hosts whose shadow is under way (execute mode):
/// each gets `DeviceFailed`, so a shadow that mirrors or carries traffic
/// takes all of it at once (failover) and one still being prepared pages.
/// Audited with the reason. Returns the pages to deliver.
pub fn device_failures(
    store: &Store,
    shadows: &Shadows,
    settings: &Settings,
    now: Ms,
) -> Result<Vec<Notice>, StoreError> {
    if settings.mode != Mode::Execute {
        return Ok(Vec::new());
    }
    let hosts = store.hosts()?;
    let mut state = shadows.inner.lock().expect("poisoned");
    let State {
        lifecycles, pages, ..
    } = &mut *state;
    let mut notices = Vec::new();
    for h in &hosts {
        let Some(lc) = lifecycles.get_mut(&h.host_id) else {
            continue;
        };
        let acting = lc.phase.holds_spare()
            && !matches!(
                lc.phase,
                Phase::FailingOver | Phase::RollingBack { .. } | Phase::Cancelling
            );
        if !acting {
            continue;
        }
        if let Some(why) = confirmed_failure(store, h, settings.unreachable_after_ms, now)? {
            audit(
                store,
                now,
                json!({"target": h.host_id, "event": "device_failed", "reason": why, "phase": lc.phase.name()}),
            );
            notices.extend(transition(
                store,
                pages,
                lc,
                &Event::DeviceFailed,
                settings,
                now,
            )?);
        }
    }
    Ok(notices)
}

/// One step after a risk run: feed each host's risk, apply the rails to
/// the confirmed ones, record everything; returns the pages to deliver.
pub fn step(
    store: &Store,
    shadows: &Shadows,
    settings: &Settings,
    risks: &[Risk],
    now: Ms,
) -> Result<Output, StoreError> {
    let mut output = Output::default();
    if settings.mode == Mode::Off {
        return Ok(output);
    }
    let dry_run = settings.mode == Mode::DryRun;
    let hosts = store.hosts()?;
    let mut state = shadows.inner.lock().expect("poisoned");
    let mut paged = BTreeSet::new();
    let State {
        lifecycles, pages, ..
    } = &mut *state;
    for (host, risk) in riskiest(risks, settings.holdout_percent) {
        let (p24h, p7d) = (risk.probability[0], risk.probability[1]);
        let lc = lifecycles
            .entry(host.to_owned())
            .or_insert_with(|| Lifecycle::new(host, now));
        let before = lc.phase.clone();
        let commands = lc.on_event(now, &Event::Risk { p24h, p7d }, &settings.policy);
        if lc.phase != before {
            audit(
                store,
                now,
                json!({
                    "target": host, "event": "transition", "from": before.name(),
                    "to": lc.phase.name(), "p24h": p24h, "p7d": p7d,
                    "component": risk.component, "dry_run": dry_run,
                }),
            );
        }
        let note = RiskNote {
            component: risk.component.clone(),
            p24h,
            window: if p24h >= settings.policy.critical {
                "24h".into()
            } else {
                "7d".into()
            },
            explanation: risk.explanation.clone(),
        };
        let notices = record_commands(store, pages, lc, &note, commands, dry_run, now)?;
        if !notices.is_empty() {
            paged.insert(host);
        }
        output.notices.extend(notices);
        if lc.phase != before || before == Phase::Healthy {
            store.put_lifecycle(host, &serde_json::to_value(&*lc).expect("serialisable"))?;
        }
    }

    let verdicts = admit_confirmed(&hosts, &state.lifecycles, &settings.rails, now);
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
                    "dry_run": dry_run, "executed": !dry_run,
                    "plan": plan(&settings.policy),
                }),
                Err(refusal) => json!({
                    "target": target, "event": "admission", "verdict": "held",
                    "reason": refusal.to_string(), "dry_run": dry_run,
                }),
            };
            audit(store, now, record);
            state.verdicts.insert(target.clone(), text);
        }
        if settings.mode == Mode::Execute && verdict_ok(&state.verdicts, &target) {
            let State {
                lifecycles, pages, ..
            } = &mut *state;
            if let Some(lc) = lifecycles.get_mut(&target) {
                let notices = transition(store, pages, lc, &Event::Start, settings, now)?;
                output.notices.extend(notices);
            }
        }
    }
    state.verdicts.retain(|t, _| seen.contains(t));
    output.refresh = state
        .pages
        .iter()
        .filter(|(t, _)| !paged.contains(t.as_str()))
        .map(|(_, p)| p.clone())
        .collect();
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailureDomain, HostRecord};
    use crate::shadow::engine::Kpi;

    fn risk(host: &str, component: &str, p7d: f64) -> Risk {
        Risk {
            host: host.into(),
            component: component.into(),
            probability: [p7d / 10.0, p7d],
            explanation: String::new(),
            model_version: 1,
            evaluated_ms: 0,
            history_days: 1,
            holdout: false,
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
    fn holdout_hosts_are_never_shadowed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).unwrap();
        let hosts: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        for h in &hosts {
            store.put_host(&host(h, "r1")).unwrap();
        }
        let settings = Settings {
            mode: Mode::DryRun,
            policy: Policy::default(),
            rails: Rails::default(),
            holdout_percent: 20,
            unreachable_after_ms: DEFAULT_UNREACHABLE_AFTER_MS,
        };
        let shadows = Shadows::default();
        let risks: Vec<Risk> = hosts.iter().map(|h| risk(h, "disk:a", 0.95)).collect();
        step(&store, &shadows, &settings, &risks, 1_000).unwrap();
        let s = shadows.snapshot();
        let held: Vec<&String> = hosts
            .iter()
            .filter(|h| crate::learn::is_holdout(h, 20))
            .collect();
        assert!(!held.is_empty() && held.len() < hosts.len());
        for h in &hosts {
            assert_eq!(
                s.lifecycles.contains_key(h.as_str()),
                !held.contains(&h),
                "{h}"
            );
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
            holdout_percent: 0,
            unreachable_after_ms: DEFAULT_UNREACHABLE_AFTER_MS,
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
    fn pages_open_once_per_target_refresh_and_resolve_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).unwrap();
        store.put_host(&host("a1", "r1")).unwrap();
        let settings = Settings {
            mode: Mode::DryRun,
            policy: Policy {
                confirm: 2,
                ..Policy::default()
            },
            rails: Rails::default(),
            holdout_percent: 0,
            unreachable_after_ms: DEFAULT_UNREACHABLE_AFTER_MS,
        };
        let shadows = Shadows::default();
        let mut hot = risk("a1", "disk:x", 0.9);
        hot.explanation = "SMART 188 rising".into();
        let first = step(&store, &shadows, &settings, &[hot.clone()], 1_000).unwrap();
        let second = step(&store, &shadows, &settings, &[hot.clone()], 2_000).unwrap();
        let triggers: Vec<&Page> = first
            .notices
            .iter()
            .chain(&second.notices)
            .filter_map(|n| match n {
                Notice::Trigger(p) => Some(p),
                Notice::Resolve(_) => None,
            })
            .collect();
        assert!(!triggers.is_empty(), "confirming a risk pages");
        let p = triggers.last().unwrap();
        assert_eq!(p.key, "umbra/a1");
        assert_eq!(p.component, "disk:x");
        assert_eq!(p.explanation, "SMART 188 rising");
        assert!(p.dry_run);
        assert_eq!(p.phase, "confirmed");
        assert!(
            p.commands.contains(&"umbractl approve a1".to_owned()),
            "{:?}",
            p.commands
        );
        // Nothing new: the open page is only refreshed.
        let third = step(&store, &shadows, &settings, &[hot.clone()], 3_000).unwrap();
        assert!(third.notices.is_empty(), "{:?}", third.notices);
        assert_eq!(third.refresh.len(), 1);
        assert_eq!(third.refresh[0].key, "umbra/a1");

        // A restart keeps the open page; the calm risk resolves it.
        let shadows = Shadows::load(&store, Mode::DryRun).unwrap();
        assert_eq!(shadows.snapshot().pages.len(), 1);
        let calm = step(
            &store,
            &shadows,
            &settings,
            &[risk("a1", "disk:x", 0.1)],
            4_000,
        )
        .unwrap();
        let resolved: Vec<&Page> = calm
            .notices
            .iter()
            .filter_map(|n| match n {
                Notice::Resolve(p) => Some(p),
                Notice::Trigger(_) => None,
            })
            .collect();
        assert_eq!(resolved.len(), 1, "{:?}", calm.notices);
        assert_eq!(resolved[0].key, "umbra/a1");
        assert!(calm.refresh.is_empty());
        assert!(shadows.snapshot().pages.is_empty());
        assert!(store.open_pages().unwrap().is_empty());
    }

    #[test]
    fn operators_decide_with_an_audit_trail_and_pointless_decisions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).unwrap();
        store.put_host(&host("a1", "r1")).unwrap();
        store.put_host(&host("b1", "r2")).unwrap();
        let settings = Settings {
            mode: Mode::DryRun,
            policy: Policy {
                confirm: 1,
                manual_approval: true,
                ..Policy::default()
            },
            rails: Rails::default(),
            holdout_percent: 0,
            unreachable_after_ms: DEFAULT_UNREACHABLE_AFTER_MS,
        };
        let shadows = Shadows::default();
        step(
            &store,
            &shadows,
            &settings,
            &[risk("a1", "d", 0.9), risk("b1", "d", 0.1)],
            1_000,
        )
        .unwrap();
        let decide = |t: &str, c: Control| {
            control(
                &store,
                &shadows,
                &settings,
                t,
                c,
                "alice",
                "ticket 42",
                2_000,
            )
        };
        assert!(matches!(
            decide("zz", Control::Approve),
            Err(ControlError::NoLifecycle(_))
        ));
        let e = decide("b1", Control::Approve).unwrap_err();
        assert!(matches!(e, ControlError::NotApplicable { .. }), "{e}");
        assert_eq!(e.to_string(), "b1 is healthy: nothing to approve");
        assert!(matches!(
            decide("a1", Control::Resume),
            Err(ControlError::NotApplicable { .. })
        ));
        let (lc, notices) = decide("a1", Control::Approve).unwrap();
        assert_eq!(lc.phase, Phase::Confirmed { approved: true });
        assert!(notices.is_empty());
        assert!(
            decide("a1", Control::Approve).is_err(),
            "approving twice changes nothing"
        );
        let (lc, _) = decide("a1", Control::Pause).unwrap();
        assert!(lc.paused);
        let (lc, notices) = decide("a1", Control::Deny).unwrap();
        assert_eq!(lc.phase, Phase::Cancelled);
        assert!(
            matches!(notices.as_slice(), [Notice::Resolve(p)] if p.key == "umbra/a1"),
            "{notices:?}"
        );
        assert!(shadows.snapshot().pages.is_empty());
        // Rollback applies to a shadow that holds a spare.
        shadows
            .inner
            .lock()
            .unwrap()
            .lifecycles
            .get_mut("b1")
            .unwrap()
            .phase = Phase::Shifting {
            step: 1,
            applied: true,
        };
        let (lc, _) = decide("b1", Control::Rollback).unwrap();
        assert!(
            matches!(lc.phase, Phase::RollingBack { .. }),
            "{:?}",
            lc.phase
        );
        let log = store.audit(0, 100).unwrap();
        let ops: Vec<_> = log
            .iter()
            .filter(|(_, r)| r["event"] == "operator")
            .collect();
        assert_eq!(ops.len(), 4, "{ops:?}");
        assert!(ops
            .iter()
            .all(|(_, r)| r["operator"] == "alice" && r["reason"] == "ticket 42"));
        assert_eq!(ops[2].1["action"], "deny");
        assert_eq!(ops[2].1["to"], "cancelled");
        // Persisted.
        let resumed = Shadows::load(&store, Mode::DryRun).unwrap().snapshot();
        assert_eq!(resumed.lifecycles["a1"].phase, Phase::Cancelled);
        assert!(matches!(
            "reboot".parse::<Control>(),
            Err(ControlError::UnknownAction(_))
        ));
    }

    /// A step out of mirroring or a held weight is audited with the KPI
    /// sample it was judged on, whether a KPI sample or a tick (the dwell
    /// ending after the sample) made it; a sample from before the phase
    /// is no evidence and is not recorded.
    #[test]
    fn a_gated_step_records_the_sample_it_was_judged_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).unwrap();
        let settings = Settings {
            mode: Mode::Execute,
            policy: Policy::default(),
            rails: Rails::default(),
            holdout_percent: 0,
            unreachable_after_ms: DEFAULT_UNREACHABLE_AFTER_MS,
        };
        let dwell = settings.policy.min_dwell_ms;
        let sample = Kpi {
            requests: 412,
            error_rate: 0.0,
            p99_ms: 3.0,
            lag_ms: 0.0,
            mismatch_rate: 0.0,
            primary_p99_ms: 2.5,
        };
        let mut pages = BTreeMap::new();
        let mut kpis = Vec::new();
        for (phase, now) in [
            (Phase::Mirroring, 1_000 + dwell),
            (
                Phase::Shifting {
                    step: 0,
                    applied: true,
                },
                3_000 + dwell,
            ),
        ] {
            let mut lc = Lifecycle::new("web-01", 0);
            lc.phase = phase;
            lc.since = now - dwell;
            lc.kpi = Some((lc.since + 500, sample));
            transition(&store, &mut pages, &mut lc, &Event::Tick, &settings, now).unwrap();
            // The sample came before the phase: no step on it.
            let mut early = lc.clone();
            early.phase = Phase::Mirroring;
            early.since = now;
            early.kpi = Some((now - 1, sample));
            transition(
                &store,
                &mut pages,
                &mut early,
                &Event::Tick,
                &settings,
                now + dwell,
            )
            .unwrap();
            assert_eq!(early.phase, Phase::Mirroring);
        }
        for (_, r) in store.audit(0, 100).unwrap() {
            if r["event"] == "transition" {
                kpis.push((r["from"].clone(), r["kpi"].clone()));
            }
        }
        let want = serde_json::to_value(sample).unwrap();
        assert_eq!(
            kpis,
            [
                (json!("mirroring"), want.clone()),
                (json!("shifting"), want)
            ]
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
            holdout_percent: 0,
            unreachable_after_ms: DEFAULT_UNREACHABLE_AFTER_MS,
        };
        let shadows = Shadows::default();
        step(&store, &shadows, &settings, &[risk("a", "d", 0.99)], 1).unwrap();
        assert!(shadows.snapshot().lifecycles.is_empty());
        assert!(store.audit(0, 10).unwrap().is_empty());
    }
}
