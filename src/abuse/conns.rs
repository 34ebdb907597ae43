//! The connection table of a stream listener: a bound per client address and a bound in
//! total, and when the table is full, the connection idle the longest is closed to make room
//! (RFC 7766 section 6.2.3 lets a server close idle connections when it needs the resources)
//! instead of refusing the newcomer. A new connection is refused only when its address already
//! holds its share, or when every connection is busy.
//!
//! The table is locked at accept, at close and for the eviction scan; the connection itself
//! flips between idle and busy with one atomic store, so the per-query cost is nil.
//! A client is its address; for IPv6 its /64, since one IPv6 host usually holds a whole /64
//! and would otherwise multiply its share at will.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::CloseReason;

/// The bounds of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// Most connections at once.
    pub(crate) max_total: usize,
    /// Most connections of one client address (IPv6: one /64) at once.
    pub(crate) max_per_client: usize,
}

/// `idle_since` of a connection that is reading a request or writing a response.
const BUSY: u64 = u64::MAX;

struct Conn {
    slot: usize,
    id: u64,
    client: u128,
    ip: IpAddr,
    /// Milliseconds since the table's base when it last became idle; `BUSY` while busy.
    idle_since: AtomicU64,
    evicted: AtomicBool,
    wake: Notify,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Option<Arc<Conn>>>,
    free: Vec<usize>,
    per_client: HashMap<u128, u32>,
}

impl Inner {
    fn remove(&mut self, c: &Conn) -> bool {
        match self.slots.get(c.slot) {
            Some(Some(x)) if x.id == c.id => {}
            _ => return false,
        }
        self.slots[c.slot] = None;
        self.free.push(c.slot);
        if let Some(n) = self.per_client.get_mut(&c.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&c.client);
            }
        }
        true
    }

    /// The idle connection idle the longest (ties: the lower slot).
    fn oldest_idle(&self) -> Option<Arc<Conn>> {
        self.slots
            .iter()
            .flatten()
            .filter(|c| c.idle_since.load(Relaxed) != BUSY && !c.evicted.load(Relaxed))
            .min_by_key(|c| c.idle_since.load(Relaxed))
            .cloned()
    }
}

/// The open connections of one listener.
pub(crate) struct ConnTable {
    limits: ConnLimits,
    base: Instant,
    inner: Mutex<Inner>,
    open: AtomicUsize,
    next_id: AtomicU64,
}

/// The outcome of [`ConnTable::admit`].
pub(crate) enum Admission {
    /// Serve it; `evicted` = the oldest idle connection was closed to make room.
    Admitted {
        /// Held by the connection's task for as long as it runs.
        ticket: Ticket,
        /// Another connection was evicted for this one.
        evicted: bool,
    },
    /// Close it at once: `PerClient` or `Full`.
    Refused(CloseReason),
}

/// A connection's place in the table; dropping it frees the place.
pub(crate) struct Ticket {
    table: Arc<ConnTable>,
    conn: Arc<Conn>,
}

fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => (u128::from(a) >> 64) | (1 << 127),
    }
}

impl ConnTable {
    /// An empty table with `limits` (each at least 1).
    pub(crate) fn new(limits: ConnLimits) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            limits: ConnLimits {
                max_total: limits.max_total.max(1),
                max_per_client: limits.max_per_client.max(1),
            },
            base: Instant::now(),
            inner: Mutex::new(Inner::default()),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(Instant::now().duration_since(self.base).as_millis()).unwrap_or(BUSY - 1)
    }

    /// The bounds in force.
    pub(crate) fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Admits a new connection from `ip`: refused when the client holds its share; when the
    /// table is full, the connection idle the longest is evicted, and only when none is idle
    /// is the newcomer refused. A new connection starts idle (waiting for its first request).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let client = client_key(ip);
        let mut inner = self.lock();
        let mine = inner.per_client.get(&client).copied().unwrap_or(0);
        if mine as usize >= self.limits.max_per_client {
            return Admission::Refused(CloseReason::PerClient);
        }
        let mut evicted = false;
        if self.open.load(Relaxed) >= self.limits.max_total {
            let Some(victim) = inner.oldest_idle() else {
                return Admission::Refused(CloseReason::Full);
            };
            self.evict_locked(&mut inner, &victim);
            evicted = true;
        }
        let slot = inner.free.pop().unwrap_or_else(|| {
            inner.slots.push(None);
            inner.slots.len() - 1
        });
        let conn = Arc::new(Conn {
            slot,
            id: self.next_id.fetch_add(1, Relaxed),
            client,
            ip,
            idle_since: AtomicU64::new(self.now_ms()),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        inner.slots[slot] = Some(conn.clone());
        *inner.per_client.entry(client).or_insert(0) += 1;
        self.open.fetch_add(1, Relaxed);
        Admission::Admitted {
            ticket: Ticket {
                table: self.clone(),
                conn,
            },
            evicted,
        }
    }

    fn evict_locked(&self, inner: &mut Inner, victim: &Arc<Conn>) {
        victim.evicted.store(true, Relaxed);
        if inner.remove(victim) {
            self.open.fetch_sub(1, Relaxed);
        }
        victim.wake.notify_one();
    }

    /// Closes the connection idle the longest (to free a descriptor); returns its client's
    /// address, `None` when no connection is idle.
    pub(crate) fn evict_oldest_idle(&self) -> Option<IpAddr> {
        let mut inner = self.lock();
        let v = inner.oldest_idle()?;
        self.evict_locked(&mut inner, &v);
        Some(v.ip)
    }
}

impl Ticket {
    /// The connection waits for its next request: it may now be evicted.
    pub(crate) fn idle(&self) {
        self.conn
            .idle_since
            .store(self.table.now_ms().min(BUSY - 1), Relaxed);
    }

    /// The connection is reading a request or writing a response: it is not evicted.
    pub(crate) fn busy(&self) {
        self.conn.idle_since.store(BUSY, Relaxed);
    }

    /// Completes once the connection was chosen for eviction (at once if it already was).
    pub(crate) async fn evicted(&self) {
        if self.conn.evicted.load(Relaxed) {
            return;
        }
        self.conn.wake.notified().await;
    }

    /// It was chosen for eviction.
    #[cfg(test)]
    pub(crate) fn is_evicted(&self) -> bool {
        self.conn.evicted.load(Relaxed)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.table.lock().remove(&self.conn) {
            self.table.open.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn admitted(a: Admission) -> (Ticket, bool) {
        match a {
            Admission::Admitted { ticket, evicted } => (ticket, evicted),
            Admission::Refused(r) => panic!("refused: {r:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn per_client_total_and_oldest_idle() {
        let t = ConnTable::new(ConnLimits {
            max_total: 3,
            max_per_client: 2,
        });
        let (a1, _) = admitted(t.admit(ip("192.0.2.1")));
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let (a2, _) = admitted(t.admit(ip("192.0.2.1")));
        assert!(matches!(
            t.admit(ip("192.0.2.1")),
            Admission::Refused(CloseReason::PerClient)
        ));
        // One IPv6 /64 is one client.
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let (b1, _) = admitted(t.admit(ip("2001:db8::1")));
        assert_eq!(t.open(), 3);
        // Full: a1 (idle the longest) makes room, unless busy.
        a1.busy();
        let (c1, evicted) = admitted(t.admit(ip("198.51.100.1")));
        assert!(evicted && a2.is_evicted() && !a1.is_evicted());
        a2.evicted().await;
        assert_eq!(t.open(), 3);
        drop(a2);
        assert_eq!(t.open(), 3);
        // Every connection busy: refused.
        b1.busy();
        c1.busy();
        assert!(matches!(
            t.admit(ip("2001:db8::2")),
            Admission::Refused(CloseReason::Full)
        ));
        drop(c1);
        assert_eq!(t.open(), 2);
        let (d, evicted) = admitted(t.admit(ip("2001:db8:0:0:ffff::3")));
        assert!(!evicted);
        d.busy();
        assert!(matches!(
            t.admit(ip("2001:db8::4")),
            Admission::Refused(CloseReason::PerClient)
        ));
        b1.idle();
        assert_eq!(t.evict_oldest_idle(), Some(ip("2001:db8::1")));
        assert!(b1.is_evicted());
    }
}
