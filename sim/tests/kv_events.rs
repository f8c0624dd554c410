//! The simulator's KV-cache events, read with the kv-events crate's own subscriber: stores with
//! vLLM's `sha256_cbor` hashes, evictions, resets, lost messages replayed, restarts.

mod common;

use std::time::Duration;

use common::{client, complete, start};
use kv_events::hash::{self, DEFAULT_SEED};
use kv_events::{BlockHash, EventBatch, KvEvent, SubEvent, Subscriber, decode_batch, replay};
use serde_json::json;
use vllm_sim::{KvEncoding, KvEventsConfig, SimConfig, SimServer};

const LONG: Duration = Duration::from_secs(20);

fn config(num_gpu_blocks: usize, encoding: KvEncoding) -> SimConfig {
    SimConfig {
        num_gpu_blocks,
        kv_events: Box::new(KvEventsConfig {
            kv_events_port: Some(0),
            kv_events_replay_port: Some(0),
            kv_events_encoding: encoding,
            ..KvEventsConfig::default()
        }),
        ..SimConfig::zero_delay()
    }
}

/// Subscribes and waits until the publisher delivers (a throwaway request proves it).
async fn subscribe(sim: &SimServer) -> Subscriber {
    let kv = sim.kv_events().expect("events on");
    let mut sub = Subscriber::connect(&kv.endpoint, b"").expect("endpoint");
    loop {
        match tokio::time::timeout(LONG, sub.recv())
            .await
            .expect("connects")
        {
            Some(SubEvent::Connected) => break,
            Some(_) => continue,
            None => panic!("subscriber ended"),
        }
    }
    sub
}

async fn next_batch(sub: &mut Subscriber) -> (u64, EventBatch) {
    loop {
        match tokio::time::timeout(LONG, sub.recv())
            .await
            .expect("a batch in time")
        {
            Some(SubEvent::Message(m)) => {
                return (m.seq, decode_batch(&m.payload).expect("decodes"));
            }
            Some(_) => continue,
            None => panic!("subscriber ended"),
        }
    }
}

/// A prompt of `blocks` full blocks (16 tokens of 4 bytes each) unique to `tag`.
fn prompt(tag: &str, blocks: usize) -> String {
    let unit = format!("{tag:>8}");
    unit.repeat(blocks * 8)
}

async fn send(sim: &SimServer, p: &str) {
    let c = client();
    complete(
        &c,
        sim,
        json!({"model": "vllm-sim", "prompt": p, "max_tokens": 1}),
    )
    .await;
}

/// Sends requests until one batch arrives (the subscription may lag the connect).
async fn first_stores(sim: &SimServer, sub: &mut Subscriber, tag: &str) -> (u64, EventBatch) {
    for i in 0.. {
        // A new prompt each time: a cached one would store nothing.
        send(sim, &prompt(&format!("{tag}{i}"), 2)).await;
        if let Ok(Some(SubEvent::Message(m))) =
            tokio::time::timeout(Duration::from_millis(200), sub.recv()).await
        {
            return (m.seq, decode_batch(&m.payload).expect("decodes"));
        }
    }
    unreachable!("the loop only ends by returning")
}

fn stored(batch: &EventBatch) -> Vec<&kv_events::BlockStored> {
    batch
        .events
        .iter()
        .filter_map(|e| match e {
            KvEvent::BlockStored(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn stores_carry_vllm_hashes_and_token_ids_in_both_layouts() {
    for encoding in [KvEncoding::Map, KvEncoding::Array] {
        let sim = start(config(64, encoding)).await;
        let mut sub = subscribe(&sim).await;
        let (seq0, _) = first_stores(&sim, &mut sub, "warmup").await;
        let p = prompt("hello", 3);
        send(&sim, &p).await;
        let (seq, batch) = next_batch(&mut sub).await;
        assert_eq!(seq, seq0 + 1, "consecutive sequence numbers");
        let s = stored(&batch);
        assert_eq!(
            s.len(),
            1,
            "one event for the request's new blocks: {batch:?}"
        );
        let tokens = vllm_sim::tokenize(&p);
        assert_eq!(s[0].token_ids, tokens[..48], "the 3 full blocks' tokens");
        assert_eq!(s[0].parent_block_hash, None);
        assert_eq!(s[0].block_size, 16);
        let want: Vec<BlockHash> = hash::hash_prompt(&tokens, 16, DEFAULT_SEED, None)
            .iter()
            .map(|d| BlockHash::Int(hash::event_int(d)))
            .collect();
        assert_eq!(s[0].block_hashes, want, "sha256_cbor with the default seed");
        // The same prompt again: cached, so nothing new is stored. A longer one extends it
        // with its parent named.
        let longer = format!("{p}{}", prompt("more", 1));
        send(&sim, &longer).await;
        let (_, batch) = next_batch(&mut sub).await;
        let s = stored(&batch);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].parent_block_hash.as_ref(), want.last());
        assert_eq!(s[0].token_ids.len(), 16);
    }
}

#[tokio::test]
async fn evictions_and_resets_are_published() {
    // 8 blocks: a 6-block prompt then another 6-block one must evict.
    let sim = start(config(8, KvEncoding::Map)).await;
    let mut sub = subscribe(&sim).await;
    first_stores(&sim, &mut sub, "warm").await;
    send(&sim, &prompt("first", 6)).await;
    let _ = next_batch(&mut sub).await;
    send(&sim, &prompt("second", 6)).await;
    let (_, batch) = next_batch(&mut sub).await;
    let removed: usize = batch
        .events
        .iter()
        .map(|e| match e {
            KvEvent::BlockRemoved(r) => r.block_hashes.len(),
            _ => 0,
        })
        .sum();
    assert!(removed > 0, "the second prompt evicted blocks: {batch:?}");
    assert!(
        matches!(batch.events.first(), Some(KvEvent::BlockRemoved(_))),
        "removals precede the stores they made room for"
    );
    let c = client();
    let r = c
        .post(format!("{}/reset_prefix_cache", sim.url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status(), 200);
    let (_, batch) = next_batch(&mut sub).await;
    assert_eq!(batch.events, vec![KvEvent::AllBlocksCleared]);
}

#[tokio::test]
async fn dropped_messages_are_replayable_and_a_restart_resets_the_sequence() {
    let sim = start(config(64, KvEncoding::Map)).await;
    let kv = sim.kv_events().expect("on");
    let replay_ep = kv.replay_endpoint.clone().expect("replay on");
    let mut sub = subscribe(&sim).await;
    let (seq0, _) = first_stores(&sim, &mut sub, "warm").await;
    kv.set_drop_fraction(1.0);
    send(&sim, &prompt("lost", 2)).await;
    kv.set_drop_fraction(0.0);
    send(&sim, &prompt("seen", 2)).await;
    let (seq, _) = next_batch(&mut sub).await;
    assert_eq!(seq, seq0 + 2, "a gap where the lost batch was");
    let got = replay(&replay_ep, seq0 + 1, 100, LONG)
        .await
        .expect("replay");
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![seq0 + 1, seq0 + 2]
    );
    let lost = decode_batch(&got[0].1).expect("decodes");
    assert_eq!(
        stored(&lost)[0].token_ids,
        vllm_sim::tokenize(&prompt("lost", 2))
    );
    // Restart: the next batch is seq 0 and the old content is gone (stored again).
    let c = client();
    let r = c
        .post(format!("{}/admin/kv_events", sim.url()))
        .json(&json!({"restart": true}))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status(), 200);
    send(&sim, &prompt("seen", 2)).await;
    let (seq, batch) = next_batch(&mut sub).await;
    assert_eq!(seq, 0);
    assert_eq!(
        stored(&batch)[0].token_ids.len(),
        32,
        "the cache was emptied"
    );
    let bad = c
        .post(format!("{}/admin/kv_events", sim.url()))
        .json(&json!({"drop_fraction": 2.0}))
        .send()
        .await
        .expect("admin");
    assert_eq!(bad.status(), 400);
}
