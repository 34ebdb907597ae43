//! The immutable zone table the query path reads.
//!
//! Built once per load from validated specs (by `config::build`): names become lowercased
//! wire-form keys, every RRset is pre-encoded (type, class, TTL, RDLENGTH, RDATA) so an answer
//! is a pointer to the query name plus a memcpy, and the additional data of NS/MX/SRV targets
//! is pre-encoded too.
//!
//! ```text
//! Nodes: names    [ key | key | key ...]            lower-cased wire names (and CNAME targets)
//!        data     [ records of a set | ... ]          TYPE CLASS TTL RDLENGTH RDATA, per set
//!        extra    [ additional data | ... ]           full records (owner included)
//!        rrsets   [ RRsetEntry ... ]                  a node's sets are contiguous
//!        entries  [ NodeEntry ... ]                   name, sets, cut, CNAME, GSLB name, NSEC
//!        index    hash table of entry numbers, by key
//! ```
//! A zone is a handful of allocations whatever its size, about 90 bytes for a name with one
//! A record (the issue 9 figures are in docs/benchmarks.md): no allocation per name or per
//! RRset, which also keeps the allocator from fragmenting across reloads. Lookups hash the key
//! once and compare it with the stored one, as a map of boxed keys would.

use std::hash::Hasher as _;
use std::path::PathBuf;

use hashbrown::HashTable;
use hickory_proto::rr::Name;
use rustc_hash::FxHasher;

use crate::dnssec::nsec::TypeSet;
use crate::rr::{CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_DS, TYPE_NS, TYPE_NSEC, TYPE_RRSIG};

/// A run of bytes in one of a zone's arenas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    /// Offset of the first byte.
    pub(crate) at: u32,
    /// Length.
    pub(crate) len: u32,
}

impl Span {
    /// The bytes of this span in `arena`.
    #[inline]
    pub(crate) fn of(self, arena: &[u8]) -> &[u8] {
        &arena[self.at as usize..self.at as usize + self.len as usize]
    }

    /// Appends `bytes` to `arena` and returns where they went.
    pub(crate) fn push(arena: &mut Vec<u8>, bytes: &[u8]) -> Span {
        let at = arena.len();
        arena.extend_from_slice(bytes);
        Span {
            at: at as u32,
            len: bytes.len() as u32,
        }
    }
}

/// One RRset, ready to copy into a response after an owner name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RRset<'a> {
    /// Record type number.
    pub(crate) rtype: u16,
    /// TTL of every record of the set, seconds.
    pub(crate) ttl: u32,
    /// Number of records (the ANCOUNT it adds).
    pub(crate) count: u16,
    /// `count` times: TYPE CLASS TTL RDLENGTH RDATA.
    pub(crate) wire: &'a [u8],
    /// Full records (owner included) of in-zone addresses of the names this RRset points
    /// to (NS, MX, SRV targets; glue under a delegation).
    pub(crate) additional: &'a [u8],
    /// Number of records in `additional`.
    pub(crate) additional_count: u16,
    /// 1 + index of its signatures in the zone's DNSSEC statics (0: not signed).
    pub(crate) sig: u32,
}

/// The TTL of the first record of `wire` (TYPE CLASS TTL RDLENGTH RDATA ...); 0 when empty.
#[inline]
fn first_ttl(wire: &[u8]) -> u32 {
    match wire.get(4..8) {
        Some(t) => u32::from_be_bytes([t[0], t[1], t[2], t[3]]),
        None => 0,
    }
}

/// An RRset kept outside a node table (the SOA of a zone), or on its way into one.
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnedRRset {
    /// Record type number.
    pub(crate) rtype: u16,
    /// 1 + index of its signatures in the zone's DNSSEC statics (0: not signed).
    pub(crate) sig: u32,
    /// TTL of every record of the set, seconds.
    pub(crate) ttl: u32,
    /// Number of records.
    pub(crate) count: u16,
    /// `count` times: TYPE CLASS TTL RDLENGTH RDATA.
    pub(crate) wire: Box<[u8]>,
}

impl OwnedRRset {
    /// Encodes `values` (RDATA each) with one TTL.
    pub(crate) fn encode(rtype: u16, ttl: u32, values: &[Vec<u8>]) -> OwnedRRset {
        let mut wire = Vec::with_capacity(values.iter().map(|v| v.len() + 10).sum());
        for v in values {
            encode_record(&mut wire, rtype, ttl, v);
        }
        OwnedRRset {
            rtype,
            sig: 0,
            ttl,
            count: values.len() as u16,
            wire: wire.into(),
        }
    }

    /// The set as the answer code copies it.
    #[inline]
    pub(crate) fn view(&self) -> RRset<'_> {
        RRset {
            rtype: self.rtype,
            ttl: self.ttl,
            count: self.count,
            wire: &self.wire,
            additional: &[],
            additional_count: 0,
            sig: self.sig,
        }
    }
}

/// Appends one record without its owner: TYPE CLASS(IN) TTL RDLENGTH RDATA.
pub(crate) fn encode_record(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// One RRset of a node table: where its records (in `data`) and additional data (in
/// `extra`) are.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RRsetEntry {
    /// Record type number.
    pub(crate) rtype: u16,
    /// Number of records.
    pub(crate) count: u16,
    /// The records (the TTL is in them), in `Nodes::data`.
    pub(crate) wire: Span,
    /// The additional records, in `Nodes::extra`.
    pub(crate) additional: Span,
    /// Number of additional records.
    pub(crate) additional_count: u16,
    /// 1 + index of its signatures in the zone's DNSSEC statics (0: not signed).
    pub(crate) sig: u32,
}

/// No GSLB name at a node.
const NO_GSLB: u32 = u32::MAX;

/// No ALIAS at a node.
const NO_ALIAS: u32 = u32::MAX;

/// An `ALIAS` record: A and AAAA queries are answered with the target's current addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Alias {
    /// The target.
    pub(crate) target: super::hostname::HostnameId,
    /// The most the answer's TTL may be (also capped by the target's remaining TTL).
    pub(crate) ttl: u32,
}

/// One name of a node table.
#[derive(Clone, Copy, Debug)]
struct NodeEntry {
    /// The key, in `names`.
    name: Span,
    /// First of its RRsets in `rrsets`.
    rrsets_at: u32,
    /// How many.
    rrsets_len: u16,
    /// NS below the apex.
    cut: bool,
    /// Lower-cased CNAME target, in `names` (empty: not a CNAME).
    cname: Span,
    /// GSLB name answered here, or `NO_GSLB`.
    gslb: u32,
    /// 1 + index of this name's NSEC in the zone's DNSSEC signer (0: zone not signed).
    nsec: u32,
    /// ALIAS target (a `HostnameId`), or `NO_ALIAS`.
    alias_target: u32,
    /// ALIAS TTL cap.
    alias_ttl: u32,
}

/// A name in a zone, as the answer code reads it: its RRsets, or nothing (an empty
/// non-terminal).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node<'a> {
    /// NS records below the apex: a zone cut, answered with a referral.
    pub(crate) cut: bool,
    /// Lower-cased wire form of the CNAME target, when the node is a CNAME.
    pub(crate) cname: Option<&'a [u8]>,
    /// The GSLB name answered here for A/AAAA (index into `Model::gslb`); every type when
    /// the name may answer a CNAME (`GslbEntry::cname`).
    pub(crate) gslb: Option<u32>,
    /// An `ALIAS`: A/AAAA answered from the target's addresses.
    pub(crate) alias: Option<Alias>,
    /// 1 + index of this name's NSEC in the zone's DNSSEC signer (0: zone not signed).
    pub(crate) nsec: u32,
    /// Its RRsets (type and place; [`Node::rrset`] and [`Node::rrsets`] give the records).
    pub(crate) rrsets: &'a [RRsetEntry],
    nodes: &'a Nodes,
}

impl<'a> Node<'a> {
    /// The RRset of type `rtype`, if the node has one.
    #[inline]
    pub(crate) fn rrset(&self, rtype: u16) -> Option<RRset<'a>> {
        let e = self.rrsets.iter().find(|r| r.rtype == rtype)?;
        Some(self.nodes.view(e))
    }

    /// Every RRset of the node.
    pub(crate) fn rrsets(&self) -> impl Iterator<Item = RRset<'a>> + use<'a> {
        let nodes = self.nodes;
        self.rrsets.iter().map(move |e| nodes.view(e))
    }

    /// Holds no data of its own (empty non-terminal).
    pub(crate) fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.gslb.is_none() && self.alias.is_none()
    }

    /// The RR types present here, for its NSEC (RRSIG and NSEC included); at a delegation
    /// only NS and DS (the rest is the child's or glue).
    pub(crate) fn nsec_types(&self) -> TypeSet {
        let mut t = TypeSet::default();
        for rr in self.rrsets {
            if !self.cut || rr.rtype == TYPE_NS || rr.rtype == TYPE_DS {
                t.insert(rr.rtype);
            }
        }
        // GSLB names and ALIASes answer A/AAAA (a GSLB name may answer a CNAME instead, but
        // never holds one: a NODATA there proves A/AAAA-or-nothing, not a CNAME).
        if (self.gslb.is_some() || self.alias.is_some()) && !self.cut {
            t.insert(TYPE_A);
            t.insert(TYPE_AAAA);
        }
        t.insert(TYPE_RRSIG);
        t.insert(TYPE_NSEC);
        t
    }
}

/// Every name of a zone (empty non-terminals included), by lower-cased wire key: the arenas
/// of the module doc.
#[derive(Clone, Debug, Default)]
pub(crate) struct Nodes {
    names: Vec<u8>,
    data: Vec<u8>,
    extra: Vec<u8>,
    rrsets: Vec<RRsetEntry>,
    entries: Vec<NodeEntry>,
    index: HashTable<u32>,
}

/// The hash of a key (FxHash, as the model's other tables).
#[inline]
fn hash(key: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key);
    h.finish()
}

impl Nodes {
    /// A table over arenas the caller filled: `names` holds the names' keys, `data` their
    /// records; names are added with [`Nodes::add_at`], their RRsets given with
    /// [`Nodes::set_rrsets`]. A big zone's records become the model's without a copy, so a
    /// reload holds one copy of them beside the old model, not two (issue 9).
    pub(crate) fn over(names: Vec<u8>, data: Vec<u8>, room: usize) -> Nodes {
        Nodes {
            names,
            data,
            extra: Vec::new(),
            rrsets: Vec::new(),
            entries: Vec::with_capacity(room),
            index: HashTable::with_capacity(room),
        }
    }

    /// The number of the name `key`, if the table has it.
    #[inline]
    pub(crate) fn number(&self, key: &[u8]) -> Option<u32> {
        let names = &self.names;
        let entries = &self.entries;
        self.index
            .find(hash(key), |&i| entries[i as usize].name.of(names) == key)
            .copied()
    }

    #[inline]
    fn view(&self, e: &RRsetEntry) -> RRset<'_> {
        let wire = e.wire.of(&self.data);
        RRset {
            rtype: e.rtype,
            ttl: first_ttl(wire),
            count: e.count,
            wire,
            additional: e.additional.of(&self.extra),
            additional_count: e.additional_count,
            sig: e.sig,
        }
    }

    fn node(&self, e: &NodeEntry) -> Node<'_> {
        let at = e.rrsets_at as usize;
        Node {
            cut: e.cut,
            cname: (e.cname.len > 0).then(|| e.cname.of(&self.names)),
            gslb: (e.gslb != NO_GSLB).then_some(e.gslb),
            alias: (e.alias_target != NO_ALIAS).then_some(Alias {
                target: super::hostname::HostnameId(e.alias_target),
                ttl: e.alias_ttl,
            }),
            nsec: e.nsec,
            rrsets: &self.rrsets[at..at + usize::from(e.rrsets_len)],
            nodes: self,
        }
    }

    /// The node at lower-cased wire key `key`, if the zone has that name.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<Node<'_>> {
        let i = self.number(key)?;
        Some(self.node(&self.entries[i as usize]))
    }

    /// Adds the name `key` with no data and returns its number; `Err` with its number if it
    /// exists already.
    fn add(&mut self, key: &[u8]) -> Result<u32, u32> {
        if let Some(i) = self.number(key) {
            return Err(i);
        }
        let name = Span::push(&mut self.names, key);
        Ok(self.insert(name))
    }

    /// Adds the name whose key is already in the names arena at `key`, with no data, and
    /// returns its number; `Err` with its number if the table has that name.
    pub(crate) fn add_at(&mut self, key: Span) -> Result<u32, u32> {
        match self.number(key.of(&self.names)) {
            Some(i) => Err(i),
            None => Ok(self.insert(key)),
        }
    }

    /// A new entry for the name at `name` (not in the table yet).
    fn insert(&mut self, name: Span) -> u32 {
        let i = self.entries.len() as u32;
        self.entries.push(NodeEntry {
            name,
            rrsets_at: self.rrsets.len() as u32,
            rrsets_len: 0,
            cut: false,
            cname: Span::default(),
            gslb: NO_GSLB,
            nsec: 0,
            alias_target: NO_ALIAS,
            alias_ttl: 0,
        });
        let (names, entries) = (&self.names, &self.entries);
        self.index.insert_unique(hash(name.of(names)), i, |&j| {
            hash(entries[j as usize].name.of(names))
        });
        i
    }

    /// The arena of names' keys (and CNAME targets).
    pub(crate) fn names(&self) -> &[u8] {
        &self.names
    }

    /// The records of every RRset (TYPE CLASS TTL RDLENGTH RDATA each).
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }

    /// The key of name number `n`.
    pub(crate) fn key(&self, n: u32) -> &[u8] {
        self.entries[n as usize].name.of(&self.names)
    }

    /// Gives name number `n` the RRsets `at..at + len` of the table [`Nodes::set_rrsets`]
    /// puts in later.
    pub(crate) fn set_rrsets_of(&mut self, n: u32, at: usize, len: usize) {
        let e = &mut self.entries[n as usize];
        e.rrsets_at = at as u32;
        e.rrsets_len = u16::try_from(len).unwrap_or(u16::MAX);
    }

    /// Makes name number `n` a zone cut (NS below the apex).
    pub(crate) fn set_cut(&mut self, n: u32) {
        self.entries[n as usize].cut = true;
    }

    /// Where the RRsets of name number `n` are (given by [`Nodes::set_rrsets_of`]).
    pub(crate) fn rrsets_of(&self, n: u32) -> std::ops::Range<usize> {
        let e = &self.entries[n as usize];
        e.rrsets_at as usize..e.rrsets_at as usize + usize::from(e.rrsets_len)
    }

    /// Whether name number `n` is a zone cut.
    pub(crate) fn is_cut(&self, n: u32) -> bool {
        self.entries[n as usize].cut
    }

    /// Makes name number `n` a CNAME to `target` (lower-cased wire form).
    pub(crate) fn set_cname(&mut self, n: u32, target: &[u8]) {
        let cname = Span::push(&mut self.names, target);
        self.entries[n as usize].cname = cname;
    }

    /// Appends additional records (owner included) and returns where they went.
    pub(crate) fn push_extra(&mut self, records: &[u8]) -> Span {
        Span::push(&mut self.extra, records)
    }

    /// The RRsets of every name, as [`Nodes::set_rrsets_of`] placed them.
    pub(crate) fn set_rrsets(&mut self, rrsets: Vec<RRsetEntry>) {
        self.rrsets = rrsets;
    }

    /// How many names the table holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The key and the node of name number `i` (`0..len()`, in the order they were added).
    pub(crate) fn at(&self, i: usize) -> (&[u8], Node<'_>) {
        let e = &self.entries[i];
        (e.name.of(&self.names), self.node(e))
    }

    /// Sets the signature indexes of name number `i`: `sigs[j]` for its `j`-th RRset (as
    /// [`Node::rrsets`] lists them), and its NSEC.
    pub(crate) fn set_signatures(&mut self, i: usize, sigs: &[u32], nsec: u32) {
        let e = &mut self.entries[i];
        e.nsec = nsec;
        let at = e.rrsets_at as usize;
        for (r, &sig) in self.rrsets[at..at + usize::from(e.rrsets_len)]
            .iter_mut()
            .zip(sigs)
        {
            r.sig = sig;
        }
    }

    /// Puts `sets` at `key` (added if new), each replacing an RRset of its type. The name's
    /// RRsets move to the end of the table to stay contiguous (the old entries stay unused:
    /// for the apex, which gets its SOA this way, and the key RRsets of a signed zone).
    pub(crate) fn replace_rrsets(&mut self, key: &[u8], sets: &[OwnedRRset]) {
        let i = match self.add(key) {
            Ok(i) | Err(i) => i as usize,
        };
        let e = self.entries[i];
        let at = e.rrsets_at as usize;
        let mut kept: Vec<RRsetEntry> = self.rrsets[at..at + usize::from(e.rrsets_len)]
            .iter()
            .filter(|r| sets.iter().all(|s| s.rtype != r.rtype))
            .copied()
            .collect();
        for s in sets {
            kept.push(RRsetEntry {
                rtype: s.rtype,
                count: s.count,
                wire: Span::push(&mut self.data, &s.wire),
                additional: Span::default(),
                additional_count: 0,
                sig: s.sig,
            });
        }
        let e = &mut self.entries[i];
        e.rrsets_at = self.rrsets.len() as u32;
        // At most one RRset per type, and fewer writable types than this.
        debug_assert!(kept.len() <= usize::from(u16::MAX));
        e.rrsets_len = kept.len() as u16;
        self.rrsets.extend(kept);
    }

    /// Makes sure `key` exists (as an empty non-terminal if new).
    pub(crate) fn ensure(&mut self, key: &[u8]) {
        let _ = self.add(key);
    }

    /// Places GSLB name `id` at `key` (added if new).
    pub(crate) fn set_gslb(&mut self, key: &[u8], id: u32) {
        let i = match self.add(key) {
            Ok(i) | Err(i) => i,
        };
        self.entries[i as usize].gslb = id;
    }

    /// Places an ALIAS at `key` (added if new).
    pub(crate) fn set_alias(&mut self, key: &[u8], alias: Alias) {
        let i = match self.add(key) {
            Ok(i) | Err(i) => i,
        };
        let e = &mut self.entries[i as usize];
        e.alias_target = alias.target.0;
        e.alias_ttl = alias.ttl;
    }

    /// Every name with its node, in the order they were added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], Node<'_>)> {
        self.entries
            .iter()
            .map(|e| (e.name.of(&self.names), self.node(e)))
    }

    /// Gives back the memory reserved beyond what the table holds.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.data.shrink_to_fit();
        self.extra.shrink_to_fit();
        self.rrsets.shrink_to_fit();
        self.entries.shrink_to_fit();
        let (names, entries) = (&self.names, &self.entries);
        self.index
            .shrink_to_fit(|&j| hash(entries[j as usize].name.of(names)));
    }

    /// Bytes held by the table (its arenas and index), for tests and figures.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.names.capacity()
            + self.data.capacity()
            + self.extra.capacity()
            + self.rrsets.capacity() * size_of::<RRsetEntry>()
            + self.entries.capacity() * size_of::<NodeEntry>()
            + self.index.capacity() * (size_of::<u32>() + 1)
    }
}

/// One authoritative zone.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The zone apex, fully qualified.
    pub(crate) origin: Name,
    /// The zone file it was loaded from (for status and messages).
    pub(crate) file: PathBuf,
    /// SOA serial.
    pub(crate) serial: u32,
    /// Lower-cased wire form of the origin.
    pub(crate) apex: Box<[u8]>,
    /// The SOA as answered to SOA queries.
    pub(crate) soa: OwnedRRset,
    /// The SOA as put in the authority section of negative answers: TTL = min(TTL, minimum).
    pub(crate) soa_negative: OwnedRRset,
    /// Every name of the zone (empty non-terminals included), by lower-cased wire key.
    pub(crate) nodes: Nodes,
    /// Some name below the apex is delegated (lookups then check for referrals).
    pub(crate) has_cuts: bool,
    /// Static resource records (one per value), the SOA included.
    pub record_count: usize,
    /// GSLB names placed in the zone.
    pub(crate) gslb_count: usize,
    /// Keys and signatures when the zone is signed (`[dnssec]`).
    pub dnssec: Option<std::sync::Arc<crate::dnssec::ZoneSigner>>,
}

impl Zone {
    /// The zone apex, fully qualified.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The node at lower-cased wire key `key`, if the zone has that name.
    #[inline]
    pub(crate) fn node(&self, key: &[u8]) -> Option<Node<'_>> {
        self.nodes.get(key)
    }

    /// Bytes the zone's tables take on the heap (names, records, index; not the SOA).
    pub fn heap_bytes(&self) -> usize {
        self.nodes.heap_bytes()
    }
}
