//! Unit tests of the learnt speed and its pooling across replicas.

use rand::{Rng, SeedableRng, rngs::SmallRng};

use super::*;

const PRIOR: Prior = Prior {
    prefill_s_per_token: 33e-6,
    step_s: 5e-3,
};

fn prediction(rng: &mut SmallRng) -> TtftPrediction {
    TtftPrediction {
        overhead_s: rng.random_range(0.0075..0.015),
        prefill_s: 33e-6 * rng.random_range(0.0..2000.0),
        queue_s: if rng.random_bool(0.3) {
            33e-6 * rng.random_range(0.0..6000.0)
        } else {
            0.0
        },
    }
}

/// Feeds `n` requests to `s`, each `slowness` times its prediction, +-`noise` uniform.
fn feed(s: &SpeedEstimate, rng: &mut SmallRng, n: usize, slowness: f64, noise: f64, now: Instant) {
    for _ in 0..n {
        let p = prediction(rng);
        let observed = slowness * p.total_s() * (1.0 + rng.random_range(-noise..=noise));
        s.record(&p, observed, now);
    }
}

fn learnt(replicas: &[SpeedEstimate], now: Instant) -> Vec<Option<LearntSpeed>> {
    replicas.iter().map(|r| r.learnt(now, PRIOR)).collect()
}

#[test]
fn identical_noisy_replicas_read_identical_and_a_slow_one_reads_its_slowness() {
    let now = Instant::now();
    let mut rng = SmallRng::seed_from_u64(11);
    let replicas: Vec<SpeedEstimate> = (0..4).map(|_| SpeedEstimate::default()).collect();
    // All four replicas are 3x slower than configured; the last one another 2.5x.
    for (i, r) in replicas.iter().enumerate() {
        let slowness = if i == 3 { 7.5 } else { 3.0 };
        feed(r, &mut rng, 500, slowness, 0.3, now);
    }
    let speeds = pooled_speeds(&learnt(&replicas, now));
    let prefill: Vec<f64> = speeds.iter().map(|s| s.prefill).collect();
    for p in &prefill[..3] {
        assert!((p / 3.0 - 1.0).abs() < 0.1, "{prefill:?}");
        assert!((p / prefill[0] - 1.0).abs() < 0.1, "{prefill:?}");
    }
    let ratio = prefill[3] / prefill[0];
    assert!(
        (ratio / 2.5 - 1.0).abs() < 0.1,
        "slow replica reads {ratio}x"
    );
    let r = replicas[0].ratio(now).unwrap();
    assert!((r / 3.0 - 1.0).abs() < 0.1, "ratio {r}");
    let c = replicas[0].constants(now).unwrap();
    assert!((c[1] / (3.0 * 33e-6) - 1.0).abs() < 0.1, "{c:?}");
}

#[test]
fn few_samples_read_like_the_peers() {
    let now = Instant::now();
    let mut rng = SmallRng::seed_from_u64(12);
    let replicas: Vec<SpeedEstimate> = (0..3).map(|_| SpeedEstimate::default()).collect();
    feed(&replicas[0], &mut rng, 200, 1.0, 0.1, now);
    feed(&replicas[1], &mut rng, 200, 1.0, 0.1, now);
    // Two unlucky samples at 3x: the replica is not declared slow on that evidence.
    feed(&replicas[2], &mut rng, 2, 3.0, 0.0, now);
    let speeds = pooled_speeds(&learnt(&replicas, now));
    assert!(speeds[2].prefill < 1.5, "{speeds:?}");
    assert_eq!(replicas[2].ratio(now), None, "too few samples to show");
    // No fit anywhere: the configured constants.
    assert_eq!(pooled_speeds(&[None, None]), vec![Speed::default(); 2]);
    // A replica with no fit reads as the median of the others.
    let speeds = pooled_speeds(&[learnt(&replicas, now)[0], None]);
    assert_eq!(speeds[0], speeds[1]);
}

#[test]
fn an_unfed_fit_is_forgotten_and_learning_starts_over() {
    let t = Instant::now();
    let mut rng = SmallRng::seed_from_u64(13);
    let s = SpeedEstimate::default();
    feed(&s, &mut rng, 50, 4.0, 0.0, t);
    assert!(s.ratio(t + FORGET_AFTER / 2).unwrap() > 3.0);
    let later = t + FORGET_AFTER;
    assert_eq!(s.ratio(later), None, "no sample for FORGET_AFTER");
    assert_eq!(s.learnt(later, PRIOR), None);
    feed(&s, &mut rng, 50, 1.0, 0.0, later);
    let r = s.ratio(later).unwrap();
    assert!((r - 1.0).abs() < 0.05, "the old 4x is gone: {r}");
    s.reset();
    assert_eq!(s.learnt(later, PRIOR), None);
}

#[test]
fn scraped_prefill_histograms_teach_the_prefill_constant() {
    let now = Instant::now();
    let s = SpeedEstimate::default();
    let sample = PrefillSample {
        requests: 20.0,
        mean_prefill_s: 3.0 * (PRIOR.step_s + 1000.0 * PRIOR.prefill_s_per_token),
        mean_uncached_tokens: 1000.0,
    };
    s.record_scrape(&sample, now);
    assert_eq!(s.learnt(now, PRIOR), None, "no prior known yet: ignored");
    for _ in 0..40 {
        s.record_scrape(&sample, now);
    }
    let l = s.learnt(now, PRIOR).unwrap();
    assert!((l.speed.prefill / 3.0 - 1.0).abs() < 0.1, "{l:?}");
    s.record_scrape(
        &PrefillSample {
            requests: 0.0,
            ..sample
        },
        now,
    );
    assert_eq!(s.learnt(now, PRIOR).unwrap().samples, l.samples);
}

#[test]
fn a_queue_that_drains_faster_than_modelled_does_not_make_a_replica_read_fast() {
    let now = Instant::now();
    let mut rng = SmallRng::seed_from_u64(14);
    let replicas: Vec<SpeedEstimate> = (0..4).map(|_| SpeedEstimate::default()).collect();
    for r in &replicas {
        feed(r, &mut rng, 200, 3.0, 0.2, now);
    }
    // Overload on the last replica only: the router piled a long queue there, which the
    // engine drained in big batches, far faster than the queue term assumes. Its fit reads
    // it as fast; that must not make it look faster than its identical peers.
    for _ in 0..400 {
        let p = TtftPrediction {
            overhead_s: 0.01,
            prefill_s: 33e-6 * rng.random_range(0.0..2000.0),
            queue_s: 33e-6 * rng.random_range(40_000.0..120_000.0),
        };
        let observed = 3.0 * (p.overhead_s + p.prefill_s) + 0.3 * p.queue_s;
        replicas[3].record(&p, observed, now);
    }
    let own = replicas[3].learnt(now, PRIOR).unwrap().speed;
    assert!(
        own.queue < 1.5,
        "its own fit reads the queue as fast: {own:?}"
    );
    let speeds = pooled_speeds(&learnt(&replicas, now));
    assert!(
        speeds.iter().all(|s| *s == speeds[0]),
        "identical replicas read alike: {speeds:?}"
    );
    assert!((speeds[0].prefill / 3.0 - 1.0).abs() < 0.15, "{speeds:?}");
}
