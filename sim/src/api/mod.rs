//! The HTTP surface: vLLM's OpenAI-compatible routes plus admin and metrics endpoints.

mod error;
mod format;
mod generate;
mod handlers;
mod kv_admin;
mod stream;
mod types;

pub(crate) use error::CloseConnection;

use crate::config::SimConfig;
use crate::engine::EngineHandle;
use crate::faults::Faults;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Largest accepted request body.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Everything a handler needs, shared by all connections of one replica.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: Arc<SimConfig>,
    pub(crate) model: Arc<str>,
    pub(crate) engine: EngineHandle,
    pub(crate) faults: Arc<Faults>,
    /// KV-event knobs, when publishing.
    pub(crate) kv: Option<Arc<crate::kv_publish::KvControl>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) next_id: AtomicU64,
    pub(crate) nonce: u64,
}

/// Builds the router of one replica.
pub(crate) fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/v1/models", get(handlers::models))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            handlers::require_api_key,
        ))
        .route("/health", get(handlers::health))
        .route("/ping", get(handlers::health))
        .route("/version", get(handlers::version))
        .route("/metrics", get(handlers::metrics))
        .route("/reset_prefix_cache", post(handlers::reset_prefix_cache))
        .route(
            "/admin/faults",
            get(handlers::get_faults).post(handlers::set_faults),
        )
        .route("/admin/kv_events", post(kv_admin::set_kv_events))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
