//! Rows of a results CSV, typed for charting.

use crate::error::{Error, Result};
use crate::metrics::Stats;
use crate::output::{decode_map, decode_nested, read_csv};
use std::collections::HashMap;
use std::path::Path;

/// One run as the report sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Row {
    /// Label, policy or base URL.
    pub(crate) name: String,
    /// Policy, or the name when the run had no policy.
    pub(crate) group: String,
    /// Request rate as written ("inf" or a number).
    pub(crate) rate_label: String,
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
            format!("{} @ {}", self.name, self.rate_label)
        } else {
            self.name.clone()
        }
    }
}

fn stats(cells: &HashMap<String, String>, prefix: &str) -> Stats {
    let f = |k: &str| num(cells, &format!("{prefix}_{k}")).unwrap_or(0.0);
    Stats {
        mean: f("mean"),
        median: f("median"),
        std: f("std"),
        p90: f("p90"),
        p99: f("p99"),
        min: f("min"),
        p25: f("p25"),
        p75: f("p75"),
        p95: f("p95"),
        max: f("max"),
    }
}

fn num(cells: &HashMap<String, String>, k: &str) -> Option<f64> {
    cells.get(k).and_then(|v| v.parse().ok())
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

fn parse_row(cells: &HashMap<String, String>) -> Row {
    let text = |k: &str| cells.get(k).cloned().unwrap_or_default();
    let scheduler = scheduler(&text("policy"), &text("queue_policy"), &text("caps"));
    let name = [text("label"), scheduler.clone(), text("base_url")]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "run".into());
    let rate_label = text("request_rate");
    Row {
        group: if scheduler.is_empty() {
            name.clone()
        } else {
            scheduler
        },
        name,
        rate: if rate_label == "inf" {
            f64::INFINITY
        } else {
            rate_label.parse().unwrap_or(0.0)
        },
        rate_label,
        ttft: stats(cells, "ttft_ms"),
        e2e: stats(cells, "e2e_ms"),
        tpot: stats(cells, "tpot_ms"),
        completed: num(cells, "completed").unwrap_or(0.0) as u64,
        failed: num(cells, "failed").unwrap_or(0.0) as u64,
        request_throughput: num(cells, "request_throughput").unwrap_or(0.0),
        output_throughput: num(cells, "output_throughput").unwrap_or(0.0),
        replica_hit_rate: num(cells, "replica_hit_rate"),
        oracle_hit_rate: num(cells, "oracle_hit_rate"),
        per_replica: decode_map(&text("requests_per_replica"))
            .into_iter()
            .map(|(k, v)| (k, v.parse().unwrap_or(0)))
            .collect(),
        bin_s: num(cells, "timeline_bin_s").unwrap_or(1.0),
        timeline: decode_map(&text("replica_timeline"))
            .into_iter()
            .map(|(k, v)| (k, v.split('|').map(|x| x.parse().unwrap_or(0)).collect()))
            .collect(),
        per_priority: decode_nested(&text("per_priority")),
    }
}

/// Reads the runs of a results CSV; an empty file or one without loadgen's columns is an error.
pub(crate) fn load(path: &Path) -> Result<Vec<Row>> {
    let rows = read_csv(path)?;
    if rows.is_empty() {
        return Err(Error::Csv {
            path: path.to_path_buf(),
            reason: "has no runs".into(),
        });
    }
    if !rows[0].contains_key("ttft_ms_mean") {
        return Err(Error::Csv {
            path: path.to_path_buf(),
            reason: "is not a loadgen results file (no ttft_ms_mean column)".into(),
        });
    }
    Ok(rows.iter().map(parse_row).collect())
}
