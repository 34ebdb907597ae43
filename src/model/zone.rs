//! The immutable zone table the query path reads.
//!
//! Built once per load from validated specs (by `config::build`): names become lowercased wire-form keys, every
//! RRset is pre-encoded (type, class, TTL, RDLENGTH, RDATA) so an answer is a pointer to the
//! query name plus a memcpy, and the additional data of NS/MX/SRV targets is pre-encoded too.

use std::path::PathBuf;

use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;

use crate::rr::CLASS_IN;

/// One RRset, ready to copy into a response after an owner name.
#[derive(Clone, Debug, Default)]
pub struct RRset {
    pub rtype: u16,
    pub ttl: u32,
    pub count: u16,
    /// `count` times: TYPE CLASS TTL RDLENGTH RDATA.
    pub wire: Box<[u8]>,
    /// Full records (owner included) of in-zone addresses of the names this RRset points
    /// to (NS, MX, SRV targets; glue under a delegation).
    pub additional: Box<[u8]>,
    pub additional_count: u16,
}

impl RRset {
    /// Encodes `values` with one TTL.
    pub fn encode(rtype: u16, ttl: u32, values: &[Vec<u8>]) -> RRset {
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
pub struct Alias {
    /// The target.
    pub target: super::hostname::HostnameId,
    /// The most the answer's TTL may be (also capped by the target's remaining TTL).
    pub ttl: u32,
}

/// A name in a zone: its RRsets, or nothing (an empty non-terminal).
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub rrsets: Vec<RRset>,
    /// NS records below the apex: a zone cut, answered with a referral.
    pub cut: bool,
    /// Lower-cased wire form of the CNAME target, when the node is a CNAME.
    pub cname: Option<Box<[u8]>>,
    /// The GSLB name answered here for A/AAAA (index into `Model::gslb`); every type when
    /// the name may answer a CNAME (`GslbEntry::cname`).
    pub gslb: Option<u32>,
    /// An `ALIAS`: A/AAAA answered from the target's addresses.
    pub alias: Option<Alias>,
}

impl Node {
    pub fn rrset(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    /// Holds no data of its own (empty non-terminal).
    pub fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.gslb.is_none() && self.alias.is_none()
    }
}

/// One authoritative zone.
#[derive(Clone, Debug)]
pub struct Zone {
    pub origin: Name,
    pub file: PathBuf,
    pub serial: u32,
    /// Lower-cased wire form of the origin.
    pub apex: Box<[u8]>,
    /// The SOA as answered to SOA queries.
    pub soa: RRset,
    /// The SOA as put in the authority section of negative answers: TTL = min(TTL, minimum).
    pub soa_negative: RRset,
    pub negative_ttl: u32,
    pub nodes: FxHashMap<Box<[u8]>, Node>,
    pub has_cuts: bool,
    pub record_count: usize,
    pub gslb_count: usize,
}

impl Zone {
    pub fn node(&self, key: &[u8]) -> Option<&Node> {
        self.nodes.get(key)
    }

    pub fn apex_node(&self) -> Option<&Node> {
        self.nodes.get(&self.apex[..])
    }
}
