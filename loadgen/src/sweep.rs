//! `loadgen sweep`: every policy x queue policy x caps x request rate through an in-process
//! router.

use crate::arrivals::RequestRate;
use crate::bench::{BenchConfig, http_client, run_benchmark};
use crate::cli::SweepArgs;
use crate::cluster::{reset_prefix_caches, router_config, router_yaml, start_router, start_sims};
use crate::commands::write_results;
use crate::error::{Error, Result};
use crate::output::render_comparison;
use crate::report::write_report;
use crate::summary::RunSummary;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use vllm_sim::{SchedulingPolicy, SimConfig};

/// Where a sweep's replicas come from.
#[derive(Debug, Clone)]
pub enum Replicas {
    /// Start this many simulated replicas with this config.
    Simulated {
        /// Replica config (the port is ignored); boxed, it is much larger than the other variant.
        config: Box<SimConfig>,
        /// How many.
        count: usize,
    },
    /// Route to these running replicas.
    External(Vec<String>),
}

/// The router's admission settings of one sweep point: queue policy and caps mode (`None`:
/// left as the base config has them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scheduler {
    /// `queue.policy`.
    pub queue_policy: Option<String>,
    /// `caps.mode`.
    pub caps: Option<String>,
}

/// Admission settings shared by every sweep point that sets a queue policy or caps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdmissionSettings {
    /// `caps.max_requests`.
    pub cap_requests: u32,
    /// `queue.classes` weights as (priority, weight).
    pub weights: Vec<(i64, u32)>,
    /// `queue.max_wait_ms`.
    pub max_wait_ms: Option<u64>,
}

/// Every combination of `queue_policies` and `caps` (an empty list: one unset point).
pub fn schedulers(queue_policies: &[String], caps: &[String]) -> Vec<Scheduler> {
    let some = |v: &[String]| -> Vec<Option<String>> {
        if v.is_empty() {
            vec![None]
        } else {
            v.iter().map(|x| Some(x.trim().to_string())).collect()
        }
    };
    let mut out = Vec::new();
    for q in some(queue_policies) {
        for c in some(caps) {
            out.push(Scheduler {
                queue_policy: q.clone(),
                caps: c,
            });
        }
    }
    out
}

/// `yaml` with the scheduler's `queue` and `caps` keys set.
pub fn with_admission(
    yaml: &str,
    scheduler: &Scheduler,
    settings: &AdmissionSettings,
) -> Result<String> {
    use serde_yaml::{Mapping, Value};
    if scheduler == &Scheduler::default() {
        return Ok(yaml.to_string());
    }
    let bad = |e: String| Error::invalid("--queue-policies/--caps", e);
    let mut doc: Value = serde_yaml::from_str(yaml).map_err(|e| bad(e.to_string()))?;
    let Value::Mapping(root) = &mut doc else {
        return Err(bad("router config is not a mapping".into()));
    };
    let section = |root: &mut Mapping, key: &str| -> Mapping {
        match root.remove(key) {
            Some(Value::Mapping(m)) => m,
            _ => Mapping::new(),
        }
    };
    let mut queue = section(root, "queue");
    if let Some(p) = &scheduler.queue_policy {
        queue.insert("policy".into(), p.as_str().into());
    }
    if !settings.weights.is_empty() {
        let classes = settings
            .weights
            .iter()
            .map(|(p, w)| {
                let mut m = Mapping::new();
                m.insert("priority".into(), (*p).into());
                m.insert("weight".into(), (*w).into());
                Value::Mapping(m)
            })
            .collect();
        queue.insert("classes".into(), Value::Sequence(classes));
    }
    if let Some(ms) = settings.max_wait_ms {
        queue.insert("max_wait_ms".into(), ms.into());
    }
    root.insert("queue".into(), Value::Mapping(queue));
    let mut caps = section(root, "caps");
    if let Some(mode) = &scheduler.caps {
        caps.insert("mode".into(), mode.as_str().into());
    }
    caps.insert("max_requests".into(), settings.cap_requests.into());
    root.insert("caps".into(), Value::Mapping(caps));
    serde_yaml::to_string(&doc).map_err(|e| bad(e.to_string()))
}

/// Parses `0:3,1:1` into (priority, weight) pairs.
pub fn parse_weights(text: &str) -> Result<Vec<(i64, u32)>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let parsed = pair
                .split_once(':')
                .and_then(|(p, w)| Some((p.trim().parse().ok()?, w.trim().parse().ok()?)));
            parsed.filter(|(_, w)| *w > 0).ok_or_else(|| {
                Error::invalid(
                    "--queue-weights",
                    format!("`{pair}` is not PRIORITY:WEIGHT with a weight of at least 1"),
                )
            })
        })
        .collect()
}

/// What a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// Router policies, in order.
    pub policies: Vec<String>,
    /// Queue policy and caps combinations, in order (one default point at least).
    pub schedulers: Vec<Scheduler>,
    /// Their shared settings.
    pub admission: AdmissionSettings,
    /// Request rates, in order.
    pub rates: Vec<RequestRate>,
    /// Template of every run (base URL, policy, rate and replicas are set per run).
    pub bench: BenchConfig,
    /// Base router YAML.
    pub router_base: Option<String>,
    /// The replicas.
    pub replicas: Replicas,
    /// JSON-lines results file.
    pub jsonl: Option<PathBuf>,
    /// CSV results file.
    pub csv: Option<PathBuf>,
}

/// Runs the plan; results are appended to the files after each run. Cancelling stops after the
/// current run.
pub async fn run_sweep(plan: &SweepPlan, cancel: CancellationToken) -> Result<Vec<RunSummary>> {
    if plan.policies.is_empty() || plan.rates.is_empty() {
        return Err(Error::invalid(
            "--policies/--request-rates",
            "need at least one of each",
        ));
    }
    // Fail on a policy the router does not know before running anything.
    for policy in &plan.policies {
        router_config(&router_yaml(
            plan.router_base.as_deref(),
            &["http://127.0.0.1:9".into()],
            policy,
            0,
        )?)
        .map_err(|e| Error::invalid("--policies", format!("{policy}: {e}")))?;
    }
    let schedulers = if plan.schedulers.is_empty() {
        vec![Scheduler::default()]
    } else {
        plan.schedulers.clone()
    };
    for s in &schedulers {
        let yaml = router_yaml(
            plan.router_base.as_deref(),
            &["http://127.0.0.1:9".into()],
            "cost",
            0,
        )?;
        router_config(&with_admission(&yaml, s, &plan.admission)?)
            .map_err(|e| Error::invalid("--queue-policies/--caps", format!("{s:?}: {e}")))?;
    }
    let client = http_client()?;
    let (sims, urls) = match &plan.replicas {
        Replicas::Simulated { config, count } => {
            let sims = start_sims(*count, config).await?;
            let urls = sims.iter().map(|s| s.url()).collect();
            (sims, urls)
        }
        Replicas::External(urls) => (Vec::new(), urls.clone()),
    };
    let mut results = Vec::new();
    let outcome = async {
        'outer: for policy in &plan.policies {
            for (scheduler, &rate) in schedulers
                .iter()
                .flat_map(|s| plan.rates.iter().map(move |r| (s, r)))
            {
                if cancel.is_cancelled() {
                    break 'outer;
                }
                let refused = reset_prefix_caches(&client, &urls).await;
                if !refused.is_empty() {
                    tracing::warn!(?refused, "replicas did not reset their prefix cache");
                }
                let yaml = router_yaml(
                    plan.router_base.as_deref(),
                    &urls,
                    policy,
                    plan.bench.dataset.seed,
                )?;
                let yaml = with_admission(&yaml, scheduler, &plan.admission)?;
                let router = start_router(router_config(&yaml)?, &client).await?;
                let cfg = BenchConfig {
                    base_url: router.url(),
                    policy: Some(policy.clone()),
                    queue_policy: scheduler.queue_policy.clone(),
                    caps: scheduler.caps.clone(),
                    request_rate: rate,
                    replica_urls: urls.clone(),
                    ..plan.bench.clone()
                };
                let admission = [&scheduler.queue_policy, &scheduler.caps]
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" ");
                eprintln!("sweep: policy {policy} {admission} at {rate} req/s");
                let run = run_benchmark(&cfg, cancel.clone()).await;
                router.shutdown().await;
                let summary = run?;
                write_results(&summary, plan.jsonl.as_deref(), plan.csv.as_deref())?;
                results.push(summary);
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    for s in sims {
        s.shutdown().await;
    }
    outcome.map(|()| results)
}

/// The sweep subcommand: builds the plan from flags, runs it, prints the comparison.
pub async fn sweep_command(args: &SweepArgs, cancel: CancellationToken) -> Result<Vec<RunSummary>> {
    let w = &args.workload;
    let bench = w.bench_config("http://unused", RequestRate::Infinite, &[])?;
    let router_base = match &args.router_config {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?),
        None => None,
    };
    let replicas = if args.replica_urls.is_empty() {
        Replicas::Simulated {
            config: Box::new(SimConfig {
                speedup: args.sim_speedup,
                num_gpu_blocks: args.sim_num_gpu_blocks,
                max_num_seqs: args.sim_max_num_seqs,
                block_size: w.block_size,
                // vLLM (and the sim) reject `priority` unless priority scheduling is on.
                scheduling_policy: if w.priority_mix.is_some() {
                    SchedulingPolicy::Priority
                } else {
                    SchedulingPolicy::Fcfs
                },
                ..SimConfig::default()
            }),
            count: args.replicas,
        }
    } else {
        Replicas::External(
            args.replica_urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
        )
    };
    let csv = args
        .output
        .csv_path()
        .unwrap_or_else(|| PathBuf::from("results/sweep.csv"));
    let plan = SweepPlan {
        policies: args.policies.clone(),
        schedulers: schedulers(&args.queue_policies, &args.caps),
        admission: AdmissionSettings {
            cap_requests: args.cap_requests,
            weights: match &args.queue_weights {
                Some(text) => parse_weights(text)?,
                None => Vec::new(),
            },
            max_wait_ms: args.queue_max_wait_ms,
        },
        rates: args.request_rates.clone(),
        bench,
        router_base,
        replicas,
        jsonl: Some(
            args.output
                .output_file
                .clone()
                .unwrap_or_else(|| csv.with_extension("jsonl")),
        ),
        csv: Some(csv.clone()),
    };
    let results = run_sweep(&plan, cancel).await?;
    print!("{}", render_comparison(&results));
    println!("CSV: {}", csv.display());
    if let Some(dir) = &args.report_dir {
        let index = write_report(&csv, dir)?;
        println!("report: {}", index.display());
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_policy_meets_every_caps_mode() {
        let s = schedulers(
            &["fcfs".into(), "priority".into()],
            &["none".into(), "adaptive".into()],
        );
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].queue_policy.as_deref(), Some("fcfs"));
        assert_eq!(s[1].caps.as_deref(), Some("adaptive"));
        assert_eq!(schedulers(&[], &[]), vec![Scheduler::default()]);
    }

    #[test]
    fn admission_keys_are_set_in_the_router_config_and_it_parses() {
        let base = "listen: 127.0.0.1:0\nqueue:\n  retry_after_s: 4\n";
        let scheduler = Scheduler {
            queue_policy: Some("priority_round_robin".into()),
            caps: Some("static".into()),
        };
        let settings = AdmissionSettings {
            cap_requests: 12,
            weights: parse_weights("0:3, 1:1").unwrap(),
            max_wait_ms: Some(9000),
        };
        let yaml = with_admission(base, &scheduler, &settings).unwrap();
        let config = router_config(&yaml).unwrap();
        assert_eq!(config.queue.policy.as_str(), "priority_round_robin");
        assert_eq!((config.queue.weight(0), config.queue.weight(1)), (3, 1));
        assert_eq!(
            (config.queue.max_wait_ms, config.queue.retry_after_s),
            (9000, 4)
        );
        assert_eq!(
            (config.caps.mode.as_str(), config.caps.max_requests),
            ("static", 12)
        );
        assert_eq!(
            with_admission(base, &Scheduler::default(), &settings).unwrap(),
            base
        );
        assert!(parse_weights("0:0").is_err() && parse_weights("x").is_err());
    }
}
