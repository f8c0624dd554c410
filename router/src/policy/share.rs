//! Each replica's recent share of dispatched requests (exponentially decayed counts), so the
//! cost policy can charge replicas that took more than their share of the traffic lately, and
//! each replica's recent request rate (a short decayed count), so it can price what a miss
//! costs the requests that arrive there while its prefill runs.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cost_model::PerCandidate;
use crate::replicas::ReplicaId;

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    counts: Vec<(ReplicaId, f64)>,
    /// Requests per replica decayed over [`RATE_WINDOW_S`], as of `last`.
    recent: Vec<(ReplicaId, f64)>,
    /// When counting started (the rate's normalisation).
    since: Option<Instant>,
    /// When each replica was last a candidate of a pick.
    seen: Vec<(ReplicaId, Instant)>,
}

/// Decayed dispatch counts per replica.
#[derive(Debug)]
pub struct DispatchShare {
    window_s: f64,
    state: Mutex<State>,
}

/// The most a replica under its fair share is credited, as a share (0.1: as if 10% under): enough
/// to outweigh a hit elsewhere, small enough that a replica short of its share is drawn to it
/// at a bounded pace, not flooded until its count catches up.
const MAX_CREDIT: f64 = 0.1;
/// How long a replica must have been no candidate (unhealthy, draining), while its peers took
/// traffic, to count as back from an outage: it then starts at its fair share.
const REJOIN_AFTER: Duration = Duration::from_secs(5);
/// Fewest recent dispatches per candidate before shares are trusted.
const MIN_PER_CANDIDATE: f64 = 10.0;
/// Time constant of the request rate, seconds: short, so a burst is priced while it lasts.
const RATE_WINDOW_S: f64 = 2.0;
/// Shortest history the rate is normalised over, seconds (the first requests are no rate yet).
const MIN_RATE_HISTORY_S: f64 = 0.5;

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
            let dt = now.saturating_duration_since(last).as_secs_f64();
            let k = (-dt / self.window_s).exp();
            for (_, c) in &mut state.counts {
                *c *= k;
            }
            let k = (-dt / RATE_WINDOW_S).exp();
            for (_, c) in &mut state.recent {
                *c *= k;
            }
        }
        state.last = Some(now);
        state.since.get_or_insert(now);
    }

    /// Requests per second dispatched to each of `replicas` (`(id, capacity)` as for
    /// [`Self::excess`]; the capacity is not used) over the last few seconds (0 before any).
    pub fn rates(&self, now: Instant, replicas: &[(ReplicaId, f64)]) -> Vec<f64> {
        rates_in(&self.state.lock(), now, replicas).into_vec()
    }

    /// [`Self::excess`] (all zero unless `judge_share`) and [`Self::rates`] under one lock: the
    /// cost policy reads both on every pick.
    pub fn excess_and_rates(
        &self,
        now: Instant,
        candidates: &[(ReplicaId, f64)],
        judge_share: bool,
    ) -> (PerCandidate<f64>, PerCandidate<f64>) {
        let mut state = self.state.lock();
        rejoin(&mut state, now, candidates);
        let excess = if judge_share {
            excess_in(&state, candidates)
        } else {
            PerCandidate::from_elem(0.0, candidates.len())
        };
        (excess, rates_in(&state, now, candidates))
    }

    /// Records one request sent to `replica` at `now`.
    pub fn record(&self, replica: ReplicaId, now: Instant) {
        let mut state = self.state.lock();
        self.decay(&mut state, now);
        match state.counts.iter_mut().find(|(r, _)| *r == replica) {
            Some((_, c)) => *c += 1.0,
            None => state.counts.push((replica, 1.0)),
        }
        match state.recent.iter_mut().find(|(r, _)| *r == replica) {
            Some((_, c)) => *c += 1.0,
            None => state.recent.push((replica, 1.0)),
        }
    }

    /// Forgets a replica that left.
    pub fn remove(&self, replica: ReplicaId) {
        let mut state = self.state.lock();
        state.counts.retain(|(r, _)| *r != replica);
        state.recent.retain(|(r, _)| *r != replica);
    }

    /// For each candidate `(id, capacity)` (its weight, divided by how much slower than its
    /// peers it is), how far its recent count is above its fair count (proportional to
    /// capacity) by more than chance (one Poisson standard deviation), or below it by more than
    /// twice that (negative, at most [`MAX_CREDIT`]), as a fraction of the fair count (0.1 = 10%
    /// over). All zero until enough traffic.
    pub fn excess(&self, candidates: &[(ReplicaId, f64)]) -> Vec<f64> {
        excess_in(&self.state.lock(), candidates).into_vec()
    }
}

/// Requests per second recently sent to each of `replicas` (see [`DispatchShare::rates`]).
fn rates_in(state: &State, now: Instant, replicas: &[(ReplicaId, f64)]) -> PerCandidate<f64> {
    let (Some(last), Some(since)) = (state.last, state.since) else {
        return PerCandidate::from_elem(0.0, replicas.len());
    };
    let age = now.saturating_duration_since(last).as_secs_f64();
    let history = now
        .saturating_duration_since(since)
        .as_secs_f64()
        .max(MIN_RATE_HISTORY_S);
    // A steady rate r leaves r * window * (1 - e^(-history/window)) in the decayed count.
    let span = RATE_WINDOW_S * (1.0 - (-history / RATE_WINDOW_S).exp());
    let scale = (-age / RATE_WINDOW_S).exp() / span;
    replicas
        .iter()
        .map(|(id, _)| {
            state
                .recent
                .iter()
                .find(|(r, _)| r == id)
                .map_or(0.0, |(_, c)| c * scale)
        })
        .collect()
}

/// Candidates back after [`REJOIN_AFTER`] or more out of the picks while their peers took
/// traffic (an outage), or new to the pool, start at their fair share of their peers' counts:
/// not credited for the traffic they could not take, and not making their peers look
/// over-served, so they are neither flooded nor starved. (Candidates that merely alternate, as
/// replicas serving different models do, keep their counts.)
fn rejoin(state: &mut State, now: Instant, candidates: &[(ReplicaId, f64)]) {
    let last_dispatch = state.last;
    let back = |id: &ReplicaId| match state.seen.iter().find(|(r, _)| r == id) {
        Some((_, seen)) => {
            now.saturating_duration_since(*seen) >= REJOIN_AFTER
                && last_dispatch.is_some_and(|d| d > *seen)
        }
        None => last_dispatch.is_some(),
    };
    let returning: PerCandidate<bool> = candidates.iter().map(|(id, _)| back(id)).collect();
    if returning.contains(&true) {
        let (mut total, mut weights) = (0.0, 0.0);
        for ((id, w), _) in candidates.iter().zip(&returning).filter(|(_, b)| !**b) {
            total += count_of(state, *id);
            weights += capacity(*w);
        }
        if weights > 0.0 {
            for ((id, w), _) in candidates.iter().zip(&returning).filter(|(_, b)| **b) {
                let fair = total * capacity(*w) / weights;
                match state.counts.iter_mut().find(|(r, _)| r == id) {
                    Some((_, c)) => *c = fair,
                    None => state.counts.push((*id, fair)),
                }
            }
        }
    }
    for (id, _) in candidates {
        match state.seen.iter_mut().find(|(r, _)| r == id) {
            Some((_, seen)) => *seen = now,
            None => state.seen.push((*id, now)),
        }
    }
}

fn count_of(state: &State, id: ReplicaId) -> f64 {
    state
        .counts
        .iter()
        .find(|(r, _)| *r == id)
        .map_or(0.0, |(_, c)| *c)
}

/// A candidate's capacity as given, 1 when it is not a positive number.
fn capacity(c: f64) -> f64 {
    if c.is_finite() && c > 0.0 { c } else { 1.0 }
}

/// How far each candidate's count exceeds its fair share (see [`DispatchShare::excess`]).
fn excess_in(state: &State, candidates: &[(ReplicaId, f64)]) -> PerCandidate<f64> {
    let counts: PerCandidate<f64> = candidates
        .iter()
        .map(|(id, _)| count_of(state, *id))
        .collect();
    let total: f64 = counts.iter().sum();
    let weights: f64 = candidates.iter().map(|(_, c)| capacity(*c)).sum();
    if candidates.len() < 2 || total < MIN_PER_CANDIDATE * candidates.len() as f64 {
        return PerCandidate::from_elem(0.0, candidates.len());
    }
    candidates
        .iter()
        .zip(counts)
        .map(|((_, w), c)| {
            let fair = total * capacity(*w) / weights;
            // Under by more than twice chance only: a credit draws requests to a replica that
            // holds fewer prefixes (misses), worth it for a persistent shortfall (a slower
            // replica, tenants pinned elsewhere), not for the lumpy split of a few hot prompts.
            let chance = fair.sqrt();
            if c > fair + chance {
                (c - fair - chance) / fair
            } else if c < fair - 2.0 * chance {
                ((c - fair + 2.0 * chance) / fair).max(-MAX_CREDIT)
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn excess_share_is_relative_to_weight_and_decays() {
        let s = DispatchShare::new(10.0);
        let t0 = Instant::now();
        let ids = [(ReplicaId(0), 1.0), (ReplicaId(1), 1.0)];
        s.record(ReplicaId(0), t0);
        assert_eq!(
            s.excess(&ids),
            vec![0.0, 0.0],
            "too little traffic to judge"
        );
        for _ in 0..24 {
            s.record(ReplicaId(0), t0);
        }
        for _ in 0..7 {
            s.record(ReplicaId(1), t0);
        }
        let e = s.excess(&ids);
        let (over, under) = ((25.0 - 16.0 - 4.0) / 16.0, (7.0 - 16.0 + 8.0) / 16.0);
        assert!(
            (e[0] - over).abs() < 1e-9 && (e[1] - under).abs() < 1e-9,
            "25 and 7 of 32 against 16 +- 4 (over) and 16 - 8 (under): {e:?}"
        );
        let weighted = s.excess(&[(ReplicaId(0), 3.0), (ReplicaId(1), 1.0)]);
        assert_eq!(weighted, vec![0.0, 0.0], "25:7 is within chance of 3:1");
        // A replica half as fast as its peer is fairly sent a third of the traffic: 25 is over,
        // 7 under (by more than the bounded credit).
        let slow = s.excess(&[(ReplicaId(0), 0.5), (ReplicaId(1), 1.0)]);
        let (fair, fair_fast) = (32.0 / 3.0, 32.0 * 2.0 / 3.0);
        let expected = (25.0 - fair - f64::sqrt(fair)) / fair;
        let deficit = ((7.0 - fair_fast + 2.0 * f64::sqrt(fair_fast)) / fair_fast).max(-MAX_CREDIT);
        assert!(
            (slow[0] - expected).abs() < 1e-9 && (slow[1] - deficit).abs() < 1e-9,
            "{slow:?}"
        );
        let starved = s.excess(&[(ReplicaId(0), 1.0), (ReplicaId(1), 5.0)]);
        assert_eq!(
            starved[1], -MAX_CREDIT,
            "the credit is bounded: {starved:?}"
        );
        for _ in 0..4 {
            s.record(ReplicaId(1), t0);
        }
        let e = s.excess(&ids);
        assert!(
            e[0] > 0.0 && e[1] == 0.0,
            "11 of 36 is within twice chance of 18: {e:?}"
        );
        // An hour later the old burst is forgotten.
        s.record(ReplicaId(1), t0 + Duration::from_secs(3600));
        assert_eq!(s.excess(&ids), vec![0.0, 0.0]);
        s.remove(ReplicaId(0));
        assert_eq!(s.excess(&ids), vec![0.0, 0.0]);
    }

    #[test]
    fn a_replica_back_from_an_outage_starts_at_its_fair_share() {
        let s = DispatchShare::new(120.0);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let all = [
            (ReplicaId(0), 1.0),
            (ReplicaId(1), 1.0),
            (ReplicaId(2), 1.0),
        ];
        let judge = |t, cands: &[(ReplicaId, f64)]| s.excess_and_rates(t, cands, true).0;
        assert_eq!(judge(t0, &all).as_slice(), [0.0; 3]);
        for i in 0..60u32 {
            s.record(ReplicaId(i % 3), t0);
        }
        // Replica 2 is out for 10 s: its peers take the next 120 requests.
        for i in 0..120u64 {
            let t = at(100 + 80 * i);
            judge(t, &all[..2]);
            s.record(ReplicaId((i % 2) as u32), t);
        }
        // Back: neither a credit for it nor a charge for its peers (about 80 each against 20).
        let back = at(10_000);
        assert_eq!(judge(back, &all).as_slice(), [0.0; 3]);
        // From then on it is judged as before: 40 more to replica 0 alone is over its share.
        for _ in 0..40 {
            s.record(ReplicaId(0), back);
        }
        let e = judge(back, &all);
        assert!(e[0] > 0.0 && (e[1] - e[2]).abs() < 1e-9, "{e:?}");
        // A replica new to the pool starts at its fair share too (weight 2: twice the others').
        let mut grown = all.to_vec();
        grown.push((ReplicaId(3), 2.0));
        assert_eq!(judge(back, &grown)[3], 0.0);
    }

    #[test]
    fn replicas_that_alternate_as_candidates_keep_their_counts() {
        // Two models on overlapping replicas: {0, 1} for one, {1, 2} for the other.
        let s = DispatchShare::new(120.0);
        let t0 = Instant::now();
        let (a, b) = (
            [(ReplicaId(0), 1.0), (ReplicaId(1), 1.0)],
            [(ReplicaId(1), 1.0), (ReplicaId(2), 1.0)],
        );
        for i in 0..200u64 {
            let t = t0 + Duration::from_millis(100 * i);
            let (cands, to) = if i % 2 == 0 { (&a, 0) } else { (&b, 1) };
            s.excess_and_rates(t, cands, true);
            s.record(ReplicaId(to), t);
        }
        // Replica 2 never got any: it is starved, not reset to its peers' count.
        let end = t0 + Duration::from_millis(20_000);
        let e = s.excess_and_rates(end, &b, true).0;
        assert!(
            e[0] > 0.0 && e[1] < 0.0,
            "replica 1 over, replica 2 credited: {e:?}"
        );
    }

    #[test]
    fn rate_follows_a_steady_stream_and_fades_after_it() {
        let s = DispatchShare::new(120.0);
        let t0 = Instant::now();
        let ids = [
            (ReplicaId(0), 1.0),
            (ReplicaId(1), 1.0),
            (ReplicaId(2), 1.0),
        ];
        assert_eq!(s.rates(t0, &ids), vec![0.0; 3]);
        // 50 requests per second for 10 seconds: 4 in 5 to replica 0, the rest to replica 1.
        for i in 0..500u32 {
            let to = ReplicaId(u32::from(i % 5 == 4));
            s.record(to, t0 + Duration::from_millis(20 * u64::from(i)));
        }
        let end = t0 + Duration::from_secs(10);
        let r = s.rates(end, &ids);
        assert!(
            (r[0] - 40.0).abs() < 4.0 && (r[1] - 10.0).abs() < 2.0,
            "{r:?}"
        );
        assert_eq!(r[2], 0.0);
        // Early in a stream the rate is not inflated by the short history.
        let early = DispatchShare::new(120.0);
        for i in 0..50u32 {
            early.record(ReplicaId(0), t0 + Duration::from_millis(20 * u64::from(i)));
        }
        let r = early.rates(t0 + Duration::from_secs(1), &ids)[0];
        assert!((r - 50.0).abs() < 10.0, "{r}");
        // Ten quiet seconds later it has faded.
        assert!(s.rates(end + Duration::from_secs(10), &ids)[0] < 1.0);
    }
}
