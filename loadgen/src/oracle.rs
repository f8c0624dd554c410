//! The oracle hit rate: one shared prefix cache of unlimited size over the same request
//! sequence, counted in tokens with vllm-sim's tokenizer, chat template and block size.

use crate::dataset::RequestSpec;
use crate::request::Endpoint;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The most prompt tokens any placement could find cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OracleResult {
    /// Hit tokens over prompt tokens.
    pub hit_rate: f64,
    /// Prompt tokens that an unlimited shared cache would hold.
    pub hit_tokens: u64,
    /// All prompt tokens.
    pub prompt_tokens: u64,
    /// Tokens per block.
    pub block_size: usize,
}

/// An unlimited cache of block hashes, counting hits like vLLM (and vllm-sim): whole leading
/// blocks only, and never the block holding the prompt's last token.
#[derive(Debug, Default)]
pub struct SharedCache {
    seen: HashSet<u64>,
    hit_tokens: u64,
    prompt_tokens: u64,
}

impl SharedCache {
    /// Looks up then inserts one prompt of `prompt_len` tokens with chained block `hashes`.
    pub fn observe(&mut self, prompt_len: usize, hashes: &[u64], block_size: usize) {
        let max_hit = (prompt_len.saturating_sub(1) / block_size.max(1)).min(hashes.len());
        let hits = hashes[..max_hit]
            .iter()
            .take_while(|h| self.seen.contains(*h))
            .count();
        self.hit_tokens += (hits * block_size) as u64;
        self.prompt_tokens += prompt_len as u64;
        self.seen.extend(hashes.iter().copied());
    }

    /// The totals so far.
    pub fn result(&self, block_size: usize) -> OracleResult {
        OracleResult {
            hit_rate: if self.prompt_tokens > 0 {
                self.hit_tokens as f64 / self.prompt_tokens as f64
            } else {
                0.0
            },
            hit_tokens: self.hit_tokens,
            prompt_tokens: self.prompt_tokens,
            block_size,
        }
    }
}

/// The prompt text vllm-sim tokenizes for `spec` on `endpoint`.
pub fn sim_prompt(spec: &RequestSpec, endpoint: Endpoint) -> String {
    match endpoint {
        Endpoint::Completions => spec.prompt_text(),
        Endpoint::Chat => {
            let msgs: Vec<vllm_sim::ChatMessage> = spec
                .messages
                .iter()
                .map(|m| vllm_sim::ChatMessage::new(m.role.clone(), m.content.clone()))
                .collect();
            vllm_sim::render_chat(&msgs)
        }
    }
}

/// The oracle hit rate of `requests` sent in order to `endpoint`.
pub fn oracle(requests: &[RequestSpec], endpoint: Endpoint, block_size: usize) -> OracleResult {
    let mut cache = SharedCache::default();
    for spec in requests {
        let tokens = vllm_sim::tokenize(&sim_prompt(spec, endpoint));
        let hashes = vllm_sim::block_hashes(&tokens, block_size);
        cache.observe(tokens.len(), &hashes, block_size);
    }
    cache.result(block_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Message;

    #[test]
    fn hand_made_sequence() {
        // Block size 2. A = [1,2,3,4,5] has blocks h1,h2; B extends A; C is unrelated.
        let mut c = SharedCache::default();
        c.observe(5, &[11, 12], 2); // cold: 0 hits
        c.observe(9, &[11, 12, 13, 14], 2); // A's 2 blocks = 4 tokens
        c.observe(4, &[21, 22], 2); // cold, and the last block never counts
        c.observe(4, &[21, 22], 2); // repeat of 4 tokens: only block 1 may hit = 2 tokens
        let r = c.result(2);
        assert_eq!(r.prompt_tokens, 22);
        assert_eq!(r.hit_tokens, 6);
        assert!((r.hit_rate - 6.0 / 22.0).abs() < 1e-12);
    }

    #[test]
    fn hits_stop_at_first_miss() {
        let mut c = SharedCache::default();
        c.observe(7, &[1, 2, 3], 2);
        c.observe(9, &[1, 9, 3, 4], 2);
        assert_eq!(c.result(2).hit_tokens, 2);
    }

    #[test]
    fn conversation_turns_hit_with_sim_tokenizer() {
        let turn1 = RequestSpec {
            messages: vec![Message::new("user", "x".repeat(400))],
            output_len: 1,
            group: 0,
            priority: None,
        };
        let mut turn2 = turn1.clone();
        turn2
            .messages
            .push(Message::new("assistant", "y".repeat(200)));
        turn2.messages.push(Message::new("user", "z".repeat(200)));
        for endpoint in [Endpoint::Chat, Endpoint::Completions] {
            let r = oracle(&[turn1.clone(), turn2.clone()], endpoint, 16);
            let t1 = vllm_sim::tokenize(&sim_prompt(&turn1, endpoint)).len() as u64;
            // Turn 2 finds every whole block of turn 1 (rendered turn 1 is its prefix).
            assert_eq!(r.hit_tokens, (t1 / 16) * 16, "{endpoint:?}");
            assert!(r.hit_rate > 0.3 && r.hit_rate < 0.5, "{r:?}");
        }
    }
}
