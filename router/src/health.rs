//! Active health checks: one task per replica probes `GET <health.path>` on an interval.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinHandle;

use crate::{config::HealthConfig, proxy::Proxy, replicas::Replica};

/// Aborts the wrapped task when dropped, so removed replicas stop being probed.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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
