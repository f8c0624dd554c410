//! The report's index.html: a table of runs and every figure.

use super::Figure;
use super::data::Row;
use std::fmt::Write;
use std::path::Path;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

/// Renders the page for `rows` (with display `labels`) and `figures`.
pub(crate) fn page(csv: &Path, rows: &[Row], labels: &[String], figures: &[Figure]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>loadgen report</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1100px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}img{{max-width:100%}}figure{{margin:2em 0}}\
         </style></head><body>\n<h1>loadgen report</h1>\n<p>From <code>{}</code>, {} run(s).</p>\n",
        esc(&csv.display().to_string()),
        rows.len()
    );
    h.push_str(
        "<table><tr><th>run</th><th>completed</th><th>failed</th><th>req/s</th><th>out tok/s</th>\
         <th>mean TTFT ms</th><th>p99 TTFT ms</th><th>mean E2E ms</th><th>replica hit</th>\
         <th>oracle hit</th><th>requests per replica</th></tr>\n",
    );
    for (r, label) in rows.iter().zip(labels) {
        let per: Vec<String> = r
            .per_replica
            .iter()
            .map(|(k, v)| format!("{}: {v}", esc(k)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(label),
            r.completed,
            r.failed,
            r.request_throughput,
            r.output_throughput,
            r.ttft.mean,
            r.ttft.p99,
            r.e2e.mean,
            pct(r.replica_hit_rate),
            pct(r.oracle_hit_rate),
            per.join(", ")
        );
    }
    h.push_str("</table>\n");
    for f in figures {
        let _ = writeln!(
            h,
            "<figure><h2>{}</h2><img src=\"{}\" alt=\"{}\"><figcaption>{} \
             <a href=\"{}\">SVG</a></figcaption></figure>",
            esc(&f.title),
            esc(&f.png),
            esc(&f.title),
            esc(&f.note),
            esc(&f.svg)
        );
    }
    h.push_str("</body></html>\n");
    h
}
