//! Store round-trip properties against a trivially correct model.

use super::*;
use crate::model::{Quality, SeriesId};
use proptest::prelude::*;

fn small_window() -> StoreConfig {
    StoreConfig {
        window: Duration::from_secs(60),
        seal_grace: Duration::ZERO,
        sync_writes: false,
        ..StoreConfig::default()
    }
}

fn write(store: &Store, host: &str, seq: u64, series: Vec<(u64, Vec<Sample>)>) -> IngestOutcome {
    let host_record = store.host(host).unwrap().unwrap_or_default();
    store
        .ingest(IngestWrite {
            host,
            epoch: 7,
            sequence: seq,
            series,
            host_record,
            events: Vec::new(),
        })
        .unwrap()
}

fn bits_eq(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.ts_ms == y.ts_ms && x.value.to_bits() == y.value.to_bits() && x.quality == y.quality
        })
}

fn arb_sample() -> impl Strategy<Value = Sample> {
    (
        -200_000i64..400_000,
        prop_oneof![any::<f64>(), (-5000i64..5000).prop_map(|m| m as f64 / 10.0), Just(f64::NAN), Just(f64::INFINITY)],
        prop_oneof![6 => Just(Quality::Ok), 1 => Just(Quality::Stale), 1 => Just(Quality::Unreadable), 1 => Just(Quality::Nan)],
    )
        .prop_map(|(ts_ms, value, quality)| Sample { ts_ms, value, quality })
}

/// batches of (series 1..=3, samples)
fn arb_batches() -> impl Strategy<Value = Vec<Vec<(u64, Vec<Sample>)>>> {
    proptest::collection::vec(
        proptest::collection::vec(
            (1u64..=3, proptest::collection::vec(arb_sample(), 0..20)),
            1..4,
        ),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any written sample set reads back identically (ordered by timestamp,
    /// ties in write order), before and after compaction and after reopening.
    #[test]
    fn written_samples_read_back_identically(batches in arb_batches(), compact_at in 0usize..12) {
        let dir = tempfile::tempdir().unwrap();
        let mut model: BTreeMap<u64, Vec<Sample>> = BTreeMap::new();
        {
            let store = Store::open(dir.path(), small_window()).unwrap();
            for (i, batch) in batches.iter().enumerate() {
                for (k, s) in batch {
                    model.entry(*k).or_default().extend(s.iter().copied());
                }
                write(&store, "h", i as u64 + 1, batch.clone());
                if i == compact_at {
                    store.compact(i64::MAX).unwrap();
                }
            }
            for (k, all) in &mut model {
                all.sort_by_key(|s| s.ts_ms);
                let got = store.range(*k, i64::MIN, i64::MAX).unwrap();
                prop_assert!(bits_eq(all, &got), "series {k}: {all:?} vs {got:?}");
            }
            store.compact(i64::MAX).unwrap();
        }
        let store = Store::open(dir.path(), small_window()).unwrap();
        for (k, all) in &model {
            let got = store.range(*k, i64::MIN, i64::MAX).unwrap();
            prop_assert!(bits_eq(all, &got), "after compaction + reopen, series {k}");
            // sub-range = filter of the whole
            let want: Vec<Sample> = all.iter().copied().filter(|s| s.ts_ms >= -1000 && s.ts_ms < 90_000).collect();
            prop_assert!(bits_eq(&want, &store.range(*k, -1000, 90_000).unwrap()));
            prop_assert_eq!(store.last(*k).unwrap().map(|s| s.ts_ms), all.last().map(|s| s.ts_ms));
        }
    }
}

#[test]
fn replayed_sequence_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_window()).unwrap();
    let batch = vec![(
        1,
        vec![Sample {
            ts_ms: 5,
            value: 1.0,
            quality: Quality::Ok,
        }],
    )];
    assert_eq!(
        write(&store, "h", 1, batch.clone()),
        IngestOutcome::Stored {
            samples: 1,
            new_events: vec![]
        }
    );
    assert_eq!(
        write(&store, "h", 1, batch.clone()),
        IngestOutcome::Duplicate
    );
    assert_eq!(
        write(&store, "h", 2, batch),
        IngestOutcome::Stored {
            samples: 1,
            new_events: vec![]
        }
    );
    assert_eq!(store.range(1, 0, 10).unwrap().len(), 2);
    assert_eq!(store.host("h").unwrap().unwrap().stored_samples, 2);
    assert_eq!(store.last_sequence("h", 7).unwrap(), 2);
    assert_eq!(
        store.last_sequence("h", 8).unwrap(),
        0,
        "epochs are independent"
    );
}

#[test]
fn rollups_match_brute_force_and_skip_bad_quality() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            window: Duration::from_secs(7200),
            ..small_window()
        },
    )
    .unwrap();
    let mut samples: Vec<Sample> = (0..7200)
        .map(|i| Sample {
            ts_ms: i * 1000,
            value: (i % 97) as f64,
            quality: Quality::Ok,
        })
        .collect();
    samples.push(Sample {
        ts_ms: 1500,
        value: 1e9,
        quality: Quality::Unreadable,
    });
    samples.push(Sample {
        ts_ms: 1600,
        value: f64::NAN,
        quality: Quality::Ok,
    });
    write(&store, "h", 1, vec![(9, samples.clone())]);
    let live = store.rollup(9, Resolution::Minute, 0, 7_200_000).unwrap();
    store.compact(i64::MAX).unwrap();
    let sealed = store.rollup(9, Resolution::Minute, 0, 7_200_000).unwrap();
    assert_eq!(live, sealed);
    assert_eq!(sealed.len(), 120);
    let first: Vec<f64> = (0..60).map(|i| (i % 97) as f64).collect();
    assert_eq!(sealed[0].count, 60);
    assert_eq!(sealed[0].max, 59.0);
    assert_eq!(sealed[0].sum, first.iter().sum::<f64>());
    let hours = store.rollup(9, Resolution::Hour, 0, 7_200_000).unwrap();
    assert_eq!(hours.len(), 2);
    assert_eq!(hours.iter().map(|b| b.count).sum::<u64>(), 7200);
}

#[test]
fn retention_drops_old_windows_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        raw_retention: Duration::from_secs(120),
        ..small_window()
    };
    let store = Store::open(dir.path(), cfg).unwrap();
    let (key, _) = store
        .resolve_series(
            &SeriesId {
                host: "h".into(),
                metric: "m".into(),
                component: "c".into(),
                labels: Default::default(),
            },
            "count",
        )
        .unwrap();
    let s = |ts_ms| Sample {
        ts_ms,
        value: 1.0,
        quality: Quality::Ok,
    };
    write(
        &store,
        "h",
        1,
        vec![(key, vec![s(0), s(61_000), s(300_000)])],
    );
    store.enforce_retention(300_000).unwrap();
    let left: Vec<i64> = store
        .range(key, i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|s| s.ts_ms)
        .collect();
    assert_eq!(left, vec![300_000]);
}

#[test]
fn late_samples_into_a_sealed_window_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_window()).unwrap();
    let s = |ts_ms, v| Sample {
        ts_ms,
        value: v,
        quality: Quality::Ok,
    };
    write(&store, "h", 1, vec![(1, vec![s(10, 1.0), s(30, 3.0)])]);
    assert_eq!(store.compact(i64::MAX).unwrap().windows_sealed, 1);
    write(&store, "h", 2, vec![(1, vec![s(20, 2.0)])]);
    let stats = store.compact(i64::MAX).unwrap();
    assert_eq!(
        stats,
        CompactStats {
            windows_sealed: 1,
            partials_merged: 1
        }
    );
    let vals: Vec<f64> = store
        .range(1, 0, 60_000)
        .unwrap()
        .iter()
        .map(|s| s.value)
        .collect();
    assert_eq!(vals, vec![1.0, 2.0, 3.0]);
}

#[test]
fn series_keys_are_stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = |m: &str| SeriesId {
        host: "h".into(),
        metric: m.into(),
        component: "FAN1".into(),
        labels: Default::default(),
    };
    let (a, b) = {
        let store = Store::open(dir.path(), small_window()).unwrap();
        (
            store.resolve_series(&id("a"), "rpm").unwrap(),
            store.resolve_series(&id("b"), "rpm").unwrap(),
        )
    };
    assert!(a.1 && b.1 && a.0 != b.0);
    let store = Store::open(dir.path(), small_window()).unwrap();
    assert_eq!(store.resolve_series(&id("a"), "rpm").unwrap(), (a.0, false));
    assert_eq!(store.resolve_series(&id("c"), "rpm").unwrap().0, b.0 + 1);
    assert_eq!(store.series(Some("h")).unwrap().len(), 3);
}

#[test]
fn hardware_events_are_stored_once_listed_newest_first_and_expire() {
    use crate::store::{HardwareEvent, Severity};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let event = |host: &str, record: u32, time_ms: i64, severity: Severity| HardwareEvent {
        host: host.into(),
        time_ms,
        device_time_ms: Some(time_ms),
        observed_ms: time_ms + 5,
        source: "ipmi-sel".into(),
        component: "node7/PSU1 Status".into(),
        severity,
        description: format!("record {record}"),
        attributes: [("record_id".to_owned(), record.to_string())].into(),
    };
    let now = 1_800_000_000_000;
    let ingest = |seq: u64, events: Vec<HardwareEvent>| {
        store
            .ingest(IngestWrite {
                host: "h",
                epoch: 7,
                sequence: seq,
                series: vec![],
                host_record: HostRecord::default(),
                events,
            })
            .unwrap()
    };
    let a = event("h", 1, now - 1000, Severity::Critical);
    let b = event("h", 2, now, Severity::Info);
    let IngestOutcome::Stored { new_events, .. } = ingest(1, vec![a.clone(), b.clone(), a.clone()])
    else {
        panic!("stored")
    };
    assert_eq!(
        new_events,
        vec![a.clone(), b.clone()],
        "a copy in the same batch is skipped"
    );
    // Resent later (a restarted agent) with a new arrival time: not stored again.
    let resent = HardwareEvent {
        observed_ms: now + 60_000,
        ..a.clone()
    };
    let IngestOutcome::Stored { new_events, .. } = ingest(2, vec![resent]) else {
        panic!("stored")
    };
    assert!(new_events.is_empty());
    assert_eq!(
        store.events(Some("h"), 0, Severity::Info, 10).unwrap(),
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        store.events(None, 0, Severity::Warning, 10).unwrap(),
        vec![a.clone()]
    );
    assert_eq!(
        store
            .events(Some("h"), now - 10, Severity::Info, 10)
            .unwrap(),
        vec![b.clone()]
    );
    assert!(store
        .events(Some("other"), 0, Severity::Info, 10)
        .unwrap()
        .is_empty());
    // Past the longest retention, events go too.
    let later = now + millis(StoreConfig::default().rollup_1h_retention) + 1;
    store.enforce_retention(later - 500).unwrap();
    assert_eq!(store.events(None, 0, Severity::Info, 10).unwrap(), vec![b]);
}

#[test]
fn spare_assignments_are_read_by_target_exactly_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let (a, b) = (
        serde_json::json!({"spare": "spare-02", "attempt": 1}),
        serde_json::json!({"spare": "spare-03", "attempt": 2}),
    );
    store.put_assignment("web-01", Some(&a)).unwrap();
    store.put_assignment("web-010", Some(&b)).unwrap();
    assert_eq!(store.assignment("web-01").unwrap(), Some(a.clone()));
    assert_eq!(store.assignment("web-010").unwrap(), Some(b));
    assert_eq!(store.assignment("web-0").unwrap(), None);
    assert_eq!(store.assignments().unwrap().len(), 2);
    store.put_assignment("web-01", None).unwrap();
    assert_eq!(store.assignment("web-01").unwrap(), None);
    assert_eq!(store.assignments().unwrap().len(), 1);
}

#[test]
fn models_are_versioned_with_their_evaluation_and_one_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let kind = "forecaster/temperature";
    assert!(store.models(kind).unwrap().is_empty());
    assert_eq!(store.active_model(kind).unwrap(), None);
    let v1 = store
        .put_model(
            kind,
            b"weights-1",
            "hosts a..c",
            serde_json::json!({"mae": 0.3}),
            10,
        )
        .unwrap();
    let v2 = store
        .put_model(
            kind,
            b"weights-22",
            "hosts a..d",
            serde_json::json!({"mae": 0.2}),
            20,
        )
        .unwrap();
    assert_eq!((v1.version, v2.version, v2.bytes), (1, 2, 10));
    // Another kind counts its own versions.
    assert_eq!(
        store
            .put_model("failure/disk", b"x", "", serde_json::json!({}), 30)
            .unwrap()
            .version,
        1
    );
    assert_eq!(store.models(kind).unwrap(), vec![v1.clone(), v2.clone()]);
    assert_eq!(store.model(kind, v2.version).unwrap(), Some(v2.clone()));
    assert_eq!(store.model(kind, 99).unwrap(), None);
    assert_eq!(
        store.model_bytes(kind, 1).unwrap().as_deref(),
        Some(&b"weights-1"[..])
    );
    store.activate_model(kind, 2).unwrap();
    assert_eq!(store.active_model(kind).unwrap(), Some(2));
    // Rolling back is activating an older version.
    store.activate_model(kind, 1).unwrap();
    assert_eq!(store.active_model(kind).unwrap(), Some(1));
    assert!(store.activate_model(kind, 9).is_err());
    assert!(store
        .put_model("Bad Kind", b"", "", serde_json::json!({}), 0)
        .is_err());
    // Survives a reopen.
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.active_model(kind).unwrap(), Some(1));
    assert_eq!(store.models(kind).unwrap()[1].evaluation["mae"], 0.2);
    store.activate_model("failure/disk", 1).unwrap();
    assert_eq!(
        store.active_models().unwrap(),
        vec![("failure/disk".to_owned(), 1), (kind.to_owned(), 1)]
    );
}
