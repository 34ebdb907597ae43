//! Hostname targets resolved in the background: the addresses of datacenters that are names
//! (flattened answers, probe targets) and of `ALIAS` records, never looked up on the query
//! path.
//!
//! ```text
//!  model (remote names) --watch<Targets>--> Resolver task (hickory-resolver: system
//!                                            resolvers or --resolver ADDR:PORT)
//!      per name: lookup A + AAAA --> Entry { addresses, TTL, state, serial, error }
//!      schedule: refresh at 80 % of the clamped TTL; on failure retry with backoff, keep the
//!      last good addresses (Fresh until the TTL ends, then Stale), drop them after max-stale
//!                                   |
//!                                   v  every change: Arc<ResolvedNames> (by name)
//!      server::publish (re-keyed to the model's HostnameIds, published with the model and
//!      health: the query path reads `Snapshot::resolutions`) and the probe runtime (a watch:
//!      the addresses a hostname datacenter's check probes)
//! ```
//!
//! Names inside the zones gslbd serves are not resolved here: the config build answers them
//! from the zones themselves (`Entry::local`), so an example that points into its own zones
//! works offline and a reload refreshes them.
//!
//! Timing (see [`ResolverSettings`]): the upstream TTL is clamped to `min_ttl..=max_ttl` for
//! scheduling only; an answer never carries more than what is left of the upstream TTL
//! ([`Entry::answer_ttl`]). Stale answers (RFC 8767) carry [`STALE_TTL`].
//!
//! This module is a leaf beside `probe`: it knows names and addresses, not the model.

mod runtime;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::time::Instant;

pub use runtime::{PublishFn, Resolver, Targets};

/// TTL of answers built from stale addresses (RFC 8767 recommends 30 s).
pub const STALE_TTL: u32 = 30;

/// Most addresses kept per family (a datacenter holds at most 64 in all).
pub const MAX_ADDRESSES_PER_FAMILY: usize = 32;

/// How the resolver is run (`gslbd serve --resolver ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Upstream servers (`--resolver ADDR:PORT`, repeatable); empty = the system's resolvers
    /// (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Shortest time an answer is kept before it is asked again (a TTL of 0 is not asked for
    /// every second).
    pub min_ttl: Duration,
    /// Longest time an answer is kept (a TTL of a day still notices a change within this).
    pub max_ttl: Duration,
    /// How long past its TTL the last good answer is served while the upstream fails.
    pub max_stale: Duration,
    /// Time allowed for one lookup (each of A and AAAA).
    pub timeout: Duration,
    /// False: no background resolution at all (names outside our zones stay pending). For
    /// tests that publish resolutions themselves.
    pub enabled: bool,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            servers: Vec::new(),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(3600),
            max_stale: Duration::from_secs(3600),
            timeout: Duration::from_secs(3),
            enabled: true,
        }
    }
}

/// Where an entry's addresses stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Not resolved yet: the first lookup is under way or has failed.
    Pending,
    /// Resolved and within its TTL.
    Fresh,
    /// The TTL has run out and the upstream fails: the last good addresses are served
    /// (RFC 8767 serve-stale) until `max_stale` has passed.
    Stale,
    /// Stale for longer than `max_stale`: nothing is served.
    Expired,
    /// Answered from the zones gslbd serves (refreshed by every reload).
    Local,
    /// A GSLB name gslbd serves: a CNAME may point there (the answer follows it per query),
    /// nothing is resolved.
    Followed,
}

impl State {
    /// The word `/status` and `explain` show.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Fresh => "fresh",
            State::Stale => "stale",
            State::Expired => "expired",
            State::Local => "local",
            State::Followed => "followed",
        }
    }
}

/// What is known about one name: its addresses and how good they are.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The name asked (lower-cased, fully qualified).
    pub name: Arc<str>,
    /// IPv4 addresses served (empty when none).
    pub v4: Arc<[Ipv4Addr]>,
    /// IPv6 addresses served.
    pub v6: Arc<[Ipv6Addr]>,
    /// Changes whenever the address set changes (never 0 for a resolved name; local entries
    /// keep 0): health state of per-address probes is matched to addresses through it.
    pub serial: u64,
    /// Fresh, stale, ...
    pub state: State,
    /// The TTL the upstream gave (the smaller of A and AAAA; local: the records' TTL).
    pub ttl: u32,
    /// When the upstream TTL runs out (remote entries that resolved).
    pub expires: Option<Instant>,
    /// When the served addresses were last confirmed by the upstream (or loaded, for local).
    pub resolved_at: Option<SystemTime>,
    /// Why the last lookup failed, or what the upstream said when there is no address
    /// (`NXDOMAIN`, `no A or AAAA`).
    pub error: Option<Arc<str>>,
    /// Lookups that gave an answer (positive or negative) since the server started.
    pub lookups_ok: u64,
    /// Lookups that failed (timeout, SERVFAIL, refused...).
    pub lookups_failed: u64,
}

impl Entry {
    /// A name not resolved yet.
    pub fn pending(name: &str) -> Entry {
        Entry {
            name: name.into(),
            v4: Arc::from([]),
            v6: Arc::from([]),
            serial: 0,
            state: State::Pending,
            ttl: 0,
            expires: None,
            resolved_at: None,
            error: None,
            lookups_ok: 0,
            lookups_failed: 0,
        }
    }

    /// Addresses from our own zones, with the smallest TTL of the records that led to them.
    pub fn local(name: &str, v4: &[Ipv4Addr], v6: &[Ipv6Addr], ttl: u32, at: SystemTime) -> Entry {
        Entry {
            v4: v4.into(),
            v6: v6.into(),
            state: State::Local,
            ttl,
            resolved_at: Some(at),
            ..Entry::pending(name)
        }
    }

    /// A GSLB name of ours (a CNAME target only).
    pub fn followed(name: &str) -> Entry {
        Entry {
            state: State::Followed,
            ..Entry::pending(name)
        }
    }

    /// Addresses may be answered from this entry (it may still have none of a family).
    #[inline]
    pub fn usable(&self) -> bool {
        matches!(self.state, State::Fresh | State::Stale | State::Local)
    }

    /// Usable and with at least one address: a name that resolved to nothing (NXDOMAIN, no A
    /// and no AAAA) counts as down, not as "no address of this family".
    #[inline]
    pub fn has_addresses(&self) -> bool {
        self.usable() && !(self.v4.is_empty() && self.v6.is_empty())
    }

    /// Served past its TTL (RFC 8767).
    #[inline]
    pub fn is_stale(&self) -> bool {
        self.state == State::Stale
    }

    /// The addresses in health-bit order: IPv4 first, then IPv6.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.v4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.v6.iter().map(|a| IpAddr::V6(*a)))
    }

    /// The TTL of an answer built from this entry, at most `max`: what is left of the
    /// upstream TTL (rounded down; 0 once it has run out), [`STALE_TTL`] for stale
    /// addresses, the records' TTL for local ones.
    #[inline]
    pub fn answer_ttl(&self, max: u32, now: Instant) -> u32 {
        match self.state {
            State::Local | State::Followed => max.min(self.ttl),
            State::Stale => max.min(STALE_TTL),
            State::Fresh => match self.expires {
                Some(e) => {
                    let left = e.saturating_duration_since(now).as_secs();
                    max.min(u32::try_from(left).unwrap_or(u32::MAX))
                }
                None => max.min(self.ttl),
            },
            State::Pending | State::Expired => 0,
        }
    }

    /// Seconds since the addresses were last confirmed, as of `now`.
    pub fn age_secs(&self, now: SystemTime) -> Option<u64> {
        self.resolved_at
            .map(|t| now.duration_since(t).map_or(0, |d| d.as_secs()))
    }
}

/// The resolver's results by name (lower-cased, fully qualified), as published.
#[derive(Clone, Debug, Default)]
pub struct ResolvedNames {
    /// Increases with every publication.
    pub generation: u64,
    /// Every name asked for.
    pub by_name: FxHashMap<Arc<str>, Arc<Entry>>,
}

impl ResolvedNames {
    /// The entry of `name`, if the resolver has one.
    pub fn get(&self, name: &str) -> Option<&Arc<Entry>> {
        self.by_name.get(name)
    }
}

/// A name as the resolver and the probe plan key it: lower-cased, fully qualified.
pub fn key_of(name: &hickory_proto::rr::Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}
