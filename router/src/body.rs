//! The response body streamed back to the client: frames pass through as they arrive, an idle
//! timeout bounds pauses, and the load guard and metrics are settled on every ending.

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

use crate::{error::UpstreamErrorKind, metrics::RouterMetrics, replicas::LoadGuard};

/// Boxed error type of the streamed body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Complete,
    UpstreamError,
    IdleTimeout,
    ClientGone,
}

/// Request bookkeeping settled exactly once when the body ends.
pub(crate) struct InFlight {
    pub(crate) guard: LoadGuard,
    pub(crate) started: Instant,
    pub(crate) metrics: Arc<RouterMetrics>,
    pub(crate) request_id: String,
}

/// A replica's response body with timeouts and accounting.
pub(crate) struct TrackedBody {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    first_byte_seen: bool,
    in_flight: Option<InFlight>,
}

impl TrackedBody {
    /// Wraps `inner`; `in_flight` is released when the body ends or is dropped.
    pub(crate) fn new(inner: Incoming, idle: Duration, in_flight: InFlight) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            first_byte_seen: false,
            in_flight: Some(in_flight),
        }
    }

    fn finish(&mut self, ending: Ending) {
        let Some(done) = self.in_flight.take() else {
            return;
        };
        let replica = done.guard.replica();
        let elapsed = done.started.elapsed();
        replica.metrics.duration.observe(elapsed.as_secs_f64());
        let kind = match ending {
            Ending::UpstreamError => Some(UpstreamErrorKind::Protocol),
            Ending::IdleTimeout => Some(UpstreamErrorKind::IdleTimeout),
            Ending::Complete | Ending::ClientGone => None,
        };
        if let Some(kind) = kind {
            done.metrics
                .upstream_errors
                .with_label_values(&[replica.name(), kind.as_str()])
                .inc();
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
        // `done.guard` drops here: the in-flight counters go back down.
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
        if this.in_flight.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if !this.first_byte_seen && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                    this.first_byte_seen = true;
                    if let Some(f) = &mut this.in_flight {
                        f.guard.first_byte();
                        f.guard
                            .replica()
                            .metrics
                            .ttfb
                            .observe(f.started.elapsed().as_secs_f64());
                    }
                }
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Ending::UpstreamError);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.finish(Ending::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.finish(Ending::IdleTimeout);
                    let message = format!("upstream sent nothing for {} ms", this.idle.as_millis());
                    return Poll::Ready(Some(Err(message.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.in_flight.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.finish(Ending::ClientGone);
    }
}
