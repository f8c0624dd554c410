//! Memory per stored unit and per node, counted by a counting global allocator.
//!
//! Fills a tree the way the `tree` bench does (~100 MB of ShareGPT prompts, 8 tenants with caps,
//! eviction on), once with byte keys and once with token-id keys, and prints live heap bytes.

mod common;

use std::alloc::System;

use common::{Corpus, load_corpus};
use radix_tree::{KeyUnit, RadixTree, TenantId};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TENANTS: u32 = 8;
const TARGET_BYTES: usize = 100 << 20;

/// Pseudo-tokenizer for the token-mode run: one u32 id per 4 bytes of text.
fn tokens(text: &[u8]) -> Vec<u32> {
    text.chunks(4)
        .map(|c| c.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)))
        .collect()
}

/// Streams `copies` copies into a capped tree (keys converted by `convert`) and prints what the
/// tree costs. Rendering buffers are freed before reading the counters, so only the tree counts.
fn measure<K: KeyUnit>(
    label: &str,
    corpus: &Corpus,
    copies: u32,
    cap_units: usize,
    convert: impl Fn(&[u8]) -> Vec<K>,
) {
    let region = Region::new(GLOBAL);
    let tree: RadixTree<K> = RadixTree::new();
    for t in 0..TENANTS {
        tree.set_tenant_cap(TenantId(t), Some(cap_units));
    }
    let mut streamed = 0;
    for c in 0..copies {
        let batch = corpus.copy(c, TENANTS);
        streamed += batch.prompt_bytes;
        for r in &batch.requests {
            tree.insert(&convert(batch.key(r)), r.tenant);
        }
    }
    let s = region.change();
    // stats_alloc already folds realloc growth/shrink into bytes_(de)allocated.
    let live = s.bytes_allocated.saturating_sub(s.bytes_deallocated);
    let live_allocs = s.allocations.saturating_sub(s.deallocations);
    let units = tree.total_size();
    let nodes = tree.node_count().max(1);
    let unit_bytes = std::mem::size_of::<K>();
    let text_bytes = units * unit_bytes;
    println!(
        "{label}: {:.0} MB of prompts streamed; tree keeps {:.1} MB of key text ({units} units x {unit_bytes} B) in {nodes} nodes; live heap {:.1} MB in {live_allocs} allocations",
        streamed as f64 / 1e6,
        text_bytes as f64 / 1e6,
        live as f64 / 1e6
    );
    println!(
        "  {:.3} bytes per byte of stored text ({:.2} bytes per unit), {:.0} bytes per node beyond its label text; \
         with ~16 B of malloc overhead per allocation: {:.3}x",
        live as f64 / text_bytes.max(1) as f64,
        live as f64 / units.max(1) as f64,
        (live - text_bytes.min(live)) as f64 / nodes as f64,
        (live + 16 * live_allocs) as f64 / text_bytes.max(1) as f64,
    );
    tree.audit().expect("consistent tree");
}

fn main() {
    let corpus = load_corpus();
    let per_copy = corpus.stored_bytes_per_copy().max(1);
    let copies = u32::try_from(TARGET_BYTES.div_ceil(per_copy)).unwrap_or(1) + 3;
    println!(
        "corpus: {} conversations from {}; {copies} copies streamed into {TENANTS} capped tenants",
        corpus.len(),
        corpus.source
    );
    let cap = TARGET_BYTES / TENANTS as usize;
    measure("bytes (u8)", &corpus, copies, cap, <[u8]>::to_vec);
    measure("tokens (u32)", &corpus, copies, cap / 4, tokens);
}
