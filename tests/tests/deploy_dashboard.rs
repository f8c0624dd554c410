//! The Grafana dashboard in `deploy/` only queries series that a live router and a live replica
//! really export: a renamed metric breaks this test instead of silently emptying a panel.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use prefix_router_tests::*;

/// Every `router_*` and `vllm:*` series name used in the dashboard's PromQL expressions.
fn dashboard_series() -> Vec<String> {
    let board = dashboard::load();
    assert!(dashboard::queries(&board).len() >= 10, "too few queries");
    dashboard::series_names(&board)
}

#[test]
fn dashboard_is_sane_json_with_units_descriptions_and_a_datasource_variable() {
    let board = dashboard::load();
    let vars = board["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let datasource = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus datasource variable");
    let ds_ref = format!("${{{}}}", datasource["name"].as_str().unwrap());
    let panels = dashboard::panels(&board);
    assert!(panels.len() >= 10, "only {} panels", panels.len());
    let mut ids = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        let id = panel["id"].as_u64();
        match id {
            None => problems.push(format!("{title}: no numeric id")),
            Some(id) if !ids.insert(id) => problems.push(format!("{title}: duplicate id {id}")),
            Some(_) => {}
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            problems.push(format!("{title}: no unit"));
        }
        if panel["description"]
            .as_str()
            .is_none_or(|d| d.trim().len() < 10)
        {
            problems.push(format!("{title}: no description"));
        }
        if panel["datasource"]["uid"] != ds_ref.as_str() {
            problems.push(format!("{title}: datasource is not {ds_ref}"));
        }
        let targets = panel["targets"].as_array().map_or(0, Vec::len);
        if targets == 0 {
            problems.push(format!("{title}: no query"));
        }
        for t in panel["targets"].as_array().into_iter().flatten() {
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{title}: target {} without expr", t["refId"]));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
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
