//! One subscriber task per replica, and the manager that starts and stops them as replicas
//! come and go.
//!
//! Sequence handling: the next number is applied; a gap asks the replay socket for what was
//! missed (bounded), and if that fails the replica goes `Stale` (the approximate tree answers
//! for it) until it restarts or clears its cache; a number going backwards is an engine
//! restart: its blocks are forgotten. A lost connection makes it `Down` (approximate) until the
//! stream is back and in sequence. A connected stream whose requests bring no events goes
//! `Silent` (approximate) until its next batch arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kv_events::{SubEvent, Subscriber, decode_batch, replay};

use super::config::{KvEventsConfig, ReplicaKvEvents};
use super::index::{PreciseIndex, StreamState};
use super::ingest::Ingestor;
use super::metrics::KvMetrics;
use crate::abort::AbortOnDrop;
use crate::replicas::{ReplicaId, ReplicaSet};

/// How often the manager looks at the replica set and sweeps expired `Sent` holds.
const MANAGE_EVERY: Duration = Duration::from_millis(200);

/// One replica's stream.
struct Stream {
    replica: ReplicaId,
    name: String,
    sockets: ReplicaKvEvents,
    topic: Vec<u8>,
    max_replay: usize,
    replay_timeout: Duration,
    index: Arc<PreciseIndex>,
    metrics: KvMetrics,
}

/// Where a stream is in its sequence.
struct Cursor {
    ingestor: Ingestor,
    last: Option<u64>,
    stale: bool,
}

impl Stream {
    fn set_state(&self, state: StreamState) {
        self.index.set_state(self.replica, state);
        self.metrics
            .state
            .with_label_values(&[&self.name])
            .set(state as i64);
    }

    fn apply(&self, cur: &mut Cursor, seq: u64, payload: &[u8]) {
        match decode_batch(payload) {
            Ok(batch) => {
                let done = cur.ingestor.apply(&batch);
                if done.cleared > 0 && cur.stale {
                    // A cleared cache is fully known again.
                    cur.stale = false;
                }
                self.metrics
                    .received
                    .with_label_values(&[&self.name])
                    .inc_by(batch.events.len() as u64);
                if done.skipped > 0 {
                    self.metrics
                        .skipped
                        .with_label_values(&[&self.name])
                        .inc_by(done.skipped);
                }
            }
            Err(e) => {
                tracing::warn!(replica = %self.name, seq, error = %e, "undecodable KV event batch")
            }
        }
        cur.last = Some(seq);
    }

    /// Fetches and applies batches `from..until` from the replay socket; true if all came.
    async fn replay_missing(&self, cur: &mut Cursor, from: u64, until: u64) -> bool {
        let outcome = |o: &str| {
            self.metrics
                .replays
                .with_label_values(&[self.name.as_str(), o])
                .inc()
        };
        let Some(ep) = &self.sockets.replay_endpoint else {
            return false;
        };
        let wanted = until.saturating_sub(from);
        if wanted as usize > self.max_replay {
            outcome("failed");
            return false;
        }
        match replay(ep, from, self.max_replay, self.replay_timeout).await {
            Ok(batches) => {
                let mut next = from;
                for (seq, payload) in batches {
                    if seq == next && seq < until {
                        self.apply(cur, seq, &payload);
                        next += 1;
                    }
                }
                if next == until {
                    outcome("ok");
                    true
                } else {
                    outcome("partial");
                    false
                }
            }
            Err(e) => {
                tracing::warn!(replica = %self.name, error = %e, "KV event replay failed");
                outcome("failed");
                false
            }
        }
    }

    async fn on_message(&self, cur: &mut Cursor, seq: u64, payload: &[u8]) {
        // The publisher speaks: whatever was sent there before is answered (not silent).
        self.index.heard(self.replica);
        match cur.last {
            Some(last) if seq == last.wrapping_add(1) => {}
            Some(last) if seq <= last => {
                tracing::info!(replica = %self.name, last, seq, "KV event sequence went back: replica restarted");
                self.metrics.restarts.with_label_values(&[&self.name]).inc();
                cur.ingestor.clear();
                cur.stale = false;
                if seq > 0 && !self.replay_missing(cur, 0, seq).await {
                    cur.stale = true;
                }
            }
            Some(last) => {
                self.metrics.gaps.with_label_values(&[&self.name]).inc();
                if !self.replay_missing(cur, last + 1, seq).await {
                    tracing::warn!(replica = %self.name, last, seq, "KV events lost beyond replay: precise index stale");
                    cur.stale = true;
                }
            }
            // First message ever: catch up on what the replay buffer still holds.
            None if seq > 0 => {
                let _ = self.replay_missing(cur, 0, seq).await;
            }
            None => {}
        }
        self.apply(cur, seq, payload);
        self.set_state(if cur.stale {
            StreamState::Stale
        } else {
            StreamState::Live
        });
        self.metrics
            .blocks
            .with_label_values(&[&self.name])
            .set(cur.ingestor.blocks() as i64);
        self.metrics
            .seq
            .with_label_values(&[&self.name])
            .set(i64::try_from(seq).unwrap_or(i64::MAX));
    }

    async fn run(self) {
        let mut sub = match Subscriber::connect(&self.sockets.endpoint, &self.topic) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(replica = %self.name, error = %e, "bad KV events endpoint");
                self.set_state(StreamState::Down);
                return;
            }
        };
        let mut cur = Cursor {
            ingestor: Ingestor::new(self.replica, self.index.clone()),
            last: None,
            stale: false,
        };
        self.set_state(StreamState::Down);
        while let Some(event) = sub.recv().await {
            match event {
                SubEvent::Connected => {
                    tracing::info!(replica = %self.name, endpoint = %self.sockets.endpoint, "KV events connected");
                    // Live once in sequence; a fresh stream with no history is live at once.
                    if cur.last.is_none() && !cur.stale {
                        self.set_state(StreamState::Live);
                    }
                }
                SubEvent::Disconnected(why) => {
                    if self.index.state(self.replica) != StreamState::Down {
                        tracing::warn!(replica = %self.name, %why, "KV events lost: approximate routing");
                    }
                    self.set_state(StreamState::Down);
                }
                SubEvent::Message(m) => self.on_message(&mut cur, m.seq, &m.payload).await,
            }
        }
    }
}

/// Keeps one subscriber task per replica that has KV-event sockets.
pub(crate) struct KvManager {
    pub(crate) config: KvEventsConfig,
    /// Sockets named in the static replica specs, by replica name.
    pub(crate) specs: HashMap<String, ReplicaKvEvents>,
    pub(crate) replicas: Arc<ReplicaSet>,
    pub(crate) index: Arc<PreciseIndex>,
    pub(crate) metrics: KvMetrics,
}

impl KvManager {
    /// Marks live replicas whose requests brought no events within the window as silent.
    fn watch_silence(&self, tasks: &HashMap<ReplicaId, (String, AbortOnDrop)>) {
        let (after, window) = (self.config.silent_after, self.config.silent_window_ms);
        for (id, (name, _)) in tasks {
            if self.index.check_silent(*id, after, window) {
                tracing::warn!(replica = %name, after, window_ms = window, "requests brought no KV events: publisher silent, approximate routing");
                self.metrics.silences.with_label_values(&[name]).inc();
                self.metrics
                    .state
                    .with_label_values(&[name])
                    .set(self.index.state(*id) as i64);
            }
        }
    }

    /// Starts the manager loop on the current runtime.
    pub(crate) fn spawn(self) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(self.run()))
    }

    async fn run(self) {
        let mut tasks: HashMap<ReplicaId, (String, AbortOnDrop)> = HashMap::new();
        let mut ticker = tokio::time::interval(MANAGE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            ticker.tick().await;
            let snapshot = self.replicas.snapshot();
            tasks.retain(|id, (name, _)| {
                let keep = snapshot.get(*id).is_some();
                if !keep {
                    self.index.set_state(*id, StreamState::Down);
                    self.index.forget(*id);
                    self.metrics.forget(name);
                }
                keep
            });
            for r in snapshot.all() {
                if tasks.contains_key(&r.id()) {
                    continue;
                }
                let Some(sockets) = self.config.endpoints_for(self.specs.get(r.name()), r.url())
                else {
                    continue;
                };
                let stream = Stream {
                    replica: r.id(),
                    name: r.name().to_string(),
                    sockets,
                    topic: self.config.topic.as_bytes().to_vec(),
                    max_replay: self.config.max_replay_batches,
                    replay_timeout: Duration::from_millis(self.config.replay_timeout_ms),
                    index: self.index.clone(),
                    metrics: self.metrics.clone(),
                };
                tasks.insert(
                    r.id(),
                    (
                        r.name().to_string(),
                        AbortOnDrop(tokio::spawn(stream.run())),
                    ),
                );
            }
            self.watch_silence(&tasks);
            ticks += 1;
            if ticks % 5 == 0 {
                self.index.sweep();
            }
        }
    }
}
