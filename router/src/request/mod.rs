//! Parses an inference request body once: the fields routing needs, never re-serialized; and
//! the request as policies see it ([`RouteRequest`], [`Endpoint`], [`PromptKey`]).

use serde::Deserialize;
use serde_json::Value;

mod chat;
mod estimate;
mod extract;
mod input;
mod ordered;

pub(crate) use chat::fnv1a64;
pub(crate) use estimate::measured_bytes_per_token;
pub use estimate::{DEFAULT_BYTES_PER_TOKEN, estimate_tokens};
pub use extract::{RestPrompts, chat_prompt, completion_prompt};
pub use input::KeyInput;
pub(crate) use ordered::OrderedJson;
pub use ordered::RawTools;

use crate::Error;

/// The prompt extracted from a request, owned so policies can borrow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// No prompt (pass-through routes).
    Empty,
    /// A text prompt, or chat messages rendered in one fixed role-tagged form.
    Text(String),
    /// A prompt given as token ids.
    Tokens(Vec<u32>),
}

impl Prompt {
    /// The borrowed key handed to policies.
    pub fn key(&self) -> PromptKey<'_> {
        match self {
            Prompt::Empty => PromptKey::Empty,
            Prompt::Text(text) => PromptKey::Text(text),
            Prompt::Tokens(tokens) => PromptKey::Tokens(tokens),
        }
    }
}

/// What the router reads from a request body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// Target endpoint.
    pub endpoint: Endpoint,
    /// `model`, if given.
    pub model: Option<String>,
    /// `stream`, false when absent.
    pub stream: bool,
    /// `priority`, if given.
    pub priority: Option<i64>,
    /// The client key's default priority (`auth.api_keys[].priority`), set after auth.
    pub key_priority: Option<i64>,
    /// The prompt the key is built from (the first prompt of a batch).
    pub prompt: Prompt,
    /// Estimated prompt tokens of the whole request (every prompt of a batch).
    pub prompt_tokens: usize,
    /// Size of the prompts of a batch after the keyed one.
    pub rest_prompts: RestPrompts,
    /// What token mode needs besides the prompt (chat messages, template options); taken by
    /// `prompt_key::PromptKeys::prepare`.
    pub key_input: KeyInput,
}

impl ParsedRequest {
    /// A request with no body to understand (pass-through routes).
    pub fn passthrough() -> Self {
        Self {
            endpoint: Endpoint::Other,
            model: None,
            stream: false,
            priority: None,
            key_priority: None,
            prompt: Prompt::Empty,
            prompt_tokens: 0,
            rest_prompts: RestPrompts::default(),
            key_input: KeyInput::default(),
        }
    }

    /// The view handed to the policy.
    pub fn route_request(&self) -> RouteRequest<'_> {
        RouteRequest {
            endpoint: self.endpoint,
            model: self.model.as_deref(),
            prompt: self.prompt.key(),
            prompt_tokens_estimate: self.prompt_tokens,
            priority: self.priority,
        }
    }
}

#[derive(Deserialize)]
struct Fields {
    model: Option<String>,
    stream: Option<bool>,
    priority: Option<i64>,
    prompt: Option<Value>,
    messages: Option<Value>,
}

/// Parses `body` for `endpoint` (completions or chat), rejecting invalid JSON or missing fields.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<ParsedRequest, Error> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Error::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(Error::InvalidRequest(
            "request body must be a JSON object".into(),
        ));
    }
    let mut key_input = KeyInput::from_body(&value, body);
    let fields: Fields = serde_json::from_value(value)
        .map_err(|e| Error::InvalidRequest(format!("invalid request field: {e}")))?;
    let (prompt, rest_prompts) = match endpoint {
        Endpoint::Completions => completion_prompt(fields.prompt)?,
        Endpoint::ChatCompletions => (
            chat_prompt(fields.messages, &mut key_input)?,
            RestPrompts::default(),
        ),
        Endpoint::Other => (Prompt::Empty, RestPrompts::default()),
    };
    Ok(ParsedRequest {
        endpoint,
        model: fields.model,
        stream: fields.stream.unwrap_or(false),
        priority: fields.priority,
        key_priority: None,
        prompt_tokens: estimate_tokens(&prompt, &rest_prompts, DEFAULT_BYTES_PER_TOKEN),
        prompt,
        rest_prompts,
        key_input,
    })
}

/// Which API a request targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// Any other `/v1/*` route passed through.
    Other,
}

/// The prompt as a policy may key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKey<'a> {
    /// No prompt (pass-through routes).
    Empty,
    /// Prompt text: the completion prompt or the rendered chat messages.
    Text(&'a str),
    /// Prompt given as token ids.
    Tokens(&'a [u32]),
}

/// What a policy knows about the request being routed.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Target endpoint.
    pub endpoint: Endpoint,
    /// The `model` field, if any.
    pub model: Option<&'a str>,
    /// The prompt key.
    pub prompt: PromptKey<'a>,
    /// Estimated prompt length in tokens.
    pub prompt_tokens_estimate: usize,
    /// The `priority` field (lower is served first by vLLM), if any.
    pub priority: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_prompt_shapes() {
        let p = parse(
            Endpoint::Completions,
            br#"{"model":"m","prompt":"abcdefgh","stream":true}"#,
        )
        .unwrap();
        assert_eq!((p.model.as_deref(), p.stream), (Some("m"), true));
        assert_eq!(p.prompt, Prompt::Text("abcdefgh".into()));
        assert_eq!(p.prompt_tokens, 2);
        let p = parse(
            Endpoint::Completions,
            br#"{"prompt":[1,2,3],"priority":-2}"#,
        )
        .unwrap();
        assert_eq!(
            (p.prompt, p.priority),
            (Prompt::Tokens(vec![1, 2, 3]), Some(-2))
        );
        let p = parse(Endpoint::Completions, br#"{"prompt":[[4,5],[6]]}"#).unwrap();
        assert_eq!(p.prompt, Prompt::Tokens(vec![4, 5]));
        let p = parse(Endpoint::Completions, br#"{"prompt":["abcd","efgh"]}"#).unwrap();
        assert_eq!(
            p.prompt,
            Prompt::Text("abcd".into()),
            "a batch is keyed on its first prompt"
        );
        assert_eq!(
            p.route_request().prompt_tokens_estimate,
            2,
            "and counts all of them"
        );
    }

    #[test]
    fn chat_rendering_extends_across_turns() {
        let t1 = br#"{"messages":[{"role":"system","content":"be nice"},{"role":"user","content":"hi"}]}"#;
        let t2 = br#"{"messages":[{"role":"system","content":"be nice"},{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"hello"}]},{"role":"user","content":"more"}]}"#;
        let (Prompt::Text(a), Prompt::Text(b)) = (
            parse(Endpoint::ChatCompletions, t1).unwrap().prompt,
            parse(Endpoint::ChatCompletions, t2).unwrap().prompt,
        ) else {
            panic!("chat prompts are text");
        };
        assert_eq!(
            a,
            "<|im_start|>system\nbe nice<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
        assert!(b.starts_with(&a), "turn 2 extends turn 1: {b:?}");
    }

    #[test]
    fn bad_bodies_are_rejected_with_the_right_error() {
        let cases: [(&[u8], Endpoint, &str); 8] = [
            (b"{not json", Endpoint::Completions, "InvalidJson"),
            (b"[1,2]", Endpoint::Completions, "InvalidRequest"),
            (br#"{"model":"m"}"#, Endpoint::Completions, "InvalidRequest"),
            (br#"{"prompt":{}}"#, Endpoint::Completions, "InvalidRequest"),
            (
                br#"{"prompt":"x","stream":"yes"}"#,
                Endpoint::Completions,
                "InvalidRequest",
            ),
            (
                br#"{"prompt":"x"}"#,
                Endpoint::ChatCompletions,
                "InvalidRequest",
            ),
            (
                br#"{"messages":[]}"#,
                Endpoint::ChatCompletions,
                "InvalidRequest",
            ),
            (
                br#"{"messages":[{"content":"x"}]}"#,
                Endpoint::ChatCompletions,
                "InvalidRequest",
            ),
        ];
        for (body, endpoint, want) in cases {
            let err = parse(endpoint, body).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(want),
                "{}: {err:?}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        }
    }
}
