//! `sessions`: multi-turn sessions, a share of turns sent straight to a random replica
//! (past the routers).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{Mutex, Semaphore};

use crate::bench::{BLOCK, Bench, Tally, join_all, mode, post, tokens};

/// Tokens of a session's first turn.
const BASE: u32 = 512;
/// Tokens each later turn adds.
const TURN: u32 = 128;
/// Turns per session.
const TURNS: u32 = 8;
/// Sessions running at the same time.
const CONCURRENT: usize = 12;

/// One run of `sessions` sessions over `routers_n` routers, a share `bypass` of turns (after
/// the first) sent straight to a replica.
pub(crate) async fn run(
    routers_n: usize,
    bypass: f64,
    sessions: u32,
    blocks: usize,
    precise: bool,
) {
    let b = Bench::start(routers_n, precise, blocks).await;
    let urls = b.router_urls();
    let sim_urls = b.sim_urls();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next_router = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(CONCURRENT));
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
            let _permit = gate.acquire_owned().await.expect("semaphore never closed");
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
    join_all(tasks).await;
    let wall = started.elapsed().as_secs_f64();
    let label = format!(
        "{:>11} sessions routers={routers_n} bypass={bypass}",
        mode(precise)
    );
    tally.lock().await.print(&label, wall);
    b.stop().await;
}
