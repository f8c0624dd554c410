//! Replicas going down and coming back: active probes, passive marking, connect retries.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::time::Duration;

use prefix_router_tests::{
    RouterServer, SimConfig, completion_body, dead_url, metric_value, post_json, router_metrics,
    router_readiness, router_yaml, start_router, start_sims, stop, wait_in_flight_zero, wait_until,
};

async fn healthy_gauge(router: &RouterServer, replica: &str) -> Option<f64> {
    metric_value(
        &router_metrics(router).await,
        "router_replica_healthy",
        &[("replica", replica)],
    )
}

async fn send(client: &reqwest::Client, router: &RouterServer) -> (u16, String) {
    let r = post_json(
        client,
        format!("{}/v1/completions", router.url()),
        &completion_body("are you there", 2, false),
    )
    .await;
    let routed = r
        .headers()
        .get("x-routed-to")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), routed)
}

#[tokio::test]
async fn a_replica_that_goes_down_gets_no_traffic_and_gets_it_back_when_it_returns() {
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    let client = reqwest::Client::new();
    let mut sims = sims.into_iter();
    let (r0, r1) = (sims.next().unwrap(), sims.next().unwrap());
    let r0_port = r0.addr().port();

    r0.shutdown().await;
    // Until probes notice, connect failures on r0 are retried on r1: every request succeeds.
    for _ in 0..6 {
        assert_eq!(send(&client, &router).await, (200, "r1".to_owned()));
    }
    wait_until(Duration::from_secs(5), "r0 marked unhealthy", || async {
        healthy_gauge(&router, "r0").await == Some(0.0)
    })
    .await;
    let metrics = router_metrics(&router).await;
    assert!(
        metric_value(&metrics, "router_retries_total", &[("replica", "r0")]).unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    let ready = router_readiness(&router).await;
    assert_eq!(ready["healthy_replicas"], 1);

    // Bring r0 back on the same port.
    let mut config = SimConfig::zero_delay();
    config.port = r0_port;
    let r0 = vllm_sim::start(config).await.unwrap();
    wait_until(Duration::from_secs(5), "r0 healthy again", || async {
        healthy_gauge(&router, "r0").await == Some(1.0)
    })
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, routed) = send(&client, &router).await;
        assert_eq!(status, 200);
        seen.push(routed);
    }
    assert!(
        seen.contains(&"r0".to_owned()) && seen.contains(&"r1".to_owned()),
        "{seen:?}"
    );
    router.shutdown().await;
    r0.shutdown().await;
    r1.shutdown().await;
}

#[tokio::test]
async fn refused_connections_take_a_replica_out_until_it_accepts_again() {
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let router = start_router(&router_yaml(&sims, "round_robin", "")).await;
    sims[0].faults().set_refuse_connections(true);
    wait_until(Duration::from_secs(5), "r0 marked unhealthy", || async {
        healthy_gauge(&router, "r0").await == Some(0.0)
    })
    .await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        assert_eq!(send(&client, &router).await, (200, "r1".to_owned()));
    }
    sims[0].faults().set_refuse_connections(false);
    wait_until(Duration::from_secs(5), "r0 healthy again", || async {
        healthy_gauge(&router, "r0").await == Some(1.0)
    })
    .await;
    let routed: Vec<String> = [
        send(&client, &router).await.1,
        send(&client, &router).await.1,
    ]
    .into();
    assert!(routed.contains(&"r0".to_owned()), "{routed:?}");
    stop(sims, router).await;
}

#[tokio::test]
async fn retries_stop_at_the_budget() {
    // Three dead replicas and a budget of one retry: two connect attempts, then 502.
    let dead: Vec<String> = (0..3).map(|_| dead_url()).collect();
    let mut yaml = String::from("listen: 127.0.0.1:0\nreplicas:\n");
    for (i, url) in dead.iter().enumerate() {
        yaml.push_str(&format!("  - url: {url}\n    name: d{i}\n"));
    }
    yaml.push_str(
        "health:\n  enabled: false\nretry:\n  max_retries: 1\npolicy:\n  name: round_robin\n",
    );
    let router = start_router(&yaml).await;
    let (status, _) = send(&reqwest::Client::new(), &router).await;
    assert_eq!(status, 502);
    let metrics = router_metrics(&router).await;
    let connects: f64 = (0..3)
        .map(|i| {
            let replica = format!("d{i}");
            metric_value(
                &metrics,
                "router_upstream_errors_total",
                &[("replica", &replica), ("kind", "connect")],
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(connects, 2.0, "{metrics}");
    wait_in_flight_zero(&router, &["d0", "d1", "d2"]).await;
    router.shutdown().await;
}
