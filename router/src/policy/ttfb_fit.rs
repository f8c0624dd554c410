//! Online estimate of the prefill constant from observed time to first byte.
//!
//! An exponentially weighted least-squares fit of `ttfb = a + b x tokens`, where `tokens` is the
//! prefill work the request had ahead of it at dispatch (queued tokens plus its own uncached
//! ones). The slope `b` estimates seconds per prefill token; the intercept absorbs network and
//! step overheads. The fit only answers once it has seen enough samples with enough spread.

/// Weighted sums of the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct TtfbFit {
    keep: f64,
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

/// Fewest effective samples before the slope is trusted.
const MIN_SAMPLES: f64 = 20.0;
/// Smallest standard deviation of `tokens` (in tokens) before the slope is trusted.
const MIN_SPREAD_TOKENS: f64 = 64.0;

impl TtfbFit {
    /// A fit whose samples lose half their weight after `half_life` newer samples.
    pub fn new(half_life: f64) -> Self {
        let keep = if half_life > 0.0 {
            0.5f64.powf(1.0 / half_life)
        } else {
            0.0
        };
        Self {
            keep,
            n: 0.0,
            sx: 0.0,
            sy: 0.0,
            sxx: 0.0,
            sxy: 0.0,
        }
    }

    /// Adds one observation; non-finite or negative values are ignored.
    pub fn observe(&mut self, tokens: f64, ttfb_s: f64) {
        if !(tokens.is_finite() && ttfb_s.is_finite() && tokens >= 0.0 && ttfb_s >= 0.0) {
            return;
        }
        let k = self.keep;
        self.n = self.n * k + 1.0;
        self.sx = self.sx * k + tokens;
        self.sy = self.sy * k + ttfb_s;
        self.sxx = self.sxx * k + tokens * tokens;
        self.sxy = self.sxy * k + tokens * ttfb_s;
    }

    /// Seconds per prefill token, once the fit has enough samples and spread; never negative.
    pub fn slope(&self) -> Option<f64> {
        if self.n < MIN_SAMPLES {
            return None;
        }
        let mean_x = self.sx / self.n;
        let var_x = self.sxx / self.n - mean_x * mean_x;
        if var_x < MIN_SPREAD_TOKENS * MIN_SPREAD_TOKENS {
            return None;
        }
        let cov = self.sxy / self.n - mean_x * self.sy / self.n;
        let b = cov / var_x;
        (b.is_finite() && b > 0.0).then_some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_linear_law_with_noise() {
        let mut fit = TtfbFit::new(500.0);
        for i in 0..400u32 {
            let tokens = f64::from((i * 37) % 3000);
            let noise = if i % 2 == 0 { 0.002 } else { -0.002 };
            fit.observe(tokens, 0.008 + 33e-6 * tokens + noise);
        }
        let b = fit.slope().unwrap();
        assert!((b - 33e-6).abs() < 2e-6, "{b}");
    }

    #[test]
    fn needs_samples_and_spread() {
        let mut fit = TtfbFit::new(100.0);
        for _ in 0..10 {
            fit.observe(1000.0, 0.05);
        }
        assert_eq!(fit.slope(), None, "too few samples");
        for _ in 0..100 {
            fit.observe(1000.0, 0.05);
        }
        assert_eq!(fit.slope(), None, "no spread in tokens");
        fit.observe(f64::NAN, 1.0);
        fit.observe(-1.0, 1.0);
        assert_eq!(fit.slope(), None);
    }

    #[test]
    fn adapts_when_the_law_changes() {
        let mut fit = TtfbFit::new(50.0);
        for i in 0..300u32 {
            let t = f64::from(i % 2000);
            fit.observe(t, 33e-6 * t);
        }
        for i in 0..500u32 {
            let t = f64::from((i * 7) % 2000);
            fit.observe(t, 3.3e-6 * t);
        }
        let b = fit.slope().unwrap();
        assert!((b - 3.3e-6).abs() < 0.5e-6, "{b}");
    }
}
