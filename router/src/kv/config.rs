//! Settings of the precise prefix index fed by the replicas' KV-cache events.

use serde::{Deserialize, Serialize};

/// Declared with the replica spec that names it; re-exported here with the other settings.
pub use crate::replicas::ReplicaKvEvents;

/// `prefix.kv_events`: subscribe to every replica's KV-cache events (token mode only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvEventsConfig {
    /// Subscribe to replicas whose spec names `kv_events`, or all of them with `port_offset`.
    pub enabled: bool,
    /// For replicas without `kv_events` in their spec: the PUB port is the HTTP port plus this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_offset: Option<i32>,
    /// Likewise for the replay port (no replay without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_port_offset: Option<i32>,
    /// Topic prefix to subscribe to (vLLM's `topic`; empty = all).
    pub topic: String,
    /// Milliseconds a prefix sent to a replica with a live event stream counts as held before
    /// its blocks are confirmed by an event (then it expires).
    pub sent_window_ms: u64,
    /// Most batches asked for in one replay.
    pub max_replay_batches: usize,
    /// Milliseconds a replay may take.
    pub replay_timeout_ms: u64,
    /// Weight of a block held in CPU memory relative to one in GPU memory (0..=1): a CPU hit
    /// is cheaper than a miss but dearer than a GPU hit.
    pub cpu_hit_weight: f64,
    /// A live replica goes `silent` (approximate) when this many requests sent to it with
    /// uncached blocks brought no event within `silent_window_ms` (0 = never).
    pub silent_after: usize,
    /// Milliseconds a request with uncached blocks may wait for the replica's next event.
    pub silent_window_ms: u64,
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port_offset: None,
            replay_port_offset: None,
            topic: String::new(),
            sent_window_ms: 2_000,
            max_replay_batches: 10_000,
            replay_timeout_ms: 2_000,
            cpu_hit_weight: 0.5,
            silent_after: 4,
            silent_window_ms: 10_000,
        }
    }
}

impl KvEventsConfig {
    /// Checks what serde cannot; returns the offending key (under `prefix.kv_events`) and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, why: &str| Err((format!("prefix.kv_events.{key}"), why.to_owned()));
        if !(0.0..=1.0).contains(&self.cpu_hit_weight) {
            return bad("cpu_hit_weight", "must be within 0..=1");
        }
        if self.silent_after > 0 && self.silent_window_ms == 0 {
            return bad(
                "silent_window_ms",
                "must be greater than 0 when silent_after is set",
            );
        }
        if self.replay_timeout_ms == 0 {
            return bad("replay_timeout_ms", "must be greater than 0");
        }
        Ok(())
    }

    /// The sockets of a replica: its spec's, else by the port convention, else none.
    pub fn endpoints_for(
        &self,
        spec: Option<&ReplicaKvEvents>,
        url: &str,
    ) -> Option<ReplicaKvEvents> {
        if !self.enabled {
            return None;
        }
        if let Some(spec) = spec {
            return Some(spec.clone());
        }
        let offset = self.port_offset?;
        let uri: http::Uri = url.parse().ok()?;
        let host = uri.host()?;
        let port = uri.port_u16().unwrap_or(80);
        // Offsets may be negative: vLLM's defaults are HTTP 8000 and events on 5557 (-2443).
        let at = |off: i32| {
            u16::try_from(i32::from(port) + off)
                .ok()
                .filter(|p| *p > 0)
                .map(|p| format!("tcp://{host}:{p}"))
        };
        Some(ReplicaKvEvents {
            endpoint: at(offset)?,
            replay_endpoint: self.replay_port_offset.and_then(at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_wins_then_port_convention() {
        let mut cfg = KvEventsConfig::default();
        assert_eq!(
            cfg.endpoints_for(None, "http://10.0.0.5:8000"),
            None,
            "off by default"
        );
        cfg.enabled = true;
        assert_eq!(
            cfg.endpoints_for(None, "http://10.0.0.5:8000"),
            None,
            "no convention"
        );
        cfg.port_offset = Some(1000);
        cfg.replay_port_offset = Some(1001);
        let got = cfg.endpoints_for(None, "http://10.0.0.5:8000").unwrap();
        assert_eq!(got.endpoint, "tcp://10.0.0.5:9000");
        assert_eq!(got.replay_endpoint.as_deref(), Some("tcp://10.0.0.5:9001"));
        cfg.port_offset = Some(-2443);
        cfg.replay_port_offset = Some(-70_000);
        let got = cfg.endpoints_for(None, "http://10.0.0.5:8000").unwrap();
        assert_eq!(got.endpoint, "tcp://10.0.0.5:5557", "vLLM's default ports");
        assert_eq!(got.replay_endpoint, None, "a port out of range is no port");
        let spec = ReplicaKvEvents {
            endpoint: "tcp://h:1".into(),
            replay_endpoint: None,
        };
        assert_eq!(cfg.endpoints_for(Some(&spec), "http://x:1"), Some(spec));
        cfg.silent_window_ms = 0;
        assert_eq!(
            cfg.check().unwrap_err().0,
            "prefix.kv_events.silent_window_ms"
        );
        cfg.silent_after = 0;
        assert!(cfg.check().is_ok(), "no window needed when off");
        cfg.cpu_hit_weight = 2.0;
        assert_eq!(
            cfg.check().unwrap_err().0,
            "prefix.kv_events.cpu_hit_weight"
        );
    }
}
