//! The validated, immutable configuration the query path reads: zones and GSLB names with
//! every name resolved to an integer id or a pre-encoded wire form, and the datacenters with
//! the probe plan that decides their health.
//!
//! A `Model` is built by `config::build` in one go and published whole (with the health
//! snapshot of the same datacenter ids, see `server::publish`); the query path never sees a
//! half-built one. This module holds data types only: it depends on the leaf modules and on
//! `probe` (check specs and the plan), never on the config loader.

pub(crate) mod datacenter;
pub(crate) mod latency;
pub(crate) mod name;
pub(crate) mod policy;
pub(crate) mod zone;

use std::time::SystemTime;

use rustc_hash::FxHashMap;

pub(crate) use datacenter::Datacenters;
pub use datacenter::{Datacenter, DatacenterId};
pub(crate) use latency::LatencySource;
pub use latency::{LatencyMap, LatencyView, MapLevel};
pub(crate) use name::GslbEntry;
pub use name::{AllDown, GslbName, MatchItem, Member, Pool, PoolId, Rule};
pub(crate) use policy::ClientDependence;
pub use policy::PolicyKind;
pub(crate) use zone::{Node, RRset, Zone};

/// Everything the server answers from.
#[derive(Debug)]
pub struct Model {
    /// Every zone, indexed by the zone id the answer code reports.
    pub zones: Vec<Zone>,
    /// Every datacenter, indexed by `DatacenterId` (the same index as `Snapshot::dcs`).
    pub datacenters: Datacenters,
    /// Every GSLB name, indexed by `Node::gslb`.
    pub gslb: Vec<GslbEntry>,
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
        zone_by_apex: FxHashMap<Box<[u8]>, u32>,
        loaded_at: SystemTime,
    ) -> Model {
        Model {
            zones,
            datacenters,
            gslb,
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
}
