//! Execute mode: carry out what the engine decides.
//!
//! The engine records the action it waits for in its lifecycle
//! (`pending`), and lifecycles are persisted. [`Executor::pass`] runs every
//! pending action not already running with an [`Actuator`] (each in its
//! own task, so one slow BMC does not hold the others), feeds the outcome
//! back as `Done`/`Failed`, samples KPIs of lifecycles that replicate or
//! carry traffic, and ticks every active lifecycle so dwell times pass and
//! unanswered actions time out. The decisions stay in the engine. Between
//! actions it reconciles each lifecycle's hot standby spares to the count
//! the engine wants ([`Actuator::standby`]), one thing at a time per
//! target, again after every action (an action may use a standby).
//!
//! Restart: a lifecycle persisted with a pending action has it run again
//! by the next process's first pass. That is safe because every action is
//! state-based (provisioning a spare already up on its image, setting an
//! absolute weight, reverting an already reverted shadow: each changes
//! nothing the second time); an outcome for an action the lifecycle no
//! longer waits for is ignored by the engine.

use super::engine::{Action, Event, Kpi, Ms, Phase};
use super::runtime::{apply, Settings, Shadows};
use crate::paging::Pagers;
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Carries out actions on real systems for one target (host).
pub trait Actuator: Send + Sync + 'static {
    /// Do `action` for `target`. Must be state-based: repeating it after a
    /// restart (or a lost answer) is harmless. `attempt` is the
    /// lifecycle's spare attempt (each retry picks another spare).
    fn act(
        &self,
        target: &str,
        action: Action,
        attempt: u32,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Keep `count` hot standby spares provisioned for `target` (releasing
    /// any beyond it). State-based; `Ok(true)` once the standbys match,
    /// `Ok(false)` when it cannot be done yet (no shadow chosen). Where
    /// standby spares are not supported, nothing to do.
    fn standby(
        &self,
        target: &str,
        count: u8,
    ) -> impl Future<Output = Result<bool, String>> + Send {
        let _ = (target, count);
        async { Ok(true) }
    }

    /// The target's KPIs since the previous sample in `phase` (mirrored
    /// or live traffic of the shadow, replication lag); `None` when there
    /// is nothing to measure yet.
    fn kpi(
        &self,
        target: &str,
        phase: &Phase,
    ) -> impl Future<Output = Result<Option<Kpi>, String>> + Send;
}

/// Runs the actions of every lifecycle (execute mode).
pub struct Executor<A> {
    store: Arc<Store>,
    shadows: Arc<Shadows>,
    settings: Settings,
    actuator: Arc<A>,
    pagers: Arc<Pagers>,
    /// Targets whose action (or standby reconciliation) is running in
    /// this process: one at a time per target.
    running: Mutex<BTreeSet<String>>,
    /// Standby counts reconciled in this process, per target.
    standby: Mutex<BTreeMap<String, u8>>,
}

fn now() -> Ms {
    crate::now_ms()
}

impl<A: Actuator> Executor<A> {
    pub fn new(
        store: Arc<Store>,
        shadows: Arc<Shadows>,
        settings: Settings,
        actuator: Arc<A>,
        pagers: Arc<Pagers>,
    ) -> Arc<Executor<A>> {
        Arc::new(Executor {
            store,
            shadows,
            settings,
            actuator,
            pagers,
            running: Mutex::default(),
            standby: Mutex::default(),
        })
    }

    async fn feed(&self, target: &str, started: Option<(Action, Ms)>, event: Event) {
        let res = {
            let (store, shadows, settings) = (&self.store, &self.shadows, &self.settings);
            apply(store, shadows, settings, target, started, &event, now())
        };
        match res {
            Ok(notices) if !notices.is_empty() => {
                let out = super::runtime::Output {
                    notices,
                    refresh: Vec::new(),
                };
                crate::risk::deliver(&self.store, &self.shadows, &self.pagers, out).await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(%target, error = %e, "recording a shadow event failed"),
        }
    }

    /// One pass over every lifecycle; returns the tasks started for
    /// pending actions (tests wait for them).
    pub async fn pass(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let lifecycles = self.shadows.snapshot().lifecycles;
        let mut started = Vec::new();
        for (target, lc) in lifecycles {
            if lc.paused {
                continue;
            }
            let running = self.running.lock().expect("poisoned").contains(&target);
            if let Some((action, since)) = lc.pending {
                if !running {
                    self.running
                        .lock()
                        .expect("poisoned")
                        .insert(target.clone());
                    let attempt = lc.attempt;
                    // An action may change what the standbys are (a
                    // standby that becomes the shadow): reconcile after it.
                    self.standby.lock().expect("poisoned").remove(&target);
                    let (me, target) = (self.clone(), target.clone());
                    started.push(tokio::spawn(async move {
                        let outcome = me.actuator.act(&target, action, attempt).await;
                        let event = match outcome {
                            Ok(()) => Event::Done(action),
                            Err(why) => Event::Failed(action, why),
                        };
                        me.feed(&target, Some((action, since)), event).await;
                        me.running.lock().expect("poisoned").remove(&target);
                    }));
                }
            } else if !running {
                self.reconcile_standby(
                    &target,
                    lc.standby_wanted(&self.settings.policy),
                    &mut started,
                );
            }
            if lc.pending.is_none()
                && matches!(
                    lc.phase,
                    Phase::Syncing { synced: true }
                        | Phase::Mirroring
                        | Phase::Shifting { applied: true, .. }
                )
            {
                match self.actuator.kpi(&target, &lc.phase).await {
                    Ok(Some(k)) => self.feed(&target, None, Event::Kpi(k)).await,
                    Ok(None) => {}
                    Err(why) => tracing::warn!(%target, %why, "KPI sample failed"),
                }
            }
            if !running && !lc.phase.ended() {
                self.feed(&target, None, Event::Tick).await;
            }
        }
        started
    }

    /// Start bringing `target`'s standby spares to `want` unless that is
    /// what this process last reconciled (after a restart, once each).
    fn reconcile_standby(
        self: &Arc<Self>,
        target: &str,
        want: u8,
        started: &mut Vec<tokio::task::JoinHandle<()>>,
    ) {
        if self.standby.lock().expect("poisoned").get(target) == Some(&want) {
            return;
        }
        self.running
            .lock()
            .expect("poisoned")
            .insert(target.to_owned());
        let (me, target) = (self.clone(), target.to_owned());
        started.push(tokio::spawn(async move {
            match me.actuator.standby(&target, want).await {
                Ok(true) => {
                    me.standby
                        .lock()
                        .expect("poisoned")
                        .insert(target.clone(), want);
                }
                Ok(false) => {}
                Err(why) => tracing::warn!(%target, want, %why, "standby spares"),
            }
            me.running.lock().expect("poisoned").remove(&target);
        }));
    }

    /// A pass every `every` until the task is dropped.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            drop(self.pass().await);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::engine::Policy;
    use crate::shadow::rails::Rails;
    use crate::shadow::runtime::Mode;

    /// Records actions; fails the first provisioning attempt; reports
    /// healthy traffic KPIs.
    #[derive(Default)]
    struct Recorder {
        done: Mutex<Vec<(String, Action, u32)>>,
        fail_first_provision: bool,
    }

    impl Actuator for Recorder {
        async fn act(&self, target: &str, action: Action, attempt: u32) -> Result<(), String> {
            self.done
                .lock()
                .unwrap()
                .push((target.to_owned(), action, attempt));
            if self.fail_first_provision && action == Action::Provision && attempt == 1 {
                return Err("BMC of spare-1 unreachable".into());
            }
            Ok(())
        }
        async fn kpi(&self, _: &str, _: &Phase) -> Result<Option<Kpi>, String> {
            Ok(Some(Kpi {
                requests: 500,
                error_rate: 0.0,
                p99_ms: 20.0,
                lag_ms: 0.0,
                mismatch_rate: 0.0,
                primary_p99_ms: 0.0,
            }))
        }
    }

    fn settings() -> Settings {
        Settings {
            mode: Mode::Execute,
            policy: Policy {
                confirm: 1,
                min_dwell_ms: 0,
                ..Policy::default()
            },
            rails: Rails::default(),
            holdout_percent: 0,
            unreachable_after_ms: crate::shadow::runtime::DEFAULT_UNREACHABLE_AFTER_MS,
        }
    }

    fn confirmed(store: &Store, shadows: &Shadows, s: &Settings) {
        let mut h = crate::model::HostRecord {
            host_id: "h1".into(),
            ..Default::default()
        };
        h.failure_domain.rack = "r1".into();
        store.put_host(&h).unwrap();
        for host in ["h2", "h3", "h4"] {
            store
                .put_host(&crate::model::HostRecord {
                    host_id: host.into(),
                    ..Default::default()
                })
                .unwrap();
        }
        let risk = crate::risk::Risk {
            host: "h1".into(),
            component: "disk:a".into(),
            probability: [0.1, 0.9],
            explanation: String::new(),
            model_version: 1,
            evaluated_ms: 0,
            history_days: 1,
            holdout: false,
        };
        for _ in 0..2 {
            let t = crate::now_ms();
            crate::shadow::runtime::step(store, shadows, s, std::slice::from_ref(&risk), t)
                .unwrap();
        }
    }

    /// The store and lifecycles in `dir`, resumed from what is there.
    fn open(dir: &std::path::Path) -> (Arc<Store>, Arc<Shadows>) {
        let store = Arc::new(Store::open(dir, crate::store::StoreConfig::default()).unwrap());
        let shadows = Arc::new(Shadows::load(&store, Mode::Execute).unwrap());
        (store, shadows)
    }

    /// A fresh store in `dir` where h1 is confirmed, admitted and started.
    fn started(dir: &std::path::Path) -> (Arc<Store>, Arc<Shadows>, Settings) {
        let (store, shadows) = open(dir);
        let s = settings();
        confirmed(&store, &shadows, &s);
        (store, shadows, s)
    }

    fn executor(
        store: &Arc<Store>,
        shadows: &Arc<Shadows>,
        s: &Settings,
        actuator: &Arc<Recorder>,
    ) -> Arc<Executor<Recorder>> {
        let pagers = Arc::new(Pagers::new(&crate::paging::PagingConfig::default()).unwrap());
        Executor::new(
            store.clone(),
            shadows.clone(),
            s.clone(),
            actuator.clone(),
            pagers,
        )
    }

    async fn drive_until<A: Actuator>(
        ex: &Arc<Executor<A>>,
        shadows: &Shadows,
        done: impl Fn(&Phase) -> bool,
    ) -> Phase {
        for _ in 0..50 {
            for t in ex.pass().await {
                t.await.unwrap();
            }
            let phase = shadows.snapshot().lifecycles["h1"].phase.clone();
            if done(&phase) {
                return phase;
            }
        }
        shadows.snapshot().lifecycles["h1"].phase.clone()
    }

    #[tokio::test]
    async fn execute_mode_runs_a_lifecycle_to_promotion_and_retries_provisioning() {
        let dir = tempfile::tempdir().unwrap();
        let (store, shadows, s) = started(dir.path());
        let lc = &shadows.snapshot().lifecycles["h1"];
        assert_eq!(
            lc.phase,
            Phase::Provisioning { attempt: 1 },
            "admitted and started"
        );
        let actuator = Arc::new(Recorder {
            fail_first_provision: true,
            ..Recorder::default()
        });
        let ex = executor(&store, &shadows, &s, &actuator);
        let phase = drive_until(&ex, &shadows, |p| p.ended()).await;
        assert_eq!(phase, Phase::Promoted);
        let done: Vec<(Action, u32)> = actuator
            .done
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a, n)| (*a, *n))
            .collect();
        // Every action after the retry is for the second spare.
        let mut want = vec![
            (Action::Provision, 1),
            (Action::Provision, 2),
            (Action::Sync, 2),
        ];
        want.push((
            Action::Mirror {
                percent: s.policy.mirror_percent,
            },
            2,
        ));
        want.extend(
            s.policy
                .ramp
                .iter()
                .map(|&p| (Action::SetWeight { percent: p }, 2)),
        );
        want.push((Action::Promote, 2));
        assert_eq!(done, want);
        let log = store.audit(0, 10_000).unwrap();
        let results: Vec<_> = log
            .iter()
            .filter(|(_, r)| r["event"] == "action_result")
            .collect();
        assert_eq!(results.len(), want.len(), "{results:?}");
        assert_eq!(results[0].1["ok"], false);
        assert!(results[0].1["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"));
        assert!(log
            .iter()
            .any(|(_, r)| r["event"] == "action" && r["executed"] == true));
        assert!(log.iter().all(|(_, r)| r["dry_run"] != true));
    }

    #[tokio::test]
    async fn a_restart_runs_the_pending_action_again_and_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = {
            let (_store, _shadows, s) = started(dir.path());
            // The coordinator dies here: Provision was commanded, never answered.
            s
        };
        let (store, shadows) = open(dir.path());
        let lc = &shadows.snapshot().lifecycles["h1"];
        assert_eq!(
            lc.pending.map(|(a, _)| a),
            Some(Action::Provision),
            "persisted"
        );
        let actuator = Arc::new(Recorder::default());
        let ex = executor(&store, &shadows, &s, &actuator);
        let phase = drive_until(&ex, &shadows, |p| matches!(p, Phase::Shifting { .. })).await;
        assert!(matches!(phase, Phase::Shifting { .. }), "{phase:?}");
        assert_eq!(actuator.done.lock().unwrap()[0].1, Action::Provision);
    }

    #[tokio::test]
    async fn the_late_answer_of_a_timed_out_action_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (store, shadows, s) = started(dir.path());
        let first = shadows.snapshot().lifecycles["h1"].pending.unwrap();
        // No answer within the action timeout: the engine retries elsewhere.
        let later = first.1 + s.policy.action_timeout_ms;
        apply(&store, &shadows, &s, "h1", None, &Event::Tick, later).unwrap();
        let lc = shadows.snapshot().lifecycles["h1"].clone();
        assert_eq!(lc.phase, Phase::Provisioning { attempt: 2 });
        let second = lc.pending.unwrap();
        // Now the first attempt's answer arrives: it must not count for the second.
        let late = Event::Failed(Action::Provision, "BMC timeout".into());
        apply(&store, &shadows, &s, "h1", Some(first), &late, later + 1).unwrap();
        let lc = shadows.snapshot().lifecycles["h1"].clone();
        assert_eq!(
            (lc.phase, lc.pending),
            (Phase::Provisioning { attempt: 2 }, Some(second))
        );
        assert!(store
            .audit(0, 1000)
            .unwrap()
            .iter()
            .any(|(_, r)| r["event"] == "stale_outcome"));
        // The second attempt's own answer does count.
        apply(
            &store,
            &shadows,
            &s,
            "h1",
            Some(second),
            &Event::Done(Action::Provision),
            later + 2,
        )
        .unwrap();
        assert_eq!(
            shadows.snapshot().lifecycles["h1"].phase,
            Phase::Syncing { synced: false }
        );
    }

    #[tokio::test]
    async fn a_confirmed_failure_fails_over_to_a_shadow_carrying_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let (store, shadows, s) = started(dir.path());
        let actuator = Arc::new(Recorder::default());
        let ex = executor(&store, &shadows, &s, &actuator);
        drive_until(&ex, &shadows, |p| {
            matches!(p, Phase::Shifting { step: 1, .. })
        })
        .await;
        let now = crate::now_ms();
        // Heard from recently: nothing to do.
        let mut h = store.host("h1").unwrap().unwrap();
        h.last_seen_ms = now - 1_000;
        store.put_host(&h).unwrap();
        assert!(
            crate::shadow::runtime::device_failures(&store, &shadows, &s, now)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            shadows.snapshot().lifecycles["h1"].phase,
            Phase::Shifting { .. }
        ));
        // Silent for longer than unreachable_after: fail over at once.
        let later = now + s.unreachable_after_ms;
        let pages = crate::shadow::runtime::device_failures(&store, &shadows, &s, later).unwrap();
        assert!(!pages.is_empty(), "the failover is paged");
        assert_eq!(
            shadows.snapshot().lifecycles["h1"].phase,
            Phase::FailingOver
        );
        let phase = drive_until(&ex, &shadows, |p| p.ended()).await;
        assert_eq!(phase, Phase::Promoted);
        let done = actuator.done.lock().unwrap().clone();
        assert!(done
            .iter()
            .any(|(_, a, _)| *a == Action::SetWeight { percent: 100 }));
        let log = store.audit(0, 10_000).unwrap();
        assert!(log.iter().any(|(_, r)| r["event"] == "device_failed"
            && r["reason"].as_str().unwrap().contains("unreachable")));
        // Ended lifecycles get no more DeviceFailed.
        assert!(
            crate::shadow::runtime::device_failures(&store, &shadows, &s, later + 1)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn smart_health_failed_is_a_confirmed_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).unwrap();
        let now = crate::now_ms();
        let host = crate::model::HostRecord {
            host_id: "h9".into(),
            last_seen_ms: now,
            ..Default::default()
        };
        let id = crate::model::SeriesId {
            host: "h9".into(),
            metric: "smart_health_passed".into(),
            component: "disk:wwn-0x5000c500499602d2".into(),
            labels: Default::default(),
        };
        let (key, _) = store.resolve_series(&id, "bool").unwrap();
        let write = |seq: u64, v: f64| {
            store
                .ingest(crate::store::IngestWrite {
                    host: "h9",
                    epoch: 1,
                    sequence: seq,
                    series: vec![(
                        key,
                        vec![crate::model::Sample {
                            ts_ms: now + i64::try_from(seq).unwrap(),
                            value: v,
                            quality: crate::model::Quality::Ok,
                        }],
                    )],
                    host_record: host.clone(),
                    events: Vec::new(),
                })
                .unwrap();
        };
        let check =
            || crate::shadow::runtime::confirmed_failure(&store, &host, 120_000, now + 10).unwrap();
        write(1, 1.0);
        assert_eq!(check(), None);
        write(2, 0.0);
        let why = check().expect("failed");
        assert!(
            why.contains("disk:wwn-0x5000c500499602d2") && why.contains("SMART"),
            "{why}"
        );
    }
}
