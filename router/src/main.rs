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
    #[arg(long, value_parser = parse_policy, global = true)]
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

fn parse_policy(name: &str) -> Result<PolicyName, String> {
    serde_yaml::from_str(name)
        .map_err(|_| format!("unknown policy `{name}` (round_robin, random, power_of_two)"))
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
        LogFormat::Json => builder.json().flatten_event(true).init(),
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
