//! Writing results: a table on stdout, a JSON line per run, a CSV row per run.

mod csv_row;
mod jsonl;
mod table;

pub use csv_row::{append_csv, columns, decode_map, decode_nested, param_columns, read_csv};
pub use jsonl::{append_jsonl, read_last_summary};
pub use table::{render_comparison, render_run};
