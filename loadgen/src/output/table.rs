//! Human-readable tables: one run in detail, or several runs side by side.

use crate::metrics::Stats;
use crate::summary::RunSummary;
use std::fmt::Write;

const WIDTH: usize = 52;

fn title(out: &mut String, t: &str) {
    let pad = WIDTH.saturating_sub(t.len() + 2);
    let _ = writeln!(
        out,
        "{} {t} {}",
        "=".repeat(pad / 2),
        "=".repeat(pad - pad / 2)
    );
}

fn section(out: &mut String, t: &str) {
    let pad = WIDTH.saturating_sub(t.len());
    let _ = writeln!(
        out,
        "{}{t}{}",
        "-".repeat(pad / 2),
        "-".repeat(pad - pad / 2)
    );
}

fn row(out: &mut String, k: &str, v: impl std::fmt::Display) {
    let _ = writeln!(out, "{k:<38}{v:>14}");
}

fn stats(out: &mut String, name: &str, s: &Stats) {
    section(out, name);
    row(out, &format!("Mean {name} (ms):"), format!("{:.2}", s.mean));
    row(
        out,
        &format!("Median {name} (ms):"),
        format!("{:.2}", s.median),
    );
    row(out, &format!("Std {name} (ms):"), format!("{:.2}", s.std));
    row(out, &format!("P90 {name} (ms):"), format!("{:.2}", s.p90));
    row(out, &format!("P99 {name} (ms):"), format!("{:.2}", s.p99));
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// One run in detail, in the layout of SGLang's bench_serving.
pub fn render_run(s: &RunSummary) -> String {
    let m = &s.client;
    let p = &s.params;
    let mut out = String::new();
    title(&mut out, &format!("loadgen result: {}", s.name()));
    row(&mut out, "Base URL:", &p.base_url);
    row(&mut out, "Endpoint:", &p.endpoint);
    row(
        &mut out,
        "Dataset (groups):",
        format!("{} ({})", p.dataset, s.groups),
    );
    row(&mut out, "Request rate (req/s):", &p.request_rate);
    row(
        &mut out,
        "Max concurrency:",
        p.max_concurrency.map_or("none".into(), |c| c.to_string()),
    );
    if s.interrupted {
        row(&mut out, "Interrupted:", "yes (Ctrl-C)");
    }
    row(&mut out, "Successful requests:", m.completed);
    row(&mut out, "Failed requests:", m.failed);
    for (reason, n) in &m.failed_by_reason {
        row(&mut out, &format!("  failed: {reason}"), n);
        if let Some(example) = m.failure_examples.get(reason) {
            let _ = writeln!(out, "    e.g. {example}");
        }
    }
    row(
        &mut out,
        "Benchmark duration (s):",
        format!("{:.2}", m.duration_s),
    );
    row(&mut out, "Token counts from:", &s.token_source);
    if s.requests_without_usage > 0 {
        row(
            &mut out,
            "  requests without usage:",
            s.requests_without_usage,
        );
    }
    row(&mut out, "Total input tokens:", m.total_input_tokens);
    row(&mut out, "Total generated tokens:", m.total_output_tokens);
    row(
        &mut out,
        "Request throughput (req/s):",
        format!("{:.2}", m.request_throughput),
    );
    row(
        &mut out,
        "Input token throughput (tok/s):",
        format!("{:.2}", m.input_throughput),
    );
    row(
        &mut out,
        "Output token throughput (tok/s):",
        format!("{:.2}", m.output_throughput),
    );
    row(&mut out, "Concurrency:", format!("{:.2}", m.concurrency));
    if let (Some(g), Some(rate)) = (m.good_requests, m.goodput) {
        row(&mut out, "Good requests (within SLOs):", g);
        row(&mut out, "Goodput (req/s):", format!("{rate:.2}"));
    }
    stats(&mut out, "E2E", &m.e2e_ms);
    stats(&mut out, "TTFT", &m.ttft_ms);
    stats(&mut out, "TPOT", &m.tpot_ms);
    stats(&mut out, "ITL", &m.itl_ms);
    for c in &s.per_priority {
        section(&mut out, &format!("Priority {}", c.priority));
        row(
            &mut out,
            "Completed / failed:",
            format!("{} / {}", c.metrics.completed, c.metrics.failed),
        );
        row(
            &mut out,
            "Mean / P99 TTFT (ms):",
            format!(
                "{:.1} / {:.1}",
                c.metrics.ttft_ms.mean, c.metrics.ttft_ms.p99
            ),
        );
        row(
            &mut out,
            "Mean / P99 E2E (ms):",
            format!("{:.1} / {:.1}", c.metrics.e2e_ms.mean, c.metrics.e2e_ms.p99),
        );
    }
    if !s.placement.per_replica.is_empty() {
        section(&mut out, "Requests per replica (x-routed-to)");
        for (name, n) in &s.placement.per_replica {
            row(&mut out, &format!("{name}:"), n);
        }
        row(
            &mut out,
            "Max / mean:",
            format!("{:.2}", s.placement.max_over_mean()),
        );
    }
    if s.oracle.is_some() || s.replicas.is_some() {
        section(&mut out, "Prefix cache");
    }
    if let Some(o) = &s.oracle {
        row(
            &mut out,
            "Oracle hit rate (unlimited cache):",
            pct(o.hit_rate),
        );
    }
    if let Some(r) = &s.replicas {
        row(
            &mut out,
            "Replica hit rate (scraped):",
            pct(r.prefix_cache_hit_rate),
        );
        row(
            &mut out,
            "Replica prompt tokens:",
            format!("{:.0}", r.prompt_tokens),
        );
        row(
            &mut out,
            "Replica generation tokens:",
            format!("{:.0}", r.generation_tokens),
        );
        row(
            &mut out,
            "Replica successes (req/s):",
            format!("{:.0} ({:.2})", r.successes, r.successes_per_s),
        );
        let means = [
            ("TTFT", r.means_ms.ttft),
            ("TPOT", r.means_ms.tpot),
            ("E2E", r.means_ms.e2e),
            ("queue", r.means_ms.queue),
            ("prefill", r.means_ms.prefill),
            ("decode", r.means_ms.decode),
        ];
        for (name, v) in means {
            if let Some(v) = v {
                row(
                    &mut out,
                    &format!("Replica mean {name} (ms):"),
                    format!("{v:.2}"),
                );
            }
        }
        for d in &r.per_replica {
            let rate = if d.prefix_cache_queries > 0.0 {
                d.prefix_cache_hits / d.prefix_cache_queries
            } else {
                0.0
            };
            row(&mut out, &format!("  {} hit rate:", d.url), pct(rate));
        }
    }
    if let Some(pf) = &s.prefill {
        section(&mut out, "Prefill / generation split");
        row(
            &mut out,
            "Prefill latency (ms):",
            format!("{:.2}", pf.prefill_latency_ms),
        );
        row(
            &mut out,
            "Generation latency (ms):",
            format!("{:.2}", pf.generation_latency_ms),
        );
        row(
            &mut out,
            "Prefill throughput (tok/s):",
            format!("{:.1}", pf.prefill_throughput_tok_s),
        );
        row(
            &mut out,
            "Generation throughput (tok/s):",
            format!("{:.1}", pf.generation_throughput_tok_s),
        );
    }
    let _ = writeln!(out, "{}", "=".repeat(WIDTH));
    out
}

/// Several runs side by side: one column per run, one line per headline metric.
pub fn render_comparison(runs: &[RunSummary]) -> String {
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |k: &str, f: &dyn Fn(&RunSummary) -> String| {
        lines.push((k.to_string(), runs.iter().map(f).collect()));
    };
    add("run", &|s| s.name());
    add("request rate (req/s)", &|s| s.params.request_rate.clone());
    add("completed / failed", &|s| {
        format!("{} / {}", s.client.completed, s.client.failed)
    });
    add("replica hit rate", &|s| {
        s.replicas
            .as_ref()
            .map_or("-".into(), |r| pct(r.prefix_cache_hit_rate))
    });
    add("oracle hit rate", &|s| {
        s.oracle.map_or("-".into(), |o| pct(o.hit_rate))
    });
    add("mean TTFT (ms)", &|s| {
        format!("{:.1}", s.client.ttft_ms.mean)
    });
    add("p50 TTFT (ms)", &|s| {
        format!("{:.1}", s.client.ttft_ms.median)
    });
    add("p99 TTFT (ms)", &|s| format!("{:.1}", s.client.ttft_ms.p99));
    add("mean E2E (ms)", &|s| format!("{:.1}", s.client.e2e_ms.mean));
    add("throughput (req/s)", &|s| {
        format!("{:.2}", s.client.request_throughput)
    });
    add("output (tok/s)", &|s| {
        format!("{:.1}", s.client.output_throughput)
    });
    add("max/mean per replica", &|s| {
        format!("{:.2}", s.placement.max_over_mean())
    });
    let mut replicas: Vec<String> = runs
        .iter()
        .flat_map(|s| s.placement.per_replica.keys().cloned())
        .collect();
    replicas.sort();
    replicas.dedup();
    for name in &replicas {
        add(&format!("requests {name}"), &|s| {
            s.placement
                .per_replica
                .get(name)
                .copied()
                .unwrap_or(0)
                .to_string()
        });
    }
    let key_w = lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let col_w = lines
        .iter()
        .flat_map(|l| l.1.iter().map(String::len))
        .max()
        .unwrap_or(0)
        .max(10);
    let mut out = String::new();
    for (i, (k, vals)) in lines.iter().enumerate() {
        let _ = write!(out, "{k:<key_w$}");
        for v in vals {
            let _ = write!(out, "  {v:>col_w$}");
        }
        out.push('\n');
        if i == 0 {
            let _ = writeln!(out, "{}", "-".repeat(key_w + runs.len() * (col_w + 2)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::OracleResult;

    #[test]
    fn single_run_table_shows_headline_numbers() {
        let mut s = RunSummary::default();
        s.params.label = "demo".into();
        s.client.completed = 42;
        s.client.ttft_ms.mean = 12.345;
        s.client.failed_by_reason.insert("timeout".into(), 1);
        s.oracle = Some(OracleResult {
            hit_rate: 0.5,
            ..OracleResult::default()
        });
        let t = render_run(&s);
        assert!(t.contains("loadgen result: demo"));
        assert!(t.contains("Successful requests:"));
        assert!(
            t.lines()
                .any(|l| l.starts_with("Mean TTFT (ms):") && l.ends_with("12.35")),
            "{t}"
        );
        assert!(t.contains("failed: timeout"));
        assert!(t.contains("50.0%"));
    }

    #[test]
    fn comparison_has_a_column_per_run() {
        let mut a = RunSummary::default();
        a.params.policy = Some("power_of_two".into());
        a.placement.per_replica.insert("r1".into(), 3);
        let mut b = RunSummary::default();
        b.params.policy = Some("cost".into());
        b.placement.per_replica.insert("r2".into(), 4);
        let t = render_comparison(&[a, b]);
        let first = t.lines().next().unwrap();
        assert!(
            first.contains("power_of_two") && first.contains("cost"),
            "{t}"
        );
        let r2 = t.lines().find(|l| l.starts_with("requests r2")).unwrap();
        assert!(r2.trim_end().ends_with('4') && r2.contains(" 0 "), "{r2}");
    }
}
