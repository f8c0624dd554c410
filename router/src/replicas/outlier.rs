//! Outlier ejection (Envoy's model): consecutive failures on real traffic take a replica out of
//! routing for a back-off that grows with each ejection in a row, never more than a configured
//! share of the fleet at once. Health checks stay separate: an ejected replica is still probed.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{Replica, ReplicaId};
use crate::{Error, config::OutlierConfig};

/// Streaks and ejection of one replica.
#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    successes: u32,
    /// Ejections in a row without a recovery in between: the back-off multiplier.
    streak: u32,
    until: Option<Instant>,
    /// Answers and failures in the current failure-rate window.
    window: u32,
    window_failures: u32,
    /// Failure rate of the last complete window, percent.
    last_rate: Option<u32>,
}

impl State {
    /// Counts one answer; returns the window's failure percentage when it completes.
    fn count(&mut self, failed: bool, size: u32) -> Option<u32> {
        self.window += 1;
        self.window_failures += u32::from(failed);
        if self.window < size {
            return None;
        }
        let rate = self.window_failures * 100 / self.window;
        self.window = 0;
        self.window_failures = 0;
        self.last_rate = Some(rate);
        Some(rate)
    }
}

/// Ejects replicas that keep failing; cheap to ask on every request.
pub struct OutlierDetector {
    config: OutlierConfig,
    states: Mutex<HashMap<ReplicaId, State>>,
    ejected: IntGaugeVec,
    ejections: IntCounterVec,
}

impl OutlierDetector {
    /// A detector whose metrics (`router_replica_ejected`, `router_replica_ejections_total`)
    /// are registered in `registry`.
    pub fn new(config: OutlierConfig, registry: &Registry) -> Result<Self, Error> {
        let ejected = IntGaugeVec::new(
            Opts::new(
                "router_replica_ejected",
                "1 while the replica is ejected by outlier detection",
            ),
            &["replica"],
        )?;
        registry.register(Box::new(ejected.clone()))?;
        let ejections = IntCounterVec::new(
            Opts::new(
                "router_replica_ejections_total",
                "Outlier ejections of the replica",
            ),
            &["replica"],
        )?;
        registry.register(Box::new(ejections.clone()))?;
        Ok(Self {
            config,
            states: Mutex::new(HashMap::new()),
            ejected,
            ejections,
        })
    }

    /// Whether `replica` is ejected at `now`.
    pub fn is_ejected(&self, replica: &Replica, now: Instant) -> bool {
        self.config.enabled
            && self
                .states
                .lock()
                .get(&replica.id())
                .and_then(|s| s.until)
                .is_some_and(|until| until > now)
    }

    /// A good answer from `replica`: ends its failure streak, and a run of them forgives one
    /// past ejection.
    pub fn record_success(&self, replica: &Replica) {
        if !self.config.enabled {
            return;
        }
        let mut states = self.states.lock();
        let state = states.entry(replica.id()).or_default();
        let _ = state.count(false, self.config.min_requests);
        state.failures = 0;
        state.successes = state.successes.saturating_add(1);
        if state.successes >= self.config.consecutive_failures {
            state.successes = 0;
            state.streak = state.streak.saturating_sub(1);
        }
    }

    /// A failure of `replica` (of a fleet of `fleet`); ejects it when the streak is reached and
    /// the ejection cap allows. Returns the ejection length when it ejected.
    pub fn record_failure(&self, replica: &Replica, fleet: usize) -> Option<Duration> {
        if !self.config.enabled {
            return None;
        }
        let now = Instant::now();
        let mut states = self.states.lock();
        let ejected_now = states
            .values()
            .filter(|s| s.until.is_some_and(|u| u > now))
            .count();
        let state = states.entry(replica.id()).or_default();
        state.successes = 0;
        if state.until.is_some_and(|u| u > now) {
            return None;
        }
        state.failures = state.failures.saturating_add(1);
        let rate = state.count(true, self.config.min_requests);
        let streak = state.failures >= self.config.consecutive_failures;
        let outlier_rate = rate.is_some_and(|rate| {
            let threshold = self.config.failure_percent;
            threshold > 0 && rate >= threshold && {
                let id = replica.id();
                let peers: Vec<u32> = states
                    .iter()
                    .filter(|(k, _)| **k != id)
                    .filter_map(|(_, s)| s.last_rate)
                    .collect();
                // The first window to complete has no peers to compare with: no verdict.
                !peers.is_empty() && {
                    let mean = peers.iter().sum::<u32>() / peers.len() as u32;
                    mean * 2 < rate
                }
            }
        });
        if !streak && !outlier_rate {
            return None;
        }
        let state = states.entry(replica.id()).or_default();
        let cap = u64::from(self.config.max_ejection_percent) * fleet as u64;
        if (ejected_now as u64) * 100 >= cap {
            return None;
        }
        state.failures = 0;
        state.streak = state.streak.saturating_add(1);
        let length = Duration::from_millis(
            self.config
                .base_ejection_ms
                .saturating_mul(u64::from(state.streak))
                .min(self.config.max_ejection_ms),
        );
        state.until = Some(now + length);
        drop(states);
        self.ejections.with_label_values(&[replica.name()]).inc();
        let gauge = self.ejected.with_label_values(&[replica.name()]);
        gauge.set(1);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                tokio::time::sleep(length).await;
                gauge.set(0);
            });
        }
        tracing::warn!(
            replica = %replica.name(),
            ejection_ms = length.as_millis() as u64,
            outlier_rate,
            "replica ejected (consecutive failures or failure rate above its peers)"
        );
        Some(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::ReplicaSpec, metrics::RouterMetrics};
    use std::sync::Arc;

    fn replicas(n: usize) -> Vec<Arc<Replica>> {
        let set = super::super::ReplicaSet::new(RouterMetrics::new().unwrap());
        for i in 0..n {
            let mut spec = ReplicaSpec::new(format!("http://127.0.0.1:{}", 9000 + i));
            spec.name = Some(format!("r{i}"));
            set.apply(super::super::ReplicaChange::Upsert(spec))
                .unwrap();
        }
        set.snapshot().all().to_vec()
    }

    fn detector(percent: u32) -> OutlierDetector {
        let config = OutlierConfig {
            consecutive_failures: 3,
            base_ejection_ms: 1000,
            max_ejection_ms: 2500,
            max_ejection_percent: percent,
            ..OutlierConfig::default()
        };
        OutlierDetector::new(config, &Registry::new()).unwrap()
    }

    #[test]
    fn consecutive_failures_eject_with_a_growing_capped_back_off() {
        let r = replicas(4);
        let d = detector(50);
        assert_eq!(d.record_failure(&r[0], 4), None);
        d.record_success(&r[0]);
        assert_eq!(d.record_failure(&r[0], 4), None);
        assert_eq!(d.record_failure(&r[0], 4), None);
        let first = d.record_failure(&r[0], 4);
        assert_eq!(first, Some(Duration::from_millis(1000)));
        assert!(d.is_ejected(&r[0], Instant::now()));
        assert!(!d.is_ejected(&r[0], Instant::now() + Duration::from_millis(1001)));
        // Lift the ejection by hand (as time would) and fail again: twice as long, then capped.
        let lift = |d: &OutlierDetector| {
            d.states.lock().get_mut(&r[0].id()).unwrap().until = None;
        };
        lift(&d);
        for _ in 0..2 {
            assert_eq!(d.record_failure(&r[0], 4), None);
        }
        assert_eq!(
            d.record_failure(&r[0], 4),
            Some(Duration::from_millis(2000))
        );
        lift(&d);
        for _ in 0..2 {
            d.record_failure(&r[0], 4);
        }
        assert_eq!(
            d.record_failure(&r[0], 4),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn a_failure_rate_well_above_the_peers_ejects() {
        let r = replicas(4);
        let config = OutlierConfig {
            consecutive_failures: 100,
            min_requests: 10,
            failure_percent: 25,
            ..OutlierConfig::default()
        };
        let d = OutlierDetector::new(config, &Registry::new()).unwrap();
        for peer in &r[1..] {
            for _ in 0..10 {
                d.record_success(peer);
            }
        }
        // 3 failures in 10 answers (never 100 in a row) against clean peers.
        let mut ejected = None;
        for i in 0..10 {
            if i % 3 == 0 {
                ejected = ejected.or(d.record_failure(&r[0], 4));
            } else {
                d.record_success(&r[0]);
            }
        }
        assert!(ejected.is_some() || d.is_ejected(&r[0], Instant::now()));
        // When every replica fails as much, nobody is an outlier.
        let d = OutlierDetector::new(
            OutlierConfig {
                consecutive_failures: 100,
                min_requests: 10,
                ..OutlierConfig::default()
            },
            &Registry::new(),
        )
        .unwrap();
        for replica in &r {
            for i in 0..10 {
                if i % 2 == 0 {
                    d.record_failure(replica, 4);
                } else {
                    d.record_success(replica);
                }
            }
        }
        let now = Instant::now();
        assert_eq!(r.iter().filter(|x| d.is_ejected(x, now)).count(), 0);
    }

    #[test]
    fn never_more_than_the_configured_share_is_ejected() {
        let r = replicas(4);
        let d = detector(50);
        for replica in &r {
            for _ in 0..3 {
                d.record_failure(replica, 4);
            }
        }
        let now = Instant::now();
        let ejected = r.iter().filter(|x| d.is_ejected(x, now)).count();
        assert_eq!(ejected, 2);
        // With 0 % nothing is ever ejected.
        let d = detector(0);
        for _ in 0..10 {
            assert_eq!(d.record_failure(&r[0], 4), None);
        }
    }
}
