//! Hostname targets: names whose addresses gslbd answers (a flattened datacenter, an
//! `ALIAS`) or points to (a CNAME answer), and the published table of what they resolve to.
//!
//! ```text
//! config build: every target once -> Hostname { name, key, lookup }
//!    lookup = Local (answered from our zones at load) | Gslb (our GSLB name) | Remote (ask)
//! runtime:   resolve::ResolvedNames (by name) --Resolutions::build--> Resolutions
//!            indexed by HostnameId, published in the health Snapshot with its model
//! ```
//!
//! The query path reads `Resolutions::get(id)` (one index, one `Arc`): the addresses, the
//! state (fresh, stale, ...) and the TTL left.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::SystemTime;

use hickory_proto::rr::Name;

use crate::resolve::{Entry, ResolvedNames};

/// Index of a hostname in `Model::hostnames` (and in `Resolutions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostnameId(pub u32);

/// How a hostname's addresses are found.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// In the zones we serve: the addresses at load time and the smallest TTL of the records
    /// that led there (CNAMEs and ALIASes in our zones are followed).
    Local {
        /// IPv4 addresses.
        v4: Vec<Ipv4Addr>,
        /// IPv6 addresses.
        v6: Vec<Ipv6Addr>,
        /// Smallest TTL along the way.
        ttl: u32,
    },
    /// A GSLB name we serve (index into `Model::gslb`): only a CNAME answer may point there.
    Gslb(u32),
    /// Resolved in the background: the name asked (the target itself, or where a CNAME chain
    /// in our zones leaves them), lower-cased and fully qualified.
    Remote(Arc<str>),
}

/// One target name.
#[derive(Clone, Debug)]
pub struct Hostname {
    /// As first written (case kept), fully qualified.
    pub name: Name,
    /// Lower-cased wire form (lookups, following a CNAME answer into our zones).
    pub key: Box<[u8]>,
    /// Wire form with the case as written: the RDATA of a CNAME answer.
    pub rdata: Box<[u8]>,
    /// Where its addresses come from.
    pub lookup: Lookup,
}

impl Hostname {
    /// The entry this hostname has before (or without) any background resolution: local
    /// addresses, a followed GSLB name, or pending.
    pub fn initial_entry(&self, loaded_at: SystemTime) -> Entry {
        let name = crate::resolve::key_of(&self.name);
        match &self.lookup {
            Lookup::Local { v4, v6, ttl } => Entry::local(&name, v4, v6, *ttl, loaded_at),
            Lookup::Gslb(_) => Entry::followed(&name),
            Lookup::Remote(n) => Entry::pending(n),
        }
    }
}

/// What every hostname of a model resolves to now, indexed by `HostnameId`.
#[derive(Clone, Debug, Default)]
pub struct Resolutions {
    /// One entry per hostname.
    pub list: Vec<Arc<Entry>>,
}

impl Resolutions {
    /// The table for `hostnames` (a model's): local and followed entries from the model,
    /// remote ones from `names` (pending when the resolver has not answered yet).
    pub fn build(hostnames: &[Hostname], names: &ResolvedNames, loaded_at: SystemTime) -> Self {
        Resolutions {
            list: hostnames
                .iter()
                .map(|h| match &h.lookup {
                    Lookup::Remote(n) => names
                        .get(n)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Entry::pending(n))),
                    _ => Arc::new(h.initial_entry(loaded_at)),
                })
                .collect(),
        }
    }

    /// The entry of hostname `id`.
    #[inline]
    pub fn get(&self, id: HostnameId) -> Option<&Entry> {
        self.list.get(id.0 as usize).map(|e| &**e)
    }
}
