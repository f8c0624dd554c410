//! HTTP routes: inference endpoints, pass-through, model list, health, readiness and metrics.
//! Every error leaves through the one `IntoResponse` below as OpenAI-style JSON.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::{
    Error, admin, auth,
    dispatch::{Dispatcher, REQUEST_ID},
    proxy::UpstreamRequest,
    request::{self, Endpoint, ParsedRequest},
};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The dispatcher (and through it the replicas, proxy and metrics).
    pub dispatcher: Arc<Dispatcher>,
    /// Largest accepted body (changes on config reload).
    pub limits: Arc<crate::reload::LiveLimits>,
    /// Client API key checking on `/v1` routes.
    pub auth: auth::Auth,
    /// The admin API, when a token is configured.
    pub(crate) admin: Option<admin::AdminState>,
    /// Set when shutdown begins: `/readiness` answers 503 from then on.
    pub shutting_down: Arc<AtomicBool>,
    /// The precise index from KV events, for the readiness detail (None when off).
    pub kv_events: Option<Arc<crate::kv::PreciseIndex>>,
}

/// The router's axum application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/{*rest}", any(passthrough))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_key,
        ))
        .route("/health", get(health))
        .route("/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .merge(admin::routes(state.admin))
        .layer(axum::middleware::from_fn(with_request_id))
}

/// Gives every request an `x-request-id` (the client's or a new one) and echoes it back.
async fn with_request_id(mut request: Request, next: axum::middleware::Next) -> Response {
    let id = match request.headers().get(REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => {
            let fresh = HeaderValue::from_str(&new_request_id());
            let Ok(fresh) = fresh else {
                return next.run(request).await;
            };
            request.headers_mut().insert(REQUEST_ID, fresh.clone());
            fresh
        }
    };
    let mut response = next.run(request).await;
    response.headers_mut().entry(REQUEST_ID).or_insert(id);
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self
            .error_code()
            .map_or_else(|| json!(status.as_u16()), |c| json!(c));
        let body = json!({
            "error": { "message": self.to_string(), "type": self.error_type(), "code": code }
        });
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

async fn completions(State(state): State<AppState>, request: Request) -> Response {
    inference(state, Endpoint::Completions, request).await
}

async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    inference(state, Endpoint::ChatCompletions, request).await
}

async fn passthrough(State(state): State<AppState>, request: Request) -> Response {
    inference(state, Endpoint::Other, request).await
}

/// Reads, parses and dispatches one request; errors keep the request id header.
async fn inference(state: AppState, endpoint: Endpoint, request: Request) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let started = std::time::Instant::now();
    let mut facts = crate::access_log::RequestFacts {
        request_id: request_id.clone(),
        client: request
            .extensions()
            .get::<auth::ClientKey>()
            .map(|k| k.0.clone()),
        path: request.uri().path().to_owned(),
        ..Default::default()
    };
    let facts_slot = &mut facts;
    let result = async {
        let (parts, body) = request.into_parts();
        let idle = state.dispatcher.idle_timeout();
        let limit = state.limits.max_body_bytes();
        let bytes = read_body(&parts.headers, body, limit, idle).await?;
        let parsed = match endpoint {
            Endpoint::Other => ParsedRequest::passthrough(),
            _ => {
                let mut parsed = request::parse(endpoint, &bytes)?;
                parsed.key_priority = parts.extensions.get::<auth::KeyPriority>().map(|p| p.0);
                facts_slot.model.clone_from(&parsed.model);
                facts_slot.stream = parsed.stream;
                crate::models::check_model(
                    &state.dispatcher.replica_snapshot(),
                    parsed.model.as_deref(),
                )?;
                state.dispatcher.prepare_key(&mut parsed).await;
                parsed
            }
        };
        let headers = parts.headers;
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let upstream = UpstreamRequest {
            method: parts.method,
            path_and_query,
            headers,
            body: bytes,
        };
        state
            .dispatcher
            .dispatch(&parsed, upstream, &request_id)
            .await
    }
    .await;
    match result {
        Ok(response) => {
            let route = response
                .extensions()
                .get::<crate::access_log::RouteInfo>()
                .cloned();
            let status = response.status().as_u16();
            let (parts, body) = response.into_parts();
            let body = crate::access_log::log_on_end(body, facts, route, status, started);
            Response::from_parts(parts, body)
        }
        Err(error) => {
            if error.status().is_client_error() {
                tracing::debug!(request_id, %error, "rejected request");
            }
            crate::access_log::log_refused(&facts, error.status().as_u16(), started);
            error_response(error, state.dispatcher.expose_upstream_details())
        }
    }
}

/// Most bytes of an over-limit body read and thrown away after the 413, so the client, still
/// sending, reads the answer instead of a connection reset (a lingering close).
const LINGER_BYTES: usize = 64 * 1024 * 1024;
/// Longest such lingering read.
const LINGER_TIME: Duration = Duration::from_secs(10);

/// Collects the body up to `limit` bytes within `timeout` (413 beyond, checked early from
/// Content-Length; 408 when the client is too slow).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        linger(body);
        return Err(Error::BodyTooLarge { limit });
    }
    let mut body = body;
    let mut collected = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Error::InvalidRequest(format!("cannot read request body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if collected.len() + data.len() > limit {
                    return Err(Error::BodyTooLarge { limit });
                }
                collected.extend_from_slice(data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Error::RequestTimeout {
            waited_ms: timeout.as_millis() as u64,
        }),
        Ok(Err(error @ Error::BodyTooLarge { .. })) => {
            linger(body);
            Err(error)
        }
        Ok(Err(error)) => Err(error),
        Ok(Ok(())) => Ok(Bytes::from(collected)),
    }
}

/// Reads and discards the rest of a refused body in the background (bounded in bytes and time).
fn linger(mut body: Body) {
    tokio::spawn(async move {
        let mut seen = 0usize;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

/// The client's view of `error`: upstream failures lose their detail (which may name internal
/// addresses) unless `expose` is set; a refused body also closes the connection.
fn error_response(error: Error, expose: bool) -> Response {
    let close = matches!(
        error,
        Error::BodyTooLarge { .. } | Error::RequestTimeout { .. }
    );
    let mut response = match &error {
        Error::Upstream { kind, .. } | Error::Timeout { kind, .. } if !expose => {
            let status = error.status();
            let body = json!({ "error": {
                "message": error.public_message(*kind),
                "type": error.error_type(),
                "code": status.as_u16(),
            }});
            (status, Json(body)).into_response()
        }
        _ => error.into_response(),
    };
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A fresh random id shaped like a version-4 UUID.
fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let n = (n & !(0xf << 76)) | (0x4 << 76); // version 4
    let n = (n & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let mut id = String::with_capacity(36);
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            id.push('-');
        }
        id.push(char::from(HEX[((n >> (124 - 4 * i)) & 0xf) as usize]));
    }
    id
}

/// Merges the model lists of all healthy replicas, deduplicated by id.
async fn models(State(state): State<AppState>) -> Response {
    let results = match state.dispatcher.get_from_healthy("/v1/models").await {
        Ok(results) => results,
        Err(error) => return error.into_response(),
    };
    let mut seen = HashSet::new();
    let mut data = Vec::new();
    let mut errors = Vec::new();
    let total = results.len();
    for (replica, result) in results {
        let parsed = result
            .map_err(|e| e.to_string())
            .and_then(|(status, body)| {
                if status != 200 {
                    return Err(format!("status {status}"));
                }
                serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(list) => {
                for model in list
                    .get("data")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let id = model
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if seen.insert(id) {
                        data.push(model.clone());
                    }
                }
            }
            Err(e) => errors.push(format!("{replica}: {e}")),
        }
    }
    if errors.len() == total {
        return Error::Upstream {
            replica: "all".into(),
            kind: crate::error::UpstreamErrorKind::Protocol,
            message: errors.join("; "),
        }
        .into_response();
    }
    Json(json!({ "object": "list", "data": data })).into_response()
}

async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readiness(State(state): State<AppState>) -> Response {
    let snapshot = state.dispatcher.replica_snapshot();
    let healthy = snapshot.healthy_count();
    let stopping = state.shutting_down.load(Ordering::Relaxed);
    let ready = healthy > 0 && !stopping;
    let mut body = json!({ "ready": ready, "healthy_replicas": healthy, "replicas": snapshot.all().len(), "shutting_down": stopping });
    if let Some(kv) = &state.kv_events {
        // Which replicas the precise index answers for; the others route on the approximate
        // tree (never silently on an empty index).
        body["kv_events"] = snapshot
            .all()
            .iter()
            .map(|r| (r.name().to_owned(), Value::from(kv.state(r.id()).as_str())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.dispatcher.render_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn not_found(request: Request) -> Response {
    Error::NotFound {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
    .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    Error::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_uuid_v4_shaped_and_distinct() {
        let id = new_request_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert_eq!(&id[14..15], "4", "version nibble: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(id, new_request_id());
    }
}
