//! Prefix policies keep a conversation on the replica that served its previous turn.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::collections::{HashMap, HashSet};

use prefix_router_tests::{
    RouterServer, cluster, metric_sum, model, routed_to, router_metrics, stop,
};
use serde_json::{Value, json};

/// Sends one chat turn (non-streaming) and returns the replica it was routed to.
async fn chat_turn(client: &reqwest::Client, router: &RouterServer, messages: &[Value]) -> String {
    let body = json!({ "model": model(), "messages": messages, "max_tokens": 4 });
    routed_to(client, router, "/v1/chat/completions", &body).await
}

/// Eight conversations of four turns, interleaved turn by turn; returns each turn's replica.
async fn run_conversations(policy: &str) -> (Vec<Vec<String>>, String) {
    let (sims, router) = cluster(4, policy).await;
    let client = reqwest::Client::new();
    let mut convos: Vec<Vec<Value>> = (0..8)
        .map(|c| {
            vec![
                json!({"role": "system", "content": format!("You are assistant number {c}. {}", "Be thorough. ".repeat(40))}),
                json!({"role": "user", "content": format!("Conversation {c}: tell me about topic {c}.")}),
            ]
        })
        .collect();
    let mut routed: Vec<Vec<String>> = vec![Vec::new(); convos.len()];
    for turn in 0..4 {
        for (c, messages) in convos.iter_mut().enumerate() {
            routed[c].push(chat_turn(&client, &router, messages).await);
            messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": format!("Answer {turn} of {c}.")}]}));
            messages.push(json!({"role": "user", "content": format!("Follow-up {turn} of {c}?")}));
        }
    }
    let metrics = router_metrics(&router).await;
    stop(sims, router).await;
    (routed, metrics)
}

async fn next_turn_goes_to_previous_turns_replica(
    policy: &str,
    first_turn_reason: &str,
    later_reason: &str,
) {
    let (routed, metrics) = run_conversations(policy).await;
    for (c, replicas) in routed.iter().enumerate() {
        assert!(
            replicas.iter().all(|r| *r == replicas[0]),
            "{policy}: conversation {c} moved: {replicas:?}"
        );
    }
    let used: HashSet<&String> = routed.iter().map(|r| &r[0]).collect();
    assert!(
        used.len() >= 3,
        "{policy}: new conversations spread over idle replicas: {routed:?}"
    );
    let reasons: HashMap<&str, f64> = [first_turn_reason, later_reason]
        .into_iter()
        .map(|r| {
            (
                r,
                metric_sum(
                    &metrics,
                    "router_policy_decisions_total",
                    &[("policy", policy), ("reason", r)],
                ),
            )
        })
        .collect();
    assert_eq!(
        reasons[first_turn_reason], 8.0,
        "{policy}: first turns hold nothing: {reasons:?}"
    );
    assert_eq!(
        reasons[later_reason], 24.0,
        "{policy}: later turns follow their prefix: {reasons:?}"
    );
    let ratio_count = metric_sum(
        &metrics,
        "router_prefix_match_ratio_count",
        &[("policy", policy)],
    );
    assert_eq!(ratio_count, 32.0);
}

#[tokio::test]
async fn cost_keeps_each_conversation_on_one_replica() {
    next_turn_goes_to_previous_turns_replica("cost", "no_cache", "cache_affinity").await;
}

#[tokio::test]
async fn prefix_aware_keeps_each_conversation_on_one_replica() {
    next_turn_goes_to_previous_turns_replica("prefix_aware", "low_match", "longest_match").await;
}
