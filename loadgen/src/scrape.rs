//! Replica `/metrics` before and after a run: deltas and rates of vLLM's counters and histograms.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// One scrape: every sample name (labels dropped) with its values summed over label sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    values: HashMap<String, f64>,
}

impl Snapshot {
    /// Parses Prometheus text exposition format; malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut values = HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, rest) = match line.find(['{', ' ', '\t']) {
                Some(i) => line.split_at(i),
                None => continue,
            };
            let rest = match rest.strip_prefix('{') {
                Some(labels) => match labels.rfind('}') {
                    Some(end) => &labels[end + 1..],
                    None => continue,
                },
                None => rest,
            };
            let Some(Ok(v)) = rest.split_whitespace().next().map(parse_value) else {
                continue;
            };
            *values.entry(name.to_string()).or_insert(0.0) += v;
        }
        Self { values }
    }

    /// The value of the first of `names` present.
    pub fn get(&self, names: &[&str]) -> Option<f64> {
        names.iter().find_map(|n| self.values.get(*n).copied())
    }
}

fn parse_value(s: &str) -> std::result::Result<f64, std::num::ParseFloatError> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other.parse(),
    }
}

/// Fetches `{url}/metrics`.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<Snapshot> {
    let resp = client
        .get(format!("{}/metrics", url.trim_end_matches('/')))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?;
    Ok(Snapshot::parse(&resp.text().await?))
}

/// Scrapes every replica concurrently; a failed scrape is an error naming the replica.
pub async fn scrape_all(client: &reqwest::Client, urls: &[String]) -> Result<Vec<Snapshot>> {
    let all = futures_util::future::join_all(urls.iter().map(|u| scrape(client, u))).await;
    all.into_iter()
        .zip(urls)
        .map(|(r, u)| {
            r.map_err(|e| Error::Component {
                component: "replica scrape",
                reason: format!("{u}/metrics: {e}"),
            })
        })
        .collect()
}

const QUERIES: &[&str] = &[
    "vllm:prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_queries_total",
];
const HITS: &[&str] = &[
    "vllm:prefix_cache_hits_total",
    "vllm:gpu_prefix_cache_hits_total",
];
const PROMPT: &[&str] = &["vllm:prompt_tokens_total", "sglang:prompt_tokens_total"];
const GENERATION: &[&str] = &[
    "vllm:generation_tokens_total",
    "sglang:generation_tokens_total",
];
const SUCCESS: &[&str] = &["vllm:request_success_total", "sglang:num_requests_total"];
const TTFT: &[&str] = &[
    "vllm:time_to_first_token_seconds",
    "sglang:time_to_first_token_seconds",
];
const TPOT: &[&str] = &[
    "vllm:time_per_output_token_seconds",
    "vllm:request_time_per_output_token_seconds",
    "sglang:time_per_output_token_seconds",
];
const E2E: &[&str] = &[
    "vllm:e2e_request_latency_seconds",
    "sglang:e2e_request_latency_seconds",
];
const QUEUE: &[&str] = &[
    "vllm:request_queue_time_seconds",
    "sglang:queue_time_seconds",
];
const PREFILL: &[&str] = &["vllm:request_prefill_time_seconds"];
const DECODE: &[&str] = &["vllm:request_decode_time_seconds"];
const PREEMPTIONS: &[&str] = &["vllm:num_preemptions_total", "vllm:num_preemptions"];

/// What one replica did during the run (counter deltas; histogram means in milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaDelta {
    /// The replica's base URL.
    pub url: String,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_cache_queries: f64,
    /// Prompt tokens found in the prefix cache.
    pub prefix_cache_hits: f64,
    /// Prompt tokens processed.
    pub prompt_tokens: f64,
    /// Tokens generated.
    pub generation_tokens: f64,
    /// Requests finished.
    pub successes: f64,
    /// Running requests preempted (KV cache full), `vllm:num_preemptions_total`.
    #[serde(default)]
    pub preemptions: f64,
    /// Mean latencies of the requests finished during the run, by vLLM histogram.
    pub means_ms: HistogramMeans,
}

/// Means of vLLM's latency histograms, milliseconds (`None` when nothing was observed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramMeans {
    /// `vllm:time_to_first_token_seconds`.
    pub ttft: Option<f64>,
    /// `vllm:time_per_output_token_seconds`.
    pub tpot: Option<f64>,
    /// `vllm:e2e_request_latency_seconds`.
    pub e2e: Option<f64>,
    /// `vllm:request_queue_time_seconds`.
    pub queue: Option<f64>,
    /// `vllm:request_prefill_time_seconds`.
    pub prefill: Option<f64>,
    /// `vllm:request_decode_time_seconds`.
    pub decode: Option<f64>,
}

/// Replica-side totals over a run: sums over replicas, rates, and histogram means averaged
/// over the replicas that observed anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaMetrics {
    /// Prefix cache hits over queries, in tokens, over all replicas.
    pub prefix_cache_hit_rate: f64,
    /// Prompt tokens processed by all replicas.
    pub prompt_tokens: f64,
    /// Tokens generated by all replicas.
    pub generation_tokens: f64,
    /// Requests finished by all replicas.
    pub successes: f64,
    /// Preemptions on all replicas.
    #[serde(default)]
    pub preemptions: f64,
    /// Prompt tokens per second.
    pub prompt_tokens_per_s: f64,
    /// Generated tokens per second.
    pub generation_tokens_per_s: f64,
    /// Requests finished per second.
    pub successes_per_s: f64,
    /// Histogram means averaged over replicas.
    pub means_ms: HistogramMeans,
    /// Each replica's own numbers.
    pub per_replica: Vec<ReplicaDelta>,
}

fn delta(before: &Snapshot, after: &Snapshot, names: &[&str]) -> f64 {
    (after.get(names).unwrap_or(0.0) - before.get(names).unwrap_or(0.0)).max(0.0)
}

fn hist_mean(before: &Snapshot, after: &Snapshot, names: &[&str]) -> Option<f64> {
    let sums: Vec<String> = names.iter().map(|n| format!("{n}_sum")).collect();
    let counts: Vec<String> = names.iter().map(|n| format!("{n}_count")).collect();
    let sums: Vec<&str> = sums.iter().map(String::as_str).collect();
    let counts: Vec<&str> = counts.iter().map(String::as_str).collect();
    let n = delta(before, after, &counts);
    (n > 0.0).then(|| delta(before, after, &sums) / n * 1000.0)
}

fn average(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Combines scrapes taken before and after a run of `duration_s` seconds.
pub fn replica_metrics(
    urls: &[String],
    before: &[Snapshot],
    after: &[Snapshot],
    duration_s: f64,
) -> ReplicaMetrics {
    let per_replica: Vec<ReplicaDelta> = urls
        .iter()
        .zip(before.iter().zip(after))
        .map(|(url, (b, a))| ReplicaDelta {
            url: url.clone(),
            prefix_cache_queries: delta(b, a, QUERIES),
            prefix_cache_hits: delta(b, a, HITS),
            prompt_tokens: delta(b, a, PROMPT),
            generation_tokens: delta(b, a, GENERATION),
            successes: delta(b, a, SUCCESS),
            preemptions: delta(b, a, PREEMPTIONS),
            means_ms: HistogramMeans {
                ttft: hist_mean(b, a, TTFT),
                tpot: hist_mean(b, a, TPOT),
                e2e: hist_mean(b, a, E2E),
                queue: hist_mean(b, a, QUEUE),
                prefill: hist_mean(b, a, PREFILL),
                decode: hist_mean(b, a, DECODE),
            },
        })
        .collect();
    let sum = |f: fn(&ReplicaDelta) -> f64| per_replica.iter().map(f).sum::<f64>();
    let rate = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let queries = sum(|r| r.prefix_cache_queries);
    let avg =
        |f: fn(&HistogramMeans) -> Option<f64>| average(per_replica.iter().map(|r| f(&r.means_ms)));
    ReplicaMetrics {
        prefix_cache_hit_rate: if queries > 0.0 {
            sum(|r| r.prefix_cache_hits) / queries
        } else {
            0.0
        },
        prompt_tokens: sum(|r| r.prompt_tokens),
        generation_tokens: sum(|r| r.generation_tokens),
        successes: sum(|r| r.successes),
        preemptions: sum(|r| r.preemptions),
        prompt_tokens_per_s: rate(sum(|r| r.prompt_tokens)),
        generation_tokens_per_s: rate(sum(|r| r.generation_tokens)),
        successes_per_s: rate(sum(|r| r.successes)),
        means_ms: HistogramMeans {
            ttft: avg(|m| m.ttft),
            tpot: avg(|m| m.tpot),
            e2e: avg(|m| m.e2e),
            queue: avg(|m| m.queue),
            prefill: avg(|m| m.prefill),
            decode: avg(|m| m.decode),
        },
        per_replica,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP vllm:prefix_cache_queries_total Prefix cache queries.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{model_name="m"} 100
vllm:prefix_cache_hits_total{model_name="m"} 10
vllm:request_success_total{finished_reason="length",model_name="m"} 3
vllm:request_success_total{finished_reason="stop",model_name="m"} 1
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 4
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.4
vllm:time_to_first_token_seconds_count{model_name="m"} 4
"#;
    const AFTER: &str = r#"vllm:prefix_cache_queries_total{model_name="m"} 1100
vllm:prefix_cache_hits_total{model_name="m"} 610
vllm:prompt_tokens_total{model_name="m"} 1000
vllm:request_success_total{finished_reason="length",model_name="m"} 9
vllm:request_success_total{finished_reason="stop",model_name="m"} 5
vllm:time_to_first_token_seconds_sum{model_name="m"} 2.4
vllm:time_to_first_token_seconds_count{model_name="m"} 14
weird line without value
"#;

    #[test]
    fn parses_and_sums_label_sets() {
        let s = Snapshot::parse(BEFORE);
        assert_eq!(s.get(&["vllm:request_success_total"]), Some(4.0));
        assert_eq!(
            s.get(&["missing", "vllm:prefix_cache_hits_total"]),
            Some(10.0)
        );
        assert_eq!(
            s.get(&["vllm:time_to_first_token_seconds_bucket"]),
            Some(4.0)
        );
    }

    #[test]
    fn deltas_rates_and_means() {
        let urls = vec!["http://a".to_string(), "http://b".to_string()];
        let before = vec![Snapshot::parse(BEFORE), Snapshot::default()];
        let after = vec![Snapshot::parse(AFTER), Snapshot::parse(AFTER)];
        let m = replica_metrics(&urls, &before, &after, 2.0);
        let a = &m.per_replica[0];
        assert_eq!(a.prefix_cache_queries, 1000.0);
        assert_eq!(a.prefix_cache_hits, 600.0);
        assert_eq!(a.successes, 10.0);
        assert!((a.means_ms.ttft.unwrap() - 200.0).abs() < 1e-9);
        let b = &m.per_replica[1];
        assert!((b.means_ms.ttft.unwrap() - 2400.0 / 14.0).abs() < 1e-9);
        assert!((m.prefix_cache_hit_rate - 1210.0 / 2100.0).abs() < 1e-12);
        assert_eq!(m.successes, 24.0);
        assert_eq!(m.prompt_tokens_per_s, 1000.0);
        let avg = (200.0 + 2400.0 / 14.0) / 2.0;
        assert!((m.means_ms.ttft.unwrap() - avg).abs() < 1e-9);
        assert_eq!(m.means_ms.decode, None);
    }
}
