//! The seam between transports and the answer code: bytes in, bytes out, and who asked.
//!
//! Every transport (UDP, TCP, and the ones to come) reads a query, calls
//! [`PacketHandler::handle`] with the peer it came from, and sends back the bytes it wrote. The
//! running server implements the handler over its published state; benches and fuzzing can
//! implement it over a fixed model.

use std::net::IpAddr;

use crate::abuse::CloseReason;
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
        Peer {
            addr,
            transport: Transport::Tcp,
        }
    }
}

/// Answers one packet into `out`; `None` = drop. Implemented by the running server state,
/// which also hears what the stream transports' limits did (to count and log it).
pub(crate) trait PacketHandler: Send + Sync + 'static {
    /// Parses `req` into `q` (a reusable scratch value), writes the response into `out` and
    /// returns its length, or `None` to send nothing.
    fn handle(&self, req: &[u8], peer: &Peer, q: &mut Query, out: &mut [u8]) -> Option<usize>;

    /// A TCP connection from `client` was closed or refused by a limit.
    fn conn_closed(&self, _reason: CloseReason, _client: IpAddr) {}

    /// Accepting a TCP connection failed for lack of descriptors or memory; the listener
    /// waits `backoff` before trying again.
    fn accept_failed(&self, _err: &std::io::Error, _backoff: std::time::Duration) {}
}
