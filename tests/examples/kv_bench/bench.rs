//! What every scenario shares: the replicas and routers of one run, the completion request,
//! the tally of what it measured and the unlimited-cache oracle it is compared with.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prefix_router_tests::{
    RouterServer, SimConfig, SimServer, router_readiness, start_router, start_sims,
    wait_kv_subscribed, wait_until, with_kv_events, write_numbered_tokenizer,
};
use serde_json::{Value, json};

/// Tokens per KV block, on the replicas and in the router.
pub(crate) const BLOCK: usize = 16;
/// Simulated replicas in every run.
pub(crate) const REPLICAS: usize = 4;

/// What the routed requests of one run measured so far.
#[derive(Default)]
pub(crate) struct Tally {
    prompt: u64,
    cached: u64,
    oracle: u64,
    latencies: Vec<f64>,
}

/// What one run measured.
pub(crate) struct Outcome {
    /// Share of prompt tokens the replicas had cached.
    pub(crate) hit: f64,
    /// Share of prompt tokens one unlimited shared cache would have had.
    pub(crate) oracle: f64,
}

impl Tally {
    /// Adds one routed request's `post` result and the tokens the oracle had cached for it.
    pub(crate) fn add(&mut self, (prompt, cached, secs): (u64, u64, f64), oracle: u64) {
        self.prompt += prompt;
        self.cached += cached;
        self.oracle += oracle;
        self.latencies.push(secs);
    }

    /// Prints the run's line (hit rate, oracle, mean and p99 latency) and returns its outcome.
    pub(crate) fn print(&mut self, label: &str, wall: f64) -> Outcome {
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
pub(crate) struct Oracle(HashSet<u64>);

impl Oracle {
    /// Tokens of `prompt` an unlimited cache holds (whole blocks, never the one holding the
    /// last token, as vLLM counts), then caches it.
    pub(crate) fn observe(&mut self, prompt: &[u32]) -> u64 {
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

/// `precise` or `approximate`, as the output lines name the modes.
pub(crate) fn mode(precise: bool) -> &'static str {
    if precise { "precise" } else { "approximate" }
}

/// Token ids in 1..=50000 drawn from a stream named by `seed`.
pub(crate) fn tokens(seed: u32, len: u32) -> Vec<u32> {
    (0..len)
        .map(|i| 1 + (seed.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)) % 50_000)
        .collect()
}

/// (prompt tokens, cached tokens, seconds) of one completion of token ids.
pub(crate) async fn post(client: &reqwest::Client, url: &str, prompt: &[u32]) -> (u64, u64, f64) {
    let start = Instant::now();
    let v: Value = client
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": "vllm-sim", "prompt": prompt, "max_tokens": 1}))
        .send()
        .await
        .expect("POST /v1/completions")
        .json()
        .await
        .expect("completion body is JSON");
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

/// Waits for every task in `tasks`, re-raising a panic of any of them.
pub(crate) async fn join_all<T>(tasks: impl IntoIterator<Item = tokio::task::JoinHandle<T>>) {
    for t in tasks {
        t.await.expect("bench task panicked");
    }
}

/// A router in front of `sims`: `cost` policy in token mode, each replica's KV-event streams
/// named, used only when `precise`.
fn router_yaml(sims: &[SimServer], precise: bool, tok: &Path) -> String {
    let mut y = String::from("listen: 127.0.0.1:0\nreplicas:\n");
    for (i, s) in sims.iter().enumerate() {
        y.push_str(&format!("  - url: {}\n    name: r{i}\n", s.url()));
        let kv = s.kv_events().expect("sims publish KV events");
        y.push_str(&format!(
            "    kv_events:\n      endpoint: {}\n      replay_endpoint: {}\n",
            kv.endpoint,
            kv.replay_endpoint
                .clone()
                .expect("sims publish a replay endpoint")
        ));
    }
    y.push_str("policy:\n  name: cost\n  seed: 1\nscrape:\n  interval_ms: 200\n");
    y.push_str(&format!(
        "prefix:\n  tokenizer: {}\n  block_size: {BLOCK}\n  kv_events:\n    enabled: {precise}\n",
        tok.display()
    ));
    y
}

/// Replicas and routers of one run.
pub(crate) struct Bench {
    /// Holds the tokenizer; removed when the bench is dropped.
    _dir: tempfile::TempDir,
    sims: Vec<SimServer>,
    routers: Vec<RouterServer>,
    /// The client every request of the run goes through.
    pub(crate) client: reqwest::Client,
}

impl Bench {
    /// Starts `REPLICAS` replicas of `blocks` KV blocks and `routers_n` routers in front of
    /// them; in precise mode, returns once every router follows every replica's events.
    pub(crate) async fn start(routers_n: usize, precise: bool, blocks: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kv_bench_")
            .tempdir()
            .expect("create the bench's temporary directory");
        // Token mode needs a tokenizer to load; every request of the bench is token ids.
        let tok = write_numbered_tokenizer(dir.path(), 0);
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
            wait_kv_subscribed(&sims, routers_n).await;
        }
        Self {
            _dir: dir,
            sims,
            routers,
            client,
        }
    }

    /// The routers' base URLs.
    pub(crate) fn router_urls(&self) -> Arc<Vec<String>> {
        Arc::new(self.routers.iter().map(|r| r.url()).collect())
    }

    /// The replicas' base URLs (for requests that bypass the routers).
    pub(crate) fn sim_urls(&self) -> Arc<Vec<String>> {
        Arc::new(self.sims.iter().map(|s| s.url()).collect())
    }

    /// Shuts the routers down, stops the replicas and removes the temporary directory.
    pub(crate) async fn stop(self) {
        for r in self.routers {
            r.shutdown().await;
        }
        drop(self.sims);
    }
}
