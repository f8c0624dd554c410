//! The Prometheus text exposition format (version 0.0.4, and the OpenMetrics lines a scrape may
//! meet): one parser shared by the router, the load generator, the simulator's tests and the
//! end-to-end tests.
//!
//! - [`samples`] is the lenient reader a scraper wants: every well-formed sample, anything
//!   else skipped; it never panics on any input.
//! - [`parse_strict`] checks a whole page (every line well-formed, `# TYPE` once per family and
//!   before its samples) and groups samples into [`Family`]s; errors name the line.
//! - [`value`] and [`sum`] answer "what is `name{labels}`" for tests and reports.
//! - A [`Sample`] prints back as an exposition line (`Display`), escaping label values.

mod error;
mod family;
mod line;
mod write;

pub use error::{Error, LineError};
pub use family::{Family, MetricType, parse_strict};
pub use line::{Line, Sample, parse_any, parse_line, samples};

/// The value of the first sample named `name` whose labels include every `(key, value)` of
/// `labels`; `None` when there is none.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text).find_map(|s| (s.name == name && s.has_labels(labels)).then_some(s.value))
}

/// The sum over every sample named `name` whose labels include all of `labels` (0 when none).
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .filter(|s| s.name == name && s.has_labels(labels))
        .map(|s| s.value)
        .sum()
}
