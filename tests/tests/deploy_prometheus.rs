//! The Grafana dashboard against a real Prometheus: Debian's `prometheus` scrapes a router
//! serving live traffic to `vllm-sim` replicas (and the replicas themselves), and every PromQL
//! expression of every panel must parse and return data through Prometheus' HTTP API.
//!
//! Without a `prometheus` binary the tests print a notice and pass, unless `REQUIRE_PROMETHEUS`
//! is set (`.ci/run` installs Debian's package and sets it).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use prefix_router_tests::{
    dashboard,
    prometheus::{self, Job, Prometheus, QueryResult},
    *,
};

/// `host:port` of a base URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Sends requests to every router until `stop` is set: streaming and not, prompts sharing
/// prefixes (so replicas report cache hits); counts the 200s.
fn keep_traffic_flowing(
    urls: Vec<String>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let shared = "You are a helpful assistant for the prometheus dashboard test. ".repeat(8);
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            for url in &urls {
                let prompt = format!("{shared} question {}", i % 16);
                let body = completion_body(&prompt, 2, i % 2 == 0);
                let sent = client
                    .post(format!("{url}/v1/completions"))
                    .json(&body)
                    .send()
                    .await;
                if let Ok(response) = sent {
                    if response.status() == 200 && response.bytes().await.is_ok() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Why a query does not (yet) count as "returns data"; `None` when it does.
fn lacks_data(result: &QueryResult) -> Option<String> {
    match result {
        QueryResult::Rejected(why) => Some(format!("rejected: {why}")),
        QueryResult::Samples(s) if s.is_empty() => Some("empty result".to_owned()),
        QueryResult::Samples(s) if s.iter().all(|(_, v)| !v.is_finite()) => {
            Some(format!("no finite sample: {s:?}"))
        }
        QueryResult::Samples(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let Some(binary) = prometheus::binary_or_skip("prometheus") else {
        return;
    };
    let board = dashboard::load();
    let queries = dashboard::queries(&board);
    assert!(queries.len() >= 10, "found only {} queries", queries.len());

    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let cost = start_router(&router_yaml(
        &sims,
        "cost",
        "scrape:\n  interval_ms: 50\ncaps:\n  mode: static\n  max_requests: 64\n",
    ))
    .await;
    // Round robin over a live replica and a dead one, health checks off so the dead one keeps
    // its turn: upstream errors, retries and scrape errors get series too.
    let yaml = format!(
        "listen: 127.0.0.1:0\nreplicas:\n  - url: {}\n    name: r0\n  - url: {}\n    name: dead\n\
         policy: round_robin\nhealth: false\nscrape:\n  interval_ms: 50\nretry: 1\n",
        sims[0].url(),
        dead_url()
    );
    let faulty = start_router(&yaml).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let traffic = keep_traffic_flowing(vec![cost.url(), faulty.url()], stop.clone(), ok.clone());

    let jobs = [
        Job {
            name: "prefix-router".into(),
            targets: vec![authority(&cost.url()), authority(&faulty.url())],
        },
        Job {
            name: "vllm".into(),
            targets: sims.iter().map(|s| authority(&s.url())).collect(),
        },
    ];
    let prom = Prometheus::start(&binary, &jobs, 500).await;

    wait_until(
        Duration::from_secs(60),
        "Prometheus scrapes all 4 targets successfully",
        || async {
            let targets = prom.targets().await;
            targets.len() == 4 && targets.iter().all(|(_, health, _)| health == "up")
        },
    )
    .await;

    // Poll until every query returns data; a rejected expression will not heal, but keep the
    // loop simple and report everything at the deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let failures = loop {
        let mut failures = Vec::new();
        let mut rejected = false;
        for q in &queries {
            let expr = dashboard::substitute(&q.expr, &board);
            let result = prom.query(&expr).await;
            rejected |= matches!(result, QueryResult::Rejected(_));
            if let Some(why) = lacks_data(&result) {
                failures.push(format!("panel {:?} {}: `{expr}`: {why}", q.panel, q.ref_id));
            }
        }
        if failures.is_empty() || rejected || tokio::time::Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n{}\ntargets: {:?}\nprometheus log:\n{}",
        failures.join("\n"),
        prom.targets().await,
        prom.log()
    );
    assert!(ok.load(Ordering::Relaxed) > 0, "traffic went through");

    drop(prom);
    cost.shutdown().await;
    faulty.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}

#[test]
fn the_shipped_prometheus_config_passes_promtool() {
    let Some(promtool) = prometheus::binary_or_skip("promtool") else {
        return;
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/prometheus.yml"
    );
    let out = std::process::Command::new(promtool)
        .args(["check", "config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config {path}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
