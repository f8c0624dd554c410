//! Parses an inference request body once: the fields routing needs, never re-serialized.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    Error,
    policy::{Endpoint, PromptKey, RouteRequest},
};

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

    /// Estimated prompt tokens: token count, or text bytes / 4 rounded up.
    pub fn tokens_estimate(&self) -> usize {
        match self {
            Prompt::Empty => 0,
            Prompt::Text(text) => text.len().div_ceil(4),
            Prompt::Tokens(tokens) => tokens.len(),
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
    /// The prompt.
    pub prompt: Prompt,
}

impl ParsedRequest {
    /// A request with no body to understand (pass-through routes).
    pub fn passthrough() -> Self {
        Self {
            endpoint: Endpoint::Other,
            model: None,
            stream: false,
            priority: None,
            prompt: Prompt::Empty,
        }
    }

    /// The view handed to the policy.
    pub fn route_request(&self) -> RouteRequest<'_> {
        RouteRequest {
            endpoint: self.endpoint,
            model: self.model.as_deref(),
            prompt: self.prompt.key(),
            prompt_tokens_estimate: self.prompt.tokens_estimate(),
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
    let fields: Fields = serde_json::from_value(value)
        .map_err(|e| Error::InvalidRequest(format!("invalid request field: {e}")))?;
    let prompt = match endpoint {
        Endpoint::Completions => completion_prompt(fields.prompt)?,
        Endpoint::ChatCompletions => chat_prompt(fields.messages)?,
        Endpoint::Other => Prompt::Empty,
    };
    Ok(ParsedRequest {
        endpoint,
        model: fields.model,
        stream: fields.stream.unwrap_or(false),
        priority: fields.priority,
        prompt,
    })
}

fn completion_prompt(prompt: Option<Value>) -> Result<Prompt, Error> {
    let invalid = || {
        Error::InvalidRequest(
            "`prompt` must be a string, a list of strings, token ids or lists of token ids".into(),
        )
    };
    match prompt {
        None => Err(Error::InvalidRequest(
            "missing required field `prompt`".into(),
        )),
        Some(Value::String(text)) => Ok(Prompt::Text(text)),
        Some(Value::Array(items)) => match items.first() {
            None => Err(Error::InvalidRequest("`prompt` must not be empty".into())),
            Some(Value::String(_)) => {
                let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                Ok(Prompt::Text(texts.ok_or_else(invalid)?.join("\n")))
            }
            Some(Value::Number(_)) => Ok(Prompt::Tokens(token_ids(&items).ok_or_else(invalid)?)),
            // A batch of token-id lists: route on the first one.
            Some(Value::Array(first)) => Ok(Prompt::Tokens(token_ids(first).ok_or_else(invalid)?)),
            Some(_) => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

fn token_ids(items: &[Value]) -> Option<Vec<u32>> {
    items
        .iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

/// Renders messages as `<|role|>\ncontent\n` per message, so turn k+1 extends turn k.
fn chat_prompt(messages: Option<Value>) -> Result<Prompt, Error> {
    let Some(messages) = messages else {
        return Err(Error::InvalidRequest(
            "missing required field `messages`".into(),
        ));
    };
    let Value::Array(messages) = messages else {
        return Err(Error::InvalidRequest("`messages` must be a list".into()));
    };
    if messages.is_empty() {
        return Err(Error::InvalidRequest("`messages` must not be empty".into()));
    }
    let mut rendered = String::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            Error::InvalidRequest(format!("`messages[{i}].role` must be a string"))
        })?;
        rendered.push_str("<|");
        rendered.push_str(role);
        rendered.push_str("|>\n");
        match message.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => rendered.push_str(text),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(text) = part.get("text").and_then(Value::as_str) {
                        rendered.push_str(text);
                    }
                }
            }
            Some(_) => {
                return Err(Error::InvalidRequest(format!(
                    "`messages[{i}].content` must be a string or a list of parts"
                )));
            }
        }
        rendered.push('\n');
    }
    Ok(Prompt::Text(rendered))
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
        assert_eq!(p.prompt.tokens_estimate(), 2);
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
        let p = parse(Endpoint::Completions, br#"{"prompt":["a","b"]}"#).unwrap();
        assert_eq!(p.prompt, Prompt::Text("a\nb".into()));
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
        assert_eq!(a, "<|system|>\nbe nice\n<|user|>\nhi\n");
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
