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

use super::handler::{ConnEvent, PacketHandler, Peer, Transport};
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
    let limits = StreamLimits {
        idle,
        max_request: usize::from(u16::MAX),
    };
    loop {
        tokio::select! {
            _ = stop.stopped() => break,
            acc = listener.accept() => {
                let Ok((stream, peer)) = acc else { continue };
                // At the connection limit, close new connections at once rather than queue them.
                let Ok(permit) = conns.clone().try_acquire_owned() else {
                    h.conn_event(Transport::Tcp, ConnEvent::MaxConnections);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let h = h.clone();
                let stop = stop.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    h.conn_event(Transport::Tcp, ConnEvent::Opened);
                    let end = serve_stream(stream, Peer::tcp(peer.ip()), &*h, limits, &stop).await;
                    if let Some(e) = end.event() {
                        h.conn_event(Transport::Tcp, e);
                    }
                    h.conn_event(Transport::Tcp, ConnEvent::Closed);
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

/// Bounds of one length-framed stream (TCP, DoT).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLimits {
    /// Close the connection when no query starts (or a started one does not complete) for
    /// this long.
    pub(crate) idle: Duration,
    /// Close the connection on a message longer than this (at most 65535, the framing's limit).
    pub(crate) max_request: usize,
}

/// Why [`serve_stream`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The peer closed the connection, or reading or writing failed.
    Closed,
    /// No query (or no complete query) within the idle time.
    Idle,
    /// The server is stopping.
    Stopped,
    /// A message announced more bytes than the request bound.
    TooLarge,
    /// The handler dropped a message (not a DNS query): the stream cannot be trusted further.
    Dropped,
}

impl StreamEnd {
    /// The connection event that ending this way counts as, if any.
    pub(crate) fn event(self) -> Option<ConnEvent> {
        match self {
            StreamEnd::Closed | StreamEnd::Stopped => None,
            StreamEnd::Idle => Some(ConnEvent::IdleTimeout),
            StreamEnd::TooLarge => Some(ConnEvent::RequestTooLarge),
            StreamEnd::Dropped => Some(ConnEvent::Malformed),
        }
    }
}

/// Serves length-prefixed DNS messages on one stream until it closes, idles out, breaks a
/// bound, or `stop` (between queries; a query whose first byte has arrived is read and
/// answered). The stream is shut down (for TLS: `close_notify`) before returning.
pub(crate) async fn serve_stream<S, H>(
    mut s: S,
    peer: Peer,
    h: &H,
    limits: StreamLimits,
    stop: &Shutdown,
) -> StreamEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: PacketHandler + ?Sized,
{
    let end = serve_messages(&mut s, peer, h, limits, stop).await;
    if end != StreamEnd::Closed {
        // Bounded: a peer that does not read must not hold the task.
        let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
    }
    end
}

async fn serve_messages<S, H>(
    s: &mut S,
    peer: Peer,
    h: &H,
    limits: StreamLimits,
    stop: &Shutdown,
) -> StreamEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: PacketHandler + ?Sized,
{
    let idle = limits.idle;
    let mut req = vec![0u8; 65535];
    let mut resp = vec![0u8; 65537];
    let mut q = Query::default();
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            r = tokio::time::timeout(idle, s.read_exact(&mut len[..1])) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return StreamEnd::Closed,
                Err(_) => return StreamEnd::Idle,
            },
            _ = stop.stopped() => return StreamEnd::Stopped,
        }
        match tokio::time::timeout(idle, s.read_exact(&mut len[1..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return StreamEnd::Closed,
            Err(_) => return StreamEnd::Idle,
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n > limits.max_request {
            return StreamEnd::TooLarge;
        }
        match tokio::time::timeout(idle, s.read_exact(&mut req[..n])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return StreamEnd::Closed,
            Err(_) => return StreamEnd::Idle,
        }
        let Some(rlen) = h.handle(&req[..n], &peer, &mut q, &mut resp[2..]) else {
            return StreamEnd::Dropped;
        };
        resp[..2].copy_from_slice(&(rlen as u16).to_be_bytes());
        if s.write_all(&resp[..rlen + 2]).await.is_err() || s.flush().await.is_err() {
            return StreamEnd::Closed;
        }
    }
}
