//! The runtime model of GSLB names: datacenters, pools, rules and the all-down behaviour.
//!
//! The config loader builds these from the zone files after validation, resolving every name
//! to an integer id, so the query path only indexes arrays:
//!
//! ```text
//! zones/*.toml --parse/validate--> GslbName { rules -> PoolId, pools -> DatacenterId }
//!                                  [Datacenter] indexed by DatacenterId (shared by all names)
//! ```
//!
//! Everything here is immutable once built, except [`LeaderCell`], the one piece of runtime
//! state a pool carries (the current `latency` leader, for hysteresis).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::geo::Code2;

/// Index of a datacenter in the model's datacenter array (and in `Snapshot::dcs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatacenterId(pub u32);

/// Index of a pool in its name's `pools`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub u32);

/// A place that serves traffic, declared once and shared by every name that uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Datacenter {
    pub name: Box<str>,
    /// Answer addresses. Address bit `i` of `DcState::addr_up` is `v4[i]` for `i < v4.len()`,
    /// then `v6[i - v4.len()]`: declaration order, IPv4 first. Addresses past bit 63 have no
    /// per-address state and follow the datacenter (the loader should reject them).
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// Latitude and longitude in degrees, for `nearest`.
    pub coords: Option<(f64, f64)>,
    /// Relative capacity, for `load` (any unit, the same for all datacenters of a pool).
    pub capacity: f64,
    /// Default member weight for `weighted` and `hash`.
    pub weight: u32,
}

/// How a pool picks among its usable datacenters.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyKind {
    /// First usable in pool order.
    Failover,
    /// Smallest great-circle distance from the client, minus the member's bias.
    Nearest,
    /// Lowest measured latency; the current leader stays until another one is faster by more
    /// than `margin_ms`.
    Latency { margin_ms: f64 },
    /// Share by spare capacity; members above `max_load` get only the overflow the others
    /// cannot take (see `policy::rank::load_shares`).
    Load { max_load: f64 },
    /// Random pick proportional to member weight.
    Weighted,
    /// Rotation over the usable members.
    RoundRobin,
    /// Uniform random pick.
    Random,
    /// Rendezvous hash of the client subnet (`/v4_prefix`, `/v6_prefix`, default 24 and 56).
    Hash { v4_prefix: u8, v6_prefix: u8 },
    /// Every usable member (multi-value answer; ignores `answers`).
    All,
}

impl PolicyKind {
    /// `hash` with the default granularity (/24 IPv4, /56 IPv6).
    pub const HASH: PolicyKind = PolicyKind::Hash {
        v4_prefix: 24,
        v6_prefix: 56,
    };

    /// The name used in zone files and in `explain`.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyKind::Failover => "failover",
            PolicyKind::Nearest => "nearest",
            PolicyKind::Latency { .. } => "latency",
            PolicyKind::Load { .. } => "load",
            PolicyKind::Weighted => "weighted",
            PolicyKind::RoundRobin => "round-robin",
            PolicyKind::Random => "random",
            PolicyKind::Hash { .. } => "hash",
            PolicyKind::All => "all",
        }
    }
}

/// A datacenter's membership in one pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub dc: DatacenterId,
    /// Weight for `weighted` and `hash` (the loader defaults it to the datacenter's weight).
    pub weight: u32,
    /// Kilometres subtracted from the distance for `nearest`: positive pulls clients in,
    /// negative pushes them away (like Route 53 geoproximity bias).
    pub bias_km: f64,
}

impl Member {
    /// A member with the datacenter's own weight and no bias.
    pub fn of(dc: DatacenterId, dcs: &[Datacenter]) -> Member {
        let weight = dcs.get(dc.0 as usize).map_or(1, |d| d.weight);
        Member {
            dc,
            weight,
            bias_km: 0.0,
        }
    }
}

/// The address family of a query: A = V4, AAAA = V6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Address length in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// The `latency` leaders of a pool, one per address family, shared by all queries.
///
/// Per family because the usable members may differ (a datacenter without IPv6 is no
/// candidate for AAAA): one shared leader would let AAAA queries reset the A leader and defeat
/// the hysteresis. It lives in the model rather than in the health snapshot because it
/// belongs to a pool, not to a datacenter; a reload starts with no leader, which only costs
/// one fresh comparison.
#[derive(Debug, Default)]
pub struct LeaderCell([AtomicU32; 2]);

impl LeaderCell {
    const NONE: u32 = u32::MAX;

    pub fn new() -> LeaderCell {
        LeaderCell([AtomicU32::new(Self::NONE), AtomicU32::new(Self::NONE)])
    }

    pub fn get(&self, family: Family) -> Option<DatacenterId> {
        // Relaxed: the leader is a hint; a racing query that sees the older one is harmless.
        match self.0[family as usize].load(Ordering::Relaxed) {
            Self::NONE => None,
            id => Some(DatacenterId(id)),
        }
    }

    pub fn set(&self, family: Family, leader: Option<DatacenterId>) {
        self.0[family as usize].store(leader.map_or(Self::NONE, |d| d.0), Ordering::Relaxed);
    }
}

impl Clone for LeaderCell {
    fn clone(&self) -> Self {
        let c = LeaderCell::new();
        for f in [Family::V4, Family::V6] {
            c.set(f, self.get(f));
        }
        c
    }
}

/// An ordered set of datacenters and the policy that picks among the usable ones.
#[derive(Clone, Debug)]
pub struct Pool {
    pub name: Box<str>,
    /// In declaration order (the order `failover` and ties use). At most
    /// `policy::MAX_MEMBERS` are considered.
    pub members: Vec<Member>,
    pub policy: PolicyKind,
    /// Pool tried when none of this pool's members is usable.
    pub fallback: Option<PoolId>,
    /// Runtime state for `latency` hysteresis.
    pub leader: LeaderCell,
}

impl Pool {
    pub fn new(name: &str, members: Vec<Member>, policy: PolicyKind) -> Pool {
        Pool {
            name: name.into(),
            members,
            policy,
            fallback: None,
            leader: LeaderCell::new(),
        }
    }
}

/// One entry of a rule's match list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MatchItem {
    Continent(Code2),
    Country(Code2),
    /// Country and ISO 3166-2 subdivision (without the country part, zero-padded).
    Subdivision(Code2, [u8; 3]),
    /// A CIDR network; `addr` has no bits set past `prefix` (the loader checks).
    Subnet {
        addr: IpAddr,
        prefix: u8,
    },
}

/// Clients matching any item of `matches` use `pool`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Empty = catch-all.
    pub matches: Vec<MatchItem>,
    pub pool: PoolId,
}

/// What a name answers when nothing in the pool chain is usable.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum AllDown {
    /// Answer as if every datacenter were up, with the TTL halved.
    #[default]
    FailOpen,
    /// A last-resort address list.
    Addresses {
        v4: Vec<Ipv4Addr>,
        v6: Vec<Ipv6Addr>,
    },
    NoData,
    ServFail,
}

/// A GSLB name (`gslb.<name>` in a zone file).
#[derive(Clone, Debug)]
pub struct GslbName {
    pub ttl: u32,
    /// First match wins, subnet matches before geo matches. Empty = everyone uses pool 0.
    pub rules: Vec<Rule>,
    pub pools: Vec<Pool>,
    /// How many datacenters an answer carries (default 1).
    pub answers: u8,
    pub all_down: AllDown,
}

impl GslbName {
    /// A name with one pool and no rules, one answer, fail-open.
    pub fn single(ttl: u32, pool: Pool) -> GslbName {
        GslbName {
            ttl,
            rules: Vec::new(),
            pools: vec![pool],
            answers: 1,
            all_down: AllDown::FailOpen,
        }
    }
}
