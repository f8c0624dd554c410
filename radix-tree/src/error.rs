//! The crate's error type.

/// Errors reported by the radix tree.
#[derive(Debug, thiserror::Error)]
pub enum RadixError {
    /// [`crate::RadixTree::audit`] found the tree inconsistent; the message says where.
    #[error("radix tree invariant violated: {0}")]
    Invariant(String),
}
