//! Per-replica health state machine driven by consecutive successes and failures.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::Replica;

/// Healthy flag plus the streaks that flip it.
#[derive(Debug)]
pub struct HealthState {
    healthy: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
}

impl Default for HealthState {
    /// Replicas start healthy so a fresh router serves at once; probes correct it quickly.
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
        }
    }
}

impl HealthState {
    /// Whether the replica receives traffic.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a success; returns true when this flips the replica to healthy.
    pub fn record_success(&self, healthy_threshold: u32) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        let streak = self
            .successes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        streak >= healthy_threshold && !self.healthy.swap(true, Ordering::Relaxed)
    }

    /// Records a failure; returns true when this flips the replica to unhealthy.
    pub fn record_failure(&self, unhealthy_threshold: u32) -> bool {
        self.successes.store(0, Ordering::Relaxed);
        let streak = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        streak >= unhealthy_threshold && self.healthy.swap(false, Ordering::Relaxed)
    }

    /// Ends a failure streak without counting toward recovery (a good answer on real traffic).
    pub fn clear_failures(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }
}

impl Replica {
    /// Feeds one success (probe or real traffic); logs and updates the gauge on a flip. A
    /// replica back from being down may have been replaced: its learnt speed starts over.
    pub fn note_success(&self, healthy_threshold: u32) {
        if self.health.record_success(healthy_threshold) {
            self.metrics.healthy.set(1);
            self.load.speed.reset();
            tracing::info!(replica = %self.name(), "replica is healthy again");
        }
    }

    /// Feeds one failure (probe, connect error, 5xx); logs and updates the gauge on a flip.
    pub fn note_failure(&self, unhealthy_threshold: u32, why: &str) {
        if self.health.record_failure(unhealthy_threshold) {
            self.metrics.healthy.set(0);
            tracing::warn!(replica = %self.name(), reason = why, "replica marked unhealthy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_only_after_thresholds() {
        let h = HealthState::default();
        assert!(!h.record_failure(2));
        assert!(h.is_healthy());
        assert!(h.record_failure(2));
        assert!(!h.is_healthy());
        assert!(!h.record_failure(2), "already unhealthy: no second flip");
        assert!(!h.record_success(3));
        assert!(!h.record_success(3));
        assert!(!h.is_healthy());
        assert!(h.record_success(3));
        assert!(h.is_healthy());
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let h = HealthState::default();
        h.record_failure(2);
        h.record_success(1);
        assert!(!h.record_failure(2));
        assert!(h.is_healthy());
    }
}
