//! Token-mode keying of a ~2000-token, 8-turn chat: the fixed rendering (no chat template,
//! the keying before templates existed) against the model's chat template rendered like vLLM,
//! each followed by encoding; and the template rendering alone. The tokenizer is the GPU test
//! model's (`tests/data/vllm-0.26.0-llama8b/tokenizer.json`), or without it a byte-level BPE of
//! the same shape trained here.
//! Run: `cargo bench -p router --bench chat_keys`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use router::prompt_key::{ChatTemplate, KeyInput, KeyJob, PrefixConfig, TokenMode, chat_prompt};
use router::request::Prompt;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

const TEMPLATE: &str = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

const WORDS: [&str; 24] = [
    "the", "cache", "router", "prefix", "replica", "token", "block", "request", "model", "serve",
    "latency", "memory", "queue", "prompt", "answer", "question", "system", "user", "fast", "slow",
    "hit", "miss", "policy", "engine",
];

fn text(seed: usize, words: usize) -> String {
    (0..words)
        .map(|i| WORDS[(seed * 7 + i * 13 + i / 5) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The GPU test model's own tokenizer (32k byte-level BPE), when the golden capture is here.
fn golden_tokenizer() -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vllm-0.26.0-llama8b/tokenizer.json");
    path.is_file().then_some(path)
}

fn write_model(dir: &std::path::Path, with_template: bool) -> std::path::PathBuf {
    let path = dir.join("tokenizer.json");
    if let Some(golden) = golden_tokenizer() {
        std::fs::copy(golden, &path).expect("copy tokenizer");
    } else {
        train_tokenizer(&path);
    }
    if with_template {
        let config =
            serde_json::json!({"bos_token": "<s>", "eos_token": "</s>", "chat_template": TEMPLATE});
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).expect("write");
    }
    path
}

/// A small stand-in of the test model's tokenizer, trained here.
fn train_tokenizer(path: &std::path::Path) {
    let specials = [
        "<s>",
        "</s>",
        "<pad>",
        "<|user|>",
        "<|assistant|>",
        "<|system|>",
    ];
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(2000)
        .show_progress(false)
        .special_tokens(
            specials
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let corpus: Vec<String> = (0..200).map(|i| text(i, 60)).collect();
    tok.train(&mut trainer, corpus.iter()).expect("train");
    let post = TemplateProcessing::builder()
        .try_single("<s> $A")
        .expect("template")
        .special_tokens(vec![("<s>", 0)])
        .build()
        .expect("post-processor");
    tok.with_post_processor(Some(post));
    tok.save(path, false).expect("save");
}

fn chat() -> serde_json::Value {
    let mut messages = vec![serde_json::json!({"role": "system", "content": text(0, 200)})];
    for turn in 1..8 {
        messages.push(serde_json::json!({"role": "user", "content": text(turn, 120)}));
        messages.push(serde_json::json!({"role": "assistant", "content": text(turn + 50, 100)}));
    }
    messages.push(serde_json::json!({"role": "user", "content": text(99, 80)}));
    serde_json::Value::Array(messages)
}

fn job(messages: &serde_json::Value) -> KeyJob {
    let mut input = KeyInput::default();
    let Ok(Prompt::Text(fixed)) = chat_prompt(Some(messages.clone()), &mut input) else {
        panic!("chat renders");
    };
    KeyJob::Chat {
        input: Box::new(input),
        fixed,
    }
}

fn bench_chat_keys(c: &mut Criterion) {
    let messages = chat();
    let mut modes = Vec::new();
    let mut dirs = Vec::new();
    for with_template in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_model(dir.path(), with_template);
        let config = PrefixConfig {
            tokenizer: Some(path.clone()),
            ..PrefixConfig::default()
        };
        let mode = TokenMode::from_config(&config, &path).expect("token mode");
        assert_eq!(mode.has_template(), with_template);
        let (ids, _) = mode.key(job(&messages)).expect("keyed");
        eprintln!(
            "chat of {} messages: {} tokens ({})",
            messages.as_array().map_or(0, Vec::len),
            ids.len(),
            if with_template { "template" } else { "fixed" }
        );
        modes.push(mode);
        dirs.push(dir);
    }
    let mut group = c.benchmark_group("chat_keys_2k_tokens");
    group.bench_function("fixed_rendering_and_encode", |b| {
        b.iter(|| modes[0].key(black_box(job(&messages))).expect("keyed"))
    });
    group.bench_function("chat_template_and_encode", |b| {
        b.iter(|| modes[1].key(black_box(job(&messages))).expect("keyed"))
    });
    let template = ChatTemplate::load(Some(TEMPLATE), None)
        .expect("compiles")
        .expect("inline template");
    let KeyJob::Chat { input, .. } = job(&messages) else {
        unreachable!("chat job");
    };
    group.bench_function("chat_template_render_only", |b| {
        b.iter(|| template.render(black_box(&input)).expect("renders"))
    });
    group.bench_function("job_building_only", |b| {
        b.iter(|| black_box(job(&messages)))
    });
    group.finish();
}

criterion_group!(benches, bench_chat_keys);
criterion_main!(benches);
