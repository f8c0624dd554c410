//! KV-event ingestion: blocks per second one core decodes (msgpack, vLLM 0.24+ map layout,
//! u64 hashes) and applies to the precise index, and the index's memory per cached block.
//!
//! `cargo bench -p router --bench kv_ingest` (release profile). Workload: conversations that
//! grow by a few 16-token blocks per step (each batch one `BlockStored` chained to the
//! previous turn's last block), and an eviction stream that keeps the replica at a fixed
//! number of cached blocks, like a cache under pressure.

#![allow(missing_docs, clippy::unwrap_used)]

use std::alloc::System;
use std::sync::Arc;
use std::time::Instant;

use kv_events::{
    BlockHash, BlockRemoved, BlockStored, EventBatch, KvEvent, Layout, Medium, decode_batch,
    encode_batch,
};
use router::ReplicaId;
use router::kv::{Ingestor, PreciseIndex};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BLOCK: usize = 16;

/// Batches of a workload: `sessions` conversations, each turn storing `per_turn` blocks, with
/// removals of the oldest blocks once more than `cap` are cached.
fn workload(sessions: u64, turns: u64, per_turn: u64, cap: usize) -> (Vec<Vec<u8>>, u64) {
    let mut payloads = Vec::new();
    let mut live: std::collections::VecDeque<u64> = Default::default();
    let mut blocks = 0;
    let mut next_hash = 1u64 << 63;
    let mut last: Vec<Option<u64>> = vec![None; sessions as usize];
    for turn in 0..turns {
        for s in 0..sessions {
            let parent = last[s as usize].map(BlockHash::Int);
            let hashes: Vec<BlockHash> = (0..per_turn)
                .map(|_| {
                    next_hash = next_hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    BlockHash::Int(next_hash)
                })
                .collect();
            let tokens: Vec<u32> = (0..per_turn as usize * BLOCK)
                .map(|i| (s as u32).wrapping_mul(7919) ^ (turn as u32 * 131 + i as u32))
                .collect();
            let mut events = vec![KvEvent::BlockStored(BlockStored {
                block_hashes: hashes.clone(),
                parent_block_hash: parent,
                token_ids: tokens,
                block_size: BLOCK as u32,
                medium: Some(Medium::Gpu),
                ..BlockStored::default()
            })];
            live.extend(hashes.iter().map(BlockHash::key));
            last[s as usize] = hashes.last().map(BlockHash::key);
            blocks += per_turn;
            let mut evicted = Vec::new();
            while live.len() > cap {
                evicted.push(BlockHash::Int(live.pop_front().unwrap()));
            }
            if !evicted.is_empty() {
                events.push(KvEvent::BlockRemoved(BlockRemoved {
                    block_hashes: evicted,
                    medium: Some(Medium::Gpu),
                    group_idx: None,
                }));
            }
            let batch = EventBatch {
                ts: 1.0,
                events,
                data_parallel_rank: Some(0),
            };
            payloads.push(encode_batch(&batch, Layout::Map));
        }
    }
    (payloads, blocks)
}

fn cpu_seconds() -> f64 {
    // Process CPU time from /proc (Linux); wall time elsewhere.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn main() {
    // Throughput: 1.2M blocks stored, cache of 200k blocks (removals flow too).
    let (payloads, blocks) = workload(2_000, 150, 4, 200_000);
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let index = Arc::new(PreciseIndex::new(BLOCK, 2_000, 0.5));
    let mut ingestor = Ingestor::new(ReplicaId(0), index.clone());
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let mut stored = 0;
    for p in &payloads {
        let batch = decode_batch(p).unwrap();
        stored += ingestor.apply(&batch).stored;
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    assert_eq!(stored, blocks);
    println!(
        "decode+apply: {blocks} blocks in {} batches ({:.1} MB msgpack): {:.2} M blocks/s wall, {:.2} M blocks per CPU-second",
        payloads.len(),
        bytes as f64 / 1e6,
        blocks as f64 / wall / 1e6,
        if cpu > 0.0 {
            blocks as f64 / cpu / 1e6
        } else {
            f64::NAN
        },
    );
    drop((ingestor, index));

    // Memory: live heap of the index and the hash map per cached block (no evictions).
    let (payloads, blocks) = workload(2_000, 100, 1, usize::MAX);
    let region = Region::new(GLOBAL);
    let index = Arc::new(PreciseIndex::new(BLOCK, 2_000, 0.5));
    let mut ingestor = Ingestor::new(ReplicaId(0), index.clone());
    for p in &payloads {
        ingestor.apply(&decode_batch(p).unwrap());
    }
    let change = region.change();
    let live = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    println!(
        "memory: {blocks} cached blocks of one replica: {:.1} MB live heap, {:.0} bytes per block",
        live as f64 / 1e6,
        live as f64 / blocks as f64
    );
    drop(payloads);
}
