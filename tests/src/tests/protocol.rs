//! The telemetry stream against hostile or buggy clients: replays are stored
//! once, malformed batches are refused with a reason, malformed and oversized
//! messages end only the offending stream.

use crate::*;
use bytes::Bytes;
use prost::Message;
use proto::fleet::v1::{self as fleet, fleet_client::FleetClient};
use proto::telemetry::v1::{self as pb, telemetry_client::TelemetryClient};
use tonic::transport::Channel;

fn hello(host: &str, epoch: u64) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            host_id: host.into(),
            hwprofile_id: "umbra/sim-1u".into(),
            spool_epoch: epoch,
            catalog: vec![pb::SeriesDef {
                id: 1,
                metric: "fan_speed_rpm".into(),
                component: "FAN1".into(),
                unit: "rpm".into(),
                labels: Default::default(),
            }],
            ..Default::default()
        })),
    }
}

fn batch(seq: u64, series_id: u32, n: usize) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Batch(pb::SampleBatch {
            sequence: seq,
            series: vec![pb::SeriesSamples {
                series_id,
                timestamps_ms: (0..n as i64)
                    .map(|i| 1_700_000_000_000 + i * 1000 + seq as i64 * 100_000)
                    .collect(),
                values: (0..n).map(|i| 9000.0 + i as f64).collect(),
                quality: vec![],
            }],
            ..Default::default()
        })),
    }
}

/// Send `msgs` on one stream; collect the replies (after Welcome) until the stream ends.
async fn exchange(
    ch: Channel,
    msgs: Vec<pb::AgentMessage>,
) -> Result<(
    u64,
    Vec<pb::coordinator_message::Msg>,
    Option<tonic::Status>,
)> {
    let mut client = TelemetryClient::new(ch);
    let expected = msgs.len() - 1;
    let (tx, rx) = tokio::sync::mpsc::channel(msgs.len());
    for m in msgs {
        tx.send(m).await?;
    }
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let welcome = match inbound.message().await?.and_then(|m| m.msg) {
        Some(pb::coordinator_message::Msg::Welcome(w)) => w.last_stored_sequence,
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    };
    let mut replies = Vec::new();
    while replies.len() < expected {
        match inbound.message().await {
            Ok(Some(m)) => replies.push(m.msg.unwrap()),
            Ok(None) => break,
            Err(status) => return Ok((welcome, replies, Some(status))),
        }
    }
    drop(tx);
    Ok((welcome, replies, None))
}

async fn stored(ch: Channel, host: &str) -> Result<u64> {
    let resp = FleetClient::new(ch)
        .query_range(fleet::QueryRangeRequest {
            host_id: host.into(),
            metric: String::new(),
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            limit: 0,
        })
        .await?
        .into_inner();
    Ok(resp.series.iter().map(|s| s.samples.len() as u64).sum())
}

fn ack(m: &pb::coordinator_message::Msg) -> Option<&pb::Ack> {
    match m {
        pb::coordinator_message::Msg::Ack(a) => Some(a),
        _ => None,
    }
}

#[tokio::test]
async fn replayed_batches_are_stored_once_across_streams() -> Result<()> {
    let c = InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", "").await?;
    let ch = Channel::from_shared(c.plaintext_url())?.connect().await?;
    let (welcome, replies, err) = exchange(
        ch.clone(),
        vec![
            hello("h1", 42),
            batch(1, 1, 10),
            batch(2, 1, 10),
            batch(1, 1, 10),
        ],
    )
    .await?;
    assert!(err.is_none());
    assert_eq!(welcome, 0);
    let acks: Vec<_> = replies.iter().map(|r| ack(r).expect("ack")).collect();
    assert_eq!((acks[0].samples_stored, acks[0].duplicate), (10, false));
    assert_eq!((acks[1].samples_stored, acks[1].duplicate), (10, false));
    assert_eq!((acks[2].samples_stored, acks[2].duplicate), (0, true));
    // A reconnect learns where to resume, and replays are still deduplicated.
    let (welcome, replies, _) = exchange(
        ch.clone(),
        vec![hello("h1", 42), batch(2, 1, 10), batch(3, 1, 10)],
    )
    .await?;
    assert_eq!(welcome, 2);
    assert!(ack(&replies[0]).unwrap().duplicate);
    assert!(!ack(&replies[1]).unwrap().duplicate);
    assert_eq!(stored(ch.clone(), "h1").await?, 30);
    // A new spool epoch (agent reinstalled) starts its own sequence space.
    let (welcome, replies, _) = exchange(ch.clone(), vec![hello("h1", 43), batch(1, 1, 5)]).await?;
    assert_eq!(welcome, 0);
    assert!(!ack(&replies[0]).unwrap().duplicate);
    assert_eq!(stored(ch, "h1").await?, 35);
    c.stop().await
}

fn in_doubt(seqs: &[u64]) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::InDoubt(pb::InDoubt {
            sequences: seqs.to_vec(),
        })),
    }
}

fn resolution(m: &pb::coordinator_message::Msg) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    match m {
        pb::coordinator_message::Msg::Resolution(r) => {
            (r.stored.clone(), r.not_stored.clone(), r.unknown.clone())
        }
        other => panic!("expected Resolution, got {other:?}"),
    }
}

#[tokio::test]
async fn in_doubt_queries_get_exact_answers_and_gaps_stay_fillable() -> Result<()> {
    let c = InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", "").await?;
    let ch = Channel::from_shared(c.plaintext_url())?.connect().await?;
    // 3 and 4 never arrive (the agent's spool dropped them): a gap, not "stored".
    let (_, replies, err) = exchange(
        ch.clone(),
        vec![
            hello("h3", 7),
            batch(1, 1, 10),
            batch(2, 1, 10),
            batch(5, 1, 10),
            in_doubt(&[1, 3, 4, 5, 6]),
        ],
    )
    .await?;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(replies.len(), 4, "one reply per message, in order");
    assert_eq!(resolution(&replies[3]), (vec![1, 5], vec![3, 4, 6], vec![]));
    // A reconnect resolves against the durable ledger; a late batch inside
    // the gap is stored (not mistaken for a replay), and then counts as stored.
    let (welcome, replies, err) = exchange(
        ch.clone(),
        vec![
            hello("h3", 7),
            in_doubt(&[2, 3]),
            batch(3, 1, 10),
            in_doubt(&[3, 4]),
        ],
    )
    .await?;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(welcome, 5);
    assert_eq!(resolution(&replies[0]), (vec![2], vec![3], vec![]));
    assert!(!ack(&replies[1]).expect("ack").duplicate);
    assert_eq!(resolution(&replies[2]), (vec![3], vec![4], vec![]));
    assert_eq!(stored(ch, "h3").await?, 40);
    c.stop().await
}

/// Bytes of `msg` with an unknown field appended: field 99, length-delimited,
/// as a newer agent might send.
fn with_unknown_field(mut msg: Vec<u8>) -> Vec<u8> {
    msg.extend_from_slice(&[0x9A, 0x06, 0x03, b'n', b'e', b'w']);
    msg
}

#[tokio::test]
async fn unknown_fields_from_a_newer_agent_are_tolerated() -> Result<()> {
    let c = InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", "").await?;
    let ch = Channel::from_shared(c.plaintext_url())?.connect().await?;
    // Unknown fields both inside the Hello and at the AgentMessage level.
    let Some(pb::agent_message::Msg::Hello(h)) = hello("h5", 1).msg else {
        unreachable!()
    };
    let inner = with_unknown_field(h.encode_to_vec());
    let mut hello_bytes = vec![0x0A];
    prost::encoding::encode_varint(inner.len() as u64, &mut hello_bytes);
    hello_bytes.extend_from_slice(&inner);
    let replies = raw_stream(
        ch.clone(),
        vec![
            Bytes::from(with_unknown_field(hello_bytes)),
            Bytes::from(with_unknown_field(batch(1, 1, 5).encode_to_vec())),
        ],
    )
    .await?;
    let decoded: Vec<pb::coordinator_message::Msg> = replies
        .into_iter()
        .map(|r| {
            let bytes = r.expect("no error status");
            pb::CoordinatorMessage::decode(bytes).unwrap().msg.unwrap()
        })
        .collect();
    assert!(matches!(
        decoded[0],
        pb::coordinator_message::Msg::Welcome(_)
    ));
    assert_eq!(ack(&decoded[1]).expect("ack").samples_stored, 5);
    assert_eq!(stored(ch, "h5").await?, 5);
    c.stop().await
}

#[tokio::test]
async fn malformed_batches_are_nacked_and_the_stream_continues() -> Result<()> {
    let c = InProcessCoordinator::start(
        "[tls]\ninsecure_plaintext = true",
        "[limits]\nmax_samples_per_batch = 100\n",
    )
    .await?;
    let ch = Channel::from_shared(c.plaintext_url())?.connect().await?;
    let mut mismatched = batch(3, 1, 4);
    if let Some(pb::agent_message::Msg::Batch(b)) = &mut mismatched.msg {
        b.series[0].values.pop();
    }
    let (_, replies, err) = exchange(
        ch.clone(),
        vec![
            hello("h2", 1),
            batch(1, 99, 3),
            batch(2, 1, 101),
            mismatched,
            batch(4, 1, 3),
        ],
    )
    .await?;
    assert!(err.is_none(), "{err:?}");
    let reasons: Vec<String> = replies[..3]
        .iter()
        .map(|r| match r {
            pb::coordinator_message::Msg::Nack(n) => {
                assert!(!n.retryable);
                n.reason.clone()
            }
            other => panic!("expected Nack, got {other:?}"),
        })
        .collect();
    assert!(
        reasons[0].contains("unknown series id 99"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("exceeds the limit"), "{}", reasons[1]);
    assert!(
        reasons[2].contains("3 timestamps for 2 values")
            || reasons[2].contains("4 timestamps for 3 values"),
        "{}",
        reasons[2]
    );
    assert_eq!(ack(&replies[3]).unwrap().samples_stored, 3);
    assert_eq!(stored(ch, "h2").await?, 3);
    c.stop().await
}

#[tokio::test]
async fn garbage_and_oversized_messages_end_only_their_own_stream() -> Result<()> {
    let c = InProcessCoordinator::start(
        "[tls]\ninsecure_plaintext = true",
        "[limits]\nmax_message_bytes = 65536\n",
    )
    .await?;
    let ch = Channel::from_shared(c.plaintext_url())?.connect().await?;

    // Not a protobuf at all: field 15, wire type 7 (invalid).
    let garbage = raw_stream(
        ch.clone(),
        vec![Bytes::from_static(b"\x7f\xff\xff\xff\xff\xff\x01garbage")],
    )
    .await?;
    let status = garbage
        .last()
        .unwrap()
        .as_ref()
        .expect_err("garbage must fail");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("malformed"), "{status:?}");

    // Valid protobuf, but the first message is not a Hello.
    let wrong = raw_stream(
        ch.clone(),
        vec![Bytes::from(batch(1, 1, 1).encode_to_vec())],
    )
    .await?;
    let status = wrong.last().unwrap().as_ref().expect_err("must fail");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("Hello"));

    // Over the message size limit.
    let huge = raw_stream(
        ch.clone(),
        vec![
            Bytes::from(hello("h3", 1).encode_to_vec()),
            Bytes::from(batch(1, 1, 10_000).encode_to_vec()),
        ],
    )
    .await?;
    let status = huge
        .last()
        .unwrap()
        .as_ref()
        .expect_err("oversized must fail");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");

    // The same connection still serves a well-behaved stream.
    let (_, replies, err) = exchange(ch.clone(), vec![hello("h4", 1), batch(1, 1, 5)]).await?;
    assert!(err.is_none());
    assert_eq!(ack(&replies[0]).unwrap().samples_stored, 5);
    c.stop().await
}
