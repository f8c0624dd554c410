//! The request fields, besides the prompt, that decide vLLM's prompt token ids: kept from the
//! parsed body until token mode has keyed the request.

use serde_json::{Map, Value};

use super::ordered::RawTools;

/// What token mode needs of a request body to reproduce vLLM's tokenization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyInput {
    /// `add_special_tokens` as sent (vLLM's default: true for completions, false for chat).
    pub add_special_tokens: Option<bool>,
    /// Chat: `add_generation_prompt` as sent (default true).
    pub add_generation_prompt: Option<bool>,
    /// Chat: `continue_final_message` as sent (default false).
    pub continue_final_message: Option<bool>,
    /// Chat: `chat_template_kwargs`, extra template variables.
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// Chat: `tools`, a template variable (read in the body's key order, as vLLM sees them).
    pub tools: Option<RawTools>,
    /// Chat: `documents`, a template variable.
    pub documents: Option<Value>,
    /// Chat: the `messages` the template renders.
    pub messages: Option<Value>,
}

impl KeyInput {
    /// Reads the fields from a request body parsed from `raw`; ill-typed ones are ignored (the
    /// replica judges them, routing only falls back to defaults).
    pub fn from_body(body: &Value, raw: &[u8]) -> Self {
        let flag = |key: &str| body.get(key).and_then(Value::as_bool);
        let list = |key: &str| body.get(key).filter(|v| v.is_array());
        Self {
            add_special_tokens: flag("add_special_tokens"),
            add_generation_prompt: flag("add_generation_prompt"),
            continue_final_message: flag("continue_final_message"),
            chat_template_kwargs: body
                .get("chat_template_kwargs")
                .and_then(Value::as_object)
                .cloned(),
            tools: list("tools")
                .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                .map(|_| RawTools::from_body(raw)),
            documents: list("documents").cloned(),
            messages: None,
        }
    }

    /// `add_generation_prompt`, default true.
    pub fn add_generation_prompt(&self) -> bool {
        self.add_generation_prompt.unwrap_or(true)
    }

    /// `continue_final_message`, default false.
    pub fn continue_final_message(&self) -> bool {
        self.continue_final_message.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_read_leniently() {
        let body = json!({
            "add_special_tokens": true, "add_generation_prompt": "yes",
            "continue_final_message": true, "chat_template_kwargs": {"enable_thinking": false},
            "tools": [{"type": "function"}], "documents": 5});
        let k = KeyInput::from_body(&body, body.to_string().as_bytes());
        assert_eq!(k.add_special_tokens, Some(true));
        assert!(k.add_generation_prompt(), "ill-typed: default");
        assert!(k.continue_final_message());
        assert_eq!(
            k.chat_template_kwargs.unwrap()["enable_thinking"],
            json!(false)
        );
        assert!(k.tools.is_some() && k.documents.is_none());
        let d = KeyInput::from_body(&json!({"tools": []}), br#"{"tools": []}"#);
        assert!(d.tools.is_none(), "no tools: none");
        assert!(d.add_generation_prompt() && !d.continue_final_message());
    }
}
