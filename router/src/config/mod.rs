//! Router configuration: the YAML schema with defaults (this file) and loading/validation (`load`).

mod load;
mod reliability;
mod shorthand;
mod sources;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use load::ConfigOverrides;
pub use reliability::ErrorsConfig;
pub use sources::{Source, Sources};

// Each section's type lives with the module it configures; re-exported here for the schema.
pub use crate::health::HealthConfig;
pub use crate::policy::{PolicyConfig, PolicyName};
pub use crate::proxy::TimeoutConfig;
pub use crate::replicas::{OutlierConfig, ReplicaSpec};
pub use crate::retry::RetryConfig;

/// The whole router configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Static replica list: the first source of membership changes.
    #[serde(default)]
    pub replicas: Vec<ReplicaSpec>,
    /// Routing policy and its parameters.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Active and passive health checking.
    #[serde(default)]
    pub health: HealthConfig,
    /// Upstream and shutdown timeouts.
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    /// Request size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Retries of requests that never reached a replica.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Log level and format (used by the binary).
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Polling of the replicas' Prometheus metrics (load signals for `cost`).
    #[serde(default)]
    pub scrape: crate::scrape::ScrapeConfig,
    /// Prompt keys (bytes or tokens) and the per-replica prefix tree.
    #[serde(default)]
    pub prefix: crate::prompt_key::PrefixConfig,
    /// Client API keys and the `Authorization` header sent to replicas.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// The admin API (off unless a token is set).
    #[serde(default)]
    pub admin: crate::admin::AdminConfig,
    /// Model groups learnt from each replica's `/v1/models`.
    #[serde(default)]
    pub models: crate::models::ModelsConfig,
    /// Config file watching for hot reload.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Replica discovery from DNS or Kubernetes EndpointSlices.
    #[serde(default)]
    pub discovery: crate::discovery::DiscoveryConfig,
    /// The admission queue: order, bounds and priorities of requests waiting for a replica.
    #[serde(default)]
    pub queue: crate::admission::QueueConfig,
    /// Per-replica concurrency caps (none, static or adaptive).
    #[serde(default)]
    pub caps: crate::admission::CapsConfig,
    /// Ejection of replicas that keep failing on real traffic.
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// What clients are told about upstream failures.
    #[serde(default)]
    pub errors: ErrorsConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

/// Request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest accepted request head in bytes (431 beyond; at least 8192).
    pub max_header_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Multi-field human-readable lines.
    Full,
    /// Shorter single lines.
    Compact,
    /// One JSON object per line.
    Json,
}

/// Logging settings used by the binary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A tracing filter such as `info` or `router=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Full,
        }
    }
}

/// The `reload` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Milliseconds between two checks of the config file's modification time; 0 turns file
    /// watching off (SIGHUP still reloads).
    pub watch_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self { watch_ms: 2000 }
    }
}

#[cfg(test)]
mod tests;
