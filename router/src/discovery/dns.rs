//! DNS discovery: resolve a name (a Kubernetes headless Service) every `interval_ms`; each A
//! record becomes the replica `http://IP:PORT` (named `IP:PORT`). A failed lookup changes
//! nothing; NXDOMAIN or an empty answer means no replicas from this source.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    Reconciler,
    dns_wire::{Answer, encode_query, parse_answer},
};
use crate::{abort::AbortOnDrop, error::Error, replicas::ReplicaChange};

/// The `discovery.dns` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Fully qualified name to resolve, e.g. `vllm.llm.svc.cluster.local`.
    pub name: String,
    /// Port of every replica (DNS A records carry none).
    pub port: u16,
    /// Milliseconds between two lookups.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Milliseconds before a lookup counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Nameserver `ip:port`; default: the first `nameserver` of `/etc/resolv.conf`, port 53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<SocketAddr>,
}

fn default_interval() -> u64 {
    5000
}

fn default_timeout() -> u64 {
    2000
}

impl DnsConfig {
    /// Checks values serde cannot; `(key, reason)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Err(reason) = encode_query(0, &self.name) {
            return Err(("discovery.dns.name".into(), reason.to_string()));
        }
        if self.port == 0 {
            return Err(("discovery.dns.port".into(), "must not be 0".into()));
        }
        for (key, value) in [
            ("discovery.dns.interval_ms", self.interval_ms),
            ("discovery.dns.timeout_ms", self.timeout_ms),
        ] {
            if value == 0 {
                return Err((key.into(), "must be greater than 0".into()));
            }
        }
        Ok(())
    }
}

/// The first nameserver of `/etc/resolv.conf`.
fn system_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse().ok())
            .flatten()
            .map(|ip: std::net::IpAddr| SocketAddr::new(ip, 53))
    })
}

/// One A lookup of `name` at `server`.
pub async fn resolve(server: SocketAddr, name: &str, timeout: Duration) -> Result<Answer, Error> {
    let io = |e: std::io::Error| Error::Discovery(e.to_string());
    let bind = if server.is_ipv4() {
        SocketAddr::from(([0u8; 4], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    let id: u16 = rand::random();
    let query = encode_query(id, name)?;
    let exchange = async {
        socket.send(&query).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            match parse_answer(id, &buf[..n]) {
                Err(Error::DnsOtherQuery) => continue,
                other => return other,
            }
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        Error::Discovery(format!(
            "no answer from {server} within {} ms",
            timeout.as_millis()
        ))
    })?
}

/// The replicas an answer stands for.
fn wanted(addresses: &[Ipv4Addr], port: u16) -> BTreeMap<String, String> {
    addresses
        .iter()
        .map(|ip| {
            let name = format!("{ip}:{port}");
            (name.clone(), format!("http://{name}"))
        })
        .collect()
}

/// Starts the lookup loop, feeding `changes`; stops when dropped.
pub(crate) fn spawn(config: DnsConfig, changes: mpsc::Sender<ReplicaChange>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let Some(server) = config.nameserver.or_else(system_nameserver) else {
            tracing::error!("discovery.dns: no nameserver configured and none in /etc/resolv.conf");
            return;
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut ticker = tokio::time::interval(Duration::from_millis(config.interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconciler = Reconciler::default();
        loop {
            ticker.tick().await;
            let addresses = match resolve(server, &config.name, timeout).await {
                Ok(Answer::Addresses(a)) => a,
                Ok(Answer::NoSuchName) => Vec::new(),
                Err(reason) => {
                    tracing::warn!(name = %config.name, %server, %reason, "DNS discovery lookup failed; replicas unchanged");
                    continue;
                }
            };
            for change in reconciler.update(wanted(&addresses, config.port)) {
                tracing::info!(?change, name = %config.name, "DNS discovery");
                if changes.send(change).await.is_err() {
                    return;
                }
            }
        }
    }))
}
