//! Membership changes arriving on the change stream, and graceful shutdown with drain.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::time::Duration;

use futures_util::StreamExt;
use prefix_router_tests::{
    SimConfig, completion_body, post_json, routed_header, router_metrics, router_yaml,
    start_router, start_sims, stop, wait_until,
};
use router::{ReplicaChange, config::ReplicaSpec};

#[tokio::test]
async fn replicas_added_and_removed_through_the_change_stream() {
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims[..1], "round_robin", "")).await;
    let client = reqwest::Client::new();
    let routed = || async {
        let r = post_json(
            &client,
            format!("{}/v1/completions", router.url()),
            &completion_body("x", 1, false),
        )
        .await;
        routed_header(&r)
    };

    let mut spec = ReplicaSpec::new(sims[1].url());
    spec.name = Some("added".into());
    router
        .changes()
        .send(ReplicaChange::Upsert(spec))
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "new replica in the set", || async {
        router.replicas().snapshot().all().len() == 2
    })
    .await;
    let picks = [routed().await, routed().await];
    assert!(picks.contains(&"added".to_owned()), "{picks:?}");

    router
        .changes()
        .send(ReplicaChange::Remove("r0".into()))
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "r0 removed", || async {
        router.replicas().snapshot().all().len() == 1
    })
    .await;
    for _ in 0..3 {
        assert_eq!(routed().await, "added");
    }
    let metrics = router_metrics(&router).await;
    assert!(
        !metrics.contains("router_replica_healthy{replica=\"r0\"}"),
        "removed replicas leave the gauges: {metrics}"
    );
    stop(sims, router).await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish_and_then_stops_listening() {
    let mut config = SimConfig::zero_delay();
    config.decode_base_ms = 20.0;
    let sims = start_sims(1, config).await;
    // A drain timeout far above the stream's 400 ms, so only a router that cuts streams (not
    // a slow machine) ends it early.
    let drain = "timeouts:\n  shutdown_drain_ms: 60000\n";
    let router = start_router(&router_yaml(&sims, "round_robin", drain)).await;
    let url = router.url();
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&completion_body("drain me", 20, true))
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(body).unwrap()
    });
    router.shutdown().await;
    let body = reader.await.unwrap();
    assert!(
        body.trim_end().ends_with("data: [DONE]"),
        "the stream completed: {body}"
    );
    assert!(
        reqwest::get(format!("{url}/health")).await.is_err(),
        "no longer listening"
    );
    sims.into_iter().next().unwrap().shutdown().await;
}
