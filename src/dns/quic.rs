//! DNS over QUIC (RFC 9250) on quinn: one query per client-initiated bidirectional stream,
//! 2-byte length framing as over TCP, message ID 0, ALPN `doq`.
//!
//! ```text
//! UDP socket --quinn Endpoint--> Incoming --ConnTable (refuse)--> handshake (bounded)
//!   connection task: accept streams (max_streams at once: the stream credit we grant),
//!                    close after idle_timeout or the lifetime with none in flight (QUIC
//!                    idle timeout too), or when evicted while idle
//!     └─ stream task: read to FIN (size bound, read timeout) --> PacketHandler::handle
//!                     --> length + answer, FIN
//!   a stream that is not a DoQ query (bad framing, ID not 0, not DNS, too large) closes the
//!   connection with DOQ_PROTOCOL_ERROR; the other connections go on.
//! ```
//!
//! hickory-server's DoQ listener is not used: in 0.26 it waits for each handshake inside its
//! accept loop (one slow client stalls every new connection for up to 5 s, a fixed value),
//! answers the streams of a connection one after another, closes every connection after 100
//! queries, and takes no transport settings (stream credit, idle timeout) nor connection
//! limits. This is the same quinn it uses.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{ConnectionError, Endpoint, EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use tokio::time::{Instant, timeout};

use super::conn::{self, EncryptedLimits};
use super::handler::{PacketHandler, Peer, Transport};
use super::tcp::admit;
use crate::abuse::{CloseReason, ConnTable, Listener, Ticket};
use crate::shutdown::Shutdown;

/// DoQ error codes (RFC 9250 section 8.4).
const DOQ_NO_ERROR: u32 = 0x0;
const DOQ_PROTOCOL_ERROR: u32 = 0x2;

/// A quinn endpoint serving DoQ on `socket` with `tls` (ALPN `doq`, TLS 1.3).
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    tls: Arc<rustls::ServerConfig>,
    lim: &EncryptedLimits,
) -> io::Result<Endpoint> {
    let crypto = QuicServerConfig::try_from(tls).map_err(io::Error::other)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(lim.max_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        // Twice the query idle time: the connection task's own close (DOQ_NO_ERROR, which
        // the client sees at once) comes first; QUIC's silent timeout is for dead peers.
        .max_idle_timeout(Some(
            IdleTimeout::try_from(lim.idle_timeout * 2).map_err(io::Error::other)?,
        ));
    server.transport_config(Arc::new(transport));
    Endpoint::new(
        EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// DNS over QUIC on `endpoint` until `stop`; then closes every connection (DOQ_NO_ERROR)
/// and waits (bounded by the caller) for them to go.
pub(crate) async fn serve_doq<H: PacketHandler>(
    endpoint: Endpoint,
    h: Arc<H>,
    table: Arc<ConnTable>,
    lim: EncryptedLimits,
    stop: Shutdown,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let incoming = tokio::select! {
            _ = stop.stopped() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let client = incoming.remote_address().ip();
        let Some(ticket) = admit(&table, &*h, Listener::DnsQuic, client) else {
            incoming.refuse();
            continue;
        };
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(_) => {
                h.conn_closed(Listener::DnsQuic, CloseReason::HandshakeFailed, client);
                continue;
            }
        };
        let (h, stop) = (h.clone(), stop.clone());
        tasks.spawn(async move {
            let closed = |r| h.conn_closed(Listener::DnsQuic, r, client);
            let connection = tokio::select! {
                r = timeout(lim.handshake_timeout, connecting) => match r {
                    Ok(Ok(c)) => c,
                    Ok(Err(_)) => return closed(CloseReason::HandshakeFailed),
                    Err(_) => return closed(CloseReason::HandshakeTimeout),
                },
                () = ticket.evicted() => return,
                _ = stop.stopped() => return,
            };
            h.conn_opened(Listener::DnsQuic, false);
            let peer = Peer::new(client, Transport::Quic);
            if let Some(r) = serve_connection(&connection, peer, &h, &ticket, &lim, &stop).await {
                closed(r);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    endpoint.close(VarInt::from_u32(DOQ_NO_ERROR), b"shutting down");
    while tasks.join_next().await.is_some() {}
    endpoint.wait_idle().await;
}

/// One QUIC connection: each stream in its own task, until the peer closes, `stop`, an
/// eviction, the idle timeout or the lifetime with no stream in flight, or a stream that is not
/// a DoQ query. Returns the limit or error that ended it, if one did.
async fn serve_connection<H: PacketHandler>(
    c: &quinn::Connection,
    peer: Peer,
    h: &Arc<H>,
    ticket: &Ticket,
    lim: &EncryptedLimits,
    stop: &Shutdown,
) -> Option<CloseReason> {
    let mut streams = tokio::task::JoinSet::new();
    let end_of_life = Instant::now() + lim.lifetime;
    let mut idle_at = Instant::now() + lim.idle_timeout;
    let close = |code: u32, why: &[u8]| c.close(VarInt::from_u32(code), why);
    loop {
        let (wake, why) = if end_of_life <= idle_at {
            (end_of_life, CloseReason::Lifetime)
        } else {
            (idle_at, CloseReason::Idle)
        };
        tokio::select! {
            _ = stop.stopped() => {
                close(DOQ_NO_ERROR, b"shutting down");
                return None;
            }
            () = ticket.evicted(), if streams.is_empty() => {
                close(DOQ_NO_ERROR, b"evicted");
                return None;
            }
            r = c.accept_bi() => match r {
                Ok((send, recv)) => {
                    while let Some(r) = streams.try_join_next() {
                        if let Ok(Err(e)) = r {
                            close(DOQ_PROTOCOL_ERROR, b"not a DoQ query");
                            return Some(e);
                        }
                    }
                    ticket.busy();
                    streams.spawn(query(send, recv, peer, h.clone(), *lim));
                    if streams.len() == lim.max_streams as usize {
                        h.request_limited(Listener::DnsQuic, CloseReason::Streams, peer.addr);
                    }
                }
                Err(e) => {
                    // A stream may have ended the connection's use (a query too large, not
                    // DoQ) just before the peer went away: that reason, not the peer's
                    // close, is what ended it. The streams end at once with the connection.
                    while let Some(r) = streams.join_next().await {
                        if let Ok(Err(why)) = r {
                            return Some(why);
                        }
                    }
                    return matches!(e, ConnectionError::TimedOut).then_some(CloseReason::Idle);
                }
            },
            Some(r) = streams.join_next(), if !streams.is_empty() => {
                if let Ok(Err(e)) = r {
                    close(DOQ_PROTOCOL_ERROR, b"not a DoQ query");
                    return Some(e);
                }
                if streams.is_empty() {
                    ticket.idle();
                    idle_at = Instant::now() + lim.idle_timeout;
                }
            }
            _ = tokio::time::sleep_until(wake), if streams.is_empty() => {
                close(DOQ_NO_ERROR, b"idle");
                return Some(why);
            }
        }
    }
}

/// One stream: the query up to FIN, the answer, FIN. `Err` = a connection error (RFC 9250
/// section 4.3.3: a malformed or non-zero-ID query is a DOQ_PROTOCOL_ERROR).
async fn query<H: PacketHandler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    peer: Peer,
    h: Arc<H>,
    lim: EncryptedLimits,
) -> Result<(), CloseReason> {
    let data = match timeout(lim.read_timeout, recv.read_to_end(lim.max_request_size + 2)).await {
        Ok(Ok(d)) => d,
        Ok(Err(quinn::ReadToEndError::TooLong)) => return Err(CloseReason::TooLarge),
        // Reset by the client, or the connection went away: nothing to answer.
        Ok(Err(_)) => return Ok(()),
        Err(_) => {
            // A dangling stream (no FIN within the read timeout): give the client's credit
            // back; the connection stays.
            let _ = send.reset(VarInt::from_u32(DOQ_PROTOCOL_ERROR));
            let _ = recv.stop(VarInt::from_u32(DOQ_PROTOCOL_ERROR));
            h.request_limited(Listener::DnsQuic, CloseReason::ReadTimeout, peer.addr);
            return Ok(());
        }
    };
    let msg = match data.split_first_chunk::<2>() {
        Some((len, msg)) if usize::from(u16::from_be_bytes(*len)) == msg.len() => msg,
        _ => return Err(CloseReason::Malformed),
    };
    if msg.get(..2) != Some(&[0, 0]) {
        return Err(CloseReason::Malformed);
    }
    let answer = conn::answer(&*h, msg, &peer, true).ok_or(CloseReason::Malformed)?;
    if send.write_all(&answer).await.is_ok() {
        let _ = send.finish();
    }
    Ok(())
}

/// A UDP socket for a DoQ endpoint on `addr` (IPv6 only for IPv6 addresses).
pub(crate) fn socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}
