//! How a replica is written in config: its URL, name, weight and KV-event sockets.

use serde::{Deserialize, Serialize};

use crate::Error;

/// One replica: an OpenAI-compatible server such as vLLM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSpec {
    /// Base URL, e.g. `http://127.0.0.1:8001` (http only; an optional path prefix is kept).
    pub url: String,
    /// Unique name used in metrics and `x-routed-to`; defaults to the URL's `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Relative share of traffic for weighted policies (>= 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The replica's KV-cache event sockets (with `prefix.kv_events.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_events: Option<ReplicaKvEvents>,
}

fn default_weight() -> u32 {
    1
}

impl ReplicaSpec {
    /// A spec with the default name and weight 1.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: None,
            weight: 1,
            kv_events: None,
        }
    }

    /// The name used in metrics and headers: `name`, or the URL's `host:port`.
    pub fn resolved_name(&self) -> String {
        match (&self.name, self.base_uri()) {
            (Some(name), _) => name.clone(),
            (None, Ok(uri)) => uri.authority().map(|a| a.to_string()).unwrap_or_default(),
            (None, Err(_)) => self.url.clone(),
        }
    }

    /// Parses `url` into an `http://host:port[/prefix]` URI or says why it cannot.
    pub fn base_uri(&self) -> Result<http::Uri, Error> {
        let bad = |reason: String| Error::ReplicaUrl {
            url: self.url.clone(),
            reason,
        };
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| bad(format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(bad(format!("scheme `{other}` is not supported (use http)")));
            }
            None => return Err(bad("no scheme (expected http://host:port)".into())),
        }
        if uri.authority().is_none() {
            return Err(bad("no host".into()));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query string".into()));
        }
        Ok(uri)
    }
}

/// One replica's event sockets (vLLM's `--kv-events-config` endpoint and replay endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaKvEvents {
    /// PUB endpoint to subscribe to, e.g. `tcp://10.0.0.5:5557`.
    pub endpoint: String,
    /// ROUTER endpoint that replays missed batches, e.g. `tcp://10.0.0.5:5558`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_endpoint: Option<String>,
}
