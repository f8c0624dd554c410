//! One structured log line per request (target `router::access`, level info): request id,
//! client key, model, replica, policy, decision reason, matched tokens, predicted TTFT, status,
//! time to first byte and duration. Text or JSON as `logging.format` says; turn it off with a
//! filter such as `info,router::access=off`.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// How the dispatcher routed a request; attached to the response as an extension.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// The replica that answered.
    pub replica: String,
    /// The policy's name.
    pub policy: &'static str,
    /// The policy's reason.
    pub reason: &'static str,
    /// Prompt tokens the replica was believed to hold (prefix policies).
    pub matched_tokens: Option<u64>,
    /// Predicted time to first token in seconds (cost policy).
    pub predicted_ttft_s: Option<f64>,
    /// Attempts made (1 without retries).
    pub attempts: u32,
}

/// What is known about a request before its response body streams.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The `x-request-id`.
    pub request_id: String,
    /// The client key's name, if auth is on.
    pub client: Option<String>,
    /// The request's `model`.
    pub model: Option<String>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The request path.
    pub path: String,
}

/// Logs a request that ended before any replica answered (an error the router produced).
pub fn log_refused(facts: &RequestFacts, status: u16, started: Instant) {
    tracing::info!(
        target: "router::access",
        request_id = %facts.request_id,
        client = facts.client.as_deref().unwrap_or("-"),
        path = %facts.path,
        model = facts.model.as_deref().unwrap_or("-"),
        stream = facts.stream,
        replica = "-",
        status,
        duration_ms = ms(started.elapsed().as_secs_f64()),
        "request"
    );
}

/// Wraps `body` so the request's line is logged when it ends (or the client goes away).
pub fn log_on_end(
    body: Body,
    facts: RequestFacts,
    route: Option<RouteInfo>,
    status: u16,
    started: Instant,
) -> Body {
    Body::new(LoggedBody {
        inner: body,
        pending: Some(Pending {
            facts,
            route,
            status,
            started,
            first_byte: None,
        }),
    })
}

struct Pending {
    facts: RequestFacts,
    route: Option<RouteInfo>,
    status: u16,
    started: Instant,
    first_byte: Option<f64>,
}

struct LoggedBody {
    inner: Body,
    pending: Option<Pending>,
}

fn ms(seconds: f64) -> f64 {
    (seconds * 1e4).round() / 10.0
}

impl LoggedBody {
    fn finish(&mut self, ending: &'static str) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let route = p.route.as_ref();
        tracing::info!(
            target: "router::access",
            request_id = %p.facts.request_id,
            client = p.facts.client.as_deref().unwrap_or("-"),
            path = %p.facts.path,
            model = p.facts.model.as_deref().unwrap_or("-"),
            stream = p.facts.stream,
            replica = route.map_or("-", |r| r.replica.as_str()),
            policy = route.map_or("-", |r| r.policy),
            reason = route.map_or("-", |r| r.reason),
            matched_tokens = route.and_then(|r| r.matched_tokens),
            predicted_ttft_ms = route.and_then(|r| r.predicted_ttft_s).map(ms),
            attempts = route.map_or(0, |r| r.attempts),
            status = p.status,
            ttfb_ms = p.first_byte.map(ms),
            duration_ms = ms(p.started.elapsed().as_secs_f64()),
            ending,
            "request"
        );
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(p) = &mut this.pending {
                    if p.first_byte.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                        p.first_byte = Some(p.started.elapsed().as_secs_f64());
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish("complete");
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish("upstream_error"),
            Poll::Ready(None) => this.finish("complete"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish("client_gone");
    }
}
