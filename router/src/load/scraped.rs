//! Load signals of one replica, extracted from its `/metrics` page (vLLM or SGLang names).

use std::time::Instant;

use prom_text::{Sample, samples};

/// Which serving engine the metrics came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// vLLM (`vllm:` metric names).
    Vllm,
    /// SGLang (`sglang:` metric names).
    Sglang,
}

/// What one scrape of a replica's `/metrics` says about its load and cache.
///
/// Request counts are summed over label sets (several `model_name` or `engine` series), KV usage
/// is the maximum over them, and capacity comes from the largest `cache_config_info` series.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedLoad {
    /// The engine whose names were recognised.
    pub engine: Engine,
    /// Requests being prefilled or decoded.
    pub running: f64,
    /// Requests queued, not yet scheduled.
    pub waiting: f64,
    /// Fraction (0..=1) of KV-cache blocks in use, when reported.
    pub kv_usage: Option<f64>,
    /// Prefix-cache lookups in tokens since start (vLLM counter).
    pub prefix_cache_queries: Option<f64>,
    /// Prefix-cache hits in tokens since start (vLLM counter).
    pub prefix_cache_hits: Option<f64>,
    /// Recent prefix-cache hit rate (0..=1) when the engine reports a rate (SGLang).
    pub prefix_cache_hit_rate: Option<f64>,
    /// Tokens per KV block (`vllm:cache_config_info` label `block_size`).
    pub block_size: Option<u32>,
    /// KV blocks on the GPU (`vllm:cache_config_info` label `num_gpu_blocks`).
    pub num_gpu_blocks: Option<u64>,
    /// KV capacity in tokens reported directly (`sglang:max_total_num_tokens`).
    pub max_total_tokens: Option<u64>,
    /// Requests preempted since start (`vllm:num_preemptions_total`).
    pub preemptions: Option<f64>,
    /// Running totals of the latency histograms the cost policy learns from (vLLM).
    pub latency: LatencyTotals,
    /// When the scrape completed.
    pub scraped_at: Instant,
}

/// Sum and count of one Prometheus histogram (summed over label sets).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SumCount {
    /// `<name>_sum`.
    pub sum: f64,
    /// `<name>_count`.
    pub count: f64,
}

/// Running totals of a replica's request latency histograms, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyTotals {
    /// `vllm:request_prefill_time_seconds`: time in the prefill phase.
    pub prefill_s: Option<SumCount>,
    /// `vllm:request_queue_time_seconds`: time waiting before being scheduled.
    pub queue_s: Option<SumCount>,
    /// `vllm:time_to_first_token_seconds`.
    pub ttft_s: Option<SumCount>,
    /// `vllm:request_prefill_kv_computed_tokens`: prompt tokens not served from the cache.
    pub computed_tokens: Option<SumCount>,
}

impl LatencyTotals {
    fn slot(&mut self, name: &str) -> Option<(&mut Option<SumCount>, bool)> {
        let (base, is_sum) = if let Some(b) = name.strip_suffix("_sum") {
            (b, true)
        } else {
            (name.strip_suffix("_count")?, false)
        };
        let slot = match base {
            "vllm:request_prefill_time_seconds" => &mut self.prefill_s,
            "vllm:request_queue_time_seconds" => &mut self.queue_s,
            "vllm:time_to_first_token_seconds" => &mut self.ttft_s,
            "vllm:request_prefill_kv_computed_tokens" => &mut self.computed_tokens,
            _ => return None,
        };
        Some((slot, is_sum))
    }

    fn add(&mut self, name: &str, v: f64) {
        if let Some((slot, is_sum)) = self.slot(name) {
            let s = slot.get_or_insert_with(SumCount::default);
            if is_sum {
                s.sum += v.max(0.0);
            } else {
                s.count += v.max(0.0);
            }
        }
    }
}

/// Why a metrics page gave no load signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no running/waiting request metric (vllm: or sglang:) in a {bytes}-byte metrics page")]
pub struct NoLoadMetrics {
    /// Size of the page that was parsed.
    pub bytes: usize,
}

#[derive(Default)]
struct Acc {
    running: Option<f64>,
    waiting: Option<f64>,
    kv_usage: Option<f64>,
    queries: Option<f64>,
    hits: Option<f64>,
    hit_rate: Option<f64>,
    block_size: Option<u32>,
    num_gpu_blocks: Option<u64>,
    max_total_tokens: Option<u64>,
    preemptions: Option<f64>,
    latency: LatencyTotals,
    sglang: bool,
}

fn add(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.unwrap_or(0.0) + v.max(0.0));
}

fn max(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |old| old.max(v)));
}

/// Reads a fraction, accepting a percentage (1 < v <= 100) from engines that report one.
fn fraction(v: f64) -> f64 {
    if v > 1.0 && v <= 100.0 {
        v / 100.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

impl Acc {
    fn sample(&mut self, s: &Sample<'_>) {
        if !s.value.is_finite() {
            return;
        }
        let v = s.value;
        match s.name {
            "vllm:num_requests_running" => add(&mut self.running, v),
            "vllm:num_requests_waiting" => add(&mut self.waiting, v),
            "vllm:kv_cache_usage_perc" | "vllm:gpu_cache_usage_perc" => {
                max(&mut self.kv_usage, fraction(v))
            }
            "vllm:prefix_cache_queries_total" | "vllm:gpu_prefix_cache_queries_total" => {
                add(&mut self.queries, v)
            }
            "vllm:prefix_cache_hits_total" | "vllm:gpu_prefix_cache_hits_total" => {
                add(&mut self.hits, v)
            }
            "vllm:gpu_prefix_cache_hit_rate" => max(&mut self.hit_rate, fraction(v)),
            "vllm:cache_config_info" => self.cache_config(s),
            "vllm:num_preemptions_total" => add(&mut self.preemptions, v),
            "sglang:num_running_reqs" => {
                self.sglang = true;
                add(&mut self.running, v)
            }
            "sglang:num_queue_reqs" => {
                self.sglang = true;
                add(&mut self.waiting, v)
            }
            "sglang:token_usage" => max(&mut self.kv_usage, fraction(v)),
            "sglang:cache_hit_rate" => max(&mut self.hit_rate, fraction(v)),
            name if name.ends_with("_sum") || name.ends_with("_count") => self.latency.add(name, v),
            "sglang:max_total_num_tokens" if v >= 1.0 => {
                let tokens = v.min(u64::MAX as f64) as u64;
                self.max_total_tokens = Some(self.max_total_tokens.unwrap_or(0).max(tokens));
            }
            _ => {}
        }
    }

    fn cache_config(&mut self, s: &Sample<'_>) {
        let block = s
            .label("block_size")
            .and_then(|b| b.trim().parse::<u32>().ok());
        let blocks = s
            .label("num_gpu_blocks")
            .and_then(|b| b.trim().parse::<u64>().ok());
        if let (Some(block), Some(blocks)) = (block, blocks)
            && block > 0
            && blocks >= self.num_gpu_blocks.unwrap_or(0)
        {
            self.block_size = Some(block);
            self.num_gpu_blocks = Some(blocks);
        }
    }
}

impl ScrapedLoad {
    /// Extracts the load signals from a metrics page scraped at `scraped_at`.
    pub fn parse(text: &str, scraped_at: Instant) -> Result<Self, NoLoadMetrics> {
        let mut acc = Acc::default();
        for s in samples(text) {
            acc.sample(&s);
        }
        if acc.running.is_none() && acc.waiting.is_none() {
            return Err(NoLoadMetrics { bytes: text.len() });
        }
        Ok(Self {
            engine: if acc.sglang {
                Engine::Sglang
            } else {
                Engine::Vllm
            },
            running: acc.running.unwrap_or(0.0),
            waiting: acc.waiting.unwrap_or(0.0),
            kv_usage: acc.kv_usage,
            prefix_cache_queries: acc.queries,
            prefix_cache_hits: acc.hits,
            prefix_cache_hit_rate: acc.hit_rate,
            block_size: acc.block_size,
            num_gpu_blocks: acc.num_gpu_blocks,
            max_total_tokens: acc.max_total_tokens,
            preemptions: acc.preemptions,
            latency: acc.latency,
            scraped_at,
        })
    }

    /// KV-cache capacity in tokens: `num_gpu_blocks x block_size`, or SGLang's token pool size.
    pub fn kv_capacity_tokens(&self) -> Option<u64> {
        match (self.num_gpu_blocks, self.block_size) {
            (Some(blocks), Some(size)) => Some(blocks.saturating_mul(u64::from(size))),
            _ => self.max_total_tokens,
        }
    }

    /// Prefix-cache hit rate (0..=1) between an earlier scrape and this one, from the counters.
    pub fn hit_rate_since(&self, earlier: &Self) -> Option<f64> {
        let dq = self.prefix_cache_queries? - earlier.prefix_cache_queries?;
        let dh = self.prefix_cache_hits? - earlier.prefix_cache_hits?;
        (dq > 0.0 && dh >= 0.0).then(|| (dh / dq).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_running{engine="1",model_name="llama"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 4.0
vllm:num_requests_waiting{engine="1",model_name="llama"} NaN
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="llama"} 0.5
vllm:prefix_cache_queries_total{engine="0",model_name="llama"} 1000.0
vllm:prefix_cache_hits_total{engine="0",model_name="llama"} 400.0
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",model_name="llama",num_cpu_blocks="0",num_gpu_blocks="2048"} 1.0
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="llama"} 0.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="llama"} 2.5
vllm:time_to_first_token_seconds_count{engine="0",model_name="llama"} 10.0
vllm:request_prefill_time_seconds_sum{engine="0",model_name="llama"} 1.5
vllm:request_prefill_time_seconds_sum{engine="1",model_name="llama"} 0.5
vllm:request_prefill_time_seconds_count{engine="0",model_name="llama"} 10.0
vllm:request_prefill_time_seconds_count{engine="1",model_name="llama"} 4.0
vllm:request_prefill_kv_computed_tokens_sum{engine="0",model_name="llama"} 7000.0
vllm:request_prefill_kv_computed_tokens_count{engine="0",model_name="llama"} 14.0
vllm:request_decode_time_seconds_sum{engine="0",model_name="llama"} 99.0
some garbage line
"#;

    #[test]
    fn vllm_page_sums_series_and_reads_cache_config() {
        let now = Instant::now();
        let l = ScrapedLoad::parse(VLLM, now).unwrap();
        assert_eq!(l.engine, Engine::Vllm);
        assert_eq!(l.running, 5.0);
        assert_eq!(l.waiting, 4.0, "NaN series is skipped");
        assert_eq!(l.kv_usage, Some(0.5));
        assert_eq!(l.prefix_cache_queries, Some(1000.0));
        assert_eq!(l.prefix_cache_hits, Some(400.0));
        assert_eq!(l.block_size, Some(16));
        assert_eq!(l.num_gpu_blocks, Some(2048));
        assert_eq!(l.kv_capacity_tokens(), Some(32768));
        assert_eq!(l.scraped_at, now);
        let sc = |sum, count| Some(SumCount { sum, count });
        assert_eq!(l.latency.ttft_s, sc(2.5, 10.0));
        assert_eq!(l.latency.prefill_s, sc(2.0, 14.0), "summed over engines");
        assert_eq!(l.latency.computed_tokens, sc(7000.0, 14.0));
        assert_eq!(l.latency.queue_s, None);
    }

    #[test]
    fn older_vllm_names_are_understood() {
        let text = "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n\
                    vllm:gpu_cache_usage_perc 0.9\nvllm:gpu_prefix_cache_queries_total 10\n\
                    vllm:gpu_prefix_cache_hits_total 5\n";
        let l = ScrapedLoad::parse(text, Instant::now()).unwrap();
        assert_eq!(l.kv_usage, Some(0.9));
        assert_eq!(l.prefix_cache_queries, Some(10.0));
        assert_eq!(l.prefix_cache_hits, Some(5.0));
        assert_eq!(l.kv_capacity_tokens(), None);
    }

    #[test]
    fn sglang_page_is_understood() {
        let text = r#"# HELP sglang:num_running_reqs The number of running requests.
sglang:num_running_reqs{model_name="qwen"} 7.0
sglang:num_queue_reqs{model_name="qwen"} 2.0
sglang:token_usage{model_name="qwen"} 0.31
sglang:cache_hit_rate{model_name="qwen"} 0.62
sglang:max_total_num_tokens{model_name="qwen"} 161721.0
"#;
        let l = ScrapedLoad::parse(text, Instant::now()).unwrap();
        assert_eq!(l.engine, Engine::Sglang);
        assert_eq!((l.running, l.waiting), (7.0, 2.0));
        assert_eq!(l.kv_usage, Some(0.31));
        assert_eq!(l.prefix_cache_hit_rate, Some(0.62));
        assert_eq!(l.kv_capacity_tokens(), Some(161_721));
    }

    #[test]
    fn pages_without_load_metrics_are_errors() {
        let err = ScrapedLoad::parse("# nothing\nfoo 1\n", Instant::now()).unwrap_err();
        assert!(err.to_string().contains("no running/waiting"));
        assert!(ScrapedLoad::parse("<html>502 Bad Gateway</html>", Instant::now()).is_err());
    }

    #[test]
    fn negative_and_percent_values_are_sanitised() {
        let text = "vllm:num_requests_running -3\nvllm:kv_cache_usage_perc 85\n";
        let l = ScrapedLoad::parse(text, Instant::now()).unwrap();
        assert_eq!(l.running, 0.0);
        assert_eq!(l.kv_usage, Some(0.85));
    }

    #[test]
    fn hit_rate_from_counter_deltas() {
        let t = Instant::now();
        let a = ScrapedLoad::parse(VLLM, t).unwrap();
        let b_text = VLLM
            .replace(
                "queries_total{engine=\"0\",model_name=\"llama\"} 1000.0",
                "queries_total 1100",
            )
            .replace(
                "hits_total{engine=\"0\",model_name=\"llama\"} 400.0",
                "hits_total 475",
            );
        let b = ScrapedLoad::parse(&b_text, t).unwrap();
        assert_eq!(b.hit_rate_since(&a), Some(0.75));
        assert_eq!(a.hit_rate_since(&a), None, "no new queries, no rate");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(text in "\\PC*") {
            let _ = ScrapedLoad::parse(&text, Instant::now());
        }

        #[test]
        fn counts_are_never_negative(lines in proptest::collection::vec(
            ("(vllm:num_requests_running|vllm:num_requests_waiting|sglang:num_queue_reqs)",
             "[a-z]{0,3}", -1e6f64..1e6), 1..10)) {
            let text: String = lines.iter()
                .map(|(n, l, v)| format!("{n}{{m=\"{l}\"}} {v}\n")).collect();
            let l = ScrapedLoad::parse(&text, Instant::now()).unwrap();
            prop_assert!(l.running >= 0.0 && l.waiting >= 0.0);
        }
    }
}
