//! loadgen end to end against in-process vllm-sim replicas (no router).

use loadgen::CancellationToken;
use loadgen::arrivals::RequestRate;
use loadgen::bench::{BenchConfig, run_benchmark};
use loadgen::dataset::{DatasetConfig, DatasetKind, PriorityMix};
use loadgen::request::Endpoint;
use prefix_router_tests::wait_until;
use std::time::Duration;
use vllm_sim::{FaultConfig, SchedulingPolicy, SimConfig};

fn bench(url: &str, n: usize) -> BenchConfig {
    BenchConfig {
        base_url: url.to_string(),
        dataset: DatasetConfig {
            num_prompts: n,
            max_output_len: 40,
            ..DatasetConfig::default()
        },
        max_concurrency: Some(8),
        progress: false,
        ..BenchConfig::default()
    }
}

#[tokio::test]
async fn streaming_chat_run_counts_tokens_and_scrapes_the_replica() {
    let sim = vllm_sim::start(SimConfig::zero_delay()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("requests.jsonl");
    let cfg = BenchConfig {
        replica_urls: vec![sim.url()],
        dump_requests: Some(dump.clone()),
        ..bench(&sim.url(), 40)
    };
    let s = run_benchmark(&cfg, CancellationToken::new()).await.unwrap();
    let m = &s.client;
    assert_eq!((m.completed, m.failed), (40, 0), "{:?}", m.failed_by_reason);
    assert_eq!(
        s.params.model, "vllm-sim",
        "model discovered from /v1/models"
    );
    assert_eq!(s.token_source, "server_usage");
    assert_eq!(s.requests_without_usage, 0);
    // ignore_eos: the sim generates exactly max_tokens for every request.
    let dumped: Vec<serde_json::Value> = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dumped.len(), 40);
    let asked: u64 = dumped
        .iter()
        .map(|d| d["body"]["max_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(m.total_output_tokens, asked);
    assert_eq!(dumped[0]["path"], "/v1/chat/completions");
    assert!(m.ttft_ms.mean > 0.0 && m.ttft_ms.mean <= m.e2e_ms.mean);
    assert!(m.itl_ms.mean > 0.0 && m.tpot_ms.mean > 0.0);
    // The replica saw exactly our requests and tokens.
    let r = s.replicas.as_ref().unwrap();
    assert_eq!(r.successes, 40.0);
    assert_eq!(r.prompt_tokens, m.total_input_tokens as f64);
    assert_eq!(r.generation_tokens, m.total_output_tokens as f64);
    assert!(r.means_ms.ttft.is_some() && r.means_ms.e2e.is_some());
    // One replica with a big cache: hits happen, and never exceed the oracle's.
    let oracle = s.oracle.unwrap();
    assert_eq!(
        oracle.prompt_tokens, m.total_input_tokens,
        "same tokenizer and template"
    );
    assert!(r.prefix_cache_hit_rate > 0.0);
    assert!(
        r.prefix_cache_hit_rate <= oracle.hit_rate + 1e-9,
        "{} > {}",
        r.prefix_cache_hit_rate,
        oracle.hit_rate
    );
    // No router: no x-routed-to header, so no placement.
    assert!(s.placement.per_replica.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn completions_without_streaming_and_with_priorities() {
    let sim = vllm_sim::start(SimConfig::zero_delay()).await.unwrap();
    let mut cfg = bench(&sim.url(), 30);
    cfg.endpoint = Endpoint::Completions;
    cfg.stream = false;
    cfg.model = Some("vllm-sim".into());
    cfg.dataset.kind = DatasetKind::SharedPrefix;
    cfg.dataset.shared_prefix.system_prompt_len = 200;
    cfg.dataset.priority_mix = Some("0:0.5,1:0.5".parse::<PriorityMix>().unwrap());
    let fcfs = run_benchmark(&cfg, CancellationToken::new()).await.unwrap();
    // Like vLLM, a FCFS replica refuses non-zero priorities and says why.
    assert_eq!(
        fcfs.client.failed_by_reason.get("http_400").copied(),
        Some(fcfs.per_priority[1].metrics.failed)
    );
    assert!(
        fcfs.client.failure_examples["http_400"]
            .to_lowercase()
            .contains("priority")
    );
    sim.shutdown().await;
    let sim = vllm_sim::start(SimConfig {
        scheduling_policy: SchedulingPolicy::Priority,
        ..SimConfig::zero_delay()
    })
    .await
    .unwrap();
    cfg.base_url = sim.url();
    cfg.request_rate = RequestRate::PerSecond(500.0);
    let s = run_benchmark(&cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(s.client.completed, 30, "{:?}", s.client.failed_by_reason);
    assert_eq!(
        s.client.ttft_ms, s.client.e2e_ms,
        "without streaming TTFT is E2E"
    );
    assert_eq!(s.client.itl_ms.mean, 0.0);
    assert_eq!(s.per_priority.len(), 2);
    let per_class: u64 = s.per_priority.iter().map(|c| c.metrics.completed).sum();
    assert_eq!(per_class, 30);
    assert!(s.groups >= 1 && s.groups <= 8);
    sim.shutdown().await;
}

#[tokio::test]
async fn failures_are_counted_by_reason() {
    let sim = vllm_sim::start(SimConfig {
        faults: FaultConfig {
            fail_fraction: 1.0,
            fail_status: 503,
            ..FaultConfig::default()
        },
        ..SimConfig::zero_delay()
    })
    .await
    .unwrap();
    let s = run_benchmark(&bench(&sim.url(), 10), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.client.completed, 0);
    assert_eq!(s.client.failed_by_reason.get("http_503"), Some(&10));
    let example = &s.client.failure_examples["http_503"];
    assert!(
        !example.is_empty() && !example.starts_with('{'),
        "message extracted: {example}"
    );
    sim.shutdown().await;

    // Nothing listening: connection errors, no panic, no hang.
    let s = run_benchmark(&bench("http://127.0.0.1:9", 3), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.client.failed_by_reason.get("connect"), Some(&3));
    // With warmup the run refuses to start and says why.
    let mut cfg = bench("http://127.0.0.1:9", 3);
    cfg.warmup = true;
    let err = run_benchmark(&cfg, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("warmup"), "{err}");
}

#[tokio::test]
async fn cancel_stops_sending_and_drains_in_flight_requests() {
    // A stalled replica never answers: in-flight requests are cut at the drain timeout.
    let sim = vllm_sim::start(SimConfig {
        faults: FaultConfig {
            stall: true,
            ..FaultConfig::default()
        },
        ..SimConfig::zero_delay()
    })
    .await
    .unwrap();
    let mut cfg = bench(&sim.url(), 200);
    cfg.model = Some("m".into());
    cfg.request_rate = RequestRate::PerSecond(50.0);
    cfg.drain_timeout = Duration::from_millis(300);
    let cancel = CancellationToken::new();
    // Cancel once the replica holds some of the run's requests.
    let trigger = async {
        wait_until(Duration::from_secs(30), "a request held", || async {
            sim.faults().held() > 0
        })
        .await;
        cancel.cancel();
    };
    // The drain timeout (300 ms) ends it; the deadline only catches a run that never stops.
    let (s, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(run_benchmark(&cfg, cancel.clone()), trigger)
    })
    .await
    .expect("the run stops after cancellation");
    let s = s.unwrap();
    assert!(s.interrupted);
    let sent = s.client.completed + s.client.failed;
    assert!(sent > 0 && sent < 200, "sent {sent}");
    assert_eq!(
        s.client.failed_by_reason.get("interrupted").copied(),
        Some(sent)
    );

    // Without cancellation, the per-request timeout ends each stalled request.
    let mut cfg = bench(&sim.url(), 4);
    cfg.model = Some("m".into());
    cfg.request_timeout = Duration::from_millis(200);
    let s = run_benchmark(&cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(s.client.failed_by_reason.get("timeout"), Some(&4));
    assert!(!s.interrupted);
    sim.shutdown().await;
}

#[tokio::test]
async fn tokenizer_counts_replace_server_usage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    // Word-level tokenizer: one token per whitespace/punctuation-separated word.
    std::fs::write(
        &path,
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
           "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
           "model":{"type":"WordLevel","vocab":{"[UNK]":0},"unk_token":"[UNK]"}}"#,
    )
    .unwrap();
    let sim = vllm_sim::start(SimConfig::zero_delay()).await.unwrap();
    let mut cfg = bench(&sim.url(), 10);
    cfg.tokenizer = Some(path);
    let s = run_benchmark(&cfg, CancellationToken::new()).await.unwrap();
    assert!(
        s.token_source.starts_with("tokenizer:"),
        "{}",
        s.token_source
    );
    let with_usage = run_benchmark(&bench(&sim.url(), 10), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.client.completed, 10);
    // Words are longer than the sim's 4-byte tokens: fewer tokens than the server reports.
    assert!(s.client.total_input_tokens > 0);
    assert!(s.client.total_input_tokens < with_usage.client.total_input_tokens);
    sim.shutdown().await;
}

#[tokio::test]
async fn prefill_baseline_splits_latency() {
    let sim = vllm_sim::start(SimConfig {
        port: 0,
        speedup: 20.0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let baseline_file = dir.path().join("prefill.jsonl");
    let mut prefill_only = bench(&sim.url(), 12);
    prefill_only.dataset.min_output_len = 1;
    prefill_only.dataset.max_output_len = 1;
    let base = run_benchmark(&prefill_only, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(base.client.total_output_tokens, 12);
    loadgen::output::append_jsonl(&baseline_file, &base).unwrap();
    // Same prompts again, from a cold cache as in the baseline.
    let client = loadgen::bench::http_client().unwrap();
    assert!(
        loadgen::cluster::reset_prefix_caches(&client, &[sim.url()])
            .await
            .is_empty()
    );
    let mut full = bench(&sim.url(), 12);
    full.dataset.min_output_len = 30;
    full.prefill_baseline = Some(baseline_file);
    let s = run_benchmark(&full, CancellationToken::new())
        .await
        .unwrap();
    let split = s.prefill.expect("baseline given");
    assert!((split.prefill_latency_ms - base.client.e2e_ms.mean).abs() < 1e-9);
    assert!(
        (split.generation_latency_ms - (s.client.e2e_ms.mean - base.client.e2e_ms.mean)).abs()
            < 1e-6,
        "{split:?} base {:?} run {:?}",
        base.client.e2e_ms,
        s.client.e2e_ms
    );
    assert!(split.generation_latency_ms > 0.0 && split.generation_throughput_tok_s > 0.0);
    assert!(split.prefill_throughput_tok_s > 0.0);
    // A missing baseline file is refused before anything is sent.
    full.prefill_baseline = Some(dir.path().join("missing.jsonl"));
    let err = run_benchmark(&full, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
    sim.shutdown().await;
}
