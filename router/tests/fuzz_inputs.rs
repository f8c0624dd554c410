//! Property fuzzing of the parsers that see untrusted bytes: request bodies (prompt-key
//! extraction for completions and chat, text and token ids) and the Prometheus text parser.
//! Any input must give a result or a clean error, never a panic; well-formed inputs must
//! round-trip. `PROPTEST_CASES` scales the runs (`router/bench/fuzz.sh`).

use proptest::prelude::*;
use router::{
    Error,
    policy::Endpoint,
    request::{self, Prompt},
    scrape::{parse_line, samples},
};
use serde_json::{Value, json};

/// Arbitrary JSON, nested a few levels, with the strings and numbers prompts are made of.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u32>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("prompt".to_owned()),
                    Just("messages".to_owned()),
                    Just("role".to_owned()),
                    Just("content".to_owned()),
                    Just("type".to_owned()),
                    Just("text".to_owned()),
                    Just("stream".to_owned()),
                    Just("model".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A chat message with string or multi-part content.
fn message() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        ".{0,30}".prop_map(|t| json!({ "type": "text", "text": t })),
        ".{0,30}".prop_map(|u| json!({ "type": "image_url", "image_url": { "url": u } })),
        any_json(),
    ];
    let content = prop_oneof![
        ".{0,60}".prop_map(Value::String),
        proptest::collection::vec(part, 0..4).prop_map(Value::Array),
        any_json(),
    ];
    (
        prop_oneof![
            Just("system".to_owned()),
            Just("user".to_owned()),
            Just("assistant".to_owned()),
            ".{0,8}",
        ],
        content,
    )
        .prop_map(|(role, content)| json!({ "role": role, "content": content }))
}

fn check_outcome(result: Result<request::ParsedRequest, Error>) -> Result<(), TestCaseError> {
    match result {
        Ok(parsed) => {
            // The key is usable: the route view (with its token estimate) builds.
            let _ = parsed.route_request().prompt_tokens_estimate;
        }
        Err(Error::InvalidJson(_) | Error::InvalidRequest(_)) => {}
        Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for endpoint in [Endpoint::Completions, Endpoint::ChatCompletions] {
            check_outcome(request::parse(endpoint, &bytes))?;
        }
    }

    #[test]
    fn any_json_body_parses_or_fails_cleanly(body in any_json()) {
        let bytes = body.to_string().into_bytes();
        for endpoint in [Endpoint::Completions, Endpoint::ChatCompletions] {
            check_outcome(request::parse(endpoint, &bytes))?;
        }
    }

    #[test]
    fn completion_prompts_are_keyed_from_their_text_or_token_ids(
        text in ".{1,200}",
        tokens in proptest::collection::vec(any::<u32>(), 1..200),
        batch in 1usize..4,
    ) {
        let body = json!({ "model": "m", "prompt": text });
        let parsed = request::parse(Endpoint::Completions, body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(parsed.prompt, Prompt::Text(text.clone()));
        let body = json!({ "model": "m", "prompt": tokens });
        let parsed = request::parse(Endpoint::Completions, body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(parsed.prompt, Prompt::Tokens(tokens.clone()));
        let many: Vec<&str> = std::iter::repeat_n(text.as_str(), batch).collect();
        let body = json!({ "model": "m", "prompt": many });
        let parsed = request::parse(Endpoint::Completions, body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(parsed.prompt, Prompt::Text(text));
    }

    #[test]
    fn chat_keys_extend_turn_by_turn(messages in proptest::collection::vec(message(), 1..8)) {
        // Keys of a conversation's prefixes are prefixes of the whole conversation's key.
        let whole = json!({ "model": "m", "messages": messages });
        let Ok(whole) = request::parse(Endpoint::ChatCompletions, whole.to_string().as_bytes())
        else {
            return Ok(());
        };
        for k in 1..messages.len() {
            let body = json!({ "model": "m", "messages": messages[..k] });
            if let Ok(part) = request::parse(Endpoint::ChatCompletions, body.to_string().as_bytes()) {
                if let (Prompt::Text(part), Prompt::Text(all)) = (&part.prompt, &whole.prompt) {
                    prop_assert!(all.starts_with(part.as_str()), "{part:?} / {all:?}");
                }
            }
        }
    }

    #[test]
    fn any_metrics_text_parses_without_panicking(text in ".{0,300}") {
        let _ = samples(&text).count();
        for line in text.lines() {
            let _ = parse_line(line);
        }
    }

    #[test]
    fn well_formed_samples_round_trip(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
        labels in proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,10}", ".{0,20}"), 0..4),
        value in any::<f64>().prop_filter("finite", |v| v.is_finite()),
        stamp in proptest::option::of(0u64..2_000_000_000_000),
    ) {
        let escaped: Vec<String> = labels
            .iter()
            .map(|(k, v)| {
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                format!("{k}=\"{v}\"")
            })
            .collect();
        let mut line = name.clone();
        if !labels.is_empty() {
            line.push('{');
            line.push_str(&escaped.join(","));
            line.push('}');
        }
        line.push_str(&format!(" {value:?}"));
        if let Some(stamp) = stamp {
            line.push_str(&format!(" {stamp}"));
        }
        let sample = parse_line(&line);
        prop_assert!(sample.is_some(), "{line}");
        let sample = sample.unwrap();
        prop_assert_eq!(sample.name, name.as_str());
        prop_assert_eq!(sample.value, value);
        prop_assert_eq!(sample.labels.len(), labels.len());
        for ((k, v), (pk, pv)) in labels.iter().zip(&sample.labels) {
            prop_assert_eq!(k.as_str(), *pk);
            prop_assert_eq!(v.as_str(), pv.as_ref());
        }
    }
}
