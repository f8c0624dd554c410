//! Structured request logs: one JSON line per request with id, model, replica, policy,
//! decision reason, status, time to first byte and duration (target `router::access`).

#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use prefix_router_tests::{
    SimConfig, routed_header, router_yaml, start_router, start_sims, stop, wait_until,
};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn access_lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "router::access")
            .collect()
    }

    fn line_for(&self, request_id: &str) -> Option<Value> {
        self.access_lines()
            .into_iter()
            .find(|v| v["request_id"] == request_id)
    }
}

#[tokio::test]
async fn every_request_gets_one_structured_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter("router::access=info")
        .with_writer(move || writer.clone())
        .init();

    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "cost", "")).await;
    let client = reqwest::Client::new();
    let url = router.url();

    let response = client
        .post(format!("{url}/v1/completions"))
        .header("x-request-id", "req-stream-1")
        .json(&json!({ "model": "vllm-sim", "prompt": "tell me a story", "max_tokens": 4, "stream": true }))
        .send()
        .await
        .unwrap();
    let routed = routed_header(&response);
    assert!(response.text().await.unwrap().contains("[DONE]"));
    wait_until(Duration::from_secs(10), "stream logged", || async {
        captured.line_for("req-stream-1").is_some()
    })
    .await;
    let line = captured.line_for("req-stream-1").unwrap();
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["model"], "vllm-sim", "{line}");
    assert_eq!(line["replica"], routed.as_str(), "{line}");
    assert_eq!(line["policy"], "cost", "{line}");
    assert!(
        line["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty() && r != "-"),
        "{line}"
    );
    assert!(
        line["predicted_ttft_ms"].is_number(),
        "cost predicts: {line}"
    );
    assert!(line["matched_tokens"].is_number(), "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["stream"], true, "{line}");
    assert_eq!(line["ending"], "complete", "{line}");
    let (ttfb, total) = (
        line["ttfb_ms"].as_f64().unwrap(),
        line["duration_ms"].as_f64().unwrap(),
    );
    assert!(ttfb <= total, "{line}");

    let refused = client
        .post(format!("{url}/v1/completions"))
        .header("x-request-id", "req-bad-1")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    wait_until(Duration::from_secs(10), "refusal logged", || async {
        captured.line_for("req-bad-1").is_some()
    })
    .await;
    let line = captured.line_for("req-bad-1").unwrap();
    assert_eq!(
        (line["status"].clone(), line["replica"].clone()),
        (json!(400), json!("-"))
    );
    let ids: Vec<Value> = captured
        .access_lines()
        .into_iter()
        .map(|l| l["request_id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "one line per request: {ids:?}");
    stop(sims, router).await;
}
