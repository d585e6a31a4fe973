//! Shifting live traffic to a shadow through a real HAProxy (Debian's,
//! runtime API over its admin socket) while wrk (Debian's) drives load
//! through it: the engine steps 10 → 25 → 50 → 100 % on KPIs read from
//! HAProxy's counters and promotes with 0 failed requests; a latency
//! regression injected on the shadow makes it roll back, again with 0
//! failed requests.
//!
//! The lifecycle enters at the first shift step: the whole lifecycle,
//! provisioning and mirroring included, runs in `execute.rs`.

use crate::free_port;
use anyhow::{ensure, Context, Result};
use coordinator::actuate::haproxy::{Haproxy, HaproxyConfig};
use coordinator::actuate::rsync::{Rsync, RsyncConfig};
use coordinator::shadow::engine::{Action, Command, KpiLimits, Lifecycle, Phase, Policy};
use coordinator::shadow::traffic::{drive, Timeline};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// An HTTP/1.1 keep-alive backend answering 200 after `delay_ms`.
pub(crate) async fn backend(delay_ms: Arc<AtomicU64>) -> Result<u16> {
    backend_with(delay_ms, Arc::default()).await
}

/// As [`backend`]; while `wrong` holds, the body is "no" instead of "ok"
/// (a shadow that answers, fast and 200, but not what the primary says).
pub(crate) async fn backend_with(
    delay_ms: Arc<AtomicU64>,
    wrong: Arc<std::sync::atomic::AtomicBool>,
) -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (delay, wrong) = (delay_ms.clone(), wrong.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                loop {
                    // Request head (GETs: no body).
                    loop {
                        let mut line = String::new();
                        match r.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let ms = delay.load(Ordering::Relaxed);
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let reply: &[u8] = if wrong.load(Ordering::Relaxed) {
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nno"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
                    };
                    if r.get_mut().write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

struct Lb {
    _proc: crate::Proc,
    port: u16,
    haproxy: Haproxy,
    _dir: tempfile::TempDir,
}

/// Debian's HAProxy on `dir/haproxy.cfg`: global and defaults sections
/// (admin socket `dir/admin.sock`) followed by `sections`, which must hold
/// backend `app` with servers `primary` and `shadow`; returns once the
/// admin socket answers, with a client for that backend.
pub(crate) async fn spawn_haproxy(dir: &Path, sections: &str) -> Result<(crate::Proc, Haproxy)> {
    let socket = dir.join("admin.sock");
    std::fs::write(
        dir.join("haproxy.cfg"),
        format!(
            "global\n  stats socket {} mode 600 level admin\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             {sections}",
            socket.display()
        ),
    )?;
    let mut cmd = std::process::Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
    let mut proc = crate::Proc::spawn_cmd("haproxy", cmd, dir.join("haproxy.log"))?;
    let haproxy = Haproxy::new(HaproxyConfig {
        socket,
        backend: "app".into(),
        primary: "primary".into(),
        shadow: "shadow".into(),
        timeout: Duration::from_secs(2),
    })?;
    crate::eventually("haproxy admin socket", Duration::from_secs(10), || {
        let alive = proc.ensure_running();
        let h = haproxy.clone();
        async move {
            alive?;
            Ok(h.shadow_stats().await.ok())
        }
    })
    .await?;
    Ok((proc, haproxy))
}

async fn start_haproxy(primary: u16, shadow: u16) -> Result<Lb> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let (proc, haproxy) = spawn_haproxy(
        dir.path(),
        &format!(
            "frontend fe\n  bind 127.0.0.1:{port}\n  default_backend app\n\
             backend app\n  balance roundrobin\n  server primary 127.0.0.1:{primary} weight 100\n  server shadow 127.0.0.1:{shadow} weight 0\n"
        ),
    )
    .await?;
    Ok(Lb {
        _proc: proc,
        port,
        haproxy,
        _dir: dir,
    })
}

/// wrk's totals: (requests, failed) where failed counts non-2xx/3xx
/// responses and socket errors (connect, read, write, timeout).
pub(crate) fn wrk_totals(out: &str) -> Result<(u64, u64)> {
    let requests = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse::<u64>())
        })
        .context("no request count in wrk output")??;
    let mut failed = 0;
    for l in out.lines().map(str::trim) {
        if let Some(n) = l.strip_prefix("Non-2xx or 3xx responses:") {
            failed += n.trim().parse::<u64>()?;
        }
        if let Some(errs) = l.strip_prefix("Socket errors:") {
            for part in errs.split(',') {
                failed += part
                    .split_whitespace()
                    .last()
                    .context("socket error count")?
                    .parse::<u64>()?;
            }
        }
    }
    Ok((requests, failed))
}

fn policy() -> Policy {
    Policy {
        min_dwell_ms: 1_000,
        action_timeout_ms: 30_000,
        // One shadow: a regression rolls back (nothing to replace it with).
        spare_retries: 0,
        kpi: KpiLimits {
            max_error_rate: 0.001,
            max_p99_ms: 50.0,
            max_lag_ms: 1_000.0,
            min_requests: 50,
            ..Policy::default().kpi
        },
        ..Policy::default()
    }
}

/// A lifecycle entering its first shift step, and that step's command.
fn at_first_step(policy: &Policy) -> (Lifecycle, Vec<Command>) {
    let now = coordinator::now_ms();
    let first = Action::SetWeight {
        percent: policy.ramp[0],
    };
    let mut lc = Lifecycle::new("web-01", now);
    lc.phase = Phase::Shifting {
        step: 0,
        applied: false,
    };
    lc.pending = Some((first, now));
    lc.p7d = 0.9;
    (lc, vec![Command::Do(first)])
}

async fn shift_under_load(
    lb: &Lb,
    replica: Option<&Rsync>,
    seconds: u64,
    inject: Option<(Duration, Arc<AtomicU64>)>,
    stop: impl Fn(&Phase) -> bool,
) -> Result<(Lifecycle, Timeline, u64, u64)> {
    let wrk = tokio::process::Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{seconds}s")])
        .arg(format!("http://127.0.0.1:{}/", lb.port))
        .output();
    let wrk = tokio::spawn(wrk);
    // Let wrk connect before the first step.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some((after, delay)) = inject {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            delay.store(300, Ordering::Relaxed);
        });
    }
    let p = policy();
    let (mut lc, commands) = at_first_step(&p);
    let timeline = drive(
        &mut lc,
        &p,
        &lb.haproxy,
        replica,
        commands,
        Duration::from_millis(250),
        Duration::from_secs(seconds.saturating_sub(2)),
        stop,
    )
    .await?;
    let out = wrk.await??;
    ensure!(
        out.status.success(),
        "wrk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let (requests, failed) = wrk_totals(&text)?;
    eprintln!("{text}\ntimeline: {:?}", timeline.entries);
    Ok((lc, timeline, requests, failed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_shifts_to_the_shadow_and_rolls_back_under_load_with_no_failed_requests(
) -> Result<()> {
    let primary = backend(Arc::default()).await?;
    let shadow_delay = Arc::new(AtomicU64::new(0));
    let shadow = backend(shadow_delay.clone()).await?;

    // The ramp to promotion, while the primary keeps writing state that
    // rsync replicates to the shadow (its lag gates each step).
    let (src, dst) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let replica = Rsync::new(RsyncConfig {
        source: format!("{}/", src.path().display()),
        dest: format!("{}/", dst.path().display()),
        rsync: "rsync".into(),
        args: vec![],
        timeout: Duration::from_secs(30),
    });
    replica.snapshot().await?;
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (dir, writing) = (src.path().to_owned(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while writing.load(Ordering::Relaxed) {
                std::fs::write(dir.join(format!("row-{n}")), n.to_string()).unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };
    let lb = start_haproxy(primary, shadow).await?;
    let (lc, timeline, requests, failed) =
        shift_under_load(&lb, Some(&replica), 14, None, |p| *p == Phase::Promoted).await?;
    // Cut-over: writes stop, the final pass leaves nothing behind.
    writing.store(false, Ordering::Relaxed);
    let written = writer.await?;
    replica.barrier().await?;
    assert_eq!(std::fs::read_dir(dst.path())?.count(), written as usize);
    assert_eq!(lc.phase, Phase::Promoted);
    for step in [
        "shifting 10%",
        "shifting 25%",
        "shifting 50%",
        "shifting 100%",
        "promoted",
    ] {
        assert!(
            timeline.first(step).is_some(),
            "{step}: {:?}",
            timeline.entries
        );
    }
    assert!(requests > 1_000, "wrk made {requests} requests");
    assert_eq!(failed, 0, "failed requests during the shift");
    let s = lb.haproxy.shadow_stats().await?;
    assert_eq!(s.weight, 100);
    assert!(s.responses > 100, "the shadow served traffic: {s:?}");
    let stat = lb.haproxy.command("show stat").await?;
    let primary_row = stat
        .lines()
        .find(|l| l.starts_with("app,primary,"))
        .context("primary row")?;
    assert!(primary_row.contains(",DRAIN,"), "{primary_row}");

    // A latency regression on the shadow mid-ramp: rolled back.
    let lb = start_haproxy(primary, shadow).await?;
    let (lc, timeline, requests, failed) = shift_under_load(
        &lb,
        None,
        12,
        Some((Duration::from_millis(1_500), shadow_delay.clone())),
        |p| matches!(p, Phase::RolledBack { .. }),
    )
    .await?;
    shadow_delay.store(0, Ordering::Relaxed);
    let Phase::RolledBack { reason } = &lc.phase else {
        anyhow::bail!("not rolled back: {:?}", lc.phase);
    };
    assert!(
        reason.contains("p99") || reason.contains("latency"),
        "{reason}"
    );
    assert!(timeline.first("promoted").is_none());
    assert!(requests > 100, "wrk made {requests} requests");
    assert_eq!(failed, 0, "failed requests during the rollback");
    assert_eq!(lb.haproxy.shadow_stats().await?.weight, 0);
    Ok(())
}

#[test]
fn wrk_failures_are_counted() {
    let clean =
        "Running 1s test @ http://x/\n  1234 requests in 1.00s, 1MB read\nRequests/sec: 1234\n";
    assert_eq!(wrk_totals(clean).unwrap(), (1234, 0));
    let failing = "  1234 requests in 1.00s, 1MB read\n  Socket errors: connect 0, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 7\n";
    assert_eq!(wrk_totals(failing).unwrap(), (1234, 12));
    assert!(wrk_totals("nothing").is_err());
}
