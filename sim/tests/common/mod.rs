//! Helpers shared by the integration tests: start replicas, post JSON, read SSE streams.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use serde_json::Value;
use std::time::{Duration, Instant};
use vllm_sim::{SimConfig, SimServer};

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub async fn start(cfg: SimConfig) -> SimServer {
    vllm_sim::start(cfg).await.expect("server starts")
}

/// POSTs JSON; returns status and parsed body (Null if not JSON).
pub async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c.post(url).json(body).send().await.expect("request sent");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn complete(c: &reqwest::Client, s: &SimServer, body: Value) -> Value {
    let (status, v) = post(c, &format!("{}/v1/completions", s.url()), &body).await;
    assert_eq!(status, 200, "body: {v}");
    v
}

pub fn cached_tokens(v: &Value) -> u64 {
    v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached_tokens present")
}

/// A streamed response: raw body, time to first byte, and whether it ended cleanly.
pub struct Streamed {
    pub status: u16,
    pub content_type: String,
    pub raw: String,
    pub ttfb: Duration,
    pub total: Duration,
    pub error: bool,
}

pub async fn stream(c: &reqwest::Client, url: &str, body: &Value) -> Streamed {
    let start = Instant::now();
    let mut r = c.post(url).json(body).send().await.expect("request sent");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let mut raw = Vec::new();
    let mut ttfb = None;
    let mut error = false;
    loop {
        match r.chunk().await {
            Ok(Some(bytes)) => {
                ttfb.get_or_insert_with(|| start.elapsed());
                raw.extend_from_slice(&bytes);
            }
            Ok(None) => break,
            Err(_) => {
                error = true;
                break;
            }
        }
    }
    Streamed {
        status,
        content_type,
        raw: String::from_utf8(raw).unwrap(),
        ttfb: ttfb.unwrap_or_else(|| start.elapsed()),
        total: start.elapsed(),
        error,
    }
}

/// Splits an SSE body into its `data:` payloads, asserting vLLM's framing strictly.
pub fn sse_events(raw: &str) -> Vec<String> {
    assert!(
        raw.ends_with("\n\n") || raw.is_empty(),
        "body must end with a blank line"
    );
    raw.split_terminator("\n\n")
        .map(|ev| {
            assert!(!ev.contains('\n'), "one line per event: {ev:?}");
            ev.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without 'data: ' prefix: {ev:?}"))
                .to_string()
        })
        .collect()
}

/// Value of a sample `name{...}` whose labels contain every `want` pair.
pub fn sample(metrics: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    prom_text::value(metrics, name, want)
}

pub async fn metrics_text(c: &reqwest::Client, s: &SimServer) -> String {
    c.get(format!("{}/metrics", s.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A text prompt of about `tokens` tokens (4 bytes each), distinct per `tag`.
pub fn prompt(tag: &str, tokens: usize) -> String {
    let mut s = format!("{tag:<8}");
    s.truncate(8);
    while s.len() < tokens * 4 {
        s.push_str("abcd");
    }
    s.truncate(tokens * 4);
    s
}

/// Generous deadline for conditions polled by the tests: only a broken simulator reaches it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every 10 ms until it holds; panics naming `what` after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The engine's `running` and `waiting` gauges (`model_name="vllm-sim"` unless the config
/// renamed the model: the first sample of each is read).
pub async fn queue_gauges(c: &reqwest::Client, s: &SimServer) -> (f64, f64) {
    let m = metrics_text(c, s).await;
    (
        sample(&m, "vllm:num_requests_running", &[]).unwrap_or(0.0),
        sample(&m, "vllm:num_requests_waiting", &[]).unwrap_or(0.0),
    )
}
