//! Token mode's keys, computed as vLLM computes prompt token ids: completions text encoded with
//! the tokenizer's special tokens (its post-processor adds BOS), chat messages rendered with the
//! model's chat template and encoded without them. With no template the fixed rendering of
//! [`crate::request`] (its fixed form) is encoded instead; a template failing on a request falls back to it too
//! (logged once, counted in `router_prompt_key_fallbacks_total{reason="chat_template"}`), and
//! so does every chat when the template found beside the tokenizer does not compile (a
//! configured `prefix.chat_template` that does not is a startup error).

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{IntCounterVec, Opts, Registry};

use super::PrefixConfig;
use super::template::ChatTemplate;
use super::tokenize::TokenKeyer;
use crate::Error;
use crate::request::KeyInput;

/// A tokenizer and, when the model has one, its chat template.
#[derive(Debug)]
pub struct TokenMode {
    tokenizer: TokenKeyer,
    template: Option<ChatTemplate>,
    /// Why the template found beside the tokenizer is unusable.
    broken: Option<String>,
    fallbacks: IntCounterVec,
    warned: AtomicBool,
}

/// One prompt to key, moved to a blocking thread.
#[derive(Debug)]
pub enum KeyJob {
    /// Completions text, encoded with special tokens unless the request said otherwise.
    Text {
        /// The prompt.
        text: String,
        /// `add_special_tokens` (vLLM's default for completions: true).
        add_special_tokens: bool,
    },
    /// A chat: its template inputs, and the fixed rendering to fall back to.
    Chat {
        /// What the template renders.
        input: Box<KeyInput>,
        /// The fixed rendering of the same messages ([`super::chat_prompt`]).
        fixed: String,
    },
}

impl TokenMode {
    /// Loads `prefix.tokenizer` and the chat template (see [`ChatTemplate::load`]).
    pub fn from_config(config: &PrefixConfig, tokenizer: &std::path::Path) -> Result<Self, Error> {
        let tokenizer_keyer = TokenKeyer::from_file(tokenizer)?;
        let (template, broken) =
            match ChatTemplate::load(config.chat_template.as_deref(), Some(tokenizer)) {
                Ok(template) => (template, None),
                Err(e) if config.chat_template.is_none() => {
                    tracing::warn!(error = %e, "the model's chat template is unusable: chats are \
                        keyed on the fixed rendering (router_prompt_key_fallbacks_total)");
                    (None, Some(e.to_string()))
                }
                Err(e) => return Err(e),
            };
        match &template {
            Some(t) => tracing::info!(
                origin = t.origin(),
                "chat keys use the model's chat template"
            ),
            None if broken.is_none() => {
                tracing::info!("no chat template found: chat keys use the fixed rendering");
            }
            None => {}
        }
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "router_prompt_key_fallbacks_total",
                "Token-mode prompts keyed approximately: reason chat_template (the template \
                 failed to render, the fixed rendering was used) or tokenizer (not tokenized)",
            ),
            &["reason"],
        )
        .map_err(Error::from)?;
        Ok(Self {
            tokenizer: tokenizer_keyer,
            template,
            broken,
            fallbacks,
            warned: AtomicBool::new(false),
        })
    }

    /// Registers the fallback counter in the router's registry.
    pub fn register(&self, registry: &Registry) -> Result<(), Error> {
        registry
            .register(Box::new(self.fallbacks.clone()))
            .map_err(Error::from)
    }

    /// Whether chat prompts render with the model's template.
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// Token ids of `job` and the UTF-8 bytes of the text they encode. Blocking CPU work.
    pub fn key(&self, job: KeyJob) -> Result<(Vec<u32>, usize), Error> {
        let (text, add_special_tokens) = match job {
            KeyJob::Text {
                text,
                add_special_tokens,
            } => (text, add_special_tokens),
            KeyJob::Chat { input, fixed } => match self.render(&input) {
                Some(text) => (text, input.add_special_tokens.unwrap_or(false)),
                None => (fixed, false),
            },
        };
        let result = self.tokenizer.encode(&text, add_special_tokens);
        if result.is_err() {
            self.fallbacks.with_label_values(&["tokenizer"]).inc();
        }
        result.map(|ids| (ids, text.len()))
    }

    fn render(&self, input: &KeyInput) -> Option<String> {
        let Some(template) = &self.template else {
            if self.broken.is_some() {
                self.fallbacks.with_label_values(&["chat_template"]).inc();
            }
            return None;
        };
        match template.render(input) {
            Ok(text) => Some(text),
            Err(reason) => {
                self.fallbacks.with_label_values(&["chat_template"]).inc();
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%reason, origin = template.origin(),
                        "chat template failed to render a request; keyed on the fixed rendering \
                         (logged once; see router_prompt_key_fallbacks_total)");
                } else {
                    tracing::debug!(%reason, "chat template failed to render a request");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt_key::test_support::gpu_like_model;
    use serde_json::json;

    fn load(
        dir: &std::path::Path,
        chat_template: Option<&str>,
    ) -> (TokenMode, tokenizers::Tokenizer) {
        let path = gpu_like_model(dir);
        let config = PrefixConfig {
            tokenizer: Some(path.clone()),
            chat_template: chat_template.map(str::to_owned),
            ..PrefixConfig::default()
        };
        let raw = tokenizers::Tokenizer::from_file(&path).unwrap();
        (TokenMode::from_config(&config, &path).unwrap(), raw)
    }

    fn plain(raw: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
        raw.encode(text, false).unwrap().get_ids().to_vec()
    }

    /// The token mode of `dir`'s tokenizer, which has no usable chat template: checks that a
    /// chat keys to the fixed rendering, and returns the config and the mode.
    fn without_template(
        dir: &std::path::Path,
        raw: &tokenizers::Tokenizer,
    ) -> (PrefixConfig, TokenMode) {
        let path = dir.join("tokenizer.json");
        let config = PrefixConfig {
            tokenizer: Some(path.clone()),
            ..PrefixConfig::default()
        };
        let mode = TokenMode::from_config(&config, &path).unwrap();
        assert!(!mode.has_template());
        let messages = json!([{"role": "user", "content": "hi"}]);
        let (ids, _) = mode.key(chat_job(messages)).unwrap();
        assert_eq!(ids, plain(raw, "<|im_start|>user\nhi<|im_end|>\n"));
        (config, mode)
    }

    fn chat_job(messages: serde_json::Value) -> KeyJob {
        let mut input = KeyInput::default();
        let fixed = match crate::prompt_key::chat_prompt(Some(messages), &mut input).unwrap() {
            crate::request::Prompt::Text(t) => t,
            other => panic!("chat renders text: {other:?}"),
        };
        KeyJob::Chat {
            input: Box::new(input),
            fixed,
        }
    }

    #[test]
    fn completions_start_with_bos_like_vllm() {
        let dir = tempfile::tempdir().unwrap();
        let (mode, raw) = load(dir.path(), None);
        let text = "What is the capital of France?";
        let job = |add_special_tokens| KeyJob::Text {
            text: text.into(),
            add_special_tokens,
        };
        let (ids, bytes) = mode.key(job(true)).unwrap();
        assert_eq!(bytes, text.len());
        assert_eq!(ids[0], raw.token_to_id("<s>").unwrap());
        assert_eq!(ids[1..], plain(&raw, text)[..]);
        assert_eq!(mode.key(job(false)).unwrap().0, plain(&raw, text));
    }

    #[test]
    fn chats_render_the_models_template_without_bos() {
        let dir = tempfile::tempdir().unwrap();
        let (mode, raw) = load(dir.path(), None);
        assert!(mode.has_template());
        let job = chat_job(
            json!([{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]),
        );
        let (ids, _) = mode.key(job).unwrap();
        let want = "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nWhat is the capital of France?</s>\n<|assistant|>\n";
        assert_eq!(ids, plain(&raw, want));
        let id = |t: &str| raw.token_to_id(t).unwrap();
        assert_eq!(ids[0], id("<|system|>"), "no BOS: the template has none");
        assert!(ids.contains(&id("<|user|>")) && ids.contains(&id("</s>")));
        assert_eq!(ids[ids.len() - 2], id("<|assistant|>"), "generation prompt");
    }

    #[test]
    fn a_failing_template_falls_back_to_the_fixed_rendering_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mode, raw) = load(dir.path(), Some("{{ raise_exception('not for routers') }}"));
        let registry = Registry::new();
        mode.register(&registry).unwrap();
        let messages = json!([{"role": "user", "content": "tell me a story"}]);
        let KeyJob::Chat { fixed, .. } = chat_job(messages.clone()) else {
            unreachable!()
        };
        for _ in 0..2 {
            let (ids, _) = mode.key(chat_job(messages.clone())).unwrap();
            assert_eq!(ids, plain(&raw, &fixed));
        }
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("router_prompt_key_fallbacks_total{reason=\"chat_template\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn a_template_beside_the_tokenizer_that_does_not_compile_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let (_, raw) = load(dir.path(), None);
        // `{% generation %}` (HuggingFace's training-mask tag) is no Jinja the router knows.
        let broken = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}";
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            json!({"chat_template": broken}).to_string(),
        )
        .unwrap();
        let (config, mode) = without_template(dir.path(), &raw);
        assert_eq!(
            mode.fallbacks.with_label_values(&["chat_template"]).get(),
            1
        );
        let configured = PrefixConfig {
            chat_template: Some(broken.into()),
            ..config
        };
        let path = dir.path().join("tokenizer.json");
        let e = TokenMode::from_config(&configured, &path).unwrap_err();
        assert!(e.to_string().contains("prefix.chat_template"), "{e}");
    }

    #[test]
    fn without_a_template_chats_keep_the_fixed_rendering() {
        let dir = tempfile::tempdir().unwrap();
        let (_, raw) = load(dir.path(), None);
        std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
        without_template(dir.path(), &raw);
    }
}
