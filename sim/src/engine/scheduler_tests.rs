//! Unit tests of the scheduler: admission, hits, chunking, preemption, aborts.

use super::*;
use crate::engine::{FinishKind, Outcome};
use crate::tokenizer::block_hashes;
use tokio::sync::oneshot;

fn sched(cfg: SimConfig) -> Scheduler {
    let metrics = Arc::new(Metrics::new(&cfg).unwrap());
    Scheduler::new(&cfg, metrics)
}

fn cfg() -> SimConfig {
    SimConfig {
        block_size: 4,
        num_gpu_blocks: 64,
        ..SimConfig::zero_delay()
    }
}

fn submit(
    s: &mut Scheduler,
    tokens: Vec<u32>,
    max_tokens: usize,
    priority: i64,
) -> oneshot::Receiver<Outcome> {
    let (tx, rx) = oneshot::channel();
    let hashes = block_hashes(&tokens, s.block_size);
    s.handle(Command::Submit(Box::new(SeqRequest {
        tokens,
        hashes,
        max_tokens,
        finish: FinishKind::Length,
        priority,
        arrival: Instant::now(),
        sink: Sink::Once(tx),
    })));
    rx
}

/// Runs steps until idle; returns the number of steps and the work of each.
fn run(s: &mut Scheduler) -> Vec<StepWork> {
    let mut steps = Vec::new();
    while !s.is_idle() {
        let w = s.schedule(Instant::now());
        s.complete_step(Instant::now());
        steps.push(w);
        assert!(steps.len() < 10_000, "scheduler does not finish");
    }
    steps
}

#[test]
fn second_identical_prompt_hits_all_but_last_block() {
    let mut s = sched(cfg());
    let prompt: Vec<u32> = (0..16).collect();
    let mut a = submit(&mut s, prompt.clone(), 3, 0);
    run(&mut s);
    let a = a.try_recv().unwrap();
    assert_eq!(a.cached_tokens, 0);
    assert_eq!(a.completion_tokens, 3);
    let mut b = submit(&mut s, prompt, 3, 0);
    let steps = run(&mut s);
    let b = b.try_recv().unwrap();
    // 16 tokens = 4 full blocks; the last token is always computed, so 3 blocks hit.
    assert_eq!(b.cached_tokens, 12);
    assert_eq!(steps[0].prefill_tokens, 4);
    assert_eq!(steps[0].cached_pairs, 4.0 * 12.0);
    assert_eq!(s.pool().num_free(), 64);
}

#[test]
fn generated_blocks_are_cached_too() {
    let mut s = sched(cfg());
    let prompt: Vec<u32> = (0..8).collect();
    let _a = submit(&mut s, prompt.clone(), 9, 0);
    run(&mut s);
    // prompt (8) + 8 computed output tokens = 4 full blocks cached.
    assert_eq!(s.pool().num_cached(), 4);
}

#[test]
fn max_num_seqs_and_fcfs_order() {
    let mut s = sched(SimConfig {
        max_num_seqs: 2,
        ..cfg()
    });
    let rxs: Vec<_> = (0..4u32)
        .map(|i| submit(&mut s, vec![100 + i; 5], 2, 0))
        .collect();
    s.schedule(Instant::now());
    assert_eq!(s.running.len(), 2);
    assert_eq!(s.waiting.len(), 2);
    s.complete_step(Instant::now());
    run(&mut s);
    for mut rx in rxs {
        assert_eq!(rx.try_recv().unwrap().completion_tokens, 2);
    }
}

#[test]
fn priority_policy_admits_lowest_value_first() {
    let mut s = sched(SimConfig {
        max_num_seqs: 1,
        scheduling_policy: SchedulingPolicy::Priority,
        ..cfg()
    });
    let _low = submit(&mut s, vec![1; 5], 1, 5);
    let _high = submit(&mut s, vec![2; 5], 1, -1);
    s.schedule(Instant::now());
    assert_eq!(s.running[0].tokens[0], 2);
}

#[test]
fn chunked_prefill_respects_budget() {
    let mut s = sched(SimConfig {
        max_num_batched_tokens: 10,
        ..cfg()
    });
    let mut rx = submit(&mut s, (0..25).collect(), 1, 0);
    let steps = run(&mut s);
    let prefill: Vec<u64> = steps.iter().map(|w| w.prefill_tokens).collect();
    assert_eq!(prefill, vec![10, 10, 5]);
    assert_eq!(rx.try_recv().unwrap().completion_tokens, 1);
}

#[test]
fn preempts_newest_when_blocks_run_out() {
    // 6 blocks of 4 tokens; two sequences of 8 prompt tokens each growing by 8 tokens.
    let mut s = sched(SimConfig {
        num_gpu_blocks: 6,
        ..cfg()
    });
    let mut a = submit(&mut s, (0..8).collect(), 9, 0);
    let mut b = submit(&mut s, (100..108).collect(), 9, 0);
    run(&mut s);
    assert!(s.metrics.preemptions.get() >= 1);
    assert_eq!(a.try_recv().unwrap().completion_tokens, 9);
    assert_eq!(b.try_recv().unwrap().completion_tokens, 9);
    assert_eq!(s.pool().num_free(), 6);
}

#[test]
fn waits_for_blocks_instead_of_failing() {
    let mut s = sched(SimConfig {
        num_gpu_blocks: 4,
        ..cfg()
    });
    let _a = submit(&mut s, (0..12).collect(), 2, 0);
    let _b = submit(&mut s, (100..112).collect(), 2, 0);
    s.schedule(Instant::now());
    assert_eq!(s.running.len(), 1, "second request must wait for blocks");
    s.complete_step(Instant::now());
    run(&mut s);
}

#[test]
fn closed_client_is_aborted() {
    let mut s = sched(cfg());
    let rx = submit(&mut s, (0..8).collect(), 100, 0);
    s.schedule(Instant::now());
    s.complete_step(Instant::now());
    drop(rx);
    let steps = run(&mut s);
    assert!(steps.len() <= 1);
    assert_eq!(s.pool().num_free(), 64);
}

#[test]
fn closed_waiting_client_leaves_the_queue() {
    let mut s = sched(SimConfig {
        max_num_seqs: 1,
        ..cfg()
    });
    let _running = submit(&mut s, (0..8).collect(), 100, 0);
    let waiting = submit(&mut s, (100..108).collect(), 1, 0);
    let t0 = Instant::now();
    s.schedule(t0);
    s.complete_step(t0);
    assert_eq!(s.waiting.len(), 1);
    drop(waiting);
    s.schedule(t0 + WAITING_REAP_EVERY);
    assert_eq!(s.waiting.len(), 0);
    assert_eq!(s.running.len(), 1);
}
