//! The default command: one benchmark run, printed and written to the result files.

use crate::bench::run_benchmark;
use crate::cli::RunArgs;
use crate::error::Result;
use crate::output::{append_csv, append_jsonl, render_run};
use crate::summary::RunSummary;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// Appends `s` to the JSON-lines and CSV files that are given.
pub fn write_results(s: &RunSummary, jsonl: Option<&Path>, csv: Option<&Path>) -> Result<()> {
    if let Some(p) = jsonl {
        append_jsonl(p, s)?;
    }
    if let Some(p) = csv {
        append_csv(p, s)?;
    }
    Ok(())
}

/// Runs one benchmark, prints its table and appends it to the result files.
pub async fn run_command(args: &RunArgs, cancel: CancellationToken) -> Result<RunSummary> {
    let cfg = args
        .workload
        .bench_config(&args.base_url, args.request_rate, &args.replica_urls)?;
    let summary = run_benchmark(&cfg, cancel).await?;
    print!("{}", render_run(&summary));
    let csv = args.output.csv_path();
    write_results(&summary, args.output.output_file.as_deref(), csv.as_deref())?;
    if let Some(p) = &args.output.output_file {
        println!("results appended to {}", p.display());
    }
    if let Some(p) = &csv {
        println!("CSV row appended to {}", p.display());
    }
    Ok(summary)
}
