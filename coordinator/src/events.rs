//! Fleet events: a broadcast bus that `umbractl watch` subscribes to.

use tokio::sync::broadcast;

/// Something worth telling an operator about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetEvent {
    pub ts_ms: i64,
    pub host: String,
    pub kind: EventKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Connected,
    Disconnected,
    NewSeries,
    /// The agent reported newly dropped samples (spool overflow).
    Dropped,
    /// A batch was refused as malformed.
    Rejected,
    /// A newer stream of the same host replaced this one.
    Superseded,
    /// A device logged something (a BMC SEL entry, ...), stored for the first time.
    Hardware,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connected => "connected",
            EventKind::Disconnected => "disconnected",
            EventKind::NewSeries => "new_series",
            EventKind::Dropped => "dropped",
            EventKind::Rejected => "rejected",
            EventKind::Superseded => "superseded",
            EventKind::Hardware => "hardware",
        }
    }
}

/// Cloneable publisher.
#[derive(Debug, Clone)]
pub struct Bus(broadcast::Sender<FleetEvent>);

impl Bus {
    pub fn new() -> Bus {
        Bus(broadcast::channel(1024).0)
    }

    pub fn publish(&self, host: &str, kind: EventKind, detail: impl Into<String>) {
        let ev = FleetEvent {
            ts_ms: crate::now_ms(),
            host: host.to_owned(),
            kind,
            detail: detail.into(),
        };
        tracing::info!(host, kind = kind.as_str(), detail = %ev.detail, "fleet event");
        // No subscribers is fine.
        let _ = self.0.send(ev);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FleetEvent> {
        self.0.subscribe()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}
