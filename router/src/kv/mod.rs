//! The precise prefix index fed by the replicas' own KV-cache events (vLLM's ZMQ publisher).
//!
//! Each replica with event sockets (named in its spec as `kv_events`, or found by
//! `prefix.kv_events.port_offset`) gets a subscriber task that decodes its batches and applies
//! them: `BlockStored` marks the blocks' tokens held on that replica, `BlockRemoved` removes
//! them, `AllBlocksCleared` forgets the replica. Requests are matched block by block on the
//! same token-derived keys, so the router never reproduces vLLM's hash seed or algorithm.
//!
//! A replica is answered by this index only while its stream is live and in sequence; down or
//! stale streams fall back to the approximate tree (`router_kv_events_state`, readiness), and so
//! do silent ones: connected, but requests sent there with uncached blocks brought no event.
//! Token mode (`prefix.tokenizer`) is required: byte-mode keys cannot be matched to blocks.

mod config;
mod index;
mod ingest;
mod metrics;
mod task;
mod watch;

pub use config::{KvEventsConfig, ReplicaKvEvents};
pub use index::{PreciseIndex, StreamState};
pub use ingest::{Applied, Ingestor};
pub use metrics::KvMetrics;
pub(crate) use task::KvManager;

use std::sync::Arc;

use crate::{
    Error,
    abort::AbortOnDrop,
    metrics::RouterMetrics,
    replicas::{ReplicaSet, ReplicaSpec},
};

/// Starts the subscriber manager when the prefix index has a `precise` part (token mode with
/// `prefix.kv_events.enabled`); `None` otherwise. `specs` are the configured replicas.
pub(crate) fn spawn(
    config: &KvEventsConfig,
    specs: &[ReplicaSpec],
    precise: Option<&Arc<PreciseIndex>>,
    replicas: &Arc<ReplicaSet>,
    metrics: &RouterMetrics,
) -> Result<Option<AbortOnDrop>, Error> {
    let Some(precise) = precise else {
        return Ok(None);
    };
    let specs = specs
        .iter()
        .filter_map(|spec| {
            let kv = spec.kv_events.clone()?;
            Some((spec.resolved_name(), kv))
        })
        .collect();
    Ok(Some(
        KvManager {
            config: config.clone(),
            specs,
            replicas: Arc::clone(replicas),
            index: Arc::clone(precise),
            metrics: KvMetrics::new(metrics.registry())?,
        }
        .spawn(),
    ))
}
