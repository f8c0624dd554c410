//! The replica set: membership, health state and load counters, read through a snapshot.

mod health_state;
mod latency;
mod load;
mod outlier;
mod serving;
mod set;
mod spec;

use std::sync::atomic::{AtomicU32, Ordering};

use http::uri::{Authority, Scheme};

pub use crate::load::{LoadReading, ReplicaLoad};
pub use health_state::HealthState;
pub use load::LoadGuard;
pub use outlier::{OutlierConfig, OutlierDetector};
pub use serving::Serving;
pub use set::{MembershipEvent, ReplicaChange, ReplicaSet, Snapshot};
pub use spec::{ReplicaKvEvents, ReplicaSpec};

use crate::Error;
use crate::metrics::ReplicaMetrics;

/// Stable identifier of a replica for its lifetime in the set (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId(pub u32);

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One upstream replica with its live state.
pub struct Replica {
    id: ReplicaId,
    name: String,
    url: String,
    scheme: Scheme,
    authority: Authority,
    prefix: String,
    weight: AtomicU32,
    /// In-flight counters (and later scraped signals).
    pub load: ReplicaLoad,
    /// Health state machine.
    pub health: HealthState,
    pub(crate) metrics: ReplicaMetrics,
    /// Model groups and draining (admin API, discovery).
    pub serving: Serving,
}

impl Replica {
    /// Builds a replica from a validated spec.
    pub(crate) fn new(
        id: ReplicaId,
        spec: &ReplicaSpec,
        metrics: ReplicaMetrics,
    ) -> Result<Self, Error> {
        let uri = spec.base_uri()?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = uri.authority().cloned().ok_or_else(|| Error::ReplicaUrl {
            url: spec.url.clone(),
            reason: "no host".into(),
        })?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        metrics.healthy.set(1);
        Ok(Self {
            id,
            name: spec.resolved_name(),
            url: spec.url.trim_end_matches('/').to_owned(),
            scheme,
            authority,
            prefix,
            weight: AtomicU32::new(spec.weight.max(1)),
            load: ReplicaLoad::default(),
            health: HealthState::default(),
            metrics,
            serving: Serving::default(),
        })
    }

    /// The replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The replica's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base URL as configured (without trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Current weight (>= 1).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    /// Whether the replica currently receives traffic.
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    /// The upstream URI for `path_and_query` on this replica.
    pub fn uri_for(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        let pq = if self.prefix.is_empty() {
            path_and_query.to_owned()
        } else {
            format!("{}{}", self.prefix, path_and_query)
        };
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// The read-only view handed to policies.
    pub fn view(&self) -> ReplicaView<'_> {
        ReplicaView {
            id: self.id,
            name: &self.name,
            url: &self.url,
            weight: self.weight(),
            load: &self.load,
        }
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("healthy", &self.is_healthy())
            .field("in_flight", &self.load.requests())
            .finish()
    }
}

/// A read-only view of one healthy replica.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaView<'a> {
    /// Stable id.
    pub id: ReplicaId,
    /// Unique name.
    pub name: &'a str,
    /// Base URL.
    pub url: &'a str,
    /// Relative weight (>= 1).
    pub weight: u32,
    /// Live load counters.
    pub load: &'a ReplicaLoad,
}

impl ReplicaView<'_> {
    /// The replica's load at `now`, with its weight.
    pub fn load_at(&self, now: std::time::Instant) -> LoadReading {
        self.load.read(self.weight, now)
    }
}
