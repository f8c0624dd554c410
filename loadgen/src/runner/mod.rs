//! Sends a workload on its arrival schedule with bounded concurrency and records every request.
//!
//! Cancelling stops sending; requests in flight get `drain_timeout` to finish, then are
//! recorded as failed with reason "interrupted".

mod client;
mod sse;

pub use client::ROUTED_TO_HEADER;

use crate::record::RequestRecord;
use crate::request::Endpoint;
use client::Call;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How to send a run's requests.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Server base URL, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// Endpoint to call.
    pub endpoint: Endpoint,
    /// Whether bodies ask for streaming (decides how responses are read).
    pub stream: bool,
    /// Most requests in flight at once (`None` = unbounded).
    pub max_concurrency: Option<usize>,
    /// Give up on one request after this long.
    pub request_timeout: Duration,
    /// After cancellation, wait this long for requests in flight.
    pub drain_timeout: Duration,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Keep generated text (for counting tokens with a tokenizer).
    pub keep_text: bool,
}

/// The records of a run and how long it took.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// One record per request sent, in workload order.
    pub records: Vec<RequestRecord>,
    /// Seconds from the first send to the last response.
    pub duration_s: f64,
    /// True when the run was cancelled before every request was sent and answered.
    pub interrupted: bool,
}

/// The whole URL of `endpoint` under `base_url`.
pub fn endpoint_url(base_url: &str, endpoint: Endpoint) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), endpoint.path())
}

fn progress_bar(n: usize, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} requests ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Sends `bodies[i]` at `schedule[i]` after the start (both the same length).
pub async fn run(
    client: &reqwest::Client,
    config: &RunnerConfig,
    bodies: Vec<(Value, Option<i64>)>,
    schedule: &[Duration],
    cancel: CancellationToken,
) -> RunOutput {
    let url = Arc::new(endpoint_url(&config.base_url, config.endpoint));
    let permits = config.max_concurrency.unwrap_or(Semaphore::MAX_PERMITS);
    let sem = Arc::new(Semaphore::new(permits.clamp(1, Semaphore::MAX_PERMITS)));
    let bar = progress_bar(bodies.len(), config.progress);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, (usize, Option<i64>, f64)> = HashMap::new();
    let mut records = Vec::with_capacity(bodies.len());
    let total = bodies.len();

    for (index, ((body, priority), at)) in bodies.into_iter().zip(schedule).enumerate() {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(start + *at) => {}
        }
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        // Reap what has finished so the map stays small.
        while let Some(done) = tasks.try_join_next_with_id() {
            finish(done, &mut in_flight, &mut records, &bar);
        }
        let sent_at = start.elapsed().as_secs_f64();
        let (client, url, cfg) = (client.clone(), url.clone(), config.clone());
        let handle = tasks.spawn(async move {
            let call = Call {
                client: &client,
                url: &url,
                body: &body,
                endpoint: cfg.endpoint,
                stream: cfg.stream,
                keep_text: cfg.keep_text,
                timeout: cfg.request_timeout,
            };
            let record = call.send().await;
            drop(permit);
            record
        });
        in_flight.insert(handle.id(), (index, priority, sent_at));
    }

    let mut deadline = cancel
        .is_cancelled()
        .then(|| Instant::now() + config.drain_timeout);
    loop {
        let wait_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            done = tasks.join_next_with_id() => match done {
                Some(done) => finish(done, &mut in_flight, &mut records, &bar),
                None => break,
            },
            _ = cancel.cancelled(), if deadline.is_none() => {
                deadline = Some(Instant::now() + config.drain_timeout);
            }
            _ = tokio::time::sleep_until(wait_until), if deadline.is_some() => {
                tasks.abort_all();
            }
        }
    }
    let duration_s = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    records.sort_by_key(|r| r.index);
    let interrupted = records.len() < total
        || records
            .iter()
            .any(|r| r.error.as_deref() == Some("interrupted"));
    RunOutput {
        records,
        duration_s,
        interrupted,
    }
}

type Done = Result<(tokio::task::Id, RequestRecord), tokio::task::JoinError>;

/// Files one finished (or aborted) task's record.
fn finish(
    done: Done,
    in_flight: &mut HashMap<tokio::task::Id, (usize, Option<i64>, f64)>,
    records: &mut Vec<RequestRecord>,
    bar: &ProgressBar,
) {
    let (id, record) = match done {
        Ok((id, record)) => (id, Some(record)),
        Err(e) => (e.id(), None),
    };
    let Some((index, priority, start)) = in_flight.remove(&id) else {
        return;
    };
    let mut record = record.unwrap_or_else(|| RequestRecord {
        error: Some("interrupted".into()),
        ..RequestRecord::default()
    });
    record.index = index;
    record.priority = priority;
    record.start = start;
    records.push(record);
    bar.inc(1);
}
