//! Route handlers.

use super::AppState;
use super::error::ApiError;
use super::format::Kind;
use super::types::{ChatRequest, CompletionRequest, parse_json};
use crate::faults::{FaultUpdate, StreamFaults, Verdict};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

type Shared = State<Arc<AppState>>;

impl AppState {
    /// Readiness and fault gate of the completion endpoints; returns the stream's faults.
    async fn admit(&self) -> Result<StreamFaults, ApiError> {
        if !self.faults.is_ready() {
            return Err(ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "The model is still loading.",
            ));
        }
        match self.faults.verdict() {
            Verdict::Fail(code) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err(ApiError::status(
                    status,
                    "Simulated failure (fault injection).",
                ))
            }
            Verdict::Close => Err(ApiError::close_connection()),
            Verdict::Serve { delay, stream } => {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                self.faults.wait_unstalled().await;
                Ok(stream)
            }
        }
    }
}

/// `POST /v1/completions`.
pub(crate) async fn completions(State(s): Shared, body: Bytes) -> Result<Response, ApiError> {
    let arrival = Instant::now();
    let cut = s.admit().await?;
    let job = parse_json::<CompletionRequest>(&body)?.into_job(&s.config)?;
    s.run_job(Kind::Completion, job, arrival, cut).await
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(s): Shared, body: Bytes) -> Result<Response, ApiError> {
    let arrival = Instant::now();
    let cut = s.admit().await?;
    let job = parse_json::<ChatRequest>(&body)?.into_job(&s.config)?;
    s.run_job(Kind::Chat, job, arrival, cut).await
}

/// `GET /v1/models`: every served name of the base model, then each LoRA adapter with the
/// base model as `parent`, as vLLM lists them.
pub(crate) async fn models(State(s): Shared) -> Response {
    let cfg = &s.config;
    let base = cfg.served_names().iter().map(|name| {
        json!({
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "vllm",
            "root": &cfg.model,
            "parent": null,
            "max_model_len": cfg.max_model_len,
            "permission": []
        })
    });
    let adapters = cfg.lora_modules.iter().map(|l| {
        json!({
            "id": &l.name,
            "object": "model",
            "created": 0,
            "owned_by": "vllm",
            "root": &l.path,
            "parent": cfg.served_model(),
            "max_model_len": null,
            "permission": []
        })
    });
    let data: Vec<_> = base.chain(adapters).collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// `GET /health`: 200 with an empty body, 503 while "loading".
pub(crate) async fn health(State(s): Shared) -> Response {
    if s.faults.is_ready() {
        StatusCode::OK.into_response()
    } else {
        ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "The model is still loading.",
        )
        .into_response()
    }
}

/// `GET /version`.
pub(crate) async fn version() -> Response {
    Json(json!({ "version": concat!("vllm-sim-", env!("CARGO_PKG_VERSION")) })).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(s): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// `POST /reset_prefix_cache`: forgets every cached block.
pub(crate) async fn reset_prefix_cache(State(s): Shared) -> Result<Response, ApiError> {
    if s.engine.reset_cache().await {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is shutting down.",
        ))
    }
}

/// `GET /admin/faults`: the current fault knobs.
pub(crate) async fn get_faults(State(s): Shared) -> Response {
    Json(s.faults.state()).into_response()
}

/// `POST /admin/faults`: change fault knobs (partial JSON update); answers the new state.
pub(crate) async fn set_faults(State(s): Shared, body: Bytes) -> Result<Response, ApiError> {
    let update: FaultUpdate = parse_json(&body)?;
    s.faults
        .apply(update)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(s.faults.state()).into_response())
}

/// Unknown routes.
pub(crate) async fn not_found() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "Not Found")
}

/// With `--api-key` set, `/v1` routes need `Authorization: Bearer KEY` (401 otherwise), as in vLLM.
pub(crate) async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(key) = &state.config.api_key {
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if presented != Some(format!("Bearer {key}").as_str()) {
            return ApiError::status(StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        }
    }
    next.run(request).await
}
