//! Rows of a results CSV, typed for charting: read back through the same serde structs that
//! wrote them ([`CsvRow`]), so the report names no column.

use crate::error::{Error, Result};
use crate::metrics::Stats;
use crate::output::{CsvRow, decode_map, decode_nested, read_rows};
use crate::summary::RunParams;
use std::collections::HashMap;
use std::path::Path;

/// One run as the report sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Row {
    /// The run's parameters, as written.
    pub(crate) params: RunParams,
    /// Label, policy or base URL.
    pub(crate) name: String,
    /// Policy, or the name when the run had no policy.
    pub(crate) group: String,
    /// Request rate (infinite for "inf").
    pub(crate) rate: f64,
    pub(crate) ttft: Stats,
    pub(crate) e2e: Stats,
    pub(crate) tpot: Stats,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) request_throughput: f64,
    pub(crate) output_throughput: f64,
    pub(crate) replica_hit_rate: Option<f64>,
    pub(crate) oracle_hit_rate: Option<f64>,
    pub(crate) per_replica: Vec<(String, u64)>,
    pub(crate) bin_s: f64,
    pub(crate) timeline: Vec<(String, Vec<u64>)>,
    /// (priority, field -> value) with fields ttft_mean, ttft_p99, e2e_mean, ...
    pub(crate) per_priority: Vec<(String, HashMap<String, f64>)>,
}

impl Row {
    /// "name @ rate" when runs differ in rate, else the name.
    pub(crate) fn label(&self, with_rate: bool) -> String {
        if with_rate {
            format!("{} @ {}", self.name, self.params.request_rate)
        } else {
            self.name.clone()
        }
    }
}

/// What routed and admitted a run's requests: `policy`, then `queue <policy>` and `caps <mode>`
/// when the run set them, joined by " / " (empty when none is known).
fn scheduler(policy: &str, queue: &str, caps: &str) -> String {
    let queue = (!queue.is_empty()).then(|| format!("queue {queue}"));
    let caps = (!caps.is_empty()).then(|| format!("caps {caps}"));
    [
        Some(policy.to_owned()).filter(|p| !p.is_empty()),
        queue,
        caps,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" / ")
}

fn parse_row(run: CsvRow) -> Row {
    let p = &run.params;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let scheduler = scheduler(&opt(&p.policy), &opt(&p.queue_policy), &opt(&p.caps));
    let name = [p.label.clone(), scheduler.clone(), p.base_url.clone()]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "run".into());
    let (totals, latency, outcome) = (&run.totals, &run.latency, &run.outcome);
    Row {
        group: if scheduler.is_empty() {
            name.clone()
        } else {
            scheduler
        },
        name,
        rate: if p.request_rate == "inf" {
            f64::INFINITY
        } else {
            p.request_rate.parse().unwrap_or(0.0)
        },
        ttft: latency.ttft_ms,
        e2e: latency.e2e_ms,
        tpot: latency.tpot_ms,
        completed: totals.completed,
        failed: totals.failed,
        request_throughput: totals.request_throughput,
        output_throughput: totals.output_throughput,
        replica_hit_rate: outcome.replica_hit_rate,
        oracle_hit_rate: outcome.oracle_hit_rate,
        per_replica: decode_map(&outcome.requests_per_replica)
            .into_iter()
            .map(|(k, v)| (k, v.parse().unwrap_or(0)))
            .collect(),
        bin_s: if outcome.timeline_bin_s > 0.0 {
            outcome.timeline_bin_s
        } else {
            1.0
        },
        timeline: decode_map(&outcome.replica_timeline)
            .into_iter()
            .map(|(k, v)| (k, v.split('|').map(|x| x.parse().unwrap_or(0)).collect()))
            .collect(),
        per_priority: decode_nested(&outcome.per_priority),
        params: run.params,
    }
}

/// Reads the runs of a results CSV; an empty file or one without loadgen's columns is an error.
pub(crate) fn load(path: &Path) -> Result<Vec<Row>> {
    let rows = read_rows(path)?;
    if rows.is_empty() {
        return Err(Error::Csv {
            path: path.to_path_buf(),
            reason: "has no runs".into(),
        });
    }
    Ok(rows.into_iter().map(parse_row).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{CsvRow, append_csv};
    use crate::summary::RunSummary;

    /// Every parameter, however recently added, goes CSV -> report by its `RunParams` field
    /// alone: the whole struct comes back equal, and so does every metric part of the row.
    #[test]
    fn every_parameter_and_metric_round_trips_through_the_csv() {
        let params = RunParams {
            label: "lbl, with comma".into(),
            policy: Some("cost".into()),
            base_url: "http://127.0.0.1:1".into(),
            endpoint: "chat".into(),
            model: "m".into(),
            dataset: "sharegpt".into(),
            num_prompts: 7,
            request_rate: "inf".into(),
            burstiness: 0.3,
            max_concurrency: Some(9),
            min_output_len: 2,
            max_output_len: 40,
            stream: true,
            ignore_eos: true,
            seed: 99,
            priority_mix: Some("0:1,1:3".into()),
            slo_ttft_ms: Some(250.5),
            slo_tpot_ms: None,
            queue_policy: Some("priority".into()),
            caps: Some("adaptive".into()),
        };
        let mut s = RunSummary {
            params,
            ..RunSummary::default()
        };
        s.client.completed = 5;
        s.client.goodput = Some(2.5);
        s.client.queue_wait_ms.p99 = 12.25;
        s.client.failed_by_reason.insert("timeout".into(), 1);
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("r.csv");
        append_csv(&csv, &s).unwrap();
        assert_eq!(read_rows(&csv).unwrap(), vec![CsvRow::of(&s)]);
        let rows = load(&csv).unwrap();
        assert_eq!(rows[0].params, s.params);
        assert_eq!(rows[0].group, "cost / queue priority / caps adaptive");
        assert_eq!(rows[0].rate, f64::INFINITY);
    }

    #[test]
    fn an_older_file_without_newer_columns_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("old.csv");
        std::fs::write(
            &csv,
            "label,policy,request_rate,completed,ttft_ms_mean\nold,cost,25,4,12.5\n",
        )
        .unwrap();
        let rows = load(&csv).unwrap();
        assert_eq!(rows[0].params.queue_policy, None);
        assert_eq!((rows[0].completed, rows[0].ttft.mean), (4, 12.5));
        assert_eq!((rows[0].rate, rows[0].bin_s), (25.0, 1.0));
    }
}
