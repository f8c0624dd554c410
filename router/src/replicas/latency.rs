//! Latency samples for outlier ejection: a replica's time to first byte, normalised by prompt
//! size, folded into a decayed mean, and the median its peers are compared with.

use std::time::Duration;

/// Uncached prompt tokens one latency sample stands for: a request with more has its time to
/// first byte scaled down in proportion (a long prompt is slow everywhere); a shorter one counts
/// as this many, since its fixed per-request cost dominates.
pub(crate) const SAMPLE_PROMPT_TOKENS: u64 = 256;

/// Seconds to first byte per [`SAMPLE_PROMPT_TOKENS`] uncached prompt tokens.
pub(crate) fn normalised_seconds(ttfb: Duration, prefill_tokens: u64) -> f64 {
    let scale = SAMPLE_PROMPT_TOKENS as f64 / prefill_tokens.max(SAMPLE_PROMPT_TOKENS) as f64;
    ttfb.as_secs_f64() * scale
}

/// Mean of the samples while there are fewer than the window, then an exponentially decayed
/// mean that gives each new sample a weight of one window's share.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct DecayedMean {
    mean: f64,
    samples: u32,
}

impl DecayedMean {
    /// Folds `value` in; `window` (at least 1) is the number of samples the mean remembers.
    pub(crate) fn add(&mut self, value: f64, window: u32) {
        self.samples = self.samples.saturating_add(1);
        let weight = 1.0 / f64::from(self.samples.min(window.max(1)));
        self.mean += (value - self.mean) * weight;
    }

    /// The current mean (0 with no samples).
    pub(crate) fn mean(&self) -> f64 {
        self.mean
    }

    /// Samples folded in since the last reset.
    pub(crate) fn samples(&self) -> u32 {
        self.samples
    }
}

/// Median of `values` (mean of the two middle ones for an even count); `None` when empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_is_plain_then_decays_towards_new_samples() {
        let mut m = DecayedMean::default();
        for v in [1.0, 2.0, 3.0] {
            m.add(v, 4);
        }
        assert!((m.mean() - 2.0).abs() < 1e-12, "{m:?}");
        // Past the window each sample weighs a quarter.
        m.add(3.0, 4);
        m.add(6.0, 4);
        assert!(
            (m.mean() - (2.25 + (6.0 - 2.25) / 4.0)).abs() < 1e-12,
            "{m:?}"
        );
        assert_eq!(m.samples(), 5);
        // A long run of one value converges to it.
        for _ in 0..200 {
            m.add(10.0, 4);
        }
        assert!((m.mean() - 10.0).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn long_prompts_are_scaled_down_and_short_ones_count_as_the_unit() {
        let one_s = Duration::from_secs(1);
        assert_eq!(normalised_seconds(one_s, 10), 1.0);
        assert_eq!(normalised_seconds(one_s, SAMPLE_PROMPT_TOKENS), 1.0);
        assert_eq!(normalised_seconds(one_s, 4 * SAMPLE_PROMPT_TOKENS), 0.25);
    }
}
