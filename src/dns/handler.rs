//! The seam between transports and the answer code: bytes in, bytes out, and who asked.
//!
//! Every transport (UDP, TCP, DoT, DoH, DoQ) reads a query, calls [`PacketHandler::handle`]
//! with the peer it came from, and sends back the bytes it wrote: the answer to a query does
//! not depend on the transport beyond its size limit and (for the encrypted ones) EDNS
//! padding. The running server implements the handler over its published state; benches and
//! fuzzing can implement it over a fixed model. Stream transports also report what happens to
//! their connections ([`PacketHandler::conn_closed`] and the like), so the server counts them without this
//! layer knowing metrics.

use std::net::IpAddr;

use crate::abuse::{CloseReason, Listener};
pub(crate) use crate::net::Transport;

use super::wire::Query;

/// Where a query came from and how, as the answer needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The source address (the resolver's, for recursive traffic).
    pub(crate) addr: IpAddr,
    /// The transport it arrived over (decides the size limit).
    pub transport: Transport,
}

impl Peer {
    /// A peer over UDP.
    pub fn udp(addr: IpAddr) -> Peer {
        Peer {
            addr,
            transport: Transport::Udp,
        }
    }

    /// A peer over TCP.
    pub fn tcp(addr: IpAddr) -> Peer {
        Peer::new(addr, Transport::Tcp)
    }

    /// A peer over any transport.
    pub fn new(addr: IpAddr, transport: Transport) -> Peer {
        Peer { addr, transport }
    }
}

/// Answers one packet into `out`; `None` = drop. Implemented by the running server state,
/// which also hears what the stream transports' limits did (to count and log it).
pub(crate) trait PacketHandler: Send + Sync + 'static {
    /// Parses `req` into `q` (a reusable scratch value), writes the response into `out` and
    /// returns its length, or `None` to send nothing.
    fn handle(&self, req: &[u8], peer: &Peer, q: &mut Query, out: &mut [u8]) -> Option<usize>;

    /// A stream connection of `listener` from `client` was closed or refused by a limit.
    fn conn_closed(&self, _listener: Listener, _reason: CloseReason, _client: IpAddr) {}

    /// A stream connection of `listener` is established (after the TLS or QUIC handshake for
    /// the encrypted ones; `resumed`: the TLS handshake resumed an earlier session). Never
    /// called per query.
    fn conn_opened(&self, _listener: Listener, _resumed: bool) {}

    /// A request on a DoH or DoQ connection from `client` was stopped by `reason` without
    /// closing the connection (or the connection reached its stream limit).
    fn request_limited(&self, _listener: Listener, _reason: CloseReason, _client: IpAddr) {}

    /// Accepting a connection on `listener` failed for lack of descriptors or memory; the
    /// listener waits `backoff` before trying again.
    fn accept_failed(
        &self,
        _listener: Listener,
        _err: &std::io::Error,
        _backoff: std::time::Duration,
    ) {
    }
}
