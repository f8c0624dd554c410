//! The engine side: a PUB socket fanning messages out to subscribers (dropping for a
//! subscriber whose queue is full, as ZMQ's high-water mark does) and an optional replay
//! ROUTER socket serving the last `buffer_steps` batches.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::KvEventsError;
use crate::frames::{self, Frames, ReplayVersion};
use crate::zmtp::{self, Incoming, SocketType};

/// Where and how to publish (vLLM's `--kv-events-config` fields).
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// PUB endpoint to bind, e.g. `tcp://*:5557` (port 0 = ephemeral).
    pub endpoint: String,
    /// Replay ROUTER endpoint to bind, if any.
    pub replay_endpoint: Option<String>,
    /// Topic frame of every message.
    pub topic: Vec<u8>,
    /// Batches kept for replay.
    pub buffer_steps: usize,
    /// Messages queued per subscriber before new ones are dropped for it.
    pub hwm: usize,
    /// Replay reply layout.
    pub replay_version: ReplayVersion,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            endpoint: "tcp://127.0.0.1:0".into(),
            replay_endpoint: None,
            topic: Vec::new(),
            buffer_steps: 10_000,
            hwm: 100_000,
            replay_version: ReplayVersion::WithTopic,
        }
    }
}

struct Peer {
    tx: mpsc::Sender<Arc<Frames>>,
    prefixes: Arc<Mutex<Vec<Vec<u8>>>>,
}

struct Shared {
    topic: Vec<u8>,
    hwm: usize,
    buffer_steps: usize,
    version: ReplayVersion,
    peers: Mutex<Vec<Peer>>,
    buffer: Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>,
    /// Connections that have sent at least one subscription.
    subscribed: Arc<AtomicUsize>,
}

/// A bound publisher; dropping it closes its sockets.
pub struct Publisher {
    shared: Arc<Shared>,
    addr: SocketAddr,
    replay_addr: Option<SocketAddr>,
    /// Accept loops; dropping the set aborts them (and their connections).
    _tasks: JoinSet<()>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("addr", &self.addr)
            .field("replay_addr", &self.replay_addr)
            .finish()
    }
}

async fn bind(endpoint: &str) -> Result<(TcpListener, SocketAddr), KvEventsError> {
    let addr = zmtp::tcp_address(endpoint)?;
    let io = |what, source| KvEventsError::Io {
        what,
        endpoint: endpoint.to_string(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(|e| io("bind", e))?;
    let local = listener.local_addr().map_err(|e| io("bind", e))?;
    Ok((listener, local))
}

impl Publisher {
    /// Binds the PUB socket (and the replay socket if configured).
    pub async fn bind(config: PublisherConfig) -> Result<Self, KvEventsError> {
        let shared = Arc::new(Shared {
            topic: config.topic.clone(),
            hwm: config.hwm.max(1),
            buffer_steps: config.buffer_steps,
            version: config.replay_version,
            peers: Mutex::new(Vec::new()),
            subscribed: Arc::new(AtomicUsize::new(0)),
            buffer: Mutex::new(VecDeque::new()),
        });
        let mut tasks = JoinSet::new();
        let (listener, addr) = bind(&config.endpoint).await?;
        tasks.spawn(accept_loop(
            listener,
            shared.clone(),
            "KV events",
            serve_subscriber,
        ));
        let replay_addr = match &config.replay_endpoint {
            Some(ep) => {
                let (listener, addr) = bind(ep).await?;
                tasks.spawn(accept_loop(
                    listener,
                    shared.clone(),
                    "KV events replay",
                    serve_replay,
                ));
                Some(addr)
            }
            None => None,
        };
        Ok(Self {
            shared,
            addr,
            replay_addr,
            _tasks: tasks,
        })
    }

    /// The PUB socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The replay socket's bound address, if any.
    pub fn replay_addr(&self) -> Option<SocketAddr> {
        self.replay_addr
    }

    /// Live count of connected subscribers that have subscribed (messages published from
    /// then on reach them): ZMQ drops what is published before a subscription arrives.
    pub fn subscribed(&self) -> Arc<AtomicUsize> {
        self.shared.subscribed.clone()
    }

    /// Buffers batch `seq` for replay and, when `deliver`, sends it to every subscriber whose
    /// subscription matches the topic (`deliver = false` simulates a message lost on the wire).
    pub fn publish(&self, seq: u64, payload: Vec<u8>, deliver: bool) {
        let payload = Arc::new(payload);
        if self.shared.buffer_steps > 0 {
            let mut buf = self.shared.buffer.lock();
            if buf.len() >= self.shared.buffer_steps {
                buf.pop_front();
            }
            buf.push_back((seq, payload.clone()));
        }
        if !deliver {
            return;
        }
        let frames = Arc::new(vec![
            self.shared.topic.clone(),
            seq.to_be_bytes().to_vec(),
            payload.to_vec(),
        ]);
        let mut peers = self.shared.peers.lock();
        peers.retain(|p| !p.tx.is_closed());
        for p in peers.iter() {
            let wanted = p
                .prefixes
                .lock()
                .iter()
                .any(|pre| self.shared.topic.starts_with(pre));
            if wanted {
                // Full queue: dropped for this subscriber, like ZMQ past its high-water mark.
                let _ = p.tx.try_send(frames.clone());
            }
        }
    }

    /// Forgets the replay buffer (an engine restart starts with an empty one).
    pub fn clear_buffer(&self) {
        self.shared.buffer.lock().clear();
    }
}

/// Accepts connections on `listener` for as long as the task lives, each served by `serve` as
/// a task of its own (ended with this one); `what` names the socket in logs.
async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, what: &str, serve: F)
where
    F: Fn(TcpStream, SocketAddr, Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => { conns.spawn(serve(stream, peer, shared.clone())); }
                Err(e) => {
                    tracing::warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
        }
    }
}

async fn serve_subscriber(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let peer = peer.to_string();
    let _ = stream.set_nodelay(true);
    if let Err(e) = zmtp::handshake(&mut stream, SocketType::Pub, &peer).await {
        tracing::debug!(%peer, error = %e, "KV events handshake failed");
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Arc<Frames>>(shared.hwm);
    let prefixes = Arc::new(Mutex::new(Vec::new()));
    shared.peers.lock().push(Peer {
        tx,
        prefixes: prefixes.clone(),
    });
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::with_capacity(64 << 10, w);
    let counted = Counted {
        counter: shared.subscribed.clone(),
        on: std::cell::Cell::new(false),
    };
    loop {
        tokio::select! {
            incoming = zmtp::read(&mut r, &peer) => match incoming {
                Ok(Some(Incoming::Subscribe(p))) => {
                    prefixes.lock().push(p);
                    counted.set();
                }
                Ok(Some(Incoming::Cancel(p))) => prefixes.lock().retain(|x| *x != p),
                Ok(Some(Incoming::Message(m))) => match zmtp::as_subscription(&m) {
                    Some(Incoming::Subscribe(p)) => {
                        prefixes.lock().push(p);
                        counted.set();
                    }
                    Some(Incoming::Cancel(p)) => prefixes.lock().retain(|x| *x != p),
                    _ => {}
                },
                Ok(None) | Err(_) => return,
            },
            next = rx.recv() => {
                let Some(frames) = next else { return };
                if zmtp::write(&mut w, &frames).await.is_err() { return; }
                // Write what else is queued before flushing once.
                while let Ok(more) = rx.try_recv() {
                    if zmtp::write(&mut w, &more).await.is_err() { return; }
                }
                if w.flush().await.is_err() { return; }
            }
        }
    }
}

/// Counts a connection in `subscribed` from its first subscription until it ends.
struct Counted {
    counter: Arc<AtomicUsize>,
    on: std::cell::Cell<bool>,
}

impl Counted {
    fn set(&self) {
        if !self.on.replace(true) {
            self.counter.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.on.get() {
            self.counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

async fn serve_replay(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let peer = peer.to_string();
    if zmtp::handshake(&mut stream, SocketType::Router, &peer)
        .await
        .is_err()
    {
        return;
    }
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    while let Ok(Some(Incoming::Message(req))) = zmtp::read(&mut r, &peer).await {
        let start = match frames::parse_replay_request(&req) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "bad replay request");
                continue;
            }
        };
        let batches: Vec<(u64, Arc<Vec<u8>>)> = shared
            .buffer
            .lock()
            .iter()
            .filter(|(seq, _)| *seq >= start)
            .cloned()
            .collect();
        for (seq, payload) in &batches {
            let reply = frames::replay_reply(shared.version, &shared.topic, Some((*seq, payload)));
            if zmtp::write(&mut w, &reply).await.is_err() {
                return;
            }
        }
        let end = frames::replay_reply(shared.version, &shared.topic, None);
        if zmtp::write(&mut w, &end).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
}
