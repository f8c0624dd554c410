//! Round robin: cycles through the healthy replicas, each getting `weight` turns per cycle.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Decision, DecisionReason, Policy, ReplicaView, RouteRequest, total_weight, weighted_index,
};

/// Weighted round robin over the candidate list.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicU64,
}

impl RoundRobin {
    /// Starts at the first candidate.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Policy for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn pick(&self, _request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision {
        if let Some(only) = Decision::only_candidate(candidates) {
            return only;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % total_weight(candidates).max(1);
        let chosen = &candidates[weighted_index(candidates, turn)];
        Decision::plain(chosen.id, DecisionReason::RoundRobin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{Fixture, request};

    #[test]
    fn cycles_in_order_and_respects_weights() {
        let f = Fixture::new(&[1, 1, 1]);
        let p = RoundRobin::new();
        let picks: Vec<u32> = (0..6)
            .map(|_| p.pick(&request(), &f.views()).replica.0)
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);

        let f = Fixture::new(&[2, 1]);
        let p = RoundRobin::new();
        let picks: Vec<u32> = (0..6)
            .map(|_| p.pick(&request(), &f.views()).replica.0)
            .collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn single_candidate_is_explained() {
        let f = Fixture::new(&[1]);
        let d = RoundRobin::new().pick(&request(), &f.views());
        assert_eq!(d.reason, DecisionReason::OnlyCandidate);
    }
}
