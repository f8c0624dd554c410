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

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loadgen::dataset::{self, DatasetConfig, DatasetKind, SharedPrefixConfig};
use loadgen::oracle::sim_prompt;
use loadgen::request::Endpoint;
use prefix_router_tests::{
    RouterServer, SimConfig, SimServer, router_readiness, start_router, start_sims, wait_until,
    with_kv_events, write_word_level_tokenizer,
};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

const BLOCK: usize = 16;
const REPLICAS: usize = 4;

#[derive(Default)]
struct Tally {
    prompt: u64,
    cached: u64,
    oracle: u64,
    latencies: Vec<f64>,
}

/// What one run measured.
struct Outcome {
    hit: f64,
    oracle: f64,
}

impl Tally {
    fn add(&mut self, (prompt, cached, secs): (u64, u64, f64), oracle: u64) {
        self.prompt += prompt;
        self.cached += cached;
        self.oracle += oracle;
        self.latencies.push(secs);
    }

    fn print(&mut self, label: &str, wall: f64) -> Outcome {
        self.latencies.sort_by(f64::total_cmp);
        let n = self.latencies.len().max(1);
        let mean = self.latencies.iter().sum::<f64>() / n as f64;
        let p99 = self.latencies.get((n * 99 / 100).min(n - 1)).copied();
        let hit = self.cached as f64 / self.prompt.max(1) as f64;
        let oracle = self.oracle as f64 / self.prompt.max(1) as f64;
        println!(
            "{label}: routed {}, hit {:.1}% (oracle {:.1}%, {:.3} of it), mean {:.1} ms, p99 {:.1} ms, wall {wall:.1} s",
            self.latencies.len(),
            hit * 100.0,
            oracle * 100.0,
            hit / oracle.max(1e-9),
            mean * 1e3,
            p99.unwrap_or(0.0) * 1e3,
        );
        Outcome { hit, oracle }
    }
}

/// One shared prefix cache of unlimited size: the most any placement could hit.
#[derive(Default)]
struct Oracle(HashSet<u64>);

impl Oracle {
    /// Tokens of `prompt` an unlimited cache holds (whole blocks, never the one holding the
    /// last token, as vLLM counts), then caches it.
    fn observe(&mut self, prompt: &[u32]) -> u64 {
        let hashes = vllm_sim::block_hashes(prompt, BLOCK);
        let max = prompt.len().saturating_sub(1) / BLOCK;
        let hit = hashes[..max.min(hashes.len())]
            .iter()
            .take_while(|h| self.0.contains(*h))
            .count();
        self.0.extend(hashes);
        (hit * BLOCK) as u64
    }
}

fn tokenizer(dir: &Path) -> PathBuf {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    write_word_level_tokenizer(dir, vocab)
}

fn router_yaml(sims: &[SimServer], precise: bool, tok: &Path) -> String {
    let mut y = String::from("listen: 127.0.0.1:0\nreplicas:\n");
    for (i, s) in sims.iter().enumerate() {
        y.push_str(&format!("  - url: {}\n    name: r{i}\n", s.url()));
        let kv = s.kv_events().unwrap();
        y.push_str(&format!(
            "    kv_events:\n      endpoint: {}\n      replay_endpoint: {}\n",
            kv.endpoint,
            kv.replay_endpoint.clone().unwrap()
        ));
    }
    y.push_str("policy:\n  name: cost\n  seed: 1\nscrape:\n  interval_ms: 200\n");
    y.push_str(&format!(
        "prefix:\n  tokenizer: {}\n  block_size: {BLOCK}\n  kv_events:\n    enabled: {precise}\n",
        tok.display()
    ));
    y
}

/// (prompt tokens, cached tokens, seconds) of one completion of token ids.
async fn post(client: &reqwest::Client, url: &str, prompt: &[u32]) -> (u64, u64, f64) {
    let start = Instant::now();
    let v: Value = client
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": "vllm-sim", "prompt": prompt, "max_tokens": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let u = &v["usage"];
    assert!(u.is_object(), "request failed: {v}");
    (
        u["prompt_tokens"].as_u64().unwrap_or(0),
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        start.elapsed().as_secs_f64(),
    )
}

/// Replicas and routers of one run.
struct Bench {
    dir: PathBuf,
    sims: Vec<SimServer>,
    routers: Vec<RouterServer>,
    client: reqwest::Client,
}

impl Bench {
    async fn start(routers_n: usize, precise: bool, blocks: usize) -> Self {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kv_bench_{}_{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = tokenizer(&dir);
        let cfg = with_kv_events(SimConfig {
            num_gpu_blocks: blocks,
            max_model_len: 65_536,
            ..SimConfig::default()
        });
        let sims = start_sims(REPLICAS, cfg).await;
        let mut routers = Vec::new();
        for _ in 0..routers_n {
            routers.push(start_router(&router_yaml(&sims, precise, &tok)).await);
        }
        let client = reqwest::Client::new();
        if precise {
            for r in &routers {
                wait_until(Duration::from_secs(30), "streams live", || async {
                    let v = router_readiness(r).await;
                    v["kv_events"]
                        .as_object()
                        .is_some_and(|m| m.values().all(|s| s == "live"))
                })
                .await;
            }
            for s in &sims {
                let kv = s.kv_events().unwrap();
                wait_until(Duration::from_secs(30), "subscribed", || async {
                    kv.subscribers() >= routers_n
                })
                .await;
            }
        }
        Self {
            dir,
            sims,
            routers,
            client,
        }
    }

    fn router_urls(&self) -> Arc<Vec<String>> {
        Arc::new(self.routers.iter().map(|r| r.url()).collect())
    }

    fn sim_urls(&self) -> Arc<Vec<String>> {
        Arc::new(self.sims.iter().map(|s| s.url()).collect())
    }

    async fn stop(self) {
        for r in self.routers {
            r.shutdown().await;
        }
        drop(self.sims);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mode(precise: bool) -> &'static str {
    if precise { "precise" } else { "approximate" }
}

/// Token ids in 1..=50000 drawn from a stream named by `seed`.
fn tokens(seed: u32, len: u32) -> Vec<u32> {
    (0..len)
        .map(|i| 1 + (seed.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)) % 50_000)
        .collect()
}

const DOC: u32 = 2048;
const QUESTION: u32 = 64;

/// Documents warmed straight on the replicas by a batch job, then queried through one router.
async fn ingest(precise: bool, docs: u32, per_doc: u32, blocks: usize, think: u64) -> Outcome {
    let b = Bench::start(1, precise, blocks).await;
    let router = b.router_urls()[0].clone();
    let sim_urls = b.sim_urls();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let oracle = Arc::new(Mutex::new(Oracle::default()));
    let users = Arc::new(Semaphore::new(12));
    let started = Instant::now();
    let mut workers = Vec::new();
    for r in 0..REPLICAS as u32 {
        let (client, sim, router, tally, oracle, users) = (
            b.client.clone(),
            sim_urls[r as usize].clone(),
            router.clone(),
            tally.clone(),
            oracle.clone(),
            users.clone(),
        );
        // The batch job's worker for replica r: documents r, r+4, ... one at a time; users
        // ask about a document once it is in, while the next one is being ingested.
        workers.push(tokio::spawn(async move {
            let mut asking: VecDeque<tokio::task::JoinHandle<()>> = VecDeque::new();
            for d in (r..docs).step_by(REPLICAS) {
                while asking.len() > per_doc as usize {
                    asking.pop_front().unwrap().await.unwrap();
                }
                let doc = tokens(1_000_000 + d, DOC);
                post(&client, &sim, &doc).await;
                oracle.lock().await.observe(&doc);
                for q in 0..per_doc {
                    let mut prompt = doc.clone();
                    prompt.extend(tokens(2_000_000 + d * 16 + q, QUESTION));
                    let (client, router, tally, oracle, users) = (
                        client.clone(),
                        router.clone(),
                        tally.clone(),
                        oracle.clone(),
                        users.clone(),
                    );
                    asking.push_back(tokio::spawn(async move {
                        if think > 0 {
                            tokio::time::sleep(Duration::from_millis(think)).await;
                        }
                        let _user = users.acquire_owned().await.unwrap();
                        let best = oracle.lock().await.observe(&prompt);
                        let got = post(&client, &router, &prompt).await;
                        tally.lock().await.add(got, best);
                    }));
                }
            }
            for t in asking {
                t.await.unwrap();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let label = format!(
        "{:>11} ingest docs={docs} queries/doc={per_doc} blocks={blocks}",
        mode(precise)
    );
    let out = tally.lock().await.print(&label, wall);
    b.stop().await;
    out
}

const BASE: u32 = 512;
const TURN: u32 = 128;
const TURNS: u32 = 8;

/// Multi-turn sessions, a share of turns sent straight to a random replica.
async fn sessions(routers_n: usize, bypass: f64, sessions: u32, blocks: usize, precise: bool) {
    let b = Bench::start(routers_n, precise, blocks).await;
    let urls = b.router_urls();
    let sim_urls = b.sim_urls();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next_router = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(12));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let (client, urls, sim_urls, tally, next_router, gate) = (
            b.client.clone(),
            urls.clone(),
            sim_urls.clone(),
            tally.clone(),
            next_router.clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let mut rng = u64::from(s).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut prev_len = 0u64;
            for turn in 0..TURNS {
                let prompt = tokens(s, BASE + turn * TURN);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let draw = (rng >> 11) as f64 / (1u64 << 53) as f64;
                if turn > 0 && draw < bypass {
                    let target = &sim_urls[(rng % sim_urls.len() as u64) as usize];
                    post(&client, target, &prompt).await;
                } else {
                    let i = next_router.fetch_add(1, Ordering::Relaxed) as usize % urls.len();
                    let got = post(&client, &urls[i], &prompt).await;
                    let reusable = (got.0.saturating_sub(1) / BLOCK as u64) * BLOCK as u64;
                    tally.lock().await.add(got, prev_len.min(reusable));
                }
                prev_len = u64::from(BASE + turn * TURN);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let label = format!(
        "{:>11} sessions routers={routers_n} bypass={bypass}",
        mode(precise)
    );
    tally.lock().await.print(&label, wall);
    b.stop().await;
}

/// A loadgen workload's prompts as vllm-sim tokenizes them (chat template included).
fn workload_prompts(kind: DatasetKind, prompts: usize, path: Option<PathBuf>) -> Vec<Vec<u32>> {
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
    let prompts: Vec<Vec<u32>> = dataset::build(&cfg)
        .unwrap()
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
    prompts
}

/// A loadgen workload sent in order, 8 at a time, round-robin over `routers_n` routers.
async fn workload(
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
    let gate = Arc::new(Semaphore::new(8));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (k, prompt) in prompts.iter().enumerate() {
        let permit = gate.clone().acquire_owned().await.unwrap();
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
    for t in tasks {
        t.await.unwrap();
    }
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

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T
where
    T::Err: std::fmt::Debug,
{
    args.get(i).map_or(default, |a| a.parse().unwrap())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map_or("ingest", String::as_str);
    match scenario {
        "ingest" => {
            let (docs, per_doc, blocks, think) = (
                arg(&args, 1, 120u32),
                arg(&args, 2, 2u32),
                arg(&args, 3, 800usize),
                arg(&args, 4, 0u64),
            );
            let approx = ingest(false, docs, per_doc, blocks, think).await;
            let precise = ingest(true, docs, per_doc, blocks, think).await;
            println!(
                "precise hit / approximate hit: {:.2}",
                precise.hit / approx.hit.max(1e-9)
            );
        }
        "sessions" => {
            let routers = arg(&args, 1, 1usize);
            let bypass = arg(&args, 2, 0.3f64);
            let n = arg(&args, 3, 48u32);
            let blocks = arg(&args, 4, 800usize);
            for precise in [false, true] {
                sessions(routers, bypass, n, blocks, precise).await;
            }
        }
        "sharegpt" | "tenants" => {
            let (kind, prompts_d, blocks_d) = if scenario == "sharegpt" {
                (DatasetKind::Sharegpt, 400, 4000)
            } else {
                (DatasetKind::SharedPrefix, 600, 1600)
            };
            let routers = arg(&args, 1, 3usize);
            let n = arg(&args, 2, prompts_d);
            let blocks = arg(&args, 3, blocks_d);
            let path = args.get(4).map(PathBuf::from);
            let prompts = Arc::new(workload_prompts(kind, n, path));
            let one = workload(scenario, &prompts, 1, blocks, true).await;
            let many = workload(scenario, &prompts, routers, blocks, true).await;
            let approx = workload(scenario, &prompts, routers, blocks, false).await;
            println!(
                "{routers} precise routers: {:.3} of one router's hit rate, {:.3} of the oracle (approximate: {:.3} of one, {:.3} of the oracle)",
                many.hit / one.hit.max(1e-9),
                many.hit / many.oracle.max(1e-9),
                approx.hit / one.hit.max(1e-9),
                approx.hit / approx.oracle.max(1e-9),
            );
        }
        other => panic!("unknown scenario {other:?}: ingest, sessions, sharegpt or tenants"),
    }
}
