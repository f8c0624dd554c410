//! Applies the stream of replica changes: updates the set, starts and stops probes, and tells
//! the policy through its lifecycle hooks.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::mpsc;

use crate::{
    abort::AbortOnDrop,
    health::{HealthConfig, spawn_probe},
    models::{ModelsConfig, spawn_refresh},
    policy::Policy,
    proxy::Proxy,
    replicas::{MembershipEvent, Replica, ReplicaChange, ReplicaId, ReplicaSet},
};

/// Owns the probe tasks; the single writer of the replica set.
pub(crate) struct Membership {
    pub(crate) replicas: Arc<ReplicaSet>,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) proxy: Proxy,
    pub(crate) health: HealthConfig,
    pub(crate) probes: HashMap<ReplicaId, AbortOnDrop>,
    /// Model list refreshing.
    pub(crate) models: ModelsConfig,
    /// Per replica: model refresh and drain watcher tasks.
    pub(crate) tasks: HashMap<ReplicaId, Vec<AbortOnDrop>>,
    /// Where a finished drain sends its `Remove` (weak: the stream still ends with its senders).
    pub(crate) feedback: Option<mpsc::WeakSender<ReplicaChange>>,
}

impl Membership {
    /// Applies one change; a bad spec is logged and ignored.
    pub(crate) fn apply(&mut self, change: ReplicaChange) {
        let events = match self.replicas.apply(change.clone()) {
            Ok(events) => events,
            Err(reason) => {
                tracing::warn!(?change, %reason, "ignored replica change");
                return;
            }
        };
        for event in events {
            match event {
                MembershipEvent::Added(replica) => {
                    tracing::info!(replica = %replica.name(), url = %replica.url(), "replica added");
                    self.policy.on_replica_added(replica.id());
                    if self.health.enabled {
                        let probe = spawn_probe(
                            Arc::clone(&replica),
                            self.proxy.clone(),
                            self.health.clone(),
                        );
                        self.probes.insert(replica.id(), probe);
                    }
                    if self.models.enabled {
                        let refresh = spawn_refresh(
                            Arc::clone(&replica),
                            self.proxy.clone(),
                            self.models.clone(),
                        );
                        self.tasks.entry(replica.id()).or_default().push(refresh);
                    }
                }
                MembershipEvent::Removed(replica) => {
                    tracing::info!(replica = %replica.name(), "replica removed");
                    self.probes.remove(&replica.id());
                    self.tasks.remove(&replica.id());
                    self.policy.on_replica_removed(replica.id());
                }
                MembershipEvent::Draining(replica) => {
                    tracing::info!(replica = %replica.name(), in_flight = replica.load.requests(), "replica draining");
                    let watcher = spawn_drain(replica.clone(), self.feedback.clone());
                    self.tasks.entry(replica.id()).or_default().push(watcher);
                }
                MembershipEvent::Updated(replica) => {
                    tracing::info!(replica = %replica.name(), weight = replica.weight(), "replica updated");
                }
            }
        }
    }

    /// Applies changes until every sender is gone (probes stop when this is dropped).
    pub(crate) async fn run(mut self, mut changes: mpsc::Receiver<ReplicaChange>) {
        while let Some(change) = changes.recv().await {
            self.apply(change);
        }
    }
}

/// Waits until `replica` has nothing in flight, then asks for its removal (unless the drain was
/// cancelled by an upsert meanwhile).
fn spawn_drain(
    replica: Arc<Replica>,
    feedback: Option<mpsc::WeakSender<ReplicaChange>>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        while replica.load.requests() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !replica.serving.is_draining() {
            return;
        }
        tracing::info!(replica = %replica.name(), "replica drained");
        if let Some(sender) = feedback.and_then(|f| f.upgrade()) {
            let _ = sender
                .send(ReplicaChange::Remove(replica.name().to_owned()))
                .await;
        }
    }))
}
