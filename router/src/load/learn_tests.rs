//! Unit tests of the online constant fit.

use rand::{Rng, SeedableRng, rngs::SmallRng};

use super::*;

/// Terms of a random request: 5-15 ms of steps, 0-2000 uncached tokens, 0-8000 queued tokens
/// (at 33 us per token), the queue empty half of the time.
fn terms(rng: &mut SmallRng) -> [f64; TERMS] {
    let queued = if rng.random_bool(0.5) {
        rng.random_range(0.0..8000.0)
    } else {
        0.0
    };
    [
        rng.random_range(0.005..0.015),
        33e-6 * rng.random_range(0.0..2000.0),
        33e-6 * queued,
    ]
}

/// Observation of `x` on a replica with true multipliers `truth`, times uniform noise +-`noise`.
fn observe(rng: &mut SmallRng, truth: [f64; TERMS], x: &[f64; TERMS], noise: f64) -> f64 {
    let y: f64 = x.iter().zip(truth).map(|(x, m)| x * m).sum();
    y * (1.0 + rng.random_range(-noise..=noise))
}

fn fit(truth: [f64; TERMS], samples: usize, noise: f64, seed: u64) -> ConstantFit {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut f = ConstantFit::default();
    for _ in 0..samples {
        let x = terms(&mut rng);
        let y = observe(&mut rng, truth, &x, noise);
        f.record(x, y, 1.0);
    }
    f
}

fn close(got: [f64; TERMS], want: [f64; TERMS], tolerance: f64) -> bool {
    got.iter()
        .zip(want)
        .all(|(g, w)| (g / w - 1.0).abs() <= tolerance)
}

#[test]
fn constants_three_times_off_are_learnt() {
    let f = fit([3.0; TERMS], 400, 0.2, 1);
    let m = f.multipliers();
    assert!(close([m[1], m[2], 3.0], [3.0; TERMS], 0.1), "{f:?}");
    // The overhead is a small, nearly free intercept: noisier.
    assert!((m[0] / 3.0 - 1.0).abs() < 0.35, "{f:?}");
}

#[test]
fn terms_are_learnt_separately() {
    // The terms are tied to a shared scale, so they part, less than fully, on clear evidence.
    let truth = [1.0, 2.5, 1.5];
    let m = fit(truth, 400, 0.05, 2).multipliers();
    assert!(m[1] > m[2] + 0.3 && m[1] > m[0], "{m:?}");
    assert!((m[2] / 1.5 - 1.0).abs() < 0.15, "{m:?}");
}

#[test]
fn few_samples_stay_near_the_prior_and_confidence_grows() {
    let one = fit([3.0; TERMS], 1, 0.0, 3);
    let m = one.multipliers();
    assert!(m[1..].iter().all(|m| *m > 1.0 && *m < 2.9), "{m:?}");
    assert_eq!(one.samples(), 1);
    let many = fit([3.0; TERMS], 200, 0.0, 3);
    assert!(many.multipliers()[1] > m[1]);
    assert_eq!(many.samples(), 200);
}

#[test]
fn a_term_never_excited_follows_the_others() {
    let mut rng = SmallRng::seed_from_u64(4);
    let mut f = ConstantFit::default();
    for _ in 0..300 {
        let mut x = terms(&mut rng);
        x[2] = 0.0;
        let y = observe(&mut rng, [3.0; TERMS], &x, 0.1);
        f.record(x, y, 1.0);
    }
    let m = f.multipliers();
    assert!((m[2] / 3.0 - 1.0).abs() < 0.15, "queue multiplier {m:?}");
}

#[test]
fn outliers_are_clipped() {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut f = ConstantFit::default();
    for i in 0..600 {
        let x = terms(&mut rng);
        let mut y = observe(&mut rng, [2.0; TERMS], &x, 0.1);
        if i % 10 == 9 {
            y *= 20.0; // a stall, a GC pause, a network hiccup
        }
        f.record(x, y, 1.0);
    }
    // The small overhead term is the noisiest; prefill and queue drain are what matter.
    let m = f.multipliers();
    assert!(close([m[1], m[2], 2.0], [2.0; TERMS], 0.15), "{f:?}");
    // Clipped stalls still lean one way; the intercept-like overhead term takes that.
    assert!(m[0] > 1.0 && m[0] < 6.0, "{f:?}");
}

#[test]
fn multipliers_are_bounded_and_garbage_ignored() {
    let f = fit([100.0; TERMS], 200, 0.0, 6);
    assert!(f.multipliers().iter().all(|m| *m <= MAX_MULTIPLIER));
    let f = fit([0.001; TERMS], 200, 0.0, 6);
    assert!(f.multipliers().iter().all(|m| *m >= MIN_MULTIPLIER));
    let mut g = ConstantFit::default();
    g.record([0.01, 0.0, 0.0], f64::NAN, 1.0);
    g.record([0.01, f64::INFINITY, 0.0], 0.1, 1.0);
    g.record([0.0; TERMS], 0.1, 1.0);
    g.record([0.01, 0.0, 0.0], 0.1, 0.0);
    g.record([0.01, -1.0, 0.0], 0.1, 1.0);
    assert_eq!(g, ConstantFit::default());
}

#[test]
fn a_replica_that_slows_down_is_followed() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut f = ConstantFit::default();
    for _ in 0..300 {
        let x = terms(&mut rng);
        f.record(x, observe(&mut rng, [1.0; TERMS], &x, 0.1), 1.0);
    }
    assert!(close(f.multipliers(), [1.0; TERMS], 0.1), "{f:?}");
    for _ in 0..1200 {
        let x = terms(&mut rng);
        f.record(x, observe(&mut rng, [3.0; TERMS], &x, 0.1), 1.0);
    }
    assert!(close(f.multipliers(), [3.0; TERMS], 0.15), "{f:?}");
}
