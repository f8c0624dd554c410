//! Request bodies and their validation into a [`Job`] the engine can run.

use super::error::ApiError;
use crate::config::{ModelRef, SchedulingPolicy, SimConfig};
use crate::engine::FinishKind;
use crate::tokenizer::{ChatMessage, render_chat, tokenize};
use axum::http::StatusCode;
use serde::Deserialize;

/// Most sequences (prompts x n) one request may ask for.
const MAX_SEQS_PER_REQUEST: usize = 1024;

/// `stream_options` of both endpoints.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// `prompt` of `/v1/completions`: text, texts, token ids or lists of token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PromptInput {
    /// One text prompt.
    Text(String),
    /// A batch of text prompts.
    Texts(Vec<String>),
    /// One pre-tokenized prompt.
    Ids(Vec<u32>),
    /// A batch of pre-tokenized prompts.
    IdLists(Vec<Vec<u32>>),
}

/// Body of `POST /v1/completions` (fields the sim does not model are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    model: Option<String>,
    prompt: Option<PromptInput>,
    max_tokens: Option<i64>,
    min_tokens: Option<i64>,
    ignore_eos: Option<bool>,
    n: Option<i64>,
    priority: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

/// Body of `POST /v1/chat/completions` (fields the sim does not model are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    min_tokens: Option<i64>,
    ignore_eos: Option<bool>,
    n: Option<i64>,
    priority: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

/// Sampling fields common to both endpoints.
struct Sampling {
    model: Option<String>,
    max_tokens: Option<i64>,
    min_tokens: Option<i64>,
    ignore_eos: bool,
    n: Option<i64>,
    priority: Option<i64>,
    stream: bool,
    stream_options: Option<StreamOptions>,
}

/// A validated request: what to run and how to answer.
#[derive(Debug)]
pub(crate) struct Job {
    /// Token ids of each prompt.
    pub(crate) prompts: Vec<Vec<u32>>,
    /// Output length of each prompt's choices.
    pub(crate) lengths: Vec<usize>,
    /// How choices end.
    pub(crate) finish: FinishKind,
    /// Choices per prompt.
    pub(crate) n: usize,
    /// Scheduling priority (lower first).
    pub(crate) priority: i64,
    /// Answer with SSE.
    pub(crate) stream: bool,
    /// Send a final usage chunk when streaming.
    pub(crate) include_usage: bool,
    /// The LoRA adapter asked for, named in the response instead of the base model.
    pub(crate) lora: Option<String>,
}

/// Parses a JSON body, turning serde errors into 400s.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

impl CompletionRequest {
    /// Validates into a job.
    pub(crate) fn into_job(self, cfg: &SimConfig) -> Result<Job, ApiError> {
        let prompts = match self.prompt {
            None => return Err(ApiError::bad_param("prompt", "Field `prompt` is required.")),
            Some(PromptInput::Text(t)) => vec![tokenize(&t)],
            Some(PromptInput::Texts(ts)) => ts.iter().map(|t| tokenize(t)).collect(),
            Some(PromptInput::Ids(ids)) => vec![ids],
            Some(PromptInput::IdLists(lists)) => lists,
        };
        let sampling = Sampling {
            model: self.model,
            max_tokens: self.max_tokens,
            min_tokens: self.min_tokens,
            ignore_eos: self.ignore_eos.unwrap_or(false),
            n: self.n,
            priority: self.priority,
            stream: self.stream.unwrap_or(false),
            stream_options: self.stream_options,
        };
        plan(prompts, sampling, cfg)
    }
}

impl ChatRequest {
    /// Validates into a job (the messages are rendered with [`render_chat`]).
    pub(crate) fn into_job(self, cfg: &SimConfig) -> Result<Job, ApiError> {
        let messages = self
            .messages
            .ok_or_else(|| ApiError::bad_param("messages", "Field `messages` is required."))?;
        if messages.is_empty() {
            return Err(ApiError::bad_param(
                "messages",
                "`messages` must not be empty.",
            ));
        }
        let sampling = Sampling {
            model: self.model,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            min_tokens: self.min_tokens,
            ignore_eos: self.ignore_eos.unwrap_or(false),
            n: self.n,
            priority: self.priority,
            stream: self.stream.unwrap_or(false),
            stream_options: self.stream_options,
        };
        plan(vec![tokenize(&render_chat(&messages))], sampling, cfg)
    }
}

fn plan(prompts: Vec<Vec<u32>>, s: Sampling, cfg: &SimConfig) -> Result<Job, ApiError> {
    let lora = match cfg.resolve_model(s.model.as_deref()) {
        Some(ModelRef::Base) => None,
        Some(ModelRef::Lora(l)) => Some(l.name.clone()),
        None => {
            let m = s.model.as_deref().unwrap_or_default();
            return Err(ApiError {
                param: Some("model"),
                ..ApiError::status(
                    StatusCode::NOT_FOUND,
                    format!("The model `{m}` does not exist."),
                )
            });
        }
    };
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::bad_param(
            "prompt",
            "The prompt must not be empty.",
        ));
    }
    let n = s.n.unwrap_or(1);
    if n < 1 {
        return Err(ApiError::bad_param(
            "n",
            format!("n must be at least 1, got {n}."),
        ));
    }
    let n = n as usize;
    if n.saturating_mul(prompts.len()) > MAX_SEQS_PER_REQUEST {
        return Err(ApiError::bad_param(
            "n",
            format!("At most {MAX_SEQS_PER_REQUEST} sequences (prompts x n) per request."),
        ));
    }
    if let Some(m) = s.max_tokens {
        if m < 1 {
            return Err(ApiError::bad_param(
                "max_tokens",
                format!("max_tokens must be at least 1, got {m}."),
            ));
        }
    }
    let min_tokens = s.min_tokens.unwrap_or(0);
    if min_tokens < 0 {
        return Err(ApiError::bad_param(
            "min_tokens",
            format!("min_tokens must be greater than or equal to 0, got {min_tokens}."),
        ));
    }
    if let Some(m) = s.max_tokens {
        if min_tokens > m {
            return Err(ApiError::bad_param(
                "min_tokens",
                format!(
                    "min_tokens must be less than or equal to max_tokens={m}, got {min_tokens}."
                ),
            ));
        }
    }
    let priority = s.priority.unwrap_or(0);
    if priority != 0 && cfg.scheduling_policy == SchedulingPolicy::Fcfs {
        return Err(ApiError::bad_param(
            "priority",
            format!(
                "Got priority {priority} but priority scheduling is not enabled (start with --scheduling-policy priority)."
            ),
        ));
    }
    if s.stream_options.is_some() && !s.stream {
        return Err(ApiError::bad_param(
            "stream_options",
            "Stream options can only be defined when `stream=True`.",
        ));
    }
    let limit = cfg.max_request_tokens();
    let mut lengths = Vec::with_capacity(prompts.len());
    for p in &prompts {
        let room = limit.saturating_sub(p.len());
        let out = match s.max_tokens {
            Some(m) => m as usize,
            None => cfg
                .default_max_tokens
                .max(min_tokens as usize)
                .min(room.max(1)),
        };
        if p.len().saturating_add(out) > limit {
            return Err(ApiError::bad_request(format!(
                "This model's maximum context length is {limit} tokens. However, you requested {} tokens ({} in the messages, {out} in the completion). Please reduce the length of the messages or completion.",
                p.len() + out,
                p.len()
            )));
        }
        lengths.push(out);
    }
    let finish = if s.max_tokens.is_some() || s.ignore_eos {
        FinishKind::Length
    } else {
        FinishKind::Stop
    };
    // As vLLM: `stream_options: {}` means include_usage = true.
    let include_usage = s
        .stream_options
        .is_some_and(|o| o.include_usage.unwrap_or(true));
    Ok(Job {
        prompts,
        lengths,
        finish,
        n,
        priority,
        stream: s.stream,
        include_usage,
        lora,
    })
}
