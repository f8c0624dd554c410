//! The Grafana dashboard in `deploy/` only queries series that a live router and a live replica
//! really export: a renamed metric breaks this test instead of silently emptying a panel.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use prefix_router_tests::*;

/// Every `router_*` and `vllm:*` series name used in the dashboard's PromQL expressions.
fn dashboard_series() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/prefix-router.json"
    );
    let text = std::fs::read_to_string(path).expect("read the dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(exprs.len() >= 10, "found only {} expressions", exprs.len());
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')))
        .filter(|t| t.starts_with("router_") || t.starts_with("vllm:"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v {
                    serde_json::Value::String(s) if key == "expr" => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

fn exports(metrics: &str, name: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
}

/// Sends `n` small requests through `router`, alternating streaming and not; all must succeed.
async fn traffic(router: &RouterServer, n: usize) {
    let client = reqwest::Client::new();
    for i in 0..n {
        let r = post_json(
            &client,
            format!("{}/v1/completions", router.url()),
            &completion_body(&format!("dashboard {i}"), 2, i % 2 == 0),
        )
        .await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
}

#[tokio::test]
async fn every_series_the_dashboard_queries_is_exported() {
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    // The default policy over two live replicas: routing decisions, scraped load, static caps.
    let cost = start_router(&router_yaml(
        &sims,
        "cost",
        "scrape:\n  interval_ms: 50\ncaps:\n  mode: static\n",
    ))
    .await;
    wait_until(
        std::time::Duration::from_secs(5),
        "both replicas scraped",
        || async {
            let m = router_metrics(&cost).await;
            ["r0", "r1"].iter().all(|r| {
                metric_value(&m, "router_scraped_kv_cache_usage", &[("replica", r)]).is_some()
            })
        },
    )
    .await;
    traffic(&cost, 4).await;

    // Round robin over a live replica and one that refuses connections, health checks off so
    // the dead one keeps its turn: upstream errors, retries and scrape errors.
    let yaml = format!(
        "listen: 127.0.0.1:0\nreplicas:\n  - url: {}\n    name: r0\n  - url: {}\n    name: dead\n\
         policy:\n  name: round_robin\nhealth:\n  enabled: false\nscrape:\n  interval_ms: 50\n\
         retry:\n  max_retries: 1\n",
        sims[0].url(),
        dead_url()
    );
    let faulty = start_router(&yaml).await;
    traffic(&faulty, 4).await;
    wait_until(
        std::time::Duration::from_secs(5),
        "the dead replica's scrape failed",
        || async { exports(&router_metrics(&faulty).await, "router_scrape_errors_total") },
    )
    .await;

    let router_text = router_metrics(&cost).await + &router_metrics(&faulty).await;
    let sim_text = reqwest::get(format!("{}/metrics", sims[0].url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let missing: Vec<String> = dashboard_series()
        .into_iter()
        .filter(|name| {
            let text = if name.starts_with("vllm:") {
                &sim_text
            } else {
                &router_text
            };
            !exports(text, name)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard series not exported: {missing:?}\n{router_text}"
    );
    cost.shutdown().await;
    faulty.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}
