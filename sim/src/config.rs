//! Simulator configuration: one struct that is both the library config and the CLI flags.

use crate::error::SimError;
use clap::{Args, Parser, ValueEnum};
use std::str::FromStr;

/// Order in which waiting requests are admitted, as vLLM's `--scheduling-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SchedulingPolicy {
    /// First come, first served by arrival.
    #[default]
    Fcfs,
    /// Lowest `priority` value first; ties broken by arrival.
    Priority,
}

/// How a replica behaves while it "loads the model" (see `--startup-delay-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum StartupMode {
    /// Listen at once; `/health` and the API answer 503 until the delay has passed.
    #[default]
    Health503,
    /// Do not listen at all until the delay has passed (connections are refused).
    ListenLate,
}

/// Fault knobs set at startup; the same knobs can be changed at runtime through [`crate::Faults`].
#[derive(Debug, Clone, Args, PartialEq)]
pub struct FaultConfig {
    /// Fraction (0..=1) of completion requests answered with an error status instead of a result.
    #[arg(long, default_value_t = 0.0)]
    pub fail_fraction: f64,
    /// HTTP status used for injected failures (500 or 503).
    #[arg(long, default_value_t = 500)]
    pub fail_status: u16,
    /// Accept completion requests but hold them without answering until the stall is cleared.
    #[arg(long, default_value_t = false)]
    pub stall: bool,
    /// Abort every streaming response after this many `data:` events (connection cut, no `[DONE]`).
    #[arg(long)]
    pub cut_stream_after: Option<usize>,
    /// Close every accepted connection immediately (and drop open ones).
    #[arg(long, default_value_t = false)]
    pub refuse_connections: bool,
    /// Pretend to load the model for this long before serving (see `--startup-mode`).
    #[arg(long, default_value_t = 0)]
    pub startup_delay_ms: u64,
    /// What "not ready yet" looks like during `--startup-delay-ms`.
    #[arg(long, value_enum, default_value_t = StartupMode::Health503)]
    pub startup_mode: StartupMode,
}

/// A LoRA adapter served next to the base model (vLLM `--lora-modules name=path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraModule {
    /// Name clients put in `model` and `/v1/models` lists.
    pub name: String,
    /// Where the adapter "lives" (only echoed as `root` in `/v1/models`).
    pub path: String,
}

impl FromStr for LoraModule {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, path)) if !name.trim().is_empty() && !path.trim().is_empty() => Ok(Self {
                name: name.trim().to_string(),
                path: path.trim().to_string(),
            }),
            _ => Err(SimError::Config(format!("expected name=path, got `{s}`"))),
        }
    }
}

/// Which of a replica's models a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelRef<'a> {
    /// The base model (any of its served names, or no `model` at all).
    Base,
    /// A LoRA adapter.
    Lora(&'a LoraModule),
}

/// Configuration of one simulated vLLM replica; every field is also a `vllm-sim` flag.
#[derive(Debug, Clone, Args, PartialEq)]
pub struct SimConfig {
    /// TCP port on 127.0.0.1 (0 = ephemeral; with --replicas N the replicas use port, port+1, ...).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Served model name (`/v1/models`, the `model` field, the `model_name` metric label).
    #[arg(long, default_value = "vllm-sim")]
    pub model: String,
    /// Names the model is served under (vLLM `--served-model-name`, several allowed); the first
    /// is the one responses and metrics carry. Empty: `--model`.
    #[arg(long, num_args = 1..)]
    pub served_model_name: Vec<String>,
    /// LoRA adapters `name=path` (several allowed), listed in `/v1/models` with the base model
    /// as `parent` and accepted as a request's `model`.
    #[arg(long, num_args = 1..)]
    pub lora_modules: Vec<LoraModule>,
    /// Tokens per KV-cache block (vLLM `--block-size`).
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// KV-cache capacity in blocks (27,000 x 16 tokens ~ an 8B model on one 80 GB GPU).
    #[arg(long, default_value_t = 27_000)]
    pub num_gpu_blocks: usize,
    /// Most sequences running at once (vLLM `--max-num-seqs`).
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Token budget of one scheduler step (prefill chunks plus one token per decoding sequence).
    #[arg(long, default_value_t = 8192)]
    pub max_num_batched_tokens: usize,
    /// Longest prompt + output accepted (vLLM `--max-model-len`).
    #[arg(long, default_value_t = 8192)]
    pub max_model_len: usize,
    /// Output length when a request gives no `max_tokens` (finish_reason "stop").
    #[arg(long, default_value_t = 256)]
    pub default_max_tokens: usize,
    /// Waiting-queue order.
    #[arg(long, value_enum, default_value_t = SchedulingPolicy::Fcfs)]
    pub scheduling_policy: SchedulingPolicy,
    /// Compute per batched token (uncached prompt token or decode step), microseconds (8B: ~33).
    #[arg(long, default_value_t = 33.0)]
    pub prefill_us_per_token: f64,
    /// Attention cost of one new prompt token over one cached context token, nanoseconds.
    #[arg(long, default_value_t = 3.9)]
    pub prefill_ns_per_cached_pair: f64,
    /// Floor of every engine step (reading the weights once), milliseconds (8B on H100: ~5).
    #[arg(long, default_value_t = 5.0)]
    pub decode_base_ms: f64,
    /// KV read per context token of each decoding sequence, nanoseconds (~46: ITL ~8 ms at 64x1k).
    #[arg(long, default_value_t = 46.0)]
    pub decode_ns_per_kv_token: f64,
    /// Divide every simulated duration by this factor (2 = twice as fast as the modelled GPU).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Multiply every step's duration by a random factor uniform in 1 +- this (0..1; 0 = exact):
    /// noisy timings, as a real GPU shows, for tests of what the router learns from them.
    #[arg(long, default_value_t = 0.0)]
    pub time_noise: f64,
    /// Seed of the random generator used by fault injection (and timing noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Address to bind (any loopback address such as 127.0.0.2 works for tests of DNS discovery).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Require `Authorization: Bearer KEY` on `/v1` routes, 401 otherwise (vLLM `--api-key`).
    #[arg(long, env = "VLLM_API_KEY")]
    pub api_key: Option<String>,
    /// Fault knobs.
    #[command(flatten)]
    pub faults: FaultConfig,
    /// KV-cache event publishing (vLLM's `--kv-events-config`).
    #[command(flatten)]
    pub kv_events: Box<crate::kv_publish::KvEventsConfig>,
}

/// Parses an empty command line so that `Default` and the CLI defaults are one source of truth.
#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    config: SimConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        match DefaultsOnly::try_parse_from(["vllm-sim"]) {
            Ok(parsed) => parsed.config,
            // Unreachable: an empty command line always parses; keep a loud message if not.
            Err(e) => panic!("built-in defaults failed to parse: {e}"),
        }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        SimConfig::default().faults
    }
}

impl SimConfig {
    /// The default config with every time constant at zero (for fast tests and overhead benchmarks).
    pub fn zero_delay() -> Self {
        Self {
            port: 0,
            prefill_us_per_token: 0.0,
            prefill_ns_per_cached_pair: 0.0,
            decode_base_ms: 0.0,
            decode_ns_per_kv_token: 0.0,
            ..Self::default()
        }
    }

    /// The base model's first served name: the default model, named in responses and metrics.
    pub fn served_model(&self) -> &str {
        self.served_model_name.first().unwrap_or(&self.model)
    }

    /// Every name the base model answers to (`--served-model-name`, or `--model`).
    pub fn served_names(&self) -> &[String] {
        if self.served_model_name.is_empty() {
            std::slice::from_ref(&self.model)
        } else {
            &self.served_model_name
        }
    }

    /// What a request's `model` names on this replica; `None` if it serves no such model.
    pub(crate) fn resolve_model(&self, requested: Option<&str>) -> Option<ModelRef<'_>> {
        let Some(name) = requested else {
            return Some(ModelRef::Base);
        };
        if self.served_names().iter().any(|n| n == name) {
            return Some(ModelRef::Base);
        }
        self.lora_modules
            .iter()
            .find(|l| l.name == name)
            .map(ModelRef::Lora)
    }

    /// Checks the model names: none empty, none given twice (base names and adapters together).
    fn validate_models(&self) -> Result<(), SimError> {
        let names = self
            .served_names()
            .iter()
            .chain(self.lora_modules.iter().map(|l| &l.name));
        let mut seen = std::collections::HashSet::new();
        for name in names {
            if name.trim().is_empty() {
                return Err(SimError::Config(
                    "served_model_name: a model name must not be empty".to_string(),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(SimError::Config(format!(
                    "served_model_name/lora_modules: model name `{name}` is given twice"
                )));
            }
        }
        Ok(())
    }

    /// Checks the values a server cannot run with; the error names the bad field.
    pub(crate) fn validate(&self) -> Result<(), SimError> {
        self.validate_models()?;
        let positive = [
            ("block_size", self.block_size),
            ("num_gpu_blocks", self.num_gpu_blocks),
            ("max_num_seqs", self.max_num_seqs),
            ("max_num_batched_tokens", self.max_num_batched_tokens),
            ("max_model_len", self.max_model_len),
            ("default_max_tokens", self.default_max_tokens),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(SimError::Config(format!("{name} must be at least 1")));
        }
        let times = [
            ("prefill_us_per_token", self.prefill_us_per_token),
            (
                "prefill_ns_per_cached_pair",
                self.prefill_ns_per_cached_pair,
            ),
            ("decode_base_ms", self.decode_base_ms),
            ("decode_ns_per_kv_token", self.decode_ns_per_kv_token),
        ];
        if let Some((name, v)) = times.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return Err(SimError::Config(format!(
                "{name} must be a finite number >= 0, got {v}"
            )));
        }
        if !(self.speedup.is_finite() && self.speedup > 0.0) {
            return Err(SimError::Config(format!(
                "speedup must be > 0, got {}",
                self.speedup
            )));
        }
        if !(0.0..1.0).contains(&self.time_noise) {
            return Err(SimError::Config(format!(
                "time_noise must be within 0..1, got {}",
                self.time_noise
            )));
        }
        if !(0.0..=1.0).contains(&self.faults.fail_fraction) {
            return Err(SimError::Config(format!(
                "fail_fraction must be within 0..=1, got {}",
                self.faults.fail_fraction
            )));
        }
        if !(400..=599).contains(&self.faults.fail_status) {
            return Err(SimError::Config(format!(
                "fail_status must be an HTTP error status (400..=599), got {}",
                self.faults.fail_status
            )));
        }
        self.kv_events.validate()
    }

    /// Longest prompt + output a request may ask for: the model length, capped by KV capacity.
    pub(crate) fn max_request_tokens(&self) -> usize {
        self.max_model_len
            .min(self.num_gpu_blocks.saturating_mul(self.block_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_documented_values() {
        let c = SimConfig::default();
        assert_eq!(c.block_size, 16);
        assert_eq!(c.port, 8000);
        assert_eq!(c.scheduling_policy, SchedulingPolicy::Fcfs);
        assert!(c.validate().is_ok());
        let z = SimConfig::zero_delay();
        assert_eq!(z.decode_base_ms, 0.0);
        assert_eq!(z.port, 0);
        assert!(z.validate().is_ok());
    }

    #[test]
    fn flags_parse_into_config() {
        let c = DefaultsOnly::try_parse_from([
            "vllm-sim",
            "--port",
            "8001",
            "--block-size",
            "32",
            "--scheduling-policy",
            "priority",
            "--speedup",
            "4",
            "--fail-fraction",
            "0.25",
            "--fail-status",
            "503",
            "--cut-stream-after",
            "3",
            "--startup-delay-ms",
            "100",
            "--startup-mode",
            "listen-late",
        ])
        .unwrap()
        .config;
        assert_eq!(c.port, 8001);
        assert_eq!(c.block_size, 32);
        assert_eq!(c.scheduling_policy, SchedulingPolicy::Priority);
        assert_eq!(c.speedup, 4.0);
        assert_eq!(c.faults.fail_fraction, 0.25);
        assert_eq!(c.faults.fail_status, 503);
        assert_eq!(c.faults.cut_stream_after, Some(3));
        assert_eq!(c.faults.startup_mode, StartupMode::ListenLate);
        assert!(DefaultsOnly::try_parse_from(["vllm-sim", "--block-size", "x"]).is_err());
    }

    #[test]
    fn model_flags_parse_and_resolve() {
        let c = DefaultsOnly::try_parse_from([
            "vllm-sim",
            "--model",
            "/models/llama",
            "--served-model-name",
            "llama",
            "llama-alias",
            "--lora-modules",
            "sql=/adapters/sql",
            "chat=/adapters/chat",
            "--port",
            "0",
        ])
        .unwrap()
        .config;
        assert_eq!(c.served_model(), "llama");
        assert_eq!(c.served_names(), ["llama", "llama-alias"]);
        assert_eq!(c.lora_modules.len(), 2);
        assert_eq!(c.lora_modules[1].path, "/adapters/chat");
        assert_eq!(c.resolve_model(None), Some(ModelRef::Base));
        assert_eq!(c.resolve_model(Some("llama-alias")), Some(ModelRef::Base));
        assert_eq!(
            c.resolve_model(Some("sql")),
            Some(ModelRef::Lora(&c.lora_modules[0]))
        );
        assert_eq!(c.resolve_model(Some("/models/llama")), None);
        assert!(c.validate().is_ok());
        // Without --served-model-name the model is served under --model.
        let d = SimConfig::default();
        assert_eq!(d.served_model(), "vllm-sim");
        assert_eq!(d.resolve_model(Some("vllm-sim")), Some(ModelRef::Base));
        assert!(DefaultsOnly::try_parse_from(["vllm-sim", "--lora-modules", "nopath"]).is_err());
        let dup = SimConfig {
            lora_modules: vec!["vllm-sim=/x".parse().unwrap()],
            ..SimConfig::zero_delay()
        };
        assert!(dup.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn validate_names_bad_field() {
        let c = SimConfig {
            block_size: 0,
            ..SimConfig::zero_delay()
        };
        assert!(c.validate().unwrap_err().to_string().contains("block_size"));
        let c = SimConfig {
            speedup: 0.0,
            ..SimConfig::zero_delay()
        };
        assert!(c.validate().unwrap_err().to_string().contains("speedup"));
    }
}
