//! What the dispatcher needs to survive failing replicas: the retry budget, outlier ejection,
//! the streaming first-byte timeout and whether clients see upstream failure details.

use std::{sync::Arc, time::Duration};

use crate::{
    Error,
    metrics::RouterMetrics,
    replicas::{OutlierConfig, OutlierDetector},
    retry::{RetryBudget, RetryConfig},
};

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
    /// Builds it from the `retry` and `outlier` sections, the streaming first-byte timeout and
    /// `errors.expose_upstream_details`, registering the ejection metrics in `metrics`' registry.
    pub fn new(
        retry: &RetryConfig,
        outlier: OutlierConfig,
        stream_first_byte: Duration,
        expose_upstream_details: bool,
        metrics: &RouterMetrics,
    ) -> Result<Self, Error> {
        Ok(Self {
            budget: RetryBudget::new(retry),
            outliers: Arc::new(OutlierDetector::new(outlier, metrics.registry())?),
            stream_first_byte,
            expose_upstream_details,
        })
    }
}
