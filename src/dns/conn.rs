//! What the encrypted listeners (DoT, DoH, DoQ) share: their limits, the connection count in
//! total and per client, and answering one message into a buffer of its own.
//!
//! ```text
//! accept ──► ConnLimiter::try_acquire(client) ──refused──► conn_event(limit), close/refuse
//!               │ ConnPermit (released on drop)
//!               ▼
//!            handshake (bounded) ──► serve: queries until idle, stop, a bound or an error
//! ```
//!
//! Every bound is a number an operator can read in `docs/operations.md`, and every time one
//! stops a connection or a request the transport reports a `ConnEvent` that the server counts
//! (`gslbd_transport_limit_total{transport, limit}`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::handler::{ConnEvent, PacketHandler, Peer};
use super::wire::Query;

/// The limits of the encrypted listeners (all of them together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptedLimits {
    /// A TLS or QUIC handshake (and the HTTP/2 preface) must finish within this.
    pub handshake_timeout: Duration,
    /// A connection with no query in flight for this long is closed; so is a query that
    /// takes longer than this to arrive.
    pub idle_timeout: Duration,
    /// Most connections open at once, DoT, DoH and DoQ together; more are refused at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64), all encrypted
    /// transports together.
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
            max_connections: 4096,
            max_connections_per_client: 64,
            max_streams: 100,
            max_request_size: 4096,
        }
    }
}

/// Connections open now, in total and per client. One lock, taken once when a connection is
/// accepted and once when it ends; never per query.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    /// The limits.
    pub(crate) limits: EncryptedLimits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<u128, usize>,
}

/// One connection counted against the limits; released when dropped.
#[derive(Debug)]
pub(crate) struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: u128,
}

/// The per-client key: the address as 128 bits, IPv6 cut to its /64 (one host commonly holds a
/// whole /64, so a per-address limit would not limit it). The low 64 bits keep the families
/// apart: 1 for an IPv6 /64, 2^32 + the address for IPv4.
fn client_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(a) => 1 << 32 | u128::from(u32::from(a)),
        IpAddr::V6(a) => (u128::from(a) & u128::MAX << 64) | 1,
    }
}

impl ConnLimiter {
    /// A limiter with nothing open.
    pub(crate) fn new(limits: EncryptedLimits) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            limits,
            open: Mutex::new(Open::default()),
        })
    }

    /// Counts a new connection from `ip`, or says which limit refuses it.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, ConnEvent> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.limits.max_connections {
            return Err(ConnEvent::MaxConnections);
        }
        let n = open.per_client.entry(key).or_insert(0);
        if *n >= self.limits.max_connections_per_client {
            return Err(ConnEvent::MaxPerClient);
        }
        *n += 1;
        open.total += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            key,
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.key);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_in_total_and_per_client() {
        let l = ConnLimiter::new(EncryptedLimits {
            max_connections: 3,
            max_connections_per_client: 2,
            ..EncryptedLimits::default()
        });
        let a1 = l.try_acquire(ip("192.0.2.1")).expect("first");
        let _a2 = l.try_acquire(ip("192.0.2.1")).expect("second");
        assert_eq!(
            l.try_acquire(ip("192.0.2.1")).err(),
            Some(ConnEvent::MaxPerClient)
        );
        let _b = l.try_acquire(ip("192.0.2.2")).expect("other client");
        assert_eq!(
            l.try_acquire(ip("192.0.2.3")).err(),
            Some(ConnEvent::MaxConnections)
        );
        drop(a1);
        let _a3 = l
            .try_acquire(ip("::ffff:192.0.2.1"))
            .expect("mapped = same client");
        assert_eq!(
            l.try_acquire(ip("192.0.2.1")).err(),
            Some(ConnEvent::MaxConnections)
        );
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_ne!(client_key(ip("0.0.0.1")), client_key(ip("::1")));
        assert_ne!(client_key(ip("::")), client_key(ip("0.0.0.0")));
    }
}
