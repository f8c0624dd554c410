//! `cost` keeps a hot prefix on one replica while the cluster is idle and spreads it once the
//! owner is busy; `prefix_aware` (SGLang-style thresholds) piles the same burst on one replica.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::collections::HashMap;

use futures_util::future::join_all;
use prefix_router_tests::{
    RouterServer, SimConfig, model, post_json, routed_header, router_yaml, start_router,
    start_sims, stop,
};
use serde_json::json;

/// A ~2000-token system prompt shared by every request (4 bytes per sim token).
fn system_prompt() -> String {
    "You are the support assistant of a large company; answer precisely. ".repeat(118)
}

/// Sends one streaming completion (prompt = shared system prompt + question `i`), reads it to
/// the end and returns the replica that served it.
async fn ask(client: &reqwest::Client, router: &RouterServer, system: &str, i: usize) -> String {
    let body = json!({
        "model": model(),
        "prompt": format!("{system}\nQuestion {i}: what is {i} squared?"),
        "max_tokens": 20,
        "stream": true,
    });
    let response = post_json(client, format!("{}/v1/completions", router.url()), &body).await;
    assert_eq!(response.status(), 200);
    let replica = routed_header(&response);
    let text = response.text().await.unwrap();
    assert!(text.contains("[DONE]"), "stream completed");
    replica
}

/// Four replicas with the default (H100-calibrated) time model, and a router running `policy`.
async fn setup(policy: &str) -> (Vec<prefix_router_tests::SimServer>, RouterServer) {
    let sims = start_sims(
        4,
        SimConfig {
            port: 0,
            ..SimConfig::default()
        },
    )
    .await;
    let router = start_router(&router_yaml(&sims, policy, "")).await;
    (sims, router)
}

fn counts(replicas: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for r in replicas {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn idle_cluster_keeps_a_hot_prefix_on_one_replica() {
    let (sims, router) = setup("cost").await;
    let client = reqwest::Client::new();
    let system = system_prompt();
    let mut served = Vec::new();
    for i in 0..12 {
        served.push(ask(&client, &router, &system, i).await);
    }
    assert_eq!(
        counts(&served).len(),
        1,
        "one after another, every request reuses the cache: {served:?}"
    );
    stop(sims, router).await;
}

async fn burst(policy: &str) -> Vec<String> {
    let (sims, router) = setup(policy).await;
    let client = reqwest::Client::new();
    let system = system_prompt();
    let served = join_all((0..48).map(|i| ask(&client, &router, &system, i))).await;
    stop(sims, router).await;
    served
}

#[tokio::test]
async fn cost_spreads_a_hot_prefix_when_its_owner_is_busy() {
    let served = burst("cost").await;
    let counts = counts(&served);
    assert_eq!(
        counts.len(),
        4,
        "the burst spreads over every replica: {counts:?}"
    );
    assert!(
        counts.values().all(|&n| (6..=20).contains(&n)),
        "roughly even: {counts:?}"
    );
}

#[tokio::test]
async fn prefix_aware_piles_the_same_burst_on_the_owner() {
    let served = burst("prefix_aware").await;
    let counts = counts(&served);
    assert!(
        counts.values().any(|&n| n >= 40),
        "longest match wins below 64 in flight: {counts:?}"
    );
}
