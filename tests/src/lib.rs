//! Shared helpers for the end-to-end tests: start `vllm-sim` replicas and a router on port 0,
//! read Prometheus metrics, and poll for conditions with a deadline.

use std::{future::Future, time::Duration};

pub mod dashboard;
pub mod prometheus;

pub use router::{Config, RouterServer};
pub use vllm_sim::{SimConfig, SimServer};

/// Starts `n` simulated replicas on ephemeral ports (whatever port `config` names), with
/// loadgen's fixture, panicking on failure.
pub async fn start_sims(n: usize, config: SimConfig) -> Vec<SimServer> {
    loadgen::cluster::start_sims(n, &config)
        .await
        .expect("start vllm-sim")
}

/// A URL on which nothing listens: a port held by a socket that is bound but never listens,
/// for the rest of the test process, so connections to it are refused and no other listener
/// started later (a sim, or the router itself) can be handed the same port.
pub fn dead_url() -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("create a TCP socket");
    socket
        .bind("127.0.0.1:0".parse().expect("loopback address"))
        .expect("bind an ephemeral port");
    let addr = socket.local_addr().expect("bound socket has an address");
    // Held until the process ends: releasing it would let the port be reused.
    std::mem::forget(socket);
    format!("http://{addr}")
}

/// Writes a word-level `tokenizer.json` into `dir` (token mode needs one): `vocab` maps words
/// to ids and must hold `[UNK]`, which every other word becomes. Returns the file's path.
pub fn write_word_level_tokenizer(
    dir: &std::path::Path,
    vocab: serde_json::Map<String, serde_json::Value>,
) -> std::path::PathBuf {
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": serde_json::Value::Object(vocab), "unk_token": "[UNK]"}
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tokenizer.to_string()).expect("write tokenizer.json");
    path
}

/// Writes a word-level `tokenizer.json` into `dir` whose words are `w0` .. `w{n-1}` (ids 1..=n,
/// `[UNK]` 0; see [`numbered_words`]). Returns the file's path.
pub fn write_numbered_tokenizer(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), serde_json::json!(0));
    for i in 0..n {
        vocab.insert(format!("w{i}"), serde_json::json!(i + 1));
    }
    write_word_level_tokenizer(dir, vocab)
}

/// `w{from} w{from+1} ... w{to-1}`: one token each under [`write_numbered_tokenizer`].
pub fn numbered_words(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `config` with KV-cache events published on ephemeral PUB and replay ports.
pub fn with_kv_events(config: SimConfig) -> SimConfig {
    SimConfig {
        kv_events: Box::new(vllm_sim::KvEventsConfig {
            kv_events_port: Some(0),
            kv_events_replay_port: Some(0),
            ..vllm_sim::KvEventsConfig::default()
        }),
        ..config
    }
}

/// YAML for a router on 127.0.0.1:0 in front of `sims`, named `r0`, `r1`, ... with fast health
/// checks (50 ms interval, thresholds 1 up / 2 down). `extra` is appended verbatim (top-level keys).
pub fn router_yaml(sims: &[SimServer], policy: &str, extra: &str) -> String {
    let mut yaml = String::from("listen: 127.0.0.1:0\nreplicas:\n");
    for (i, sim) in sims.iter().enumerate() {
        yaml.push_str(&format!("  - url: {}\n    name: r{i}\n", sim.url()));
    }
    yaml.push_str(&format!("policy:\n  name: {policy}\n  seed: 42\n"));
    if !extra.contains("health:") {
        yaml.push_str(
            "health:\n  interval_ms: 50\n  timeout_ms: 200\n  healthy_threshold: 1\n  unhealthy_threshold: 2\n",
        );
    }
    if !extra.contains("timeouts:") {
        yaml.push_str("timeouts:\n  shutdown_drain_ms: 2000\n");
    }
    yaml.push_str(extra);
    yaml
}

/// Waits until each replica in `sims` (started [`with_kv_events`]) has `n` subscribers:
/// ZMQ drops what is published before a subscription arrives.
pub async fn wait_kv_subscribed(sims: &[SimServer], n: usize) {
    for sim in sims {
        let kv = sim.kv_events().expect("the replica publishes KV events");
        wait_until(
            Duration::from_secs(30),
            "KV-event subscriptions reach the replica",
            || async { kv.subscribers() >= n },
        )
        .await;
    }
}

/// Starts a router from YAML.
pub async fn start_router(yaml: &str) -> RouterServer {
    let config = Config::from_yaml_str(yaml).expect("valid router YAML");
    router::start(config).await.expect("start router")
}

/// Starts `n` zero-delay replicas and a router with `policy` in front of them.
pub async fn cluster(n: usize, policy: &str) -> (Vec<SimServer>, RouterServer) {
    let sims = start_sims(n, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, policy, "")).await;
    (sims, router)
}

/// Shuts `router` down (draining), then each of `sims`.
pub async fn stop(sims: Vec<SimServer>, router: RouterServer) {
    router.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}

/// The model name the simulated replicas serve.
pub fn model() -> String {
    SimConfig::zero_delay().model
}

/// A small completion request body.
pub fn completion_body(prompt: &str, max_tokens: u32, stream: bool) -> serde_json::Value {
    serde_json::json!({ "model": model(), "prompt": prompt, "max_tokens": max_tokens, "stream": stream })
}

/// Value of the first sample `name` in Prometheus text whose labels include all of `labels`.
pub use prom_text::value as metric_value;

/// Sum of every sample of `name` whose labels include `labels`.
pub use prom_text::sum as metric_sum;

/// Fetches the router's `/metrics` text.
pub async fn router_metrics(router: &RouterServer) -> String {
    reqwest::get(format!("{}/metrics", router.url()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The router's `/readiness` body as JSON (whatever its status).
pub async fn router_readiness(router: &RouterServer) -> serde_json::Value {
    reqwest::get(format!("{}/readiness", router.url()))
        .await
        .expect("GET /readiness")
        .json()
        .await
        .expect("readiness body")
}

/// `router_in_flight_requests{replica}` (0 when the series is absent).
pub async fn in_flight(router: &RouterServer, replica: &str) -> f64 {
    let text = router_metrics(router).await;
    metric_value(&text, "router_in_flight_requests", &[("replica", replica)]).unwrap_or(0.0)
}

/// Polls `check` every 20 ms until it returns true; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every replica's in-flight gauge on `router` is back to zero.
pub async fn wait_in_flight_zero(router: &RouterServer, replicas: &[&str]) {
    wait_until(
        Duration::from_secs(30),
        "in-flight counters back to zero",
        || async {
            let text = router_metrics(router).await;
            replicas.iter().all(|r| {
                metric_value(&text, "router_in_flight_requests", &[("replica", r)]).unwrap_or(0.0)
                    == 0.0
                    && metric_value(&text, "router_in_flight_prompt_tokens", &[("replica", r)])
                        .unwrap_or(0.0)
                        == 0.0
            })
        },
    )
    .await;
}

/// The replica a router response names in `x-routed-to`; panics when the header is absent.
pub fn routed_header(response: &reqwest::Response) -> String {
    response.headers()["x-routed-to"]
        .to_str()
        .expect("x-routed-to is text")
        .to_owned()
}

/// POSTs `body` to `path` on the router, asserts 200, reads the whole answer and returns the
/// replica named in `x-routed-to`.
pub async fn routed_to(
    client: &reqwest::Client,
    router: &RouterServer,
    path: &str,
    body: &serde_json::Value,
) -> String {
    let response = client
        .post(format!("{}{path}", router.url()))
        .json(body)
        .send()
        .await
        .expect("POST to the router");
    assert_eq!(response.status(), 200, "{path}");
    let replica = routed_header(&response);
    response.bytes().await.expect("response body");
    replica
}

/// Sends `prompt` as a one-token completion through the router and returns the replica it went
/// to (see [`routed_to`]).
pub async fn route(client: &reqwest::Client, router: &RouterServer, prompt: &str) -> String {
    routed_to(
        client,
        router,
        "/v1/completions",
        &completion_body(prompt, 1, false),
    )
    .await
}

/// POSTs `body` as JSON to `url` and returns the response, whatever its status.
pub async fn post_json(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    body: &serde_json::Value,
) -> reqwest::Response {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("POST reaches the server")
}
