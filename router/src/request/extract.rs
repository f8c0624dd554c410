//! Pulls the prompt out of an already-parsed `/v1/completions` or `/v1/chat/completions` body.
//!
//! Completions: a string, a list of strings (keyed on the first, all counted), token ids, or a
//! list of token-id lists (keyed on the first). Chat: `messages` rendered by [`super::chat`].

use serde_json::Value;

use super::{chat::render_messages, input::KeyInput};
use crate::{Error, request::Prompt};

/// Size of the prompts of a batch after the first (the keyed one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestPrompts {
    /// UTF-8 bytes of further text prompts.
    pub bytes: usize,
    /// Token ids of further token prompts.
    pub tokens: usize,
}

const PROMPT_TYPE: &str = "`prompt` must be a string, a list of strings, a list of token ids \
                           or a list of lists of token ids";

/// The keyed prompt of a completions body's `prompt` field, and the size of the others.
pub fn completion_prompt(prompt: Option<Value>) -> Result<(Prompt, RestPrompts), Error> {
    let bad = || Error::InvalidRequest(PROMPT_TYPE.into());
    let prompt =
        prompt.ok_or_else(|| Error::InvalidRequest("missing required field `prompt`".into()))?;
    let none = RestPrompts::default();
    match prompt {
        Value::String(s) => Ok((Prompt::Text(s), none)),
        Value::Array(mut items) => match items.first() {
            None => Err(Error::InvalidRequest("`prompt` must not be empty".into())),
            Some(Value::String(_)) => {
                let mut bytes = 0;
                for item in &items[1..] {
                    bytes += item.as_str().ok_or_else(bad)?.len();
                }
                let Value::String(first) = items.swap_remove(0) else {
                    return Err(bad());
                };
                Ok((Prompt::Text(first), RestPrompts { bytes, tokens: 0 }))
            }
            Some(Value::Number(_)) => Ok((Prompt::Tokens(token_ids(&items)?), none)),
            Some(Value::Array(first)) => {
                let first = token_ids(first)?;
                let mut tokens = 0;
                for item in &items[1..] {
                    tokens += token_ids(item.as_array().ok_or_else(bad)?)?.len();
                }
                Ok((Prompt::Tokens(first), RestPrompts { bytes: 0, tokens }))
            }
            Some(_) => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// The conversation of a chat body's `messages` field in the fixed rendering; the messages
/// move into `input`, where token mode renders them with the model's chat template.
pub fn chat_prompt(messages: Option<Value>, input: &mut KeyInput) -> Result<Prompt, Error> {
    let messages = messages
        .ok_or_else(|| Error::InvalidRequest("missing required field `messages`".into()))?;
    if messages.as_array().is_some_and(Vec::is_empty) {
        return Err(Error::InvalidRequest("`messages` must not be empty".into()));
    }
    let text = render_messages(&messages)?;
    input.messages = Some(messages);
    Ok(Prompt::Text(text))
}

fn token_ids(items: &[Value]) -> Result<Vec<u32>, Error> {
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "token ids in `prompt` must be integers in 0..2^32, got {v}"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn completions(prompt: Value) -> Result<(Prompt, RestPrompts), Error> {
        completion_prompt(Some(prompt))
    }

    #[test]
    fn completion_prompt_shapes() {
        assert_eq!(
            completions(json!("hello")).unwrap().0,
            Prompt::Text("hello".into())
        );
        let (p, rest) = completions(json!(["first", "second!"])).unwrap();
        assert_eq!((p, rest.bytes), (Prompt::Text("first".into()), 7));
        assert_eq!(
            completions(json!([1, 2, 3])).unwrap().0,
            Prompt::Tokens(vec![1, 2, 3])
        );
        let (p, rest) = completions(json!([[5, 6], [7, 8, 9]])).unwrap();
        assert_eq!((p, rest.tokens), (Prompt::Tokens(vec![5, 6]), 3));
    }

    #[test]
    fn bad_prompts_are_clear_errors() {
        for (prompt, needle) in [
            (json!(5), "`prompt` must be a string"),
            (json!([]), "must not be empty"),
            (json!(["a", 1]), "`prompt` must be"),
            (json!([1, -2]), "token ids"),
            (json!([1, 4_294_967_296u64]), "token ids"),
            (json!([1.5]), "token ids"),
            (json!([[1], "x"]), "`prompt` must be"),
            (json!([{"a": 1}]), "`prompt` must be"),
        ] {
            let e = completions(prompt.clone()).unwrap_err().to_string();
            assert!(e.contains(needle), "{prompt}: {e}");
        }
        assert!(
            completion_prompt(None)
                .unwrap_err()
                .to_string()
                .contains("`prompt`")
        );
        assert!(
            chat_prompt(None, &mut KeyInput::default())
                .unwrap_err()
                .to_string()
                .contains("`messages`")
        );
        assert!(
            chat_prompt(Some(json!([])), &mut KeyInput::default())
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn chat_is_rendered() {
        let mut input = KeyInput::default();
        let messages = json!([{"role": "user", "content": "hi"}]);
        let p = chat_prompt(Some(messages.clone()), &mut input).unwrap();
        assert_eq!(p, Prompt::Text("<|im_start|>user\nhi<|im_end|>\n".into()));
        assert_eq!(input.messages, Some(messages), "kept for the chat template");
    }
}
