//! Client-side metrics with the definitions of SGLang's bench_serving and vLLM's goodput.

use super::Stats;
use crate::record::RequestRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Service-level objectives for goodput, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Largest acceptable time to first token.
    pub ttft_ms: Option<f64>,
    /// Largest acceptable time per output token.
    pub tpot_ms: Option<f64>,
}

impl Slo {
    fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some()
    }

    /// True when `r` completed within every objective that is set.
    fn met_by(&self, r: &RequestRecord) -> bool {
        let ttft_ok = match (self.ttft_ms, r.ttft) {
            (Some(limit), Some(t)) => t * 1000.0 <= limit,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let tpot_ok = match self.tpot_ms {
            Some(limit) => r.tpot().is_none_or(|t| t * 1000.0 <= limit),
            None => true,
        };
        r.ok() && ttft_ok && tpot_ok
    }
}

/// What the client measured over one run. Latencies are in milliseconds, rates per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMetrics {
    /// From the first send to the last response, seconds.
    pub duration_s: f64,
    /// Requests that completed.
    pub completed: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Failed requests by reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// The server's message for the first failure of each reason, when it sent one.
    #[serde(default)]
    pub failure_examples: BTreeMap<String, String>,
    /// Prompt tokens of completed requests.
    pub total_input_tokens: u64,
    /// Generated tokens of completed requests.
    pub total_output_tokens: u64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Prompt tokens per second.
    pub input_throughput: f64,
    /// Generated tokens per second.
    pub output_throughput: f64,
    /// Sum of E2E latencies over the duration: the mean number of requests in flight.
    pub concurrency: f64,
    /// Time to first token.
    pub ttft_ms: Stats,
    /// Time per output token after the first: (E2E - TTFT) / (output tokens - 1).
    pub tpot_ms: Stats,
    /// Gaps between content chunks, over all requests.
    pub itl_ms: Stats,
    /// End-to-end latency.
    pub e2e_ms: Stats,
    /// Time the router held requests in its admission queue (`x-queue-wait-ms`), over the
    /// completed requests that reported it.
    #[serde(default)]
    pub queue_wait_ms: Stats,
    /// Requests meeting every SLO, when an SLO is set.
    pub good_requests: Option<u64>,
    /// Requests meeting every SLO per second, when an SLO is set.
    pub goodput: Option<f64>,
}

/// Computes the metrics of `records` over a run of `duration_s` seconds.
pub fn client_metrics(records: &[RequestRecord], duration_s: f64, slo: Slo) -> ClientMetrics {
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
    let mut failed_by_reason = BTreeMap::new();
    let mut failure_examples = BTreeMap::new();
    for r in records.iter().filter(|r| !r.ok()) {
        let reason = r.error.clone().unwrap_or_default();
        if let Some(d) = &r.error_detail {
            failure_examples
                .entry(reason.clone())
                .or_insert_with(|| d.clone());
        }
        *failed_by_reason.entry(reason).or_insert(0) += 1;
    }
    let total_input_tokens = ok.iter().map(|r| r.input_tokens).sum::<u64>();
    let total_output_tokens = ok.iter().map(|r| r.output_tokens).sum::<u64>();
    let ttfts: Vec<f64> = ok.iter().filter_map(|r| r.ttft).collect();
    let tpots: Vec<f64> = ok.iter().filter_map(|r| r.tpot()).collect();
    let itls: Vec<f64> = ok.iter().flat_map(|r| r.itl.iter().copied()).collect();
    let e2es: Vec<f64> = ok.iter().map(|r| r.e2e).collect();
    let waits: Vec<f64> = ok.iter().filter_map(|r| r.queue_wait_ms).collect();
    let good = slo
        .is_set()
        .then(|| records.iter().filter(|r| slo.met_by(r)).count() as u64);
    ClientMetrics {
        duration_s,
        completed: ok.len() as u64,
        failed: (records.len() - ok.len()) as u64,
        failed_by_reason,
        failure_examples,
        total_input_tokens,
        total_output_tokens,
        request_throughput: per_s(ok.len() as f64),
        input_throughput: per_s(total_input_tokens as f64),
        output_throughput: per_s(total_output_tokens as f64),
        concurrency: per_s(e2es.iter().sum()),
        ttft_ms: Stats::of(&ttfts).scaled(1000.0),
        tpot_ms: Stats::of(&tpots).scaled(1000.0),
        itl_ms: Stats::of(&itls).scaled(1000.0),
        e2e_ms: Stats::of(&e2es).scaled(1000.0),
        queue_wait_ms: Stats::of(&waits),
        good_requests: good,
        goodput: good.map(|g| per_s(g as f64)),
    }
}

/// The metrics of one priority class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityMetrics {
    /// The priority value sent.
    pub priority: i64,
    /// Metrics of the requests of this class, over the whole run's duration.
    pub metrics: ClientMetrics,
}

/// Metrics per priority class, in increasing priority value; empty without priorities.
pub fn per_priority(records: &[RequestRecord], duration_s: f64, slo: Slo) -> Vec<PriorityMetrics> {
    let mut classes: BTreeMap<i64, Vec<RequestRecord>> = BTreeMap::new();
    for r in records {
        if let Some(p) = r.priority {
            classes.entry(p).or_default().push(r.clone());
        }
    }
    classes
        .into_iter()
        .map(|(priority, rs)| PriorityMetrics {
            priority,
            metrics: client_metrics(&rs, duration_s, slo),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ttft: f64, e2e: f64, out: u64, itl: &[f64]) -> RequestRecord {
        RequestRecord {
            ttft: Some(ttft),
            e2e,
            input_tokens: 100,
            output_tokens: out,
            itl: itl.to_vec(),
            ..RequestRecord::default()
        }
    }

    #[test]
    fn known_inputs() {
        let mut failed = rec(0.0, 0.5, 0, &[]);
        failed.error = Some("http_500".into());
        let records = vec![
            rec(0.1, 1.1, 11, &[0.1, 0.1]),
            rec(0.3, 2.3, 5, &[0.5]),
            rec(0.2, 0.2, 1, &[]),
            failed,
        ];
        let m = client_metrics(&records, 2.0, Slo::default());
        assert_eq!((m.completed, m.failed), (3, 1));
        assert_eq!(m.failed_by_reason.get("http_500"), Some(&1));
        assert_eq!(m.total_input_tokens, 300);
        assert_eq!(m.total_output_tokens, 17);
        assert_eq!(m.request_throughput, 1.5);
        assert_eq!(m.input_throughput, 150.0);
        assert_eq!(m.output_throughput, 8.5);
        assert!((m.ttft_ms.mean - 200.0).abs() < 1e-9);
        assert!((m.e2e_ms.mean - 1200.0).abs() < 1e-9);
        assert!((m.concurrency - 1.8).abs() < 1e-9);
        // TPOT: (1.1-0.1)/10 = 100 ms and (2.3-0.3)/4 = 500 ms; the 1-token request has none.
        assert!((m.tpot_ms.mean - 300.0).abs() < 1e-9);
        assert!((m.tpot_ms.max - 500.0).abs() < 1e-9);
        assert!((m.itl_ms.mean - 700.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.goodput, None);
    }

    #[test]
    fn goodput_counts_requests_within_every_slo() {
        let records = vec![
            rec(0.1, 1.1, 11, &[]),  // ttft 100, tpot 100
            rec(0.3, 2.3, 5, &[]),   // ttft 300, tpot 500
            rec(0.05, 3.05, 4, &[]), // ttft 50, tpot 1000
        ];
        let slo = Slo {
            ttft_ms: Some(200.0),
            tpot_ms: Some(600.0),
        };
        let m = client_metrics(&records, 4.0, slo);
        assert_eq!(m.good_requests, Some(1));
        assert_eq!(m.goodput, Some(0.25));
        let ttft_only = Slo {
            ttft_ms: Some(200.0),
            tpot_ms: None,
        };
        assert_eq!(
            client_metrics(&records, 4.0, ttft_only).good_requests,
            Some(2)
        );
    }

    #[test]
    fn classes_are_split_by_priority() {
        let mut a = rec(0.1, 1.0, 2, &[]);
        a.priority = Some(1);
        let mut b = rec(0.3, 1.0, 2, &[]);
        b.priority = Some(0);
        let mut c = rec(0.5, 1.0, 2, &[]);
        c.priority = Some(1);
        let classes = per_priority(&[a, b, c], 1.0, Slo::default());
        assert_eq!(classes.len(), 2);
        assert_eq!(classes[0].priority, 0);
        assert_eq!(classes[0].metrics.completed, 1);
        assert!((classes[1].metrics.ttft_ms.mean - 300.0).abs() < 1e-9);
    }
}
