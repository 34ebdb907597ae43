//! GSLB answers on the query path: the glue between the DNS core and the decision. Who the
//! client is (ECS or source address, GeoIP once), then `policy::select` over the health
//! snapshot published with this query's model, then the records and the metrics.
//!
//! Every record a GSLB decision or an `ALIAS` puts in a response is written here
//! (`GslbContext::answer`, `GslbContext::alias`): addresses (a datacenter's own, or the
//! resolved ones of a flattened hostname datacenter, with the TTL capped by what is left of
//! the target's), or the CNAME to a hostname datacenter's target, which the DNS core then
//! follows like a static CNAME when the target is in our zones. Nothing here waits for a
//! lookup: resolved addresses come from the snapshot (`Snapshot::resolutions`).
//!
//! `explain` builds its client with the same `client_for` and calls the same `select`, with
//! a recording tracer instead of the no-op one, so it cannot disagree with the server.

use std::cell::Cell;
use std::net::IpAddr;

use tokio::time::Instant;

use crate::dns::wire::{ClientSubnet, Query};
use crate::dns::{GslbAnswerer, GslbOutcome, Peer, Writer};
use crate::geo::GeoDb;
use crate::health::Snapshot;
use crate::metrics::{GslbSlots, Metrics};
use crate::mix::{GOLDEN, mix64};
use crate::model::{GslbEntry, HostnameId, Model};
use crate::net::Family;
use crate::policy::{self, AnswerKind, NoTrace, QueryInput, Selection, Source, Tracer};
use crate::rr::{TYPE_A, TYPE_AAAA, TYPE_CNAME};

/// The decision inputs for one GSLB name: the client as the policies see it.
pub(crate) fn client_for(
    entry: &GslbEntry,
    geo: &GeoDb,
    source: IpAddr,
    ecs: Option<&ClientSubnet>,
) -> policy::Client {
    let (addr, source_prefix) = match ecs {
        // Source prefix 0: the resolver asks us not to tailor by subnet (RFC 7871 7.1.2).
        Some(c) if ecs_used(entry, ecs) => (c.addr.to_canonical(), c.source_prefix),
        _ => {
            let a = source.to_canonical();
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let location = if entry.needs_location {
        geo.lookup(addr)
    } else {
        None
    };
    policy::Client {
        addr,
        source_prefix,
        location,
    }
}

/// Whether the ECS option of the query took part in the decision (else scope is 0).
fn ecs_used(entry: &GslbEntry, ecs: Option<&ClientSubnet>) -> bool {
    entry.ecs && ecs.is_some_and(|c| c.source_prefix > 0)
}

/// The ECS scope to send back, in the family of the query's option: a client written as
/// IPv4-mapped IPv6 (family 2, `::ffff:a.b.c.d`) is decided as IPv4, with an IPv4 scope that
/// must be moved back into `::ffff:0:0/96` (else scope /24 would cover `::/24`). Clamped to
/// the source prefix; 0 when the ECS option took no part in the decision.
pub(crate) fn response_scope(
    entry: &GslbEntry,
    ecs: Option<&ClientSubnet>,
    client: &policy::Client,
    scope: u8,
) -> u8 {
    match ecs {
        Some(c) if ecs_used(entry, ecs) => {
            let mapped = c.family == 2 && client.addr.is_ipv4() && scope > 0;
            let scope = if mapped {
                scope.saturating_add(96)
            } else {
                scope
            };
            scope.min(c.source_prefix)
        }
        _ => 0,
    }
}

thread_local! {
    /// Per-thread random stream and rotation: no shared cache line between cores.
    static RNG: Cell<u64> = Cell::new(seed());
    static ROTATION: Cell<u64> = const { Cell::new(0) };
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let stack = &t as *const u64 as u64;
    t ^ stack.rotate_left(32) ^ GOLDEN
}

/// Next per-query input (splitmix64 step, rotation + 1).
fn next_input() -> QueryInput {
    let random = RNG.with(|r| {
        let x = r.get().wrapping_add(GOLDEN);
        r.set(x);
        mix64(x)
    });
    let rotation = ROTATION.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v
    });
    QueryInput { random, rotation }
}

/// Runs the decision for `entry` (the ECS scope to send back is `response_scope`'s).
pub(crate) fn decide<T: Tracer>(
    model: &Model,
    snap: &Snapshot,
    entry: &GslbEntry,
    client: &policy::Client,
    family: Family,
    input: &QueryInput,
    tracer: &mut T,
) -> policy::Selection {
    policy::select(
        &entry.def,
        &model.datacenters.list,
        snap,
        client,
        family,
        input,
        tracer,
    )
}

/// The TTL of an address answer of `sel`: the decision's, capped for each answered hostname
/// datacenter by what is left of its target's TTL ([`crate::resolve::Entry::answer_ttl`]);
/// also whether any of them was stale (RFC 8767). Reads the clock only for names with
/// hostname datacenters.
pub fn address_ttl(
    model: &Model,
    snap: &Snapshot,
    entry: &GslbEntry,
    sel: &Selection,
    now: impl Fn() -> Instant,
) -> (u32, bool) {
    if !entry.has_hostnames || sel.outcome != AnswerKind::Answer {
        return (sel.ttl, false);
    }
    let mut ttl = sel.ttl;
    let mut stale = false;
    let mut at = None;
    for dc in sel.datacenters() {
        if let Some(h) = model
            .datacenters
            .list
            .get(dc.0 as usize)
            .and_then(|d| d.target)
            && let Some(e) = snap.resolution(h)
        {
            let now = *at.get_or_insert_with(&now);
            ttl = e.answer_ttl(ttl, now);
            stale |= e.is_stale();
        }
    }
    (ttl, stale)
}

/// Writes one address record.
#[inline]
fn put_address(w: &mut Writer<'_>, owner: u16, ttl: u32, a: IpAddr) {
    match a {
        IpAddr::V4(x) => w.record(owner, TYPE_A, ttl, &x.octets()),
        IpAddr::V6(x) => w.record(owner, TYPE_AAAA, ttl, &x.octets()),
    }
    w.an += 1;
}

/// The query path's view of the GSLB state: the model and the health snapshot of one
/// publication (the same datacenter ids), the GeoIP databases, and the metrics.
pub struct GslbContext<'a> {
    /// The model of this query.
    pub model: &'a Model,
    /// Health published together with `model`.
    pub snapshot: &'a Snapshot,
    /// GeoIP databases.
    pub geo: &'a GeoDb,
    /// Where decisions are counted.
    pub metrics: &'a Metrics,
    /// Metric slots of each GSLB name, indexed like `Model::gslb`.
    pub slots: &'a [GslbSlots],
}

impl GslbAnswerer for GslbContext<'_> {
    fn answer(
        &self,
        id: u32,
        qtype: u16,
        q: &Query,
        peer: &Peer,
        w: &mut Writer<'_>,
        owner: u16,
    ) -> GslbOutcome {
        let Some(entry) = self.model.gslb.get(id as usize) else {
            return GslbOutcome::ServFail { scope: 0 };
        };
        let ecs = q.edns.as_ref().and_then(|e| e.ecs.as_ref());
        let pc = client_for(entry, self.geo, peer.addr, ecs);
        // Types other than A/AAAA reach here only for names that may answer a CNAME: they get
        // the CNAME an A query would get, or NODATA.
        let family = if qtype == TYPE_AAAA {
            Family::V6
        } else {
            Family::V4
        };
        let sel = decide(
            self.model,
            self.snapshot,
            entry,
            &pc,
            family,
            &next_input(),
            &mut NoTrace,
        );
        let scope = response_scope(entry, ecs, &pc, sel.scope);
        if let Some(slots) = self.slots.get(id as usize) {
            if matches!(sel.source, Source::FailOpen | Source::LastResort)
                || sel.outcome == AnswerKind::ServFail
            {
                self.metrics.all_down(slots);
            }
            if let Some(pool) = sel.pool {
                let mut last = u32::MAX;
                for e in sel.entries() {
                    if e.dc.0 != last {
                        self.metrics.decision(slots, pool.0, e.dc.0);
                        last = e.dc.0;
                    }
                }
            }
        }
        match sel.outcome {
            AnswerKind::Cname => {
                let host = sel
                    .cname()
                    .and_then(|d| self.model.datacenters.list.get(d.0 as usize)?.target)
                    .and_then(|h| Some((h, self.model.hostnames.get(h.0 as usize)?)));
                let Some((h, host)) = host else {
                    return GslbOutcome::ServFail { scope };
                };
                // The owner pointer is two bytes: the RDATA starts 12 bytes into the record.
                let rdata_at = w.len + 12;
                w.record(owner, TYPE_CNAME, sel.ttl, &host.rdata);
                w.an += 1;
                GslbOutcome::Cname {
                    scope,
                    target: h.0,
                    rdata_at,
                }
            }
            AnswerKind::Answer if qtype == TYPE_A || qtype == TYPE_AAAA => {
                let (ttl, stale) =
                    address_ttl(self.model, self.snapshot, entry, &sel, Instant::now);
                let mut n = 0;
                let res = self.snapshot.resolutions.as_deref();
                for a in sel.addresses(&entry.def, &self.model.datacenters.list, res) {
                    put_address(w, owner, ttl, a);
                    n += 1;
                }
                if stale {
                    self.metrics.stale_answer();
                }
                if n == 0 {
                    GslbOutcome::NoData { scope }
                } else {
                    GslbOutcome::Answered { scope }
                }
            }
            AnswerKind::Answer | AnswerKind::NoData => GslbOutcome::NoData { scope },
            AnswerKind::ServFail => GslbOutcome::ServFail { scope },
        }
    }

    fn alias(
        &self,
        target: u32,
        ttl: u32,
        qtype: u16,
        w: &mut Writer<'_>,
        owner: u16,
    ) -> GslbOutcome {
        let Some(e) = self.snapshot.resolution(HostnameId(target)) else {
            return GslbOutcome::ServFail { scope: 0 };
        };
        if !e.usable() {
            // Not resolved yet, or stale past max-stale: we do not know (resolvers retry).
            return GslbOutcome::ServFail { scope: 0 };
        }
        let ttl = e.answer_ttl(ttl, Instant::now());
        let mut n = 0;
        if qtype == TYPE_A {
            for a in e.v4.iter() {
                put_address(w, owner, ttl, IpAddr::V4(*a));
                n += 1;
            }
        } else {
            for a in e.v6.iter() {
                put_address(w, owner, ttl, IpAddr::V6(*a));
                n += 1;
            }
        }
        if n == 0 {
            return GslbOutcome::NoData { scope: 0 };
        }
        if e.is_stale() {
            self.metrics.stale_answer();
        }
        GslbOutcome::Answered { scope: 0 }
    }
}
