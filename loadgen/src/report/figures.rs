//! The report's chart set, built from the runs of a results CSV.

use super::Figures;
use super::bars::Bars;
use super::boxes::Boxes;
use super::data::Row;
use super::lines::Lines;
use crate::error::Result;
use crate::metrics::Stats;

/// Reads one number of a run.
type Value = fn(&Row) -> f64;
/// Reads one latency distribution of a run.
type Dist = fn(&Row) -> Stats;

/// Distinct values of `f` over `rows`, in first-seen order.
pub(super) fn distinct(rows: &[Row], f: impl Fn(&Row) -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        let v = f(r);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Bars of `value` with one group per policy and one series per request rate.
fn by_policy(rows: &[Row], title: &str, y: &str, value: Value) -> Bars {
    let groups = distinct(rows, |r| r.group.clone());
    let series = distinct(rows, |r| r.params.request_rate.clone())
        .into_iter()
        .map(|rate| {
            let vals = groups
                .iter()
                .map(|g| {
                    let run = rows
                        .iter()
                        .rfind(|r| &r.group == g && r.params.request_rate == rate);
                    run.map(value)
                })
                .collect();
            (format!("{rate} req/s"), vals)
        })
        .collect();
    Bars {
        title: title.into(),
        y_label: y.into(),
        categories: groups,
        series,
    }
}

/// Mean TTFT, throughput and mean E2E, grouped by policy.
pub(super) fn by_policy_charts(figs: &mut Figures<'_>, rows: &[Row]) -> Result<()> {
    let charts: [(&str, &str, &str, &str, Value); 3] = [
        (
            "ttft_by_policy",
            "Mean TTFT by policy",
            "TTFT (ms)",
            "Lower is better; one bar per request rate.",
            |r| r.ttft.mean,
        ),
        (
            "throughput_by_policy",
            "Request throughput by policy",
            "requests/s",
            "Completed requests per second.",
            |r| r.request_throughput,
        ),
        (
            "e2e_by_policy",
            "Mean E2E latency by policy",
            "E2E (ms)",
            "Send to last byte.",
            |r| r.e2e.mean,
        ),
    ];
    for (stem, title, y, note, value) in charts {
        figs.add(&by_policy(rows, title, y, value), stem, title, note)?;
    }
    Ok(())
}

/// Lines of `value` across finite request rates, one per policy.
fn across_rates(rows: &[Row], title: &str, y: &str, value: Value) -> Lines {
    let series = distinct(rows, |r| r.group.clone())
        .into_iter()
        .map(|g| {
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.group == g && r.rate.is_finite())
                .map(|r| (r.rate, value(r)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (g, pts)
        })
        .collect();
    Lines {
        title: title.into(),
        x_label: "request rate (req/s)".into(),
        y_label: y.into(),
        series,
    }
}

/// TTFT and throughput across request rates, when the runs cover two or more finite rates.
pub(super) fn rate_charts(figs: &mut Figures<'_>, rows: &[Row]) -> Result<()> {
    let rates = distinct(rows, |r| r.params.request_rate.clone());
    let finite = rows
        .iter()
        .filter(|r| r.rate.is_finite())
        .map(|r| r.params.request_rate.clone());
    if rates.len() < 2 || finite.collect::<std::collections::HashSet<_>>().len() < 2 {
        return Ok(());
    }
    let l = across_rates(rows, "Mean TTFT across request rates", "TTFT (ms)", |r| {
        r.ttft.mean
    });
    figs.add(
        &l,
        "ttft_vs_rate",
        "TTFT across request rates",
        "One line per policy.",
    )?;
    let l = across_rates(rows, "Throughput across request rates", "requests/s", |r| {
        r.request_throughput
    });
    figs.add(
        &l,
        "throughput_vs_rate",
        "Throughput across request rates",
        "One line per policy.",
    )
}

/// Box plots and P50/P95/P99 bars of TTFT and E2E, one per run.
pub(super) fn distribution_charts(
    figs: &mut Figures<'_>,
    rows: &[Row],
    labels: &[String],
) -> Result<()> {
    let note = "Box P25-P75, line at the median, whiskers to min and max, cross at P99.";
    let latencies: [(&str, &str, Dist); 2] = [
        ("ttft", "TTFT", |r| r.ttft),
        ("e2e", "E2E latency", |r| r.e2e),
    ];
    for (stem, name, stats) in latencies {
        let boxes = Boxes {
            title: format!("{name} distribution"),
            y_label: "ms".into(),
            boxes: rows
                .iter()
                .zip(labels)
                .map(|(r, l)| (l.clone(), stats(r)))
                .collect(),
        };
        figs.add(
            &boxes,
            &format!("{stem}_box"),
            &format!("{name} distribution"),
            note,
        )?;
        let pct = |p: &str, f: fn(&Stats) -> f64| {
            (
                p.to_string(),
                rows.iter().map(|r| Some(f(&stats(r)))).collect(),
            )
        };
        let bars = Bars {
            title: format!("{name} percentiles"),
            y_label: "ms".into(),
            categories: labels.to_vec(),
            series: vec![
                pct("P50", |s| s.median),
                pct("P95", |s| s.p95),
                pct("P99", |s| s.p99),
            ],
        };
        figs.add(
            &bars,
            &format!("{stem}_percentiles"),
            &format!("{name} P50 / P95 / P99"),
            "Per run.",
        )?;
    }
    Ok(())
}

/// Replica prefix cache hit rate next to the oracle's, per run.
pub(super) fn cache_chart(figs: &mut Figures<'_>, rows: &[Row], labels: &[String]) -> Result<()> {
    let hits = |f: fn(&Row) -> Option<f64>| rows.iter().map(|r| f(r).map(|v| v * 100.0)).collect();
    let b = Bars {
        title: "Prefix cache hit rate".into(),
        y_label: "hit rate (%)".into(),
        categories: labels.to_vec(),
        series: vec![
            ("replicas (scraped)".into(), hits(|r| r.replica_hit_rate)),
            (
                "oracle (unlimited shared cache)".into(),
                hits(|r| r.oracle_hit_rate),
            ),
        ],
    };
    let note = "Replica hit rate next to the best any placement could reach.";
    figs.add(&b, "cache_hit_rate", "Prefix cache hit rate", note)
}

/// Requests per replica over time, one chart per run that went through a router.
pub(super) fn timeline_charts(
    figs: &mut Figures<'_>,
    rows: &[Row],
    labels: &[String],
) -> Result<()> {
    for (i, (r, label)) in rows.iter().zip(labels).enumerate() {
        if r.timeline.is_empty() {
            continue;
        }
        let series = r
            .timeline
            .iter()
            .map(|(name, counts)| {
                let pts = counts
                    .iter()
                    .enumerate()
                    .map(|(b, c)| (b as f64 * r.bin_s, *c as f64));
                (name.clone(), pts.collect())
            })
            .collect();
        let title = format!("Requests per replica over time: {label}");
        let l = Lines {
            title: title.clone(),
            x_label: "seconds since start".into(),
            y_label: format!("requests per {} s", r.bin_s),
            series,
        };
        let totals: Vec<String> = r
            .per_replica
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        figs.add(
            &l,
            &format!("replicas_over_time_{i}"),
            &title,
            &totals.join(", "),
        )?;
    }
    Ok(())
}

/// Mean TTFT and E2E per priority class, when the runs had priorities.
pub(super) fn priority_charts(
    figs: &mut Figures<'_>,
    rows: &[Row],
    labels: &[String],
) -> Result<()> {
    let mut classes: Vec<String> = rows
        .iter()
        .flat_map(|r| r.per_priority.iter().map(|c| c.0.clone()))
        .collect();
    classes.sort();
    classes.dedup();
    if classes.is_empty() {
        return Ok(());
    }
    let series = |field: &str| {
        classes
            .iter()
            .map(|p| {
                let vals = rows
                    .iter()
                    .map(|r| {
                        let class = r.per_priority.iter().find(|c| &c.0 == p);
                        class.and_then(|c| c.1.get(field).copied())
                    })
                    .collect();
                (format!("priority {p}"), vals)
            })
            .collect()
    };
    for (stem, name, field, unit) in [
        ("ttft", "Mean TTFT", "ttft_mean", "ms"),
        ("ttft_p99", "P99 TTFT", "ttft_p99", "ms"),
        ("e2e", "Mean E2E latency", "e2e_mean", "ms"),
        (
            "queue_wait",
            "Mean router queue wait",
            "queue_wait_mean",
            "ms",
        ),
        (
            "queue_wait_p99",
            "P99 router queue wait",
            "queue_wait_p99",
            "ms",
        ),
        (
            "throughput",
            "Request throughput",
            "request_throughput",
            "req/s",
        ),
    ] {
        let vals: Vec<(String, Vec<Option<f64>>)> = series(field);
        if vals.iter().all(|(_, v)| v.iter().all(Option::is_none)) {
            continue;
        }
        let b = Bars {
            title: format!("{name} by priority class"),
            y_label: unit.into(),
            categories: labels.to_vec(),
            series: vals,
        };
        let note = "Lower priority values are served first by vLLM's priority scheduling and \
                    by the router's `priority` queue; `priority_round_robin` gives each class \
                    weighted turns. Queue wait is the router's `x-queue-wait-ms`.";
        figs.add(
            &b,
            &format!("{stem}_by_priority"),
            &format!("{name} by priority class"),
            note,
        )?;
    }
    Ok(())
}
