//! The SSE body of a streaming response: engine events in, `data: {...}\n\n` chunks out.
//! Events already queued when the body is polled are coalesced into one write.

use super::format::{Formatter, Kind, Usage};
use crate::engine::{FinishKind, StreamEvent};
use crate::tokenizer::filler_piece;
use axum::body::Body;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// Pause before a fault-injected cut so the events before it reach the client.
const CUT_FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Largest coalesced write.
const MAX_WRITE: usize = 32 * 1024;

/// Identity of one response, owned so the body can outlive the handler.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: Arc<str>,
}

impl Meta {
    /// A formatter borrowing this identity.
    pub(crate) fn formatter(&self) -> Formatter<'_> {
        Formatter {
            kind: self.kind,
            id: &self.id,
            created: self.created,
            model: &self.model,
        }
    }
}

/// What the stream needs besides the events.
#[derive(Debug)]
pub(crate) struct StreamSpec {
    pub(crate) meta: Meta,
    /// Total choices (prompts x n).
    pub(crate) choices: usize,
    /// Choices per prompt.
    pub(crate) n: usize,
    pub(crate) include_usage: bool,
    /// Finish reason of every choice.
    pub(crate) finish: FinishKind,
    /// Abort the connection after this many `data:` events (fault injection).
    pub(crate) cut_after: Option<usize>,
    /// Go silent after this many `data:` events (fault injection).
    pub(crate) stall_after: Option<usize>,
}

struct State {
    rx: UnboundedReceiver<StreamEvent>,
    /// Constant start of every token chunk.
    prefix: Vec<u8>,
    spec: StreamSpec,
    remaining: usize,
    usage: Usage,
    events: usize,
    /// Abort on the next poll.
    abort: bool,
    done: bool,
}

impl State {
    fn cut_reached(&self) -> bool {
        self.spec.cut_after.is_some_and(|c| self.events >= c)
    }

    /// Writes one event unless the cut point is reached.
    fn emit(&mut self, buf: &mut Vec<u8>, write: impl FnOnce(&Formatter<'_>, &mut Vec<u8>)) {
        if self.spec.stall_after.is_some_and(|n| self.events >= n) {
            return;
        }
        if self.cut_reached() {
            self.abort = true;
            return;
        }
        write(&self.spec.meta.formatter(), buf);
        self.events += 1;
    }

    fn apply(&mut self, ev: StreamEvent, buf: &mut Vec<u8>) {
        match ev {
            StreamEvent::Token {
                choice,
                index,
                last,
            } => {
                if index == 0 && self.spec.meta.kind == Kind::Chat {
                    self.emit(buf, |f, b| f.role_chunk(b, choice));
                }
                let finish = last.then_some(self.spec.finish.as_str());
                let prefix = std::mem::take(&mut self.prefix);
                self.emit(buf, |f, b| {
                    f.token_chunk(b, &prefix, choice, filler_piece(index as usize), finish)
                });
                self.prefix = prefix;
            }
            StreamEvent::Done { choice, outcome } => {
                self.usage
                    .add(&outcome, (choice as usize) % self.spec.n.max(1) == 0);
                self.remaining = self.remaining.saturating_sub(1);
                if self.remaining == 0 {
                    if self.spec.include_usage {
                        let usage = self.usage;
                        self.emit(buf, |f, b| f.usage_chunk(b, usage));
                    }
                    self.emit(buf, |_, b| b.extend_from_slice(b"data: [DONE]\n\n"));
                    self.done = true;
                }
            }
        }
    }

    /// Next body frame: `None` ends the body, `Err` aborts the connection.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.spec.stall_after.is_some_and(|n| self.events >= n) {
            // Silent until the client gives up (the body is dropped with the connection).
            std::future::pending::<()>().await;
        }
        if self.done {
            return None;
        }
        if self.abort || self.cut_reached() {
            self.done = true;
            // Let the connection flush what was already sent, then abort it.
            tokio::time::sleep(CUT_FLUSH_DELAY).await;
            return Some(Err(std::io::Error::other("stream cut (fault injection)")));
        }
        let Some(first) = self.rx.recv().await else {
            self.done = true;
            return Some(Err(std::io::Error::other("engine stopped")));
        };
        let mut buf = Vec::with_capacity(512);
        self.apply(first, &mut buf);
        while !self.done && !self.abort && buf.len() < MAX_WRITE {
            match self.rx.try_recv() {
                Ok(ev) => self.apply(ev, &mut buf),
                Err(_) => break,
            }
        }
        Some(Ok(Bytes::from(buf)))
    }
}

/// Builds the streaming body of one response.
pub(crate) fn sse_body(rx: UnboundedReceiver<StreamEvent>, spec: StreamSpec) -> Body {
    let state = State {
        prefix: spec.meta.formatter().chunk_prefix(),
        remaining: spec.choices,
        rx,
        spec,
        usage: Usage::default(),
        events: 0,
        abort: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        st.next().await.map(|item| (item, st))
    });
    Body::from_stream(stream)
}
