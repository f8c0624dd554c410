//! Renders chat messages in one fixed role-tagged form so a conversation's keys nest.
//!
//! Each message becomes `<|im_start|>{role}[ name={name}]\n{content}<|im_end|>\n` and nothing is
//! appended after the last one, so the rendering of turn k is always a prefix of turn k+1's.

use serde_json::Value;

use crate::Error;

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>\n";

/// Renders a `messages` array; rejects anything that is not a list of objects with a role.
pub(crate) fn render_messages(messages: &Value) -> Result<String, Error> {
    let list = messages
        .as_array()
        .ok_or_else(|| Error::InvalidRequest("`messages` must be an array".into()))?;
    let mut out = String::with_capacity(estimate_len(list));
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            Error::InvalidRequest(format!("`messages[{i}].role` must be a string"))
        })?;
        out.push_str(START);
        out.push_str(role);
        if let Some(name) = m.get("name").and_then(Value::as_str) {
            out.push_str(" name=");
            out.push_str(name);
        }
        out.push('\n');
        render_content(m.get("content"), i, &mut out)?;
        for field in ["tool_calls", "tool_call_id"] {
            if let Some(v) = m.get(field).filter(|v| !v.is_null()) {
                out.push('\n');
                out.push_str(&v.to_string());
            }
        }
        out.push_str(END);
    }
    Ok(out)
}

fn estimate_len(list: &[Value]) -> usize {
    list.iter()
        .map(|m| match m.get("content") {
            Some(Value::String(s)) => s.len() + 32,
            _ => 64,
        })
        .sum()
}

/// Content as a string, `null`/absent, or a list of parts; text parts are joined with "\n" and
/// other parts (images, audio) become a marker with a hash of their JSON, so different images
/// never look like the same prefix.
fn render_content(content: Option<&Value>, i: usize, out: &mut String) -> Result<(), Error> {
    match content {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            out.push_str(s);
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                if j > 0 {
                    out.push('\n');
                }
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                match (kind, part.get("text").and_then(Value::as_str)) {
                    ("text", Some(text)) => out.push_str(text),
                    _ => {
                        let hash = fnv1a64(part.to_string().as_bytes());
                        out.push_str(&format!("<|{kind}:{hash:016x}|>"));
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(Error::InvalidRequest(format!(
            "`messages[{i}].content` must be a string, null or a list of parts"
        ))),
    }
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn turns_extend_previous_turns() {
        let t1 = json!([{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]);
        let t2 = json!([{"role":"system","content":"be brief"},{"role":"user","content":"hi"},
            {"role":"assistant","content":"hello"},{"role":"user","content":"more"}]);
        let (a, b) = (render_messages(&t1).unwrap(), render_messages(&t2).unwrap());
        assert!(b.starts_with(&a) && b.len() > a.len());
        assert_eq!(
            a,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn parts_and_null_content() {
        let m = json!([{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1"}]}]);
        let r = render_messages(&m).unwrap();
        assert!(r.starts_with("<|im_start|>user\na\nb<|im_end|>\n"));
        assert!(r.contains("<|im_start|>assistant\n\n[{\"id\":\"c1\"}]<|im_end|>"));
    }

    #[test]
    fn images_are_marked_not_dropped() {
        let img = |url: &str| {
            json!([{"role":"user","content":[
            {"type":"image_url","image_url":{"url":url}},{"type":"text","text":"what is this"}]}])
        };
        let (a, b) = (
            render_messages(&img("a.png")).unwrap(),
            render_messages(&img("b.png")).unwrap(),
        );
        assert_ne!(a, b);
        assert!(a.contains("<|image_url:") && a.contains("what is this"));
        assert_eq!(
            a,
            render_messages(&img("a.png")).unwrap(),
            "rendering is deterministic"
        );
    }

    #[test]
    fn malformed_messages_are_rejected_with_a_path() {
        let e = render_messages(&json!("hi")).unwrap_err().to_string();
        assert!(e.contains("`messages` must be an array"), "{e}");
        let e = render_messages(&json!([{"content":"x"}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("messages[0].role"), "{e}");
        let e = render_messages(&json!([{"role":"user","content":5}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("messages[0].content"), "{e}");
    }
}
