//! Prometheus metrics under vLLM's names and types, one registry per replica.

use crate::config::SimConfig;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    Opts, Registry, TextEncoder,
};
use std::time::Duration;

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0,
];

/// Label values of `vllm:request_success_total`'s `finished_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishedReason {
    /// Hit `max_tokens`.
    Length,
    /// Stopped on its own ("eos").
    Stop,
    /// Client went away.
    Abort,
}

/// Every metric of one replica, resolved to its `model_name` label once.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) running: Gauge,
    pub(crate) waiting: Gauge,
    pub(crate) kv_usage: Gauge,
    pub(crate) gpu_cache_usage: Gauge,
    pub(crate) prefix_queries: IntCounter,
    pub(crate) prefix_hits: IntCounter,
    pub(crate) prompt_tokens: IntCounter,
    pub(crate) generation_tokens: IntCounter,
    pub(crate) preemptions: IntCounter,
    success: [IntCounter; 3],
    pub(crate) ttft: Histogram,
    pub(crate) tpot: Histogram,
    pub(crate) itl: Histogram,
    pub(crate) e2e: Histogram,
    pub(crate) queue_time: Histogram,
    pub(crate) prefill_time: Histogram,
    pub(crate) decode_time: Histogram,
    pub(crate) request_prompt_tokens: Histogram,
    pub(crate) request_generation_tokens: Histogram,
    /// New KV tokens computed in prefill (prompt minus prefix-cache hit), as vLLM 0.26 exports.
    pub(crate) prefill_kv_computed_tokens: Histogram,
}

fn gauge(r: &Registry, name: &str, help: &str, model: &str) -> prometheus::Result<Gauge> {
    let v = GaugeVec::new(Opts::new(name, help), &["model_name"])?;
    r.register(Box::new(v.clone()))?;
    Ok(v.with_label_values(&[model]))
}

fn counter(r: &Registry, name: &str, help: &str, model: &str) -> prometheus::Result<IntCounter> {
    let v = IntCounterVec::new(Opts::new(name, help), &["model_name"])?;
    r.register(Box::new(v.clone()))?;
    Ok(v.with_label_values(&[model]))
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    model: &str,
) -> prometheus::Result<Histogram> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let v = HistogramVec::new(opts, &["model_name"])?;
    r.register(Box::new(v.clone()))?;
    Ok(v.with_label_values(&[model]))
}

impl Metrics {
    /// Registers every family in a fresh registry for `config`'s model.
    pub(crate) fn new(config: &SimConfig) -> prometheus::Result<Self> {
        let r = Registry::new();
        let m = config.served_model();
        let success = IntCounterVec::new(
            Opts::new(
                "vllm:request_success_total",
                "Count of successfully processed requests.",
            ),
            &["model_name", "finished_reason"],
        )?;
        r.register(Box::new(success.clone()))?;
        let info = GaugeVec::new(
            Opts::new(
                "vllm:cache_config_info",
                "Information of the LLMEngine CacheConfig",
            ),
            &[
                "model_name",
                "block_size",
                "num_gpu_blocks",
                "num_cpu_blocks",
                "enable_prefix_caching",
                "cache_dtype",
            ],
        )?;
        r.register(Box::new(info.clone()))?;
        info.with_label_values(&[
            m,
            &config.block_size.to_string(),
            &config.num_gpu_blocks.to_string(),
            "0",
            "True",
            "auto",
        ])
        .set(1.0);
        Ok(Self {
            running: gauge(
                &r,
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
                m,
            )?,
            waiting: gauge(
                &r,
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
                m,
            )?,
            kv_usage: gauge(
                &r,
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                m,
            )?,
            gpu_cache_usage: gauge(
                &r,
                "vllm:gpu_cache_usage_perc",
                "GPU KV-cache usage. 1 means 100 percent usage (deprecated name).",
                m,
            )?,
            prefix_queries: counter(
                &r,
                "vllm:prefix_cache_queries_total",
                "Prefix cache queries, in terms of number of queried tokens.",
                m,
            )?,
            prefix_hits: counter(
                &r,
                "vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.",
                m,
            )?,
            prompt_tokens: counter(
                &r,
                "vllm:prompt_tokens_total",
                "Number of prefill tokens processed.",
                m,
            )?,
            generation_tokens: counter(
                &r,
                "vllm:generation_tokens_total",
                "Number of generation tokens processed.",
                m,
            )?,
            preemptions: counter(
                &r,
                "vllm:num_preemptions_total",
                "Cumulative number of preemption from the engine.",
                m,
            )?,
            success: [
                success.with_label_values(&[m, "length"]),
                success.with_label_values(&[m, "stop"]),
                success.with_label_values(&[m, "abort"]),
            ],
            ttft: histogram(
                &r,
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                TTFT_BUCKETS,
                m,
            )?,
            tpot: histogram(
                &r,
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.",
                TPOT_BUCKETS,
                m,
            )?,
            itl: histogram(
                &r,
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                TPOT_BUCKETS,
                m,
            )?,
            e2e: histogram(
                &r,
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                LATENCY_BUCKETS,
                m,
            )?,
            queue_time: histogram(
                &r,
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                LATENCY_BUCKETS,
                m,
            )?,
            prefill_time: histogram(
                &r,
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                LATENCY_BUCKETS,
                m,
            )?,
            decode_time: histogram(
                &r,
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
                LATENCY_BUCKETS,
                m,
            )?,
            request_prompt_tokens: histogram(
                &r,
                "vllm:request_prompt_tokens",
                "Number of prefill tokens processed.",
                TOKEN_BUCKETS,
                m,
            )?,
            request_generation_tokens: histogram(
                &r,
                "vllm:request_generation_tokens",
                "Number of generation tokens processed.",
                TOKEN_BUCKETS,
                m,
            )?,
            prefill_kv_computed_tokens: histogram(
                &r,
                "vllm:request_prefill_kv_computed_tokens",
                "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
                TOKEN_BUCKETS,
                m,
            )?,
            registry: r,
        })
    }

    /// Counts one finished request.
    pub(crate) fn success(&self, reason: FinishedReason) {
        let i = match reason {
            FinishedReason::Length => 0,
            FinishedReason::Stop => 1,
            FinishedReason::Abort => 2,
        };
        self.success[i].inc();
    }

    /// Sets the scheduler gauges.
    pub(crate) fn set_load(&self, running: usize, waiting: usize, kv_usage: f64) {
        self.running.set(running as f64);
        self.waiting.set(waiting as f64);
        self.kv_usage.set(kv_usage);
        self.gpu_cache_usage.set(kv_usage);
    }

    /// Renders the Prometheus text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Seconds of a duration as f64 (for histogram observations).
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
