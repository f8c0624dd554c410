//! Workloads: which prompts to send, with which output length, group and priority.
//!
//! Every builder is seeded, so the same config always gives the same request list.

mod pieces;
mod priority;
mod random;
mod shared_prefix;
mod sharegpt;
mod synthetic;
mod text;

pub use priority::PriorityMix;
pub use text::filler_text;

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One chat message of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// Builds a message from a role and its text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// One request to send: the conversation so far, how many tokens to generate, its group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSpec {
    /// The messages; the last one is the user turn being answered.
    pub messages: Vec<Message>,
    /// Requested output tokens (`max_tokens`).
    pub output_len: u32,
    /// The conversation, system prompt or request this piece comes from.
    pub group: u64,
    /// Scheduling priority sent in the body (lower is served first by vLLM), if any.
    pub priority: Option<i64>,
}

impl RequestSpec {
    /// The prompt for `/v1/completions`: "Role: text" lines ending in "Assistant:".
    ///
    /// Turn k's prompt is a byte prefix of turn k+1's prompt.
    pub fn prompt_text(&self) -> String {
        render_text(&self.messages)
    }
}

/// Renders messages as "User: ...\nAssistant: ...\n...User: ...\nAssistant:".
pub fn render_text(messages: &[Message]) -> String {
    let mut out = String::with_capacity(messages.iter().map(|m| m.content.len() + 12).sum());
    for m in messages {
        out.push_str(role_label(&m.role));
        out.push_str(": ");
        out.push_str(&m.content);
        out.push('\n');
    }
    out.push_str("Assistant:");
    out
}

fn role_label(role: &str) -> &str {
    match role {
        "system" => "System",
        "user" => "User",
        "assistant" => "Assistant",
        other => other,
    }
}

/// A built workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Dataset name, e.g. "sharegpt".
    pub name: String,
    /// The requests in sending order.
    pub requests: Vec<RequestSpec>,
    /// Distinct groups (conversations or system prompts) among the requests.
    pub groups: usize,
}

/// Which workload to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Prefixes of ShareGPT conversations (bundled sample or `--dataset-path`).
    Sharegpt,
    /// Generated multi-turn conversations, cut into prefixes like ShareGPT.
    SyntheticMultiturn,
    /// A few long system prompts with Zipf popularity, each followed by a distinct question.
    SharedPrefix,
    /// Unrelated prompts of a fixed length with a fixed output length.
    Random,
}

impl DatasetKind {
    /// The flag spelling of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sharegpt => "sharegpt",
            Self::SyntheticMultiturn => "synthetic-multiturn",
            Self::SharedPrefix => "shared-prefix",
            Self::Random => "random",
        }
    }
}

/// Parameters of the shared-prefix workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedPrefixConfig {
    /// Number of distinct system prompts.
    pub groups: usize,
    /// Tokens per system prompt (vllm-sim tokens: 4 bytes each).
    pub system_prompt_len: usize,
    /// Tokens per question.
    pub question_len: usize,
    /// Zipf exponent of system prompt popularity (0 = uniform).
    pub zipf: f64,
}

/// Parameters of the synthetic multi-turn workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Number of conversations.
    pub conversations: usize,
    /// User turns per conversation.
    pub turns: usize,
    /// Tokens per user message.
    pub user_len: usize,
    /// Tokens per assistant message.
    pub assistant_len: usize,
}

/// Parameters of the random workload.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomConfig {
    /// Tokens per prompt.
    pub input_len: usize,
    /// Output tokens per request.
    pub output_len: u32,
}

/// Everything needed to build a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetConfig {
    /// Which workload.
    pub kind: DatasetKind,
    /// ShareGPT JSON file; the bundled sample when `None`.
    pub path: Option<PathBuf>,
    /// Requests to build.
    pub num_prompts: usize,
    /// Conversations to pick from the ShareGPT file.
    pub max_conversations: usize,
    /// Skip conversations with fewer messages than this.
    pub min_messages: usize,
    /// Smallest output length (inclusive).
    pub min_output_len: u32,
    /// Largest output length (inclusive).
    pub max_output_len: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Shared-prefix parameters.
    pub shared_prefix: SharedPrefixConfig,
    /// Synthetic multi-turn parameters.
    pub synthetic: SyntheticConfig,
    /// Random workload parameters.
    pub random: RandomConfig,
    /// Priority classes and their weights.
    pub priority_mix: Option<PriorityMix>,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            kind: DatasetKind::Sharegpt,
            path: None,
            num_prompts: 1000,
            max_conversations: 10_000,
            min_messages: 2,
            min_output_len: 10,
            max_output_len: 200,
            seed: 0,
            shared_prefix: SharedPrefixConfig {
                groups: 8,
                system_prompt_len: 2000,
                question_len: 64,
                zipf: 1.2,
            },
            synthetic: SyntheticConfig {
                conversations: 50,
                turns: 6,
                user_len: 64,
                assistant_len: 128,
            },
            random: RandomConfig {
                input_len: 1024,
                output_len: 128,
            },
            priority_mix: None,
        }
    }
}

/// Builds the workload `config` describes.
pub fn build(config: &DatasetConfig) -> Result<Workload> {
    if config.num_prompts == 0 {
        return Err(Error::invalid("--num-prompts", "must be at least 1"));
    }
    if config.max_output_len == 0 || config.min_output_len > config.max_output_len {
        return Err(Error::invalid(
            "--min-output-len/--max-output-len",
            format!(
                "need 1 <= max and min <= max, got {}..={}",
                config.min_output_len, config.max_output_len
            ),
        ));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut workload = match config.kind {
        DatasetKind::Sharegpt => sharegpt::build(config, &mut rng)?,
        DatasetKind::SyntheticMultiturn => synthetic::build(config, &mut rng)?,
        DatasetKind::SharedPrefix => shared_prefix::build(config, &mut rng)?,
        DatasetKind::Random => random::build(config, &mut rng)?,
    };
    if let Some(mix) = &config.priority_mix {
        mix.assign(&mut workload.requests, &mut rng);
    }
    Ok(workload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_render_extends_across_turns() {
        let mut msgs = vec![Message::new("user", "hi")];
        let t1 = render_text(&msgs);
        assert_eq!(t1, "User: hi\nAssistant:");
        msgs.push(Message::new("assistant", "hello"));
        msgs.push(Message::new("user", "more"));
        let t2 = render_text(&msgs);
        assert!(t2.starts_with(&t1), "{t2:?} must extend {t1:?}");
        assert_eq!(t2, "User: hi\nAssistant: hello\nUser: more\nAssistant:");
    }

    #[test]
    fn bad_lengths_rejected() {
        let c = DatasetConfig {
            min_output_len: 50,
            max_output_len: 10,
            ..DatasetConfig::default()
        };
        assert!(matches!(build(&c), Err(Error::InvalidArg { .. })));
        let c = DatasetConfig {
            num_prompts: 0,
            ..DatasetConfig::default()
        };
        assert!(matches!(build(&c), Err(Error::InvalidArg { .. })));
    }

    #[test]
    fn same_seed_same_workload() {
        let c = DatasetConfig {
            num_prompts: 50,
            ..DatasetConfig::default()
        };
        assert_eq!(build(&c).unwrap(), build(&c).unwrap());
        let other = build(&DatasetConfig {
            seed: 1,
            ..c.clone()
        })
        .unwrap();
        assert_ne!(build(&c).unwrap(), other);
    }
}
