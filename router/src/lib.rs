//! prefix-router: an OpenAI-compatible reverse proxy that routes LLM requests to replicas.
//!
//! One concern per module, and the modules form layers. Bottom to top: a module uses modules of
//! its own layer or lower ones only, and there is no circle (`tests/layering.rs` checks both
//! against this list). Each module owns its config type; [`config`] only gathers and validates.
//!
//! 1. foundations: `error`, `access_log`, `abort`, `metrics`, `retry`
//! 2. per-replica load and learnt state, and the parsed request: `load`, `request`
//! 3. the replica set (spec, health state, load guard, outliers): `replicas`
//! 4. around each replica: `proxy`, `health`, `models`, `discovery`, `resilience`, `body`, `kv`,
//!    `prompt_key`
//! 5. routing decisions (one file per policy, the prefix index): `policy`
//! 6. the request path and background tasks: `admission` (asks the policy where a waiter's prefix
//!    lives), `dispatch`, `scrape`, `membership`, `auth`, `admin`
//! 7. the whole configuration: `config`
//! 8. the service: `reload`, `api`, `server`

mod abort;
pub mod access_log;
pub mod admin;
pub mod admission;
pub mod api;
pub mod auth;
mod body;
pub mod config;
pub mod discovery;
pub mod dispatch;
pub mod error;
mod health;
pub mod kv;
pub mod load;
mod membership;
pub mod metrics;
pub mod models;
pub mod policy;
pub mod prompt_key;
pub mod proxy;
pub mod reload;
pub mod replicas;
pub mod request;
pub mod resilience;
pub mod retry;
pub mod scrape;
mod server;

pub use config::Config;
pub use error::Error;
pub use policy::{Decision, DecisionReason, Policy, ReplicaView, RouteRequest};
pub use replicas::{ReplicaChange, ReplicaId};
pub use server::{RouterServer, start};
