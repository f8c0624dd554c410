//! Error statuses and the OpenAI-style JSON error body.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::time::Duration;

use prefix_router_tests::{
    SimConfig, completion_body, dead_url, post_json, router_metrics, router_yaml, start_router,
    start_sims, wait_in_flight_zero, wait_until,
};
use serde_json::Value;

/// Asserts the `{"error": {"message", "type", "code"}}` shape and returns the type.
async fn error_type(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["code"], status, "{body}");
    error["type"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn client_errors_are_400_404_405_and_413() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(
        &sims,
        "round_robin",
        "limits:\n  max_body_bytes: 1024\n",
    ))
    .await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", router.url());

    let r = client
        .post(url("/v1/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_type(r, 400).await, "invalid_request_error");
    let r = post_json(
        &client,
        &url("/v1/completions"),
        &serde_json::json!({"model": "m"}),
    )
    .await;
    assert_eq!(error_type(r, 400).await, "invalid_request_error");
    let r = post_json(
        &client,
        &url("/v1/chat/completions"),
        &serde_json::json!({"messages": "hi"}),
    )
    .await;
    assert_eq!(error_type(r, 400).await, "invalid_request_error");

    let big = completion_body(&"x".repeat(2000), 2, false);
    let r = post_json(&client, &url("/v1/completions"), &big).await;
    assert_eq!(error_type(r, 413).await, "invalid_request_error");
    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b' '; 600])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = client
        .post(url("/v1/completions"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_type(r, 413).await, "invalid_request_error");

    let r = client.get(url("/nope")).send().await.unwrap();
    assert_eq!(error_type(r, 404).await, "not_found_error");
    let r = client.get(url("/v1/completions")).send().await.unwrap();
    assert_eq!(error_type(r, 405).await, "method_not_allowed_error");

    // Rejected requests never reached a replica.
    let metrics = router_metrics(&router).await;
    assert!(!metrics.contains("router_requests_total{"), "{metrics}");
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}

#[tokio::test]
async fn connect_failure_everywhere_is_502() {
    // Health checks off, so nothing but this request's own connect failure decides the status.
    let yaml = format!(
        "listen: 127.0.0.1:0\nreplicas:\n  - url: {}\n    name: dead\n\
         policy:\n  name: power_of_two\nhealth:\n  enabled: false\n",
        dead_url()
    );
    let router = start_router(&yaml).await;
    let client = reqwest::Client::new();
    let r = post_json(
        &client,
        format!("{}/v1/completions", router.url()),
        &completion_body("hi", 2, false),
    )
    .await;
    assert_eq!(error_type(r, 502).await, "upstream_error");
    let metrics = router_metrics(&router).await;
    assert!(
        metrics.contains("router_upstream_errors_total{kind=\"connect\",replica=\"dead\"} 1"),
        "{metrics}"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn no_healthy_replica_is_503() {
    let yaml = format!(
        "listen: 127.0.0.1:0\nreplicas:\n  - url: {}\n    name: dead\n\
         policy:\n  name: power_of_two\n\
         health:\n  interval_ms: 50\n  timeout_ms: 100\n  unhealthy_threshold: 2\n",
        dead_url()
    );
    let router = start_router(&yaml).await;
    let client = reqwest::Client::new();
    wait_until(Duration::from_secs(5), "readiness turns 503", || async {
        reqwest::get(format!("{}/readiness", router.url()))
            .await
            .unwrap()
            .status()
            == 503
    })
    .await;
    let r = post_json(
        &client,
        format!("{}/v1/completions", router.url()),
        &completion_body("hi", 2, false),
    )
    .await;
    assert_eq!(error_type(r, 503).await, "service_unavailable_error");
    let r = client
        .get(format!("{}/v1/models", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(error_type(r, 503).await, "service_unavailable_error");

    let metrics = router_metrics(&router).await;
    assert!(metrics.contains("router_replica_healthy{replica=\"dead\"} 0"));
    assert!(metrics.contains(
        "router_requests_total{policy=\"power_of_two\",replica=\"none\",status=\"503\"} 1"
    ));
    router.shutdown().await;
}

#[tokio::test]
async fn a_replica_that_never_answers_is_a_504_and_replica_5xx_pass_through() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let extra = "timeouts:\n  first_byte_ms: 300\n  shutdown_drain_ms: 2000\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/completions", router.url());

    sims[0].faults().set_stall(true);
    let r = post_json(&client, &url, &completion_body("hi", 2, false)).await;
    assert_eq!(error_type(r, 504).await, "timeout_error");
    wait_in_flight_zero(&router, &["r0"]).await;
    sims[0].faults().set_stall(false);

    sims[0].faults().set_fail(1.0, 500);
    let r = post_json(&client, &url, &completion_body("hi", 2, false)).await;
    assert_eq!(
        r.status(),
        500,
        "the replica's own error is passed through unchanged"
    );
    assert_eq!(r.headers()["x-routed-to"], "r0");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_object(), "{body}");
    wait_in_flight_zero(&router, &["r0"]).await;

    let metrics = router_metrics(&router).await;
    assert!(
        metrics
            .contains("router_upstream_errors_total{kind=\"first_byte_timeout\",replica=\"r0\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("router_upstream_errors_total{kind=\"status_5xx\",replica=\"r0\"} 1"));
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let extra = "timeouts:\n  idle_ms: 200\n  shutdown_drain_ms: 2000\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let mut socket = tokio::net::TcpStream::connect(router.addr()).await.unwrap();
    let head = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n{\"prompt\":";
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the router must answer, not hang");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"type\":\"invalid_request_error\""),
        "{answer}"
    );
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}
