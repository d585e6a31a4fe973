//! umbra-agent: collects readings on a schedule, spools them durably on disk,
//! and streams them to the coordinator.
//!
//! ```text
//! collectors (collect/*) --poll--> pipeline::Shared::record --append--> spool (disk)
//!                                                                        |
//!                         coordinator <--gRPC stream-- uplink <--read----+
//!                                      ---ack-------> uplink --consume-> spool
//! ```
//!
//! [`run`] is what `main.rs` calls; the end-to-end tests run the binary.
//!
//! `unsafe` is denied everywhere except `transport::ipmi::open` (the
//! `/dev/ipmi0` ioctls), which allows it for its own three calls.
#![deny(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod collect;
pub mod config;
pub mod metrics;
pub mod pipeline;
pub mod spool;
pub mod tick;
pub mod transport;
pub mod uplink;

/// Poll every configured collector once (each under its own deadline), in
/// configuration order: what `umbra-agent probe` prints, to check a
/// configuration against the hardware before running it.
pub async fn probe(cfg: &Config) -> Vec<(&'static str, collect::Poll)> {
    use collect::Collector as _;
    let mut out = Vec::new();
    for c in &cfg.collectors {
        let mut collector = c.build(&cfg.host_id, &cfg.profile);
        let name = collector.name();
        let poll = match tokio::time::timeout(c.timeout(), collector.poll(0)).await {
            Ok(p) => p,
            Err(_) => collect::Poll {
                readings: Vec::new(),
                faults: vec![collect::SensorFault {
                    sensor: name.to_owned(),
                    reason: format!("no answer within {:?}", c.timeout()),
                }],
                ..collect::Poll::default()
            },
        };
        out.push((name, poll));
    }
    out
}

use config::Config;
use proto::telemetry::v1 as pb;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error("metrics listener {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("creating {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
}

/// Component inventory for `Hello`: the profile's components, with stable
/// synthetic serials for simulated hardware.
pub fn inventory(cfg: &Config) -> Vec<pb::Component> {
    let simulated = cfg
        .collectors
        .iter()
        .any(|c| matches!(c, collect::CollectorConfig::Sim(_)));
    cfg.profile
        .components
        .iter()
        .map(|c| {
            let h = collect::sim::fnv(&format!("{}/{}", cfg.host_id, c.id));
            pb::Component {
                id: c.id.clone(),
                kind: c.kind.clone(),
                model: c.model.clone(),
                serial: if simulated {
                    format!("SIM{:010X}", h & 0xff_ffff_ffff)
                } else {
                    String::new()
                },
                firmware: if simulated {
                    "sim-1.0".into()
                } else {
                    String::new()
                },
                installed_unix_s: 0,
                power_on_hours: if simulated { 8_000 + h % 30_000 } else { 0 },
            }
        })
        .collect()
}

/// Run the agent until `shutdown` resolves, then drain the uplink.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), RunError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| RunError::StateDir {
        path: cfg.state_dir.display().to_string(),
        source,
    })?;
    let spool = spool::Spool::open(&cfg.spool_dir(), cfg.spool.clone())?;
    let catalog = catalog::Catalog::open(&cfg.state_dir.join("catalog.jsonl"))?;
    let st = spool.stats();
    tracing::info!(
        host = %cfg.host_id, profile = %cfg.profile.id, epoch = format!("{:016x}", spool.epoch()),
        backlog_batches = st.backlog_batches, dropped_samples = st.dropped_samples, series = catalog.len(),
        "umbra-agent starting"
    );
    if matches!(cfg.uplink.tls, config::UplinkTls::InsecurePlaintext) {
        tracing::warn!(url = %cfg.uplink.url, "!!! TLS DISABLED: streaming PLAINTEXT to a loopback coordinator (demo mode) !!!");
    }
    let collectors: Vec<_> = cfg
        .collectors
        .iter()
        .map(|c| c.build(&cfg.host_id, &cfg.profile))
        .collect();
    let shared = Arc::new(pipeline::Shared {
        spool: Mutex::new(spool),
        catalog: Mutex::new(catalog),
        inventory: Mutex::new(
            inventory(&cfg)
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
        ),
        appended: tokio::sync::Notify::new(),
        spool_changed: tokio::sync::Notify::new(),
        metrics: metrics::AgentMetrics::new(
            collectors
                .iter()
                .zip(&cfg.collectors)
                .map(|(collector, c)| {
                    use collect::Collector as _;
                    metrics::CollectorMetrics::new(collector.name(), c.device())
                })
                .collect(),
        ),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Metrics { addr, source })?;
        tracing::info!(%addr, "serving /metrics");
        let s = shared.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(service::http::serve_metrics(
            listener,
            Arc::new(move || metrics::render(&s)),
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            },
        )));
    }
    for (slot, (collector, c)) in collectors.into_iter().zip(&cfg.collectors).enumerate() {
        tasks.push(tokio::spawn(pipeline::run_collector(
            slot,
            collector,
            c.interval(),
            c.timeout(),
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(pipeline::run_syncer(
        shared.clone(),
        stop_rx.clone(),
    )));
    let hello = uplink::HelloBase {
        host_id: cfg.host_id.clone(),
        hwprofile_id: cfg.profile.id.clone(),
        failure_domain: pb::FailureDomain {
            site: cfg.failure_domain.site.clone(),
            rack: cfg.failure_domain.rack.clone(),
            pdu: cfg.failure_domain.pdu.clone(),
            tor: cfg.failure_domain.tor.clone(),
        },
    };
    let uplink = tokio::spawn(uplink::run(
        cfg.uplink.clone(),
        hello,
        shared.clone(),
        stop_rx,
    ));
    shutdown.await;
    tracing::info!("stopping collectors, draining the spool");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = uplink.await;
    let st = {
        let mut spool = shared.spool.lock().expect("poisoned");
        spool.flush()?;
        spool.stats()
    };
    tracing::info!(
        backlog_batches = st.backlog_batches,
        produced = st.produced_samples,
        dropped = st.dropped_samples,
        "umbra-agent stopped"
    );
    Ok(())
}
