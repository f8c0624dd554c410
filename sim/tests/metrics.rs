//! `/metrics` is valid Prometheus text with vLLM's names, types and labels.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use vllm_sim::SimConfig;

#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let eq = rest
            .find("=\"")
            .unwrap_or_else(|| panic!("label without =\": {s}"));
        let key = &rest[..eq];
        assert!(
            valid_name(key) && !key.contains(':'),
            "bad label name {key:?}"
        );
        let after = &rest[eq + 2..];
        let mut end = None;
        let mut escaped = false;
        for (i, ch) in after.char_indices() {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value: {s}"));
        out.insert(key.to_string(), after[..end].to_string());
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

/// A strict parser of the text exposition format (version 0.0.4).
fn parse(text: &str) -> HashMap<String, Family> {
    let mut fams: HashMap<String, Family> = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "{line}");
            fams.entry(name.into()).or_default().help = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(it.next().is_none(), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            let f = fams.entry(name.into()).or_default();
            assert!(f.kind.is_empty(), "TYPE given twice for {name}");
            assert!(f.samples.is_empty(), "TYPE after samples for {name}");
            f.kind = kind.into();
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (
                    n,
                    parse_labels(l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
                ),
                None => (series, BTreeMap::new()),
            };
            assert!(valid_name(name), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| fams.get(*b).is_some_and(|f| f.kind == "histogram"))
                })
                .unwrap_or(name);
            let f = fams
                .get_mut(family)
                .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
            f.samples.push((name.to_string(), labels, value));
        }
    }
    fams
}

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
    let fams = parse(&r.text().await.unwrap());

    let expect = [
        ("vllm:num_requests_running", "gauge"),
        ("vllm:num_requests_waiting", "gauge"),
        ("vllm:kv_cache_usage_perc", "gauge"),
        ("vllm:gpu_cache_usage_perc", "gauge"),
        ("vllm:prefix_cache_queries_total", "counter"),
        ("vllm:prefix_cache_hits_total", "counter"),
        ("vllm:prompt_tokens_total", "counter"),
        ("vllm:generation_tokens_total", "counter"),
        ("vllm:request_success_total", "counter"),
        ("vllm:num_preemptions_total", "counter"),
        ("vllm:time_to_first_token_seconds", "histogram"),
        ("vllm:time_per_output_token_seconds", "histogram"),
        ("vllm:e2e_request_latency_seconds", "histogram"),
        ("vllm:request_queue_time_seconds", "histogram"),
        ("vllm:request_prefill_time_seconds", "histogram"),
        ("vllm:request_decode_time_seconds", "histogram"),
        ("vllm:cache_config_info", "gauge"),
    ];
    for (name, kind) in expect {
        let f = fams.get(name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(f.kind, kind, "{name}");
        assert!(f.help, "{name} has HELP");
        assert!(!f.samples.is_empty(), "{name} has samples");
        for (_, labels, _) in &f.samples {
            assert_eq!(
                labels.get("model_name").map(String::as_str),
                Some("m-1"),
                "{name}"
            );
        }
    }
    let info = &fams["vllm:cache_config_info"].samples[0];
    assert_eq!(info.1["block_size"], "16");
    assert_eq!(info.1["num_gpu_blocks"], "1234");
    assert_eq!(info.2, 1.0);

    // Histograms: cumulative buckets ending in +Inf equal to _count.
    let ttft = &fams["vllm:time_to_first_token_seconds"].samples;
    let buckets: Vec<f64> = ttft
        .iter()
        .filter(|s| s.0.ends_with("_bucket"))
        .map(|s| s.2)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative");
    let inf = ttft
        .iter()
        .find(|s| s.1.get("le").map(String::as_str) == Some("+Inf"))
        .unwrap();
    let count = ttft.iter().find(|s| s.0.ends_with("_count")).unwrap();
    assert_eq!(inf.2, 3.0);
    assert_eq!(count.2, 3.0);
    let hits = fams["vllm:prefix_cache_hits_total"].samples[0].2;
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
        tasks.push(tokio::spawn(async move {
            post(
                &c,
                &url,
                &json!({"prompt": prompt(&format!("g{i}"), 20), "max_tokens": 30}),
            )
            .await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let m = metrics_text(&c, &s).await;
    let l = [("model_name", "vllm-sim")];
    assert_eq!(sample(&m, "vllm:num_requests_running", &l), Some(2.0));
    assert_eq!(sample(&m, "vllm:num_requests_waiting", &l), Some(3.0));
    assert!(sample(&m, "vllm:kv_cache_usage_perc", &l).unwrap() > 0.0);
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    let m = metrics_text(&c, &s).await;
    assert_eq!(sample(&m, "vllm:num_requests_running", &l), Some(0.0));
    assert_eq!(sample(&m, "vllm:kv_cache_usage_perc", &l), Some(0.0));
}
