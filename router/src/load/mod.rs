//! Per-replica load and learnt state, beneath both the replica set and the policies: in-flight
//! counters, queued prefill, the latest metrics scrape and the speed learnt online.

mod learn;
mod pending;
mod scraped;
mod signals;
mod speed;
mod ttft;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

pub use learn::ConstantFit;
pub use pending::{PendingLoad, PendingSnapshot, PendingTicket};
pub use scraped::{Engine, LatencyTotals, NoLoadMetrics, ScrapedLoad, SumCount};
pub use signals::{ExternalLoad, ScrapeSignals, ScrapeSlot, prefill_sample};
pub use speed::{
    CleanReading, LearntSpeed, PrefillSample, Prior, SAME_SPEED, SpeedEstimate, pool_speeds_into,
    pooled_speeds,
};
pub use ttft::{Speed, TtftPrediction};

/// One replica's load at one instant: what every load-aware policy reads (`power_of_two` and
/// `prefix_aware` per unit of weight, `cost` as counts it feeds its time model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReading {
    /// Requests dispatched to the replica and not finished.
    pub requests: u64,
    /// Their estimated prompt tokens.
    pub prompt_tokens: u64,
    /// Those not yet past first byte: the prefill queued on the replica.
    pub pending: PendingSnapshot,
    /// The replica's relative weight (>= 1).
    pub weight: u32,
}

impl LoadReading {
    /// In-flight requests per unit of weight.
    pub fn requests_per_weight(&self) -> f64 {
        self.requests as f64 / f64::from(self.weight.max(1))
    }

    /// In-flight prompt tokens per unit of weight.
    pub fn prompt_tokens_per_weight(&self) -> f64 {
        self.prompt_tokens as f64 / f64::from(self.weight.max(1))
    }

    /// Prompt tokens of requests past first byte (context being decoded).
    pub fn decoding_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.pending.prompt_tokens)
    }
}

/// Live load of one replica as counted by this router.
#[derive(Debug, Default)]
pub struct ReplicaLoad {
    in_flight_requests: AtomicU64,
    in_flight_prompt_tokens: AtomicU64,
    /// The in-flight requests not yet past first byte (queued prefill work).
    pub pending: PendingLoad,
    /// The latest scrape of the replica's metrics.
    pub scraped: ScrapeSlot,
    /// The replica's cost constants learnt online (by the cost policy).
    pub speed: SpeedEstimate,
}

impl ReplicaLoad {
    /// Requests dispatched to the replica and not finished yet.
    pub fn requests(&self) -> u64 {
        self.in_flight_requests.load(Ordering::Relaxed)
    }

    /// Estimated prompt tokens of those requests.
    pub fn prompt_tokens(&self) -> u64 {
        self.in_flight_prompt_tokens.load(Ordering::Relaxed)
    }

    /// The counters at `now`, for a replica of `weight`.
    pub fn read(&self, weight: u32, now: Instant) -> LoadReading {
        LoadReading {
            requests: self.requests(),
            prompt_tokens: self.prompt_tokens(),
            pending: self.pending.snapshot(now),
            weight: weight.max(1),
        }
    }

    /// Adds `requests` and `tokens` (the guard's half; tests use it to fake load).
    pub(crate) fn add(&self, requests: u64, tokens: u64) {
        self.in_flight_requests
            .fetch_add(requests, Ordering::Relaxed);
        self.in_flight_prompt_tokens
            .fetch_add(tokens, Ordering::Relaxed);
    }

    /// Removes what `add` added.
    pub(crate) fn sub(&self, requests: u64, tokens: u64) {
        self.in_flight_requests
            .fetch_sub(requests, Ordering::Relaxed);
        self.in_flight_prompt_tokens
            .fetch_sub(tokens, Ordering::Relaxed);
    }
}
