//! Spool tests: crash recovery, exact loss accounting, model-based conservation.

use super::*;
use proptest::prelude::*;

fn cfg(max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        max_bytes,
        segment_bytes,
        fsync: false,
    }
}

/// A batch with `n` samples of one series.
fn batch(seq: u64, n: u32, stats: Stats) -> pb::SampleBatch {
    pb::SampleBatch {
        sequence: seq,
        new_series: vec![],
        series: vec![pb::SeriesSamples {
            series_id: 1,
            timestamps_ms: (0..i64::from(n)).collect(),
            values: (0..n).map(f64::from).collect(),
            quality: vec![],
        }],
        stats: Some(stats.to_proto()),
    }
}

fn append(s: &mut Spool, n: u32) -> u64 {
    s.append(n, |seq, st| batch(seq, n, st)).unwrap()
}

#[test]
fn records_survive_reopen_and_sequences_continue() {
    let dir = tempfile::tempdir().unwrap();
    let epoch;
    {
        let mut s = Spool::open(dir.path(), cfg(1 << 20, 4096)).unwrap();
        epoch = s.epoch();
        for n in 1..=5 {
            append(&mut s, n);
        }
        s.ack(2).unwrap();
    }
    let mut s = Spool::open(dir.path(), cfg(1 << 20, 4096)).unwrap();
    assert_eq!(s.epoch(), epoch);
    assert_eq!(s.pending_after(0, 100), vec![3, 4, 5]);
    let payload = s.read(4).unwrap().unwrap();
    let b = pb::SampleBatch::decode(payload.as_slice()).unwrap();
    assert_eq!((b.sequence, b.series[0].values.len()), (4, 4));
    assert_eq!(append(&mut s, 1), 6);
    let st = s.stats();
    assert_eq!(st.produced_samples, 1 + 2 + 3 + 4 + 5 + 1);
    assert_eq!(st.backlog_samples, 3 + 4 + 5 + 1);
}

#[test]
fn second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _a = Spool::open(dir.path(), cfg(1 << 20, 4096)).unwrap();
    assert!(matches!(
        Spool::open(dir.path(), cfg(1 << 20, 4096)),
        Err(SpoolError::Locked(_))
    ));
}

#[test]
fn full_spool_drops_oldest_and_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // ~100-byte records, 300-byte segments, 1000-byte cap.
    let mut s = Spool::open(dir.path(), cfg(1000, 300)).unwrap();
    for _ in 0..40 {
        append(&mut s, 3);
    }
    let st = s.stats();
    assert!(st.dropped_batches > 0, "{st:?}");
    assert_eq!(st.dropped_samples, st.dropped_batches * 3);
    assert_eq!(st.produced_samples, 120);
    assert_eq!(st.backlog_samples + st.dropped_samples, 120);
    assert!(s.total_bytes() <= 1000);
    // The oldest are gone, the newest kept, in order.
    let pending = s.pending_after(0, 1000);
    assert_eq!(*pending.last().unwrap(), 40);
    assert_eq!(pending.first().copied(), Some(st.dropped_batches + 1));
    drop(s);
    let st2 = Spool::open(dir.path(), cfg(1000, 300)).unwrap().stats();
    assert_eq!(
        (st2.dropped_samples, st2.backlog_samples),
        (st.dropped_samples, st.backlog_samples)
    );
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn torn_tail_is_truncated_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
        for _ in 0..3 {
            append(&mut s, 2);
        }
    }
    let seg = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let mut s = Spool::open(dir.path(), cfg(1 << 20, 1 << 20)).unwrap();
    assert_eq!(s.pending_after(0, 10), vec![1, 2]);
    assert_eq!(s.stats().corrupt_segments, 0);
    assert_eq!(
        s.stats().produced_samples,
        4,
        "the torn record never counted as produced"
    );
    assert_eq!(append(&mut s, 1), 3);
}

#[test]
fn corrupt_segment_is_skipped_counted_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(dir.path(), cfg(1 << 20, 250)).unwrap();
        for _ in 0..6 {
            append(&mut s, 2);
        }
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 2, "{segs:?}");
    // Flip a payload byte of the first record of the first segment.
    let mut data = std::fs::read(&segs[0]).unwrap();
    data[HEADER + META + 2] ^= 0xff;
    std::fs::write(&segs[0], &data).unwrap();
    let s = Spool::open(dir.path(), cfg(1 << 20, 250)).unwrap();
    assert_eq!(s.stats().corrupt_segments, 1);
    let pending = s.pending_after(0, 10);
    assert!(!pending.contains(&1));
    assert_eq!(*pending.last().unwrap(), 6);
    // Opening again does not count it twice, and does not crash-loop.
    drop(s);
    let s = Spool::open(dir.path(), cfg(1 << 20, 250)).unwrap();
    assert!(s.stats().corrupt_segments >= 1);
}

#[test]
fn garbage_segment_file_does_not_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(format!("{:020}.seg", 1)),
        b"\xff\xff\xff\xffgarbage garbage",
    )
    .unwrap();
    std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
    let mut s = Spool::open(dir.path(), cfg(1 << 20, 4096)).unwrap();
    assert_eq!(s.pending_after(0, 10), Vec::<u64>::new());
    append(&mut s, 1);
    assert!(dir.path().join("state.json.corrupt").exists());
}

#[test]
fn rejected_batch_is_quarantined_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), cfg(1 << 20, 4096)).unwrap();
    append(&mut s, 5);
    append(&mut s, 7);
    s.ack(1).unwrap();
    s.reject(2, "test").unwrap();
    let st = s.stats();
    assert_eq!(
        (st.rejected_batches, st.rejected_samples, st.backlog_batches),
        (1, 7, 0)
    );
    assert!(dir
        .path()
        .join("rejected")
        .join(format!("{:020}.pb", 2))
        .exists());
    s.reject(2, "again").unwrap();
    assert_eq!(s.stats().rejected_samples, 7, "counted once");
}

#[derive(Debug, Clone)]
enum Op {
    Append(u32),
    /// Acknowledge the next k pending batches.
    Ack(usize),
    Reject,
    Reopen,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..20).prop_map(Op::Append),
        3 => (0usize..5).prop_map(Op::Ack),
        1 => Just(Op::Reject),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Conservation: every produced sample is acknowledged, dropped, rejected
    /// or still pending — exactly one of them — across any interleaving of
    /// appends, acks, rejects and restarts, with a spool small enough to overflow.
    #[test]
    fn samples_are_conserved(ops in proptest::collection::vec(arb_op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(1500, 400);
        let mut s = Spool::open(dir.path(), c.clone()).unwrap();
        let mut acked_samples = 0u64;
        let mut samples_of = std::collections::HashMap::new();
        let mut last_seq = 0;
        for op in ops {
            match op {
                Op::Append(n) => {
                    let seq = append(&mut s, n);
                    prop_assert!(seq > last_seq);
                    last_seq = seq;
                    samples_of.insert(seq, u64::from(n));
                }
                Op::Ack(k) => {
                    let pending = s.pending_after(0, k);
                    if let Some(&upto) = pending.last() {
                        for seq in &pending { acked_samples += samples_of[seq]; }
                        s.ack(upto).unwrap();
                    }
                }
                Op::Reject => {
                    if let Some(&seq) = s.pending_after(0, 1).first() {
                        s.reject(seq, "model").unwrap();
                    }
                }
                Op::Reopen => {
                    drop(s);
                    s = Spool::open(dir.path(), c.clone()).unwrap();
                }
            }
            let st = s.stats();
            prop_assert_eq!(
                st.produced_samples,
                acked_samples + st.dropped_samples + st.rejected_samples + st.backlog_samples,
                "{:?}", st
            );
        }
    }
}
