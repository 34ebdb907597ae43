//! The validated, immutable configuration the query path reads: zones and GSLB names with
//! every name resolved to an integer id or a pre-encoded wire form, and the datacenters with
//! the probe plan that decides their health.
//!
//! A `Model` is built by `config::build` in one go and published whole (with the health
//! snapshot of the same datacenter ids, see `server::publish`); the query path never sees a
//! half-built one. This module holds data types only: it depends on the leaf modules and on
//! `probe` (check specs and the plan), never on the config loader.

pub(crate) mod datacenter;
pub(crate) mod hostname;
pub(crate) mod latency;
pub(crate) mod name;
pub(crate) mod policy;
pub(crate) mod zone;

use std::time::SystemTime;

use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;

pub(crate) use datacenter::Datacenters;
pub use datacenter::{Datacenter, DatacenterId};
pub use hostname::{Hostname, HostnameId, Lookup, Resolutions};
pub(crate) use latency::LatencySource;
pub use latency::{LatencyMap, LatencyView, MapLevel};
pub(crate) use name::GslbEntry;
pub use name::{AllDown, GslbName, MatchItem, Member, Pool, PoolId, Rule};
pub(crate) use policy::ClientDependence;
pub use policy::PolicyKind;
pub use zone::Zone;
pub(crate) use zone::{Alias, Node, Nodes, OwnedRRset, RRset, RRsetEntry, Span, encode_record};

/// Everything the server answers from.
#[derive(Debug)]
pub struct Model {
    /// Every zone, indexed by the zone id the answer code reports.
    pub zones: Vec<Zone>,
    /// Every datacenter, indexed by `DatacenterId` (the same index as `Snapshot::dcs`).
    pub datacenters: Datacenters,
    /// Every GSLB name, indexed by `Node::gslb`.
    pub gslb: Vec<GslbEntry>,
    /// Every hostname target (of datacenters and `ALIAS` records), each once, indexed by
    /// `HostnameId`.
    pub hostnames: Vec<Hostname>,
    zone_by_apex: FxHashMap<Box<[u8]>, u32>,
    /// When the files were read.
    pub(crate) loaded_at: SystemTime,
}

impl Model {
    /// Assembles a model from built parts (`config::build` validates them first).
    pub(crate) fn new(
        zones: Vec<Zone>,
        datacenters: Datacenters,
        gslb: Vec<GslbEntry>,
        hostnames: Vec<Hostname>,
        zone_by_apex: FxHashMap<Box<[u8]>, u32>,
        loaded_at: SystemTime,
    ) -> Model {
        Model {
            zones,
            datacenters,
            gslb,
            hostnames,
            zone_by_apex,
            loaded_at,
        }
    }

    /// The zone whose apex is exactly `key` (lower-cased wire form).
    #[inline]
    pub(crate) fn zone_at_apex(&self, key: &[u8]) -> Option<&Zone> {
        self.zone_at(key).map(|i| &self.zones[i as usize])
    }

    /// The zone whose apex is exactly `key` (lower-cased wire form).
    #[inline]
    pub(crate) fn zone_at(&self, key: &[u8]) -> Option<u32> {
        self.zone_by_apex.get(key).copied()
    }

    /// The resolutions of this model's hostnames before any background lookup (local and
    /// followed entries filled in, remote ones pending).
    pub fn initial_resolutions(&self) -> Resolutions {
        Resolutions::build(
            &self.hostnames,
            &crate::resolve::ResolvedNames::default(),
            self.loaded_at,
        )
    }

    /// What the resolver must keep current for this model: the remote names, and the names
    /// whose answers come from resolved addresses here (flattened GSLB names, ALIAS owners),
    /// which an upstream CNAME chain must not lead back into.
    pub fn resolver_targets(&self) -> crate::resolve::Targets {
        let mut guard: Vec<std::sync::Arc<str>> = self
            .gslb
            .iter()
            .filter(|g| g.def.flatten && g.has_hostnames)
            .map(|g| crate::resolve::key_of(&g.owner).into())
            .collect();
        for z in &self.zones {
            for (k, n) in z.nodes.iter() {
                if n.alias.is_some() {
                    let mut d = hickory_proto::serialize::binary::BinDecoder::new(k);
                    if let Ok(name) =
                        <Name as hickory_proto::serialize::binary::BinDecodable>::read(&mut d)
                    {
                        guard.push(crate::resolve::key_of(&name).into());
                    }
                }
            }
        }
        guard.sort();
        guard.dedup();
        crate::resolve::Targets {
            names: self.remote_names(),
            loop_guard: guard,
        }
    }

    /// The resolutions of this model's hostnames from the resolver's `names`.
    pub fn resolutions(&self, names: &crate::resolve::ResolvedNames) -> Resolutions {
        Resolutions::build(&self.hostnames, names, self.loaded_at)
    }

    /// The remote names the resolver must keep current for this model.
    pub fn remote_names(&self) -> Vec<std::sync::Arc<str>> {
        let mut v: Vec<_> = self
            .hostnames
            .iter()
            .filter_map(|h| match &h.lookup {
                Lookup::Remote(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
