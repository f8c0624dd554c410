//! Router configuration: the YAML schema with defaults (this file) and loading/validation (`load`).

mod load;
mod reliability;
mod shorthand;
mod sources;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use load::ConfigOverrides;
pub use reliability::{ErrorsConfig, OutlierConfig};
pub use sources::{Source, Sources};

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
    pub reload: crate::reload::ReloadConfig,
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
    pub kv_events: Option<crate::kv::ReplicaKvEvents>,
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
}

/// Names of the available policies (the CLI's `--policy` values derive from this enum too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum PolicyName {
    /// Cycle through healthy replicas (by weight).
    RoundRobin,
    /// Pick a healthy replica at random (by weight).
    Random,
    /// Sample two healthy replicas, send to the less loaded one.
    PowerOfTwo,
    /// Longest held prefix unless load is imbalanced (SGLang cache-aware style).
    PrefixAware,
    /// Lowest estimated time to first token from held prefix and load (the default).
    Cost,
}

impl PolicyName {
    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::PowerOfTwo => "power_of_two",
            Self::PrefixAware => "prefix_aware",
            Self::Cost => "cost",
        }
    }
}

/// Which policy routes requests, and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The policy.
    pub name: PolicyName,
    /// Seed for the policy's RNG; unset means seeded from the OS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Constants of the `cost` policy's time-to-first-token model.
    pub cost: crate::policy::CostConfig,
    /// Thresholds of the `prefix_aware` policy.
    pub prefix_aware: crate::policy::PrefixAwareConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            name: PolicyName::Cost,
            seed: None,
            cost: crate::policy::CostConfig::default(),
            prefix_aware: crate::policy::PrefixAwareConfig::default(),
        }
    }
}

/// Active (`GET /health`) and passive (errors on real traffic) health checking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Turn health checking on; when off every replica is always considered healthy.
    pub enabled: bool,
    /// Path probed on each replica.
    pub path: String,
    /// Milliseconds between probes of one replica.
    pub interval_ms: u64,
    /// Milliseconds before a probe counts as failed.
    pub timeout_ms: u64,
    /// Consecutive successful probes that bring an unhealthy replica back.
    pub healthy_threshold: u32,
    /// Consecutive failures (probes, connect errors, 5xx) that mark a replica unhealthy.
    pub unhealthy_threshold: u32,
    /// Count connect errors and 5xx responses on real traffic as failures.
    pub passive: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/health".to_owned(),
            interval_ms: 1000,
            timeout_ms: 500,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            passive: true,
        }
    }
}

/// Timeouts, all in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// TCP connect to a replica.
    pub connect_ms: u64,
    /// From sending a non-streaming request to receiving response headers (vLLM sends them
    /// with the whole answer, so this bounds generation time).
    pub first_byte_ms: u64,
    /// From sending a streaming request to receiving response headers (vLLM sends them before
    /// generating): past it the request is re-sent elsewhere, so a stalled replica costs this.
    pub stream_first_byte_ms: u64,
    /// Longest time a client may take to send its request headers (slowloris guard); also how
    /// long an idle keep-alive connection waits for its next request (uvicorn's is 5 s).
    pub header_read_ms: u64,
    /// Longest pause between two chunks of a response body, and longest wait for a request body.
    pub idle_ms: u64,
    /// How long shutdown waits for in-flight requests to finish.
    pub shutdown_drain_ms: u64,
    /// On shutdown, how long `/readiness` answers 503 before the listener closes (lets a load
    /// balancer stop sending first).
    pub shutdown_unready_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect_ms: 1000,
            first_byte_ms: 120_000,
            stream_first_byte_ms: 2_000,
            header_read_ms: 10_000,
            idle_ms: 60_000,
            shutdown_drain_ms: 10_000,
            shutdown_unready_ms: 0,
        }
    }
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

/// Retries of requests that failed before any response byte reached the client (connect
/// error, 5xx, connection closed before headers, first-byte timeout); 4xx are never retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Extra attempts per request, each on a replica not tried yet.
    pub max_retries: u32,
    /// First back-off before a retry; doubles per attempt, with full jitter.
    pub backoff_base_ms: u64,
    /// Longest back-off before a retry.
    pub backoff_max_ms: u64,
    /// Retries allowed across the router, as a percentage of requests (on top of `budget_min`).
    pub budget_percent: u32,
    /// Retries always allowed however few requests arrived (the budget's floor and burst).
    pub budget_min: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_base_ms: 10,
            backoff_max_ms: 200,
            budget_percent: 20,
            budget_min: 10,
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

#[cfg(test)]
mod tests;
