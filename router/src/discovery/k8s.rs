//! Kubernetes discovery: list and watch the EndpointSlices of a Service
//! (`kubernetes.io/service-name=SERVICE`). Ready endpoints join as `http://IP:PORT` (named after
//! their pod); terminating or vanished ones drain.
//!
//! A small client over reqwest and serde for the few fields needed, not kube-rs (which would add
//! minutes to the first build). It speaks plain HTTP: point `api_server` at a `kubectl proxy`
//! sidecar (`http://127.0.0.1:8001`), which handles the API server's TLS and the pod's
//! ServiceAccount token. The reconciliation ([`SliceState`]) is pure and tested on recorded
//! watch events.

use std::{collections::BTreeMap, time::Duration};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Reconciler;
use crate::{abort::AbortOnDrop, error::Error, replicas::ReplicaChange};

/// The `discovery.kubernetes` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// The Service whose EndpointSlices are watched.
    pub service: String,
    /// Its namespace; default: the pod's own (from the ServiceAccount mount), else `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the endpoint port to use; default: the slice's first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// API base URL (plain HTTP, e.g. a `kubectl proxy` sidecar).
    #[serde(default = "default_api_server")]
    pub api_server: String,
    /// Bearer token file sent to the API server when it exists.
    #[serde(default = "default_token_file")]
    pub token_file: String,
    /// Milliseconds to wait before listing again after a failed list or a broken watch.
    #[serde(default = "default_retry")]
    pub retry_ms: u64,
}

fn default_api_server() -> String {
    "http://127.0.0.1:8001".into()
}

fn default_token_file() -> String {
    "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
}

fn default_retry() -> u64 {
    2000
}

const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl K8sConfig {
    /// Checks values serde cannot; `(key, reason)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.service.is_empty() {
            return Err((
                "discovery.kubernetes.service".into(),
                "must not be empty".into(),
            ));
        }
        if !self.api_server.starts_with("http://") {
            return Err((
                "discovery.kubernetes.api_server".into(),
                "must be http:// (run `kubectl proxy` as a sidecar for the API server's TLS)"
                    .into(),
            ));
        }
        if self.retry_ms == 0 {
            return Err((
                "discovery.kubernetes.retry_ms".into(),
                "must be greater than 0".into(),
            ));
        }
        Ok(())
    }

    fn namespace(&self) -> String {
        self.namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string(NAMESPACE_FILE)
                .map(|s| s.trim().to_owned())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into())
        })
    }

    fn slices_url(&self) -> String {
        format!(
            "{}/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{}",
            self.api_server.trim_end_matches('/'),
            self.namespace(),
            self.service
        )
    }
}

/// The fields of an EndpointSlice discovery reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Name and resource version.
    #[serde(default)]
    pub metadata: Metadata,
    /// The endpoints (null in the API when there are none).
    #[serde(default)]
    pub endpoints: Option<Vec<Endpoint>>,
    /// The ports (null when none).
    #[serde(default)]
    pub ports: Option<Vec<EndpointPort>>,
}

/// Object metadata.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Resource version (lists and objects).
    #[serde(default)]
    pub resource_version: Option<String>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Its IP addresses (the first is used).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Readiness conditions.
    #[serde(default)]
    pub conditions: Conditions,
    /// The pod behind it.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
}

/// Endpoint conditions; an absent `ready` counts as ready, as the API documents.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Conditions {
    /// Ready to receive traffic.
    pub ready: Option<bool>,
    /// Being shut down.
    pub terminating: Option<bool>,
}

/// The object an endpoint points at.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TargetRef {
    /// Pod name.
    #[serde(default)]
    pub name: String,
}

/// A port of a slice.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EndpointPort {
    /// Port name.
    pub name: Option<String>,
    /// Port number.
    pub port: Option<u16>,
}

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The slice (or a Status for `ERROR`).
    pub object: serde_json::Value,
}

/// A list answer.
#[derive(Debug, Clone, Default, Deserialize)]
struct SliceList {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    items: Vec<EndpointSlice>,
}

/// The Service's slices as last seen, by slice name.
#[derive(Debug, Default)]
pub struct SliceState {
    slices: BTreeMap<String, EndpointSlice>,
    resource_version: Option<String>,
}

/// What applying a watch event means for the watch itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Keep watching.
    Continue,
    /// The server ended the watch with an error (e.g. 410 Gone): list again.
    Relist(String),
}

impl SliceState {
    /// Replaces everything with a fresh list.
    fn reset(&mut self, list: SliceList) {
        self.slices = list
            .items
            .into_iter()
            .map(|s| (s.metadata.name.clone(), s))
            .collect();
        self.resource_version = list.metadata.resource_version;
    }

    /// Applies one watch event.
    pub fn apply(&mut self, event: WatchEvent) -> Applied {
        if event.kind == "ERROR" {
            let message = event
                .object
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("watch error")
                .to_owned();
            return Applied::Relist(message);
        }
        let slice: EndpointSlice = match serde_json::from_value(event.object) {
            Ok(s) => s,
            Err(e) => return Applied::Relist(format!("unreadable watch object: {e}")),
        };
        if slice.metadata.resource_version.is_some() {
            self.resource_version
                .clone_from(&slice.metadata.resource_version);
        }
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" => {
                self.slices.insert(slice.metadata.name.clone(), slice);
            }
            "DELETED" => {
                self.slices.remove(&slice.metadata.name);
            }
            _ => {} // BOOKMARK: only the resource version moves.
        }
        Applied::Continue
    }

    /// The replicas wanted now: every ready, not terminating endpoint (name -> URL).
    pub fn wanted(&self, port_name: Option<&str>) -> BTreeMap<String, String> {
        let mut wanted = BTreeMap::new();
        for slice in self.slices.values() {
            let ports = slice.ports.as_deref().unwrap_or_default();
            let port = match port_name {
                Some(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
                None => ports.first(),
            }
            .and_then(|p| p.port);
            let Some(port) = port else { continue };
            for endpoint in slice.endpoints.as_deref().unwrap_or_default() {
                let ready = endpoint.conditions.ready.unwrap_or(true);
                let terminating = endpoint.conditions.terminating.unwrap_or(false);
                let Some(ip) = endpoint.addresses.first() else {
                    continue;
                };
                if !ready || terminating {
                    continue;
                }
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                let name = endpoint
                    .target_ref
                    .as_ref()
                    .map(|t| t.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("{host}:{port}"));
                wanted.insert(name, format!("http://{host}:{port}"));
            }
        }
        wanted
    }
}

/// Starts the list-and-watch loop, feeding `changes`; stops when dropped.
pub(crate) fn spawn(config: K8sConfig, changes: mpsc::Sender<ReplicaChange>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut reconciler = Reconciler::default();
        let retry = Duration::from_millis(config.retry_ms);
        loop {
            let mut state = SliceState::default();
            if let Err(reason) =
                list_and_watch(&client, &config, &mut state, &mut reconciler, &changes).await
            {
                tracing::warn!(service = %config.service, %reason, "kubernetes discovery: listing again");
            }
            if changes.is_closed() {
                return;
            }
            tokio::time::sleep(retry).await;
        }
    }))
}

async fn publish(
    state: &SliceState,
    config: &K8sConfig,
    reconciler: &mut Reconciler,
    changes: &mpsc::Sender<ReplicaChange>,
) -> Result<(), Error> {
    for change in reconciler.update(state.wanted(config.port_name.as_deref())) {
        tracing::info!(?change, service = %config.service, "kubernetes discovery");
        changes
            .send(change)
            .await
            .map_err(|_| Error::Discovery("router stopped".to_owned()))?;
    }
    Ok(())
}

fn authorized(config: &K8sConfig, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::fs::read_to_string(&config.token_file) {
        Ok(token) if !token.trim().is_empty() => request.bearer_auth(token.trim()),
        _ => request,
    }
}

/// Lists, publishes, then follows watches until one fails; the error says why.
async fn list_and_watch(
    client: &reqwest::Client,
    config: &K8sConfig,
    state: &mut SliceState,
    reconciler: &mut Reconciler,
    changes: &mpsc::Sender<ReplicaChange>,
) -> Result<(), Error> {
    let url = config.slices_url();
    let response = authorized(config, client.get(&url))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| Error::Discovery(format!("list: {e}")))?;
    if !response.status().is_success() {
        return Err(Error::Discovery(format!(
            "list: status {}",
            response.status()
        )));
    }
    let list: SliceList = response
        .json()
        .await
        .map_err(|e| Error::Discovery(format!("list: {e}")))?;
    state.reset(list);
    publish(state, config, reconciler, changes).await?;

    // A watch the server ends normally (they time out after minutes) resumes from the last
    // resource version; only errors (410 Gone included) list again.
    loop {
        let events = watch(client, config, &url, state, reconciler, changes).await?;
        if events == 0 {
            // Nothing at all before the end: back off and list again rather than spin.
            return Err(Error::Discovery("watch ended without events".into()));
        }
    }
}

/// Follows one watch from the state's resource version until the server ends it; returns how
/// many events it carried.
async fn watch(
    client: &reqwest::Client,
    config: &K8sConfig,
    url: &str,
    state: &mut SliceState,
    reconciler: &mut Reconciler,
    changes: &mpsc::Sender<ReplicaChange>,
) -> Result<usize, Error> {
    let rv = state.resource_version.clone().unwrap_or_default();
    let watch_url = format!("{url}&watch=1&allowWatchBookmarks=true&resourceVersion={rv}");
    let response = authorized(config, client.get(&watch_url))
        .send()
        .await
        .map_err(|e| Error::Discovery(format!("watch: {e}")))?;
    if !response.status().is_success() {
        return Err(Error::Discovery(format!(
            "watch: status {}",
            response.status()
        )));
    }
    let mut stream = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut events = 0;
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk.map_err(|e| Error::Discovery(format!("watch: {e}")))?);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: WatchEvent = serde_json::from_slice(&line)
                .map_err(|e| Error::Discovery(format!("watch event: {e}")))?;
            events += 1;
            if let Applied::Relist(reason) = state.apply(event) {
                return Err(Error::Discovery(reason));
            }
            publish(state, config, reconciler, changes).await?;
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Watch events as an API server sends them (fields trimmed to those read, plus a few not).
    const RECORDED: &str = r#"{"type":"ADDED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"vllm-abc12","resourceVersion":"101","labels":{"kubernetes.io/service-name":"vllm"}},"addressType":"IPv4","endpoints":[{"addresses":["10.1.0.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"targetRef":{"kind":"Pod","name":"vllm-0"}},{"addresses":["10.1.0.6"],"conditions":{"ready":false,"serving":false,"terminating":false},"targetRef":{"kind":"Pod","name":"vllm-1"}}],"ports":[{"name":"http","port":8000,"protocol":"TCP"}]}}
{"type":"MODIFIED","object":{"metadata":{"name":"vllm-abc12","resourceVersion":"102"},"endpoints":[{"addresses":["10.1.0.5"],"conditions":{"ready":true},"targetRef":{"name":"vllm-0"}},{"addresses":["10.1.0.6"],"conditions":{"ready":true},"targetRef":{"name":"vllm-1"}}],"ports":[{"name":"http","port":8000}]}}
{"type":"BOOKMARK","object":{"kind":"EndpointSlice","metadata":{"resourceVersion":"103"}}}
{"type":"MODIFIED","object":{"metadata":{"name":"vllm-abc12","resourceVersion":"104"},"endpoints":[{"addresses":["10.1.0.5"],"conditions":{"ready":false,"serving":true,"terminating":true},"targetRef":{"name":"vllm-0"}},{"addresses":["10.1.0.6"],"conditions":{"ready":true},"targetRef":{"name":"vllm-1"}}],"ports":[{"name":"http","port":8000}]}}
{"type":"DELETED","object":{"metadata":{"name":"vllm-abc12","resourceVersion":"105"},"endpoints":null,"ports":null}}
{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 100 (105)","reason":"Expired","code":410}}"#;

    fn names(state: &SliceState) -> Vec<(String, String)> {
        state.wanted(Some("http")).into_iter().collect()
    }

    #[test]
    fn recorded_watch_events_drive_the_wanted_replicas() {
        let mut state = SliceState::default();
        let mut reconciler = Reconciler::default();
        let mut steps = Vec::new();
        for line in RECORDED.lines() {
            let event: WatchEvent = serde_json::from_str(line).unwrap();
            let applied = state.apply(event);
            let changes = reconciler.update(state.wanted(Some("http")));
            steps.push((applied, names(&state), changes));
        }
        let pod = |n: &str, ip: &str| (n.to_owned(), format!("http://{ip}:8000"));
        // Only the ready endpoint joins.
        assert_eq!(steps[0].1, [pod("vllm-0", "10.1.0.5")]);
        // The second pod became ready: it joins, the first is left alone.
        assert_eq!(
            steps[1].1,
            [pod("vllm-0", "10.1.0.5"), pod("vllm-1", "10.1.0.6")]
        );
        assert!(
            matches!(steps[1].2.as_slice(), [ReplicaChange::Upsert(s)] if s.resolved_name() == "vllm-1"),
            "{:?}",
            steps[1].2
        );
        assert!(steps[2].2.is_empty(), "a bookmark changes nothing");
        assert_eq!(state.resource_version.as_deref(), Some("105"));
        // Terminating: vllm-0 drains.
        assert_eq!(steps[3].1, [pod("vllm-1", "10.1.0.6")]);
        assert!(
            matches!(steps[3].2.as_slice(), [ReplicaChange::Drain(n)] if n == "vllm-0"),
            "{:?}",
            steps[3].2
        );
        assert!(steps[4].1.is_empty(), "slice deleted: nothing wanted");
        assert!(matches!(&steps[5].0, Applied::Relist(m) if m.contains("too old")));
    }

    #[test]
    fn endpoints_without_a_pod_are_named_by_address_and_ports_by_name() {
        let mut state = SliceState::default();
        let event = r#"{"type":"ADDED","object":{"metadata":{"name":"s"},"endpoints":[{"addresses":["10.0.0.9"]},{"addresses":["fd00::1"],"conditions":{"ready":true}}],"ports":[{"name":"metrics","port":9090},{"name":"http","port":8000}]}}"#;
        state.apply(serde_json::from_str(event).unwrap());
        let wanted: Vec<(String, String)> = state.wanted(Some("http")).into_iter().collect();
        assert_eq!(
            wanted,
            [
                (
                    "10.0.0.9:8000".to_owned(),
                    "http://10.0.0.9:8000".to_owned()
                ),
                (
                    "[fd00::1]:8000".to_owned(),
                    "http://[fd00::1]:8000".to_owned()
                ),
            ]
        );
        assert!(
            state.wanted(Some("grpc")).is_empty(),
            "no such port: nothing"
        );
    }

    #[test]
    fn config_is_checked() {
        let mut config: K8sConfig = serde_yaml::from_str("service: vllm\n").unwrap();
        assert!(config.check().is_ok());
        assert!(config.slices_url().contains("service-name%3Dvllm"));
        config.api_server = "https://kubernetes.default.svc".into();
        assert_eq!(
            config.check().unwrap_err().0,
            "discovery.kubernetes.api_server"
        );
    }
}
