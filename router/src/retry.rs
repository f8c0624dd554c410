//! Retry pacing: a router-wide budget (a share of recent requests, so a bad request or a dead
//! fleet cannot multiply traffic) and jittered exponential back-off between attempts.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One retry in budget units; each request deposits `budget_percent` hundredths of it.
const UNIT: u64 = 100;

/// Token bucket of retries: requests fill it, retries drain it.
#[derive(Debug)]
pub struct RetryBudget {
    /// Budget left, in hundredths of a retry.
    tokens: AtomicU64,
    /// Deposit per request.
    per_request: u64,
    /// Bucket size: `budget_min` retries.
    cap: u64,
    base: Duration,
    max: Duration,
}

impl RetryBudget {
    /// A full budget from `config`.
    pub fn new(config: &RetryConfig) -> Self {
        let cap = u64::from(config.budget_min).max(1) * UNIT;
        Self {
            tokens: AtomicU64::new(cap),
            per_request: u64::from(config.budget_percent),
            cap,
            base: Duration::from_millis(config.backoff_base_ms),
            max: Duration::from_millis(config.backoff_max_ms),
        }
    }

    /// A request arrived: its share of a retry goes into the bucket.
    pub fn deposit(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + self.per_request).min(self.cap))
            });
    }

    /// Takes one retry from the bucket; false when the budget is spent.
    pub fn withdraw(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(UNIT)
            })
            .is_ok()
    }

    /// Pause before retry number `retry` (1-based): uniform in `0..=min(max, base * 2^(retry-1))`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max);
        if ceiling.is_zero() {
            return Duration::ZERO;
        }
        let ms = ceiling.as_micros() as u64;
        Duration::from_micros(rand::rng().random_range(0..=ms))
    }
}

/// Retries of requests that failed before any response byte reached the client (connect
/// error, 5xx, connection closed before headers, first-byte timeout); 4xx are never retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Extra attempts per request, each on a replica not tried yet.
    pub max_retries: u32,
    /// First back-off before a retry; doubles per attempt, with full jitter.
    pub backoff_base_ms: u64,
    /// Longest back-off before a retry.
    pub backoff_max_ms: u64,
    /// Retries allowed across the router, as a percentage of requests (on top of `budget_min`).
    pub budget_percent: u32,
    /// Retries always allowed however few requests arrived (the budget's floor and burst).
    pub budget_min: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_base_ms: 10,
            backoff_max_ms: 200,
            budget_percent: 20,
            budget_min: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(percent: u32, min: u32) -> RetryConfig {
        RetryConfig {
            budget_percent: percent,
            budget_min: min,
            backoff_base_ms: 10,
            backoff_max_ms: 50,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn the_budget_is_a_floor_plus_a_share_of_requests() {
        let budget = RetryBudget::new(&config(20, 2));
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw(), "floor spent");
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.withdraw(), "4 requests at 20% are 0.8 of a retry");
        budget.deposit();
        assert!(budget.withdraw());
        for _ in 0..1000 {
            budget.deposit();
        }
        assert!(budget.withdraw() && budget.withdraw() && !budget.withdraw());
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let budget = RetryBudget::new(&config(20, 2));
        for retry in 1..20 {
            let ceiling = Duration::from_millis((10u64 << (retry - 1).min(16)).min(50));
            for _ in 0..50 {
                assert!(budget.backoff(retry) <= ceiling);
            }
        }
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| budget.backoff(3)).collect();
        assert!(distinct.len() > 1, "jittered");
    }
}
