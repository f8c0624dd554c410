//! The time model seen from outside: TTFT grows with uncached tokens and with the queue, decode
//! slows with load, priority order when saturated. Orderings, ratios and the model's floors
//! (a step never takes less than its modelled time) only: never an upper bound on wall time,
//! and events are ordered by polling the engine's gauges, not by sleeping.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use vllm_sim::{SchedulingPolicy, SimConfig};

/// Slow enough that scheduling noise (a few ms) cannot flip the orderings asserted below.
fn slow() -> SimConfig {
    SimConfig {
        prefill_us_per_token: 100.0,
        decode_base_ms: 4.0,
        ..SimConfig::zero_delay()
    }
}

async fn ttft(c: &reqwest::Client, url: &str, prompt_text: String) -> Duration {
    let body = json!({"prompt": prompt_text, "max_tokens": 1, "stream": true});
    let r = stream(c, url, &body).await;
    assert_eq!(r.status, 200);
    r.ttfb
}

#[tokio::test]
async fn ttft_grows_with_uncached_tokens() {
    let s = start(slow()).await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    let hits = |m: &str| sample(m, "vllm:prefix_cache_hits_total", &[]).unwrap();
    let short = ttft(&c, &url, prompt("short", 16)).await;
    // 2000 uncached tokens x 100 us = 200 ms of prefill: a floor however fast the machine.
    let long = ttft(&c, &url, prompt("long", 2000)).await;
    assert!(long >= Duration::from_millis(200), "long {long:?}");
    assert!(short < long, "short {short:?} long {long:?}");
    // The same long prompt again is all cached but its last partial block: 16 ms of prefill.
    let before = hits(&metrics_text(&c, &s).await);
    let cached = ttft(&c, &url, prompt("long", 2000)).await;
    let reused = hits(&metrics_text(&c, &s).await) - before;
    assert!(reused >= 1984.0, "{reused} tokens reused");
    assert!(cached < long, "cached {cached:?} long {long:?}");
}

#[tokio::test]
async fn ttft_grows_with_queue_length() {
    // One sequence at a time: every queued request adds its whole service time.
    let s = start(SimConfig {
        max_num_seqs: 1,
        ..slow()
    })
    .await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    let alone = ttft(&c, &url, prompt("alone", 16)).await;
    let mut blockers = Vec::new();
    for i in 0..3 {
        let (c, url) = (c.clone(), url.clone());
        blockers.push(tokio::spawn(async move {
            post(
                &c,
                &url,
                &json!({"prompt": prompt(&format!("q{i}"), 16), "max_tokens": 100}),
            )
            .await
        }));
    }
    wait_until("the blockers running or queued", || async {
        queue_gauges(&c, &s).await == (1.0, 2.0)
    })
    .await;
    // Behind 2 queued requests of 100 steps x 4 ms: at least one of them runs whole after
    // this one arrives (max_num_seqs 1, first come first served), so 400 ms is a floor.
    let queued = ttft(&c, &url, prompt("queued", 16)).await;
    assert!(queued >= Duration::from_millis(400), "queued {queued:?}");
    assert!(alone < queued, "alone {alone:?} queued {queued:?}");
    for b in blockers {
        assert_eq!(b.await.unwrap().0, 200);
    }
    let m = metrics_text(&c, &s).await;
    let q = sample(
        &m,
        "vllm:request_queue_time_seconds_sum",
        &[("model_name", "vllm-sim")],
    )
    .unwrap();
    // The second blocker alone waited for the whole first one.
    assert!(q >= 0.4, "queue time recorded: {q}");
}

#[tokio::test]
async fn decode_slows_with_running_sequences() {
    let cfg = SimConfig {
        decode_base_ms: 2.0,
        // Exaggerated KV read cost so the effect dominates timer noise.
        decode_ns_per_kv_token: 2000.0,
        ..SimConfig::zero_delay()
    };
    let s = start(cfg).await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    let body = |i: usize| json!({"prompt": prompt(&format!("d{i}"), 500), "max_tokens": 20, "stream": true});
    let alone = stream(&c, &url, &body(0)).await;
    let mut tasks = Vec::new();
    for i in 1..=8 {
        let (c, url, b) = (c.clone(), url.clone(), body(i));
        tasks.push(tokio::spawn(async move { stream(&c, &url, &b).await }));
    }
    let mut crowded = Duration::ZERO;
    for t in tasks {
        let r = t.await.unwrap();
        crowded = crowded.max(r.total - r.ttfb);
    }
    let alone_decode = alone.total - alone.ttfb;
    // Alone: 19 steps x (2 + 1) ms; with 8 running: 19 x (2 + 8) ms.
    assert!(
        crowded > alone_decode * 2,
        "alone {alone_decode:?} crowded {crowded:?}"
    );
}

async fn finish_order(policy: SchedulingPolicy) -> Vec<&'static str> {
    let s = start(SimConfig {
        max_num_seqs: 1,
        scheduling_policy: policy,
        ..slow()
    })
    .await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    let blocker = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(
            async move { post(&c, &url, &json!({"prompt": "block", "max_tokens": 300})).await },
        )
    };
    wait_until("the blocker running", || async {
        queue_gauges(&c, &s).await == (1.0, 0.0)
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let prio = |p: i64| {
        if policy == SchedulingPolicy::Priority {
            p
        } else {
            0
        }
    };
    let mut tasks = Vec::new();
    for (waiting, (name, p)) in [("low", prio(10)), ("high", prio(-5))]
        .into_iter()
        .enumerate()
    {
        let (c2, url, tx) = (c.clone(), url.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let (status, _) = post(
                &c2,
                &url,
                &json!({"prompt": name, "max_tokens": 2, "priority": p}),
            )
            .await;
            assert_eq!(status, 200);
            tx.send(name).unwrap();
        }));
        // Arrival order is the order the engine queued them in, not the order sent.
        let want = (1.0, waiting as f64 + 1.0);
        wait_until("the request queued", || async {
            queue_gauges(&c, &s).await == want
        })
        .await;
    }
    drop(tx);
    assert_eq!(blocker.await.unwrap().0, 200);
    let mut order = Vec::new();
    while let Some(name) = rx.recv().await {
        order.push(name);
    }
    order
}

#[tokio::test]
async fn priority_order_when_saturated() {
    assert_eq!(
        finish_order(SchedulingPolicy::Priority).await,
        vec!["high", "low"]
    );
    // The same arrivals under FCFS finish in arrival order.
    assert_eq!(
        finish_order(SchedulingPolicy::Fcfs).await,
        vec!["low", "high"]
    );
}

#[tokio::test]
async fn speedup_runs_faster() {
    let base = SimConfig {
        prefill_us_per_token: 200.0,
        ..slow()
    };
    let normal = start(base.clone()).await;
    let fast = start(SimConfig {
        speedup: 10.0,
        ..base
    })
    .await;
    let c = client();
    let t_normal = ttft(
        &c,
        &format!("{}/v1/completions", normal.url()),
        prompt("s", 1000),
    )
    .await;
    let t_fast = ttft(
        &c,
        &format!("{}/v1/completions", fast.url()),
        prompt("s", 1000),
    )
    .await;
    assert!(t_fast * 3 < t_normal, "normal {t_normal:?} fast {t_fast:?}");
}
