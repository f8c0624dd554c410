//! Starting and stopping the router: binds, wires the pieces, serves with graceful drain.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    Config, Error,
    abort::AbortOnDrop,
    admin::AdminState,
    admission::{Admission, AdmissionMetrics},
    api::{self, AppState},
    auth::Auth,
    dispatch::{DispatchSettings, Dispatcher},
    membership::Membership,
    metrics::RouterMetrics,
    policy::{self, PrefixIndex},
    prompt_key::PromptKeys,
    proxy::Proxy,
    reload::{LiveLimits, ReloadHandle, ReloadMetrics, Reloader, SwapPolicy},
    replicas::{ReplicaChange, ReplicaSet},
    resilience::Resilience,
    scrape::{ScrapeMetrics, Scraper},
};

/// A running router.
pub struct RouterServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serve: JoinHandle<()>,
    changes: mpsc::Sender<ReplicaChange>,
    replicas: Arc<ReplicaSet>,
    drain: Duration,
    unready: Duration,
    shutting_down: Arc<AtomicBool>,
    reloader: Arc<Reloader>,
    watch: Duration,
    _membership: AbortOnDrop,
    _discovery: Vec<AbortOnDrop>,
    _scraper: AbortOnDrop,
    _kv_events: Option<AbortOnDrop>,
}

/// Validates `config`, binds `config.listen`, adds the static replicas, starts health checks
/// and serves until [`RouterServer::shutdown`].
pub async fn start(config: Config) -> Result<RouterServer, Error> {
    config.validate("config")?;
    let metrics = Arc::new(RouterMetrics::new()?);
    let prefix_policy = config.policy.name.keys_prefixes();
    let index = prefix_policy.then(|| Arc::new(PrefixIndex::new(&config.prefix)));
    let keys = if prefix_policy {
        PromptKeys::from_config(&config.prefix)?
    } else {
        PromptKeys::default()
    };
    keys.register_metrics(metrics.registry())?;
    let swap = Arc::new(SwapPolicy::new(policy::build(
        &config.policy,
        index.clone(),
    )?));
    let policy: Arc<dyn policy::Policy> = swap.clone();
    let replicas = Arc::new(ReplicaSet::new((*metrics).clone()));
    let precise = index.as_ref().and_then(|i| i.precise().cloned());
    let kv_events = crate::kv::spawn(
        &config.prefix.kv_events,
        &config.replicas,
        precise.as_ref(),
        &replicas,
        &metrics,
    )?;
    let proxy = Proxy::new(&config.timeouts).with_authorization(config.auth.upstream.header());
    let reload_index = index.clone();
    let admin_policy = Arc::clone(&policy);
    let auth = Auth::new(&config.auth, metrics.registry())?;
    let reload_metrics = ReloadMetrics::new(metrics.registry())?;
    let scraper = Scraper {
        replicas: Arc::clone(&replicas),
        proxy: proxy.clone(),
        config: config.scrape.clone(),
        health: config.health.clone(),
        policy: Arc::clone(&policy),
        unhealthy_grace: Duration::from_millis(config.prefix.unhealthy_grace_ms),
        metrics: ScrapeMetrics::new(metrics.registry())?,
    }
    .spawn();
    let (changes, changes_rx) = mpsc::channel(64);
    let mut discovery = Vec::new();
    if let Some(dns) = &config.discovery.dns {
        discovery.push(crate::discovery::dns::spawn(dns.clone(), changes.clone()));
    }
    if let Some(k8s) = &config.discovery.kubernetes {
        discovery.push(crate::discovery::k8s::spawn(k8s.clone(), changes.clone()));
    }
    let mut membership = Membership {
        replicas: Arc::clone(&replicas),
        policy: Arc::clone(&policy),
        proxy: proxy.clone(),
        health: config.health.clone(),
        probes: HashMap::new(),
        models: config.models.clone(),
        tasks: HashMap::new(),
        feedback: Some(changes.downgrade()),
    };
    for spec in &config.replicas {
        membership.apply(ReplicaChange::Upsert(spec.clone()));
    }
    let membership = AbortOnDrop(tokio::spawn(membership.run(changes_rx)));

    // Address reuse and a deep accept backlog (tcp_listen::BACKLOG): bursts of connects.
    let listener = tcp_listen::listen(config.listen).map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let admission = Admission::new(
        config.queue.clone(),
        config.caps.clone(),
        AdmissionMetrics::new(metrics.registry())?,
    );
    admission.spawn_cap_updates(
        Arc::clone(&replicas),
        Duration::from_millis(config.caps.adaptive.interval_ms),
    );
    let resilience = Resilience::new(
        &config.retry,
        config.outlier.clone(),
        Duration::from_millis(config.timeouts.stream_first_byte_ms),
        config.errors.expose_upstream_details,
        &metrics,
    )?;
    let dispatcher = Arc::new(Dispatcher::new(
        Arc::clone(&replicas),
        policy,
        proxy,
        metrics,
        admission,
        resilience,
        DispatchSettings {
            retry: config.retry.clone(),
            health: config.health.clone(),
            idle_timeout: Duration::from_millis(config.timeouts.idle_ms),
            keys,
        },
    ));
    let limits = Arc::new(LiveLimits::new(config.limits.max_body_bytes));
    let reloader = Arc::new(Reloader {
        current: parking_lot::Mutex::new(config.clone()),
        changes: changes.clone(),
        replicas: Arc::clone(&replicas),
        policy: swap,
        index: parking_lot::Mutex::new(reload_index),
        limits: Arc::clone(&limits),
        auth: auth.clone(),
        metrics: reload_metrics,
        logging: parking_lot::Mutex::new(None),
    });
    reloader.set_hash(&config);
    let admin = config.admin.token.as_deref().map(|token| AdminState {
        token: token.into(),
        replicas: Arc::clone(&replicas),
        changes: changes.clone(),
        policy: admin_policy,
    });
    let shutting_down = Arc::new(AtomicBool::new(false));
    let app = api::app(AppState {
        dispatcher,
        limits,
        auth,
        admin,
        shutting_down: Arc::clone(&shutting_down),
        kv_events: precise,
    });
    let (stop, stop_rx) = oneshot::channel::<()>();
    let builder = connection_builder(&config);
    let serve = tokio::spawn(serve(listener, app, builder, stop_rx));
    tracing::info!(%addr, policy = %config.policy.name.as_str(), replicas = config.replicas.len(), "router listening");
    Ok(RouterServer {
        addr,
        stop,
        serve,
        changes,
        replicas,
        drain: Duration::from_millis(config.timeouts.shutdown_drain_ms),
        unready: Duration::from_millis(config.timeouts.shutdown_unready_ms),
        shutting_down,
        reloader,
        watch: Duration::from_millis(config.reload.watch_ms),
        _membership: membership,
        _discovery: discovery,
        _scraper: scraper,
        _kv_events: kv_events,
    })
}

/// HTTP/1 and HTTP/2 (prior knowledge) connection settings: a deadline for the request head
/// (slowloris) and a cap on its size (431 beyond).
fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = config.limits.max_header_bytes;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.timeouts.header_read_ms))
        .max_buf_size(header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts connections until `stop`, then lets open ones finish their requests.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    mut stop: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

impl RouterServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sender for membership changes (admin API, discovery, tests).
    pub fn changes(&self) -> mpsc::Sender<ReplicaChange> {
        self.changes.clone()
    }

    /// Reloads the config from `path` (with `overrides`) when asked and when the file changes
    /// (every `reload.watch_ms`); drop the handle to stop watching.
    pub fn watch_config(
        &self,
        path: impl Into<std::path::PathBuf>,
        overrides: crate::config::ConfigOverrides,
    ) -> ReloadHandle {
        ReloadHandle::new(
            Arc::clone(&self.reloader),
            path.into(),
            overrides,
            self.watch,
        )
    }

    /// The live replica set.
    pub fn replicas(&self) -> &Arc<ReplicaSet> {
        &self.replicas
    }

    /// Turns `/readiness` to 503, keeps serving for `timeouts.shutdown_unready_ms`, then stops
    /// accepting and waits up to the drain timeout for in-flight requests, then stops.
    pub async fn shutdown(self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        if !self.unready.is_zero() {
            tracing::info!(
                unready_ms = self.unready.as_millis() as u64,
                "readiness is 503; still serving"
            );
            tokio::time::sleep(self.unready).await;
        }
        let _ = self.stop.send(());
        let mut serve = self.serve;
        if tokio::time::timeout(self.drain, &mut serve).await.is_err() {
            tracing::warn!(
                drain_ms = self.drain.as_millis() as u64,
                "drain timed out; aborting"
            );
            serve.abort();
        }
    }

    /// Resolves when the server task ends (it only ends after shutdown or a fatal error).
    pub async fn wait(self) {
        let _ = self.serve.await;
    }
}
