//! Generated multi-turn conversations, cut into prefixes like ShareGPT.

use super::text::headed_text;
use super::{DatasetConfig, Message, Workload, pieces};
use crate::error::{Error, Result};
use rand::rngs::StdRng;

/// Builds the synthetic multi-turn workload.
pub(super) fn build(config: &DatasetConfig, rng: &mut StdRng) -> Result<Workload> {
    let s = &config.synthetic;
    if s.conversations == 0 || s.turns == 0 {
        return Err(Error::invalid(
            "--synthetic-conversations/--synthetic-turns",
            "must be at least 1",
        ));
    }
    let conversations: Vec<Vec<Message>> = (0..s.conversations)
        .map(|c| {
            (0..s.turns)
                .flat_map(|t| {
                    let user = headed_text(rng, &format!("Conversation {c} turn {t}:"), s.user_len);
                    let assistant = headed_text(rng, &format!("Reply {t}:"), s.assistant_len);
                    [
                        Message::new("user", user),
                        Message::new("assistant", assistant),
                    ]
                })
                .collect()
        })
        .collect();
    let (requests, groups) = pieces::sample(&conversations, config, rng)?;
    Ok(Workload {
        name: "synthetic-multiturn".into(),
        requests,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::SyntheticConfig;
    use rand::SeedableRng;

    #[test]
    fn pieces_of_every_turn() {
        let cfg = DatasetConfig {
            num_prompts: 12,
            synthetic: SyntheticConfig {
                conversations: 3,
                turns: 4,
                user_len: 10,
                assistant_len: 20,
            },
            ..DatasetConfig::default()
        };
        let w = build(&cfg, &mut StdRng::seed_from_u64(2)).unwrap();
        // 3 conversations x 4 user turns = 12 pieces, all sampled exactly once.
        assert_eq!(w.groups, 3);
        let mut lens: Vec<usize> = w.requests.iter().map(|r| r.messages.len()).collect();
        lens.sort();
        assert_eq!(lens, vec![1, 1, 1, 3, 3, 3, 5, 5, 5, 7, 7, 7]);
        assert_eq!(w.requests[0].messages[0].content.len(), 40);
    }
}
