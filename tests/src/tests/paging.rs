//! Paging against real and wire-exact peers: Debian's Prometheus
//! Alertmanager (v2 API) on loopback, and a loopback receiver that checks
//! PagerDuty Events API v2, Opsgenie Alert API v2 and webhook requests
//! against their documented schemas and answers as those services do
//! (202 and their JSON bodies; 400 with the reason for an invalid event).

use crate::{free_port, Proc};
use anyhow::{ensure, Context, Result};
use coordinator::paging::{Notice, Page, Pagers, PagingConfig};
use coordinator::shadow::engine::Severity;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Alertmanager on an ephemeral port, clustering off, one null receiver.
pub async fn start_alertmanager(dir: &std::path::Path) -> Result<(Proc, String)> {
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route:\n  receiver: 'null'\n  group_wait: 1h\nreceivers:\n  - name: 'null'\n",
    )?;
    let port = free_port();
    let mut cmd = Command::new("prometheus-alertmanager");
    cmd.arg(format!(
        "--config.file={}",
        dir.join("alertmanager.yml").display()
    ))
    .arg(format!("--storage.path={}", dir.join("am-data").display()))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .arg("--cluster.listen-address=");
    let mut proc = Proc::spawn_cmd("alertmanager", cmd, dir.join("alertmanager.log"))?;
    let url = format!("http://127.0.0.1:{port}");
    let http = coordinator::actuate::http::Client::new(None, Duration::from_secs(2))?;
    let ready = format!("{url}/-/ready");
    crate::eventually("alertmanager ready", Duration::from_secs(20), || {
        let alive = proc.ensure_running();
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            alive?;
            let r = http.send(http::Method::GET, &ready, &[], None).await?;
            Ok(r.status.is_success().then_some(()))
        }
    })
    .await?;
    Ok((proc, url))
}

/// Alertmanager's alerts for `target` (active ones only, as its API lists).
pub async fn am_alerts(url: &str, target: &str) -> Result<Vec<Value>> {
    let http = coordinator::actuate::http::Client::new(None, Duration::from_secs(2))?;
    let filter = format!("target=\"{target}\"");
    let q: String = filter
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = http
        .send(
            http::Method::GET,
            &format!("{url}/api/v2/alerts?filter={q}"),
            &[],
            None,
        )
        .await?;
    ensure!(r.status.is_success(), "GET alerts: {}", r.status);
    Ok(r.json()
        .context("alerts JSON")?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// One request the receiver accepted or refused.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    pub status: u16,
}

/// A loopback receiver for PagerDuty, Opsgenie and webhook requests.
/// `fail_first` requests are answered 500 (a service hiccup).
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z')
    })
}

/// PagerDuty Events API v2 validation: the reasons an event is invalid.
fn pagerduty_errors(b: &Value) -> Vec<String> {
    let mut e = Vec::new();
    if b["routing_key"].as_str().is_none_or(|k| k.len() != 32) {
        e.push("routing_key must be the 32-character integration key".into());
    }
    let action = b["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        e.push(format!("event_action {action:?} is invalid"));
    }
    if b["dedup_key"].as_str().is_some_and(|k| k.len() > 255) {
        e.push("dedup_key is over 255 characters".into());
    }
    if action == "trigger" {
        let p = &b["payload"];
        if p["summary"]
            .as_str()
            .is_none_or(|s| s.is_empty() || s.len() > 1024)
        {
            e.push("payload.summary is required, at most 1024 characters".into());
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            e.push("payload.source is required".into());
        }
        if !["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or(""))
        {
            e.push("payload.severity must be critical, error, warning or info".into());
        }
        if !p["timestamp"].is_null() && !is_rfc3339(&p["timestamp"]) {
            e.push("payload.timestamp is not ISO 8601".into());
        }
    } else if b["dedup_key"].as_str().is_none() {
        e.push("dedup_key is required to acknowledge or resolve".into());
    }
    e
}

/// Opsgenie Alert API v2 validation (create and close).
fn opsgenie_errors(path: &str, auth: Option<&str>, b: &Value) -> Vec<String> {
    let mut e = Vec::new();
    if !auth.is_some_and(|a| a.starts_with("GenieKey ") && a.len() > 9) {
        e.push("Authorization: GenieKey <key> is required".into());
    }
    if path == "/v2/alerts" {
        if b["message"]
            .as_str()
            .is_none_or(|m| m.is_empty() || m.chars().count() > 130)
        {
            e.push("message is required, at most 130 characters".into());
        }
        if b["alias"].as_str().is_some_and(|a| a.len() > 512) {
            e.push("alias is over 512 characters".into());
        }
        if !b["priority"].is_null()
            && !["P1", "P2", "P3", "P4", "P5"].contains(&b["priority"].as_str().unwrap_or(""))
        {
            e.push("priority must be P1..P5".into());
        }
        if b["details"]
            .as_object()
            .is_some_and(|d| d.values().any(|v| !v.is_string()))
        {
            e.push("details values must be strings".into());
        }
    } else if !(path.starts_with("/v2/alerts/") && path.ends_with("/close?identifierType=alias")) {
        e.push(format!("unknown endpoint {path}"));
    }
    e
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Result<Receiver> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", l.local_addr()?);
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while let Ok((s, _)) = l.accept().await {
                n += 1;
                let seen = seen.clone();
                let fail = n <= fail_first;
                tokio::spawn(async move {
                    let _ = serve(s, fail, &seen).await;
                });
            }
        });
        Ok(Receiver { url, got })
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn serve(s: tokio::net::TcpStream, fail: bool, seen: &Mutex<Vec<Received>>) -> Result<()> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let (mut len, mut auth, mut ctype) = (0usize, None, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse()?,
            "authorization" => auth = Some(v.trim().to_owned()),
            "content-type" => ctype = v.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = if fail {
        (500, json!({"message": "internal error"}))
    } else if method != "POST" || !ctype.starts_with("application/json") {
        (400, json!({"message": "want a JSON POST"}))
    } else if path == "/v2/enqueue" {
        let errors = pagerduty_errors(&body);
        if errors.is_empty() {
            (
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}),
            )
        } else {
            (
                400,
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
            )
        }
    } else if path.starts_with("/v2/alerts") {
        let errors = opsgenie_errors(&path, auth.as_deref(), &body);
        if errors.is_empty() {
            (
                202,
                json!({"result": "Request will be processed", "took": 0.01, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}),
            )
        } else {
            (422, json!({"message": errors.join("; "), "took": 0.0}))
        }
    } else if path == "/hook" {
        if body["version"] == 1
            && ["firing", "resolved"].contains(&body["status"].as_str().unwrap_or(""))
        {
            (200, json!({}))
        } else {
            (400, json!({"message": "not an umbra webhook document"}))
        }
    } else {
        (404, json!({"message": "no such endpoint"}))
    };
    seen.lock().unwrap().push(Received {
        path,
        authorization: auth,
        body,
        status,
    });
    let text = answer.to_string();
    let mut s = r.into_inner();
    s.write_all(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    )
    .await?;
    s.shutdown().await?;
    Ok(())
}

fn page(target: &str, at_ms: i64) -> Page {
    Page {
        key: Page::dedup_key(target),
        target: target.into(),
        component: "disk:5000c500a1b2c3d4".into(),
        severity: Severity::Critical,
        summary: format!("{target}: risk confirmed (P(fail 7d)=0.91)"),
        p24h: 0.42,
        p7d: 0.91,
        window: "7d".into(),
        explanation: "SMART 188 command timeouts rising".into(),
        phase: "confirmed".into(),
        dry_run: true,
        commands: vec![format!("umbractl approve {target}")],
        at_ms,
    }
}

fn all_pagers(am: &str, rx: &str, retries: u32) -> Result<Pagers> {
    let cfg: PagingConfig = toml::from_str(&format!(
        r#"
        timeout = "2s"
        retries = {retries}
        [[receivers]]
        kind = "alertmanager"
        url = "{am}"
        [[receivers]]
        kind = "pagerduty"
        url = "{rx}/v2/enqueue"
        routing_key = "R0UTINGKEY0123456789012345678901"
        [[receivers]]
        kind = "opsgenie"
        url = "{rx}"
        api_key = "eb243592-faa2-4ba2-a551-1afdf565c889"
        [[receivers]]
        kind = "webhook"
        url = "{rx}/hook"
        "#
    ))?;
    cfg.validate().map_err(anyhow::Error::msg)?;
    Ok(Pagers::new(&cfg)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_reach_alertmanager_pagerduty_opsgenie_and_webhooks_and_resolve() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut am, am_url) = start_alertmanager(dir.path()).await?;
    // The first request of all fails with 500: retried.
    let rx = Receiver::start(1).await?;
    let pagers = all_pagers(&am_url, &rx.url, 2)?;
    let now = coordinator::now_ms();

    let trigger = Notice::Trigger(page("node-07", now));
    for o in pagers.deliver(&trigger, false).await {
        o.result.with_context(|| o.receiver)?;
    }
    let alerts = am_alerts(&am_url, "node-07").await?;
    ensure!(alerts.len() == 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["labels"]["alertname"], "UmbraFailureRisk");
    assert_eq!(a["annotations"]["p_fail_7d"], "0.910");
    assert_eq!(a["annotations"]["dry_run"], "true");

    // Sent again (a refresh, or the next step of the lifecycle): still one alert.
    for o in pagers.deliver(&trigger, true).await {
        o.result.with_context(|| o.receiver)?;
    }
    assert_eq!(am_alerts(&am_url, "node-07").await?.len(), 1);

    let resolve = Notice::Resolve(page("node-07", coordinator::now_ms()));
    for o in pagers.deliver(&resolve, false).await {
        o.result.with_context(|| o.receiver)?;
    }
    // Resolved alerts leave Alertmanager's active list.
    crate::eventually("alert resolved", Duration::from_secs(10), || {
        let url = am_url.clone();
        async move { Ok(am_alerts(&url, "node-07").await?.is_empty().then_some(())) }
    })
    .await?;

    let got = rx.received();
    assert_eq!(got[0].status, 500, "the hiccup");
    let ok: Vec<&Received> = got.iter().filter(|r| r.status / 100 == 2).collect();
    assert!(got.iter().skip(1).all(|r| r.status / 100 == 2), "{got:#?}");
    let at = |path: &str| ok.iter().filter(|r| r.path == path).count();
    // Trigger and resolve; the refresh only went to Alertmanager.
    assert_eq!(at("/v2/enqueue"), 2, "{ok:#?}");
    assert_eq!(at("/v2/alerts"), 1);
    assert_eq!(
        at("/v2/alerts/umbra%2Fnode-07/close?identifierType=alias"),
        1
    );
    assert_eq!(at("/hook"), 2);
    let pd_resolve = ok
        .iter()
        .find(|r| r.path == "/v2/enqueue" && r.body["event_action"] == "resolve")
        .context("PagerDuty resolve")?;
    assert_eq!(pd_resolve.body["dedup_key"], "umbra/node-07");
    assert!(ok
        .iter()
        .filter(|r| r.path.starts_with("/v2/alerts"))
        .all(|r| r
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("GenieKey "))));

    // A receiver that refuses the event (400) is reported, not retried.
    let mut bad = page("node-08", now);
    bad.summary = String::new();
    let before = rx.received().len();
    let outcomes = pagers.deliver(&Notice::Trigger(bad), false).await;
    let pd = outcomes.iter().find(|o| o.receiver == "pagerduty").unwrap();
    let e = pd.result.as_ref().unwrap_err().to_string();
    assert!(e.contains("400") && e.contains("payload.summary"), "{e}");
    let og = outcomes.iter().find(|o| o.receiver == "opsgenie").unwrap();
    assert!(og.result.as_ref().unwrap_err().to_string().contains("422"));
    let pd_tries = rx.received()[before..]
        .iter()
        .filter(|r| r.path == "/v2/enqueue")
        .count();
    assert_eq!(pd_tries, 1, "client errors are not retried");

    // An unreachable receiver fails after its retries; the others still get the page.
    let gone = all_pagers(&am_url, &format!("http://127.0.0.1:{}", free_port()), 1)?;
    let outcomes = gone
        .deliver(&Notice::Trigger(page("node-09", now)), false)
        .await;
    let (ok, failed): (Vec<_>, Vec<_>) = outcomes.iter().partition(|o| o.result.is_ok());
    assert_eq!(
        ok.iter().map(|o| o.receiver).collect::<Vec<_>>(),
        ["alertmanager"]
    );
    assert_eq!(failed.len(), 3);
    am.ensure_running()?;
    Ok(())
}
