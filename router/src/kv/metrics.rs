//! Per-replica metrics of the KV-event streams.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::Error;

/// The families, registered once and shared by the subscriber tasks.
#[derive(Debug, Clone)]
pub struct KvMetrics {
    /// `router_kv_events_received_total{replica}`: events applied (or skipped).
    pub received: IntCounterVec,
    /// `router_kv_event_gaps_total{replica}`: sequence gaps seen.
    pub gaps: IntCounterVec,
    /// `router_kv_event_replays_total{replica,outcome}`: replays asked (`ok`, `partial`, `failed`).
    pub replays: IntCounterVec,
    /// `router_kv_event_restarts_total{replica}`: sequences that went backwards (engine restarts).
    pub restarts: IntCounterVec,
    /// `router_kv_event_silences_total{replica}`: times a connected stream was found silent.
    pub silences: IntCounterVec,
    /// `router_kv_events_state{replica}`: 0 down, 1 live, 2 stale, 3 silent (precise only at 1).
    pub state: IntGaugeVec,
    /// `router_kv_blocks{replica}`: engine blocks the index knows the replica holds.
    pub blocks: IntGaugeVec,
    /// `router_kv_event_seq{replica}`: sequence number of the last batch applied.
    pub seq: IntGaugeVec,
    /// `router_kv_skipped_blocks_total{replica}`: stored blocks that could not be placed (a
    /// parent stored before the router listened, or a block size other than `prefix.block_size`).
    pub skipped: IntCounterVec,
}

impl KvMetrics {
    /// Builds the families and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGaugeVec, Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["replica"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            received: counter(
                "router_kv_events_received_total",
                "KV-cache events received per replica",
                &["replica"],
            )?,
            gaps: counter(
                "router_kv_event_gaps_total",
                "Sequence gaps in a replica's KV-event stream",
                &["replica"],
            )?,
            replays: counter(
                "router_kv_event_replays_total",
                "Replays of missed KV-event batches by outcome",
                &["replica", "outcome"],
            )?,
            restarts: counter(
                "router_kv_event_restarts_total",
                "KV-event sequences that went backwards (engine restarts)",
                &["replica"],
            )?,
            silences: counter(
                "router_kv_event_silences_total",
                "Times requests with uncached blocks brought no KV event from a connected replica",
                &["replica"],
            )?,
            state: gauge(
                "router_kv_events_state",
                "KV-event stream state: 0 down, 1 live (precise), 2 stale, 3 silent (approximate unless 1)",
            )?,
            blocks: gauge(
                "router_kv_blocks",
                "Blocks the precise index holds for a replica",
            )?,
            skipped: counter(
                "router_kv_skipped_blocks_total",
                "Stored blocks the precise index could not place (unknown parent or block size)",
                &["replica"],
            )?,
            seq: gauge(
                "router_kv_event_seq",
                "Sequence number of the last KV-event batch applied per replica",
            )?,
        })
    }

    /// Drops the series of a replica that left.
    pub fn forget(&self, replica: &str) {
        let _ = self.received.remove_label_values(&[replica]);
        let _ = self.gaps.remove_label_values(&[replica]);
        let _ = self.restarts.remove_label_values(&[replica]);
        let _ = self.silences.remove_label_values(&[replica]);
        for outcome in ["ok", "partial", "failed"] {
            let _ = self.replays.remove_label_values(&[replica, outcome]);
        }
        let _ = self.state.remove_label_values(&[replica]);
        let _ = self.blocks.remove_label_values(&[replica]);
        let _ = self.seq.remove_label_values(&[replica]);
        let _ = self.skipped.remove_label_values(&[replica]);
    }
}
