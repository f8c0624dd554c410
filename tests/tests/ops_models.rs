//! Model groups: two models across four replicas; a request's `model` picks its group, an
//! unknown model gets 404 `model_not_found`, and `/v1/models` lists each model once.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use prefix_router_tests::{
    SimConfig, SimServer, router_yaml, start_router, start_sims, wait_until,
};
use serde_json::{Value, json};

async fn sims(model: &str) -> Vec<SimServer> {
    start_sims(
        2,
        SimConfig {
            model: model.into(),
            ..SimConfig::zero_delay()
        },
    )
    .await
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    prompt: &str,
) -> (u16, Value, String) {
    let response = client
        .post(format!("{url}/v1/completions"))
        .json(&json!({ "model": model, "prompt": prompt, "max_tokens": 2 }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let routed = response
        .headers()
        .get("x-routed-to")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, response.json().await.unwrap(), routed)
}

#[tokio::test]
async fn requests_route_within_their_model_group() {
    let mut all = sims("alpha").await;
    all.extend(sims("beta").await);
    let router = start_router(&router_yaml(&all, "cost", "")).await;
    let url = router.url();
    let client = reqwest::Client::new();

    wait_until(Duration::from_secs(10), "unknown model refused", || async {
        send(&client, &url, "gamma", "x").await.0 == 404
    })
    .await;
    let (_, body, _) = send(&client, &url, "gamma", "x").await;
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");

    let mut seen = HashSet::new();
    for i in 0..24 {
        // Distinct prompts and shared ones: the prefix tree must not pull across groups.
        let prompt = if i % 2 == 0 {
            format!("shared prefix {}", i % 4)
        } else {
            format!("p{i}")
        };
        for (model, group) in [("alpha", ["r0", "r1"]), ("beta", ["r2", "r3"])] {
            let (status, body, routed) = send(&client, &url, model, &prompt).await;
            assert_eq!(status, 200, "{body}");
            assert!(group.contains(&routed.as_str()), "{model} went to {routed}");
            assert_eq!(body["model"], model);
            seen.insert(routed);
        }
    }
    assert_eq!(
        seen.len(),
        4,
        "both replicas of each group served: {seen:?}"
    );

    let models: Value = reqwest::get(format!("{url}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["alpha", "beta"], "each model once: {models}");

    // With both alpha replicas gone, alpha gets 503 rather than a beta replica.
    let mut all = all.into_iter();
    all.next().unwrap().shutdown().await;
    all.next().unwrap().shutdown().await;
    wait_until(
        Duration::from_secs(10),
        "alpha group unavailable",
        || async { send(&client, &url, "alpha", "x").await.0 == 503 },
    )
    .await;
    let (status, _, routed) = send(&client, &url, "beta", "x").await;
    assert_eq!((status, routed.starts_with('r')), (200, true));
    router.shutdown().await;
    for sim in all {
        sim.shutdown().await;
    }
}

/// One sim serving `model`, with `loras` (`name=path`) as LoRA adapters.
async fn sim_with(model: &str, loras: &[&str]) -> SimServer {
    start_sims(
        1,
        SimConfig {
            model: model.into(),
            served_model_name: vec![model.into()],
            lora_modules: loras.iter().map(|l| l.parse().unwrap()).collect(),
            ..SimConfig::zero_delay()
        },
    )
    .await
    .pop()
    .unwrap()
}

#[tokio::test]
async fn lora_adapter_routes_to_the_replicas_that_list_it() {
    // r0: A with adapter `sql`, r1: A, r2 and r3: B.
    let all = vec![
        sim_with("model-a", &["sql=/adapters/sql"]).await,
        sim_with("model-a", &[]).await,
        sim_with("model-b", &[]).await,
        sim_with("model-b", &[]).await,
    ];
    let router = start_router(&router_yaml(&all, "cost", "")).await;
    let url = router.url();
    let client = reqwest::Client::new();

    wait_until(Duration::from_secs(10), "unknown model refused", || async {
        send(&client, &url, "no-such-model", "x").await.0 == 404
    })
    .await;
    let (_, body, _) = send(&client, &url, "no-such-model", "x").await;
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");

    let mut seen: HashSet<(String, String)> = HashSet::new();
    for i in 0..16 {
        let prompt = if i % 2 == 0 {
            format!("shared prefix {}", i % 4)
        } else {
            format!("p{i}")
        };
        for (model, group) in [
            ("model-a", &["r0", "r1"][..]),
            ("model-b", &["r2", "r3"][..]),
            ("sql", &["r0"][..]),
        ] {
            let (status, body, routed) = send(&client, &url, model, &prompt).await;
            assert_eq!(status, 200, "{model}: {body}");
            assert!(
                group.contains(&routed.as_str()),
                "{model} went to {routed}, only {group:?} list it"
            );
            assert_eq!(body["model"], model, "{body}");
            seen.insert((model.to_owned(), routed));
        }
    }
    for replica in ["r0", "r1"] {
        assert!(
            seen.contains(&("model-a".to_owned(), replica.to_owned())),
            "model-a spread over its group: {seen:?}"
        );
    }

    let models: Value = reqwest::get(format!("{url}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = models["data"].as_array().unwrap();
    let mut ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["model-a", "model-b", "sql"], "each once: {models}");
    let sql = data.iter().find(|m| m["id"] == "sql").unwrap();
    assert_eq!(sql["parent"], "model-a", "{sql}");

    router.shutdown().await;
    for sim in all {
        sim.shutdown().await;
    }
}
