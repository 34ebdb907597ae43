//! The probe set: every distinct (check, target address), probed once however many
//! datacenters, names and zones use it, and the way back from a target to its users.
//!
//! ```text
//! DatacenterProbe[dc] --(check, addr:port) dedup--> Target[t] --users--> (dc, slot) ...
//!   slot = index into the datacenter's probed addresses (check addresses if set, else the
//!          answer addresses in bit order: v4 first, then v6, each in declaration order)
//! ```
//!
//! **The dynamic part.** A hostname datacenter (`DatacenterProbe::hostname`) probes the
//! addresses its target resolves to now, which change at run time. Its plan starts with no
//! slot; [`ProbeSet::set_addresses`] gives it the current addresses (the aggregator calls it
//! whenever the resolver publishes a new address set, `serial` naming that set):
//!
//! ```text
//! set_addresses(dc, [a, b], serial)
//!   old slots: drop (dc, _) from their targets' users
//!   new slot i = address i (bit order, as the policy reads the resolved addresses)
//!     (check, addr) already a target? reuse it -- its state (rise/fall counters, latency,
//!         load) lives on in the aggregator, keyed by the same TargetId
//!     else a new target (a new id; the aggregator starts it as the warm-start rules say)
//!   a target left without users is retired (its worker stops); its id is never handed to
//!     another (check, addr), so a late result of its stopped worker is still a true
//!     observation of that target, and an address that comes back revives it
//!   -> PlanChange { added (need a worker), retired (stop the worker) }
//! ```
//!
//! Targets are matched by identity (check, address), so two datacenters that resolve to the
//! same address share one probe, and an address that stays in the set keeps its history
//! across any number of changes. `DcPlan::addr_serial` tells the policy which address set the
//! datacenter's per-address bits describe (it answers a different set as if all were up until
//! the aggregator has caught up).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::spec::{CheckError, CheckSpec};
use crate::limits::MAX_DC_ADDRESSES;

/// Index of a target in [`ProbeSet::targets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub u32);

/// `min-up = "all"`: every probed address must be up (and there must be one).
pub const MIN_UP_ALL: u32 = u32::MAX;

/// One datacenter as the probe set needs it. Its position in the input list is its
/// `DatacenterId`, the index into `Snapshot::dcs`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatacenterProbe {
    /// For logs, status and the state files (ids change between configs; names do not).
    pub name: String,
    /// Answer addresses, in declaration order (v4 and v6 may be mixed).
    pub addresses: Vec<IpAddr>,
    /// A hostname datacenter resolved at run time: the name (lower-cased, fully qualified)
    /// whose current addresses are probed; `addresses` is empty then (see the module docs).
    pub hostname: Option<String>,
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
            hostname: None,
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
    /// `MIN_UP_ALL` for "all"; see [`DcPlan::needed`].
    pub min_up: u32,
    /// A hostname datacenter's name (its slots follow the resolved addresses).
    pub hostname: Option<String>,
    /// Which resolved address set the slots describe (0: static).
    pub addr_serial: u64,
    pub capacity: Option<f64>,
    pub check: Option<Arc<CheckSpec>>,
    pub max_ttl: Duration,
}

impl DcPlan {
    /// How many probed addresses must be up for the datacenter to be up: `min-up`, or all
    /// of them (at least one).
    pub fn needed(&self) -> usize {
        if self.min_up == MIN_UP_ALL {
            self.slots.len().max(1)
        } else {
            self.min_up as usize
        }
    }

    /// Probes the addresses its target resolves to at run time.
    pub fn is_dynamic(&self) -> bool {
        self.hostname.is_some() && !self.follows_check_addresses && self.check.is_some()
    }
}

/// What [`ProbeSet::set_addresses`] changed: targets that need a worker, targets whose
/// worker must stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanChange {
    pub added: Vec<TargetId>,
    pub retired: Vec<TargetId>,
}

/// The de-duplicated probe plan for a list of datacenters.
#[derive(Clone, Debug, Default)]
pub struct ProbeSet {
    pub targets: Vec<Target>,
    pub dcs: Vec<DcPlan>,
}

/// A datacenter list that cannot be probed. `dc` is the datacenter's index in the list given
/// to [`ProbeSet::build`], so the config loader can name the file and key that caused it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeSetError {
    /// The check cannot run as written.
    #[error("datacenter `{name}`: {source}")]
    Check {
        /// Index of the datacenter.
        dc: usize,
        /// Its name.
        name: String,
        /// What is wrong with the check.
        source: CheckError,
    },
    /// More answer addresses than the snapshot has bits.
    #[error("datacenter `{name}`: {n} answer addresses, at most 64 are supported")]
    TooManyAddresses {
        /// Index of the datacenter.
        dc: usize,
        /// Its name.
        name: String,
        /// How many it has.
        n: usize,
    },
    /// A check, but nothing to probe (`check-addresses = []`).
    #[error("datacenter `{name}`: has a check but no address to probe")]
    NothingToProbe {
        /// Index of the datacenter.
        dc: usize,
        /// Its name.
        name: String,
    },
    /// `min-up` above the number of probed addresses: the datacenter could never be up.
    #[error("datacenter `{name}`: min-up is {min_up} but only {n} addresses are probed")]
    MinUpTooLarge {
        /// Index of the datacenter.
        dc: usize,
        /// Its name.
        name: String,
        /// The min-up given.
        min_up: u32,
        /// Addresses probed.
        n: usize,
    },
}

impl ProbeSetError {
    /// Index of the datacenter the error is about.
    pub fn dc(&self) -> usize {
        match self {
            ProbeSetError::Check { dc, .. }
            | ProbeSetError::TooManyAddresses { dc, .. }
            | ProbeSetError::NothingToProbe { dc, .. }
            | ProbeSetError::MinUpTooLarge { dc, .. } => *dc,
        }
    }

    /// The datacenter key that holds the mistake (`check-addresses`, `min-up`...).
    pub fn key(&self) -> &'static str {
        match self {
            ProbeSetError::Check { .. } => "check",
            ProbeSetError::TooManyAddresses { .. } => "addresses",
            ProbeSetError::NothingToProbe { .. } => "check-addresses",
            ProbeSetError::MinUpTooLarge { .. } => "min-up",
        }
    }

    /// The message without the datacenter name (the key path names it).
    pub fn detail(&self) -> String {
        match self {
            ProbeSetError::Check { source, .. } => source.to_string(),
            ProbeSetError::TooManyAddresses { n, .. } => {
                format!("{n} answer addresses, at most 64 are supported")
            }
            ProbeSetError::NothingToProbe { .. } => {
                "is empty: a datacenter with a check needs at least one address to probe".into()
            }
            ProbeSetError::MinUpTooLarge { min_up, n, .. } => format!(
                "min-up is {min_up} but only {n} address{} probed",
                if *n == 1 { " is" } else { "es are" }
            ),
        }
    }
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
        ProbeSet::build_all(dcs).map_err(|mut e| e.swap_remove(0))
    }

    /// Build the plan, reporting every datacenter that cannot be probed (not only the first).
    pub fn build_all(dcs: &[DatacenterProbe]) -> Result<ProbeSet, Vec<ProbeSetError>> {
        let mut set = ProbeSet::default();
        let mut errors = Vec::new();
        let mut by_target: HashMap<(Arc<CheckSpec>, SocketAddr), TargetId> = HashMap::new();
        // Equal specs share one Arc, so targets of different datacenters compare cheaply.
        let mut specs: HashMap<CheckSpec, Arc<CheckSpec>> = HashMap::new();
        for (i, dc) in dcs.iter().enumerate() {
            let dc_id = u32::try_from(i).unwrap_or(u32::MAX);
            let name = || dc.name.clone();
            let answers = bit_order(&dc.addresses);
            let mut plan = DcPlan {
                name: dc.name.clone(),
                slots: Vec::new(),
                slot_bits: Vec::new(),
                all_bits: 0,
                follows_check_addresses: dc.check_addresses.is_some(),
                min_up: dc.min_up.max(1),
                hostname: dc.hostname.clone(),
                addr_serial: 0,
                capacity: dc.capacity,
                check: None,
                max_ttl: dc.max_ttl,
            };
            if answers.len() > MAX_DC_ADDRESSES {
                errors.push(ProbeSetError::TooManyAddresses {
                    dc: i,
                    name: name(),
                    n: answers.len(),
                });
                set.dcs.push(plan);
                continue;
            }
            plan.all_bits = if answers.len() == 64 || dc.hostname.is_some() {
                u64::MAX
            } else {
                (1u64 << answers.len()) - 1
            };
            let Some(check) = &dc.check else {
                set.dcs.push(plan);
                continue;
            };
            if let Err(source) = check.validate() {
                errors.push(ProbeSetError::Check {
                    dc: i,
                    name: name(),
                    source,
                });
                set.dcs.push(plan);
                continue;
            }
            let probed: Vec<(IpAddr, u64)> = match &dc.check_addresses {
                Some(list) => list.iter().map(|a| (*a, plan.all_bits)).collect(),
                None => answers
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (*a, 1u64 << i))
                    .collect(),
            };
            let dynamic = dc.hostname.is_some() && dc.check_addresses.is_none();
            if probed.is_empty() && !dynamic {
                errors.push(ProbeSetError::NothingToProbe {
                    dc: i,
                    name: name(),
                });
            } else if !dynamic && plan.min_up != MIN_UP_ALL && plan.min_up as usize > probed.len() {
                errors.push(ProbeSetError::MinUpTooLarge {
                    dc: i,
                    name: name(),
                    min_up: plan.min_up,
                    n: probed.len(),
                });
            }
            if !errors.is_empty() {
                set.dcs.push(plan);
                continue;
            }
            let spec = specs
                .entry(check.clone())
                .or_insert_with(|| Arc::new(check.clone()))
                .clone();
            for (slot, (ip, bits)) in probed.into_iter().enumerate() {
                let addr = SocketAddr::new(ip, spec.port());
                let id = *by_target.entry((spec.clone(), addr)).or_insert_with(|| {
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
            set.dcs.push(plan);
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// The target `id`.
    pub fn target(&self, id: TargetId) -> Option<&Target> {
        self.targets.get(id.0 as usize)
    }

    /// Gives dynamic datacenter `dc` the address set `addrs` (bit order) named `serial`
    /// (see the module docs). A datacenter that is not dynamic only records the serial.
    pub fn set_addresses(&mut self, dc: usize, addrs: &[IpAddr], serial: u64) -> PlanChange {
        let mut change = PlanChange::default();
        let Some(plan) = self.dcs.get(dc) else {
            return change;
        };
        if !plan.is_dynamic() {
            if let Some(p) = self.dcs.get_mut(dc) {
                p.addr_serial = serial;
            }
            return change;
        }
        let Some(spec) = plan.check.clone() else {
            return change;
        };
        let dc_id = u32::try_from(dc).unwrap_or(u32::MAX);
        let old: Vec<TargetId> = std::mem::take(&mut self.dcs[dc].slots);
        for t in &old {
            if let Some(target) = self.targets.get_mut(t.0 as usize) {
                target.users.retain(|(d, _)| *d != dc_id);
            }
        }
        let mut slots = Vec::with_capacity(addrs.len());
        let mut bits = Vec::with_capacity(addrs.len());
        for (slot, ip) in addrs.iter().take(MAX_DC_ADDRESSES).enumerate() {
            let addr = SocketAddr::new(*ip, spec.port());
            let found = self.targets.iter().position(|t| {
                t.addr == addr && (Arc::ptr_eq(&t.check, &spec) || *t.check == *spec)
            });
            let id = match found {
                Some(i) => {
                    let id = TargetId(i as u32);
                    if self.targets[i].users.is_empty() && !old.contains(&id) {
                        change.added.push(id);
                    }
                    id
                }
                None => {
                    let id = TargetId(u32::try_from(self.targets.len()).unwrap_or(u32::MAX));
                    self.targets.push(Target {
                        id,
                        check: spec.clone(),
                        addr,
                        users: Vec::new(),
                    });
                    change.added.push(id);
                    id
                }
            };
            self.targets[id.0 as usize].users.push((dc_id, slot));
            slots.push(id);
            bits.push(1u64 << slot);
        }
        for t in old {
            if self.targets[t.0 as usize].users.is_empty() && !slots.contains(&t) {
                change.retired.push(t);
            }
        }
        let p = &mut self.dcs[dc];
        p.slots = slots;
        p.slot_bits = bits;
        p.addr_serial = serial;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set() -> ProbeSet {
        let check = CheckSpec::tcp(80);
        let fixed = DatacenterProbe::new("fixed", vec![ip("192.0.2.1")], Some(check.clone()));
        let mut host = DatacenterProbe::new("host", vec![], Some(check.clone()));
        host.hostname = Some("lb.example.net.".into());
        let mut other = DatacenterProbe::new("other", vec![], Some(check));
        other.hostname = Some("lb2.example.net.".into());
        ProbeSet::build(&[fixed, host, other]).expect("plan")
    }

    #[test]
    fn addresses_still_present_keep_their_target() {
        let mut s = set();
        assert!(s.dcs[1].is_dynamic() && s.dcs[1].slots.is_empty());
        assert_eq!(s.targets.len(), 1);
        let c = s.set_addresses(1, &[ip("192.0.2.10"), ip("192.0.2.11")], 7);
        assert_eq!(c.added, [TargetId(1), TargetId(2)]);
        assert_eq!(s.dcs[1].addr_serial, 7);
        // .11 stays (same id, moved to slot 0), .10 is retired, .12 is new.
        let c = s.set_addresses(1, &[ip("192.0.2.11"), ip("192.0.2.12")], 8);
        assert_eq!(
            c,
            PlanChange {
                added: vec![TargetId(3)],
                retired: vec![TargetId(1)]
            }
        );
        assert_eq!(s.dcs[1].slots, [TargetId(2), TargetId(3)]);
        assert_eq!(s.targets[2].users, [(1, 0)]);
        assert_eq!(s.dcs[1].slot_bits, [1, 2]);
        // An address another datacenter probes with the same check is shared, not added.
        let c = s.set_addresses(2, &[ip("192.0.2.1"), ip("192.0.2.11")], 9);
        assert_eq!(c, PlanChange::default());
        assert_eq!(s.targets[0].users, [(0, 0), (2, 0)]);
        // A retired address that comes back revives its id (its worker must start again).
        let c = s.set_addresses(1, &[ip("192.0.2.10")], 10);
        assert_eq!(c.added, [TargetId(1)]);
        assert_eq!(
            c.retired,
            [TargetId(3)],
            "192.0.2.11 is still used by `other`"
        );
        // Nothing resolved: no slot, every target of it retired.
        let c = s.set_addresses(1, &[], 11);
        assert_eq!(c.retired, [TargetId(1)]);
        assert!(s.dcs[1].slots.is_empty());
        // A static datacenter only records the serial.
        assert_eq!(
            s.set_addresses(0, &[ip("192.0.2.99")], 3),
            PlanChange::default()
        );
        assert_eq!(s.dcs[0].slots, [TargetId(0)]);
    }

    #[test]
    fn min_up_all_needs_every_probed_address() {
        let mut s = set();
        s.dcs[1].min_up = MIN_UP_ALL;
        assert_eq!(s.dcs[1].needed(), 1, "at least one");
        s.set_addresses(1, &[ip("192.0.2.10"), ip("192.0.2.11")], 1);
        assert_eq!(s.dcs[1].needed(), 2);
        let fixed = DatacenterProbe {
            min_up: MIN_UP_ALL,
            ..DatacenterProbe::new("x", vec![ip("192.0.2.1")], Some(CheckSpec::tcp(80)))
        };
        assert!(ProbeSet::build(&[fixed]).is_ok(), "all is never too large");
    }
}
