//! Power of two choices: sample two distinct replicas (by weight), send to the less loaded.

use std::time::Instant;

use parking_lot::Mutex;
use rand::{Rng, rngs::SmallRng};

use super::{
    Decision, DecisionReason, Load, Policy, ReplicaView, RouteRequest, total_weight, weighted_index,
};

/// Power of two choices over any [`Load`] measure.
#[derive(Debug)]
pub struct PowerOfTwo<L> {
    load: L,
    rng: Mutex<SmallRng>,
}

impl<L: Load> PowerOfTwo<L> {
    /// Compares samples with `load`, draws them from `rng`.
    pub fn new(load: L, rng: SmallRng) -> Self {
        Self {
            load,
            rng: Mutex::new(rng),
        }
    }

    /// Two distinct weighted samples; the first is the random tie winner.
    fn sample(&self, candidates: &[ReplicaView<'_>]) -> (usize, usize) {
        let total = total_weight(candidates);
        let mut rng = self.rng.lock();
        let a = weighted_index(candidates, rng.random_range(0..total.max(1)));
        let rest = total - u64::from(candidates[a].weight.max(1));
        let mut ticket = rng.random_range(0..rest.max(1));
        // Walk the cumulative weights skipping `a`.
        for (i, c) in candidates.iter().enumerate() {
            if i == a {
                continue;
            }
            let w = u64::from(c.weight.max(1));
            if ticket < w {
                return (a, i);
            }
            ticket -= w;
        }
        (a, if a == 0 { 1 } else { 0 })
    }
}

impl<L: Load> Policy for PowerOfTwo<L> {
    fn name(&self) -> &'static str {
        "power_of_two"
    }

    fn pick(&self, _request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision {
        if let Some(only) = Decision::only_candidate(candidates) {
            return only;
        }
        let (a, b) = self.sample(candidates);
        let now = Instant::now();
        let (load_a, load_b) = (
            self.load.load(&candidates[a].load_at(now)),
            self.load.load(&candidates[b].load_at(now)),
        );
        let (winner, reason) = if load_b < load_a {
            (b, DecisionReason::LessLoaded)
        } else if load_a < load_b {
            (a, DecisionReason::LessLoaded)
        } else {
            (a, DecisionReason::LoadTie)
        };
        Decision::plain(candidates[winner].id, reason)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::policy::{
        InFlightLoad,
        test_support::{Fixture, request},
    };

    #[test]
    fn never_picks_the_most_loaded_of_three() {
        let f = Fixture::new(&[1, 1, 1]);
        f.loads[1].add(10, 0);
        let p = PowerOfTwo::new(InFlightLoad, SmallRng::seed_from_u64(3));
        for _ in 0..300 {
            let d = p.pick(&request(), &f.views());
            assert_ne!(
                d.replica.0, 1,
                "the loaded replica always loses its comparison"
            );
        }
    }

    #[test]
    fn two_replicas_always_the_less_loaded_and_ties_spread() {
        let f = Fixture::new(&[1, 1]);
        f.loads[0].add(1, 0);
        let p = PowerOfTwo::new(InFlightLoad, SmallRng::seed_from_u64(9));
        for _ in 0..50 {
            let d = p.pick(&request(), &f.views());
            assert_eq!((d.replica.0, d.reason), (1, DecisionReason::LessLoaded));
        }
        f.loads[0].sub(1, 0);
        let firsts = (0..200)
            .filter(|_| p.pick(&request(), &f.views()).replica.0 == 0)
            .count();
        assert!(
            (60..=140).contains(&firsts),
            "ties are random, not list order: {firsts}/200"
        );
    }
}
