//! Faults on one replica (5xx share, stall before headers, connection closed before headers,
//! cut or silent streams, refused connections, all down, coming back, a 10x slower replica):
//! every request gets exactly one clear outcome, and load counters return to zero.

use std::time::Duration;

use prefix_router_tests::{
    RouterServer, SimConfig, completion_body, metric_sum, metric_value, router_metrics,
    router_yaml, start_router, start_sims, stop, wait_in_flight_zero, wait_until,
};

const NAMES: [&str; 4] = ["r0", "r1", "r2", "r3"];

/// What the client saw for one request.
#[derive(Debug)]
struct Outcome {
    status: u16,
    routed_to: Option<String>,
    body: String,
}

/// Sends one completion request and reads the whole answer (a body error is a failed test).
async fn send(
    client: &reqwest::Client,
    router: &RouterServer,
    prompt: &str,
    stream: bool,
) -> Outcome {
    let response = client
        .post(format!("{}/v1/completions", router.url()))
        .json(&completion_body(prompt, 4, stream))
        .send()
        .await
        .expect("the router answers");
    let status = response.status().as_u16();
    let routed_to = response
        .headers()
        .get("x-routed-to")
        .map(|v| v.to_str().expect("text header").to_owned());
    let body = response
        .text()
        .await
        .expect("the body ends cleanly, never with a reset");
    Outcome {
        status,
        routed_to,
        body,
    }
}

/// Sends `n` requests with distinct prompts, 8 at a time.
async fn send_many(router: &RouterServer, n: usize, stream: bool) -> Vec<Outcome> {
    use futures_util::StreamExt;
    let client = reqwest::Client::new();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                send(
                    &client,
                    router,
                    &format!("request {i} of a fault test"),
                    stream,
                )
                .await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Router metrics agree with the client: `n` requests counted, all with `status`.
async fn assert_counted(router: &RouterServer, n: usize, status: &str) {
    let text = router_metrics(router).await;
    let all = metric_sum(&text, "router_requests_total", &[]);
    let with_status = metric_sum(&text, "router_requests_total", &[("status", status)]);
    assert_eq!(all, n as f64, "one outcome per request: {text}");
    assert_eq!(with_status, n as f64, "{text}");
}

fn errors_of(text: &str, replica: &str, kind: &str) -> f64 {
    metric_value(
        text,
        "router_upstream_errors_total",
        &[("replica", replica), ("kind", kind)],
    )
    .unwrap_or(0.0)
}

/// Four zero-delay replicas behind a round-robin router with `extra` YAML.
async fn fleet(extra: &str) -> (Vec<vllm_sim::SimServer>, RouterServer) {
    let sims = start_sims(4, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    (sims, router)
}

/// Every streamed request got 200 and a complete stream ending in `[DONE]`, and the router
/// counted each of them once as a 200.
async fn assert_streams_completed(router: &RouterServer, outcomes: &[Outcome]) {
    for o in outcomes {
        assert_eq!(o.status, 200, "{o:?}");
        assert!(o.body.ends_with("data: [DONE]\n\n"), "{o:?}");
    }
    assert_counted(router, outcomes.len(), "200").await;
}

#[tokio::test]
async fn replica_500s_and_503s_are_retried_on_another_replica() {
    // Passive health off so the faulty replica keeps getting first attempts.
    let extra = "health:\n  interval_ms: 50\n  passive: false\noutlier:\n  enabled: false\n";
    for (status, stream) in [(503, true), (500, false)] {
        let (sims, router) = fleet(extra).await;
        sims[0].faults().set_fail(1.0, status);
        let outcomes = send_many(&router, 24, stream).await;
        for o in &outcomes {
            assert_eq!(o.status, 200, "{o:?}");
            assert_ne!(o.routed_to.as_deref(), Some("r0"), "{o:?}");
        }
        assert_counted(&router, 24, "200").await;
        let text = router_metrics(&router).await;
        assert!(errors_of(&text, "r0", "status_5xx") >= 1.0, "{text}");
        assert!(
            metric_value(&text, "router_retries_total", &[("replica", "r0")]).unwrap_or(0.0) >= 1.0,
            "{text}"
        );
        wait_in_flight_zero(&router, &NAMES).await;
        stop(sims, router).await;
    }
}

#[tokio::test]
async fn the_last_attempts_5xx_is_the_answer_without_the_replicas_body() {
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    for sim in &sims {
        sim.faults().set_fail(1.0, 503);
    }
    let client = reqwest::Client::new();
    let o = send(&client, &router, "everyone fails", false).await;
    assert_eq!(o.status, 503, "{o:?}");
    let body: serde_json::Value = serde_json::from_str(&o.body).expect("JSON error");
    assert_eq!(body["error"]["type"], "upstream_error", "{body}");
    assert!(
        !o.body.contains("fault injection"),
        "the replica's own error text is not passed on: {}",
        o.body
    );
    let text = router_metrics(&router).await;
    let failures: f64 = ["r0", "r1"]
        .iter()
        .map(|r| errors_of(&text, r, "status_5xx"))
        .sum();
    assert_eq!(failures, 2.0, "both replicas tried once: {text}");
    assert_counted(&router, 1, "503").await;
    wait_in_flight_zero(&router, &["r0", "r1"]).await;
    stop(sims, router).await;
}

#[tokio::test]
async fn a_replica_stalled_before_headers_costs_one_first_byte_timeout() {
    let extra = "timeouts:\n  first_byte_ms: 300\n  stream_first_byte_ms: 300\n  \
                 shutdown_drain_ms: 2000\nhealth:\n  interval_ms: 50\n  passive: false\n\
                 outlier:\n  enabled: false\n";
    for stream in [true, false] {
        let (sims, router) = fleet(extra).await;
        sims[0].faults().set_stall(true);
        let outcomes = send_many(&router, 12, stream).await;
        for o in &outcomes {
            assert_eq!(o.status, 200, "{o:?}");
        }
        assert_counted(&router, 12, "200").await;
        let text = router_metrics(&router).await;
        assert!(
            errors_of(&text, "r0", "first_byte_timeout") >= 1.0,
            "{text}"
        );
        wait_in_flight_zero(&router, &NAMES).await;
        sims[0].faults().set_stall(false);
        stop(sims, router).await;
    }
}

#[tokio::test]
async fn a_share_stalled_for_a_while_before_headers_is_re_sent() {
    let extra = "timeouts:\n  stream_first_byte_ms: 200\n  shutdown_drain_ms: 2000\n";
    let (sims, router) = fleet(extra).await;
    sims[0]
        .faults()
        .set_stall_fraction(0.5, Duration::from_secs(30));
    let outcomes = send_many(&router, 24, true).await;
    assert_streams_completed(&router, &outcomes).await;
    wait_in_flight_zero(&router, &NAMES).await;
    stop(sims, router).await;
}

#[tokio::test]
async fn connections_closed_before_headers_are_retried() {
    let extra = "health:\n  interval_ms: 50\n  passive: false\noutlier:\n  enabled: false\n";
    let (sims, router) = fleet(extra).await;
    sims[0].faults().set_close_fraction(1.0);
    let outcomes = send_many(&router, 16, true).await;
    for o in &outcomes {
        assert_eq!(o.status, 200, "{o:?}");
    }
    assert_counted(&router, 16, "200").await;
    let text = router_metrics(&router).await;
    assert!(errors_of(&text, "r0", "protocol") >= 1.0, "{text}");
    wait_in_flight_zero(&router, &NAMES).await;
    stop(sims, router).await;
}

/// Asserts an SSE body ends with one error event in vLLM's shape and `[DONE]`.
fn assert_error_event(body: &str) {
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let event = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .find(|e| e.contains("\"error\""))
        .unwrap_or_else(|| panic!("no error event in {body}"));
    let event: serde_json::Value = serde_json::from_str(event).expect("error event is JSON");
    assert_eq!(event["error"]["code"], 502, "{event}");
    assert_eq!(event["error"]["type"], "upstream_error", "{event}");
    assert!(event["error"]["message"].is_string(), "{event}");
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_sse_error_event_and_done() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    sims[0].faults().set_cut_stream_after(Some(2));
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/completions", router.url()))
        .json(&completion_body("cut me", 16, true))
        .send()
        .await
        .expect("the router answers");
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("a clean end of the body");
    assert!(
        body.starts_with("data: {"),
        "the events before the cut: {body}"
    );
    assert_error_event(&body);
    let text = router_metrics(&router).await;
    assert_eq!(errors_of(&text, "r0", "protocol"), 1.0, "{text}");
    wait_in_flight_zero(&router, &["r0"]).await;
    router.shutdown().await;
    sims.into_iter().next().expect("one sim").shutdown().await;
}

#[tokio::test]
async fn a_stream_that_goes_silent_ends_with_an_error_event_after_the_idle_timeout() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let extra = "timeouts:\n  idle_ms: 300\n  shutdown_drain_ms: 2000\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    sims[0].faults().set_stall_stream_after(Some(2));
    let o = send(&reqwest::Client::new(), &router, "go quiet", true).await;
    assert_eq!(o.status, 200);
    assert_error_event(&o.body);
    let text = router_metrics(&router).await;
    assert_eq!(errors_of(&text, "r0", "idle_timeout"), 1.0, "{text}");
    wait_in_flight_zero(&router, &["r0"]).await;
    router.shutdown().await;
    sims.into_iter().next().expect("one sim").shutdown().await;
}

#[tokio::test]
async fn a_killed_replica_costs_no_request_and_refusing_all_is_503_until_they_return() {
    let (mut sims, router) = fleet("").await;
    // Killed: its port closes; requests already routed there are retried elsewhere.
    let killed = sims.remove(0);
    killed.shutdown().await;
    let outcomes = send_many(&router, 16, true).await;
    for o in &outcomes {
        assert_eq!(o.status, 200, "{o:?}");
    }
    wait_until(Duration::from_secs(10), "r0 marked unhealthy", || async {
        let text = router_metrics(&router).await;
        metric_value(&text, "router_replica_healthy", &[("replica", "r0")]) == Some(0.0)
    })
    .await;

    // Everyone refuses: once health checks notice, a clear 503.
    for sim in &sims {
        sim.faults().set_refuse_connections(true);
    }
    let client = reqwest::Client::new();
    wait_until(
        Duration::from_secs(10),
        "a 503 when all are down",
        || async { send(&client, &router, "anyone?", false).await.status == 503 },
    )
    .await;
    let o = send(&client, &router, "anyone?", false).await;
    let body: serde_json::Value = serde_json::from_str(&o.body).expect("JSON error");
    assert_eq!(body["error"]["type"], "service_unavailable_error", "{body}");

    // They come back: traffic returns to each of them.
    for sim in &sims {
        sim.faults().set_refuse_connections(false);
    }
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    wait_until(
        Duration::from_secs(10),
        "traffic back on r1..r3",
        || async {
            let o = send(&client, &router, "back?", false).await;
            let mut seen = seen.lock().expect("not poisoned");
            if o.status == 200 {
                seen.extend(o.routed_to);
            }
            ["r1", "r2", "r3"].iter().all(|r| seen.contains(*r))
        },
    )
    .await;
    wait_in_flight_zero(&router, &NAMES).await;
    stop(sims, router).await;
}

#[tokio::test]
async fn a_failing_replica_is_ejected_and_returns_after_recovery() {
    // Probes keep saying healthy (its /health works): only outlier ejection takes it out.
    let extra = "health:\n  interval_ms: 50\n  passive: false\n\
                 outlier:\n  consecutive_failures: 3\n  base_ejection_ms: 300\n";
    let (sims, router) = fleet(extra).await;
    sims[0].faults().set_fail(1.0, 500);
    let outcomes = send_many(&router, 24, false).await;
    assert!(outcomes.iter().all(|o| o.status == 200), "{outcomes:?}");
    let text = router_metrics(&router).await;
    assert!(
        metric_value(
            &text,
            "router_replica_ejections_total",
            &[("replica", "r0")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    sims[0].faults().clear();
    let client = reqwest::Client::new();
    wait_until(Duration::from_secs(10), "traffic back on r0", || async {
        send(&client, &router, "r0 again?", false)
            .await
            .routed_to
            .as_deref()
            == Some("r0")
    })
    .await;
    wait_until(
        Duration::from_secs(10),
        "ejected gauge back to 0",
        || async {
            let text = router_metrics(&router).await;
            metric_value(&text, "router_replica_ejected", &[("replica", "r0")]) == Some(0.0)
        },
    )
    .await;
    wait_in_flight_zero(&router, &NAMES).await;
    stop(sims, router).await;
}

#[tokio::test]
async fn a_ten_times_slower_replica_still_answers_every_request() {
    let mut sims = start_sims(3, SimConfig::zero_delay()).await;
    let slow = SimConfig {
        prefill_us_per_token: 330.0,
        decode_base_ms: 50.0,
        ..SimConfig::zero_delay()
    };
    sims.extend(start_sims(1, slow).await);
    let router = start_router(&router_yaml(&sims, "cost", "")).await;
    let outcomes = send_many(&router, 24, true).await;
    assert_streams_completed(&router, &outcomes).await;
    wait_in_flight_zero(&router, &NAMES).await;
    stop(sims, router).await;
}

#[tokio::test]
async fn a_ten_times_slower_replica_is_ejected_by_latency_under_round_robin() {
    // Every engine step takes 20 ms on r0..r2 and 200 ms on r3 (speedup 0.1).
    let fast = SimConfig {
        decode_base_ms: 20.0,
        ..SimConfig::zero_delay()
    };
    let mut sims = start_sims(3, fast.clone()).await;
    let slow = SimConfig {
        speedup: 0.1,
        ..fast
    };
    sims.extend(start_sims(1, slow).await);
    // Default factor (5x the peers' median) and floor; a short window and a long ejection so
    // the gauge stays up while it is read.
    let extra = "outlier:\n  min_requests: 5\n  base_ejection_ms: 600000\n  \
                 max_ejection_ms: 600000\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let ejected = |text: &str, r: &str| {
        metric_value(text, "router_replica_ejected", &[("replica", r)]).unwrap_or(0.0)
    };
    let mut sent = 0;
    wait_until(Duration::from_secs(120), "r3 ejected for latency", || {
        sent += 8;
        let router = &router;
        async move {
            let outcomes = send_many(router, 8, true).await;
            assert!(outcomes.iter().all(|o| o.status == 200), "{outcomes:?}");
            ejected(&router_metrics(router).await, "r3") == 1.0
        }
    })
    .await;
    let text = router_metrics(&router).await;
    for fast in &NAMES[..3] {
        assert_eq!(ejected(&text, fast), 0.0, "{fast} is not slow: {text}");
        assert_eq!(
            metric_value(
                &text,
                "router_replica_ejections_total",
                &[("replica", fast)]
            )
            .unwrap_or(0.0),
            0.0,
            "{text}"
        );
    }
    // The slow replica gets no new traffic while ejected; every request still succeeds.
    let outcomes = send_many(&router, 12, true).await;
    for o in &outcomes {
        assert_eq!(o.status, 200, "{o:?}");
        assert_ne!(o.routed_to.as_deref(), Some("r3"), "{o:?}");
    }
    assert_counted(&router, sent + 12, "200").await;
    wait_in_flight_zero(&router, &NAMES).await;
    stop(sims, router).await;
}
