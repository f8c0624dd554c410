//! The cost policy learns each replica's constants from the time to first byte of streaming
//! requests (and its prefill histogram): a slower replica reads slower by as much, identical
//! replicas with noisy timings read alike, and the faster one is preferred when both are idle.

use futures_util::future::join_all;
use prefix_router_tests::*;

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
    // Same H100 time model, one replica run 10x faster than real time, the other only 2x.
    let mut sims = Vec::new();
    for speedup in [10.0, 2.0] {
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
            let body = completion_body(&long_prompt(i), 2, true);
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
        // About 3000 tokens: 40 ms more prefill on the slow replica than on the fast one.
        let prompt = format!("request {j}: {}", "lorem ipsum dolor sit amet ".repeat(450));
        let body = completion_body(&prompt, 2, true);
        if routed_to(&client, &router, "/v1/completions", &body).await == "r1" {
            to_slow += 1;
        }
    }
    assert!(to_slow <= 1, "{to_slow} of 20 went to the slow replica");
    router.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}

/// The learnt prefill multiplier of each of `names` once every one has enough samples, sending
/// bursts of 8 concurrent long streaming prompts (so that every replica gets work).
async fn learnt_ratios(router: &RouterServer, names: &[&str]) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut i = 0;
    wait_until(
        std::time::Duration::from_secs(120),
        "every replica has a learnt speed",
        || {
            i += 8;
            let first = i;
            let (client, router) = (&client, router);
            async move {
                let bodies: Vec<_> = (first..first + 8)
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
    for k in 0..12 {
        let bodies: Vec<_> = (0..8)
            .map(|j| completion_body(&long_prompt(100_000 + 8 * k + j), 2, true))
            .collect();
        join_all(
            bodies
                .iter()
                .map(|b| routed_to(&client, router, "/v1/completions", b)),
        )
        .await;
    }
    let m = router_metrics(router).await;
    for r in names {
        let sum = metric_value(
            &m,
            "router_time_to_first_byte_seconds_sum",
            &[("replica", r)],
        );
        let n = metric_value(
            &m,
            "router_time_to_first_byte_seconds_count",
            &[("replica", r)],
        );
        let c: Vec<_> = ["step", "prefill_per_token", "queue_per_token"]
            .iter()
            .map(|c| {
                metric_value(
                    &m,
                    "router_replica_cost_constant_seconds",
                    &[("replica", r), ("constant", c)],
                )
            })
            .collect();
        eprintln!("{r}: first byte {sum:?} s over {n:?} requests, learnt constants {c:?}");
    }
    names
        .iter()
        .map(|r| metric_value(&m, "router_replica_ttft_ratio", &[("replica", r)]).unwrap())
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
    // Four identical replicas, every engine step up to 20% off.
    let (sims, router) = noisy_cluster(&[2.5; 4]).await;
    let ratios = learnt_ratios(&router, &["r0", "r1", "r2", "r3"]).await;
    let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
        (lo.min(*r), hi.max(*r))
    });
    assert!(hi / lo < 1.3, "identical replicas read {ratios:?}");
    // Also exported as absolute constants: prefill per uncached token near 33 us / 2.5.
    let m = router_metrics(&router).await;
    for r in ["r0", "r1", "r2", "r3"] {
        let c = metric_value(
            &m,
            "router_replica_cost_constant_seconds",
            &[("replica", r), ("constant", "prefill_per_token")],
        )
        .unwrap();
        assert!(c > 0.0 && c < 33e-6, "{r} prefill constant {c}");
    }
    router.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_replica_two_and_a_half_times_slower_reads_so() {
    let (sims, router) = noisy_cluster(&[2.5, 2.5, 1.0]).await;
    let ratios = learnt_ratios(&router, &["r0", "r1", "r2"]).await;
    let fast = (ratios[0] + ratios[1]) / 2.0;
    let slow = ratios[2] / fast;
    assert!(
        (1.9..=3.1).contains(&slow),
        "the 2.5x slower replica reads {slow:.2}x ({ratios:?})"
    );
    router.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}
