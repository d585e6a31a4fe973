//! `umbractl risk`, `train`, `models`, `shadows`, `audit` and the
//! operator's decisions (`approve`, `deny`, `rollback`, `pause`, `resume`):
//! the prediction and shadow side of the fleet API.

use super::{ago, progress, table, Decision, TrainDataset};
use anyhow::{Context, Result};
use proto::fleet::v1::{self as pb, fleet_client::FleetClient};
use std::io::Write;
use tonic::transport::Channel;

pub(super) async fn risks(
    client: &mut FleetClient<Channel>,
    host: Option<String>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let r = client
        .list_risks(pb::ListRisksRequest {
            host_id: host.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if json {
        let v: Vec<_> = r
            .risks
            .iter()
            .map(|k| {
                let p: serde_json::Map<String, serde_json::Value> = k
                    .windows
                    .iter()
                    .map(|w| (w.window.clone(), serde_json::json!(w.probability)))
                    .collect();
                serde_json::json!({
                    "host": k.host_id, "component": k.component, "probability": p,
                    "explanation": k.explanation, "model_kind": k.model_kind,
                    "model_version": k.model_version, "evaluated_unix_ms": k.evaluated_unix_ms,
                    "history_days": k.history_days, "holdout": k.holdout,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if r.last_run_unix_ms == 0 {
        writeln!(
            out,
            "(no risks yet: no active failure model, or its first run is pending; see `umbractl train`)"
        )?;
        return Ok(());
    }
    let windows: Vec<String> = r
        .risks
        .first()
        .map(|k| {
            k.windows
                .iter()
                .map(|w| format!("P({})", w.window))
                .collect()
        })
        .unwrap_or_default();
    let mut header = vec!["HOST".to_owned(), "COMPONENT".to_owned()];
    header.extend(windows);
    header.extend(["DAYS".to_owned(), "WHY (7 d)".to_owned()]);
    let mut rows = vec![header];
    for k in &r.risks {
        let mut row = vec![k.host_id.clone(), k.component.clone()];
        row.extend(k.windows.iter().map(|w| format!("{:.4}", w.probability)));
        row.push(k.history_days.to_string());
        row.push(if k.holdout {
            format!("[holdout: not shadowed] {}", k.explanation)
        } else {
            k.explanation.clone()
        });
        rows.push(row);
    }
    table(&rows, out)?;
    writeln!(
        out,
        "computed {} with model version {}",
        ago(r.last_run_unix_ms),
        r.risks.first().map_or(0, |k| k.model_version)
    )?;
    Ok(())
}

pub(super) async fn train(
    client: &mut FleetClient<Channel>,
    dataset: TrainDataset,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    use predict::eval::backblaze as bb;
    let TrainDataset::Backblaze {
        path,
        no_activate,
        seed,
    } = dataset;
    let fleet = predict::data::backblaze::load(&path, progress("loading"))
        .with_context(|| format!("reading {}", path.display()))?;
    let model = bb::LstmFailure::train(&fleet, seed, progress("training"))
        .context("training the failure model")?;
    let report = bb::run(&fleet, &[&bb::RuleOfThumb, &model]);
    write!(out, "{report}")?;
    let rel = bb::test_reliability(&fleet, &model);
    writeln!(
        out,
        "\nP(fail within 7 d) on test drive-days: Brier {:.5}, ECE {:.5}",
        rel.brier, rel.ece
    )?;
    let evaluation = crate::learn::evaluation_json(&report, &model, &rel, "backblaze");
    let trained_on = format!(
        "backblaze {} ({} drives, {} drive-days, seed {seed})",
        path.display(),
        report.drives,
        report.rows
    );
    let version = client
        .put_model(pb::PutModelRequest {
            kind: crate::risk::DISK_MODEL.to_owned(),
            model: model.model.to_bytes().context("serialising the model")?,
            trained_on,
            evaluation_json: evaluation.to_string(),
            activate: !no_activate,
        })
        .await?
        .into_inner()
        .version;
    writeln!(
        out,
        "\nstored {} version {version}{}",
        crate::risk::DISK_MODEL,
        if no_activate {
            " (not active)"
        } else {
            ", active from the next risk run"
        }
    )?;
    Ok(())
}

pub(super) async fn retrain(
    client: &mut FleetClient<Channel>,
    demand: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    writeln!(out, "retraining from the coordinator's stored history ...")?;
    let r = client
        .retrain(pb::RetrainRequest { demand })
        .await?
        .into_inner();
    write!(out, "{}", r.report)?;
    if !demand {
        writeln!(
            out,
            "\nstored {} version {}: {} ({})",
            crate::risk::DISK_MODEL,
            r.version,
            if r.activated { "active" } else { "not active" },
            r.activation
        )?;
    }
    Ok(())
}

/// A number for JSON output; NaN (the API's "unknown") as null.
fn json_num(v: f64) -> serde_json::Value {
    if v.is_nan() {
        serde_json::Value::Null
    } else {
        serde_json::json!(v)
    }
}

pub(super) async fn readiness(
    client: &mut FleetClient<Channel>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let r = client
        .list_readiness(pb::ListReadinessRequest {})
        .await?
        .into_inner();
    if json {
        let v: Vec<_> = r
            .hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host": h.host_id, "score": h.score, "p7d": json_num(h.p7d),
                    "utilisation": json_num(h.utilisation), "failure_rate": json_num(h.failure_rate),
                    "explanation": h.explanation,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let mut rows = vec![vec![
        "HOST".to_owned(),
        "READINESS".to_owned(),
        "WHY".to_owned(),
    ]];
    for h in &r.hosts {
        rows.push(vec![
            h.host_id.clone(),
            format!("{:.3}", h.score),
            h.explanation.clone(),
        ]);
    }
    table(&rows, out)
}

pub(super) async fn forecast(
    client: &mut FleetClient<Channel>,
    host: String,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let r = client
        .forecast_demand(pb::ForecastDemandRequest { host_id: host })
        .await?
        .into_inner();
    if json {
        let v: Vec<_> = r
            .resources
            .iter()
            .map(|f| {
                serde_json::json!({
                    "resource": f.resource, "unit": f.unit, "last": json_num(f.last),
                    "model_version": f.model_version, "method": f.method, "coverage_90": json_num(f.coverage),
                    "missing": f.missing,
                    "points": f.points.iter().map(|p| serde_json::json!({
                        "at_unix_ms": p.at_unix_ms, "mean": p.mean, "lower": p.lower, "upper": p.upper,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let mut rows = vec![[
        "RESOURCE",
        "UNIT",
        "LAST",
        "+1 h [90 %]",
        "+6 h [90 %]",
        "+24 h [90 %]",
        "MODEL",
    ]
    .map(str::to_owned)
    .to_vec()];
    for f in &r.resources {
        let at = |k: usize| {
            f.points.get(k).map_or_else(
                || "-".to_owned(),
                |p| format!("{:.4} [{:.4}, {:.4}]", p.mean, p.lower, p.upper),
            )
        };
        let model = if f.missing.is_empty() {
            format!(
                "v{} (coverage {:.0} %)",
                f.model_version,
                f.coverage * 100.0
            )
        } else {
            f.missing.clone()
        };
        rows.push(vec![
            f.resource.clone(),
            f.unit.clone(),
            if f.last.is_nan() {
                "-".to_owned()
            } else {
                format!("{:.4}", f.last)
            },
            at(0),
            at(5),
            at(23),
            model,
        ]);
    }
    table(&rows, out)
}

pub(super) async fn models(
    client: &mut FleetClient<Channel>,
    kind: String,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let models = client
        .list_models(pb::ListModelsRequest { kind })
        .await?
        .into_inner()
        .models;
    if json {
        let v: Vec<_> = models
            .iter()
            .map(|m| {
                serde_json::json!({
                    "kind": m.kind, "version": m.version, "active": m.active,
                    "created_unix_ms": m.created_unix_ms, "trained_on": m.trained_on,
                    "bytes": m.bytes,
                    "evaluation": serde_json::from_str::<serde_json::Value>(&m.evaluation_json)
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let mut rows = vec![[
        "KIND",
        "VERSION",
        "ACTIVE",
        "CREATED",
        "BYTES",
        "TRAINED ON",
    ]
    .map(String::from)
    .to_vec()];
    for m in &models {
        rows.push(vec![
            m.kind.clone(),
            m.version.to_string(),
            if m.active { "yes" } else { "" }.into(),
            ago(m.created_unix_ms),
            m.bytes.to_string(),
            m.trained_on.clone(),
        ]);
    }
    table(&rows, out)?;
    if models.is_empty() {
        writeln!(out, "(no stored models of this kind)")?;
    }
    Ok(())
}

pub(super) async fn shadows(
    client: &mut FleetClient<Channel>,
    host: Option<&str>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let mut r = client
        .list_shadows(pb::ListShadowsRequest {})
        .await?
        .into_inner();
    if let Some(h) = host {
        r.shadows.retain(|s| s.target == h);
    }
    if json {
        let v: Vec<_> = r
            .shadows
            .iter()
            .map(|s| {
                serde_json::json!({
                    "target": s.target, "phase": s.phase, "since_unix_ms": s.since_unix_ms,
                    "p7d": s.p7d, "verdict": s.verdict, "pending": s.pending,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let mut rows = vec![["TARGET", "PHASE", "SINCE", "P(7d)", "PENDING", "VERDICT"]
        .map(String::from)
        .to_vec()];
    for s in &r.shadows {
        rows.push(vec![
            s.target.clone(),
            s.phase.clone(),
            ago(s.since_unix_ms),
            format!("{:.3}", s.p7d),
            s.pending.clone(),
            s.verdict.clone(),
        ]);
    }
    table(&rows, out)?;
    writeln!(out, "mode: {}", r.mode)?;
    Ok(())
}

pub(super) async fn audit(
    client: &mut FleetClient<Channel>,
    since_ms: i64,
    limit: u32,
    target: Option<&str>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let records = client
        .list_audit(pb::ListAuditRequest { since_ms, limit })
        .await?
        .into_inner()
        .records;
    for r in records {
        if let Some(t) = target {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap_or_default();
            if v["target"] != t {
                continue;
            }
        }
        writeln!(out, "{} {}", r.time_ms, r.json)?;
    }
    Ok(())
}

pub(super) async fn decide(
    client: &mut FleetClient<Channel>,
    action: &str,
    d: Decision,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let r = client
        .control_shadow(pb::ControlShadowRequest {
            target: d.target.clone(),
            action: action.to_owned(),
            operator: d.operator,
            reason: d.reason,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{action} {}: {}", d.target, s.message()))?
        .into_inner();
    let done = match action {
        "deny" => "denied",
        "rollback" => "rolled back",
        "approve" => "approved",
        "pause" => "paused",
        _ => "resumed",
    };
    writeln!(
        out,
        "{}: {done}; phase {}{}",
        d.target,
        r.phase,
        if r.paused { " (paused)" } else { "" }
    )?;
    Ok(())
}

pub(super) async fn replay(
    client: &mut FleetClient<Channel>,
    since_ms: i64,
    step_ms: i64,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let r = client
        .replay(pb::ReplayRequest {
            since_ms,
            until_ms: 0,
            step_ms,
        })
        .await
        .map_err(|s| anyhow::anyhow!("replay: {}", s.message()))?
        .into_inner();
    for rec in &r.records {
        writeln!(out, "{} {}", rec.time_ms, rec.json)?;
    }
    writeln!(
        out,
        "# {} records, failure/disk model version {}; nothing was executed",
        r.records.len(),
        r.model_version
    )?;
    Ok(())
}
