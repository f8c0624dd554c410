//! `vllm-sim` binary: serve one or more simulated vLLM replicas on consecutive ports.

use anyhow::Context;
use clap::Parser;
use vllm_sim::SimConfig;

/// Simulated vLLM replicas (OpenAI-compatible API, real prefix cache, GPU time model).
#[derive(Debug, Parser)]
#[command(name = "vllm-sim", version, about, long_about = None)]
struct Cli {
    /// Number of replicas, each with its own engine, on ports port, port+1, ...
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. "info" or "vllm_sim=debug".
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
    /// Set every time constant to 0 (overhead benchmarks); overrides the four time flags.
    #[arg(long, default_value_t = false)]
    zero_delay: bool,
    /// Runtime worker threads; 0 = one per core, 1 = a single-threaded runtime.
    #[arg(long, default_value_t = 0)]
    worker_threads: usize,
    /// Replica settings.
    #[command(flatten)]
    sim: SimConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = match cli.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("building the tokio runtime")?;
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).context("bad --log filter")?,
        )
        .init();
    anyhow::ensure!(cli.replicas >= 1, "--replicas must be at least 1");
    let mut config = cli.sim.clone();
    if cli.zero_delay {
        let zero = SimConfig::zero_delay();
        config.prefill_us_per_token = zero.prefill_us_per_token;
        config.prefill_ns_per_cached_pair = zero.prefill_ns_per_cached_pair;
        config.decode_base_ms = zero.decode_base_ms;
        config.decode_ns_per_kv_token = zero.decode_ns_per_kv_token;
    }
    let servers = vllm_sim::start_replicas(config, cli.replicas)
        .await
        .context("starting replicas")?;
    for s in &servers {
        tracing::info!(url = %s.url(), model = %cli.sim.served_model(), "replica listening");
        println!("{}", s.url());
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    tracing::info!("shutting down");
    for s in servers {
        s.shutdown().await;
    }
    Ok(())
}
