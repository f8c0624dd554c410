//! Client API keys: 401 without a valid key, open health/metrics, per-key metrics, and what
//! `Authorization` the replicas (vllm-sim with `api_key`, like vLLM's `--api-key`) receive.

#![allow(clippy::unwrap_used)]

use prefix_router_tests::{
    SimConfig, completion_body, metric_value, router_metrics, router_yaml, start_router,
    start_sims, stop,
};
use serde_json::Value;

fn sims_with_key(key: &str) -> SimConfig {
    SimConfig {
        api_key: Some(key.into()),
        ..SimConfig::zero_delay()
    }
}

async fn post(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&completion_body("hello", 2, false));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn client_keys_are_checked_and_replaced_by_the_upstream_key() {
    let sims = start_sims(2, sims_with_key("up-secret")).await;
    let extra = "auth:\n  api_keys:\n    - key: k-a\n      name: team-a\n    - key: k-b\n  upstream:\n    api_key: up-secret\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let url = router.url();

    for key in [None, Some("wrong"), Some("k-a-but-longer")] {
        let (status, body) = post(&url, key).await;
        assert_eq!(status, 401, "{key:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // The sims accept only `up-secret`: a 200 proves the client's key was replaced.
    let (status, body) = post(&url, Some("k-a")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(&url, Some("k-b")).await;
    assert_eq!(status, 200);
    let models = reqwest::Client::new()
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401, "the model list needs a key too");

    for path in ["/health", "/readiness", "/metrics"] {
        let status = reqwest::get(format!("{url}{path}")).await.unwrap().status();
        assert_eq!(status, 200, "{path} stays open");
    }
    let text = router_metrics(&router).await;
    let count = |key: &str, status: &str| {
        metric_value(
            &text,
            "router_client_requests_total",
            &[("key", key), ("status", status)],
        )
    };
    assert_eq!(count("team-a", "200"), Some(1.0), "{text}");
    assert_eq!(count("key-1", "200"), Some(1.0), "{text}");
    assert_eq!(count("invalid", "401"), Some(4.0), "{text}");
    stop(sims, router).await;
}

#[tokio::test]
async fn the_client_authorization_is_dropped_by_default_and_forwarded_on_request() {
    let sims = start_sims(1, sims_with_key("shared-key")).await;

    let dropping = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let (status, body) = post(&dropping.url(), Some("shared-key")).await;
    assert_eq!(
        status, 401,
        "the replica never saw the client's key: {body}"
    );
    dropping.shutdown().await;

    let extra = "auth:\n  api_keys:\n    - key: shared-key\n  upstream:\n    forward: true\n";
    let forwarding = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let (status, body) = post(&forwarding.url(), Some("shared-key")).await;
    assert_eq!(status, 200, "{body}");
    forwarding.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}

#[test]
fn bad_auth_config_is_named() {
    let err = router::Config::from_yaml_str("auth:\n  api_keys:\n    - key: ''\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("auth.api_keys[0].key"), "{text}");
}
