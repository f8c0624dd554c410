//! The crate's one error type.

/// What can go wrong decoding, hashing or moving KV-cache events.
#[derive(Debug, thiserror::Error)]
pub enum KvEventsError {
    /// The msgpack payload or a frame does not have the expected shape.
    #[error("malformed KV event message: {0}")]
    Decode(String),
    /// A ZMQ peer broke the ZMTP protocol (greeting, handshake or framing).
    #[error("ZMTP protocol error with {peer}: {reason}")]
    Protocol {
        /// The peer's address.
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// An endpoint is not `tcp://host:port` (or `tcp://*:port` to bind).
    #[error("bad ZMQ endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A socket operation failed.
    #[error("{what} {endpoint}: {source}")]
    Io {
        /// What was being done (bind, connect, read, ...).
        what: &'static str,
        /// The endpoint or peer.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A replay request got no complete answer in time.
    #[error("replay from {endpoint} timed out")]
    ReplayTimeout {
        /// The replay endpoint.
        endpoint: String,
    },
}
