//! The scraper task: every interval, polls each replica's metrics page, publishes fresh signals
//! (or marks them stale), feeds failures to health, and tells the policy (which alone owns
//! its prefix index) each replica's KV capacity and which replicas stayed unhealthy past the
//! grace period.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;

use super::{
    ExternalLoad, ScrapeConfig, ScrapeMetrics, ScrapeSignals, ScrapedLoad, prefill_sample,
};
use crate::{
    abort::AbortOnDrop,
    health::HealthConfig,
    policy::Policy,
    proxy::Proxy,
    replicas::{Replica, ReplicaId, ReplicaSet},
};

/// Everything the scraper needs; [`Scraper::spawn`] runs it until dropped.
pub(crate) struct Scraper {
    pub(crate) replicas: Arc<ReplicaSet>,
    pub(crate) proxy: Proxy,
    pub(crate) config: ScrapeConfig,
    pub(crate) health: HealthConfig,
    /// The routing policy, told of learnt capacities and long-unhealthy replicas.
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) unhealthy_grace: Duration,
    pub(crate) metrics: ScrapeMetrics,
}

/// What the task remembers about one replica between ticks.
struct Tracked {
    name: String,
    last_success: Option<Instant>,
    unhealthy_since: Option<Instant>,
    dropped_from_tree: bool,
}

/// Why one scrape failed: the metric label and whether it counts against health.
struct Failure {
    kind: &'static str,
    reason: String,
    unhealthy: bool,
}

impl Scraper {
    /// Starts the loop on the current runtime.
    pub(crate) fn spawn(self) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(self.run()))
    }

    async fn run(self) {
        let mut ticker = tokio::time::interval(Duration::from_millis(self.config.interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tracked: HashMap<ReplicaId, Tracked> = HashMap::new();
        loop {
            ticker.tick().await;
            self.tick(&mut tracked).await;
        }
    }

    /// One round over the current replica set.
    async fn tick(&self, tracked: &mut HashMap<ReplicaId, Tracked>) {
        let snapshot = self.replicas.snapshot();
        let replicas = snapshot.all();
        tracked.retain(|id, t| {
            let keep = replicas.iter().any(|r| r.id() == *id);
            if !keep {
                self.metrics.forget(&t.name);
            }
            keep
        });
        let results: Vec<Option<Result<ScrapedLoad, Failure>>> = if self.config.enabled {
            join_all(
                replicas
                    .iter()
                    .map(|r| async move { Some(self.scrape(r).await) }),
            )
            .await
        } else {
            replicas.iter().map(|_| None).collect()
        };
        let now = Instant::now();
        for (replica, result) in replicas.iter().zip(results) {
            let t = tracked.entry(replica.id()).or_insert_with(|| Tracked {
                name: replica.name().to_owned(),
                last_success: None,
                unhealthy_since: None,
                dropped_from_tree: false,
            });
            if let Some(result) = result {
                self.record(replica, t, result, now);
            }
            self.maintain_tree(replica, t, now);
            // The one writer of the learnt-speed gauge: requests teach the estimate, this
            // tick shows it (0 while unknown, forgotten or reset).
            let ratio = replica.load.speed.ratio(now).unwrap_or(0.0);
            replica.metrics.ttft_ratio.set(ratio);
            let constants = replica.load.speed.constants(now).unwrap_or_default();
            for (gauge, value) in replica.metrics.cost_constants.iter().zip(constants) {
                gauge.set(value);
            }
        }
    }

    async fn scrape(&self, replica: &Replica) -> Result<ScrapedLoad, Failure> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let (status, body) = self
            .proxy
            .get(replica, &self.config.path, timeout)
            .await
            .map_err(|e| Failure {
                kind: "transport",
                reason: e.to_string(),
                unhealthy: true,
            })?;
        if !(200..300).contains(&status) {
            return Err(Failure {
                kind: "status",
                reason: format!("metrics answered {status}"),
                unhealthy: status >= 500,
            });
        }
        let text = String::from_utf8_lossy(&body);
        ScrapedLoad::parse(&text, Instant::now()).map_err(|e| Failure {
            kind: "parse",
            reason: e.to_string(),
            unhealthy: false,
        })
    }

    fn record(
        &self,
        replica: &Replica,
        t: &mut Tracked,
        result: Result<ScrapedLoad, Failure>,
        now: Instant,
    ) {
        let name = replica.name();
        match result {
            Ok(load) => {
                let pending = replica.load.pending.snapshot(now).requests;
                let external = ExternalLoad::from_scrape(&load, replica.load.requests(), pending);
                self.metrics
                    .waiting
                    .with_label_values(&[name])
                    .set(load.waiting);
                self.metrics
                    .running
                    .with_label_values(&[name])
                    .set(load.running);
                if let Some(kv) = load.kv_usage {
                    self.metrics.kv_usage.with_label_values(&[name]).set(kv);
                }
                self.policy
                    .on_capacity_learnt(replica.id(), load.kv_capacity_tokens());
                // The prefill histogram since the last scrape teaches the learnt constants.
                if let Some(previous) = replica.load.scraped.latest()
                    && let Some(sample) = prefill_sample(&previous.load, &load)
                {
                    replica.load.speed.record_scrape(&sample, now);
                }
                let valid_until =
                    load.scraped_at + Duration::from_millis(self.config.stale_after_ms);
                replica.load.scraped.store(ScrapeSignals {
                    load,
                    external,
                    valid_until,
                });
                t.last_success = Some(now);
            }
            Err(failure) => {
                replica.load.scraped.mark_stale();
                self.metrics
                    .errors
                    .with_label_values(&[name, failure.kind])
                    .inc();
                tracing::debug!(replica = name, kind = failure.kind, reason = %failure.reason, "scrape failed");
                if failure.unhealthy && self.config.feed_health && self.health.enabled {
                    let why = format!("metrics scrape: {}", failure.reason);
                    replica.note_failure(self.health.unhealthy_threshold, &why);
                }
            }
        }
        let age = t
            .last_success
            .map_or(f64::INFINITY, |at| now.duration_since(at).as_secs_f64());
        self.metrics.age.with_label_values(&[name]).set(age);
    }

    /// Tells the policy once a replica stays unhealthy past the grace period (prefix policies
    /// forget what it held); reports what the policy believes it holds.
    fn maintain_tree(&self, replica: &Replica, t: &mut Tracked, now: Instant) {
        if self.policy.held_prefix(replica.id()).is_none() {
            return;
        }
        if replica.is_healthy() {
            t.unhealthy_since = None;
            t.dropped_from_tree = false;
        } else {
            let since = *t.unhealthy_since.get_or_insert(now);
            if !t.dropped_from_tree && now.duration_since(since) >= self.unhealthy_grace {
                self.policy.on_replica_unhealthy(replica.id());
                t.dropped_from_tree = true;
                tracing::info!(
                    replica = replica.name(),
                    "unhealthy past the grace period: forgotten by the prefix tree"
                );
            }
        }
        let units = self.policy.held_prefix(replica.id()).map_or(0, |h| h.units);
        let units = i64::try_from(units).unwrap_or(i64::MAX);
        self.metrics
            .tree_units
            .with_label_values(&[replica.name()])
            .set(units);
    }
}
