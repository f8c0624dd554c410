//! Client API keys on the `/v1` routes, and what `Authorization` header replicas receive.
//!
//! Keys come from `auth.api_keys` (or `ROUTER_AUTH__API_KEYS='[{key="k",name="team"}]'`); with
//! none configured every client is let in. Replicas never see a client's key unless
//! `auth.upstream.forward` is set: it is replaced by `auth.upstream.api_key`, or dropped.

use std::sync::Arc;

use arc_swap::ArcSwap;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The `auth` config section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted client keys; empty means no client authentication.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    /// What replicas receive in `Authorization`.
    pub upstream: UpstreamAuth,
}

/// One accepted client key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The secret a client sends as `Authorization: Bearer KEY`.
    pub key: String,
    /// Label of the key in metrics and logs; defaults to `key-N` (its position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Priority of this key's requests when neither the body `priority` nor `x-priority`
    /// gives one (before the route's and the queue's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"<redacted>")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish()
    }
}

/// How the `Authorization` header is handled towards replicas.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamAuth {
    /// Pass the client's `Authorization` header through unchanged.
    pub forward: bool,
    /// Send `Authorization: Bearer API_KEY` to replicas instead (ignored when `forward`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl std::fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamAuth")
            .field("forward", &self.forward)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AuthConfig {
    /// Checks what serde cannot: non-empty, unique keys and names; `(key, reason)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        let mut keys = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            if key.key.trim().is_empty() {
                return Err((
                    format!("auth.api_keys[{i}].key"),
                    "must not be empty".into(),
                ));
            }
            if HeaderValue::from_str(&format!("Bearer {}", key.key)).is_err() {
                return Err((
                    format!("auth.api_keys[{i}].key"),
                    "must be printable ASCII".into(),
                ));
            }
            if !keys.insert(key.key.as_str()) {
                return Err((format!("auth.api_keys[{i}].key"), "duplicate key".into()));
            }
            if !names.insert(key_name(i, key)) {
                return Err((
                    format!("auth.api_keys[{i}].name"),
                    format!("duplicate name `{}`", key_name(i, key)),
                ));
            }
        }
        if let Some(key) = &self.upstream.api_key {
            if HeaderValue::from_str(&format!("Bearer {key}")).is_err() || key.is_empty() {
                return Err((
                    "auth.upstream.api_key".into(),
                    "must be non-empty printable ASCII".into(),
                ));
            }
        }
        Ok(())
    }
}

fn key_name(i: usize, key: &ApiKey) -> String {
    key.name.clone().unwrap_or_else(|| format!("key-{i}"))
}

/// The checker the middleware runs: keys by secret, the upstream header, and its metric.
#[derive(Clone)]
pub struct Auth {
    keys: Arc<ArcSwap<Vec<KnownKey>>>,
    forward: bool,
    upstream: Option<HeaderValue>,
    requests: IntCounterVec,
}

impl Auth {
    /// Builds the checker and registers `router_client_requests_total{key,status}`.
    pub fn new(config: &AuthConfig, registry: &Registry) -> Result<Self, Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "router_client_requests_total",
                "Requests on /v1 routes by client key name (`anonymous` without auth) and status",
            ),
            &["key", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let upstream = match (&config.upstream.api_key, config.upstream.forward) {
            (Some(key), false) => HeaderValue::from_str(&format!("Bearer {key}")).ok(),
            _ => None,
        };
        Ok(Self {
            keys: Arc::new(ArcSwap::from_pointee(keys_of(config))),
            forward: config.upstream.forward,
            upstream,
            requests,
        })
    }

    /// Replaces the accepted keys (config reload).
    pub fn set_keys(&self, config: &AuthConfig) {
        self.keys.store(Arc::new(keys_of(config)));
    }

    /// The name of the key `authorization` carries, `anonymous` when auth is off, or `None`.
    #[cfg(test)]
    fn client(&self, authorization: Option<&HeaderValue>) -> Option<String> {
        self.client_key(authorization).map(|k| k.name)
    }

    /// The key `authorization` carries (`anonymous`, no priority, when auth is off), or `None`.
    fn client_key(&self, authorization: Option<&HeaderValue>) -> Option<KnownKey> {
        let keys = self.keys.load();
        if keys.is_empty() {
            return Some(KnownKey {
                secret: String::new(),
                name: "anonymous".to_owned(),
                priority: None,
            });
        }
        let presented = authorization?.to_str().ok()?;
        let token = presented
            .strip_prefix("Bearer ")
            .or_else(|| presented.strip_prefix("bearer "))?
            .trim();
        keys.iter()
            .find(|k| constant_time_eq(k.secret.as_bytes(), token.as_bytes()))
            .cloned()
    }
}

/// One accepted key as the middleware matches it.
#[derive(Clone)]
struct KnownKey {
    secret: String,
    name: String,
    priority: Option<i64>,
}

fn keys_of(config: &AuthConfig) -> Vec<KnownKey> {
    config
        .api_keys
        .iter()
        .enumerate()
        .map(|(i, k)| KnownKey {
            secret: k.key.clone(),
            name: key_name(i, k),
            priority: k.priority,
        })
        .collect()
}

impl UpstreamAuth {
    /// The header value replicas get from the router itself, if a key is configured.
    pub fn header(&self) -> Option<HeaderValue> {
        let key = self.api_key.as_ref()?;
        HeaderValue::from_str(&format!("Bearer {key}")).ok()
    }
}

/// Compares without stopping at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: 401 without a valid key; otherwise rewrites `Authorization` for the replicas.
pub async fn require_key(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let Some(key) = auth.client_key(request.headers().get(header::AUTHORIZATION)) else {
        auth.requests.with_label_values(&["invalid", "401"]).inc();
        let missing = !request.headers().contains_key(header::AUTHORIZATION);
        let facts = crate::access_log::RequestFacts {
            request_id: request
                .headers()
                .get(crate::dispatch::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            client: Some("invalid".to_owned()),
            path: request.uri().path().to_owned(),
            ..Default::default()
        };
        crate::access_log::log_refused(&facts, 401, std::time::Instant::now());
        return Error::Unauthorized {
            missing,
            realm: "client",
        }
        .into_response();
    };
    if !auth.forward {
        let headers = request.headers_mut();
        headers.remove(header::AUTHORIZATION);
        if let Some(value) = &auth.upstream {
            headers.insert(header::AUTHORIZATION, value.clone());
        }
    }
    let name = key.name;
    if let Some(priority) = key.priority {
        request.extensions_mut().insert(KeyPriority(priority));
    }
    request.extensions_mut().insert(ClientKey(name.clone()));
    let response = next.run(request).await;
    auth.requests
        .with_label_values(&[&name, response.status().as_str()])
        .inc();
    response
}

/// The name of the client key a request came with (a request extension, for logs).
#[derive(Debug, Clone)]
pub struct ClientKey(pub String);

/// The default priority of the client key a request came with (a request extension; absent
/// when the key sets none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPriority(pub i64);

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(keys: &[(&str, Option<&str>)]) -> Auth {
        let config = AuthConfig {
            api_keys: keys
                .iter()
                .map(|(k, n)| ApiKey {
                    key: (*k).into(),
                    name: n.map(Into::into),
                    priority: None,
                })
                .collect(),
            upstream: UpstreamAuth::default(),
        };
        config.check().unwrap();
        Auth::new(&config, &Registry::new()).unwrap()
    }

    #[test]
    fn keys_are_matched_by_bearer_token() {
        let a = auth(&[("s3cret", Some("team-a")), ("other", None)]);
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            a.client(Some(&hv("Bearer s3cret"))).as_deref(),
            Some("team-a")
        );
        assert_eq!(
            a.client(Some(&hv("Bearer other"))).as_deref(),
            Some("key-1")
        );
        assert_eq!(a.client(Some(&hv("Bearer s3cre"))), None);
        assert_eq!(a.client(Some(&hv("s3cret"))), None);
        assert_eq!(a.client(None), None);
        assert_eq!(auth(&[]).client(None).as_deref(), Some("anonymous"));
    }

    #[test]
    fn a_key_carries_its_default_priority() {
        let config: AuthConfig = serde_yaml::from_str(
            "api_keys:\n  - {key: batch, name: batch, priority: 2}\n  - {key: live}\n",
        )
        .unwrap();
        config.check().unwrap();
        let a = Auth::new(&config, &Registry::new()).unwrap();
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        let batch = a.client_key(Some(&hv("Bearer batch"))).unwrap();
        assert_eq!((batch.name.as_str(), batch.priority), ("batch", Some(2)));
        assert_eq!(
            a.client_key(Some(&hv("Bearer live"))).unwrap().priority,
            None
        );
        assert_eq!(auth(&[]).client_key(None).unwrap().priority, None);
    }

    #[test]
    fn duplicate_and_empty_keys_are_rejected() {
        let config = |keys: Vec<ApiKey>| AuthConfig {
            api_keys: keys,
            upstream: UpstreamAuth::default(),
        };
        let k = |key: &str, name: Option<&str>| ApiKey {
            key: key.into(),
            name: name.map(Into::into),
            priority: None,
        };
        let (key, _) = config(vec![k("", None)]).check().unwrap_err();
        assert_eq!(key, "auth.api_keys[0].key");
        let (key, _) = config(vec![k("a", None), k("a", None)])
            .check()
            .unwrap_err();
        assert_eq!(key, "auth.api_keys[1].key");
        let (key, reason) = config(vec![k("a", Some("x")), k("b", Some("x"))])
            .check()
            .unwrap_err();
        assert_eq!(key, "auth.api_keys[1].name");
        assert!(reason.contains("`x`"), "{reason}");
    }
}
