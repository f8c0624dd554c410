//! The admin API: off without a token, 401 with a wrong one, list / add / drain replicas while
//! a request is in flight on the drained one.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prefix_router_tests::{
    SimConfig, completion_body, in_flight, router_yaml, start_router, start_sims, stop, wait_until,
};
use serde_json::{Value, json};

const TOKEN: &str = "adm-token";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn list(url: &str) -> Vec<Value> {
    let response = client()
        .get(format!("{url}/admin/replicas"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

fn find<'a>(replicas: &'a [Value], name: &str) -> Option<&'a Value> {
    replicas.iter().find(|r| r["name"] == name)
}

#[tokio::test]
async fn admin_routes_are_off_without_a_token_and_need_the_right_one() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let off = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let response = client()
        .get(format!("{}/admin/replicas", off.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    off.shutdown().await;

    let on = start_router(&router_yaml(
        &sims,
        "round_robin",
        &format!("admin:\n  token: {TOKEN}\n"),
    ))
    .await;
    for token in [None, Some("wrong"), Some("adm-toke")] {
        let mut request = client().get(format!("{}/admin/replicas", on.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    }
    let bad = client()
        .post(format!("{}/admin/replicas", on.url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "url": "ftp://nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "a bad spec is refused");
    let missing = client()
        .delete(format!("{}/admin/replicas/nope", on.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    on.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn add_list_and_drain_with_a_request_in_flight() {
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    // The held request stalls before its headers: a long first-byte limit keeps it held.
    let router = start_router(&router_yaml(
        &sims[..1],
        "round_robin",
        &format!("admin:\n  token: {TOKEN}\ntimeouts:\n  stream_first_byte_ms: 120000\n"),
    ))
    .await;
    let url = router.url();

    // A request held by r0's replica stays in flight until the stall is lifted.
    sims[0].faults().set_stall(true);
    let held = {
        let url = url.clone();
        tokio::spawn(async move {
            let response = client()
                .post(format!("{url}/v1/completions"))
                .json(&completion_body("held", 2, true))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            (status, body)
        })
    };
    wait_until(
        Duration::from_secs(10),
        "request in flight on r0",
        || async { in_flight(&router, "r0").await == 1.0 },
    )
    .await;

    let added = client()
        .post(format!("{url}/admin/replicas"))
        .bearer_auth(TOKEN)
        .json(&json!({ "url": sims[1].url(), "name": "added", "weight": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 202);
    wait_until(
        Duration::from_secs(10),
        "added listed with its models",
        || async {
            let replicas = list(&url).await;
            find(&replicas, "added").is_some_and(|r| r["models"] == json!(["vllm-sim"]))
        },
    )
    .await;
    let replicas = list(&url).await;
    let r0 = find(&replicas, "r0").unwrap();
    assert_eq!(r0["healthy"], true, "{r0}");
    assert_eq!(r0["draining"], false, "{r0}");
    assert_eq!(r0["load"]["in_flight_requests"], 1, "{r0}");
    assert_eq!(find(&replicas, "added").unwrap()["weight"], 2);

    let drain = client()
        .delete(format!("{url}/admin/replicas/r0"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(drain.status(), 202);
    wait_until(Duration::from_secs(10), "r0 draining", || async {
        find(&list(&url).await, "r0").is_some_and(|r| r["draining"] == true)
    })
    .await;
    for i in 0..4 {
        let response = client()
            .post(format!("{url}/v1/completions"))
            .json(&completion_body(&format!("new {i}"), 2, false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-routed-to"],
            "added",
            "no new requests on a draining replica"
        );
    }
    assert!(
        find(&list(&url).await, "r0").is_some(),
        "a draining replica with work in flight stays"
    );

    sims[0].faults().set_stall(false);
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    wait_until(Duration::from_secs(10), "r0 removed once idle", || async {
        let replicas = list(&url).await;
        replicas.len() == 1 && find(&replicas, "added").is_some()
    })
    .await;
    stop(sims, router).await;
}
