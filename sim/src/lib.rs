//! `vllm-sim`: a simulated vLLM replica with a real prefix cache and a GPU time model.
//!
//! It serves vLLM's OpenAI-compatible API (`/v1/completions`, `/v1/chat/completions`, streaming
//! or not), `/v1/models`, `/health`, `/metrics` (vLLM metric names), `/reset_prefix_cache` and
//! `/admin/faults`, and publishes its prefix cache's changes as vLLM's KV-cache events when
//! `--kv-events-port` is set (`POST /admin/kv_events` drops a fraction of them or restarts the
//! sequence). Each replica owns an engine: a KV block pool with chained-hash prefix
//! caching and LRU eviction, a vLLM-like scheduler (max running sequences, token budget per step,
//! chunked prefill, FCFS or priority, preemption) and a time model calibrated on an 8B model on
//! one H100 (see [`SimConfig`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), vllm_sim::SimError> {
//! let server = vllm_sim::start(vllm_sim::SimConfig::zero_delay()).await?;
//! println!("listening on {}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Output length: exactly `max_tokens` tokens (`finish_reason` "length"); without `max_tokens`,
//! `--default-max-tokens` tokens (at least `min_tokens`) with `finish_reason` "stop", or
//! "length" when `ignore_eos` is set. Generated text is a deterministic 4-bytes-per-token filler.
//!
//! Errors use vLLM's current shape:
//! `{"error": {"message": "...", "type": "BadRequestError", "param": null, "code": 400}}`.

mod api;
mod config;
mod engine;
mod error;
mod faults;
mod kv_publish;
mod metrics;
mod server;
mod tokenizer;

pub use config::{FaultConfig, LoraModule, SchedulingPolicy, SimConfig, StartupMode};
pub use error::SimError;
pub use faults::{FaultState, FaultUpdate, Faults};
pub use kv_publish::{KvControl, KvEncoding, KvEventsConfig, KvHashForm, KvReplayVersion};
pub use server::{SimServer, start, start_replicas};
pub use tokenizer::{
    BYTES_PER_TOKEN, ChatMessage, GENERATION_PROMPT, block_hashes, filler_piece, filler_text,
    render_chat, tokenize,
};
