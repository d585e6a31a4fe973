//! The Umbra coordinator (release build) as a separate process, fed over its
//! real gRPC agent stream, exactly as agents do.

use super::proc::{wait_for, Peer};
use super::workload::Batch;
use anyhow::{bail, Result};
use proto::telemetry::v1::{self as pb, telemetry_client::TelemetryClient};
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tonic::transport::Channel;

pub fn start(bin: &Path, dir: &Path, port: u16, sync_writes: bool) -> Result<Peer> {
    let cfg = dir.join("coordinator.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
[tls]
insecure_plaintext = true
[storage]
data_dir = "{data}"
chunk_window = "10m"
seal_grace = "1m"
compaction_interval = "1s"
sync_writes = {sync_writes}
raw_retention = "100years"
rollup_1m_retention = "100years"
rollup_1h_retention = "100years"
[limits]
max_samples_per_second_per_agent = 1000000000
"#,
            data = dir.join("data").display()
        ),
    )?;
    let peer = Peer::spawn(
        "umbra-coordinator",
        Command::new(bin)
            .arg("-c")
            .arg(&cfg)
            .env("RUST_LOG", "warn"),
        &dir.join("coordinator.log"),
    )?;
    wait_for(
        "umbra-coordinator to listen",
        Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )?;
    Ok(peer)
}

/// Stream one host's batches on one agent stream, keeping `window` batches
/// in flight; returns once every batch is acknowledged as stored.
pub async fn stream_host(port: u16, epoch: u64, batches: &[Batch], window: usize) -> Result<u64> {
    let Some(first) = batches.first() else {
        return Ok(0);
    };
    let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?;
    let mut client = TelemetryClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(window + 1);
    let mut seen = BTreeSet::new();
    let catalog: Vec<pb::SeriesDef> = batches
        .iter()
        .flat_map(|b| &b.series)
        .filter(|s| seen.insert(s.index))
        .map(|s| pb::SeriesDef {
            id: s.index + 1,
            metric: s.metric.into(),
            component: s.component.clone(),
            unit: String::new(),
            labels: Default::default(),
        })
        .collect();
    tx.send(pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            host_id: first.host.clone(),
            hwprofile_id: "bench".into(),
            spool_epoch: epoch,
            catalog,
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    match inbound.message().await?.and_then(|m| m.msg) {
        Some(pb::coordinator_message::Msg::Welcome(_)) => {}
        other => bail!("expected Welcome, got {other:?}"),
    }
    let mut next = 0usize;
    let mut in_flight = VecDeque::new();
    let mut stored = 0u64;
    while next < batches.len() || !in_flight.is_empty() {
        while next < batches.len() && in_flight.len() < window {
            let seq = next as u64 + 1;
            tx.send(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Batch(to_proto(seq, &batches[next]))),
            })
            .await?;
            in_flight.push_back(seq);
            next += 1;
        }
        match inbound.message().await?.and_then(|m| m.msg) {
            Some(pb::coordinator_message::Msg::Ack(a))
                if Some(a.sequence) == in_flight.front().copied() =>
            {
                in_flight.pop_front();
                stored += u64::from(a.samples_stored);
            }
            other => bail!("expected Ack of {:?}, got {other:?}", in_flight.front()),
        }
    }
    Ok(stored)
}

fn to_proto(seq: u64, b: &Batch) -> pb::SampleBatch {
    pb::SampleBatch {
        sequence: seq,
        series: b
            .series
            .iter()
            .map(|s| pb::SeriesSamples {
                series_id: s.index + 1,
                timestamps_ms: s.ts_ms.clone(),
                values: s.values.clone(),
                quality: Vec::new(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Encoded size of a batch (for the report's batch-shape line).
pub fn encoded_len(b: &Batch) -> usize {
    prost::Message::encoded_len(&to_proto(1, b))
}
