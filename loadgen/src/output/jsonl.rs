//! One JSON object per run, appended to a file; and reading a run back (for baselines).

use super::open_append;
use crate::error::{Error, Result};
use crate::summary::RunSummary;
use std::io::Write;
use std::path::Path;

/// Appends `summary` as one line of JSON to `path` (created with its parent directory).
pub fn append_jsonl(path: &Path, summary: &RunSummary) -> Result<()> {
    let line = serde_json::to_string(summary).map_err(|e| Error::json("run summary", e))?;
    let mut f = open_append(path)?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

/// Reads the last run of a JSON-lines file (or a file holding one JSON object).
pub fn read_last_summary(path: &Path) -> Result<RunSummary> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| {
            Error::invalid("--prefill-baseline", format!("{} is empty", path.display()))
        })?;
    serde_json::from_str(last)
        .or_else(|_| serde_json::from_str(&text))
        .map_err(|e| Error::json(format!("{} (a loadgen results file)", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/results.jsonl");
        let mut a = RunSummary::default();
        a.params.label = "first".into();
        append_jsonl(&path, &a).unwrap();
        a.params.label = "second".into();
        append_jsonl(&path, &a).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(read_last_summary(&path).unwrap().params.label, "second");
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(read_last_summary(&path).is_err());
    }
}
