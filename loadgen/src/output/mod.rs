//! Writing results: a table on stdout, a JSON line per run, a CSV row per run.

mod csv_row;
mod jsonl;
mod row;
mod table;

pub use csv_row::{
    append_csv, columns, decode_map, decode_nested, param_columns, read_csv, read_rows,
};
pub use jsonl::{append_jsonl, read_last_summary};
pub use row::{CsvRow, Latencies, RunOutcome, RunTotals};
pub use table::{render_comparison, render_run};

use crate::error::{Error, Result};
use std::path::Path;

/// Opens `path` for appending, creating it and its parent directory when missing.
fn open_append(path: &Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}
