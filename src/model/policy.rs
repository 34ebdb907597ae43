//! The pool policies as the model knows them: each policy's facts in one place, every match
//! exhaustive, so adding a policy means one variant here (the compiler then lists each fact to
//! decide) and one ordering function in `policy::rank` (whose `order` match is exhaustive too).
//!
//! Facts kept here: the name zone files and `explain` use, the zone-file keys and how to read
//! them, whether answering needs the client's location, how the answer depends on the client
//! (which decides the ECS scope: a wrong scope lets resolvers cache one region's answer for
//! everyone), what the explain output ranks by, and whether it answers every usable member.

use crate::walk::{Errors, Table, shown};

/// How a pool picks among its usable datacenters.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyKind {
    /// First usable in pool order.
    Failover,
    /// Smallest great-circle distance from the client, minus the member's bias.
    Nearest,
    /// Lowest measured latency; the current leader stays until another one is faster by more
    /// than `margin_ms`.
    Latency {
        /// Hysteresis margin in milliseconds (default 10).
        margin_ms: f64,
    },
    /// Share by spare capacity; members above `max_load` get only the overflow the others
    /// cannot take (see `policy::rank::load_shares`).
    Load {
        /// Utilisation above which a member only takes overflow (default 0.8).
        max_load: f64,
    },
    /// Random pick proportional to member weight.
    Weighted,
    /// Rotation over the usable members.
    RoundRobin,
    /// Uniform random pick.
    Random,
    /// Rendezvous hash of the client subnet (`/v4_prefix`, `/v6_prefix`, default 24 and 56).
    Hash {
        /// IPv4 client granularity in bits.
        v4_prefix: u8,
        /// IPv6 client granularity in bits.
        v6_prefix: u8,
    },
    /// Every usable member (multi-value answer; ignores `answers`).
    All,
}

/// How a policy's answer depends on the client, which decides the ECS scope it adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientDependence {
    /// The same answer for every client (scope /0 from the policy).
    None,
    /// Depends on the client's GeoIP location: the location's network prefix.
    Location,
    /// Depends on the client subnet at this granularity (IPv4, IPv6 bits).
    Subnet {
        /// Bits for an IPv4 client.
        v4: u8,
        /// Bits for an IPv6 client.
        v6: u8,
    },
    /// Depends on the client's latency map entries, when a map is loaded.
    LatencyMap,
}

/// Keys a pool may hold whatever its policy.
pub(crate) const POOL_KEYS: &[&str] = &["datacenters", "policy", "fallback"];

impl PolicyKind {
    /// `hash` with the default granularity (/24 IPv4, /56 IPv6).
    pub const HASH: PolicyKind = PolicyKind::Hash {
        v4_prefix: 24,
        v6_prefix: 56,
    };

    /// Every policy name, for messages.
    pub(crate) const NAMES: &'static str =
        "failover, nearest, latency, load, weighted, round-robin, random, hash or all";

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

    /// The pool keys this policy reads besides [`POOL_KEYS`].
    pub(crate) fn keys(&self) -> &'static [&'static str] {
        match self {
            PolicyKind::Latency { .. } => &["margin"],
            PolicyKind::Load { .. } => &["max-load"],
            PolicyKind::Hash { .. } => &["hash-prefix-v4", "hash-prefix-v6"],
            PolicyKind::Failover
            | PolicyKind::Nearest
            | PolicyKind::Weighted
            | PolicyKind::RoundRobin
            | PolicyKind::Random
            | PolicyKind::All => &[],
        }
    }

    /// Reads the policy of the pool table `t` (`policy`, default failover, and the policy's
    /// own keys). A key of another policy is reported as such. `None` after an error in
    /// `policy` itself.
    pub(crate) fn read(t: &mut Table<'_>, errs: &mut Errors) -> Option<PolicyKind> {
        let name = t.str("policy", errs).unwrap_or("failover");
        let margin = t.duration("margin", errs).map(|d| d.as_secs_f64() * 1000.0);
        let max_load = t.float("max-load", 0.0, 1.0, errs);
        let v4 = t.int("hash-prefix-v4", 0, 32, errs).map(|x| x as u8);
        let v6 = t.int("hash-prefix-v6", 0, 128, errs).map(|x| x as u8);
        let kind = match name {
            "failover" => PolicyKind::Failover,
            "nearest" => PolicyKind::Nearest,
            "latency" => PolicyKind::Latency {
                margin_ms: margin.unwrap_or(10.0),
            },
            "load" => PolicyKind::Load {
                max_load: max_load.unwrap_or(0.8),
            },
            "weighted" => PolicyKind::Weighted,
            "round-robin" => PolicyKind::RoundRobin,
            "random" => PolicyKind::Random,
            "hash" => PolicyKind::Hash {
                v4_prefix: v4.unwrap_or(24),
                v6_prefix: v6.unwrap_or(56),
            },
            "all" => PolicyKind::All,
            other => {
                errs.add(
                    &t.key_path("policy"),
                    format!(
                        "{} is not a policy (expected {})",
                        shown(other),
                        PolicyKind::NAMES
                    ),
                );
                return None;
            }
        };
        let given = [
            ("margin", margin.is_some()),
            ("max-load", max_load.is_some()),
            ("hash-prefix-v4", v4.is_some()),
            ("hash-prefix-v6", v6.is_some()),
        ];
        for (key, present) in given {
            if present && !kind.keys().contains(&key) {
                let owner = ALL_WITH_KEYS
                    .iter()
                    .find(|p| p.keys().contains(&key))
                    .map_or("another", |p| p.name());
                errs.add(
                    &t.key_path(key),
                    format!("only applies to the {owner} policy"),
                );
            }
        }
        Some(kind)
    }

    /// Does answering need the client's GeoIP location?
    pub(crate) fn needs_location(&self) -> bool {
        self.client_dependence() == ClientDependence::Location
    }

    /// How the order this policy gives depends on the client (for the ECS scope).
    pub(crate) fn client_dependence(&self) -> ClientDependence {
        match self {
            PolicyKind::Nearest => ClientDependence::Location,
            PolicyKind::Latency { .. } => ClientDependence::LatencyMap,
            PolicyKind::Hash {
                v4_prefix,
                v6_prefix,
            } => ClientDependence::Subnet {
                v4: *v4_prefix,
                v6: *v6_prefix,
            },
            PolicyKind::Failover
            | PolicyKind::Load { .. }
            | PolicyKind::Weighted
            | PolicyKind::RoundRobin
            | PolicyKind::Random
            | PolicyKind::All => ClientDependence::None,
        }
    }

    /// What `explain` shows as each candidate's ranking figure.
    pub(crate) fn rank_metric(&self) -> &'static str {
        match self {
            PolicyKind::Nearest => "distance-km",
            PolicyKind::Latency { .. } => "latency-ms",
            PolicyKind::Load { .. } | PolicyKind::Weighted | PolicyKind::Random => "share",
            PolicyKind::Hash { .. } => "hash-score",
            PolicyKind::Failover | PolicyKind::RoundRobin | PolicyKind::All => "none",
        }
    }

    /// Answers every usable member, whatever the name's `answers`.
    pub(crate) fn answers_all(&self) -> bool {
        match self {
            PolicyKind::All => true,
            PolicyKind::Failover
            | PolicyKind::Nearest
            | PolicyKind::Latency { .. }
            | PolicyKind::Load { .. }
            | PolicyKind::Weighted
            | PolicyKind::RoundRobin
            | PolicyKind::Random
            | PolicyKind::Hash { .. } => false,
        }
    }
}

/// One policy of each kind that has keys of its own, to name the owner of a misplaced key.
const ALL_WITH_KEYS: [PolicyKind; 3] = [
    PolicyKind::Latency { margin_ms: 0.0 },
    PolicyKind::Load { max_load: 0.0 },
    PolicyKind::HASH,
];
