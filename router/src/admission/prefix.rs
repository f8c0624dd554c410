//! A prompt's leading chunks, hashed cumulatively: requests that share a prefix share its first
//! chunks, so a replica's in-flight prompts can be counted with their common prefix once, and
//! the turns of one conversation (the same first chunk: one family) told apart from others.

use std::hash::{Hash, Hasher};

use crate::request::PromptKey;

/// Bytes of text per chunk (token prompts: a quarter as many tokens).
pub const CHUNK_BYTES: usize = 256;

/// The hashes of a prompt's whole leading chunks, each over everything before its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix {
    /// Cumulative hash at the end of each whole chunk.
    pub chunks: Vec<u64>,
    /// Estimated tokens per chunk.
    pub chunk_tokens: u64,
}

impl Prefix {
    /// The chunks of `prompt` (estimated at `prompt_tokens` tokens); `None` when it has not
    /// one whole chunk.
    pub fn of(prompt: PromptKey<'_>, prompt_tokens: usize) -> Option<Self> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let (chunks, chunk_tokens) = match prompt {
            PromptKey::Text(text) => {
                let chunks: Vec<u64> = text
                    .as_bytes()
                    .chunks_exact(CHUNK_BYTES)
                    .map(|c| {
                        c.hash(&mut hasher);
                        hasher.finish()
                    })
                    .collect();
                let per_chunk =
                    prompt_tokens as u64 * CHUNK_BYTES as u64 / text.len().max(1) as u64;
                (chunks, per_chunk)
            }
            PromptKey::Tokens(tokens) => {
                let chunks: Vec<u64> = tokens
                    .chunks_exact(CHUNK_BYTES / 4)
                    .map(|c| {
                        c.hash(&mut hasher);
                        hasher.finish()
                    })
                    .collect();
                (chunks, (CHUNK_BYTES / 4) as u64)
            }
            PromptKey::Empty => return None,
        };
        (!chunks.is_empty()).then_some(Self {
            chunks,
            chunk_tokens,
        })
    }

    /// The family: the first chunk's hash (the turns of one conversation share it).
    pub fn family(&self) -> Option<u64> {
        self.chunks.first().copied()
    }

    /// Tokens the chunks cover.
    pub fn covered(&self) -> u64 {
        self.chunks.len() as u64 * self.chunk_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_with_a_common_start_share_their_leading_chunks_only() {
        let base = "a".repeat(600);
        let one = format!("{base}{}", "x".repeat(300));
        let two = format!("{base}{}", "y".repeat(300));
        let p1 = Prefix::of(PromptKey::Text(&one), 225).expect("chunks");
        let p2 = Prefix::of(PromptKey::Text(&two), 225).expect("chunks");
        assert_eq!(
            (p1.chunks.len(), p1.chunk_tokens, p1.covered()),
            (3, 64, 192)
        );
        assert_eq!(p1.chunks[..2], p2.chunks[..2], "the common 512 bytes");
        assert_ne!(p1.chunks[2], p2.chunks[2], "the third chunk differs");
        assert_eq!(p1.family(), p2.family());
        assert_eq!(Prefix::of(PromptKey::Text("short"), 2), None);
        let tokens: Vec<u32> = (0..130).collect();
        let t = Prefix::of(PromptKey::Tokens(&tokens), 130).expect("chunks");
        assert_eq!((t.chunks.len(), t.chunk_tokens), (2, 64));
    }
}
