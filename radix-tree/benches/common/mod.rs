//! Bench workload: ShareGPT conversations rendered as multi-turn prompts, copied under distinct
//! headers so every copy forms its own branch, and assigned to tenants by conversation.

use std::path::PathBuf;

use radix_tree::TenantId;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Conversations interleaved at a time, so consecutive turns of one conversation are spaced out.
const WINDOW: usize = 64;

/// One conversation rendered as "User: ...\nAssistant: ...\n", with the end of each prompt.
pub(crate) struct Conversation {
    text: Vec<u8>,
    /// Byte offsets where a prompt ends (after each user message).
    prompt_ends: Vec<usize>,
}

/// The conversations a workload is built from, and where they came from.
pub(crate) struct Corpus {
    convs: Vec<Conversation>,
    /// Human-readable origin (file path, or "synthetic").
    pub(crate) source: String,
}

/// One request: a prompt (a prefix of one conversation) sent to one tenant.
#[derive(Clone, Copy)]
pub(crate) struct Request {
    conv: u32,
    end: u32,
    /// Tenant the prompt is routed to (fixed per conversation: session affinity).
    pub(crate) tenant: TenantId,
}

/// All requests of one copy of the corpus, with the copy's texts.
pub(crate) struct CopyBatch {
    texts: Vec<Vec<u8>>,
    /// Requests in arrival order.
    pub(crate) requests: Vec<Request>,
    /// Sum of the prompt lengths of all requests.
    pub(crate) prompt_bytes: usize,
}

impl CopyBatch {
    /// The prompt of `r`.
    pub(crate) fn key(&self, r: &Request) -> &[u8] {
        &self.texts[r.conv as usize][..r.end as usize]
    }
}

fn data_path() -> PathBuf {
    match std::env::var_os("SHAREGPT_JSON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/sharegpt_long_convos.json"),
    }
}

fn render(turns: &[(bool, &str)]) -> Conversation {
    let mut text = Vec::new();
    let mut prompt_ends = Vec::new();
    for (human, value) in turns {
        text.extend_from_slice(if *human { b"User: " } else { b"Assistant: " });
        text.extend_from_slice(value.as_bytes());
        text.push(b'\n');
        if *human {
            prompt_ends.push(text.len());
        }
    }
    Conversation { text, prompt_ends }
}

fn parse(raw: &str) -> Option<Vec<Conversation>> {
    let json: serde_json::Value = serde_json::from_str(raw).ok()?;
    let mut convs = Vec::new();
    for c in json.as_array()? {
        let mut turns = Vec::new();
        for m in c.get("conversations")?.as_array()? {
            let human = m.get("from")?.as_str()? == "human";
            turns.push((human, m.get("value")?.as_str()?));
        }
        let conv = render(&turns);
        if !conv.prompt_ends.is_empty() {
            convs.push(conv);
        }
    }
    (!convs.is_empty()).then_some(convs)
}

/// Synthetic stand-in with the same shape: 828 conversations of ~10 turns, ~400 bytes each.
fn synthetic() -> Vec<Conversation> {
    const WORDS: [&str; 16] = [
        "the", "model", "cache", "prefix", "router", "token", "replica", "request", "latency",
        "answer", "question", "please", "explain", "why", "because", "and",
    ];
    let mut rng = SmallRng::seed_from_u64(7);
    (0..828)
        .map(|_| {
            let turns: Vec<(bool, String)> = (0..rng.random_range(4..18))
                .map(|i| {
                    let words: Vec<&str> = (0..rng.random_range(20..120))
                        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                        .collect();
                    (i % 2 == 0, words.join(" "))
                })
                .collect();
            let refs: Vec<(bool, &str)> = turns.iter().map(|(h, s)| (*h, s.as_str())).collect();
            render(&refs)
        })
        .collect()
}

/// Loads the ShareGPT file, or falls back to synthetic text (and says so) if it is missing.
pub(crate) fn load_corpus() -> Corpus {
    let path = data_path();
    match std::fs::read_to_string(&path)
        .ok()
        .as_deref()
        .and_then(parse)
    {
        Some(convs) => Corpus {
            convs,
            source: path.display().to_string(),
        },
        None => {
            eprintln!(
                "WARNING: {} missing or unreadable: using SYNTHETIC conversations instead",
                path.display()
            );
            Corpus {
                convs: synthetic(),
                source: "synthetic (ShareGPT file missing)".into(),
            }
        }
    }
}

impl Corpus {
    /// Number of conversations.
    pub(crate) fn len(&self) -> usize {
        self.convs.len()
    }

    /// Units one copy adds to a tree (each conversation up to its last prompt).
    pub(crate) fn stored_bytes_per_copy(&self) -> usize {
        self.convs
            .iter()
            .map(|c| c.prompt_ends.last().copied().unwrap_or(0))
            .sum()
    }

    /// Renders copy `copy` under its own header, requests interleaved over windows of conversations.
    pub(crate) fn copy(&self, copy: u32, tenants: u32) -> CopyBatch {
        let header = format!("[session copy {copy:06}] ");
        let texts: Vec<Vec<u8>> = self
            .convs
            .iter()
            .map(|c| [header.as_bytes(), &c.text].concat())
            .collect();
        let mut requests = Vec::new();
        let mut prompt_bytes = 0;
        for (w, window) in self.convs.chunks(WINDOW).enumerate() {
            let turns = window
                .iter()
                .map(|c| c.prompt_ends.len())
                .max()
                .unwrap_or(0);
            for turn in 0..turns {
                for (i, c) in window.iter().enumerate() {
                    let Some(&end) = c.prompt_ends.get(turn) else {
                        continue;
                    };
                    let conv = w * WINDOW + i;
                    let end = end + header.len();
                    prompt_bytes += end;
                    requests.push(Request {
                        conv: conv as u32,
                        end: end as u32,
                        tenant: TenantId(mix(copy, conv as u32) % tenants),
                    });
                }
            }
        }
        CopyBatch {
            texts,
            requests,
            prompt_bytes,
        }
    }
}

/// Deterministic hash of (copy, conversation) to spread sessions over tenants.
fn mix(a: u32, b: u32) -> u32 {
    let mut x = (u64::from(a) << 32 | u64::from(b)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as u32
}
