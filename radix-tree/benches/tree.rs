//! Match+insert throughput and latency on a tree holding ~100 MB of ShareGPT prompts across 8
//! tenants with eviction on. Prints a summary (p50, MB/s, 1 vs 2 threads), then runs criterion.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{CopyBatch, Corpus, load_corpus};
use criterion::{Criterion, Throughput};
use radix_tree::{RadixTree, TenantId};

const TENANTS: u32 = 8;
/// Text the tree should hold: ~100 MB in total, capped per tenant.
const TARGET_BYTES: usize = 100 << 20;
const CAP: usize = TARGET_BYTES / TENANTS as usize;
/// Copies of the corpus each thread processes in one timed trial.
const COPIES_PER_TRIAL: u32 = 4;
const TRIALS: usize = 5;

/// One request: match, then insert for the routed tenant. Returns the match for black-boxing.
fn serve(tree: &RadixTree, key: &[u8], tenant: TenantId) -> usize {
    let m = tree.match_prefix(key);
    tree.insert(key, tenant);
    m.longest()
}

/// Serves every request of `batch`, pushing per-request latencies (ns); returns the wall time.
fn run_batch(tree: &RadixTree, batch: &CopyBatch, lat: &mut Vec<u32>) -> Duration {
    let start = Instant::now();
    let mut prev = start;
    for r in &batch.requests {
        black_box(serve(tree, batch.key(r), r.tenant));
        let now = Instant::now();
        lat.push(u32::try_from((now - prev).as_nanos()).unwrap_or(u32::MAX));
        prev = now;
    }
    start.elapsed()
}

/// A tree filled past ~100 MB with caps on, and the next unused copy number.
fn filled_tree(corpus: &Corpus) -> (RadixTree, u32) {
    let tree = RadixTree::new();
    for t in 0..TENANTS {
        tree.set_tenant_cap(TenantId(t), Some(CAP));
    }
    let per_copy = corpus.stored_bytes_per_copy().max(1);
    // Enough copies to reach the caps, plus three more so eviction is in steady state.
    let copies = u32::try_from(TARGET_BYTES.div_ceil(per_copy)).unwrap_or(u32::MAX) + 3;
    let start = Instant::now();
    let mut lat = Vec::new();
    for c in 0..copies {
        run_batch(&tree, &corpus.copy(c, TENANTS), &mut lat);
    }
    println!(
        "fill: {copies} copies in {:.2}s -> {:.1} MB stored, {} nodes, tenants {:?} MB",
        start.elapsed().as_secs_f64(),
        tree.total_size() as f64 / 1e6,
        tree.node_count(),
        (0..TENANTS)
            .map(|t| (tree.tenant_size(TenantId(t)) as f64 / 1e5).round() / 10.0)
            .collect::<Vec<_>>()
    );
    (tree, copies)
}

struct Trial {
    bytes: usize,
    wall: Duration,
    /// CPU time the bench threads actually got (other processes may share the cores).
    cpu: Duration,
    lat: Vec<u32>,
}

/// CPU time consumed so far by the calling thread (Linux schedstat), if available.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// `threads` threads each serve `COPIES_PER_TRIAL` fresh copies at once.
fn trial(tree: &RadixTree, corpus: &Corpus, next_copy: &mut u32, threads: u32) -> Trial {
    let batches: Vec<Vec<CopyBatch>> = (0..threads)
        .map(|_| {
            (0..COPIES_PER_TRIAL)
                .map(|_| {
                    *next_copy += 1;
                    corpus.copy(*next_copy, TENANTS)
                })
                .collect()
        })
        .collect();
    let bytes = batches.iter().flatten().map(|b| b.prompt_bytes).sum();
    let start = Instant::now();
    let results: Vec<(Vec<u32>, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = batches
            .iter()
            .map(|mine| {
                s.spawn(move || {
                    let cpu0 = thread_cpu();
                    let mut lat = Vec::new();
                    for b in mine {
                        run_batch(tree, b, &mut lat);
                    }
                    let cpu = thread_cpu().zip(cpu0).map(|(b, a)| b - a);
                    (lat, cpu.unwrap_or_default())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let wall = start.elapsed();
    Trial {
        bytes,
        wall,
        cpu: results.iter().map(|r| r.1).sum(),
        lat: results.into_iter().flat_map(|r| r.0).collect(),
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted.get(i).copied().unwrap_or(0)) / 1e3
}

/// Throughput of one configuration: by wall clock and per CPU-second the threads actually got.
struct Rates {
    wall_mbps: f64,
    cpu_mbps: f64,
}

/// Prints the median of `trials` (by wall-clock MB/s) and returns its rates.
fn report(tree: &RadixTree, threads: u32, mut trials: Vec<Trial>) -> Rates {
    let mbps = |t: &Trial| t.bytes as f64 / t.wall.as_secs_f64() / 1e6;
    trials.sort_by(|a, b| mbps(a).total_cmp(&mbps(b)));
    let all: Vec<String> = trials.iter().map(|t| format!("{:.0}", mbps(t))).collect();
    let mid = trials.len() / 2;
    let t = &mut trials[mid];
    t.lat.sort_unstable();
    let reqs = t.lat.len();
    let total_us: f64 = t.lat.iter().map(|&x| f64::from(x)).sum::<f64>() / 1e3;
    let rates = Rates {
        wall_mbps: mbps(t),
        cpu_mbps: t.bytes as f64 / t.cpu.as_secs_f64().max(1e-9) / 1e6,
    };
    println!(
        "{threads} thread(s): {:.0} MB/s of prompt text (trials {}), {:.0} req/s; {:.0} MB per CPU-second ({:.2} cores obtained)",
        rates.wall_mbps,
        all.join("/"),
        reqs as f64 / t.wall.as_secs_f64(),
        rates.cpu_mbps,
        t.cpu.as_secs_f64() / t.wall.as_secs_f64(),
    );
    println!(
        "  latency per request: p50 {:.2} us, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.0}, mean {:.2}; {reqs} requests of {:.1} KB mean; tree {:.1} MB",
        percentile(&t.lat, 0.5),
        percentile(&t.lat, 0.9),
        percentile(&t.lat, 0.99),
        percentile(&t.lat, 0.999),
        percentile(&t.lat, 1.0),
        total_us / reqs as f64,
        t.bytes as f64 / reqs as f64 / 1e3,
        tree.total_size() as f64 / 1e6
    );
    rates
}

/// Alternates 1-thread and 2-thread trials (so both see the same background load), then
/// prints medians and the scaling.
fn summary(corpus: &Corpus, tree: &RadixTree, next: &mut u32) {
    let (mut ones, mut twos, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        let a = trial(tree, corpus, next, 1);
        let b = trial(tree, corpus, next, 2);
        let rate = |t: &Trial| t.bytes as f64 / t.wall.as_secs_f64();
        ratios.push(rate(&b) / rate(&a));
        ones.push(a);
        twos.push(b);
    }
    ratios.sort_by(f64::total_cmp);
    let one = report(tree, 1, ones);
    let two = report(tree, 2, twos);
    println!(
        "scaling: 2 threads = {:.2}x one thread by wall clock (median of paired trials; medians {:.2}x); \
         {:.2}x projected on two free cores (2 x per-CPU-second efficiency {:.2}); target >= 1.6x",
        ratios[ratios.len() / 2],
        two.wall_mbps / one.wall_mbps,
        2.0 * two.cpu_mbps / one.cpu_mbps,
        two.cpu_mbps / one.cpu_mbps,
    );
    println!(
        "per thread: {:.0} MB/s wall, {:.0} MB per CPU-second (target >= 1000)",
        one.wall_mbps, one.cpu_mbps
    );
    tree.audit().expect("tree consistent after the bench");
}

fn criterion_benches(c: &mut Criterion, corpus: &Corpus, tree: &RadixTree, next: &mut u32) {
    let sample = corpus.copy(*next, TENANTS);
    let mean = sample.prompt_bytes / sample.requests.len().max(1);
    let mut g = c.benchmark_group("tree_100MB_8_tenants");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(mean as u64));
    g.bench_function("match_insert_fresh_sessions", |b| {
        let mut batch: Option<CopyBatch> = None;
        let mut i = 0;
        b.iter_custom(|iters| {
            let (mut elapsed, mut bytes) = (Duration::ZERO, 0usize);
            for _ in 0..iters {
                if batch.as_ref().is_none_or(|bt| i >= bt.requests.len()) {
                    *next += 1;
                    batch = Some(corpus.copy(*next, TENANTS));
                    i = 0;
                }
                let Some(bt) = batch.as_ref() else { break };
                let r = bt.requests[i];
                i += 1;
                let key = bt.key(&r);
                bytes += key.len();
                let t0 = Instant::now();
                black_box(serve(tree, key, r.tenant));
                elapsed += t0.elapsed();
            }
            // Normalise to the mean prompt size so the reported bytes/s is exact.
            elapsed.mul_f64((mean as f64 * iters as f64) / bytes.max(1) as f64)
        });
    });
    g.bench_function("match_only_recent_prompts", |b| {
        let recent = corpus.copy(*next, TENANTS);
        let mut i = 0;
        b.iter_custom(|iters| {
            let (mut elapsed, mut bytes) = (Duration::ZERO, 0usize);
            for _ in 0..iters {
                let key = recent.key(&recent.requests[i % recent.requests.len()]);
                i += 1;
                bytes += key.len();
                let t0 = Instant::now();
                black_box(tree.match_prefix(key));
                elapsed += t0.elapsed();
            }
            elapsed.mul_f64((mean as f64 * iters as f64) / bytes.max(1) as f64)
        });
    });
    g.finish();
}

fn main() {
    let corpus = Arc::new(load_corpus());
    println!(
        "corpus: {} conversations from {}, {:.1} MB stored per copy; caps {} MB x {TENANTS} tenants",
        corpus.len(),
        corpus.source,
        corpus.stored_bytes_per_copy() as f64 / 1e6,
        CAP / 1_000_000
    );
    let (tree, mut next) = filled_tree(&corpus);
    if std::env::var_os("RADIX_BENCH_SKIP_SUMMARY").is_none() {
        summary(&corpus, &tree, &mut next);
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &corpus, &tree, &mut next);
    c.final_summary();
}
