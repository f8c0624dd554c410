//! When each request is sent: Poisson arrivals with gamma burstiness, or all at once.

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand_distr::Gamma;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Target request rate: requests per second, or `inf` to send everything at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RequestRate {
    /// Send every request at time zero (bounded only by `--max-concurrency`).
    Infinite,
    /// Mean requests per second.
    PerSecond(f64),
}

impl FromStr for RequestRate {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("inf") {
            return Ok(Self::Infinite);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_infinite() && r > 0.0 => Ok(Self::Infinite),
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Self::PerSecond(r)),
            _ => Err(Error::invalid(
                "--request-rate",
                format!("{s:?} is not a positive number or \"inf\""),
            )),
        }
    }
}

impl fmt::Display for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Infinite => f.write_str("inf"),
            Self::PerSecond(r) => write!(f, "{r}"),
        }
    }
}

impl RequestRate {
    /// The rate as a number (`f64::INFINITY` for `inf`), for tables and CSV.
    pub fn as_f64(self) -> f64 {
        match self {
            Self::Infinite => f64::INFINITY,
            Self::PerSecond(r) => r,
        }
    }
}

/// Send offsets from the start for `n` requests. Gaps are gamma distributed with shape
/// `burstiness` and mean `1 / rate` (shape 1 = Poisson; smaller = burstier). The first request
/// goes at zero.
pub fn schedule(n: usize, rate: RequestRate, burstiness: f64, seed: u64) -> Result<Vec<Duration>> {
    let RequestRate::PerSecond(rate) = rate else {
        return Ok(vec![Duration::ZERO; n]);
    };
    if !(burstiness.is_finite() && burstiness > 0.0) {
        return Err(Error::invalid(
            "--burstiness",
            format!("must be > 0, got {burstiness}"),
        ));
    }
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness))
        .map_err(|e| Error::invalid("--request-rate/--burstiness", e.to_string()))?;
    // A stream of its own so that the workload and the arrivals do not shift each other.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_a771_0a15);
    let mut t = 0.0_f64;
    Ok((0..n)
        .map(|i| {
            if i > 0 {
                t += gamma.sample(&mut rng);
            }
            Duration::from_secs_f64(t)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(offsets: &[Duration]) -> Vec<f64> {
        offsets
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }

    fn mean_var(x: &[f64]) -> (f64, f64) {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        (
            m,
            x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64,
        )
    }

    #[test]
    fn poisson_mean_rate_within_tolerance() {
        let s = schedule(20_001, RequestRate::PerSecond(50.0), 1.0, 3).unwrap();
        assert_eq!(s[0], Duration::ZERO);
        let rate = 20_000.0 / s.last().unwrap().as_secs_f64();
        assert!((rate - 50.0).abs() < 1.5, "rate {rate}");
        // Exponential gaps: variance = mean^2.
        let (m, v) = mean_var(&gaps(&s));
        assert!((v / (m * m) - 1.0).abs() < 0.1, "cv^2 {}", v / (m * m));
    }

    #[test]
    fn burstiness_changes_variance_not_mean() {
        let s = schedule(20_001, RequestRate::PerSecond(10.0), 0.25, 9).unwrap();
        let (m, v) = mean_var(&gaps(&s));
        assert!((m - 0.1).abs() < 0.006, "mean gap {m}");
        // Gamma with shape k: cv^2 = 1/k = 4.
        assert!((v / (m * m) - 4.0).abs() < 0.5, "cv^2 {}", v / (m * m));
    }

    #[test]
    fn infinite_rate_sends_at_once() {
        let s = schedule(5, "inf".parse().unwrap(), 1.0, 1).unwrap();
        assert_eq!(s, vec![Duration::ZERO; 5]);
    }

    #[test]
    fn parse_rejects_bad_rates() {
        assert_eq!(
            "2.5".parse::<RequestRate>().unwrap(),
            RequestRate::PerSecond(2.5)
        );
        for bad in ["0", "-1", "abc", "NaN"] {
            assert!(bad.parse::<RequestRate>().is_err(), "{bad}");
        }
        assert!(schedule(3, RequestRate::PerSecond(1.0), 0.0, 1).is_err());
    }
}
