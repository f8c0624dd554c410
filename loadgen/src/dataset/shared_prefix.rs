//! A few long system prompts with Zipf popularity, each request a distinct question.

use super::text::headed_text;
use super::{DatasetConfig, Message, RequestSpec, Workload, pieces};
use crate::error::{Error, Result};
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand_distr::Zipf;
use std::collections::HashSet;

/// Builds the shared-prefix workload.
pub(super) fn build(config: &DatasetConfig, rng: &mut StdRng) -> Result<Workload> {
    let s = &config.shared_prefix;
    if s.groups == 0 {
        return Err(Error::invalid("--gsp-num-groups", "must be at least 1"));
    }
    let zipf = Zipf::new(s.groups as f64, s.zipf)
        .map_err(|e| Error::invalid("--gsp-zipf", format!("{e} (got {})", s.zipf)))?;
    let prompts: Vec<String> = (0..s.groups)
        .map(|g| headed_text(rng, &format!("System prompt {g}:"), s.system_prompt_len))
        .collect();
    let mut used = HashSet::new();
    let requests = (0..config.num_prompts)
        .map(|i| {
            // Zipf yields ranks 1..=groups; rank 1 is the most popular prompt.
            let g = (zipf.sample(rng) as usize).clamp(1, s.groups) - 1;
            used.insert(g);
            RequestSpec {
                messages: vec![
                    Message::new("system", prompts[g].clone()),
                    Message::new(
                        "user",
                        headed_text(rng, &format!("Question {i}:"), s.question_len),
                    ),
                ],
                output_len: pieces::output_len(rng, config),
                group: g as u64,
                priority: None,
            }
        })
        .collect();
    Ok(Workload {
        name: "shared-prefix".into(),
        requests,
        groups: used.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::SharedPrefixConfig;
    use rand::SeedableRng;

    fn cfg(groups: usize, zipf: f64, n: usize) -> DatasetConfig {
        DatasetConfig {
            num_prompts: n,
            shared_prefix: SharedPrefixConfig {
                groups,
                system_prompt_len: 50,
                question_len: 8,
                zipf,
            },
            ..DatasetConfig::default()
        }
    }

    fn counts(w: &Workload, groups: usize) -> Vec<usize> {
        let mut c = vec![0; groups];
        for r in &w.requests {
            c[r.group as usize] += 1;
        }
        c
    }

    #[test]
    fn zipf_shape_matches_exponent() {
        let w = build(&cfg(8, 1.2, 20_000), &mut StdRng::seed_from_u64(5)).unwrap();
        let c = counts(&w, 8);
        // P(rank k) is proportional to k^-1.2: rank 1 vs rank 2 ratio 2^1.2 = 2.30.
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((ratio - 2.297).abs() < 0.2, "ratio {ratio}, counts {c:?}");
        let h: f64 = (1..=8).map(|k| (k as f64).powf(-1.2)).sum();
        let p1 = c[0] as f64 / 20_000.0;
        assert!((p1 - 1.0 / h).abs() < 0.02, "p1 {p1} vs {}", 1.0 / h);
        assert!(c.windows(2).all(|p| p[0] >= p[1]), "{c:?}");
    }

    #[test]
    fn zero_exponent_is_uniform() {
        let w = build(&cfg(4, 0.0, 8000), &mut StdRng::seed_from_u64(5)).unwrap();
        for n in counts(&w, 4) {
            assert!((1800..2200).contains(&n), "{n}");
        }
    }

    #[test]
    fn prompts_shared_and_questions_distinct() {
        let w = build(&cfg(3, 1.0, 100), &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(w.groups, 3);
        let questions: HashSet<&str> = w
            .requests
            .iter()
            .map(|r| r.messages[1].content.as_str())
            .collect();
        assert_eq!(questions.len(), 100);
        let a = w.requests.iter().find(|r| r.group == 0).unwrap();
        let b = w.requests.iter().rfind(|r| r.group == 0).unwrap();
        assert_eq!(a.messages[0], b.messages[0]);
        assert_eq!(a.messages[0].content.len(), 200);
    }

    #[test]
    fn negative_exponent_rejected() {
        let err = build(&cfg(3, -1.0, 10), &mut StdRng::seed_from_u64(1)).unwrap_err();
        assert!(err.to_string().contains("--gsp-zipf"), "{err}");
    }
}
