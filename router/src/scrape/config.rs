//! Settings of the metrics scraper.

use serde::{Deserialize, Serialize};

/// How often and how each replica's `/metrics` is polled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// Poll replicas' metrics at all; when off, decisions use the router's own counts only.
    pub enabled: bool,
    /// Path of the Prometheus endpoint on each replica.
    pub path: String,
    /// Milliseconds between two scrapes of one replica.
    pub interval_ms: u64,
    /// Milliseconds before a scrape counts as failed.
    pub timeout_ms: u64,
    /// A scrape older than this many milliseconds is stale and ignored by decisions.
    pub stale_after_ms: u64,
    /// Count failed scrapes (no answer, 5xx) as health failures of the replica.
    pub feed_health: bool,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/metrics".to_owned(),
            interval_ms: 1000,
            timeout_ms: 500,
            stale_after_ms: 3000,
            feed_health: true,
        }
    }
}

impl ScrapeConfig {
    /// Checks the values serde cannot; returns the offending key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (key, value) in [
            ("scrape.interval_ms", self.interval_ms),
            ("scrape.timeout_ms", self.timeout_ms),
            ("scrape.stale_after_ms", self.stale_after_ms),
        ] {
            if value == 0 {
                return Err((key.to_owned(), "must be greater than 0".to_owned()));
            }
        }
        if !self.path.starts_with('/') {
            return Err(("scrape.path".to_owned(), "must start with `/`".to_owned()));
        }
        Ok(())
    }
}
