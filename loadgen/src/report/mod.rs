//! `loadgen report`: charts (PNG and SVG) and an index.html from a results CSV.

mod bars;
mod boxes;
mod chart;
mod data;
mod html;
mod lines;

use crate::error::{Error, Result};
use bars::Bars;
use boxes::Boxes;
use chart::save;
use data::Row;
use lines::Lines;
use std::path::{Path, PathBuf};

/// One saved chart: its title, a one-line explanation and its files.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub(crate) title: String,
    pub(crate) note: String,
    pub(crate) png: String,
    pub(crate) svg: String,
}

/// Collects figures as they are saved.
struct Figures<'a> {
    dir: &'a Path,
    list: Vec<Figure>,
}

impl Figures<'_> {
    fn add(
        &mut self,
        chart: &impl chart::Chart,
        stem: &str,
        title: &str,
        note: &str,
    ) -> Result<()> {
        let [png, svg] = save(chart, self.dir, stem)?;
        self.list.push(Figure {
            title: title.into(),
            note: note.into(),
            png,
            svg,
        });
        Ok(())
    }
}

/// Distinct values of `f` over `rows`, in first-seen order.
fn distinct(rows: &[Row], f: impl Fn(&Row) -> String) -> Vec<String> {
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
fn by_policy(rows: &[Row], title: &str, y: &str, value: fn(&Row) -> f64) -> Bars {
    let groups = distinct(rows, |r| r.group.clone());
    let rates = distinct(rows, |r| r.rate_label.clone());
    let series = rates
        .iter()
        .map(|rate| {
            let vals = groups
                .iter()
                .map(|g| {
                    rows.iter()
                        .rfind(|r| &r.group == g && &r.rate_label == rate)
                        .map(value)
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

/// Lines of `value` across finite request rates, one per policy.
fn across_rates(rows: &[Row], title: &str, y: &str, value: fn(&Row) -> f64) -> Lines {
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

/// Draws every chart for the runs in `csv` into `out` and writes `out/index.html`.
pub fn write_report(csv: &Path, out: &Path) -> Result<PathBuf> {
    let rows = data::load(csv)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let with_rate = distinct(&rows, |r| r.rate_label.clone()).len() > 1;
    let labels: Vec<String> = rows.iter().map(|r| r.label(with_rate)).collect();
    let mut figs = Figures {
        dir: out,
        list: Vec::new(),
    };

    let b = by_policy(&rows, "Mean TTFT by policy", "TTFT (ms)", |r| r.ttft.mean);
    figs.add(
        &b,
        "ttft_by_policy",
        "Mean time to first token",
        "Lower is better; one bar per request rate.",
    )?;
    let b = by_policy(&rows, "Request throughput by policy", "requests/s", |r| {
        r.request_throughput
    });
    figs.add(
        &b,
        "throughput_by_policy",
        "Request throughput",
        "Completed requests per second.",
    )?;
    let b = by_policy(&rows, "Mean E2E latency by policy", "E2E (ms)", |r| {
        r.e2e.mean
    });
    figs.add(
        &b,
        "e2e_by_policy",
        "Mean end-to-end latency",
        "Send to last byte.",
    )?;

    let finite_rates = rows.iter().filter(|r| r.rate.is_finite()).count();
    if finite_rates > 0 {
        let l = across_rates(&rows, "Mean TTFT across request rates", "TTFT (ms)", |r| {
            r.ttft.mean
        });
        figs.add(
            &l,
            "ttft_vs_rate",
            "TTFT across request rates",
            "One line per policy.",
        )?;
        let l = across_rates(
            &rows,
            "Throughput across request rates",
            "requests/s",
            |r| r.request_throughput,
        );
        figs.add(
            &l,
            "throughput_vs_rate",
            "Throughput across request rates",
            "One line per policy.",
        )?;
    }

    let boxes = |title: &str, f: fn(&Row) -> crate::metrics::Stats| Boxes {
        title: title.into(),
        y_label: "ms".into(),
        boxes: rows
            .iter()
            .zip(&labels)
            .map(|(r, l)| (l.clone(), f(r)))
            .collect(),
    };
    let note = "Box P25-P75, line at the median, whiskers to min and max, cross at P99.";
    figs.add(
        &boxes("TTFT distribution", |r| r.ttft),
        "ttft_box",
        "TTFT distribution",
        note,
    )?;
    figs.add(
        &boxes("E2E latency distribution", |r| r.e2e),
        "e2e_box",
        "E2E latency distribution",
        note,
    )?;

    let pct = |name: &str, f: fn(&Row) -> f64| {
        (name.to_string(), rows.iter().map(|r| Some(f(r))).collect())
    };
    let b = Bars {
        title: "TTFT percentiles".into(),
        y_label: "TTFT (ms)".into(),
        categories: labels.clone(),
        series: vec![
            pct("P50", |r| r.ttft.median),
            pct("P95", |r| r.ttft.p95),
            pct("P99", |r| r.ttft.p99),
        ],
    };
    figs.add(&b, "ttft_percentiles", "TTFT P50 / P95 / P99", "Per run.")?;
    let b = Bars {
        title: "E2E latency percentiles".into(),
        y_label: "E2E (ms)".into(),
        categories: labels.clone(),
        series: vec![
            pct("P50", |r| r.e2e.median),
            pct("P95", |r| r.e2e.p95),
            pct("P99", |r| r.e2e.p99),
        ],
    };
    figs.add(&b, "e2e_percentiles", "E2E P50 / P95 / P99", "Per run.")?;

    let hits = |f: fn(&Row) -> Option<f64>| rows.iter().map(|r| f(r).map(|v| v * 100.0)).collect();
    let b = Bars {
        title: "Prefix cache hit rate".into(),
        y_label: "hit rate (%)".into(),
        categories: labels.clone(),
        series: vec![
            ("replicas (scraped)".into(), hits(|r| r.replica_hit_rate)),
            (
                "oracle (unlimited shared cache)".into(),
                hits(|r| r.oracle_hit_rate),
            ),
        ],
    };
    figs.add(
        &b,
        "cache_hit_rate",
        "Prefix cache hit rate",
        "Replica hit rate next to the best any placement could reach.",
    )?;

    for (i, (r, label)) in rows.iter().zip(&labels).enumerate() {
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
                    .map(|(b, c)| (b as f64 * r.bin_s, *c as f64))
                    .collect();
                (name.clone(), pts)
            })
            .collect();
        let l = Lines {
            title: format!("Requests per replica over time: {label}"),
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
            &format!("Requests per replica over time: {label}"),
            &totals.join(", "),
        )?;
    }

    let priorities = {
        let mut p: Vec<String> = rows
            .iter()
            .flat_map(|r| r.per_priority.iter().map(|c| c.0.clone()))
            .collect();
        p.sort();
        p.dedup();
        p
    };
    if !priorities.is_empty() {
        let series = |field: &'static str| {
            priorities
                .iter()
                .map(|p| {
                    let vals = rows
                        .iter()
                        .map(|r| {
                            r.per_priority
                                .iter()
                                .find(|c| &c.0 == p)
                                .and_then(|c| c.1.get(field).copied())
                        })
                        .collect();
                    (format!("priority {p}"), vals)
                })
                .collect()
        };
        let b = Bars {
            title: "Mean TTFT by priority class".into(),
            y_label: "TTFT (ms)".into(),
            categories: labels.clone(),
            series: series("ttft_mean"),
        };
        figs.add(
            &b,
            "ttft_by_priority",
            "TTFT by priority class",
            "Lower priority values are served first by vLLM.",
        )?;
        let b = Bars {
            title: "Mean E2E latency by priority class".into(),
            y_label: "E2E (ms)".into(),
            categories: labels.clone(),
            series: series("e2e_mean"),
        };
        figs.add(
            &b,
            "e2e_by_priority",
            "E2E latency by priority class",
            "Per run.",
        )?;
    }

    let index = out.join("index.html");
    let page = html::page(csv, &rows, &labels, &figs.list);
    std::fs::write(&index, page).map_err(|e| Error::io(&index, e))?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{PriorityMetrics, Stats, placement};
    use crate::oracle::OracleResult;
    use crate::output::append_csv;
    use crate::record::RequestRecord;
    use crate::scrape::ReplicaMetrics;
    use crate::summary::RunSummary;

    fn run(policy: &str, rate: f64, scale: f64) -> RunSummary {
        let mut s = RunSummary::default();
        s.params.policy = Some(policy.into());
        s.params.request_rate = rate.to_string();
        s.client.completed = 100;
        s.client.request_throughput = rate * 0.9;
        s.client.ttft_ms = Stats::of(&[10.0 * scale, 20.0 * scale, 35.0 * scale, 80.0 * scale]);
        s.client.e2e_ms = Stats::of(&[100.0 * scale, 300.0 * scale, 900.0 * scale]);
        s.oracle = Some(OracleResult {
            hit_rate: 0.47,
            ..OracleResult::default()
        });
        s.replicas = Some(ReplicaMetrics {
            prefix_cache_hit_rate: 0.2 * scale,
            ..ReplicaMetrics::default()
        });
        let recs: Vec<RequestRecord> = (0..40)
            .map(|i| RequestRecord {
                start: i as f64 * 0.1,
                routed_to: Some(format!("127.0.0.1:{}", 8001 + i % 3)),
                ..RequestRecord::default()
            })
            .collect();
        s.placement = placement(&recs, 4.0);
        for p in [0, 1] {
            let mut m = PriorityMetrics {
                priority: p,
                metrics: Default::default(),
            };
            m.metrics.ttft_ms.mean = 10.0 + p as f64 * 5.0;
            m.metrics.e2e_ms.mean = 100.0 + p as f64 * 50.0;
            s.per_priority.push(m);
        }
        s
    }

    #[test]
    fn report_writes_every_chart_and_an_index_that_links_them() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("results.csv");
        for (policy, scale) in [("power_of_two", 1.0), ("cost", 0.6)] {
            for rate in [25.0, 50.0] {
                append_csv(&csv, &run(policy, rate, scale * rate / 25.0)).unwrap();
            }
        }
        let out = dir.path().join("report");
        let index = write_report(&csv, &out).unwrap();
        let html = std::fs::read_to_string(&index).unwrap();
        let stems = [
            "ttft_by_policy",
            "throughput_by_policy",
            "e2e_by_policy",
            "ttft_vs_rate",
            "throughput_vs_rate",
            "ttft_box",
            "e2e_box",
            "ttft_percentiles",
            "cache_hit_rate",
            "replicas_over_time_0",
            "replicas_over_time_3",
            "ttft_by_priority",
            "e2e_by_priority",
        ];
        for stem in stems {
            for ext in ["png", "svg"] {
                let f = format!("{stem}.{ext}");
                let meta =
                    std::fs::metadata(out.join(&f)).unwrap_or_else(|_| panic!("{f} missing"));
                assert!(meta.len() > 1000, "{f} is only {} bytes", meta.len());
                assert!(
                    html.contains(&format!("\"{f}\"")),
                    "index.html does not reference {f}"
                );
            }
        }
        // Every referenced file exists.
        for part in html.split("src=\"").skip(1) {
            let f = &part[..part.find('"').unwrap()];
            assert!(out.join(f).exists(), "{f} referenced but missing");
        }
        // The SVG carries text drawn with the bundled font.
        let svg = std::fs::read_to_string(out.join("ttft_by_policy.svg")).unwrap();
        assert!(svg.contains("power_of_two") && svg.contains("Mean TTFT by policy"));
        assert!(
            html.contains("power_of_two @ 25"),
            "rows labelled with their rate"
        );
    }

    #[test]
    fn empty_or_foreign_csv_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("x.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        let err = write_report(&csv, &dir.path().join("r"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a loadgen results file"), "{err}");
        let err = write_report(&dir.path().join("missing.csv"), &dir.path().join("r")).unwrap_err();
        assert!(err.to_string().contains("missing.csv"), "{err}");
    }
}
