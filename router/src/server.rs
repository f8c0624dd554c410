//! Starting and stopping the router: binds, wires the pieces, serves with graceful drain.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    Config, Error,
    api::{self, AppState},
    config::PolicyName,
    dispatch::Dispatcher,
    health::AbortOnDrop,
    membership::Membership,
    metrics::RouterMetrics,
    policy::{self, PrefixIndex},
    prompt_key::PromptKeys,
    proxy::Proxy,
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
    _membership: AbortOnDrop,
    _scraper: AbortOnDrop,
}

/// Validates `config`, binds `config.listen`, adds the static replicas, starts health checks
/// and serves until [`RouterServer::shutdown`].
pub async fn start(config: Config) -> Result<RouterServer, Error> {
    config.validate("config")?;
    let metrics = Arc::new(RouterMetrics::new()?);
    let prefix_policy = matches!(
        config.policy.name,
        PolicyName::Cost | PolicyName::PrefixAware
    );
    let index = prefix_policy.then(|| Arc::new(PrefixIndex::new(&config.prefix)));
    let keys = if prefix_policy {
        PromptKeys::from_config(&config.prefix)?
    } else {
        PromptKeys::default()
    };
    let policy = policy::build(&config.policy, index.clone())?;
    let replicas = Arc::new(ReplicaSet::new((*metrics).clone()));
    let proxy = Proxy::new(&config.timeouts);
    let scraper = Scraper {
        replicas: Arc::clone(&replicas),
        proxy: proxy.clone(),
        config: config.scrape.clone(),
        health: config.health.clone(),
        index,
        unhealthy_grace: Duration::from_millis(config.prefix.unhealthy_grace_ms),
        metrics: ScrapeMetrics::new(metrics.registry())?,
    }
    .spawn();
    let mut membership = Membership {
        replicas: Arc::clone(&replicas),
        policy: Arc::clone(&policy),
        proxy: proxy.clone(),
        health: config.health.clone(),
        probes: HashMap::new(),
    };
    for spec in &config.replicas {
        membership.apply(ReplicaChange::Upsert(spec.clone()));
    }
    let (changes, changes_rx) = mpsc::channel(64);
    let membership = AbortOnDrop(tokio::spawn(membership.run(changes_rx)));

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let resilience = Resilience::new(&config, &metrics)?;
    let dispatcher = Arc::new(Dispatcher {
        replicas: Arc::clone(&replicas),
        policy,
        proxy,
        metrics,
        retry: config.retry.clone(),
        health: config.health.clone(),
        idle_timeout: Duration::from_millis(config.timeouts.idle_ms),
        keys,
        resilience,
    });
    let app = api::app(AppState {
        dispatcher,
        max_body_bytes: config.limits.max_body_bytes,
    });
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop, stop_rx) = oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        let shutdown = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "server stopped with an error");
        }
    });
    tracing::info!(%addr, policy = %config.policy.name.as_str(), replicas = config.replicas.len(), "router listening");
    Ok(RouterServer {
        addr,
        stop,
        serve,
        changes,
        replicas,
        drain: Duration::from_millis(config.timeouts.shutdown_drain_ms),
        _membership: membership,
        _scraper: scraper,
    })
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

    /// The live replica set.
    pub fn replicas(&self) -> &Arc<ReplicaSet> {
        &self.replicas
    }

    /// Stops accepting, waits up to the drain timeout for in-flight requests, then stops.
    pub async fn shutdown(self) {
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
