//! `/metrics` is valid Prometheus text with vLLM's names, types and labels.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use prom_text::{Family, MetricType, parse_strict};
use serde_json::json;
use vllm_sim::SimConfig;

#[tokio::test]
async fn metrics_parse_as_prometheus_text_with_vllm_names() {
    let cfg = SimConfig {
        model: "m-1".into(),
        num_gpu_blocks: 1234,
        ..SimConfig::zero_delay()
    };
    let s = start(cfg).await;
    let c = client();
    for _ in 0..3 {
        complete(
            &c,
            &s,
            json!({"prompt": prompt("metrics", 50), "max_tokens": 5}),
        )
        .await;
    }
    let r = c.get(format!("{}/metrics", s.url())).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let fams = parse_strict(&text).unwrap();
    let family = |name: &str| -> &Family<'_> {
        fams.iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("missing {name}"))
    };
    assert!(
        fams.iter().all(|f| f.kind != MetricType::Untyped),
        "every sample has a # TYPE"
    );

    let expect = [
        ("vllm:num_requests_running", MetricType::Gauge),
        ("vllm:num_requests_waiting", MetricType::Gauge),
        ("vllm:kv_cache_usage_perc", MetricType::Gauge),
        ("vllm:gpu_cache_usage_perc", MetricType::Gauge),
        ("vllm:prefix_cache_queries_total", MetricType::Counter),
        ("vllm:prefix_cache_hits_total", MetricType::Counter),
        ("vllm:prompt_tokens_total", MetricType::Counter),
        ("vllm:generation_tokens_total", MetricType::Counter),
        ("vllm:request_success_total", MetricType::Counter),
        ("vllm:num_preemptions_total", MetricType::Counter),
        ("vllm:time_to_first_token_seconds", MetricType::Histogram),
        ("vllm:time_per_output_token_seconds", MetricType::Histogram),
        ("vllm:e2e_request_latency_seconds", MetricType::Histogram),
        ("vllm:request_queue_time_seconds", MetricType::Histogram),
        ("vllm:request_prefill_time_seconds", MetricType::Histogram),
        ("vllm:request_decode_time_seconds", MetricType::Histogram),
        ("vllm:cache_config_info", MetricType::Gauge),
    ];
    for (name, kind) in expect {
        let f = family(name);
        assert_eq!(f.kind, kind, "{name}");
        assert!(f.help.is_some(), "{name} has HELP");
        assert!(!f.samples.is_empty(), "{name} has samples");
        for s in &f.samples {
            assert_eq!(s.label("model_name"), Some("m-1"), "{name}");
        }
    }
    let info = &family("vllm:cache_config_info").samples[0];
    assert_eq!(info.label("block_size"), Some("16"));
    assert_eq!(info.label("num_gpu_blocks"), Some("1234"));
    assert_eq!(info.value, 1.0);

    // Histograms: cumulative buckets ending in +Inf equal to _count.
    let ttft = &family("vllm:time_to_first_token_seconds").samples;
    let buckets: Vec<f64> = ttft
        .iter()
        .filter(|s| s.name.ends_with("_bucket"))
        .map(|s| s.value)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative");
    let inf = ttft.iter().find(|s| s.label("le") == Some("+Inf")).unwrap();
    let count = ttft.iter().find(|s| s.name.ends_with("_count")).unwrap();
    assert_eq!(inf.value, 3.0);
    assert_eq!(count.value, 3.0);
    let hits = family("vllm:prefix_cache_hits_total").samples[0].value;
    assert_eq!(
        hits,
        2.0 * 48.0,
        "second and third requests hit 3 blocks each"
    );
}

#[tokio::test]
async fn load_gauges_follow_the_engine() {
    let s = start(SimConfig {
        decode_base_ms: 5.0,
        max_num_seqs: 2,
        ..SimConfig::zero_delay()
    })
    .await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (c, url) = (c.clone(), format!("{}/v1/completions", s.url()));
        // 1000 steps of 5 ms: none finishes before the clients leave.
        tasks.push(tokio::spawn(async move {
            post(
                &c,
                &url,
                &json!({"prompt": prompt(&format!("g{i}"), 20), "max_tokens": 1000}),
            )
            .await
        }));
    }
    wait_until("2 running and 3 waiting", || async {
        queue_gauges(&c, &s).await == (2.0, 3.0)
    })
    .await;
    let m = metrics_text(&c, &s).await;
    let l = [("model_name", "vllm-sim")];
    assert_eq!(sample(&m, "vllm:num_requests_running", &l), Some(2.0));
    assert_eq!(sample(&m, "vllm:num_requests_waiting", &l), Some(3.0));
    assert!(sample(&m, "vllm:kv_cache_usage_perc", &l).unwrap() > 0.0);
    for t in &tasks {
        t.abort();
    }
    wait_until("every request aborted", || async {
        queue_gauges(&c, &s).await == (0.0, 0.0)
    })
    .await;
    let m = metrics_text(&c, &s).await;
    assert_eq!(sample(&m, "vllm:kv_cache_usage_perc", &l), Some(0.0));
    let aborted = [("model_name", "vllm-sim"), ("finished_reason", "abort")];
    assert_eq!(
        sample(&m, "vllm:request_success_total", &aborted),
        Some(5.0)
    );
}
