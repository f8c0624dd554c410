//! Outlier ejection (Envoy's model): consecutive failures, a failure rate or a time to first
//! byte far above the peers' take a replica out of routing for a back-off that grows with each
//! ejection in a row, never more than a configured share of the fleet at once. Health checks
//! stay separate: an ejected replica is still probed.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{
    Replica, ReplicaId,
    latency::{DecayedMean, median, normalised_seconds},
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Streaks and ejection of one replica.
#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    successes: u32,
    /// Failure ejections in a row without a recovery in between: their back-off multiplier.
    streak: u32,
    until: Option<Instant>,
    /// Answers and failures in the current failure-rate window.
    window: u32,
    window_failures: u32,
    /// Failure rate of the last complete window, percent.
    last_rate: Option<u32>,
    /// Normalised time to first byte since the last ejection, seconds.
    latency: DecayedMean,
    /// Latency ejections in a row (until a full fresh window is no outlier): their multiplier.
    slow_streak: u32,
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

    fn ejected_at(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| until > now)
    }
}

/// Why a replica is ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Consecutive failures or a failure rate above its peers'.
    Failures,
    /// Time to first byte far above its peers'.
    Latency,
}

/// Ejects replicas that keep failing or answer far slower than their peers; cheap to ask on
/// every request.
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
                "Outlier ejections of the replica (failures or latency)",
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
                .is_some_and(|s| s.ejected_at(now))
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
        let state = states.entry(replica.id()).or_default();
        state.successes = 0;
        if state.ejected_at(now) {
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
        let length = self.eject(&mut states, replica.id(), now, fleet, Reason::Failures)?;
        drop(states);
        self.announce(replica, length, Reason::Failures, || {
            format!("consecutive failures or failure rate above its peers (rate: {outlier_rate})")
        });
        Some(length)
    }

    /// A streamed answer's first byte came `ttfb` after dispatch to `replica` (of a fleet of
    /// `fleet`), for a request with `prefill_tokens` uncached prompt tokens. Ejects the replica
    /// when its decayed mean is above `latency_factor` times its peers' median; returns the
    /// ejection length when it ejected.
    pub fn record_latency(
        &self,
        replica: &Replica,
        ttfb: Duration,
        prefill_tokens: u64,
        fleet: usize,
    ) -> Option<Duration> {
        self.record_latency_at(replica, ttfb, prefill_tokens, fleet, Instant::now())
    }

    /// [`OutlierDetector::record_latency`] at `now`.
    fn record_latency_at(
        &self,
        replica: &Replica,
        ttfb: Duration,
        prefill_tokens: u64,
        fleet: usize,
        now: Instant,
    ) -> Option<Duration> {
        let factor = self.config.latency_factor;
        if !self.config.enabled || factor <= 0.0 {
            return None;
        }
        let window = self.config.min_requests;
        let id = replica.id();
        let mut states = self.states.lock();
        let state = states.entry(id).or_default();
        // An answer to a request sent before the ejection: its sample is already written off.
        if state.ejected_at(now) {
            return None;
        }
        state
            .latency
            .add(normalised_seconds(ttfb, prefill_tokens), window);
        if state.latency.samples() < window {
            return None;
        }
        let mean = state.latency.mean();
        let mut peers: Vec<f64> = states
            .iter()
            .filter(|(k, s)| **k != id && !s.ejected_at(now) && s.latency.samples() >= window)
            .map(|(_, s)| s.latency.mean())
            .collect();
        let peer_median = median(&mut peers)?;
        let floor = Duration::from_millis(self.config.latency_floor_ms).as_secs_f64();
        if mean <= factor * peer_median.max(floor) {
            // A full window of fresh samples and no outlier: past latency ejections forgiven.
            if let Some(state) = states.get_mut(&id) {
                state.slow_streak = 0;
            }
            return None;
        }
        let length = self.eject(&mut states, id, now, fleet, Reason::Latency)?;
        drop(states);
        self.announce(replica, length, Reason::Latency, || {
            format!(
                "time to first byte {:.1} ms per {} prompt tokens against a peer median of {:.1} ms",
                mean * 1e3,
                super::latency::SAMPLE_PROMPT_TOKENS,
                peer_median * 1e3
            )
        });
        Some(length)
    }

    /// Ejects `id` at `now` for a back-off growing with its streak of `reason`, unless the
    /// fleet's ejection cap is reached. Its latency samples start afresh when it returns.
    fn eject(
        &self,
        states: &mut HashMap<ReplicaId, State>,
        id: ReplicaId,
        now: Instant,
        fleet: usize,
        reason: Reason,
    ) -> Option<Duration> {
        let ejected_now = states.values().filter(|s| s.ejected_at(now)).count();
        let cap = u64::from(self.config.max_ejection_percent) * fleet as u64;
        if (ejected_now as u64) * 100 >= cap {
            return None;
        }
        let state = states.entry(id).or_default();
        let streak = match reason {
            Reason::Failures => {
                state.failures = 0;
                state.streak = state.streak.saturating_add(1);
                state.streak
            }
            Reason::Latency => {
                state.slow_streak = state.slow_streak.saturating_add(1);
                state.slow_streak
            }
        };
        state.latency = DecayedMean::default();
        let length = Duration::from_millis(
            self.config
                .base_ejection_ms
                .saturating_mul(u64::from(streak))
                .min(self.config.max_ejection_ms),
        );
        state.until = Some(now + length);
        Some(length)
    }

    /// Metrics and log of an ejection of `replica` for `length`; `why` details the reason.
    fn announce(
        &self,
        replica: &Replica,
        length: Duration,
        reason: Reason,
        why: impl FnOnce() -> String,
    ) {
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
            ?reason,
            detail = %why(),
            "replica ejected as an outlier"
        );
    }
}

/// Envoy-style outlier detection on real traffic: a replica that keeps failing, or answers far
/// slower than its peers, is ejected (gets no traffic) for a back-off that grows while it keeps
/// failing or being slow after each return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Turn ejection on.
    pub enabled: bool,
    /// Consecutive failures (5xx, connect error, timeouts, broken streams) that eject.
    pub consecutive_failures: u32,
    /// First ejection length; each further ejection in a row adds one more of it.
    pub base_ejection_ms: u64,
    /// Longest ejection.
    pub max_ejection_ms: u64,
    /// Most replicas ejected at once, as a percentage of the fleet (at least one may be).
    pub max_ejection_percent: u32,
    /// Also eject a replica whose failures over its last `min_requests` answers reach this
    /// percentage while its peers' failure rate is under half of it (0 turns this off).
    pub failure_percent: u32,
    /// Answers per replica in one failure-rate window, and latency samples a replica (and each
    /// peer it is compared with) needs before a latency verdict.
    pub min_requests: u32,
    /// Also eject a replica whose decayed mean time to first byte of streamed answers, per 256
    /// uncached prompt tokens (shorter prompts count as 256), exceeds this many times its
    /// peers' median (0 turns this off).
    pub latency_factor: f64,
    /// The peers' median latency counts as at least this, so that noise on replicas answering
    /// in microseconds ejects nobody.
    pub latency_floor_ms: u64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            base_ejection_ms: 2_000,
            max_ejection_ms: 60_000,
            max_ejection_percent: 50,
            failure_percent: 25,
            min_requests: 20,
            latency_factor: 5.0,
            latency_floor_ms: 25,
        }
    }
}

impl OutlierConfig {
    /// Checks the values serde cannot; returns the offending key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (key, value) in [
            (
                "outlier.consecutive_failures",
                u64::from(self.consecutive_failures),
            ),
            ("outlier.base_ejection_ms", self.base_ejection_ms),
            ("outlier.max_ejection_ms", self.max_ejection_ms),
            ("outlier.min_requests", u64::from(self.min_requests)),
        ] {
            if value == 0 {
                return Err((key.to_owned(), "must be greater than 0".to_owned()));
            }
        }
        if self.failure_percent > 100 {
            return Err((
                "outlier.failure_percent".to_owned(),
                format!("must be within 0..=100, got {}", self.failure_percent),
            ));
        }
        if !(self.latency_factor == 0.0
            || (self.latency_factor.is_finite() && self.latency_factor >= 1.0))
        {
            return Err((
                "outlier.latency_factor".to_owned(),
                format!("must be 0 (off) or at least 1, got {}", self.latency_factor),
            ));
        }
        if self.max_ejection_percent > 100 {
            return Err((
                "outlier.max_ejection_percent".to_owned(),
                format!("must be within 0..=100, got {}", self.max_ejection_percent),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metrics::RouterMetrics, replicas::ReplicaSpec};
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

    fn latency_detector(window: u32) -> OutlierDetector {
        let config = OutlierConfig {
            min_requests: window,
            latency_factor: 5.0,
            latency_floor_ms: 10,
            base_ejection_ms: 1000,
            max_ejection_ms: 2500,
            ..OutlierConfig::default()
        };
        OutlierDetector::new(config, &Registry::new()).unwrap()
    }

    const MS: Duration = Duration::from_millis(1);

    /// One round of samples at `now`: `ms[i]` milliseconds for replica `i`, short prompts.
    fn round(d: &OutlierDetector, r: &[Arc<Replica>], ms: &[u32], now: Instant) -> Vec<Duration> {
        r.iter()
            .zip(ms)
            .filter_map(|(x, ms)| d.record_latency_at(x, MS * *ms, 10, r.len(), now))
            .collect()
    }

    #[test]
    fn a_replica_far_slower_than_its_peers_median_is_ejected_with_a_growing_back_off() {
        let r = replicas(4);
        let d = latency_detector(5);
        let t0 = Instant::now();
        // Four samples each: fewer than the window, no verdict however slow.
        for _ in 0..4 {
            assert!(round(&d, &r, &[20, 22, 25, 200], t0).is_empty());
        }
        // The fifth: 200 ms against a median of 22 ms (x 5 = 110 ms) ejects r3 only.
        assert_eq!(
            round(&d, &r, &[20, 22, 25, 200], t0),
            vec![Duration::from_millis(1000)]
        );
        assert!(d.is_ejected(&r[3], t0));
        assert!(!r[..3].iter().any(|x| d.is_ejected(x, t0)));
        // Back after the ejection, its samples start afresh; still slow: twice as long.
        let t1 = t0 + Duration::from_millis(1001);
        assert!(!d.is_ejected(&r[3], t1));
        for _ in 0..4 {
            assert!(round(&d, &r, &[20, 22, 25, 200], t1).is_empty());
        }
        assert_eq!(
            round(&d, &r, &[20, 22, 25, 200], t1),
            vec![Duration::from_millis(2000)]
        );
        // Recovered: a full fresh window within the factor forgives the streak.
        let t2 = t1 + Duration::from_millis(2001);
        for _ in 0..5 {
            assert!(round(&d, &r, &[20, 22, 25, 30], t2).is_empty());
        }
        assert!(!d.is_ejected(&r[3], t2));
        for _ in 0..5 {
            round(&d, &r, &[20, 22, 25, 500], t2);
        }
        assert!(d.is_ejected(&r[3], t2));
        assert!(!d.is_ejected(&r[3], t2 + Duration::from_millis(1001)));
    }

    #[test]
    fn latency_within_the_factor_or_the_floor_ejects_nobody() {
        let r = replicas(4);
        let d = latency_detector(5);
        let now = Instant::now();
        // 4x the median: not an outlier at 5x.
        for _ in 0..20 {
            assert!(round(&d, &r, &[20, 20, 20, 80], now).is_empty());
        }
        // Microsecond replicas: 40x the median, but under 5 x the 10 ms floor.
        let d = latency_detector(5);
        for _ in 0..20 {
            let us = |n| Duration::from_micros(n);
            for (x, t) in r.iter().zip([us(200), us(250), us(300), us(9_000)]) {
                assert_eq!(d.record_latency_at(x, t, 10, 4, now), None);
            }
        }
        // A long prompt is slow everywhere: 16x the tokens, 16x the time, same normalised value.
        let d = latency_detector(5);
        for _ in 0..20 {
            for (i, x) in r.iter().enumerate() {
                let (t, tokens) = if i == 3 {
                    (MS * 320, 4096)
                } else {
                    (MS * 20, 100)
                };
                assert_eq!(d.record_latency_at(x, t, tokens, 4, now), None);
            }
        }
        // Off: factor 0.
        let d = OutlierDetector::new(
            OutlierConfig {
                min_requests: 5,
                latency_factor: 0.0,
                ..OutlierConfig::default()
            },
            &Registry::new(),
        )
        .unwrap();
        for _ in 0..20 {
            assert!(round(&d, &r, &[20, 20, 20, 2000], now).is_empty());
        }
    }

    #[test]
    fn latency_ejection_respects_the_fleet_share_and_needs_peers() {
        let r = replicas(4);
        let d = latency_detector(5);
        let now = Instant::now();
        // A lone replica with samples has no peers to compare with.
        for _ in 0..10 {
            assert_eq!(d.record_latency_at(&r[0], MS * 900, 10, 4, now), None);
        }
        // Of three slow replicas of four, two are ejected (50 %), the third never.
        let d = latency_detector(5);
        for _ in 0..10 {
            round(&d, &r, &[10, 400, 400, 400], now);
        }
        assert_eq!(r.iter().filter(|x| d.is_ejected(x, now)).count(), 2);
        let r6 = replicas(6);
        let d = latency_detector(5);
        for _ in 0..10 {
            round(&d, &r6, &[10, 10, 400, 400, 400, 400], now);
        }
        assert_eq!(r6.iter().filter(|x| d.is_ejected(x, now)).count(), 3);
    }
}
