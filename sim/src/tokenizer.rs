//! The stand-in tokenizer, chat template, block hashing and filler text shared with loadgen.
//!
//! Tokenizer rule: the UTF-8 bytes of the text are cut into consecutive 4-byte pieces (the last
//! piece may be shorter) and each piece becomes the 32-bit FNV-1a hash of its bytes. So a text of
//! `b` bytes has `ceil(b / 4)` tokens, and if `a` is a prefix of `b` then every token of `a`
//! except possibly its last (partial) one is a prefix of `tokens(b)`.

use serde::{Deserialize, Deserializer, Serialize};

/// Bytes per token of the stand-in tokenizer.
pub const BYTES_PER_TOKEN: usize = 4;

/// One chat message; `content` also accepts OpenAI's list-of-parts form (text parts are joined
/// with "\n") and `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user", "assistant", "tool", ...
    pub role: String,
    /// The message text.
    #[serde(default, deserialize_with = "content_from_any")]
    pub content: String,
}

impl ChatMessage {
    /// Builds a message from a role and its text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawContent {
    Text(String),
    Parts(Vec<RawPart>),
}

#[derive(Deserialize)]
struct RawPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

fn content_from_any<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw: Option<RawContent> = Option::deserialize(d)?;
    Ok(match raw {
        None => String::new(),
        Some(RawContent::Text(t)) => t,
        Some(RawContent::Parts(parts)) => parts
            .into_iter()
            .filter(|p| p.kind == "text")
            .filter_map(|p| p.text)
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// Tokenizes text with the documented 4-bytes-per-token rule (deterministic, prefix-stable).
pub fn tokenize(text: &str) -> Vec<u32> {
    text.as_bytes()
        .chunks(BYTES_PER_TOKEN)
        .map(fnv1a32)
        .collect()
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The suffix appended after the last message (the "generation prompt").
pub const GENERATION_PROMPT: &str = "<|im_start|>assistant\n";

/// Renders messages with the sim's fixed template: `<|im_start|>{role}\n{content}<|im_end|>\n`
/// per message, then [`GENERATION_PROMPT`]. Turn k's rendering is a prefix of turn k+1's.
pub fn render_chat(messages: &[ChatMessage]) -> String {
    let len: usize = messages
        .iter()
        .map(|m| m.role.len() + m.content.len() + 24)
        .sum();
    let mut out = String::with_capacity(len + GENERATION_PROMPT.len());
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str(GENERATION_PROMPT);
    out
}

/// Seed of the first block's chain.
const CHAIN_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hash of one full block given its parent's hash (the chain makes a block's hash depend on
/// every token before it).
pub(crate) fn chain_hash(parent: u64, block: &[u32]) -> u64 {
    let mut h = parent ^ 0xcbf2_9ce4_8422_2325;
    for &t in block {
        h ^= u64::from(t);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser spreads the bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Chained hashes of the full `block_size`-token blocks of `tokens` (a trailing partial block
/// has no hash). Equal prefixes give equal leading hashes. `block_size` 0 gives no hashes.
/// The engine's hit for a prompt of `n` tokens is the run of these present in its cache, at
/// most `(n - 1) / block_size` blocks (the last prompt token is always computed, as in vLLM).
pub fn block_hashes(tokens: &[u32], block_size: usize) -> Vec<u64> {
    chain_from(CHAIN_SEED, tokens, block_size)
}

/// [`block_hashes`] for a request to LoRA adapter `adapter`: the chain starts from a seed of
/// the adapter's name, so (as in vLLM, whose block hashes include the LoRA) an adapter never
/// hits blocks the base model or another adapter cached.
pub(crate) fn adapter_block_hashes(tokens: &[u32], block_size: usize, adapter: &str) -> Vec<u64> {
    let name: Vec<u32> = adapter.bytes().map(u32::from).collect();
    chain_from(chain_hash(CHAIN_SEED, &name), tokens, block_size)
}

fn chain_from(seed: u64, tokens: &[u32], block_size: usize) -> Vec<u64> {
    if block_size == 0 {
        return Vec::new();
    }
    let mut parent = seed;
    tokens
        .chunks_exact(block_size)
        .map(|block| {
            parent = chain_hash(parent, block);
            parent
        })
        .collect()
}

/// Extends `hashes` (the chain of `tokens`' leading full blocks) to cover every full block.
pub(crate) fn extend_block_hashes(hashes: &mut Vec<u64>, tokens: &[u32], block_size: usize) {
    let full = tokens.len() / block_size;
    while hashes.len() < full {
        let i = hashes.len();
        let parent = hashes.last().copied().unwrap_or(CHAIN_SEED);
        hashes.push(chain_hash(
            parent,
            &tokens[i * block_size..(i + 1) * block_size],
        ));
    }
}

/// Generated text: a fixed cycle of 4-byte pieces, so each output token is one piece and
/// re-tokenizing the output gives the same number of tokens.
const FILLER: [&str; 16] = [
    " sim", " tok", " ens", " are", " det", " erm", " ini", " sti", " c; ", "the ", "cach", "e is",
    " rea", "l an", "d wa", "rm. ",
];

/// Text of output token number `index` (0-based) of a completion.
pub fn filler_piece(index: usize) -> &'static str {
    FILLER[index % FILLER.len()]
}

/// Token id of output token number `index`, equal to `tokenize(filler_piece(index))[0]`.
pub(crate) fn filler_token(index: usize) -> u32 {
    fnv1a32(filler_piece(index).as_bytes())
}

/// The full generated text of `n` output tokens.
pub fn filler_text(n: usize) -> String {
    let mut s = String::with_capacity(n * BYTES_PER_TOKEN);
    for i in 0..n {
        s.push_str(filler_piece(i));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bytes_per_token() {
        assert_eq!(tokenize("").len(), 0);
        assert_eq!(tokenize("abcd").len(), 1);
        assert_eq!(tokenize("abcde").len(), 2);
        assert_eq!(tokenize("abcdabcd")[0], tokenize("abcdabcd")[1]);
        assert_ne!(tokenize("abcd")[0], tokenize("abce")[0]);
    }

    #[test]
    fn prefix_stable() {
        let a = "The quick brown fox jumps";
        let b = "The quick brown fox jumps over the lazy dog";
        let ta = tokenize(a);
        let tb = tokenize(b);
        assert_eq!(&ta[..ta.len() - 1], &tb[..ta.len() - 1]);
    }

    #[test]
    fn chat_turns_extend() {
        let mut msgs = vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "hi"),
        ];
        let t1 = render_chat(&msgs);
        msgs.push(ChatMessage::new("assistant", "hello"));
        msgs.push(ChatMessage::new("user", "more"));
        let t2 = render_chat(&msgs);
        assert!(t2.starts_with(&t1));
        assert!(t1.ends_with(GENERATION_PROMPT));
    }

    #[test]
    fn content_parts_accepted() {
        let m: ChatMessage = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(m.content, "a\nb");
        let m: ChatMessage =
            serde_json::from_str(r#"{"role":"assistant","content":null}"#).unwrap();
        assert_eq!(m.content, "");
    }

    #[test]
    fn hashes_chain_and_extend() {
        let t: Vec<u32> = (0..50).collect();
        let h = block_hashes(&t, 16);
        assert_eq!(h.len(), 3);
        let mut other = t.clone();
        other[0] = 999;
        let h2 = block_hashes(&other, 16);
        assert!(
            h.iter().zip(&h2).all(|(a, b)| a != b),
            "chain must propagate"
        );
        let mut inc = block_hashes(&t[..20], 16);
        extend_block_hashes(&mut inc, &t, 16);
        assert_eq!(inc, h);
    }

    #[test]
    fn filler_is_four_bytes() {
        for i in 0..FILLER.len() {
            assert_eq!(filler_piece(i).len(), BYTES_PER_TOKEN);
            assert_eq!(tokenize(filler_piece(i)), vec![filler_token(i)]);
        }
        assert_eq!(tokenize(&filler_text(10)).len(), 10);
    }
}
