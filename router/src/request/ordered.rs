//! JSON parsed straight into template values with object keys in document order, as Python's
//! `json` keeps them (serde_json's own maps sort their keys). Used where a template prints
//! client JSON (`tools | tojson`, tool-call arguments), so its text is vLLM's.

use std::fmt;

use minijinja::value::Value as Jinja;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value as a template value, object keys in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderedJson(pub(crate) Jinja);

/// A request's `tools`, read in document order only when a chat template renders them: the
/// body is kept as bytes, so byte mode never parses it twice.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTools(bytes::Bytes);

impl RawTools {
    /// Keeps `body`, a JSON object with a `tools` field.
    pub fn from_body(body: &[u8]) -> Self {
        Self(bytes::Bytes::copy_from_slice(body))
    }

    /// Tools given as the JSON text of the `tools` array.
    pub fn from_json(tools: &str) -> Self {
        Self(bytes::Bytes::from(format!("{{\"tools\":{tools}}}")))
    }

    /// The tools as a template value, keys in document order.
    pub(crate) fn parse(&self) -> Option<Jinja> {
        tools_of(&self.0).map(|t| t.0)
    }
}

impl OrderedJson {
    /// Parses `text`; `None` when it is not JSON.
    pub(crate) fn parse(text: &str) -> Option<Jinja> {
        serde_json::from_str::<Self>(text).ok().map(|v| v.0)
    }
}

/// Just the `tools` field of a request body.
#[derive(serde::Deserialize)]
struct ToolsField {
    tools: Option<OrderedJson>,
}

/// The body's `tools` in document order.
fn tools_of(body: &[u8]) -> Option<OrderedJson> {
    serde_json::from_slice::<ToolsField>(body).ok()?.tools
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JinjaVisitor).map(Self)
    }
}

struct JinjaVisitor;

impl<'de> Visitor<'de> for JinjaVisitor {
    type Value = Jinja;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Jinja, E> {
        Ok(Jinja::from(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Jinja, E> {
        Ok(Jinja::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Jinja, E> {
        Ok(Jinja::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Jinja, E> {
        Ok(Jinja::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Jinja, E> {
        Ok(Jinja::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Jinja, E> {
        Ok(Jinja::from(v))
    }
    fn visit_unit<E>(self) -> Result<Jinja, E> {
        Ok(Jinja::from(()))
    }
    fn visit_none<E>(self) -> Result<Jinja, E> {
        Ok(Jinja::from(()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Jinja, A::Error> {
        let mut items = Vec::new();
        while let Some(OrderedJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Jinja::from(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Jinja, A::Error> {
        let mut entries: Vec<(String, Jinja)> = Vec::new();
        while let Some((k, OrderedJson(v))) = map.next_entry::<String, OrderedJson>()? {
            // A repeated key keeps its first place and its last value, as Python's dict does.
            match entries.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => entries.push((k, v)),
            }
        }
        Ok(Jinja::from_pairs(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_document_order() {
        let v =
            OrderedJson::parse(r#"{"z": 1, "a": [true, null, 2.5, "x"], "m": {"b": 1, "a": 2}}"#)
                .unwrap();
        let keys: Vec<String> = v.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        let body =
            br#"{"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}]}"#;
        assert_eq!(RawTools::from_body(body).parse().unwrap().len(), Some(1));
        assert_eq!(
            RawTools::from_json("[1, 2]").parse().unwrap().len(),
            Some(2)
        );
        assert!(
            RawTools::from_body(br#"{"messages": []}"#)
                .parse()
                .is_none()
        );
        assert!(OrderedJson::parse("{oops").is_none());
    }
}
