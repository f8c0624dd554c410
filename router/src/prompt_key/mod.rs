//! Prompt keys: what the prefix tree matches on, computed once per request from the parsed body.
//!
//! Byte mode (default) keys on the UTF-8 bytes of the prompt and estimates its tokens as bytes /
//! `bytes_per_token`. Token mode (`prefix.tokenizer` set) replaces a text prompt by its token ids
//! on a blocking thread, so tokenizing never stalls the async runtime; the tree then cuts keys to
//! whole `block_size` blocks. Client-sent token ids are used as they are in both modes.

mod config;
mod tokenize;

use std::sync::Arc;

pub use config::PrefixConfig;
// The prompt extraction and token estimate live with the request they are parsed from.
pub use crate::request::{
    DEFAULT_BYTES_PER_TOKEN, RestPrompts, chat_prompt, completion_prompt, estimate_tokens,
};
pub use tokenize::TokenKeyer;

#[cfg(test)]
pub(crate) use tokenize::test_support;

use crate::{
    Error,
    request::{ParsedRequest, Prompt},
};

/// Turns parsed requests into prompt keys (and token counts) for the prefix policies.
#[derive(Debug, Clone)]
pub enum PromptKeys {
    /// Key on bytes; estimate tokens as bytes / `bytes_per_token`.
    Bytes {
        /// Average bytes per token.
        bytes_per_token: f64,
    },
    /// Key on token ids from this tokenizer.
    Tokens(Arc<TokenKeyer>),
}

impl Default for PromptKeys {
    fn default() -> Self {
        Self::Bytes {
            bytes_per_token: DEFAULT_BYTES_PER_TOKEN,
        }
    }
}

impl PromptKeys {
    /// Byte mode, or token mode with the configured tokenizer (loaded now; errors name it).
    pub fn from_config(config: &PrefixConfig) -> Result<Self, Error> {
        Ok(match &config.tokenizer {
            Some(path) => Self::Tokens(Arc::new(TokenKeyer::from_file(path)?)),
            None => Self::Bytes {
                bytes_per_token: config.bytes_per_token,
            },
        })
    }

    /// Finalises the key of `parsed`: tokenizes text in token mode (off the async threads) and
    /// sets `prompt_tokens` ([`estimate_tokens`] at this mode's bytes per token). A tokenizer
    /// failure keeps the text (no prefix match), and the parse-time estimate, and logs why.
    pub async fn prepare(&self, parsed: &mut ParsedRequest) {
        let bytes_per_token = match self {
            Self::Bytes { bytes_per_token } => *bytes_per_token,
            Self::Tokens(keyer) => {
                let Prompt::Text(text) = &parsed.prompt else {
                    parsed.prompt_tokens = estimate_tokens(
                        &parsed.prompt,
                        &parsed.rest_prompts,
                        DEFAULT_BYTES_PER_TOKEN,
                    );
                    return;
                };
                let bytes = text.len();
                let text = text.clone();
                let keyer = Arc::clone(keyer);
                match tokio::task::spawn_blocking(move || keyer.encode(&text)).await {
                    Ok(Ok(ids)) => {
                        // Further text prompts of a batch: the first prompt's bytes per token.
                        let measured = crate::request::measured_bytes_per_token(bytes, ids.len());
                        parsed.prompt = Prompt::Tokens(ids);
                        measured
                    }
                    Ok(Err(reason)) => {
                        tracing::warn!(%reason, "prompt not tokenized");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "tokenizer task failed");
                        return;
                    }
                }
            }
        };
        parsed.prompt_tokens =
            estimate_tokens(&parsed.prompt, &parsed.rest_prompts, bytes_per_token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{self, Endpoint};

    fn parsed(body: &str, endpoint: Endpoint) -> ParsedRequest {
        request::parse(endpoint, body.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn byte_mode_counts_every_prompt_of_a_batch() {
        let mut p = parsed(r#"{"prompt":["abcdefgh","xyz"]}"#, Endpoint::Completions);
        PromptKeys::Bytes {
            bytes_per_token: 2.0,
        }
        .prepare(&mut p)
        .await;
        assert_eq!(p.prompt, Prompt::Text("abcdefgh".into()));
        assert_eq!(p.prompt_tokens, 4 + 2);
        assert_eq!(p.route_request().prompt_tokens_estimate, 6);
    }

    #[tokio::test]
    async fn token_mode_tokenizes_text_and_nests_chat_turns() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PrefixConfig {
            tokenizer: Some(test_support::tiny_tokenizer(dir.path())),
            ..PrefixConfig::default()
        };
        let keys = PromptKeys::from_config(&cfg).unwrap();
        let t1 = r#"{"messages":[{"role":"system","content":"you are a helpful assistant"},
            {"role":"user","content":"what is the capital of france"}]}"#;
        let t2 = r#"{"messages":[{"role":"system","content":"you are a helpful assistant"},
            {"role":"user","content":"what is the capital of france"},
            {"role":"assistant","content":"paris is the capital"},
            {"role":"user","content":"tell me a story"}]}"#;
        let (mut a, mut b) = (
            parsed(t1, Endpoint::ChatCompletions),
            parsed(t2, Endpoint::ChatCompletions),
        );
        keys.prepare(&mut a).await;
        keys.prepare(&mut b).await;
        let (Prompt::Tokens(ta), Prompt::Tokens(tb)) = (&a.prompt, &b.prompt) else {
            panic!("token mode yields token ids: {:?}", a.prompt);
        };
        assert!(
            tb.len() > ta.len() && tb.starts_with(ta),
            "turn 2 extends turn 1"
        );
        assert_eq!(a.prompt_tokens, ta.len());
        let mut ids = parsed(r#"{"prompt":[[1,2,3],[4,5]]}"#, Endpoint::Completions);
        keys.prepare(&mut ids).await;
        assert_eq!(
            (ids.prompt.clone(), ids.prompt_tokens),
            (Prompt::Tokens(vec![1, 2, 3]), 5)
        );
    }

    #[test]
    fn a_missing_tokenizer_is_a_config_error() {
        let cfg = PrefixConfig {
            tokenizer: Some("/nonexistent/tokenizer.json".into()),
            ..Default::default()
        };
        let e = PromptKeys::from_config(&cfg).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }
}
