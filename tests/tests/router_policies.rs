//! Each policy's observable behaviour through real sockets.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::{collections::HashMap, time::Duration};

use prefix_router_tests::{
    RouterServer, cluster, completion_body, in_flight, metric_value, post_json, routed_header,
    router_metrics, stop, wait_in_flight_zero, wait_until,
};

async fn routed_to(client: &reqwest::Client, router: &RouterServer, prompt: &str) -> String {
    let response = post_json(
        client,
        format!("{}/v1/completions", router.url()),
        &completion_body(prompt, 2, false),
    )
    .await;
    assert_eq!(response.status(), 200);
    routed_header(&response)
}

#[tokio::test]
async fn round_robin_cycles_through_replicas_in_order() {
    let (sims, router) = cluster(3, "round_robin").await;
    let client = reqwest::Client::new();
    let mut order = Vec::new();
    for i in 0..9 {
        order.push(routed_to(&client, &router, &format!("prompt {i}")).await);
    }
    assert_eq!(
        order,
        ["r0", "r1", "r2", "r0", "r1", "r2", "r0", "r1", "r2"]
    );
    stop(sims, router).await;
}

#[tokio::test]
async fn random_spreads_over_every_replica() {
    let (sims, router) = cluster(3, "random").await;
    let client = reqwest::Client::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..60 {
        *counts
            .entry(routed_to(&client, &router, &format!("prompt {i}")).await)
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n >= 8), "roughly even: {counts:?}");
    stop(sims, router).await;
}

type Routed = tokio::task::JoinHandle<Result<String, reqwest::Error>>;

/// Sends one completion in the background and waits (with a generous deadline) until it is
/// either held by the stalled replica `replicas[0]` or completed with its load released
/// everywhere else: after this the next request sees exactly the held requests as load,
/// however slow the machine.
async fn send_settled(router: &RouterServer, prompt: String, replicas: &[&str]) -> Routed {
    let stalled = replicas[0];
    let before = in_flight(router, stalled).await;
    let (client, url) = (
        reqwest::Client::new(),
        format!("{}/v1/completions", router.url()),
    );
    let task = tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&completion_body(&prompt, 2, false))
            .send()
            .await;
        response.map(|r| routed_header(&r))
    });
    wait_until(
        SETTLE,
        "the request is held by the stalled replica or done",
        || async {
            let text = router_metrics(router).await;
            let load = |r: &str| {
                metric_value(&text, "router_in_flight_requests", &[("replica", r)]).unwrap_or(0.0)
            };
            load(stalled) > before
                || (task.is_finished() && replicas[1..].iter().all(|r| load(r) == 0.0))
        },
    )
    .await;
    task
}

/// Deadline for one request to settle; generous because only a broken router reaches it.
const SETTLE: Duration = Duration::from_secs(30);

/// Stalls r0, sends 30 requests one after another without waiting for stuck ones, and returns
/// how many got stuck on r0 (the router's in-flight gauge) and how many completed elsewhere.
async fn stuck_on_stalled_replica(policy: &str) -> (f64, usize) {
    let (sims, router) = cluster(3, policy).await;
    sims[0].faults().set_stall(true);
    let mut tasks = Vec::new();
    for i in 0..30 {
        tasks.push(send_settled(&router, format!("q{i}"), &["r0", "r1", "r2"]).await);
    }
    let stuck = in_flight(&router, "r0").await;
    let completed = tasks.iter().filter(|t| t.is_finished()).count();
    sims[0].faults().set_stall(false);
    for task in tasks {
        let routed = task.await.unwrap().unwrap();
        assert!(["r0", "r1", "r2"].contains(&routed.as_str()));
    }
    wait_in_flight_zero(&router, &["r0", "r1", "r2"]).await;
    stop(sims, router).await;
    (stuck, completed)
}

#[tokio::test]
async fn power_of_two_avoids_a_replica_holding_stalled_requests() {
    let (stuck, completed) = stuck_on_stalled_replica("power_of_two").await;
    assert_eq!(
        stuck, 1.0,
        "r0 is sampled once, then holds a request and loses every comparison"
    );
    assert_eq!(completed, 29);

    // The same traffic under round robin piles a third of it onto the stalled replica.
    let (stuck, completed) = stuck_on_stalled_replica("round_robin").await;
    assert_eq!(stuck, 10.0);
    assert_eq!(completed, 20);
}

#[tokio::test]
async fn power_of_two_prefers_the_replica_with_fewer_in_flight_requests() {
    let (sims, router) = cluster(2, "power_of_two").await;
    sims[1].faults().set_stall(true);
    let client = reqwest::Client::new();
    // Send requests until one is held by the stalled r1 (the others complete on r0).
    let mut held = Vec::new();
    for i in 0..20 {
        held.push(send_settled(&router, format!("h{i}"), &["r1", "r0"]).await);
        if in_flight(&router, "r1").await >= 1.0 {
            break;
        }
    }
    assert_eq!(
        in_flight(&router, "r1").await,
        1.0,
        "one request is stuck on r1"
    );
    for i in 0..10 {
        assert_eq!(routed_to(&client, &router, &format!("p{i}")).await, "r0");
    }
    sims[1].faults().set_stall(false);
    for task in held {
        assert!(["r0", "r1"].contains(&task.await.unwrap().unwrap().as_str()));
    }
    wait_in_flight_zero(&router, &["r0", "r1"]).await;
    stop(sims, router).await;
}
