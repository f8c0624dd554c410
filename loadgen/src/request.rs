//! The OpenAI-style request body for one [`RequestSpec`].

use crate::dataset::RequestSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which OpenAI endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `/v1/completions` with the conversation rendered as "User: ...\nAssistant:" text.
    Completions,
    /// `/v1/chat/completions` with the message list.
    Chat,
}

impl Endpoint {
    /// The URL path of the endpoint.
    pub fn path(self) -> &'static str {
        match self {
            Self::Completions => "/v1/completions",
            Self::Chat => "/v1/chat/completions",
        }
    }

    /// The flag spelling of the endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completions => "completions",
            Self::Chat => "chat",
        }
    }
}

/// Body fields shared by every request of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyOptions {
    /// The `model` field.
    pub model: String,
    /// Ask for a server-sent event stream (with a final usage chunk).
    pub stream: bool,
    /// Ask the server to generate exactly `max_tokens` tokens.
    pub ignore_eos: bool,
}

/// Builds the JSON body of `spec` for `endpoint`.
pub fn body(spec: &RequestSpec, endpoint: Endpoint, opts: &BodyOptions) -> Value {
    let mut b = json!({
        "model": opts.model,
        "max_tokens": spec.output_len,
        "temperature": 0.0,
        "stream": opts.stream,
    });
    match endpoint {
        Endpoint::Completions => b["prompt"] = json!(spec.prompt_text()),
        Endpoint::Chat => b["messages"] = json!(spec.messages),
    }
    if opts.stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    if opts.ignore_eos {
        b["ignore_eos"] = json!(true);
    }
    if let Some(p) = spec.priority {
        b["priority"] = json!(p);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Message;

    fn spec() -> RequestSpec {
        RequestSpec {
            messages: vec![Message::new("system", "s"), Message::new("user", "q")],
            output_len: 7,
            group: 0,
            priority: Some(2),
        }
    }

    #[test]
    fn chat_body_carries_messages_and_options() {
        let opts = BodyOptions {
            model: "m".into(),
            stream: true,
            ignore_eos: true,
        };
        let b = body(&spec(), Endpoint::Chat, &opts);
        assert_eq!(b["messages"][1]["content"], "q");
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["ignore_eos"], true);
        assert_eq!(b["priority"], 2);
        assert!(b.get("prompt").is_none());
    }

    #[test]
    fn completions_body_renders_text() {
        let opts = BodyOptions {
            model: "m".into(),
            stream: false,
            ignore_eos: false,
        };
        let b = body(&spec(), Endpoint::Completions, &opts);
        assert_eq!(b["prompt"], "System: s\nUser: q\nAssistant:");
        assert!(b.get("stream_options").is_none());
        assert!(b.get("ignore_eos").is_none());
    }
}
