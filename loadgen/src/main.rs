//! The `loadgen` binary: parses flags, handles Ctrl-C, and runs the chosen command.

use anyhow::Context;
use clap::Parser;
use loadgen::cli::{Cli, Command};
use tokio_util::sync::CancellationToken;

/// First Ctrl-C: stop sending and drain; second: exit at once.
fn handle_ctrl_c(cancel: CancellationToken) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!(
            "\nCtrl-C: no new requests; waiting for requests in flight (Ctrl-C again to quit)"
        );
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cancel = CancellationToken::new();
    handle_ctrl_c(cancel.clone());
    match cli.command {
        None => {
            loadgen::commands::run_command(&cli.run, cancel)
                .await
                .context("benchmark failed")?;
        }
        Some(Command::Sweep(args)) => {
            loadgen::sweep::sweep_command(&args, cancel)
                .await
                .context("sweep failed")?;
        }
        Some(Command::Report(args)) => {
            let index = loadgen::report::write_report(&args.csv, &args.out)
                .with_context(|| format!("report from {} failed", args.csv.display()))?;
            println!("report written to {}", index.display());
        }
        Some(Command::Demo(args)) => {
            loadgen::demo::demo_command(&args, cancel)
                .await
                .context("demo failed")?;
        }
    }
    Ok(())
}
