//! The shadow lifecycle of one protected target (a host or component) as a
//! pure state machine: [`Lifecycle::on_event`] takes the time and an
//! [`Event`] and returns the [`Command`]s to carry out. No I/O, no clock, no
//! randomness: the same events give the same commands, so a stored history
//! replays exactly (`umbractl replay`), and the state serialises so a
//! restarted coordinator resumes where it was.
//!
//! ```text
//! Healthy ─risk≥enter─▶ AtRisk ─confirmed─▶ Confirmed ─Start (rails, approval)─▶ Provisioning
//!    ▲                    │ risk<exit                                                │ Done
//!    └────────────────────┘                                                      Syncing
//!                                                             Done + lag ≤ max ──────┤
//!                                                                               Mirroring
//!                                               dwell + KPIs ok + enough requests ──┤
//!                                              Shifting(10 %) → … → Shifting(100 %) ─▶ Promoted
//! any active phase: KPI regression, failed or timed-out action ─▶ Replacing ─Done─▶ Provisioning (next spare)
//!   … once `spare_retries` spares have failed, or on a manual rollback ─▶ RollingBack ─Done─▶ RolledBack
//! risk back under exit before promotion ─▶ Cancelling ─Done─▶ Cancelled
//! device failed with a synced shadow ─▶ FailingOver ─Done─▶ Promoted
//! ```
//!
//! Commands are absolute and state-based (`SetWeight { percent: 25 }`, not
//! "+15 %"), so an executor may repeat one after a crash without harm.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Ms = i64;

/// Limits a shift step must respect to go on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiLimits {
    /// Failed requests / requests on the shadow.
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
    /// Replication lag allowed before mirroring or shifting further.
    pub max_lag_ms: f64,
    /// Requests a KPI sample needs to count as evidence of health.
    pub min_requests: u64,
    /// Mirrored answers that differ from the primary's / answers compared.
    #[serde(default = "default_max_mismatch_rate")]
    pub max_mismatch_rate: f64,
    /// The shadow's p99 may be at most this many times the primary's on
    /// the same mirrored requests, once it is over `latency_floor_ms`
    /// (below it, sub-millisecond noise would trip the ratio).
    #[serde(default = "default_max_latency_ratio")]
    pub max_latency_ratio: f64,
    #[serde(default = "default_latency_floor_ms")]
    pub latency_floor_ms: f64,
}

fn default_max_mismatch_rate() -> f64 {
    0.01
}
fn default_max_latency_ratio() -> f64 {
    3.0
}
fn default_latency_floor_ms() -> f64 {
    50.0
}

/// Hot standby spares kept provisioned beside a target's shadow while its
/// P(fail within 24 h) is at or above `p24h` (`[[shadow.standby]]`): the
/// shadow count scales with the risk, and a failed shadow is replaced by
/// a standby already up instead of a spare that must first be powered on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyTier {
    pub p24h: f64,
    pub spares: u8,
}

/// The lifecycle's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// P(fail within 7 d) at or above which a target is at risk.
    pub enter: f64,
    /// P(7 d) under which an at-risk target is healthy again (< `enter`).
    pub exit: f64,
    /// Consecutive risk updates at or above `enter` that confirm the risk.
    pub confirm: u32,
    /// P(fail within 24 h) that confirms at once.
    pub critical: f64,
    /// Share of traffic mirrored to the shadow for validation, percent.
    pub mirror_percent: u8,
    /// Shadow traffic steps, percent, ascending, ending at 100.
    pub ramp: Vec<u8>,
    /// Least time in mirroring and in each step before the next.
    pub min_dwell_ms: Ms,
    /// An action not done in this long has failed.
    pub action_timeout_ms: Ms,
    /// Times another spare is tried after one fails in a lifecycle: at
    /// provisioning, or later (an action failed or its KPIs regressed),
    /// when the failed shadow is reverted and replaced (self-healing).
    #[serde(alias = "provision_retries")]
    pub spare_retries: u32,
    pub kpi: KpiLimits,
    /// Wait for `umbractl approve` before acting.
    pub manual_approval: bool,
    /// Standby spares by risk (the highest tier reached applies).
    #[serde(default)]
    pub standby: Vec<StandbyTier>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enter: 0.5,
            exit: 0.3,
            confirm: 3,
            critical: 0.5,
            mirror_percent: 5,
            ramp: vec![10, 25, 50, 100],
            min_dwell_ms: 10_000,
            action_timeout_ms: 300_000,
            spare_retries: 2,
            kpi: KpiLimits {
                max_error_rate: 0.001,
                max_p99_ms: 500.0,
                max_lag_ms: 1_000.0,
                min_requests: 100,
                max_mismatch_rate: default_max_mismatch_rate(),
                max_latency_ratio: default_max_latency_ratio(),
                latency_floor_ms: default_latency_floor_ms(),
            },
            manual_approval: false,
            standby: Vec::new(),
        }
    }
}

impl Policy {
    /// Refuse a policy that could not work.
    pub fn validate(&self) -> Result<(), String> {
        let p = |v: f64| (0.0..=1.0).contains(&v);
        if !(p(self.enter) && p(self.exit) && p(self.critical)) || self.exit >= self.enter {
            return Err(format!(
                "thresholds: want 0 <= exit ({}) < enter ({}) <= 1 and critical in [0, 1]",
                self.exit, self.enter
            ));
        }
        if self.ramp.last() != Some(&100)
            || self.ramp.windows(2).any(|w| w[0] >= w[1])
            || self.ramp.first() == Some(&0)
        {
            return Err(format!(
                "ramp {:?}: want ascending steps above 0 ending at 100",
                self.ramp
            ));
        }
        if self.mirror_percent == 0 || self.mirror_percent > 50 {
            return Err("mirror_percent: want 1..=50".into());
        }
        if self.confirm == 0 || self.action_timeout_ms <= 0 || self.min_dwell_ms < 0 {
            return Err("confirm >= 1, action_timeout > 0, min_dwell >= 0".into());
        }
        if let Some(t) = self
            .standby
            .iter()
            .find(|t| !p(t.p24h) || t.spares == 0 || t.spares > 4)
        {
            return Err(format!(
                "standby tier {t:?}: want p24h in [0, 1] and 1..=4 spares"
            ));
        }
        Ok(())
    }

    /// Standby spares for a target at `p24h`: the largest count of the
    /// tiers it reaches.
    pub fn standby_for(&self, p24h: f64) -> u8 {
        self.standby
            .iter()
            .filter(|t| p24h >= t.p24h)
            .map(|t| t.spares)
            .max()
            .unwrap_or(0)
    }
}

/// What the shadow's traffic looked like over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kpi {
    pub requests: u64,
    pub error_rate: f64,
    pub p99_ms: f64,
    pub lag_ms: f64,
    /// Share of mirrored answers that differ from the primary's (0 where
    /// nothing is compared).
    #[serde(default)]
    pub mismatch_rate: f64,
    /// The primary's p99 on the same (mirrored) requests; 0 where not
    /// measured.
    #[serde(default)]
    pub primary_p99_ms: f64,
}

/// An action the executors carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Choose a spare (pool rules) and provision it (Redfish).
    Provision,
    /// Start state replication to the shadow (snapshot, then continuous).
    Sync,
    /// Mirror a share of requests to the shadow (responses discarded, compared).
    Mirror { percent: u8 },
    /// The shadow's share of live traffic; the primary has the rest.
    SetWeight { percent: u8 },
    /// Make the shadow the primary; the old one goes to quarantine.
    Promote,
    /// Traffic back to the primary, stop mirroring and sync, release the spare.
    Revert,
    /// As `Revert`, and the spare is set aside as failed for this target,
    /// so the next provisioning picks another (self-healing).
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// Output of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Do(Action),
    /// Open or update this target's page (deduplicated per target).
    Page {
        severity: Severity,
        summary: String,
    },
    /// The lifecycle ended: resolve the target's page.
    Resolve {
        summary: String,
    },
}

/// Input of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A new risk evaluation.
    Risk {
        p24h: f64,
        p7d: f64,
    },
    /// The fleet rails (and the approval, if required) admit the start.
    Start,
    Approve,
    Deny,
    Done(Action),
    Failed(Action, String),
    Kpi(Kpi),
    /// The device reports failure or is unreachable.
    DeviceFailed,
    /// Manual rollback.
    Rollback(String),
    Pause,
    Resume,
    /// Time passes (dwell, timeouts).
    Tick,
}

/// `v <= max`, false for NaN.
fn within(v: f64, max: f64) -> bool {
    matches!(
        v.partial_cmp(&max),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

/// Where a lifecycle is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    Healthy,
    AtRisk {
        streak: u32,
    },
    /// Risk confirmed; waiting for the rails to admit it (and approval).
    Confirmed {
        approved: bool,
    },
    Provisioning {
        attempt: u32,
    },
    Syncing {
        synced: bool,
    },
    Mirroring,
    Shifting {
        step: usize,
        applied: bool,
    },
    FailingOver,
    Promoted,
    /// The shadow failed: it is being reverted, and spare `attempt` is
    /// provisioned in its place once that is done (self-healing).
    Replacing {
        attempt: u32,
        reason: String,
    },
    RollingBack {
        reason: String,
    },
    RolledBack {
        reason: String,
    },
    Cancelling,
    Cancelled,
}

impl Phase {
    /// Every [`Phase::name`], in lifecycle order.
    pub const NAMES: [&'static str; 14] = [
        "healthy",
        "at_risk",
        "confirmed",
        "provisioning",
        "syncing",
        "mirroring",
        "shifting",
        "failing_over",
        "promoted",
        "replacing",
        "rolling_back",
        "rolled_back",
        "cancelling",
        "cancelled",
    ];

    /// Short name (metrics label, tables).
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::AtRisk { .. } => "at_risk",
            Phase::Confirmed { .. } => "confirmed",
            Phase::Provisioning { .. } => "provisioning",
            Phase::Syncing { .. } => "syncing",
            Phase::Mirroring => "mirroring",
            Phase::Shifting { .. } => "shifting",
            Phase::FailingOver => "failing_over",
            Phase::Promoted => "promoted",
            Phase::Replacing { .. } => "replacing",
            Phase::RollingBack { .. } => "rolling_back",
            Phase::RolledBack { .. } => "rolled_back",
            Phase::Cancelling => "cancelling",
            Phase::Cancelled => "cancelled",
        }
    }

    /// The lifecycle is over (until the risk re-arms it).
    pub fn ended(&self) -> bool {
        matches!(
            self,
            Phase::Healthy | Phase::Promoted | Phase::RolledBack { .. } | Phase::Cancelled
        )
    }

    /// A spare is (being) taken: counts against the blast-radius budget.
    pub fn holds_spare(&self) -> bool {
        matches!(
            self,
            Phase::Provisioning { .. }
                | Phase::Syncing { .. }
                | Phase::Mirroring
                | Phase::Shifting { .. }
                | Phase::FailingOver
                | Phase::Replacing { .. }
                | Phase::RollingBack { .. }
                | Phase::Cancelling
        )
    }

    /// A shadow is on its way or serving: it holds a spare and is not
    /// being taken down for good (a rollback or cancel).
    pub fn shadow_active(&self) -> bool {
        self.holds_spare() && !matches!(self, Phase::RollingBack { .. } | Phase::Cancelling)
    }

    /// The lifecycle is over (a new risk starts a new one).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::Promoted | Phase::RolledBack { .. } | Phase::Cancelled
        )
    }
}

/// One target's lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub target: String,
    pub phase: Phase,
    /// When the phase (or shift step) began.
    pub since: Ms,
    /// The action being waited for, and since when.
    pub pending: Option<(Action, Ms)>,
    /// The latest KPI sample and when it came.
    pub kpi: Option<(Ms, Kpi)>,
    pub paused: bool,
    /// Latest risk seen.
    pub p7d: f64,
    #[serde(default)]
    pub p24h: f64,
    /// In an ended phase: the risk has been under `exit` since it ended,
    /// so a new rise starts a new lifecycle. A denied, rolled-back or
    /// promoted target is not retried (nor re-paged) while the same risk
    /// persists.
    #[serde(default)]
    pub rearmed: bool,
    /// Which spare of this lifecycle the shadow is: 1 for the first, one
    /// more for each that failed (the executor picks another for each).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

impl Lifecycle {
    pub fn new(target: impl Into<String>, now: Ms) -> Lifecycle {
        Lifecycle {
            target: target.into(),
            phase: Phase::Healthy,
            since: now,
            pending: None,
            kpi: None,
            paused: false,
            p7d: 0.0,
            p24h: 0.0,
            rearmed: false,
            attempt: 1,
        }
    }

    /// Standby spares this lifecycle wants now: by its latest P(24 h)
    /// while a shadow is on its way or serving (not while it is being
    /// taken down, nor once the lifecycle ended).
    pub fn standby_wanted(&self, policy: &Policy) -> u8 {
        if self.phase.shadow_active() {
            policy.standby_for(self.p24h)
        } else {
            0
        }
    }

    fn go(&mut self, now: Ms, phase: Phase) {
        self.phase = phase;
        self.since = now;
        self.rearmed = false;
    }

    fn act(&mut self, now: Ms, a: Action, out: &mut Vec<Command>) {
        self.pending = Some((a, now));
        out.push(Command::Do(a));
    }

    fn page(&self, severity: Severity, what: &str, out: &mut Vec<Command>) {
        out.push(Command::Page {
            severity,
            summary: format!("{}: {what} (P(fail 7d)={:.2})", self.target, self.p7d),
        });
    }

    /// Is the latest KPI sample (newer than the phase) bad? Lag is not a
    /// regression (it holds progress, see `ready`).
    fn regressed(&self, policy: &Policy) -> Option<String> {
        let (_, k) = self.kpi?;
        let l = &policy.kpi;
        if k.requests > 0 && !within(k.error_rate, l.max_error_rate) {
            return Some(format!(
                "error rate {:.4} > {:.4}",
                k.error_rate, l.max_error_rate
            ));
        }
        if k.requests > 0 && !within(k.mismatch_rate, l.max_mismatch_rate) {
            return Some(format!(
                "{:.2} % of answers differ from the primary's (> {:.2} %)",
                k.mismatch_rate * 100.0,
                l.max_mismatch_rate * 100.0
            ));
        }
        if k.primary_p99_ms > 0.0
            && k.p99_ms > l.latency_floor_ms
            && !within(k.p99_ms, l.max_latency_ratio * k.primary_p99_ms)
        {
            return Some(format!(
                "p99 {:.0} ms > {:.1} × the primary's {:.0} ms",
                k.p99_ms, l.max_latency_ratio, k.primary_p99_ms
            ));
        }
        // Latency counts even in a window without responses: requests
        // that have been in flight for too long are the regression.
        if !within(k.p99_ms, l.max_p99_ms) {
            return Some(format!("p99 {:.0} ms > {:.0} ms", k.p99_ms, l.max_p99_ms));
        }
        None
    }

    /// The KPI sample a step out of the current phase is judged on: the
    /// latest taken since the phase began, in a phase whose steps samples
    /// gate (syncing done, mirroring, a weight that holds).
    pub fn evidence(&self) -> Option<&Kpi> {
        let gated = matches!(
            self.phase,
            Phase::Syncing { synced: true }
                | Phase::Mirroring
                | Phase::Shifting { applied: true, .. }
        );
        self.kpi
            .as_ref()
            .filter(|(at, _)| gated && *at >= self.since)
            .map(|(_, k)| k)
    }

    /// Dwell done and a healthy KPI sample with enough requests taken
    /// since the phase began, replication within its lag limit.
    fn ready(&self, now: Ms, policy: &Policy) -> bool {
        let Some(k) = self.evidence() else {
            return false;
        };
        now - self.since >= policy.min_dwell_ms
            && k.requests >= policy.kpi.min_requests
            && k.lag_ms <= policy.kpi.max_lag_ms
            && self.regressed(policy).is_none()
    }

    fn roll_back(&mut self, now: Ms, reason: String, out: &mut Vec<Command>) {
        self.page(Severity::Warning, &format!("rolling back: {reason}"), out);
        self.go(now, Phase::RollingBack { reason });
        self.act(now, Action::Revert, out);
    }

    /// The shadow failed after provisioning: revert it and provision
    /// another spare while the policy allows, else roll back. Either way
    /// the first command takes traffic off the failed shadow.
    fn shadow_failed(&mut self, now: Ms, reason: String, policy: &Policy, out: &mut Vec<Command>) {
        if self.attempt > policy.spare_retries {
            return self.roll_back(now, reason, out);
        }
        let attempt = self.attempt + 1;
        self.page(
            Severity::Warning,
            &format!("shadow failed ({reason}); replacing it with another spare"),
            out,
        );
        self.go(now, Phase::Replacing { attempt, reason });
        self.act(now, Action::Replace, out);
    }

    fn provision(&mut self, now: Ms, attempt: u32, out: &mut Vec<Command>) {
        self.attempt = attempt;
        self.go(now, Phase::Provisioning { attempt });
        self.act(now, Action::Provision, out);
    }

    /// Apply one event at `now`; the commands to carry out, in order.
    pub fn on_event(&mut self, now: Ms, ev: &Event, policy: &Policy) -> Vec<Command> {
        let mut out = Vec::new();
        match ev {
            Event::Risk { p24h, p7d } => {
                self.p7d = *p7d;
                self.p24h = *p24h;
                self.on_risk(now, *p24h, *p7d, policy, &mut out);
            }
            Event::Kpi(k) => {
                self.kpi = Some((now, *k));
                if matches!(self.phase, Phase::Mirroring | Phase::Shifting { .. }) {
                    if let Some(reason) = self.regressed(policy) {
                        let reason = format!("KPI regression: {reason}");
                        self.shadow_failed(now, reason, policy, &mut out);
                        return out;
                    }
                }
                self.advance(now, policy, &mut out);
            }
            Event::Tick => {
                if let Some((a, at)) = self.pending {
                    if now - at >= policy.action_timeout_ms {
                        return self.on_event(
                            now,
                            &Event::Failed(a, format!("no answer in {} ms", now - at)),
                            policy,
                        );
                    }
                }
                self.advance(now, policy, &mut out);
            }
            Event::Start => {
                if let Phase::Confirmed { approved } = self.phase {
                    if approved || !policy.manual_approval {
                        self.page(Severity::Warning, "provisioning a shadow", &mut out);
                        self.provision(now, 1, &mut out);
                    }
                }
            }
            Event::Approve => {
                if let Phase::Confirmed { .. } = self.phase {
                    self.phase = Phase::Confirmed { approved: true };
                }
            }
            Event::Deny => {
                if let Phase::Confirmed { .. } = self.phase {
                    self.go(now, Phase::Cancelled);
                    out.push(Command::Resolve {
                        summary: format!("{}: shadowing denied by an operator", self.target),
                    });
                }
            }
            Event::Done(a) => self.on_done(now, *a, policy, &mut out),
            Event::Failed(a, why) => self.on_failed(now, *a, why, policy, &mut out),
            Event::DeviceFailed => self.on_device_failed(now, &mut out),
            Event::Rollback(reason) => {
                if self.phase.shadow_active() {
                    self.roll_back(now, format!("manual: {reason}"), &mut out);
                }
            }
            Event::Pause => self.paused = true,
            Event::Resume => {
                self.paused = false;
                self.advance(now, policy, &mut out);
            }
        }
        out
    }

    fn on_risk(&mut self, now: Ms, p24h: f64, p7d: f64, policy: &Policy, out: &mut Vec<Command>) {
        let over = p7d >= policy.enter || p24h >= policy.critical;
        match self.phase.clone() {
            Phase::Healthy => {
                if over {
                    self.pending = None;
                    self.kpi = None;
                    self.go(now, Phase::AtRisk { streak: 0 });
                    self.on_risk(now, p24h, p7d, policy, out);
                }
            }
            // An ended lifecycle re-arms only once the risk is under `exit`
            // (see `rearmed`).
            Phase::Cancelled | Phase::RolledBack { .. } | Phase::Promoted => {
                if p7d < policy.exit && p24h < policy.critical {
                    self.rearmed = true;
                } else if over && self.rearmed {
                    self.pending = None;
                    self.kpi = None;
                    self.go(now, Phase::AtRisk { streak: 0 });
                    self.on_risk(now, p24h, p7d, policy, out);
                }
            }
            Phase::AtRisk { streak } => {
                if p7d < policy.exit && p24h < policy.critical {
                    self.go(now, Phase::Healthy);
                } else if over {
                    let streak = streak + 1;
                    if streak >= policy.confirm || p24h >= policy.critical {
                        self.go(now, Phase::Confirmed { approved: false });
                        let what = if policy.manual_approval {
                            "at risk: shadow needs approval (umbractl approve)"
                        } else {
                            "at risk: shadow planned"
                        };
                        self.page(Severity::Warning, what, out);
                    } else {
                        self.phase = Phase::AtRisk { streak };
                    }
                } else {
                    // Between exit and enter: hysteresis, the streak restarts.
                    self.phase = Phase::AtRisk { streak: 0 };
                }
            }
            Phase::Confirmed { .. } => {
                if p7d < policy.exit && p24h < policy.critical {
                    self.go(now, Phase::Cancelled);
                    self.rearmed = true;
                    out.push(Command::Resolve {
                        summary: format!("{}: risk fell back (P7d={p7d:.2})", self.target),
                    });
                }
            }
            Phase::Provisioning { .. }
            | Phase::Syncing { .. }
            | Phase::Mirroring
            | Phase::Shifting { .. }
            | Phase::Replacing { .. } => {
                if p7d < policy.exit && p24h < policy.critical {
                    self.page(Severity::Info, "risk fell back: cancelling the shadow", out);
                    self.go(now, Phase::Cancelling);
                    self.act(now, Action::Revert, out);
                }
            }
            Phase::FailingOver | Phase::RollingBack { .. } | Phase::Cancelling => {}
        }
    }

    fn on_done(&mut self, now: Ms, a: Action, policy: &Policy, out: &mut Vec<Command>) {
        if self.pending.is_none_or(|(p, _)| p != a) {
            return; // a late or repeated answer
        }
        self.pending = None;
        match (&self.phase, a) {
            (Phase::Provisioning { .. }, Action::Provision) => {
                self.go(now, Phase::Syncing { synced: false });
                self.act(now, Action::Sync, out);
            }
            (Phase::Syncing { .. }, Action::Sync) => {
                self.phase = Phase::Syncing { synced: true };
                self.advance(now, policy, out);
            }
            (Phase::Mirroring, Action::Mirror { .. }) => {}
            (Phase::Shifting { step, .. }, Action::SetWeight { .. }) => {
                let step = *step;
                self.phase = Phase::Shifting {
                    step,
                    applied: true,
                };
                self.since = now; // the dwell counts from when the weight holds
            }
            (Phase::Shifting { .. } | Phase::FailingOver, Action::Promote) => {
                self.go(now, Phase::Promoted);
                out.push(Command::Resolve {
                    summary: format!(
                        "{}: shadow promoted; the old primary is in quarantine",
                        self.target
                    ),
                });
            }
            (Phase::FailingOver, Action::SetWeight { percent: 100 }) => {
                self.act(now, Action::Promote, out);
            }
            (Phase::Replacing { attempt, .. }, Action::Replace) => {
                let attempt = *attempt;
                self.provision(now, attempt, out);
            }
            (Phase::RollingBack { reason }, Action::Revert) => {
                let reason = reason.clone();
                out.push(Command::Resolve {
                    summary: format!("{}: rolled back ({reason})", self.target),
                });
                self.go(now, Phase::RolledBack { reason });
            }
            (Phase::Cancelling, Action::Revert) => {
                // Cancelled because the risk fell under `exit`.
                self.go(now, Phase::Cancelled);
                self.rearmed = true;
                out.push(Command::Resolve {
                    summary: format!("{}: shadow cancelled, risk fell back", self.target),
                });
            }
            _ => {}
        }
    }

    fn on_failed(
        &mut self,
        now: Ms,
        a: Action,
        why: &str,
        policy: &Policy,
        out: &mut Vec<Command>,
    ) {
        if self.pending.is_none_or(|(p, _)| p != a) {
            return;
        }
        self.pending = None;
        match &self.phase {
            Phase::Provisioning { attempt } if *attempt <= policy.spare_retries => {
                // Self-healing: another spare.
                let attempt = attempt + 1;
                self.page(
                    Severity::Warning,
                    &format!("provisioning failed ({why}); trying another spare"),
                    out,
                );
                self.provision(now, attempt, out);
            }
            Phase::RollingBack { .. } | Phase::Cancelling | Phase::Replacing { .. } => {
                // Reverting failed: keep trying, and make sure a human knows.
                self.page(
                    Severity::Critical,
                    &format!("revert failed: {why}; retrying"),
                    out,
                );
                self.act(now, a, out);
            }
            Phase::FailingOver => {
                self.page(Severity::Critical, &format!("failover failed: {why}"), out);
                self.act(now, a, out);
            }
            Phase::Provisioning { .. } => {
                self.roll_back(now, format!("{a:?} failed: {why}"), out);
            }
            _ if self.phase.holds_spare() => {
                self.shadow_failed(now, format!("{a:?} failed: {why}"), policy, out);
            }
            _ => {}
        }
    }

    fn on_device_failed(&mut self, now: Ms, out: &mut Vec<Command>) {
        match self.phase {
            Phase::Mirroring | Phase::Shifting { .. } => {
                self.page(
                    Severity::Critical,
                    "device failed: failing over to the shadow now",
                    out,
                );
                self.go(now, Phase::FailingOver);
                self.act(now, Action::SetWeight { percent: 100 }, out);
            }
            Phase::FailingOver | Phase::Promoted => {}
            _ => self.page(
                Severity::Critical,
                &format!("device failed with no shadow ready ({})", self.phase.name()),
                out,
            ),
        }
    }

    /// Progress that depends on time and KPIs only.
    fn advance(&mut self, now: Ms, policy: &Policy, out: &mut Vec<Command>) {
        if self.paused || self.pending.is_some() {
            return;
        }
        match self.phase {
            Phase::Syncing { synced: true }
                if self
                    .kpi
                    .is_some_and(|(_, k)| k.lag_ms <= policy.kpi.max_lag_ms) =>
            {
                self.go(now, Phase::Mirroring);
                let percent = policy.mirror_percent;
                self.act(now, Action::Mirror { percent }, out);
            }
            Phase::Mirroring if self.ready(now, policy) => {
                self.go(
                    now,
                    Phase::Shifting {
                        step: 0,
                        applied: false,
                    },
                );
                let percent = policy.ramp[0];
                self.act(now, Action::SetWeight { percent }, out);
            }
            Phase::Shifting {
                step,
                applied: true,
            } => {
                if !self.ready(now, policy) {
                    return;
                }
                if step + 1 < policy.ramp.len() {
                    self.go(
                        now,
                        Phase::Shifting {
                            step: step + 1,
                            applied: false,
                        },
                    );
                    let percent = policy.ramp[step + 1];
                    self.act(now, Action::SetWeight { percent }, out);
                } else {
                    self.act(now, Action::Promote, out);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
