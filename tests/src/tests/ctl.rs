//! `umbractl` output against a coordinator fed by a real agent run.

use crate::*;
use coordinator::ctl::{self, Cli, Command, Connection};
use std::time::Duration;

fn conn(url: String) -> Connection {
    Connection {
        coordinator: url,
        ca: None,
        cert: None,
        key: None,
        server_name: None,
    }
}

pub(crate) async fn ctl_out(url: &str, command: Command) -> Result<String> {
    let mut out = Vec::new();
    ctl::run(
        Cli {
            conn: conn(url.to_owned()),
            command,
        },
        &mut out,
    )
    .await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_series_and_watch_show_a_live_agent() -> Result<()> {
    let c = InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", "").await?;
    let url = c.plaintext_url();
    // Subscribe before the agent connects so the connect event is seen.
    let watch = tokio::spawn({
        let url = url.clone();
        async move { ctl_out(&url, Command::Watch { count: Some(2) }).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let state = tempfile::tempdir()?;
    let text = format!(
        "host_id = \"ctl-host\"\nhwprofile = \"umbra/sim-1u\"\nstate_dir = {:?}\n[coordinator]\nurl = \"{url}\"\ninsecure_plaintext = true\n[spool]\nfsync = false\n[[collector]]\nprotocol = \"sim\"\ninterval = \"100ms\"\nspeedup = 3600.0\n",
        state.path().display().to_string()
    );
    let cfg = agent::config::RawConfig::parse(&text, "t")?.validate()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(agent::run(cfg, async {
        let _ = stop_rx.await;
    }));

    let events = tokio::time::timeout(Duration::from_secs(20), watch).await???;
    assert!(
        events.contains("connected") && events.contains("ctl-host"),
        "{events}"
    );

    eventually("FAN3 series with samples", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let out = ctl_out(
                &url,
                Command::Series {
                    host: "ctl-host".into(),
                    metric: Some("fan_speed".into()),
                    since: Duration::from_secs(3600),
                    json: false,
                    rollup: None,
                },
            )
            .await?;
            Ok(out
                .lines()
                .any(|l| {
                    l.contains("FAN3")
                        && l.split_whitespace()
                            .nth(2)
                            .and_then(|n| n.parse::<u32>().ok())
                            .is_some_and(|n| n >= 10)
                })
                .then_some(()))
        }
    })
    .await?;

    let hosts = ctl_out(&url, Command::Hosts { json: false }).await?;
    let row = hosts
        .lines()
        .find(|l| l.starts_with("ctl-host"))
        .unwrap_or_else(|| panic!("{hosts}"));
    assert!(
        row.contains("umbra/sim-1u") && row.contains(" up "),
        "{row}"
    );

    let json = ctl_out(
        &url,
        Command::Series {
            host: "ctl-host".into(),
            metric: Some("fan_speed".into()),
            since: Duration::from_secs(3600),
            json: true,
            rollup: None,
        },
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    let fans = v.as_array().unwrap();
    assert_eq!(fans.len(), 6);
    // FAN3 degrades (speedup 3600: simulated hours per second), FAN1 does not.
    let series = |c: &str| {
        fans.iter().find(|s| s["component"] == c).unwrap()["samples"]
            .as_array()
            .unwrap()
            .clone()
    };
    let fan3 = series("FAN3");
    assert!(fan3.len() >= 10);
    let text = ctl_out(
        &url,
        Command::Series {
            host: "ctl-host".into(),
            metric: Some("fan_speed".into()),
            since: Duration::from_secs(3600),
            json: false,
            rollup: None,
        },
    )
    .await?;
    assert!(
        text.contains('▁') || text.contains('█'),
        "sparkline missing:\n{text}"
    );

    let rollup = ctl_out(
        &url,
        Command::Series {
            host: "ctl-host".into(),
            metric: Some("fan_speed".into()),
            since: Duration::from_secs(3600),
            json: false,
            rollup: Some("1m".into()),
        },
    )
    .await?;
    assert!(rollup.contains("FAN3"), "{rollup}");

    stop_tx.send(()).ok();
    agent.await??;
    c.stop().await
}

/// A PSU failure the BMC logs in its SEL reaches `umbractl events` through
/// the agent's spool and the coordinator's store, once, and stays once when
/// a restarted agent sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmc_sel_events_reach_umbractl_once() -> Result<()> {
    use super::ipmi::{console, start_bmc};
    let bmc = start_bmc()?;
    let c = InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", "").await?;
    let url = c.plaintext_url();
    let state = tempfile::tempdir()?;
    let text = format!(
        "host_id = \"sel-host\"\nhwprofile = \"umbra/sim-1u\"\nstate_dir = {:?}\n[coordinator]\nurl = \"{url}\"\ninsecure_plaintext = true\n[spool]\nfsync = false\n[[collector]]\nprotocol = \"ipmi\"\ninterval = \"200ms\"\ndevice = \"node7\"\ntarget = \"{}\"\nuser = \"admin\"\npassword = \"password\"\ntimeout = \"500ms\"\n",
        state.path().display().to_string(),
        bmc.addr
    );
    let run_agent = || -> Result<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<_>)> {
        let cfg = agent::config::RawConfig::parse(&text, "t")?.validate()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        Ok((
            stop_tx,
            tokio::spawn(agent::run(cfg, async {
                let _ = stop_rx.await;
            })),
        ))
    };
    let events = |severity: &str| {
        let (url, severity) = (url.clone(), severity.to_owned());
        async move {
            ctl_out(
                &url,
                Command::Events {
                    host: Some("sel-host".into()),
                    since: Duration::from_secs(3600),
                    severity,
                    limit: 100,
                    json: true,
                },
            )
            .await
        }
    };
    let failures = |out: &str| {
        out.lines()
            .filter(|l| l.contains("power supply failure detected asserted"))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };

    let (stop, agent) = run_agent()?;
    // Let the agent's first poll pass, then fail the PSU on the BMC.
    eventually("agent connected", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let out = ctl_out(&url, Command::Hosts { json: false }).await?;
            Ok(out.contains("sel-host").then_some(()))
        }
    })
    .await?;
    console(bmc.console, &["sensor_set_bit 0x20 0 8 1 1 1"])?;
    let found = eventually("PSU failure event", Duration::from_secs(20), || {
        let events = events("critical");
        async move {
            let out = events.await?;
            let f = failures(&out);
            Ok((!f.is_empty()).then_some(f))
        }
    })
    .await?;
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0];
    assert_eq!(e["component"], "node7/PSU1 Status");
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["source"], "ipmi-sel");
    assert_eq!(e["attributes"]["sensor_type"], "0x08");
    // Presence is informational: filtered out at "warning", shown at "info".
    assert!(!events("warning").await?.contains("presence detected"));

    // A restarted agent forwards recent SEL entries again (its lookback):
    // the coordinator keeps one copy.
    stop.send(()).ok();
    agent.await??;
    let stored = || {
        let url = url.clone();
        async move {
            let out = ctl_out(&url, Command::Hosts { json: true }).await?;
            let v: serde_json::Value = serde_json::from_str(&out)?;
            anyhow::Ok(v[0]["stored_samples"].as_u64().unwrap_or(0))
        }
    };
    let before = stored().await?;
    let (stop, agent) = run_agent()?;
    // Batches are stored in order, so once anything new is stored the
    // restarted agent's first batch (with the resent event) is.
    eventually(
        "restarted agent's first batch stored",
        Duration::from_secs(20),
        || {
            let stored = stored();
            async move { Ok((stored.await? > before).then_some(())) }
        },
    )
    .await?;
    assert_eq!(failures(&events("info").await?).len(), 1);
    stop.send(()).ok();
    agent.await??;
    c.stop().await
}

/// Disks a collector discovers join the host's inventory (with model, serial,
/// firmware and power-on hours, the failure model's covariates) next to the
/// profile's components, and `umbractl inventory` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_disks_join_the_host_inventory() -> Result<()> {
    let c = InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", "").await?;
    let url = c.plaintext_url();
    let dir = tempfile::tempdir()?;
    // A stand-in smartctl (this machine has no disks) printing a real output.
    let fixture = repo_root().join("firmware-shims/tests/data/smartctl/ata-seagate-exos-x16.json");
    let smartctl = dir.path().join("smartctl");
    std::fs::write(
        &smartctl,
        format!(
            "#!/bin/sh\ncase \"$*\" in *--scan-open*) echo '{{\"smartctl\":{{\"exit_status\":0}},\"devices\":[{{\"name\":\"/dev/sda\",\"type\":\"sat\"}}]}}'; exit 0;; esac\ncat '{}'\n",
            fixture.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&smartctl, std::fs::Permissions::from_mode(0o755))?;
    let text = format!(
        "host_id = \"inv-host\"\nhwprofile = \"umbra/sim-1u\"\nstate_dir = {:?}\n[coordinator]\nurl = \"{url}\"\ninsecure_plaintext = true\n[spool]\nfsync = false\n[[collector]]\nprotocol = \"smart\"\ninterval = \"1s\"\nsmartctl = {:?}\n",
        dir.path().join("state").display().to_string(),
        smartctl.display().to_string()
    );
    let cfg = agent::config::RawConfig::parse(&text, "t")?.validate()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(agent::run(cfg, async {
        let _ = stop_rx.await;
    }));
    let inventory = eventually("the disk in the inventory", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let out = ctl_out(
                &url,
                Command::Inventory {
                    host: "inv-host".into(),
                    json: true,
                },
            )
            .await
            .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let has_disk = v.as_array().is_some_and(|a| {
                a.iter()
                    .any(|c| c["id"].as_str().is_some_and(|id| id.starts_with("disk:")))
            });
            Ok(has_disk.then_some(v))
        }
    })
    .await?;
    let all = inventory.as_array().unwrap();
    let disk = all
        .iter()
        .find(|c| c["id"].as_str().unwrap().starts_with("disk:"))
        .unwrap();
    assert_eq!(disk["kind"], "disk");
    assert!(
        disk["model"].as_str().unwrap().starts_with("ST16000NM"),
        "{disk}"
    );
    assert_eq!(disk["power_on_hours"], 13114);
    assert!(!disk["serial"].as_str().unwrap().is_empty());
    // The profile's components are still there.
    assert!(all.iter().any(|c| c["id"] == "PSU1"), "{inventory}");
    let table = ctl_out(
        &url,
        Command::Inventory {
            host: "inv-host".into(),
            json: false,
        },
    )
    .await?;
    assert!(table.contains("13114") && table.contains("PSU1"), "{table}");
    stop_tx.send(()).ok();
    agent.await??;
    c.stop().await
}

/// `umbractl eval backblaze` needs no coordinator: it reads the files,
/// splits by serial and time, and prints the rule-of-thumb baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_backblaze_prints_the_baseline_on_real_rows() -> Result<()> {
    use coordinator::ctl::EvalDataset;
    let dir = tempfile::tempdir()?;
    let png = dir.path().join("reliability.png");
    let out = ctl_out(
        "http://127.0.0.1:9",
        Command::Eval {
            dataset: EvalDataset::Backblaze {
                path: repo_root().join("predict/tests/data/backblaze"),
                plot: Some(png.clone()),
            },
        },
    )
    .await?;
    // The reliability diagram was written as a PNG.
    let bytes = std::fs::read(&png)?;
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(out.contains("plot: "), "{out}");
    assert!(
        out.contains("899 drive-days, 46 drives, 6 failures"),
        "{out}"
    );
    assert!(out.contains("test: 11 drives, 3 failures"), "{out}");
    let baseline: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("baseline"))
        .collect();
    // N = 7 and 14: two of the three test failures show reallocations first.
    assert!(
        baseline[2].trim_start().starts_with("7 ") && baseline[2].contains("2/3"),
        "{out}"
    );
    assert!(
        baseline[3].trim_start().starts_with("14 ") && baseline[3].contains("2/3"),
        "{out}"
    );
    Ok(())
}
