//! The simulated engine: a prefix-caching block pool, a vLLM-like step scheduler and a GPU time
//! model, driven by one task per replica that owns all state (no locks on the hot path).

mod cache;
mod cost;
mod runner;
mod scheduler;
mod seq;

pub(crate) use cost::CostModel;
pub(crate) use scheduler::Scheduler;

use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// How a sequence ends when it reaches its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishKind {
    /// Hit `max_tokens` ("length").
    Length,
    /// Stopped on a (simulated) end-of-sequence token ("stop").
    Stop,
}

impl FinishKind {
    /// The OpenAI `finish_reason` string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FinishKind::Length => "length",
            FinishKind::Stop => "stop",
        }
    }
}

/// Final accounting of one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Prompt length in tokens.
    pub(crate) prompt_tokens: usize,
    /// Prompt tokens found in the prefix cache at first admission.
    pub(crate) cached_tokens: usize,
    /// Tokens generated.
    pub(crate) completion_tokens: usize,
    /// Why it ended.
    pub(crate) finish: FinishKind,
}

/// Progress of a streamed sequence.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// Output token number `index` of choice `choice` is ready.
    Token {
        /// Choice index in the response.
        choice: u32,
        /// 0-based position in the output.
        index: u32,
        /// True for the last token (the chunk carries `finish_reason`).
        last: bool,
    },
    /// The choice is finished.
    Done {
        /// Choice index in the response.
        choice: u32,
        /// Its accounting.
        outcome: Outcome,
    },
}

/// Where a sequence reports: once at the end, or per token.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Non-streaming: only the final outcome.
    Once(oneshot::Sender<Outcome>),
    /// Streaming: every token, then `Done`.
    Stream {
        /// Shared by all choices of one response.
        tx: mpsc::UnboundedSender<StreamEvent>,
        /// This sequence's choice index.
        choice: u32,
    },
}

impl Sink {
    /// True once the HTTP side has gone away (client disconnected).
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sink::Once(tx) => tx.is_closed(),
            Sink::Stream { tx, .. } => tx.is_closed(),
        }
    }
}

/// One sequence to generate.
#[derive(Debug)]
pub(crate) struct SeqRequest {
    /// Prompt token ids.
    pub(crate) tokens: Vec<u32>,
    /// Chained hashes of the prompt's full blocks (computed off the engine task).
    pub(crate) hashes: Vec<u64>,
    /// Exact number of tokens to generate (>= 1).
    pub(crate) max_tokens: usize,
    /// Finish reason once `max_tokens` are out.
    pub(crate) finish: FinishKind,
    /// Lower runs first under the priority policy.
    pub(crate) priority: i64,
    /// When the HTTP request arrived.
    pub(crate) arrival: Instant,
    /// Where to report.
    pub(crate) sink: Sink,
}

/// Messages to the engine task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue a sequence.
    Submit(Box<SeqRequest>),
    /// Drop all cached prefixes; replies when done.
    ResetCache(oneshot::Sender<()>),
    /// Simulate an engine restart for KV events: cache emptied without an event, event
    /// sequence back to 0; replies when done.
    KvRestart(oneshot::Sender<()>),
}

/// Cheap, cloneable handle to one replica's engine task.
#[derive(Debug, Clone)]
pub(crate) struct EngineHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl EngineHandle {
    /// Spawns the engine task for `scheduler` with time model `cost`.
    pub(crate) fn spawn(
        scheduler: Scheduler,
        cost: CostModel,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(runner::run(scheduler, cost, rx));
        (Self { tx }, task)
    }

    /// Queues a sequence; false if the engine has stopped.
    pub(crate) fn submit(&self, req: SeqRequest) -> bool {
        self.tx.send(Command::Submit(Box::new(req))).is_ok()
    }

    /// Simulates an engine restart (KV events); false if the engine has stopped.
    pub(crate) async fn kv_restart(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::KvRestart(tx)).is_err() {
            return false;
        }
        rx.await.is_ok()
    }

    /// Clears the prefix cache; false if the engine has stopped.
    pub(crate) async fn reset_cache(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::ResetCache(tx)).is_err() {
            return false;
        }
        rx.await.is_ok()
    }
}
