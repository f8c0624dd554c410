//! Random: a weighted random healthy replica, from an injected (seedable) RNG.

use parking_lot::Mutex;
use rand::{Rng, rngs::SmallRng};

use super::{
    Decision, DecisionReason, Policy, ReplicaView, RouteRequest, total_weight, weighted_index,
};

/// Weighted random choice.
#[derive(Debug)]
pub struct RandomPolicy {
    rng: Mutex<SmallRng>,
}

impl RandomPolicy {
    /// Uses `rng` for every draw.
    pub fn new(rng: SmallRng) -> Self {
        Self {
            rng: Mutex::new(rng),
        }
    }
}

impl Policy for RandomPolicy {
    fn name(&self) -> &'static str {
        "random"
    }

    fn pick(&self, _request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision {
        if let Some(only) = Decision::only_candidate(candidates) {
            return only;
        }
        let ticket = self
            .rng
            .lock()
            .random_range(0..total_weight(candidates).max(1));
        let chosen = &candidates[weighted_index(candidates, ticket)];
        Decision::plain(chosen.id, DecisionReason::Random)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::policy::test_support::{Fixture, request};

    fn picks(seed: u64, weights: &[u32], n: usize) -> Vec<u32> {
        let f = Fixture::new(weights);
        let p = RandomPolicy::new(SmallRng::seed_from_u64(seed));
        (0..n)
            .map(|_| p.pick(&request(), &f.views()).replica.0)
            .collect()
    }

    #[test]
    fn same_seed_same_sequence_and_all_replicas_used() {
        let a = picks(7, &[1, 1, 1, 1], 200);
        assert_eq!(a, picks(7, &[1, 1, 1, 1], 200));
        assert_ne!(a, picks(8, &[1, 1, 1, 1], 200));
        for id in 0..4 {
            let n = a.iter().filter(|&&x| x == id).count();
            assert!((25..=75).contains(&n), "replica {id} got {n} of 200");
        }
    }

    #[test]
    fn weights_shift_the_share() {
        let a = picks(1, &[3, 1], 400);
        let heavy = a.iter().filter(|&&x| x == 0).count();
        assert!(
            (250..=350).contains(&heavy),
            "weight-3 replica got {heavy} of 400"
        );
    }
}
