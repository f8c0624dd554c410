//! One benchmark run from start to finish: build the workload, send it, measure, summarise.

use crate::arrivals::{RequestRate, schedule};
use crate::dataset::{self, DatasetConfig};
use crate::error::{Error, Result};
use crate::metrics::{Slo, client_metrics, per_priority, placement};
use crate::oracle::oracle;
use crate::output::read_last_summary;
use crate::request::{BodyOptions, Endpoint, body};
use crate::runner::{self, RunnerConfig, endpoint_url};
use crate::scrape::{replica_metrics, scrape_all};
use crate::summary::{PrefillSplit, RunParams, RunSummary};
use crate::tokens::TokenCounter;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Server base URL (a router or one replica).
    pub base_url: String,
    /// Endpoint to call.
    pub endpoint: Endpoint,
    /// Model name; asked from `/v1/models` when `None`.
    pub model: Option<String>,
    /// The workload.
    pub dataset: DatasetConfig,
    /// Arrival rate.
    pub request_rate: RequestRate,
    /// Gamma shape of arrival gaps (1 = Poisson).
    pub burstiness: f64,
    /// Most requests in flight.
    pub max_concurrency: Option<usize>,
    /// Send the first request once before measuring.
    pub warmup: bool,
    /// Send `ignore_eos: true`.
    pub ignore_eos: bool,
    /// Stream responses.
    pub stream: bool,
    /// Free-form label.
    pub label: String,
    /// Router policy, when the caller started the router.
    pub policy: Option<String>,
    /// Router admission-queue policy, when the caller set one.
    pub queue_policy: Option<String>,
    /// Router replica caps mode, when the caller set one.
    pub caps: Option<String>,
    /// Goodput objectives.
    pub slo: Slo,
    /// Replica base URLs to scrape before and after.
    pub replica_urls: Vec<String>,
    /// `tokenizer.json` for token counts.
    pub tokenizer: Option<PathBuf>,
    /// Results file of a prefill-only run (`--max-output-len 1`).
    pub prefill_baseline: Option<PathBuf>,
    /// Write the request list (send time and body) here as JSON lines.
    pub dump_requests: Option<PathBuf>,
    /// Block size of the oracle cache (vllm-sim tokens); `None` skips the oracle.
    pub oracle_block_size: Option<usize>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// How long Ctrl-C waits for requests in flight.
    pub drain_timeout: Duration,
    /// Show a progress bar.
    pub progress: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8000".into(),
            endpoint: Endpoint::Chat,
            model: None,
            dataset: DatasetConfig::default(),
            request_rate: RequestRate::Infinite,
            burstiness: 1.0,
            max_concurrency: None,
            warmup: false,
            ignore_eos: true,
            stream: true,
            label: String::new(),
            policy: None,
            queue_policy: None,
            caps: None,
            slo: Slo::default(),
            replica_urls: Vec::new(),
            tokenizer: None,
            prefill_baseline: None,
            dump_requests: None,
            oracle_block_size: Some(16),
            request_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(30),
            progress: true,
        }
    }
}

/// An HTTP client for benchmarking: no proxies, generous connection pool.
pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?)
}

/// The first model `base_url` serves, or "default" when it cannot say.
async fn discover_model(client: &reqwest::Client, base_url: &str) -> String {
    let url = format!("{}/v1/models", base_url.trim_end_matches('/'));
    let found = async {
        let v: Value = client
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"][0]["id"].as_str().map(String::from)
    };
    found.await.unwrap_or_else(|| {
        tracing::warn!("{url} did not name a model; sending model \"default\" (use --model)");
        "default".into()
    })
}

/// Writes one JSON line per request: index, send offset, endpoint path and body.
fn dump(
    path: &Path,
    endpoint: Endpoint,
    stream: bool,
    bodies: &[(Value, Option<i64>)],
    at: &[Duration],
) -> Result<()> {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    for (i, ((b, _), t)) in bodies.iter().zip(at).enumerate() {
        let line = json!({"index": i, "send_at_s": t.as_secs_f64(), "path": endpoint.path(), "stream": stream, "body": b});
        writeln!(f, "{line}").map_err(|e| Error::io(path, e))?;
    }
    f.flush().map_err(|e| Error::io(path, e))
}

/// Runs one benchmark; `cancel` (Ctrl-C) stops sending and still returns what was measured.
pub async fn run_benchmark(cfg: &BenchConfig, cancel: CancellationToken) -> Result<RunSummary> {
    let workload = dataset::build(&cfg.dataset)?;
    let at = schedule(
        workload.requests.len(),
        cfg.request_rate,
        cfg.burstiness,
        cfg.dataset.seed,
    )?;
    let counter = TokenCounter::load(cfg.tokenizer.as_deref())?;
    let baseline = cfg
        .prefill_baseline
        .as_deref()
        .map(read_last_summary)
        .transpose()?;
    let client = http_client()?;
    let model = match &cfg.model {
        Some(m) => m.clone(),
        None => discover_model(&client, &cfg.base_url).await,
    };
    let opts = BodyOptions {
        model: model.clone(),
        stream: cfg.stream,
        ignore_eos: cfg.ignore_eos,
    };
    let bodies: Vec<(Value, Option<i64>)> = workload
        .requests
        .iter()
        .map(|r| (body(r, cfg.endpoint, &opts), r.priority))
        .collect();
    if let Some(path) = &cfg.dump_requests {
        dump(path, cfg.endpoint, cfg.stream, &bodies, &at)?;
    }
    let oracle = cfg
        .oracle_block_size
        .map(|bs| oracle(&workload.requests, cfg.endpoint, bs));
    let runner_cfg = RunnerConfig {
        base_url: cfg.base_url.clone(),
        endpoint: cfg.endpoint,
        stream: cfg.stream,
        max_concurrency: cfg.max_concurrency,
        request_timeout: cfg.request_timeout,
        drain_timeout: cfg.drain_timeout,
        progress: cfg.progress,
        keep_text: counter.needs_text(),
    };
    if cfg.warmup {
        warmup(&client, &runner_cfg, &bodies[0].0).await?;
    }
    let before = if cfg.replica_urls.is_empty() {
        None
    } else {
        Some(scrape_all(&client, &cfg.replica_urls).await?)
    };
    let started_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = runner::run(&client, &runner_cfg, bodies, &at, cancel).await;
    // A failed scrape after the run must not lose the run's own measurements.
    let replicas = match before {
        Some(before) => match scrape_all(&client, &cfg.replica_urls).await {
            Ok(after) => Some(replica_metrics(
                &cfg.replica_urls,
                &before,
                &after,
                out.duration_s,
            )),
            Err(e) => {
                eprintln!("warning: no replica metrics for this run: {e}");
                None
            }
        },
        None => None,
    };
    let mut records = out.records;
    counter.count(&mut records, &workload.requests)?;
    let client_m = client_metrics(&records, out.duration_s, cfg.slo);
    let prefill = baseline.map(|b| PrefillSplit::derive(&b.client, &client_m));
    Ok(RunSummary {
        params: RunParams {
            label: cfg.label.clone(),
            policy: cfg.policy.clone(),
            queue_policy: cfg.queue_policy.clone(),
            caps: cfg.caps.clone(),
            base_url: cfg.base_url.clone(),
            endpoint: cfg.endpoint.as_str().into(),
            model,
            dataset: cfg.dataset.kind.as_str().into(),
            num_prompts: workload.requests.len(),
            request_rate: cfg.request_rate.to_string(),
            burstiness: cfg.burstiness,
            max_concurrency: cfg.max_concurrency,
            min_output_len: cfg.dataset.min_output_len,
            max_output_len: cfg.dataset.max_output_len,
            stream: cfg.stream,
            ignore_eos: cfg.ignore_eos,
            seed: cfg.dataset.seed,
            priority_mix: cfg.dataset.priority_mix.as_ref().map(|m| m.to_string()),
            slo_ttft_ms: cfg.slo.ttft_ms,
            slo_tpot_ms: cfg.slo.tpot_ms,
        },
        groups: workload.groups,
        token_source: counter.source(),
        requests_without_usage: if counter.needs_text() {
            0
        } else {
            records.iter().filter(|r| r.ok() && !r.has_usage).count() as u64
        },
        per_priority: per_priority(&records, out.duration_s, cfg.slo),
        placement: placement(&records, out.duration_s),
        client: client_m,
        replicas,
        oracle,
        prefill,
        interrupted: out.interrupted,
        started_at,
    })
}

/// Sends one request before measuring; fails with the reason if it does not complete.
async fn warmup(client: &reqwest::Client, cfg: &RunnerConfig, body: &Value) -> Result<()> {
    let out = runner::run(
        client,
        &RunnerConfig {
            progress: false,
            ..cfg.clone()
        },
        vec![(body.clone(), None)],
        &[Duration::ZERO],
        CancellationToken::new(),
    )
    .await;
    match out.records.first().and_then(|r| r.error.clone()) {
        None => Ok(()),
        Some(reason) => Err(Error::Component {
            component: "warmup",
            reason: format!(
                "request to {} failed: {reason}",
                endpoint_url(&cfg.base_url, cfg.endpoint)
            ),
        }),
    }
}
