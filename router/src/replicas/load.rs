//! In-flight load counters and the RAII guard that holds them for one request.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use super::Replica;
use crate::{
    policy::{PendingLoad, PendingTicket, SpeedEstimate, TtftPrediction},
    scrape::ScrapeSlot,
};

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

/// Counts one request against a replica from dispatch until dropped, whatever the ending.
#[derive(Debug)]
pub struct LoadGuard {
    replica: Arc<Replica>,
    tokens: u64,
    prefill_tokens: Option<u64>,
    pending: Option<PendingTicket>,
    acquired: std::time::Instant,
    predicted_ttft_s: Option<TtftPrediction>,
}

impl LoadGuard {
    /// Adds one request and `tokens` prompt tokens to `replica`, all of them still to prefill.
    pub fn acquire(replica: Arc<Replica>, tokens: u64) -> Self {
        Self::acquire_with_prefill(replica, tokens, Some(tokens))
    }

    /// Adds one request of `tokens` prompt tokens, `prefill_tokens` of them not cached on
    /// `replica`; they count as pending prefill until [`LoadGuard::first_byte`]. `None` (a
    /// non-streaming request, whose first byte only comes at the end) is not counted as pending.
    pub fn acquire_with_prefill(
        replica: Arc<Replica>,
        tokens: u64,
        prefill_tokens: Option<u64>,
    ) -> Self {
        let now = std::time::Instant::now();
        let pending = prefill_tokens.map(|p| replica.load.pending.add(p, tokens, now));
        replica.load.add(1, tokens);
        replica.metrics.in_flight.inc();
        replica
            .metrics
            .in_flight_tokens
            .add(i64::try_from(tokens).unwrap_or(i64::MAX));
        Self {
            replica,
            tokens,
            prefill_tokens,
            pending,
            acquired: now,
            predicted_ttft_s: None,
        }
    }

    /// The policy predicted this time to first byte: when a pending (streaming) request's first
    /// byte arrives, the replica's [`SpeedEstimate`] learns from the difference.
    pub fn predict_first_byte(&mut self, prediction: Option<TtftPrediction>) {
        self.predicted_ttft_s = prediction;
    }

    /// The first response byte arrived: the request is no longer queued prefill work.
    pub fn first_byte(&mut self) {
        if self.pending.is_some()
            && let Some(predicted) = self.predicted_ttft_s
        {
            let now = std::time::Instant::now();
            let observed = now.saturating_duration_since(self.acquired).as_secs_f64();
            self.replica.load.speed.record(&predicted, observed, now);
        }
        self.release_pending();
    }

    fn release_pending(&mut self) {
        if let Some(ticket) = self.pending.take() {
            self.replica.load.pending.remove(ticket);
        }
    }

    /// Uncached prompt tokens of a streaming request (as given at acquire); `None` otherwise.
    pub fn prefill_tokens(&self) -> Option<u64> {
        self.prefill_tokens
    }

    /// The replica this guard counts against.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.release_pending();
        self.replica.load.sub(1, self.tokens);
        self.replica.metrics.in_flight.dec();
        self.replica
            .metrics
            .in_flight_tokens
            .sub(i64::try_from(self.tokens).unwrap_or(i64::MAX));
    }
}
