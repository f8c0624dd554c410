//! The OpenAI-compatible surface: shapes, prompt forms, streaming framing, errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use serde_json::{Value, json};
use vllm_sim::{SimConfig, filler_text, render_chat, tokenize};

#[tokio::test]
async fn completion_response_shape() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let text = "The quick brown fox jumps over the lazy dog";
    let v = complete(
        &c,
        &s,
        json!({"model": "vllm-sim", "prompt": text, "max_tokens": 7}),
    )
    .await;
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "vllm-sim");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["text"], filler_text(7));
    assert_eq!(choice["finish_reason"], "length");
    assert!(choice["logprobs"].is_null() && choice["stop_reason"].is_null());
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens"], tokenize(text).len());
    assert_eq!(u["completion_tokens"], 7);
    assert_eq!(u["total_tokens"], tokenize(text).len() + 7);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn prompt_forms_and_n() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    // A list of strings is a batch: one choice per prompt (times n).
    let v = complete(
        &c,
        &s,
        json!({"prompt": ["aaaa", "bbbbbbbb"], "max_tokens": 2, "n": 2}),
    )
    .await;
    assert_eq!(v["choices"].as_array().unwrap().len(), 4);
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![0, 1, 2, 3]);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    // Token ids and lists of token ids.
    let v = complete(&c, &s, json!({"prompt": [1, 2, 3, 4, 5], "max_tokens": 1})).await;
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    let v = complete(
        &c,
        &s,
        json!({"prompt": [[1, 2], [3, 4, 5]], "max_tokens": 1}),
    )
    .await;
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn default_length_stops_and_min_tokens() {
    let cfg = SimConfig {
        default_max_tokens: 5,
        ..SimConfig::zero_delay()
    };
    let s = start(cfg).await;
    let c = client();
    let v = complete(&c, &s, json!({"prompt": "hello"})).await;
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let v = complete(&c, &s, json!({"prompt": "hello", "min_tokens": 9})).await;
    assert_eq!(v["usage"]["completion_tokens"], 9);
    let v = complete(&c, &s, json!({"prompt": "hello", "ignore_eos": true})).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn chat_response_uses_template() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let msgs =
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    let (status, v) = post(
        &c,
        &format!("{}/v1/chat/completions", s.url()),
        &json!({"messages": msgs, "max_completion_tokens": 3}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], filler_text(3));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let rendered =
        render_chat(&serde_json::from_value::<Vec<vllm_sim::ChatMessage>>(msgs).unwrap());
    assert_eq!(v["usage"]["prompt_tokens"], tokenize(&rendered).len());
}

#[tokio::test]
async fn completion_stream_framing_matches_vllm() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    let body = json!({"prompt": "abcdefgh", "max_tokens": 4, "stream": true,
        "stream_options": {"include_usage": true}});
    let r = stream(&c, &url, &body).await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/event-stream"),
        "{}",
        r.content_type
    );
    assert!(!r.error);
    let events = sse_events(&r.raw);
    assert_eq!(events.len(), 4 + 2, "4 tokens, usage, [DONE]: {events:?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..5]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].clone();
    for (i, ch) in chunks[..4].iter().enumerate() {
        assert_eq!(ch["object"], "text_completion");
        assert_eq!(ch["id"], id);
        assert_eq!(ch["choices"][0]["text"], vllm_sim::filler_piece(i));
        assert!(ch.get("usage").is_none());
        let fin = &ch["choices"][0]["finish_reason"];
        if i < 3 {
            assert!(fin.is_null())
        } else {
            assert_eq!(fin, "length")
        }
    }
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 4);
    assert_eq!(chunks[4]["usage"]["prompt_tokens"], 2);

    // Without include_usage there is no usage chunk.
    let body = json!({"prompt": "abcdefgh", "max_tokens": 2, "stream": true});
    let events = sse_events(&stream(&c, &url, &body).await.raw);
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn chat_stream_first_chunk_carries_role() {
    let s = start(SimConfig::zero_delay()).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", s.url());
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
        "stream": true, "n": 2, "stream_options": {}});
    let r = stream(&c, &url, &body).await;
    let events = sse_events(&r.raw);
    // Per choice: role chunk + 2 tokens; then usage (stream_options {} includes it), [DONE].
    assert_eq!(events.len(), 2 * 3 + 2, "{events:?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for choice in 0..2u64 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"].get(0).is_some_and(|x| x["index"] == choice))
            .collect();
        assert_eq!(mine.len(), 3);
        assert_eq!(mine[0]["object"], "chat.completion.chunk");
        assert_eq!(
            mine[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(
            mine[1]["choices"][0]["delta"],
            json!({"content": vllm_sim::filler_piece(0)})
        );
        assert_eq!(mine[2]["choices"][0]["finish_reason"], "length");
    }
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn bad_requests_get_vllm_errors() {
    let s = start(SimConfig {
        max_model_len: 100,
        ..SimConfig::zero_delay()
    })
    .await;
    let c = client();
    let url = format!("{}/v1/completions", s.url());
    let cases = [
        json!({"prompt": "x", "max_tokens": 0}),
        json!({"prompt": "x", "n": 0}),
        json!({"prompt": "x", "max_tokens": 2, "min_tokens": 5}),
        json!({"prompt": "x", "priority": 3}),
        json!({"prompt": ""}),
        json!({"prompt": []}),
        json!({"max_tokens": 3}),
        json!({"prompt": "x", "max_tokens": "many"}),
        json!({"prompt": [-1]}),
        json!({"prompt": "x", "stream_options": {"include_usage": true}}),
        json!({"prompt": "x", "max_tokens": 100}),
        json!({"prompt": prompt("long", 200)}),
    ];
    for body in cases {
        let (status, v) = post(&c, &url, &body).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["error"]["type"], "BadRequestError", "{v}");
        assert_eq!(v["error"]["code"], 400);
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // Invalid JSON.
    let r = c.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 400);
    // Wrong model name: 404 NotFoundError, as vLLM.
    let (status, v) = post(&c, &url, &json!({"model": "other", "prompt": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "NotFoundError");
    // Chat without messages.
    let (status, _) = post(
        &c,
        &format!("{}/v1/chat/completions", s.url()),
        &json!({"messages": []}),
    )
    .await;
    assert_eq!(status, 400);
    // Unknown route.
    let r = c.get(format!("{}/nope", s.url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The server still works afterwards.
    complete(&c, &s, json!({"prompt": "x", "max_tokens": 1})).await;
}

#[tokio::test]
async fn models_health_version() {
    let s = start(SimConfig {
        model: "my-model".into(),
        ..SimConfig::zero_delay()
    })
    .await;
    let c = client();
    let v: Value = c
        .get(format!("{}/v1/models", s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "my-model");
    let r = c.get(format!("{}/health", s.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{}/version", s.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = post(
        &c,
        &format!("{}/v1/completions", s.url()),
        &json!({"model": "my-model", "prompt": "x", "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn replicas_have_their_own_engines() {
    let servers = vllm_sim::start_replicas(SimConfig::zero_delay(), 3)
        .await
        .unwrap();
    assert_eq!(servers.len(), 3);
    let mut ports: Vec<u16> = servers.iter().map(|s| s.addr().port()).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    let c = client();
    let body = json!({"prompt": prompt("rep", 64), "max_tokens": 1});
    complete(&c, &servers[0], body.clone()).await;
    assert!(cached_tokens(&complete(&c, &servers[0], body.clone()).await) > 0);
    assert_eq!(
        cached_tokens(&complete(&c, &servers[1], body.clone()).await),
        0
    );
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn replicas_on_consecutive_ports() {
    // Find a free base port; retry on the rare collision with another process.
    for _ in 0..10 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base > 65000 {
            continue;
        }
        let cfg = SimConfig {
            port: base,
            ..SimConfig::zero_delay()
        };
        if let Ok(servers) = vllm_sim::start_replicas(cfg, 2).await {
            assert_eq!(servers[0].url(), format!("http://127.0.0.1:{base}"));
            assert_eq!(servers[1].addr().port(), base + 1);
            let c = client();
            complete(&c, &servers[1], json!({"prompt": "x", "max_tokens": 1})).await;
            return;
        }
    }
    panic!("no free consecutive ports found");
}
