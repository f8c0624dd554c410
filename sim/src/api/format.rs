//! JSON bodies and SSE chunks in vLLM's shapes for both endpoints.

use crate::engine::Outcome;
use crate::tokenizer::filler_text;
use serde::Serialize;

/// Which OpenAI endpoint is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/completions`.
    Completion,
    /// `/v1/chat/completions`.
    Chat,
}

/// Token accounting of a whole response.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: usize,
    pub(crate) total_tokens: usize,
    pub(crate) completion_tokens: usize,
    pub(crate) prompt_tokens_details: Details,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Details {
    pub(crate) cached_tokens: usize,
}

impl Usage {
    /// Adds one choice; `first_of_prompt` marks the choice whose prompt is counted.
    pub(crate) fn add(&mut self, o: &Outcome, first_of_prompt: bool) {
        if first_of_prompt {
            self.prompt_tokens += o.prompt_tokens;
            self.prompt_tokens_details.cached_tokens += o.cached_tokens;
        }
        self.completion_tokens += o.completion_tokens;
        self.total_tokens = self.prompt_tokens + self.completion_tokens;
    }
}

/// Writes responses of one request (shared id, timestamp and model).
#[derive(Debug)]
pub(crate) struct Formatter<'a> {
    pub(crate) kind: Kind,
    pub(crate) id: &'a str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
}

#[derive(Serialize)]
struct Envelope<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    stop_reason: Option<()>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    content: &'a str,
}

#[derive(Serialize)]
struct DeltaChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<Option<()>>,
}

#[derive(Serialize)]
struct Message {
    role: &'static str,
    content: String,
    tool_calls: [(); 0],
}

#[derive(Serialize)]
struct MessageChoice {
    index: u32,
    message: Message,
    logprobs: Option<()>,
    finish_reason: &'static str,
    stop_reason: Option<()>,
}

impl Formatter<'_> {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope<C>(&self, chunk: bool, choices: C, usage: Option<Usage>) -> Envelope<'_, C> {
        Envelope {
            id: self.id,
            object: self.object(chunk),
            created: self.created,
            model: self.model,
            choices,
            usage,
        }
    }

    fn write_event<T: Serialize>(buf: &mut Vec<u8>, value: &T) {
        buf.extend_from_slice(b"data: ");
        // Serializing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, value);
        buf.extend_from_slice(b"\n\n");
    }

    /// The chat stream's first chunk for a choice: `delta: {role: "assistant", content: ""}`.
    pub(crate) fn role_chunk(&self, buf: &mut Vec<u8>, choice: u32) {
        let c = [DeltaChoice {
            index: choice,
            delta: Delta {
                role: Some("assistant"),
                content: "",
            },
            logprobs: None,
            finish_reason: None,
            stop_reason: None,
        }];
        Self::write_event(buf, &self.envelope(true, c, None));
    }

    /// One token's chunk; `finish` is set on the choice's last token.
    pub(crate) fn token_chunk(
        &self,
        buf: &mut Vec<u8>,
        choice: u32,
        text: &str,
        finish: Option<&'static str>,
    ) {
        match self.kind {
            Kind::Completion => {
                let c = [TextChoice {
                    index: choice,
                    text,
                    logprobs: None,
                    finish_reason: finish,
                    stop_reason: None,
                }];
                Self::write_event(buf, &self.envelope(true, c, None));
            }
            Kind::Chat => {
                let c = [DeltaChoice {
                    index: choice,
                    delta: Delta {
                        role: None,
                        content: text,
                    },
                    logprobs: None,
                    finish_reason: finish,
                    stop_reason: finish.map(|_| None),
                }];
                Self::write_event(buf, &self.envelope(true, c, None));
            }
        }
    }

    /// The final `choices: []` chunk carrying usage (`stream_options.include_usage`).
    pub(crate) fn usage_chunk(&self, buf: &mut Vec<u8>, usage: Usage) {
        let c: [(); 0] = [];
        Self::write_event(buf, &self.envelope(true, c, Some(usage)));
    }

    /// A complete non-streaming response from every choice's outcome (index order).
    pub(crate) fn full(&self, outcomes: &[Outcome], n: usize) -> Vec<u8> {
        let mut usage = Usage::default();
        for (i, o) in outcomes.iter().enumerate() {
            usage.add(o, i % n == 0);
        }
        let body = match self.kind {
            Kind::Completion => {
                let choices: Vec<_> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, o)| TextChoiceOwned {
                        index: i as u32,
                        text: filler_text(o.completion_tokens),
                        logprobs: None,
                        finish_reason: o.finish.as_str(),
                        stop_reason: None,
                        prompt_logprobs: None,
                    })
                    .collect();
                serde_json::to_vec(&self.envelope(false, choices, Some(usage)))
            }
            Kind::Chat => {
                let choices: Vec<_> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, o)| MessageChoice {
                        index: i as u32,
                        message: Message {
                            role: "assistant",
                            content: filler_text(o.completion_tokens),
                            tool_calls: [],
                        },
                        logprobs: None,
                        finish_reason: o.finish.as_str(),
                        stop_reason: None,
                    })
                    .collect();
                serde_json::to_vec(&self.envelope(false, choices, Some(usage)))
            }
        };
        body.unwrap_or_default()
    }
}

#[derive(Serialize)]
struct TextChoiceOwned {
    index: u32,
    text: String,
    logprobs: Option<()>,
    finish_reason: &'static str,
    stop_reason: Option<()>,
    prompt_logprobs: Option<()>,
}
