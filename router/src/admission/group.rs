//! Which replicas a request may use: its model group. Requests of one group share a waiting
//! line, and only room on the group's replicas admits them.

use std::sync::Arc;

use crate::replicas::ReplicaId;

/// The replicas a request may be sent to: a key naming its group (the requested model; `None`:
/// any replica) and the filter that tells the group's replicas apart.
#[derive(Clone)]
pub struct Eligible {
    key: Option<String>,
    accepts: Arc<dyn Fn(ReplicaId) -> bool + Send + Sync>,
}

impl Eligible {
    /// Every replica (no model named, or no model groups).
    pub fn any() -> Self {
        Self {
            key: None,
            accepts: Arc::new(|_| true),
        }
    }

    /// The group `key`, whose replicas are those `accepts` takes. Requests with the same key
    /// must have the same filter.
    pub fn new(
        key: Option<String>,
        accepts: impl Fn(ReplicaId) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            key,
            accepts: Arc::new(accepts),
        }
    }

    /// The group's key.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Whether replica `id` belongs to the group.
    pub fn accepts(&self, id: ReplicaId) -> bool {
        (self.accepts)(id)
    }
}

impl std::fmt::Debug for Eligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eligible").field("key", &self.key).finish()
    }
}
