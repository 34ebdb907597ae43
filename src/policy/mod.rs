//! The GSLB decision: which datacenter(s) a client gets for a GSLB name.
//!
//! The request handler calls [`select`] once per A/AAAA query of a GSLB name, with the current
//! model (loaded once per query), the current health [`Snapshot`], the client (ECS or source
//! address, and its GeoIP location, looked up once) and a few per-query numbers
//! ([`QueryInput`]). `gslbd explain` calls the same function with a recording [`Trace`].
//!
//! ```text
//! client --rules--> pool --policy over usable members--> answer
//!                    | none usable
//!                    v
//!                 fallback pool --> fallback's fallback ... (each pool once)
//!                    | none usable anywhere
//!                    v
//!                 all-down: fail-open (everything as up, TTL/2) | last-resort list | NODATA | SERVFAIL
//! ```
//!
//! Rules: a subnet match in any rule beats every geo match (octoDNS semantics): the first rule
//! with a matching subnet wins; otherwise the first rule with a matching continent, country or
//! subdivision, or with no match list (catch-all). A name without rules uses pool 0; a name
//! whose rules match nothing (validation prevents it) answers NODATA.
//!
//! Usability: a member is usable when `DcState::usable()` and at least one of its addresses of
//! the asked family is up; only up addresses are answered. A member with no address of the
//! family is skipped. When no datacenter in the pool chain has an address of the family at
//! all, the answer is NODATA whatever the all-down behaviour (an IPv4-only region has no AAAA,
//! it is not down).
//!
//! Answers: up to `answers` datacenters (`all`: every usable one) in the policy's preference
//! order, each with all its up addresses of the family, at most `MAX_ANSWER` addresses.
//! How each policy orders, and how slow start bends it, is in [`rank`].
//!
//! Hostname datacenters (`Datacenter::target`): their addresses are the target's current
//! ones (`Snapshot::resolutions`). A target with no usable answer (never resolved, stale past
//! max-stale, NXDOMAIN, no address at all) makes the member `Verdict::Unresolved`, which
//! counts as down. With `GslbName::flatten` the member answers those addresses like any
//! other datacenter; without, the answer is [`AnswerKind::Cname`] to the target (validation
//! keeps such names at one answer, so the first chosen member decides between a CNAME and
//! addresses). Either way the family test uses the resolved addresses: a target without IPv6
//! is skipped for AAAA. The per-address bits of a hostname datacenter apply only to the
//! resolved set they describe (`DcState::addr_serial`); another set is answered whole.
//!
//! TTL: the name's TTL, lowered to `settle_ttl` of every answered datacenter that is not
//! settled (the minimum, as gdnsd does); halved for fail-open and last-resort answers, so
//! resolvers come back soon after a recovery.
//!
//! ECS scope ([`Selection::scope`]): the longest of these prefixes, capped at the address
//! length (the caller also clamps to the query's source prefix):
//! - rules: 0 when the first rule is the catch-all (or there are no rules); the matched
//!   subnet's prefix when a subnet rule decides; for each subnet that did not match but was
//!   examined before the decision, one bit more than the prefix the client shares with it (or
//!   its own prefix, if shorter), so the scope never covers an address that would match it;
//!   the location's `prefix_len` as soon as a geo match was examined (the query's source
//!   prefix when there is no location: the answer depends on the lookup missing);
//! - the answering pool's policy: `nearest` as for geo; `hash` the hash granularity (24 / 56
//!   by default); `latency` with a latency map in the snapshot: what
//!   `LatencyView::scope` says (the
//!   subnet-entry prefixes as for subnet rules when a candidate has subnet entries, the
//!   location's prefix as for geo when one has country or continent entries; nothing when no
//!   candidate has an entry); every other policy ignores the client and adds nothing, and so
//!   does any policy when the pool has a single usable member.
//!
//! The hot path allocates nothing: [`Selection`] is a fixed-size value and the candidate list
//! lives on the stack.

pub mod rank;
pub(crate) mod trace;

use std::net::IpAddr;

use crate::geo::Location;
use crate::health::{AdminState, DcState, Snapshot};
use crate::limits::{MAX_ANSWER, MAX_MEMBERS};
use crate::model::{
    AllDown, ClientDependence, Datacenter, DatacenterId, GslbName, LatencySource, LatencyView,
    MatchItem, PoolId, Resolutions,
};
use crate::net::{self, Family};
use crate::resolve::{Entry as Resolved, State as ResolveState};
use rank::{Cand, Ctx, Rng};
pub(crate) use trace::{MatchedBy, Tracer, Verdict};
pub use trace::{NoTrace, Trace};

/// Pools up to this size decide on a small stack buffer.
const SMALL_POOL: usize = 8;

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Client {
    /// The ECS address when the query has one, else the resolver's address.
    pub addr: IpAddr,
    /// ECS source prefix length (the full address length without ECS).
    pub source_prefix: u8,
    /// GeoIP result for `addr`, if any database had one.
    pub location: Option<Location>,
}

impl Client {
    /// A client without ECS and without location.
    pub fn new(addr: IpAddr) -> Client {
        Client {
            addr,
            source_prefix: Family::of(addr).bits(),
            location: None,
        }
    }

    /// The latency map's entries for this client (`LatencyView::NONE` without a map).
    pub(crate) fn latency_view<'a>(
        &self,
        map: Option<&'a crate::model::LatencyMap>,
    ) -> LatencyView<'a> {
        map.map_or(LatencyView::NONE, |m| {
            m.view(self.addr, self.source_prefix, self.location.as_ref())
        })
    }
}

/// Per-query numbers, supplied by the caller so decisions are reproducible in tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryInput {
    /// Seed of the random stream (`weighted`, `random`, `load`, slow start).
    pub random: u64,
    /// Rotation counter for `round-robin`. The server may share one counter between all names
    /// (one increment per query): each pool then still sees an even rotation on average.
    pub rotation: u64,
}

/// What kind of response to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    /// Addresses in the answer section.
    Answer,
    /// A CNAME to the target of the (one) chosen hostname datacenter.
    Cname,
    /// NOERROR with no answer (no address of the family, or all-down `nodata`).
    NoData,
    /// SERVFAIL (all-down `servfail`).
    ServFail,
}

/// Where the answered addresses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A pool of the chain with usable members.
    Pool,
    /// All-down, fail-open: a pool of the chain as if everything were up.
    FailOpen,
    /// All-down: the name's last-resort address list.
    LastResort,
    /// No addresses (NODATA, SERVFAIL).
    None,
}

/// One answered address: a datacenter and the index of the address in its list of the asked
/// family (`v4` or `v6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The datacenter.
    pub dc: DatacenterId,
    /// Index of the address in the datacenter's `v4` or `v6` list.
    pub(crate) addr: u16,
}

/// The decision for one query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Selection {
    /// What kind of response to send.
    pub outcome: AnswerKind,
    /// Where the answered addresses come from.
    pub source: Source,
    /// The asked family (A: V4, AAAA: V6).
    pub(crate) family: Family,
    /// TTL of the answer records, seconds (see the module docs).
    pub ttl: u32,
    /// ECS scope prefix length (see the module docs).
    pub scope: u8,
    /// Index of the rule that matched, if any.
    pub rule: Option<u32>,
    /// The pool that answered (for fail-open, the pool answered as if up).
    pub pool: Option<PoolId>,
    len: u8,
    entries: [Entry; MAX_ANSWER],
}

impl Selection {
    fn empty(family: Family, ttl: u32) -> Selection {
        Selection {
            outcome: AnswerKind::NoData,
            source: Source::None,
            family,
            ttl,
            scope: 0,
            rule: None,
            pool: None,
            len: 0,
            entries: [Entry {
                dc: DatacenterId(0),
                addr: 0,
            }; MAX_ANSWER],
        }
    }

    /// The answered datacenter addresses (empty for last-resort answers; for a CNAME answer
    /// the one entry names the datacenter).
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len as usize]
    }

    /// The hostname datacenter whose target a CNAME answer points to.
    pub fn cname(&self) -> Option<DatacenterId> {
        match self.outcome {
            AnswerKind::Cname => self.entries().first().map(|e| e.dc),
            _ => None,
        }
    }

    /// The answered datacenters, in answer order, each once.
    pub fn datacenters(&self) -> impl Iterator<Item = DatacenterId> + '_ {
        let e = self.entries();
        e.iter()
            .enumerate()
            .filter(move |(i, x)| *i == 0 || e[i - 1].dc != x.dc)
            .map(|(_, x)| x.dc)
    }

    /// The addresses to put in the answer section (`res`: the resolutions the decision read,
    /// for hostname datacenters; none for a CNAME answer).
    pub fn addresses<'a>(
        &'a self,
        name: &'a GslbName,
        dcs: &'a [Datacenter],
        res: Option<&'a Resolutions>,
    ) -> impl Iterator<Item = IpAddr> + 'a {
        let family = self.family;
        let (lr4, lr6): (&[_], &[_]) = match (&name.all_down, self.source) {
            (AllDown::Addresses { v4, v6 }, Source::LastResort) => match family {
                Family::V4 => (v4, &[]),
                Family::V6 => (&[], v6),
            },
            _ => (&[], &[]),
        };
        let entries = if self.outcome == AnswerKind::Cname {
            &[][..]
        } else {
            self.entries()
        };
        entries
            .iter()
            .filter_map(move |e| {
                let dc = dcs.get(e.dc.0 as usize)?;
                let (v4, v6): (&[_], &[_]) = match dc.target {
                    Some(h) => {
                        let r = res?.get(h)?;
                        (&r.v4, &r.v6)
                    }
                    None => (&dc.v4, &dc.v6),
                };
                match family {
                    Family::V4 => v4.get(e.addr as usize).map(|a| IpAddr::V4(*a)),
                    Family::V6 => v6.get(e.addr as usize).map(|a| IpAddr::V6(*a)),
                }
            })
            .chain(lr4.iter().map(|a| IpAddr::V4(*a)))
            .chain(lr6.iter().map(|a| IpAddr::V6(*a)))
    }

    fn push(&mut self, e: Entry) -> bool {
        if (self.len as usize) < MAX_ANSWER {
            self.entries[self.len as usize] = e;
            self.len += 1;
            true
        } else {
            false
        }
    }
}

/// The rule decision and the scope it implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RuleMatch {
    /// Index of the matched rule; `None` without rules or when nothing matched.
    pub(crate) index: Option<u32>,
    /// The pool to start from; `None` when no rule matched (NODATA).
    pub(crate) pool: Option<PoolId>,
    /// How the rule was chosen.
    pub(crate) by: MatchedBy,
    /// ECS scope prefix length the rule decision implies.
    pub(crate) scope: u8,
}

/// Picks the rule for a client (see the module docs for the order and the scope).
pub(crate) fn match_rules(name: &GslbName, client: &Client) -> RuleMatch {
    if name.rules.is_empty() {
        return RuleMatch {
            index: None,
            pool: Some(PoolId(0)),
            by: MatchedBy::NoRules,
            scope: 0,
        };
    }
    let addr = client.addr.to_canonical();
    let mut scope = 0u8;
    for (i, rule) in name.rules.iter().enumerate() {
        for item in &rule.matches {
            let MatchItem::Subnet(subnet) = *item else {
                continue;
            };
            let prefix = subnet.prefix;
            let Some(cpl) = net::common_prefix(addr, subnet.addr.to_canonical()) else {
                continue;
            };
            if cpl >= prefix {
                scope = scope.max(prefix);
                return RuleMatch {
                    index: Some(i as u32),
                    pool: Some(rule.pool),
                    by: MatchedBy::Subnet,
                    scope,
                };
            }
            scope = scope.max(prefix.min(cpl + 1));
        }
    }
    let loc = client.location.as_ref();
    let geo_scope = loc.map_or(client.source_prefix, |l| l.prefix_len);
    for (i, rule) in name.rules.iter().enumerate() {
        if rule.matches.is_empty() {
            return RuleMatch {
                index: Some(i as u32),
                pool: Some(rule.pool),
                by: MatchedBy::CatchAll,
                scope,
            };
        }
        let mut has_geo = false;
        for item in &rule.matches {
            if matches!(item, MatchItem::Subnet(_)) {
                continue;
            }
            has_geo = true;
            if item.matches_location(loc) {
                scope = scope.max(geo_scope);
                return RuleMatch {
                    index: Some(i as u32),
                    pool: Some(rule.pool),
                    by: MatchedBy::Geo,
                    scope,
                };
            }
        }
        if has_geo {
            scope = scope.max(geo_scope);
        }
    }
    RuleMatch {
        index: None,
        pool: None,
        by: MatchedBy::NoMatch,
        scope,
    }
}

/// First health bit and count of a datacenter's addresses of `family`: its own, or its
/// target's resolved ones (`host`).
fn family_range(dc: &Datacenter, host: Option<&Resolved>, family: Family) -> (usize, usize) {
    let (n4, n6) = match (dc.target, host) {
        (None, _) => (dc.v4.len(), dc.v6.len()),
        (Some(_), Some(e)) => (e.v4.len(), e.v6.len()),
        (Some(_), None) => (0, 0),
    };
    match family {
        Family::V4 => (0, n4),
        Family::V6 => (n4, n6),
    }
}

fn addr_up(state: &DcState, bit: usize) -> bool {
    // Addresses past bit 63 have no per-address state: they follow the datacenter.
    bit >= 64 || state.addr_up >> bit & 1 == 1
}

/// Do the datacenter's per-address bits describe the addresses it answers now? (Always for
/// declared addresses; for a hostname datacenter only for the resolved set they were
/// measured on.)
fn bits_apply(dc: &Datacenter, host: Option<&Resolved>, state: &DcState) -> bool {
    match (dc.target, host) {
        (None, _) => true,
        (Some(_), Some(e)) => e.serial == state.addr_serial,
        (Some(_), None) => false,
    }
}

fn verdict(
    dc: &Datacenter,
    host: Option<&Resolved>,
    state: &DcState,
    family: Family,
    fail_open: bool,
    flatten: bool,
) -> Verdict {
    let cname = dc.target.is_some() && !flatten;
    if dc.target.is_some() {
        match host {
            // A GSLB name of ours behind a CNAME: the chain decides per query.
            Some(e) if e.state == ResolveState::Followed && cname => {}
            Some(e) if e.has_addresses() => {}
            // Nothing to answer; a CNAME may still be handed out when everything is down.
            _ if fail_open && cname => return Verdict::ForcedUp,
            _ => return Verdict::Unresolved,
        }
    }
    let followed = host.is_some_and(|e| e.state == ResolveState::Followed);
    let (base, count) = family_range(dc, host, family);
    if count == 0 && !followed {
        return Verdict::NoAddressOfFamily;
    }
    if fail_open {
        return Verdict::ForcedUp;
    }
    if !state.usable() {
        return match state.admin {
            AdminState::Down => Verdict::AdminDown,
            AdminState::Drain => Verdict::Drain,
            _ => Verdict::Down,
        };
    }
    if !cname && bits_apply(dc, host, state) && !(base..base + count).any(|b| addr_up(state, b)) {
        return Verdict::AddressesDown;
    }
    Verdict::Usable
}

struct Walk<'a> {
    name: &'a GslbName,
    dcs: &'a [Datacenter],
    snap: &'a Snapshot,
    client: &'a Client,
    family: Family,
    input: &'a QueryInput,
    /// Some datacenter of the chain has an address of the family.
    family_seen: bool,
}

impl Walk<'_> {
    /// Tries the chain from `start`, each pool at most once; fills `sel` from the first pool
    /// with usable members and returns true.
    fn chain<T: Tracer>(
        &mut self,
        start: PoolId,
        fail_open: bool,
        sel: &mut Selection,
        tracer: &mut T,
    ) -> bool {
        let mut next = Some(start);
        // Validation rejects cycles; this guard keeps a bad model from trying a pool twice
        // (ids < 64, a bitmask) or looping forever (the step bound, for any id).
        let mut seen = 0u64;
        for _ in 0..self.name.pools.len() {
            let Some(id) = next else { return false };
            let Some(pool) = self.name.pools.get(id.0 as usize) else {
                return false;
            };
            let bit = 1u64.checked_shl(id.0).unwrap_or(0);
            if seen & bit != 0 {
                tracer.cycle(id);
                return false;
            }
            seen |= bit;
            // Most pools are small: a small stack buffer saves initialising the large one
            // (measurable at this scale: about half the cost of a failover decision).
            let answered = if pool.members.len() <= SMALL_POOL {
                self.pool::<T, SMALL_POOL>(id, fail_open, sel, tracer)
            } else {
                self.pool::<T, MAX_MEMBERS>(id, fail_open, sel, tracer)
            };
            if answered {
                return true;
            }
            next = pool.fallback;
        }
        if let Some(id) = next {
            tracer.cycle(id);
        }
        false
    }

    fn pool<T: Tracer, const N: usize>(
        &mut self,
        id: PoolId,
        fail_open: bool,
        sel: &mut Selection,
        tracer: &mut T,
    ) -> bool {
        let pool = &self.name.pools[id.0 as usize];
        tracer.pool(id, pool, fail_open);
        let mut buf = [Cand {
            member: 0,
            dc: DatacenterId(0),
            ramp: 1.0,
            key: 0.0,
        }; N];
        let mut n = 0;
        for (i, m) in pool.members.iter().enumerate() {
            let state = self.snap.get(m.dc.0);
            let Some(dc) = self.dcs.get(m.dc.0 as usize) else {
                tracer.candidate(m, state, Verdict::UnknownDatacenter);
                continue;
            };
            let host = dc.target.and_then(|h| self.snap.resolution(h));
            let v = if i >= N {
                Verdict::TooMany
            } else {
                verdict(dc, host, state, self.family, fail_open, self.name.flatten)
            };
            if v != Verdict::NoAddressOfFamily {
                self.family_seen = true;
            }
            tracer.candidate(m, state, v);
            if matches!(v, Verdict::Usable | Verdict::ForcedUp) {
                let ramp = if fail_open || state.slow_start.is_nan() {
                    1.0
                } else {
                    state.slow_start.clamp(0.0, 1.0)
                };
                buf[n] = Cand {
                    member: i as u16,
                    dc: m.dc,
                    ramp,
                    key: 0.0,
                };
                n += 1;
            }
        }
        if n == 0 {
            return false;
        }
        let cands = &mut buf[..n];
        let want = if pool.policy.answers_all() {
            n
        } else {
            usize::from(self.name.answers.max(1)).min(n)
        };
        let is_latency = pool.policy.client_dependence() == ClientDependence::LatencyMap;
        let ctx = Ctx {
            members: &pool.members,
            dcs: self.dcs,
            snap: self.snap,
            coords: self.client.location.and_then(|l| l.coords),
            addr: self.client.addr.to_canonical(),
            rotation: self.input.rotation,
            latency: if is_latency {
                self.client.latency_view(self.snap.latency_map.as_deref())
            } else {
                LatencyView::NONE
            },
        };
        let mut rng = Rng::new(self.input.random);
        let leader = rank::order(
            &pool.policy,
            &ctx,
            cands,
            want,
            pool.leader.get(self.family),
            &mut rng,
        );
        let mut map_used = false;
        if is_latency {
            for c in cands.iter() {
                let source = rank::latency_of(&ctx, c.dc).1;
                map_used |= matches!(source, LatencySource::Map(_));
                tracer.latency_source(c.dc, source);
            }
        }
        // The leader is shared by every client of the pool: only probe-ranked decisions move
        // it, so clients ranked by their own map entries do not flip it for everyone else
        // (they still keep it when it is within the margin of their best).
        if !fail_open && is_latency && !map_used {
            pool.leader.set(self.family, leader);
        }
        tracer.ranked(pool, cands, want);

        sel.pool = Some(id);
        sel.outcome = AnswerKind::Answer;
        sel.source = if fail_open {
            Source::FailOpen
        } else {
            Source::Pool
        };
        'dcs: for c in &cands[..want] {
            let dc = &self.dcs[c.dc.0 as usize];
            let state = self.snap.get(c.dc.0);
            if !state.settled {
                sel.ttl = sel.ttl.min(state.settle_ttl);
            }
            if dc.target.is_some() && !self.name.flatten {
                // A CNAME answer: the first chosen member is the answer (one, validated).
                if sel.len == 0 {
                    sel.outcome = AnswerKind::Cname;
                    sel.push(Entry { dc: c.dc, addr: 0 });
                }
                break;
            }
            let host = dc.target.and_then(|h| self.snap.resolution(h));
            let bits = bits_apply(dc, host, state);
            let (base, count) = family_range(dc, host, self.family);
            for k in 0..count {
                if (fail_open || !bits || addr_up(state, base + k))
                    && !sel.push(Entry {
                        dc: c.dc,
                        addr: k as u16,
                    })
                {
                    break 'dcs;
                }
            }
        }
        let policy_scope = match pool.policy.client_dependence() {
            // A single usable member is everyone's answer.
            _ if n == 1 => 0,
            ClientDependence::None => 0,
            ClientDependence::Location => self
                .client
                .location
                .map_or(self.client.source_prefix, |l| l.prefix_len),
            // With a latency map the order depends on the client's map entries.
            ClientDependence::LatencyMap => ctx.latency.scope(cands.iter().map(|c| c.dc)),
            ClientDependence::Subnet { v4, v6 } => match self.family_of_client() {
                Family::V4 => v4,
                Family::V6 => v6,
            },
        };
        sel.scope = sel.scope.max(policy_scope);
        true
    }

    fn family_of_client(&self) -> Family {
        Family::of(self.client.addr)
    }
}

fn halve(ttl: u32) -> u32 {
    (ttl / 2).max(ttl.min(1))
}

/// The GSLB decision for one query (see the module docs for every rule it applies).
///
/// `dcs` is indexed by `DatacenterId`; `snap` by the same ids. Stores the new `latency`
/// leader in the pool's `LeaderCell` (not in fail-open).
///
/// ```
/// use gslbd::health::Snapshot;
/// use gslbd::model::{Datacenter, DatacenterId, GslbName, Member, PolicyKind, Pool};
/// use gslbd::net::Family;
/// use gslbd::policy::{select, AnswerKind, Client, NoTrace, QueryInput};
///
/// let dcs = vec![Datacenter {
///     name: "fra".into(),
///     v4: vec!["192.0.2.10".parse().unwrap()],
///     v6: vec![],
///     coords: Some((50.11, 8.68)),
///     capacity: 1.0,
///     weight: 1,
///     target: None,
/// }];
/// let pool = Pool::new("world", vec![Member::of(DatacenterId(0), &dcs)], PolicyKind::Failover);
/// let name = GslbName::single(30, pool);
/// let client = Client::new("203.0.113.9".parse().unwrap());
/// let snap = Snapshot::all_up(dcs.len());
/// let input = QueryInput { random: 12345, rotation: 1 };
/// let sel = select(&name, &dcs, &snap, &client, Family::V4, &input, &mut NoTrace);
/// assert_eq!(sel.outcome, AnswerKind::Answer);
/// assert_eq!(sel.addresses(&name, &dcs, None).next(), Some("192.0.2.10".parse().unwrap()));
/// assert_eq!((sel.ttl, sel.scope), (30, 0));
/// // No IPv6 anywhere: NODATA for AAAA.
/// let sel = select(&name, &dcs, &snap, &client, Family::V6, &input, &mut NoTrace);
/// assert_eq!(sel.outcome, AnswerKind::NoData);
/// ```
pub fn select<T: Tracer>(
    name: &GslbName,
    dcs: &[Datacenter],
    snap: &Snapshot,
    client: &Client,
    family: Family,
    input: &QueryInput,
    tracer: &mut T,
) -> Selection {
    let mut sel = Selection::empty(family, name.ttl);
    tracer.client(client);
    let rm = match_rules(name, client);
    tracer.rule(rm.index, rm.by);
    sel.rule = rm.index;
    sel.scope = rm.scope;
    let mut walk = Walk {
        name,
        dcs,
        snap,
        client,
        family,
        input,
        family_seen: false,
    };
    if let Some(start) = rm.pool
        && !walk.chain(start, false, &mut sel, tracer)
        && walk.family_seen
    {
        all_down(&mut walk, start, &mut sel, tracer);
    }
    let client_bits = walk.family_of_client().bits();
    sel.scope = sel.scope.min(client_bits);
    tracer.finish(&sel);
    sel
}

fn all_down<T: Tracer>(walk: &mut Walk<'_>, start: PoolId, sel: &mut Selection, tracer: &mut T) {
    match &walk.name.all_down {
        AllDown::FailOpen => {
            if walk.chain(start, true, sel, tracer) {
                sel.ttl = halve(sel.ttl);
            }
        }
        AllDown::Addresses { v4, v6 } => {
            let any = match walk.family {
                Family::V4 => !v4.is_empty(),
                Family::V6 => !v6.is_empty(),
            };
            if any {
                sel.outcome = AnswerKind::Answer;
                sel.source = Source::LastResort;
                sel.ttl = halve(sel.ttl);
            }
        }
        AllDown::NoData => {}
        AllDown::ServFail => sel.outcome = AnswerKind::ServFail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PolicyKind, Pool, Rule};
    use crate::net::Subnet;

    fn name_with(rules: Vec<Rule>) -> GslbName {
        let mut n = GslbName::single(60, Pool::new("a", Vec::new(), PolicyKind::Failover));
        n.pools
            .push(Pool::new("b", Vec::new(), PolicyKind::Failover));
        n.rules = rules;
        n
    }

    fn subnet(s: &str, prefix: u8) -> MatchItem {
        MatchItem::Subnet(Subnet {
            addr: s.parse().unwrap(),
            prefix,
        })
    }

    #[test]
    fn ipv6_subnet_rules_and_scope() {
        let n = name_with(vec![
            Rule {
                matches: vec![subnet("2001:db8:aa00::", 40)],
                pool: PoolId(1),
            },
            Rule {
                matches: vec![],
                pool: PoolId(0),
            },
        ]);
        let c = |a: &str| Client::new(a.parse().unwrap());
        let m = match_rules(&n, &c("2001:db8:aa12::1"));
        assert_eq!(
            (m.pool, m.by, m.scope),
            (Some(PoolId(1)), MatchedBy::Subnet, 40)
        );
        // 2001:db8:ab00:: shares 39 bits with the subnet: /40 already excludes it.
        let m = match_rules(&n, &c("2001:db8:ab00::1"));
        assert_eq!(
            (m.pool, m.by, m.scope),
            (Some(PoolId(0)), MatchedBy::CatchAll, 40)
        );
        // Far away: a short scope is enough.
        let m = match_rules(&n, &c("3fff::1"));
        // 0x3fff and 0x2001 share their first 3 bits.
        assert_eq!(m.scope, 4);
        // IPv4 clients are not affected by IPv6 subnets; IPv4-mapped clients count as IPv4.
        assert_eq!(match_rules(&n, &c("192.0.2.1")).scope, 0);
        assert_eq!(match_rules(&n, &c("::ffff:192.0.2.1")).scope, 0);
    }

    #[test]
    fn earlier_subnet_rule_wins_and_later_ones_do_not_narrow() {
        let n = name_with(vec![
            Rule {
                matches: vec![subnet("10.0.0.0", 8)],
                pool: PoolId(1),
            },
            Rule {
                matches: vec![subnet("10.1.0.0", 16)],
                pool: PoolId(0),
            },
        ]);
        let m = match_rules(&n, &Client::new("10.1.2.3".parse().unwrap()));
        assert_eq!((m.index, m.scope), (Some(0), 8));
    }

    #[test]
    fn no_rule_matches_is_nodata() {
        let n = name_with(vec![Rule {
            matches: vec![MatchItem::Geo(crate::geo::GeoCode::Country(*b"DE"))],
            pool: PoolId(1),
        }]);
        let dcs: [Datacenter; 0] = [];
        let client = Client::new("192.0.2.1".parse().unwrap());
        let sel = select(
            &n,
            &dcs,
            &Snapshot::default(),
            &client,
            Family::V4,
            &QueryInput::default(),
            &mut NoTrace,
        );
        assert_eq!(
            (sel.outcome, sel.rule, sel.scope),
            (AnswerKind::NoData, None, 32)
        );
    }

    #[test]
    fn halved_ttl_stays_positive() {
        assert_eq!((halve(0), halve(1), halve(3), halve(60)), (0, 1, 1, 30));
    }
}
