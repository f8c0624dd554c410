//! Load as a comparable metric over a [`LoadReading`], so balancing policies are generic over
//! how load is compared.

use crate::load::LoadReading;

/// Compares replicas' loads; lower metrics are less loaded.
pub trait Load: Send + Sync {
    /// The comparable load value.
    type Metric: PartialOrd + std::fmt::Debug;

    /// The load of a replica read as `reading`.
    fn load(&self, reading: &LoadReading) -> Self::Metric;
}

/// In-flight requests then in-flight prompt tokens, each divided by the replica's weight.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct InFlight {
    /// In-flight requests per unit of weight (compared first).
    pub requests: f64,
    /// In-flight prompt tokens per unit of weight (breaks ties on requests).
    pub tokens: f64,
}

/// The router's own in-flight counts as the load.
#[derive(Debug, Clone, Copy, Default)]
pub struct InFlightLoad;

impl Load for InFlightLoad {
    type Metric = InFlight;

    fn load(&self, reading: &LoadReading) -> InFlight {
        InFlight {
            requests: reading.requests_per_weight(),
            tokens: reading.prompt_tokens_per_weight(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::Fixture;

    #[test]
    fn requests_dominate_and_tokens_break_ties_and_weight_divides() {
        let f = Fixture::new(&[1, 1, 2]);
        f.loads[0].add(1, 1000);
        f.loads[1].add(1, 10);
        f.loads[2].add(2, 10);
        let v = f.views();
        let now = std::time::Instant::now();
        let l = |i: usize| InFlightLoad.load(&v[i].load_at(now));
        assert!(l(1) < l(0), "same requests: fewer tokens is less loaded");
        assert_eq!(l(2).requests, 1.0, "weight 2 halves the load");
        assert!(l(2) < l(0));
    }
}
