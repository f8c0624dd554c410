//! The engine task: drain commands, plan a step, sleep until its absolute deadline, apply it.

use super::cost::CostModel;
use super::{Command, Scheduler};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;

/// If the loop falls further behind its simulated clock than this, the clock is reset to now
/// instead of running steps back to back to catch up.
const MAX_LAG: Duration = Duration::from_millis(20);

/// With zero step durations, how long the loop runs steps before yielding to other tasks.
const ZERO_DELAY_SLICE: Duration = Duration::from_micros(200);

/// Runs until every handle to the engine is dropped.
pub(crate) async fn run(mut sched: Scheduler, cost: CostModel, mut rx: UnboundedReceiver<Command>) {
    // End of the previous step on the simulated clock, while the engine is busy.
    let mut clock: Option<Instant> = None;
    let mut idle_steps = 0u32;
    let mut last_yield = Instant::now();
    loop {
        if sched.is_idle() || idle_steps > 1 {
            clock = None;
            sched.publish_gauges();
            match rx.recv().await {
                Some(cmd) => sched.handle(cmd),
                None => return,
            }
            idle_steps = 0;
        }
        loop {
            match rx.try_recv() {
                Ok(cmd) => sched.handle(cmd),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if sched.is_idle() => return,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        let start = Instant::now();
        let work = sched.schedule(start);
        if work.is_empty() {
            // Nothing could run (for example everything was just preempted): retry once, then
            // wait for news instead of spinning.
            idle_steps += 1;
            continue;
        }
        idle_steps = 0;
        let dur = cost.duration(&work);
        if dur.is_zero() {
            // Zero-delay mode: run steps back to back for a short slice before yielding, so
            // that a response's tokens leave in few writes instead of one per token.
            if last_yield.elapsed() >= ZERO_DELAY_SLICE {
                tokio::task::yield_now().await;
                last_yield = Instant::now();
            }
        } else {
            let base = match clock {
                Some(end) if start.saturating_duration_since(end) < MAX_LAG => end,
                _ => start,
            };
            let deadline = base + dur;
            if deadline > Instant::now() {
                tokio::time::sleep_until(deadline.into()).await;
            } else {
                // Catching up after timer rounding: no sleep, but stay cooperative.
                tokio::task::yield_now().await;
            }
            clock = Some(deadline);
        }
        sched.complete_step(Instant::now());
        sched.publish_gauges();
    }
}
