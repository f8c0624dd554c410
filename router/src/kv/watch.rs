//! Detects a publisher that stays connected but sends nothing (ZMTP 3.0 has no heartbeat):
//! requests the router sent a replica with uncached blocks must bring events within a window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most unanswered requests remembered per replica (the oldest are the ones that count).
const MAX_PROBES: usize = 64;

/// Per replica: when each request still waiting for an event was sent (ms since the index's
/// epoch), oldest first.
#[derive(Debug, Default)]
pub(crate) struct SilenceWatch {
    probes: Mutex<HashMap<u32, VecDeque<u32>>>,
}

impl SilenceWatch {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u32, VecDeque<u32>>) -> R) -> R {
        let mut guard = match self.probes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// A request with uncached blocks was sent to `replica` at `now`.
    pub(crate) fn probe(&self, replica: u32, now: u32) {
        self.with(|m| {
            let q = m.entry(replica).or_default();
            if q.len() < MAX_PROBES {
                q.push_back(now);
            }
        });
    }

    /// An event batch arrived from `replica`: everything sent before is answered.
    pub(crate) fn heard(&self, replica: u32) {
        self.with(|m| {
            m.remove(&replica);
        });
    }

    /// When at least `after` requests to `replica` waited more than `window_ms` at `now`, runs
    /// `mark` (under the lock, so no event slips in between) and forgets them if it returns
    /// true. Returns what `mark` returned (false when not expired; `after` 0 disables).
    pub(crate) fn expired(
        &self,
        replica: u32,
        after: usize,
        window_ms: u64,
        now: u32,
        mark: impl FnOnce() -> bool,
    ) -> bool {
        if after == 0 {
            return false;
        }
        self.with(|m| {
            let Some(q) = m.get(&replica) else {
                return false;
            };
            let old = q
                .iter()
                .take_while(|&&at| u64::from(now.saturating_sub(at)) > window_ms)
                .count();
            if old < after || !mark() {
                return false;
            }
            m.remove(&replica);
            true
        })
    }
}
