//! umbra-coordinator: ingests agent streams into a RocksDB series store and
//! serves the fleet API (`umbractl`).
//!
//! # Layout
//! - [`config`]: TOML config, validated.
//! - [`ingest`]: the telemetry stream service (agent → store).
//! - [`store`]: RocksDB series store, chunk codec, rollups, retention.
//! - [`fleet`]: the admin API.
//! - [`risk`]: failure-risk inference with the active model (hot-swapped).
//! - [`ctl`]: `umbractl`, the CLI client of the admin API.
//!
//! [`run`] is what `main.rs` calls; tests call [`serve`] with their own listener.
#![forbid(unsafe_code)]

pub mod actuate;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod demand;
pub mod events;
pub mod fleet;
pub mod ingest;
pub mod learn;
pub mod metrics;
pub mod model;
pub mod paging;
pub mod readiness;
pub mod risk;
pub mod shadow;
pub mod store;

use config::{Config, Tls};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// Milliseconds since the Unix epoch (wall clock: sample and event timestamps).
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Why the coordinator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("opening the store in {path}: {source}")]
    Store {
        path: String,
        source: store::StoreError,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("reading TLS material {path}: {source}")]
    TlsFile {
        path: String,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("paging: {0}")]
    Paging(#[from] actuate::http::HttpError),
    #[error("shadow executors: {0}")]
    Execute(String),
}

/// Bind `config.listen` and serve until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?;
    serve(config, listener, shutdown).await
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, RunError> {
    std::fs::read(path).map_err(|source| RunError::TlsFile {
        path: path.display().to_string(),
        source,
    })
}

/// Serve on an already bound listener until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| RunError::Store {
        path: config.data_dir.display().to_string(),
        source: store::StoreError::Corrupt(e.to_string()),
    })?;
    let store = store::Store::open(&config.data_dir, config.store.clone()).map_err(|source| {
        RunError::Store {
            path: config.data_dir.display().to_string(),
            source,
        }
    })?;
    let store = Arc::new(store);
    let ingest = Arc::new(ingest::Ingest::new(
        store.clone(),
        events::Bus::new(),
        config.id.clone(),
        config.max_samples_per_batch,
        config.max_samples_per_second_per_agent,
    ));

    let mut builder = Server::builder()
        .max_concurrent_streams(Some(config.max_streams_per_connection))
        .concurrency_limit_per_connection(config.max_streams_per_connection as usize)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    match &config.tls {
        Tls::InsecurePlaintext => {
            tracing::warn!(
                listen = %config.listen,
                "!!! TLS DISABLED: serving PLAINTEXT gRPC. Agents are not authenticated and telemetry \
                 is readable on the wire. Allowed on loopback only, for demos. !!!"
            );
        }
        Tls::Server {
            cert,
            key,
            client_ca,
        } => {
            let mut tls =
                ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key.path())?));
            if let Some(ca) = client_ca {
                tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
                tracing::info!("mutual TLS: client certificates are required");
            } else {
                tracing::warn!("TLS without client certificates: any client may send telemetry");
            }
            builder = builder.tls_config(tls)?;
        }
    }

    let risks = Arc::new(risk::Board::default());
    let shadows = Arc::new(
        shadow::runtime::Shadows::load(&store, config.shadow.mode).map_err(|source| {
            RunError::Store {
                path: config.data_dir.display().to_string(),
                source,
            }
        })?,
    );
    let pagers = Arc::new(paging::Pagers::new(&config.paging)?);
    let risk_loop = tokio::spawn(risk::run(
        store.clone(),
        risks.clone(),
        risk::Shadowing {
            shadows: shadows.clone(),
            settings: config.shadow.clone(),
            pagers: pagers.clone(),
            apply_threshold: config.learn.apply_threshold,
        },
        config.risk_interval,
    ));
    let executor = match &config.shadow_execute {
        Some(cfg) => {
            let actuator = shadow::actuator::FleetActuator::new(store.clone(), cfg.clone())
                .map_err(RunError::Execute)?;
            actuator.start().await.map_err(RunError::Execute)?;
            let ex = shadow::execute::Executor::new(
                store.clone(),
                shadows.clone(),
                config.shadow.clone(),
                Arc::new(actuator),
                pagers.clone(),
            );
            tracing::warn!(
                "shadow lifecycles in EXECUTE mode: admitted hosts get shadows and traffic moves"
            );
            Some(tokio::spawn(ex.run(cfg.interval)))
        }
        None => None,
    };
    let learner = Arc::new(learn::Learner::default());
    let learn_loop = tokio::spawn(learn::run(
        store.clone(),
        learner.clone(),
        config.learn.clone(),
    ));
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })?;
            tracing::info!(%addr, "serving /metrics");
            let (ingest, risks, shadows) = (ingest.clone(), risks.clone(), shadows.clone());
            Some(tokio::spawn(service::http::serve_metrics(
                listener,
                Arc::new(move || metrics::render(&ingest, &risks, &shadows)),
                std::future::pending(),
            )))
        }
        None => None,
    };
    let maintenance = tokio::spawn(maintenance(store.clone(), config.compaction_interval));
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, data_dir = %config.data_dir.display(), "umbra-coordinator serving");
    let max = config.max_message_bytes;
    let result = builder
        .add_service(
            proto::telemetry::v1::telemetry_server::TelemetryServer::new(ingest::TelemetryService(
                ingest.clone(),
            ))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        )
        .add_service(
            proto::fleet::v1::fleet_server::FleetServer::new(fleet::FleetService {
                ingest,
                risks,
                shadows,
                shadow_settings: config.shadow.clone(),
                pagers,
                risk_interval: config.risk_interval,
                learner,
                learn_settings: config.learn.clone(),
                readiness: config.readiness,
            })
            .max_decoding_message_size(max),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await;
    maintenance.abort();
    risk_loop.abort();
    learn_loop.abort();
    if let Some(e) = executor {
        e.abort();
    }
    if let Some(m) = metrics {
        m.abort();
    }
    result?;
    tracing::info!("umbra-coordinator stopped");
    Ok(())
}

/// Periodic compaction (sealing closed windows) and retention.
async fn maintenance(store: Arc<store::Store>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = store.clone();
        let res = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let stats = s.compact(now)?;
            s.enforce_retention(now)?;
            Ok::<_, store::StoreError>(stats)
        })
        .await;
        match res {
            Ok(Ok(stats)) if stats.windows_sealed > 0 => {
                tracing::info!(
                    windows = stats.windows_sealed,
                    partials = stats.partials_merged,
                    "sealed closed windows"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "compaction failed"),
            Err(e) => tracing::error!(error = %e, "compaction task panicked"),
        }
    }
}
