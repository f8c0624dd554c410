//! What the dispatcher needs to survive failing replicas: the retry budget, outlier ejection,
//! the streaming first-byte timeout and whether clients see upstream failure details.

use std::{sync::Arc, time::Duration};

use crate::{Config, Error, metrics::RouterMetrics, replicas::OutlierDetector, retry::RetryBudget};

/// Failure handling state shared by every request.
pub struct Resilience {
    /// Router-wide retry budget and back-off.
    pub budget: RetryBudget,
    /// Outlier ejection of replicas failing on real traffic.
    pub outliers: Arc<OutlierDetector>,
    /// Wait for the response head of a streaming request before re-sending it elsewhere.
    pub stream_first_byte: Duration,
    /// Pass replicas' error bodies and failure details to clients.
    pub expose_upstream_details: bool,
}

impl Resilience {
    /// Builds it from `config`, registering the ejection metrics in `metrics`' registry.
    pub fn new(config: &Config, metrics: &RouterMetrics) -> Result<Self, Error> {
        Ok(Self {
            budget: RetryBudget::new(&config.retry),
            outliers: Arc::new(OutlierDetector::new(
                config.outlier.clone(),
                metrics.registry(),
            )?),
            stream_first_byte: Duration::from_millis(config.timeouts.stream_first_byte_ms),
            expose_upstream_details: config.errors.expose_upstream_details,
        })
    }
}
