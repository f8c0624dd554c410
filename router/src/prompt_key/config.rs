//! Settings of prompt keys and of the prefix tree built from them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How prompts are keyed and how much of them the tree keeps per replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefixConfig {
    /// A HuggingFace `tokenizer.json`: keys become token ids (token mode). Unset: byte mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// Token mode's chat template: inline Jinja, or a path to a template file or to a
    /// `tokenizer_config.json`. Unset: the one beside `tokenizer` (`chat_template.jinja` or
    /// `tokenizer_config.json`), else the fixed rendering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Tokens per KV-cache block; token-mode keys are cut to whole blocks like vLLM caches them.
    pub block_size: usize,
    /// Average bytes per token of the served model, for byte-mode token estimates.
    pub bytes_per_token: f64,
    /// Per-replica tree cap in tokens; unset: the replica's scraped KV capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_cap_tokens: Option<u64>,
    /// Cap in tokens while a replica's capacity is unknown (not scraped yet).
    pub fallback_cap_tokens: u64,
    /// Milliseconds a replica may stay unhealthy before the tree forgets what it holds.
    pub unhealthy_grace_ms: u64,
    /// The precise index from the replicas' KV-cache events (token mode only).
    pub kv_events: crate::kv::KvEventsConfig,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        Self {
            tokenizer: None,
            chat_template: None,
            block_size: 16,
            bytes_per_token: 4.0,
            tenant_cap_tokens: None,
            fallback_cap_tokens: 1_000_000,
            unhealthy_grace_ms: 30_000,
            kv_events: crate::kv::KvEventsConfig::default(),
        }
    }
}

impl PrefixConfig {
    /// Checks the values serde cannot; returns the offending key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, why: &str| Err((format!("prefix.{key}"), why.to_owned()));
        if self.block_size == 0 {
            return bad("block_size", "must be at least 1");
        }
        if !(self.bytes_per_token.is_finite() && self.bytes_per_token >= 0.5) {
            return bad("bytes_per_token", "must be a number >= 0.5");
        }
        if self.tenant_cap_tokens == Some(0) {
            return bad("tenant_cap_tokens", "must be greater than 0 (or unset)");
        }
        if self.fallback_cap_tokens == 0 {
            return bad("fallback_cap_tokens", "must be greater than 0");
        }
        if self.chat_template.is_some() && self.tokenizer.is_none() {
            return bad(
                "chat_template",
                "needs token mode (prefix.tokenizer): byte mode keys chats on a fixed rendering",
            );
        }
        if self.kv_events.enabled && self.tokenizer.is_none() {
            return bad(
                "kv_events.enabled",
                "needs token mode (prefix.tokenizer): events carry token ids",
            );
        }
        self.kv_events.check()
    }
}
