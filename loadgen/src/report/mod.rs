//! `loadgen report`: charts (PNG and SVG) and an index.html from a results CSV.

mod bars;
mod boxes;
mod chart;
mod data;
mod figures;
mod html;
mod lines;

use crate::error::{Error, Result};
use chart::save;
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
pub(crate) struct Figures<'a> {
    dir: &'a Path,
    list: Vec<Figure>,
}

impl Figures<'_> {
    pub(crate) fn add(
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

/// Draws every chart for the runs in `csv` into `out` and writes `out/index.html`.
pub fn write_report(csv: &Path, out: &Path) -> Result<PathBuf> {
    let rows = data::load(csv)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let with_rate = figures::distinct(&rows, |r| r.params.request_rate.clone()).len() > 1;
    let labels: Vec<String> = rows.iter().map(|r| r.label(with_rate)).collect();
    let mut figs = Figures {
        dir: out,
        list: Vec::new(),
    };
    figures::by_policy_charts(&mut figs, &rows)?;
    figures::rate_charts(&mut figs, &rows)?;
    figures::distribution_charts(&mut figs, &rows, &labels)?;
    figures::cache_chart(&mut figs, &rows, &labels)?;
    figures::timeline_charts(&mut figs, &rows, &labels)?;
    figures::priority_charts(&mut figs, &rows, &labels)?;
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
            m.metrics.queue_wait_ms.mean = 5.0 + p as f64 * 20.0;
            m.metrics.request_throughput = rate * 0.45;
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
            "queue_wait_by_priority",
            "throughput_by_priority",
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
    fn runs_are_grouped_by_policy_queue_policy_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("results.csv");
        for queue in ["fcfs", "priority"] {
            let mut s = run("cost", 50.0, 1.0);
            s.params.queue_policy = Some(queue.into());
            s.params.caps = Some("adaptive".into());
            append_csv(&csv, &s).unwrap();
        }
        let rows = data::load(&csv).unwrap();
        let groups: Vec<&str> = rows.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(
            groups,
            [
                "cost / queue fcfs / caps adaptive",
                "cost / queue priority / caps adaptive"
            ]
        );
        let index = write_report(&csv, &dir.path().join("report")).unwrap();
        let html = std::fs::read_to_string(index).unwrap();
        assert!(html.contains("cost / queue priority / caps adaptive"));
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
