//! The agent's own health as Prometheus metrics (`[metrics] listen`): per
//! collector poll latency and outcomes, the spool's backlog and losses, the
//! uplink's state. Counters are atomics bumped where things happen; spool
//! figures are read from the spool at scrape time (never stale).

use crate::pipeline::Shared;
use service::metrics::{as_f64, Encoder, Histogram, Kind, POLL_BUCKETS};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// Everything the agent counts about itself.
#[derive(Debug)]
pub struct AgentMetrics {
    /// One per `[[collector]]`, in configuration order.
    pub collectors: Vec<CollectorMetrics>,
    pub uplink: UplinkMetrics,
    started_unix_s: i64,
}

/// One collector's polls.
#[derive(Debug)]
pub struct CollectorMetrics {
    pub collector: &'static str,
    /// The device it reads (`device` in its config; the host's own
    /// collectors: `local`).
    pub device: String,
    pub duration: Histogram,
    pub polls: AtomicU64,
    pub timeouts: AtomicU64,
    pub readings: AtomicU64,
    /// Readings whose quality was not `ok` (unreadable, NaN, stale).
    pub bad_readings: AtomicU64,
    /// Sensors unreadable in the latest poll.
    pub faults: AtomicU64,
    pub events: AtomicU64,
    /// Unix seconds of the latest poll that finished in time (0: none yet).
    pub last_poll_unix_s: AtomicI64,
}

impl CollectorMetrics {
    pub fn new(collector: &'static str, device: String) -> CollectorMetrics {
        CollectorMetrics {
            collector,
            device,
            duration: Histogram::new(POLL_BUCKETS),
            polls: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            readings: AtomicU64::new(0),
            bad_readings: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            events: AtomicU64::new(0),
            last_poll_unix_s: AtomicI64::new(0),
        }
    }
}

/// The stream to the coordinator.
#[derive(Debug, Default)]
pub struct UplinkMetrics {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub failures: AtomicU64,
    pub acked_batches: AtomicU64,
}

impl AgentMetrics {
    pub fn new(collectors: Vec<CollectorMetrics>) -> AgentMetrics {
        AgentMetrics {
            collectors,
            uplink: UplinkMetrics::default(),
            started_unix_s: crate::pipeline::now_ms() / 1000,
        }
    }
}

/// The exposition, rendered now.
pub fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut e = Encoder::new();
    e.family(
        "umbra_agent_build_info",
        "Version of the running agent.",
        Kind::Gauge,
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    #[allow(clippy::cast_precision_loss)]
    e.single(
        "umbra_agent_start_time_seconds",
        "Unix time the agent started.",
        Kind::Gauge,
        m.started_unix_s as f64,
    );

    fn labels(c: &CollectorMetrics) -> [(&'static str, &str); 2] {
        [("collector", c.collector), ("device", c.device.as_str())]
    }
    {
        let mut f = e.family(
            "umbra_agent_poll_duration_seconds",
            "Time one poll of a device took (polls that timed out are not included).",
            Kind::Histogram,
        );
        for c in &m.collectors {
            f.histogram(&labels(c), &c.duration.snapshot());
        }
    }
    type Pick = fn(&CollectorMetrics) -> f64;
    let per_collector: [(&'static str, &str, Kind, Pick); 7] = [
        (
            "umbra_agent_polls_total",
            "Polls started.",
            Kind::Counter,
            |c| as_f64(c.polls.load(Relaxed)),
        ),
        (
            "umbra_agent_poll_timeouts_total",
            "Polls abandoned at their deadline (the tick's readings are missing).",
            Kind::Counter,
            |c| as_f64(c.timeouts.load(Relaxed)),
        ),
        (
            "umbra_agent_readings_total",
            "Readings spooled.",
            Kind::Counter,
            |c| as_f64(c.readings.load(Relaxed)),
        ),
        (
            "umbra_agent_bad_readings_total",
            "Readings spooled with a quality other than ok (unreadable, NaN, stale).",
            Kind::Counter,
            |c| as_f64(c.bad_readings.load(Relaxed)),
        ),
        (
            "umbra_agent_unreadable_sensors",
            "Sensors that could not be read in the latest poll.",
            Kind::Gauge,
            |c| as_f64(c.faults.load(Relaxed)),
        ),
        (
            "umbra_agent_hardware_events_total",
            "Device log entries (BMC SEL, ...) forwarded.",
            Kind::Counter,
            |c| as_f64(c.events.load(Relaxed)),
        ),
        (
            "umbra_agent_last_poll_timestamp_seconds",
            "Unix time of the latest poll that finished in time (0: none yet).",
            Kind::Gauge,
            #[allow(clippy::cast_precision_loss)]
            |c| c.last_poll_unix_s.load(Relaxed) as f64,
        ),
    ];
    for (name, help, kind, pick) in per_collector {
        let mut f = e.family(name, help, kind);
        for c in &m.collectors {
            f.sample(&labels(c), pick(c));
        }
    }

    let st = shared.spool.lock().expect("poisoned").stats();
    for (name, help, kind, v) in [
        (
            "umbra_agent_spool_backlog_batches",
            "Batches spooled and not yet acknowledged by the coordinator.",
            Kind::Gauge,
            st.backlog_batches,
        ),
        (
            "umbra_agent_spool_backlog_samples",
            "Samples in the backlog.",
            Kind::Gauge,
            st.backlog_samples,
        ),
        (
            "umbra_agent_spool_backlog_bytes",
            "Bytes the backlog takes on disk.",
            Kind::Gauge,
            st.backlog_bytes,
        ),
        (
            "umbra_agent_spool_in_doubt_batches",
            "Batches dropped after sending whose delivery is not yet confirmed.",
            Kind::Gauge,
            st.in_doubt_batches,
        ),
        (
            "umbra_agent_spool_produced_samples_total",
            "Samples ever written to the spool.",
            Kind::Counter,
            st.produced_samples,
        ),
        (
            "umbra_agent_spool_dropped_samples_total",
            "Samples dropped undelivered because the spool was full.",
            Kind::Counter,
            st.dropped_samples,
        ),
        (
            "umbra_agent_spool_dropped_batches_total",
            "Batches dropped undelivered because the spool was full.",
            Kind::Counter,
            st.dropped_batches,
        ),
        (
            "umbra_agent_spool_rejected_batches_total",
            "Batches the coordinator refused for good (kept in quarantine).",
            Kind::Counter,
            st.rejected_batches,
        ),
        (
            "umbra_agent_spool_corrupt_segments_total",
            "Spool segments found damaged at start (their intact records are kept).",
            Kind::Counter,
            st.corrupt_segments,
        ),
    ] {
        e.single(name, help, kind, as_f64(v));
    }
    e.single(
        "umbra_agent_series",
        "Series this agent has defined.",
        Kind::Gauge,
        as_f64(shared.catalog.lock().expect("poisoned").len() as u64),
    );

    let u = &m.uplink;
    e.single(
        "umbra_agent_uplink_connected",
        "1 while a stream to the coordinator is established.",
        Kind::Gauge,
        if u.connected.load(Relaxed) { 1.0 } else { 0.0 },
    );
    for (name, help, v) in [
        (
            "umbra_agent_uplink_connects_total",
            "Streams established to the coordinator.",
            &u.connects,
        ),
        (
            "umbra_agent_uplink_failures_total",
            "Streams that ended in an error (each is followed by a backoff).",
            &u.failures,
        ),
        (
            "umbra_agent_uplink_acked_batches_total",
            "Batches the coordinator acknowledged as stored.",
            &u.acked_batches,
        ),
    ] {
        e.single(name, help, Kind::Counter, as_f64(v.load(Relaxed)));
    }
    e.finish()
}
