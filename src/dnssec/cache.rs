//! The signature cache: signatures made on the query path, keyed by the exact RRset they
//! cover (owner, type, TTL and every RDATA in canonical order), bounded, and read without
//! locks.
//!
//! ```text
//! key bytes --SipHash (random keys)--> slot i, i+1 --ArcSwapOption::load--> entry?
//!    hit:  key equal and not due for refresh -> copy its RRSIG records into the response
//!    miss: sign (one signature per active key) -> store into the older of the two slots
//! ```
//! A slot is an `ArcSwapOption`: readers never block, a writer replaces a whole entry, and an
//! evicted entry lives until the last reader drops it. The hash keys are random per process,
//! so a client cannot aim many names at one slot to evict a popular answer.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arc_swap::{ArcSwapOption, Guard};

/// One cached signature set.
#[derive(Debug)]
pub struct Entry {
    hash: u64,
    key: Box<[u8]>,
    /// RRSIG records, `TYPE CLASS TTL RDLENGTH RDATA` each (owner left to the writer).
    pub wire: Box<[u8]>,
    /// RRSIG records in `wire`.
    pub count: u16,
    /// Signature expiration, Unix seconds.
    pub expires: u64,
    /// Re-sign on use from this time on (Unix seconds).
    pub refresh_at: u64,
}

/// A bounded, lock-free map from RRset bytes to their signatures.
pub struct SigCache {
    slots: Box<[ArcSwapOption<Entry>]>,
    mask: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for SigCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigCache")
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// A cache entry held while its bytes are copied into a response.
pub enum Hit {
    /// Found: a guard, no reference count touched.
    Cached(Guard<Option<Arc<Entry>>>),
    /// Just made (and stored).
    Fresh(Arc<Entry>),
}

impl Hit {
    /// The entry, if the slot held one.
    pub fn entry(&self) -> Option<&Entry> {
        match self {
            Hit::Cached(g) => g.as_deref(),
            Hit::Fresh(e) => Some(e),
        }
    }
}

impl SigCache {
    /// A cache of `capacity` entries (rounded up to a power of two, at least 16).
    pub fn new(capacity: usize) -> SigCache {
        let n = capacity.max(16).next_power_of_two();
        SigCache {
            slots: (0..n).map(|_| ArcSwapOption::empty()).collect(),
            mask: n - 1,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The slot hash of `key` (SipHash with this cache's random keys).
    pub fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        h.finish()
    }

    /// The entry for `key`, if cached and not due for refresh at `now`.
    #[inline]
    pub fn get(&self, hash: u64, key: &[u8], now: u64) -> Option<Hit> {
        for i in 0..2 {
            let slot = &self.slots[(hash as usize).wrapping_add(i) & self.mask];
            let g = slot.load();
            if let Some(e) = g.as_ref()
                && e.hash == hash
                && now < e.refresh_at
                && *e.key == *key
            {
                return Some(Hit::Cached(g));
            }
        }
        None
    }

    /// Stores a new entry (replacing an empty, stale or the older of its two slots).
    pub fn put(
        &self,
        hash: u64,
        key: &[u8],
        wire: Vec<u8>,
        count: u16,
        expires: u64,
        refresh_at: u64,
    ) -> Arc<Entry> {
        let e = Arc::new(Entry {
            hash,
            key: key.into(),
            wire: wire.into(),
            count,
            expires,
            refresh_at,
        });
        let a = &self.slots[hash as usize & self.mask];
        let b = &self.slots[(hash as usize).wrapping_add(1) & self.mask];
        let age = |s: &ArcSwapOption<Entry>| s.load().as_ref().map_or(0, |x| x.refresh_at);
        // The same key (a refresh) goes back where it was; else the slot that ages out first.
        let same = |s: &ArcSwapOption<Entry>| {
            s.load()
                .as_ref()
                .is_some_and(|x| x.hash == hash && *x.key == *key)
        };
        let target = if same(a) {
            a
        } else if same(b) || age(b) < age(a) {
            b
        } else {
            a
        };
        target.store(Some(e.clone()));
        e
    }

    /// Entries held now (a scan: for status and tests, not the query path).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.load().is_some()).count()
    }

    /// No entry held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A counter spread over cache-line-separated stripes, one per thread (by a thread-local
/// index), so the query threads of several cores do not share a line.
#[derive(Default)]
pub struct Striped {
    stripes: [Padded; STRIPES],
}

const STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

thread_local! {
    static STRIPE: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Relaxed) % STRIPES
    };
}

impl Striped {
    #[inline]
    /// Adds `v` on this thread's stripe.
    pub fn add(&self, v: u64) {
        let i = STRIPE.with(|s| *s);
        self.stripes[i].0.fetch_add(v, Relaxed);
    }

    /// The sum over every stripe.
    pub fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

/// Online signatures allowed per second on each stripe (query thread): a fixed one-second
/// window per stripe, packed as (second, count) in one atomic, so a flood of new names cannot
/// take more than its share of a core however fast it comes.
#[derive(Default)]
pub struct RateLimit {
    stripes: [Padded; STRIPES],
}

impl RateLimit {
    /// Takes one of `limit` tokens of second `now` on this thread's stripe; false when spent.
    #[inline]
    pub fn take(&self, now: u64, limit: u32) -> bool {
        let cell = &self.stripes[STRIPE.with(|s| *s)].0;
        let cur = cell.load(Relaxed);
        let (sec, used) = ((cur >> 32) as u32, cur as u32);
        let now = now as u32;
        let used = if sec == now { used } else { 0 };
        if used >= limit {
            return false;
        }
        // Relaxed and racy between threads that share a stripe: the limit is approximate.
        cell.store((u64::from(now) << 32) | u64::from(used + 1), Relaxed);
        true
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit")
    }
}

impl std::fmt::Debug for Striped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_refresh_and_bound() {
        let c = SigCache::new(16);
        let k = b"key-one";
        let h = c.hash(k);
        assert!(c.get(h, k, 100).is_none());
        c.put(h, k, vec![1, 2, 3], 1, 1000, 500);
        let e = c.get(h, k, 100).expect("hit");
        assert_eq!(&*e.entry().unwrap().wire, &[1, 2, 3]);
        drop(e);
        // Due for refresh: a miss, so the caller signs again.
        assert!(c.get(h, k, 500).is_none());
        // Same key again replaces its own slot.
        c.put(h, k, vec![4], 1, 2000, 1500);
        assert_eq!(&*c.get(h, k, 600).unwrap().entry().unwrap().wire, &[4]);
        assert_eq!(c.len(), 1);
        // Many keys never grow the cache past its slots.
        for i in 0..1000u32 {
            let k = i.to_be_bytes();
            c.put(c.hash(&k), &k, vec![], 0, 10, 5);
        }
        assert!(c.len() <= 16);
    }

    #[test]
    fn the_rate_limit_is_per_second() {
        let r = RateLimit::default();
        assert!((0..3).all(|_| r.take(100, 3)));
        assert!(!r.take(100, 3));
        assert!(r.take(101, 3), "a new second, new tokens");
    }

    #[test]
    fn a_colliding_hash_with_another_key_is_a_miss() {
        let c = SigCache::new(16);
        c.put(7, b"a", vec![1], 1, 100, 50);
        assert!(c.get(7, b"b", 0).is_none());
        assert!(c.get(7, b"a", 0).is_some());
    }
}
