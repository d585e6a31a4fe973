//! Operations: the daemons' `/metrics` (checked by Prometheus' own
//! `promtool`), the alert rules and dashboard shipped in `packaging/`
//! (every metric they use must be one the daemons export), and umbractl's
//! shell completions.

use crate::*;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `GET /metrics` with a plain HTTP/1.1 request; the body.
pub(crate) async fn scrape(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let (head, body) = out.split_once("\r\n\r\n").context("no HTTP head")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    Ok(body.to_owned())
}

/// The value of the first sample line starting with `prefix` (name and labels).
pub(crate) fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` on `text` (exit 0: well-formed and lint-clean).
fn promtool_check_metrics(text: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool (Debian package prometheus; scripts/deps installs it)")?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Family names declared in an exposition (`# TYPE name kind`).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// `umbra_*` metric names an expression file uses, histogram suffixes
/// folded into their family.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("umbra_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        // Only a name that starts at a word boundary (not `my_umbra_z`).
        let boundary =
            i == 0 || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if boundary {
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_packaged_rules_and_dashboard_use_only_real_metrics() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let (grpc, coord_metrics, agent_metrics) = (free_port(), free_port(), free_port());
    let coord_cfg = dir.path().join("coordinator.toml");
    std::fs::write(
        &coord_cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{grpc}\"\n[tls]\ninsecure_plaintext = true\n[storage]\ndata_dir = {:?}\nsync_writes = false\n[metrics]\nlisten = \"127.0.0.1:{coord_metrics}\"\n",
            dir.path().join("data").display().to_string()
        ),
    )?;
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "host_id = \"ops-host\"\nhwprofile = \"umbra/sim-1u\"\nstate_dir = {:?}\n[failure_domain]\nrack = \"r7\"\n[coordinator]\nurl = \"http://127.0.0.1:{grpc}\"\ninsecure_plaintext = true\n[spool]\nfsync = false\n[metrics]\nlisten = \"127.0.0.1:{agent_metrics}\"\n[[collector]]\nprotocol = \"sim\"\ninterval = \"100ms\"\nspeedup = 600.0\nunreadable_probability = 0.05\n",
            dir.path().join("agent").display().to_string()
        ),
    )?;
    let coord_cfg = coord_cfg.display().to_string();
    let agent_cfg = agent_cfg.display().to_string();
    let mut coord = Proc::spawn(
        "umbra-coordinator",
        &["--config", &coord_cfg, "run"],
        dir.path().join("coordinator.log"),
    )?;
    let mut agent = Proc::spawn(
        "umbra-agent",
        &["--config", &agent_cfg, "run"],
        dir.path().join("agent.log"),
    )?;

    // Wait until both sides have seen traffic, then check the numbers.
    let scraped = eventually(
        "metrics showing traffic",
        Duration::from_secs(30),
        || async {
            let a = scrape(agent_metrics).await?;
            let c = scrape(coord_metrics).await?;
            let acked = value(&a, "umbra_agent_uplink_acked_batches_total").unwrap_or(0.0);
            let stored = value(&c, "umbra_coordinator_ingested_samples_total").unwrap_or(0.0);
            Ok((acked >= 5.0 && stored > 0.0 && c.contains("host=\"ops-host\"")).then_some((a, c)))
        },
    )
    .await;
    coord.ensure_running()?;
    agent.ensure_running()?;
    let (agent_text, coord_text) = scraped?;
    let sim = "{collector=\"sim\",device=\"local\"}";
    assert!(value(&agent_text, &format!("umbra_agent_polls_total{sim}")).unwrap() >= 5.0);
    assert!(value(&agent_text, &format!("umbra_agent_readings_total{sim}")).unwrap() > 0.0);
    assert_eq!(
        value(&agent_text, "umbra_agent_uplink_connected"),
        Some(1.0)
    );
    assert_eq!(
        value(&agent_text, "umbra_agent_spool_dropped_samples_total"),
        Some(0.0)
    );
    assert!(agent_text.contains(
        "umbra_agent_poll_duration_seconds_bucket{collector=\"sim\",device=\"local\",le=\"+Inf\"}"
    ));
    assert_eq!(
        value(&coord_text, "umbra_coordinator_agents_connected"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &coord_text,
            "umbra_coordinator_host_connected{host=\"ops-host\"}"
        ),
        Some(1.0)
    );
    assert!(coord_text
        .contains("umbra_coordinator_host_info{host=\"ops-host\",hwprofile=\"umbra/sim-1u\""));
    assert!(coord_text.contains("rack=\"r7\""));
    assert!(
        value(
            &coord_text,
            "umbra_coordinator_store_write_duration_seconds_count"
        )
        .unwrap()
            >= 1.0
    );

    promtool_check_metrics(&agent_text)?;
    promtool_check_metrics(&coord_text)?;

    // Everything the shipped alert rules and dashboard query exists.
    let mut exported = families(&agent_text);
    exported.extend(families(&coord_text));
    let root = repo_root().join("packaging");
    for file in ["prometheus/umbra-alerts.yml", "grafana/umbra.json"] {
        let text = std::fs::read_to_string(root.join(file))?;
        let used = referenced(&text);
        assert!(used.len() >= 8, "{file} uses only {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} queries metrics nobody exports: {unknown:?}"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/umbra.json"))?)?;
    let exprs = dashboard["panels"]
        .as_array()
        .context("panels")?
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["expr"].is_string())
        .count();
    assert!(exprs >= 15, "dashboard has {exprs} queries");

    // The rules parse and their unit tests (alerts fire when they should,
    // not before) pass.
    for args in [
        ["check", "rules", "umbra-alerts.yml"],
        ["test", "rules", "umbra-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(root.join("prometheus"))
            .output()?;
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A disconnect is visible on both sides.
    agent.terminate(Duration::from_secs(20))?;
    let c = eventually("host disconnected", Duration::from_secs(10), || async {
        let c = scrape(coord_metrics).await?;
        Ok((value(&c, "umbra_coordinator_agents_connected") == Some(0.0)).then_some(c))
    })
    .await?;
    assert_eq!(
        value(&c, "umbra_coordinator_host_connected{host=\"ops-host\"}"),
        Some(0.0)
    );
    coord.terminate(Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn referenced_names_fold_histogram_suffixes() {
    let used = referenced(
        r#"histogram_quantile(0.9, rate(umbra_x_seconds_bucket[5m])) + umbra_y_total{job="umbra-agent"} / my_umbra_z"#,
    );
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        vec!["umbra_x_seconds", "umbra_y_total"]
    );
}

#[test]
fn umbractl_bash_completion_registers_and_offers_subcommands() -> Result<()> {
    let script = Command::new(bin("umbractl"))
        .args(["completions", "bash"])
        .output()?;
    assert!(script.status.success());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("umbractl.bash");
    std::fs::write(&path, &script.stdout)?;
    // Load it in a real bash and ask for completions of `umbractl ev`.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(umbractl ev); COMP_CWORD=1; COMP_LINE='umbractl ev'; COMP_POINT=11; _umbractl umbractl ev umbractl; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        ))
        .output()?;
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let words: BTreeSet<&str> = words.lines().collect();
    assert_eq!(words, BTreeSet::from(["eval", "events"]));
    Ok(())
}
