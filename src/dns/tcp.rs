//! DNS over TCP (RFC 7766): length-prefixed messages, several queries per connection, a bound
//! on connections and an idle timeout. The connection loop is generic over the stream, so a
//! stream transport that only adds a layer (TLS) reuses it as it is.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::handler::{PacketHandler, Peer};
use super::wire::Query;
use crate::shutdown::Shutdown;

/// A non-blocking TCP listener on `addr` (IPv6 only for IPv6 addresses).
pub(crate) fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Accepts connections until `stop`, each served by its own task; at the connection limit a
/// new connection is closed at once. Returns once every connection has finished the query it
/// was on (the caller bounds how long it waits).
pub(crate) async fn accept_loop<H: PacketHandler>(
    listener: TcpListener,
    h: Arc<H>,
    conns: Arc<Semaphore>,
    idle: Duration,
    stop: Shutdown,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.stopped() => break,
            acc = listener.accept() => {
                let Ok((stream, peer)) = acc else { continue };
                // At the connection limit, close new connections at once rather than queue them.
                let Ok(permit) = conns.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let h = h.clone();
                let stop = stop.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let _ = serve_stream(stream, Peer::tcp(peer.ip()), &*h, idle, &stop).await;
                });
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    // In-flight connections finish the query they are on (serve_stream checks `stop` between
    // queries).
    while tasks.join_next().await.is_some() {}
}

/// Serves length-prefixed DNS messages on one stream until it closes, idles out, or `stop`
/// (between queries; a query whose first byte has arrived is read and answered).
pub(crate) async fn serve_stream<S, H>(
    mut s: S,
    peer: Peer,
    h: &H,
    idle: Duration,
    stop: &Shutdown,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: PacketHandler + ?Sized,
{
    let mut req = vec![0u8; 65535];
    let mut resp = vec![0u8; 65537];
    let mut q = Query::default();
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            r = tokio::time::timeout(idle, s.read_exact(&mut len[..1])) => match r {
                Ok(Ok(_)) => {}
                _ => return Ok(()), // idle timeout or closed
            },
            _ = stop.stopped() => return Ok(()),
        }
        match tokio::time::timeout(idle, s.read_exact(&mut len[1..])).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        match tokio::time::timeout(idle, s.read_exact(&mut req[..n])).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(rlen) = h.handle(&req[..n], &peer, &mut q, &mut resp[2..]) else {
            return Ok(());
        };
        resp[..2].copy_from_slice(&(rlen as u16).to_be_bytes());
        s.write_all(&resp[..rlen + 2]).await?;
    }
}
