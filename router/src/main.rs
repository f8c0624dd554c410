//! The `router` binary: `router --config F` serves, `router check-config --config F` validates.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use router::config::{Config, ConfigOverrides, LogFormat, PolicyName};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, reload, util::SubscriberInitExt};

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
    /// Validate the configuration and print the effective result as YAML, each value annotated
    /// with its source (default, file, env ROUTER_*, flag).
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
    let overrides_for_reload = overrides.clone();
    if let Some(Command::CheckConfig) = cli.command {
        let (config, sources) = Config::load_with_sources(&cli.config, &overrides)?;
        println!(
            "# effective config from {}; after each value, where it came from",
            cli.config.display()
        );
        print!("{}", config.to_annotated_yaml(&sources));
        return Ok(());
    }
    let config = Config::load(&cli.config, &overrides)?;
    let log_level = init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(serve(config, cli.config, overrides_for_reload, log_level))
}

/// Sets a new log filter on reload (unless `RUST_LOG` is set, which always wins).
type LevelHook = router::reload::LoggingHook;

fn init_logging(config: &Config) -> anyhow::Result<LevelHook> {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = match &from_env {
        Some(env) => EnvFilter::try_new(env),
        None => EnvFilter::try_new(&config.logging.level),
    }
    .with_context(|| format!("invalid log filter `{}`", config.logging.level))?;
    let (filter, handle) = reload::Layer::new(filter);
    let output = match config.logging.format {
        LogFormat::Full => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Compact => tracing_subscriber::fmt::layer().compact().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
    Ok(Box::new(move |logging| {
        if from_env.is_some() {
            return Ok(());
        }
        let invalid = |reason: String| router::Error::LogFilter {
            filter: logging.level.clone(),
            reason,
        };
        let filter = EnvFilter::try_new(&logging.level).map_err(|e| invalid(e.to_string()))?;
        handle.reload(filter).map_err(|e| invalid(e.to_string()))
    }))
}

async fn serve(
    config: Config,
    path: PathBuf,
    overrides: ConfigOverrides,
    log_level: LevelHook,
) -> anyhow::Result<()> {
    let server = router::start(config).await?;
    println!("router listening on {}", server.url());
    let reload = server.watch_config(path, overrides);
    reload.on_logging(log_level);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => {
                result.context("waiting for ctrl-c")?;
                break;
            }
            _ = term.recv() => break,
            _ = hup.recv() => {
                // The outcome is logged and counted by the reloader.
                let _ = reload.reload().await;
            }
        }
    }
    tracing::info!("shutting down: readiness 503, then draining");
    drop(reload);
    server.shutdown().await;
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
