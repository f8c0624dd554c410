//! Replica metrics scraping: the load signals taken from Prometheus text (parsed by the
//! `prom-text` crate; vLLM and SGLang names), their freshness, and the task that polls every
//! replica.

mod config;
mod load;
mod metrics;
mod signals;
mod task;

pub use config::ScrapeConfig;
pub use load::{Engine, LatencyTotals, NoLoadMetrics, ScrapedLoad, SumCount};
pub use metrics::ScrapeMetrics;
/// The exposition-format reader, from the shared `prom-text` crate.
pub use prom_text::{Sample, parse_line, samples};
pub use signals::{ExternalLoad, ScrapeSignals, ScrapeSlot, prefill_sample};
pub(crate) use task::Scraper;
