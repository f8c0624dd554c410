//! Command-line flags: `loadgen [run flags]`, `loadgen sweep`, `loadgen report`, `loadgen demo`.

use crate::arrivals::RequestRate;
use crate::bench::BenchConfig;
use crate::dataset::{
    DatasetConfig, DatasetKind, PriorityMix, RandomConfig, SharedPrefixConfig, SyntheticConfig,
};
use crate::error::Result;
use crate::metrics::Slo;
use crate::request::Endpoint;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Benchmark an OpenAI-compatible server (vLLM, SGLang, the prefix router) with multi-turn
/// prefix workloads. Without a subcommand, runs one benchmark against --base-url.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Sweep, report or demo; omit to run one benchmark.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of a single run.
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// Parses `args` (the first is the program name) without exiting on error.
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(args)
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every policy x request rate through an in-process router and write one CSV.
    Sweep(Box<SweepArgs>),
    /// Draw charts (PNG and SVG) and an index.html from a results CSV.
    Report(ReportArgs),
    /// Start 4 simulated replicas and the router, compare power_of_two and cost, write a report.
    Demo(DemoArgs),
}

/// Flags of one benchmark run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Server to benchmark (a router or a single replica).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub base_url: String,
    /// Mean requests per second (Poisson arrivals), or "inf" to send everything at once.
    #[arg(long, default_value = "inf")]
    pub request_rate: RequestRate,
    /// Replica base URLs (comma separated) whose /metrics are scraped before and after the run.
    #[arg(long, value_delimiter = ',')]
    pub replica_urls: Vec<String>,
    /// Workload and client flags.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Where results go.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Result files.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Append one JSON object per run to this file (JSON lines).
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    /// Append one CSV row per run (parameters, then metrics); defaults to --output-file with a
    /// .csv extension.
    #[arg(long)]
    pub output_csv: Option<PathBuf>,
}

impl OutputArgs {
    /// The CSV path: explicit, or derived from the JSON path.
    pub fn csv_path(&self) -> Option<PathBuf> {
        self.output_csv
            .clone()
            .or_else(|| self.output_file.as_ref().map(|p| p.with_extension("csv")))
    }
}

/// Workload, client and measurement flags shared by a run and a sweep.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// API to call: /v1/completions (conversation rendered as text) or /v1/chat/completions.
    #[arg(long, value_enum, default_value = "chat")]
    pub endpoint: Endpoint,
    /// Model name to send; asked from /v1/models when omitted.
    #[arg(long)]
    pub model: Option<String>,
    /// Workload: ShareGPT prefixes, synthetic multi-turn, shared system prompts, or random.
    #[arg(long, value_enum, default_value = "sharegpt")]
    pub dataset_name: DatasetKind,
    /// ShareGPT JSON file (default: the bundled 48-conversation sample).
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// Number of requests to send.
    #[arg(long, default_value_t = 1000)]
    pub num_prompts: usize,
    /// ShareGPT: conversations to pick before cutting them into prefixes.
    #[arg(long, default_value_t = 10_000)]
    pub max_conversations: usize,
    /// ShareGPT: skip conversations with fewer messages.
    #[arg(long, default_value_t = 2)]
    pub min_messages: usize,
    /// Smallest output length (capped at --max-output-len); each request's length is uniform
    /// in [min, max].
    #[arg(long, default_value_t = 10)]
    pub min_output_len: u32,
    /// Largest output length (1 = prefill-only run).
    #[arg(long, default_value_t = 200)]
    pub max_output_len: u32,
    /// Shared-prefix: number of system prompts.
    #[arg(long, default_value_t = 8)]
    pub gsp_num_groups: usize,
    /// Shared-prefix: tokens per system prompt.
    #[arg(long, default_value_t = 2000)]
    pub gsp_system_prompt_len: usize,
    /// Shared-prefix: tokens per question.
    #[arg(long, default_value_t = 64)]
    pub gsp_question_len: usize,
    /// Shared-prefix: Zipf exponent of system prompt popularity (0 = uniform).
    #[arg(long, default_value_t = 1.2)]
    pub gsp_zipf: f64,
    /// Synthetic multi-turn: number of conversations.
    #[arg(long, default_value_t = 50)]
    pub synthetic_conversations: usize,
    /// Synthetic multi-turn: user turns per conversation.
    #[arg(long, default_value_t = 6)]
    pub synthetic_turns: usize,
    /// Synthetic multi-turn: tokens per user message.
    #[arg(long, default_value_t = 64)]
    pub synthetic_user_len: usize,
    /// Synthetic multi-turn: tokens per assistant message.
    #[arg(long, default_value_t = 128)]
    pub synthetic_assistant_len: usize,
    /// Random: tokens per prompt.
    #[arg(long, default_value_t = 1024)]
    pub random_input_len: usize,
    /// Random: output tokens per request.
    #[arg(long, default_value_t = 128)]
    pub random_output_len: u32,
    /// Gamma shape of arrival gaps: 1 = Poisson, < 1 burstier, > 1 more regular.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Most requests in flight at once (unbounded when omitted).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Send the first request once before measuring (fails fast if the server is down).
    #[arg(long)]
    pub with_warmup: bool,
    /// Do not send ignore_eos (the server may stop before max_tokens).
    #[arg(long)]
    pub disable_ignore_eos: bool,
    /// Ask for whole responses instead of streams (TTFT then equals E2E).
    #[arg(long)]
    pub disable_stream: bool,
    /// Seed of the workload and the arrivals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Label stored with the results.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Priority classes and weights, e.g. "0:0.5,1:0.5" (sent as the body's "priority").
    #[arg(long)]
    pub priority_mix: Option<PriorityMix>,
    /// TTFT objective for goodput, milliseconds.
    #[arg(long)]
    pub slo_ttft_ms: Option<f64>,
    /// TPOT objective for goodput, milliseconds.
    #[arg(long)]
    pub slo_tpot_ms: Option<f64>,
    /// Count tokens with this Hugging Face tokenizer.json instead of the server's usage.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Results file of a prefill-only run (--max-output-len 1) of the same workload: splits
    /// E2E into prefill and generation latency and throughput. Start both runs from the same
    /// cache state (e.g. reset the replicas' prefix caches in between).
    #[arg(long)]
    pub prefill_baseline: Option<PathBuf>,
    /// Write every request (send time, path, body) to this JSON-lines file.
    #[arg(long)]
    pub dump_requests: Option<PathBuf>,
    /// Block size (tokens) of the oracle cache; match the replicas' --block-size.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Skip the oracle hit rate.
    #[arg(long)]
    pub disable_oracle: bool,
    /// Give up on one request after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub request_timeout_secs: u64,
    /// After Ctrl-C, wait this many seconds for requests in flight.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// Never show the progress bar.
    #[arg(long)]
    pub disable_progress: bool,
}

impl WorkloadArgs {
    /// The dataset part of the flags.
    pub fn dataset_config(&self) -> DatasetConfig {
        DatasetConfig {
            kind: self.dataset_name,
            path: self.dataset_path.clone(),
            num_prompts: self.num_prompts,
            max_conversations: self.max_conversations,
            min_messages: self.min_messages,
            min_output_len: self.min_output_len.min(self.max_output_len),
            max_output_len: self.max_output_len,
            seed: self.seed,
            shared_prefix: SharedPrefixConfig {
                groups: self.gsp_num_groups,
                system_prompt_len: self.gsp_system_prompt_len,
                question_len: self.gsp_question_len,
                zipf: self.gsp_zipf,
            },
            synthetic: SyntheticConfig {
                conversations: self.synthetic_conversations,
                turns: self.synthetic_turns,
                user_len: self.synthetic_user_len,
                assistant_len: self.synthetic_assistant_len,
            },
            random: RandomConfig {
                input_len: self.random_input_len,
                output_len: self.random_output_len,
            },
            priority_mix: self.priority_mix.clone(),
        }
    }

    /// The benchmark config for one run against `base_url` at `rate`.
    pub fn bench_config(
        &self,
        base_url: &str,
        rate: RequestRate,
        replica_urls: &[String],
    ) -> Result<BenchConfig> {
        Ok(BenchConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            endpoint: self.endpoint,
            model: self.model.clone(),
            dataset: self.dataset_config(),
            request_rate: rate,
            burstiness: self.burstiness,
            max_concurrency: self.max_concurrency,
            warmup: self.with_warmup,
            ignore_eos: !self.disable_ignore_eos,
            stream: !self.disable_stream,
            label: self.label.clone(),
            policy: None,
            queue_policy: None,
            caps: None,
            slo: Slo {
                ttft_ms: self.slo_ttft_ms,
                tpot_ms: self.slo_tpot_ms,
            },
            replica_urls: replica_urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            tokenizer: self.tokenizer.clone(),
            prefill_baseline: self.prefill_baseline.clone(),
            dump_requests: self.dump_requests.clone(),
            oracle_block_size: (!self.disable_oracle).then_some(self.block_size),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            progress: !self.disable_progress,
        })
    }
}

/// Flags of `loadgen sweep`.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Router policies to compare (comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "round_robin,power_of_two,prefix_aware,cost"
    )]
    pub policies: Vec<String>,
    /// Request rates to run each policy at (comma separated; "inf" allowed).
    #[arg(long, value_delimiter = ',', default_value = "25,50,100")]
    pub request_rates: Vec<RequestRate>,
    /// Router admission-queue policies to compare (fcfs, priority, priority_round_robin; comma
    /// separated). Unset: the router's default (or --router-config's).
    #[arg(long, value_delimiter = ',')]
    pub queue_policies: Vec<String>,
    /// Router replica caps to compare (none, static, adaptive; comma separated). Unset: the
    /// router's default (or --router-config's).
    #[arg(long, value_delimiter = ',')]
    pub caps: Vec<String>,
    /// Requests in flight per replica for `--caps static` (and the ceiling of `adaptive`).
    #[arg(long, default_value_t = 32)]
    pub cap_requests: u32,
    /// Turns per priority class under `priority_round_robin`, e.g. `0:3,1:1`.
    #[arg(long)]
    pub queue_weights: Option<String>,
    /// Longest wait in the router queue, milliseconds (503 beyond).
    #[arg(long)]
    pub queue_max_wait_ms: Option<u64>,
    /// Number of simulated replicas to start (ignored with --replica-urls).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Real replicas to route to instead of simulated ones (comma separated base URLs).
    #[arg(long, value_delimiter = ',', conflicts_with = "replicas")]
    pub replica_urls: Vec<String>,
    /// Base router YAML (listen, replicas and policy.name are set by the sweep).
    #[arg(long)]
    pub router_config: Option<PathBuf>,
    /// Simulated replicas: divide every simulated duration by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub sim_speedup: f64,
    /// Simulated replicas: KV cache capacity in blocks of --block-size tokens.
    #[arg(long, default_value_t = 27_000)]
    pub sim_num_gpu_blocks: usize,
    /// Simulated replicas: most sequences running at once.
    #[arg(long, default_value_t = 256)]
    pub sim_max_num_seqs: usize,
    /// Also draw the report into this directory when the sweep ends.
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Workload and client flags.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Result files (the CSV defaults to results/sweep.csv).
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of `loadgen report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A results CSV written by loadgen (run, sweep or demo).
    pub csv: PathBuf,
    /// Directory for the PNG and SVG charts and index.html.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
}

/// Flags of `loadgen demo` (all optional).
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Directory for the results CSV/JSON and the report.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// Policies to compare.
    #[arg(long, value_delimiter = ',', default_value = "power_of_two,cost")]
    pub policies: Vec<String>,
    /// Requests per policy.
    #[arg(long, default_value_t = 600)]
    pub num_prompts: usize,
    /// Simulated time runs this many times faster than the modelled GPU.
    #[arg(long, default_value_t = 2.0)]
    pub speedup: f64,
    /// Mean requests per second.
    #[arg(long, default_value = "80")]
    pub request_rate: RequestRate,
    /// Most requests in flight.
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: usize,
    /// Seed of the workload, arrivals and router.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_without_subcommand() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--base-url",
            "http://h:1/",
            "--request-rate",
            "100",
            "--max-concurrency",
            "40",
            "--dataset-name",
            "shared-prefix",
            "--gsp-num-groups",
            "64",
            "--gsp-zipf",
            "0.8",
            "--priority-mix",
            "0:0.5,1:0.5",
            "--replica-urls",
            "http://a,http://b",
            "--output-file",
            "out/r.jsonl",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let r = cli.run;
        assert_eq!(r.request_rate, RequestRate::PerSecond(100.0));
        assert_eq!(r.replica_urls, vec!["http://a", "http://b"]);
        assert_eq!(r.output.csv_path().unwrap(), PathBuf::from("out/r.csv"));
        let b = r
            .workload
            .bench_config(&r.base_url, r.request_rate, &r.replica_urls)
            .unwrap();
        assert_eq!(b.base_url, "http://h:1");
        assert_eq!(b.max_concurrency, Some(40));
        assert_eq!(b.dataset.shared_prefix.groups, 64);
        assert_eq!(b.dataset.shared_prefix.zipf, 0.8);
        assert!(b.stream && b.ignore_eos);
        // `--max-output-len 1` alone makes a prefill-only run.
        let cli = Cli::parse_args(["loadgen", "--max-output-len", "1"]).unwrap();
        let d = cli.run.workload.dataset_config();
        assert_eq!((d.min_output_len, d.max_output_len), (1, 1));
        assert_eq!(b.dataset.priority_mix.unwrap().classes.len(), 2);
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "sweep",
            "--policies",
            "round_robin,cost",
            "--request-rates",
            "25,inf",
            "--replicas",
            "2",
        ])
        .unwrap();
        let Some(Command::Sweep(s)) = cli.command else {
            panic!("not a sweep")
        };
        assert_eq!(s.policies, vec!["round_robin", "cost"]);
        assert_eq!(
            s.request_rates,
            vec![RequestRate::PerSecond(25.0), RequestRate::Infinite]
        );
        let cli = Cli::try_parse_from(["loadgen", "report", "r.csv", "--out", "rep"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Report(_))));
        let cli = Cli::try_parse_from(["loadgen", "demo"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Demo(_))));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["loadgen", "--request-rate", "-3"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--priority-mix", "x"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--endpoint", "nope"]).is_err());
    }
}
