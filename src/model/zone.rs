//! The immutable zone table the query path reads.
//!
//! Built once per load from validated specs (by `config::build`): names become lowercased wire-form keys, every
//! RRset is pre-encoded (type, class, TTL, RDLENGTH, RDATA) so an answer is a pointer to the
//! query name plus a memcpy, and the additional data of NS/MX/SRV targets is pre-encoded too.

use std::path::PathBuf;

use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;

use crate::dnssec::nsec::TypeSet;
use crate::rr::{CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_DS, TYPE_NS, TYPE_NSEC, TYPE_RRSIG};

/// One RRset, ready to copy into a response after an owner name.
#[derive(Clone, Debug, Default)]
pub(crate) struct RRset {
    /// Record type number.
    pub(crate) rtype: u16,
    /// TTL of every record of the set, seconds.
    pub(crate) ttl: u32,
    /// Number of records (the ANCOUNT it adds).
    pub(crate) count: u16,
    /// `count` times: TYPE CLASS TTL RDLENGTH RDATA.
    pub(crate) wire: Box<[u8]>,
    /// Full records (owner included) of in-zone addresses of the names this RRset points
    /// to (NS, MX, SRV targets; glue under a delegation).
    pub(crate) additional: Box<[u8]>,
    /// Number of records in `additional`.
    pub(crate) additional_count: u16,
    /// 1 + index of its signatures in the zone's DNSSEC statics (0: not signed).
    pub(crate) sig: u32,
}

impl RRset {
    /// Encodes `values` with one TTL.
    pub(crate) fn encode(rtype: u16, ttl: u32, values: &[Vec<u8>]) -> RRset {
        let mut wire = Vec::with_capacity(values.iter().map(|v| v.len() + 10).sum());
        for v in values {
            wire.extend_from_slice(&rtype.to_be_bytes());
            wire.extend_from_slice(&CLASS_IN.to_be_bytes());
            wire.extend_from_slice(&ttl.to_be_bytes());
            wire.extend_from_slice(&(v.len() as u16).to_be_bytes());
            wire.extend_from_slice(v);
        }
        RRset {
            rtype,
            ttl,
            count: values.len() as u16,
            wire: wire.into(),
            ..Default::default()
        }
    }
}

/// An `ALIAS` record: A and AAAA queries are answered with the target's current addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Alias {
    /// The target.
    pub(crate) target: super::hostname::HostnameId,
    /// The most the answer's TTL may be (also capped by the target's remaining TTL).
    pub(crate) ttl: u32,
}

/// A name in a zone: its RRsets, or nothing (an empty non-terminal).
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    /// One entry per record type, in file order.
    pub(crate) rrsets: Vec<RRset>,
    /// NS records below the apex: a zone cut, answered with a referral.
    pub(crate) cut: bool,
    /// Lower-cased wire form of the CNAME target, when the node is a CNAME.
    pub(crate) cname: Option<Box<[u8]>>,
    /// The GSLB name answered here for A/AAAA (index into `Model::gslb`); every type when
    /// the name may answer a CNAME (`GslbEntry::cname`).
    pub(crate) gslb: Option<u32>,
    /// An `ALIAS`: A/AAAA answered from the target's addresses.
    pub(crate) alias: Option<Alias>,
    /// 1 + index of this name's NSEC in the zone's DNSSEC signer (0: zone not signed).
    pub(crate) nsec: u32,
}

impl Node {
    /// The RRset of type `rtype`, if the node has one.
    pub(crate) fn rrset(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    /// Holds no data of its own (empty non-terminal).
    pub(crate) fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.gslb.is_none() && self.alias.is_none()
    }

    /// The RR types present here, for its NSEC (RRSIG and NSEC included); at a delegation
    /// only NS and DS (the rest is the child's or glue).
    pub(crate) fn nsec_types(&self) -> TypeSet {
        let mut t = TypeSet::default();
        for rr in &self.rrsets {
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
    pub(crate) soa: RRset,
    /// The SOA as put in the authority section of negative answers: TTL = min(TTL, minimum).
    pub(crate) soa_negative: RRset,
    /// Every name of the zone (empty non-terminals included), by lower-cased wire key.
    pub(crate) nodes: FxHashMap<Box<[u8]>, Node>,
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
    /// The node at lower-cased wire key `key`, if the zone has that name.
    pub(crate) fn node(&self, key: &[u8]) -> Option<&Node> {
        self.nodes.get(key)
    }
}
