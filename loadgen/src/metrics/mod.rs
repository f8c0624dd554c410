//! Metric math: summary statistics, client-side metrics and per-replica placement counts.

mod client;
mod placement;
mod stats;

pub use client::{ClientMetrics, PriorityMetrics, Slo, client_metrics, per_priority};
pub use placement::{Placement, placement};
pub use stats::Stats;
