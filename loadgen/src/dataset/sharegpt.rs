//! ShareGPT conversations cut into their prefixes.

use super::{DatasetConfig, Message, Workload, pieces};
use crate::error::{Error, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Deserialize;

/// The bundled sample: 48 ShareGPT conversations of 16 or more messages.
pub(crate) const BUNDLED_SAMPLE: &str = include_str!("../../data/sharegpt_sample.json");

#[derive(Deserialize)]
struct RawConversation {
    conversations: Vec<RawTurn>,
}

#[derive(Deserialize)]
struct RawTurn {
    from: String,
    value: String,
}

/// Maps ShareGPT speaker names to chat roles; `None` for speakers we skip.
fn role(from: &str) -> Option<&'static str> {
    match from {
        "human" | "user" => Some("user"),
        "gpt" | "chatgpt" | "bard" | "bing" | "assistant" | "model" => Some("assistant"),
        "system" => Some("system"),
        _ => None,
    }
}

/// Parses ShareGPT JSON into message lists, dropping turns before the first user turn.
pub(crate) fn parse(json: &str, what: &str) -> Result<Vec<Vec<Message>>> {
    let raw: Vec<RawConversation> =
        serde_json::from_str(json).map_err(|e| Error::json(what.to_string(), e))?;
    Ok(raw
        .into_iter()
        .map(|c| {
            let msgs: Vec<Message> = c
                .conversations
                .into_iter()
                .filter_map(|t| role(&t.from).map(|r| Message::new(r, t.value)))
                .collect();
            match msgs.iter().position(|m| m.role == "user") {
                Some(first) => msgs[first..].to_vec(),
                None => Vec::new(),
            }
        })
        .collect())
}

/// Builds the ShareGPT workload.
pub(super) fn build(config: &DatasetConfig, rng: &mut StdRng) -> Result<Workload> {
    let mut conversations = match &config.path {
        None => parse(BUNDLED_SAMPLE, "bundled ShareGPT sample")?,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            parse(&text, &path.display().to_string())?
        }
    };
    conversations.retain(|c| !c.is_empty() && c.len() >= config.min_messages);
    if conversations.is_empty() {
        return Err(Error::EmptyDataset(format!(
            "has no conversation with at least {} messages",
            config.min_messages
        )));
    }
    conversations.shuffle(rng);
    conversations.truncate(config.max_conversations.max(1));
    let (requests, groups) = pieces::sample(&conversations, config, rng)?;
    Ok(Workload {
        name: "sharegpt".into(),
        requests,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn parses_and_drops_leading_assistant_turns() {
        let json = r#"[{"id":"a","conversations":[
            {"from":"gpt","value":"intro"},{"from":"human","value":"q1"},
            {"from":"gpt","value":"a1"},{"from":"weird","value":"x"},{"from":"human","value":"q2"}]}]"#;
        let convs = parse(json, "test").unwrap();
        let roles: Vec<&str> = convs[0].iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, vec!["user", "assistant", "user"]);
        assert_eq!(convs[0][0].content, "q1");
    }

    #[test]
    fn bad_json_is_a_clear_error() {
        let err = parse("{not json", "file.json").unwrap_err().to_string();
        assert!(err.starts_with("file.json:"), "{err}");
    }

    #[test]
    fn bundled_sample_builds_pieces_of_many_conversations() {
        let convs = parse(BUNDLED_SAMPLE, "bundled").unwrap();
        assert!(convs.len() >= 40, "{} conversations", convs.len());
        let cfg = DatasetConfig {
            num_prompts: 200,
            max_conversations: 10,
            ..DatasetConfig::default()
        };
        let w = build(&cfg, &mut StdRng::seed_from_u64(7)).unwrap();
        assert_eq!(w.requests.len(), 200);
        assert!(
            w.groups <= 10,
            "only 10 conversations were picked, got {}",
            w.groups
        );
        let distinct: HashSet<u64> = w.requests.iter().map(|r| r.group).collect();
        assert_eq!(distinct.len(), w.groups);
        // Pieces of one conversation are prefixes of each other.
        let g = w.requests[0].group;
        let mut of_g: Vec<&Vec<Message>> = w
            .requests
            .iter()
            .filter(|r| r.group == g)
            .map(|r| &r.messages)
            .collect();
        of_g.sort_by_key(|m| m.len());
        for pair in of_g.windows(2) {
            assert_eq!(&pair[1][..pair[0].len()], &pair[0][..]);
        }
    }

    #[test]
    fn min_messages_filters_everything_out() {
        let cfg = DatasetConfig {
            min_messages: 100_000,
            ..DatasetConfig::default()
        };
        let err = build(&cfg, &mut StdRng::seed_from_u64(1));
        assert!(matches!(err, Err(Error::EmptyDataset(_))));
    }

    #[test]
    fn missing_file_names_the_path() {
        let cfg = DatasetConfig {
            path: Some("/nonexistent/sharegpt.json".into()),
            ..DatasetConfig::default()
        };
        let err = build(&cfg, &mut StdRng::seed_from_u64(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/sharegpt.json"), "{err}");
    }
}
