//! Each replica's recent share of dispatched requests (exponentially decayed counts), so the
//! cost policy can charge replicas that took more than their share of the traffic lately.

use std::time::Instant;

use parking_lot::Mutex;

use crate::replicas::ReplicaId;

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    counts: Vec<(ReplicaId, f64)>,
}

/// Decayed dispatch counts per replica.
#[derive(Debug)]
pub struct DispatchShare {
    window_s: f64,
    state: Mutex<State>,
}

/// Fewest recent dispatches per candidate before shares are trusted.
const MIN_PER_CANDIDATE: f64 = 10.0;

impl DispatchShare {
    /// Counts decay by `1/e` every `window_s` seconds.
    pub fn new(window_s: f64) -> Self {
        Self {
            window_s: window_s.max(1e-3),
            state: Mutex::new(State::default()),
        }
    }

    fn decay(&self, state: &mut State, now: Instant) {
        if let Some(last) = state.last {
            let k = (-now.saturating_duration_since(last).as_secs_f64() / self.window_s).exp();
            for (_, c) in &mut state.counts {
                *c *= k;
            }
        }
        state.last = Some(now);
    }

    /// Records one request sent to `replica` at `now`.
    pub fn record(&self, replica: ReplicaId, now: Instant) {
        let mut state = self.state.lock();
        self.decay(&mut state, now);
        match state.counts.iter_mut().find(|(r, _)| *r == replica) {
            Some((_, c)) => *c += 1.0,
            None => state.counts.push((replica, 1.0)),
        }
    }

    /// Forgets a replica that left.
    pub fn remove(&self, replica: ReplicaId) {
        self.state.lock().counts.retain(|(r, _)| *r != replica);
    }

    /// For each candidate `(id, weight)`, how far its recent count exceeds its weighted fair
    /// count by more than chance (one Poisson standard deviation), as a fraction of the fair
    /// count (0.1 = 10% over; never negative). All zero until enough traffic.
    pub fn excess(&self, candidates: &[(ReplicaId, u32)]) -> Vec<f64> {
        let state = self.state.lock();
        let count = |id: ReplicaId| {
            state
                .counts
                .iter()
                .find(|(r, _)| *r == id)
                .map_or(0.0, |(_, c)| *c)
        };
        let counts: Vec<f64> = candidates.iter().map(|(id, _)| count(*id)).collect();
        let total: f64 = counts.iter().sum();
        let weights: f64 = candidates.iter().map(|(_, w)| f64::from((*w).max(1))).sum();
        if candidates.len() < 2 || total < MIN_PER_CANDIDATE * candidates.len() as f64 {
            return vec![0.0; candidates.len()];
        }
        candidates
            .iter()
            .zip(counts)
            .map(|((_, w), c)| {
                let fair = total * f64::from((*w).max(1)) / weights;
                ((c - fair - fair.sqrt()) / fair).max(0.0)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn excess_share_is_relative_to_weight_and_decays() {
        let s = DispatchShare::new(10.0);
        let t0 = Instant::now();
        let ids = [(ReplicaId(0), 1), (ReplicaId(1), 1)];
        s.record(ReplicaId(0), t0);
        assert_eq!(
            s.excess(&ids),
            vec![0.0, 0.0],
            "too little traffic to judge"
        );
        for _ in 0..23 {
            s.record(ReplicaId(0), t0);
        }
        for _ in 0..8 {
            s.record(ReplicaId(1), t0);
        }
        let e = s.excess(&ids);
        let expected = (24.0 - 16.0 - 4.0) / 16.0;
        assert!(
            (e[0] - expected).abs() < 1e-9 && e[1] == 0.0,
            "24 of 32 against 16 +- 4: {e:?}"
        );
        let weighted = s.excess(&[(ReplicaId(0), 3), (ReplicaId(1), 1)]);
        assert_eq!(weighted, vec![0.0, 0.0], "24:8 is exactly a 3:1 weighting");
        // An hour later the old burst is forgotten.
        s.record(ReplicaId(1), t0 + Duration::from_secs(3600));
        assert_eq!(s.excess(&ids), vec![0.0, 0.0]);
        s.remove(ReplicaId(0));
        assert_eq!(s.excess(&ids), vec![0.0, 0.0]);
    }
}
