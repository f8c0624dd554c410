//! Proxying through the router to vllm-sim replicas: bodies, headers, streaming, model list.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use futures_util::StreamExt;
use prefix_router_tests::{
    SimConfig, cluster, completion_body, metric_value, model, routed_header, router_metrics,
    router_readiness, router_yaml, start_router, start_sims, stop, wait_in_flight_zero,
};
use serde_json::{Value, json};

#[tokio::test]
async fn completions_and_chat_are_proxied_with_routing_headers() {
    let (sims, router) = cluster(2, "round_robin").await;
    let client = reqwest::Client::new();

    let response = client
        .post(format!("{}/v1/completions", router.url()))
        .header("x-request-id", "req-123")
        .json(&completion_body("Hello there", 5, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let routed = routed_header(&response);
    assert!(routed == "r0" || routed == "r1", "{routed}");
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["usage"]["completion_tokens"], 5);

    let response = client
        .post(format!("{}/v1/chat/completions", router.url()))
        .json(&json!({"model": model(), "max_tokens": 3,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a generated uuid-shaped id: {id}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");

    wait_in_flight_zero(&router, &["r0", "r1"]).await;
    let metrics = router_metrics(&router).await;
    assert!(
        metrics.contains(
            "router_requests_total{policy=\"round_robin\",replica=\"r0\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "router_requests_total{policy=\"round_robin\",replica=\"r1\",status=\"200\"} 1"
        )
    );
    assert!(metrics.contains("router_time_to_first_byte_seconds_count{replica=\"r0\"} 1"));
    assert!(metrics.contains("router_request_duration_seconds_count{replica=\"r1\"} 1"));
    stop(sims, router).await;
}

#[tokio::test]
async fn streaming_chunks_reach_the_client_while_the_replica_is_still_generating() {
    // 40 ms per decode step: 50 tokens take two seconds on the replica's clock.
    let mut config = SimConfig::zero_delay();
    config.decode_base_ms = 40.0;
    let sims = start_sims(1, config).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;

    let response = reqwest::Client::new()
        .post(format!("{}/v1/completions", router.url()))
        .json(&completion_body("stream me", 50, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "{first:?}"
    );
    // A buffering proxy would deliver nothing before the replica finished.
    let replica = reqwest::get(format!("{}/metrics", sims[0].url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric_value(&replica, "vllm:num_requests_running", &[]),
        Some(1.0),
        "the replica is still generating when the first chunk arrives"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    wait_in_flight_zero(&router, &["r0"]).await;
    // Time to first byte is taken at the first chunk, not at the end of the stream: a ratio of
    // the router's own measurements (the replica spends 49 of 50 steps after the first token).
    let metrics = router_metrics(&router).await;
    let sum = |name: &str| metric_value(&metrics, name, &[("replica", "r0")]).unwrap();
    let (ttfb, duration) = (
        sum("router_time_to_first_byte_seconds_sum"),
        sum("router_request_duration_seconds_sum"),
    );
    assert!(
        ttfb * 3.0 < duration && duration >= 49.0 * 0.040,
        "ttfb {ttfb} s, duration {duration} s"
    );
    router.shutdown().await;
    sims.into_iter().next().unwrap().shutdown().await;
}

#[tokio::test]
async fn models_are_merged_and_other_v1_routes_pass_through() {
    let (sims, router) = cluster(2, "round_robin").await;
    let models: Value = reqwest::get(format!("{}/v1/models", router.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        1,
        "two replicas serving one model are deduplicated: {models}"
    );

    // A `/v1/*` route the router does not know is forwarded; the replica answers it.
    let response = reqwest::get(format!("{}/v1/nonexistent", router.url()))
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-routed-to"));
    assert_eq!(response.status(), 404);

    let health = reqwest::get(format!("{}/health", router.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = router_readiness(&router).await;
    assert_eq!(ready["healthy_replicas"], 2);
    stop(sims, router).await;
}
