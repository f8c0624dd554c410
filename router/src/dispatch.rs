//! The one place a request is admitted, in named steps: `candidates` (who may serve it),
//! `select` (the policy picks), `send` (one attempt), `respond` (wrap the body so its load is
//! released on any ending). A failure before any byte reached the client is re-sent to another
//! replica within the retry budget, after a jittered back-off.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header, response::Parts};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::{
    Error,
    admission::{Admission, Permit},
    body::{BodyMode, InFlight, TrackedBody},
    error::UpstreamErrorKind,
    health::HealthConfig,
    metrics::RouterMetrics,
    policy::{Decision, Policy, ReplicaView, RouteRequest},
    prompt_key::PromptKeys,
    proxy::{Proxy, UpstreamRequest},
    replicas::{LoadGuard, Replica, ReplicaId, ReplicaSet, Snapshot},
    request::ParsedRequest,
    resilience::Resilience,
    retry::RetryConfig,
};

/// Header naming the replica that served the request.
pub const ROUTED_TO: &str = "x-routed-to";
/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Admits requests and sends them to the replica the policy picks.
pub struct Dispatcher {
    /// The replica set.
    replicas: Arc<ReplicaSet>,
    /// The routing policy.
    policy: Arc<dyn Policy>,
    /// The upstream client.
    proxy: Proxy,
    /// Router metrics.
    metrics: Arc<RouterMetrics>,
    /// Retry budget.
    retry: RetryConfig,
    /// Health settings for passive marking.
    health: HealthConfig,
    /// Longest pause inside a response body.
    idle_timeout: Duration,
    /// How prompt keys are made (bytes, or tokens off the async threads).
    keys: PromptKeys,
    /// The admission queue and replica caps.
    admission: Admission,
    /// Retry budget, outlier ejection, streaming first-byte timeout, error exposure.
    resilience: Resilience,
}

/// The dispatcher's settings taken from config.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Retries of requests that never reached a replica.
    pub retry: RetryConfig,
    /// Health settings for passive marking (and the timeout of fan-out GETs).
    pub health: HealthConfig,
    /// Longest pause inside a request or response body.
    pub idle_timeout: Duration,
    /// How prompt keys are made (bytes, or tokens off the async threads).
    pub keys: PromptKeys,
}

/// The replica the policy chose for one attempt.
struct Selected {
    replica: Arc<Replica>,
    decision: Decision,
    /// 0 for the first attempt, 1 for the first retry, ...
    attempt: u32,
}

/// An attempt that failed before anything reached the client.
struct Failure {
    /// The replica that failed.
    replica: String,
    cause: Cause,
}

/// What went wrong in a failed attempt.
enum Cause {
    /// No usable answer (connect error, timeout, connection lost before the body started).
    Error(Error),
    /// The replica answered 5xx; kept so the last one can be the client's answer.
    Status(Response<Incoming>),
}

impl Dispatcher {
    /// A dispatcher over `replicas`, routing with `policy` through `proxy`.
    pub fn new(
        replicas: Arc<ReplicaSet>,
        policy: Arc<dyn Policy>,
        proxy: Proxy,
        metrics: Arc<RouterMetrics>,
        admission: Admission,
        resilience: Resilience,
        settings: DispatchSettings,
    ) -> Self {
        Self {
            replicas,
            policy,
            proxy,
            metrics,
            retry: settings.retry,
            health: settings.health,
            idle_timeout: settings.idle_timeout,
            keys: settings.keys,
            admission,
            resilience,
        }
    }

    /// The replica set as it is now.
    pub fn replica_snapshot(&self) -> Arc<Snapshot> {
        self.replicas.snapshot()
    }

    /// Longest pause allowed inside a request or response body.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Finalises the prompt key of `parsed` (tokenizing in token mode); see
    /// [`PromptKeys::prepare`].
    pub async fn prepare_key(&self, parsed: &mut ParsedRequest) {
        self.keys.prepare(parsed).await;
    }

    /// Whether clients see replicas' own error bodies and failure details.
    pub fn expose_upstream_details(&self) -> bool {
        self.resilience.expose_upstream_details
    }

    /// The router's metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// GETs `path` on every healthy replica at once (timeout: the probe timeout, at least 1 s);
    /// each replica's name with its status and body or why it failed. No healthy replica is an
    /// error.
    pub async fn get_from_healthy(
        &self,
        path: &str,
    ) -> Result<Vec<(String, Result<(u16, Bytes), Error>)>, Error> {
        let snapshot = self.replicas.snapshot();
        let healthy: Vec<_> = snapshot.all().iter().filter(|r| r.is_healthy()).collect();
        if healthy.is_empty() {
            return Err(Error::NoHealthyReplica);
        }
        let timeout = Duration::from_millis(self.health.timeout_ms.max(1000));
        let fetches = healthy.iter().map(|r| self.proxy.get(r, path, timeout));
        let results = futures_util::future::join_all(fetches).await;
        Ok(healthy
            .iter()
            .map(|r| r.name().to_owned())
            .zip(results)
            .collect())
    }

    /// Routes one request and returns the streaming response, or the error to send instead.
    pub async fn dispatch(
        &self,
        parsed: &ParsedRequest,
        mut upstream: UpstreamRequest,
        request_id: &str,
    ) -> Result<Response<Body>, Error> {
        let route = parsed.route_request();
        self.resilience.budget.deposit();
        let mut tried: Vec<ReplicaId> = Vec::new();
        // Placement on arrival: the request's load counts on its home while it waits there.
        let mut placed = self.place(parsed, &route, request_id);
        let home = placed.as_ref().map(|(selected, _)| selected.replica.id());
        // Waits while every replica is at its cap; the permit is held like the load guard.
        let admitted = (self.admission)
            .admit_request(&self.replicas, &*self.policy, parsed, &mut upstream, home)
            .await;
        let mut permit = match admitted {
            Ok(permit) => permit,
            Err(error) => {
                self.count_request("none", error.status());
                return Err(error);
            }
        };
        let mut last: Option<Failure> = None;
        for attempt in 0..=self.retry.max_retries {
            if let Some(failed) = &last {
                if !self.may_retry(parsed, &permit, &tried, &failed.replica, request_id) {
                    break;
                }
                tokio::time::sleep(self.resilience.budget.backoff(attempt)).await;
            }
            // Sent home as placed, or (spilled over, or a retry) placed again now.
            let (selected, guard) = match placed.take() {
                Some((selected, guard)) if permit.bound_to() == Some(selected.replica.id()) => {
                    (selected, Some(guard))
                }
                _ => match self.select(parsed, &permit, &route, &tried, request_id, attempt) {
                    Some(selected) => (selected, None),
                    None => break,
                },
            };
            tried.push(selected.replica.id());
            match self
                .send(
                    parsed,
                    &route,
                    &upstream,
                    selected,
                    guard,
                    &mut permit,
                    request_id,
                )
                .await
            {
                Ok(response) => return Ok(response),
                Err(failure) => last = Some(failure),
            }
        }
        self.give_up(last, request_id)
    }

    /// Under placement on arrival, the request's home (the policy's pick over every candidate,
    /// caps aside) with its load counted there and the policy told, as on dispatch.
    fn place(
        &self,
        parsed: &ParsedRequest,
        route: &RouteRequest<'_>,
        request_id: &str,
    ) -> Option<(Selected, LoadGuard)> {
        if !self.admission.places_at_arrival() {
            return None;
        }
        let selected = self.select(parsed, &Permit::free(0), route, &[], request_id, 0)?;
        let mut guard = self.count_load(parsed, route, &selected.replica, &selected.decision);
        guard.predict_first_byte(selected.decision.predicted_ttft_s);
        self.policy.on_dispatch(route, selected.replica.id());
        Some((selected, guard))
    }

    /// Replicas a new attempt may go to: healthy, serving the request's model, with room under
    /// their admission cap, not tried by this request, and not ejected as outliers (unless every
    /// one left is: then ejection is ignored, as Envoy's panic mode).
    fn candidates<'s>(
        &self,
        snapshot: &'s Snapshot,
        parsed: &ParsedRequest,
        permit: &Permit,
        tried: &[ReplicaId],
    ) -> Vec<&'s Arc<Replica>> {
        let open: Vec<&Arc<Replica>> = snapshot
            .all()
            .iter()
            .filter(|r| r.is_healthy() && !tried.contains(&r.id()) && permit.has_room(r.id()))
            .filter(|r| r.serving.accepts(parsed.model.as_deref()))
            .collect();
        let now = Instant::now();
        let kept: Vec<&Arc<Replica>> = open
            .iter()
            .copied()
            .filter(|r| !self.resilience.outliers.is_ejected(r, now))
            .collect();
        if kept.is_empty() { open } else { kept }
    }

    /// Asks the policy to pick among the candidates; `None` when there is none.
    fn select(
        &self,
        parsed: &ParsedRequest,
        permit: &Permit,
        route: &RouteRequest<'_>,
        tried: &[ReplicaId],
        request_id: &str,
        attempt: u32,
    ) -> Option<Selected> {
        let snapshot = self.replicas.snapshot();
        let candidates = self.candidates(&snapshot, parsed, permit, tried);
        let first = *candidates.first()?;
        let views: Vec<ReplicaView<'_>> = candidates.iter().map(|r| r.view()).collect();
        let decision = self.policy.pick(route, &views);
        let policy_name = self.policy.name();
        let replica = match candidates.iter().find(|r| r.id() == decision.replica) {
            Some(r) => Arc::clone(r),
            None => {
                tracing::error!(policy = policy_name, chosen = %decision.replica, "policy chose a non-candidate");
                Arc::clone(first)
            }
        };
        self.metrics
            .decisions
            .with_label_values(&[policy_name, decision.reason.as_str()])
            .inc();
        tracing::debug!(
            request_id, replica = %replica.name(), reason = decision.reason.as_str(), attempt,
            "routing decision"
        );
        Some(Selected {
            replica,
            decision,
            attempt,
        })
    }

    /// Whether a failed request may try again: another candidate exists and the router-wide
    /// budget has a retry left. Counts the retry against the replica that failed.
    fn may_retry(
        &self,
        parsed: &ParsedRequest,
        permit: &Permit,
        tried: &[ReplicaId],
        failed: &str,
        request_id: &str,
    ) -> bool {
        let snapshot = self.replicas.snapshot();
        if self.candidates(&snapshot, parsed, permit, tried).is_empty() {
            return false;
        }
        if !self.resilience.budget.withdraw() {
            tracing::warn!(
                request_id,
                replica = failed,
                "retry budget spent; not retrying"
            );
            return false;
        }
        self.metrics.retries.with_label_values(&[failed]).inc();
        true
    }

    /// One attempt on the selected replica: counts its load (unless `placed` already does),
    /// forwards, and classifies the answer. A 5xx, or a failure before the body started, is a
    /// [`Failure`] to retry.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        parsed: &ParsedRequest,
        route: &RouteRequest<'_>,
        upstream: &UpstreamRequest,
        selected: Selected,
        placed: Option<LoadGuard>,
        permit: &mut Permit,
        request_id: &str,
    ) -> Result<Response<Body>, Failure> {
        let Selected {
            replica,
            decision,
            attempt,
        } = selected;
        let started = Instant::now();
        permit.bind(replica.id());
        let guard = placed.unwrap_or_else(|| {
            let mut guard = self.count_load(parsed, route, &replica, &decision);
            guard.predict_first_byte(decision.predicted_ttft_s);
            self.policy.on_dispatch(route, replica.id());
            guard
        });
        let first_byte = if parsed.stream {
            self.resilience.stream_first_byte
        } else {
            self.proxy.first_byte_timeout()
        };
        let response = match self.proxy.send_within(&replica, upstream, first_byte).await {
            Ok(response) => response,
            Err(error) => return Err(self.failed(&replica, error, request_id)),
        };
        let status = response.status();
        if status.is_server_error() {
            self.note_failure(&replica, UpstreamErrorKind::Status5xx, "5xx response");
            tracing::warn!(request_id, replica = %replica.name(), %status, "replica answered 5xx");
            return Err(Failure {
                replica: replica.name().to_owned(),
                cause: Cause::Status(response),
            });
        }
        let (parts, mut incoming) = response.into_parts();
        let sse = is_event_stream(&parts.headers);
        // A non-streaming answer comes in one piece: wait for its first bytes, so a connection
        // lost before them is still a failure nothing has seen, and can be retried.
        let mut first = None;
        if !sse && !http_body::Body::is_end_stream(&incoming) {
            match tokio::time::timeout(self.idle_timeout, incoming.frame()).await {
                Ok(Some(Ok(frame))) => first = Some(frame),
                Ok(None) => {}
                Ok(Some(Err(e))) => {
                    let error = Error::Upstream {
                        replica: replica.name().to_owned(),
                        kind: UpstreamErrorKind::Protocol,
                        message: format!("response body failed before its first byte: {e}"),
                    };
                    return Err(self.failed(&replica, error, request_id));
                }
                Err(_) => {
                    let error = Error::Timeout {
                        replica: replica.name().to_owned(),
                        kind: UpstreamErrorKind::IdleTimeout,
                    };
                    return Err(self.failed(&replica, error, request_id));
                }
            }
        }
        if self.health.enabled && self.health.passive {
            replica.health.clear_failures();
        }
        self.resilience.outliers.record_success(&replica);
        self.count_request(replica.name(), status);
        // The permit now ends with the body (the free one left behind holds nothing).
        let permit = std::mem::replace(permit, Permit::free(permit.priority()));
        let waited = permit.waited();
        let in_flight = InFlight {
            guard,
            held: Some(Box::new(permit)),
            started,
            metrics: Arc::clone(&self.metrics),
            request_id: request_id.to_owned(),
            outliers: Some((
                Arc::clone(&self.resilience.outliers),
                self.replicas.snapshot().all().len(),
            )),
        };
        let mode = BodyMode {
            sse,
            first,
            expose_details: self.resilience.expose_upstream_details,
        };
        let mut response = self.respond(parts, incoming, in_flight, mode, request_id);
        if let Ok(v) = HeaderValue::from_str(&waited.as_millis().to_string()) {
            response
                .headers_mut()
                .insert(crate::admission::QUEUE_WAIT_HEADER, v);
        }
        response
            .extensions_mut()
            .insert(crate::access_log::RouteInfo {
                replica: replica.name().to_owned(),
                policy: self.policy.name(),
                reason: decision.reason.as_str(),
                matched_tokens: decision.matched_tokens,
                predicted_ttft_s: decision.predicted_ttft_s.map(|p| p.total_s()),
                attempts: attempt + 1,
            });
        Ok(response)
    }

    /// Counts the request's load on `replica` until the returned guard drops.
    fn count_load(
        &self,
        parsed: &ParsedRequest,
        route: &RouteRequest<'_>,
        replica: &Arc<Replica>,
        decision: &Decision,
    ) -> LoadGuard {
        let tokens = route.prompt_tokens_estimate as u64;
        let policy_name = self.policy.name();
        // Prefix policies say how much of the prompt the replica holds: only the rest is
        // queued prefill work there. Others count the whole prompt.
        let prefill = match decision.matched_tokens {
            Some(matched) => {
                if tokens > 0 {
                    self.metrics
                        .prefix_match_ratio
                        .with_label_values(&[policy_name])
                        .observe(matched.min(tokens) as f64 / tokens as f64);
                }
                tokens.saturating_sub(matched)
            }
            None => tokens,
        };
        let prefill = parsed.stream.then_some(prefill);
        LoadGuard::acquire_with_prefill(Arc::clone(replica), tokens, prefill)
    }

    /// Records a failed attempt (metrics, passive health, outlier streak) as a [`Failure`].
    fn failed(&self, replica: &Replica, error: Error, request_id: &str) -> Failure {
        let kind = match &error {
            Error::Upstream { kind, .. } | Error::Timeout { kind, .. } => *kind,
            _ => UpstreamErrorKind::Protocol,
        };
        self.note_failure(replica, kind, kind.as_str());
        tracing::warn!(request_id, replica = %replica.name(), %error, "upstream attempt failed");
        Failure {
            replica: replica.name().to_owned(),
            cause: Cause::Error(error),
        }
    }

    /// Counts one failure of `replica` in metrics, passive health and outlier detection.
    fn note_failure(&self, replica: &Replica, kind: UpstreamErrorKind, why: &str) {
        self.count_error(replica.name(), kind);
        let passive = matches!(
            kind,
            UpstreamErrorKind::Connect | UpstreamErrorKind::Status5xx
        );
        if passive && self.health.enabled && self.health.passive {
            replica.note_failure(self.health.unhealthy_threshold, why);
        }
        let fleet = self.replicas.snapshot().all().len();
        self.resilience.outliers.record_failure(replica, fleet);
    }

    /// Wraps the replica's answer: end-to-end headers plus `x-routed-to` and `x-request-id`,
    /// and a body that settles the request's load and metrics on any ending.
    fn respond(
        &self,
        mut parts: Parts,
        incoming: Incoming,
        in_flight: InFlight,
        mode: BodyMode,
        request_id: &str,
    ) -> Response<Body> {
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 2);
        crate::proxy::copy_end_to_end(&parts.headers, &mut headers);
        stamp(&mut headers, in_flight.guard.replica().name(), request_id);
        parts.headers = headers;
        let body = TrackedBody::new(incoming, self.idle_timeout, in_flight, mode);
        Response::from_parts(parts, Body::new(body))
    }

    /// The client's answer once no attempt is left: the last failure's status, or 503 when
    /// no replica could be tried at all.
    fn give_up(&self, last: Option<Failure>, request_id: &str) -> Result<Response<Body>, Error> {
        let Some(Failure { replica, cause }) = last else {
            self.metrics.no_healthy.inc();
            self.count_request("none", StatusCode::SERVICE_UNAVAILABLE);
            return Err(Error::NoHealthyReplica);
        };
        match cause {
            Cause::Error(error) => {
                self.count_request(&replica, error.status());
                Err(error)
            }
            Cause::Status(response) => {
                self.count_request(&replica, response.status());
                Ok(self.upstream_status(response, &replica, request_id))
            }
        }
    }

    /// A replica's 5xx answer as the client sees it: passed through when
    /// `errors.expose_upstream_details` is on, else the router's own error with the same status.
    fn upstream_status(
        &self,
        response: Response<Incoming>,
        replica: &str,
        request_id: &str,
    ) -> Response<Body> {
        let (parts, incoming) = response.into_parts();
        let mut headers = HeaderMap::new();
        if self.resilience.expose_upstream_details {
            crate::proxy::copy_end_to_end(&parts.headers, &mut headers);
            stamp(&mut headers, replica, request_id);
            let mut out = Response::new(Body::new(incoming));
            *out.status_mut() = parts.status;
            *out.headers_mut() = headers;
            return out;
        }
        let status = parts.status;
        let body = serde_json::json!({ "error": {
            "message": format!("upstream replica answered {status}"),
            "type": "upstream_error",
            "code": status.as_u16(),
        }});
        stamp(&mut headers, replica, request_id);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let mut out = Response::new(Body::from(Bytes::from(body.to_string())));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }

    fn count_request(&self, replica: &str, status: StatusCode) {
        self.metrics
            .requests
            .with_label_values(&[replica, self.policy.name(), status.as_str()])
            .inc();
    }

    fn count_error(&self, replica: &str, kind: UpstreamErrorKind) {
        self.metrics
            .upstream_errors
            .with_label_values(&[replica, kind.as_str()])
            .inc();
    }
}

/// Adds `x-routed-to` and `x-request-id` to a response's headers.
fn stamp(headers: &mut HeaderMap, replica: &str, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(replica) {
        headers.insert(ROUTED_TO, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, v);
    }
}

/// Whether the response is a server-sent event stream.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}
