//! Golden vectors from a real vLLM 0.26.0 (the GPU test model of `shared/gpu/make_model.py`,
//! Llama-3-8B shape, 32k byte-level BPE, served with `--enable-prefix-caching`): its own
//! `POST /tokenize` ids for chat and completion requests, and the KV events it published while
//! serving them. Token mode's keys must be exactly those ids, or the precise index (keyed by the
//! events' `token_ids`) would never match a request.
//!
//! Data: `tests/data/vllm-0.26.0-llama8b/` (copied from the capture: `golden.json`,
//! `kv_events.jsonl`, the model's `tokenizer.json` and `tokenizer_config.json`).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use router::policy::Endpoint;
use router::prompt_key::{PrefixConfig, PromptKeys};
use router::request::{self, Prompt};
use serde_json::{Value, json};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vllm-0.26.0-llama8b")
}

/// The capture, or `None` (with the reason printed) when a file is missing.
fn capture() -> Option<(PathBuf, Value)> {
    let dir = data_dir();
    for file in [
        "golden.json",
        "kv_events.jsonl",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        if !dir.join(file).is_file() {
            println!(
                "skipped: {} is absent (vLLM golden capture not in this checkout)",
                dir.join(file).display()
            );
            return None;
        }
    }
    let golden =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    Some((dir, golden))
}

fn token_keys(dir: &Path) -> PromptKeys {
    PromptKeys::from_config(&PrefixConfig {
        tokenizer: Some(dir.join("tokenizer.json")),
        ..PrefixConfig::default()
    })
    .unwrap()
}

/// The router's key for one golden case, through the request path (parse, then prepare).
async fn router_ids(keys: &PromptKeys, case: &Value) -> Vec<u32> {
    let (endpoint, body) = match case["kind"].as_str().unwrap() {
        "chat" => (
            Endpoint::ChatCompletions,
            json!({"model": "m", "messages": case["messages"]}),
        ),
        "completion" => (
            Endpoint::Completions,
            json!({"model": "m", "prompt": case["prompt"]}),
        ),
        other => panic!("unknown case kind {other}"),
    };
    let mut parsed = request::parse(endpoint, body.to_string().as_bytes()).unwrap();
    keys.prepare(&mut parsed).await;
    match parsed.prompt {
        Prompt::Tokens(ids) => ids,
        other => panic!("token mode yields ids, got {other:?}"),
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| u32::try_from(t.as_u64().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn token_mode_keys_equal_vllms_token_ids() {
    let Some((dir, golden)) = capture() else {
        return;
    };
    assert_eq!(golden["vllm"], "0.26.0");
    let keys = token_keys(&dir);
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "the capture holds chats and completions");
    let (mut chats, mut completions) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let want = ids(&case["vllm_token_ids"]);
        let got = router_ids(&keys, case).await;
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(
            got, want,
            "case {i} ({}): first difference at {first_diff:?}",
            case["kind"]
        );
        match case["kind"].as_str() {
            Some("chat") => chats += 1,
            _ => completions += 1,
        }
    }
    assert!(
        chats > 0 && completions > 0,
        "{chats} chats, {completions} completions"
    );
}

/// Every request's full blocks, as the router keys them, are a chain vLLM stored: the prefix
/// the index reconstructs from `BlockStored` events (parent's prefix + the block's `token_ids`).
#[tokio::test]
async fn kv_event_blocks_are_the_routers_keys() {
    let Some((dir, golden)) = capture() else {
        return;
    };
    let block_size = usize::try_from(golden["block_size"].as_u64().unwrap()).unwrap();
    let mut prefix_of: HashMap<u64, Vec<u32>> = HashMap::new();
    let text = std::fs::read_to_string(dir.join("kv_events.jsonl")).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let message: Value = serde_json::from_str(line).unwrap();
        for event in message["payload"][1].as_array().unwrap() {
            if event["type"] != "BlockStored" {
                continue;
            }
            assert_eq!(event["block_size"].as_u64(), Some(block_size as u64));
            let mut prefix = match event["parent_block_hash"].as_u64() {
                Some(parent) => prefix_of[&parent].clone(),
                None => Vec::new(),
            };
            let tokens = ids(&event["token_ids"]);
            for (hash, block) in event["block_hashes"]
                .as_array()
                .unwrap()
                .iter()
                .zip(tokens.chunks_exact(block_size))
            {
                prefix.extend_from_slice(block);
                prefix_of.insert(hash.as_u64().unwrap(), prefix.clone());
            }
        }
    }
    let stored: std::collections::HashSet<&Vec<u32>> = prefix_of.values().collect();
    let keys = token_keys(&dir);
    let mut checked = 0;
    for (i, case) in golden["cases"].as_array().unwrap().iter().enumerate() {
        let got = router_ids(&keys, case).await;
        let full = got.len() / block_size * block_size;
        if full == 0 {
            continue; // shorter than a block: nothing is cached
        }
        assert!(
            stored.contains(&got[..full].to_vec()),
            "case {i}: the router's {} full-block tokens are not a chain vLLM stored",
            full
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} cases had full blocks");
}
