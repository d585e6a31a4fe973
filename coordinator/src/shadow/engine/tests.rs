//! Lifecycle tests: the happy path step by step, hysteresis, rollback,
//! approval, timeouts, failover, cancel, pause; a property test over random
//! event sequences for the invariants the executors rely on.

use super::*;
use proptest::prelude::*;

fn policy() -> Policy {
    Policy {
        confirm: 2,
        min_dwell_ms: 1_000,
        action_timeout_ms: 60_000,
        ..Policy::default()
    }
}

fn good() -> Kpi {
    Kpi {
        requests: 1_000,
        error_rate: 0.0,
        p99_ms: 20.0,
        lag_ms: 10.0,
        mismatch_rate: 0.0,
        primary_p99_ms: 0.0,
    }
}

/// Feed events at increasing times; collect the actions.
struct Run {
    lc: Lifecycle,
    p: Policy,
    now: Ms,
    actions: Vec<Action>,
    pages: Vec<Command>,
}

impl Run {
    fn new(p: Policy) -> Run {
        Run {
            lc: Lifecycle::new("db-17", 0),
            p,
            now: 0,
            actions: vec![],
            pages: vec![],
        }
    }
    fn at(&mut self, dt: Ms, ev: Event) -> Vec<Command> {
        self.now += dt;
        let out = self.lc.on_event(self.now, &ev, &self.p);
        for c in &out {
            match c {
                Command::Do(a) => self.actions.push(*a),
                other => self.pages.push(other.clone()),
            }
        }
        out
    }
    fn risk(&mut self, p7d: f64) -> Vec<Command> {
        self.at(
            60_000,
            Event::Risk {
                p24h: p7d / 10.0,
                p7d,
            },
        )
    }
    /// Acknowledge whatever is pending.
    fn done(&mut self) -> Vec<Command> {
        let (a, _) = self.lc.pending.expect("something pending");
        self.at(100, Event::Done(a))
    }
    fn confirmed_and_started(&mut self) {
        self.risk(0.8);
        self.risk(0.8);
        assert_eq!(self.lc.phase, Phase::Confirmed { approved: false });
        self.at(10, Event::Start);
    }
    /// Started, provisioned, synced (a lag sample), mirror on.
    fn mirroring(&mut self) {
        self.confirmed_and_started();
        self.done(); // provisioned
        self.done(); // synced
        self.at(100, Event::Kpi(good()));
        self.done(); // mirror on
        assert_eq!(self.lc.phase, Phase::Mirroring);
    }
}

#[test]
fn the_default_policy_is_valid_and_broken_ones_are_refused() {
    assert_eq!(Policy::default().validate(), Ok(()));
    for bad in [
        Policy {
            exit: 0.6,
            ..Policy::default()
        },
        Policy {
            ramp: vec![10, 50],
            ..Policy::default()
        },
        Policy {
            ramp: vec![50, 25, 100],
            ..Policy::default()
        },
        Policy {
            ramp: vec![0, 100],
            ..Policy::default()
        },
        Policy {
            mirror_percent: 0,
            ..Policy::default()
        },
        Policy {
            confirm: 0,
            ..Policy::default()
        },
        Policy {
            enter: f64::NAN,
            ..Policy::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn a_confirmed_risk_walks_the_ramp_to_promotion_with_kpi_gates() {
    let mut r = Run::new(policy());
    r.confirmed_and_started();
    assert_eq!(r.lc.phase, Phase::Provisioning { attempt: 1 });
    r.done(); // provisioned → sync
    r.done(); // initial sync done; waits for a lag sample
    assert_eq!(r.lc.phase, Phase::Syncing { synced: true });
    r.at(100, Event::Kpi(good()));
    assert_eq!(r.lc.phase, Phase::Mirroring);
    r.done(); // mirror on
              // Dwell not over yet: a healthy sample does not move it.
    r.at(100, Event::Kpi(good()));
    assert_eq!(r.lc.phase, Phase::Mirroring);
    r.at(1_000, Event::Kpi(good()));
    for (i, pct) in [10u8, 25, 50, 100].into_iter().enumerate() {
        assert_eq!(
            r.lc.phase,
            Phase::Shifting {
                step: i,
                applied: false
            }
        );
        assert_eq!(
            r.lc.pending.map(|p| p.0),
            Some(Action::SetWeight { percent: pct })
        );
        r.done();
        // A sample from before the weight held does not count; one after the dwell does.
        r.at(10, Event::Tick);
        assert!(r.lc.pending.is_none());
        r.at(1_000, Event::Kpi(good()));
    }
    assert_eq!(r.lc.pending.map(|p| p.0), Some(Action::Promote));
    let out = r.done();
    assert_eq!(r.lc.phase, Phase::Promoted);
    assert!(
        matches!(out.last(), Some(Command::Resolve { .. })),
        "{out:?}"
    );
    assert_eq!(
        r.actions,
        [
            Action::Provision,
            Action::Sync,
            Action::Mirror { percent: 5 },
            Action::SetWeight { percent: 10 },
            Action::SetWeight { percent: 25 },
            Action::SetWeight { percent: 50 },
            Action::SetWeight { percent: 100 },
            Action::Promote,
        ]
    );
}

#[test]
fn one_spike_does_not_confirm_and_the_band_between_exit_and_enter_holds() {
    let mut r = Run::new(policy());
    r.risk(0.9);
    assert_eq!(r.lc.phase, Phase::AtRisk { streak: 1 });
    r.risk(0.4); // between exit 0.3 and enter 0.5: no longer rising, not healthy
    assert_eq!(r.lc.phase, Phase::AtRisk { streak: 0 });
    r.risk(0.9);
    assert_eq!(r.lc.phase, Phase::AtRisk { streak: 1 });
    r.risk(0.1);
    assert_eq!(r.lc.phase, Phase::Healthy);
    assert!(r.pages.is_empty() && r.actions.is_empty());
    // A critical 24 h risk confirms at once.
    r.at(
        1,
        Event::Risk {
            p24h: 0.7,
            p7d: 0.9,
        },
    );
    assert_eq!(r.lc.phase, Phase::Confirmed { approved: false });
}

#[test]
fn a_kpi_regression_during_the_shift_rolls_back() {
    let mut r = Run::new(Policy {
        spare_retries: 0,
        ..policy()
    });
    r.mirroring();
    r.at(1_000, Event::Kpi(good()));
    r.done(); // 10 % holds
    r.at(1_000, Event::Kpi(good()));
    r.done(); // 25 % holds
    let out = r.at(
        500,
        Event::Kpi(Kpi {
            error_rate: 0.02,
            ..good()
        }),
    );
    assert!(
        matches!(r.lc.phase, Phase::RollingBack { ref reason } if reason.contains("error rate"))
    );
    assert_eq!(out.last(), Some(&Command::Do(Action::Revert)));
    r.done();
    assert!(matches!(r.lc.phase, Phase::RolledBack { .. }));
    assert!(
        matches!(r.pages.last(), Some(Command::Resolve { summary }) if summary.contains("rolled back"))
    );
    // A NaN latency is a regression, not a pass.
    let mut r2 = Run::new(Policy {
        spare_retries: 0,
        ..policy()
    });
    r2.confirmed_and_started();
    r2.done();
    r2.done();
    r2.at(100, Event::Kpi(good()));
    r2.at(
        1,
        Event::Kpi(Kpi {
            p99_ms: f64::NAN,
            ..good()
        }),
    );
    assert!(matches!(r2.lc.phase, Phase::RollingBack { .. }));
}

#[test]
fn replication_lag_holds_progress_without_rolling_back() {
    let mut r = Run::new(policy());
    r.confirmed_and_started();
    r.done();
    r.done();
    let lagging = Kpi {
        lag_ms: 5_000.0,
        ..good()
    };
    r.at(100, Event::Kpi(lagging));
    assert_eq!(r.lc.phase, Phase::Syncing { synced: true });
    r.at(100, Event::Kpi(good()));
    r.done();
    r.at(1_000, Event::Kpi(lagging));
    assert_eq!(r.lc.phase, Phase::Mirroring, "no shift while lagging");
    r.at(1_000, Event::Kpi(good()));
    assert_eq!(
        r.lc.phase,
        Phase::Shifting {
            step: 0,
            applied: false
        }
    );
}

#[test]
fn manual_approval_waits_and_a_denial_ends_it() {
    let mut r = Run::new(Policy {
        manual_approval: true,
        ..policy()
    });
    r.confirmed_and_started();
    assert_eq!(
        r.lc.phase,
        Phase::Confirmed { approved: false },
        "no approval yet"
    );
    assert!(r.actions.is_empty());
    assert!(
        matches!(&r.pages[0], Command::Page { summary, .. } if summary.contains("umbractl approve"))
    );
    r.at(1, Event::Approve);
    r.at(1, Event::Start);
    assert_eq!(r.actions, [Action::Provision]);

    let mut d = Run::new(Policy {
        manual_approval: true,
        ..policy()
    });
    d.confirmed_and_started();
    d.at(1, Event::Deny);
    assert_eq!(d.lc.phase, Phase::Cancelled);
    assert!(d.actions.is_empty());
}

#[test]
fn failed_provisioning_tries_other_spares_then_rolls_back_and_timeouts_count_as_failures() {
    let mut r = Run::new(policy()); // spare_retries 2
    r.confirmed_and_started();
    r.at(
        10,
        Event::Failed(Action::Provision, "BMC refused power on".into()),
    );
    assert_eq!(r.lc.phase, Phase::Provisioning { attempt: 2 });
    // Nobody answers: the timeout fails it.
    r.at(60_000, Event::Tick);
    assert_eq!(r.lc.phase, Phase::Provisioning { attempt: 3 });
    r.at(10, Event::Failed(Action::Provision, "no spare".into()));
    assert!(matches!(r.lc.phase, Phase::RollingBack { .. }));
    assert_eq!(
        r.actions,
        [
            Action::Provision,
            Action::Provision,
            Action::Provision,
            Action::Revert
        ]
    );
    // A late answer to an action no longer pending changes nothing.
    r.at(10, Event::Done(Action::Provision));
    assert!(matches!(r.lc.phase, Phase::RollingBack { .. }));
}

#[test]
fn a_device_failure_with_a_synced_shadow_fails_over_at_once() {
    let mut r = Run::new(policy());
    r.mirroring();
    r.at(1_000, Event::Kpi(good()));
    r.done(); // 10 %
    r.at(5, Event::DeviceFailed);
    assert_eq!(r.lc.phase, Phase::FailingOver);
    assert_eq!(
        r.lc.pending.map(|p| p.0),
        Some(Action::SetWeight { percent: 100 })
    );
    r.done();
    r.done();
    assert_eq!(r.lc.phase, Phase::Promoted);
    assert!(r.pages.iter().any(|p| matches!(
        p,
        Command::Page {
            severity: Severity::Critical,
            ..
        }
    )));

    // Too early: a page, no action.
    let mut e = Run::new(policy());
    e.confirmed_and_started();
    let before = e.actions.len();
    e.at(5, Event::DeviceFailed);
    assert_eq!(e.actions.len(), before);
    assert!(
        matches!(e.pages.last(), Some(Command::Page { severity: Severity::Critical, summary }) if summary.contains("no shadow ready"))
    );
}

#[test]
fn a_risk_that_falls_back_cancels_the_shadow() {
    let mut r = Run::new(policy());
    r.mirroring();
    r.risk(0.4); // inside the band: keeps going
    assert_eq!(r.lc.phase, Phase::Mirroring);
    r.risk(0.1);
    assert_eq!(r.lc.phase, Phase::Cancelling);
    r.done();
    assert_eq!(r.lc.phase, Phase::Cancelled);
    assert_eq!(r.actions.last(), Some(&Action::Revert));
    // A new risk later starts a new lifecycle.
    r.risk(0.9);
    assert_eq!(r.lc.phase, Phase::AtRisk { streak: 1 });
}

#[test]
fn pause_holds_the_ramp_and_resume_continues() {
    let mut r = Run::new(policy());
    r.mirroring();
    r.at(1, Event::Pause);
    r.at(5_000, Event::Kpi(good()));
    assert_eq!(r.lc.phase, Phase::Mirroring);
    r.at(1, Event::Resume);
    assert_eq!(
        r.lc.phase,
        Phase::Shifting {
            step: 0,
            applied: false
        }
    );
}

#[test]
fn the_state_survives_a_restart_mid_lifecycle() {
    let mut r = Run::new(policy());
    r.confirmed_and_started();
    r.done();
    let saved = serde_json::to_string(&r.lc).unwrap();
    let restored: Lifecycle = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored, r.lc);
    // The executor repeats the pending action after the restart; the answer
    // lands in the restored state.
    assert_eq!(restored.pending.map(|p| p.0), Some(Action::Sync));
}

fn arb_event() -> impl Strategy<Value = Event> {
    let action = prop_oneof![
        Just(Action::Provision),
        Just(Action::Sync),
        Just(Action::Mirror { percent: 5 }),
        (0usize..4).prop_map(|i| Action::SetWeight {
            percent: [10, 25, 50, 100][i]
        }),
        Just(Action::Promote),
        Just(Action::Revert),
        Just(Action::Replace),
    ];
    prop_oneof![
        (0.0f64..1.0, 0.0f64..1.0).prop_map(|(a, b)| Event::Risk {
            p24h: a * 0.6,
            p7d: b
        }),
        Just(Event::Risk {
            p24h: 0.1,
            p7d: 0.9
        }),
        Just(Event::Start),
        Just(Event::Start),
        Just(Event::Approve),
        Just(Event::Deny),
        action.clone().prop_map(Event::Done),
        action.prop_map(|a| Event::Failed(a, "x".into())),
        // Mostly healthy samples, or the ramp would rarely get far.
        Just(Event::Kpi(good())),
        Just(Event::Kpi(good())),
        Just(Event::Kpi(good())),
        (0u64..2000, 0.0f64..0.01, 0.0f64..900.0, 0.0f64..3000.0).prop_map(|(n, e, p, l)| {
            Event::Kpi(Kpi {
                requests: n,
                error_rate: e,
                p99_ms: p,
                lag_ms: l,
                mismatch_rate: 0.0,
                primary_p99_ms: 0.0,
            })
        }),
        Just(Event::DeviceFailed),
        Just(Event::Rollback("op".into())),
        Just(Event::Pause),
        Just(Event::Resume),
        Just(Event::Tick),
    ]
}

proptest! {
    /// Whatever happens: weights only rise until a revert; the shadow gets
    /// traffic only after mirroring was on; promotion only after 100 % (or a
    /// failover); replaying the same events gives the same commands.
    #[test]
    fn invariants_hold_and_replay_is_exact(events in proptest::collection::vec((1i64..5_000, arb_event(), 0u8..4), 1..300)) {
        let p = policy();
        let mut lc = Lifecycle::new("t", 0);
        let mut twin = Lifecycle::new("t", 0);
        let (mut now, mut weight, mut mirrored, mut full) = (0, 0u8, false, false);
        for (dt, ev, answer) in &events {
            now += dt;
            // Half the time, the executor answers what is pending (success
            // mostly): random answers alone would rarely get past provisioning.
            let ev = match (answer, lc.pending) {
                (0 | 1, Some((a, _))) => Event::Done(a),
                (2, Some((a, _))) if *dt % 7 == 0 => Event::Failed(a, "x".into()),
                _ => ev.clone(),
            };
            let ev = &ev;
            let out = lc.on_event(now, ev, &p);
            prop_assert_eq!(&out, &twin.on_event(now, ev, &p));
            for c in &out {
                if let Command::Do(a) = c {
                    match a {
                        Action::Mirror { .. } => mirrored = true,
                        Action::SetWeight { percent } => {
                            let failover = lc.phase == Phase::FailingOver;
                            prop_assert!(mirrored || failover, "traffic before mirroring");
                            prop_assert!(*percent >= weight, "weight fell from {} to {}", weight, percent);
                            weight = *percent;
                            full |= *percent == 100;
                        }
                        Action::Promote => prop_assert!(full, "promoted below 100 %"),
                        Action::Revert | Action::Replace => { weight = 0; mirrored = false; full = false; }
                        Action::Provision => { weight = 0; mirrored = false; full = false; }
                        Action::Sync => {}
                    }
                }
            }
            if lc.phase.is_final() || lc.phase == Phase::Healthy {
                prop_assert!(lc.pending.is_none(), "{:?} with {:?} pending", lc.phase, lc.pending);
            }
        }
    }
}

#[test]
fn a_denied_target_is_not_retried_or_repaged_until_its_risk_falls() {
    let mut r = Run::new(Policy {
        manual_approval: true,
        ..policy()
    });
    r.risk(0.8);
    r.risk(0.8);
    assert_eq!(r.lc.phase, Phase::Confirmed { approved: false });
    let out = r.at(10, Event::Deny);
    assert_eq!(r.lc.phase, Phase::Cancelled);
    assert!(
        matches!(out.as_slice(), [Command::Resolve { .. }]),
        "{out:?}"
    );
    // The same risk persists: no new lifecycle, no page.
    for _ in 0..5 {
        assert!(r.risk(0.8).is_empty());
        assert_eq!(r.lc.phase, Phase::Cancelled);
    }
    // It falls under exit, then rises again: a new lifecycle.
    r.risk(0.1);
    assert_eq!(r.lc.phase, Phase::Cancelled);
    r.risk(0.8);
    assert_eq!(r.lc.phase, Phase::AtRisk { streak: 1 });
    // The restarted lifecycle state round-trips, including older records
    // written before `rearmed` existed.
    let mut v = serde_json::to_value(&r.lc).unwrap();
    v.as_object_mut().unwrap().remove("rearmed");
    let old: Lifecycle = serde_json::from_value(v).unwrap();
    assert!(!old.rearmed);
}

/// Self-healing: a shadow that fails after provisioning (its KPIs regress
/// while it carries traffic, or an action fails) is taken out of service
/// and another spare provisioned, which walks the whole ramp again; once
/// `spare_retries` spares have failed, the lifecycle rolls back.
#[test]
fn a_failed_shadow_is_replaced_by_another_spare_until_the_retries_run_out() {
    let mut r = Run::new(Policy {
        spare_retries: 1,
        ..policy()
    });
    r.mirroring();
    r.at(1_000, Event::Kpi(good()));
    r.done(); // 10 % holds
    let out = r.at(
        1_000,
        Event::Kpi(Kpi {
            p99_ms: 2_000.0,
            ..good()
        }),
    );
    // Traffic leaves the failed shadow first; the next spare follows.
    assert!(
        matches!(r.lc.phase, Phase::Replacing { attempt: 2, ref reason } if reason.contains("p99")),
        "{:?}",
        r.lc.phase
    );
    assert_eq!(out.last(), Some(&Command::Do(Action::Replace)));
    assert!(
        matches!(&out[0], Command::Page { summary, .. } if summary.contains("replacing it")),
        "{out:?}"
    );
    // Nothing moves while the failed shadow is being taken out.
    r.at(5_000, Event::Kpi(good()));
    assert!(matches!(r.lc.phase, Phase::Replacing { .. }));
    r.done();
    assert_eq!(r.lc.phase, Phase::Provisioning { attempt: 2 });
    assert_eq!(r.lc.attempt, 2);
    // The second shadow starts from the beginning: sync, mirror, ramp.
    r.done();
    r.done();
    r.at(100, Event::Kpi(good()));
    assert_eq!(r.lc.phase, Phase::Mirroring);
    r.done();
    // Its mirrored traffic fails: no retries left, so it rolls back.
    r.at(
        1_000,
        Event::Kpi(Kpi {
            error_rate: 0.5,
            ..good()
        }),
    );
    assert!(matches!(r.lc.phase, Phase::RollingBack { .. }));
    r.done();
    assert!(matches!(r.lc.phase, Phase::RolledBack { .. }));
    assert_eq!(
        r.actions,
        [
            Action::Provision,
            Action::Sync,
            Action::Mirror { percent: 5 },
            Action::SetWeight { percent: 10 },
            Action::Replace,
            Action::Provision,
            Action::Sync,
            Action::Mirror { percent: 5 },
            Action::Revert,
        ]
    );

    // A failed action (not a KPI) is a failed shadow too; a failed
    // Replace is retried as such, and a risk that falls back while
    // replacing cancels instead of provisioning again.
    let mut r = Run::new(policy());
    r.confirmed_and_started();
    r.done();
    r.at(
        10,
        Event::Failed(Action::Sync, "rsync: connection refused".into()),
    );
    assert!(matches!(r.lc.phase, Phase::Replacing { attempt: 2, .. }));
    r.at(10, Event::Failed(Action::Replace, "BMC timeout".into()));
    assert_eq!(r.lc.pending.map(|p| p.0), Some(Action::Replace));
    r.at(
        10,
        Event::Risk {
            p24h: 0.0,
            p7d: 0.1,
        },
    );
    assert_eq!(r.lc.phase, Phase::Cancelling);
    assert_eq!(r.lc.pending.map(|p| p.0), Some(Action::Revert));
    // The late answer of the superseded Replace does not provision.
    r.at(10, Event::Done(Action::Replace));
    assert_eq!(r.lc.phase, Phase::Cancelling);
    r.done();
    assert_eq!(r.lc.phase, Phase::Cancelled);
    // A manual rollback is not a failed shadow: no replacement.
    let mut r = Run::new(policy());
    r.confirmed_and_started();
    r.done();
    r.at(10, Event::Rollback("operator says no".into()));
    assert!(matches!(r.lc.phase, Phase::RollingBack { .. }));
}

/// Shadow count by risk: standby spares by the highest tier the latest
/// P(24 h) reaches, only while a shadow is on its way or serving.
#[test]
fn standby_spares_scale_with_the_risk_while_a_shadow_is_active() {
    let p = Policy {
        standby: vec![
            StandbyTier {
                p24h: 0.3,
                spares: 1,
            },
            StandbyTier {
                p24h: 0.7,
                spares: 2,
            },
        ],
        ..policy()
    };
    assert_eq!(p.validate(), Ok(()));
    assert_eq!(
        (p.standby_for(0.1), p.standby_for(0.3), p.standby_for(0.9)),
        (0, 1, 2)
    );
    let mut r = Run::new(p);
    r.at(
        10,
        Event::Risk {
            p24h: 0.8,
            p7d: 0.9,
        },
    );
    // At risk, confirmed: nothing provisioned yet, no standby either.
    assert_eq!(r.lc.standby_wanted(&r.p), 0);
    r.at(10, Event::Start);
    assert_eq!(r.lc.phase, Phase::Provisioning { attempt: 1 });
    assert_eq!(r.lc.standby_wanted(&r.p), 2);
    r.done();
    r.at(
        10,
        Event::Risk {
            p24h: 0.4,
            p7d: 0.9,
        },
    );
    assert_eq!(r.lc.standby_wanted(&r.p), 1);
    // Promoted: the standbys go.
    r.lc.phase = Phase::Promoted;
    assert_eq!(r.lc.standby_wanted(&r.p), 0);
    // A tier that makes no sense is refused.
    let bad = Policy {
        standby: vec![StandbyTier {
            p24h: 1.5,
            spares: 1,
        }],
        ..policy()
    };
    assert!(bad.validate().is_err());
}

/// Mirrored answers are judged against the primary's: a shadow that
/// answers differently, or much slower than the primary on the same
/// requests (once over the floor), fails its mirroring; sub-floor noise
/// and a primary as slow as the shadow do not.
#[test]
fn mirroring_is_judged_against_the_primary() {
    let verdict = |k: Kpi| {
        let mut r = Run::new(Policy {
            spare_retries: 0,
            ..policy()
        });
        r.mirroring();
        r.at(100, Event::Kpi(k));
        match &r.lc.phase {
            Phase::RollingBack { reason } => reason.clone(),
            other => other.name().to_owned(),
        }
    };
    assert_eq!(verdict(good()), "mirroring");
    let differ = verdict(Kpi {
        mismatch_rate: 0.05,
        ..good()
    });
    assert!(differ.contains("differ from the primary"), "{differ}");
    // 20 ms against the primary's 2 ms: ten times, but under the floor.
    assert_eq!(
        verdict(Kpi {
            p99_ms: 20.0,
            primary_p99_ms: 2.0,
            ..good()
        }),
        "mirroring"
    );
    let slow = verdict(Kpi {
        p99_ms: 400.0,
        primary_p99_ms: 100.0,
        ..good()
    });
    assert!(slow.contains("the primary's 100 ms"), "{slow}");
    // The primary is as slow: not the shadow's regression.
    assert_eq!(
        verdict(Kpi {
            p99_ms: 400.0,
            primary_p99_ms: 300.0,
            ..good()
        }),
        "mirroring"
    );
}
