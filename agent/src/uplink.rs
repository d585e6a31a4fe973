//! Spool → coordinator over the `Telemetry.Stream` gRPC stream.
//!
//! Sends `Hello`, honours `Welcome.last_stored_sequence`, then keeps up to
//! `max_in_flight` batches outstanding, read from the spool in sequence order.
//! Acks consume spool records; a non-retryable Nack quarantines the batch.
//! Batches the spool dropped after sending them are *in doubt*: an `InDoubt`
//! query on the stream asks the coordinator which it stored (replies come in
//! order, so the answer covers everything sent before the query).
//! Any error drops the connection; the next one resends everything not yet
//! acknowledged (the coordinator deduplicates). Reconnects use exponential
//! backoff with full jitter, capped at `backoff_max`.

use crate::config::{UplinkConfig, UplinkTls};
use crate::pipeline::Shared;
use prost::Message;
use proto::telemetry::v1 as pb;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Static part of `Hello`.
#[derive(Debug, Clone)]
pub struct HelloBase {
    pub host_id: String,
    pub hwprofile_id: String,
    pub failure_domain: pb::FailureDomain,
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("TLS material {path}: {source}")]
    Tls {
        path: String,
        source: std::io::Error,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("spool: {0}")]
    Spool(#[from] crate::spool::SpoolError),
}

pub async fn channel(cfg: &UplinkConfig) -> Result<Channel, UplinkError> {
    let mut ep = Channel::from_shared(cfg.url.clone())
        .map_err(|e| UplinkError::Protocol(format!("bad URL {:?}: {e}", cfg.url)))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    if let UplinkTls::Tls {
        ca,
        identity,
        server_name,
    } = &cfg.tls
    {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| UplinkError::Tls {
                path: p.display().to_string(),
                source,
            })
        };
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key.path())?));
        }
        if let Some(n) = server_name {
            tls = tls.domain_name(n.clone());
        }
        ep = ep.tls_config(tls)?;
    }
    Ok(ep.connect().await?)
}

/// Deliver the spool until shutdown; on shutdown keep draining for
/// `drain_timeout`, then return.
pub async fn run(
    cfg: UplinkConfig,
    hello: HelloBase,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_none() && *shutdown.borrow() {
            deadline = Some(tokio::time::Instant::now() + cfg.drain_timeout);
        }
        if let Some(d) = deadline {
            if backlog(&shared) == 0 || tokio::time::Instant::now() >= d {
                break;
            }
        }
        let session = session(&cfg, &hello, &shared, shutdown.clone(), deadline);
        let result = session.await;
        shared.metrics.uplink.connected.store(false, Relaxed);
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                shared.metrics.uplink.failures.fetch_add(1, Relaxed);
                let sleep = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
                tracing::warn!(error = %e, retry_in = ?sleep, backlog = backlog(&shared), "uplink down");
                let until = tokio::time::Instant::now() + sleep;
                let until = deadline.map_or(until, |d| until.min(d));
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.changed(), if deadline.is_none() => {}
                }
                backoff = (backoff * 2).min(cfg.backoff_max);
            }
        }
    }
    let left = backlog(&shared);
    if left > 0 {
        tracing::warn!(
            batches = left,
            "stopping with undelivered batches; they stay in the spool for the next start"
        );
    }
}

/// Batches not yet settled: still spooled, or dropped in flight and in doubt.
fn backlog(shared: &Shared) -> u64 {
    let st = shared.spool.lock().expect("poisoned").stats();
    st.backlog_batches + st.in_doubt_batches
}

fn hello_msg(hello: &HelloBase, shared: &Shared) -> pb::AgentMessage {
    let spool = shared.spool.lock().expect("poisoned");
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            host_id: hello.host_id.clone(),
            hwprofile_id: hello.hwprofile_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            spool_epoch: spool.epoch(),
            failure_domain: Some(hello.failure_domain.clone()),
            components: shared
                .inventory
                .lock()
                .expect("poisoned")
                .values()
                .cloned()
                .collect(),
            catalog: shared.catalog.lock().expect("poisoned").all(),
            stats: Some(spool.stats().to_proto()),
        })),
    }
}

/// What the agent sends: a message it builds, or a batch exactly as the
/// spool stored it (already an encoded `SampleBatch`, CRC-checked on read),
/// framed as `AgentMessage.batch` without decoding and re-encoding it.
#[derive(Debug)]
enum Outbound {
    /// Boxed: a Hello is large and rare, batches are small and frequent.
    Message(Box<pb::AgentMessage>),
    Batch(Vec<u8>),
}

/// The `Telemetry.Stream` codec with [`Outbound`] on the way out.
#[derive(Debug, Clone, Copy, Default)]
struct SpoolCodec;

impl tonic::codec::Codec for SpoolCodec {
    type Encode = Outbound;
    type Decode = pb::CoordinatorMessage;
    type Encoder = SpoolCodec;
    type Decoder = <tonic::codec::ProstCodec<pb::AgentMessage, pb::CoordinatorMessage> as tonic::codec::Codec>::Decoder;
    fn encoder(&mut self) -> SpoolCodec {
        SpoolCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::ProstCodec::<pb::AgentMessage, pb::CoordinatorMessage>::default().decoder()
    }
}

impl tonic::codec::Encoder for SpoolCodec {
    type Item = Outbound;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Outbound,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        match item {
            Outbound::Message(m) => m
                .encode(dst)
                .map_err(|e| tonic::Status::internal(format!("encoding: {e}"))),
            Outbound::Batch(bytes) => {
                // AgentMessage field 2 (`batch`), length-delimited.
                prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, dst);
                prost::encoding::encode_varint(bytes.len() as u64, dst);
                prost::bytes::BufMut::put_slice(dst, &bytes);
                Ok(())
            }
        }
    }
}

/// One connection. Returns Ok(()) when drained during shutdown.
async fn session(
    cfg: &UplinkConfig,
    hello: &HelloBase,
    shared: &Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut deadline: Option<tokio::time::Instant>,
) -> Result<(), UplinkError> {
    let ch = channel(cfg).await?;
    let mut client = tonic::client::Grpc::new(ch).max_decoding_message_size(16 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<Outbound>(cfg.max_in_flight + 1);
    tx.send(Outbound::Message(Box::new(hello_msg(hello, shared))))
        .await
        .map_err(|_| UplinkError::Protocol("outbound closed".into()))?;
    client
        .ready()
        .await
        .map_err(|e| UplinkError::Protocol(format!("channel not ready: {e}")))?;
    let mut inbound = client
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/umbra.telemetry.v1.Telemetry/Stream",
            ),
            SpoolCodec,
        )
        .await?
        .into_inner();
    let welcome = match inbound.message().await?.and_then(|m| m.msg) {
        Some(pb::coordinator_message::Msg::Welcome(w)) => w,
        other => {
            return Err(UplinkError::Protocol(format!(
                "expected Welcome, got {other:?}"
            )))
        }
    };
    let mut sent_through = {
        let mut spool = shared.spool.lock().expect("poisoned");
        spool.resume_after(welcome.last_stored_sequence)?;
        spool.stats().consumed_through
    };
    shared.metrics.uplink.connected.store(true, Relaxed);
    shared.metrics.uplink.connects.fetch_add(1, Relaxed);
    tracing::info!(coordinator = %welcome.coordinator_id, resume_after = sent_through, url = %cfg.url, "uplink connected");
    let mut in_flight: VecDeque<Outstanding> = VecDeque::new();
    // In-doubt sequences already asked about (or in flight) on this stream.
    let mut asked: HashSet<u64> = HashSet::new();
    loop {
        // Ask about batches dropped after an earlier send. Ones in flight on
        // this stream are settled by their own Ack.
        let query: Vec<u64> = {
            let spool = shared.spool.lock().expect("poisoned");
            spool
                .in_doubt()
                .into_iter()
                .filter(|s| asked.insert(*s))
                .collect()
        };
        if !query.is_empty() {
            tracing::info!(
                batches = query.len(),
                "asking the coordinator about in-doubt batches"
            );
            tx.send(Outbound::Message(Box::new(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::InDoubt(pb::InDoubt {
                    sequences: query,
                })),
            })))
            .await
            .map_err(|_| UplinkError::Protocol("outbound closed".into()))?;
            in_flight.push_back(Outstanding::Query);
        }
        // Fill the window from the spool.
        while in_flight.len() < cfg.max_in_flight {
            let next = shared
                .spool
                .lock()
                .expect("poisoned")
                .pending_after(sent_through, 1)
                .first()
                .copied();
            let Some(seq) = next else { break };
            sent_through = seq;
            let payload = shared.spool.lock().expect("poisoned").read(seq)?;
            let Some(payload) = payload else { continue }; // dropped meanwhile
            shared.spool.lock().expect("poisoned").mark_sent(seq)?;
            asked.insert(seq);
            tx.send(Outbound::Batch(payload))
                .await
                .map_err(|_| UplinkError::Protocol("outbound closed".into()))?;
            in_flight.push_back(Outstanding::Batch(seq));
        }
        if deadline.is_some() && in_flight.is_empty() && backlog(shared) == 0 {
            return Ok(());
        }
        let until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            msg = inbound.message() => {
                let Some(msg) = msg? else { return Err(UplinkError::Protocol("coordinator closed the stream".into())) };
                match msg.msg {
                    Some(pb::coordinator_message::Msg::Ack(ack)) => {
                        expect_front(&mut in_flight, Outstanding::Batch(ack.sequence))?;
                        shared.spool.lock().expect("poisoned").ack(ack.sequence)?;
                        shared.spool_changed.notify_one(); // its fsync may be moot now
                        shared.metrics.uplink.acked_batches.fetch_add(1, Relaxed);
                    }
                    Some(pb::coordinator_message::Msg::Resolution(r)) => {
                        expect_front(&mut in_flight, Outstanding::Query)?;
                        shared.spool.lock().expect("poisoned").resolve(&crate::spool::Resolution {
                            stored: r.stored,
                            not_stored: r.not_stored,
                            unknown: r.unknown,
                        })?;
                    }
                    Some(pb::coordinator_message::Msg::Nack(nack)) => {
                        expect_front(&mut in_flight, Outstanding::Batch(nack.sequence))?;
                        if nack.retryable {
                            return Err(UplinkError::Protocol(format!("batch {} refused for now: {}", nack.sequence, nack.reason)));
                        }
                        shared.spool.lock().expect("poisoned").reject(nack.sequence, &nack.reason)?;
                    }
                    other => return Err(UplinkError::Protocol(format!("unexpected {other:?}"))),
                }
            }
            _ = shared.appended.notified() => {}
            _ = shutdown.changed(), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + cfg.drain_timeout);
            }
            _ = tokio::time::sleep_until(until) => {
                if deadline.is_some() { return Ok(()); }
            }
        }
    }
}

/// What the coordinator owes a reply for, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outstanding {
    Batch(u64),
    Query,
}

fn expect_front(
    in_flight: &mut VecDeque<Outstanding>,
    got: Outstanding,
) -> Result<(), UplinkError> {
    match in_flight.pop_front() {
        Some(o) if o == got => Ok(()),
        other => Err(UplinkError::Protocol(format!(
            "reply for {got:?}, expected one for {other:?}"
        ))),
    }
}
