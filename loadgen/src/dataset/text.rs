//! Deterministic filler text of a given length in vllm-sim tokens (4 bytes per token).

use rand::Rng;
use rand::rngs::StdRng;

const WORDS: [&str; 48] = [
    "cache", "prefix", "token", "model", "reply", "server", "router", "replica", "request",
    "latency", "stream", "block", "memory", "question", "answer", "system", "prompt", "user",
    "policy", "balance", "queue", "batch", "decode", "prefill", "the", "a", "of", "to", "and",
    "in", "is", "for", "with", "on", "that", "by", "from", "fast", "slow", "warm", "cold", "large",
    "small", "first", "next", "every", "shared", "tenant",
];

/// Bytes per vllm-sim token.
const BYTES_PER_TOKEN: usize = 4;

/// Random words filling exactly `tokens * 4` ASCII bytes (so exactly `tokens` vllm-sim tokens,
/// and roughly as many with a real English tokenizer).
pub fn filler_text(rng: &mut StdRng, tokens: usize) -> String {
    let want = tokens * BYTES_PER_TOKEN;
    let mut out = String::with_capacity(want + 16);
    while out.len() < want {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    out.truncate(want);
    out
}

/// `head` followed by filler so that the whole text is `tokens` vllm-sim tokens long
/// (never shorter than `head`).
pub(super) fn headed_text(rng: &mut StdRng, head: &str, tokens: usize) -> String {
    let rest = (tokens * BYTES_PER_TOKEN).saturating_sub(head.len() + 1);
    let mut out = String::from(head);
    out.push(' ');
    out.push_str(&filler_text(rng, rest.div_ceil(BYTES_PER_TOKEN)));
    out.truncate((tokens * BYTES_PER_TOKEN).max(head.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn exact_length_in_sim_tokens() {
        let mut rng = StdRng::seed_from_u64(1);
        for n in [0, 1, 7, 2000] {
            assert_eq!(filler_text(&mut rng, n).len(), n * BYTES_PER_TOKEN);
        }
        let t = headed_text(&mut rng, "System prompt 3:", 100);
        assert!(t.starts_with("System prompt 3: "));
        assert_eq!(t.len(), 400);
    }
}
