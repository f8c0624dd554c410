//! A spawned task's handle that aborts the task when dropped (probe, scrape, discovery and
//! KV-event loops end with whatever owns them).

use tokio::task::JoinHandle;

/// Aborts the wrapped task when dropped (so removed replicas stop being probed, say).
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
