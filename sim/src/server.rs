//! Listening, accepting (with the connection-level faults), startup delay and shutdown.

use crate::api::{AppState, CloseConnection, app};
use crate::config::{SimConfig, StartupMode};
use crate::engine::{CostModel, EngineHandle, Scheduler};
use crate::error::SimError;
use crate::faults::Faults;
use crate::kv_publish::{KvControl, KvPublisher};
use crate::metrics::Metrics;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long shutdown waits for in-flight requests before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A running simulated replica; dropping it stops it abruptly, [`SimServer::shutdown`] drains.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    faults: Arc<Faults>,
    shutdown: watch::Sender<bool>,
    serve_task: Option<JoinHandle<()>>,
    engine_task: JoinHandle<()>,
    engine: EngineHandle,
    kv: Option<Arc<KvControl>>,
}

impl SimServer {
    /// The bound address (127.0.0.1 and the real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:8001`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runtime fault knobs of this replica.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// KV-event endpoints and knobs, when `--kv-events-port` is set.
    pub fn kv_events(&self) -> Option<&KvControl> {
        self.kv.as_deref()
    }

    /// Simulates an engine restart for KV-event consumers: the cache is emptied without an
    /// event and the event sequence starts again from 0. False if the engine has stopped.
    pub async fn kv_restart(&self) -> bool {
        self.engine.kv_restart().await
    }

    /// Stops accepting, lets in-flight requests finish (up to 2 s), then stops the engine.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.serve_task.take() {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT * 2, task).await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = &self.serve_task {
            task.abort();
        }
        self.engine_task.abort();
    }
}

/// Binds with address reuse and a deep accept backlog (`tcp_listen::BACKLOG`; uvicorn's is
/// 2048): thousands of clients connecting at once must not lose SYNs.
async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    tcp_listen::listen(addr).map_err(|source| SimError::Bind { addr, source })
}

/// Starts one replica on `127.0.0.1:{config.port}` (port 0 = ephemeral).
pub async fn start(config: SimConfig) -> Result<SimServer, SimError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new(&config)?);
    let faults = Arc::new(Faults::new(&config.faults, config.seed));
    let requested = SocketAddr::new(config.host, config.port);
    let delay = Duration::from_millis(config.faults.startup_delay_ms);
    let listen_late = !delay.is_zero() && config.faults.startup_mode == StartupMode::ListenLate;
    let (listener, addr) = if listen_late {
        // Learn the port now (for port 0), listen for real after the delay.
        let probe = bind(requested).await?;
        let addr = probe.local_addr().map_err(|source| SimError::Bind {
            addr: requested,
            source,
        })?;
        (None, addr)
    } else {
        let l = bind(requested).await?;
        let addr = l.local_addr().map_err(|source| SimError::Bind {
            addr: requested,
            source,
        })?;
        (Some(l), addr)
    };
    if !delay.is_zero() && !listen_late {
        faults.set_ready_at(Instant::now() + delay);
    }
    let kv = KvPublisher::bind(&config.kv_events, config.block_size, config.seed).await?;
    let kv_control = kv.as_ref().map(KvPublisher::control);
    let scheduler = Scheduler::new(&config, metrics.clone()).with_kv_events(kv);
    let (engine, engine_task) = EngineHandle::spawn(scheduler, CostModel::new(&config));
    let state = Arc::new(AppState {
        model: Arc::from(config.served_model()),
        config: Arc::new(config),
        engine: engine.clone(),
        faults: faults.clone(),
        kv: kv_control.clone(),
        metrics,
        next_id: AtomicU64::new(0),
        nonce: u64::from(addr.port()) << 32 | u64::from(std::process::id()),
    });
    let router = app(state);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let loop_faults = faults.clone();
    let serve_task = tokio::spawn(async move {
        let listener = match listener {
            Some(l) => l,
            None => match listen_after(addr, delay, shutdown_rx.clone()).await {
                Some(l) => l,
                None => return,
            },
        };
        accept_loop(listener, router, loop_faults, shutdown_rx).await;
    });
    Ok(SimServer {
        addr,
        faults,
        shutdown,
        serve_task: Some(serve_task),
        engine_task,
        engine,
        kv: kv_control,
    })
}

/// Starts `n` replicas, each with its own engine: on ports `port..port+n` (or ephemeral ports
/// when `config.port` is 0). Replica `i` uses fault seed `seed + i`.
pub async fn start_replicas(config: SimConfig, n: usize) -> Result<Vec<SimServer>, SimError> {
    let mut servers = Vec::with_capacity(n);
    for i in 0..n {
        let port = if config.port == 0 {
            0
        } else {
            u16::try_from(usize::from(config.port) + i).map_err(|_| {
                SimError::Config(format!("port {} + {i} is above 65535", config.port))
            })?
        };
        let mut cfg = SimConfig {
            port,
            seed: config.seed.wrapping_add(i as u64),
            ..config.clone()
        };
        let offset = |p: Option<u16>| match p {
            Some(p) if p != 0 => u16::try_from(usize::from(p) + i)
                .map(Some)
                .map_err(|_| SimError::Config(format!("KV events port {p} + {i} is above 65535"))),
            other => Ok(other),
        };
        cfg.kv_events.kv_events_port = offset(config.kv_events.kv_events_port)?;
        cfg.kv_events.kv_events_replay_port = offset(config.kv_events.kv_events_replay_port)?;
        servers.push(start(cfg).await?);
    }
    Ok(servers)
}

/// Binds `addr` after `delay`, retrying briefly; `None` on shutdown or persistent failure.
async fn listen_after(
    addr: SocketAddr,
    delay: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Option<TcpListener> {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = raised(&mut shutdown) => return None,
    }
    for _ in 0..50 {
        match tcp_listen::listen(addr) {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "late bind failed, retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tracing::error!(%addr, "could not listen after the startup delay");
    None
}

/// The app as a hyper service that drops the connection, unanswered, when a handler asks to
/// (the `close_fraction` fault).
fn closing_service(
    router: Router,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::io::Error,
    Future = impl Future<Output = Result<axum::response::Response, std::io::Error>> + Send,
> + Clone {
    let inner = TowerToHyperService::new(router);
    hyper::service::service_fn(move |request| {
        let call = hyper::service::Service::call(&inner, request);
        async move {
            let response = match call.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<CloseConnection>().is_some() {
                return Err(std::io::Error::other("connection closed (fault injection)"));
            }
            Ok(response)
        }
    })
}

/// Resolves once the flag is true (or its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    faults: Arc<Faults>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let refuse = faults.refuse_watch();
    loop {
        tokio::select! {
            _ = raised(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if *refuse.borrow() {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let service = closing_service(router.clone());
                let mut refuse = refuse.clone();
                let mut stop = shutdown.clone();
                conns.spawn(async move {
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        // Refusing: drop the connection (the socket closes).
                        _ = raised(&mut refuse) => {}
                        _ = raised(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}
