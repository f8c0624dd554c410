//! Configuration of outlier ejection and of what clients learn about upstream failures.

use serde::{Deserialize, Serialize};

/// Envoy-style outlier detection on real traffic: a replica that keeps failing, or answers far
/// slower than its peers, is ejected (gets no traffic) for a back-off that grows while it keeps
/// failing or being slow after each return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Turn ejection on.
    pub enabled: bool,
    /// Consecutive failures (5xx, connect error, timeouts, broken streams) that eject.
    pub consecutive_failures: u32,
    /// First ejection length; each further ejection in a row adds one more of it.
    pub base_ejection_ms: u64,
    /// Longest ejection.
    pub max_ejection_ms: u64,
    /// Most replicas ejected at once, as a percentage of the fleet (at least one may be).
    pub max_ejection_percent: u32,
    /// Also eject a replica whose failures over its last `min_requests` answers reach this
    /// percentage while its peers' failure rate is under half of it (0 turns this off).
    pub failure_percent: u32,
    /// Answers per replica in one failure-rate window, and latency samples a replica (and each
    /// peer it is compared with) needs before a latency verdict.
    pub min_requests: u32,
    /// Also eject a replica whose decayed mean time to first byte of streamed answers, per 256
    /// uncached prompt tokens (shorter prompts count as 256), exceeds this many times its
    /// peers' median (0 turns this off).
    pub latency_factor: f64,
    /// The peers' median latency counts as at least this, so that noise on replicas answering
    /// in microseconds ejects nobody.
    pub latency_floor_ms: u64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            base_ejection_ms: 2_000,
            max_ejection_ms: 60_000,
            max_ejection_percent: 50,
            failure_percent: 25,
            min_requests: 20,
            latency_factor: 5.0,
            latency_floor_ms: 25,
        }
    }
}

impl OutlierConfig {
    /// Checks the values serde cannot; returns the offending key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (key, value) in [
            (
                "outlier.consecutive_failures",
                u64::from(self.consecutive_failures),
            ),
            ("outlier.base_ejection_ms", self.base_ejection_ms),
            ("outlier.max_ejection_ms", self.max_ejection_ms),
            ("outlier.min_requests", u64::from(self.min_requests)),
        ] {
            if value == 0 {
                return Err((key.to_owned(), "must be greater than 0".to_owned()));
            }
        }
        if self.failure_percent > 100 {
            return Err((
                "outlier.failure_percent".to_owned(),
                format!("must be within 0..=100, got {}", self.failure_percent),
            ));
        }
        if !(self.latency_factor == 0.0
            || (self.latency_factor.is_finite() && self.latency_factor >= 1.0))
        {
            return Err((
                "outlier.latency_factor".to_owned(),
                format!("must be 0 (off) or at least 1, got {}", self.latency_factor),
            ));
        }
        if self.max_ejection_percent > 100 {
            return Err((
                "outlier.max_ejection_percent".to_owned(),
                format!("must be within 0..=100, got {}", self.max_ejection_percent),
            ));
        }
        Ok(())
    }
}

/// What clients learn about upstream failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorsConfig {
    /// Pass replicas' own error bodies and failure details (which may name internal addresses)
    /// to clients; off by default: clients get the router's own error message.
    pub expose_upstream_details: bool,
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn reliability_keys_parse_and_bad_values_are_named() {
        let config = Config::from_yaml_str(
            "outlier:\n  consecutive_failures: 2\nerrors:\n  expose_upstream_details: true\n\
             retry:\n  backoff_max_ms: 50\n",
        )
        .unwrap();
        assert_eq!(config.outlier.consecutive_failures, 2);
        assert_eq!(config.outlier.latency_factor, 5.0);
        assert!(config.errors.expose_upstream_details);
        assert_eq!(config.retry.backoff_max_ms, 50);
        assert_eq!(config.timeouts.stream_first_byte_ms, 2_000);
        for (yaml, key) in [
            (
                "outlier:\n  max_ejection_percent: 101\n",
                "outlier.max_ejection_percent",
            ),
            (
                "outlier:\n  base_ejection_ms: 0\n",
                "outlier.base_ejection_ms",
            ),
            (
                "outlier:\n  latency_factor: 0.5\n",
                "outlier.latency_factor",
            ),
            (
                "limits:\n  max_header_bytes: 100\n",
                "limits.max_header_bytes",
            ),
            (
                "timeouts:\n  header_read_ms: 0\n",
                "timeouts.header_read_ms",
            ),
        ] {
            let error = Config::from_yaml_str(yaml)
                .and_then(|c| c.validate("test").map(|()| c))
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
