//! The `router` binary: `router --config F` serves, `router check-config --config F` validates.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use router::config::{Config, ConfigOverrides, LogFormat, PolicyName};
use tracing_subscriber::EnvFilter;

/// Prefix-aware reverse proxy for OpenAI-compatible LLM servers (vLLM, SGLang).
///
/// Settings come from the YAML file, then ROUTER_* environment variables (nested keys joined by
/// `__`, e.g. ROUTER_POLICY__NAME=random), then these flags; later sources win.
#[derive(Debug, Parser)]
#[command(name = "router", version)]
struct Cli {
    /// YAML config file.
    #[arg(
        long,
        short,
        env = "ROUTER_CONFIG",
        default_value = "config.yaml",
        global = true
    )]
    config: PathBuf,
    /// Listen address, e.g. 0.0.0.0:8000 (overrides `listen`).
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Routing policy (overrides `policy.name`).
    #[arg(long, value_enum, global = true)]
    policy: Option<PolicyName>,
    /// Log filter such as `info` or `router=debug` (overrides `logging.level`; RUST_LOG wins).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and print the effective result as YAML.
    CheckConfig,
}

/// mimalloc: the proxy allocates and frees many small buffers per request; measurably cheaper
/// than the system allocator in the overhead benchmark (router/bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = ConfigOverrides {
        listen: cli.listen,
        policy: cli.policy,
        log_level: cli.log_level.clone(),
    };
    let config = Config::load(&cli.config, &overrides)?;
    if let Some(Command::CheckConfig) = cli.command {
        println!("# effective config from {}", cli.config.display());
        print!("{}", config.to_yaml());
        return Ok(());
    }
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(serve(config))
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(&config.logging.level),
    }
    .with_context(|| format!("invalid log filter `{}`", config.logging.level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.logging.format {
        LogFormat::Full => builder.init(),
        LogFormat::Compact => builder.compact().init(),
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = router::start(config).await?;
    println!("router listening on {}", server.url());
    shutdown_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, ValueEnum};

    #[test]
    fn policy_flag_accepts_and_lists_every_policy() {
        for p in PolicyName::value_variants() {
            let cli = Cli::try_parse_from(["router", "--policy", p.as_str()]);
            assert_eq!(cli.map(|c| c.policy).ok(), Some(Some(*p)));
        }
        let err = Cli::try_parse_from(["router", "--policy", "fastest"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let help = Cli::command().render_help().to_string();
        for p in PolicyName::value_variants() {
            assert!(err.contains(p.as_str()), "{err}");
            assert!(help.contains(p.as_str()), "{help}");
        }
    }
}
