//! Token mode: with `prefix.tokenizer` set, keys are token ids and matches end on KV-block
//! boundaries (16 tokens), like vLLM's prefix cache. The tokenizer is written by the test.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use prefix_router_tests::{
    RouterServer, SimConfig, metric_sum, numbered_words, route, router_metrics, router_yaml,
    start_router, start_sims, stop, write_numbered_tokenizer,
};

/// `w{from}` .. `w{to-1}` then `unknown` copies of an out-of-vocabulary word.
fn words(from: usize, to: usize, unknown: usize) -> String {
    let mut w = numbered_words(from, to);
    for i in 0..unknown {
        w.push_str(&format!(" zz{i}"));
    }
    w
}

/// (sum of matched ratios, decisions with `reason`) so far.
async fn observed(router: &RouterServer, reason: &str) -> (f64, f64) {
    let text = router_metrics(router).await;
    (
        metric_sum(
            &text,
            "router_prefix_match_ratio_sum",
            &[("policy", "cost")],
        ),
        metric_sum(
            &text,
            "router_policy_decisions_total",
            &[("policy", "cost"), ("reason", reason)],
        ),
    )
}

#[tokio::test]
async fn token_mode_matches_whole_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = write_numbered_tokenizer(dir.path(), 300);
    let sims = start_sims(3, SimConfig::zero_delay()).await;
    let extra = format!(
        "prefix:\n  tokenizer: {}\n  block_size: 16\n",
        tokenizer.display()
    );
    let router = start_router(&router_yaml(&sims, "cost", &extra)).await;
    let client = reqwest::Client::new();

    // 200 tokens: the tree keeps 192 (12 whole blocks).
    let owner = route(&client, &router, &words(0, 200, 0)).await;

    // Shares 150 tokens: only 9 whole blocks (144 tokens) count -> ratio 144/200.
    let (sum0, _) = observed(&router, "cache_affinity").await;
    assert_eq!(route(&client, &router, &words(0, 150, 50)).await, owner);
    let (sum1, affinity) = observed(&router, "cache_affinity").await;
    assert!(
        (sum1 - sum0 - 0.72).abs() < 1e-9,
        "matched 144 of 200 tokens: {}",
        sum1 - sum0
    );
    assert_eq!(affinity, 1.0);

    // Shares exactly 160 tokens = 10 blocks -> ratio 160/200.
    assert_eq!(route(&client, &router, &words(0, 160, 40)).await, owner);
    let (sum2, _) = observed(&router, "cache_affinity").await;
    assert!(
        (sum2 - sum1 - 0.8).abs() < 1e-9,
        "matched 160 of 200 tokens: {}",
        sum2 - sum1
    );

    // Shares 15 tokens, less than a block: nothing is reusable.
    let (_, no_cache0) = observed(&router, "no_cache").await;
    route(&client, &router, &words(0, 15, 185)).await;
    let (sum3, no_cache1) = observed(&router, "no_cache").await;
    assert_eq!(sum3, sum2, "ratio 0 for a sub-block match");
    assert_eq!(no_cache1 - no_cache0, 1.0);

    stop(sims, router).await;
}

#[tokio::test]
async fn a_missing_tokenizer_fails_startup_naming_the_key() {
    let sims = start_sims(1, SimConfig::zero_delay()).await;
    let yaml = router_yaml(
        &sims,
        "cost",
        "prefix:\n  tokenizer: /nonexistent/tokenizer.json\n",
    );
    let config = prefix_router_tests::Config::from_yaml_str(&yaml).unwrap();
    let error = router::start(config)
        .await
        .err()
        .expect("startup fails")
        .to_string();
    assert!(
        error.contains("prefix.tokenizer") && error.contains("/nonexistent/tokenizer.json"),
        "{error}"
    );
    for sim in sims {
        sim.shutdown().await;
    }
}
