//! The scraper's metric families, registered once in the router's registry.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::Error;

/// Scrape freshness, failures and the values last read, by replica.
#[derive(Clone)]
pub struct ScrapeMetrics {
    /// `router_scrape_age_seconds{replica}`: time since the last successful scrape.
    pub age: GaugeVec,
    /// `router_scrape_errors_total{replica,kind}`: failed scrapes (`transport`, `status`, `parse`).
    pub errors: IntCounterVec,
    /// `router_scraped_waiting_requests{replica}`: waiting requests the replica reported.
    pub waiting: GaugeVec,
    /// `router_scraped_running_requests{replica}`: running requests the replica reported.
    pub running: GaugeVec,
    /// `router_scraped_kv_cache_usage{replica}`: KV-cache usage (0..1) the replica reported.
    pub kv_usage: GaugeVec,
    /// `router_prefix_tree_units{replica}`: key units (bytes or tokens) the tree holds for it.
    pub tree_units: IntGaugeVec,
}

impl ScrapeMetrics {
    /// Builds the families and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, Error> {
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, Error> {
            let g = GaugeVec::new(Opts::new(name, help), &["replica"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let errors = IntCounterVec::new(
            Opts::new(
                "router_scrape_errors_total",
                "Failed metrics scrapes by replica and kind",
            ),
            &["replica", "kind"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        let tree_units = IntGaugeVec::new(
            Opts::new(
                "router_prefix_tree_units",
                "Key units the prefix tree holds per replica",
            ),
            &["replica"],
        )?;
        registry.register(Box::new(tree_units.clone()))?;
        Ok(Self {
            age: gauge(
                "router_scrape_age_seconds",
                "Seconds since the last successful scrape",
            )?,
            errors,
            waiting: gauge(
                "router_scraped_waiting_requests",
                "Waiting requests last scraped",
            )?,
            running: gauge(
                "router_scraped_running_requests",
                "Running requests last scraped",
            )?,
            kv_usage: gauge(
                "router_scraped_kv_cache_usage",
                "KV-cache usage (0..1) last scraped",
            )?,
            tree_units,
        })
    }

    /// Drops the series of a replica that left the set.
    pub fn forget(&self, replica: &str) {
        for g in [&self.age, &self.waiting, &self.running, &self.kv_usage] {
            let _ = g.remove_label_values(&[replica]);
        }
        let _ = self.tree_units.remove_label_values(&[replica]);
        for kind in ["transport", "status", "parse"] {
            let _ = self.errors.remove_label_values(&[replica, kind]);
        }
    }
}
