//! Config hot reload: a changed file swaps replicas (the removed one drains its in-flight
//! request), policy and limits; an invalid file is rejected with file and key and the running
//! config stays; the config hash and reload outcomes are metrics.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prefix_router_tests::{
    SimConfig, SimServer, completion_body, in_flight, metric_value, routed_header, router_metrics,
    start_sims, stop, wait_until,
};
use router::{
    Config,
    config::ConfigOverrides,
    reload::{ReloadOutcome, config_hash},
};

fn yaml(sims: &[&SimServer], names: &[&str], policy: &str, max_body: usize) -> String {
    let mut y = String::from("listen: 127.0.0.1:0\nreplicas:\n");
    for (sim, name) in sims.iter().zip(names) {
        y.push_str(&format!("  - url: {}\n    name: {name}\n", sim.url()));
    }
    y.push_str(&format!(
        "policy:\n  name: {policy}\n  seed: 1\nlimits:\n  max_body_bytes: {max_body}\n\
         health:\n  interval_ms: 50\n  healthy_threshold: 1\nreload:\n  watch_ms: 50\n\
         timeouts:\n  shutdown_drain_ms: 2000\n  stream_first_byte_ms: 120000\n"
    ));
    y
}

/// Replaces the file at once (write aside, rename), as deploy tools do.
fn write(path: &std::path::Path, text: String) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

async fn count(router: &router::RouterServer, outcome: &str) -> f64 {
    let text = router_metrics(router).await;
    metric_value(
        &text,
        "router_config_reloads_total",
        &[("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn reload_swaps_replicas_policy_and_limits_and_rejects_bad_files() {
    let sims = start_sims(3, SimConfig::zero_delay()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.yaml");
    write(&path, yaml(&[&sims[0]], &["r0"], "round_robin", 100_000));
    let config = Config::load(&path, &ConfigOverrides::default()).unwrap();
    let first_hash = config_hash(&config);
    let router = router::start(config).await.unwrap();
    let handle = router.watch_config(&path, ConfigOverrides::default());
    let url = router.url();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_value(&text, "router_config_hash", &[]),
        Some(f64::from(first_hash))
    );

    // A request held on r0 while r0 leaves the config.
    sims[0].faults().set_stall(true);
    let held = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let response = client
                .post(format!("{url}/v1/completions"))
                .json(&completion_body("held", 2, true))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    wait_until(Duration::from_secs(10), "held request on r0", || async {
        in_flight(&router, "r0").await == 1.0
    })
    .await;

    write(
        &path,
        yaml(&[&sims[1], &sims[2]], &["r1", "r2"], "cost", 300),
    );
    wait_until(Duration::from_secs(10), "file change applied", || async {
        count(&router, "applied").await == 1.0
    })
    .await;
    for i in 0..6 {
        let response = client
            .post(format!("{url}/v1/completions"))
            .json(&completion_body(&format!("{i}"), 1, false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let routed = routed_header(&response);
        assert!(routed == "r1" || routed == "r2", "{routed}");
    }
    let text = router_metrics(&router).await;
    assert!(
        metric_value(
            &text,
            "router_policy_decisions_total",
            &[("policy", "cost")]
        )
        .is_some(),
        "the new policy routes: {text}"
    );
    let applied_hash = metric_value(&text, "router_config_hash", &[]).unwrap();
    assert_ne!(applied_hash, f64::from(first_hash));
    let big = client
        .post(format!("{url}/v1/completions"))
        .json(&completion_body(&"x".repeat(1000), 1, false))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413, "the new body limit is in force");

    sims[0].faults().set_stall(false);
    let (status, body) = held.await.unwrap();
    assert_eq!(
        status, 200,
        "the in-flight request on the removed replica finished"
    );
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    wait_until(
        Duration::from_secs(10),
        "r0 gone after draining",
        || async { router.replicas().snapshot().by_name("r0").is_none() },
    )
    .await;

    // An invalid file is rejected, named, and changes nothing.
    write(&path, "policy:\n  name: fastest\n".to_owned());
    let error = handle.reload().await.unwrap_err().to_string();
    assert!(
        error.contains("router.yaml") && error.contains("policy.name"),
        "{error}"
    );
    wait_until(Duration::from_secs(10), "rejection counted", || async {
        count(&router, "rejected").await >= 1.0
    })
    .await;
    let text = router_metrics(&router).await;
    assert_eq!(
        metric_value(&text, "router_config_hash", &[]),
        Some(applied_hash)
    );
    let response = client
        .post(format!("{url}/v1/completions"))
        .json(&completion_body("still", 1, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the old config still serves");

    write(
        &path,
        yaml(&[&sims[1], &sims[2]], &["r1", "r2"], "cost", 300),
    );
    wait_until(
        Duration::from_secs(10),
        "watcher saw the fixed file",
        || async { count(&router, "unchanged").await >= 1.0 },
    )
    .await;
    assert_eq!(handle.reload().await.unwrap(), ReloadOutcome::Unchanged);
    drop(handle);
    stop(sims, router).await;
}
