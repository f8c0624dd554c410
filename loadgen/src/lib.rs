//! `loadgen`: replays multi-turn ShareGPT prefixes (and other workloads) against an
//! OpenAI-compatible server, measures it like SGLang's bench_serving, sweeps routing policies,
//! and charts the results.
//!
//! Pipeline: [`dataset`] builds the requests, [`arrivals`] times them, [`runner`] sends them,
//! [`metrics`], [`scrape`] and [`oracle`] measure, [`output`] and [`report`] write the results.
//! [`bench`](mod@bench) ties one run together; [`sweep`] and [`demo`] run several through an in-process
//! router ([`cluster`]).

pub mod arrivals;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod dataset;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod oracle;
pub mod output;
pub mod record;
pub mod report;
pub mod request;
pub mod runner;
pub mod scrape;
pub mod summary;
pub mod sweep;
pub mod tokens;

pub use error::{Error, Result};
/// Cancels a run (Ctrl-C): sending stops and requests in flight are drained.
pub use tokio_util::sync::CancellationToken;
