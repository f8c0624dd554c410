//! loadgen through the in-process router: placement counts, result files, report, sweep.

use loadgen::CancellationToken;
use loadgen::arrivals::RequestRate;
use loadgen::bench::{BenchConfig, http_client, run_benchmark};
use loadgen::cli::{Cli, Command};
use loadgen::cluster::{router_config, router_yaml, start_router, start_sims};
use loadgen::dataset::DatasetConfig;
use loadgen::output::read_csv;
use loadgen::sweep::{Replicas, SweepPlan, run_sweep};
use std::collections::BTreeMap;
use vllm_sim::{SchedulingPolicy, SimConfig};

fn small_bench(n: usize) -> BenchConfig {
    BenchConfig {
        dataset: DatasetConfig {
            num_prompts: n,
            max_output_len: 30,
            ..DatasetConfig::default()
        },
        max_concurrency: Some(6),
        progress: false,
        ..BenchConfig::default()
    }
}

#[tokio::test]
async fn round_robin_router_spreads_requests_and_headers_are_counted() {
    let sims = start_sims(2, &SimConfig::zero_delay()).await.unwrap();
    let urls: Vec<String> = sims.iter().map(|s| s.url()).collect();
    let client = http_client().unwrap();
    let yaml = router_yaml(None, &urls, "round_robin", 1).unwrap();
    let router = start_router(router_config(&yaml).unwrap(), &client)
        .await
        .unwrap();
    let cfg = BenchConfig {
        base_url: router.url(),
        replica_urls: urls.clone(),
        ..small_bench(20)
    };
    let s = run_benchmark(&cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(s.client.completed, 20, "{:?}", s.client.failed_by_reason);
    // The router names replicas by host:port; round robin gives each exactly half.
    let expected: BTreeMap<String, u64> = sims.iter().map(|s| (s.addr().to_string(), 10)).collect();
    assert_eq!(s.placement.per_replica, expected);
    let over_time: u64 = s.placement.over_time.values().flatten().sum();
    assert_eq!(over_time, 20);
    assert!((s.placement.max_over_mean() - 1.0).abs() < 1e-9);
    // Each replica's own counters agree with the client's placement.
    let r = s.replicas.as_ref().unwrap();
    for d in &r.per_replica {
        assert_eq!(d.successes, 10.0, "{}", d.url);
    }
    router.shutdown().await;
    for s in sims {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn run_command_writes_json_csv_and_a_complete_report() {
    let sim_cfg = SimConfig {
        scheduling_policy: SchedulingPolicy::Priority,
        ..SimConfig::zero_delay()
    };
    let sims = start_sims(2, &sim_cfg).await.unwrap();
    let urls: Vec<String> = sims.iter().map(|s| s.url()).collect();
    let client = http_client().unwrap();
    let yaml = router_yaml(None, &urls, "power_of_two", 1).unwrap();
    let router = start_router(router_config(&yaml).unwrap(), &client)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("results.jsonl");
    let cli = Cli::parse_args([
        "loadgen",
        "--base-url",
        &router.url(),
        "--num-prompts",
        "24",
        "--max-output-len",
        "20",
        "--request-rate",
        "200",
        "--max-concurrency",
        "8",
        "--priority-mix",
        "0:0.5,1:0.5",
        "--slo-ttft-ms",
        "10000",
        "--replica-urls",
        &urls.join(","),
        "--label",
        "e2e",
        "--disable-progress",
        "--output-file",
        jsonl.to_str().unwrap(),
    ])
    .unwrap();
    assert!(cli.command.is_none());
    for _ in 0..2 {
        loadgen::commands::run_command(&cli.run, CancellationToken::new())
            .await
            .unwrap();
    }
    // JSON lines: one object per run with the expected keys.
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let runs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 2);
    for key in [
        "params",
        "client",
        "per_priority",
        "placement",
        "replicas",
        "oracle",
        "token_source",
    ] {
        assert!(runs[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(runs[0]["client"]["completed"], 24);
    assert_eq!(runs[0]["client"]["good_requests"], 24);
    // CSV: a header and one row per run, parameters first.
    let csv = dir.path().join("results.csv");
    let raw = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(raw.lines().count(), 3);
    assert!(raw.starts_with("label,policy,base_url,"));
    let rows = read_csv(&csv).unwrap();
    assert_eq!(rows[0]["label"], "e2e");
    assert_eq!(rows[0]["completed"], "24");
    assert!(rows[0]["requests_per_replica"].contains('='));
    assert!(!rows[0]["replica_hit_rate"].is_empty());
    // Report from the CSV: index.html references PNG and SVG files that exist.
    let out = dir.path().join("report");
    let index = loadgen::report::write_report(&csv, &out).unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    let mut referenced = 0;
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let f = &part[..part.find('"').unwrap()];
            let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
            assert!(meta.len() > 500, "{f} too small");
            referenced += 1;
        }
    }
    assert!(referenced >= 20, "only {referenced} files referenced");
    assert!(html.contains("ttft_by_priority.png") && html.contains("cache_hit_rate.svg"));
    router.shutdown().await;
    for s in sims {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn sweep_runs_every_policy_and_rate_into_one_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv");
    let plan = SweepPlan {
        policies: vec!["round_robin".into(), "power_of_two".into()],
        schedulers: Vec::new(),
        admission: Default::default(),
        rates: vec![RequestRate::Infinite, RequestRate::PerSecond(400.0)],
        bench: small_bench(16),
        router_base: None,
        replicas: Replicas::Simulated {
            config: Box::new(SimConfig::zero_delay()),
            count: 2,
        },
        jsonl: Some(dir.path().join("sweep.jsonl")),
        csv: Some(csv.clone()),
    };
    let results = run_sweep(&plan, CancellationToken::new()).await.unwrap();
    assert_eq!(results.len(), 4);
    let rows = read_csv(&csv).unwrap();
    let combos: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["policy"].clone(), r["request_rate"].clone()))
        .collect();
    assert_eq!(
        combos,
        vec![
            ("round_robin".into(), "inf".into()),
            ("round_robin".into(), "400".into()),
            ("power_of_two".into(), "inf".into()),
            ("power_of_two".into(), "400".into()),
        ]
    );
    for (r, s) in rows.iter().zip(&results) {
        assert_eq!(r["completed"], "16");
        // Caches are reset between runs: no run can beat the oracle (a cold unlimited cache).
        // Without the reset, later runs would find their whole prompts cached.
        let hit = s.replicas.as_ref().unwrap().prefix_cache_hit_rate;
        let oracle = s.oracle.unwrap().hit_rate;
        assert!(
            hit <= oracle + 1e-9,
            "replica hit rate {hit} > oracle {oracle}"
        );
    }
    // An unknown policy is refused before anything runs.
    let bad = SweepPlan {
        policies: vec!["no_such_policy".into()],
        ..plan.clone()
    };
    let err = run_sweep(&bad, CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("no_such_policy"), "{err}");
}

#[tokio::test]
async fn demo_compares_two_policies_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::parse_args([
        "loadgen",
        "demo",
        "--out",
        dir.path().to_str().unwrap(),
        "--num-prompts",
        "30",
        "--speedup",
        "50",
        "--request-rate",
        "100",
    ])
    .unwrap();
    let Some(Command::Demo(args)) = cli.command else {
        panic!("demo not parsed")
    };
    let results = loadgen::demo::demo_command(&args, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].params.policy.as_deref(), Some("power_of_two"));
    for r in &results {
        assert_eq!(r.client.completed, 30, "{:?}", r.client.failed_by_reason);
        assert_eq!(r.placement.per_replica.values().sum::<u64>(), 30);
        assert_eq!(r.placement.per_replica.len(), 4);
    }
    assert_eq!(
        read_csv(&dir.path().join("demo-results.csv"))
            .unwrap()
            .len(),
        2
    );
    assert!(dir.path().join("index.html").exists());
    assert!(dir.path().join("cache_hit_rate.png").exists());
}
