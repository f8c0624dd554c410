//! The admission queue through real sockets: replicas held at their cap by a stalled vllm-sim,
//! requests waiting in the router, 429 / 503 with `Retry-After`, disconnects while queued,
//! priority order when a slot frees, priority forwarded to the replica, counters back to zero.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::time::Duration;

use prefix_router_tests::{
    SimConfig, SimServer, completion_body, metric_sum, metric_value, post_json, router_metrics,
    router_yaml, start_router, start_sims, stop, wait_in_flight_zero, wait_until,
};
use router::RouterServer;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(20);

/// `n` stalled replicas (they hold every request until un-stalled) behind a router with `extra`.
async fn stalled(n: usize, extra: &str) -> (Vec<SimServer>, RouterServer) {
    let sims = start_sims(n, SimConfig::zero_delay()).await;
    for sim in &sims {
        sim.faults().set_stall(true);
    }
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    (sims, router)
}

/// Sends a completion with `priority` in the body (none: no field) in the background.
fn send(router: &RouterServer, priority: Option<i64>) -> JoinHandle<reqwest::Response> {
    let url = format!("{}/v1/completions", router.url());
    let mut body = completion_body("hello there", 4, false);
    if let Some(p) = priority {
        body["priority"] = p.into();
    }
    tokio::spawn(async move { post_json(&reqwest::Client::new(), url, &body).await })
}

async fn metric(router: &RouterServer, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&router_metrics(router).await, name, labels)
}

/// Polls until `name{labels}` (summed) equals `want`.
async fn wait_metric(router: &RouterServer, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{name}{labels:?} == {want}");
    wait_until(PATIENCE, &what, || async {
        metric(router, name, labels).await == want
    })
    .await;
}

#[tokio::test]
async fn static_caps_hold_the_rest_in_the_queue_until_slots_free() {
    let (sims, router) = stalled(2, "caps:\n  mode: static\n  max_requests: 2\n").await;
    let requests: Vec<_> = (0..7).map(|_| send(&router, None)).collect();
    wait_metric(&router, "router_queue_length", &[], 3.0).await;
    let text = router_metrics(&router).await;
    for r in ["r0", "r1"] {
        let in_flight = metric_value(&text, "router_in_flight_requests", &[("replica", r)]);
        assert_eq!(in_flight, Some(2.0), "{r} at its cap, not above: {text}");
        let cap = metric_value(
            &text,
            "router_replica_cap",
            &[("replica", r), ("kind", "requests")],
        );
        assert_eq!(cap, Some(2.0));
    }
    for sim in &sims {
        sim.faults().set_stall(false);
    }
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        let waited = response.headers()["x-queue-wait-ms"].to_str().unwrap();
        assert!(waited.parse::<u64>().is_ok(), "{waited}");
    }
    wait_in_flight_zero(&router, &["r0", "r1"]).await;
    wait_metric(&router, "router_queue_length", &[], 0.0).await;
    assert_eq!(metric(&router, "router_admitted_total", &[]).await, 7.0);
    assert_eq!(metric(&router, "router_rejected_total", &[]).await, 0.0);
    stop(sims, router).await;
}

#[tokio::test]
async fn full_queue_is_429_and_a_wait_past_the_bound_is_503_both_with_retry_after() {
    let extra = "caps:\n  mode: static\n  max_requests: 1\nqueue:\n  max_length: 1\n  max_wait_ms: 300\n  retry_after_s: 2\n";
    let (sims, router) = stalled(1, extra).await;
    let held = send(&router, None);
    wait_metric(&router, "router_in_flight_requests", &[], 1.0).await;
    let queued = send(&router, None);
    wait_metric(&router, "router_queue_length", &[], 1.0).await;
    let url = format!("{}/v1/completions", router.url());
    let full = post_json(
        &reqwest::Client::new(),
        &url,
        &completion_body("x", 1, false),
    )
    .await;
    assert_eq!(full.status(), 429);
    assert_eq!(full.headers()["retry-after"], "2");
    let body: serde_json::Value = full.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["code"], 429);
    let timed_out = queued.await.unwrap();
    assert_eq!(timed_out.status(), 503);
    assert_eq!(timed_out.headers()["retry-after"], "2");
    let body: serde_json::Value = timed_out.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admission queue"),
        "{body}"
    );
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_sum(&text, "router_rejected_total", &[("reason", "queue_full")]),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "router_rejected_total",
            &[("reason", "queue_timeout")]
        ),
        1.0
    );
    sims[0].faults().set_stall(false);
    assert_eq!(held.await.unwrap().status(), 200);
    wait_in_flight_zero(&router, &["r0"]).await;
    wait_metric(&router, "router_queue_length", &[], 0.0).await;
    stop(sims, router).await;
}

#[tokio::test]
async fn a_client_that_disconnects_while_queued_leaves_the_queue_at_once() {
    let extra = "caps:\n  mode: static\n  max_requests: 1\nqueue:\n  max_wait_ms: 600000\n";
    let (sims, router) = stalled(1, extra).await;
    let held = send(&router, None);
    wait_metric(&router, "router_in_flight_requests", &[], 1.0).await;
    let gone = send(&router, None);
    wait_metric(&router, "router_queue_length", &[], 1.0).await;
    gone.abort(); // drops the client connection
    wait_metric(&router, "router_queue_length", &[], 0.0).await;
    wait_metric(
        &router,
        "router_rejected_total",
        &[("reason", "disconnected")],
        1.0,
    )
    .await;
    // The slot was never given to the one that left: the next request gets it.
    sims[0].faults().set_stall(false);
    assert_eq!(held.await.unwrap().status(), 200);
    let next = send(&router, None).await.unwrap();
    assert_eq!(next.status(), 200);
    wait_in_flight_zero(&router, &["r0"]).await;
    assert_eq!(metric(&router, "router_admitted_total", &[]).await, 2.0);
    stop(sims, router).await;
}

#[tokio::test]
async fn a_freed_slot_goes_to_the_most_urgent_class_first() {
    let extra = "caps:\n  mode: static\n  max_requests: 1\nqueue:\n  policy: priority\n";
    let mut config = SimConfig::zero_delay();
    config.scheduling_policy = vllm_sim::SchedulingPolicy::Priority;
    let sims = start_sims(1, config).await;
    sims[0].faults().set_stall(true);
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let first = send(&router, Some(0));
    wait_metric(&router, "router_in_flight_requests", &[], 1.0).await;
    let low = send(&router, Some(1));
    wait_metric(&router, "router_queue_length", &[("priority", "1")], 1.0).await;
    let high = send(&router, Some(0));
    wait_metric(&router, "router_queue_length", &[("priority", "0")], 1.0).await;
    first.abort(); // its slot frees: the later but more urgent request takes it
    wait_metric(&router, "router_queue_length", &[("priority", "0")], 0.0).await;
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_sum(&text, "router_queue_length", &[("priority", "1")]),
        1.0,
        "class 1 still waits: {text}"
    );
    assert_eq!(
        metric_sum(&text, "router_admitted_total", &[("priority", "0")]),
        2.0
    );
    assert_eq!(
        metric_sum(&text, "router_admitted_total", &[("priority", "1")]),
        0.0
    );
    sims[0].faults().set_stall(false);
    assert_eq!(high.await.unwrap().status(), 200);
    assert_eq!(low.await.unwrap().status(), 200);
    wait_in_flight_zero(&router, &["r0"]).await;
    wait_metric(&router, "router_queue_length", &[], 0.0).await;
    stop(sims, router).await;
}

#[tokio::test]
async fn priority_from_the_header_or_route_default_reaches_the_replica_in_the_body() {
    // A FCFS replica refuses any non-zero priority, as vLLM does: a 400 naming it proves the
    // router put the header's value into the body it forwarded.
    let extra = "queue:\n  route_priority:\n    /v1/chat/completions: 3\n";
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/completions", router.url());
    let plain = post_json(&client, &url, &completion_body("hi", 2, false)).await;
    assert_eq!(plain.status(), 200, "no priority anywhere: body untouched");
    let with_header = client
        .post(&url)
        .header("x-priority", "1")
        .json(&completion_body("hi", 2, false))
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status(), 400);
    let text = with_header.text().await.unwrap();
    assert!(text.contains("priority 1"), "{text}");
    let chat = serde_json::json!({
        "model": prefix_router_tests::model(),
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    });
    let routed = post_json(
        &client,
        format!("{}/v1/chat/completions", router.url()),
        &chat,
    )
    .await;
    assert_eq!(
        routed.status(),
        400,
        "the route's default priority 3 was forwarded"
    );
    assert!(routed.text().await.unwrap().contains("priority 3"));
    stop(sims, router).await;
}

#[tokio::test]
async fn a_client_keys_default_priority_is_forwarded_in_the_body() {
    let extra = "auth:\n  api_keys:\n    - {key: batch-key, name: batch, priority: 1}\n    - {key: live-key, name: live}\n";
    let completion = |router: &RouterServer, key: &str, header: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/completions", router.url()))
            .bearer_auth(key)
            .json(&completion_body("hi", 2, false));
        if let Some(h) = header {
            request = request.header("x-priority", h);
        }
        request.send()
    };

    // A FCFS replica refuses any non-zero priority, as vLLM does: its 400 names the value the
    // router put into the forwarded body.
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let live = completion(&router, "live-key", None).await.unwrap();
    assert_eq!(live.status(), 200, "a key without priority: body untouched");
    let batch = completion(&router, "batch-key", None).await.unwrap();
    assert_eq!(batch.status(), 400);
    let text = batch.text().await.unwrap();
    assert!(
        text.contains("priority 1"),
        "the key's priority 1 was forwarded: {text}"
    );
    let overridden = completion(&router, "batch-key", Some("0")).await.unwrap();
    assert_eq!(
        overridden.status(),
        200,
        "x-priority wins over the key's default"
    );
    stop(sims, router).await;

    // A replica under `--scheduling-policy priority` takes it.
    let mut config = SimConfig::zero_delay();
    config.scheduling_policy = vllm_sim::SchedulingPolicy::Priority;
    let sims = start_sims(1, config).await;
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let batch = completion(&router, "batch-key", None).await.unwrap();
    assert_eq!(batch.status(), 200, "{}", batch.text().await.unwrap());
    stop(sims, router).await;
}

/// Sends a completion for `model` in the background.
fn send_model(router: &RouterServer, model: &str) -> JoinHandle<reqwest::Response> {
    let url = format!("{}/v1/completions", router.url());
    let mut body = completion_body("hello there", 4, false);
    body["model"] = model.into();
    tokio::spawn(async move { post_json(&reqwest::Client::new(), url, &body).await })
}

#[tokio::test]
async fn a_full_model_group_queues_its_requests_while_another_group_is_served() {
    // r0 serves alpha, r1 serves beta; one request in flight per replica.
    let mut sims = Vec::new();
    for model in ["alpha", "beta"] {
        let config = SimConfig {
            model: model.into(),
            ..SimConfig::zero_delay()
        };
        sims.extend(start_sims(1, config).await);
    }
    let extra = "caps:\n  mode: static\n  max_requests: 1\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/completions", router.url());
    let unknown = serde_json::json!({"model": "gamma", "prompt": "x", "max_tokens": 1});
    wait_until(PATIENCE, "model lists learnt", || async {
        post_json(&client, &url, &unknown).await.status() == 404
    })
    .await;
    let admitted = metric(&router, "router_admitted_total", &[]).await;

    sims[0].faults().set_stall(true);
    let held = send_model(&router, "alpha");
    wait_metric(
        &router,
        "router_in_flight_requests",
        &[("replica", "r0")],
        1.0,
    )
    .await;
    // beta's replica has room, but it cannot serve alpha: the second alpha request waits.
    let queued = send_model(&router, "alpha");
    wait_metric(&router, "router_queue_length", &[], 1.0).await;
    let mut beta_body = completion_body("hello there", 4, false);
    beta_body["model"] = "beta".into();
    let beta = post_json(&client, &url, &beta_body).await;
    assert_eq!(beta.status(), 200, "beta served at once");
    assert_eq!(beta.headers()["x-routed-to"], "r1");
    assert_eq!(beta.headers()["x-queue-wait-ms"], "0");
    assert!(!queued.is_finished(), "alpha still waits for r0");
    assert_eq!(metric(&router, "router_queue_length", &[]).await, 1.0);

    sims[0].faults().set_stall(false);
    for request in [held, queued] {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-routed-to"], "r0");
    }
    wait_in_flight_zero(&router, &["r0", "r1"]).await;
    wait_metric(&router, "router_queue_length", &[], 0.0).await;
    let admitted = metric(&router, "router_admitted_total", &[]).await - admitted;
    assert_eq!(admitted, 3.0, "two alpha, one beta");
    assert_eq!(metric(&router, "router_rejected_total", &[]).await, 0.0);
    stop(sims, router).await;
}

#[tokio::test]
async fn placed_on_arrival_a_later_turn_waits_for_its_conversations_replica() {
    let extra = "caps:\n  mode: static\n  max_requests: 1\nqueue:\n  placement: arrival\n  home_tolerance_ms: 60000\n";
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    for sim in &sims {
        sim.faults().set_stall(true);
    }
    let router = start_router(&router_yaml(&sims, "prefix_aware", extra)).await;
    let url = format!("{}/v1/completions", router.url());
    let send_prompt = |prompt: String| {
        let url = url.clone();
        tokio::spawn(async move {
            post_json(
                &reqwest::Client::new(),
                url,
                &completion_body(&prompt, 4, false),
            )
            .await
        })
    };
    let first_turn = "user: tell me about the history of the printing press. ".repeat(40);
    let first = send_prompt(first_turn.clone());
    wait_metric(&router, "router_in_flight_requests", &[], 1.0).await;
    let text = router_metrics(&router).await;
    let in_flight =
        |text: &str, r: &str| metric_sum(text, "router_in_flight_requests", &[("replica", r)]);
    let home = if in_flight(&text, "r0") == 1.0 {
        "r0"
    } else {
        "r1"
    };
    let other = if home == "r0" { "r1" } else { "r0" };
    let second = send_prompt(format!("{first_turn}assistant: in Mainz. user: and then?"));
    wait_metric(&router, "router_queue_length", &[], 1.0).await;
    let text = router_metrics(&router).await;
    assert_eq!(
        in_flight(&text, other),
        0.0,
        "{other} has room but is not the conversation's replica: {text}"
    );
    first.abort(); // the home's slot frees
    wait_metric(&router, "router_queue_length", &[], 0.0).await;
    wait_metric(
        &router,
        "router_in_flight_requests",
        &[("replica", home)],
        1.0,
    )
    .await;
    for sim in &sims {
        sim.faults().set_stall(false);
    }
    let response = second.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-routed-to"], home);
    wait_in_flight_zero(&router, &["r0", "r1"]).await;
    assert_eq!(metric(&router, "router_queue_length", &[]).await, 0.0);
    stop(sims, router).await;
}
