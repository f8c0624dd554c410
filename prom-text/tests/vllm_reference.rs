//! A real vLLM 0.26.0 `/metrics` page (a copy of `shared/reference/vllm-0.26.0/metrics.txt`)
//! parses strictly, with the families, types and labels the router and loadgen read.
#![allow(clippy::unwrap_used)]

use prom_text::{MetricType, parse_strict, samples, sum, value};

const PAGE: &str = include_str!("data/vllm-0.26.0-metrics.txt");

#[test]
fn every_line_parses_and_every_sample_has_a_typed_family() {
    let fams = parse_strict(PAGE).unwrap();
    let type_lines = PAGE.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(
        fams.len(),
        type_lines,
        "no sample outside a declared family"
    );
    assert!(
        fams.iter()
            .all(|f| f.kind != MetricType::Untyped && f.help.is_some())
    );
    let sample_lines = PAGE
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        samples(PAGE).count(),
        sample_lines,
        "lenient reader skips nothing"
    );
    let grouped: usize = fams.iter().map(|f| f.samples.len()).sum();
    assert_eq!(grouped, sample_lines);
}

#[test]
fn the_series_the_router_reads() {
    let fams = parse_strict(PAGE).unwrap();
    let kind = |n: &str| fams.iter().find(|f| f.name == n).map(|f| f.kind);
    assert_eq!(kind("vllm:num_requests_running"), Some(MetricType::Gauge));
    assert_eq!(
        kind("vllm:prefix_cache_hits_total"),
        Some(MetricType::Counter)
    );
    assert_eq!(
        kind("vllm:time_to_first_token_seconds"),
        Some(MetricType::Histogram)
    );
    let m = [("engine", "0"), ("model_name", "m")];
    assert_eq!(value(PAGE, "vllm:num_requests_running", &m), Some(0.0));
    assert_eq!(
        value(PAGE, "vllm:num_requests_running", &[("engine", "1")]),
        None
    );
    let info = samples(PAGE)
        .find(|s| s.name == "vllm:cache_config_info")
        .unwrap();
    assert_eq!(info.label("block_size"), Some("16"));
    assert_eq!(info.label("num_gpu_blocks"), Some("5120"));
    assert_eq!(info.label("kv_cache_dtype_skip_layers"), Some("[]"));
    assert_eq!(info.value, 1.0);
    assert_eq!(sum(PAGE, "python_gc_collections_total", &[]), 1830.0);
}

#[test]
fn histograms_are_cumulative_and_end_at_count() {
    let fams = parse_strict(PAGE).unwrap();
    // `http_request_duration_seconds` has no samples before its first request.
    let hists = fams
        .iter()
        .filter(|f| f.kind == MetricType::Histogram && !f.samples.is_empty());
    assert_eq!(hists.clone().count(), 16);
    for f in hists {
        let buckets: Vec<_> = f
            .samples
            .iter()
            .filter(|s| s.name.ends_with("_bucket"))
            .collect();
        assert!(!buckets.is_empty(), "{}", f.name);
        assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
        let last = buckets.last().unwrap();
        assert_eq!(last.label("le"), Some("+Inf"), "{}", f.name);
        let count = f
            .samples
            .iter()
            .find(|s| s.name.ends_with("_count"))
            .unwrap();
        assert_eq!(last.value, count.value, "{}", f.name);
    }
}
