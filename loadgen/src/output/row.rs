//! One results-CSV row as a typed value: written by `append_csv`, read back by `read_rows` (and the
//! report) through the same serde structs, so a new run parameter is one field of `RunParams`
//! and a new metric one field here.

use super::csv_row::encode;
use crate::metrics::Stats;
use crate::summary::{RunParams, RunSummary};
use csv::StringRecord;
use serde::{Deserialize, Serialize};

/// A run's totals: the columns between the parameters and the latency statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunTotals {
    /// Distinct conversations or system prompts among the requests.
    pub groups: usize,
    /// Where token counts came from.
    pub token_source: String,
    /// Unix time the run started, seconds.
    pub started_at: u64,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Wall time of the run, seconds.
    #[serde(with = "cell")]
    pub duration_s: f64,
    /// Completed requests.
    pub completed: u64,
    /// Failed requests.
    pub failed: u64,
    /// Failures per reason, packed as `reason=count;...`.
    pub failed_by_reason: String,
    /// Prompt tokens of completed requests.
    pub total_input_tokens: u64,
    /// Output tokens of completed requests.
    pub total_output_tokens: u64,
    /// Completed requests per second.
    #[serde(with = "cell")]
    pub request_throughput: f64,
    /// Prompt tokens per second.
    #[serde(with = "cell")]
    pub input_throughput: f64,
    /// Output tokens per second.
    #[serde(with = "cell")]
    pub output_throughput: f64,
    /// Mean requests in flight.
    #[serde(with = "cell")]
    pub concurrency: f64,
    /// Requests per second that met the SLOs, when SLOs were given.
    #[serde(with = "opt_cell")]
    pub goodput: Option<f64>,
}

/// Client-side latency statistics, written as `<name>_<statistic>` columns (`ttft_ms_mean`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latencies {
    /// Time to first token, ms.
    pub ttft_ms: Stats,
    /// Time per output token after the first, ms.
    pub tpot_ms: Stats,
    /// Inter-token latency, ms.
    pub itl_ms: Stats,
    /// End-to-end latency, ms.
    pub e2e_ms: Stats,
    /// Time waited in the router's admission queue, ms.
    pub queue_wait_ms: Stats,
}

impl Latencies {
    /// Each statistic with its column prefix, in column order.
    fn named(&mut self) -> [(&'static str, &mut Stats); 5] {
        [
            ("ttft_ms", &mut self.ttft_ms),
            ("tpot_ms", &mut self.tpot_ms),
            ("itl_ms", &mut self.itl_ms),
            ("e2e_ms", &mut self.e2e_ms),
            ("queue_wait_ms", &mut self.queue_wait_ms),
        ]
    }

    /// The column every results CSV has (`ttft_ms_mean`): how a foreign CSV is told apart.
    pub fn first_column() -> String {
        let mut l = Self::default();
        let (name, _) = &l.named()[0];
        format!("{name}_mean")
    }
}

/// Cache, placement, priority and prefill columns, after the latency statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOutcome {
    /// Hit rate an unlimited shared cache would reach on the request sequence.
    #[serde(with = "opt_cell")]
    pub oracle_hit_rate: Option<f64>,
    /// Replicas' prefix-cache hit rate over the run.
    #[serde(with = "opt_cell")]
    pub replica_hit_rate: Option<f64>,
    /// Prompt tokens the replicas counted.
    #[serde(with = "opt_cell")]
    pub replica_prompt_tokens: Option<f64>,
    /// Generation tokens the replicas counted.
    #[serde(with = "opt_cell")]
    pub replica_generation_tokens: Option<f64>,
    /// Requests the replicas finished.
    #[serde(with = "opt_cell")]
    pub replica_successes: Option<f64>,
    /// Preemptions on the replicas.
    #[serde(with = "opt_cell")]
    pub replica_preemptions: Option<f64>,
    /// Replicas' mean TTFT, ms.
    #[serde(with = "opt_cell")]
    pub replica_ttft_ms: Option<f64>,
    /// Replicas' mean TPOT, ms.
    #[serde(with = "opt_cell")]
    pub replica_tpot_ms: Option<f64>,
    /// Replicas' mean end-to-end latency, ms.
    #[serde(with = "opt_cell")]
    pub replica_e2e_ms: Option<f64>,
    /// Replicas' mean queue time, ms.
    #[serde(with = "opt_cell")]
    pub replica_queue_ms: Option<f64>,
    /// Replicas' mean prefill time, ms.
    #[serde(with = "opt_cell")]
    pub replica_prefill_ms: Option<f64>,
    /// Replicas' mean decode time, ms.
    #[serde(with = "opt_cell")]
    pub replica_decode_ms: Option<f64>,
    /// Requests per replica, packed as `replica=count;...`.
    pub requests_per_replica: String,
    /// The most loaded replica's count over the mean count.
    #[serde(with = "cell")]
    pub max_over_mean: f64,
    /// Width of one timeline bin, seconds.
    #[serde(with = "cell")]
    pub timeline_bin_s: f64,
    /// Requests per replica per bin, packed as `replica=3|4|0;...`.
    pub replica_timeline: String,
    /// Metrics per priority class, packed as `class=ttft_mean:7|e2e_mean:90;...`.
    pub per_priority: String,
    /// Prefill latency from a prefill-only baseline, ms.
    #[serde(with = "opt_cell")]
    pub prefill_latency_ms: Option<f64>,
    /// Generation latency (E2E minus prefill), ms.
    #[serde(with = "opt_cell")]
    pub generation_latency_ms: Option<f64>,
    /// Prompt tokens per second of prefill.
    #[serde(with = "opt_cell")]
    pub prefill_throughput_tok_s: Option<f64>,
    /// Output tokens per second of generation.
    #[serde(with = "opt_cell")]
    pub generation_throughput_tok_s: Option<f64>,
}

/// One results-CSV row: the run's parameters, then its metrics, each part a serde struct whose
/// fields are the columns (in order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CsvRow {
    /// How the run was made; its columns come first.
    pub params: RunParams,
    /// Totals and throughput.
    pub totals: RunTotals,
    /// Latency statistics.
    pub latency: Latencies,
    /// Cache, placement, priority and prefill figures.
    pub outcome: RunOutcome,
}

impl CsvRow {
    /// The row of `s`.
    pub fn of(s: &RunSummary) -> Self {
        let m = &s.client;
        let r = s.replicas.as_ref();
        let pf = s.prefill.as_ref();
        let pl = &s.placement;
        Self {
            params: s.params.clone(),
            totals: RunTotals {
                groups: s.groups,
                token_source: s.token_source.clone(),
                started_at: s.started_at,
                interrupted: s.interrupted,
                duration_s: m.duration_s,
                completed: m.completed,
                failed: m.failed,
                failed_by_reason: encode(
                    m.failed_by_reason
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string())),
                ),
                total_input_tokens: m.total_input_tokens,
                total_output_tokens: m.total_output_tokens,
                request_throughput: m.request_throughput,
                input_throughput: m.input_throughput,
                output_throughput: m.output_throughput,
                concurrency: m.concurrency,
                goodput: m.goodput,
            },
            latency: Latencies {
                ttft_ms: m.ttft_ms,
                tpot_ms: m.tpot_ms,
                itl_ms: m.itl_ms,
                e2e_ms: m.e2e_ms,
                queue_wait_ms: m.queue_wait_ms,
            },
            outcome: RunOutcome {
                oracle_hit_rate: s.oracle.map(|o| o.hit_rate),
                replica_hit_rate: r.map(|r| r.prefix_cache_hit_rate),
                replica_prompt_tokens: r.map(|r| r.prompt_tokens),
                replica_generation_tokens: r.map(|r| r.generation_tokens),
                replica_successes: r.map(|r| r.successes),
                replica_preemptions: r.map(|r| r.preemptions),
                replica_ttft_ms: r.and_then(|r| r.means_ms.ttft),
                replica_tpot_ms: r.and_then(|r| r.means_ms.tpot),
                replica_e2e_ms: r.and_then(|r| r.means_ms.e2e),
                replica_queue_ms: r.and_then(|r| r.means_ms.queue),
                replica_prefill_ms: r.and_then(|r| r.means_ms.prefill),
                replica_decode_ms: r.and_then(|r| r.means_ms.decode),
                requests_per_replica: encode(
                    pl.per_replica
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string())),
                ),
                max_over_mean: pl.max_over_mean(),
                timeline_bin_s: pl.bin_s,
                replica_timeline: encode(pl.over_time.iter().map(|(k, v)| {
                    (
                        k.clone(),
                        v.iter().map(u64::to_string).collect::<Vec<_>>().join("|"),
                    )
                })),
                per_priority: encode(s.per_priority.iter().map(|c| {
                    let m = &c.metrics;
                    let fields = [
                        ("completed", m.completed as f64),
                        ("failed", m.failed as f64),
                        ("ttft_mean", m.ttft_ms.mean),
                        ("ttft_p50", m.ttft_ms.median),
                        ("ttft_p95", m.ttft_ms.p95),
                        ("ttft_p99", m.ttft_ms.p99),
                        ("e2e_mean", m.e2e_ms.mean),
                        ("e2e_p99", m.e2e_ms.p99),
                        ("tpot_mean", m.tpot_ms.mean),
                        ("queue_wait_mean", m.queue_wait_ms.mean),
                        ("queue_wait_p99", m.queue_wait_ms.p99),
                        ("request_throughput", m.request_throughput),
                        ("output_throughput", m.output_throughput),
                    ];
                    let v = fields
                        .iter()
                        .map(|(k, v)| format!("{k}:{}", num(*v)))
                        .collect::<Vec<_>>();
                    (c.priority.to_string(), v.join("|"))
                })),
                prefill_latency_ms: pf.map(|p| p.prefill_latency_ms),
                generation_latency_ms: pf.map(|p| p.generation_latency_ms),
                prefill_throughput_tok_s: pf.map(|p| p.prefill_throughput_tok_s),
                generation_throughput_tok_s: pf.map(|p| p.generation_throughput_tok_s),
            },
        }
    }

    /// The row's columns, in order: name and cell.
    pub fn cells(&self) -> csv::Result<Vec<(String, String)>> {
        let mut c = serde_cells(&self.params)?;
        c.extend(serde_cells(&self.totals)?);
        let mut latency = self.latency;
        for (name, stats) in latency.named() {
            for (stat, v) in serde_cells(&*stats)? {
                let v = v.parse().map(num).unwrap_or(v);
                c.push((format!("{name}_{stat}"), v));
            }
        }
        c.extend(serde_cells(&self.outcome)?);
        Ok(c)
    }

    /// Reads a row back from a record under `header`; a missing column gets its default, a
    /// malformed cell is an error naming its column.
    pub fn from_record(header: &StringRecord, rec: &StringRecord) -> csv::Result<Self> {
        let mut row = Self {
            params: typed(header, rec)?,
            totals: typed(header, rec)?,
            latency: Latencies::default(),
            outcome: typed(header, rec)?,
        };
        for (name, stats) in row.latency.named() {
            let prefix = format!("{name}_");
            let (h, r): (Vec<&str>, Vec<&str>) = header
                .iter()
                .zip(rec.iter())
                .filter_map(|(h, v)| h.strip_prefix(&prefix).map(|h| (h, v)))
                .map(|(h, v)| (h, if v.is_empty() { "0" } else { v }))
                .unzip();
            if !h.is_empty() {
                *stats = typed(&StringRecord::from(h), &StringRecord::from(r))?;
            }
        }
        Ok(row)
    }
}

/// Deserializes the columns of `T` out of a record (other columns are ignored).
fn typed<T: serde::de::DeserializeOwned>(
    header: &StringRecord,
    rec: &StringRecord,
) -> csv::Result<T> {
    rec.deserialize(Some(header))
}

/// The columns of a flat serde struct: its field names and cells, in order.
pub(super) fn serde_cells<T: Serialize>(v: &T) -> csv::Result<Vec<(String, String)>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(v)?;
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let header = r.headers()?.clone();
    let row = r
        .records()
        .next()
        .ok_or_else(|| std::io::Error::other("serialized to no row"))??;
    Ok(header
        .iter()
        .zip(row.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// A metric cell: at most four decimals, `inf` for +infinity, empty for NaN and -infinity.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return if v > 0.0 { "inf".into() } else { String::new() };
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Serde for a metric cell holding an `f64` (see [`num`]); an empty cell reads back as 0.
mod cell {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::num(*v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(0.0);
        }
        s.parse().map_err(D::Error::custom)
    }
}

/// Serde for a metric cell holding an `Option<f64>`: empty when `None`.
mod opt_cell {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.map(super::num).unwrap_or_default())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(D::Error::custom)
    }
}
