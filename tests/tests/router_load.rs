//! In-flight load counters go back to zero on every ending: success, upstream error, client
//! disconnect, first-byte and idle timeouts. Read through `/metrics` like an operator would.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::time::Duration;

use futures_util::StreamExt;
use prefix_router_tests::{
    SimConfig, completion_body, in_flight, post_json, router_metrics, router_yaml, start_router,
    start_sims, wait_in_flight_zero, wait_until,
};

/// One slow-decoding replica (`decode_ms` per token) behind a router with `extra` config.
async fn slow_setup(
    decode_ms: f64,
    extra: &str,
) -> (Vec<vllm_sim::SimServer>, router::RouterServer) {
    let mut config = SimConfig::zero_delay();
    config.decode_base_ms = decode_ms;
    let sims = start_sims(1, config).await;
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    (sims, router)
}

#[tokio::test]
async fn counted_while_streaming_and_released_after_success() {
    let (sims, router) = slow_setup(30.0, "").await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/completions", router.url()))
        .json(&completion_body(&"word ".repeat(40), 10, true))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    let metrics = router_metrics(&router).await;
    assert!(
        metrics.contains("router_in_flight_requests{replica=\"r0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("router_in_flight_prompt_tokens{replica=\"r0\"} 50"),
        "200 bytes / 4: {metrics}"
    );
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    wait_in_flight_zero(&router, &["r0"]).await;
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}

#[tokio::test]
async fn released_when_the_client_disconnects_mid_stream() {
    let (sims, router) = slow_setup(50.0, "").await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/completions", router.url()))
        .json(&completion_body("tell me a long story", 200, true))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    assert_eq!(in_flight(&router, "r0").await, 1.0);
    drop(stream); // 200 tokens at 50 ms would take 10 s: the replica is still generating.
    wait_in_flight_zero(&router, &["r0"]).await;
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}

#[tokio::test]
async fn released_when_the_client_gives_up_before_the_response_starts() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    sims[0].faults().set_stall(true);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/completions", router.url());
    let request = tokio::spawn(async move {
        client
            .post(url)
            .json(&completion_body("hi", 2, false))
            .send()
            .await
    });
    wait_until(
        Duration::from_secs(30),
        "request held by the replica",
        || async { in_flight(&router, "r0").await == 1.0 && sims[0].faults().held() == 1 },
    )
    .await;
    // The client gives up: its connection closes before any response byte.
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    wait_in_flight_zero(&router, &["r0"]).await;
    sims[0].faults().set_stall(false);
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}

/// Reads a streamed body that the router ended early: it must end cleanly with an SSE error
/// event and `[DONE]`. Returns the body.
async fn ended_with_error_event(response: reqwest::Response) -> String {
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("a clean end of the body, not a reset"));
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.contains("data: {\"error\""), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    body
}

#[tokio::test]
async fn released_after_upstream_errors() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/completions", router.url());

    sims[0].faults().set_fail(1.0, 503);
    let r = post_json(&client, &url, &completion_body("hi", 2, false)).await;
    assert_eq!(r.status(), 503);
    wait_in_flight_zero(&router, &["r0"]).await;
    sims[0].faults().clear();

    // The replica cuts the stream after 3 events: the client sees an SSE error event and a
    // clean end, never a stream that looks complete.
    sims[0].faults().set_cut_stream_after(Some(3));
    let r = post_json(&client, &url, &completion_body("hi", 50, true)).await;
    let body = ended_with_error_event(r).await;
    assert!(!body.contains("\"finish_reason\":\"length\""), "{body}");
    wait_in_flight_zero(&router, &["r0"]).await;
    let metrics = router_metrics(&router).await;
    assert!(
        metrics.contains("router_upstream_errors_total{kind=\"protocol\",replica=\"r0\"} 1"),
        "{metrics}"
    );
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}

#[tokio::test]
async fn released_after_first_byte_and_idle_timeouts() {
    let extra = "timeouts:\n  first_byte_ms: 200\n  idle_ms: 150\n  shutdown_drain_ms: 2000\n";
    let (sims, router) = slow_setup(400.0, extra).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/completions", router.url());

    // Streaming: headers come at once, then 400 ms between tokens exceeds the 150 ms idle limit.
    let r = post_json(&client, &url, &completion_body("hi", 20, true)).await;
    assert_eq!(r.status(), 200);
    ended_with_error_event(r).await;
    wait_in_flight_zero(&router, &["r0"]).await;

    // Non-streaming: nothing arrives before 20 x 400 ms, far past the first-byte timeout.
    let r = post_json(&client, &url, &completion_body("hi", 20, false)).await;
    assert_eq!(r.status(), 504);
    wait_in_flight_zero(&router, &["r0"]).await;

    let metrics = router_metrics(&router).await;
    assert!(
        metrics.contains("router_upstream_errors_total{kind=\"idle_timeout\",replica=\"r0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("router_upstream_errors_total{kind=\"first_byte_timeout\",replica=\"r0\"} 1")
    );
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}
