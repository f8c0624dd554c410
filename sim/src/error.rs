//! The library's error type.

use std::net::SocketAddr;

/// Everything that can go wrong starting or running a simulated replica.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value the simulator cannot run with.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address that was asked for.
        addr: SocketAddr,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A runtime knob (an admin fault update) outside its range.
    #[error("{field} must be within {range}, got {got}")]
    OutOfRange {
        /// The knob.
        field: &'static str,
        /// Its allowed range, as written in the message (`0..=1`).
        range: &'static str,
        /// The value given.
        got: String,
    },
    /// Metrics registry setup failed (duplicate or malformed metric).
    #[error("metrics setup failed: {0}")]
    Metrics(#[from] prometheus::Error),
}
