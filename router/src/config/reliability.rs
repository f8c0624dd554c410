//! Configuration of outlier ejection and of what clients learn about upstream failures.

use serde::{Deserialize, Serialize};

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
