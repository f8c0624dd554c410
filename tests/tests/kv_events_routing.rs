//! The precise prefix index end to end: vllm-sim replicas publish their KV-cache events over
//! ZMQ, the router subscribes and routes on what the replicas really hold.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::path::Path;
use std::time::Duration;

use prefix_router_tests::{
    RouterServer, SimConfig, SimServer, dead_url, metric_sum, metric_value, routed_to,
    router_metrics, router_readiness, start_router, start_sims, wait_kv_subscribed, wait_until,
    with_kv_events, write_numbered_tokenizer,
};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(30);

/// Zero-delay replicas with a cache of `blocks` 16-token blocks, publishing KV events.
async fn sims_with_events(n: usize, blocks: usize) -> Vec<SimServer> {
    let config = SimConfig {
        num_gpu_blocks: blocks,
        ..SimConfig::zero_delay()
    };
    start_sims(n, with_kv_events(config)).await
}

/// Router YAML in token mode with the precise index on; replica `i` subscribes to
/// `endpoints[i]` (`None`: the spec names no sockets).
fn yaml(sims: &[SimServer], endpoints: &[Option<(String, Option<String>)>], tok: &Path) -> String {
    let mut y = String::from("listen: 127.0.0.1:0\nreplicas:\n");
    for (i, sim) in sims.iter().enumerate() {
        y.push_str(&format!("  - url: {}\n    name: r{i}\n", sim.url()));
        if let Some((ep, replay)) = &endpoints[i] {
            y.push_str(&format!("    kv_events:\n      endpoint: {ep}\n"));
            if let Some(r) = replay {
                y.push_str(&format!("      replay_endpoint: {r}\n"));
            }
        }
    }
    y.push_str("policy:\n  name: prefix_aware\n  seed: 7\n");
    y.push_str("health:\n  interval_ms: 50\n  timeout_ms: 500\n  healthy_threshold: 1\n  unhealthy_threshold: 3\n");
    y.push_str("timeouts:\n  shutdown_drain_ms: 2000\n");
    y.push_str(&format!(
        "prefix:\n  tokenizer: {}\n  block_size: 16\n  kv_events:\n    enabled: true\n",
        tok.display()
    ));
    y
}

fn sockets(sim: &SimServer) -> Option<(String, Option<String>)> {
    let kv = sim.kv_events().expect("events on");
    Some((kv.endpoint.clone(), kv.replay_endpoint.clone()))
}

fn ids(from: u32, n: u32) -> Vec<u32> {
    (from..from + n).collect()
}

fn body(prompt: &[u32]) -> Value {
    json!({"model": SimConfig::zero_delay().model, "prompt": prompt, "max_tokens": 1})
}

async fn state(router: &RouterServer, replica: &str) -> Option<f64> {
    metric_value(
        &router_metrics(router).await,
        "router_kv_events_state",
        &[("replica", replica)],
    )
}

async fn wait_live(router: &RouterServer, replicas: &[&str]) {
    for r in replicas {
        wait_until(PATIENCE, &format!("{r}'s event stream live"), || async {
            state(router, r).await == Some(1.0)
        })
        .await;
    }
}

/// Waits until `router` has applied every batch `sim` (named `name`) has published.
async fn caught_up(router: &RouterServer, sim: &SimServer, name: &str) {
    let next = sim.kv_events().expect("events on").next_seq();
    assert!(next > 0, "the replica published something");
    wait_until(
        PATIENCE,
        &format!("router applied {name}'s batch {}", next - 1),
        || async {
            let text = router_metrics(router).await;
            metric_value(&text, "router_kv_event_seq", &[("replica", name)])
                == Some((next - 1) as f64)
        },
    )
    .await;
}

/// Sends straight to a replica, bypassing the router.
async fn direct(client: &reqwest::Client, sim: &SimServer, prompt: &[u32]) {
    let r = client
        .post(format!("{}/v1/completions", sim.url()))
        .json(&body(prompt))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Sends `prompt` (token ids) through the router; returns the replica it went to.
async fn route_ids(client: &reqwest::Client, router: &RouterServer, prompt: &[u32]) -> String {
    routed_to(client, router, "/v1/completions", &body(prompt)).await
}

/// (sum of matched ratios, `longest_match` decisions) of the router so far.
async fn matched(router: &RouterServer) -> (f64, f64) {
    let text = router_metrics(router).await;
    (
        metric_sum(
            &text,
            "router_prefix_match_ratio_sum",
            &[("policy", "prefix_aware")],
        ),
        metric_sum(
            &text,
            "router_policy_decisions_total",
            &[("policy", "prefix_aware"), ("reason", "longest_match")],
        ),
    )
}

fn index(name: &str) -> usize {
    name.trim_start_matches('r').parse().unwrap()
}

/// Two replicas of `blocks` cache blocks publishing events (with replay), a router subscribed
/// to both, streams live.
struct Cluster {
    _dir: tempfile::TempDir,
    sims: Vec<SimServer>,
    router: RouterServer,
    client: reqwest::Client,
}

async fn cluster(blocks: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_numbered_tokenizer(dir.path(), 0);
    let sims = sims_with_events(2, blocks).await;
    let eps: Vec<_> = sims.iter().map(sockets).collect();
    let router = start_router(&yaml(&sims, &eps, &tok)).await;
    wait_live(&router, &["r0", "r1"]).await;
    wait_kv_subscribed(&sims, 1).await;
    Cluster {
        _dir: dir,
        sims,
        router,
        client: reqwest::Client::new(),
    }
}

#[tokio::test]
async fn the_index_follows_evictions_caused_by_traffic_that_bypassed_the_router() {
    // 24 blocks of cache each: two 20-block prompts sent straight to a replica evict the rest.
    let Cluster {
        _dir,
        sims,
        router,
        client,
    } = cluster(24).await;

    let p = ids(1000, 160);
    let owner = route_ids(&client, &router, &p).await;
    let sim = &sims[index(&owner)];
    caught_up(&router, sim, &owner).await;
    let (sum0, longest0) = matched(&router).await;
    assert_eq!(route_ids(&client, &router, &p).await, owner);
    let (sum1, longest1) = matched(&router).await;
    assert!(
        (sum1 - sum0 - 1.0).abs() < 1e-9,
        "all 10 blocks confirmed: {}",
        sum1 - sum0
    );
    assert_eq!(longest1 - longest0, 1.0);

    // Traffic the router never saw evicts P on the owner.
    direct(&client, sim, &ids(5000, 320)).await;
    direct(&client, sim, &ids(9000, 320)).await;
    caught_up(&router, sim, &owner).await;
    let (sum2, longest2) = matched(&router).await;
    route_ids(&client, &router, &p).await;
    let (sum3, longest3) = matched(&router).await;
    assert_eq!(
        sum3, sum2,
        "the router knows P is gone (the approximate tree would say 1.0)"
    );
    assert_eq!(
        longest3, longest2,
        "no longest-match decision on an evicted prefix"
    );

    router.shutdown().await;
}

#[tokio::test]
async fn a_gap_triggers_a_replay_that_recovers_the_lost_batch() {
    let Cluster {
        _dir,
        sims,
        router,
        client,
    } = cluster(256).await;
    let kv = sims[1].kv_events().unwrap();
    direct(&client, &sims[1], &ids(1, 32)).await;
    caught_up(&router, &sims[1], "r1").await;

    // The batch storing L is lost on the wire; the next one shows the gap.
    kv.set_drop_fraction(1.0);
    let l = ids(20_000, 96);
    direct(&client, &sims[1], &l).await;
    kv.set_drop_fraction(0.0);
    direct(&client, &sims[1], &ids(40_000, 32)).await;
    caught_up(&router, &sims[1], "r1").await;
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_sum(&text, "router_kv_event_gaps_total", &[("replica", "r1")]),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "router_kv_event_replays_total",
            &[("replica", "r1"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(state(&router, "r1").await, Some(1.0), "still precise");
    // The replayed batch taught the router that r1 holds L, which it never routed.
    let (sum0, _) = matched(&router).await;
    assert_eq!(route_ids(&client, &router, &l).await, "r1");
    let (sum1, _) = matched(&router).await;
    assert!(
        (sum1 - sum0 - 1.0).abs() < 1e-9,
        "L fully held: {}",
        sum1 - sum0
    );
    router.shutdown().await;
}

#[tokio::test]
async fn a_restarted_replica_is_cleared() {
    let Cluster {
        _dir,
        sims,
        router,
        client,
    } = cluster(256).await;
    let p = ids(3000, 64);
    let owner = route_ids(&client, &router, &p).await;
    let sim = &sims[index(&owner)];
    caught_up(&router, sim, &owner).await;

    assert!(sim.kv_restart().await, "restart");
    direct(&client, sim, &ids(70_000, 32)).await;
    caught_up(&router, sim, &owner).await;
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_sum(
            &text,
            "router_kv_event_restarts_total",
            &[("replica", owner.as_str())]
        ),
        1.0
    );
    let (sum0, _) = matched(&router).await;
    route_ids(&client, &router, &p).await;
    let (sum1, _) = matched(&router).await;
    assert_eq!(
        sum1, sum0,
        "what the replica held before its restart is forgotten"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn replicas_without_events_fall_back_to_the_approximate_tree_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_numbered_tokenizer(dir.path(), 0);
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    // r0 names a socket where nothing listens; r1 names none.
    let dead = dead_url().replace("http://", "tcp://");
    let router = start_router(&yaml(&sims, &[Some((dead, None)), None], &tok)).await;
    let client = reqwest::Client::new();
    let p = ids(500, 64);
    let owner = route_ids(&client, &router, &p).await;
    let (sum0, _) = matched(&router).await;
    assert_eq!(route_ids(&client, &router, &p).await, owner);
    let (sum1, _) = matched(&router).await;
    assert!(
        (sum1 - sum0 - 1.0).abs() < 1e-9,
        "the tree still routes on what was sent"
    );
    assert_eq!(
        state(&router, "r0").await,
        Some(0.0),
        "r0's stream is down, and says so"
    );
    assert_eq!(state(&router, "r1").await, None, "r1 has no stream at all");
    let ready = router_readiness(&router).await;
    assert_eq!(
        ready["kv_events"],
        json!({"r0": "down", "r1": "down"}),
        "{ready}"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn two_router_instances_agree_on_residency_through_events() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_numbered_tokenizer(dir.path(), 0);
    let sims = sims_with_events(3, 256).await;
    let eps: Vec<_> = sims.iter().map(sockets).collect();
    let a = start_router(&yaml(&sims, &eps, &tok)).await;
    let b = start_router(&yaml(&sims, &eps, &tok)).await;
    wait_live(&a, &["r0", "r1", "r2"]).await;
    wait_live(&b, &["r0", "r1", "r2"]).await;
    wait_kv_subscribed(&sims, 2).await;
    let client = reqwest::Client::new();
    for k in 0..6u32 {
        let p = ids(100_000 + k * 1000, 80);
        let owner = routed_to(&client, &a, "/v1/completions", &body(&p)).await;
        let sim = &sims[index(&owner)];
        caught_up(&b, sim, &owner).await;
        // B never routed p: only the replica's events told it where p lives.
        assert_eq!(
            routed_to(&client, &b, "/v1/completions", &body(&p)).await,
            owner,
            "prompt {k}"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_gap_without_replay_marks_the_replica_stale_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_numbered_tokenizer(dir.path(), 0);
    let sims = sims_with_events(2, 256).await;
    // No replay endpoint in the specs: a gap cannot be filled.
    let eps: Vec<_> = sims
        .iter()
        .map(|s| sockets(s).map(|(ep, _)| (ep, None)))
        .collect();
    let router = start_router(&yaml(&sims, &eps, &tok)).await;
    wait_live(&router, &["r0", "r1"]).await;
    wait_kv_subscribed(&sims, 1).await;
    let client = reqwest::Client::new();
    direct(&client, &sims[0], &ids(1, 32)).await;
    caught_up(&router, &sims[0], "r0").await;
    let kv = sims[0].kv_events().unwrap();
    kv.set_drop_fraction(1.0);
    direct(&client, &sims[0], &ids(600, 32)).await;
    kv.set_drop_fraction(0.0);
    direct(&client, &sims[0], &ids(900, 32)).await;
    caught_up(&router, &sims[0], "r0").await;
    assert_eq!(state(&router, "r0").await, Some(2.0), "stale, and says so");
    assert_eq!(state(&router, "r1").await, Some(1.0));
    // Stale means approximate: what the router sends there is matched on the tree again.
    let mut owner = String::new();
    for k in 0..64u32 {
        // Find a prompt the policy sends to r0 (the stale one).
        let q = ids(50_000 + k * 100, 64);
        if route_ids(&client, &router, &q).await == "r0" {
            owner = "r0".into();
            let (sum0, _) = matched(&router).await;
            assert_eq!(route_ids(&client, &router, &q).await, "r0");
            let (sum1, _) = matched(&router).await;
            assert!((sum1 - sum0 - 1.0).abs() < 1e-9, "the tree answers for r0");
            break;
        }
    }
    assert_eq!(owner, "r0", "some prompt went to r0");
    router.shutdown().await;
}

#[tokio::test]
async fn a_silent_publisher_is_detected_from_requests_without_events_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_numbered_tokenizer(dir.path(), 0);
    let sims = sims_with_events(2, 256).await;
    let eps: Vec<_> = sims.iter().map(sockets).collect();
    // Three requests with uncached blocks unanswered for 200 ms: silent.
    let y = yaml(&sims, &eps, &tok) + "    silent_after: 3\n    silent_window_ms: 200\n";
    let router = start_router(&y).await;
    wait_live(&router, &["r0", "r1"]).await;
    wait_kv_subscribed(&sims, 1).await;
    let client = reqwest::Client::new();

    // r0's publisher stays connected but every batch is lost (replayable later).
    let kv = sims[0].kv_events().unwrap();
    kv.set_drop_fraction(1.0);
    let mut to_r0 = 0;
    for k in 0..200u32 {
        let q = ids(300_000 + k * 1000, 64);
        if route_ids(&client, &router, &q).await == "r0" {
            to_r0 += 1;
            if to_r0 == 3 {
                break;
            }
        }
    }
    assert_eq!(to_r0, 3, "three fresh prompts went to r0");
    wait_until(PATIENCE, "r0 marked silent", || async {
        state(&router, "r0").await == Some(3.0)
    })
    .await;
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_sum(
            &text,
            "router_kv_event_silences_total",
            &[("replica", "r0")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "router_kv_event_silences_total",
            &[("replica", "r1")]
        ),
        0.0,
        "r1's events kept flowing"
    );
    assert_eq!(state(&router, "r1").await, Some(1.0));
    let ready = router_readiness(&router).await;
    assert_eq!(ready["kv_events"]["r0"], "silent", "{ready}");

    // Events flow again: the next batch shows the gap, the replay fills it, r0 is live.
    kv.set_drop_fraction(0.0);
    direct(&client, &sims[0], &ids(900_000, 32)).await;
    caught_up(&router, &sims[0], "r0").await;
    assert_eq!(state(&router, "r0").await, Some(1.0), "precise again");
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_sum(
            &text,
            "router_kv_event_replays_total",
            &[("replica", "r0"), ("outcome", "ok")]
        ),
        1.0,
        "the batches lost while silent were replayed"
    );
    router.shutdown().await;
}
