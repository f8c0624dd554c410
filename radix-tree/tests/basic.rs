//! Unit-level behaviour of every public operation through the public API.

use std::sync::Arc;

use radix_tree::{ManualClock, PrefixMatch, RadixTree, Residency, TenantId, TenantMatch};

const A: TenantId = TenantId(1);
const B: TenantId = TenantId(2);
const C: TenantId = TenantId(3);

fn tree() -> (RadixTree, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1));
    (RadixTree::with_clock(clock.clone()), clock)
}

#[test]
fn empty_tree_matches_nothing() {
    let (t, _) = tree();
    let m = t.match_prefix(b"hello");
    assert_eq!(m.key_len(), 5);
    assert!(m.tenants().is_empty());
    assert_eq!(m.best(), None);
    assert_eq!(m.longest(), 0);
    assert_eq!((t.total_size(), t.node_count()), (0, 0));
    assert!(t.tenants().is_empty());
    t.audit().unwrap();
}

#[test]
fn empty_key_is_ignored() {
    let (t, _) = tree();
    t.insert(b"", A);
    assert_eq!(t.tenant_size(A), 0);
    assert_eq!(t.match_prefix(b"").tenants(), &[]);
    t.audit().unwrap();
}

#[test]
fn match_reports_each_tenant_longest_prefix() {
    let (t, clock) = tree();
    t.insert(b"User: hi Assistant: hello", A);
    clock.advance(1);
    t.insert(b"User: hi Assistant: howdy", B);
    clock.advance(1);
    t.insert(b"User: bye", C);
    t.audit().unwrap();

    let m = t.match_prefix(b"User: hi Assistant: hello User: more");
    assert_eq!(m.matched(A), 25);
    assert_eq!(m.matched(B), 21, "shares 'User: hi Assistant: h'");
    assert_eq!(m.matched(C), 6, "shares 'User: '");
    assert_eq!(m.best(), Some((A, 25)));
    assert_eq!(m.best_tenants().collect::<Vec<_>>(), vec![A]);
    let ids: Vec<_> = m.tenants().iter().map(|x| x.tenant).collect();
    assert_eq!(ids, vec![A, B, C], "sorted by id");

    let m = t.match_prefix(b"Use");
    assert_eq!((m.matched(A), m.matched(B), m.matched(C)), (3, 3, 3));
    assert_eq!(m.best_tenants().count(), 3, "ties are all exposed");
    assert_eq!(t.match_prefix(b"xyz").longest(), 0);
}

#[test]
fn sizes_count_units_per_tenant_and_once_in_total() {
    let (t, _) = tree();
    t.insert(b"abcdef", A);
    t.insert(b"abcxyz", B);
    assert_eq!(t.tenant_size(A), 6);
    assert_eq!(t.tenant_size(B), 6);
    assert_eq!(t.total_size(), 9, "abc + def + xyz");
    assert_eq!(t.node_count(), 3);
    t.insert(b"abc", C);
    assert_eq!(t.tenant_size(C), 3);
    assert_eq!(t.total_size(), 9);
    assert_eq!(t.node_count(), 3);
    t.insert(b"ab", C);
    assert_eq!(t.tenant_size(C), 3, "ab is inside abc, already held");
    assert_eq!(t.node_count(), 4, "ab split off abc");
    assert_eq!(t.tenants(), vec![A, B, C]);
    t.audit().unwrap();
}

#[test]
fn insert_extending_a_prefix_adds_a_child() {
    let (t, _) = tree();
    t.insert(b"turn one", A);
    t.insert(b"turn one turn two", A);
    assert_eq!(t.tenant_size(A), 17);
    assert_eq!(t.node_count(), 2);
    assert_eq!(t.match_prefix(b"turn one turn three").matched(A), 15);
    t.audit().unwrap();
}

#[test]
fn evict_removes_least_recently_used_leaves_first() {
    let (t, clock) = tree();
    t.insert(b"shared/old", A);
    clock.advance(1);
    t.insert(b"shared/new", A);
    clock.advance(1);
    t.insert(b"shared/mid", A);
    clock.advance(1);
    t.insert(b"shared/old", A); // refresh: now "new" is the oldest
    assert_eq!(t.tenant_size(A), 16);
    let evicted = t.evict_tenant(A, 13);
    assert_eq!(evicted, 3);
    let m = t.match_prefix(b"shared/new");
    assert_eq!(m.matched(A), 7, "only 'shared/' left of the evicted leaf");
    assert_eq!(t.match_prefix(b"shared/old").matched(A), 10);
    assert_eq!(t.match_prefix(b"shared/mid").matched(A), 10);
    assert_eq!(t.node_count(), 3, "evicted node freed");
    t.audit().unwrap();
}

#[test]
fn evict_walks_up_once_children_are_gone() {
    let (t, _) = tree();
    t.insert(b"aaaa", A);
    t.insert(b"aaaabbbb", A);
    assert_eq!(t.evict_tenant(A, 0), 8);
    assert_eq!(t.tenant_size(A), 0);
    assert_eq!((t.node_count(), t.total_size()), (0, 0));
    assert!(t.tenants().is_empty());
    t.audit().unwrap();
}

#[test]
fn shared_node_stays_while_another_tenant_holds_it() {
    let (t, clock) = tree();
    t.insert(b"system prompt", A);
    clock.advance(1);
    t.insert(b"system prompt", B);
    assert_eq!(t.evict_tenant(A, 0), 13);
    assert_eq!(t.total_size(), 13);
    let m = t.match_prefix(b"system prompt");
    assert_eq!((m.matched(A), m.matched(B)), (0, 13));
    assert_eq!(t.evict_tenant(TenantId(99), 0), 0, "unknown tenant");
    t.audit().unwrap();
}

#[test]
fn remove_tenant_drops_it_everywhere_and_frees_nodes() {
    let (t, _) = tree();
    for i in 0..50u32 {
        let key = format!("conversation {} says {}", i % 7, i);
        t.insert(key.as_bytes(), A);
        if i % 3 == 0 {
            t.insert(key.as_bytes(), B);
        }
    }
    let b_size = t.tenant_size(B);
    t.remove_tenant(A);
    assert_eq!(t.tenant_size(A), 0);
    assert_eq!(t.tenants(), vec![B]);
    assert_eq!(t.total_size(), b_size, "only B's nodes remain");
    assert_eq!(t.match_prefix(b"conversation 1 says 1").matched(A), 0);
    t.audit().unwrap();
    t.remove_tenant(B);
    assert_eq!((t.node_count(), t.total_size()), (0, 0));
    t.remove_tenant(TenantId(42));
    t.audit().unwrap();
}

#[test]
fn cap_evicts_on_insert_with_slack_and_returns_to_cap() {
    let (t, clock) = tree();
    t.set_tenant_cap(A, Some(160));
    assert_eq!(t.tenant_cap(A), Some(160));
    for i in 0..100u32 {
        clock.advance(1);
        t.insert(format!("{i:03}:payload").as_bytes(), A);
        assert!(t.tenant_size(A) <= 160 + 2, "cap + 1/64 slack");
    }
    // The most recent keys survive, the oldest are gone.
    assert_eq!(t.match_prefix(b"099:payload").matched(A), 11);
    assert!(t.match_prefix(b"001:payload").matched(A) < 11);
    t.audit().unwrap();
}

#[test]
fn lowering_a_cap_evicts_immediately_and_none_clears_it() {
    let (t, clock) = tree();
    for i in 0..20u32 {
        clock.advance(1);
        t.insert(format!("key-{i:03}").as_bytes(), A);
    }
    let before = t.tenant_size(A);
    t.set_tenant_cap(A, Some(before / 2));
    assert!(t.tenant_size(A) <= before / 2);
    t.set_tenant_cap(A, None);
    assert_eq!(t.tenant_cap(A), None);
    for i in 20..40u32 {
        t.insert(format!("key-{i:03}").as_bytes(), A);
    }
    assert!(t.tenant_size(A) > before / 2, "no cap any more");
    t.audit().unwrap();
}

#[test]
fn confirmed_residency_is_reported_separately_and_never_downgraded() {
    let (t, _) = tree();
    t.insert_with(b"prefix cached", A, Residency::Confirmed);
    t.insert(b"prefix cached and more", A);
    t.insert(b"prefix", B);
    let m = t.match_prefix(b"prefix cached and more!");
    assert_eq!(
        m.get(A),
        Some(&TenantMatch {
            tenant: A,
            matched: 22,
            confirmed: 13
        })
    );
    assert_eq!(m.confirmed(B), 0);
    t.insert(b"prefix cached", A);
    assert_eq!(t.match_prefix(b"prefix cached").confirmed(A), 13);
    t.insert_with(b"prefix", B, Residency::Confirmed);
    assert_eq!(t.match_prefix(b"prefix cached").confirmed(B), 6);
    t.audit().unwrap();
}

#[test]
fn token_keys_use_the_same_tree() {
    let clock = Arc::new(ManualClock::new(0));
    let t: RadixTree<u32> = RadixTree::with_clock(clock);
    t.insert(&[1, 2, 3, 4, 5], A);
    t.insert(&[1, 2, 3, 9], B);
    let m = t.match_prefix(&[1, 2, 3, 4, 7]);
    assert_eq!((m.matched(A), m.matched(B)), (4, 3));
    assert_eq!(t.total_size(), 6);
    assert_eq!(
        t.evict_tenant(B, 0),
        4,
        "B's leaf and its share of the common node"
    );
    assert_eq!(t.total_size(), 5);
    assert_eq!(t.match_prefix(&[1, 2, 3, 4]).matched(A), 4);
    t.audit().unwrap();
}

#[test]
fn default_prefix_match_is_empty() {
    let m = PrefixMatch::default();
    assert_eq!((m.key_len(), m.best(), m.matched(A)), (0, None, 0));
}

#[test]
fn deep_trees_drop_without_overflowing_the_stack() {
    let t: RadixTree<u32> = RadixTree::new();
    let key: Vec<u32> = (0..20_000).collect();
    for len in (1..=20_000).step_by(5) {
        t.insert(&key[..len], A);
    }
    assert_eq!(t.node_count(), 4_000);
    drop(t);
}

#[test]
fn tree_is_send_and_sync_for_both_key_units() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RadixTree<u8>>();
    assert_send_sync::<RadixTree<u32>>();
    assert_send_sync::<PrefixMatch>();
}
