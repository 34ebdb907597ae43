//! GSLB names: rules, pools and the all-down behaviour, with every reference an integer id.
//!
//! The config loader builds these from the zone files after validation, resolving every name
//! to an id, so the query path only indexes arrays:
//!
//! ```text
//! zones/*.toml --parse/validate--> GslbName { rules -> PoolId, pools -> DatacenterId }
//!                                  [Datacenter] indexed by DatacenterId (shared by all names)
//! ```
//!
//! Everything here is immutable once built, except [`LeaderCell`], the one piece of runtime
//! state a pool carries (the current `latency` leader, for hysteresis).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use hickory_proto::rr::Name;

use super::datacenter::{Datacenter, DatacenterId};
use super::policy::PolicyKind;
use crate::geo::{GeoCode, Location};
use crate::net::{Family, Subnet};

/// Index of a pool in its name's `pools`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub u32);

/// A datacenter's membership in one pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The datacenter.
    pub(crate) dc: DatacenterId,
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

    /// No leader yet for either family.
    pub(crate) fn new() -> LeaderCell {
        LeaderCell([AtomicU32::new(Self::NONE), AtomicU32::new(Self::NONE)])
    }

    /// The current leader for `family`.
    pub fn get(&self, family: Family) -> Option<DatacenterId> {
        // Relaxed: the leader is a hint; a racing query that sees the older one is harmless.
        match self.0[family as usize].load(Ordering::Relaxed) {
            Self::NONE => None,
            id => Some(DatacenterId(id)),
        }
    }

    /// Records the leader. Stores only when it changed: every `latency` query of the pool
    /// calls this, and a store on each would bounce the cache line between cores.
    pub(crate) fn set(&self, family: Family, leader: Option<DatacenterId>) {
        let cell = &self.0[family as usize];
        let v = leader.map_or(Self::NONE, |d| d.0);
        if cell.load(Ordering::Relaxed) != v {
            cell.store(v, Ordering::Relaxed);
        }
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
    /// The pool's name in the zone file.
    pub(crate) name: Box<str>,
    /// In declaration order (the order `failover` and ties use). At most
    /// `limits::MAX_MEMBERS` are considered.
    pub members: Vec<Member>,
    /// How the pool picks among its usable members.
    pub(crate) policy: PolicyKind,
    /// Pool tried when none of this pool's members is usable.
    pub fallback: Option<PoolId>,
    /// Runtime state for `latency` hysteresis.
    pub leader: LeaderCell,
}

impl Pool {
    /// A pool without fallback and without a leader yet.
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
    /// A continent, country or subdivision.
    Geo(GeoCode),
    /// A CIDR network (no bits set past its prefix: the loader checks).
    Subnet(Subnet),
}

impl MatchItem {
    /// Parses a match item as zone files write it: a geo code (`EU`, `DE`, `EU-DE`,
    /// `NA-US-CA`) or a subnet (`192.0.2.0/24`).
    pub(crate) fn parse(s: &str, tables: &crate::geo::CountryTables) -> Result<MatchItem, String> {
        if crate::geo::looks_like_subnet(s) {
            Subnet::parse(s.trim()).map(MatchItem::Subnet)
        } else {
            GeoCode::parse(s, tables).map(MatchItem::Geo)
        }
    }

    /// Does a client at `loc` match this item by location? (Subnets never match here.)
    #[inline]
    pub(crate) fn matches_location(&self, loc: Option<&Location>) -> bool {
        match (self, loc) {
            (MatchItem::Geo(g), Some(loc)) => g.contains(loc),
            (MatchItem::Geo(_), None) | (MatchItem::Subnet(_), _) => false,
        }
    }
}

/// Clients matching any item of `matches` use `pool`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Empty = catch-all.
    pub matches: Vec<MatchItem>,
    /// The pool these clients use.
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
        /// IPv4 addresses answered to `A`.
        v4: Vec<Ipv4Addr>,
        /// IPv6 addresses answered to `AAAA`.
        v6: Vec<Ipv6Addr>,
    },
    /// Answer NODATA.
    NoData,
    /// Answer SERVFAIL.
    ServFail,
}

/// A GSLB name (`gslb.<name>` in a zone file).
#[derive(Clone, Debug)]
pub struct GslbName {
    /// TTL of answers (lowered while health is unsettled, halved when all-down).
    pub ttl: u32,
    /// First match wins, subnet matches before geo matches. Empty = everyone uses pool 0.
    pub rules: Vec<Rule>,
    /// The pools, indexed by `PoolId`.
    pub pools: Vec<Pool>,
    /// How many datacenters an answer carries (default 1).
    pub answers: u8,
    /// What to answer when nothing in the chain is usable.
    pub all_down: AllDown,
    /// Hostname datacenters answer their target's addresses (true), or a CNAME to the
    /// target (false, the default; always true at a zone apex).
    pub flatten: bool,
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
            flatten: false,
        }
    }
}

impl GslbName {
    /// Does answering this name need the client's GeoIP location? (A geo rule, or a policy
    /// that ranks by location.)
    pub(crate) fn needs_location(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.matches.iter().any(|m| matches!(m, MatchItem::Geo(_))))
            || self.pools.iter().any(|p| p.policy.needs_location())
    }
}

/// A GSLB name placed in a zone.
#[derive(Debug)]
pub struct GslbEntry {
    /// The owner name (`www.example.com.`).
    pub(crate) owner: Name,
    /// Index of its zone in `Model::zones`.
    pub(crate) zone: u32,
    /// The decision data.
    pub(crate) def: GslbName,
    /// Look the client up in GeoIP only when a rule or a policy needs it.
    pub(crate) needs_location: bool,
    /// Use EDNS Client Subnet for this name.
    pub(crate) ecs: bool,
    /// May answer a CNAME (hostname datacenters, not flattened): then every query type is
    /// decided (RFC 1034: a CNAME owner holds no other data), not only A and AAAA.
    pub(crate) cname: bool,
    /// Some datacenter of the name is a hostname datacenter (its answers read the published
    /// resolutions and their TTL left).
    pub(crate) has_hostnames: bool,
}
