//! The probe set: every distinct (check, target address), probed once however many
//! datacenters, names and zones use it, and the way back from a target to its users.
//!
//! ```text
//! DatacenterProbe[dc] --(check, addr:port) dedup--> Target[t] --users--> (dc, slot) ...
//!   slot = index into the datacenter's probed addresses (check addresses if set, else the
//!          answer addresses in bit order: v4 first, then v6, each in declaration order)
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::spec::{CheckError, CheckSpec};

/// Index of a target in [`ProbeSet::targets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub u32);

/// One datacenter as the probe set needs it. Its position in the input list is its
/// `DatacenterId`, the index into `Snapshot::dcs`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatacenterProbe {
    /// For logs, status and the state files (ids change between configs; names do not).
    pub name: String,
    /// Answer addresses, in declaration order (v4 and v6 may be mixed).
    pub addresses: Vec<IpAddr>,
    /// Probe these instead of the answer addresses (check the inside address, answer the
    /// public one). The whole datacenter then follows them.
    pub check_addresses: Option<Vec<IpAddr>>,
    /// Capacity, the divisor of a `connections` load figure.
    pub capacity: Option<f64>,
    /// The datacenter is up while at least this many of its probed addresses are (default 1).
    pub min_up: u32,
    /// `None`: no check, always up.
    pub check: Option<CheckSpec>,
    /// The longest TTL any answer containing this datacenter carries: drain is complete once
    /// this long has passed since the drain started.
    pub max_ttl: Duration,
}

impl DatacenterProbe {
    /// A datacenter with the defaults: no check address, no capacity, `min_up` 1, TTL 300 s.
    pub fn new(name: impl Into<String>, addresses: Vec<IpAddr>, check: Option<CheckSpec>) -> Self {
        DatacenterProbe {
            name: name.into(),
            addresses,
            check_addresses: None,
            capacity: None,
            min_up: 1,
            check,
            max_ttl: Duration::from_secs(300),
        }
    }
}

/// One probed endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    pub id: TargetId,
    pub check: Arc<CheckSpec>,
    pub addr: SocketAddr,
    /// Every (datacenter id, slot) whose health this target decides.
    pub users: Vec<(u32, usize)>,
}

/// How one datacenter maps to targets.
#[derive(Clone, Debug)]
pub struct DcPlan {
    pub name: String,
    /// Target of each slot.
    pub slots: Vec<TargetId>,
    /// `Snapshot` bits each slot controls when up.
    pub slot_bits: Vec<u64>,
    /// All answer-address bits of this datacenter.
    pub all_bits: u64,
    /// Probing check addresses: the datacenter's answer addresses follow the datacenter.
    pub follows_check_addresses: bool,
    pub min_up: u32,
    pub capacity: Option<f64>,
    pub check: Option<Arc<CheckSpec>>,
    pub max_ttl: Duration,
}

/// The de-duplicated probe plan for a list of datacenters.
#[derive(Clone, Debug, Default)]
pub struct ProbeSet {
    pub targets: Vec<Target>,
    pub dcs: Vec<DcPlan>,
}

/// A datacenter list that cannot be probed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeSetError {
    #[error("datacenter `{dc}`: {source}")]
    Check { dc: String, source: CheckError },
    #[error("datacenter `{dc}`: {n} answer addresses, at most 64 are supported")]
    TooManyAddresses { dc: String, n: usize },
    #[error("datacenter `{dc}`: has a check but no address to probe")]
    NothingToProbe { dc: String },
    #[error("datacenter `{dc}`: min-up is {min_up} but only {n} addresses are probed")]
    MinUpTooLarge { dc: String, min_up: u32, n: usize },
}

/// Answer addresses in `addr_up` bit order: v4 first, then v6, each in declaration order.
pub fn bit_order(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let v4 = addresses.iter().filter(|a| a.is_ipv4());
    let v6 = addresses.iter().filter(|a| a.is_ipv6());
    v4.chain(v6).copied().collect()
}

impl ProbeSet {
    /// Build the plan; datacenter `i` of `dcs` is `DatacenterId(i)`.
    pub fn build(dcs: &[DatacenterProbe]) -> Result<ProbeSet, ProbeSetError> {
        let mut set = ProbeSet::default();
        let mut index: HashMap<(Arc<CheckSpec>, SocketAddr), TargetId> = HashMap::new();
        // Equal specs share one Arc, so targets of different datacenters compare cheaply.
        let mut specs: HashMap<CheckSpec, Arc<CheckSpec>> = HashMap::new();
        for (dc_id, dc) in dcs.iter().enumerate() {
            let dc_id = u32::try_from(dc_id).unwrap_or(u32::MAX);
            let answers = bit_order(&dc.addresses);
            if answers.len() > 64 {
                return Err(ProbeSetError::TooManyAddresses {
                    dc: dc.name.clone(),
                    n: answers.len(),
                });
            }
            let all_bits = if answers.len() == 64 {
                u64::MAX
            } else {
                (1u64 << answers.len()) - 1
            };
            let mut plan = DcPlan {
                name: dc.name.clone(),
                slots: Vec::new(),
                slot_bits: Vec::new(),
                all_bits,
                follows_check_addresses: dc.check_addresses.is_some(),
                min_up: dc.min_up.max(1),
                capacity: dc.capacity,
                check: None,
                max_ttl: dc.max_ttl,
            };
            if let Some(check) = &dc.check {
                check.validate().map_err(|source| ProbeSetError::Check {
                    dc: dc.name.clone(),
                    source,
                })?;
                let spec = specs
                    .entry(check.clone())
                    .or_insert_with(|| Arc::new(check.clone()))
                    .clone();
                let probed: Vec<(IpAddr, u64)> = match &dc.check_addresses {
                    Some(list) => list.iter().map(|a| (*a, all_bits)).collect(),
                    None => answers
                        .iter()
                        .enumerate()
                        .map(|(i, a)| (*a, 1u64 << i))
                        .collect(),
                };
                if probed.is_empty() {
                    return Err(ProbeSetError::NothingToProbe {
                        dc: dc.name.clone(),
                    });
                }
                if plan.min_up as usize > probed.len() {
                    return Err(ProbeSetError::MinUpTooLarge {
                        dc: dc.name.clone(),
                        min_up: plan.min_up,
                        n: probed.len(),
                    });
                }
                for (slot, (ip, bits)) in probed.into_iter().enumerate() {
                    let addr = SocketAddr::new(ip, spec.port());
                    let id = *index.entry((spec.clone(), addr)).or_insert_with(|| {
                        let id = TargetId(u32::try_from(set.targets.len()).unwrap_or(u32::MAX));
                        set.targets.push(Target {
                            id,
                            check: spec.clone(),
                            addr,
                            users: Vec::new(),
                        });
                        id
                    });
                    set.targets[id.0 as usize].users.push((dc_id, slot));
                    plan.slots.push(id);
                    plan.slot_bits.push(bits);
                }
                plan.check = Some(spec);
            }
            set.dcs.push(plan);
        }
        Ok(set)
    }

    pub fn target(&self, id: TargetId) -> Option<&Target> {
        self.targets.get(id.0 as usize)
    }
}
