//! Per-request cost of the `cost` policy's decision: `pick` over 4 replicas with a warm prefix
//! tree (2000 prompts of about 1000 tokens) and pending work on every replica.
//! Run: `cargo bench -p router --bench pick`.

use std::{hint::black_box, sync::Arc, time::Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::{SeedableRng, rngs::SmallRng};
use router::{
    ReplicaId, ReplicaView, RouteRequest,
    policy::{CostConfig, CostPolicy, Endpoint, Policy, PrefixIndex, PromptKey},
    prompt_key::PrefixConfig,
    replicas::ReplicaLoad,
};

fn prompt(i: usize) -> String {
    format!(
        "system prompt {} {}",
        i % 64,
        "lorem ipsum dolor sit amet ".repeat(150)
    ) + &format!(" user question number {i}")
}

fn bench_pick(c: &mut Criterion) {
    let index = Arc::new(PrefixIndex::new(&PrefixConfig::default()));
    let policy = CostPolicy::new(
        Arc::clone(&index),
        CostConfig::default(),
        SmallRng::seed_from_u64(1),
    );
    let prompts: Vec<String> = (0..2000).map(prompt).collect();
    for (i, p) in prompts.iter().enumerate() {
        index.insert(&PromptKey::Text(p), ReplicaId((i % 4) as u32));
    }
    let loads: Vec<ReplicaLoad> = (0..4).map(|_| ReplicaLoad::default()).collect();
    let now = Instant::now();
    for (i, l) in loads.iter().enumerate() {
        for _ in 0..=i {
            let _ = l.pending.add(500, 1000, now);
        }
    }
    let names: Vec<String> = (0..4).map(|i| format!("r{i}")).collect();
    let views: Vec<ReplicaView<'_>> = loads
        .iter()
        .enumerate()
        .map(|(i, load)| ReplicaView {
            id: ReplicaId(i as u32),
            name: &names[i],
            url: "http://127.0.0.1:1",
            weight: 1,
            load,
        })
        .collect();
    let mut i = 0;
    c.bench_function("cost_pick_4_replicas_1k_token_prompt", |b| {
        b.iter(|| {
            i = (i + 1) % prompts.len();
            let text = format!("{} and a follow-up", prompts[i]);
            let request = RouteRequest {
                endpoint: Endpoint::Completions,
                model: None,
                prompt: PromptKey::Text(&text),
                prompt_tokens_estimate: text.len() / 4,
                priority: None,
            };
            black_box(policy.pick(&request, &views))
        })
    });
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
