//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while building a workload, running it or writing its results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or parameter has a value loadgen cannot use.
    #[error("invalid value for {name}: {reason}")]
    InvalidArg {
        /// The flag or parameter.
        name: String,
        /// Why the value is rejected.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document (dataset, results, baseline) does not have the expected shape.
    #[error("{what}: {source}")]
    Json {
        /// What was being parsed.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A dataset parsed but gave nothing to send.
    #[error("dataset {0}")]
    EmptyDataset(String),
    /// The tokenizer file could not be loaded or used.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer.json file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The HTTP client could not be built or a control request failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// A CSV file could not be read or written.
    #[error("csv {path}: {reason}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Drawing failed inside a chart (wrapped into [`Error::Chart`] with the chart's name).
    #[error("drawing failed: {0}")]
    Draw(String),
    /// A chart could not be drawn.
    #[error("chart {name}: {reason}")]
    Chart {
        /// The chart's file stem.
        name: String,
        /// What failed.
        reason: String,
    },
    /// One benchmark request failed; `reason` is the short code its record counts it under
    /// (`http_500`, `timeout`, `incomplete_stream`, ...).
    #[error("request failed: {reason}")]
    RequestFailed {
        /// The failure code.
        reason: String,
    },
    /// Starting or talking to the simulator or the router failed.
    #[error("{component}: {reason}")]
    Component {
        /// "vllm-sim" or "router".
        component: &'static str,
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// Builds an [`Error::InvalidArg`].
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArg {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::RequestFailed`] with its failure code.
    pub fn request_failed(reason: impl Into<String>) -> Self {
        Self::RequestFailed {
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Json`] describing what was parsed.
    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json {
            what: what.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
