//! Graceful shutdown: readiness turns 503 first while the router still serves, then the
//! listener closes, and a request in flight across all of it still completes.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prefix_router_tests::{
    SimConfig, completion_body, in_flight, router_yaml, start_router, start_sims, wait_until,
};

#[tokio::test]
async fn readiness_fails_first_then_listening_stops_and_in_flight_work_finishes() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    // The held request stalls before its headers: a long first-byte limit keeps it held
    // (the 2 s streaming default would time it out and end the drain early).
    let extra = "timeouts:\n  shutdown_drain_ms: 30000\n  shutdown_unready_ms: 3000\n  \
                 stream_first_byte_ms: 120000\n";
    let router = start_router(&router_yaml(&sims, "round_robin", extra)).await;
    let url = router.url();
    assert_eq!(
        reqwest::get(format!("{url}/readiness"))
            .await
            .unwrap()
            .status(),
        200
    );

    sims[0].faults().set_stall(true);
    let held = {
        let url = url.clone();
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{url}/v1/completions"))
                .json(&completion_body("held", 3, true))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    wait_until(Duration::from_secs(10), "request in flight", || async {
        in_flight(&router, "r0").await == 1.0
    })
    .await;

    let stopping = tokio::spawn(router.shutdown());
    wait_until(Duration::from_secs(10), "readiness 503", || async {
        reqwest::get(format!("{url}/readiness"))
            .await
            .is_ok_and(|r| r.status() == 503)
    })
    .await;
    wait_until(Duration::from_secs(20), "listener closed", || async {
        reqwest::get(format!("{url}/health")).await.is_err()
    })
    .await;
    assert!(!stopping.is_finished(), "still draining the held request");

    sims[0].faults().set_stall(false);
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    stopping.await.unwrap();
    for sim in sims {
        sim.shutdown().await;
    }
}
