//! Priority admission: a queue in front of dispatch and per-replica concurrency caps.
//!
//! [`queue`] orders waiting requests (`fcfs`, `priority`, `priority_round_robin`), [`caps`]
//! holds each replica's cap (static, or adaptive on scraped KV usage, preemptions and waiting
//! queue, the token budget calibrated against the replica's own KV usage),
//! [`gate`] hands out [`Permit`]s when a replica has room, [`priority`] finds a request's
//! priority. This file is the glue to the request path: the one call the dispatcher makes and
//! the task that feeds caps from the scrapes (the response body holds the permit until it
//! ends, and tells it of the first byte).

pub mod caps;
pub mod config;
pub mod gate;
pub mod group;
pub mod metrics;
pub mod prefix;
pub mod priority;
pub mod queue;
mod slot;

#[cfg(test)]
mod tests;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

pub use caps::{Booked, Cap, Pressure, Steps};
pub use config::{CapsConfig, CapsMode, QueueConfig, QueuePlacement, QueuePolicy};
pub use gate::{Admission, Permit, Rejection};
pub use group::Eligible;
pub use metrics::AdmissionMetrics;
pub use prefix::Prefix;

use crate::{
    Error,
    policy::Policy,
    proxy::UpstreamRequest,
    replicas::{ReplicaId, ReplicaSet, Snapshot},
    request::{Endpoint, ParsedRequest},
};

/// Response header with the milliseconds the request waited in the admission queue.
pub const QUEUE_WAIT_HEADER: &str = "x-queue-wait-ms";

impl Admission {
    /// The dispatcher's one call: finds the request's priority (forwarding it in the body when
    /// it came from the header or a default), then waits for a permit on a replica of the
    /// request's model group (those the dispatcher's candidates come from). `home` is the
    /// replica the dispatcher placed it on (placement on arrival). Queue full is a 429, waited
    /// too long a 503, both with `Retry-After`.
    pub async fn admit_request(
        &self,
        replicas: &Arc<ReplicaSet>,
        policy: &dyn Policy,
        parsed: &ParsedRequest,
        upstream: &mut UpstreamRequest,
        home: Option<ReplicaId>,
    ) -> Result<Permit, Error> {
        let path = upstream
            .path_and_query
            .split('?')
            .next()
            .unwrap_or_default();
        let (priority, source) = priority::resolve(
            self.queue_config(),
            parsed.priority,
            &upstream.headers,
            parsed.key_priority,
            path,
        );
        if source == priority::Source::Elsewhere
            && priority != 0
            && parsed.endpoint != Endpoint::Other
        {
            upstream.body = priority::with_priority(&upstream.body, priority);
            upstream.headers.remove(http::header::CONTENT_LENGTH);
        }
        self.sync_snapshot(&replicas.snapshot());
        let mut tokens = parsed.prompt_tokens as u64;
        if self.caps_config().count_max_tokens {
            tokens = tokens.saturating_add(output_budget(&upstream.body));
        }
        let prefer = || home.or_else(|| cached_on(replicas, policy, parsed));
        let chunks = Prefix::of(parsed.route_request().prompt, parsed.prompt_tokens);
        let ask = (tokens, chunks.map(Arc::new));
        self.admit_in(model_group(replicas, parsed), priority, ask, prefer)
            .await
            .map_err(|rejection| match rejection {
                Rejection::Full { retry_after_s } => Error::QueueFull { retry_after_s },
                Rejection::Timeout {
                    waited,
                    retry_after_s,
                } => Error::QueueTimeout {
                    waited_ms: waited.as_millis() as u64,
                    retry_after_s,
                },
            })
    }

    /// Tells the gate which replicas exist and which are healthy.
    pub fn sync_snapshot(&self, snapshot: &Snapshot) {
        if self.enabled() {
            self.sync_replicas(
                snapshot
                    .all()
                    .iter()
                    .map(|r| (r.id(), r.name(), r.is_healthy())),
            );
        }
    }

    /// Starts the task that, every `caps.adaptive.interval_ms`, syncs the replicas and feeds
    /// each cap the replica's latest fresh scrape. It ends when the gate is dropped.
    pub fn spawn_cap_updates(&self, replicas: Arc<ReplicaSet>, interval: Duration) {
        if !self.enabled() {
            return;
        }
        let gate = self.downgrade();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(gate) = gate.upgrade() else {
                    return;
                };
                let snapshot = replicas.snapshot();
                gate.sync_snapshot(&snapshot);
                let now = Instant::now();
                for replica in snapshot.all() {
                    let pressure = replica.load.scraped.fresh(now).map(|s| Pressure {
                        kv_usage: s.load.kv_usage,
                        waiting: s.load.waiting,
                        running: s.load.running,
                        kv_capacity_tokens: s.load.kv_capacity_tokens(),
                        preemptions: s.load.preemptions,
                    });
                    gate.observe(replica.id(), pressure);
                }
            }
        });
    }
}

/// The replica the routing policy would choose for `parsed` if every healthy replica of its
/// group had room, when it chose it for a cached prefix (prefix policies); `None` otherwise.
fn cached_on(
    replicas: &ReplicaSet,
    policy: &dyn Policy,
    parsed: &ParsedRequest,
) -> Option<ReplicaId> {
    let snapshot = replicas.snapshot();
    let views: Vec<_> = snapshot
        .all()
        .iter()
        .filter(|r| r.is_healthy() && r.serving.accepts(parsed.model.as_deref()))
        .map(|r| r.view())
        .collect();
    if views.len() < 2 {
        return None;
    }
    let decision = policy.pick(&parsed.route_request(), &views);
    decision
        .matched_tokens
        .is_some_and(|m| m > 0)
        .then_some(decision.replica)
}

/// The output tokens a request body asks for at most (`max_completion_tokens`, else
/// `max_tokens`; 0 when it names neither or is not JSON).
fn output_budget(body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct Budget {
        max_tokens: Option<u64>,
        max_completion_tokens: Option<u64>,
    }
    serde_json::from_slice::<Budget>(body)
        .ok()
        .and_then(|b| b.max_completion_tokens.or(b.max_tokens))
        .unwrap_or(0)
}

/// The replicas that may serve `parsed`: those serving its model, as the dispatcher's
/// candidates are (`Serving::accepts`), read from the live replica set when checked.
fn model_group(replicas: &Arc<ReplicaSet>, parsed: &ParsedRequest) -> Eligible {
    let Some(model) = parsed.model.clone() else {
        return Eligible::any();
    };
    let replicas = Arc::clone(replicas);
    Eligible::new(Some(model.clone()), move |id| {
        replicas
            .snapshot()
            .get(id)
            .is_some_and(|r| r.serving.accepts(Some(&model)))
    })
}
