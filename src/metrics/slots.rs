//! Labels resolved to slots at load time: query type, response code and transport buckets,
//! and the slots of each zone and GSLB name of a model (built when the model is, swapped with
//! it), so the query path only indexes.

use super::registry::NO_SLOT;
use crate::abuse::{CloseReason, CookieResult, Listener, RrlAction, RrlClass, RrlExempt};
use crate::net::Transport;
use crate::rr;

/// Query types with a label of their own: the `metric` types of `rr::TYPES`, then `other`.
pub(crate) const N_QTYPES: usize = count_metric_types() + 1;

const fn count_metric_types() -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < rr::TYPES.len() {
        if rr::TYPES[i].metric {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Type number -> bucket, for type numbers up to 257 (CAA); larger ones are `other`.
const QTYPE_BUCKET: [u8; 258] = {
    let mut t = [(N_QTYPES - 1) as u8; 258];
    let (mut i, mut n) = (0, 0);
    while i < rr::TYPES.len() {
        let ty = rr::TYPES[i];
        if ty.metric {
            if (ty.code as usize) < 258 {
                t[ty.code as usize] = n as u8;
            }
            n += 1;
        }
        i += 1;
    }
    t
};

/// The query type labels, in bucket order.
pub(crate) fn qtype_labels() -> impl Iterator<Item = &'static str> {
    rr::TYPES
        .iter()
        .filter(|t| t.metric)
        .map(|t| t.name)
        .chain(["other"])
}
/// Response code buckets, in label order.
pub(crate) const RCODES: [&str; 9] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "BADVERS",
    "BADCOOKIE",
    "other",
];
/// Transports, in label order.
pub(super) const N_TRANSPORTS: usize = Transport::ALL.len();
/// Counters per zone: one per (query type, rcode, transport).
pub(super) const QUERY_WIDTH: usize = N_QTYPES * RCODES.len() * N_TRANSPORTS;

/// The label bucket of query type `qtype`.
#[inline]
pub(crate) fn qtype_bucket(qtype: u16) -> usize {
    QTYPE_BUCKET
        .get(usize::from(qtype))
        .map_or(N_QTYPES - 1, |&b| usize::from(b))
}

/// The label bucket of response code `rcode` (extended codes included).
#[inline]
pub(super) fn rcode_bucket(rcode: u16) -> usize {
    match rcode {
        0..=5 => rcode as usize,
        16 => 6,
        23 => 7,
        _ => 8,
    }
}

/// Upper bounds of the query processing time buckets, in microseconds.
pub(crate) const QUERY_BUCKETS_US: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];
/// Upper bounds of the probe duration buckets, in milliseconds.
pub(crate) const PROBE_BUCKETS_MS: [u64; 13] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000,
];
/// ECS scope prefix bucket bounds per family (IPv4, IPv6).
pub(super) const ECS_BUCKETS_V4: [u8; 8] = [0, 8, 12, 16, 20, 24, 28, 32];
pub(super) const ECS_BUCKETS_V6: [u8; 11] = [0, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128];

// Layout of the per-shard "hot" row: query time histogram, then ECS per family.
pub(super) const HOT_DUR: usize = 0; // QUERY_BUCKETS_US.len() + 1 buckets (last = +Inf)
pub(super) const HOT_DUR_SUM_NS: usize = HOT_DUR + QUERY_BUCKETS_US.len() + 1;
pub(super) const HOT_ECS: usize = HOT_DUR_SUM_NS + 1; // per family: 129 exact prefix counts, then the sum
pub(super) const ECS_ROW: usize = 129 + 1;
// Then the abuse defences: RRL limited (class x action), RRL exemptions, cookie results,
// connections closed by a limit (listener x reason), accept failures (per listener).
pub(super) const HOT_RRL: usize = HOT_ECS + 2 * ECS_ROW;
pub(super) const HOT_RRL_EXEMPT: usize = HOT_RRL + RrlClass::ALL.len() * RrlAction::ALL.len();
pub(super) const HOT_COOKIE: usize = HOT_RRL_EXEMPT + RrlExempt::ALL.len();
pub(super) const HOT_CLOSED: usize = HOT_COOKIE + CookieResult::ALL.len();
pub(super) const HOT_ACCEPT: usize = HOT_CLOSED + Listener::ALL.len() * CloseReason::ALL.len();
/// Answers built from stale resolved addresses (RFC 8767).
pub(super) const HOT_STALE: usize = HOT_ACCEPT + Listener::ALL.len();
pub(super) const HOT_WIDTH: usize = HOT_STALE + 1;

/// The metrics slot of one zone (or of "no zone").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneSlot(pub(super) u32);

impl ZoneSlot {
    /// Queries answered outside every zone (REFUSED, FORMERR, ...): label `zone="none"`.
    pub(crate) const NONE: ZoneSlot = ZoneSlot(0);
}

/// Zone index in a `Model` -> metrics slot; build one per model with [`Metrics::zone_slots`](super::Metrics::zone_slots)
/// and swap it together with the model.
#[derive(Clone, Debug, Default)]
pub struct ZoneSlots(pub(super) Box<[u32]>);

impl ZoneSlots {
    /// The slot of the zone with index `zone` in the model these slots were built for;
    /// `None` (no zone) and unknown indices count under `zone="none"`.
    #[inline]
    pub fn get(&self, zone: Option<u32>) -> ZoneSlot {
        match zone.and_then(|z| self.0.get(z as usize)) {
            Some(&s) => ZoneSlot(s),
            None => ZoneSlot::NONE,
        }
    }
}

/// Labels of one pool of a GSLB name, for [`Metrics::gslb_slots`](super::Metrics::gslb_slots).
#[derive(Clone, Debug)]
pub struct PoolLabels<'a> {
    /// The pool's name.
    pub name: &'a str,
    /// `(datacenter id, datacenter name)` of every member.
    pub members: Vec<(u32, &'a str)>,
}

/// `(datacenter id, decision slot)` of the members of one pool.
pub(super) type Members = Box<[(u32, u32)]>;

/// The metrics slots of one GSLB name: its all-down counter and one decision counter per
/// (pool, member datacenter). Build at model load time with [`Metrics::gslb_slots`](super::Metrics::gslb_slots).
#[derive(Clone, Debug, Default)]
pub struct GslbSlots {
    pub(super) all_down: u32,
    /// Indexed by pool id; a few members each, so a linear scan beats hashing.
    pub(super) pools: Box<[Members]>,
}

impl GslbSlots {
    #[inline]
    pub(super) fn decision(&self, pool: u32, dc: u32) -> u32 {
        self.pools
            .get(pool as usize)
            .and_then(|m| m.iter().find(|(d, _)| *d == dc))
            .map_or(NO_SLOT, |(_, s)| *s)
    }
}
