//! JSON bodies and SSE chunks in vLLM's shapes for both endpoints.

use crate::engine::Outcome;
use crate::tokenizer::filler_text;
use serde::Serialize;
use std::io::Write as _;

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

    /// The constant start of every chunk of this response, up to `"choices":[` (computed once
    /// per stream so token chunks only serialize their own fields).
    pub(crate) fn chunk_prefix(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(b"data: {\"id\":");
        let _ = serde_json::to_writer(&mut p, self.id);
        p.extend_from_slice(b",\"object\":\"");
        p.extend_from_slice(self.object(true).as_bytes());
        p.extend_from_slice(b"\",\"created\":");
        p.extend_from_slice(self.created.to_string().as_bytes());
        p.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut p, self.model);
        p.extend_from_slice(b",\"choices\":[");
        p
    }

    /// One token's chunk (`prefix` from [`Formatter::chunk_prefix`]); `finish` is set on the
    /// choice's last token.
    pub(crate) fn token_chunk(
        &self,
        buf: &mut Vec<u8>,
        prefix: &[u8],
        choice: u32,
        text: &str,
        finish: Option<&'static str>,
    ) {
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(b"{\"index\":");
        let _ = write!(buf, "{choice}");
        match self.kind {
            Kind::Completion => buf.extend_from_slice(b",\"text\":"),
            Kind::Chat => buf.extend_from_slice(b",\"delta\":{\"content\":"),
        }
        let _ = serde_json::to_writer(&mut *buf, text);
        if self.kind == Kind::Chat {
            buf.push(b'}');
        }
        buf.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                let _ = serde_json::to_writer(&mut *buf, f);
                buf.extend_from_slice(b",\"stop_reason\":null");
            }
            None if self.kind == Kind::Completion => {
                buf.extend_from_slice(b"null,\"stop_reason\":null");
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b"}]}\n\n");
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(buf: &[u8]) -> Value {
        let text = std::str::from_utf8(buf).unwrap();
        let body = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn token_chunks_are_valid_vllm_json() {
        for kind in [Kind::Completion, Kind::Chat] {
            let f = Formatter {
                kind,
                id: "id-\"1\"",
                created: 7,
                model: "m",
            };
            let prefix = f.chunk_prefix();
            let mut buf = Vec::new();
            f.token_chunk(&mut buf, &prefix, 3, "a\"b", None);
            let v = parse(&buf);
            assert_eq!(v["id"], "id-\"1\"");
            assert_eq!(v["created"], 7);
            assert_eq!(v["choices"][0]["index"], 3);
            assert!(v["choices"][0]["finish_reason"].is_null());
            let mut last = Vec::new();
            f.token_chunk(&mut last, &prefix, 0, "z", Some("length"));
            let v2 = parse(&last);
            assert_eq!(v2["choices"][0]["finish_reason"], "length");
            assert!(v2["choices"][0]["stop_reason"].is_null());
            match kind {
                Kind::Completion => {
                    assert_eq!(v["object"], "text_completion");
                    assert_eq!(v["choices"][0]["text"], "a\"b");
                    assert_eq!(v["choices"][0]["stop_reason"], Value::Null);
                }
                Kind::Chat => {
                    assert_eq!(v["object"], "chat.completion.chunk");
                    assert_eq!(v["choices"][0]["delta"], json!({"content": "a\"b"}));
                    assert!(v["choices"][0].get("stop_reason").is_none());
                }
            }
        }
    }
}
