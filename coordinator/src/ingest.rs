//! `umbra.telemetry.v1.Telemetry`: the agent stream.
//!
//! Per stream: `Hello` → `Welcome` (with the last stored sequence), then for
//! each batch, in order: validate → rate-limit (back-pressure) → one durable
//! RocksDB write → `Ack`. A malformed batch gets a non-retryable `Nack`
//! (the agent quarantines it); a malformed *message* ends only this stream
//! with `InvalidArgument`. Per host, only the newest stream may write
//! (`generation`), which keeps sequence-based deduplication sound.

use crate::events::{Bus, EventKind};
use crate::model::{self, AgentStats, HostRecord, Quality, Sample, SeriesId};
use crate::store::ledger::Verdict;
use crate::store::{HardwareEvent, IngestOutcome, IngestWrite, Severity, Store};
use proto::telemetry::v1 as pb;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status, Streaming};

/// Store write latency buckets (seconds): a WAL fsync on SSD is ~0.1-2 ms.
const WRITE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Ingest counters since start.
#[derive(Debug, Default)]
pub struct Counters {
    pub samples: AtomicU64,
    pub batches: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
}

/// Per-host state shared by that host's streams.
#[derive(Debug, Default)]
struct HostSlot {
    generation: AtomicU64,
    /// Serialises writes of this host (check-sequence-then-write).
    write: tokio::sync::Mutex<RateBucket>,
}

/// Token bucket in samples; may go into debt, which the next batch waits out.
#[derive(Debug, Default)]
struct RateBucket {
    tokens: f64,
    last: Option<tokio::time::Instant>,
}

impl RateBucket {
    /// Takes `n` tokens and returns how long to wait before proceeding.
    fn take(&mut self, n: u64, rate: f64) -> std::time::Duration {
        let now = tokio::time::Instant::now();
        let elapsed = self
            .last
            .map_or(1.0, |l| now.duration_since(l).as_secs_f64());
        self.last = Some(now);
        // Burst allowance: one second worth of samples.
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        #[allow(clippy::cast_precision_loss)]
        let need = n as f64;
        self.tokens -= need;
        if self.tokens >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// Shared ingest state; also read by the fleet API.
#[derive(Debug)]
pub struct Ingest {
    pub store: Arc<Store>,
    pub bus: Bus,
    pub counters: Counters,
    /// Batch writes to the store.
    pub write_latency: service::metrics::Histogram,
    coordinator_id: String,
    max_samples_per_batch: u64,
    rate: f64,
    slots: Mutex<HashMap<String, Arc<HostSlot>>>,
    connected: Mutex<HashSet<String>>,
}

impl Ingest {
    pub fn new(
        store: Arc<Store>,
        bus: Bus,
        coordinator_id: String,
        max_samples_per_batch: u32,
        rate: u32,
    ) -> Ingest {
        Ingest {
            store,
            bus,
            counters: Counters::default(),
            write_latency: service::metrics::Histogram::new(WRITE_BUCKETS),
            coordinator_id,
            max_samples_per_batch: u64::from(max_samples_per_batch),
            rate: f64::from(rate),
            slots: Mutex::new(HashMap::new()),
            connected: Mutex::new(HashSet::new()),
        }
    }

    /// Hosts with an open stream.
    pub fn connected_hosts(&self) -> HashSet<String> {
        self.connected.lock().expect("poisoned").clone()
    }

    pub fn is_connected(&self, host: &str) -> bool {
        self.connected.lock().expect("poisoned").contains(host)
    }

    fn slot(&self, host: &str) -> Arc<HostSlot> {
        self.slots
            .lock()
            .expect("poisoned")
            .entry(host.to_owned())
            .or_default()
            .clone()
    }
}

/// The tonic service.
#[derive(Debug, Clone)]
pub struct TelemetryService(pub Arc<Ingest>);

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::telemetry_server::Telemetry for TelemetryService {
    type StreamStream = Outbound;

    async fn stream(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let peer = req.remote_addr();
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let ingest = self.0.clone();
        tokio::spawn(async move {
            if let Err(status) = run_stream(&ingest, &mut inbound, &tx).await {
                tracing::warn!(?peer, code = ?status.code(), message = status.message(), "telemetry stream ended with error");
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type Tx = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

async fn send(tx: &Tx, msg: pb::coordinator_message::Msg) -> Result<(), Status> {
    tx.send(Ok(pb::CoordinatorMessage { msg: Some(msg) }))
        .await
        .map_err(|_| Status::cancelled("client went away"))
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.contains('\0')
}

/// One stream's view: host, generation, agent-local series id → store key.
struct Session {
    host: String,
    epoch: u64,
    generation: u64,
    slot: Arc<HostSlot>,
    series: HashMap<u32, u64>,
    record: HostRecord,
    /// Samples stored since `rate_since`, folded into the rate every 2 s.
    rate_samples: u64,
    rate_since: tokio::time::Instant,
}

/// A message that cannot be decoded is the client's fault: say so clearly.
fn inbound_error(status: Status) -> Status {
    if status.code() == tonic::Code::Internal && status.message().contains("decode") {
        Status::invalid_argument(format!("malformed message: {}", status.message()))
    } else {
        status
    }
}

async fn run_stream(
    ingest: &Arc<Ingest>,
    inbound: &mut Streaming<pb::AgentMessage>,
    tx: &Tx,
) -> Result<(), Status> {
    let first = inbound
        .message()
        .await
        .map_err(inbound_error)?
        .ok_or_else(|| Status::invalid_argument("stream closed before Hello"))?;
    let Some(pb::agent_message::Msg::Hello(hello)) = first.msg else {
        return Err(Status::invalid_argument("first message must be Hello"));
    };
    let mut session = hello_session(ingest, hello).await?;
    let host = session.host.clone();
    ingest
        .connected
        .lock()
        .expect("poisoned")
        .insert(host.clone());
    ingest.bus.publish(
        &host,
        EventKind::Connected,
        format!("epoch {:016x}", session.epoch),
    );
    let last = blocking(ingest, {
        let (h, e) = (host.clone(), session.epoch);
        move |s| s.last_sequence(&h, e)
    })
    .await?;
    send(
        tx,
        pb::coordinator_message::Msg::Welcome(pb::Welcome {
            coordinator_id: ingest.coordinator_id.clone(),
            last_stored_sequence: last,
        }),
    )
    .await?;

    let result = async {
        while let Some(msg) = inbound.message().await.map_err(inbound_error)? {
            match msg.msg {
                Some(pb::agent_message::Msg::Batch(batch)) => {
                    let reply = handle_batch(ingest, &mut session, batch).await?;
                    send(tx, reply).await?;
                }
                Some(pb::agent_message::Msg::InDoubt(q)) => {
                    let reply = resolve_in_doubt(ingest, &session, q).await?;
                    send(tx, reply).await?;
                }
                Some(pb::agent_message::Msg::Hello(_)) => {
                    return Err(Status::invalid_argument("Hello sent twice on one stream"));
                }
                None => return Err(Status::invalid_argument("empty AgentMessage")),
            }
        }
        Ok(())
    }
    .await;

    // Only the newest stream of a host may mark it disconnected.
    if session.slot.generation.load(Ordering::SeqCst) == session.generation {
        ingest.connected.lock().expect("poisoned").remove(&host);
        let detail = match &result {
            Ok(()) => "stream closed".to_owned(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        ingest.bus.publish(&host, EventKind::Disconnected, detail);
    }
    result
}

async fn blocking<T: Send + 'static>(
    ingest: &Arc<Ingest>,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = ingest.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?
        .map_err(|e| {
            tracing::error!(error = %e, "store error");
            Status::unavailable(format!("store: {e}"))
        })
}

async fn hello_session(ingest: &Arc<Ingest>, hello: pb::Hello) -> Result<Session, Status> {
    if !name_ok(&hello.host_id, 253) {
        return Err(Status::invalid_argument(
            "Hello.host_id must be 1..=253 bytes without NUL",
        ));
    }
    if hello.components.len() > MAX_COMPONENTS {
        return Err(Status::invalid_argument(format!(
            "Hello: more than {MAX_COMPONENTS} components"
        )));
    }
    let slot = ingest.slot(&hello.host_id);
    let generation = slot.generation.fetch_add(1, Ordering::SeqCst) + 1;
    if generation > 1 && ingest.is_connected(&hello.host_id) {
        ingest.bus.publish(
            &hello.host_id,
            EventKind::Superseded,
            "a newer stream replaced the previous one",
        );
    }
    let host = hello.host_id.clone();
    let prior = blocking(ingest, move |s| s.host(&host))
        .await?
        .unwrap_or_default();
    let domain = hello.failure_domain.unwrap_or_default();
    let record = HostRecord {
        host_id: hello.host_id.clone(),
        hwprofile_id: hello.hwprofile_id,
        agent_version: hello.agent_version,
        failure_domain: model::FailureDomain {
            site: domain.site,
            rack: domain.rack,
            pdu: domain.pdu,
            tor: domain.tor,
        },
        components: hello
            .components
            .into_iter()
            .map(component)
            .collect::<Result<_, _>>()
            .map_err(Status::invalid_argument)?,
        last_seen_ms: crate::now_ms(),
        stats: hello.stats.map(stats).unwrap_or(prior.stats),
        ..prior
    };
    let mut session = Session {
        host: hello.host_id,
        epoch: hello.spool_epoch,
        generation,
        slot,
        series: HashMap::new(),
        record,
        rate_samples: 0,
        rate_since: tokio::time::Instant::now(),
    };
    register_series(ingest, &mut session, hello.catalog).await?;
    let rec = session.record.clone();
    blocking(ingest, move |s| s.put_host(&rec)).await?;
    Ok(session)
}

fn stats(s: pb::AgentStats) -> AgentStats {
    AgentStats {
        produced_samples: s.produced_samples,
        dropped_batches: s.dropped_batches,
        dropped_samples: s.dropped_samples,
        backlog_batches: s.backlog_batches,
        backlog_bytes: s.backlog_bytes,
        backlog_samples: s.backlog_samples,
        rejected_samples: s.rejected_samples,
        corrupt_segments: s.corrupt_segments,
        in_doubt_samples: s.in_doubt_samples,
        unresolved_samples: s.unresolved_samples,
    }
}

/// Most sequences one `InDoubt` may ask about (an agent's in-doubt set is
/// bounded by its in-flight window plus its send reservation).
const MAX_IN_DOUBT_QUERY: usize = 65_536;

/// Answer which of the queried sequences are stored. Messages of a stream are
/// handled in order, so every batch sent before the query has been decided.
async fn resolve_in_doubt(
    ingest: &Arc<Ingest>,
    session: &Session,
    q: pb::InDoubt,
) -> Result<pb::coordinator_message::Msg, Status> {
    if q.sequences.len() > MAX_IN_DOUBT_QUERY {
        return Err(Status::invalid_argument(format!(
            "InDoubt asks about {} sequences (limit {MAX_IN_DOUBT_QUERY})",
            q.sequences.len()
        )));
    }
    let ledger = blocking(ingest, {
        let (h, e) = (session.host.clone(), session.epoch);
        move |s| s.ledger(&h, e)
    })
    .await?;
    let mut r = pb::Resolution::default();
    for seq in q.sequences {
        match ledger.verdict(seq) {
            Verdict::Stored => r.stored.push(seq),
            Verdict::NotStored => r.not_stored.push(seq),
            Verdict::Unknown => r.unknown.push(seq),
        }
    }
    tracing::info!(
        host = %session.host,
        stored = r.stored.len(),
        not_stored = r.not_stored.len(),
        unknown = r.unknown.len(),
        "resolved in-doubt batches"
    );
    Ok(pb::coordinator_message::Msg::Resolution(r))
}

async fn register_series(
    ingest: &Arc<Ingest>,
    session: &mut Session,
    defs: Vec<pb::SeriesDef>,
) -> Result<(), Status> {
    for def in defs {
        let valid = name_ok(&def.metric, 200)
            && name_ok(&def.component, 200)
            && def.unit.len() <= 32
            && !def.unit.contains('\0')
            && def
                .labels
                .iter()
                .all(|(k, v)| name_ok(k, 100) && v.len() <= 200 && !v.contains('\0'));
        if !valid {
            return Err(Status::invalid_argument(format!(
                "series definition {} has an invalid name",
                def.id
            )));
        }
        let id = SeriesId {
            host: session.host.clone(),
            metric: def.metric,
            component: def.component,
            labels: def.labels.into_iter().collect::<BTreeMap<_, _>>(),
        };
        let unit = def.unit;
        let label = format!("{}{{component={}}}", id.metric, id.component);
        let (key, new) = blocking(ingest, move |s| s.resolve_series(&id, &unit)).await?;
        if new {
            ingest
                .bus
                .publish(&session.host, EventKind::NewSeries, label);
        }
        session.series.insert(def.id, key);
    }
    session.record.series_count = session.series.len() as u64;
    Ok(())
}

fn nack(sequence: u64, reason: String) -> pb::coordinator_message::Msg {
    pb::coordinator_message::Msg::Nack(pb::Nack {
        sequence,
        reason,
        retryable: false,
    })
}

/// Validate and convert; `Err` is the reason for a non-retryable Nack.
fn convert(
    session: &Session,
    batch: &pb::SampleBatch,
    max_samples: u64,
) -> Result<Vec<(u64, Vec<Sample>)>, String> {
    let total: u64 = batch.series.iter().map(|s| s.values.len() as u64).sum();
    if total > max_samples {
        return Err(format!(
            "{total} samples in one batch exceeds the limit of {max_samples}"
        ));
    }
    let mut out = Vec::with_capacity(batch.series.len());
    for s in &batch.series {
        let key = *session
            .series
            .get(&s.series_id)
            .ok_or_else(|| format!("unknown series id {}", s.series_id))?;
        if s.timestamps_ms.len() != s.values.len() {
            return Err(format!(
                "series {}: {} timestamps for {} values",
                s.series_id,
                s.timestamps_ms.len(),
                s.values.len()
            ));
        }
        if !s.quality.is_empty() && s.quality.len() != s.values.len() {
            return Err(format!(
                "series {}: {} quality flags for {} values",
                s.series_id,
                s.quality.len(),
                s.values.len()
            ));
        }
        let samples = s
            .timestamps_ms
            .iter()
            .zip(&s.values)
            .enumerate()
            .map(|(i, (&ts_ms, &value))| {
                let q = s.quality.get(i).copied().unwrap_or(0);
                let mut quality = match pb::Quality::try_from(q) {
                    Ok(pb::Quality::Ok) => Quality::Ok,
                    Ok(pb::Quality::Nan) => Quality::Nan,
                    Ok(pb::Quality::Stale) => Quality::Stale,
                    // Unknown future flags are treated as the most cautious one.
                    Ok(pb::Quality::Unreadable) | Err(_) => Quality::Unreadable,
                };
                if quality == Quality::Ok && value.is_nan() {
                    quality = Quality::Nan;
                }
                Sample {
                    ts_ms,
                    value,
                    quality,
                }
            })
            .collect();
        out.push((key, samples));
    }
    Ok(out)
}

/// Most components one host may have (a large storage server has a few
/// hundred disks); keeps a hostile agent from growing its host record.
const MAX_COMPONENTS: usize = 4096;

fn component(c: pb::Component) -> Result<model::Component, String> {
    if !name_ok(&c.id, 256) {
        return Err("component id must be 1..=256 bytes without NUL".into());
    }
    for (what, v) in [
        ("kind", &c.kind),
        ("model", &c.model),
        ("serial", &c.serial),
        ("firmware", &c.firmware),
    ] {
        if v.len() > 256 || v.contains('\0') {
            return Err(format!(
                "component {:?}: {what} over 256 bytes or with NUL",
                c.id
            ));
        }
    }
    Ok(model::Component {
        id: c.id,
        kind: c.kind,
        model: c.model,
        serial: c.serial,
        firmware: c.firmware,
        installed_unix_s: c.installed_unix_s,
        power_on_hours: c.power_on_hours,
    })
}

/// Upsert a batch's components into the host's inventory (by id).
fn merge_components(
    inventory: &mut Vec<model::Component>,
    seen: Vec<pb::Component>,
) -> Result<(), String> {
    for c in seen {
        let c = component(c)?;
        if let Some(x) = inventory.iter_mut().find(|x| x.id == c.id) {
            *x = c;
        } else if inventory.len() >= MAX_COMPONENTS {
            return Err(format!("more than {MAX_COMPONENTS} components"));
        } else {
            inventory.push(c);
        }
    }
    Ok(())
}

/// Limits on one batch's events: generous for any real SEL burst, small
/// enough that a hostile agent cannot make one write huge.
const MAX_EVENTS_PER_BATCH: usize = 1024;
const MAX_EVENT_TEXT: usize = 1024;
const MAX_EVENT_ATTRIBUTES: usize = 32;

/// Validate and convert a batch's events; `Err` is the reason for a
/// non-retryable Nack.
fn convert_events(host: &str, events: &[pb::HardwareEvent]) -> Result<Vec<HardwareEvent>, String> {
    if events.len() > MAX_EVENTS_PER_BATCH {
        return Err(format!(
            "{} events in one batch exceeds the limit of {MAX_EVENTS_PER_BATCH}",
            events.len()
        ));
    }
    let text = |what: &str, s: &str, may_be_empty: bool| {
        if (s.is_empty() && !may_be_empty) || s.len() > MAX_EVENT_TEXT || s.contains('\0') {
            Err(format!(
                "event {what} must be 1..={MAX_EVENT_TEXT} bytes without NUL"
            ))
        } else {
            Ok(s.to_owned())
        }
    };
    events
        .iter()
        .map(|e| {
            if e.attributes.len() > MAX_EVENT_ATTRIBUTES {
                return Err(format!(
                    "event with {} attributes exceeds the limit of {MAX_EVENT_ATTRIBUTES}",
                    e.attributes.len()
                ));
            }
            let mut attributes = BTreeMap::new();
            for (k, v) in &e.attributes {
                attributes.insert(
                    text("attribute name", k, false)?,
                    text("attribute", v, true)?,
                );
            }
            let device_time_ms = (e.device_time_ms != 0).then_some(e.device_time_ms);
            Ok(HardwareEvent {
                host: host.to_owned(),
                time_ms: device_time_ms.unwrap_or(e.observed_ms),
                device_time_ms,
                observed_ms: e.observed_ms,
                source: text("source", &e.source, false)?,
                component: text("component", &e.component, false)?,
                // Unknown future levels are taken as the most serious one.
                severity: match pb::Severity::try_from(e.severity) {
                    Ok(pb::Severity::Info) => Severity::Info,
                    Ok(pb::Severity::Warning) => Severity::Warning,
                    Ok(pb::Severity::Critical) | Err(_) => Severity::Critical,
                },
                description: text("description", &e.description, false)?,
                attributes,
            })
        })
        .collect()
}

async fn handle_batch(
    ingest: &Arc<Ingest>,
    session: &mut Session,
    batch: pb::SampleBatch,
) -> Result<pb::coordinator_message::Msg, Status> {
    let seq = batch.sequence;
    if let Err(e) = register_series(ingest, session, batch.new_series.clone()).await {
        ingest.counters.rejected.fetch_add(1, Ordering::Relaxed);
        ingest.bus.publish(
            &session.host,
            EventKind::Rejected,
            format!("batch {seq}: {}", e.message()),
        );
        return Ok(nack(seq, e.message().to_owned()));
    }
    let mut inventory = session.record.components.clone();
    let converted = convert(session, &batch, ingest.max_samples_per_batch)
        .and_then(|s| Ok((s, convert_events(&session.host, &batch.events)?)))
        .and_then(|s| {
            merge_components(&mut inventory, batch.components.clone())?;
            Ok(s)
        });
    let (series, events) = match converted {
        Ok(s) => s,
        Err(reason) => {
            ingest.counters.rejected.fetch_add(1, Ordering::Relaxed);
            ingest.bus.publish(
                &session.host,
                EventKind::Rejected,
                format!("batch {seq}: {reason}"),
            );
            return Ok(nack(seq, reason));
        }
    };
    let n: u64 = series.iter().map(|(_, s)| s.len() as u64).sum();
    let mut bucket = session.slot.write.lock().await;
    let wait = bucket.take(n, ingest.rate);
    if !wait.is_zero() {
        tracing::debug!(host = %session.host, ?wait, "rate limit: slowing agent down");
        tokio::time::sleep(wait).await;
    }
    if session.slot.generation.load(Ordering::SeqCst) != session.generation {
        return Err(Status::aborted("superseded by a newer stream of this host"));
    }
    // Host record update, persisted in the same write as the samples.
    session.rate_samples += n;
    let elapsed = session.rate_since.elapsed().as_secs_f64();
    if elapsed >= 2.0 {
        #[allow(clippy::cast_precision_loss)]
        let inst = session.rate_samples as f64 / elapsed;
        let r = &mut session.record.sample_rate;
        *r = if *r == 0.0 {
            inst
        } else {
            0.7 * *r + 0.3 * inst
        };
        session.rate_samples = 0;
        session.rate_since = tokio::time::Instant::now();
    }
    session.record.components = inventory;
    session.record.last_seen_ms = crate::now_ms();
    if let Some(st) = batch.stats {
        let st = stats(st);
        if st.dropped_samples > session.record.stats.dropped_samples {
            let newly = st.dropped_samples - session.record.stats.dropped_samples;
            ingest.bus.publish(
                &session.host,
                EventKind::Dropped,
                format!("agent spool dropped {newly} samples"),
            );
        }
        session.record.stats = st;
    }
    let write = {
        let (host, epoch, record) = (session.host.clone(), session.epoch, session.record.clone());
        move |s: &Store| {
            s.ingest(IngestWrite {
                host: &host,
                epoch,
                sequence: seq,
                series,
                host_record: record,
                events,
            })
        }
    };
    let started = std::time::Instant::now();
    let outcome = blocking(ingest, write).await?;
    ingest.write_latency.observe_duration(started.elapsed());
    drop(bucket);
    ingest.counters.batches.fetch_add(1, Ordering::Relaxed);
    Ok(match outcome {
        IngestOutcome::Stored {
            samples,
            new_events,
        } => {
            session.record.stored_samples += samples;
            for e in new_events {
                ingest.bus.publish(
                    &session.host,
                    EventKind::Hardware,
                    format!(
                        "[{}] {}: {}",
                        e.severity.as_str(),
                        e.component,
                        e.description
                    ),
                );
            }
            ingest
                .counters
                .samples
                .fetch_add(samples, Ordering::Relaxed);
            pb::coordinator_message::Msg::Ack(pb::Ack {
                sequence: seq,
                samples_stored: u32::try_from(samples).unwrap_or(u32::MAX),
                duplicate: false,
            })
        }
        IngestOutcome::Duplicate => {
            ingest.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            pb::coordinator_message::Msg::Ack(pb::Ack {
                sequence: seq,
                samples_stored: 0,
                duplicate: true,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> pb::HardwareEvent {
        pb::HardwareEvent {
            device_time_ms: 0,
            observed_ms: 1_000,
            source: "ipmi-sel".into(),
            component: "node7/PSU1 Status".into(),
            severity: pb::Severity::Critical.into(),
            description: "power supply failure detected asserted".into(),
            attributes: [("record_id".to_owned(), "2".to_owned())].into(),
        }
    }

    #[test]
    fn events_are_validated_and_converted() {
        let ok = convert_events("h", &[event()]).unwrap();
        assert_eq!(ok[0].time_ms, 1_000, "no device time: the observed time");
        assert_eq!(ok[0].device_time_ms, None);
        assert_eq!(ok[0].severity, Severity::Critical);
        let with_time = pb::HardwareEvent {
            device_time_ms: 500,
            ..event()
        };
        assert_eq!(convert_events("h", &[with_time]).unwrap()[0].time_ms, 500);
        let future = pb::HardwareEvent {
            severity: 9,
            ..event()
        };
        assert_eq!(
            convert_events("h", &[future]).unwrap()[0].severity,
            Severity::Critical,
            "an unknown level is taken as the most serious"
        );
        for (bad, why) in [
            (
                pb::HardwareEvent {
                    component: "a\0b".into(),
                    ..event()
                },
                "component",
            ),
            (
                pb::HardwareEvent {
                    description: String::new(),
                    ..event()
                },
                "description",
            ),
            (
                pb::HardwareEvent {
                    source: "x".repeat(MAX_EVENT_TEXT + 1),
                    ..event()
                },
                "source",
            ),
            (
                pb::HardwareEvent {
                    attributes: (0..=MAX_EVENT_ATTRIBUTES)
                        .map(|i| (i.to_string(), String::new()))
                        .collect(),
                    ..event()
                },
                "attributes",
            ),
        ] {
            let e = convert_events("h", &[bad]).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        let flood = vec![event(); MAX_EVENTS_PER_BATCH + 1];
        assert!(convert_events("h", &flood).unwrap_err().contains("limit"));
    }

    #[test]
    fn batch_components_upsert_the_inventory_by_id() {
        let c = |id: &str, firmware: &str| pb::Component {
            id: id.into(),
            kind: "disk".into(),
            firmware: firmware.into(),
            ..pb::Component::default()
        };
        let mut inv = Vec::new();
        merge_components(&mut inv, vec![c("PSU1", ""), c("disk:a", "1.0")]).unwrap();
        merge_components(&mut inv, vec![c("disk:a", "2.0"), c("disk:b", "1.0")]).unwrap();
        let ids: Vec<_> = inv
            .iter()
            .map(|x| (x.id.as_str(), x.firmware.as_str()))
            .collect();
        assert_eq!(ids, [("PSU1", ""), ("disk:a", "2.0"), ("disk:b", "1.0")]);
        assert!(merge_components(&mut inv, vec![c("", "")]).is_err());
        assert!(merge_components(&mut inv, vec![c("disk:\0", "")]).is_err());
        let mut full: Vec<model::Component> = Vec::new();
        let many: Vec<_> = (0..=MAX_COMPONENTS)
            .map(|i| c(&format!("d{i}"), ""))
            .collect();
        assert!(merge_components(&mut full, many)
            .unwrap_err()
            .contains("components"));
    }
}
