//! Unit tests of the cost model.

use super::*;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::SmallRng};

fn idle(matched: u64) -> CostCandidate {
    CostCandidate {
        matched_tokens: matched,
        cache_fill: 0.0,
        excess_share: 0.0,
        queued_behind: 0.0,
        best_matched_tokens: 0,
        arrival_rate: 0.0,
        load: ReplicaLoadView::default(),
    }
}

#[test]
fn traffic_above_a_fair_share_is_charged() {
    let cfg = CostConfig::default();
    let mut hot = idle(1000);
    hot.excess_share = 0.2;
    let charged = cfg.estimate(1100, &hot).balance_s;
    assert!(
        (charged - 0.2 * cfg.share_excess_s).abs() < 1e-12,
        "{charged}"
    );
    let other = idle(0);
    let pick = cfg.choose(1100, &[hot, other], &mut rng()).unwrap().0;
    assert_eq!(
        pick, 1,
        "20% over the fair share outweighs a 1000-token hit"
    );
    hot.excess_share = 0.0;
    assert_eq!(cfg.choose(1100, &[hot, other], &mut rng()).unwrap().0, 0);
}

#[test]
fn traffic_below_a_fair_share_is_credited() {
    let cfg = CostConfig::default();
    let mut starved = idle(0);
    starved.excess_share = -0.05;
    let credit = cfg.estimate(1100, &starved).balance_s;
    assert!(
        (credit + 0.05 * cfg.share_excess_s).abs() < 1e-12,
        "{credit}"
    );
    let holder = idle(1000);
    assert_eq!(
        cfg.choose(1100, &[holder, starved], &mut rng()).unwrap().0,
        1,
        "5% under the fair share outweighs a 1000-token hit"
    );
    starved.excess_share = -7.0;
    assert_eq!(
        cfg.estimate(1100, &starved).balance_s,
        -cfg.share_excess_s,
        "the credit is bounded"
    );
}

#[test]
fn a_miss_on_a_full_cache_also_pays_for_what_it_evicts() {
    let cfg = CostConfig::default();
    let mut full = idle(0);
    full.cache_fill = 1.0;
    let (e_full, e_empty) = (cfg.estimate(1000, &full), cfg.estimate(1000, &idle(0)));
    let expected = cfg.displacement_factor * 0.033;
    assert!((e_full.displace_s - expected).abs() < 1e-9, "{e_full:?}");
    assert_eq!(e_empty.displace_s, 0.0);
    assert_eq!(
        e_full.ttft_s(),
        e_empty.ttft_s(),
        "displacement is not time to first token"
    );
    // A new prefix goes to the emptier cache; a held one stays put even on a full replica.
    assert_eq!(cfg.choose(1000, &[full, idle(0)], &mut rng()).unwrap().0, 1);
    let mut owner = idle(900);
    owner.cache_fill = 1.0;
    owner.load.pending_tokens = 1200; // 40 ms queued: more than the 30 ms miss, less than 2x
    full.load = ReplicaLoadView::default();
    assert_eq!(cfg.choose(1000, &[owner, full], &mut rng()).unwrap().0, 0);
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

#[test]
fn idle_replicas_keep_a_prefix_on_its_owner() {
    let cfg = CostConfig::default();
    let cands = [idle(0), idle(1800), idle(0), idle(0)];
    let (pick, est) = cfg.choose(2000, &cands, &mut rng()).unwrap();
    assert_eq!(pick, 1);
    assert_eq!(est.uncached_tokens, 200);
}

#[test]
fn busy_owner_spreads_to_an_idle_replica() {
    let cfg = CostConfig::default();
    let mut owner = idle(1800);
    owner.load.pending_tokens = 8000; // ~264 ms of prefill queued
    owner.load.inflight = 6;
    let cands = [owner, idle(0)];
    let (pick, _) = cfg.choose(2000, &cands, &mut rng()).unwrap();
    assert_eq!(
        pick, 1,
        "queue on the owner costs more than a 2000-token miss"
    );
    // A short queue is cheaper than the miss: affinity stays.
    owner.load.pending_tokens = 300;
    owner.load.inflight = 2;
    let (pick, _) = cfg.choose(2000, &[owner, idle(0)], &mut rng()).unwrap();
    assert_eq!(pick, 0);
}

#[test]
fn requests_decoding_on_the_owner_spread_a_hot_prefix() {
    let cfg = CostConfig::default();
    let mut owner = idle(500);
    owner.load.inflight = 20;
    owner.load.decoding_tokens = 20 * 600;
    let (pick, _) = cfg.choose(520, &[owner, idle(0)], &mut rng()).unwrap();
    assert_eq!(pick, 1, "20 decoding requests outweigh a 500-token hit");
    owner.load.inflight = 1;
    owner.load.decoding_tokens = 600;
    let (pick, _) = cfg.choose(520, &[owner, idle(0)], &mut rng()).unwrap();
    assert_eq!(pick, 0);
}

#[test]
fn external_waiting_and_kv_pressure_count() {
    let cfg = CostConfig::default();
    let mut owner = idle(1000);
    owner.load.external = Some(ExternalLoad {
        waiting: 10.0,
        running: 0.0,
        kv_usage: None,
    });
    assert_eq!(
        cfg.choose(1000, &[owner, idle(0)], &mut rng()).unwrap().0,
        1
    );
    owner.load.external = Some(ExternalLoad {
        waiting: 0.0,
        running: 0.0,
        kv_usage: Some(1.0),
    });
    let est = cfg.estimate(1000, &owner);
    assert!((est.kv_s - cfg.kv_pressure_s).abs() < 1e-12);
    assert_eq!(
        cfg.choose(1000, &[owner, idle(0)], &mut rng()).unwrap().0,
        1
    );
    owner.load.external = Some(ExternalLoad {
        waiting: 0.0,
        running: 0.0,
        kv_usage: Some(0.5),
    });
    assert_eq!(cfg.estimate(1000, &owner).kv_s, 0.0);
}

/// Four replicas each with `queue` prefill tokens waiting (`behind` requests on the least
/// loaded), the first holding 1800 of a 2000-token prompt and `extra` more tokens queued.
fn overloaded(queue: u64, extra: u64, behind: f64) -> [CostCandidate; 4] {
    let mut c = [idle(0); 4];
    c[0].matched_tokens = 1800;
    for (i, c) in c.iter_mut().enumerate() {
        c.load.pending_tokens = queue + if i == 0 { extra } else { 0 };
        c.load.inflight = 8;
        c.queued_behind = behind;
    }
    c
}

#[test]
fn under_uniform_overload_a_miss_pays_for_everyone_queued_behind_it() {
    let cfg = CostConfig::default();
    // 3000 tokens more queued on the owner (99 ms) than elsewhere: more than the 59 ms of
    // prefill a miss costs this request alone, so without the externality it would move.
    let off = CostConfig {
        miss_externality: 0.0,
        ..cfg.clone()
    };
    assert_ne!(
        off.choose(2000, &overloaded(6000, 3000, 0.0), &mut rng())
            .unwrap()
            .0,
        0
    );
    // With 8 requests waiting everywhere, the miss delays each of them by its prefill.
    let (pick, est) = cfg
        .choose(2000, &overloaded(6000, 3000, 8.0), &mut rng())
        .unwrap();
    assert_eq!(pick, 0, "affinity kept under uniform overload");
    assert!((est.externality_s - 8.0 * est.prefill_s).abs() < 1e-12);
    let miss = cfg.estimate(2000, &overloaded(6000, 3000, 8.0)[1]);
    assert!((miss.externality_s - 8.0 * miss.prefill_s).abs() < 1e-12);
    assert_eq!(
        miss.ttft_s(),
        off.estimate(2000, &overloaded(6000, 3000, 8.0)[1]).ttft_s()
    );
}

#[test]
fn a_bottleneck_owner_still_spreads_when_a_replica_has_no_queue() {
    let cfg = CostConfig::default();
    // Only the owner is loaded: nobody need wait behind a miss elsewhere (queued_behind 0).
    let mut c = overloaded(0, 9000, 0.0);
    for other in &mut c[1..] {
        other.load.inflight = 0;
    }
    assert_ne!(cfg.choose(2000, &c, &mut rng()).unwrap().0, 0);
}

#[test]
fn learnt_speed_scales_each_term() {
    let cfg = CostConfig::default();
    let mut c = idle(500);
    c.load.pending_tokens = 1000;
    let base = cfg.estimate(1500, &c);
    c.load.speed = Speed {
        overhead: 2.0,
        prefill: 3.0,
        queue: 4.0,
    };
    let e = cfg.estimate(1500, &c);
    assert!((e.steps_s - 2.0 * base.steps_s).abs() < 1e-12);
    assert!((e.prefill_s - 3.0 * base.prefill_s).abs() < 1e-12);
    assert!((e.queue_s - 4.0 * base.queue_s).abs() < 1e-12);
    let p = base.prediction();
    assert!((p.total_s() - (base.steps_s + base.prefill_s + base.queue_s)).abs() < 1e-12);
    c.load.speed = Speed::uniform(f64::NAN);
    assert_eq!(cfg.estimate(1500, &c), base, "an invalid speed reads as 1");
}

#[test]
fn lag_of_a_stalled_replica_counts() {
    let cfg = CostConfig::default();
    let mut owner = idle(1000);
    owner.load.lag_s = 5.0;
    assert_eq!(
        cfg.choose(1000, &[owner, idle(0)], &mut rng()).unwrap().0,
        1
    );
}

#[test]
fn ties_go_to_the_less_loaded_then_random_never_list_order() {
    let cfg = CostConfig {
        busy_s_per_request: 0.0,
        ..CostConfig::default()
    };
    let mut loaded = idle(0);
    loaded.load.inflight = 3;
    // Same estimate (busy term off), fewer in flight wins.
    assert_eq!(
        cfg.choose(100, &[loaded, idle(0)], &mut rng()).unwrap().0,
        1
    );
    // Exact ties spread over every candidate with a seeded draw.
    let mut r = rng();
    let mut seen = [0u32; 4];
    for _ in 0..400 {
        seen[cfg.choose(100, &[idle(0); 4], &mut r).unwrap().0] += 1;
    }
    assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    assert!(cfg.choose(100, &[], &mut r).is_none());
}

proptest! {
    // Up to 8k-token prompts: beyond ~8.4k the measured attention term makes the first few
    // cached tokens cost slightly more than they save, a real effect of the GPU model.
    #[test]
    fn more_cache_never_costs_more_and_more_queue_never_costs_less(
        prompt in 0u64..8_192, matched in 0u64..8_192, extra in 0u64..5_000,
        pending in 0u64..50_000, inflight in 0u64..100, decoding in 0u64..100_000,
        slower in 1.0f64..4.0,
    ) {
        let cfg = CostConfig::default();
        let load = ReplicaLoadView { inflight, pending_tokens: pending, decoding_tokens: decoding,
            external: None, lag_s: 0.0, speed: Speed::default() };
        let a = cfg.estimate(prompt, &CostCandidate { matched_tokens: matched, cache_fill: 0.5, excess_share: 0.0, queued_behind: 0.0, best_matched_tokens: 0, arrival_rate: 0.0, load });
        let b = cfg.estimate(prompt, &CostCandidate { matched_tokens: matched + extra, cache_fill: 0.5, excess_share: 0.0, queued_behind: 0.0, best_matched_tokens: 0, arrival_rate: 0.0, load });
        prop_assert!(b.total_s() <= a.total_s() + 1e-12);
        let busier = ReplicaLoadView { pending_tokens: pending + extra, inflight: inflight + 1, ..load };
        let c = cfg.estimate(prompt, &CostCandidate { matched_tokens: matched, cache_fill: 0.5, excess_share: 0.0, queued_behind: 0.0, best_matched_tokens: 0, arrival_rate: 0.0, load: busier });
        prop_assert!(c.total_s() >= a.total_s());
        let slow = ReplicaLoadView { speed: Speed::uniform(slower), ..load };
        let d = cfg.estimate(prompt, &CostCandidate { matched_tokens: matched, cache_fill: 0.5, excess_share: 0.0, queued_behind: 0.0, best_matched_tokens: 0, arrival_rate: 0.0, load: slow });
        prop_assert!(d.total_s() >= a.total_s() - 1e-12);
        prop_assert!(a.total_s().is_finite() && a.total_s() >= 0.0);
    }
}

/// The owner of 1800 of a 2000-token prompt with `queued` prefill tokens waiting, and an idle
/// replica holding none of it; both know who holds the most.
fn owner_and_idle(queued: u64) -> [CostCandidate; 2] {
    let mut owner = idle(1800);
    owner.load.pending_tokens = queued;
    owner.load.inflight = 2;
    let mut other = idle(0);
    for c in [&mut owner, &mut other] {
        c.best_matched_tokens = 1800;
    }
    [owner, other]
}

#[test]
fn a_near_tie_keeps_the_conversation_where_its_prefix_lives() {
    let cfg = CostConfig::default();
    let no_margin = CostConfig {
        affinity_margin: 0.0,
        ..cfg.clone()
    };
    // 3000 tokens queued on the owner (99 ms) against a 59 ms miss: the miss is cheaper for
    // this request alone, not once the later turns that follow the prefix are counted.
    let near = owner_and_idle(3000);
    assert_eq!(no_margin.choose(2000, &near, &mut rng()).unwrap().0, 1);
    assert_eq!(cfg.choose(2000, &near, &mut rng()).unwrap().0, 0);
    let given_up = cfg.estimate(2000, &near[1]).affinity_s;
    let expected = cfg.affinity_margin * (cfg.prefill_s_per_token * 1800.0 - cfg.tie_tolerance_s);
    assert!((given_up - expected).abs() < 1e-12, "{given_up}");
    assert_eq!(cfg.estimate(2000, &near[0]).affinity_s, 0.0);
    // A shared greeting of a few tokens gives nothing up: new conversations stay ties.
    let mut greeting = owner_and_idle(0);
    greeting[0].matched_tokens = 20;
    for c in &mut greeting {
        c.best_matched_tokens = 20;
    }
    assert_eq!(cfg.estimate(2000, &greeting[1]).affinity_s, 0.0);
    // An owner slowed by decoding (a hot prefix's requests), not by a queue: no margin.
    let mut decoding = owner_and_idle(0);
    decoding[0].load.inflight = 30;
    decoding[0].load.decoding_tokens = 30 * 2000;
    assert_eq!(cfg.estimates(2000, &decoding)[1].affinity_s, 0.0);
    assert_eq!(cfg.choose(2000, &decoding, &mut rng()).unwrap().0, 1);
    // A holder taking twice the mean request rate is a hot spot: no margin either.
    let mut hot = near;
    hot[0].arrival_rate = 20.0;
    hot[1].arrival_rate = 0.0;
    assert_eq!(cfg.estimates(2000, &hot)[1].affinity_s, 0.0);
    assert_eq!(cfg.choose(2000, &hot, &mut rng()).unwrap().0, 1);
    hot[1].arrival_rate = 20.0;
    assert_eq!(cfg.choose(2000, &hot, &mut rng()).unwrap().0, 0);
    // A queue far dearer than the margin still spreads.
    assert_eq!(
        cfg.choose(2000, &owner_and_idle(12_000), &mut rng())
            .unwrap()
            .0,
        1
    );
}

#[test]
fn requests_arriving_during_a_miss_pay_for_its_prefill() {
    let cfg = CostConfig::default();
    let [mut owner, mut other] = owner_and_idle(0);
    let quiet = cfg.estimate(2000, &other);
    assert_eq!(quiet.externality_s, 0.0, "no traffic, nobody waits");
    other.arrival_rate = 20.0;
    owner.arrival_rate = 20.0;
    let miss = cfg.estimate(2000, &other);
    let expected = cfg.arrival_externality * 20.0 * miss.ttft_s() * miss.prefill_s;
    assert!((miss.externality_s - expected).abs() < 1e-12, "{miss:?}");
    assert_eq!(miss.ttft_s(), quiet.ttft_s(), "not this request's own time");
    // The hit's prefill is a tenth of the miss's, and so is what it costs the arrivals.
    assert!(cfg.estimate(2000, &owner).externality_s < 0.2 * miss.externality_s);
}
