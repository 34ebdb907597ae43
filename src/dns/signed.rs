//! DNSSEC on the answer path: the RRSIGs and NSECs that go next to what `answer` writes,
//! when the query has the DO bit and the zone is signed.
//!
//! ```text
//! static RRset (RRset::sig) -------------> statics().sets[sig - 1]        copy, no crypto
//! node NODATA (Node::nsec) --------------> nsecs[nsec - 1] + its RRSIGs   copy, no crypto
//! records just written (GSLB answer) ----> DynKey on the stack -> answers cache -> copy
//! wildcard expansion, NXDOMAIN, HINFO ---> DynKey at the query name -> names cache -> copy
//!                                          (miss: sign, at most MAX_FRESH per response)
//! ```
//! Nothing here allocates on a hit; a miss signs (one signature per active key) and stores.
//! A static signature past its expiration is never served: the response becomes SERVFAIL.

use super::answer::Writer;
use crate::dnssec::ZoneSigner;
use crate::dnssec::cache::SigCache;
use crate::dnssec::nsec::{MAX_RDATA, TypeSet, compact_rdata};
use crate::dnssec::signer::{DynError, DynKey};
use crate::model::{Node, RRset, Zone};
use crate::rr::TYPE_NSEC;

/// Online signatures one response may need before it is answered SERVFAIL: a wildcard CNAME
/// chain ending in a denial needs a few; a flood of new names cannot make one query cost more.
pub(crate) const MAX_FRESH: u32 = 4;

/// DNSSEC state of one response.
#[derive(Debug, Default)]
pub(crate) struct Sec {
    /// The query asked for DNSSEC records (DO).
    pub(crate) on: bool,
    /// Compact Answers OK (RFC 9824 4.1): NXDOMAIN keeps its rcode.
    pub(crate) co: bool,
    now: u64,
    /// Signatures made for this response.
    pub(crate) fresh: u32,
    /// A signature could not be served (expired, over budget, signing error): SERVFAIL.
    pub(crate) failed: bool,
}

impl Sec {
    /// The state for query `q` (DO and CO from its OPT record).
    pub(crate) fn new(q: &super::wire::Query) -> Sec {
        let e = q.edns.as_ref();
        Sec {
            on: e.is_some_and(|e| e.dnssec_ok),
            co: e.is_some_and(|e| e.dnssec_ok && e.compact_ok),
            ..Sec::default()
        }
    }

    /// The zone's signer when this response is signed.
    #[inline]
    pub(crate) fn signer<'z>(&self, zone: &'z Zone) -> Option<&'z ZoneSigner> {
        if self.on {
            zone.dnssec.as_deref()
        } else {
            None
        }
    }

    #[inline]
    fn now(&mut self, s: &ZoneSigner) -> u64 {
        if self.now == 0 {
            self.now = s.clock.now();
        }
        self.now
    }
}

/// The RRSIGs of a static RRset at `owner`; returns how many were written.
#[inline]
pub(crate) fn static_sigs(
    w: &mut Writer<'_>,
    sec: &mut Sec,
    s: &ZoneSigner,
    rr: &RRset,
    owner: u16,
) -> u16 {
    sigs_at(w, sec, s, rr.sig, owner)
}

/// The static RRSIGs number `sig` (1-based; 0 = unsigned) at `owner`.
fn sigs_at(w: &mut Writer<'_>, sec: &mut Sec, s: &ZoneSigner, sig: u32, owner: u16) -> u16 {
    if sig == 0 {
        return 0;
    }
    let now = sec.now(s);
    let st = s.statics();
    if now >= st.expires {
        s.stats
            .expired
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sec.failed = true;
        return 0;
    }
    match st.sets.get(sig as usize - 1) {
        Some(set) => w.records(owner, &set.wire, set.count),
        None => {
            sec.failed = true;
            0
        }
    }
}

/// Looks up (or makes) the signatures of `key` and writes them at `owner`.
fn dynamic_sigs(
    w: &mut Writer<'_>,
    sec: &mut Sec,
    s: &ZoneSigner,
    cache: &SigCache,
    key: &DynKey,
    owner: u16,
) -> u16 {
    let now = sec.now(s);
    match s.dynamic(cache, key, now, &mut sec.fresh, MAX_FRESH) {
        Ok(hit) => match hit.entry() {
            Some(e) => w.records(owner, &e.wire, e.count),
            None => {
                sec.failed = true;
                0
            }
        },
        Err(DynError::Sign(e)) => {
            tracing::error!(zone = %s.origin, error = %e, "online signing failed");
            sec.failed = true;
            0
        }
        Err(_) => {
            sec.failed = true;
            0
        }
    }
}

/// Signs the records written at `[from, w.len)`, which must be one RRset owned by `name`
/// (the lower-cased wire name), e.g. a GSLB answer; an answerer that writes several RRsets
/// (a CNAME and its target's addresses) calls this once per RRset. With `ttl_base`, their TTL is first lowered to one of
/// `base, base/2, base/4, ...` so health-aware TTLs make few distinct RRsets to sign.
pub(crate) fn sign_written(
    w: &mut Writer<'_>,
    sec: &mut Sec,
    s: &ZoneSigner,
    from: usize,
    name: &[u8],
    owner: u16,
    ttl_base: Option<u32>,
) -> u16 {
    let Some((rtype, ttl)) = w.first_record(from) else {
        return 0;
    };
    let ttl = match ttl_base {
        Some(base) => {
            let t = ladder_ttl(ttl, base);
            w.set_ttls(from, t);
            t
        }
        None => ttl,
    };
    let mut key = DynKey::new(name, rtype, ttl);
    key.rdatas(w.rdatas(from));
    dynamic_sigs(w, sec, s, &s.answers, &key, owner)
}

/// The signed TTL of a health-aware TTL: the largest of `base >> k` not above `ttl`.
pub(crate) fn ladder_ttl(ttl: u32, base: u32) -> u32 {
    let mut t = base.max(1);
    while t > ttl && t > 1 {
        t /= 2;
    }
    t
}

/// A static RRset expanded from a wildcard at `name`: written with owner `owner` and signed
/// as if `name` existed (RFC 9824 3.3), so no NSEC is needed.
pub(crate) fn wildcard_rrset(
    w: &mut Writer<'_>,
    sec: &mut Sec,
    s: &ZoneSigner,
    rr: &RRset,
    name: &[u8],
    owner: u16,
) -> u16 {
    let mut key = DynKey::new(name, rr.rtype, rr.ttl);
    key.rdatas(crate::dnssec::sign::rdata_iter(&rr.wire));
    dynamic_sigs(w, sec, s, &s.names, &key, owner)
}

/// One synthesized record at `name` (RFC 8482 HINFO), signed through the per-name cache.
#[allow(clippy::too_many_arguments)]
pub(crate) fn synthesized(
    w: &mut Writer<'_>,
    sec: &mut Sec,
    s: &ZoneSigner,
    name: &[u8],
    owner: u16,
    rtype: u16,
    ttl: u32,
    rdata: &[u8],
) -> u16 {
    let mut key = DynKey::new(name, rtype, ttl);
    key.rdatas(std::iter::once(rdata));
    dynamic_sigs(w, sec, s, &s.names, &key, owner)
}

/// What a denial proves.
pub(crate) enum Denial<'a> {
    /// The name does not exist.
    NxName,
    /// The node exists, without the type; `wild` = matched through a wildcard (the NSEC is
    /// then made at the query name); `without` = a type to leave out of the bitmap (a GSLB
    /// name that answered NODATA for it).
    NoData {
        node: &'a Node,
        wild: bool,
        without: Option<u16>,
    },
}

/// The NSEC (and its RRSIGs) proving `denial` for `name` at `owner`; returns records written.
pub(crate) fn nsec(
    w: &mut Writer<'_>,
    sec: &mut Sec,
    s: &ZoneSigner,
    ttl: u32,
    name: &[u8],
    owner: u16,
    denial: Denial<'_>,
) -> u16 {
    let types = match denial {
        Denial::NoData {
            node,
            wild: false,
            without: None,
        } if node.nsec != 0 => {
            // An existing node: its NSEC was made and signed with the zone.
            let Some(rr) = s.nsecs.get(node.nsec as usize - 1) else {
                sec.failed = true;
                return 0;
            };
            let n = w.records(owner, &rr.wire, rr.count);
            return n + sigs_at(w, sec, s, rr.sig, owner);
        }
        Denial::NoData { node, without, .. } => {
            let mut t = node.nsec_types();
            if let Some(x) = without {
                t.remove(x);
            }
            t
        }
        Denial::NxName => TypeSet::nxname(),
    };
    let mut buf = [0u8; MAX_RDATA];
    let Some(len) = compact_rdata(&mut buf, name, &types) else {
        sec.failed = true;
        return 0;
    };
    let rdata = &buf[..len];
    w.record(owner, TYPE_NSEC, ttl, rdata);
    let mut key = DynKey::new(name, TYPE_NSEC, ttl);
    key.rdatas(std::iter::once(rdata));
    1 + dynamic_sigs(w, sec, s, &s.names, &key, owner)
}
