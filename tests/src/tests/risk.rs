//! Failure risk end to end: a real agent streams two disks' SMART data
//! (real `smartctl -j` outputs), `umbractl train` trains the disk failure
//! model on real Backblaze rows and stores it, the coordinator's risk loop
//! scores the disks with the active version, and `umbractl risk`, the fleet
//! API and `/metrics` all show the same probabilities. Activating another
//! version is picked up without a restart.

use super::ctl::ctl_out;
use super::ops::{scrape, value};
use crate::*;
use coordinator::ctl::{Command, Decision, TrainDataset};
use std::time::Duration;

async fn risks(url: &str) -> serde_json::Value {
    let out = ctl_out(
        url,
        Command::Risk {
            host: None,
            json: true,
        },
    )
    .await
    .unwrap_or_default();
    serde_json::from_str(&out).unwrap_or_default()
}

/// `umbractl audit` over the last hour, as text (`TIME JSON` per line).
async fn audit(url: &str, limit: u32, target: Option<&str>) -> Result<String> {
    ctl_out(
        url,
        Command::Audit {
            since: Duration::from_secs(3600),
            limit,
            target: target.map(str::to_owned),
        },
    )
    .await
}

/// The JSON records of `TIME JSON` lines (`umbractl audit`, `replay`);
/// `#` lines are comments.
fn records(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| serde_json::from_str(l.split_once(' ').unwrap().1).unwrap())
        .collect()
}

fn p7d_over(risks: &serde_json::Value, threshold: f64) -> bool {
    risks.as_array().is_some_and(|a| {
        a.iter()
            .any(|r| r["probability"]["7d"].as_f64().unwrap_or(0.0) >= threshold)
    })
}

/// `umbractl train` on the Backblaze fixture (seed 1).
pub(crate) fn train(no_activate: bool) -> Command {
    Command::Train {
        dataset: TrainDataset::Backblaze {
            path: repo_root().join("predict/tests/data/backblaze"),
            no_activate,
            seed: 1,
        },
    }
}

/// A real agent streaming two disks' SMART data: a smartctl that answers
/// with real `smartctl -j` outputs (a healthy Exos, a Toshiba with errors).
pub(crate) struct SmartAgent {
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), agent::RunError>>,
}

impl SmartAgent {
    pub(crate) async fn start(url: &str, host: &str, rack: &str) -> Result<SmartAgent> {
        let dir = tempfile::tempdir()?;
        let data = repo_root().join("firmware-shims/tests/data/smartctl");
        let smartctl = dir.path().join("smartctl");
        std::fs::write(
            &smartctl,
            format!(
                "#!/bin/sh\ncase \"$*\" in\n\
                 *--scan-open*) echo '{{\"smartctl\":{{\"exit_status\":0}},\"devices\":[{{\"name\":\"/dev/sda\",\"type\":\"sat\"}},{{\"name\":\"/dev/sdb\",\"type\":\"sat\"}}]}}'; exit 0;;\n\
                 *sda*) cat '{}';;\n\
                 *) cat '{}';;\nesac\n",
                data.join("ata-seagate-exos-x16.json").display(),
                data.join("ata-toshiba-mg05-error-log.json").display()
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&smartctl, std::fs::Permissions::from_mode(0o755))?;
        let text = format!(
            "host_id = \"{host}\"\nhwprofile = \"umbra/sim-1u\"\nstate_dir = {:?}\n[failure_domain]\nrack = \"{rack}\"\n[coordinator]\nurl = \"{url}\"\ninsecure_plaintext = true\n[spool]\nfsync = false\n[[collector]]\nprotocol = \"smart\"\ninterval = \"1s\"\nsmartctl = {:?}\n",
            dir.path().join("state").display().to_string(),
            smartctl.display().to_string()
        );
        let cfg = agent::config::RawConfig::parse(&text, "t")?.validate()?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(agent::run(cfg, async {
            let _ = stop_rx.await;
        }));
        Ok(SmartAgent {
            _dir: dir,
            stop,
            task,
        })
    }

    pub(crate) async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trained_model_scores_streamed_disks_and_a_new_version_is_hot_swapped() -> Result<()> {
    let metrics_port = free_port();
    // Pages go to a real Alertmanager and a webhook receiver.
    let am_dir = tempfile::tempdir()?;
    let (_am, am_url) = super::paging::start_alertmanager(am_dir.path()).await?;
    let hook = super::paging::Receiver::start(0).await?;
    let c = InProcessCoordinator::start(
        "[tls]\ninsecure_plaintext = true",
        &format!(
            "[risk]\ninterval = \"300ms\"\n[learn]\nholdout_percent = 0\n[shadow]\nmode = \"dry-run\"\nenter = 0.2\nexit = 0.1\nconfirm = 2\nmanual_approval = true\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [paging]\n[[paging.receivers]]\nkind = \"alertmanager\"\nurl = \"{am_url}\"\n\
             [[paging.receivers]]\nkind = \"webhook\"\nurl = \"{}/hook\"\n",
            hook.url
        ),
    )
    .await?;
    let url = c.plaintext_url();

    // Two disks behind a smartctl that answers with real outputs.
    let agent = SmartAgent::start(&url, "risk-host", "").await?;

    // Stored but not active: inference has nothing to run.
    let out = ctl_out(&url, train(true)).await?;
    assert!(
        out.contains("stored failure/disk version 1 (not active)"),
        "{out}"
    );
    assert!(
        out.contains("baseline"),
        "the report prints the rule of thumb: {out}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let none = ctl_out(
        &url,
        Command::Risk {
            host: None,
            json: false,
        },
    )
    .await?;
    assert!(none.contains("no risks yet"), "{none}");

    // Activated: the next run scores both disks with version 2.
    let out = ctl_out(&url, train(false)).await?;
    assert!(
        out.contains("stored failure/disk version 2, active"),
        "{out}"
    );
    let scored = eventually("both disks scored", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let v = risks(&url).await;
            let n = v
                .as_array()
                .map_or(0, |a| a.iter().filter(|r| r["model_version"] == 2).count());
            Ok((n == 2).then_some(v))
        }
    })
    .await?;
    let all = scored.as_array().unwrap();
    for r in all {
        assert_eq!(r["host"], "risk-host");
        assert!(r["component"].as_str().unwrap().starts_with("disk:"), "{r}");
        for w in ["24h", "7d"] {
            let p = r["probability"][w].as_f64().unwrap();
            assert!(p > 0.0 && p < 1.0, "{w}: {p} ({r})");
        }
        assert!(!r["explanation"].as_str().unwrap().is_empty(), "{r}");
        assert!(r["history_days"].as_u64().unwrap() >= 1);
    }
    // Ranked by P(7 d), highest first.
    let p7: Vec<f64> = all
        .iter()
        .map(|r| r["probability"]["7d"].as_f64().unwrap())
        .collect();
    assert!(p7[0] >= p7[1], "{p7:?}");

    // The table and /metrics agree with the API.
    let table = ctl_out(
        &url,
        Command::Risk {
            host: Some("risk-host".into()),
            json: false,
        },
    )
    .await?;
    assert!(
        table.contains("P(24h)") && table.contains("P(7d)"),
        "{table}"
    );
    assert!(table.contains("model version 2"), "{table}");
    let metrics = scrape(metrics_port).await?;
    let top = &all[0];
    let prefix = format!(
        "umbra_coordinator_failure_probability{{host=\"risk-host\",component=\"{}\",window=\"7d\"}}",
        top["component"].as_str().unwrap()
    );
    let exported = value(&metrics, &prefix).context(prefix.clone())?;
    // The loop may have run again between the two reads: same model, same data
    // up to new samples; the value is the same to many digits.
    assert!(
        (exported - top["probability"]["7d"].as_f64().unwrap()).abs() < 1e-3,
        "{exported} vs {top}"
    );
    let host_max = value(
        &metrics,
        "umbra_coordinator_host_failure_probability{host=\"risk-host\",window=\"7d\"}",
    )
    .context("host family")?;
    assert!((host_max - p7[0]).abs() < 1e-3, "{host_max} vs {p7:?}");
    assert_eq!(
        value(
            &metrics,
            "umbra_coordinator_model_active_version{kind=\"failure/disk\"}"
        ),
        Some(2.0)
    );

    // Dry run: the riskiest disk makes its host's lifecycle confirm; the
    // rails admit it (one host) and the plan is audited, nothing executed.
    assert!(
        p7d_over(&scored, 0.2),
        "the fixture disk no longer scores above the test's shadow threshold: {scored}"
    );
    {
        let shadows = eventually("the host confirmed", Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                let out = ctl_out(
                    &url,
                    Command::Shadows {
                        host: None,
                        json: true,
                    },
                )
                .await
                .unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                Ok((v[0]["phase"] == "confirmed" && v[0]["verdict"] == "admitted").then_some(v))
            }
        })
        .await?;
        assert_eq!(shadows[0]["target"], "risk-host");
        let log = audit(&url, 100, None).await?;
        let logged = records(&log);
        let admission = logged
            .iter()
            .find(|r| r["event"] == "admission")
            .context("an admission record")?;
        assert_eq!(admission["verdict"], "admitted");
        assert_eq!(admission["dry_run"], true);
        assert!(admission["plan"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "shift 100 % of traffic"));
        assert!(logged.iter().all(|r| r["executed"] != true), "{log}");
        assert!(logged.iter().any(|r| r["event"] == "transition"
            && r["from"] == "at_risk"
            && r["to"] == "confirmed"));
        let metrics = scrape(metrics_port).await?;
        assert_eq!(
            value(
                &metrics,
                "umbra_coordinator_shadow_lifecycles{phase=\"confirmed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &metrics,
                "umbra_coordinator_shadow_phase{host=\"risk-host\",phase=\"confirmed\"}"
            ),
            Some(1.0)
        );

        // On-call was paged (dry run says so): the webhook got the page with
        // the host, its riskiest disk, the probability and the commands, and
        // Alertmanager holds one firing alert for the host.
        let page = eventually("a page at the webhook", Duration::from_secs(10), || {
            let got = hook.received();
            async move {
                Ok(got
                    .into_iter()
                    .rev()
                    .find(|r| r.path == "/hook" && r.body["page"]["phase"] == "confirmed"))
            }
        })
        .await?;
        let p = &page.body["page"];
        assert_eq!(page.body["status"], "firing");
        assert_eq!(p["target"], "risk-host");
        assert_eq!(p["dry_run"], true);
        assert!(p["component"].as_str().unwrap().starts_with("disk:"), "{p}");
        assert!(
            p["p7d"].as_f64().unwrap() >= 0.2,
            "at or above the test's enter: {p}"
        );
        assert!(!p["explanation"].as_str().unwrap().is_empty(), "{p}");
        assert!(p["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "umbractl shadows --host risk-host"));
        let alerts = eventually("a firing alert", Duration::from_secs(10), || {
            let am_url = am_url.clone();
            async move {
                let a = super::paging::am_alerts(&am_url, "risk-host").await?;
                Ok((!a.is_empty()).then_some(a))
            }
        })
        .await?;
        assert_eq!(alerts.len(), 1, "deduplicated per host: {alerts:?}");
        assert_eq!(alerts[0]["status"]["state"], "active");
        let delivered = eventually("delivery metrics", Duration::from_secs(10), || async {
            let m = scrape(metrics_port).await?;
            Ok(value(
                &m,
                "umbra_coordinator_page_deliveries_total{receiver=\"webhook\",outcome=\"delivered\"}",
            )
            .filter(|v| *v >= 1.0))
        })
        .await?;
        assert!(delivered >= 1.0);
        let log = audit(&url, 200, None).await?;
        assert!(
            log.contains("\"event\":\"page_delivery\"") && log.contains("\"delivered\":true"),
            "{log}"
        );

        // Operators decide through umbractl; each decision is audited.
        let decide = |action: fn(Decision) -> Command, target: &str| {
            let url = url.clone();
            let d = Decision {
                target: target.into(),
                reason: "disk swap booked".into(),
                operator: "alice".into(),
            };
            async move { ctl_out(&url, action(d)).await }
        };
        let e = decide(Command::Approve, "no-such-host").await.unwrap_err();
        assert!(e.to_string().contains("no shadow lifecycle"), "{e}");
        let e = decide(Command::Resume, "risk-host").await.unwrap_err();
        assert!(e.to_string().contains("nothing to resume"), "{e}");
        let out = decide(Command::Approve, "risk-host").await?;
        assert_eq!(out.trim(), "risk-host: approved; phase confirmed");
        let out = decide(Command::Deny, "risk-host").await?;
        assert_eq!(out.trim(), "risk-host: denied; phase cancelled");
        let ops: Vec<serde_json::Value> = records(&audit(&url, 1000, Some("risk-host")).await?)
            .into_iter()
            .filter(|r| r["event"] == "operator")
            .collect();
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert_eq!(ops[1]["operator"], "alice");
        assert_eq!(ops[1]["action"], "deny");
        // The denial resolves the page everywhere ...
        eventually("the webhook resolution", Duration::from_secs(10), || {
            let got = hook.received();
            async move {
                Ok(got
                    .iter()
                    .any(|r| {
                        r.body["status"] == "resolved" && r.body["page"]["target"] == "risk-host"
                    })
                    .then_some(()))
            }
        })
        .await?;
        eventually("the alert resolved", Duration::from_secs(10), || {
            let am_url = am_url.clone();
            async move {
                Ok(super::paging::am_alerts(&am_url, "risk-host")
                    .await?
                    .is_empty()
                    .then_some(()))
            }
        })
        .await?;
        // ... and the unchanged risk does not bring it back: several risk
        // runs later the host is still cancelled and nobody was re-paged.
        let firing_before = hook
            .received()
            .iter()
            .filter(|r| r.body["status"] == "firing")
            .count();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let shadows = ctl_out(
            &url,
            Command::Shadows {
                host: Some("risk-host".into()),
                json: true,
            },
        )
        .await?;
        let shadows: serde_json::Value = serde_json::from_str(&shadows)?;
        assert_eq!(shadows[0]["phase"], "cancelled", "{shadows}");
        let firing_after = hook
            .received()
            .iter()
            .filter(|r| r.body["status"] == "firing")
            .count();
        assert_eq!(firing_before, firing_after);
    }

    // Replay: the policy over the stored history, with the active model,
    // reports the confirmation (and, with manual approval, that it would
    // wait), and writes nothing to the audit log.
    let before = audit(&url, 100_000, None).await?.lines().count();
    let replayed = ctl_out(
        &url,
        Command::Replay {
            since: Duration::from_secs(60),
            step: Some(Duration::from_secs(5)),
        },
    )
    .await?;
    let replayed_records = records(&replayed);
    assert!(
        replayed_records.iter().any(|r| r["target"] == "risk-host"
            && r["event"] == "transition"
            && r["to"] == "confirmed"),
        "{replayed}"
    );
    assert!(
        replayed_records
            .iter()
            .any(|r| r["event"] == "admission" && r["verdict"] == "awaiting approval"),
        "{replayed}"
    );
    assert!(replayed.contains("nothing was executed"), "{replayed}");
    assert_eq!(
        audit(&url, 100_000, None).await?.lines().count(),
        before,
        "replay wrote nothing"
    );
    let e = ctl_out(
        &url,
        Command::Replay {
            since: Duration::from_secs(86_400 * 365),
            step: Some(Duration::from_secs(1)),
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");

    // Both versions are listed, the second active.
    let models = ctl_out(
        &url,
        Command::Models {
            kind: "failure/disk".into(),
            json: true,
        },
    )
    .await?;
    let models: serde_json::Value = serde_json::from_str(&models)?;
    let active: Vec<u64> = models
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["active"] == true)
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    assert_eq!(active, [2]);
    assert!(
        models[0]["evaluation"]["by_horizon_days"].is_array(),
        "{models}"
    );

    // The feedback loop: an operator records a failure (audited); with one
    // labelled failure in the store, retraining refuses with the reason.
    let scored = risks(&url).await;
    let disk = scored[0]["component"].as_str().unwrap().to_owned();
    let out = ctl_out(
        &url,
        Command::Failed {
            host: "risk-host".into(),
            component: disk.clone(),
            ago: Some(Duration::from_secs(60)),
            note: "replaced after medium errors".into(),
            operator: "e2e".into(),
        },
    )
    .await?;
    assert!(out.contains("recorded"), "{out}");
    let recorded = records(&audit(&url, 100_000, Some("risk-host")).await?);
    assert!(
        recorded.iter().any(|r| r["event"] == "failure_recorded"
            && r["component"] == disk.as_str()
            && r["operator"] == "e2e"),
        "{recorded:?}"
    );
    let e = ctl_out(&url, Command::Retrain { demand: false })
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("1 labelled failures") && e.to_string().contains("at least 5"),
        "{e}"
    );
    assert!(
        risks(&url)
            .await
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["holdout"] == false),
        "no holdout configured (risk-host would fall in the default 2 %)"
    );
    // Readiness ranks the host by its risk; the demand forecast says what
    // is missing (the agent runs no host collector here, nothing trained).
    let ready = ctl_out(&url, Command::Readiness { json: true }).await?;
    let ready: serde_json::Value = serde_json::from_str(&ready)?;
    assert_eq!(ready[0]["host"], "risk-host", "{ready}");
    assert!(ready[0]["p7d"].as_f64().unwrap() > 0.0, "{ready}");
    assert!(
        ready[0]["explanation"]
            .as_str()
            .unwrap()
            .contains("utilisation unknown"),
        "{ready}"
    );
    let demand = ctl_out(&url, Command::Retrain { demand: true }).await?;
    assert!(demand.contains("forecast/cpu      not trained"), "{demand}");
    let f = ctl_out(
        &url,
        Command::Forecast {
            host: "risk-host".into(),
            json: false,
        },
    )
    .await?;
    assert!(f.contains("no active forecast/cpu model"), "{f}");
    let e = ctl_out(
        &url,
        Command::Forecast {
            host: "nobody".into(),
            json: false,
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no data for host nobody"), "{e}");

    agent.stop().await?;
    c.stop().await
}

/// Bytes that do not load as the kind's model are refused, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_does_not_load_is_refused() -> Result<()> {
    use proto::fleet::v1 as pb;
    let c = InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", "").await?;
    let mut client = pb::fleet_client::FleetClient::new(
        tonic::transport::Channel::from_shared(c.plaintext_url())?
            .connect()
            .await?,
    );
    for (kind, bytes) in [
        ("failure/disk", b"{\"kind\":\"umbra.failure.v1\"}".to_vec()),
        ("failure/disk", vec![0xff; 64]),
        ("no/such-kind", vec![]),
    ] {
        let err = client
            .put_model(pb::PutModelRequest {
                kind: kind.into(),
                model: bytes,
                trained_on: String::new(),
                evaluation_json: String::new(),
                activate: true,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }
    let models = client
        .list_models(pb::ListModelsRequest {
            kind: "failure/disk".into(),
        })
        .await?
        .into_inner()
        .models;
    assert!(models.is_empty());
    c.stop().await
}
