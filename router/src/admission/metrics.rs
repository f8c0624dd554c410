//! Metric families of the admission queue and the replica caps.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    exponential_buckets,
};

use crate::Error;

/// Queue and cap metrics, registered in the router's registry.
#[derive(Clone)]
pub struct AdmissionMetrics {
    /// `router_queue_length{priority}`: requests waiting now.
    pub queue_length: IntGaugeVec,
    /// `router_queue_wait_seconds{priority}`: time from arrival to admission.
    pub queue_wait: HistogramVec,
    /// `router_admitted_total{priority}`: requests let through to a replica.
    pub admitted: IntCounterVec,
    /// `router_rejected_total{priority,reason}`: `queue_full`, `queue_timeout`, `disconnected`.
    pub rejected: IntCounterVec,
    /// `router_replica_cap{replica,kind}`: cap in force (`requests`, `prompt_tokens`).
    pub cap: IntGaugeVec,
    /// `router_replica_token_scale{replica}`: the adaptive token budget's scale (1: as
    /// configured).
    pub token_scale: GaugeVec,
}

impl AdmissionMetrics {
    /// Builds the families and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, Error> {
        let queue_length = IntGaugeVec::new(
            Opts::new(
                "router_queue_length",
                "Requests waiting in the admission queue",
            ),
            &["priority"],
        )?;
        let queue_wait = HistogramVec::new(
            HistogramOpts::new(
                "router_queue_wait_seconds",
                "Time from arrival to admission (0 when admitted at once)",
            )
            .buckets(exponential_buckets(0.001, 2.0, 17)?),
            &["priority"],
        )?;
        let admitted = IntCounterVec::new(
            Opts::new(
                "router_admitted_total",
                "Requests admitted to a replica by priority",
            ),
            &["priority"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "router_rejected_total",
                "Requests that left the admission queue without a replica, by reason",
            ),
            &["priority", "reason"],
        )?;
        let cap = IntGaugeVec::new(
            Opts::new(
                "router_replica_cap",
                "Concurrency cap in force per replica (requests, prompt_tokens)",
            ),
            &["replica", "kind"],
        )?;
        let token_scale = GaugeVec::new(
            Opts::new(
                "router_replica_token_scale",
                "Scale of the token budget learnt from the replica's KV usage (1: as configured)",
            ),
            &["replica"],
        )?;
        // The usual class and every rejection reason show from the start, at 0.
        queue_length.with_label_values(&["0"]).set(0);
        for reason in ["queue_full", "queue_timeout", "disconnected"] {
            rejected.with_label_values(&["0", reason]).reset();
        }
        registry.register(Box::new(queue_length.clone()))?;
        registry.register(Box::new(queue_wait.clone()))?;
        registry.register(Box::new(admitted.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(cap.clone()))?;
        registry.register(Box::new(token_scale.clone()))?;
        Ok(Self {
            queue_length,
            queue_wait,
            admitted,
            rejected,
            cap,
            token_scale,
        })
    }

    /// A registry of its own (unit tests).
    #[cfg(test)]
    pub(crate) fn unregistered() -> Self {
        let registry = Registry::new();
        // A fresh registry has no duplicate families: this cannot fail.
        Self::new(&registry).unwrap_or_else(|e| panic!("fresh registry: {e}"))
    }
}

/// The `priority` label of a priority value: itself within -16..=16, else `other`, so clients
/// cannot blow up the series count.
pub fn priority_label(priority: i64) -> String {
    if (-16..=16).contains(&priority) {
        priority.to_string()
    } else {
        "other".to_owned()
    }
}
