//! Adaptive caps through real sockets: the request cap follows vllm-sim's scraped waiting queue
//! down and grows back when the pressure is gone; the token budget follows its KV usage (down
//! when the cache fills, up while the router over-counts and holds work back).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::time::Duration;

use prefix_router_tests::{
    SimConfig, completion_body, metric_sum, metric_value, post_json, router_metrics, router_yaml,
    start_router, start_sims, stop, wait_in_flight_zero, wait_until,
};
use router::RouterServer;

const PATIENCE: Duration = Duration::from_secs(30);

async fn cap(router: &RouterServer) -> f64 {
    cap_of(router, "requests").await
}

/// `router_replica_cap{replica="r0",kind}` (-1 when absent).
async fn cap_of(router: &RouterServer, kind: &str) -> f64 {
    let text = router_metrics(router).await;
    metric_value(
        &text,
        "router_replica_cap",
        &[("replica", "r0"), ("kind", kind)],
    )
    .unwrap_or(-1.0)
}

/// The token budget once the KV capacity is learnt.
async fn learnt_budget(router: &RouterServer) -> f64 {
    wait_until(PATIENCE, "KV capacity learnt", || async {
        cap_of(router, "prompt_tokens").await > 0.0
    })
    .await;
    cap_of(router, "prompt_tokens").await
}

/// Adaptive caps stepping every 50 ms on scrapes every 50 ms; `waiting` is the replica queue
/// length (high, low) that shrinks / lets grow the cap.
fn adaptive(waiting: (f64, f64)) -> String {
    format!(
        "caps:\n  mode: adaptive\n  max_requests: 16\n  adaptive:\n    min_requests: 2\n    \
         interval_ms: 50\n    waiting_high: {}\n    waiting_low: {}\n    kv_high: 0.8\n    \
         kv_low: 0.5\nscrape:\n  interval_ms: 50\n",
        waiting.0, waiting.1
    )
}

/// Sends `n` requests of `prompt` and `max_tokens` in the background, streamed if `stream`;
/// each task reads its whole answer and returns the status.
fn flood(
    router: &RouterServer,
    n: usize,
    prompt: &str,
    max_tokens: u32,
    stream: bool,
) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|i| {
            let url = format!("{}/v1/completions", router.url());
            // Distinct prompts: no chunk shared between requests in flight.
            let body = completion_body(&format!("{i:04} {prompt}"), max_tokens, stream);
            tokio::spawn(async move {
                let response = post_json(&reqwest::Client::new(), url, &body).await;
                let status = response.status().as_u16();
                response.bytes().await.unwrap();
                status
            })
        })
        .collect()
}

async fn shrinks_then_recovers(sim: SimConfig, prompt: &str, waiting: (f64, f64)) {
    let sims = start_sims(1, sim).await;
    let router = start_router(&router_yaml(&sims, "round_robin", &adaptive(waiting))).await;
    wait_until(PATIENCE, "cap starts at its maximum", || async {
        cap(&router).await == 16.0
    })
    .await;
    let requests = flood(&router, 16, prompt, 40, false);
    wait_until(PATIENCE, "cap shrinks under pressure", || async {
        cap(&router).await < 16.0
    })
    .await;
    for r in requests {
        assert_eq!(
            r.await.unwrap(),
            200,
            "queued requests are served, not dropped"
        );
    }
    wait_until(
        PATIENCE,
        "cap grows back once the pressure is gone",
        || async { cap(&router).await == 16.0 },
    )
    .await;
    wait_in_flight_zero(&router, &["r0"]).await;
    let text = router_metrics(&router).await;
    assert_eq!(metric_sum(&text, "router_queue_length", &[]), 0.0);
    stop(sims, router).await;
}

#[tokio::test]
async fn cap_follows_the_replica_waiting_queue() {
    // Two sequences at a time: the rest of a burst waits in the replica's queue.
    let mut sim = SimConfig::zero_delay();
    sim.max_num_seqs = 2;
    sim.decode_base_ms = 20.0;
    shrinks_then_recovers(sim, "a short prompt", (1.0, 0.2)).await;
}

#[tokio::test]
async fn kv_pressure_shrinks_the_token_budget() {
    // 40 blocks of 16 tokens: a few long prompts fill the KV cache past kv_high. The waiting
    // thresholds are out of reach, so only KV usage (or a preemption) can move the budget.
    let mut sim = SimConfig::zero_delay();
    sim.num_gpu_blocks = 40;
    sim.max_num_seqs = 64;
    sim.decode_base_ms = 20.0;
    let sims = start_sims(1, sim).await;
    let router = start_router(&router_yaml(
        &sims,
        "round_robin",
        &adaptive((1e6, 1e6 - 1.0)),
    ))
    .await;
    let capacity = learnt_budget(&router).await;
    assert_eq!(capacity, 640.0, "40 blocks of 16 tokens");
    let requests = flood(
        &router,
        16,
        &"many words in a long prompt ".repeat(20),
        40,
        false,
    );
    wait_until(
        PATIENCE,
        "token budget shrinks under KV pressure",
        || async { cap_of(&router, "prompt_tokens").await < capacity },
    )
    .await;
    for r in requests {
        assert_eq!(r.await.unwrap(), 200, "queued requests are served");
    }
    wait_in_flight_zero(&router, &["r0"]).await;
    let text = router_metrics(&router).await;
    assert_eq!(metric_sum(&text, "router_queue_length", &[]), 0.0);
    stop(sims, router).await;
}

#[tokio::test]
async fn an_over_counted_budget_grows_while_the_replica_kv_cache_stays_low() {
    // The router reads 1 byte as a token (vllm-sim: 4) and counts max_tokens whole, so its
    // budget (the 6400-token KV capacity) binds with the replica's cache about a third full.
    let mut sim = SimConfig::zero_delay();
    sim.num_gpu_blocks = 400;
    sim.max_num_seqs = 256;
    sim.decode_base_ms = 20.0;
    let sims = start_sims(1, sim).await;
    let extra = adaptive((1e6, 1e6 - 1.0)).replace("caps:\n", "caps:\n  count_max_tokens: true\n")
        + "prefix:\n  bytes_per_token: 1.0\n";
    // (`cost`: a policy that keys prompts, so the estimate uses `bytes_per_token`.)
    let router = start_router(&router_yaml(&sims, "cost", &extra)).await;
    let capacity = learnt_budget(&router).await;
    assert_eq!(capacity, 6400.0);
    // Streamed: the router sees when each request starts holding KV (its first byte).
    let requests = flood(
        &router,
        64,
        &"a prompt of many words ".repeat(17),
        100,
        true,
    );
    wait_until(
        PATIENCE,
        "token budget grows past the KV capacity",
        || async { cap_of(&router, "prompt_tokens").await > capacity },
    )
    .await;
    let text = router_metrics(&router).await;
    let scale = metric_value(&text, "router_replica_token_scale", &[("replica", "r0")]);
    assert!(scale.is_some_and(|s| s > 1.0 && s <= 2.0), "{scale:?}");
    assert_eq!(
        cap(&router).await,
        16.0,
        "the request cap is not what binds"
    );
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    wait_in_flight_zero(&router, &["r0"]).await;
    stop(sims, router).await;
}
