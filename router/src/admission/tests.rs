//! The gate under paused time: ordering under each policy, bounds, waits, disconnects, caps.

use std::{sync::Arc, time::Duration};

use super::{
    Admission, AdmissionMetrics, CapsConfig, CapsMode, Eligible, Permit, Prefix, Pressure,
    QueueConfig, QueuePlacement, QueuePolicy, Rejection,
    config::{AdaptiveConfig, ClassConfig},
};
use crate::replicas::ReplicaId;

const R0: ReplicaId = ReplicaId(0);
const R1: ReplicaId = ReplicaId(1);

fn gate(policy: QueuePolicy, max_requests: u32, replicas: u32) -> Admission {
    gate_with(
        QueueConfig {
            policy,
            ..QueueConfig::default()
        },
        CapsConfig {
            mode: CapsMode::Static,
            max_requests,
            ..CapsConfig::default()
        },
        replicas,
    )
}

fn gate_with(queue: QueueConfig, caps: CapsConfig, replicas: u32) -> Admission {
    let g = Admission::new(queue, caps, AdmissionMetrics::unregistered());
    let names: Vec<String> = (0..replicas).map(|i| format!("r{i}")).collect();
    g.sync_replicas(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (ReplicaId(i as u32), n.as_str(), true)),
    );
    g
}

/// Admits and binds to the first replica with room, as the dispatcher does.
async fn take(g: &Admission, priority: i64) -> Permit {
    let mut p = g.admit(priority, 10).await.expect("admitted");
    let id = [R0, R1]
        .into_iter()
        .find(|id| p.has_room(*id))
        .expect("room");
    p.bind(id);
    p
}

/// Lets every runnable task run (time is paused: nothing else moves).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn fcfs_serves_in_arrival_order() {
    let order = [1, 0, 2, 0, 1];
    let served = served_in_turn(QueuePolicy::Fcfs, &[], &order).await;
    assert_eq!(served, order);
}

#[tokio::test(start_paused = true)]
async fn priority_is_strict_then_fcfs() {
    let served = served_in_turn(QueuePolicy::Priority, &[], &[1, 0, 2, 0, 1]).await;
    assert_eq!(served, [0, 0, 1, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn round_robin_gives_the_low_class_its_share() {
    let order: Vec<i64> = (0..8).map(|_| 0).chain((0..8).map(|_| 1)).collect();
    let served = served_in_turn(QueuePolicy::PriorityRoundRobin, &[(0, 3), (1, 1)], &order).await;
    let first_eight = &served[..8];
    let ones = first_eight.iter().filter(|p| **p == 1).count();
    assert_eq!(
        ones, 2,
        "class 1 gets 1 turn in 4 while class 0 waits: {served:?}"
    );
    assert_eq!(served.len(), 16);
}

/// Queues one request per priority in `order` behind a full replica (cap 1), then frees the
/// slot and ends each admitted request in turn; returns the priorities in the order served.
async fn served_in_turn(policy: QueuePolicy, weights: &[(i64, u32)], order: &[i64]) -> Vec<i64> {
    let queue = QueueConfig {
        policy,
        classes: weights
            .iter()
            .map(|&(priority, weight)| ClassConfig {
                priority,
                weight,
                ..ClassConfig::default()
            })
            .collect(),
        ..QueueConfig::default()
    };
    let caps = CapsConfig {
        mode: CapsMode::Static,
        max_requests: 1,
        ..CapsConfig::default()
    };
    let g = gate_with(queue, caps, 1);
    let blocker = take(&g, 0).await;
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(i64, tokio::sync::oneshot::Sender<()>)>();
    for &p in order {
        let (g, tx) = (g.clone(), tx.clone());
        tokio::spawn(async move {
            let permit = take(&g, p).await;
            let (end_tx, end_rx) = tokio::sync::oneshot::channel();
            tx.send((p, end_tx)).ok();
            end_rx.await.ok();
            drop(permit);
        });
        settle().await;
    }
    assert_eq!(g.waiting(), order.len(), "all wait behind the blocker");
    drop(blocker);
    let mut served = vec![];
    for _ in order {
        let (p, end) = rx.recv().await.expect("next admitted");
        settle().await;
        assert!(rx.try_recv().is_err(), "one slot: one request at a time");
        served.push(p);
        end.send(()).ok();
    }
    assert_eq!(g.waiting(), 0);
    served
}

#[tokio::test(start_paused = true)]
async fn caps_bound_each_replica_and_a_freed_slot_admits_the_head() {
    let g = gate(QueuePolicy::Fcfs, 2, 2);
    let mut held = vec![];
    for _ in 0..4 {
        held.push(take(&g, 0).await);
    }
    assert!(!held[0].has_room(R1) || !held[0].has_room(R0));
    let g2 = g.clone();
    let waiter = tokio::spawn(async move { take(&g2, 0).await });
    settle().await;
    assert_eq!(g.waiting(), 1, "both replicas full: the fifth waits");
    assert!(!waiter.is_finished());
    held.remove(0);
    settle().await;
    assert!(waiter.is_finished(), "the freed slot went to the waiter");
    assert_eq!(g.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn full_queue_is_rejected_at_once_and_long_waits_time_out() {
    let queue = QueueConfig {
        max_length: 2,
        max_wait_ms: 5_000,
        retry_after_s: 3,
        classes: vec![ClassConfig {
            priority: 0,
            max_wait_ms: Some(1_000),
            ..ClassConfig::default()
        }],
        ..QueueConfig::default()
    };
    let caps = CapsConfig {
        mode: CapsMode::Static,
        max_requests: 1,
        ..CapsConfig::default()
    };
    let g = gate_with(queue, caps, 1);
    let _blocker = take(&g, 0).await;
    let (g0, g1) = (g.clone(), g.clone());
    let short = tokio::spawn(async move { g0.admit(0, 1).await.map(|_| ()) });
    let long = tokio::spawn(async move { g1.admit(1, 1).await.map(|_| ()) });
    settle().await;
    assert_eq!(
        g.admit(1, 1).await.map(|_| ()),
        Err(Rejection::Full { retry_after_s: 3 })
    );
    let started = tokio::time::Instant::now();
    let short = short.await.expect("task");
    assert!(
        matches!(short, Err(Rejection::Timeout { retry_after_s: 3, waited }) if waited >= Duration::from_secs(1)),
        "{short:?}"
    );
    assert!(
        started.elapsed() <= Duration::from_millis(1_001),
        "class 0's own bound"
    );
    let long = long.await.expect("task");
    assert!(
        matches!(long, Err(Rejection::Timeout { waited, .. }) if waited >= Duration::from_secs(5)),
        "{long:?}"
    );
    assert_eq!(g.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue_at_once() {
    let g = gate(QueuePolicy::Fcfs, 1, 1);
    let blocker = take(&g, 0).await;
    let g2 = g.clone();
    let gone = tokio::spawn(async move { g2.admit(0, 1).await.map(|_| ()) });
    let g3 = g.clone();
    let next = tokio::spawn(async move { take(&g3, 0).await });
    settle().await;
    assert_eq!(g.waiting(), 2);
    gone.abort();
    settle().await;
    assert_eq!(g.waiting(), 1, "removed without waiting for a slot");
    drop(blocker);
    settle().await;
    assert!(next.is_finished(), "the slot went to the one still waiting");
    drop(next.await.expect("task"));
    // Everything given back: a fresh request is admitted at once.
    let p = take(&g, 0).await;
    assert_eq!(g.waiting(), 0);
    drop(p);
}

#[tokio::test(start_paused = true)]
async fn no_caps_admits_everything_and_no_healthy_replica_is_not_held() {
    let g = gate_with(QueueConfig::default(), CapsConfig::default(), 1);
    let permits: Vec<_> = futures_util::future::join_all((0..100).map(|_| g.admit(0, 1))).await;
    assert!(permits.iter().all(Result::is_ok));
    let g = gate(QueuePolicy::Fcfs, 1, 1);
    g.sync_replicas([(R0, "r0", false)]);
    let p = g.admit(0, 1).await;
    assert!(p.is_ok(), "the dispatcher answers 503 itself");
}

#[tokio::test(start_paused = true)]
async fn adaptive_cap_shrinks_then_lets_waiters_in_as_it_grows() {
    let caps = CapsConfig {
        mode: CapsMode::Adaptive,
        max_requests: 8,
        adaptive: AdaptiveConfig {
            min_requests: 1,
            smoothing: 1.0,
            decrease_factor: 0.5,
            increase_step: 1,
            ..AdaptiveConfig::default()
        },
        ..CapsConfig::default()
    };
    let g = gate_with(QueueConfig::default(), caps, 1);
    let hot = Some(Pressure {
        kv_usage: Some(0.99),
        ..Pressure::default()
    });
    for _ in 0..4 {
        g.observe(R0, hot);
    }
    assert_eq!(g.cap(R0).map(|c| c.requests), Some(1));
    let _one = take(&g, 0).await;
    let g2 = g.clone();
    let waiter = tokio::spawn(async move { take(&g2, 0).await });
    settle().await;
    assert_eq!(g.waiting(), 1);
    let cool = Some(Pressure {
        kv_usage: Some(0.1),
        ..Pressure::default()
    });
    g.observe(R0, cool);
    settle().await;
    assert_eq!(g.cap(R0).map(|c| c.requests), Some(2));
    assert!(waiter.is_finished(), "the grown cap admitted the waiter");
}

/// The group of model `name`, served only by replica `only`.
fn group(name: &str, only: ReplicaId) -> Eligible {
    Eligible::new(Some(name.to_owned()), move |id| id == only)
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_for_its_model_group_not_for_any_replica() {
    let g = gate(QueuePolicy::Fcfs, 1, 2);
    let mut a = g
        .admit_to(group("a", R0), 0, 10, || None)
        .await
        .expect("room on r0");
    assert!(a.has_room(R0));
    a.bind(R0);
    let g2 = g.clone();
    let second_a = tokio::spawn(async move {
        let mut p = g2
            .admit_to(group("a", R0), 0, 10, || None)
            .await
            .expect("admitted");
        p.bind(R0);
        p
    });
    settle().await;
    assert_eq!(g.waiting(), 1, "r1 has room but does not serve a");
    // A waiting `a` does not hold back `b`, whose replica has room.
    let mut b = g
        .admit_to(group("b", R1), 0, 10, || None)
        .await
        .expect("b at once");
    b.bind(R1);
    assert!(!second_a.is_finished());
    drop(b);
    settle().await;
    assert!(!second_a.is_finished(), "r1's freed slot is not a's");
    assert_eq!(g.waiting(), 1);
    drop(a);
    settle().await;
    assert!(
        second_a.is_finished(),
        "r0's freed slot went to the waiting a"
    );
    assert_eq!(g.waiting(), 0);
    // A group with no healthy replica is let through (the dispatcher answers 503 itself).
    g.sync_replicas([(R0, "r0", false), (R1, "r1", true)]);
    assert!(g.admit_to(group("a", R0), 0, 10, || None).await.is_ok());
}

#[test]
fn the_output_budget_is_read_from_the_body() {
    let budget = |body: &str| super::output_budget(body.as_bytes());
    assert_eq!(budget(r#"{"prompt":"x","max_tokens":7}"#), 7);
    assert_eq!(
        budget(r#"{"max_tokens":7,"max_completion_tokens":9}"#),
        9,
        "the newer field wins"
    );
    assert_eq!(budget(r#"{"prompt":"x"}"#), 0);
    assert_eq!(budget("not json"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_freed_slot_goes_first_to_a_waiter_whose_prefix_is_there() {
    let queue = QueueConfig {
        affinity_window: 4,
        ..QueueConfig::default()
    };
    let caps = CapsConfig {
        mode: CapsMode::Static,
        max_requests: 1,
        ..CapsConfig::default()
    };
    let g = gate_with(queue, caps, 2);
    let on_r0 = take(&g, 0).await;
    let on_r1 = take(&g, 0).await;
    let waiter = |prefer: Option<ReplicaId>| {
        let g = g.clone();
        tokio::spawn(async move { g.admit_to(Eligible::any(), 0, 10, move || prefer).await })
    };
    let head = waiter(None);
    settle().await;
    let cached_on_r1 = waiter(Some(R1));
    settle().await;
    assert_eq!(g.waiting(), 2);
    drop(on_r1);
    settle().await;
    assert!(
        cached_on_r1.is_finished() && !head.is_finished(),
        "r1's slot went to the waiter whose prefix is on r1, ahead of the head"
    );
    let mut second = cached_on_r1.await.expect("task").expect("admitted");
    second.bind(R1);
    drop(on_r0);
    settle().await;
    assert!(head.is_finished(), "the next free slot went to the head");
    assert_eq!(g.waiting(), 0);
}

/// A gate placing on arrival over `replicas` replicas of cap `max_requests` (and at most
/// `max_tokens` tokens, if set), with `home_tolerance_ms` and `affinity_window`.
fn homes(
    max_requests: u32,
    max_tokens: Option<u64>,
    tolerance_ms: u64,
    window: usize,
) -> Admission {
    let queue = QueueConfig {
        placement: QueuePlacement::Arrival,
        home_tolerance_ms: tolerance_ms,
        affinity_window: window,
        ..QueueConfig::default()
    };
    let caps = CapsConfig {
        mode: CapsMode::Static,
        max_requests,
        max_prompt_tokens: max_tokens,
        ..CapsConfig::default()
    };
    gate_with(queue, caps, 2)
}

/// Waits in the background for a permit of `tokens` and `chunks` homed on `home`.
fn homed(
    g: &Admission,
    home: ReplicaId,
    tokens: u64,
    chunks: &[u64],
) -> tokio::task::JoinHandle<Permit> {
    let g = g.clone();
    let prefix = (!chunks.is_empty()).then(|| {
        Arc::new(Prefix {
            chunks: chunks.to_vec(),
            chunk_tokens: 100,
        })
    });
    tokio::spawn(async move {
        g.admit_in(Eligible::any(), 0, (tokens, prefix), move || Some(home))
            .await
            .expect("admitted")
    })
}

/// Runs the gate's pump (as the controller's tick does) after `ms` more milliseconds.
async fn tick(g: &Admission, ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
    g.observe(R0, None);
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn on_arrival_a_request_waits_for_its_home_and_spills_only_past_the_tolerance() {
    let g = homes(1, None, 1_000, 0);
    settle().await;
    let a = homed(&g, R0, 10, &[]).await.expect("task");
    assert_eq!(a.bound_to(), Some(R0), "bound by the gate, to its home");
    assert!(a.has_room(R0) && !a.has_room(R1), "pinned there until sent");
    let b = homed(&g, R0, 10, &[]);
    settle().await;
    assert_eq!(g.waiting(), 1, "waits for its home although r1 has room");
    tick(&g, 900).await;
    assert!(!b.is_finished(), "within the tolerance");
    tick(&g, 200).await;
    let b = b.await.expect("task");
    assert_eq!(
        b.bound_to(),
        Some(R1),
        "r1 calls nobody home: past the tolerance it spills"
    );
    assert_eq!(g.waiting(), 0);
    drop((a, b));
    let c = homed(&g, R1, 10, &[]).await.expect("task");
    assert_eq!(c.bound_to(), Some(R1), "slots given back");
}

/// Two waiters, on full replicas: `first` homed on r0, then `gap_ms` later `second` homed on
/// r1. Frees r1 and returns the home of the one that got it.
async fn who_gets_r1(tolerance_ms: u64, gap_ms: u64) -> ReplicaId {
    let g = homes(1, None, tolerance_ms, 0);
    let _on_r0 = homed(&g, R0, 10, &[]).await.expect("task");
    let on_r1 = homed(&g, R1, 10, &[]).await.expect("task");
    let first = homed(&g, R0, 10, &[]);
    settle().await;
    tokio::time::advance(Duration::from_millis(gap_ms)).await;
    let second = homed(&g, R1, 10, &[]);
    settle().await;
    assert_eq!(g.waiting(), 2);
    drop(on_r1);
    settle().await;
    let (done, waiting, home) = if first.is_finished() {
        (first, second, R0)
    } else {
        (second, first, R1)
    };
    assert!(!waiting.is_finished(), "one slot, one grant");
    assert_eq!(done.await.expect("task").bound_to(), Some(R1));
    home
}

#[tokio::test(start_paused = true)]
async fn a_replica_takes_its_own_waiter_unless_one_homed_elsewhere_waited_longer_than_the_tolerance()
 {
    assert_eq!(
        who_gets_r1(2_000, 1_500).await,
        R1,
        "affinity within the tolerance"
    );
    assert_eq!(who_gets_r1(1_000, 1_500).await, R0, "fairness past it");
}

#[tokio::test(start_paused = true)]
async fn a_slot_goes_first_to_a_waiter_whose_prompt_family_runs_there() {
    let g = homes(2, None, 60_000, 4);
    let mut family_x = homed(&g, R0, 10, &[7, 8]).await.expect("task");
    family_x.first_byte();
    let other = homed(&g, R0, 10, &[1]).await.expect("task");
    let head = homed(&g, R0, 10, &[5]);
    settle().await;
    let same_family = homed(&g, R0, 10, &[7, 9]);
    settle().await;
    assert_eq!(g.waiting(), 2);
    drop(other);
    settle().await;
    assert!(
        same_family.is_finished() && !head.is_finished(),
        "family 7 runs on r0: its waiter goes ahead of the head"
    );
    let without_window = homes(2, None, 60_000, 0);
    let mut x = homed(&without_window, R0, 10, &[7, 8]).await.expect("task");
    x.first_byte();
    let other = homed(&without_window, R0, 10, &[1]).await.expect("task");
    let head = homed(&without_window, R0, 10, &[5]);
    settle().await;
    let same_family = homed(&without_window, R0, 10, &[7, 9]);
    settle().await;
    drop(other);
    settle().await;
    assert!(
        head.is_finished() && !same_family.is_finished(),
        "window 0: FCFS"
    );
}

#[tokio::test(start_paused = true)]
async fn shared_prompt_chunks_count_once_against_the_token_cap() {
    let g = homes(10, Some(1_000), 60_000, 0);
    // 600 tokens, 500 of them in five chunks.
    let chunks = [1, 2, 3, 4, 5];
    let mut a = homed(&g, R0, 600, &chunks).await.expect("task");
    let b = homed(&g, R0, 600, &chunks);
    settle().await;
    assert_eq!(
        g.waiting(),
        1,
        "a's chunks are not computed yet: b would copy them"
    );
    a.first_byte();
    settle().await;
    let b = b.await.expect("task");
    assert_eq!(b.bound_to(), Some(R0), "now b adds only its 100 own tokens");
    let c = homed(&g, R0, 500, &[]);
    settle().await;
    assert!(!c.is_finished(), "700 + 500 > 1000");
    drop(a);
    settle().await;
    assert!(
        !c.is_finished(),
        "b still holds the chunks: 600 + 500 > 1000"
    );
    drop(b);
    settle().await;
    let c = c.await.expect("task");
    let d = homed(&g, R0, 500, &[]).await.expect("task");
    assert_eq!(
        d.bound_to(),
        Some(R0),
        "everything given back: 500 + 500 fit"
    );
    drop((c, d));
}

#[tokio::test(start_paused = true)]
async fn a_big_waiter_keeps_its_homes_room_and_a_dropped_one_gives_it_back() {
    let g = homes(10, Some(1_000), 60_000, 4);
    let a = homed(&g, R0, 600, &[]).await.expect("task");
    let big = homed(&g, R0, 600, &[]);
    settle().await;
    let small = homed(&g, R0, 100, &[]);
    settle().await;
    assert_eq!(g.waiting(), 2, "the small one does not pass the big head");
    let gone = homed(&g, R0, 100, &[]);
    settle().await;
    gone.abort();
    settle().await;
    assert_eq!(g.waiting(), 2, "a dropped waiter leaves at once");
    drop(a);
    settle().await;
    let (big, small) = (big.await.expect("task"), small.await.expect("task"));
    assert_eq!((big.bound_to(), small.bound_to()), (Some(R0), Some(R0)));
    assert_eq!(g.waiting(), 0);
}
