//! Many threads insert, match, evict and remove at once; afterwards every invariant must hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use radix_tree::{RadixTree, Residency, TenantId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 4;
const OPS: usize = 20_000;
const WORDS: [&str; 8] = [
    "User: ",
    "Assistant: ",
    "hello ",
    "a",
    "ab",
    "the cat ",
    "sat ",
    "\n",
];
/// Shared tenants every thread inserts into, evicts and removes.
const SHARED: u32 = 6;
/// Capped shared tenants (ids 0..CAPPED) and their cap.
const CAPPED: u32 = 3;
const CAP: usize = 400;

fn key(rng: &mut SmallRng) -> Vec<u8> {
    let mut k = format!("c{}:", rng.random_range(0..12)).into_bytes();
    for _ in 0..rng.random_range(0..10) {
        k.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
    }
    k
}

fn worker(tree: &RadixTree, id: usize, seed: u64, checks: &AtomicUsize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    // A tenant only this thread touches: its inserts must be visible to its own matches at once.
    let own = TenantId(100 + id as u32);
    for _ in 0..OPS {
        let k = key(&mut rng);
        let t = TenantId(rng.random_range(0..SHARED));
        match rng.random_range(0..100) {
            0..36 => tree.insert(&k, t),
            36..40 => tree.insert_with(&k, t, Residency::Confirmed),
            40..55 => {
                tree.insert(&k, own);
                let m = tree.match_prefix(&k);
                assert_eq!(m.matched(own), k.len(), "own insert of {k:?} not visible");
                checks.fetch_add(1, Ordering::Relaxed);
            }
            55..85 => {
                let m = tree.match_prefix(&k);
                for tm in m.tenants() {
                    assert!(tm.matched <= k.len() && tm.confirmed <= tm.matched && tm.matched > 0);
                }
            }
            85..95 => {
                tree.evict_tenant(t, rng.random_range(0..300));
            }
            95..97 => tree.remove_tenant(t),
            _ => {
                if t.0 < CAPPED {
                    tree.set_tenant_cap(t, Some(CAP));
                } else {
                    tree.evict_tenant(own, rng.random_range(0..200));
                }
            }
        }
    }
}

#[test]
fn concurrent_operations_keep_every_invariant() {
    for round in 0..3u64 {
        let tree = Arc::new(RadixTree::new());
        for t in 0..CAPPED {
            tree.set_tenant_cap(TenantId(t), Some(CAP));
        }
        let checks = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for id in 0..THREADS {
                let tree = &tree;
                let checks = &checks;
                s.spawn(move || worker(tree, id, round * 100 + id as u64, checks));
            }
        });
        assert!(checks.load(Ordering::Relaxed) > THREADS * OPS / 10);
        tree.audit().unwrap();
        for t in 0..CAPPED {
            let size = tree.tenant_size(TenantId(t));
            assert!(
                size <= CAP + CAP / 16,
                "tenant {t} holds {size} over its cap"
            );
        }
        let sum: usize = tree.tenants().iter().map(|t| tree.tenant_size(*t)).sum();
        assert!(
            sum >= tree.total_size(),
            "every stored unit is held by someone"
        );
        assert!(tree.node_count() > 0);

        // Removing every tenant empties the tree.
        for t in tree.tenants() {
            tree.remove_tenant(t);
        }
        assert_eq!((tree.node_count(), tree.total_size()), (0, 0));
        tree.audit().unwrap();
    }
}

#[test]
fn concurrent_matches_see_a_stable_tree() {
    let tree = RadixTree::new();
    let keys: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("User: question {} Assistant: answer {}", i % 17, i).into_bytes())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        tree.insert(k, TenantId((i % 4) as u32));
    }
    let expected: Vec<_> = keys.iter().map(|k| tree.match_prefix(k)).collect();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..20 {
                    for (k, e) in keys.iter().zip(&expected) {
                        assert_eq!(&tree.match_prefix(k), e);
                    }
                }
            });
        }
    });
    tree.audit().unwrap();
}
