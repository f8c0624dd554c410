//! One CSV row per run: parameters first, then metrics. Maps (per replica, per priority, over
//! time) are packed into one cell as `key=value;key=value`.

use crate::error::{Error, Result};
use crate::metrics::Stats;
use crate::summary::{RunParams, RunSummary};
use std::collections::HashMap;
use std::path::Path;

fn num(v: f64) -> String {
    if !v.is_finite() {
        return if v > 0.0 { "inf".into() } else { String::new() };
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_default()
}

fn stats_cols(cols: &mut Vec<(String, String)>, name: &str, s: &Stats) {
    let fields = [
        ("mean", s.mean),
        ("median", s.median),
        ("std", s.std),
        ("p90", s.p90),
        ("p99", s.p99),
        ("min", s.min),
        ("p25", s.p25),
        ("p75", s.p75),
        ("p95", s.p95),
        ("max", s.max),
    ];
    for (f, v) in fields {
        cols.push((format!("{name}_{f}"), num(v)));
    }
}

/// The parameter columns of a run: names and order are `RunParams`'s serde fields, so a new
/// parameter is one field there (`None` is an empty cell).
pub fn param_columns(p: &RunParams) -> Result<Vec<(String, String)>> {
    let csv_err = |reason: String| Error::Csv {
        path: "<run parameters>".into(),
        reason,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(p).map_err(|e| csv_err(e.to_string()))?;
    let bytes = w.into_inner().map_err(|e| csv_err(e.to_string()))?;
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let header = r.headers().map_err(|e| csv_err(e.to_string()))?.clone();
    let row = r
        .records()
        .next()
        .ok_or_else(|| csv_err("no row".into()))?
        .map_err(|e| csv_err(e.to_string()))?;
    Ok(header
        .iter()
        .zip(row.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The CSV columns of `s`, in order: parameters, then metrics.
pub fn columns(s: &RunSummary) -> Result<Vec<(String, String)>> {
    let m = &s.client;
    let mut c: Vec<(String, String)> = Vec::with_capacity(110);
    c.extend(param_columns(&s.params)?);
    let mut push = |k: &str, v: String| c.push((k.to_string(), v));
    push("groups", s.groups.to_string());
    push("token_source", s.token_source.clone());
    push("started_at", s.started_at.to_string());
    push("interrupted", s.interrupted.to_string());
    push("duration_s", num(m.duration_s));
    push("completed", m.completed.to_string());
    push("failed", m.failed.to_string());
    push(
        "failed_by_reason",
        encode(
            m.failed_by_reason
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string())),
        ),
    );
    push("total_input_tokens", m.total_input_tokens.to_string());
    push("total_output_tokens", m.total_output_tokens.to_string());
    push("request_throughput", num(m.request_throughput));
    push("input_throughput", num(m.input_throughput));
    push("output_throughput", num(m.output_throughput));
    push("concurrency", num(m.concurrency));
    push("goodput", opt(m.goodput));
    for (name, st) in [
        ("ttft_ms", &m.ttft_ms),
        ("tpot_ms", &m.tpot_ms),
        ("itl_ms", &m.itl_ms),
        ("e2e_ms", &m.e2e_ms),
        ("queue_wait_ms", &m.queue_wait_ms),
    ] {
        stats_cols(&mut c, name, st);
    }
    let mut push = |k: &str, v: String| c.push((k.to_string(), v));
    push("oracle_hit_rate", opt(s.oracle.map(|o| o.hit_rate)));
    let r = s.replicas.as_ref();
    push("replica_hit_rate", opt(r.map(|r| r.prefix_cache_hit_rate)));
    push("replica_prompt_tokens", opt(r.map(|r| r.prompt_tokens)));
    push(
        "replica_generation_tokens",
        opt(r.map(|r| r.generation_tokens)),
    );
    push("replica_successes", opt(r.map(|r| r.successes)));
    push("replica_preemptions", opt(r.map(|r| r.preemptions)));
    push("replica_ttft_ms", opt(r.and_then(|r| r.means_ms.ttft)));
    push("replica_tpot_ms", opt(r.and_then(|r| r.means_ms.tpot)));
    push("replica_e2e_ms", opt(r.and_then(|r| r.means_ms.e2e)));
    push("replica_queue_ms", opt(r.and_then(|r| r.means_ms.queue)));
    push(
        "replica_prefill_ms",
        opt(r.and_then(|r| r.means_ms.prefill)),
    );
    push("replica_decode_ms", opt(r.and_then(|r| r.means_ms.decode)));
    let pl = &s.placement;
    push(
        "requests_per_replica",
        encode(
            pl.per_replica
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string())),
        ),
    );
    push("max_over_mean", num(pl.max_over_mean()));
    push("timeline_bin_s", num(pl.bin_s));
    push(
        "replica_timeline",
        encode(pl.over_time.iter().map(|(k, v)| {
            (
                k.clone(),
                v.iter().map(u64::to_string).collect::<Vec<_>>().join("|"),
            )
        })),
    );
    push(
        "per_priority",
        encode(s.per_priority.iter().map(|c| {
            let m = &c.metrics;
            let fields = [
                ("completed", m.completed as f64),
                ("failed", m.failed as f64),
                ("ttft_mean", m.ttft_ms.mean),
                ("ttft_p50", m.ttft_ms.median),
                ("ttft_p95", m.ttft_ms.p95),
                ("ttft_p99", m.ttft_ms.p99),
                ("e2e_mean", m.e2e_ms.mean),
                ("e2e_p99", m.e2e_ms.p99),
                ("tpot_mean", m.tpot_ms.mean),
                ("queue_wait_mean", m.queue_wait_ms.mean),
                ("queue_wait_p99", m.queue_wait_ms.p99),
                ("request_throughput", m.request_throughput),
                ("output_throughput", m.output_throughput),
            ];
            let v = fields
                .iter()
                .map(|(k, v)| format!("{k}:{}", num(*v)))
                .collect::<Vec<_>>();
            (c.priority.to_string(), v.join("|"))
        })),
    );
    let pf = s.prefill.as_ref();
    push("prefill_latency_ms", opt(pf.map(|p| p.prefill_latency_ms)));
    push(
        "generation_latency_ms",
        opt(pf.map(|p| p.generation_latency_ms)),
    );
    push(
        "prefill_throughput_tok_s",
        opt(pf.map(|p| p.prefill_throughput_tok_s)),
    );
    push(
        "generation_throughput_tok_s",
        opt(pf.map(|p| p.generation_throughput_tok_s)),
    );
    Ok(c)
}

fn encode(pairs: impl Iterator<Item = (String, String)>) -> String {
    pairs
        .map(|(k, v)| format!("{}={v}", k.replace([';', '='], "_")))
        .collect::<Vec<_>>()
        .join(";")
}

/// Unpacks a `key=value;key=value` cell.
pub fn decode_map(cell: &str) -> Vec<(String, String)> {
    cell.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Unpacks a `key=a:1|b:2;...` cell into numbers per key and field.
pub fn decode_nested(cell: &str) -> Vec<(String, HashMap<String, f64>)> {
    decode_map(cell)
        .into_iter()
        .map(|(k, v)| {
            let fields = v
                .split('|')
                .filter_map(|f| f.split_once(':'))
                .filter_map(|(f, x)| x.parse().ok().map(|x| (f.to_string(), x)))
                .collect();
            (k, fields)
        })
        .collect()
}

/// Appends `s` as one row to `path`, writing the header first when the file is new or empty.
/// Appending to a file with a different header is an error (start a new file).
pub fn append_csv(path: &Path, s: &RunSummary) -> Result<()> {
    let cols = columns(s)?;
    let header: Vec<&str> = cols.iter().map(|(k, _)| k.as_str()).collect();
    let csv_err = |reason: String| Error::Csv {
        path: path.to_path_buf(),
        reason,
    };
    let existing = match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => {
            let mut r = csv::Reader::from_path(path).map_err(|e| csv_err(e.to_string()))?;
            let h = r.headers().map_err(|e| csv_err(e.to_string()))?;
            if h.iter().ne(header.iter().copied()) {
                return Err(csv_err(
                    "has a different header (written by another loadgen version?); use a new file"
                        .into(),
                ));
            }
            true
        }
        _ => false,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut w = csv::Writer::from_writer(file);
    if !existing {
        w.write_record(&header)
            .map_err(|e| csv_err(e.to_string()))?;
    }
    w.write_record(cols.iter().map(|(_, v)| v.as_str()))
        .map_err(|e| csv_err(e.to_string()))?;
    w.flush().map_err(|e| Error::io(path, e))
}

/// Reads every row of a results CSV as column name -> cell.
pub fn read_csv(path: &Path) -> Result<Vec<HashMap<String, String>>> {
    let csv_err = |reason: String| Error::Csv {
        path: path.to_path_buf(),
        reason,
    };
    let mut r = csv::Reader::from_path(path).map_err(|e| csv_err(e.to_string()))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| csv_err(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.map_err(|e| csv_err(e.to_string()))?;
            Ok(header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{PriorityMetrics, placement};
    use crate::record::RequestRecord;

    fn summary() -> RunSummary {
        let mut s = RunSummary::default();
        s.params.label = "a,b".into();
        s.params.request_rate = "inf".into();
        s.client.completed = 3;
        s.client.ttft_ms.mean = 12.5;
        s.client.failed_by_reason.insert("http_500".into(), 2);
        let recs = vec![RequestRecord {
            routed_to: Some("r1".into()),
            ..RequestRecord::default()
        }];
        s.placement = placement(&recs, 2.0);
        let mut pm = PriorityMetrics {
            priority: 1,
            metrics: Default::default(),
        };
        pm.metrics.ttft_ms.mean = 7.0;
        s.per_priority.push(pm);
        s
    }

    #[test]
    fn params_come_first_and_cells_round_trip() {
        let cols = columns(&summary()).unwrap();
        assert_eq!(cols[0].0, "label");
        assert!(
            cols.iter().any(|c| c.0 == "queue_policy"),
            "every RunParams field is a column"
        );
        let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
        let params_end = names.iter().position(|n| *n == "token_source").unwrap();
        let metrics_start = names.iter().position(|n| *n == "duration_s").unwrap();
        assert!(params_end < metrics_start);
        let cell = |k: &str| cols.iter().find(|c| c.0 == k).unwrap().1.clone();
        assert_eq!(cell("ttft_ms_mean"), "12.5");
        assert_eq!(cell("completed"), "3");
        assert_eq!(
            decode_map(&cell("failed_by_reason")),
            vec![("http_500".into(), "2".into())]
        );
        assert_eq!(cell("replica_timeline"), "r1=1|0");
        let pri = decode_nested(&cell("per_priority"));
        assert_eq!(pri[0].0, "1");
        assert_eq!(pri[0].1["ttft_mean"], 7.0);
    }

    #[test]
    fn append_writes_header_once_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/results.csv");
        append_csv(&path, &summary()).unwrap();
        append_csv(&path, &summary()).unwrap();
        let rows = read_csv(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["label"], "a,b");
        assert_eq!(rows[0]["requests_per_replica"], "r1=1");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("label,")).count(), 1);
    }

    #[test]
    fn foreign_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = append_csv(&path, &summary()).unwrap_err().to_string();
        assert!(err.contains("different header"), "{err}");
    }
}
