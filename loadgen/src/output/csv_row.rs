//! One CSV row per run: parameters first, then metrics. Maps (per replica, per priority, over
//! time) are packed into one cell as `key=value;key=value`.

use super::open_append;
use super::row::{CsvRow, Latencies, serde_cells};
use crate::error::{Error, Result};
use crate::summary::{RunParams, RunSummary};
use std::collections::HashMap;
use std::path::Path;

/// The parameter columns of a run: names and order are `RunParams`'s serde fields, so a new
/// parameter is one field there (`None` is an empty cell).
pub fn param_columns(p: &RunParams) -> Result<Vec<(String, String)>> {
    serde_cells(p).map_err(|e| Error::Csv {
        path: "<run parameters>".into(),
        reason: e.to_string(),
    })
}

/// The CSV columns of `s`, in order: parameters, then metrics (the fields of [`CsvRow`]).
pub fn columns(s: &RunSummary) -> Result<Vec<(String, String)>> {
    CsvRow::of(s).cells().map_err(|e| Error::Csv {
        path: "<run summary>".into(),
        reason: e.to_string(),
    })
}

pub(super) fn encode(pairs: impl Iterator<Item = (String, String)>) -> String {
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
    let csv_err = csv_error(path);
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
    let file = open_append(path)?;
    let mut w = csv::Writer::from_writer(file);
    if !existing {
        w.write_record(&header)
            .map_err(|e| csv_err(e.to_string()))?;
    }
    w.write_record(cols.iter().map(|(_, v)| v.as_str()))
        .map_err(|e| csv_err(e.to_string()))?;
    w.flush().map_err(|e| Error::io(path, e))
}

/// Builds the [`Error::Csv`] about `path` for a reason.
fn csv_error(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::Csv {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads every row of a results CSV as column name -> cell.
pub fn read_csv(path: &Path) -> Result<Vec<HashMap<String, String>>> {
    let csv_err = csv_error(path);
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

/// Reads every row of a results CSV back as a typed [`CsvRow`]; a missing column gets its
/// default, so older files still load. A file without loadgen's columns is an error.
pub fn read_rows(path: &Path) -> Result<Vec<CsvRow>> {
    let csv_err = csv_error(path);
    let mut r = csv::Reader::from_path(path).map_err(|e| csv_err(e.to_string()))?;
    let header = r.headers().map_err(|e| csv_err(e.to_string()))?.clone();
    let marker = Latencies::first_column();
    if header.is_empty() {
        return Ok(Vec::new());
    }
    if !header.iter().any(|h| h == marker) {
        return Err(csv_err(format!(
            "is not a loadgen results file (no {marker} column)"
        )));
    }
    r.records()
        .enumerate()
        .map(|(i, rec)| {
            let rec = rec.map_err(|e| csv_err(e.to_string()))?;
            CsvRow::from_record(&header, &rec).map_err(|e| csv_err(format!("row {}: {e}", i + 1)))
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
