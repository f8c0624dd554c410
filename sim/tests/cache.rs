//! The prefix cache seen from outside: hits, token-counted metrics, eviction, reset.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use serde_json::json;
use vllm_sim::SimConfig;

#[tokio::test]
async fn same_prompt_twice_hits_on_second() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    // 100 tokens = 6 full blocks of 16 + 4 tokens.
    let body = json!({"prompt": prompt("same", 100), "max_tokens": 2});
    let first = complete(&c, &s, body.clone()).await;
    assert_eq!(cached_tokens(&first), 0);
    let second = complete(&c, &s, body).await;
    assert_eq!(cached_tokens(&second), 96);

    let m = metrics_text(&c, &s).await;
    let model = [("model_name", "vllm-sim")];
    assert_eq!(
        sample(&m, "vllm:prefix_cache_queries_total", &model),
        Some(200.0)
    );
    assert_eq!(
        sample(&m, "vllm:prefix_cache_hits_total", &model),
        Some(96.0)
    );
    assert_eq!(sample(&m, "vllm:prompt_tokens_total", &model), Some(200.0));
    assert_eq!(
        sample(&m, "vllm:generation_tokens_total", &model),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &m,
            "vllm:request_success_total",
            &[("model_name", "vllm-sim"), ("finished_reason", "length")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn shared_prefix_hits_up_to_divergence() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let base = prompt("sys", 64);
    complete(
        &c,
        &s,
        json!({"prompt": format!("{base}first question"), "max_tokens": 1}),
    )
    .await;
    let v = complete(
        &c,
        &s,
        json!({"prompt": format!("{base}second question"), "max_tokens": 1}),
    )
    .await;
    assert_eq!(cached_tokens(&v), 64);
    // Chat: turn 2 extends turn 1, so turn 1's blocks hit.
    let url = format!("{}/v1/chat/completions", s.url());
    let mut msgs = vec![
        json!({"role": "system", "content": prompt("chat", 80)}),
        json!({"role": "user", "content": "q1"}),
    ];
    let (_, t1) = post(&c, &url, &json!({"messages": msgs, "max_tokens": 4})).await;
    let t1_prompt = t1["usage"]["prompt_tokens"].as_u64().unwrap();
    msgs.push(json!({"role": "assistant", "content": t1["choices"][0]["message"]["content"]}));
    msgs.push(json!({"role": "user", "content": "q2"}));
    let (_, t2) = post(&c, &url, &json!({"messages": msgs, "max_tokens": 4})).await;
    let hit = cached_tokens(&t2);
    assert!(
        hit >= (t1_prompt - 1) / 16 * 16,
        "turn 2 hit {hit} of turn 1's {t1_prompt}"
    );
}

#[tokio::test]
async fn eviction_at_capacity() {
    // 8 blocks x 16 tokens = 128 tokens of KV.
    let s = start(SimConfig {
        num_gpu_blocks: 8,
        ..SimConfig::zero_delay()
    })
    .await;
    let c = client();
    let a = json!({"prompt": prompt("A", 65), "max_tokens": 1});
    complete(&c, &s, a.clone()).await;
    assert_eq!(
        cached_tokens(&complete(&c, &s, a.clone()).await),
        64,
        "fits: full hit"
    );
    // A different 112-token prompt needs 7 of the 8 blocks: most of A is evicted.
    complete(&c, &s, json!({"prompt": prompt("B", 112), "max_tokens": 1})).await;
    let after = cached_tokens(&complete(&c, &s, a).await);
    assert!(after < 64, "A must have lost blocks, still hit {after}");
    // LRU frees a sequence's tail first, so A's first block survives.
    assert_eq!(after, 16);
}

#[tokio::test]
async fn pinned_blocks_make_requests_wait_not_fail() {
    // 8 blocks; each request needs 5 (64 prompt + 16 output tokens): only one fits at a time.
    let s = start(SimConfig {
        num_gpu_blocks: 8,
        decode_base_ms: 1.0,
        ..SimConfig::zero_delay()
    })
    .await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let c = c.clone();
        let url = format!("{}/v1/completions", s.url());
        tasks.push(tokio::spawn(async move {
            post(
                &c,
                &url,
                &json!({"prompt": prompt(&format!("w{i}"), 64), "max_tokens": 16}),
            )
            .await
        }));
    }
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(v["usage"]["completion_tokens"], 16);
    }
    // A request that can never fit is rejected up front instead of waiting forever.
    let (status, _) = post(
        &c,
        &format!("{}/v1/completions", s.url()),
        &json!({"prompt": prompt("big", 120), "max_tokens": 16}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn reset_prefix_cache_forgets() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let body = json!({"prompt": prompt("reset", 40), "max_tokens": 1});
    complete(&c, &s, body.clone()).await;
    let r = c
        .post(format!("{}/reset_prefix_cache", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(cached_tokens(&complete(&c, &s, body.clone()).await), 0);
    assert_eq!(cached_tokens(&complete(&c, &s, body).await), 32);
}

#[tokio::test]
async fn token_id_prompts_share_cache_with_text() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let text = prompt("ids", 40);
    complete(&c, &s, json!({"prompt": text, "max_tokens": 1})).await;
    let ids = vllm_sim::tokenize(&text);
    let v = complete(&c, &s, json!({"prompt": ids, "max_tokens": 1})).await;
    assert_eq!(cached_tokens(&v), 32);
}
