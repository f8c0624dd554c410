//! The consumer side: a SUB socket that reconnects by itself, and the replay request (DEALER).

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::KvEventsError;
use crate::frames::{self, Message, ReplayReply};
use crate::zmtp::{self, Incoming, SocketType};

/// What a [`Subscriber`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEvent {
    /// A (re)connection is up and subscribed; messages published from now on arrive.
    Connected,
    /// A live message.
    Message(Message),
    /// The connection failed or closed; the subscriber keeps retrying.
    Disconnected(String),
}

/// A SUB socket on one endpoint, reconnecting with backoff until dropped.
#[derive(Debug)]
pub struct Subscriber {
    rx: mpsc::Receiver<SubEvent>,
    task: JoinHandle<()>,
}

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// Messages buffered between the socket and the consumer before reading pauses.
const QUEUE: usize = 4096;

impl Subscriber {
    /// Starts connecting to `endpoint` (`tcp://host:port`) subscribed to topic prefix `topic`.
    pub fn connect(endpoint: &str, topic: &[u8]) -> Result<Self, KvEventsError> {
        let addr = zmtp::tcp_address(endpoint)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let topic = topic.to_vec();
        let task = tokio::spawn(run(addr, topic, tx));
        Ok(Self { rx, task })
    }

    /// The next event; `None` only if the background task ended (never while it runs).
    pub async fn recv(&mut self) -> Option<SubEvent> {
        self.rx.recv().await
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(addr: String, topic: Vec<u8>, tx: mpsc::Sender<SubEvent>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let why = match session(&addr, &topic, &tx).await {
            Ok(()) => "publisher closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        if tx.send(SubEvent::Disconnected(why)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if tx.is_closed() {
            return;
        }
    }
}

/// Connects to `addr` (`host:port`, no delay) and completes the ZMTP handshake as `ours`.
async fn connect(addr: &str, ours: SocketType) -> Result<TcpStream, KvEventsError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| KvEventsError::Io {
            what: "connect to",
            endpoint: addr.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    zmtp::handshake(&mut stream, ours, addr).await?;
    Ok(stream)
}

/// One connection: handshake, subscribe, forward messages until it ends.
async fn session(
    addr: &str,
    topic: &[u8],
    tx: &mpsc::Sender<SubEvent>,
) -> Result<(), KvEventsError> {
    let stream = connect(addr, SocketType::Sub).await?;
    let (r, w) = stream.into_split();
    let mut w = BufWriter::new(w);
    let io = |source| KvEventsError::Io {
        what: "subscribe at",
        endpoint: addr.to_string(),
        source,
    };
    zmtp::write(&mut w, &zmtp::subscribe_message(topic))
        .await
        .map_err(io)?;
    w.flush().await.map_err(io)?;
    if tx.send(SubEvent::Connected).await.is_err() {
        return Ok(());
    }
    let mut r = BufReader::with_capacity(64 << 10, r);
    while let Some(incoming) = zmtp::read(&mut r, addr).await? {
        let Incoming::Message(parts) = incoming else {
            continue;
        };
        match Message::from_frames(parts) {
            Ok(msg) => {
                if tx.send(SubEvent::Message(msg)).await.is_err() {
                    return Ok(());
                }
            }
            Err(e) => tracing::warn!(%addr, error = %e, "skipping a malformed KV event message"),
        }
    }
    Ok(())
}

/// Asks a replay endpoint (ROUTER) for the buffered batches from `start_seq` on, at most
/// `max_batches` of them, within `timeout`. Returns `(seq, payload)` in order; either replay
/// reply layout is understood.
pub async fn replay(
    endpoint: &str,
    start_seq: u64,
    max_batches: usize,
    timeout: Duration,
) -> Result<Vec<(u64, Vec<u8>)>, KvEventsError> {
    let addr = zmtp::tcp_address(endpoint)?;
    let work = async {
        let mut stream = connect(&addr, SocketType::Dealer).await?;
        let io = |source| KvEventsError::Io {
            what: "replay request to",
            endpoint: addr.clone(),
            source,
        };
        zmtp::write(&mut stream, &frames::replay_request(start_seq))
            .await
            .map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut r = BufReader::new(stream);
        let mut out = Vec::new();
        loop {
            let Some(incoming) = zmtp::read(&mut r, &addr).await? else {
                return Err(KvEventsError::Decode(
                    "replay ended without its end marker".into(),
                ));
            };
            let Incoming::Message(parts) = incoming else {
                continue;
            };
            match frames::parse_replay_reply(parts)? {
                ReplayReply::End => return Ok(out),
                ReplayReply::Batch { seq, payload } => {
                    if out.len() < max_batches {
                        out.push((seq, payload));
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| KvEventsError::ReplayTimeout {
            endpoint: endpoint.to_string(),
        })?
}
