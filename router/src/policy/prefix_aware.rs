//! `prefix_aware`: longest held prefix, in the style of SGLang's cache-aware policy.
//!
//! If load is imbalanced (the busiest replica has more than `balance_abs_threshold` requests
//! more than the idlest AND more than `balance_rel_threshold` times as many), the least loaded
//! replica wins. Otherwise the replica holding the longest prefix wins, provided it covers at
//! least `min_match_ratio` of the prompt; below that the least loaded wins and the tree learns the
//! new placement. Ties go to the less loaded, then to a seeded random draw by weight. Load is
//! in-flight requests per unit of replica weight (a [`LoadReading`]), so weights 3:1 spread
//! traffic 3:1.

use std::{sync::Arc, time::Instant};

use parking_lot::Mutex;
use rand::{Rng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

use super::{
    Decision, DecisionReason, Policy, ReplicaView, RouteRequest,
    prefix_index::{PrefixIndex, matched_tokens},
};
use crate::{load::LoadReading, replicas::ReplicaId};

/// Thresholds of the prefix-aware policy (defaults are SGLang's cache-aware defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefixAwareConfig {
    /// Smallest matched fraction (0..=1) of the prompt worth following.
    pub min_match_ratio: f64,
    /// Load is imbalanced only if max - min in-flight requests exceeds this...
    pub balance_abs_threshold: u64,
    /// ...and max exceeds this many times min.
    pub balance_rel_threshold: f64,
}

impl Default for PrefixAwareConfig {
    fn default() -> Self {
        Self {
            min_match_ratio: 0.3,
            balance_abs_threshold: 64,
            balance_rel_threshold: 1.5,
        }
    }
}

/// One candidate: what it holds of the prompt, its load and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefixCandidate {
    /// Prompt tokens the replica is believed to hold.
    pub matched_tokens: u64,
    /// Requests in flight on the replica per unit of its weight.
    pub load: f64,
    /// The replica's relative weight (>= 1): the odds of a random tie-break.
    pub weight: u32,
}

impl Default for PrefixCandidate {
    fn default() -> Self {
        Self {
            matched_tokens: 0,
            load: 0.0,
            weight: 1,
        }
    }
}

/// Why the prefix-aware policy chose a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixReason {
    /// Load was imbalanced past both thresholds: least loaded.
    Imbalanced,
    /// The longest held prefix covered enough of the prompt.
    LongestMatch,
    /// No replica held enough of the prompt: least loaded.
    LowMatch,
}

impl From<PrefixReason> for DecisionReason {
    fn from(r: PrefixReason) -> Self {
        match r {
            PrefixReason::Imbalanced => DecisionReason::Imbalanced,
            PrefixReason::LongestMatch => DecisionReason::LongestMatch,
            PrefixReason::LowMatch => DecisionReason::LowMatch,
        }
    }
}

impl PrefixAwareConfig {
    /// True when the loads are imbalanced past both thresholds.
    pub fn imbalanced(&self, candidates: &[PrefixCandidate]) -> bool {
        if candidates.is_empty() {
            return false;
        }
        let loads = candidates.iter().map(|c| c.load);
        let max = loads.clone().fold(f64::NEG_INFINITY, f64::max);
        let min = loads.fold(f64::INFINITY, f64::min);
        max - min > self.balance_abs_threshold as f64 && max > self.balance_rel_threshold * min
    }

    /// Picks a candidate for a `prompt_tokens`-token prompt; `None` only for an empty list.
    pub fn choose<R: Rng + ?Sized>(
        &self,
        prompt_tokens: u64,
        candidates: &[PrefixCandidate],
        rng: &mut R,
    ) -> Option<(usize, PrefixReason)> {
        if candidates.is_empty() {
            return None;
        }
        if self.imbalanced(candidates) {
            return Some((
                least_loaded(candidates, |_| true, rng),
                PrefixReason::Imbalanced,
            ));
        }
        let best = candidates
            .iter()
            .map(|c| c.matched_tokens.min(prompt_tokens))
            .max()
            .unwrap_or(0);
        let ratio = if prompt_tokens == 0 {
            0.0
        } else {
            best as f64 / prompt_tokens as f64
        };
        if best > 0 && ratio >= self.min_match_ratio {
            let pick = least_loaded(
                candidates,
                |c| c.matched_tokens.min(prompt_tokens) == best,
                rng,
            );
            Some((pick, PrefixReason::LongestMatch))
        } else {
            Some((
                least_loaded(candidates, |_| true, rng),
                PrefixReason::LowMatch,
            ))
        }
    }
}

/// Index of the least loaded candidate among those `eligible`, drawn by weight among equals.
fn least_loaded<R: Rng + ?Sized>(
    candidates: &[PrefixCandidate],
    eligible: impl Fn(&PrefixCandidate) -> bool,
    rng: &mut R,
) -> usize {
    let min = candidates
        .iter()
        .filter(|c| eligible(c))
        .map(|c| c.load)
        .fold(f64::INFINITY, f64::min);
    let tied: Vec<usize> = (0..candidates.len())
        .filter(|&i| eligible(&candidates[i]) && candidates[i].load == min)
        .collect();
    match tied.len() {
        0 => 0,
        1 => tied[0],
        _ => {
            let weight = |i: usize| u64::from(candidates[i].weight.max(1));
            let total: u64 = tied.iter().map(|&i| weight(i)).sum();
            let mut ticket = rng.random_range(0..total);
            for &i in &tied {
                if ticket < weight(i) {
                    return i;
                }
                ticket -= weight(i);
            }
            tied[tied.len() - 1]
        }
    }
}

/// The prefix-aware policy over a shared prefix index; load is the router's in-flight count.
pub struct PrefixAwarePolicy {
    index: Arc<PrefixIndex>,
    config: PrefixAwareConfig,
    rng: Mutex<SmallRng>,
}

impl std::fmt::Debug for PrefixAwarePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixAwarePolicy")
            .field("config", &self.config)
            .finish()
    }
}

impl PrefixAwarePolicy {
    /// A prefix-aware policy with `config`, recording keys in `index`, breaking ties with `rng`.
    pub fn new(index: Arc<PrefixIndex>, config: PrefixAwareConfig, rng: SmallRng) -> Self {
        Self {
            index,
            config,
            rng: Mutex::new(rng),
        }
    }
}

impl Policy for PrefixAwarePolicy {
    fn name(&self) -> &'static str {
        "prefix_aware"
    }

    fn pick(&self, request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision {
        let prompt_tokens = request.prompt_tokens_estimate as u64;
        let matches = self.index.matches(&request.prompt);
        let now = Instant::now();
        let cands: Vec<PrefixCandidate> = candidates
            .iter()
            .map(|v| {
                let reading: LoadReading = v.load_at(now);
                PrefixCandidate {
                    matched_tokens: matched_tokens(&matches, v.id).min(prompt_tokens),
                    load: reading.requests_per_weight(),
                    weight: reading.weight,
                }
            })
            .collect();
        let (i, why) = self
            .config
            .choose(prompt_tokens, &cands, &mut *self.rng.lock())
            .unwrap_or((0, PrefixReason::LowMatch));
        let reason = if candidates.len() == 1 {
            DecisionReason::OnlyCandidate
        } else {
            why.into()
        };
        let matched = cands.get(i).map_or(0, |c| c.matched_tokens);
        tracing::debug!(
            policy = "prefix_aware", replica = candidates.get(i).map_or("", |v| v.name),
            reason = reason.as_str(), prompt_tokens, matched,
            loads = ?cands.iter().map(|c| c.load).collect::<Vec<_>>(),
            "prefix-aware decision"
        );
        Decision {
            replica: candidates.get(i).map_or(ReplicaId(0), |v| v.id),
            reason,
            matched_tokens: Some(matched),
            predicted_ttft_s: None,
        }
    }

    fn on_dispatch(&self, request: &RouteRequest<'_>, replica: ReplicaId) {
        self.index.insert(&request.prompt, replica);
    }

    fn on_replica_removed(&self, replica: ReplicaId) {
        self.index.remove(replica);
    }

    fn prefix_index(&self) -> Option<&PrefixIndex> {
        Some(&self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        policy::{
            PromptKey,
            test_support::{Fixture, request},
        },
        prompt_key::PrefixConfig,
    };
    use rand::SeedableRng;

    fn c(matched_tokens: u64, load: u64) -> PrefixCandidate {
        PrefixCandidate {
            matched_tokens,
            load: load as f64,
            weight: 1,
        }
    }

    #[test]
    fn longest_match_wins_when_balanced() {
        let cfg = PrefixAwareConfig::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let (i, why) = cfg
            .choose(100, &[c(10, 0), c(80, 30), c(50, 0)], &mut rng)
            .unwrap();
        assert_eq!((i, why), (1, PrefixReason::LongestMatch));
    }

    #[test]
    fn low_match_goes_to_least_loaded() {
        let cfg = PrefixAwareConfig::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let (i, why) = cfg
            .choose(100, &[c(20, 5), c(0, 2), c(0, 9)], &mut rng)
            .unwrap();
        assert_eq!((i, why), (1, PrefixReason::LowMatch));
        let (i, why) = cfg.choose(0, &[c(0, 5), c(0, 1)], &mut rng).unwrap();
        assert_eq!((i, why), (1, PrefixReason::LowMatch));
    }

    #[test]
    fn imbalance_needs_both_thresholds() {
        let cfg = PrefixAwareConfig {
            balance_abs_threshold: 4,
            ..Default::default()
        };
        let mut rng = SmallRng::seed_from_u64(1);
        // 10 vs 5: abs 5 > 4 but 10 > 1.5 x 5 too -> imbalanced -> least loaded.
        let (i, why) = cfg.choose(100, &[c(100, 10), c(0, 5)], &mut rng).unwrap();
        assert_eq!((i, why), (1, PrefixReason::Imbalanced));
        // 14 vs 10: abs 4 is not > 4 -> longest match.
        assert_eq!(
            cfg.choose(100, &[c(100, 14), c(0, 10)], &mut rng)
                .unwrap()
                .0,
            0
        );
        // 30 vs 25: abs 5 > 4 but 30 < 1.5 x 25 -> longest match.
        assert_eq!(
            cfg.choose(100, &[c(100, 30), c(0, 25)], &mut rng)
                .unwrap()
                .0,
            0
        );
    }

    #[test]
    fn equal_matches_prefer_less_loaded_then_random() {
        let cfg = PrefixAwareConfig::default();
        let mut rng = SmallRng::seed_from_u64(3);
        assert_eq!(
            cfg.choose(100, &[c(60, 3), c(60, 1), c(10, 0)], &mut rng)
                .unwrap()
                .0,
            1
        );
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[cfg.choose(100, &[c(0, 0); 3], &mut rng).unwrap().0] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert!(cfg.choose(10, &[], &mut rng).is_none());
    }

    #[test]
    fn load_is_per_unit_of_weight_and_ties_are_drawn_by_weight() {
        let cfg = PrefixAwareConfig::default();
        let mut rng = SmallRng::seed_from_u64(5);
        let heavy = PrefixCandidate {
            weight: 3,
            ..c(0, 0)
        };
        let mut firsts = 0;
        for _ in 0..400 {
            firsts += usize::from(cfg.choose(100, &[heavy, c(0, 0)], &mut rng).unwrap().0 == 0);
        }
        assert!((260..=340).contains(&firsts), "weight 3 of 4: {firsts}/400");
        // Through the policy: 3 requests on weight 3 weigh as 1 request on weight 1.
        let p = PrefixAwarePolicy::new(
            Arc::new(PrefixIndex::new(&PrefixConfig::default())),
            cfg,
            SmallRng::seed_from_u64(5),
        );
        let f = Fixture::new(&[3, 1]);
        f.loads[0].add(3, 0);
        f.loads[1].add(2, 0);
        for _ in 0..20 {
            assert_eq!(p.pick(&request(), &f.views()).replica, ReplicaId(0));
        }
    }

    #[test]
    fn policy_follows_the_tree_until_load_is_imbalanced() {
        let index = Arc::new(PrefixIndex::new(&PrefixConfig::default()));
        let cfg = PrefixAwareConfig {
            balance_abs_threshold: 2,
            ..Default::default()
        };
        let p = PrefixAwarePolicy::new(Arc::clone(&index), cfg, SmallRng::seed_from_u64(1));
        let f = Fixture::new(&[1, 1]);
        let r = RouteRequest {
            prompt: PromptKey::Text("system prompt, question"),
            prompt_tokens_estimate: 6,
            ..request()
        };
        p.on_dispatch(&r, ReplicaId(0));
        f.loads[0].add(2, 0);
        let d = p.pick(&r, &f.views());
        assert_eq!(
            (d.replica, d.reason),
            (ReplicaId(0), DecisionReason::LongestMatch)
        );
        f.loads[0].add(1, 0);
        let d = p.pick(&r, &f.views());
        assert_eq!(
            (d.replica, d.reason),
            (ReplicaId(1), DecisionReason::Imbalanced)
        );
    }
}
