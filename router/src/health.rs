//! Active health checks: one task per replica probes `GET <health.path>` on an interval.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{abort::AbortOnDrop, proxy::Proxy, replicas::Replica};

/// Spawns the probe loop of `replica`.
pub(crate) fn spawn_probe(
    replica: Arc<Replica>,
    proxy: Proxy,
    config: HealthConfig,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let interval = Duration::from_millis(config.interval_ms);
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match proxy.get(&replica, &config.path, timeout).await {
                Ok((status, _)) if (200..300).contains(&status) => {
                    replica.note_success(config.healthy_threshold);
                }
                Ok((status, _)) => {
                    replica.note_failure(
                        config.unhealthy_threshold,
                        &format!("probe status {status}"),
                    );
                }
                Err(reason) => {
                    replica.note_failure(config.unhealthy_threshold, &reason.to_string());
                }
            }
        }
    }))
}

/// Active (`GET /health`) and passive (errors on real traffic) health checking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Turn health checking on; when off every replica is always considered healthy.
    pub enabled: bool,
    /// Path probed on each replica.
    pub path: String,
    /// Milliseconds between probes of one replica.
    pub interval_ms: u64,
    /// Milliseconds before a probe counts as failed.
    pub timeout_ms: u64,
    /// Consecutive successful probes that bring an unhealthy replica back.
    pub healthy_threshold: u32,
    /// Consecutive failures (probes, connect errors, 5xx) that mark a replica unhealthy.
    pub unhealthy_threshold: u32,
    /// Count connect errors and 5xx responses on real traffic as failures.
    pub passive: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/health".to_owned(),
            interval_ms: 1000,
            timeout_ms: 500,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            passive: true,
        }
    }
}
