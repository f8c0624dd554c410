//! One sequence's state inside the engine, and its final report (metrics and outcome).

use super::{FinishKind, Outcome, SeqRequest, Sink, StreamEvent};
use crate::metrics::{FinishedReason, Metrics, secs};
use std::time::Instant;

/// One sequence inside the engine.
#[derive(Debug)]
pub(super) struct Seq {
    /// Queue order: (priority or 0 under FCFS, arrival number).
    pub(super) key: (i64, u64),
    pub(super) tokens: Vec<u32>,
    pub(super) hashes: Vec<u64>,
    pub(super) prompt_len: usize,
    pub(super) max_tokens: usize,
    pub(super) finish: FinishKind,
    pub(super) generated: usize,
    /// Tokens whose KV is computed.
    pub(super) computed: usize,
    pub(super) blocks: Vec<u32>,
    /// Leading blocks whose hash is registered in the pool.
    pub(super) registered: usize,
    /// Tokens scheduled in the current step.
    pub(super) scheduled: usize,
    pub(super) cached_tokens: Option<usize>,
    pub(super) arrival: Instant,
    pub(super) scheduled_at: Option<Instant>,
    pub(super) first_token_at: Option<Instant>,
    pub(super) last_token_at: Option<Instant>,
    pub(super) aborted: bool,
    pub(super) sink: Sink,
}

impl Seq {
    /// A waiting sequence with queue key `key`.
    pub(super) fn new(req: SeqRequest, key: (i64, u64)) -> Self {
        Self {
            key,
            prompt_len: req.tokens.len(),
            tokens: req.tokens,
            hashes: req.hashes,
            max_tokens: req.max_tokens.max(1),
            finish: req.finish,
            generated: 0,
            computed: 0,
            blocks: Vec::new(),
            registered: 0,
            scheduled: 0,
            cached_tokens: None,
            arrival: req.arrival,
            scheduled_at: None,
            first_token_at: None,
            last_token_at: None,
            aborted: false,
            sink: req.sink,
        }
    }

    /// Records the finished sequence's metrics and sends its outcome to the HTTP side.
    pub(super) fn report(self, metrics: &Metrics, now: Instant) {
        let seq = self;
        let m = metrics;
        let reason = if seq.aborted {
            FinishedReason::Abort
        } else {
            match seq.finish {
                FinishKind::Length => FinishedReason::Length,
                FinishKind::Stop => FinishedReason::Stop,
            }
        };
        m.success(reason);
        if !seq.aborted {
            m.e2e
                .observe(secs(now.saturating_duration_since(seq.arrival)));
            if let (Some(sched), Some(first)) = (seq.scheduled_at, seq.first_token_at) {
                m.queue_time
                    .observe(secs(sched.saturating_duration_since(seq.arrival)));
                m.prefill_time
                    .observe(secs(first.saturating_duration_since(sched)));
                let decode = now.saturating_duration_since(first);
                m.decode_time.observe(secs(decode));
                if seq.generated > 1 {
                    m.tpot.observe(secs(decode) / (seq.generated - 1) as f64);
                }
            }
            m.request_prompt_tokens.observe(seq.prompt_len as f64);
            let cached = seq.cached_tokens.unwrap_or(0).min(seq.prompt_len);
            m.prefill_kv_computed_tokens
                .observe((seq.prompt_len - cached) as f64);
            m.request_generation_tokens.observe(seq.generated as f64);
        }
        let outcome = Outcome {
            prompt_tokens: seq.prompt_len,
            cached_tokens: seq.cached_tokens.unwrap_or(0),
            completion_tokens: seq.generated,
            finish: seq.finish,
        };
        match seq.sink {
            Sink::Once(tx) => {
                let _ = tx.send(outcome);
            }
            Sink::Stream { tx, choice } => {
                let _ = tx.send(StreamEvent::Done { choice, outcome });
            }
        }
    }
}
