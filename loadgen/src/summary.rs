//! The result of one run: its parameters and every metric, as written to JSON and CSV.

use crate::metrics::{ClientMetrics, Placement, PriorityMetrics};
use crate::oracle::OracleResult;
use crate::scrape::ReplicaMetrics;
use serde::{Deserialize, Serialize};

/// The parameters a run was made with. Its fields are the leading columns of the results CSV,
/// read back by the report; a field missing from an older file gets its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunParams {
    /// Free-form label (`--label`).
    pub label: String,
    /// Router policy, when loadgen started the router (sweep, demo).
    pub policy: Option<String>,
    /// Server base URL.
    pub base_url: String,
    /// "completions" or "chat".
    pub endpoint: String,
    /// Model name sent.
    pub model: String,
    /// Dataset name.
    pub dataset: String,
    /// Requests in the workload.
    pub num_prompts: usize,
    /// Requests per second, or "inf".
    pub request_rate: String,
    /// Gamma shape of the arrival gaps.
    pub burstiness: f64,
    /// Concurrency limit, if any.
    pub max_concurrency: Option<usize>,
    /// Output length range.
    pub min_output_len: u32,
    /// Output length range.
    pub max_output_len: u32,
    /// Streaming responses.
    pub stream: bool,
    /// `ignore_eos` sent.
    pub ignore_eos: bool,
    /// Workload and arrival seed.
    pub seed: u64,
    /// Priority mix as given.
    pub priority_mix: Option<String>,
    /// TTFT objective for goodput, ms.
    pub slo_ttft_ms: Option<f64>,
    /// TPOT objective for goodput, ms.
    pub slo_tpot_ms: Option<f64>,
    /// Router admission-queue policy, when loadgen started the router with one (sweep).
    pub queue_policy: Option<String>,
    /// Router replica caps (`none`, `static`, `adaptive`), when loadgen set them (sweep).
    pub caps: Option<String>,
}

/// Prefill and generation split derived from a prefill-only baseline run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefillSplit {
    /// Mean E2E of the baseline (`--max-output-len 1`) run, ms.
    pub prefill_latency_ms: f64,
    /// This run's mean E2E minus the prefill latency, ms (0 if the run was faster).
    pub generation_latency_ms: f64,
    /// Mean input tokens per request over the prefill latency.
    pub prefill_throughput_tok_s: f64,
    /// Mean output tokens per request over the generation latency.
    pub generation_throughput_tok_s: f64,
}

impl PrefillSplit {
    /// Splits `run`'s latency using the prefill-only `baseline`.
    pub fn derive(baseline: &ClientMetrics, run: &ClientMetrics) -> Self {
        let per_req = |total: u64, m: &ClientMetrics| {
            if m.completed > 0 {
                total as f64 / m.completed as f64
            } else {
                0.0
            }
        };
        let rate = |tokens: f64, ms: f64| {
            if ms > 0.0 {
                tokens / (ms / 1000.0)
            } else {
                0.0
            }
        };
        let prefill = baseline.e2e_ms.mean;
        let generation = (run.e2e_ms.mean - prefill).max(0.0);
        Self {
            prefill_latency_ms: prefill,
            generation_latency_ms: generation,
            prefill_throughput_tok_s: rate(per_req(baseline.total_input_tokens, baseline), prefill),
            generation_throughput_tok_s: rate(per_req(run.total_output_tokens, run), generation),
        }
    }
}

/// Everything known about one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// How the run was made.
    pub params: RunParams,
    /// Distinct conversations or system prompts among the requests.
    pub groups: usize,
    /// Where token counts come from: "server_usage" or "tokenizer:PATH".
    pub token_source: String,
    /// Completed requests for which the server sent no usage (counted by content chunks).
    pub requests_without_usage: u64,
    /// Client-side metrics over all requests.
    pub client: ClientMetrics,
    /// Client-side metrics per priority class.
    pub per_priority: Vec<PriorityMetrics>,
    /// Requests per replica from `x-routed-to`.
    pub placement: Placement,
    /// Replica-side deltas, when replicas were scraped.
    pub replicas: Option<ReplicaMetrics>,
    /// Oracle (unlimited shared cache) hit rate of the request sequence.
    pub oracle: Option<OracleResult>,
    /// Prefill/generation split, when a baseline was given.
    pub prefill: Option<PrefillSplit>,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Unix time the run started, seconds.
    pub started_at: u64,
}

impl RunSummary {
    /// A short name for tables and charts: the label, else the policy, else the URL.
    pub fn name(&self) -> String {
        let p = &self.params;
        if !p.label.is_empty() {
            p.label.clone()
        } else if let Some(policy) = &p.policy {
            policy.clone()
        } else {
            p.base_url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Stats;

    #[test]
    fn prefill_split_from_known_runs() {
        let baseline = ClientMetrics {
            completed: 10,
            total_input_tokens: 10_000,
            e2e_ms: Stats {
                mean: 200.0,
                ..Stats::default()
            },
            ..ClientMetrics::default()
        };
        let run = ClientMetrics {
            completed: 10,
            total_output_tokens: 1000,
            e2e_ms: Stats {
                mean: 1200.0,
                ..Stats::default()
            },
            ..ClientMetrics::default()
        };
        let s = PrefillSplit::derive(&baseline, &run);
        assert_eq!(s.prefill_latency_ms, 200.0);
        assert_eq!(s.generation_latency_ms, 1000.0);
        assert_eq!(s.prefill_throughput_tok_s, 5000.0); // 1000 tokens in 0.2 s
        assert_eq!(s.generation_throughput_tok_s, 100.0); // 100 tokens in 1 s
    }
}
