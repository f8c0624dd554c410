//! `sharegpt` and `tenants`: a loadgen workload, rendered and tokenized exactly as vllm-sim
//! does, sent as token ids in order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use loadgen::dataset::{self, DatasetConfig, DatasetKind, SharedPrefixConfig};
use loadgen::oracle::sim_prompt;
use loadgen::request::Endpoint;
use tokio::sync::{Mutex, Semaphore};

use crate::bench::{Bench, Oracle, Outcome, Tally, join_all, mode, post};

/// Requests in flight at the same time.
const CONCURRENT: usize = 8;

/// A loadgen workload's prompts as vllm-sim tokenizes them (chat template included); prints
/// their count and sizes.
pub(crate) fn prompts(
    kind: DatasetKind,
    prompts: usize,
    path: Option<PathBuf>,
) -> Result<Vec<Vec<u32>>, loadgen::Error> {
    let cfg = DatasetConfig {
        kind,
        path,
        num_prompts: prompts,
        seed: 7,
        shared_prefix: SharedPrefixConfig {
            groups: 64,
            system_prompt_len: 1000,
            question_len: 64,
            zipf: 0.8,
        },
        ..DatasetConfig::default()
    };
    let prompts: Vec<Vec<u32>> = dataset::build(&cfg)?
        .requests
        .iter()
        .map(|r| vllm_sim::tokenize(&sim_prompt(r, Endpoint::Chat)))
        .collect();
    let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    println!(
        "{} prompts of {} tokens on average, {} at most",
        lens.len(),
        lens.iter().sum::<usize>() / lens.len().max(1),
        lens.iter().max().unwrap_or(&0)
    );
    Ok(prompts)
}

/// One run of `prompts`, in order, `CONCURRENT` at a time, round-robin over `routers_n`
/// routers.
pub(crate) async fn run(
    name: &str,
    prompts: &Arc<Vec<Vec<u32>>>,
    routers_n: usize,
    blocks: usize,
    precise: bool,
) -> Outcome {
    let b = Bench::start(routers_n, precise, blocks).await;
    let urls = b.router_urls();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut oracle = Oracle::default();
    let gate = Arc::new(Semaphore::new(CONCURRENT));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (k, prompt) in prompts.iter().enumerate() {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let best = oracle.observe(prompt);
        let (client, url, tally, prompts) = (
            b.client.clone(),
            urls[k % urls.len()].clone(),
            tally.clone(),
            prompts.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let got = post(&client, &url, &prompts[k]).await;
            drop(permit);
            tally.lock().await.add(got, best);
        }));
    }
    join_all(tasks).await;
    let wall = started.elapsed().as_secs_f64();
    let label = format!(
        "{:>11} {name} routers={routers_n} prompts={} blocks={blocks}",
        mode(precise),
        prompts.len()
    );
    let out = tally.lock().await.print(&label, wall);
    b.stop().await;
    out
}
