//! Concurrent multi-tenant radix tree: which tenant (replica) was sent, or holds, which key prefix.
//!
//! Keys are slices of a [`KeyUnit`]: bytes of text (`u8`, the default) or token ids (`u32`),
//! with one generic implementation. Each node stores an edge label and the tenants holding the
//! whole prefix ending at that node, with the last time each used it. A tenant's held set is
//! always prefix-closed: holding a node means holding all its ancestors.
//!
//! - [`RadixTree::match_prefix`]: in one read-only walk, per tenant the longest held prefix of a
//!   key (and the longest confirmed one); ties are left to the caller.
//! - [`RadixTree::insert`] / [`RadixTree::insert_with`]: record a key for a tenant and refresh its
//!   LRU time along the path; with a cap set, evict the tenant back under it.
//! - [`RadixTree::evict_tenant`]: per-tenant LRU eviction of leaves down to a size; a node stays
//!   while any tenant holds it. Cost grows with what is evicted, not with the tree.
//! - [`RadixTree::remove_tenant`]: drop a tenant everywhere, freeing nodes nobody holds.
//!
//! # Concurrency
//! Every node has its own `RwLock`. Matches take read locks hand over hand, so they never wait
//! for each other; inserts take write locks only on the nodes they change, so inserts on
//! different branches do not serialise. LRU timestamps are coarse ticks (milliseconds by
//! default, see [`Clock`]) stored in atomics and written only when they change.
//!
//! # Memory (measured)
//! `cargo bench -p radix-tree --bench memory` counts every allocation with a counting global
//! allocator (requested bytes; the system allocator adds its own ~8-16 bytes per allocation).
//! MEMORY_NUMBERS_PLACEHOLDER

mod audit;
mod clock;
mod error;
mod evict;
mod insert;
mod matching;
mod node;
mod small;
mod tenant;
mod tree;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::RadixError;
pub use matching::{PrefixMatch, TenantMatch};
pub use tree::RadixTree;

/// Unit of a key: `u8` (text bytes, the default) or `u32` (token ids).
pub trait KeyUnit:
    Copy + Eq + Ord + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static
{
}
impl KeyUnit for u8 {}
impl KeyUnit for u32 {}

/// Identifier of a tenant (one replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub u32);

/// Whether a tenant's hold on a prefix is only inferred from routing or confirmed by the replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Residency {
    /// The router sent this prefix to the tenant (inferred).
    #[default]
    Sent,
    /// The replica reported it holds this prefix (e.g. KV-cache events).
    Confirmed,
}
