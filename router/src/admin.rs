//! The admin API under `/admin`: list, add and drain replicas. Off (404) unless `admin.token`
//! (or `ROUTER_ADMIN__TOKEN`) is set; every call needs `Authorization: Bearer TOKEN` (401).

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::{Path, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{delete, get},
};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    Error,
    policy::Policy,
    replicas::{Replica, ReplicaChange, ReplicaSet, ReplicaSpec},
};

/// The `admin` config section.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token of the admin API; unset turns the API off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AdminConfig {
    /// Checks the token; `(key, reason)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        match &self.token {
            Some(t) if t.trim().is_empty() => Err((
                "admin.token".into(),
                "must not be empty (remove it to turn the admin API off)".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// What the admin handlers reach.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) token: Arc<str>,
    pub(crate) replicas: Arc<ReplicaSet>,
    pub(crate) changes: mpsc::Sender<ReplicaChange>,
    /// The routing policy, asked what it believes each replica holds.
    pub(crate) policy: Arc<dyn Policy>,
}

/// The `/admin` routes, or none when no token is configured.
pub(crate) fn routes(state: Option<AdminState>) -> Router {
    let Some(state) = state else {
        return Router::new();
    };
    Router::new()
        .route("/admin/replicas", get(list).post(add))
        .route("/admin/replicas/{name}", delete(drain))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = presented
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = token.is_some_and(|t| {
        t.len() == state.token.len()
            && t.bytes()
                .zip(state.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !ok {
        return Error::Unauthorized {
            missing: presented.is_none(),
            realm: "admin",
        }
        .into_response();
    }
    next.run(request).await
}

/// `GET /admin/replicas`: every replica with health, load, learnt speed, cache and models.
async fn list(State(state): State<AdminState>) -> Response {
    let now = Instant::now();
    let snapshot = state.replicas.snapshot();
    let data: Vec<Value> = snapshot
        .all()
        .iter()
        .map(|r| describe(r, state.policy.as_ref(), now))
        .collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

fn describe(r: &Replica, policy: &dyn Policy, now: Instant) -> Value {
    let scraped = r.load.scraped.fresh(now);
    let held = policy.held_prefix(r.id());
    json!({
        "name": r.name(),
        "url": r.url(),
        "weight": r.weight(),
        "healthy": r.is_healthy(),
        "draining": r.serving.is_draining(),
        "models": r.serving.models().map(|m| m.as_ref().clone()),
        "load": {
            "in_flight_requests": r.load.requests(),
            "in_flight_prompt_tokens": r.load.prompt_tokens(),
            "scraped_running": scraped.as_ref().map(|s| s.load.running),
            "scraped_waiting": scraped.as_ref().map(|s| s.load.waiting),
            "kv_cache_usage": scraped.as_ref().and_then(|s| s.load.kv_usage),
        },
        "learnt_ttft_ratio": r.load.speed.ratio(now),
        "cache": {
            "tree_units": held.map(|h| h.units),
            "tree_fill": held.map(|h| h.fill),
            "prefix_cache_hit_rate": scraped.as_ref().and_then(|s| s.load.prefix_cache_hit_rate),
        },
    })
}

/// `POST /admin/replicas` with a replica spec (`{"url", "name"?, "weight"?}`): adds or updates.
async fn add(State(state): State<AdminState>, body: axum::body::Bytes) -> Response {
    let spec: ReplicaSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => {
            return Error::InvalidRequest(format!("invalid replica spec: {e}")).into_response();
        }
    };
    if let Err(reason) = spec.base_uri() {
        return Error::InvalidRequest(format!("url: {reason}")).into_response();
    }
    if spec.weight == 0 {
        return Error::InvalidRequest("weight: must be at least 1".into()).into_response();
    }
    let name = spec.resolved_name();
    if name.is_empty() {
        return Error::InvalidRequest("name: must not be empty".into()).into_response();
    }
    if state
        .changes
        .send(ReplicaChange::Upsert(spec.clone()))
        .await
        .is_err()
    {
        return Error::NoHealthyReplica.into_response();
    }
    tracing::info!(replica = %name, url = %spec.url, "admin: replica added");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "name": name, "url": spec.url, "weight": spec.weight })),
    )
        .into_response()
}

/// `DELETE /admin/replicas/{name}`: drains the replica (no new requests), removed once idle.
async fn drain(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let snapshot = state.replicas.snapshot();
    let Some(replica) = snapshot.by_name(&name) else {
        return Error::NotFound {
            method: "DELETE".into(),
            path: format!("/admin/replicas/{name} (no such replica)"),
        }
        .into_response();
    };
    let in_flight = replica.load.requests();
    if state
        .changes
        .send(ReplicaChange::Drain(name.clone()))
        .await
        .is_err()
    {
        return Error::NoHealthyReplica.into_response();
    }
    tracing::info!(replica = %name, in_flight, "admin: replica draining");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "name": name, "draining": true, "in_flight_requests": in_flight })),
    )
        .into_response()
}
