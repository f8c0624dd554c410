//! Scraped replica metrics feed decisions: waiting requests other clients put on a replica move
//! traffic away from it; a failing scrape is stale and decisions fall back to the router's own
//! counts; scrape failures feed health, and a replica unhealthy past the grace period is dropped
//! from the prefix tree; a replica's reported KV capacity sizes its part of the tree.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::time::Duration;

use prefix_router_tests::{
    SimConfig, SimServer, completion_body, metric_sum, metric_value, route, router_metrics,
    router_yaml, start_router, start_sims, stop, wait_until,
};

/// Two replicas that run one sequence at a time, so extra requests wait in their queue.
async fn sims() -> Vec<SimServer> {
    start_sims(
        2,
        SimConfig {
            port: 0,
            max_num_seqs: 1,
            ..SimConfig::default()
        },
    )
    .await
}

/// A ~1000-token prompt plus a distinct tail.
fn prompt(tail: &str) -> String {
    format!(
        "{}{tail}",
        "Shared context about the quarterly report. ".repeat(93)
    )
}

/// Sends `n` slow requests straight to `sim` (not through the router) in the background.
fn load_directly(sim: &SimServer, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let url = format!("{}/v1/completions", sim.url());
            tokio::spawn(async move {
                let body = completion_body(&format!("other client {i}"), 60, false);
                let _ = reqwest::Client::new().post(url).json(&body).send().await;
            })
        })
        .collect()
}

/// The replica's own `vllm:num_requests_waiting`.
async fn sim_waiting(sim: &SimServer) -> f64 {
    let text = reqwest::get(format!("{}/metrics", sim.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_sum(&text, "vllm:num_requests_waiting", &[])
}

fn index_of(name: &str) -> usize {
    name.trim_start_matches('r').parse().unwrap()
}

#[tokio::test]
async fn scraped_waiting_requests_move_traffic_away() {
    let sims = sims().await;
    let router = start_router(&router_yaml(&sims, "cost", "scrape:\n  interval_ms: 50\n")).await;
    let client = reqwest::Client::new();
    let owner = route(&client, &router, &prompt("first")).await;
    assert_eq!(
        route(&client, &router, &prompt("second")).await,
        owner,
        "idle: affinity"
    );

    let background = load_directly(&sims[index_of(&owner)], 6);
    wait_until(
        Duration::from_secs(5),
        "router scraped the owner's queue",
        || async {
            let text = router_metrics(&router).await;
            metric_value(
                &text,
                "router_scraped_waiting_requests",
                &[("replica", owner.as_str())],
            )
            .is_some_and(|w| w >= 3.0)
        },
    )
    .await;
    let other = route(&client, &router, &prompt("third")).await;
    assert_ne!(
        other, owner,
        "the owner's external queue costs more than the cache miss"
    );
    let text = router_metrics(&router).await;
    let spread = metric_sum(
        &text,
        "router_policy_decisions_total",
        &[("policy", "cost"), ("reason", "load_spread")],
    );
    assert_eq!(spread, 1.0);

    for task in background {
        task.await.unwrap();
    }
    stop(sims, router).await;
}

#[tokio::test]
async fn failing_scrapes_are_stale_and_decisions_use_own_counts() {
    let sims = sims().await;
    let extra = "scrape:\n  interval_ms: 50\n  path: /no-such-metrics\n";
    let router = start_router(&router_yaml(&sims, "cost", extra)).await;
    let client = reqwest::Client::new();
    let owner = route(&client, &router, &prompt("first")).await;

    let owner_sim = &sims[index_of(&owner)];
    let background = load_directly(owner_sim, 6);
    wait_until(Duration::from_secs(5), "owner queue builds up", || async {
        sim_waiting(owner_sim).await >= 3.0
    })
    .await;
    wait_until(Duration::from_secs(5), "scrape errors counted", || async {
        let text = router_metrics(&router).await;
        metric_sum(
            &text,
            "router_scrape_errors_total",
            &[("replica", owner.as_str()), ("kind", "status")],
        ) >= 2.0
    })
    .await;
    assert_eq!(
        route(&client, &router, &prompt("second")).await,
        owner,
        "no fresh scrape: affinity"
    );
    let text = router_metrics(&router).await;
    let age = metric_value(
        &text,
        "router_scrape_age_seconds",
        &[("replica", owner.as_str())],
    )
    .unwrap();
    assert!(age.is_infinite(), "never scraped successfully: {age}");
    assert!(
        metric_value(
            &text,
            "router_replica_healthy",
            &[("replica", owner.as_str())]
        ) == Some(1.0),
        "a 404 metrics page is not a health failure"
    );

    for task in background {
        task.await.unwrap();
    }
    stop(sims, router).await;
}

#[tokio::test]
async fn scrape_failures_mark_unhealthy_and_the_tree_forgets_after_the_grace_period() {
    let mut sims = start_sims(2, SimConfig::zero_delay()).await;
    // Probes only once at start (60 s interval): the scraper alone notices the replica is gone.
    let extra = "health:\n  interval_ms: 60000\n  unhealthy_threshold: 2\n  healthy_threshold: 1\n\
                 scrape:\n  interval_ms: 50\n  timeout_ms: 200\nprefix:\n  unhealthy_grace_ms: 300\n";
    let router = start_router(&router_yaml(&sims, "cost", extra)).await;
    let client = reqwest::Client::new();
    let owner = route(&client, &router, &prompt("first")).await;
    let units = |text: &str| {
        metric_value(
            text,
            "router_prefix_tree_units",
            &[("replica", owner.as_str())],
        )
    };
    wait_until(Duration::from_secs(5), "tree size reported", || async {
        units(&router_metrics(&router).await).is_some_and(|u| u > 0.0)
    })
    .await;

    sims.remove(index_of(&owner)).shutdown().await;
    wait_until(
        Duration::from_secs(5),
        "scrape failures mark the replica unhealthy",
        || async {
            let text = router_metrics(&router).await;
            metric_value(
                &text,
                "router_replica_healthy",
                &[("replica", owner.as_str())],
            ) == Some(0.0)
        },
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        "the tree drops the replica after the grace period",
        || async { units(&router_metrics(&router).await) == Some(0.0) },
    )
    .await;
    let text = router_metrics(&router).await;
    assert!(
        metric_sum(
            &text,
            "router_scrape_errors_total",
            &[("replica", owner.as_str()), ("kind", "transport")]
        ) >= 2.0
    );

    stop(sims, router).await;
}

/// The capacity a replica reports (`vllm:cache_config_info`) reaches the prefix policy through
/// its lifecycle hook: the admin API's `tree_fill` is measured against it, not the fallback cap.
#[tokio::test]
async fn learnt_capacity_sizes_the_prefix_policys_tree() {
    // 8 blocks of 16 tokens: 128 tokens, 512 bytes of prompt in byte mode (4 bytes a token).
    let sims = start_sims(
        1,
        SimConfig {
            num_gpu_blocks: 8,
            block_size: 16,
            ..SimConfig::zero_delay()
        },
    )
    .await;
    for policy in ["cost", "prefix_aware"] {
        let extra = "scrape:\n  interval_ms: 50\nadmin:\n  token: adm-token\n";
        let router = start_router(&router_yaml(&sims, policy, extra)).await;
        let client = reqwest::Client::new();
        // 300 bytes: about 0.59 of the learnt cap, 0.00008 of the 1M-token fallback.
        let text = format!("{policy} {}", "x".repeat(300 - policy.len() - 1));
        route(&client, &router, &text).await;
        wait_until(
            Duration::from_secs(10),
            "tree fill measured against the learnt capacity",
            || async {
                let body: serde_json::Value = client
                    .get(format!("{}/admin/replicas", router.url()))
                    .bearer_auth("adm-token")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let fill = body["data"][0]["cache"]["tree_fill"].as_f64();
                fill.is_some_and(|f| (0.5..0.7).contains(&f))
            },
        )
        .await;
        router.shutdown().await;
    }
    for sim in sims {
        sim.shutdown().await;
    }
}
