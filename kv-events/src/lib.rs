//! vLLM's KV-cache events: what an engine's prefix cache stored and evicted, as published on
//! its ZMQ socket (`--kv-events-config`).
//!
//! - [`decode_batch`] reads a message payload in every layout vLLM has used (positional arrays
//!   up to 0.23, maps with `"type"` from 0.24, fields at their default left out, u64 hashes
//!   above 2^63, 32-byte digests); [`encode_batch`] writes either layout, byte-identical to vLLM.
//! - [`hash`]: `sha256_cbor` block hashing with vLLM's seed handling.
//! - [`frames`]: live and replay frames of both replay versions (the layout changed in 0.26).
//! - [`Subscriber`] (SUB, reconnecting), [`replay`] (DEALER) and [`Publisher`] (PUB + an
//!   optional replay ROUTER with a bounded buffer) speak ZMTP 3.0 over TCP themselves: see
//!   [`zmtp`] for why.

mod decode;
mod encode;
mod error;
pub mod frames;
pub mod hash;
pub mod idmap;
mod msgpack;
mod publish;
mod subscribe;
mod types;
pub mod zmtp;

pub use decode::decode_batch;
pub use encode::encode_batch;
pub use error::KvEventsError;
pub use frames::{Message, ReplayReply, ReplayVersion};
pub use publish::{Publisher, PublisherConfig};
pub use subscribe::{SubEvent, Subscriber, replay};
pub use types::{
    BlockHash, BlockRemoved, BlockStored, EventBatch, ExtraKey, KvEvent, Layout, Medium,
};
