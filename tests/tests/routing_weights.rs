//! Replica weights through real sockets: `prefix_aware` with balancing on reads load per unit
//! of weight and draws ties by weight, so distinct prompts spread about 3:1 over replicas
//! weighted 3:1 (it used to ignore weight and split them 1:1).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use prefix_router_tests::{
    SimConfig, completion_body, routed_to, router_yaml, start_router, start_sims, stop,
};

#[tokio::test]
async fn prefix_aware_spreads_distinct_prompts_by_weight() {
    // Each request takes a few decode steps, so the workers keep several in flight at once.
    let sims = start_sims(
        2,
        SimConfig {
            decode_base_ms: 2.0,
            ..SimConfig::zero_delay()
        },
    )
    .await;
    let extra = "";
    let yaml = router_yaml(&sims, "prefix_aware", extra)
        .replace("    name: r0\n", "    name: r0\n    weight: 3\n")
        .replace(
            "  seed: 42\n",
            "  seed: 42\n  prefix_aware:\n    balance_abs_threshold: 1\n    balance_rel_threshold: 1.0\n",
        );
    assert!(yaml.contains("weight: 3") && yaml.contains("balance_abs_threshold: 1"));
    let router = start_router(&yaml).await;
    let url = router.url();
    let client = reqwest::Client::new();
    let workers = (0..8).map(|w| {
        let client = client.clone();
        let router = &router;
        async move {
            let mut seen = Vec::new();
            for i in 0..30 {
                let prompt = format!("worker {w} question {i}: something nobody asked before");
                let body = completion_body(&prompt, 4, false);
                seen.push(routed_to(&client, router, "/v1/completions", &body).await);
            }
            seen
        }
    });
    let mut counts: HashMap<String, usize> = HashMap::new();
    for name in futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        *counts.entry(name).or_default() += 1;
    }
    let heavy = counts.get("r0").copied().unwrap_or(0);
    let light = counts.get("r1").copied().unwrap_or(0);
    assert_eq!(heavy + light, 240, "{counts:?} via {url}");
    // 3:1 is a 0.75 share; ignoring weight gives 0.5.
    let share = heavy as f64 / 240.0;
    assert!(
        (0.65..=0.85).contains(&share),
        "share {share:.2} of weight 3: {counts:?}"
    );

    stop(sims, router).await;
}
