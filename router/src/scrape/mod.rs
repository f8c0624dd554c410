//! Replica metrics scraping: the task that polls every replica's Prometheus text (parsed by
//! the `prom-text` crate; vLLM and SGLang names) into the load signals of [`crate::load`].

mod config;
mod metrics;
mod task;

pub use config::ScrapeConfig;
pub use metrics::ScrapeMetrics;
/// The exposition-format reader, from the shared `prom-text` crate.
pub use prom_text::{Sample, parse_line, samples};
// What a scrape yields (parsed load, signals and their slot) is per-replica load state, kept in
// `load` beneath the replica set and the policies.
pub use crate::load::{
    Engine, ExternalLoad, LatencyTotals, NoLoadMetrics, ScrapeSignals, ScrapeSlot, ScrapedLoad,
    SumCount, prefill_sample,
};
pub(crate) use task::Scraper;
