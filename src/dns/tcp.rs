//! DNS over TCP (RFC 7766): length-prefixed messages, several queries per connection, and the
//! limits that keep one client from holding the service: a share per client address and a
//! total (`abuse::ConnTable`: when full, the connection idle the longest makes room), an idle
//! timeout, a lifetime and a query budget (a client that trickles queries cannot keep a
//! connection forever), a read timeout once a message has begun and a write timeout for a
//! client that does not read. The connection loop is generic over the stream, so a stream
//! transport that only adds a layer (TLS) reuses it as it is.
//!
//! ```text
//! accept --admit--> Ticket --task--> loop { idle: wait for the first byte (idle timeout,
//!   lifetime, eviction, stop) -> busy: read the rest (read timeout) -> handle -> write
//!   (write timeout) -> query budget }
//! accept error EMFILE/ENFILE --> evict the oldest idle, back off 10 ms .. 1 s (no spinning)
//! ```
//!
//! Each connection keeps only a small request buffer; the response is built in a per-thread
//! 64 KiB scratch buffer and copied out, so an idle connection costs about 2 KiB (its task,
//! its `Query`, its table entry).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::handler::{PacketHandler, Peer};
use super::wire::Query;
use crate::abuse::{Admission, CloseReason, ConnTable, Listener, Ticket};
use crate::shutdown::Shutdown;

/// The per-connection limits of DNS over TCP (the table holds the per-client and total ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamLimits {
    /// Closed after this long without a query.
    pub(crate) idle_timeout: Duration,
    /// Closed (between queries) once open this long.
    pub(crate) lifetime: Duration,
    /// Closed after answering this many queries (0 = no budget).
    pub(crate) max_queries: u32,
    /// Once the first byte of a message arrived, the rest must arrive within this.
    pub(crate) read_timeout: Duration,
    /// A response must be written (into the socket buffer) within this.
    pub(crate) write_timeout: Duration,
    /// A message announcing more bytes than this closes the connection (at most 65535, the
    /// framing's own bound; DoT sets a smaller one).
    pub(crate) max_request: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            idle_timeout: Duration::from_secs(10),
            lifetime: Duration::from_secs(120),
            max_queries: 500,
            read_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            max_request: usize::from(u16::MAX),
        }
    }
}

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

/// Accepts connections until `stop`, each admitted through `table` and served by its own
/// task. Returns once every connection has finished the query it was on (the caller bounds
/// how long it waits).
pub(crate) async fn accept_loop<H: PacketHandler>(
    listener: TcpListener,
    h: Arc<H>,
    table: Arc<ConnTable>,
    limits: StreamLimits,
    stop: Shutdown,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.stopped() => break,
            acc = listener.accept() => match acc {
                Ok(x) => x,
                Err(e) if crate::abuse::is_resource_exhaustion(&e) => {
                    // Out of descriptors: the listener stays readable, so retrying at once
                    // only spins. Free one (the connection idle the longest) and wait.
                    backoff = crate::abuse::next_backoff(backoff);
                    h.accept_failed(Listener::DnsTcp, &e, backoff);
                    if let Some(client) = table.evict_oldest_idle() {
                        h.conn_closed(Listener::DnsTcp, CloseReason::FdExhausted, client);
                    }
                    tokio::select! {
                        _ = stop.stopped() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
                // The connection died before we took it (ECONNABORTED and the like).
                Err(_) => continue,
            },
        };
        backoff = Duration::ZERO;
        let Some(ticket) = admit(&table, &*h, Listener::DnsTcp, peer.ip()) else {
            // Closed at once, without reading: RFC 7766 6.2.3 lets a server refuse.
            drop(stream);
            continue;
        };
        h.conn_opened(Listener::DnsTcp, false);
        let _ = stream.set_nodelay(true);
        let h = h.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let (mut stream, peer) = (stream, Peer::tcp(peer.ip()));
            let r = serve_stream(&mut stream, peer, &*h, &ticket, &limits, &stop).await;
            if let Ok(Some(reason)) = r {
                h.conn_closed(Listener::DnsTcp, reason, peer.addr);
            }
            // Closed once counted: a client that sees the close then sees the count.
            drop(stream);
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    // In-flight connections finish the query they are on (serve_stream checks `stop` between
    // queries).
    while tasks.join_next().await.is_some() {}
}

/// Admits a connection of `listener` from `client` through `table`, reporting an eviction
/// or a refusal to `h`; `None` = refused (close it without reading).
pub(crate) fn admit<H: PacketHandler + ?Sized>(
    table: &Arc<ConnTable>,
    h: &H,
    listener: Listener,
    client: std::net::IpAddr,
) -> Option<Ticket> {
    match table.admit(client) {
        Admission::Admitted { ticket, evicted } => {
            if evicted {
                h.conn_closed(listener, CloseReason::Evicted, client);
            }
            Some(ticket)
        }
        Admission::Refused(reason) => {
            h.conn_closed(listener, reason, client);
            None
        }
    }
}

thread_local! {
    /// Where a response is built before it is copied out to its connection (64 KiB + the
    /// length prefix), so that connections need not hold a response buffer each.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 65537].into_boxed_slice());
}

/// Serves length-prefixed DNS messages on one stream until it closes, `stop` (between
/// queries; a query whose first byte has arrived is read and answered) or a limit. Returns the
/// limit that closed it, if one did (an eviction is counted where it was decided).
pub(crate) async fn serve_stream<S, H>(
    mut s: S,
    peer: Peer,
    h: &H,
    ticket: &Ticket,
    limits: &StreamLimits,
    stop: &Shutdown,
) -> io::Result<Option<CloseReason>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: PacketHandler + ?Sized,
{
    let opened = Instant::now();
    let end_of_life = opened + limits.lifetime;
    let mut req: Vec<u8> = Vec::new();
    let mut resp: Vec<u8> = Vec::new();
    let mut q = Query::default();
    let mut served: u32 = 0;
    loop {
        ticket.idle();
        let now = Instant::now();
        if now >= end_of_life {
            return Ok(Some(CloseReason::Lifetime));
        }
        let (wait, reason) = if end_of_life - now < limits.idle_timeout {
            (end_of_life - now, CloseReason::Lifetime)
        } else {
            (limits.idle_timeout, CloseReason::Idle)
        };
        let mut len = [0u8; 2];
        tokio::select! {
            r = tokio::time::timeout(wait, s.read(&mut len[..1])) => match r {
                Ok(Ok(1)) => {}
                Ok(_) => return Ok(None), // closed by the client, or a read error
                Err(_) => return Ok(Some(reason)),
            },
            () = ticket.evicted() => return Ok(None),
            _ = stop.stopped() => return Ok(None),
        }
        ticket.busy();
        let deadline = Instant::now() + limits.read_timeout;
        match tokio::time::timeout_at(deadline, s.read_exact(&mut len[1..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Ok(None),
            Err(_) => return Ok(Some(CloseReason::ReadTimeout)),
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n > limits.max_request {
            return Ok(Some(CloseReason::TooLarge));
        }
        req.resize(n, 0);
        match tokio::time::timeout_at(deadline, s.read_exact(&mut req[..n])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Ok(None),
            Err(_) => return Ok(Some(CloseReason::ReadTimeout)),
        }
        let answered = SCRATCH.with(|b| {
            let mut b = b.borrow_mut();
            let rlen = h.handle(&req[..n], &peer, &mut q, &mut b[2..])?;
            b[..2].copy_from_slice(&(rlen as u16).to_be_bytes());
            resp.clear();
            resp.extend_from_slice(&b[..rlen + 2]);
            Some(())
        });
        if answered.is_none() {
            // Not a DNS query: the stream cannot be trusted further.
            return Ok(Some(CloseReason::Malformed));
        }
        match tokio::time::timeout(limits.write_timeout, s.write_all(&resp)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(Some(CloseReason::WriteTimeout)),
        }
        served += 1;
        if limits.max_queries > 0 && served >= limits.max_queries {
            return Ok(Some(CloseReason::QueryBudget));
        }
        // A response of a big request keeps its buffer; drop buffers grown far past the usual.
        if req.capacity() > 4096 {
            req = Vec::new();
        }
        if resp.capacity() > 4096 {
            resp = Vec::new();
        }
    }
}
