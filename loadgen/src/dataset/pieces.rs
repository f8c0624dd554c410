//! Cutting conversations into their prefixes and sampling requests from them.

use super::{DatasetConfig, Message, RequestSpec};
use crate::error::{Error, Result};
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::HashSet;

/// The prefixes of `messages` that end on a user turn, as end indices (exclusive).
pub(super) fn piece_ends(messages: &[Message]) -> impl Iterator<Item = usize> + '_ {
    messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == "user")
        .map(|(i, _)| i + 1)
}

/// An output length drawn uniformly from `[min_output_len, max_output_len]`.
pub(super) fn output_len(rng: &mut StdRng, config: &DatasetConfig) -> u32 {
    rng.random_range(config.min_output_len..=config.max_output_len)
}

/// Samples `num_prompts` pieces of `conversations` (without replacement while there are
/// enough), in random order; returns the requests and the number of distinct conversations.
pub(super) fn sample(
    conversations: &[Vec<Message>],
    config: &DatasetConfig,
    rng: &mut StdRng,
) -> Result<(Vec<RequestSpec>, usize)> {
    let all: Vec<(usize, usize)> = conversations
        .iter()
        .enumerate()
        .flat_map(|(c, msgs)| piece_ends(msgs).map(move |end| (c, end)))
        .collect();
    if all.is_empty() {
        return Err(Error::EmptyDataset(
            "has no conversation with a user turn (check --min-messages)".into(),
        ));
    }
    let n = config.num_prompts;
    let picks: Vec<usize> = if all.len() >= n {
        rand::seq::index::sample(rng, all.len(), n).into_vec()
    } else {
        (0..n).map(|_| rng.random_range(0..all.len())).collect()
    };
    let mut groups = HashSet::new();
    let requests = picks
        .into_iter()
        .map(|i| {
            let (c, end) = all[i];
            groups.insert(c);
            RequestSpec {
                messages: conversations[c][..end].to_vec(),
                output_len: output_len(rng, config),
                group: c as u64,
                priority: None,
            }
        })
        .collect();
    Ok((requests, groups.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn conv(turns: usize) -> Vec<Message> {
        (0..turns)
            .flat_map(|t| {
                [
                    Message::new("user", format!("u{t}")),
                    Message::new("assistant", format!("a{t}")),
                ]
            })
            .collect()
    }

    #[test]
    fn pieces_end_on_user_turns() {
        let c = conv(3);
        assert_eq!(piece_ends(&c).collect::<Vec<_>>(), vec![1, 3, 5]);
    }

    #[test]
    fn samples_without_replacement_when_enough() {
        let convs = vec![conv(3), conv(2)];
        let cfg = DatasetConfig {
            num_prompts: 5,
            ..DatasetConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let (reqs, groups) = sample(&convs, &cfg, &mut rng).unwrap();
        assert_eq!(reqs.len(), 5);
        assert_eq!(groups, 2);
        let mut seen: Vec<(u64, usize)> =
            reqs.iter().map(|r| (r.group, r.messages.len())).collect();
        seen.sort();
        assert_eq!(seen, vec![(0, 1), (0, 3), (0, 5), (1, 1), (1, 3)]);
        for r in &reqs {
            assert_eq!(r.messages.last().unwrap().role, "user");
            assert!((10..=200).contains(&r.output_len));
        }
    }

    #[test]
    fn samples_with_replacement_when_short() {
        let convs = vec![conv(2)];
        let cfg = DatasetConfig {
            num_prompts: 7,
            ..DatasetConfig::default()
        };
        let (reqs, groups) = sample(&convs, &cfg, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(reqs.len(), 7);
        assert_eq!(groups, 1);
    }

    #[test]
    fn no_user_turn_is_an_error() {
        let convs = vec![vec![Message::new("assistant", "x")]];
        let err = sample(
            &convs,
            &DatasetConfig::default(),
            &mut StdRng::seed_from_u64(1),
        );
        assert!(matches!(err, Err(Error::EmptyDataset(_))));
    }
}
