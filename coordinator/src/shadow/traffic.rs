//! Drives a lifecycle's traffic phase through a load balancer: carries out
//! the engine's `SetWeight`, `Promote` and `Revert` with the HAProxy
//! executor (and `Sync` with the rsync replicator when there is state),
//! feeds back `Done`/`Failed`, samples the shadow's KPIs every `kpi_every`
//! (requests and 5xx since the last sample from HAProxy's own counters;
//! latency is HAProxy's `rtime`, the mean of the shadow's last 1024
//! responses; replication lag from an rsync pass and dry run), and ticks
//! the engine so dwell times pass. The decisions (when to step, when to
//! roll back) stay in the engine.

use super::engine::{Action, Command, Event, Kpi, Lifecycle, Ms, Phase, Policy};
use crate::actuate::haproxy::{Haproxy, HaproxyError, ServerStats};
use crate::actuate::rsync::{Rsync, RsyncError};
use std::time::{Duration, Instant};

/// When the lifecycle entered each phase (or shift step), from the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub entries: Vec<(Duration, String)>,
}

impl Timeline {
    pub fn first(&self, name: &str) -> Option<Duration> {
        self.entries
            .iter()
            .find(|(_, n)| n == name)
            .map(|(t, _)| *t)
    }
}

fn label(p: &Phase, lb_share: Option<u8>) -> String {
    match (p, lb_share) {
        (Phase::Shifting { .. }, Some(s)) => format!("shifting {s}%"),
        _ => p.name().to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("action {0:?} has no executor in the traffic driver")]
    Unsupported(Action),
    #[error("reading KPIs: {0}")]
    Kpi(HaproxyError),
    #[error("measuring replication lag: {0}")]
    Lag(RsyncError),
    #[error("still {phase} after {waited:?}")]
    Deadline { phase: String, waited: Duration },
}

/// KPIs between two readings of the shadow's counters; `latency_ms` is
/// the caller's estimate of the mean response time (see [`KpiSampler`]).
pub fn kpi_between(before: &ServerStats, after: &ServerStats, latency_ms: f64) -> Kpi {
    let requests = after.responses.saturating_sub(before.responses);
    let errors = after.errors_5xx.saturating_sub(before.errors_5xx)
        + after.failures.saturating_sub(before.failures);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let error_rate = if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    };
    Kpi {
        requests,
        error_rate,
        p99_ms: after.rtime_ms.max(latency_ms),
        // A stateless service: nothing is replicated, so nothing lags. A
        // replication driver supplies this for stateful ones.
        lag_ms: 0.0,
        // HAProxy's counters see the shadow only: nothing is compared.
        mismatch_rate: 0.0,
        primary_p99_ms: 0.0,
    }
}

/// How far back [`KpiSampler`]'s latency estimate looks.
pub const LATENCY_HORIZON: Duration = Duration::from_secs(2);

/// Successive readings of one server's counters turned into KPIs.
///
/// Latency: HAProxy keeps no percentiles, and its `rtime` is the mean of
/// the server's last 1024 responses, which moves slowly once a slow server
/// answers few requests (measured: 30 s to notice a 2 s regression at
/// 50 %). So the gate reads the larger of `rtime` and the mean response
/// time over the last [`LATENCY_HORIZON`] by Little's law: the mean number
/// of requests in flight over the responses per second; requests in flight
/// with no response at all in the horizon have taken at least all of it.
/// (Completions of slow requests come in bursts, so one 250 ms window
/// alone misleads either way.)
#[derive(Debug, Default, Clone)]
pub struct KpiSampler {
    last: Option<ServerStats>,
    /// (when, responses, in flight) within the horizon.
    recent: std::collections::VecDeque<(Instant, u64, u64)>,
}

impl KpiSampler {
    /// The KPIs since the previous reading (`None` for the first, which only
    /// sets the baseline).
    pub fn sample(&mut self, now: ServerStats, at: Instant) -> Option<Kpi> {
        self.recent.push_back((at, now.responses, now.in_flight));
        while self
            .recent
            .front()
            .is_some_and(|(t, _, _)| at.duration_since(*t) > LATENCY_HORIZON)
        {
            self.recent.pop_front();
        }
        let before = self.last.replace(now)?;
        let (t0, r0, _) = *self.recent.front().expect("just pushed");
        let span = at.duration_since(t0).as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let mean_in_flight =
            self.recent.iter().map(|(_, _, n)| *n as f64).sum::<f64>() / self.recent.len() as f64;
        let answered = now.responses.saturating_sub(r0);
        #[allow(clippy::cast_precision_loss)]
        let latency_ms = if mean_in_flight == 0.0 || span == 0.0 {
            0.0
        } else if answered == 0 {
            span * 1000.0
        } else {
            mean_in_flight * span * 1000.0 / answered as f64
        };
        Some(kpi_between(&before, &now, latency_ms))
    }
}

/// Run `commands` (the engine's last output) and whatever follows until
/// `stop` holds for the phase or `deadline` passes. With `replica`, state
/// is synced once per KPI sample (continuous sync) and its measured lag
/// gates the steps. One load balancer and one shadow: no spare pool, so a
/// policy that replaces failed shadows (`spare_retries` > 0) stops with
/// `Unsupported(Replace)` where it would roll back with none.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    lc: &mut Lifecycle,
    policy: &Policy,
    lb: &Haproxy,
    replica: Option<&Rsync>,
    commands: Vec<Command>,
    kpi_every: Duration,
    deadline: Duration,
    stop: impl Fn(&Phase) -> bool,
) -> Result<Timeline, DriveError> {
    let start = Instant::now();
    let t0: Ms = crate::now_ms();
    let now = || t0 + i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
    let mut share: Option<u8> = None;
    let mut timeline = Timeline {
        entries: vec![(Duration::ZERO, label(&lc.phase, share))],
    };
    let mut queue: std::collections::VecDeque<Command> = commands.into();
    let mut sampler = KpiSampler::default();
    sampler.sample(
        lb.shadow_stats().await.map_err(DriveError::Kpi)?,
        Instant::now(),
    );
    let mut next_kpi = Instant::now() + kpi_every;
    loop {
        while let Some(c) = queue.pop_front() {
            let Command::Do(a) = c else {
                continue; // pages are the paging module's business
            };
            // The load balancer's share of the shadow after the action, or
            // why the action failed (fed back to the engine as text).
            let outcome: Result<Option<u8>, String> = match a {
                Action::SetWeight { percent } => lb
                    .set_share(percent)
                    .await
                    .map(|()| Some(percent))
                    .map_err(|e| e.to_string()),
                Action::Revert => lb
                    .set_share(0)
                    .await
                    .map(|()| Some(0))
                    .map_err(|e| e.to_string()),
                // The shadow takes all traffic; the old primary drains.
                Action::Promote => async {
                    lb.set_share(100).await?;
                    lb.set_state(lb.primary(), "drain").await
                }
                .await
                .map(|()| Some(100))
                .map_err(|e: HaproxyError| e.to_string()),
                Action::Sync => match replica {
                    Some(r) => r
                        .snapshot()
                        .await
                        .map(|_| share)
                        .map_err(|e| format!("replication snapshot: {e}")),
                    None => return Err(DriveError::Unsupported(a)),
                },
                other => return Err(DriveError::Unsupported(other)),
            };
            let ev = match outcome {
                Ok(s) => {
                    share = s;
                    Event::Done(a)
                }
                Err(why) => Event::Failed(a, why),
            };
            queue.extend(lc.on_event(now(), &ev, policy));
            timeline
                .entries
                .push((start.elapsed(), label(&lc.phase, share)));
        }
        if stop(&lc.phase) {
            return Ok(timeline);
        }
        if start.elapsed() > deadline {
            return Err(DriveError::Deadline {
                phase: lc.phase.name().to_owned(),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep_until(next_kpi.into()).await;
        next_kpi += kpi_every;
        let stats = lb.shadow_stats().await.map_err(DriveError::Kpi)?;
        let mut kpi = sampler
            .sample(stats, Instant::now())
            .expect("the baseline was taken");
        if let Some(r) = replica {
            r.sync_once().await.map_err(DriveError::Lag)?;
            kpi.lag_ms = r.lag().await.map_err(DriveError::Lag)?.lag_ms;
        }
        let before = label(&lc.phase, share);
        queue.extend(lc.on_event(now(), &Event::Kpi(kpi), policy));
        queue.extend(lc.on_event(now(), &Event::Tick, policy));
        let after = label(&lc.phase, share);
        if after != before {
            timeline.entries.push((start.elapsed(), after));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpis_come_from_counter_deltas() {
        let a = ServerStats {
            responses: 100,
            errors_5xx: 1,
            failures: 0,
            rtime_ms: 3.0,
            rtime_max_ms: 9.0,
            weight: 10,
            in_flight: 0,
        };
        let b = ServerStats {
            responses: 300,
            errors_5xx: 3,
            failures: 2,
            rtime_ms: 4.0,
            in_flight: 1,
            ..a
        };
        let k = kpi_between(&a, &b, 0.0);
        assert_eq!(k.requests, 200);
        assert!((k.error_rate - 0.02).abs() < 1e-12);
        assert_eq!(k.p99_ms, 4.0);
        assert_eq!(kpi_between(&a, &b, 80.0).p99_ms, 80.0);
        // A restarted HAProxy (counters reset) gives no negative counts.
        let k = kpi_between(&b, &a, 0.0);
        assert_eq!((k.requests, k.error_rate), (0, 0.0));
    }

    #[test]
    fn latency_is_estimated_over_the_horizon_by_littles_law() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let stats = |responses: u64, in_flight: u64| ServerStats {
            responses,
            in_flight,
            rtime_ms: 2.0,
            ..ServerStats::default()
        };
        let mut s = KpiSampler::default();
        assert_eq!(s.sample(stats(0, 0), at(0)), None, "the baseline");
        // Fast: 2 in flight, 1,000 responses a second: 2 ms; rtime says 2.
        let k = s.sample(stats(250, 2), at(250)).unwrap();
        assert!((k.p99_ms - 2.0).abs() < 1e-9, "{k:?}");
        // The measured slow pattern: 16 in flight, a burst of 15 answers
        // every 750 ms (20 a second): 0.8 s, whichever window it ends in.
        let mut s = KpiSampler::default();
        let mut responses = 0;
        let mut worst_window = 0.0f64;
        for i in 0..=24u64 {
            if i > 0 && i % 3 == 0 {
                responses += 15;
            }
            if let Some(k) = s.sample(stats(responses, 16), at(i * 250)) {
                if i >= 8 {
                    assert!(k.p99_ms > 700.0, "sample {i}: {k:?}");
                }
                worst_window = worst_window.max(k.p99_ms);
            }
        }
        assert!(worst_window < 2_500.0);
        // Nothing answered for the whole horizon: at least the horizon.
        let mut s = KpiSampler::default();
        for i in 0..=10 {
            s.sample(stats(5, 4), at(i * 250));
        }
        let k = s.sample(stats(5, 4), at(2_750)).unwrap();
        assert!((k.p99_ms - 2_000.0).abs() < 1.0, "{k:?}");
        // An idle server has no latency to speak of.
        let mut s = KpiSampler::default();
        s.sample(stats(5, 0), at(0));
        assert_eq!(s.sample(stats(5, 0), at(250)).unwrap().p99_ms, 2.0);
    }
}
