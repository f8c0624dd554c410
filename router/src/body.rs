//! The response body streamed back to the client: frames pass through as they arrive, an idle
//! timeout bounds pauses, and the load guard and metrics are settled on every ending. A server-
//! sent event stream that fails mid-way ends with an SSE error event and `[DONE]`, not a reset.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::{
    error::UpstreamErrorKind,
    metrics::RouterMetrics,
    replicas::{LoadGuard, OutlierDetector},
};

/// Boxed error type of the streamed body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Complete,
    Failed(UpstreamErrorKind),
    ClientGone,
}

/// Something a request holds until its body ends (dropped then), told when the first byte
/// reaches the client: an admission permit (defined higher up, hence a trait).
pub(crate) trait HeldUntilEnd: Send + Sync {
    /// The response's first byte went to the client (a streamed answer: the prefill is done).
    fn first_byte(&mut self) {}
}

/// Request bookkeeping settled exactly once when the body ends.
pub(crate) struct InFlight {
    pub(crate) guard: LoadGuard,
    /// Released with the guard (the admission permit, kept across retries until here).
    pub(crate) held: Option<Box<dyn HeldUntilEnd>>,
    pub(crate) started: Instant,
    pub(crate) metrics: Arc<RouterMetrics>,
    pub(crate) request_id: String,
    /// Told about a streamed body's time to first byte and a body that fails mid-way (with
    /// the fleet size), when set.
    pub(crate) outliers: Option<(Arc<OutlierDetector>, usize)>,
}

/// How the body is shaped and what a failure inside it becomes.
pub(crate) struct BodyMode {
    /// A `text/event-stream` body: failures end it with an SSE error event.
    pub(crate) sse: bool,
    /// A frame already read from `inner`, sent first.
    pub(crate) first: Option<Frame<Bytes>>,
    /// Put the upstream failure's detail in the error event.
    pub(crate) expose_details: bool,
}

/// A replica's response body with timeouts and accounting.
pub(crate) struct TrackedBody {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    first_byte_seen: bool,
    in_flight: Option<InFlight>,
    mode: BodyMode,
    /// Whether the last data sent ended an SSE event (a blank line), or nothing was sent.
    at_event_boundary: bool,
}

impl TrackedBody {
    /// Wraps `inner`; `in_flight` is released when the body ends or is dropped.
    pub(crate) fn new(
        inner: Incoming,
        idle: Duration,
        in_flight: InFlight,
        mode: BodyMode,
    ) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            first_byte_seen: false,
            in_flight: Some(in_flight),
            mode,
            at_event_boundary: true,
        }
    }

    /// Bookkeeping of a data frame on its way to the client.
    fn on_frame(&mut self, frame: &Frame<Bytes>) {
        let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) else {
            return;
        };
        self.at_event_boundary = data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n");
        if !self.first_byte_seen {
            self.first_byte_seen = true;
            if let Some(f) = &mut self.in_flight {
                let ttfb = f.started.elapsed();
                // Only streamed answers are latency samples: their first byte is the first
                // token, while a whole answer's length is the client's choice.
                if self.mode.sse
                    && let (Some(prefill), Some((outliers, fleet))) =
                        (f.guard.prefill_tokens(), &f.outliers)
                {
                    outliers.record_latency(f.guard.replica(), ttfb, prefill, *fleet);
                }
                f.guard.first_byte();
                if let Some(held) = &mut f.held {
                    held.first_byte();
                }
                f.guard.replica().metrics.ttfb.observe(ttfb.as_secs_f64());
            }
        }
    }

    /// The upstream body failed (`kind`, `detail`): settles the request, and for an event
    /// stream returns the error event that ends it cleanly; `None` means abort the body.
    fn fail(&mut self, kind: UpstreamErrorKind, detail: &str) -> Option<Frame<Bytes>> {
        self.finish(Ending::Failed(kind));
        if !self.mode.sse {
            return None;
        }
        let message = if self.mode.expose_details {
            format!("upstream replica failed mid-stream ({kind}): {detail}")
        } else {
            format!("upstream replica failed mid-stream ({kind})")
        };
        let event = serde_json::json!({ "error": {
            "message": message,
            "type": "upstream_error",
            "param": null,
            "code": 502,
        }});
        let mut out = Vec::with_capacity(256);
        if !self.at_event_boundary {
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(event.to_string().as_bytes());
        out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        Some(Frame::data(Bytes::from(out)))
    }

    fn finish(&mut self, ending: Ending) {
        let Some(done) = self.in_flight.take() else {
            return;
        };
        let replica = done.guard.replica();
        let elapsed = done.started.elapsed();
        replica.metrics.duration.observe(elapsed.as_secs_f64());
        let kind = match ending {
            Ending::Failed(kind) => Some(kind),
            Ending::Complete | Ending::ClientGone => None,
        };
        if let Some(kind) = kind {
            done.metrics
                .upstream_errors
                .with_label_values(&[replica.name(), kind.as_str()])
                .inc();
            if let Some((outliers, fleet)) = &done.outliers {
                outliers.record_failure(replica, *fleet);
            }
            tracing::warn!(request_id = %done.request_id, replica = %replica.name(), %kind, "response body failed");
        } else {
            tracing::debug!(
                request_id = %done.request_id,
                replica = %replica.name(),
                ending = ?ending,
                elapsed_ms = elapsed.as_millis() as u64,
                "request finished"
            );
        }
        // `done.guard` and `done.held` drop here: the in-flight counters and the admission
        // slot go back down.
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(frame) = this.mode.first.take() {
            this.on_frame(&frame);
            if this.inner.is_end_stream() {
                this.finish(Ending::Complete);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.in_flight.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.on_frame(&frame);
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let detail = e.to_string();
                match this.fail(UpstreamErrorKind::Protocol, &detail) {
                    Some(event) => Poll::Ready(Some(Ok(event))),
                    None => Poll::Ready(Some(Err(Box::new(e)))),
                }
            }
            Poll::Ready(None) => {
                this.finish(Ending::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    let message = format!("upstream sent nothing for {} ms", this.idle.as_millis());
                    return match this.fail(UpstreamErrorKind::IdleTimeout, &message) {
                        Some(event) => Poll::Ready(Some(Ok(event))),
                        None => Poll::Ready(Some(Err(message.into()))),
                    };
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.in_flight.is_none() && self.mode.first.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let first = self
            .mode
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64);
        if first > 0 {
            // Upper first: `set_lower` panics above the current upper bound.
            let lower = hint.lower() + first;
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + first);
            }
            hint.set_lower(lower);
        }
        if self.mode.sse {
            // An error event may be appended: never promise an exact length.
            hint = SizeHint::new();
        }
        hint
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.finish(Ending::ClientGone);
    }
}
