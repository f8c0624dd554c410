//! `loadgen demo`: 4 simulated replicas and the router in-process, the bundled ShareGPT sample
//! replayed under two policies, a side-by-side table and a report.

use crate::bench::BenchConfig;
use crate::cli::DemoArgs;
use crate::cluster::policy_supported;
use crate::dataset::DatasetConfig;
use crate::error::{Error, Result};
use crate::output::render_comparison;
use crate::report::write_report;
use crate::summary::RunSummary;
use crate::sweep::{Replicas, SweepPlan, run_sweep};
use tokio_util::sync::CancellationToken;
use vllm_sim::SimConfig;

/// Replicas in the demo.
pub const DEMO_REPLICAS: usize = 4;

/// KV capacity of each demo replica, in 16-token blocks: about a third of the bundled sample's
/// distinct prompt tokens, so a replica cannot hold every conversation and placement matters.
pub const DEMO_GPU_BLOCKS: usize = 2048;

/// The requested policies, checked against the router so a typo fails before anything starts.
fn resolve_policies(wanted: &[String]) -> Result<Vec<String>> {
    for p in wanted {
        if !policy_supported(p) {
            return Err(Error::invalid(
                "--policies",
                format!("the router has no policy `{p}`"),
            ));
        }
    }
    Ok(wanted.to_vec())
}

/// Runs the demo and writes `args.out/{demo-results.csv, demo-results.jsonl, index.html, ...}`.
pub async fn demo_command(args: &DemoArgs, cancel: CancellationToken) -> Result<Vec<RunSummary>> {
    let policies = resolve_policies(&args.policies)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let csv = args.out.join("demo-results.csv");
    let jsonl = args.out.join("demo-results.jsonl");
    for f in [&csv, &jsonl] {
        if f.exists() {
            std::fs::remove_file(f).map_err(|e| Error::io(f, e))?;
        }
    }
    let plan = SweepPlan {
        policies,
        schedulers: Vec::new(),
        admission: Default::default(),
        rates: vec![args.request_rate],
        bench: BenchConfig {
            dataset: DatasetConfig {
                num_prompts: args.num_prompts,
                seed: args.seed,
                ..DatasetConfig::default()
            },
            max_concurrency: Some(args.max_concurrency),
            label: String::new(),
            ..BenchConfig::default()
        },
        router_base: None,
        replicas: Replicas::Simulated {
            config: Box::new(SimConfig {
                speedup: args.speedup,
                num_gpu_blocks: DEMO_GPU_BLOCKS,
                ..SimConfig::default()
            }),
            count: DEMO_REPLICAS,
        },
        jsonl: Some(jsonl),
        csv: Some(csv.clone()),
    };
    println!(
        "demo: {DEMO_REPLICAS} simulated replicas ({DEMO_GPU_BLOCKS} KV blocks each, speedup {}), \
         {} requests from the bundled ShareGPT sample at {} req/s per policy",
        args.speedup, args.num_prompts, args.request_rate
    );
    let results = run_sweep(&plan, cancel).await?;
    print!("\n{}", render_comparison(&results));
    let index = write_report(&csv, &args.out)?;
    println!("\nresults: {}\nreport:  {}", csv.display(), index.display());
    Ok(results)
}
