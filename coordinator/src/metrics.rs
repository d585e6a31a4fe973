//! The coordinator's own health as Prometheus metrics (`[metrics] listen`):
//! ingest rate and outcomes, store write latency, connected agents, each
//! host's freshness and agent spool, active model versions, failure risk
//! per component and host. Read from the ingest state, the risk board and
//! the store at scrape time.

use crate::ingest::Ingest;
use crate::risk::{Board, WINDOWS};
use service::metrics::{as_f64, Encoder, Kind};
use std::sync::atomic::Ordering::Relaxed;

/// The exposition, rendered now. Store reads are small (host records, the
/// active-model keys); a family the store cannot produce is left out and
/// logged, never a failed scrape.
pub fn render(ingest: &Ingest, risks: &Board, shadows: &crate::shadow::runtime::Shadows) -> String {
    let mut e = Encoder::new();
    e.family(
        "umbra_coordinator_build_info",
        "Version of the running coordinator.",
        Kind::Gauge,
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    let c = &ingest.counters;
    for (name, help, v) in [
        (
            "umbra_coordinator_ingested_samples_total",
            "Samples received in accepted batches.",
            &c.samples,
        ),
        (
            "umbra_coordinator_ingested_batches_total",
            "Batches stored (or recognised as already stored).",
            &c.batches,
        ),
        (
            "umbra_coordinator_duplicate_batches_total",
            "Batches an agent resent that were already stored (at-least-once delivery).",
            &c.duplicates,
        ),
        (
            "umbra_coordinator_rejected_batches_total",
            "Batches refused as invalid (nacked; the agent quarantines them).",
            &c.rejected,
        ),
    ] {
        e.single(name, help, Kind::Counter, as_f64(v.load(Relaxed)));
    }
    e.family(
        "umbra_coordinator_store_write_duration_seconds",
        "Time to write one batch to RocksDB (including the WAL sync when sync_writes is on).",
        Kind::Histogram,
    )
    .histogram(&[], &ingest.write_latency.snapshot());

    let connected = ingest.connected_hosts();
    e.single(
        "umbra_coordinator_agents_connected",
        "Agents with an open telemetry stream.",
        Kind::Gauge,
        as_f64(connected.len() as u64),
    );

    let store = &ingest.store;
    match store.hosts() {
        Ok(hosts) => {
            {
                let mut f = e.family(
                    "umbra_coordinator_host_info",
                    "Every host known, with its failure domain and hardware profile (value 1).",
                    Kind::Gauge,
                );
                for h in &hosts {
                    let d = &h.failure_domain;
                    f.sample(
                        &[
                            ("host", &h.host_id),
                            ("hwprofile", &h.hwprofile_id),
                            ("agent_version", &h.agent_version),
                            ("site", &d.site),
                            ("rack", &d.rack),
                            ("pdu", &d.pdu),
                            ("tor", &d.tor),
                        ],
                        1.0,
                    );
                }
            }
            type Pick = fn(&crate::model::HostRecord, bool) -> f64;
            let per_host: [(&'static str, &str, Kind, Pick); 6] = [
                (
                    "umbra_coordinator_host_connected",
                    "1 while the host's agent has an open stream.",
                    Kind::Gauge,
                    |_, up| if up { 1.0 } else { 0.0 },
                ),
                (
                    "umbra_coordinator_host_last_seen_timestamp_seconds",
                    "Unix time of the host's latest stored batch.",
                    Kind::Gauge,
                    #[allow(clippy::cast_precision_loss)]
                    |h, _| h.last_seen_ms as f64 / 1000.0,
                ),
                (
                    "umbra_coordinator_host_samples_per_second",
                    "The host's ingest rate, smoothed over batches.",
                    Kind::Gauge,
                    |h, _| h.sample_rate,
                ),
                (
                    "umbra_coordinator_host_series",
                    "Series the host has defined.",
                    Kind::Gauge,
                    |h, _| as_f64(h.series_count),
                ),
                (
                    "umbra_coordinator_agent_spool_backlog_batches",
                    "Batches waiting in the host agent's spool, as it last reported.",
                    Kind::Gauge,
                    |h, _| as_f64(h.stats.backlog_batches),
                ),
                (
                    "umbra_coordinator_agent_spool_dropped_samples_total",
                    "Samples the host agent dropped undelivered (spool full), as it last reported.",
                    Kind::Counter,
                    |h, _| as_f64(h.stats.dropped_samples),
                ),
            ];
            for (name, help, kind, pick) in per_host {
                let mut f = e.family(name, help, kind);
                for h in &hosts {
                    let up = connected.contains(&h.host_id);
                    f.sample(&[("host", &h.host_id)], pick(h, up));
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "metrics: reading host records failed"),
    }
    match store.active_models() {
        Ok(models) => {
            let mut f = e.family(
                "umbra_coordinator_model_active_version",
                "Version of the model inference uses, per model kind.",
                Kind::Gauge,
            );
            for (kind, version) in &models {
                f.sample(&[("kind", kind)], as_f64(*version));
            }
        }
        Err(err) => tracing::warn!(error = %err, "metrics: reading active models failed"),
    }
    match store.disk_bytes() {
        Ok(b) => e.single(
            "umbra_coordinator_store_disk_bytes",
            "Bytes of RocksDB's SST files.",
            Kind::Gauge,
            as_f64(b),
        ),
        Err(err) => tracing::warn!(error = %err, "metrics: store size failed"),
    }
    render_risks(&mut e, risks);
    render_shadows(&mut e, shadows);
    e.finish()
}

fn render_risks(e: &mut Encoder, risks: &Board) {
    let board = risks.snapshot();
    e.single(
        "umbra_coordinator_risk_runs_total",
        "Completed risk evaluations over every disk.",
        Kind::Counter,
        as_f64(board.runs),
    );
    e.single(
        "umbra_coordinator_risk_failed_runs_total",
        "Risk evaluations that failed (the previous risks stay published).",
        Kind::Counter,
        as_f64(board.failed_runs),
    );
    if board.last_run_ms > 0 {
        #[allow(clippy::cast_precision_loss)]
        e.single(
            "umbra_coordinator_risk_last_run_timestamp_seconds",
            "When risks were last computed.",
            Kind::Gauge,
            board.last_run_ms as f64 / 1000.0,
        );
    }
    let mut f = e.family(
        "umbra_coordinator_failure_probability",
        "Calibrated probability that the component fails within the window (active failure model).",
        Kind::Gauge,
    );
    let mut per_host: std::collections::BTreeMap<(&str, &str), f64> = Default::default();
    for r in board.risks.values() {
        for (w, &p) in WINDOWS.iter().zip(&r.probability) {
            f.sample(
                &[
                    ("host", &r.host),
                    ("component", &r.component),
                    ("window", w),
                ],
                p,
            );
            let m = per_host.entry((r.host.as_str(), *w)).or_insert(0.0);
            *m = m.max(p);
        }
    }
    let mut f = e.family(
        "umbra_coordinator_host_failure_probability",
        "Highest failure probability among the host's components, per window.",
        Kind::Gauge,
    );
    for ((host, w), p) in per_host {
        f.sample(&[("host", host), ("window", w)], p);
    }
}

fn render_shadows(e: &mut Encoder, shadows: &crate::shadow::runtime::Shadows) {
    let state = shadows.snapshot();
    let mut count = std::collections::BTreeMap::new();
    for lc in state.lifecycles.values() {
        *count.entry(lc.phase.name()).or_insert(0u64) += 1;
    }
    let mut f = e.family(
        "umbra_coordinator_shadow_lifecycles",
        "Shadow lifecycles per phase (every phase listed, zeros included).",
        Kind::Gauge,
    );
    for p in crate::shadow::engine::Phase::NAMES {
        f.sample(&[("phase", p)], as_f64(count.get(p).copied().unwrap_or(0)));
    }
    let mut f = e.family(
        "umbra_coordinator_shadow_phase",
        "1 for each host's current lifecycle phase (hosts in a lifecycle; healthy ones are left out).",
        Kind::Gauge,
    );
    for (host, lc) in &state.lifecycles {
        if lc.phase.name() != "healthy" {
            f.sample(&[("host", host), ("phase", lc.phase.name())], 1.0);
        }
    }
    let mut f = e.family(
        "umbra_coordinator_open_pages",
        "Pages open (triggered, not yet resolved), one per target.",
        Kind::Gauge,
    );
    f.sample(&[], as_f64(state.pages.len() as u64));
    let deliveries = shadows.deliveries();
    let mut f = e.family(
        "umbra_coordinator_page_deliveries_total",
        "Page deliveries (trigger, refresh, resolve) per receiver and outcome, after retries.",
        Kind::Counter,
    );
    for ((receiver, ok), n) in &deliveries {
        let outcome = if *ok { "delivered" } else { "failed" };
        f.sample(&[("receiver", receiver), ("outcome", outcome)], as_f64(*n));
    }
}
