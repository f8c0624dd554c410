//! In-flight load counters and the RAII guard that holds them for one request.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use super::Replica;

/// Live load of one replica as counted by this router.
#[derive(Debug, Default)]
pub struct ReplicaLoad {
    in_flight_requests: AtomicU64,
    in_flight_prompt_tokens: AtomicU64,
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
}

impl LoadGuard {
    /// Adds one request and `tokens` prompt tokens to `replica`.
    pub fn acquire(replica: Arc<Replica>, tokens: u64) -> Self {
        replica.load.add(1, tokens);
        replica.metrics.in_flight.inc();
        replica
            .metrics
            .in_flight_tokens
            .add(i64::try_from(tokens).unwrap_or(i64::MAX));
        Self { replica, tokens }
    }

    /// The replica this guard counts against.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.replica.load.sub(1, self.tokens);
        self.replica.metrics.in_flight.dec();
        self.replica
            .metrics
            .in_flight_tokens
            .sub(i64::try_from(self.tokens).unwrap_or(i64::MAX));
    }
}
