//! Applies the stream of replica changes: updates the set, starts and stops probes, and tells
//! the policy through its lifecycle hooks.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::mpsc;

use crate::{
    config::HealthConfig,
    health::{AbortOnDrop, spawn_probe},
    policy::Policy,
    proxy::Proxy,
    replicas::{MembershipEvent, ReplicaChange, ReplicaId, ReplicaSet},
};

/// Owns the probe tasks; the single writer of the replica set.
pub(crate) struct Membership {
    pub(crate) replicas: Arc<ReplicaSet>,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) proxy: Proxy,
    pub(crate) health: HealthConfig,
    pub(crate) probes: HashMap<ReplicaId, AbortOnDrop>,
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
                }
                MembershipEvent::Removed(replica) => {
                    tracing::info!(replica = %replica.name(), "replica removed");
                    self.probes.remove(&replica.id());
                    self.policy.on_replica_removed(replica.id());
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
