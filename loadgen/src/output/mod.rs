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
