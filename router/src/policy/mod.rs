//! Routing policies: one trait, one file per policy, and the factory that builds them from config.
//!
//! A policy sees a read-only view of the healthy replicas and their load and returns its choice
//! with a reason. It does no I/O and bumps no counters: load is counted by `dispatch`.

mod cost;
mod cost_model;
mod load;
mod power_of_two;
mod prefix_aware;
mod prefix_index;
mod random;
mod round_robin;
mod share;

use std::sync::Arc;

use rand::{SeedableRng, rngs::SmallRng};

pub use cost::CostPolicy;
pub use cost_model::{CostCandidate, CostConfig, Estimate, ReplicaLoadView};
pub use load::{InFlight, InFlightLoad, Load};
pub use power_of_two::PowerOfTwo;
pub use prefix_aware::{PrefixAwareConfig, PrefixAwarePolicy, PrefixCandidate, PrefixReason};
pub use prefix_index::PrefixIndex;
pub use random::RandomPolicy;
pub use round_robin::RoundRobin;
pub use share::DispatchShare;
// The policies' per-replica state lives beneath both them and the replica set, in `load`; the
// request-shaped types with the request; the replica view with the replicas.
pub use crate::load::{
    ConstantFit, LearntSpeed, PendingLoad, PendingSnapshot, PendingTicket, PrefillSample, Prior,
    Speed, SpeedEstimate, TtftPrediction, pooled_speeds,
};
pub use crate::replicas::ReplicaView;
pub use crate::request::{Endpoint, PromptKey, RouteRequest};

use serde::{Deserialize, Serialize};

use crate::{Error, replicas::ReplicaId};

/// Why a policy chose a replica; a metric label and a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionReason {
    /// Only one candidate was healthy.
    OnlyCandidate,
    /// Next in the round-robin cycle.
    RoundRobin,
    /// Uniform (weighted) random draw.
    Random,
    /// The less loaded of two random samples.
    LessLoaded,
    /// Two samples had equal load; the first random sample won.
    LoadTie,
    /// `cost`: the lowest estimate was on a replica holding the longest prefix.
    CacheAffinity,
    /// `cost`: a replica holding more of the prompt was passed over because of its load.
    LoadSpread,
    /// `cost`: no replica held enough of the prompt to matter (under the tie tolerance of
    /// prefill); the estimate picked on load.
    NoCache,
    /// `prefix_aware`: load imbalanced past both thresholds; least loaded.
    Imbalanced,
    /// `prefix_aware`: the longest held prefix covered enough of the prompt.
    LongestMatch,
    /// `prefix_aware`: no replica held enough of the prompt; least loaded.
    LowMatch,
}

impl DecisionReason {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnlyCandidate => "only_candidate",
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::LessLoaded => "less_loaded",
            Self::LoadTie => "load_tie",
            Self::CacheAffinity => "cache_affinity",
            Self::LoadSpread => "load_spread",
            Self::NoCache => "no_cache",
            Self::Imbalanced => "imbalanced",
            Self::LongestMatch => "longest_match",
            Self::LowMatch => "low_match",
        }
    }
}

/// A policy's choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The chosen replica (one of the candidates).
    pub replica: ReplicaId,
    /// Why.
    pub reason: DecisionReason,
    /// Prompt tokens the chosen replica is believed to hold (prefix policies only).
    pub matched_tokens: Option<u64>,
    /// The model's time to first byte there, term by term at the configured constants
    /// (`cost` only): what the replica's learnt speed is fitted against.
    pub predicted_ttft_s: Option<TtftPrediction>,
}

impl Decision {
    /// A choice of `replica` for `reason`, with no prefix or time estimate.
    pub fn plain(replica: ReplicaId, reason: DecisionReason) -> Self {
        Self {
            replica,
            reason,
            matched_tokens: None,
            predicted_ttft_s: None,
        }
    }

    /// The choice when `candidates` holds a single replica, else `None`.
    pub fn only_candidate(candidates: &[ReplicaView<'_>]) -> Option<Self> {
        match candidates {
            [only] => Some(Self::plain(only.id, DecisionReason::OnlyCandidate)),
            _ => None,
        }
    }
}

/// A routing policy.
pub trait Policy: Send + Sync {
    /// Name used in config, metrics and logs.
    fn name(&self) -> &'static str;

    /// Chooses among healthy `candidates` (never empty). No I/O, no load counting.
    fn pick(&self, request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision;

    /// Called once the request is committed to `replica` (prefix policies record the key here).
    fn on_dispatch(&self, _request: &RouteRequest<'_>, _replica: ReplicaId) {}

    /// Called when a replica joins the set.
    fn on_replica_added(&self, _replica: ReplicaId) {}

    /// Called when a replica leaves the set.
    fn on_replica_removed(&self, _replica: ReplicaId) {}

    /// The prefix tree the policy owns, if any: the three hooks below act on it by default.
    fn prefix_index(&self) -> Option<&PrefixIndex> {
        None
    }

    /// Called on each scrape of a replica with its KV-cache capacity in tokens, if it reports
    /// one (`vllm:cache_config_info`): prefix policies size its share of the tree from it.
    fn on_capacity_learnt(&self, replica: ReplicaId, kv_tokens: Option<u64>) {
        if let Some(index) = self.prefix_index() {
            index.set_capacity(replica, kv_tokens);
        }
    }

    /// Called once a replica has stayed unhealthy past `prefix.unhealthy_grace_ms`: prefix
    /// policies forget what it held.
    fn on_replica_unhealthy(&self, replica: ReplicaId) {
        if let Some(index) = self.prefix_index() {
            index.remove(replica);
        }
    }

    /// What the policy believes `replica` holds of prompt prefixes; `None` for policies that
    /// keep no prefix tree.
    fn held_prefix(&self, replica: ReplicaId) -> Option<HeldPrefix> {
        self.prefix_index().map(|index| index.held(replica))
    }
}

/// What a prefix policy believes one replica holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldPrefix {
    /// Units (bytes or tokens) of prompt prefixes in the replica's part of the tree.
    pub units: usize,
    /// How full that part is against the replica's capacity (0..=1).
    pub fill: f64,
}

/// Builds the configured policy; its RNG is seeded from `config.seed` or the OS. Prefix
/// policies record keys in `index` (one is made from defaults if none is given).
pub fn build(
    config: &PolicyConfig,
    index: Option<Arc<PrefixIndex>>,
) -> Result<Arc<dyn Policy>, Error> {
    let index = || {
        index
            .clone()
            .unwrap_or_else(|| Arc::new(PrefixIndex::new(&Default::default())))
    };
    let rng = match config.seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => SmallRng::from_os_rng(),
    };
    Ok(match config.name {
        PolicyName::RoundRobin => Arc::new(RoundRobin::new()),
        PolicyName::Random => Arc::new(RandomPolicy::new(rng)),
        PolicyName::PowerOfTwo => Arc::new(PowerOfTwo::new(InFlightLoad, rng)),
        PolicyName::PrefixAware => Arc::new(PrefixAwarePolicy::new(
            index(),
            config.prefix_aware.clone(),
            rng,
        )),
        PolicyName::Cost => Arc::new(CostPolicy::new(index(), config.cost.clone(), rng)),
    })
}

/// Index of a weighted draw: `ticket` in `0..total_weight` maps onto cumulative weights.
pub(crate) fn weighted_index(candidates: &[ReplicaView<'_>], ticket: u64) -> usize {
    let mut rest = ticket;
    for (i, c) in candidates.iter().enumerate() {
        let w = u64::from(c.weight.max(1));
        if rest < w {
            return i;
        }
        rest -= w;
    }
    candidates.len().saturating_sub(1)
}

/// Sum of candidate weights.
pub(crate) fn total_weight(candidates: &[ReplicaView<'_>]) -> u64 {
    candidates.iter().map(|c| u64::from(c.weight.max(1))).sum()
}

/// Names of the available policies (the CLI's `--policy` values derive from this enum too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum PolicyName {
    /// Cycle through healthy replicas (by weight).
    RoundRobin,
    /// Pick a healthy replica at random (by weight).
    Random,
    /// Sample two healthy replicas, send to the less loaded one.
    PowerOfTwo,
    /// Longest held prefix unless load is imbalanced (SGLang cache-aware style).
    PrefixAware,
    /// Lowest estimated time to first token from held prefix and load (the default).
    Cost,
}

impl PolicyName {
    /// Whether the policy routes on held prompt prefixes (and so needs a [`PrefixIndex`] and
    /// prompt keys).
    pub fn keys_prefixes(self) -> bool {
        matches!(self, Self::Cost | Self::PrefixAware)
    }

    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::PowerOfTwo => "power_of_two",
            Self::PrefixAware => "prefix_aware",
            Self::Cost => "cost",
        }
    }
}

/// Which policy routes requests, and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The policy.
    pub name: PolicyName,
    /// Seed for the policy's RNG; unset means seeded from the OS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Constants of the `cost` policy's time-to-first-token model.
    pub cost: crate::policy::CostConfig,
    /// Thresholds of the `prefix_aware` policy.
    pub prefix_aware: crate::policy::PrefixAwareConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            name: PolicyName::Cost,
            seed: None,
            cost: crate::policy::CostConfig::default(),
            prefix_aware: crate::policy::PrefixAwareConfig::default(),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Candidate lists for policy unit tests.
    use super::*;
    use crate::load::ReplicaLoad;

    /// Owned replicas loads to borrow views from.
    pub(crate) struct Fixture {
        pub(crate) loads: Vec<ReplicaLoad>,
        pub(crate) names: Vec<String>,
        pub(crate) weights: Vec<u32>,
    }

    impl Fixture {
        pub(crate) fn new(weights: &[u32]) -> Self {
            Self {
                loads: weights.iter().map(|_| ReplicaLoad::default()).collect(),
                names: (0..weights.len()).map(|i| format!("r{i}")).collect(),
                weights: weights.to_vec(),
            }
        }

        pub(crate) fn views(&self) -> Vec<ReplicaView<'_>> {
            (0..self.loads.len())
                .map(|i| ReplicaView {
                    id: ReplicaId(i as u32),
                    name: &self.names[i],
                    url: "http://127.0.0.1:1",
                    weight: self.weights[i],
                    load: &self.loads[i],
                })
                .collect()
        }
    }

    pub(crate) fn request() -> RouteRequest<'static> {
        RouteRequest {
            endpoint: Endpoint::Completions,
            model: None,
            prompt: PromptKey::Text("hello"),
            prompt_tokens_estimate: 2,
            priority: None,
        }
    }
}
