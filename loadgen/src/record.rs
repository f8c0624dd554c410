//! What the runner records about one request, the input of every metric.

use serde::{Deserialize, Serialize};

/// The measured outcome of one request. Times are in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position of the request in the workload.
    pub index: usize,
    /// Priority class sent with the request, if any.
    pub priority: Option<i64>,
    /// When the request was sent, from the start of the run.
    pub start: f64,
    /// Why the request failed ("http_500", "connect", "timeout", ...); `None` on success.
    pub error: Option<String>,
    /// The server's error message (truncated), when it sent one.
    pub error_detail: Option<String>,
    /// Time to the first content chunk (equal to `e2e` without streaming).
    pub ttft: Option<f64>,
    /// Gaps between consecutive content chunks.
    pub itl: Vec<f64>,
    /// Time from sending to the end of the response.
    pub e2e: f64,
    /// Prompt tokens (from the tokenizer or the server's usage).
    pub input_tokens: u64,
    /// Generated tokens (from the tokenizer or the server's usage).
    pub output_tokens: u64,
    /// Whether the server reported usage for this request.
    pub has_usage: bool,
    /// Content chunks received.
    pub chunks: u64,
    /// The replica named by the `x-routed-to` response header.
    pub routed_to: Option<String>,
    /// Milliseconds the router held the request in its admission queue (`x-queue-wait-ms`).
    #[serde(default)]
    pub queue_wait_ms: Option<f64>,
    /// Generated text, kept only when a tokenizer will count it.
    #[serde(skip)]
    pub generated: String,
}

impl RequestRecord {
    /// True when the request completed.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Time per output token after the first, when there is more than one output token.
    pub fn tpot(&self) -> Option<f64> {
        let ttft = self.ttft?;
        (self.ok() && self.output_tokens > 1)
            .then(|| (self.e2e - ttft) / (self.output_tokens - 1) as f64)
    }
}
