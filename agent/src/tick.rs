//! Wall-clock-aligned ticks. On Linux a `timerfd` (CLOCK_REALTIME, absolute
//! expiry at each multiple of the interval since the epoch): the kernel
//! wakes the agent once per tick, at the tick. tokio's timer wheel, for a
//! deadline more than 64 ms away, parks until the start of a coarse slot
//! and then once more; strace of the agent at 1 Hz showed those two wake-ups
//! per tick, and a wake-up (a context switch) is the largest fixed cost of
//! a poll on a virtual machine. Where a timerfd cannot be had, tokio's
//! interval does the same job with that extra wake-up.

use std::os::fd::OwnedFd;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

pub struct Ticker(Inner);

enum Inner {
    Fd(AsyncFd<OwnedFd>),
    Tokio(tokio::time::Interval),
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Fd(_) => "Ticker(timerfd)",
            Inner::Tokio(_) => "Ticker(tokio)",
        })
    }
}

/// Milliseconds from the Unix epoch to the first multiple of `interval_ms`
/// after `now_ms`.
pub fn next_boundary(now_ms: i64, interval_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(interval_ms) + interval_ms
}

fn timespec(ms: i64) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: ms.div_euclid(1000),
        tv_nsec: ms.rem_euclid(1000) * 1_000_000,
    }
}

fn timerfd(first_ms: i64, interval_ms: i64) -> std::io::Result<AsyncFd<OwnedFd>> {
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags,
    };
    let fd = timerfd_create(
        TimerfdClockId::Realtime,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    timerfd_settime(
        &fd,
        TimerfdTimerFlags::ABSTIME,
        &Itimerspec {
            it_interval: timespec(interval_ms),
            it_value: timespec(first_ms),
        },
    )?;
    // SAFETY: `fd` is an open timerfd owned by the `AsyncFd` from here on;
    // `OwnedFd::as_raw_fd` returns that same descriptor until the AsyncFd
    // drops it (tokio's requirement for `register`).
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register(fd) };
    registered.map_err(std::io::Error::from)
}

impl Ticker {
    /// Ticks at every multiple of `interval` on the wall clock, from the
    /// next one on. Missed ticks are skipped, not made up.
    pub fn aligned(interval: Duration, now_ms: i64) -> Ticker {
        let interval_ms = i64::try_from(interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let first = next_boundary(now_ms, interval_ms);
        match timerfd(first, interval_ms) {
            Ok(fd) => Ticker(Inner::Fd(fd)),
            Err(e) => {
                tracing::debug!(error = %e, "no timerfd: ticking with tokio's timer");
                let delay = Duration::from_millis(u64::try_from(first - now_ms).unwrap_or(0));
                let mut i = tokio::time::interval_at(tokio::time::Instant::now() + delay, interval);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                Ticker(Inner::Tokio(i))
            }
        }
    }

    /// Wait for the next tick; returns how many ticks passed since the last
    /// call (more than 1: ticks were missed).
    pub async fn tick(&mut self) -> std::io::Result<u64> {
        match &mut self.0 {
            Inner::Tokio(i) => {
                i.tick().await;
                Ok(1)
            }
            Inner::Fd(fd) => loop {
                let mut guard = fd.readable().await?;
                let mut buf = [0u8; 8];
                match guard.try_io(|fd| {
                    rustix::io::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)
                }) {
                    Ok(Ok(8)) => return Ok(u64::from_ne_bytes(buf)),
                    Ok(Ok(n)) => {
                        return Err(std::io::Error::other(format!("timerfd read {n} bytes")))
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => {}
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_the_next_multiple() {
        assert_eq!(next_boundary(1_000, 1_000), 2_000);
        assert_eq!(next_boundary(1_999, 1_000), 2_000);
        assert_eq!(next_boundary(61_001, 60_000), 120_000);
        assert_eq!(next_boundary(-1, 1_000), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ticks_are_never_early_and_missed_ticks_are_counted() {
        let interval = Duration::from_millis(50);
        let start = crate::pipeline::now_ms();
        let mut t = Ticker::aligned(interval, start);
        assert!(format!("{t:?}").contains("timerfd"), "Linux has timerfd");
        // Each tick returns in a later 50 ms slot of the wall clock than the
        // one before (a wake-up before the boundary would repeat a slot).
        let mut slot = start.div_euclid(50);
        for _ in 0..3 {
            assert!(t.tick().await.unwrap() >= 1);
            let now_slot = crate::pipeline::now_ms().div_euclid(50);
            assert!(now_slot > slot, "woke in slot {now_slot} again");
            slot = now_slot;
        }
        // A slow consumer: missed ticks are counted, not replayed.
        std::thread::sleep(Duration::from_millis(160));
        let n = t.tick().await.unwrap();
        assert!(n >= 3, "{n}");
    }
}
