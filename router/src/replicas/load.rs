//! The RAII guard that holds a replica's in-flight load counters for one request.

use std::sync::Arc;

use super::Replica;
use crate::load::{PendingTicket, TtftPrediction};

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
    /// byte arrives, the replica's [`SpeedEstimate`](crate::load::SpeedEstimate) learns from
    /// the difference.
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
