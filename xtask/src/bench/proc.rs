//! Measuring a peer process from the outside: CPU time and peak memory from
//! /proc, data directory size from the file system.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A peer server process, killed on drop.
#[derive(Debug)]
pub struct Peer {
    pub name: &'static str,
    child: Child,
    ticks_per_s: f64,
}

impl Peer {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Peer> {
        let log = std::fs::File::create(log)?;
        let child = cmd
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Peer {
            name,
            child,
            ticks_per_s: clock_ticks()?,
        })
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_s(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').context("stat format")? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        #[allow(clippy::cast_precision_loss)]
        Ok(ticks as f64 / self.ticks_per_s)
    }

    /// CPU seconds used so far by the threads alive now, with nanosecond
    /// resolution (the sum of `/proc/PID/task/*/schedstat`; /proc/PID/stat
    /// counts in 10 ms ticks). Time of threads that already exited is
    /// missing, so callers compare it with [`Peer::cpu_s`].
    pub fn cpu_s_fine(&self) -> Result<f64> {
        let mut ns = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            let path = task?.path().join("schedstat");
            // A thread may exit between the listing and the read.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            ns += text
                .split_whitespace()
                .next()
                .context("schedstat format")?
                .parse::<u64>()?;
        }
        #[allow(clippy::cast_precision_loss)]
        Ok(ns as f64 / 1e9)
    }

    /// Peak resident memory (VmHWM), bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("VmHWM")?;
        Ok(kb * 1024)
    }

    /// Wait until the process has gone quiet (background flushes and merges
    /// done): less than 20 ms of CPU in a 500 ms interval, twice in a row;
    /// then once more after `timers`, for work that runs on a timer.
    pub fn settle_all(&self, max: Duration, timers: Duration) -> Result<()> {
        self.settle(max)?;
        std::thread::sleep(timers);
        self.settle(max)
    }

    fn settle(&self, max: Duration) -> Result<()> {
        let start = Instant::now();
        let (mut quiet, mut last) = (0, self.cpu_s()?);
        while quiet < 2 && start.elapsed() < max {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.cpu_s()?;
            quiet = if now - last < 0.02 { quiet + 1 } else { 0 };
            last = now;
        }
        if quiet < 2 {
            eprintln!(
                "note: {} still busy after {max:?}; measuring anyway",
                self.name
            );
        }
        Ok(())
    }
}

impl Peer {
    /// SIGTERM, then wait for a clean exit (servers flush on shutdown).
    pub fn stop(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            anyhow::bail!("kill -TERM {} failed", self.name);
        }
        let start = Instant::now();
        while self.child.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("{} did not exit within 60 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// Total size of the regular files under `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            total += dir_bytes(&e.path())?;
        } else if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

/// Poll `f` until it returns true.
pub fn wait_for(what: &str, max: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > max {
            anyhow::bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
