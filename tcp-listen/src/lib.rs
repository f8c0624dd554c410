//! One way to open a listening TCP socket, shared by the router and `vllm-sim` (which must not
//! depend on each other): address reuse and a deep accept backlog.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Pending-connection queue of a listener: a burst of thousands of clients connecting at once
/// must not overflow it (a dropped SYN costs the client a 1 s retransmit; uvicorn's is 2048).
/// The kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: u32 = 8192;

/// Binds `addr` (port 0 = ephemeral) with `SO_REUSEADDR` and listens with [`BACKLOG`].
/// Must be called inside a tokio runtime.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_an_ephemeral_port_that_accepts() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (server_side, peer) = accepted.unwrap();
        assert_eq!(peer, client.unwrap().local_addr().unwrap());
        drop(server_side);
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error() {
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = first.local_addr().unwrap();
        assert!(listen(taken).is_err());
    }
}
