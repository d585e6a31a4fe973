//! `umbractl`: fleet status, series and events over the fleet gRPC API.
//!
//! Output goes to the given writer so tests can check it.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use proto::fleet::v1::{self as pb, fleet_client::FleetClient};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

mod risk;

#[derive(Parser, Debug)]
#[command(
    name = "umbractl",
    version,
    about = "Umbra fleet CLI",
    long_about = "Umbra fleet CLI: hosts, series, hardware events, inventory and store \
statistics from a coordinator's fleet API, and offline evaluation of the \
prediction models on public datasets (umbractl eval). Connection settings \
come from flags or UMBRA_COORDINATOR, UMBRA_CA, UMBRA_CERT, UMBRA_KEY."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the coordinator.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Coordinator URL: https://host:7443 (TLS) or http://127.0.0.1:7443 (plaintext demo).
    #[arg(
        long,
        global = true,
        env = "UMBRA_COORDINATOR",
        default_value = "http://127.0.0.1:7443"
    )]
    pub coordinator: String,
    /// CA bundle that signed the coordinator's certificate.
    #[arg(long, global = true, env = "UMBRA_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (mutual TLS).
    #[arg(long, global = true, env = "UMBRA_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (mutual TLS).
    #[arg(long, global = true, env = "UMBRA_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Name to verify in the coordinator's certificate (default: the URL's host).
    #[arg(long, global = true)]
    pub server_name: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell), e.g. `umbractl completions bash > /etc/bash_completion.d/umbractl`.
    Completions { shell: clap_complete::Shell },
    /// Table of hosts: profile, last seen, sample rate, spool backlog.
    Hosts {
        #[arg(long)]
        json: bool,
    },
    /// Samples of a host's series, with a sparkline per series.
    Series {
        host: String,
        /// Substring of the metric name.
        metric: Option<String>,
        /// How far back, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Print every sample as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Use 1m or 1h rollups instead of raw samples.
        #[arg(long, value_parser = ["1m", "1h"])]
        rollup: Option<String>,
    },
    /// Follow fleet events (connects, drops, rejects, new series).
    Watch {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Hardware events devices logged (BMC SEL entries, ...), newest first.
    Events {
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// How far back, e.g. 1h, 7d.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Lowest severity shown.
        #[arg(long, default_value = "info", value_parser = ["info", "warning", "critical"])]
        severity: String,
        #[arg(long, default_value_t = 200)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// A host's components: its profile's and what its collectors found
    /// (disks with model, serial, firmware, power-on hours).
    Inventory {
        host: String,
        #[arg(long)]
        json: bool,
    },
    /// Store statistics.
    Stats,
    /// Failure risks from the coordinator's active model, highest P(7 d)
    /// first, with the metrics behind each.
    Risk {
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Train a model on a public dataset (with progress), evaluate it on
    /// held-out drives, and store it in the coordinator as the next version
    /// of its kind; activated (used by the next risk run) unless
    /// --no-activate.
    Train {
        #[command(subcommand)]
        dataset: TrainDataset,
    },
    /// Shadow lifecycles: phase, since when, risk, admission verdict.
    Shadows {
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The shadow audit log (transitions, pages, admissions with their
    /// plan, operators' decisions, page deliveries), oldest first, one JSON
    /// record per line.
    Audit {
        /// How far back, e.g. 1h, 7d.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: Duration,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Only records about this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Run the shadow policy over stored history with the active model and
    /// print what it would have done (transitions, pages, admissions,
    /// starts), one JSON record per line. Nothing executes.
    Replay {
        /// How far back to start, e.g. 7d.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Step between evaluations; default: the coordinator's risk interval.
        #[arg(long, value_parser = humantime::parse_duration)]
        step: Option<Duration>,
    },
    /// Let a confirmed host's shadow start (with `manual_approval`).
    Approve(Decision),
    /// Refuse a confirmed host's shadow: its lifecycle is cancelled.
    Deny(Decision),
    /// Send a shadow's traffic back to the primary and release the spare.
    Rollback(Decision),
    /// Hold a lifecycle where it is (no further step until resume).
    Pause(Decision),
    /// Let a paused lifecycle go on.
    Resume(Decision),
    /// Record that a component failed: a training label for the feedback
    /// loop (`retrain`). Recording it again replaces the earlier record.
    Failed {
        host: String,
        /// The component, as its series name it (e.g. `disk:wwn-0x5000…`).
        component: String,
        /// How long ago it failed, e.g. 2h; default: now.
        #[arg(long, value_parser = humantime::parse_duration)]
        ago: Option<Duration>,
        #[arg(long, default_value = "")]
        note: String,
        /// Who records it; default: $USER.
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
    },
    /// Retrain the disk failure model from the coordinator's stored history
    /// and recorded failures now (the periodic feedback loop's job), print
    /// its evaluation and tuned threshold, and say whether it was activated.
    Retrain {
        /// Retrain the resource-demand forecasters (CPU, memory, network,
        /// storage) instead.
        #[arg(long)]
        demand: bool,
    },
    /// Migration readiness of every host, highest first: which hosts' work
    /// to move first (risk, utilisation, failure history; see `[readiness]`).
    Readiness {
        #[arg(long)]
        json: bool,
    },
    /// A host's resource-demand forecast: CPU, memory, network and storage
    /// for the next 24 hours with 90 % intervals.
    Forecast {
        host: String,
        #[arg(long)]
        json: bool,
    },
    /// Stored versions of a model kind, with their evaluation.
    Models {
        #[arg(default_value = "failure/disk")]
        kind: String,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate prediction methods on a public dataset (local files; no
    /// coordinator needed).
    Eval {
        #[command(subcommand)]
        dataset: EvalDataset,
    },
}

#[derive(Subcommand, Debug)]
pub enum TrainDataset {
    /// The disk failure model (kind failure/disk) from Backblaze daily
    /// SMART snapshots: a directory of YYYY-MM-DD.csv[.gz].
    Backblaze {
        path: PathBuf,
        /// Store without activating.
        #[arg(long)]
        no_activate: bool,
        /// Seed of the initial weights and negative sampling.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum EvalDataset {
    /// Backblaze daily SMART snapshots: a directory of YYYY-MM-DD.csv[.gz].
    Backblaze {
        path: PathBuf,
        /// Also draw the 7-day reliability diagram (log–log) into this PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Numenta Anomaly Benchmark: a directory with data/ and combined_windows.json.
    Nab {
        path: PathBuf,
        #[command(flatten)]
        alarm: AlarmArgs,
        /// Also draw the labeled series (values, windows shaded, probation
        /// greyed, alarm onsets in red), at most 12 panels, into this PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Resource-demand forecasting on NAB's real series (a NAB root, as for
    /// `nab`): the production forecaster (48 h in, 24 h out) against
    /// seasonal naive and last value on each series' last 3 days.
    Demand {
        path: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Skoltech Anomaly Benchmark: a directory of experiment CSVs (and anomaly-free/).
    Skab {
        path: PathBuf,
        #[command(flatten)]
        alarm: AlarmArgs,
        /// Also draw each run's surprise (−log10 tail probability) with the
        /// labeled anomalies shaded and alarm onsets in red, at most 12
        /// panels, into this PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

/// The anomaly alarm's hysteresis.
#[derive(Args, Debug, Clone, Copy)]
pub struct AlarmArgs {
    /// Tail probability at or below which a step counts as anomalous.
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
    /// Anomalous steps needed ...
    #[arg(long, default_value_t = 3)]
    pub confirm: usize,
    /// ... among this many latest steps to raise the alarm.
    #[arg(long, default_value_t = 5)]
    pub over: usize,
    /// Calm steps in a row that clear it.
    #[arg(long, default_value_t = 10)]
    pub quiet: usize,
}

impl AlarmArgs {
    fn hysteresis(self) -> predict::anomaly::Hysteresis {
        predict::anomaly::Hysteresis {
            alpha: self.alpha,
            confirm: self.confirm,
            over: self.over,
            quiet: self.quiet,
        }
    }
}

/// A one-line progress bar on stderr (only when it is a terminal).
pub(crate) fn progress(what: &str) -> impl FnMut(usize, usize) + '_ {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty {
            let width = 30;
            let filled = (done * width)
                .checked_div(total)
                .unwrap_or(width)
                .min(width);
            eprint!(
                "\r{what} [{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            if done == total {
                eprintln!();
            }
        }
    }
}

/// Progress of an anomaly evaluation: a "training" bar, then a "scoring" one.
fn phased_progress() -> impl FnMut(&str, usize, usize) {
    let (mut train, mut score) = (progress("training"), progress("scoring"));
    move |phase, done, total| {
        if phase == "train" {
            train(done, total);
        } else {
            score(done, total);
        }
    }
}

fn eval(dataset: EvalDataset, out: &mut (dyn Write + Send)) -> Result<()> {
    match dataset {
        EvalDataset::Backblaze { path, plot } => {
            let fleet = predict::data::backblaze::load(&path, progress("loading"))
                .with_context(|| format!("reading {}", path.display()))?;
            use predict::eval::backblaze as bb;
            let model = bb::LstmFailure::train(&fleet, 1, progress("training"))
                .context("training the failure model")?;
            let report = bb::run(&fleet, &[&bb::RuleOfThumb, &model]);
            write!(out, "{report}")?;
            let r = bb::test_reliability(&fleet, &model);
            writeln!(
                out,
                "\nP(fail within 7 d) on test drive-days: Brier {:.5}, ECE {:.5}; reliability (mean predicted, observed, n):",
                r.brier, r.ece
            )?;
            for (p, o, n) in &r.curve {
                writeln!(out, "  {p:.2e}  {o:.2e}  {n}")?;
            }
            if let Some(file) = plot {
                std::fs::write(&file, predict::plot::reliability_png(&r.curve, 480))
                    .with_context(|| format!("writing {}", file.display()))?;
                writeln!(out, "plot: {} (reliability diagram)", file.display())?;
            }
            writeln!(out, "\nhighest 7-day risks among test drives (last observed day); per attribute: trend of log1p(raw) relative to its level, and the drop in P when it is replaced by its training mean:")?;
            for line in bb::top_risks(&fleet, &model, 5) {
                writeln!(out, "  {line}")?;
            }
            Ok(())
        }
        EvalDataset::Demand { path, seed } => {
            let series = predict::data::nab::load(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let report = predict::eval::demand::run(&series, seed, progress("training"))?;
            write!(out, "{report}")?;
            Ok(())
        }
        EvalDataset::Nab { path, alarm, plot } => {
            let series = predict::data::nab::load(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let report = predict::eval::nab::run(
                &series,
                &predict::eval::nab::Config {
                    hysteresis: alarm.hysteresis(),
                    ..predict::eval::nab::Config::default()
                },
                phased_progress(),
            )?;
            write!(out, "{report}")?;
            if let Some(file) = plot {
                write_plot(&file, &report.traces, out)?;
            }
            Ok(())
        }
        EvalDataset::Skab { path, alarm, plot } => {
            let (runs, free) = predict::data::skab::load(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let report = predict::eval::skab::run(
                &runs,
                free.as_ref(),
                &predict::eval::skab::Config {
                    hysteresis: alarm.hysteresis(),
                    ..predict::eval::skab::Config::default()
                },
                phased_progress(),
            )?;
            write!(out, "{report}")?;
            if let Some(file) = plot {
                write_plot(&file, &report.traces, out)?;
            }
            Ok(())
        }
    }
}

/// The first 12 labeled traces as a PNG.
fn write_plot(
    file: &std::path::Path,
    traces: &[predict::plot::Trace],
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let labeled: Vec<_> = traces
        .iter()
        .filter(|t| !t.windows.is_empty())
        .take(12)
        .cloned()
        .collect();
    std::fs::write(file, predict::plot::traces_png(&labeled, 1200, 120))
        .with_context(|| format!("writing {}", file.display()))?;
    writeln!(
        out,
        "plot: {} ({} labeled series of {})",
        file.display(),
        labeled.len(),
        traces.len()
    )?;
    Ok(())
}

pub async fn connect(conn: &Connection) -> Result<FleetClient<Channel>> {
    let mut ep = Channel::from_shared(conn.coordinator.clone())
        .with_context(|| format!("bad coordinator URL {:?}", conn.coordinator))?
        .connect_timeout(Duration::from_secs(5));
    if conn.coordinator.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &conn.ca {
            tls = tls.ca_certificate(Certificate::from_pem(
                std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
            ));
        }
        if let (Some(c), Some(k)) = (&conn.cert, &conn.key) {
            tls = tls.identity(Identity::from_pem(std::fs::read(c)?, std::fs::read(k)?));
        }
        if let Some(n) = &conn.server_name {
            tls = tls.domain_name(n.clone());
        }
        ep = ep.tls_config(tls)?;
    }
    let ch = ep
        .connect()
        .await
        .with_context(|| format!("connecting to {}", conn.coordinator))?;
    Ok(FleetClient::new(ch))
}

/// An operator's decision on one lifecycle.
#[derive(Debug, clap::Args)]
pub struct Decision {
    /// The protected host.
    pub target: String,
    /// Why (goes into the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who decides; default: $USER.
    #[arg(long, env = "USER", default_value = "unknown")]
    pub operator: String,
}

pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "umbractl", out);
        return Ok(());
    }
    if let Command::Eval { dataset } = cli.command {
        return eval(dataset, out);
    }
    let mut client = connect(&cli.conn).await?;
    match cli.command {
        Command::Hosts { json } => hosts(&mut client, json, out).await,
        Command::Series {
            host,
            metric,
            since,
            json,
            rollup,
        } => {
            series(
                &mut client,
                &host,
                metric.as_deref().unwrap_or(""),
                since,
                json,
                rollup.as_deref(),
                out,
            )
            .await
        }
        Command::Watch { count } => watch(&mut client, count, out).await,
        Command::Events {
            host,
            since,
            severity,
            limit,
            json,
        } => {
            let since_ms = crate::now_ms()
                .saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
            let events = client
                .list_hardware_events(pb::ListHardwareEventsRequest {
                    host_id: host.unwrap_or_default(),
                    since_ms,
                    min_severity: severity,
                    limit,
                })
                .await?
                .into_inner()
                .events;
            if json {
                for e in &events {
                    let attributes: std::collections::BTreeMap<_, _> =
                        e.attributes.iter().collect();
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({
                            "host": e.host_id, "time_ms": e.time_ms, "device_time": e.device_time,
                            "observed_ms": e.observed_ms, "source": e.source,
                            "component": e.component, "severity": e.severity,
                            "description": e.description, "attributes": attributes,
                        })
                    )?;
                }
                return Ok(());
            }
            let mut rows = vec![vec![
                "WHEN".into(),
                "HOST".into(),
                "SEVERITY".into(),
                "COMPONENT".into(),
                "EVENT".into(),
            ]];
            for e in &events {
                rows.push(vec![
                    format!(
                        "{}{}",
                        ago(e.time_ms),
                        if e.device_time { "" } else { " (seen)" }
                    ),
                    e.host_id.clone(),
                    e.severity.clone(),
                    e.component.clone(),
                    e.description.clone(),
                ]);
            }
            table(&rows, out)
        }
        Command::Inventory { host, json } => {
            let components = client
                .list_components(pb::ListComponentsRequest { host_id: host })
                .await?
                .into_inner()
                .components;
            if json {
                let v: Vec<_> = components
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id, "kind": c.kind, "model": c.model, "serial": c.serial,
                            "firmware": c.firmware, "power_on_hours": c.power_on_hours,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            let mut rows = vec![["ID", "KIND", "MODEL", "SERIAL", "FIRMWARE", "POWER-ON H"]
                .map(String::from)
                .to_vec()];
            for c in &components {
                rows.push(vec![
                    c.id.clone(),
                    c.kind.clone(),
                    c.model.clone(),
                    c.serial.clone(),
                    c.firmware.clone(),
                    if c.power_on_hours == 0 {
                        "-".into()
                    } else {
                        c.power_on_hours.to_string()
                    },
                ]);
            }
            table(&rows, out)
        }
        Command::Risk { host, json } => risk::risks(&mut client, host, json, out).await,
        Command::Train { dataset } => risk::train(&mut client, dataset, out).await,
        Command::Models { kind, json } => risk::models(&mut client, kind, json, out).await,
        Command::Shadows { host, json } => {
            risk::shadows(&mut client, host.as_deref(), json, out).await
        }
        Command::Audit {
            since,
            limit,
            target,
        } => {
            let since_ms = crate::now_ms()
                .saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
            risk::audit(&mut client, since_ms, limit, target.as_deref(), out).await
        }
        Command::Replay { since, step } => {
            let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let since_ms = crate::now_ms().saturating_sub(ms(since));
            risk::replay(&mut client, since_ms, step.map_or(0, ms), out).await
        }
        Command::Failed {
            host,
            component,
            ago,
            note,
            operator,
        } => {
            let at = ago.map_or(0, |d| {
                crate::now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            });
            client
                .record_failure(pb::RecordFailureRequest {
                    host_id: host.clone(),
                    component: component.clone(),
                    at_unix_ms: at,
                    note,
                    operator,
                })
                .await?;
            writeln!(out, "recorded: {host} {component} failed")?;
            Ok(())
        }
        Command::Retrain { demand } => risk::retrain(&mut client, demand, out).await,
        Command::Readiness { json } => risk::readiness(&mut client, json, out).await,
        Command::Forecast { host, json } => risk::forecast(&mut client, host, json, out).await,
        Command::Approve(d) => risk::decide(&mut client, "approve", d, out).await,
        Command::Deny(d) => risk::decide(&mut client, "deny", d, out).await,
        Command::Rollback(d) => risk::decide(&mut client, "rollback", d, out).await,
        Command::Pause(d) => risk::decide(&mut client, "pause", d, out).await,
        Command::Resume(d) => risk::decide(&mut client, "resume", d, out).await,
        Command::Eval { .. } | Command::Completions { .. } => {
            unreachable!("handled before connecting")
        }
        Command::Stats => {
            let s = client
                .store_stats(pb::StoreStatsRequest {})
                .await?
                .into_inner();
            writeln!(out, "series            {}", s.series)?;
            writeln!(
                out,
                "samples ingested  {} (since start)",
                s.samples_ingested
            )?;
            writeln!(
                out,
                "batches ingested  {} ({} duplicate, {} rejected)",
                s.batches_ingested, s.duplicate_batches, s.rejected_batches
            )?;
            writeln!(out, "disk (SST)        {} bytes", s.disk_bytes)?;
            Ok(())
        }
    }
}

fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let d = (crate::now_ms() - ms).max(0) / 1000;
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86_399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// Left-aligned text table.
fn table(rows: &[Vec<String>], out: &mut (dyn Write + Send)) -> Result<()> {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

async fn hosts(
    client: &mut FleetClient<Channel>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let hosts = client
        .list_hosts(pb::ListHostsRequest {})
        .await?
        .into_inner()
        .hosts;
    if json {
        let v: Vec<_> = hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host": h.host_id, "profile": h.hwprofile_id, "connected": h.connected,
                    "last_seen_unix_ms": h.last_seen_unix_ms, "sample_rate": h.sample_rate,
                    "series": h.series_count, "backlog_batches": h.backlog_batches,
                    "backlog_samples": h.backlog_samples, "produced_samples": h.produced_samples,
                    "dropped_samples": h.dropped_samples, "rejected_samples": h.rejected_samples,
                    "stored_samples": h.stored_samples,
                    "rack": h.rack, "pdu": h.pdu, "tor": h.tor, "site": h.site,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let mut rows = vec![[
        "HOST",
        "PROFILE",
        "STATE",
        "LAST SEEN",
        "RATE/s",
        "SERIES",
        "BACKLOG",
        "DROPPED",
        "STORED",
        "RACK",
    ]
    .map(String::from)
    .to_vec()];
    for h in &hosts {
        rows.push(vec![
            h.host_id.clone(),
            h.hwprofile_id.clone(),
            if h.connected { "up" } else { "down" }.into(),
            ago(h.last_seen_unix_ms),
            format!("{:.1}", h.sample_rate),
            h.series_count.to_string(),
            format!("{} batches", h.backlog_batches),
            h.dropped_samples.to_string(),
            h.stored_samples.to_string(),
            h.rack.clone(),
        ]);
    }
    table(&rows, out)?;
    if hosts.is_empty() {
        writeln!(out, "(no hosts have connected yet)")?;
    }
    Ok(())
}

/// Eight-level block sparkline of the finite values, resampled to `width`.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || width == 0 {
        return String::new();
    }
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let n = finite.len().min(width);
    (0..n)
        .map(|i| {
            // mean of the slice of samples that falls into column i
            let a = i * finite.len() / n;
            let b = ((i + 1) * finite.len() / n).max(a + 1);
            #[allow(clippy::cast_precision_loss)]
            let mean = finite[a..b].iter().sum::<f64>() / (b - a) as f64;
            let level = if hi > lo {
                ((mean - lo) / (hi - lo) * 7.0).round()
            } else {
                3.0
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            BARS[(level as usize).min(7)]
        })
        .collect()
}

fn fmt_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

async fn series(
    client: &mut FleetClient<Channel>,
    host: &str,
    metric: &str,
    since: Duration,
    json: bool,
    rollup: Option<&str>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let start_ms = crate::now_ms() - i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2);
    if let Some(r) = rollup {
        let resolution_ms = if r == "1h" { 3_600_000 } else { 60_000 };
        let resp = client
            .query_rollup(pb::QueryRollupRequest {
                host_id: host.into(),
                metric: metric.into(),
                start_ms,
                end_ms: 0,
                resolution_ms,
            })
            .await?
            .into_inner();
        let mut rows = vec![["SERIES", "BUCKETS", "MIN", "MEAN", "MAX", "TREND (mean)"]
            .map(String::from)
            .to_vec()];
        for s in resp.series {
            let info = s.series.unwrap_or_default();
            let means: Vec<f64> = s.buckets.iter().map(|b| b.mean).collect();
            let min = s
                .buckets
                .iter()
                .map(|b| b.min)
                .fold(f64::INFINITY, f64::min);
            let max = s
                .buckets
                .iter()
                .map(|b| b.max)
                .fold(f64::NEG_INFINITY, f64::max);
            #[allow(clippy::cast_precision_loss)]
            let mean = means.iter().sum::<f64>() / means.len().max(1) as f64;
            rows.push(vec![
                label(&info),
                s.buckets.len().to_string(),
                fmt_value(min),
                fmt_value(mean),
                fmt_value(max),
                sparkline(&means, 40),
            ]);
        }
        return table(&rows, out);
    }
    let resp = client
        .query_range(pb::QueryRangeRequest {
            host_id: host.into(),
            metric: metric.into(),
            start_ms,
            end_ms: 0,
            limit: 0,
        })
        .await?
        .into_inner();
    if resp.series.is_empty() {
        bail!("no series for host {host:?} matching {metric:?}");
    }
    if json {
        let v: Vec<_> = resp
            .series
            .iter()
            .map(|s| {
                let info = s.series.clone().unwrap_or_default();
                serde_json::json!({
                    "host": info.host_id, "metric": info.metric, "component": info.component, "unit": info.unit,
                    "labels": info.labels,
                    "samples": s.samples.iter().map(|x| serde_json::json!([x.timestamp_ms, if x.value.is_finite() { serde_json::json!(x.value) } else { serde_json::json!(x.value.to_string()) }, x.quality])).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let mut rows = vec![["SERIES", "UNIT", "N", "LAST", "MIN", "MAX", "TREND"]
        .map(String::from)
        .to_vec()];
    for s in &resp.series {
        let info = s.series.clone().unwrap_or_default();
        let vals: Vec<f64> = s
            .samples
            .iter()
            .filter(|x| x.quality == 0)
            .map(|x| x.value)
            .collect();
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let last = s.samples.last().map_or("-".into(), |x| {
            if x.quality == 0 {
                fmt_value(x.value)
            } else {
                format!("({})", quality_name(x.quality))
            }
        });
        rows.push(vec![
            label(&info),
            info.unit.clone(),
            s.samples.len().to_string(),
            last,
            if vals.is_empty() {
                "-".into()
            } else {
                fmt_value(min)
            },
            if vals.is_empty() {
                "-".into()
            } else {
                fmt_value(max)
            },
            sparkline(&vals, 40),
        ]);
    }
    table(&rows, out)
}

fn quality_name(q: u32) -> &'static str {
    match q {
        0 => "ok",
        1 => "nan",
        2 => "stale",
        _ => "unreadable",
    }
}

fn label(info: &pb::SeriesInfo) -> String {
    let mut s = format!("{}{{component={}", info.metric, info.component);
    let mut labels: Vec<_> = info.labels.iter().collect();
    labels.sort();
    for (k, v) in labels {
        s.push_str(&format!(",{k}={v}"));
    }
    s.push('}');
    s
}

async fn watch(
    client: &mut FleetClient<Channel>,
    count: Option<u64>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {})
        .await?
        .into_inner();
    let mut seen = 0u64;
    while let Some(ev) = stream.message().await? {
        let secs = ev.timestamp_ms / 1000;
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        writeln!(
            out,
            "{h:02}:{m:02}:{s:02}Z  {:<14} {:<20} {}",
            ev.kind, ev.host_id, ev.detail
        )?;
        out.flush()?;
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_spans_min_to_max() {
        let s = sparkline(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 8);
        assert_eq!(s, "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[5.0, 5.0], 10), "▄▄");
        assert_eq!(sparkline(&[f64::NAN], 10), "");
        assert_eq!(
            sparkline(&(0..1000).map(f64::from).collect::<Vec<_>>(), 10)
                .chars()
                .count(),
            10
        );
    }
}
