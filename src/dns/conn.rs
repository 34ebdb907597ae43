//! What the encrypted listeners (DoT, DoH, DoQ) share: their limits, and answering one
//! message into a buffer of its own. Their connections are admitted like TCP's, through an
//! `abuse::ConnTable` per listener kind (per-client and total bounds, the connection idle the
//! longest closed when full), and DoT runs TCP's own connection loop (`tcp::serve_stream`).
//!
//! ```text
//! accept ──► tcp::admit(table, client) ──refused──► conn_closed(reason), close/refuse
//!               │ Ticket (idle while no query is in flight: evictable)
//!               ▼
//!            handshake (bounded) ──► conn_opened ──► serve: queries until idle, lifetime,
//!                                                     eviction, stop, a bound or an error
//! ```
//!
//! Every bound is a number an operator can read in `docs/operations.md`, and every time one
//! stops a connection the transport reports it (`gslbd_connections_closed_total{listener,
//! reason}`; a single DoH/DoQ request: `gslbd_requests_limited_total`).

use std::cell::RefCell;
use std::time::Duration;

use super::handler::{PacketHandler, Peer};
use super::wire::Query;
use crate::abuse::ConnLimits;

/// The limits of the encrypted listeners (each of DoT, DoH and DoQ has its own connection
/// table with these bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptedLimits {
    /// A TLS or QUIC handshake (and the HTTP/2 preface) must finish within this.
    pub handshake_timeout: Duration,
    /// A connection with no query in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A connection is closed once open this long, as soon as no query is in flight.
    pub lifetime: Duration,
    /// Once a query has begun (its first byte over DoT, its stream over DoH/DoQ), the rest
    /// must arrive within this (the TCP listener's read timeout).
    pub read_timeout: Duration,
    /// A DoT response must be written within this (the TCP listener's write timeout).
    pub write_timeout: Duration,
    /// Most connections open at once on each of DoT, DoH and DoQ; when full, the connection
    /// idle the longest is closed to make room, and only when none is idle is a new one
    /// refused.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64), on each.
    pub max_connections_per_client: usize,
    /// Most queries in flight at once on one HTTP/2 or QUIC connection (the stream limit
    /// the server announces).
    pub max_streams: u32,
    /// Longest DNS message accepted, in bytes: a longer DoT message closes the connection, a
    /// longer DoH request gets 413, a longer DoQ message closes the connection.
    pub max_request_size: usize,
}

impl Default for EncryptedLimits {
    fn default() -> Self {
        EncryptedLimits {
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            lifetime: Duration::from_secs(3600),
            read_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            max_connections: 4096,
            max_connections_per_client: 64,
            max_streams: 100,
            max_request_size: 4096,
        }
    }
}

impl EncryptedLimits {
    /// The bounds of each listener's connection table.
    pub(crate) fn table(&self) -> ConnLimits {
        ConnLimits {
            max_total: self.max_connections,
            max_per_client: self.max_connections_per_client,
        }
    }
}

thread_local! {
    /// A parse scratch and a response buffer per thread, for transports whose queries arrive
    /// on many streams at once (DoH, DoQ): `handle` never awaits, so one per thread is enough.
    static SCRATCH: RefCell<(Query, Vec<u8>)> = RefCell::new((Query::default(), vec![0; 65537]));
}

/// Answers one DNS message into a new buffer; with `framed`, the answer is preceded by its
/// 2-byte length (DoQ). `None` = not a query to answer.
pub(crate) fn answer<H: PacketHandler + ?Sized>(
    h: &H,
    req: &[u8],
    peer: &Peer,
    framed: bool,
) -> Option<Vec<u8>> {
    SCRATCH.with(|s| {
        let (q, out) = &mut *s.borrow_mut();
        let n = h.handle(req, peer, q, &mut out[2..])?;
        let from = if framed {
            out[..2].copy_from_slice(&(n as u16).to_be_bytes());
            0
        } else {
            2
        };
        Some(out[from..n + 2].to_vec())
    })
}
