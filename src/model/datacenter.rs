//! Datacenters: declared once in any file, shared by every name and zone, identified on the
//! query path by a dense [`DatacenterId`] that also indexes the health snapshot.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::hostname::HostnameId;
use crate::probe::{DatacenterProbe, ProbeSet};

/// Index of a datacenter in the model's datacenter array (and in `Snapshot::dcs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatacenterId(pub u32);

/// A place that serves traffic, declared once and shared by every name that uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Datacenter {
    /// The name in the zone files (`datacenters.<name>`).
    pub name: Box<str>,
    /// IPv4 answer addresses. Address bit `i` of `DcState::addr_up` is `v4[i]` for
    /// `i < v4.len()`, then `v6[i - v4.len()]`: declaration order, IPv4 first (at most
    /// `limits::MAX_DC_ADDRESSES` in all, which the loader checks). Empty for a hostname
    /// datacenter, whose addresses are its target's current ones (bit order the same, over
    /// the resolved addresses).
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 answer addresses.
    pub v6: Vec<Ipv6Addr>,
    /// Latitude and longitude in degrees, for `nearest`.
    pub coords: Option<(f64, f64)>,
    /// Relative capacity, for `load` (any unit, the same for all datacenters of a pool).
    pub capacity: f64,
    /// Default member weight for `weighted` and `hash`.
    pub weight: u32,
    /// A hostname datacenter: its target (`datacenters.<n>.target`), answered as a CNAME or
    /// flattened to the target's addresses, per GSLB name.
    pub target: Option<HostnameId>,
}

/// Datacenters resolved from every file, indexed by `DatacenterId`, with the probe plan that
/// decides their health (built and validated with them, in the same id space).
#[derive(Debug, Default)]
pub struct Datacenters {
    /// Every datacenter, indexed by `DatacenterId`.
    pub list: Vec<Datacenter>,
    /// What the probe workers need, in the same order.
    pub probes: Vec<DatacenterProbe>,
    /// The de-duplicated probe plan of `probes` (validated when the model was built).
    pub(crate) plan: Arc<ProbeSet>,
    /// Name to id.
    pub by_name: FxHashMap<String, DatacenterId>,
}

impl Datacenters {
    /// The datacenter called `name`.
    pub fn id_of(&self, name: &str) -> Option<DatacenterId> {
        self.by_name.get(name).copied()
    }
}
