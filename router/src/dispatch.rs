//! The one place a request is admitted: the policy picks, load is counted, connect failures are
//! retried on another replica, and the response is wrapped so its load is released on any ending.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Body;
use http::{HeaderValue, Response};

use crate::{
    Error,
    admission::Admission,
    body::{InFlight, TrackedBody},
    config::{HealthConfig, RetryConfig},
    error::UpstreamErrorKind,
    metrics::RouterMetrics,
    policy::{Policy, ReplicaView},
    prompt_key::PromptKeys,
    proxy::{Proxy, UpstreamRequest},
    replicas::{LoadGuard, ReplicaId, ReplicaSet},
    request::ParsedRequest,
};

/// Header naming the replica that served the request.
pub const ROUTED_TO: &str = "x-routed-to";
/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Admits requests and sends them to the replica the policy picks.
pub struct Dispatcher {
    /// The replica set.
    pub replicas: Arc<ReplicaSet>,
    /// The routing policy.
    pub policy: Arc<dyn Policy>,
    /// The upstream client.
    pub proxy: Proxy,
    /// Router metrics.
    pub metrics: Arc<RouterMetrics>,
    /// Retry budget.
    pub retry: RetryConfig,
    /// Health settings for passive marking.
    pub health: HealthConfig,
    /// Longest pause inside a response body.
    pub idle_timeout: Duration,
    /// How prompt keys are made (bytes, or tokens off the async threads).
    pub keys: PromptKeys,
    /// The admission queue and replica caps.
    pub admission: Admission,
}

impl Dispatcher {
    /// Routes one request and returns the streaming response, or the error to send instead.
    pub async fn dispatch(
        &self,
        parsed: &ParsedRequest,
        mut upstream: UpstreamRequest,
        request_id: &str,
    ) -> Result<Response<Body>, Error> {
        let route = parsed.route_request();
        let tokens = route.prompt_tokens_estimate as u64;
        let policy_name = self.policy.name();
        let mut tried: Vec<ReplicaId> = Vec::new();
        let mut last_error: Option<Error> = None;
        // Waits while every replica is at its cap; the permit is held like the load guard.
        let admitted = (self.admission)
            .admit_request(&self.replicas.snapshot(), parsed, &mut upstream)
            .await;
        let mut permit = match admitted {
            Ok(permit) => permit,
            Err(error) => {
                self.count_request("none", error.status());
                return Err(error);
            }
        };
        for attempt in 0..=self.retry.max_retries {
            let snapshot = self.replicas.snapshot();
            let healthy: Vec<_> = snapshot
                .all()
                .iter()
                .filter(|r| r.is_healthy() && !tried.contains(&r.id()) && permit.has_room(r.id()))
                .filter(|r| r.serving.accepts(parsed.model.as_deref()))
                .collect();
            if healthy.is_empty() {
                break;
            }
            let views: Vec<ReplicaView<'_>> = healthy.iter().map(|r| r.view()).collect();
            let decision = self.policy.pick(&route, &views);
            let replica = match healthy.iter().find(|r| r.id() == decision.replica) {
                Some(r) => Arc::clone(r),
                None => {
                    tracing::error!(policy = policy_name, chosen = %decision.replica, "policy chose a non-candidate");
                    Arc::clone(healthy[0])
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
            let started = Instant::now();
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
            permit.bind(replica.id());
            let mut guard = LoadGuard::acquire_with_prefill(Arc::clone(&replica), tokens, prefill);
            guard.predict_first_byte(decision.predicted_ttft_s);
            self.policy.on_dispatch(&route, replica.id());
            match self.proxy.send(&replica, &upstream).await {
                Ok(response) => {
                    let status = response.status();
                    if self.health.enabled && self.health.passive {
                        if status.is_server_error() {
                            replica.note_failure(self.health.unhealthy_threshold, "5xx response");
                        } else {
                            replica.health.clear_failures();
                        }
                    }
                    if status.is_server_error() {
                        self.count_error(replica.name(), UpstreamErrorKind::Status5xx);
                    }
                    self.count_request(replica.name(), status);
                    let (mut parts, incoming) = response.into_parts();
                    let mut headers = http::HeaderMap::with_capacity(parts.headers.len() + 2);
                    crate::proxy::copy_end_to_end(&parts.headers, &mut headers);
                    if let Ok(v) = HeaderValue::from_str(replica.name()) {
                        headers.insert(ROUTED_TO, v);
                    }
                    if let Ok(v) = HeaderValue::from_str(request_id) {
                        headers.insert(REQUEST_ID, v);
                    }
                    parts.headers = headers;
                    parts.extensions.insert(crate::access_log::RouteInfo {
                        replica: replica.name().to_owned(),
                        policy: policy_name,
                        reason: decision.reason.as_str(),
                        matched_tokens: decision.matched_tokens,
                        predicted_ttft_s: decision.predicted_ttft_s,
                        attempts: attempt + 1,
                    });
                    let in_flight = InFlight {
                        guard,
                        started,
                        metrics: Arc::clone(&self.metrics),
                        request_id: request_id.to_owned(),
                    };
                    let body = TrackedBody::new(incoming, self.idle_timeout, in_flight);
                    let response = Response::from_parts(parts, Body::new(body));
                    return Ok(crate::admission::hold(response, permit));
                }
                Err(error) => {
                    drop(guard);
                    let kind = match &error {
                        Error::Upstream { kind, .. } | Error::Timeout { kind, .. } => Some(*kind),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        self.count_error(replica.name(), kind);
                    }
                    if kind != Some(UpstreamErrorKind::Connect) {
                        tracing::warn!(request_id, replica = %replica.name(), %error, "upstream request failed");
                        self.count_request(replica.name(), error.status());
                        return Err(error);
                    }
                    if self.health.enabled && self.health.passive {
                        replica.note_failure(self.health.unhealthy_threshold, "connect error");
                    }
                    tracing::warn!(request_id, replica = %replica.name(), %error, attempt, "connect failed");
                    tried.push(replica.id());
                    if attempt < self.retry.max_retries {
                        self.metrics
                            .retries
                            .with_label_values(&[replica.name()])
                            .inc();
                    }
                    last_error = Some(error);
                }
            }
        }
        let error = last_error.unwrap_or(Error::NoHealthyReplica);
        if matches!(error, Error::NoHealthyReplica) {
            self.metrics.no_healthy.inc();
        }
        let replica = match &error {
            Error::Upstream { replica, .. } => replica.as_str(),
            _ => "none",
        };
        self.count_request(replica, error.status());
        Err(error)
    }

    fn count_request(&self, replica: &str, status: http::StatusCode) {
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
