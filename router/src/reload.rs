//! Config hot reload (SIGHUP or a changed file): replicas, policy and its parameters, limits,
//! client keys and the log level change in place; in-flight requests are untouched. A new file
//! that does not load or validate is rejected with its reason and the running config stays.

use std::{
    hash::{Hash, Hasher},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use prometheus::{Gauge, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;

use crate::{
    Config, Error,
    abort::AbortOnDrop,
    auth::Auth,
    config::{ConfigOverrides, LoggingConfig},
    policy::{self, Decision, HeldPrefix, Policy, PrefixIndex, ReplicaView, RouteRequest},
    replicas::{ReplicaChange, ReplicaId, ReplicaSet},
};

/// A policy that can be replaced while requests are routed through it.
pub(crate) struct SwapPolicy {
    current: ArcSwap<Arc<dyn Policy>>,
}

impl SwapPolicy {
    pub(crate) fn new(policy: Arc<dyn Policy>) -> Self {
        Self {
            current: ArcSwap::from_pointee(policy),
        }
    }

    fn replace(&self, policy: Arc<dyn Policy>) {
        self.current.store(Arc::new(policy));
    }
}

impl Policy for SwapPolicy {
    fn name(&self) -> &'static str {
        self.current.load().name()
    }

    fn pick(&self, request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision {
        self.current.load().pick(request, candidates)
    }

    fn on_dispatch(&self, request: &RouteRequest<'_>, replica: ReplicaId) {
        self.current.load().on_dispatch(request, replica);
    }

    fn on_replica_added(&self, replica: ReplicaId) {
        self.current.load().on_replica_added(replica);
    }

    fn on_replica_removed(&self, replica: ReplicaId) {
        self.current.load().on_replica_removed(replica);
    }

    fn on_capacity_learnt(&self, replica: ReplicaId, kv_tokens: Option<u64>) {
        self.current.load().on_capacity_learnt(replica, kv_tokens);
    }

    fn on_replica_unhealthy(&self, replica: ReplicaId) {
        self.current.load().on_replica_unhealthy(replica);
    }

    fn held_prefix(&self, replica: ReplicaId) -> Option<HeldPrefix> {
        self.current.load().held_prefix(replica)
    }
}

/// Values read per request that a reload may change.
#[derive(Debug)]
pub struct LiveLimits {
    max_body_bytes: AtomicUsize,
}

impl LiveLimits {
    /// Limits starting at `max_body_bytes`.
    pub fn new(max_body_bytes: usize) -> Self {
        Self {
            max_body_bytes: AtomicUsize::new(max_body_bytes),
        }
    }

    /// Largest accepted request body now.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes.load(Ordering::Relaxed)
    }
}

/// Applies the log level of a new config (set by the binary, which owns the subscriber); a
/// filter it cannot use is [`Error::LogFilter`].
pub type LoggingHook = Box<dyn Fn(&LoggingConfig) -> Result<(), Error> + Send + Sync>;

/// Everything a reload touches in a running router.
pub(crate) struct Reloader {
    pub(crate) current: Mutex<Config>,
    pub(crate) changes: mpsc::Sender<ReplicaChange>,
    pub(crate) replicas: Arc<ReplicaSet>,
    pub(crate) policy: Arc<SwapPolicy>,
    /// The prefix tree (made on the first switch to a prefix policy if the router started
    /// without one).
    pub(crate) index: Mutex<Option<Arc<PrefixIndex>>>,
    pub(crate) limits: Arc<LiveLimits>,
    pub(crate) auth: Auth,
    pub(crate) metrics: ReloadMetrics,
    pub(crate) logging: Mutex<Option<LoggingHook>>,
}

/// `router_config_hash` and `router_config_reloads_total{outcome}`.
#[derive(Clone)]
pub(crate) struct ReloadMetrics {
    hash: Gauge,
    reloads: IntCounterVec,
}

impl ReloadMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, Error> {
        let hash = Gauge::new(
            "router_config_hash",
            "32-bit hash of the effective config in force (changes when a reload applies)",
        )?;
        registry.register(Box::new(hash.clone()))?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "router_config_reloads_total",
                "Config reload attempts by outcome (applied, unchanged, rejected)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        for outcome in ["applied", "unchanged", "rejected"] {
            reloads.with_label_values(&[outcome]);
        }
        Ok(Self { hash, reloads })
    }
}

/// A 32-bit hash of the config's canonical YAML (exact as a Prometheus sample).
pub fn config_hash(config: &Config) -> u32 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    config.to_yaml().hash(&mut hasher);
    let h = hasher.finish();
    (h ^ (h >> 32)) as u32
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new config is in force; the list names what changed.
    Applied(Vec<String>),
    /// The file loads to the config already in force.
    Unchanged,
}

impl Reloader {
    pub(crate) fn set_hash(&self, config: &Config) {
        self.metrics.hash.set(f64::from(config_hash(config)));
    }

    /// Loads `path` and applies it, or rejects it (logged, counted) keeping the old config.
    pub(crate) async fn reload(
        &self,
        path: &std::path::Path,
        overrides: &ConfigOverrides,
    ) -> Result<ReloadOutcome, Error> {
        let result = match Config::load(path, overrides) {
            Ok(new) => self.apply(new).await,
            Err(error) => Err(error),
        };
        match &result {
            Ok(ReloadOutcome::Unchanged) => {
                self.metrics.reloads.with_label_values(&["unchanged"]).inc();
                tracing::info!(file = %path.display(), "config reload: unchanged");
            }
            Ok(ReloadOutcome::Applied(what)) => {
                self.metrics.reloads.with_label_values(&["applied"]).inc();
                tracing::info!(file = %path.display(), changed = ?what, "config reloaded");
            }
            Err(error) => {
                self.metrics.reloads.with_label_values(&["rejected"]).inc();
                tracing::error!(file = %path.display(), %error, "config reload rejected; the running config stays");
            }
        }
        result
    }

    async fn apply(&self, new: Config) -> Result<ReloadOutcome, Error> {
        let old = self.current.lock().clone();
        if old == new {
            return Ok(ReloadOutcome::Unchanged);
        }
        let mut changed = Vec::new();
        // Build everything that can fail before changing anything.
        let policy = if old.policy != new.policy {
            Some(policy::build(&new.policy, self.index_for(&new)?)?)
        } else {
            None
        };
        if old.logging != new.logging {
            if let Some(hook) = &*self.logging.lock() {
                hook(&new.logging).map_err(|e| Error::Config {
                    origin: "reload".into(),
                    key: "logging.level".into(),
                    reason: e.to_string(),
                })?;
            }
            changed.push("logging".to_owned());
        }
        if let Some(policy) = policy {
            for replica in self.replicas.snapshot().all() {
                policy.on_replica_added(replica.id());
            }
            self.policy.replace(policy);
            changed.push("policy".to_owned());
        }
        if old.limits != new.limits {
            self.limits
                .max_body_bytes
                .store(new.limits.max_body_bytes, Ordering::Relaxed);
            changed.push("limits".to_owned());
        }
        if old.auth.api_keys != new.auth.api_keys {
            self.auth.set_keys(&new.auth);
            changed.push("auth.api_keys".to_owned());
        }
        if old.replicas != new.replicas {
            self.apply_replicas(&old, &new).await;
            changed.push("replicas".to_owned());
        }
        let fixed = [
            ("listen", old.listen != new.listen),
            ("health", old.health != new.health),
            ("timeouts", old.timeouts != new.timeouts),
            ("retry", old.retry != new.retry),
            ("scrape", old.scrape != new.scrape),
            ("prefix", old.prefix != new.prefix),
            ("models", old.models != new.models),
            ("admin", old.admin != new.admin),
            ("auth.upstream", old.auth.upstream != new.auth.upstream),
            ("logging.format", old.logging.format != new.logging.format),
        ];
        for (section, differs) in fixed {
            if differs {
                tracing::warn!(
                    section,
                    "config reload: this section changes only on restart"
                );
            }
        }
        self.set_hash(&new);
        *self.current.lock() = new;
        Ok(ReloadOutcome::Applied(changed))
    }

    /// The prefix tree a new policy shares; a router that started with a non-prefix policy in
    /// byte mode gets one now (token mode would need the tokenizer loaded at start).
    fn index_for(&self, new: &Config) -> Result<Option<Arc<PrefixIndex>>, Error> {
        let prefix_policy = new.policy.name.keys_prefixes();
        let mut index = self.index.lock();
        if index.is_none() && prefix_policy {
            if new.prefix.tokenizer.is_some() {
                return Err(Error::Config {
                    origin: "reload".into(),
                    key: "policy.name".into(),
                    reason:
                        "switching to a prefix policy with `prefix.tokenizer` set needs a restart"
                            .into(),
                });
            }
            *index = Some(Arc::new(PrefixIndex::new(&new.prefix)));
        }
        Ok(index.clone())
    }

    /// Upserts every replica of `new`; those only in `old` drain (in-flight work finishes).
    async fn apply_replicas(&self, old: &Config, new: &Config) {
        for spec in &new.replicas {
            let _ = self.changes.send(ReplicaChange::Upsert(spec.clone())).await;
        }
        for spec in &old.replicas {
            let name = spec.resolved_name();
            if !new.replicas.iter().any(|s| s.resolved_name() == name) {
                let _ = self.changes.send(ReplicaChange::Drain(name)).await;
            }
        }
    }
}

/// Reloads `path` on request ([`ReloadHandle::reload`], e.g. on SIGHUP) and when its
/// modification time or contents change (checked every `reload.watch_ms`; a change is applied
/// once it has held for one whole interval, so a file caught mid-write is not loaded).
pub struct ReloadHandle {
    reloader: Arc<Reloader>,
    path: PathBuf,
    overrides: ConfigOverrides,
    _watch: Option<AbortOnDrop>,
}

impl ReloadHandle {
    pub(crate) fn new(
        reloader: Arc<Reloader>,
        path: PathBuf,
        overrides: ConfigOverrides,
        watch: Duration,
    ) -> Self {
        let watcher = (!watch.is_zero()).then(|| {
            let reloader = Arc::clone(&reloader);
            let path = path.clone();
            let overrides = overrides.clone();
            AbortOnDrop(tokio::spawn(async move {
                let mut seen = modified(&path);
                let mut settling = None;
                let mut ticker = tokio::time::interval(watch);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let now = modified(&path);
                    if now == seen {
                        settling = None;
                    } else if settling == Some(now) {
                        // Unchanged for a whole interval: not a file caught mid-write.
                        seen = now;
                        settling = None;
                        let _ = reloader.reload(&path, &overrides).await;
                    } else {
                        settling = Some(now);
                    }
                }
            }))
        });
        Self {
            reloader,
            path,
            overrides,
            _watch: watcher,
        }
    }

    /// Reloads the file now.
    pub async fn reload(&self) -> Result<ReloadOutcome, Error> {
        self.reloader.reload(&self.path, &self.overrides).await
    }

    /// Sets how a new `logging.level` is applied (the binary owns the log subscriber).
    pub fn on_logging(&self, hook: LoggingHook) {
        *self.reloader.logging.lock() = Some(hook);
    }
}

/// The file's modification time and a hash of its bytes (a rewrite within the file system's
/// time resolution still counts).
fn modified(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some((meta.modified().ok()?, hasher.finish()))
}
