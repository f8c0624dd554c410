//! The cost policy learns that one replica is slower than its peers from the time to first byte
//! of streaming requests, and then prefers the faster one when both are idle.

use prefix_router_tests::*;

/// A distinct prompt of about 2000 simulated tokens (4 bytes each), so prefill time dominates.
fn long_prompt(i: usize) -> String {
    format!("request {i}: {}", "lorem ipsum dolor sit amet ".repeat(300))
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
        let body = completion_body(&long_prompt(1000 + j), 2, true);
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
