//! The replica set: applies membership changes and publishes immutable snapshots.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::ReplicaSpec;
use super::{Replica, ReplicaId};
use crate::Error;
use crate::metrics::RouterMetrics;

/// A membership change; static config, DNS or an admin API all feed these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaChange {
    /// Add a replica, or update the one with the same name (a new URL replaces it).
    Upsert(ReplicaSpec),
    /// Remove the replica with this name.
    Remove(String),
    /// Stop sending new requests to the named replica, then remove it once idle.
    Drain(String),
}

/// What applying a change did, so hooks (health tasks, policies) can follow.
#[derive(Debug, Clone)]
pub enum MembershipEvent {
    /// A replica joined.
    Added(Arc<Replica>),
    /// A replica's weight changed in place.
    Updated(Arc<Replica>),
    /// A replica left.
    Removed(Arc<Replica>),
    /// A replica started draining.
    Draining(Arc<Replica>),
}

/// An immutable view of the set, cheap to load on every request.
#[derive(Debug, Default)]
pub struct Snapshot {
    replicas: Vec<Arc<Replica>>,
}

impl Snapshot {
    /// All replicas, healthy or not.
    pub fn all(&self) -> &[Arc<Replica>] {
        &self.replicas
    }

    /// The replica with `id`, if still a member.
    pub fn get(&self, id: ReplicaId) -> Option<&Arc<Replica>> {
        self.replicas.iter().find(|r| r.id() == id)
    }

    /// The replica named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Replica>> {
        self.replicas.iter().find(|r| r.name() == name)
    }

    /// Number of healthy replicas.
    pub fn healthy_count(&self) -> usize {
        self.replicas.iter().filter(|r| r.is_healthy()).count()
    }
}

/// The live replica set: one writer applies changes, readers load snapshots lock-free.
pub struct ReplicaSet {
    current: ArcSwap<Snapshot>,
    next_id: AtomicU32,
    writer: Mutex<()>,
    metrics: RouterMetrics,
}

impl ReplicaSet {
    /// An empty set whose replicas report into `metrics`.
    pub fn new(metrics: RouterMetrics) -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            next_id: AtomicU32::new(0),
            writer: Mutex::new(()),
            metrics,
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Applies one change and returns what happened (empty when nothing changed).
    pub fn apply(&self, change: ReplicaChange) -> Result<Vec<MembershipEvent>, Error> {
        let _writer = self.writer.lock();
        let old = self.current.load_full();
        let mut replicas = old.replicas.clone();
        let mut events = Vec::new();
        match change {
            ReplicaChange::Upsert(spec) => {
                let name = spec.resolved_name();
                if let Some(pos) = replicas.iter().position(|r| r.name() == name) {
                    let existing = &replicas[pos];
                    if existing.url() == spec.url.trim_end_matches('/') {
                        existing.set_weight(spec.weight);
                        existing.serving.set_draining(false);
                        return Ok(vec![MembershipEvent::Updated(existing.clone())]);
                    }
                    let removed = replicas.remove(pos);
                    self.metrics.forget_replica(removed.name());
                    events.push(MembershipEvent::Removed(removed));
                }
                let id = ReplicaId(self.next_id.fetch_add(1, Ordering::Relaxed));
                let replica = Arc::new(Replica::new(id, &spec, self.metrics.for_replica(&name))?);
                replicas.push(replica.clone());
                events.push(MembershipEvent::Added(replica));
            }
            ReplicaChange::Remove(name) => {
                let Some(pos) = replicas.iter().position(|r| r.name() == name) else {
                    return Ok(events);
                };
                let removed = replicas.remove(pos);
                self.metrics.forget_replica(removed.name());
                events.push(MembershipEvent::Removed(removed));
            }
            ReplicaChange::Drain(name) => {
                return Ok(old
                    .by_name(&name)
                    .filter(|r| !r.serving.set_draining(true))
                    .map(|r| MembershipEvent::Draining(Arc::clone(r)))
                    .into_iter()
                    .collect());
            }
        }
        self.current.store(Arc::new(Snapshot { replicas }));
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ReplicaSet {
        ReplicaSet::new(RouterMetrics::new().unwrap())
    }

    #[test]
    fn upsert_adds_updates_and_replaces() {
        let set = set();
        let events = set
            .apply(ReplicaChange::Upsert(ReplicaSpec::new(
                "http://127.0.0.1:9001",
            )))
            .unwrap();
        assert!(matches!(events.as_slice(), [MembershipEvent::Added(_)]));
        let first_id = set.snapshot().all()[0].id();

        let mut heavier = ReplicaSpec::new("http://127.0.0.1:9001/");
        heavier.weight = 3;
        let events = set.apply(ReplicaChange::Upsert(heavier)).unwrap();
        assert!(matches!(events.as_slice(), [MembershipEvent::Updated(_)]));
        assert_eq!(set.snapshot().all()[0].weight(), 3);
        assert_eq!(set.snapshot().all()[0].id(), first_id);

        let mut moved = ReplicaSpec::new("http://127.0.0.1:9002");
        moved.name = Some("127.0.0.1:9001".into());
        let events = set.apply(ReplicaChange::Upsert(moved)).unwrap();
        assert!(matches!(
            events.as_slice(),
            [MembershipEvent::Removed(_), MembershipEvent::Added(_)]
        ));
        let snap = set.snapshot();
        assert_eq!(snap.all().len(), 1);
        assert_ne!(
            snap.all()[0].id(),
            first_id,
            "a replaced replica gets a fresh id"
        );
    }

    #[test]
    fn remove_and_old_snapshots_stay_valid() {
        let set = set();
        set.apply(ReplicaChange::Upsert(ReplicaSpec::new(
            "http://127.0.0.1:9001",
        )))
        .unwrap();
        set.apply(ReplicaChange::Upsert(ReplicaSpec::new(
            "http://127.0.0.1:9002",
        )))
        .unwrap();
        let before = set.snapshot();
        let events = set
            .apply(ReplicaChange::Remove("127.0.0.1:9001".into()))
            .unwrap();
        assert!(matches!(events.as_slice(), [MembershipEvent::Removed(_)]));
        assert_eq!(before.all().len(), 2, "readers keep their snapshot");
        assert_eq!(set.snapshot().all().len(), 1);
        assert!(set.snapshot().by_name("127.0.0.1:9002").is_some());
        assert!(
            set.apply(ReplicaChange::Remove("nope".into()))
                .unwrap()
                .is_empty()
        );
    }
}
