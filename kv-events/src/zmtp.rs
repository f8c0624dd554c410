//! Just enough ZMTP 3.0 (the ZeroMQ wire protocol, NULL security, TCP) for the four socket
//! roles KV events need: PUB and SUB, DEALER and ROUTER for replay.
//!
//! Why not a ZMQ crate: libzmq bindings need a C++ build; the pure-Rust `zeromq` crate only
//! reconnects SUB sockets from 0.7, which needs a newer compiler than this workspace's MSRV and
//! brings ten more dependencies. Each role here is one TCP stream handled one simple way, and a
//! reconnect loop we control is what the subscriber needs anyway (to notice restarts).
//!
//! Greeting: `ff 00*8 7f`, version 3.0, mechanism `NULL`, as-server 0, 31 zero bytes. Then each
//! side sends a `READY` command with its `Socket-Type`. Frames: a flags byte (`0x01` more,
//! `0x02` long size, `0x04` command), the size (1 byte, or 8 bytes big-endian), the body.
//! Subscriptions: a message `0x01 + prefix` (3.0) or a `SUBSCRIBE` command (3.1), both read.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::KvEventsError;
use crate::frames::Frames;

/// Frames larger than this are refused (a batch is a few KB; this guards allocation).
pub const MAX_FRAME: u64 = 256 << 20;
/// Parts in one message above which it is refused.
const MAX_PARTS: usize = 64;

/// A ZMQ socket role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
    /// Publisher.
    Pub,
    /// Subscriber.
    Sub,
    /// Asynchronous requester.
    Dealer,
    /// Addressed replier.
    Router,
}

impl SocketType {
    fn name(self) -> &'static str {
        match self {
            SocketType::Pub => "PUB",
            SocketType::Sub => "SUB",
            SocketType::Dealer => "DEALER",
            SocketType::Router => "ROUTER",
        }
    }
}

/// What a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message of one or more frames.
    Message(Frames),
    /// A subscription to a topic prefix (to a PUB).
    Subscribe(Vec<u8>),
    /// A cancelled subscription.
    Cancel(Vec<u8>),
}

fn protocol(peer: &str, reason: impl Into<String>) -> KvEventsError {
    KvEventsError::Protocol {
        peer: peer.to_string(),
        reason: reason.into(),
    }
}

fn io(what: &'static str, peer: &str, source: std::io::Error) -> KvEventsError {
    KvEventsError::Io {
        what,
        endpoint: peer.to_string(),
        source,
    }
}

/// `tcp://host:port` to `host:port`; a bind endpoint's `*` becomes `0.0.0.0`.
pub fn tcp_address(endpoint: &str) -> Result<String, KvEventsError> {
    let rest = endpoint
        .strip_prefix("tcp://")
        .ok_or_else(|| KvEventsError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: "only tcp:// endpoints are supported",
        })?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| KvEventsError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: "missing :port",
        })?;
    if port.parse::<u16>().is_err() {
        return Err(KvEventsError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: "port is not a number in 0..=65535",
        });
    }
    let host = if host == "*" { "0.0.0.0" } else { host };
    Ok(format!("{host}:{port}"))
}

fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

fn ready(ours: SocketType) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    body.push(5);
    body.extend_from_slice(b"READY");
    let mut prop = |name: &str, value: &[u8]| {
        body.push(name.len() as u8);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value);
    };
    prop("Socket-Type", ours.name().as_bytes());
    if matches!(ours, SocketType::Dealer | SocketType::Router) {
        prop("Identity", b"");
    }
    body
}

/// Exchanges greetings and READY commands on a fresh stream; returns the peer's socket type.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    ours: SocketType,
    peer: &str,
) -> Result<String, KvEventsError> {
    stream
        .write_all(&greeting())
        .await
        .map_err(|e| io("greeting to", peer, e))?;
    let mut theirs = [0u8; 64];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(|e| io("greeting from", peer, e))?;
    if theirs[0] != 0xff || theirs[9] != 0x7f {
        return Err(protocol(peer, "not a ZMTP greeting"));
    }
    if theirs[10] < 3 {
        return Err(protocol(peer, format!("ZMTP {}.x is too old", theirs[10])));
    }
    if &theirs[12..16] != b"NULL" || theirs[16..32].iter().any(|&b| b != 0) {
        return Err(protocol(
            peer,
            "only the NULL security mechanism is supported",
        ));
    }
    write_frame(stream, 0x04, &ready(ours))
        .await
        .map_err(|e| io("READY to", peer, e))?;
    stream.flush().await.map_err(|e| io("READY to", peer, e))?;
    let (flags, body) = read_frame(stream, peer)
        .await?
        .ok_or_else(|| protocol(peer, "closed before READY"))?;
    if flags & 0x04 == 0 || body.get(..6) != Some(b"\x05READY".as_slice()) {
        return Err(protocol(peer, "expected a READY command"));
    }
    Ok(socket_type_of(&body[6..]).unwrap_or_default())
}

fn socket_type_of(mut props: &[u8]) -> Option<String> {
    while let Some((&n, rest)) = props.split_first() {
        let name = rest.get(..usize::from(n))?;
        let rest = &rest[usize::from(n)..];
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let value = rest.get(4..4 + len)?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        props = &rest[4 + len..];
    }
    None
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    flags: u8,
    body: &[u8],
) -> std::io::Result<()> {
    if body.len() <= 255 {
        w.write_all(&[flags, body.len() as u8]).await?;
    } else {
        w.write_all(&[flags | 0x02]).await?;
        w.write_all(&(body.len() as u64).to_be_bytes()).await?;
    }
    w.write_all(body).await
}

/// Reads one frame: `None` on a clean end of stream before it.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    peer: &str,
) -> Result<Option<(u8, Vec<u8>)>, KvEventsError> {
    let mut flags = [0u8; 1];
    match r.read(&mut flags).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(io("read from", peer, e)),
    }
    let flags = flags[0];
    let size = if flags & 0x02 != 0 {
        r.read_u64().await.map_err(|e| io("read from", peer, e))?
    } else {
        u64::from(r.read_u8().await.map_err(|e| io("read from", peer, e))?)
    };
    if size > MAX_FRAME {
        return Err(protocol(peer, format!("frame of {size} bytes")));
    }
    let mut body = vec![0u8; size as usize];
    r.read_exact(&mut body)
        .await
        .map_err(|e| io("read from", peer, e))?;
    Ok(Some((flags, body)))
}

/// Reads the next message or subscription; `None` when the peer closed cleanly.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    peer: &str,
) -> Result<Option<Incoming>, KvEventsError> {
    let mut parts = Vec::new();
    loop {
        let Some((flags, body)) = read_frame(r, peer).await? else {
            return if parts.is_empty() {
                Ok(None)
            } else {
                Err(protocol(peer, "closed inside a message"))
            };
        };
        if flags & 0x04 != 0 {
            // A command: subscriptions (3.1) matter, anything else (PING, ...) is ignored.
            let name_len = usize::from(body.first().copied().unwrap_or(0));
            let name = body.get(1..1 + name_len).unwrap_or_default();
            let data = body.get(1 + name_len..).unwrap_or_default().to_vec();
            match name {
                b"SUBSCRIBE" => return Ok(Some(Incoming::Subscribe(data))),
                b"CANCEL" => return Ok(Some(Incoming::Cancel(data))),
                _ => continue,
            }
        }
        parts.push(body);
        if parts.len() > MAX_PARTS {
            return Err(protocol(peer, "message with too many parts"));
        }
        if flags & 0x01 == 0 {
            return Ok(Some(Incoming::Message(parts)));
        }
    }
}

/// Writes one multipart message (not flushed).
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let last = frames.len().saturating_sub(1);
    for (i, f) in frames.iter().enumerate() {
        write_frame(w, if i < last { 0x01 } else { 0x00 }, f).await?;
    }
    Ok(())
}

/// A 3.0-style subscription message: `0x01` then the topic prefix.
pub fn subscribe_message(prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut body = Vec::with_capacity(prefix.len() + 1);
    body.push(1);
    body.extend_from_slice(prefix);
    vec![body]
}

/// Turns a 3.0 subscription message into [`Incoming::Subscribe`] / [`Incoming::Cancel`].
pub fn as_subscription(frames: &[Vec<u8>]) -> Option<Incoming> {
    match frames {
        [one] => match one.split_first() {
            Some((1, prefix)) => Some(Incoming::Subscribe(prefix.to_vec())),
            Some((0, prefix)) => Some(Incoming::Cancel(prefix.to_vec())),
            _ => None,
        },
        _ => None,
    }
}
