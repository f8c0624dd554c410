//! Unrelated prompts of a fixed length with a fixed output length (vLLM's throughput benchmark).

use super::text::headed_text;
use super::{DatasetConfig, Message, RequestSpec, Workload};
use crate::error::{Error, Result};
use rand::rngs::StdRng;

/// Builds the random workload.
pub(super) fn build(config: &DatasetConfig, rng: &mut StdRng) -> Result<Workload> {
    let r = &config.random;
    if r.input_len == 0 || r.output_len == 0 {
        return Err(Error::invalid(
            "--random-input-len/--random-output-len",
            "must be at least 1",
        ));
    }
    let requests = (0..config.num_prompts)
        .map(|i| RequestSpec {
            messages: vec![Message::new(
                "user",
                headed_text(rng, &format!("{i}:"), r.input_len),
            )],
            output_len: r.output_len,
            group: i as u64,
            priority: None,
        })
        .collect::<Vec<_>>();
    Ok(Workload {
        name: "random".into(),
        groups: requests.len(),
        requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::RandomConfig;
    use rand::SeedableRng;

    #[test]
    fn fixed_lengths_and_no_shared_prefix() {
        let cfg = DatasetConfig {
            num_prompts: 20,
            random: RandomConfig {
                input_len: 100,
                output_len: 33,
            },
            ..DatasetConfig::default()
        };
        let w = build(&cfg, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(w.groups, 20);
        for (i, r) in w.requests.iter().enumerate() {
            assert_eq!(r.output_len, 33);
            assert_eq!(r.messages[0].content.len(), 400);
            assert!(r.messages[0].content.starts_with(&format!("{i}: ")));
        }
    }
}
