//! Online fit of a replica's absolute cost constants (pure arithmetic, no clock, no locks).
//!
//! An observed time to first byte `y` is modelled as `m_o * x_o + m_p * x_p + m_q * x_q`, where
//! the `x` are the cost model's own terms at the configured constants (engine steps and fixed
//! overhead, this prompt's uncached prefill, prefill queued ahead) and the `m` are multipliers
//! learnt per replica: 1 means the configured constant is right, 3 means the replica is 3x
//! slower at that part of the work.
//!
//! Decayed weighted least squares (the last ~[`WINDOW`] samples count) with a ridge prior: each
//! multiplier is pulled towards a shared scale `s`, itself pulled towards 1 (the config), so a
//! term the traffic never excites (no queue while idle) follows the others instead of staying at
//! the config. Each sample's residual is clipped (Huber style) at a few mean absolute residuals,
//! and every multiplier stays within [`MIN_MULTIPLIER`]..=[`MAX_MULTIPLIER`].

/// Number of multipliers: overhead, prefill, queue.
pub(crate) const TERMS: usize = 3;
/// Effective number of recent samples the fit remembers.
pub(crate) const WINDOW: f64 = 256.0;
/// Smallest multiplier the fit may report.
pub(crate) const MIN_MULTIPLIER: f64 = 0.1;
/// Largest multiplier the fit may report.
pub(crate) const MAX_MULTIPLIER: f64 = 10.0;
/// Prior weight (in typical samples) tying each multiplier to the shared scale: prefill and
/// queue drain are the same GPU work, so they part only on clear evidence; the overhead (steps,
/// plus whatever the network and the server add to every request) is nearly free to differ.
const TIE_WEIGHT: [f64; TERMS] = [2.0, 16.0, 16.0];
/// Prior weight (in samples) pulling the shared scale towards the configured constants.
const PRIOR_WEIGHT: f64 = 2.0;
/// Residuals beyond this many mean absolute residuals are clipped.
const CLIP_RESIDUALS: f64 = 3.0;
/// Samples before the residual scale is trusted for clipping.
const CLIP_AFTER: f64 = 8.0;

/// Decayed least-squares state of one replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstantFit {
    xx: [[f64; TERMS]; TERMS],
    xy: [f64; TERMS],
    weight: f64,
    abs_residual: f64,
    samples: u64,
    multipliers: [f64; TERMS],
}

impl Default for ConstantFit {
    fn default() -> Self {
        Self {
            xx: [[0.0; TERMS]; TERMS],
            xy: [0.0; TERMS],
            weight: 0.0,
            abs_residual: 0.0,
            samples: 0,
            multipliers: [1.0; TERMS],
        }
    }
}

impl ConstantFit {
    /// The current multipliers (overhead, prefill, queue); all 1 before any sample.
    pub fn multipliers(&self) -> [f64; TERMS] {
        self.multipliers
    }

    /// Samples recorded since the fit started (not decayed): the confidence of the fit.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// What the fit predicts for terms `x`, seconds.
    pub fn predict(&self, x: &[f64; TERMS]) -> f64 {
        x.iter().zip(self.multipliers).map(|(x, m)| x * m).sum()
    }

    /// Adds one observation `y` seconds of the terms `x` (seconds at the configured constants),
    /// counting as `weight` samples; non-finite, negative or empty observations are ignored.
    pub fn record(&mut self, x: [f64; TERMS], y: f64, weight: f64) {
        let valid = y.is_finite()
            && y >= 0.0
            && weight.is_finite()
            && weight > 0.0
            && x.iter().all(|v| v.is_finite() && *v >= 0.0)
            && x.iter().sum::<f64>() > 0.0;
        if !valid {
            return;
        }
        let predicted = self.predict(&x);
        let mut residual = y - predicted;
        // Never further than the multiplier bounds allow, and after a few samples no further
        // than a few typical residuals: one stalled request must not drag the fit.
        let bound = if self.weight >= CLIP_AFTER {
            (CLIP_RESIDUALS * self.abs_residual).max(0.05 * predicted)
        } else {
            f64::INFINITY
        };
        let total: f64 = x.iter().sum();
        let lo = MIN_MULTIPLIER * total - predicted;
        let hi = MAX_MULTIPLIER * total - predicted;
        residual = residual.clamp((-bound).max(lo), bound.min(hi));
        let y = predicted + residual;
        let keep = 1.0 - (weight / WINDOW).min(1.0);
        self.abs_residual = if self.weight > 0.0 {
            self.abs_residual * keep + residual.abs() * (1.0 - keep)
        } else {
            residual.abs()
        };
        for i in 0..TERMS {
            for j in 0..TERMS {
                self.xx[i][j] = self.xx[i][j] * keep + weight * x[i] * x[j];
            }
            self.xy[i] = self.xy[i] * keep + weight * x[i] * y;
        }
        self.weight = self.weight * keep + weight;
        self.samples = self.samples.saturating_add(weight.ceil() as u64);
        if let Some(m) = self.solve() {
            self.multipliers = m.map(|v| v.clamp(MIN_MULTIPLIER, MAX_MULTIPLIER));
        }
    }

    /// Solves the ridge-regularised normal equations for the multipliers and the shared scale.
    fn solve(&self) -> Option<[f64; TERMS]> {
        let n = self.weight.max(1e-9);
        let typical = (0..TERMS).map(|j| self.xx[j][j] / n).sum::<f64>() / TERMS as f64;
        if typical <= 0.0 {
            return None;
        }
        // Prefill and queue: the same tie, in the units of a typical sample, so a deviation
        // from the shared scale goes to the term that explains the most time, and a term never
        // seen follows the scale. Overhead: a tie in its own (small) units, nearly free to take
        // what every request pays whatever its size.
        let own = self.xx[0][0] / n;
        let tie: [f64; TERMS] = std::array::from_fn(|j| {
            TIE_WEIGHT[j]
                * if j == 0 {
                    own.max(1e-6 * typical)
                } else {
                    typical
                }
        });
        // The scale's pull towards 1 weighs like PRIOR_WEIGHT samples against all of them.
        let prior = tie.iter().sum::<f64>() * PRIOR_WEIGHT / n;
        let mut a = [[0.0; TERMS + 1]; TERMS + 1];
        let mut b = [0.0; TERMS + 1];
        for i in 0..TERMS {
            a[i][..TERMS].copy_from_slice(&self.xx[i]);
            a[i][i] += tie[i];
            a[i][TERMS] = -tie[i];
            a[TERMS][i] = -tie[i];
            b[i] = self.xy[i];
        }
        a[TERMS][TERMS] = tie.iter().sum::<f64>() + prior;
        b[TERMS] = prior;
        let solution = solve_linear(a, b)?;
        Some(std::array::from_fn(|j| solution[j]))
    }
}

/// Gaussian elimination with partial pivoting; `None` when (nearly) singular or not finite.
fn solve_linear<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    for col in 0..N {
        let pivot = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        let size = a[pivot][col].abs();
        if size.is_nan() || size <= 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..N {
            let f = a[row][col] / pivot_row[col];
            for (x, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; N];
    for row in (0..N).rev() {
        let rest: f64 = (row + 1..N).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
#[path = "learn_tests.rs"]
mod tests;
