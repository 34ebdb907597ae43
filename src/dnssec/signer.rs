//! The signing state of one zone: its keys, the signatures of its static RRsets (made when
//! the model is built, swapped whole when re-signed), the per-node NSEC records, and the
//! caches of signatures made on the query path.
//!
//! ```text
//! config::build --add_static/add_nsec, resign--> ZoneSigner { inputs, statics, nsecs, caches }
//!                                   ^ resign(now) every time `now >= refresh_at` (server task)
//! query path --RRset.sig / Node.nsec--> statics().sets[i]        (static: an index)
//!            --RRset bytes key--------> answers / names cache     (GSLB, wildcard, NXDOMAIN)
//! ```
//! Times: a signature made at `now` is valid from `now - inception_offset` (clock skew) to
//! `now + validity`, and is replaced from `now + validity - refresh` on: statics by the
//! background re-signer, cached ones on their next use. `refresh` exceeds every TTL of the
//! zone, so a resolver never caches an answer past its signature.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::cache::{Hit, RateLimit, SigCache, Striped};
use super::keys::ZoneKey;
use super::nsec::{TypeSet, compact_rdata};
use super::sign::{
    self, SigFields, TYPE_NSEC, Window, canonical_set, rdatas, rrsig_records, signed_by_ksk,
};

/// Signature timing and sizes of a signed zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// How long a signature is valid from its making.
    pub validity: Duration,
    /// Re-sign when less than this remains.
    pub refresh: Duration,
    /// Inception this far in the past, for validators whose clocks lag.
    pub inception_offset: Duration,
    /// TTL of DNSKEY, CDS and CDNSKEY.
    pub dnskey_ttl: u32,
    /// Publish CDS and CDNSKEY (RFC 7344/8078) for the parent to scan.
    pub cds: bool,
    /// Entries of each signature cache (answers, and per-name denials/wildcards).
    pub cache_entries: usize,
    /// Online signatures per second per query thread; past it a miss is SERVFAIL.
    pub max_online_signatures: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            validity: Duration::from_secs(14 * 86400),
            refresh: Duration::from_secs(7 * 86400),
            inception_offset: Duration::from_secs(3600),
            dnskey_ttl: 3600,
            cds: true,
            cache_entries: 65536,
            max_online_signatures: 20_000,
        }
    }
}

impl Params {
    fn window(&self, now: u64) -> Window {
        Window {
            inception: now.saturating_sub(self.inception_offset.as_secs()),
            expiration: now + self.validity.as_secs(),
        }
    }

    fn refresh_at(&self, w: &Window) -> u64 {
        w.expiration.saturating_sub(self.refresh.as_secs())
    }
}

/// One static RRset to sign, kept in canonical form so re-signing needs nothing else.
#[derive(Debug)]
struct Input {
    owner: Box<[u8]>,
    rtype: u16,
    ttl: u32,
    canonical: Vec<Vec<u8>>,
}

/// Records ready to copy after an owner: `TYPE CLASS TTL RDLENGTH RDATA` each.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// The records.
    pub wire: Box<[u8]>,
    /// How many.
    pub count: u16,
    /// For an NSEC: 1 + index of its own RRSIGs in the statics.
    pub sig: u32,
}

/// The signatures of every static RRset (index = `RRset::sig - 1`), made at one time.
#[derive(Debug, Default)]
pub struct StaticSigs {
    /// RRSIG records of each registered RRset.
    pub sets: Vec<Records>,
    /// Inception of all of them, Unix seconds.
    pub inception: u64,
    /// Expiration of all of them, Unix seconds.
    pub expires: u64,
    /// When they are due for re-signing, Unix seconds.
    pub refresh_at: u64,
}

/// Counters of one signed zone (metrics and `/status`); shared by the zone's signers across
/// reloads (see [`super::Counters`]), so they never go backwards.
#[derive(Debug, Default)]
pub struct Stats {
    /// Online-signed RRsets found in a cache.
    pub cache_hits: Striped,
    /// Online-signed RRsets not found (or due for refresh).
    pub cache_misses: Striped,
    /// RRSIGs made.
    pub signatures: AtomicU64,
    /// Re-signing runs of the statics.
    pub resigns: AtomicU64,
    /// Re-signing runs that failed.
    pub resign_failures: AtomicU64,
    /// Responses that needed more online signatures than allowed, answered SERVFAIL.
    pub over_budget: AtomicU64,
    /// Responses not served because a static signature had expired (re-signing stalled).
    pub expired: AtomicU64,
    /// Responses refused because this thread's online signatures of the second were spent.
    pub rate_limited: AtomicU64,
}

/// Signing state of one zone; shared by every model holding the zone (`Arc`).
pub struct ZoneSigner {
    /// The zone, fully qualified (for logs, status and metric labels).
    pub origin: String,
    /// Lower-cased wire name of the zone: the RRSIG signer name.
    pub apex: Box<[u8]>,
    /// Every key of the zone: ours, and the other signers' (multi-signer).
    pub keys: Vec<ZoneKey>,
    /// Signature timing and sizes.
    pub params: Params,
    inputs: Vec<Input>,
    statics: ArcSwap<StaticSigs>,
    /// Node NSEC records (index = `Node::nsec - 1`), each with its own `sig`.
    pub nsecs: Vec<Records>,
    /// Signatures of answers that do not depend on the query name (GSLB addresses).
    pub answers: SigCache,
    /// Signatures made per query name: compact-denial NSECs, wildcard answers, RFC 8482 HINFO.
    pub names: SigCache,
    /// Online signatures per second per query thread (`Params::max_online_signatures`).
    limit: RateLimit,
    /// Counters, shared with the zone's earlier signers (reloads).
    pub stats: Arc<Stats>,
    /// The time source of every signature of this zone.
    pub clock: super::Clock,
}

impl std::fmt::Debug for ZoneSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneSigner")
            .field("origin", &self.origin)
            .field("keys", &self.keys)
            .field("params", &self.params)
            .field("statics", &self.inputs.len())
            .finish()
    }
}

/// Key states and signature times, for `/status`.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key tag.
    pub tag: u16,
    /// Algorithm number.
    pub algorithm: u8,
    /// `csk`, `ksk` or `zsk`.
    pub role: &'static str,
    /// `published`, `active` or `retired`.
    pub state: &'static str,
    /// False for another signer's key (multi-signer), listed but not used here.
    pub ours: bool,
    /// The private key file of our keys.
    pub file: Option<String>,
}

/// A signed zone as `/status` shows it (and `/metrics` renders it).
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct DnssecInfo {
    /// Every key of the zone.
    pub keys: Vec<KeyInfo>,
    /// Inception of the static signatures serving now.
    pub inception_unix: u64,
    /// Expiration of the static signatures serving now: the earliest a served signature ends
    /// (cached online signatures are replaced on use well before theirs).
    pub earliest_expiry_unix: u64,
    /// When the static signatures are due for re-signing.
    pub next_resign_unix: u64,
    /// RRSIGs made (loads, re-signing, online).
    pub signatures: u64,
    /// Online-signed RRsets found in a cache.
    pub cache_hits: u64,
    /// Online-signed RRsets signed on the query path.
    pub cache_misses: u64,
    /// Re-signing runs.
    pub resigns: u64,
    /// Re-signing runs that failed.
    pub resign_failures: u64,
    /// Responses refused (SERVFAIL) for needing too many online signatures.
    pub over_budget: u64,
    /// Responses refused (SERVFAIL) because a static signature had expired.
    pub expired_refusals: u64,
    /// Responses refused (SERVFAIL) past the online signing rate.
    pub rate_limited: u64,
}

/// The signed zones of a scrape, rendered as DNSSEC metric families: (origin, state).
pub struct ZonesGauges(pub Vec<(String, DnssecInfo)>);

impl crate::metrics::Gauges for ZonesGauges {
    fn render(&self, o: &mut crate::metrics::Text) {
        let zones = &self.0;
        let c = "counter";
        o.header(
            "gslbd_dnssec_signatures_total",
            "RRSIGs made (zone loads, re-signing and online signing).",
            c,
        );
        for (z, d) in zones {
            o.sample(
                "gslbd_dnssec_signatures_total",
                &[("zone", z)],
                d.signatures,
            );
        }
        o.header(
            "gslbd_dnssec_cache_lookups_total",
            "Signature cache lookups of online-signed RRsets, by result.",
            c,
        );
        for (z, d) in zones {
            for (r, v) in [("hit", d.cache_hits), ("miss", d.cache_misses)] {
                o.sample(
                    "gslbd_dnssec_cache_lookups_total",
                    &[("zone", z), ("result", r)],
                    v,
                );
            }
        }
        o.header(
            "gslbd_dnssec_resigns_total",
            "Background re-signing runs of the static RRsets, by result.",
            c,
        );
        for (z, d) in zones {
            for (r, v) in [("ok", d.resigns), ("error", d.resign_failures)] {
                o.sample(
                    "gslbd_dnssec_resigns_total",
                    &[("zone", z), ("result", r)],
                    v,
                );
            }
        }
        o.header(
            "gslbd_dnssec_refused_total",
            "Signed responses answered SERVFAIL instead, by reason.",
            c,
        );
        for (z, d) in zones {
            for (r, v) in [
                ("over_budget", d.over_budget),
                ("rate_limited", d.rate_limited),
                ("expired", d.expired_refusals),
            ] {
                o.sample(
                    "gslbd_dnssec_refused_total",
                    &[("zone", z), ("reason", r)],
                    v,
                );
            }
        }
        let g = "gauge";
        o.header(
            "gslbd_dnssec_signature_expiry_time_seconds",
            "When the static signatures serving now expire, Unix seconds (alert well before).",
            g,
        );
        for (z, d) in zones {
            o.sample(
                "gslbd_dnssec_signature_expiry_time_seconds",
                &[("zone", z)],
                d.earliest_expiry_unix,
            );
        }
        o.header(
            "gslbd_dnssec_next_resign_time_seconds",
            "When the static signatures are due for re-signing, Unix seconds.",
            g,
        );
        for (z, d) in zones {
            o.sample(
                "gslbd_dnssec_next_resign_time_seconds",
                &[("zone", z)],
                d.next_resign_unix,
            );
        }
        o.header(
            "gslbd_dnssec_key",
            "Keys of signed zones (1 per key), by tag, algorithm, role and state.",
            g,
        );
        for (z, d) in zones {
            for k in &d.keys {
                let (tag, alg) = (k.tag.to_string(), k.algorithm.to_string());
                let ours = if k.ours { "true" } else { "false" };
                let labels = [
                    ("zone", z.as_str()),
                    ("tag", &tag),
                    ("algorithm", &alg),
                    ("role", k.role),
                    ("state", k.state),
                    ("ours", ours),
                ];
                o.sample("gslbd_dnssec_key", &labels, 1);
            }
        }
    }
}

impl ZoneSigner {
    /// A signer with `keys` and nothing registered yet (statics empty until [`Self::resign`]).
    pub fn new(origin: String, apex: Box<[u8]>, keys: Vec<ZoneKey>, params: Params) -> Self {
        let n = params.cache_entries;
        ZoneSigner {
            origin,
            apex,
            keys,
            params,
            inputs: Vec::new(),
            statics: ArcSwap::from_pointee(StaticSigs::default()),
            nsecs: Vec::new(),
            answers: SigCache::new(n),
            names: SigCache::new(n),
            limit: RateLimit::default(),
            stats: Arc::default(),
            clock: super::Clock::system(),
        }
    }

    /// Keys that sign RRsets of `rtype` here.
    fn signing_keys(&self, rtype: u16) -> impl Iterator<Item = &ZoneKey> {
        let ksk = signed_by_ksk(rtype);
        self.keys.iter().filter(move |k| {
            k.signs()
                && if ksk {
                    k.role.signs_keys()
                } else {
                    k.role.signs_zone()
                }
        })
    }

    /// Registers a static RRset (`wire`: its records without owner) at `owner`; returns the
    /// value for `RRset::sig`.
    pub fn add_static(&mut self, owner: &[u8], rtype: u16, ttl: u32, wire: &[u8]) -> u32 {
        self.inputs.push(Input {
            owner: owner.into(),
            rtype,
            ttl,
            canonical: canonical_set(rtype, &rdatas(wire)),
        });
        self.inputs.len() as u32
    }

    /// Registers the NSEC of an existing node; returns the value for `Node::nsec`.
    pub fn add_nsec(&mut self, owner: &[u8], types: &TypeSet, ttl: u32) -> u32 {
        let mut buf = [0u8; super::nsec::MAX_RDATA];
        let Some(n) = compact_rdata(&mut buf, owner, types) else {
            return 0;
        };
        let mut wire = Vec::with_capacity(10 + n);
        wire.extend_from_slice(&TYPE_NSEC.to_be_bytes());
        wire.extend_from_slice(&1u16.to_be_bytes());
        wire.extend_from_slice(&ttl.to_be_bytes());
        wire.extend_from_slice(&(n as u16).to_be_bytes());
        wire.extend_from_slice(&buf[..n]);
        let sig = self.add_static(owner, TYPE_NSEC, ttl, &wire);
        self.nsecs.push(Records {
            wire: wire.into(),
            count: 1,
            sig,
        });
        self.nsecs.len() as u32
    }

    /// Signs every static RRset for `now`.
    fn sign_statics(&self, now: u64) -> Result<StaticSigs, String> {
        let window = self.params.window(now);
        let mut sets = Vec::with_capacity(self.inputs.len());
        for i in &self.inputs {
            let f = SigFields {
                owner: &i.owner,
                rtype: i.rtype,
                ttl: i.ttl,
                signer: &self.apex,
                window,
            };
            let (wire, count) = rrsig_records(self.signing_keys(i.rtype), &f, &i.canonical)?;
            self.stats.signatures.fetch_add(u64::from(count), Relaxed);
            sets.push(Records {
                wire: wire.into(),
                count,
                sig: 0,
            });
        }
        Ok(StaticSigs {
            sets,
            inception: window.inception,
            expires: window.expiration,
            refresh_at: self.params.refresh_at(&window),
        })
    }

    /// Re-signs every static RRset now and swaps the new signatures in.
    pub fn resign(&self, now: u64) -> Result<(), String> {
        match self.sign_statics(now) {
            Ok(s) => {
                self.statics.store(Arc::new(s));
                self.stats.resigns.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.resign_failures.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// Re-signs when the static signatures are due; true when it did.
    pub fn maintain(&self, now: u64) -> Result<bool, String> {
        if now < self.statics.load().refresh_at {
            return Ok(false);
        }
        self.resign(now).map(|_| true)
    }

    /// The static signatures serving now.
    #[inline]
    pub fn statics(&self) -> arc_swap::Guard<Arc<StaticSigs>> {
        self.statics.load()
    }

    /// Seconds between re-sign checks that keep `refresh` well ahead of expiry.
    pub fn check_interval(&self) -> Duration {
        (self.params.refresh / 8).clamp(Duration::from_millis(200), Duration::from_secs(60))
    }

    /// Signatures for the RRset described by `key` (see [`DynKey`]), from `cache` or made now.
    /// `fresh` counts the RRsets signed for this response; past `budget` a miss is refused.
    pub fn dynamic(
        &self,
        cache: &SigCache,
        key: &DynKey,
        now: u64,
        fresh: &mut u32,
        budget: u32,
    ) -> Result<Hit, DynError> {
        let bytes = key.bytes();
        let h = cache.hash(bytes);
        if let Some(hit) = cache.get(h, bytes, now) {
            self.stats.cache_hits.add(1);
            return Ok(hit);
        }
        self.stats.cache_misses.add(1);
        if *fresh >= budget {
            self.stats.over_budget.fetch_add(1, Relaxed);
            return Err(DynError::OverBudget);
        }
        if !self.limit.take(now, self.params.max_online_signatures) {
            self.stats.rate_limited.fetch_add(1, Relaxed);
            return Err(DynError::RateLimited);
        }
        *fresh += 1;
        let (owner, rtype, ttl, canonical) = key.parts();
        let window = self.params.window(now);
        let f = SigFields {
            owner,
            rtype,
            ttl,
            signer: &self.apex,
            window,
        };
        let (wire, count) =
            rrsig_records(self.signing_keys(rtype), &f, &canonical).map_err(DynError::Sign)?;
        self.stats.signatures.fetch_add(u64::from(count), Relaxed);
        Ok(Hit::Fresh(cache.put(
            h,
            bytes,
            wire,
            count,
            window.expiration,
            self.params.refresh_at(&window),
        )))
    }

    /// Key ids and states for `/status`.
    pub fn key_info(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .map(|k| KeyInfo {
                tag: k.tag,
                algorithm: k.algorithm,
                role: k.role.name(),
                state: k.state.name(),
                ours: k.is_ours(),
                file: k.file.as_ref().map(|f| f.display().to_string()),
            })
            .collect()
    }

    /// Keys, signature times and counters, for `/status` and `/metrics`.
    pub fn info(&self) -> DnssecInfo {
        let st = self.statics();
        let s = &self.stats;
        DnssecInfo {
            keys: self.key_info(),
            inception_unix: st.inception,
            earliest_expiry_unix: st.expires,
            next_resign_unix: st.refresh_at,
            signatures: s.signatures.load(Relaxed),
            cache_hits: s.cache_hits.get(),
            cache_misses: s.cache_misses.get(),
            resigns: s.resigns.load(Relaxed),
            resign_failures: s.resign_failures.load(Relaxed),
            over_budget: s.over_budget.load(Relaxed),
            expired_refusals: s.expired.load(Relaxed),
            rate_limited: s.rate_limited.load(Relaxed),
        }
    }

    /// The SEP keys' DS RDATA (what the parent should hold; CDS content).
    pub fn ds_rdatas(&self) -> Result<Vec<Vec<u8>>, String> {
        self.keys
            .iter()
            .filter(|k| k.is_sep())
            .map(|k| k.ds_rdata(&self.apex))
            .collect()
    }
}

/// Why no signature could be served for an online-signed RRset.
#[derive(Debug, PartialEq, Eq)]
pub enum DynError {
    /// This response already made its share of signatures.
    OverBudget,
    /// This thread made its share of signatures this second.
    RateLimited,
    /// Signing failed.
    Sign(String),
}

/// Key bytes kept on the stack; a larger RRset (a big wildcard TXT) spills to the heap.
pub const DYN_KEY_STACK: usize = 768;

/// The cache key of an RRset signed on the query path:
/// `owner | type | ttl | (rdlength rdata)*` with the RDATA canonical and sorted. Built on
/// the stack (no allocation) unless it outgrows [`DYN_KEY_STACK`].
pub struct DynKey {
    small: [u8; DYN_KEY_STACK],
    big: Vec<u8>,
    len: usize,
    owner_len: usize,
}

impl DynKey {
    /// Starts a key for `rtype` records at `owner` (lower-cased wire name) with `ttl`.
    pub fn new(owner: &[u8], rtype: u16, ttl: u32) -> DynKey {
        let mut k = DynKey {
            small: [0; DYN_KEY_STACK],
            big: Vec::new(),
            len: 0,
            owner_len: owner.len(),
        };
        k.put(owner);
        k.put(&rtype.to_be_bytes());
        k.put(&ttl.to_be_bytes());
        k
    }

    fn spilled(&self) -> bool {
        !self.big.is_empty()
    }

    fn buf(&self) -> &[u8] {
        if self.spilled() {
            &self.big[..self.len]
        } else {
            &self.small[..self.len]
        }
    }

    fn buf_mut(&mut self) -> &mut [u8] {
        if self.spilled() {
            &mut self.big[..self.len]
        } else {
            &mut self.small[..self.len]
        }
    }

    fn put(&mut self, b: &[u8]) {
        if !self.spilled() && self.len + b.len() <= DYN_KEY_STACK {
            self.small[self.len..self.len + b.len()].copy_from_slice(b);
        } else {
            if !self.spilled() {
                self.big.extend_from_slice(&self.small[..self.len]);
            }
            self.big.truncate(self.len);
            self.big.extend_from_slice(b);
        }
        self.len += b.len();
    }

    fn rtype(&self) -> u16 {
        let b = self.buf();
        u16::from_be_bytes([b[self.owner_len], b[self.owner_len + 1]])
    }

    /// Adds the RDATA of a set given as slices (any order, any case): canonicalized,
    /// sorted and deduplicated.
    pub fn rdatas<'a>(&mut self, items: impl Iterator<Item = &'a [u8]>) {
        let rtype = self.rtype();
        let start = self.len;
        let mut in_order = true;
        let mut prev: (usize, usize) = (0, 0);
        for (n, r) in items.enumerate() {
            self.put(&(r.len() as u16).to_be_bytes());
            let at = self.len;
            self.put(r);
            let b = self.buf_mut();
            sign::canonicalize(rtype, &mut b[at..at + r.len()]);
            let b = self.buf();
            if n > 0 && b[prev.0..prev.0 + prev.1] >= b[at..at + r.len()] {
                in_order = false;
            }
            prev = (at, r.len());
        }
        if in_order {
            return; // already canonical order, no duplicates (the usual case)
        }
        // Out of order (a rotated answer): sort the items, then rewrite them in place.
        let mut offs = [(0usize, 0usize); 64];
        let mut many: Vec<(usize, usize)> = Vec::new();
        let mut at = start;
        let mut count = 0usize;
        while at + 2 <= self.len {
            let b = self.buf();
            let l = u16::from_be_bytes([b[at], b[at + 1]]) as usize;
            if count < offs.len() {
                offs[count] = (at + 2, l);
            } else {
                if many.is_empty() {
                    many.extend_from_slice(&offs);
                }
                many.push((at + 2, l));
            }
            count += 1;
            at += 2 + l;
        }
        let list: &mut [(usize, usize)] = if many.is_empty() {
            &mut offs[..count]
        } else {
            &mut many[..]
        };
        let b = self.buf();
        list.sort_unstable_by(|x, y| b[x.0..x.0 + x.1].cmp(&b[y.0..y.0 + y.1]));
        let total = self.len - start;
        let mut scratch_small = [0u8; DYN_KEY_STACK];
        let mut scratch_big = Vec::new();
        let scratch: &mut [u8] = if total <= DYN_KEY_STACK {
            &mut scratch_small[..total]
        } else {
            scratch_big.resize(total, 0);
            &mut scratch_big[..]
        };
        let mut len = 0usize;
        let mut last: Option<(usize, usize)> = None;
        for &o in list.iter() {
            if last.is_some_and(|p| b[p.0..p.0 + p.1] == b[o.0..o.0 + o.1]) {
                continue;
            }
            scratch[len..len + 2].copy_from_slice(&(o.1 as u16).to_be_bytes());
            scratch[len + 2..len + 2 + o.1].copy_from_slice(&b[o.0..o.0 + o.1]);
            len += 2 + o.1;
            last = Some(o);
        }
        let b = self.buf_mut();
        b[start..start + len].copy_from_slice(&scratch[..len]);
        self.len = start + len;
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf()
    }

    /// (owner, type, ttl, canonical RDATA) back out of the key, for signing a miss.
    fn parts(&self) -> (&[u8], u16, u32, Vec<Vec<u8>>) {
        let b = self.buf();
        let o = self.owner_len;
        let ttl = u32::from_be_bytes([b[o + 2], b[o + 3], b[o + 4], b[o + 5]]);
        let mut v = Vec::new();
        let mut at = o + 6;
        while at + 2 <= b.len() {
            let l = u16::from_be_bytes([b[at], b[at + 1]]) as usize;
            v.push(b[at + 2..at + 2 + l].to_vec());
            at += 2 + l;
        }
        (&b[..o], self.rtype(), ttl, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::keys::{KeyState, Role};
    use crate::dnssec::verify::verify_response;
    use hickory_proto::dnssec::crypto::EcdsaSigningKey;

    fn key(role: Role) -> ZoneKey {
        let der =
            EcdsaSigningKey::generate_pkcs8(hickory_proto::dnssec::Algorithm::ECDSAP256SHA256)
                .unwrap();
        let k =
            EcdsaSigningKey::from_pkcs8(&der, hickory_proto::dnssec::Algorithm::ECDSAP256SHA256)
                .unwrap();
        ZoneKey::from_signer(Box::new(k), role, KeyState::Active)
    }

    const APEX: &[u8] = b"\x07example\x03com\x00";

    /// Records `TYPE CLASS TTL RDLENGTH RDATA` of one RRset.
    fn encode(rtype: u16, ttl: u32, values: &[Vec<u8>]) -> Vec<u8> {
        let mut w = Vec::new();
        for v in values {
            w.extend_from_slice(&rtype.to_be_bytes());
            w.extend_from_slice(&1u16.to_be_bytes());
            w.extend_from_slice(&ttl.to_be_bytes());
            w.extend_from_slice(&(v.len() as u16).to_be_bytes());
            w.extend_from_slice(v);
        }
        w
    }

    /// A response whose answer section is `owner` + each record of `sets`.
    fn message(owner: &[u8], sets: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![0, 1, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut n = 0u16;
        for set in sets {
            let mut at = 0;
            while at + 10 <= set.len() {
                let len = u16::from_be_bytes([set[at + 8], set[at + 9]]) as usize;
                v.extend_from_slice(owner);
                v.extend_from_slice(&set[at..at + 10 + len]);
                at += 10 + len;
                n += 1;
            }
        }
        v[6..8].copy_from_slice(&n.to_be_bytes());
        v
    }

    fn records(rtype: u16, ttl: u32, rdatas: &[&[u8]]) -> Vec<u8> {
        encode(
            rtype,
            ttl,
            &rdatas.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn online_signatures_verify_with_hickory_and_are_cached() {
        let signer = ZoneSigner::new(
            "example.com.".into(),
            APEX.into(),
            vec![key(Role::Csk)],
            Params::default(),
        );
        let dnskeys: Vec<Vec<u8>> = signer.keys.iter().map(|k| k.dnskey.clone()).collect();
        let now = 1_800_000_000;
        // Mixed case and out of canonical order, as a zone file or a rotation may write them.
        let owner_case = b"\x03WwW\x07example\x03com\x00";
        let owner = b"\x03www\x07example\x03com\x00";
        let mx: [&[u8]; 2] = [
            b"\x00\x14\x02MX\x07Example\x03com\x00",
            b"\x00\x0a\x02mx\x07example\x03com\x00",
        ];
        let mut k = DynKey::new(owner, 15, 300);
        k.rdatas(mx.iter().copied());
        let mut fresh = 0;
        let hit = signer
            .dynamic(&signer.answers, &k, now, &mut fresh, 9)
            .unwrap();
        assert_eq!(fresh, 1);
        let e = hit.entry().unwrap();
        assert_eq!(e.count, 1);
        assert_eq!(e.expires, now + 14 * 86400);
        let resp = message(owner_case, &[&records(15, 300, &mx), &e.wire]);
        let v = verify_response(&resp, &dnskeys, now).unwrap();
        assert_eq!(v.signatures, 1);
        assert!(v.unsigned.is_empty());
        // Another order of the same set is the same key: a hit, no new signature.
        let mut k2 = DynKey::new(owner, 15, 300);
        k2.rdatas(mx.iter().rev().copied());
        assert_eq!(k.bytes(), k2.bytes());
        signer
            .dynamic(&signer.answers, &k2, now + 10, &mut fresh, 9)
            .unwrap();
        assert_eq!(fresh, 1);
        // A different TTL is a different RRset.
        let k3 = {
            let mut k = DynKey::new(owner, 15, 150);
            k.rdatas(mx.iter().copied());
            k
        };
        signer
            .dynamic(&signer.answers, &k3, now, &mut fresh, 9)
            .unwrap();
        assert_eq!(fresh, 2);
        // Past the per-response budget a miss is refused (a hit is still served).
        let mut spent = 1;
        assert!(matches!(
            signer.dynamic(&signer.names, &k3, now, &mut spent, 1),
            Err(DynError::OverBudget)
        ));
        assert!(
            signer
                .dynamic(&signer.answers, &k3, now, &mut spent, 1)
                .is_ok()
        );
        // Due for refresh: signed again, with a later expiration.
        let later = now + 8 * 86400;
        let hit = signer
            .dynamic(&signer.answers, &k, later, &mut fresh, 9)
            .unwrap();
        assert_eq!(fresh, 3);
        assert_eq!(hit.entry().unwrap().expires, later + 14 * 86400);
        // Tampered data does not verify (the check can fail).
        let mut bad = resp.clone();
        let at = bad.windows(4).position(|w| w == b"\x02MX\x07").unwrap();
        bad[at + 1] = b'Q';
        assert!(
            verify_response(&bad, &dnskeys, now)
                .unwrap_err()
                .contains("does not verify")
        );
        // Expired at validation time.
        assert!(
            verify_response(&resp, &dnskeys, now + 15 * 86400)
                .unwrap_err()
                .contains("expired")
        );
    }

    #[test]
    fn keys_sort_rotated_sets_and_spill_large_ones_to_the_heap() {
        let owner = b"\x03www\x07example\x03com\x00";
        let mut a = DynKey::new(owner, 1, 30);
        a.rdatas([&[10u8, 0, 0, 2][..], &[10, 0, 0, 1], &[10, 0, 0, 2]].into_iter());
        let mut b = DynKey::new(owner, 1, 30);
        b.rdatas([&[10u8, 0, 0, 1][..], &[10, 0, 0, 2]].into_iter());
        assert_eq!(a.bytes(), b.bytes());
        // 100 TXT strings of 20 bytes: 2.2 kB, on the heap, still sorted and complete.
        let items: Vec<Vec<u8>> = (0..100u8)
            .rev()
            .map(|i| {
                vec![
                    19, i, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
                ]
            })
            .collect();
        let mut big = DynKey::new(owner, 16, 30);
        big.rdatas(items.iter().map(|v| v.as_slice()));
        assert!(big.bytes().len() > DYN_KEY_STACK);
        let (o, t, ttl, set) = big.parts();
        assert_eq!((o, t, ttl, set.len()), (&owner[..], 16, 30, 100));
        assert!(set.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ksk_signs_keys_and_zsk_the_rest_and_statics_are_resigned_when_due() {
        let mut signer = ZoneSigner::new(
            "example.com.".into(),
            APEX.into(),
            vec![key(Role::Ksk), key(Role::Zsk)],
            Params {
                validity: Duration::from_secs(100),
                refresh: Duration::from_secs(40),
                ..Params::default()
            },
        );
        let dnskeys: Vec<Vec<u8>> = signer.keys.iter().map(|k| k.dnskey.clone()).collect();
        let keyset = encode(48, 3600, &dnskeys);
        let a = encode(1, 60, &[vec![192, 0, 2, 1]]);
        let i_keys = signer.add_static(APEX, 48, 3600, &keyset) as usize - 1;
        let i_a = signer.add_static(APEX, 1, 60, &a) as usize - 1;
        let now = 1_800_000_000;
        signer.resign(now).unwrap();
        let s = signer.statics();
        let tag_of = |set: &Records| u16::from_be_bytes([set.wire[10 + 16], set.wire[10 + 17]]);
        assert_eq!(tag_of(&s.sets[i_keys]), signer.keys[0].tag);
        assert_eq!(tag_of(&s.sets[i_a]), signer.keys[1].tag);
        let resp = message(
            APEX,
            &[&keyset, &s.sets[i_keys].wire, &a, &s.sets[i_a].wire],
        );
        assert_eq!(verify_response(&resp, &dnskeys, now).unwrap().signatures, 2);
        assert_eq!((s.expires, s.refresh_at), (now + 100, now + 60));
        drop(s);
        assert!(!signer.maintain(now + 59).unwrap());
        assert!(signer.maintain(now + 60).unwrap());
        assert_eq!(signer.statics().expires, now + 160);
        assert_eq!(signer.stats.resigns.load(Relaxed), 2);
    }
}
