//! Replica metrics scraping: Prometheus text parsing, the load signals taken from it (vLLM and
//! SGLang names), their freshness, and the task that polls every replica.

mod config;
mod load;
mod metrics;
mod signals;
mod task;
mod text;

pub use config::ScrapeConfig;
pub use load::{Engine, LatencyTotals, NoLoadMetrics, ScrapedLoad, SumCount};
pub use metrics::ScrapeMetrics;
pub use signals::{ExternalLoad, ScrapeSignals, ScrapeSlot, prefill_sample};
pub(crate) use task::Scraper;
pub use text::{Sample, parse_line, samples};
