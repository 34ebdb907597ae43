//! DNSSEC: online signing of a zone's answers, without slowing the query path.
//!
//! ```text
//! zone file [dnssec] --keys::load_zone_key--> ZoneKey (PKCS#8 PEM, hickory/aws-lc-rs)
//!        |
//! config::build (build/dnssec.rs) --> DNSKEY/CDS/CDNSKEY at the apex; every static RRset
//!        |                            and every node's NSEC signed now (StaticSigs, arc-swapped)
//!        v
//! query with DO --dns::signed--> static RRset: its RRSIGs by index (no hashing, no signing)
//!                                GSLB answer / wildcard / NXDOMAIN NSEC: cache lookup by the
//!                                exact RRset, signed once on a miss
//! server task --ZoneSigner::maintain(clock.now())--> re-signs statics before they expire
//! ```
//!
//! A layer of its own between the leaves and the model: it knows record bytes, keys and
//! time, not zones (the model holds a [`ZoneSigner`] per signed zone; `config::build` fills
//! it). Denial of existence is compact (RFC 9824, [`nsec`]): one NSEC at the query name.
//! Keys, states and rollovers: docs/dnssec.md.

pub mod cache;
pub mod keys;
pub mod nsec;
pub mod sign;
pub mod signer;
pub mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

pub use keys::{KeyAlgorithm, KeyState, Role, ZoneKey};
pub use signer::{Params, Stats, ZoneSigner};

/// What signing needs from outside a model: the time, and counters that outlive reloads.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// Time of signatures.
    pub clock: Clock,
    /// Per-zone counters.
    pub counters: Arc<Counters>,
}

impl Env {
    /// The system clock and fresh counters.
    pub fn system() -> Env {
        Env::default()
    }

    /// `clock` and fresh counters.
    pub fn with_clock(clock: Clock) -> Env {
        Env {
            clock,
            ..Env::default()
        }
    }
}

/// Per-zone signing counters, kept by zone name for the life of the server.
#[derive(Debug, Default)]
pub struct Counters(Mutex<HashMap<String, Arc<Stats>>>);

impl Counters {
    /// The counters of `origin` (made the first time).
    pub fn zone(&self, origin: &str) -> Arc<Stats> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(origin.to_string()).or_default().clone()
    }
}

/// Wall-clock time for signatures, in Unix seconds, with an offset tests can move.
///
/// Signature times are absolute, so they come from the system clock; tests shift it (to make
/// expired signatures, or to drive re-signing) instead of waiting days.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The system clock shifted by `secs` (negative = in the past).
    pub fn offset_by(secs: i64) -> Clock {
        let c = Clock::default();
        c.set_offset(secs);
        c
    }

    /// Moves the clock to the system clock plus `secs`.
    pub fn set_offset(&self, secs: i64) {
        self.offset.store(secs, Relaxed);
    }

    /// Now, Unix seconds.
    #[inline]
    pub fn now(&self) -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as i64;
        t.saturating_add(self.offset.load(Relaxed)).max(0) as u64
    }
}
