//! Precise (KV events) against approximate (sent-prefix tree) routing on multi-turn sessions
//! when the router does not see all the traffic: a share of turns sent straight to a random
//! replica, and/or the traffic spread round-robin over several router instances.
//!
//! `cargo run --release -p prefix-router-tests --example kv_bench -- [ROUTERS] [BYPASS]
//! [SESSIONS] [BLOCKS]` (defaults 1, 0.3, 48, 800): 4 vllm-sim replicas with the H100 time model
//! and `BLOCKS` 16-token KV blocks each, sessions of 8 turns (a 512-token private prefix, then
//! +128 tokens per turn), 12 sessions at a time, `cost` policy in token mode. Prints, per mode,
//! the replicas' prefix-cache hit rate on routed requests, the same against an oracle that
//! always hits the previous turn, and mean / p99 latency of the routed requests (1 output token:
//! about TTFT).

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prefix_router_tests::{
    SimConfig, SimServer, start_router, start_sims, wait_until, with_kv_events,
    write_word_level_tokenizer,
};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

const BASE: u32 = 512;
const TURN: u32 = 128;
const TURNS: u32 = 8;

#[derive(Default)]
struct Tally {
    prompt: u64,
    cached: u64,
    oracle: u64,
    latencies: Vec<f64>,
}

fn session_prompt(s: u32, turn: u32) -> Vec<u32> {
    let len = BASE + turn * TURN;
    (0..len)
        .map(|i| 1 + (s.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)) % 50_000)
        .collect()
}

fn tokenizer(dir: &std::path::Path) -> std::path::PathBuf {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    write_word_level_tokenizer(dir, vocab)
}

fn router_yaml(sims: &[SimServer], precise: bool, tok: &std::path::Path) -> String {
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
        "prefix:\n  tokenizer: {}\n  block_size: 16\n  kv_events:\n    enabled: {precise}\n",
        tok.display()
    ));
    y
}

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
    (
        u["prompt_tokens"].as_u64().unwrap_or(0),
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        start.elapsed().as_secs_f64(),
    )
}

async fn run(routers_n: usize, bypass: f64, sessions: u32, blocks: usize, precise: bool) {
    let dir = std::env::temp_dir().join(format!("kv_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tok = tokenizer(&dir);
    let cfg = with_kv_events(SimConfig {
        num_gpu_blocks: blocks,
        ..SimConfig::default()
    });
    let sims = start_sims(4, cfg).await;
    let mut routers = Vec::new();
    for _ in 0..routers_n {
        routers.push(start_router(&router_yaml(&sims, precise, &tok)).await);
    }
    let client = reqwest::Client::new();
    if precise {
        for r in &routers {
            wait_until(Duration::from_secs(30), "streams live", || async {
                let v: Value = client
                    .get(format!("{}/readiness", r.url()))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
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
    let urls: Arc<Vec<String>> = Arc::new(routers.iter().map(|r| r.url()).collect());
    let sim_urls: Arc<Vec<String>> = Arc::new(sims.iter().map(|s| s.url()).collect());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next_router = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(12));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let (client, urls, sim_urls, tally, next_router, gate) = (
            client.clone(),
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
                let prompt = session_prompt(s, turn);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let draw = (rng >> 11) as f64 / (1u64 << 53) as f64;
                if turn > 0 && draw < bypass {
                    let target = &sim_urls[(rng % sim_urls.len() as u64) as usize];
                    post(&client, target, &prompt).await;
                } else {
                    let i = next_router.fetch_add(1, Ordering::Relaxed) as usize % urls.len();
                    let (p, c, secs) = post(&client, &urls[i], &prompt).await;
                    let reusable = (p.saturating_sub(1) / 16) * 16;
                    let mut t = tally.lock().await;
                    t.prompt += p;
                    t.cached += c;
                    t.oracle += prev_len.min(reusable);
                    t.latencies.push(secs);
                }
                prev_len = u64::from(BASE + turn * TURN);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let mut t = tally.lock().await;
    t.latencies.sort_by(f64::total_cmp);
    let n = t.latencies.len();
    let mean = t.latencies.iter().sum::<f64>() / n as f64;
    let p99 = t.latencies[(n * 99 / 100).min(n - 1)];
    let hit = t.cached as f64 / t.prompt as f64;
    let oracle = t.oracle as f64 / t.prompt as f64;
    println!(
        "{:>11} routers={routers_n} bypass={bypass}: routed {n}, hit {:.1}% (oracle {:.1}%, {:.2} of it), mean {:.1} ms, p99 {:.1} ms, wall {:.1} s",
        if precise { "precise" } else { "approximate" },
        hit * 100.0,
        oracle * 100.0,
        hit / oracle,
        mean * 1e3,
        p99 * 1e3,
        wall
    );
    for r in routers {
        r.shutdown().await;
    }
    drop(sims);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let routers: usize = args.first().map_or(1, |a| a.parse().unwrap());
    let bypass: f64 = args.get(1).map_or(0.3, |a| a.parse().unwrap());
    let sessions: u32 = args.get(2).map_or(48, |a| a.parse().unwrap());
    let blocks: usize = args.get(3).map_or(800, |a| a.parse().unwrap());
    for precise in [false, true] {
        run(routers, bypass, sessions, blocks, precise).await;
    }
}
