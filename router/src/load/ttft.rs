//! A replica's speed relative to the configured cost constants, and the time to first byte
//! predicted at those constants: what the learnt speed is fitted on.

/// Multipliers of the configured constants for one replica (1 = as configured; 0 or not finite
/// counts as 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    /// Engine steps and fixed overhead.
    pub overhead: f64,
    /// Prefill of the request's own uncached tokens.
    pub prefill: f64,
    /// Draining the prefill queued ahead.
    pub queue: f64,
}

impl Default for Speed {
    fn default() -> Self {
        Self::uniform(1.0)
    }
}

fn sane(m: f64) -> f64 {
    if m.is_finite() && m > 0.0 { m } else { 1.0 }
}

impl Speed {
    /// The same multiplier `m` for every term.
    pub fn uniform(m: f64) -> Self {
        Self {
            overhead: m,
            prefill: m,
            queue: m,
        }
    }

    /// From `[overhead, prefill, queue]`.
    pub fn from_multipliers(m: [f64; 3]) -> Self {
        Self {
            overhead: m[0],
            prefill: m[1],
            queue: m[2],
        }
    }

    /// As `[overhead, prefill, queue]`, invalid values read as 1.
    pub fn multipliers(&self) -> [f64; 3] {
        [sane(self.overhead), sane(self.prefill), sane(self.queue)]
    }
}

/// The model's time to first byte for a request, term by term at the configured constants:
/// what the replica's [`super::SpeedEstimate`] compares the observed first byte with.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TtftPrediction {
    /// Engine steps until the first token.
    pub overhead_s: f64,
    /// Prefill of the prompt's uncached part.
    pub prefill_s: f64,
    /// Prefill queued ahead of it.
    pub queue_s: f64,
}

impl TtftPrediction {
    /// The predicted time to first byte, seconds.
    pub fn total_s(&self) -> f64 {
        self.overhead_s + self.prefill_s + self.queue_s
    }
}
