//! Model groups: each replica's models (LoRA adapters included) are learnt from its
//! `/v1/models`, when it joins and then periodically; a request's `model` narrows the candidates
//! to the replicas that list it, and a model no replica lists is refused with 404.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, abort::AbortOnDrop, proxy::Proxy, replicas::Replica, replicas::Snapshot};

/// The `models` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Learn model lists and route by them; off: every replica takes every model.
    pub enabled: bool,
    /// Milliseconds between two refreshes of one replica's model list.
    pub refresh_ms: u64,
    /// Milliseconds before a `/v1/models` fetch counts as failed.
    pub timeout_ms: u64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            refresh_ms: 10_000,
            timeout_ms: 2_000,
        }
    }
}

impl ModelsConfig {
    /// Checks values serde cannot; `(key, reason)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (key, value) in [
            ("models.refresh_ms", self.refresh_ms),
            ("models.timeout_ms", self.timeout_ms),
        ] {
            if value == 0 {
                return Err((key.into(), "must be greater than 0".into()));
            }
        }
        Ok(())
    }
}

/// Refuses a request for a model that no replica lists. Replicas whose list is not learnt yet
/// might serve it, so while any is unknown the request goes on.
pub fn check_model(snapshot: &Snapshot, model: Option<&str>) -> Result<(), Error> {
    let Some(model) = model else {
        return Ok(());
    };
    let replicas = snapshot.all();
    if replicas.is_empty() || replicas.iter().any(|r| r.serving.lists(Some(model))) {
        return Ok(());
    }
    Err(Error::ModelNotFound(model.to_owned()))
}

/// The model ids in a `/v1/models` answer (base models and adapters alike).
pub fn parse_model_ids(body: &[u8]) -> Result<Vec<String>, Error> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Error::ReplicaFetch(e.to_string()))?;
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::ReplicaFetch("no `data` array".into()))?;
    Ok(data
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect())
}

/// Spawns the refresh loop of `replica`: at once, then every `refresh_ms` (every second while
/// the list is still unknown).
pub(crate) fn spawn_refresh(
    replica: Arc<Replica>,
    proxy: Proxy,
    config: ModelsConfig,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let timeout = Duration::from_millis(config.timeout_ms);
        let every = Duration::from_millis(config.refresh_ms);
        loop {
            let fetched =
                proxy
                    .get(&replica, "/v1/models", timeout)
                    .await
                    .and_then(|(status, body)| match status {
                        200 => parse_model_ids(&body),
                        other => Err(Error::ReplicaFetch(format!("status {other}"))),
                    });
            match fetched {
                Ok(ids) => {
                    let changed = replica.serving.models().is_none_or(|old| *old != ids);
                    if changed {
                        tracing::info!(replica = %replica.name(), models = ?ids, "replica models");
                    }
                    replica.serving.set_models(ids);
                }
                Err(reason) => {
                    tracing::debug!(replica = %replica.name(), %reason, "cannot fetch /v1/models");
                }
            }
            let wait = if replica.serving.models().is_none() {
                every.min(Duration::from_secs(1))
            } else {
                every
            };
            tokio::time::sleep(wait).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_model_lists_parse_with_adapters() {
        let body = br#"{"object":"list","data":[{"id":"m","parent":null},{"id":"sql-lora","parent":"m"}]}"#;
        assert_eq!(parse_model_ids(body).unwrap(), ["m", "sql-lora"]);
        assert!(parse_model_ids(b"{}").is_err());
    }
}
