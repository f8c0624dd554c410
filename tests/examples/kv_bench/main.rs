//! Precise (KV events) against approximate (sent-prefix tree) routing, on workloads where the
//! router does not see everything the replicas cache. 4 vllm-sim replicas (H100 time model,
//! `BLOCKS` 16-token KV blocks each), `cost` policy in token mode, requests of 1 output token
//! (latency is about TTFT). Per mode it prints the replicas' prefix-cache hit rate on routed
//! requests, the same against an oracle (one shared cache of unlimited size over the same
//! requests), and mean / p99 latency of the routed requests.
//!
//! `cargo run --release -p prefix-router-tests --example kv_bench -- SCENARIO ARGS...`:
//! - `ingest [DOCS] [QUERIES_PER_DOC] [BLOCKS] [THINK_MS]` (120 2 800 0), one router: a batch
//!   job sends each new 2048-token document straight to one replica (its own static sharding,
//!   past the router), and users then ask `QUERIES_PER_DOC` 64-token questions about it through
//!   the router (`THINK_MS` after it is in), 12 users at a time. The
//!   approximate tree never saw the documents, and believes its own copies stay while the batch
//!   job keeps the caches full and evicting.
//! - `sessions [ROUTERS] [BYPASS] [SESSIONS] [BLOCKS]` (1 0.3 48 800): 8-turn sessions, a share
//!   `BYPASS` of turns sent straight to a random replica, round-robin over `ROUTERS` routers.
//! - `sharegpt [ROUTERS] [PROMPTS] [BLOCKS] [FILE]` (3 400 4000) and `tenants [ROUTERS] [PROMPTS]
//!   [BLOCKS]` (3 600 1600): loadgen's ShareGPT multi-turn workload (bundled sample, or a
//!   ShareGPT JSON `FILE`) and its
//!   shared-prefix workload with 64 tenants (1000-token system prompts, Zipf 0.8), rendered and
//!   tokenized exactly as vllm-sim does and sent as token ids, 8 at a time, round-robin over
//!   `ROUTERS` routers; compared with precise mode behind one router.
//!
//! One file a scenario (`ingest.rs`, `sessions.rs`, `workload.rs` for the last two); what they
//! share is in `bench.rs`.

mod bench;
mod ingest;
mod sessions;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use loadgen::dataset::DatasetKind;

/// What `--help` prints (and a wrong command line, on stderr).
const USAGE: &str = "\
usage: kv_bench SCENARIO [ARGS...]   (defaults in parentheses)
  ingest   [DOCS] [QUERIES_PER_DOC] [BLOCKS] [THINK_MS]   (120 2 800 0)
  sessions [ROUTERS] [BYPASS] [SESSIONS] [BLOCKS]         (1 0.3 48 800)
  sharegpt [ROUTERS] [PROMPTS] [BLOCKS] [FILE]            (3 400 4000, bundled sample)
  tenants  [ROUTERS] [PROMPTS] [BLOCKS]                   (3 600 1600)
Each runs 4 vllm-sim replicas and compares precise (KV events) with approximate routing.";

/// The positional argument `i`, or `default` when absent; an unparsable one is an error that
/// names it.
fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> Result<T, String> {
    match args.get(i) {
        None => Ok(default),
        Some(a) => a.parse().map_err(|_| {
            format!(
                "argument {i} (`{a}`) is not a valid {}",
                std::any::type_name::<T>()
            )
        }),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map_or("ingest", String::as_str);
    if matches!(scenario, "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(scenario, &args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv_bench: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs `scenario` with its positional arguments (`args[1..]`).
async fn run(scenario: &str, args: &[String]) -> Result<(), String> {
    match scenario {
        "ingest" => {
            let (docs, per_doc, blocks, think) = (
                arg(args, 1, 120u32)?,
                arg(args, 2, 2u32)?,
                arg(args, 3, 800usize)?,
                arg(args, 4, 0u64)?,
            );
            let approx = ingest::run(false, docs, per_doc, blocks, think).await;
            let precise = ingest::run(true, docs, per_doc, blocks, think).await;
            println!(
                "precise hit / approximate hit: {:.2}",
                precise.hit / approx.hit.max(1e-9)
            );
        }
        "sessions" => {
            let routers = arg(args, 1, 1usize)?;
            let bypass = arg(args, 2, 0.3f64)?;
            let n = arg(args, 3, 48u32)?;
            let blocks = arg(args, 4, 800usize)?;
            for precise in [false, true] {
                sessions::run(routers, bypass, n, blocks, precise).await;
            }
        }
        "sharegpt" | "tenants" => {
            let (kind, prompts_d, blocks_d) = if scenario == "sharegpt" {
                (DatasetKind::Sharegpt, 400, 4000)
            } else {
                (DatasetKind::SharedPrefix, 600, 1600)
            };
            let routers = arg(args, 1, 3usize)?;
            let n = arg(args, 2, prompts_d)?;
            let blocks = arg(args, 3, blocks_d)?;
            let path = args.get(4).map(PathBuf::from);
            let prompts =
                Arc::new(workload::prompts(kind, n, path).map_err(|e| format!("workload: {e}"))?);
            let one = workload::run(scenario, &prompts, 1, blocks, true).await;
            let many = workload::run(scenario, &prompts, routers, blocks, true).await;
            let approx = workload::run(scenario, &prompts, routers, blocks, false).await;
            println!(
                "{routers} precise routers: {:.3} of one router's hit rate, {:.3} of the oracle (approximate: {:.3} of one, {:.3} of the oracle)",
                many.hit / one.hit.max(1e-9),
                many.hit / many.oracle.max(1e-9),
                approx.hit / one.hit.max(1e-9),
                approx.hit / approx.oracle.max(1e-9),
            );
        }
        other => {
            return Err(format!(
                "unknown scenario {other:?}: ingest, sessions, sharegpt or tenants"
            ));
        }
    }
    Ok(())
}
