//! `POST /admin/kv_events`: the KV-event fault knobs at run time.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::types::parse_json;

/// Body of `POST /admin/kv_events` (absent = unchanged).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvUpdate {
    /// New fraction (0..=1) of messages lost on the wire.
    drop_fraction: Option<f64>,
    /// Simulate an engine restart: cache emptied, sequence back to 0.
    #[serde(default)]
    restart: bool,
}

/// Applies the update; answers the endpoints and the drop fraction.
pub(crate) async fn set_kv_events(
    State(s): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(kv) = &s.kv else {
        return Err(ApiError::status(
            StatusCode::NOT_FOUND,
            "KV events are off: start with --kv-events-port.",
        ));
    };
    let update: KvUpdate = parse_json(&body)?;
    if let Some(f) = update.drop_fraction {
        if !(0.0..=1.0).contains(&f) {
            return Err(ApiError::bad_request(format!(
                "drop_fraction must be within 0..=1, got {f}"
            )));
        }
        kv.set_drop_fraction(f);
    }
    if update.restart && !s.engine.kv_restart().await {
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is shutting down.",
        ));
    }
    Ok(Json(serde_json::json!({
        "endpoint": kv.endpoint,
        "replay_endpoint": kv.replay_endpoint,
        "drop_fraction": kv.drop_fraction(),
        "next_seq": kv.next_seq(),
    }))
    .into_response())
}
