//! Token mode renders chats with the model's chat template (as vLLM does), found beside the
//! tokenizer or given as `prefix.chat_template`; a template that fails on a request never fails
//! the request, it only falls back to the fixed rendering for routing, visibly.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use prefix_router_tests::{
    RouterServer, SimConfig, completion_body, metric_sum, metric_value, model, numbered_words,
    routed_to, router_metrics, router_yaml, start_router, start_sims, stop,
    write_numbered_tokenizer,
};
use serde_json::json;

fn chat_body(content: &str) -> serde_json::Value {
    json!({"model": model(), "max_tokens": 1,
        "messages": [{"role": "system", "content": "zz be brief"}, {"role": "user", "content": content}]})
}

async fn match_ratio_sum(router: &RouterServer) -> f64 {
    let text = router_metrics(router).await;
    metric_sum(
        &text,
        "router_prefix_match_ratio_sum",
        &[("policy", "cost")],
    )
}

#[tokio::test]
async fn chat_keys_come_from_the_template_beside_the_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = write_numbered_tokenizer(dir.path(), 300);
    // A template that keeps only the last message: its key equals the completion of the same
    // text, which the fixed rendering (role tags, the system message) never would.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        json!({"chat_template": "{{ messages[-1]['content'] }}"}).to_string(),
    )
    .unwrap();
    let sims = start_sims(3, SimConfig::zero_delay()).await;
    let extra = format!("prefix:\n  tokenizer: {}\n", tokenizer.display());
    let router = start_router(&router_yaml(&sims, "cost", &extra)).await;
    let client = reqwest::Client::new();

    let prompt = numbered_words(0, 64); // 64 tokens: 4 whole blocks
    let owner = routed_to(
        &client,
        &router,
        "/v1/completions",
        &completion_body(&prompt, 1, false),
    )
    .await;
    let before = match_ratio_sum(&router).await;
    let chat = routed_to(
        &client,
        &router,
        "/v1/chat/completions",
        &chat_body(&prompt),
    )
    .await;
    assert_eq!(chat, owner, "the chat's key is the completion's");
    let matched = match_ratio_sum(&router).await - before;
    assert!(
        (matched - 1.0).abs() < 1e-9,
        "the whole chat prompt matched: {matched}"
    );

    stop(sims, router).await;
}

#[tokio::test]
async fn a_failing_template_falls_back_without_failing_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = write_numbered_tokenizer(dir.path(), 300);
    let sims = start_sims(2, SimConfig::zero_delay()).await;
    let extra = format!(
        "prefix:\n  tokenizer: {}\n  chat_template: \"{{{{ raise_exception('no tools here') }}}}\"\n",
        tokenizer.display()
    );
    let router = start_router(&router_yaml(&sims, "cost", &extra)).await;
    let client = reqwest::Client::new();
    let fallbacks = |text: &str| {
        metric_value(
            text,
            "router_prompt_key_fallbacks_total",
            &[("reason", "chat_template")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(fallbacks(&router_metrics(&router).await), 0.0);
    for _ in 0..2 {
        routed_to(
            &client,
            &router,
            "/v1/chat/completions",
            &chat_body(&numbered_words(0, 40)),
        )
        .await;
    }
    assert_eq!(fallbacks(&router_metrics(&router).await), 2.0);

    stop(sims, router).await;
}

#[tokio::test]
async fn a_broken_template_fails_startup_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = write_numbered_tokenizer(dir.path(), 300);
    let template = dir.path().join("chat_template.jinja");
    std::fs::write(&template, "{% for m in messages %}never closed").unwrap();
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let extra = format!(
        "prefix:\n  tokenizer: {}\n  chat_template: {}\n",
        tokenizer.display(),
        template.display()
    );
    let config =
        prefix_router_tests::Config::from_yaml_str(&router_yaml(&sims, "cost", &extra)).unwrap();
    let error = router::start(config)
        .await
        .err()
        .expect("startup fails")
        .to_string();
    assert!(
        error.contains("prefix.chat_template") && error.contains("chat_template.jinja"),
        "{error}"
    );
    for sim in sims {
        sim.shutdown().await;
    }
}
