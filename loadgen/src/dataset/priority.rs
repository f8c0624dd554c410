//! `--priority-mix 0:0.5,1:0.5`: priority classes and the share of requests in each.

use super::RequestSpec;
use crate::error::{Error, Result};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use std::str::FromStr;

/// Priority classes with their weights (normalised when assigned).
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityMix {
    /// (priority, weight) pairs in the order given.
    pub classes: Vec<(i64, f64)>,
}

impl FromStr for PriorityMix {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid("--priority-mix", why);
        let mut classes = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (p, w) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("{part:?} is not PRIORITY:WEIGHT")))?;
            let p: i64 = p
                .trim()
                .parse()
                .map_err(|_| bad(format!("{p:?} is not an integer priority")))?;
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| bad(format!("{w:?} is not a number")))?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(bad(format!("weight {w} must be >= 0")));
            }
            classes.push((p, w));
        }
        if classes.iter().map(|c| c.1).sum::<f64>() <= 0.0 {
            return Err(bad("needs at least one class with a positive weight".into()));
        }
        Ok(Self { classes })
    }
}

impl std::fmt::Display for PriorityMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .classes
            .iter()
            .map(|(p, w)| format!("{p}:{w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl PriorityMix {
    /// Gives each request a priority drawn with the mix's weights.
    pub fn assign(&self, requests: &mut [RequestSpec], rng: &mut StdRng) {
        // Weights were checked in `from_str`; an all-zero mix cannot be built.
        let Ok(dist) = WeightedIndex::new(self.classes.iter().map(|c| c.1)) else {
            return;
        };
        for r in requests {
            r.priority = Some(self.classes[dist.sample(rng)].0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Message;
    use rand::SeedableRng;

    #[test]
    fn parses_and_assigns_in_proportion() {
        let mix: PriorityMix = "0:0.25, 1:0.75".parse().unwrap();
        assert_eq!(mix.classes, vec![(0, 0.25), (1, 0.75)]);
        let mut reqs = vec![
            RequestSpec {
                messages: vec![Message::new("user", "x")],
                output_len: 1,
                group: 0,
                priority: None,
            };
            4000
        ];
        mix.assign(&mut reqs, &mut StdRng::seed_from_u64(1));
        let ones = reqs.iter().filter(|r| r.priority == Some(1)).count();
        assert!((2850..3150).contains(&ones), "{ones}");
        assert!(reqs.iter().all(|r| r.priority.is_some()));
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "0", "a:1", "0:x", "0:-1", "0:0"] {
            assert!(bad.parse::<PriorityMix>().is_err(), "{bad:?} accepted");
        }
    }
}
