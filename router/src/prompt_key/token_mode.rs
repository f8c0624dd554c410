//! Token mode's keys, computed as vLLM computes prompt token ids: completions text encoded with
//! the tokenizer's special tokens (its post-processor adds BOS), chat messages rendered with the
//! model's chat template and encoded without them. With no template the fixed rendering of
//! [`super::chat`] is encoded instead; a template failing on a request falls back to it too
//! (logged once, counted in `router_prompt_key_fallbacks_total{reason="chat_template"}`).

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{IntCounterVec, Opts, Registry};

use super::input::KeyInput;
use super::template::ChatTemplate;
use super::tokenize::TokenKeyer;
use super::PrefixConfig;
use crate::Error;

/// A tokenizer and, when the model has one, its chat template.
#[derive(Debug)]
pub struct TokenMode {
    tokenizer: TokenKeyer,
    template: Option<ChatTemplate>,
    fallbacks: IntCounterVec,
    warned: AtomicBool,
}

/// One prompt to key, moved to a blocking thread.
#[derive(Debug)]
pub(crate) enum KeyJob {
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
        /// [`super::chat`]'s rendering of the same messages.
        fixed: String,
    },
}

impl TokenMode {
    /// Loads `prefix.tokenizer` and the chat template (see [`ChatTemplate::load`]).
    pub fn from_config(config: &PrefixConfig, tokenizer: &std::path::Path) -> Result<Self, Error> {
        let tokenizer_keyer = TokenKeyer::from_file(tokenizer)?;
        let template = ChatTemplate::load(config.chat_template.as_deref(), Some(tokenizer))?;
        match &template {
            Some(t) => tracing::info!(origin = t.origin(), "chat keys use the model's chat template"),
            None => tracing::info!("no chat template found: chat keys use the fixed rendering"),
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
    pub(crate) fn key(&self, job: KeyJob) -> Result<(Vec<u32>, usize), Error> {
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
        let template = self.template.as_ref()?;
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
