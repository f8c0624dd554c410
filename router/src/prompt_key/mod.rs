//! Prompt keys: what the prefix tree matches on, computed once per request from the parsed body.
//!
//! Byte mode (default) keys on the UTF-8 bytes of the prompt and estimates its tokens as bytes /
//! `bytes_per_token`. Token mode (`prefix.tokenizer` set) replaces a text prompt by vLLM's own
//! prompt token ids ([`TokenMode`]: completions with special tokens, chats through the model's
//! chat template) on a blocking thread, so tokenizing never stalls the async runtime; the tree
//! then cuts keys to whole `block_size` blocks. Client-sent token ids are used as they are in
//! both modes.

mod config;
mod conversation;
mod pycompat;
mod template;
mod token_mode;
mod tokenize;

use std::sync::Arc;

pub use config::PrefixConfig;
// The prompt extraction, token estimate and keying input live with the request they are parsed from.
pub use crate::request::{
    DEFAULT_BYTES_PER_TOKEN, KeyInput, RawTools, RestPrompts, chat_prompt, completion_prompt,
    estimate_tokens,
};
pub use template::ChatTemplate;
pub use token_mode::TokenMode;
pub use tokenize::TokenKeyer;

#[cfg(test)]
pub(crate) use tokenize::test_support;

use crate::{
    Error,
    request::{Endpoint, ParsedRequest, Prompt},
};
pub use token_mode::KeyJob;

/// Turns parsed requests into prompt keys (and token counts) for the prefix policies.
#[derive(Debug, Clone)]
pub enum PromptKeys {
    /// Key on bytes; estimate tokens as bytes / `bytes_per_token`.
    Bytes {
        /// Average bytes per token.
        bytes_per_token: f64,
    },
    /// Key on vLLM's token ids, from this tokenizer and chat template.
    Tokens(Arc<TokenMode>),
}

impl Default for PromptKeys {
    fn default() -> Self {
        Self::Bytes {
            bytes_per_token: DEFAULT_BYTES_PER_TOKEN,
        }
    }
}

impl PromptKeys {
    /// Byte mode, or token mode with the configured tokenizer and chat template (loaded now;
    /// errors name the file).
    pub fn from_config(config: &PrefixConfig) -> Result<Self, Error> {
        Ok(match &config.tokenizer {
            Some(path) => Self::Tokens(Arc::new(TokenMode::from_config(config, path)?)),
            None => Self::Bytes {
                bytes_per_token: config.bytes_per_token,
            },
        })
    }

    /// Registers token mode's metrics (`router_prompt_key_fallbacks_total`) in `registry`.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> Result<(), Error> {
        match self {
            Self::Bytes { .. } => Ok(()),
            Self::Tokens(mode) => mode.register(registry),
        }
    }

    /// Finalises the key of `parsed`: tokenizes text in token mode (off the async threads) and
    /// sets `prompt_tokens` ([`estimate_tokens`] at this mode's bytes per token). A tokenizer
    /// failure keeps the text (no prefix match), and the parse-time estimate, and logs why.
    /// Consumes `parsed.key_input` in both modes.
    pub async fn prepare(&self, parsed: &mut ParsedRequest) {
        let input = std::mem::take(&mut parsed.key_input);
        let bytes_per_token = match self {
            Self::Bytes { bytes_per_token } => *bytes_per_token,
            Self::Tokens(mode) => {
                let Prompt::Text(text) = &parsed.prompt else {
                    parsed.prompt_tokens = estimate_tokens(
                        &parsed.prompt,
                        &parsed.rest_prompts,
                        DEFAULT_BYTES_PER_TOKEN,
                    );
                    return;
                };
                let job = match parsed.endpoint {
                    Endpoint::ChatCompletions => KeyJob::Chat {
                        input: Box::new(input),
                        fixed: text.clone(),
                    },
                    _ => KeyJob::Text {
                        text: text.clone(),
                        add_special_tokens: input.add_special_tokens.unwrap_or(true),
                    },
                };
                let mode = Arc::clone(mode);
                match tokio::task::spawn_blocking(move || mode.key(job)).await {
                    Ok(Ok((ids, bytes))) => {
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

    #[tokio::test]
    async fn token_mode_keys_are_vllms_prompt_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = test_support::gpu_like_model(dir.path());
        let raw = tokenizers::Tokenizer::from_file(&path).unwrap();
        let enc = |text: &str, special| raw.encode(text, special).unwrap().get_ids().to_vec();
        let keys = PromptKeys::from_config(&PrefixConfig {
            tokenizer: Some(path.clone()),
            ..PrefixConfig::default()
        })
        .unwrap();
        let key = |body: &str, endpoint| {
            let mut p = parsed(body, endpoint);
            let keys = keys.clone();
            async move {
                keys.prepare(&mut p).await;
                assert_eq!(p.key_input, KeyInput::default(), "consumed");
                match p.prompt {
                    Prompt::Tokens(ids) => ids,
                    other => panic!("token mode yields ids: {other:?}"),
                }
            }
        };
        let text = "Tell me a story about a cat";
        let completion = key(&format!(r#"{{"prompt":"{text}"}}"#), Endpoint::Completions).await;
        assert_eq!(completion, enc(text, true));
        assert_eq!(completion[0], raw.token_to_id("<s>").unwrap(), "BOS");
        let body = format!(r#"{{"prompt":"{text}","add_special_tokens":false}}"#);
        assert_eq!(key(&body, Endpoint::Completions).await, enc(text, false));
        let ids = key(r#"{"prompt":[7,8,9]}"#, Endpoint::Completions).await;
        assert_eq!(ids, vec![7, 8, 9], "client token ids are used as they are");

        let t1 = r#"{"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
        let t2 = r#"{"messages":[{"role":"user","content":"What is the capital of France?"},
            {"role":"assistant","content":"Paris"},{"role":"user","content":"Tell me a story"}]}"#;
        let (a, b) = (
            key(t1, Endpoint::ChatCompletions).await,
            key(t2, Endpoint::ChatCompletions).await,
        );
        let want = "<|user|>\nWhat is the capital of France?</s>\n<|assistant|>\n";
        assert_eq!(a, enc(want, false));
        assert!(
            b.starts_with(&a),
            "turn 2 extends turn 1 and its generation prompt"
        );
        let no_gen =
            r#"{"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":false}"#;
        assert_eq!(
            key(no_gen, Endpoint::ChatCompletions).await,
            enc("<|user|>\nhi</s>\n", false)
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
