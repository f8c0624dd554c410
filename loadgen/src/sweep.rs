//! `loadgen sweep`: every policy x request rate through an in-process router.

use crate::arrivals::RequestRate;
use crate::bench::{BenchConfig, http_client, run_benchmark};
use crate::cli::SweepArgs;
use crate::cluster::{reset_prefix_caches, router_config, router_yaml, start_router, start_sims};
use crate::commands::write_results;
use crate::error::{Error, Result};
use crate::output::render_comparison;
use crate::report::write_report;
use crate::summary::RunSummary;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use vllm_sim::{SchedulingPolicy, SimConfig};

/// Where a sweep's replicas come from.
#[derive(Debug, Clone)]
pub enum Replicas {
    /// Start this many simulated replicas with this config.
    Simulated {
        /// Replica config (the port is ignored).
        config: SimConfig,
        /// How many.
        count: usize,
    },
    /// Route to these running replicas.
    External(Vec<String>),
}

/// What a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// Router policies, in order.
    pub policies: Vec<String>,
    /// Request rates, in order.
    pub rates: Vec<RequestRate>,
    /// Template of every run (base URL, policy, rate and replicas are set per run).
    pub bench: BenchConfig,
    /// Base router YAML.
    pub router_base: Option<String>,
    /// The replicas.
    pub replicas: Replicas,
    /// JSON-lines results file.
    pub jsonl: Option<PathBuf>,
    /// CSV results file.
    pub csv: Option<PathBuf>,
}

/// Runs the plan; results are appended to the files after each run. Cancelling stops after the
/// current run.
pub async fn run_sweep(plan: &SweepPlan, cancel: CancellationToken) -> Result<Vec<RunSummary>> {
    if plan.policies.is_empty() || plan.rates.is_empty() {
        return Err(Error::invalid(
            "--policies/--request-rates",
            "need at least one of each",
        ));
    }
    // Fail on a policy the router does not know before running anything.
    for policy in &plan.policies {
        router_config(&router_yaml(
            plan.router_base.as_deref(),
            &["http://127.0.0.1:9".into()],
            policy,
            0,
        )?)
        .map_err(|e| Error::invalid("--policies", format!("{policy}: {e}")))?;
    }
    let client = http_client()?;
    let (sims, urls) = match &plan.replicas {
        Replicas::Simulated { config, count } => {
            let sims = start_sims(*count, config).await?;
            let urls = sims.iter().map(|s| s.url()).collect();
            (sims, urls)
        }
        Replicas::External(urls) => (Vec::new(), urls.clone()),
    };
    let mut results = Vec::new();
    let outcome = async {
        'outer: for policy in &plan.policies {
            for &rate in &plan.rates {
                if cancel.is_cancelled() {
                    break 'outer;
                }
                let refused = reset_prefix_caches(&client, &urls).await;
                if !refused.is_empty() {
                    tracing::warn!(?refused, "replicas did not reset their prefix cache");
                }
                let yaml = router_yaml(
                    plan.router_base.as_deref(),
                    &urls,
                    policy,
                    plan.bench.dataset.seed,
                )?;
                let router = start_router(router_config(&yaml)?, &client).await?;
                let cfg = BenchConfig {
                    base_url: router.url(),
                    policy: Some(policy.clone()),
                    request_rate: rate,
                    replica_urls: urls.clone(),
                    ..plan.bench.clone()
                };
                eprintln!("sweep: policy {policy} at {rate} req/s");
                let run = run_benchmark(&cfg, cancel.clone()).await;
                router.shutdown().await;
                let summary = run?;
                write_results(&summary, plan.jsonl.as_deref(), plan.csv.as_deref())?;
                results.push(summary);
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    for s in sims {
        s.shutdown().await;
    }
    outcome.map(|()| results)
}

/// The sweep subcommand: builds the plan from flags, runs it, prints the comparison.
pub async fn sweep_command(args: &SweepArgs, cancel: CancellationToken) -> Result<Vec<RunSummary>> {
    let w = &args.workload;
    let bench = w.bench_config("http://unused", RequestRate::Infinite, &[])?;
    let router_base = match &args.router_config {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?),
        None => None,
    };
    let replicas = if args.replica_urls.is_empty() {
        Replicas::Simulated {
            config: SimConfig {
                speedup: args.sim_speedup,
                num_gpu_blocks: args.sim_num_gpu_blocks,
                max_num_seqs: args.sim_max_num_seqs,
                block_size: w.block_size,
                // vLLM (and the sim) reject `priority` unless priority scheduling is on.
                scheduling_policy: if w.priority_mix.is_some() {
                    SchedulingPolicy::Priority
                } else {
                    SchedulingPolicy::Fcfs
                },
                ..SimConfig::default()
            },
            count: args.replicas,
        }
    } else {
        Replicas::External(
            args.replica_urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
        )
    };
    let csv = args
        .output
        .csv_path()
        .unwrap_or_else(|| PathBuf::from("results/sweep.csv"));
    let plan = SweepPlan {
        policies: args.policies.clone(),
        rates: args.request_rates.clone(),
        bench,
        router_base,
        replicas,
        jsonl: Some(
            args.output
                .output_file
                .clone()
                .unwrap_or_else(|| csv.with_extension("jsonl")),
        ),
        csv: Some(csv.clone()),
    };
    let results = run_sweep(&plan, cancel).await?;
    print!("{}", render_comparison(&results));
    println!("CSV: {}", csv.display());
    if let Some(dir) = &args.report_dir {
        let index = write_report(&csv, dir)?;
        println!("report: {}", index.display());
    }
    Ok(results)
}
