//! Where requests went: counts per replica (from `x-routed-to`) overall and over time.

use crate::record::RequestRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Requests per replica, overall and per time bin (by send time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Requests per replica name; requests without the header are not counted.
    pub per_replica: BTreeMap<String, u64>,
    /// Width of one time bin, seconds.
    pub bin_s: f64,
    /// Requests per replica in each bin, from the start of the run.
    pub over_time: BTreeMap<String, Vec<u64>>,
}

impl Placement {
    /// The most loaded replica's count over the mean count (1.0 = perfectly even; 0 if empty).
    pub fn max_over_mean(&self) -> f64 {
        let n = self.per_replica.len();
        let total: u64 = self.per_replica.values().sum();
        if n == 0 || total == 0 {
            return 0.0;
        }
        let max = self.per_replica.values().copied().max().unwrap_or(0);
        max as f64 / (total as f64 / n as f64)
    }
}

/// Counts requests per replica; bins are 1 s wide, widened to keep at most 60 bins.
pub fn placement(records: &[RequestRecord], duration_s: f64) -> Placement {
    let bin_s = (duration_s / 60.0).ceil().max(1.0);
    let bins = ((duration_s / bin_s).ceil() as usize).max(1);
    let mut p = Placement {
        bin_s,
        ..Placement::default()
    };
    for r in records {
        let Some(name) = &r.routed_to else { continue };
        *p.per_replica.entry(name.clone()).or_insert(0) += 1;
        let series = p
            .over_time
            .entry(name.clone())
            .or_insert_with(|| vec![0; bins]);
        let bin = ((r.start / bin_s) as usize).min(bins - 1);
        series[bin] += 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: f64, to: Option<&str>) -> RequestRecord {
        RequestRecord {
            start,
            routed_to: to.map(String::from),
            ..RequestRecord::default()
        }
    }

    #[test]
    fn counts_and_bins() {
        let rs = vec![
            at(0.1, Some("a")),
            at(0.9, Some("b")),
            at(1.5, Some("a")),
            at(2.9, Some("a")),
            at(2.0, None),
        ];
        let p = placement(&rs, 3.0);
        assert_eq!(p.bin_s, 1.0);
        assert_eq!(p.per_replica["a"], 3);
        assert_eq!(p.per_replica["b"], 1);
        assert_eq!(p.over_time["a"], vec![1, 1, 1]);
        assert_eq!(p.over_time["b"], vec![1, 0, 0]);
        assert!((p.max_over_mean() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn long_runs_use_wider_bins() {
        let p = placement(&[at(299.0, Some("a"))], 300.0);
        assert_eq!(p.bin_s, 5.0);
        assert_eq!(p.over_time["a"].len(), 60);
        assert_eq!(p.over_time["a"][59], 1);
    }
}
