//! Injectable coarse time for LRU ordering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Source of coarse, non-decreasing time ticks used to order least-recently-used eviction.
pub trait Clock: Send + Sync {
    /// Current tick; must never go backwards.
    fn now(&self) -> u64;
}

/// Wall-clock ticks in milliseconds since the clock was created (the default).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// Starts a millisecond clock at zero.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Clock moved by hand, for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    tick: AtomicU64,
}

impl ManualClock {
    /// Starts at tick `start`.
    pub fn new(start: u64) -> Self {
        Self {
            tick: AtomicU64::new(start),
        }
    }

    /// Moves time forward by `ticks` and returns the new tick.
    pub fn advance(&self, ticks: u64) -> u64 {
        self.tick.fetch_add(ticks, Ordering::SeqCst) + ticks
    }

    /// Sets the tick; values lower than the current one are ignored (time never goes back).
    pub fn set(&self, tick: u64) {
        self.tick.fetch_max(tick, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.tick.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_only_moves_forward() {
        let c = ManualClock::new(5);
        assert_eq!(c.now(), 5);
        assert_eq!(c.advance(3), 8);
        c.set(2);
        assert_eq!(c.now(), 8);
        c.set(10);
        assert_eq!(c.now(), 10);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let b = c.now();
        assert!(b >= a + 2, "{a} -> {b}");
    }
}
