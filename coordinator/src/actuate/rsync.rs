//! State replication to a shadow with rsync: a pre-sync snapshot, repeated
//! incremental passes (continuous sync), a lag measurement, and a cut-over
//! barrier that proves nothing is left to copy. `source` and `dest` are
//! rsync locations (`/srv/data/`, `shadow7:/srv/data/` over ssh).
//!
//! Lag is measured, not assumed: a dry run (`--dry-run --stats`) counts
//! what still differs. When nothing differs the lag is 0; otherwise the
//! oldest unsynced change is at most as old as the start of the last
//! completed pass, and that age is the lag the KPI gate sees.

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::process::Command;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsyncConfig {
    /// What to replicate; a trailing `/` copies the directory's contents.
    pub source: String,
    pub dest: String,
    #[serde(default = "default_rsync")]
    pub rsync: PathBuf,
    /// Added to `-a --delete` (e.g. `["--exclude=*.tmp", "-e", "ssh -i key"]`).
    #[serde(default)]
    pub args: Vec<String>,
    /// One pass may take this long.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_rsync() -> PathBuf {
    PathBuf::from("rsync")
}
fn default_timeout() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, thiserror::Error)]
pub enum RsyncError {
    #[error("running {rsync}: {source}")]
    Spawn {
        rsync: String,
        source: std::io::Error,
    },
    #[error("rsync {what} failed ({status}): {stderr}")]
    Failed {
        what: &'static str,
        status: String,
        stderr: String,
    },
    #[error("rsync {what} took longer than {timeout:?}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("rsync {what}: no {field:?} in its --stats output")]
    Stats {
        what: &'static str,
        field: &'static str,
    },
    #[error("cut-over barrier: {files} files still differ after the final pass")]
    NotConverged { files: u64 },
}

/// What one pass (or dry run) reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pass {
    /// Regular files copied (or, in a dry run, that would be).
    pub files: u64,
    /// Files deleted at the destination (or that would be).
    pub deleted: u64,
    /// Bytes of file data copied (or that would be).
    pub bytes: u64,
}

impl Pass {
    pub fn is_empty(&self) -> bool {
        self.files == 0 && self.deleted == 0
    }
}

/// How far the shadow is behind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    pub pending: Pass,
    pub lag_ms: f64,
}

#[derive(Debug)]
pub struct Rsync {
    cfg: RsyncConfig,
    /// When the last completed pass started.
    last_pass: Mutex<Option<Instant>>,
}

/// `Number of regular files transferred: 1,234` and friends.
fn stat(out: &str, field: &'static str) -> Option<u64> {
    out.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(field)?.strip_prefix(':')?;
        let digits: String = rest
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

pub fn parse_stats(out: &str, what: &'static str) -> Result<Pass, RsyncError> {
    let get = |field: &'static str| stat(out, field).ok_or(RsyncError::Stats { what, field });
    Ok(Pass {
        files: get("Number of regular files transferred")?,
        // Older rsyncs print no deletion count when nothing is deleted.
        deleted: stat(out, "Number of deleted files").unwrap_or(0),
        bytes: get("Total transferred file size")?,
    })
}

impl Rsync {
    pub fn new(cfg: RsyncConfig) -> Rsync {
        Rsync {
            cfg,
            last_pass: Mutex::new(None),
        }
    }

    async fn run(&self, what: &'static str, dry_run: bool) -> Result<Pass, RsyncError> {
        let mut cmd = Command::new(&self.cfg.rsync);
        cmd.args(["-a", "--delete", "--stats"]);
        if dry_run {
            cmd.arg("--dry-run");
        }
        cmd.args(&self.cfg.args)
            .arg(&self.cfg.source)
            .arg(&self.cfg.dest)
            .kill_on_drop(true);
        let out = tokio::time::timeout(self.cfg.timeout, cmd.output())
            .await
            .map_err(|_| RsyncError::Timeout {
                what,
                timeout: self.cfg.timeout,
            })?
            .map_err(|source| RsyncError::Spawn {
                rsync: self.cfg.rsync.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(RsyncError::Failed {
                what,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .chars()
                    .take(500)
                    .collect(),
            });
        }
        parse_stats(&String::from_utf8_lossy(&out.stdout), what)
    }

    async fn pass(&self, what: &'static str) -> Result<Pass, RsyncError> {
        let started = Instant::now();
        let p = self.run(what, false).await?;
        *self.last_pass.lock().expect("poisoned") = Some(started);
        Ok(p)
    }

    /// The first full copy.
    pub async fn snapshot(&self) -> Result<Pass, RsyncError> {
        self.pass("snapshot").await
    }

    /// One incremental pass (continuous sync repeats it).
    pub async fn sync_once(&self) -> Result<Pass, RsyncError> {
        self.pass("sync").await
    }

    /// What still differs, and how old the oldest unsynced change can be.
    pub async fn lag(&self) -> Result<Lag, RsyncError> {
        let pending = self.run("lag check", true).await?;
        let lag_ms = if pending.is_empty() {
            0.0
        } else {
            // Never synced: as far behind as can be said.
            self.last_pass
                .lock()
                .expect("poisoned")
                .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64() * 1000.0)
        };
        Ok(Lag { pending, lag_ms })
    }

    /// Cut-over: with writes to the source stopped by the caller, a final
    /// pass, then proof that nothing differs.
    pub async fn barrier(&self) -> Result<Pass, RsyncError> {
        let p = self.pass("final pass").await?;
        let left = self.run("barrier check", true).await?;
        if !left.is_empty() {
            return Err(RsyncError::NotConverged {
                files: left.files + left.deleted,
            });
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_read_with_thousands_separators() {
        let out = "Number of files: 2 (reg: 1, dir: 1)\nNumber of created files: 1 (reg: 1)\n\
                   Number of deleted files: 3\nNumber of regular files transferred: 1,234\n\
                   Total file size: 3 bytes\nTotal transferred file size: 12,345,678 bytes\n";
        assert_eq!(
            parse_stats(out, "sync").unwrap(),
            Pass {
                files: 1234,
                deleted: 3,
                bytes: 12_345_678
            }
        );
        let e = parse_stats("rsync: garbage", "sync").unwrap_err();
        assert!(e.to_string().contains("regular files transferred"), "{e}");
    }

    /// Against the real rsync (Debian's, installed by scripts/deps).
    #[tokio::test]
    async fn snapshot_lag_sync_and_barrier_with_real_rsync() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a"), "one").unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/b"), vec![7u8; 10_000]).unwrap();
        let r = Rsync::new(RsyncConfig {
            source: format!("{}/", src.path().display()),
            dest: format!("{}/", dst.path().display()),
            rsync: default_rsync(),
            args: vec![],
            timeout: Duration::from_secs(30),
        });
        // Never synced: everything is pending and the lag is unbounded.
        let l = r.lag().await.unwrap();
        assert_eq!(l.pending.files, 2);
        assert!(l.lag_ms.is_infinite());
        let p = r.snapshot().await.unwrap();
        assert_eq!((p.files, p.bytes), (2, 10_003));
        assert_eq!(std::fs::read(dst.path().join("d/b")).unwrap().len(), 10_000);
        assert_eq!(r.lag().await.unwrap().lag_ms, 0.0);

        // A write and a delete at the source: the shadow is behind.
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(src.path().join("a"), "two!").unwrap();
        std::fs::remove_file(src.path().join("d/b")).unwrap();
        let l = r.lag().await.unwrap();
        assert_eq!((l.pending.files, l.pending.deleted), (1, 1));
        assert!(l.lag_ms >= 50.0, "{l:?}");
        r.sync_once().await.unwrap();
        assert_eq!(r.lag().await.unwrap().lag_ms, 0.0);
        assert!(!dst.path().join("d/b").exists());
        assert_eq!(
            std::fs::read_to_string(dst.path().join("a")).unwrap(),
            "two!"
        );

        // Cut-over with nothing left: an empty final pass, proven.
        assert!(r.barrier().await.unwrap().is_empty());

        // An unreachable source is a clear error.
        let bad = Rsync::new(RsyncConfig {
            source: "/nonexistent/umbra/".into(),
            ..r.cfg.clone()
        });
        let e = bad.sync_once().await.unwrap_err();
        assert!(matches!(e, RsyncError::Failed { .. }), "{e}");
    }
}
