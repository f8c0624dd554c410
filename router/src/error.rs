//! The crate's single error type, shared by configuration, startup and the request path.

use std::{net::SocketAddr, path::PathBuf};

use http::StatusCode;

/// What went wrong talking to a replica; used as the `kind` label of upstream error metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// TCP connect failed or timed out: nothing was sent.
    Connect,
    /// No response headers within the first-byte timeout.
    FirstByteTimeout,
    /// The response body stalled longer than the idle timeout.
    IdleTimeout,
    /// The request or response failed at the HTTP level after connecting.
    Protocol,
    /// The replica answered with a 5xx status.
    Status5xx,
}

impl UpstreamErrorKind {
    /// Stable label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstByteTimeout => "first_byte_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::Protocol => "protocol",
            Self::Status5xx => "status_5xx",
        }
    }
}

impl std::fmt::Display for UpstreamErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error the router library can produce.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing, unknown or invalid.
    #[error("invalid config in {origin}: key `{key}`: {reason}")]
    Config {
        /// Where the value came from (file path, "environment", "YAML string", ...).
        origin: String,
        /// Dotted path of the offending key.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    ConfigFile {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from the config.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The request body is not valid JSON.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The request is well-formed JSON but misses or mistypes a field.
    #[error("{0}")]
    InvalidRequest(String),
    /// The request body exceeds the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The client did not send its whole body in time.
    #[error("request body not received within {waited_ms} ms")]
    RequestTimeout {
        /// How long the router waited.
        waited_ms: u64,
    },
    /// No route matches the path.
    #[error("no route for {method} {path}")]
    NotFound {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
    },
    /// The route exists but not for this method.
    #[error("method {method} not allowed for {path}")]
    MethodNotAllowed {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
    },
    /// Every replica is unhealthy (or none is configured).
    #[error("no healthy replica available")]
    NoHealthyReplica,
    /// A replica failed to answer properly.
    #[error("upstream replica {replica} failed ({kind}): {message}")]
    Upstream {
        /// Name of the replica.
        replica: String,
        /// Category of failure.
        kind: UpstreamErrorKind,
        /// Human-readable detail.
        message: String,
    },
    /// A replica did not answer in time.
    #[error("upstream replica {replica} timed out ({kind})")]
    Timeout {
        /// Name of the replica.
        replica: String,
        /// Which timeout fired.
        kind: UpstreamErrorKind,
    },
    /// The client sent no API key, or a wrong one (or a wrong admin token).
    #[error("{}", if *missing { format!("missing {realm} credentials: send `Authorization: Bearer KEY`") } else { format!("invalid {realm} credentials") })]
    Unauthorized {
        /// No `Authorization` header at all.
        missing: bool,
        /// `client` (API key) or `admin` (admin token).
        realm: &'static str,
    },
    /// No replica serves the requested model.
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    /// The admission queue (or the request's priority class) is full.
    #[error("admission queue full; retry after {retry_after_s} s")]
    QueueFull {
        /// Seconds to wait before retrying (the `Retry-After` header).
        retry_after_s: u64,
    },
    /// The request waited its class's maximum time in the admission queue.
    #[error("waited {waited_ms} ms in the admission queue without a free replica")]
    QueueTimeout {
        /// How long it waited.
        waited_ms: u64,
        /// Seconds to wait before retrying (the `Retry-After` header).
        retry_after_s: u64,
    },
    /// Metrics registry failure (duplicate or invalid family).
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A replica URL is not `http://host:port[/prefix]`.
    #[error("replica url `{url}`: {reason}")]
    ReplicaUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A router-side request to a replica (health probe, `/metrics` scrape, `/v1/models` list)
    /// failed, timed out or answered something unusable.
    #[error("{0}")]
    ReplicaFetch(String),
    /// Service discovery (a DNS lookup, a Kubernetes list or watch) failed; the replica set
    /// stays as it was until the next try.
    #[error("{0}")]
    Discovery(String),
    /// A DNS answer for another query arrived while waiting for ours (skipped, not a failure).
    #[error("answer to another query")]
    DnsOtherQuery,
    /// A log filter (`logging.level` or `RUST_LOG`) could not be parsed or applied.
    #[error("invalid log filter `{filter}`: {reason}")]
    LogFilter {
        /// The filter as given.
        filter: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The tokenizer failed on a prompt.
    #[error("tokenizer {path} failed: {reason}")]
    Tokenize {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer's message.
        reason: String,
    },
}

impl Error {
    /// HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::NoHealthyReplica => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::ModelNotFound(_) => StatusCode::NOT_FOUND,
            Self::Upstream { .. } | Self::ReplicaFetch(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QueueTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config { .. }
            | Self::ConfigFile { .. }
            | Self::Bind { .. }
            | Self::Metrics(_)
            | Self::ReplicaUrl { .. }
            | Self::Discovery(_)
            | Self::DnsOtherQuery
            | Self::LogFilter { .. }
            | Self::Tokenize { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a client is told about an upstream failure of `kind` when details are hidden:
    /// neither the replica (whose name may be its address) nor the underlying error.
    pub fn public_message(&self, kind: UpstreamErrorKind) -> String {
        match self {
            Self::Timeout { .. } => format!("upstream replica timed out ({kind})"),
            _ => format!("upstream replica failed ({kind})"),
        }
    }

    /// OpenAI-style error `type` string.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidJson(_)
            | Self::InvalidRequest(_)
            | Self::BodyTooLarge { .. }
            | Self::RequestTimeout { .. } => "invalid_request_error",
            Self::NotFound { .. } => "not_found_error",
            Self::Unauthorized { .. } | Self::ModelNotFound(_) => "invalid_request_error",
            Self::MethodNotAllowed { .. } => "method_not_allowed_error",
            Self::NoHealthyReplica => "service_unavailable_error",
            Self::Upstream { .. } => "upstream_error",
            Self::Timeout { .. } => "timeout_error",
            Self::QueueFull { .. } => "rate_limit_error",
            Self::QueueTimeout { .. } => "service_unavailable_error",
            _ => "internal_error",
        }
    }

    /// OpenAI-style string `code` where OpenAI has one; other errors use the HTTP status.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized { .. } => Some("invalid_api_key"),
            Self::ModelNotFound(_) => Some("model_not_found"),
            _ => None,
        }
    }

    /// Seconds for a `Retry-After` header, for errors that should carry one.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::QueueFull { retry_after_s } | Self::QueueTimeout { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            _ => None,
        }
    }
}
