//! The cost policy learns each replica's constants from the time to first byte of streaming
//! requests (and its prefill histogram): a slower replica reads slower by as much, identical
//! replicas with noisy timings read alike, and the faster one is preferred when both are idle.

use futures_util::future::join_all;
use prefix_router_tests::{stop, *};
use tokio::sync::Mutex;

/// One test at a time: they measure time on a shared CPU, and each other's load is noise.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A prompt of about 2000 simulated tokens starting with `head`.
fn fixed_prompt(head: &str) -> String {
    format!("{head}: {}", "lorem ipsum dolor sit amet ".repeat(300))
}

/// A distinct prompt of about 150 to 4000 simulated tokens (4 bytes each), so prefill time
/// dominates and varies (the fit tells per-token from per-request time by the variation).
fn long_prompt(i: usize) -> String {
    let words = 20 + (i * 37) % 570;
    format!(
        "request {i}: {}",
        "lorem ipsum dolor sit amet ".repeat(words)
    )
}

#[tokio::test]
async fn cost_learns_a_slow_replica_and_prefers_the_fast_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Same H100 time model, one replica run 2x faster than real time, the other at half speed.
    let mut sims = Vec::new();
    for speedup in [2.0, 0.5] {
        let config = SimConfig {
            speedup,
            ..SimConfig::default()
        };
        sims.extend(start_sims(1, config).await);
    }
    let router = start_router(&router_yaml(&sims, "cost", "")).await;
    let client = reqwest::Client::new();

    // Until both replicas have 16 streaming samples they look alike and share the traffic.
    let mut i = 0;
    wait_until(
        std::time::Duration::from_secs(30),
        "both replicas have a learnt speed",
        || {
            i += 1;
            let body = completion_body(&fixed_prompt(&format!("request {i}")), 2, true);
            let (client, router) = (&client, &router);
            async move {
                routed_to(client, router, "/v1/completions", &body).await;
                let m = router_metrics(router).await;
                ["r0", "r1"].iter().all(|r| {
                    metric_value(&m, "router_replica_ttft_ratio", &[("replica", r)])
                        .is_some_and(|v| v > 0.0)
                })
            }
        },
    )
    .await;
    let m = router_metrics(&router).await;
    let ratio = |r: &str| metric_value(&m, "router_replica_ttft_ratio", &[("replica", r)]).unwrap();
    assert!(
        ratio("r1") > 2.0 * ratio("r0"),
        "slow r1 {} vs fast r0 {}",
        ratio("r1"),
        ratio("r0")
    );

    // Now idle replicas are no longer ties: new prompts go to the faster one.
    let mut to_slow = 0;
    for j in 0..20 {
        let body = completion_body(&fixed_prompt(&format!("fresh {j}")), 2, true);
        if routed_to(&client, &router, "/v1/completions", &body).await == "r1" {
            to_slow += 1;
        }
    }
    // A few may still go there: the fast replica's fuller cache charges misses for eviction.
    assert!(to_slow <= 5, "{to_slow} of 20 went to the slow replica");
    stop(sims, router).await;
}

/// The learnt slowness of each of `names` once every one has enough samples, sending bursts of
/// one long streaming prompt per replica (so that every replica gets work, with little queueing).
async fn learnt_ratios(router: &RouterServer, names: &[&str]) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut i = 0;
    wait_until(
        std::time::Duration::from_secs(120),
        "every replica has a learnt speed",
        || {
            i += names.len();
            let first = i;
            let (client, router) = (&client, router);
            async move {
                let bodies: Vec<_> = (first..first + names.len())
                    .map(|k| completion_body(&long_prompt(k), 2, true))
                    .collect();
                join_all(
                    bodies
                        .iter()
                        .map(|b| routed_to(client, router, "/v1/completions", b)),
                )
                .await;
                let m = router_metrics(router).await;
                names.iter().all(|r| {
                    metric_value(&m, "router_replica_ttft_ratio", &[("replica", r)])
                        .is_some_and(|v| v > 0.0)
                })
            }
        },
    )
    .await;
    // A few more bursts so every fit has more than the minimum.
    let n = names.len();
    for k in 0..24 {
        let bodies: Vec<_> = (0..n)
            .map(|j| completion_body(&long_prompt(100_000 + n * k + j), 2, true))
            .collect();
        join_all(
            bodies
                .iter()
                .map(|b| routed_to(&client, router, "/v1/completions", b)),
        )
        .await;
    }
    let m = router_metrics(router).await;
    names
        .iter()
        .map(|r| {
            metric_value(&m, "router_replica_ttft_ratio", &[("replica", r)])
                .expect("every replica has a learnt speed")
        })
        .collect()
}

async fn noisy_cluster(speedups: &[f64]) -> (Vec<SimServer>, RouterServer) {
    let mut sims = Vec::new();
    for (seed, speedup) in speedups.iter().enumerate() {
        let config = SimConfig {
            speedup: *speedup,
            time_noise: 0.2,
            seed: seed as u64 + 1,
            ..SimConfig::default()
        };
        sims.extend(start_sims(1, config).await);
    }
    let router = start_router(&router_yaml(&sims, "cost", "")).await;
    (sims, router)
}

#[tokio::test]
async fn identical_noisy_replicas_read_alike() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Four identical replicas at real speed, every engine step up to 20% off.
    let (sims, router) = noisy_cluster(&[1.0; 4]).await;
    let ratios = learnt_ratios(&router, &["r0", "r1", "r2", "r3"]).await;
    let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
        (lo.min(*r), hi.max(*r))
    });
    assert!(hi / lo < 1.35, "identical replicas read {ratios:?}");
    // Also exported as absolute constants: prefill per uncached token near 33 us.
    let m = router_metrics(&router).await;
    for r in ["r0", "r1", "r2", "r3"] {
        let c = metric_value(
            &m,
            "router_replica_cost_constant_seconds",
            &[("replica", r), ("constant", "prefill_per_token")],
        )
        .expect("learnt constants are exported");
        assert!(
            c > 0.5 * 33e-6 && c < 2.0 * 33e-6,
            "{r} prefill constant {c}"
        );
    }
    stop(sims, router).await;
}

#[tokio::test]
async fn a_replica_two_and_a_half_times_slower_reads_so() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (sims, router) = noisy_cluster(&[1.0, 1.0, 0.4]).await;
    let ratios = learnt_ratios(&router, &["r0", "r1", "r2"]).await;
    let fast = (ratios[0] + ratios[1]) / 2.0;
    let slow = ratios[2] / fast;
    assert!(
        (1.8..=3.3).contains(&slow),
        "the 2.5x slower replica reads {slow:.2}x ({ratios:?})"
    );
    stop(sims, router).await;
}
