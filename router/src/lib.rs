//! prefix-router: an OpenAI-compatible reverse proxy that routes LLM requests to replicas.
//!
//! Layers, one concern per module: [`config`] (figment), [`api`] (routes and errors), [`proxy`]
//! (forwarding), [`replicas`] (set, health, load), [`policy`] (one file per policy),
//! [`metrics`] (own registry), [`dispatch`] (admission, pick, load counting, retries),
//! [`admission`] (priority queue and per-replica caps, no HTTP).

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
