//! The router's own Prometheus registry: families are built once here and passed in.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder, exponential_buckets,
};

use crate::Error;

/// All metric families of the router.
#[derive(Clone)]
pub struct RouterMetrics {
    registry: Registry,
    /// `router_requests_total{replica,policy,status}`.
    pub requests: IntCounterVec,
    /// `router_in_flight_requests{replica}`.
    pub in_flight: IntGaugeVec,
    /// `router_in_flight_prompt_tokens{replica}` (estimated tokens).
    pub in_flight_tokens: IntGaugeVec,
    /// `router_time_to_first_byte_seconds{replica}`: dispatch to first response body byte.
    pub ttfb: HistogramVec,
    /// `router_request_duration_seconds{replica}`: dispatch to end of the response body.
    pub duration: HistogramVec,
    /// `router_retries_total{replica}`: retries caused by a failure of `replica`.
    pub retries: IntCounterVec,
    /// `router_replica_healthy{replica}`: 1 healthy, 0 not.
    pub healthy: IntGaugeVec,
    /// `router_upstream_errors_total{replica,kind}`.
    pub upstream_errors: IntCounterVec,
    /// `router_policy_decisions_total{policy,reason}`.
    pub decisions: IntCounterVec,
    /// `router_no_healthy_replica_total`: requests refused with 503.
    pub no_healthy: IntCounter,
    /// `router_prefix_match_ratio{policy}`: fraction of each prompt the chosen replica held.
    pub prefix_match_ratio: HistogramVec,
    /// `router_replica_ttft_ratio{replica}`: learnt over configured time to first token of a
    /// 2000-token prefill (cost policy), the replica's learnt slowness; set each scrape tick.
    pub ttft_ratio: GaugeVec,
    /// `router_replica_cost_constant_seconds{replica,constant}`: the replica's cost constants
    /// learnt online by the cost policy (0 until learnt); set each scrape tick.
    pub cost_constants: GaugeVec,
}

/// The `constant` label values of `router_replica_cost_constant_seconds`, in the order of
/// [`crate::load::SpeedEstimate::constants`].
pub const COST_CONSTANTS: [&str; 3] = ["step", "prefill_per_token", "queue_per_token"];

/// Handles of one replica's labelled series, resolved once when the replica joins.
#[derive(Clone)]
pub struct ReplicaMetrics {
    /// Time to first byte.
    pub ttfb: Histogram,
    /// Total duration.
    pub duration: Histogram,
    /// In-flight requests.
    pub in_flight: IntGauge,
    /// In-flight prompt tokens.
    pub in_flight_tokens: IntGauge,
    /// Health gauge.
    pub healthy: IntGauge,
    /// Observed over predicted time to first byte.
    pub ttft_ratio: Gauge,
    /// Learnt cost constants, in the order of [`COST_CONSTANTS`].
    pub cost_constants: [Gauge; 3],
}

impl RouterMetrics {
    /// Builds and registers every family in a fresh registry.
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
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
        let histogram = |name: &str, help: &str| -> Result<HistogramVec, Error> {
            let buckets = exponential_buckets(0.0005, 2.0, 18)?;
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                &["replica"],
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let no_healthy = IntCounter::new(
            "router_no_healthy_replica_total",
            "Requests refused because no replica was healthy",
        )?;
        registry.register(Box::new(no_healthy.clone()))?;
        let ttft_ratio = GaugeVec::new(
            Opts::new(
                "router_replica_ttft_ratio",
                "Learnt over configured time to first token of a 2000-token prefill (cost \
                 policy); 0 until learnt",
            ),
            &["replica"],
        )?;
        registry.register(Box::new(ttft_ratio.clone()))?;
        let cost_constants = GaugeVec::new(
            Opts::new(
                "router_replica_cost_constant_seconds",
                "Cost constants learnt online per replica (cost policy): engine step, prefill per \
                 uncached token, queue drain per queued token; 0 until learnt",
            ),
            &["replica", "constant"],
        )?;
        registry.register(Box::new(cost_constants.clone()))?;
        let prefix_match_ratio = HistogramVec::new(
            HistogramOpts::new(
                "router_prefix_match_ratio",
                "Fraction of the prompt the chosen replica was believed to hold",
            )
            .buckets(vec![
                0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
            ]),
            &["policy"],
        )?;
        registry.register(Box::new(prefix_match_ratio.clone()))?;
        Ok(Self {
            requests: counter(
                "router_requests_total",
                "Requests answered, by replica, policy and HTTP status",
                &["replica", "policy", "status"],
            )?,
            in_flight: gauge(
                "router_in_flight_requests",
                "Requests dispatched and not finished",
            )?,
            in_flight_tokens: gauge(
                "router_in_flight_prompt_tokens",
                "Estimated prompt tokens of in-flight requests",
            )?,
            ttfb: histogram(
                "router_time_to_first_byte_seconds",
                "Dispatch to first response body byte",
            )?,
            duration: histogram(
                "router_request_duration_seconds",
                "Dispatch to end of the response body",
            )?,
            retries: counter(
                "router_retries_total",
                "Re-sends to another replica after this one failed before any byte reached the client \
                 (connect error, 5xx, closed before headers, first-byte timeout)",
                &["replica"],
            )?,
            healthy: gauge(
                "router_replica_healthy",
                "1 if the replica receives traffic",
            )?,
            upstream_errors: counter(
                "router_upstream_errors_total",
                "Upstream failures by replica and kind",
                &["replica", "kind"],
            )?,
            decisions: counter(
                "router_policy_decisions_total",
                "Routing decisions by policy and reason",
                &["policy", "reason"],
            )?,
            no_healthy,
            prefix_match_ratio,
            ttft_ratio,
            cost_constants,
            registry,
        })
    }

    /// The registry, for families added by other modules (e.g. scrapers).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Resolves the per-replica series of `replica`.
    pub fn for_replica(&self, replica: &str) -> ReplicaMetrics {
        ReplicaMetrics {
            ttfb: self.ttfb.with_label_values(&[replica]),
            duration: self.duration.with_label_values(&[replica]),
            in_flight: self.in_flight.with_label_values(&[replica]),
            in_flight_tokens: self.in_flight_tokens.with_label_values(&[replica]),
            healthy: self.healthy.with_label_values(&[replica]),
            ttft_ratio: self.ttft_ratio.with_label_values(&[replica]),
            cost_constants: COST_CONSTANTS
                .map(|c| self.cost_constants.with_label_values(&[replica, c])),
        }
    }

    /// Drops the gauges of a removed replica so it no longer shows up.
    pub fn forget_replica(&self, replica: &str) {
        for gauge in [&self.in_flight, &self.in_flight_tokens, &self.healthy] {
            let _ = gauge.remove_label_values(&[replica]);
        }
        let _ = self.ttft_ratio.remove_label_values(&[replica]);
        for c in COST_CONSTANTS {
            let _ = self.cost_constants.remove_label_values(&[replica, c]);
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encode error: {e}\n");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
