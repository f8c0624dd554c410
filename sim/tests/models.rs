//! Several served names and LoRA adapters: `/v1/models`, the `model` field, vLLM's 404.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use serde_json::{Value, json};
use vllm_sim::{LoraModule, SimConfig, SimServer};

fn two_names_two_adapters() -> SimConfig {
    SimConfig {
        model: "/models/llama-3-8b".into(),
        served_model_name: vec!["llama".into(), "llama-alias".into()],
        lora_modules: vec![
            "sql=/adapters/sql".parse().unwrap(),
            LoraModule {
                name: "chat".into(),
                path: "/adapters/chat".into(),
            },
        ],
        ..SimConfig::zero_delay()
    }
}

async fn models(c: &reqwest::Client, s: &SimServer) -> Vec<Value> {
    let v: Value = c
        .get(format!("{}/v1/models", s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    v["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn models_lists_served_names_then_adapters_with_parent() {
    let s = start(two_names_two_adapters()).await;
    let c = client();
    let data = models(&c, &s).await;
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["llama", "llama-alias", "sql", "chat"]);
    for base in &data[..2] {
        assert_eq!(base["root"], "/models/llama-3-8b");
        assert!(base["parent"].is_null());
        assert_eq!(base["max_model_len"], 8192);
        assert_eq!(base["object"], "model");
    }
    assert_eq!(data[2]["parent"], "llama");
    assert_eq!(data[2]["root"], "/adapters/sql");
    assert_eq!(data[3]["parent"], "llama");
    assert_eq!(data[3]["root"], "/adapters/chat");
}

#[tokio::test]
async fn requests_name_the_base_model_or_the_adapter() {
    let s = start(two_names_two_adapters()).await;
    let c = client();
    // Any served name (or none) runs the base model; vLLM answers with the first name.
    for model in [json!("llama"), json!("llama-alias"), Value::Null] {
        let v = complete(
            &c,
            &s,
            json!({"model": model, "prompt": "hi", "max_tokens": 1}),
        )
        .await;
        assert_eq!(v["model"], "llama", "asked for {model}");
    }
    // An adapter answers under its own name, chat and streaming too.
    let v = complete(
        &c,
        &s,
        json!({"model": "sql", "prompt": "hi", "max_tokens": 1}),
    )
    .await;
    assert_eq!(v["model"], "sql");
    let (status, v) = post(
        &c,
        &format!("{}/v1/chat/completions", s.url()),
        &json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "chat");
    let st = stream(
        &c,
        &format!("{}/v1/completions", s.url()),
        &json!({"model": "sql", "prompt": "hi", "max_tokens": 2, "stream": true}),
    )
    .await;
    assert_eq!(st.status, 200);
    let events = sse_events(&st.raw);
    assert_eq!(events.last().unwrap(), "[DONE]");
    for e in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(e).unwrap();
        assert_eq!(chunk["model"], "sql");
    }
    // Metrics are labelled with the first served name, as vLLM's `model_name`.
    let text = metrics_text(&c, &s).await;
    assert!(
        sample(
            &text,
            "vllm:num_requests_running",
            &[("model_name", "llama")]
        )
        .is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_model_gets_vllms_404() {
    let s = start(two_names_two_adapters()).await;
    let c = client();
    // The model path is not a served name once --served-model-name is given (as vLLM).
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": "/models/llama-3-8b", "prompt": "hi"}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let (status, v) = post(&c, &format!("{}{path}", s.url()), &body).await;
        assert_eq!(status, 404, "{path}: {v}");
        let e = &v["error"];
        assert_eq!(e["type"], "NotFoundError");
        assert_eq!(e["code"], 404);
        assert_eq!(e["param"], "model");
        let want = format!(
            "The model `{}` does not exist.",
            body["model"].as_str().unwrap()
        );
        assert_eq!(e["message"], want);
    }
}

#[tokio::test]
async fn duplicate_model_names_are_rejected_at_start() {
    let cfg = SimConfig {
        lora_modules: vec!["llama=/x".parse().unwrap()],
        ..two_names_two_adapters()
    };
    let err = vllm_sim::start(cfg).await.unwrap_err().to_string();
    assert!(err.contains("llama") && err.contains("twice"), "{err}");
}

#[tokio::test]
async fn an_adapter_has_its_own_prefix_cache() {
    let s = start(two_names_two_adapters()).await;
    let c = client();
    let body = |model: &str| json!({"model": model, "prompt": prompt("lora", 64), "max_tokens": 1});
    assert_eq!(cached_tokens(&complete(&c, &s, body("llama")).await), 0);
    assert!(
        cached_tokens(&complete(&c, &s, body("llama-alias")).await) > 0,
        "same base model"
    );
    assert_eq!(
        cached_tokens(&complete(&c, &s, body("sql")).await),
        0,
        "the adapter does not hit the base model's blocks"
    );
    assert!(cached_tokens(&complete(&c, &s, body("sql")).await) > 0);
    assert_eq!(cached_tokens(&complete(&c, &s, body("chat")).await), 0);
}
