//! The `messages` a chat template sees, shaped as vLLM shapes them before rendering: content
//! as one string joined from its text parts ("string" templates) or as a list of typed parts
//! ("openai" templates, those that loop over a message's content), `tool_calls` arguments
//! parsed from JSON, and only the per-role fields vLLM keeps.

use minijinja::value::{Value as Jinja, ValueKind};
use serde_json::Value;

use crate::request::OrderedJson;

/// How a template reads `message['content']` (vLLM's "content format").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentFormat {
    /// One string per message.
    String,
    /// A list of `{"type": ...}` parts.
    OpenAi,
}

impl ContentFormat {
    /// "openai" when the template loops over a message's content (`for x in m['content']`
    /// or `m.content`, filtered or not), "string" otherwise; vLLM decides it the same way on
    /// the template's syntax tree.
    pub(crate) fn detect(source: &str) -> Self {
        let loops_over_content = source.split("{%").skip(1).any(|tag| {
            let tag = tag.split("%}").next().unwrap_or("");
            let tag = tag.trim_start_matches(['-', '+']).trim_start();
            let Some(rest) = tag.strip_prefix("for ") else {
                return false;
            };
            let Some((_, iter)) = rest.split_once(" in ") else {
                return false;
            };
            let iter: String = iter.chars().filter(|c| !c.is_whitespace()).collect();
            let head = iter.split('|').next().unwrap_or("");
            head.ends_with("['content']")
                || head.ends_with("[\"content\"]")
                || head.ends_with(".content")
        });
        if loops_over_content {
            Self::OpenAi
        } else {
            Self::String
        }
    }
}

/// The conversation for the template, or why `messages` cannot be one.
pub(crate) fn conversation(messages: &Value, format: ContentFormat) -> Result<Jinja, String> {
    let list = messages.as_array().ok_or("`messages` is not an array")?;
    list.iter()
        .enumerate()
        .map(|(i, m)| message(m, format).map_err(|e| format!("messages[{i}]: {e}")))
        .collect()
}

fn message(m: &Value, format: ContentFormat) -> Result<Jinja, String> {
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or("no string `role`")?;
    let mut fields: Vec<(&str, Jinja)> = vec![("role", Jinja::from(role))];
    fields.push(("content", content(m.get("content"), format)?));
    let text = |key: &str| m.get(key).filter(|v| v.is_string());
    match role {
        "assistant" => {
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                if !calls.is_empty() {
                    fields.push(("tool_calls", calls.iter().map(tool_call).collect()));
                }
            }
            if let Some(r) = m.get("reasoning").filter(|v| !v.is_null()) {
                fields.push(("reasoning", to_jinja(r)));
                fields.push(("reasoning_content", to_jinja(r)));
            }
        }
        "tool" => {
            if let Some(id) = m.get("tool_call_id") {
                fields.push(("tool_call_id", to_jinja(id)));
            }
        }
        "developer" => fields.push(("tools", m.get("tools").map_or(Jinja::from(()), to_jinja))),
        _ => {}
    }
    if let Some(name) = text("name") {
        fields.push(("name", to_jinja(name)));
    }
    if let Some(task) = text("task") {
        fields.push(("task", to_jinja(task)));
    }
    Ok(Jinja::from_pairs(fields))
}

/// A tool call with its `function.arguments` parsed from its JSON string (keys in the
/// string's order; `{}` when it is not valid JSON), as vLLM hands them to templates.
fn tool_call(call: &Value) -> Jinja {
    let Some(function) = call.get("function").and_then(Value::as_object) else {
        return to_jinja(call);
    };
    let arguments = match function.get("arguments") {
        Some(Value::String(s)) => OrderedJson::parse(s)
            .filter(|v| matches!(v.kind(), ValueKind::Map | ValueKind::Seq))
            .unwrap_or_else(empty),
        Some(v @ (Value::Object(_) | Value::Array(_))) => to_jinja(v),
        _ => empty(),
    };
    let function = function.iter().map(|(k, v)| {
        let v = if k == "arguments" {
            arguments.clone()
        } else {
            to_jinja(v)
        };
        (k.as_str(), v)
    });
    let function = Jinja::from_pairs(function);
    let call = call.as_object().into_iter().flatten().map(|(k, v)| {
        let v = if k == "function" {
            function.clone()
        } else {
            to_jinja(v)
        };
        (k.as_str(), v)
    });
    Jinja::from_pairs(call)
}

fn empty() -> Jinja {
    Jinja::from_pairs(std::iter::empty::<(&str, Jinja)>())
}

/// Text of a text-like part (`text`, `input_text`, `output_text`, `refusal`, `thinking`), or
/// the kind of a media part.
enum Part<'a> {
    Text(&'a str),
    Media(&'a str, &'a Value),
}

fn part(p: &Value) -> Result<Option<Part<'_>>, String> {
    if let Value::String(s) = p {
        return Ok(Some(Part::Text(s)));
    }
    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
    let field = match kind {
        "text" | "input_text" | "output_text" => "text",
        "refusal" => "refusal",
        "thinking" => "thinking",
        "" => return Err("a content part has no `type`".into()),
        _ => return Ok(Some(Part::Media(kind, p))),
    };
    Ok(p.get(field).and_then(Value::as_str).map(Part::Text))
}

fn content(content: Option<&Value>, format: ContentFormat) -> Result<Jinja, String> {
    let parts: Vec<Part<'_>> = match content {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![Part::Text(s)],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| part(p).transpose())
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`content` is not a string, null or a list".into()),
    };
    Ok(match format {
        ContentFormat::OpenAi => parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => Jinja::from_pairs([("type", "text"), ("text", t)]),
                Part::Media(kind, _) => Jinja::from_pairs([("type", media_modality(kind))]),
            })
            .collect(),
        ContentFormat::String => {
            // vLLM puts one model-specific placeholder per media item before the text; the
            // router cannot know it, so a marker with the item's hash keeps items apart.
            let mut pieces: Vec<String> = parts
                .iter()
                .filter_map(|p| match p {
                    Part::Media(kind, v) => Some(format!(
                        "<|{kind}:{:016x}|>",
                        crate::request::fnv1a64(v.to_string().as_bytes())
                    )),
                    Part::Text(_) => None,
                })
                .collect();
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Part::Text(t) => Some(*t),
                    Part::Media(..) => None,
                })
                .collect();
            let text = texts.join("\n");
            if !text.is_empty() || pieces.is_empty() {
                pieces.push(text);
            }
            Jinja::from(pieces.join("\n"))
        }
    })
}

fn media_modality(kind: &str) -> &'static str {
    match kind {
        "image_url" | "input_image" | "image_pil" | "image_embeds" => "image",
        "audio_url" | "input_audio" | "audio_embeds" => "audio",
        "video_url" => "video",
        _ => "unknown",
    }
}

/// A JSON value as a template value (integers stay integers).
pub(crate) fn to_jinja(v: &Value) -> Jinja {
    match v {
        Value::Null => Jinja::from(()),
        Value::Bool(b) => Jinja::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), ..) => Jinja::from(i),
            (None, Some(u), _) => Jinja::from(u),
            (.., Some(f)) => Jinja::from(f),
            _ => Jinja::from(()),
        },
        Value::String(s) => Jinja::from(s.as_str()),
        Value::Array(items) => items.iter().map(to_jinja).collect(),
        Value::Object(map) => Jinja::from_pairs(map.iter().map(|(k, v)| (k.as_str(), to_jinja(v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_format_follows_loops_over_content() {
        assert_eq!(
            ContentFormat::detect("{% for m in messages %}{{ m['content'] }}{% endfor %}"),
            ContentFormat::String
        );
        for src in [
            "{% for m in messages %}{% for c in m['content'] %}{{ c.text }}{% endfor %}{% endfor %}",
            "{%- for message in messages %}{%- for part in message.content | selectattr('type', 'eq', 'text') %}{% endfor %}{% endfor %}",
        ] {
            assert_eq!(ContentFormat::detect(src), ContentFormat::OpenAi, "{src}");
        }
    }

    #[test]
    fn messages_take_vllms_shape() {
        let msgs = json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, "b", {"type": "text", "text": null}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "not json"}}]},
            {"role": "tool", "content": "42", "tool_call_id": "c1", "name": "f", "extra": 1}
        ]);
        let conv = conversation(&msgs, ContentFormat::String).unwrap();
        let user = conv.get_item_by_index(0).unwrap();
        assert_eq!(user.get_attr("content").unwrap().as_str(), Some("a\nb"));
        let asst = conv.get_item_by_index(1).unwrap();
        assert_eq!(asst.get_attr("content").unwrap().as_str(), Some(""));
        let calls = asst.get_attr("tool_calls").unwrap();
        let args = |i| {
            calls
                .get_item_by_index(i)
                .unwrap()
                .get_attr("function")
                .unwrap()
                .get_attr("arguments")
                .unwrap()
                .to_string()
        };
        assert_eq!((args(0), args(1)), ("{'x': 1}".into(), "{}".into()));
        let tool = conv.get_item_by_index(2).unwrap();
        assert_eq!(tool.get_attr("tool_call_id").unwrap().as_str(), Some("c1"));
        assert_eq!(tool.get_attr("name").unwrap().as_str(), Some("f"));
        assert!(tool.get_attr("extra").unwrap().is_undefined());
        let open = conversation(&msgs, ContentFormat::OpenAi).unwrap();
        let parts = open
            .get_item_by_index(0)
            .unwrap()
            .get_attr("content")
            .unwrap();
        assert_eq!(parts.len(), Some(2));
        assert!(conversation(&json!([{"content": "x"}]), ContentFormat::String).is_err());
    }
}
