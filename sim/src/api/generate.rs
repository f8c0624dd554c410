//! Runs a validated job on the engine and builds the HTTP response (JSON or SSE).

use super::AppState;
use super::error::ApiError;
use super::format::Kind;
use super::stream::{Meta, StreamSpec, sse_body};
use super::types::Job;
use crate::engine::{SeqRequest, Sink};
use crate::faults::StreamFaults;
use crate::tokenizer::{adapter_block_hashes, block_hashes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

fn engine_gone() -> ApiError {
    ApiError::status(
        StatusCode::SERVICE_UNAVAILABLE,
        "The engine is shutting down.",
    )
}

impl AppState {
    /// Identity of one response; `lora` names the adapter asked for (else the base model).
    fn meta(&self, kind: Kind, lora: Option<&str>) -> Meta {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match kind {
            Kind::Completion => "cmpl",
            Kind::Chat => "chatcmpl",
        };
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Meta {
            kind,
            id: format!("{prefix}-{:016x}{n:016x}", self.nonce),
            created,
            model: lora.map_or_else(|| self.model.clone(), Arc::from),
        }
    }

    /// Submits every (prompt, choice) sequence of `job`, each built with `sink(choice index)`.
    fn submit_all(
        &self,
        job: &mut Job,
        arrival: Instant,
        mut sink: impl FnMut(u32) -> Sink,
    ) -> Result<(), ApiError> {
        let prompts = std::mem::take(&mut job.prompts);
        let mut choice = 0u32;
        for (mut prompt, &len) in prompts.into_iter().zip(&job.lengths) {
            let bs = self.config.block_size;
            let mut hashes = match &job.lora {
                Some(adapter) => adapter_block_hashes(&prompt, bs, adapter),
                None => block_hashes(&prompt, bs),
            };
            for j in 0..job.n {
                // The last choice takes the buffers, the others copy them.
                let (tokens, hashes) = if j + 1 == job.n {
                    (std::mem::take(&mut prompt), std::mem::take(&mut hashes))
                } else {
                    (prompt.clone(), hashes.clone())
                };
                let req = SeqRequest {
                    tokens,
                    hashes,
                    max_tokens: len,
                    finish: job.finish,
                    priority: job.priority,
                    arrival,
                    sink: sink(choice),
                };
                if !self.engine.submit(req) {
                    return Err(engine_gone());
                }
                choice += 1;
            }
        }
        Ok(())
    }

    /// Runs `job` and answers with a JSON body or an SSE stream.
    pub(crate) async fn run_job(
        self: &Arc<Self>,
        kind: Kind,
        mut job: Job,
        arrival: Instant,
        faults: StreamFaults,
    ) -> Result<Response, ApiError> {
        let meta = self.meta(kind, job.lora.as_deref());
        let choices = job.lengths.len() * job.n;
        if job.stream {
            let (tx, rx) = mpsc::unbounded_channel();
            self.submit_all(&mut job, arrival, |choice| Sink::Stream {
                tx: tx.clone(),
                choice,
            })?;
            drop(tx);
            let spec = StreamSpec {
                meta,
                choices,
                n: job.n,
                include_usage: job.include_usage,
                finish: job.finish,
                cut_after: faults.cut_after,
                stall_after: faults.stall_after,
            };
            let headers = [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")];
            return Ok((headers, sse_body(rx, spec)).into_response());
        }
        let mut rxs = Vec::with_capacity(choices);
        self.submit_all(&mut job, arrival, |_| {
            let (tx, rx) = oneshot::channel();
            rxs.push(rx);
            Sink::Once(tx)
        })?;
        let mut outcomes = Vec::with_capacity(choices);
        for rx in rxs {
            outcomes.push(rx.await.map_err(|_| engine_gone())?);
        }
        let body = meta.formatter().full(&outcomes, job.n);
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}
