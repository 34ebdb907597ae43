//! The probe set: every distinct (check, target address), probed once however many
//! datacenters, names and zones use it, and the way back from a target to its users.
//!
//! ```text
//! DatacenterProbe[dc] --checks[c]--(check, addr:port) dedup--> Target[t] --users--> (dc, slot)
//!   slot = index into the datacenter's probed addresses (check addresses if set, else the
//!          answer addresses in bit order: v4 first, then v6, each in declaration order);
//!          every check of a datacenter probes the same addresses, one target per slot
//! ```
//!
//! A check passes for a datacenter while at least `min-up` of its slots are up (`"all"`:
//! every one); the datacenter passes its probes while `require` of its checks pass (all, any
//! or N).
//!
//! **The dynamic part.** A hostname datacenter (`DatacenterProbe::hostname`) probes the
//! addresses its target resolves to now, which change at run time. Its checks start with no
//! slot; `ProbeSet::set_addresses` gives it the current addresses (the aggregator calls it
//! whenever the resolver publishes a new address set, `serial` naming that set):
//!
//! ```text
//! set_addresses(dc, [a, b], serial)
//!   old slots: drop (dc, _) from their targets' users
//!   new slot i = address i (bit order, as the policy reads the resolved addresses), for
//!     every check of the datacenter:
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

use super::icmp;
use super::spec::{CheckError, CheckKind, CheckSpec};
use crate::limits::MAX_DC_ADDRESSES;

/// Index of a target in [`ProbeSet::targets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub u32);

/// `min-up = "all"`: every probed address must be up (and there must be one).
pub(crate) const MIN_UP_ALL: u32 = u32::MAX;

/// How many of a datacenter's checks must pass for it to be up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Require {
    /// Every check (the default).
    #[default]
    All,
    /// At least one.
    Any,
    /// At least this many.
    AtLeast(u32),
}

impl Require {
    /// Checks that must pass out of `n`.
    pub(crate) fn needed(self, n: usize) -> usize {
        match self {
            Require::All => n,
            Require::Any => n.min(1),
            Require::AtLeast(k) => k as usize,
        }
    }

    /// `all`, `any` or the number, as the zone file says it.
    pub(crate) fn describe(self) -> String {
        match self {
            Require::All => "all".into(),
            Require::Any => "any".into(),
            Require::AtLeast(k) => k.to_string(),
        }
    }
}

/// A check as a datacenter uses it: its name in the zone files and what it does.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedCheck {
    /// `checks.<name>`.
    pub name: String,
    /// The check.
    pub spec: CheckSpec,
}

/// One datacenter as the probe set needs it. Its position in the input list is its
/// `DatacenterId`, the index into `Snapshot::dcs`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatacenterProbe {
    /// For logs, status and the state files (ids change between configs; names do not).
    pub name: String,
    /// Answer addresses, in declaration order (v4 and v6 may be mixed).
    pub(crate) addresses: Vec<IpAddr>,
    /// A hostname datacenter resolved at run time: the name (lower-cased, fully qualified)
    /// whose current addresses are probed; `addresses` is empty then (see the module docs).
    pub(crate) hostname: Option<String>,
    /// Probe these instead of the answer addresses (check the inside address, answer the
    /// public one). The whole datacenter then follows them.
    pub check_addresses: Option<Vec<IpAddr>>,
    /// Capacity, the divisor of a `connections` load figure.
    pub capacity: Option<f64>,
    /// A check passes while at least this many of the datacenter's probed addresses pass it
    /// (default 1).
    pub(crate) min_up: u32,
    /// The checks that decide its health; empty: no check, always up (unless an external
    /// input says otherwise).
    pub checks: Vec<NamedCheck>,
    /// How many checks must pass.
    pub require: Require,
    /// The longest TTL any answer containing this datacenter carries: drain is complete once
    /// this long has passed since the drain started.
    pub max_ttl: Duration,
}

impl DatacenterProbe {
    /// A datacenter with the defaults: no check address, no capacity, `min_up` 1, TTL 300 s,
    /// and `check` (named after its type) as its one check.
    pub fn new(name: impl Into<String>, addresses: Vec<IpAddr>, check: Option<CheckSpec>) -> Self {
        let checks = check
            .map(|spec| NamedCheck {
                name: spec.kind.type_name().to_string(),
                spec,
            })
            .into_iter()
            .collect();
        DatacenterProbe {
            name: name.into(),
            addresses,
            hostname: None,
            check_addresses: None,
            capacity: None,
            min_up: 1,
            checks,
            require: Require::All,
            max_ttl: Duration::from_secs(300),
        }
    }
}

/// One probed endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its index in `ProbeSet::targets`.
    pub(crate) id: TargetId,
    /// How it is probed (shared by every datacenter that probes the same thing).
    pub(crate) check: Arc<CheckSpec>,
    /// Where it is probed: a check address (or else an answer address) with the check's port.
    pub addr: SocketAddr,
    /// The datacenter, for kinds whose probe is about one (`exec`): such targets are never
    /// shared between datacenters.
    pub datacenter: Option<Arc<str>>,
    /// Every (datacenter id, slot) whose health this target decides.
    pub users: Vec<(u32, usize)>,
}

impl Target {
    /// Its id in the set.
    pub fn id(&self) -> TargetId {
        self.id
    }

    /// How it is probed.
    pub fn check(&self) -> &CheckSpec {
        &self.check
    }

    /// What is probed, as a stable text (the check's fingerprint, with the datacenter for a
    /// per-datacenter kind): the key of the warm-start file.
    pub fn identity(&self) -> String {
        match &self.datacenter {
            Some(dc) => format!("{}@{dc}", self.check.fingerprint()),
            None => self.check.fingerprint(),
        }
    }

    /// The target's name across processes and configurations: identity and address. Two
    /// servers with the same check on the same address give the same key.
    pub fn key(&self) -> String {
        format!("{} {}", self.identity(), self.addr)
    }
}

/// One check of one datacenter: its target on each probed address.
#[derive(Clone, Debug)]
pub struct CheckPlan {
    /// `checks.<name>`.
    pub(crate) name: String,
    /// What it probes.
    pub(crate) check: Arc<CheckSpec>,
    /// Target of each slot (probed address).
    pub(crate) slots: Vec<TargetId>,
}

/// How one datacenter maps to targets.
#[derive(Clone, Debug)]
pub struct DcPlan {
    /// The datacenter name.
    pub(crate) name: String,
    /// Answer addresses in `addr_up` bit order (bit i = `answers[i]`).
    pub(crate) answers: Vec<IpAddr>,
    /// Its checks, in declaration order; empty: always up by the probes.
    pub checks: Vec<CheckPlan>,
    /// How many checks must pass.
    pub(crate) require: Require,
    /// `Snapshot` bits each slot (probed address) controls when up.
    pub slot_bits: Vec<u64>,
    /// All answer-address bits of this datacenter.
    pub(crate) all_bits: u64,
    /// Probing check addresses: the datacenter's answer addresses follow the datacenter.
    pub(crate) follows_check_addresses: bool,
    /// Addresses that must pass a check for the check to pass (`MIN_UP_ALL`: every one; see
    /// [`DcPlan::addresses_needed`]).
    pub(crate) min_up: u32,
    /// A hostname datacenter's name (its slots follow the resolved addresses).
    pub(crate) hostname: Option<String>,
    /// Which resolved address set the slots describe (0: static).
    pub(crate) addr_serial: u64,
    /// Divisor of a `connections` load figure.
    pub(crate) capacity: Option<f64>,
    /// The longest TTL an answer naming the datacenter carries (drain length).
    pub(crate) max_ttl: Duration,
}

impl DcPlan {
    /// Every target of every check, check by check.
    pub fn targets(&self) -> impl Iterator<Item = TargetId> + '_ {
        self.checks.iter().flat_map(|c| c.slots.iter().copied())
    }

    /// Does any check decide this datacenter's health?
    pub(crate) fn has_checks(&self) -> bool {
        !self.checks.is_empty()
    }

    /// Checks that must pass.
    pub(crate) fn needed(&self) -> usize {
        self.require.needed(self.checks.len())
    }

    /// Probed addresses that must pass a check for it to pass: `min-up`, or all of them (at
    /// least one).
    pub(crate) fn addresses_needed(&self) -> usize {
        if self.min_up == MIN_UP_ALL {
            self.slot_bits.len().max(1)
        } else {
            self.min_up as usize
        }
    }

    /// Probes the addresses its target resolves to at run time.
    pub(crate) fn is_dynamic(&self) -> bool {
        self.hostname.is_some() && !self.follows_check_addresses && self.has_checks()
    }

    /// The longest slow-start window of its checks; `None` = no ramp.
    pub(crate) fn slow_start(&self) -> Option<Duration> {
        self.checks.iter().filter_map(|c| c.check.slow_start).max()
    }

    /// TTL cap for answers built from unsettled state: the shortest check interval.
    pub(crate) fn settle_ttl(&self) -> u32 {
        self.checks
            .iter()
            .map(|c| c.check.settle_ttl())
            .min()
            .unwrap_or(u32::MAX)
    }
}

/// What `ProbeSet::set_addresses` changed: targets that need a worker, targets whose
/// worker must stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanChange {
    /// Targets that now have users and need a worker.
    pub added: Vec<TargetId>,
    /// Targets no one uses any more: stop their worker.
    pub retired: Vec<TargetId>,
}

/// The de-duplicated probe plan for a list of datacenters.
#[derive(Clone, Debug, Default)]
pub struct ProbeSet {
    /// Every distinct target, each probed once however many datacenters use it.
    pub targets: Vec<Target>,
    /// Per datacenter, in `DatacenterId` order: which targets decide its health.
    pub dcs: Vec<DcPlan>,
}

/// A datacenter list that cannot be probed. `dc` is the datacenter's index in the list given
/// to [`ProbeSet::build`], so the config loader can name the file and key that caused it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeSetError {
    /// The check cannot run as written.
    #[error("datacenter `{name}`: check `{check}`: {source}")]
    Check {
        /// Index of the datacenter.
        dc: usize,
        /// Its name.
        name: String,
        /// The check's name.
        check: String,
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
    /// `require` asks for more checks than there are (or for none).
    #[error("datacenter `{name}`: require is {require} but it has {n} check(s)")]
    BadRequire {
        /// Index of the datacenter.
        dc: usize,
        /// Its name.
        name: String,
        /// The require given.
        require: u32,
        /// Its checks.
        n: usize,
    },
    /// The same check named twice.
    #[error("datacenter `{name}`: check `{check}` is listed twice")]
    DuplicateCheck {
        /// Index of the datacenter.
        dc: usize,
        /// Its name.
        name: String,
        /// The check's name.
        check: String,
    },
}

impl ProbeSetError {
    /// Index of the datacenter the error is about.
    pub(crate) fn dc(&self) -> usize {
        match self {
            ProbeSetError::Check { dc, .. }
            | ProbeSetError::TooManyAddresses { dc, .. }
            | ProbeSetError::NothingToProbe { dc, .. }
            | ProbeSetError::MinUpTooLarge { dc, .. }
            | ProbeSetError::BadRequire { dc, .. }
            | ProbeSetError::DuplicateCheck { dc, .. } => *dc,
        }
    }

    /// The datacenter key that holds the mistake (`check-addresses`, `min-up`...); `check`
    /// stands for whichever of `check`/`checks` the datacenter uses.
    pub fn key(&self) -> &'static str {
        match self {
            ProbeSetError::Check { .. } | ProbeSetError::DuplicateCheck { .. } => "check",
            ProbeSetError::TooManyAddresses { .. } => "addresses",
            ProbeSetError::NothingToProbe { .. } => "check-addresses",
            ProbeSetError::MinUpTooLarge { .. } => "min-up",
            ProbeSetError::BadRequire { .. } => "require",
        }
    }

    /// The check the error is about, if it is about one.
    pub fn check(&self) -> Option<&str> {
        match self {
            ProbeSetError::Check { check, .. } | ProbeSetError::DuplicateCheck { check, .. } => {
                Some(check)
            }
            _ => None,
        }
    }

    /// The message without the datacenter name (the key path names it).
    pub fn detail(&self) -> String {
        match self {
            ProbeSetError::Check { check, source, .. } => format!("check `{check}`: {source}"),
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
            ProbeSetError::BadRequire { require, n, .. } => format!(
                "{require} checks required but the datacenter has {n} (expected \"all\", \"any\" or 1..={n})"
            ),
            ProbeSetError::DuplicateCheck { check, .. } => {
                format!("check `{check}` is listed twice")
            }
        }
    }
}

/// Answer addresses in `addr_up` bit order: v4 first, then v6, each in declaration order.
pub(crate) fn bit_order(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let v4 = addresses.iter().filter(|a| a.is_ipv4());
    let v6 = addresses.iter().filter(|a| a.is_ipv6());
    v4.chain(v6).copied().collect()
}

/// What makes two targets the same: the check, the address and, for per-datacenter kinds,
/// the datacenter.
type TargetKey = (Arc<CheckSpec>, SocketAddr, Option<Arc<str>>);

impl ProbeSet {
    /// Build the plan; datacenter `i` of `dcs` is `DatacenterId(i)`.
    pub fn build(dcs: &[DatacenterProbe]) -> Result<ProbeSet, ProbeSetError> {
        ProbeSet::build_all(dcs).map_err(|mut e| e.swap_remove(0))
    }

    /// Build the plan, reporting every datacenter that cannot be probed (not only the first).
    pub(crate) fn build_all(dcs: &[DatacenterProbe]) -> Result<ProbeSet, Vec<ProbeSetError>> {
        let mut set = ProbeSet::default();
        let mut errors = Vec::new();
        let mut by_target: HashMap<TargetKey, TargetId> = HashMap::new();
        // Equal specs share one Arc, so targets of different datacenters compare cheaply.
        let mut specs: HashMap<CheckSpec, Arc<CheckSpec>> = HashMap::new();
        // The ICMP permission test, once per family.
        let mut icmp_ok: [Option<Result<(), String>>; 2] = [None, None];
        for (i, dc) in dcs.iter().enumerate() {
            let dc_id = u32::try_from(i).unwrap_or(u32::MAX);
            let name = || dc.name.clone();
            let answers = bit_order(&dc.addresses);
            let mut plan = DcPlan {
                name: dc.name.clone(),
                answers: answers.clone(),
                checks: Vec::new(),
                require: dc.require,
                slot_bits: Vec::new(),
                all_bits: 0,
                follows_check_addresses: dc.check_addresses.is_some(),
                min_up: dc.min_up.max(1),
                hostname: dc.hostname.clone(),
                addr_serial: 0,
                capacity: dc.capacity,
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
            if dc.checks.is_empty() {
                set.dcs.push(plan);
                continue;
            }
            let before = errors.len();
            let n = dc.checks.len();
            let bad_require = match dc.require {
                Require::AtLeast(k) => k == 0 || k as usize > n,
                Require::All | Require::Any => false,
            };
            if let (true, Require::AtLeast(k)) = (bad_require, dc.require) {
                errors.push(ProbeSetError::BadRequire {
                    dc: i,
                    name: name(),
                    require: k,
                    n,
                });
            }
            for (ci, c) in dc.checks.iter().enumerate() {
                if dc.checks[..ci].iter().any(|o| o.name == c.name) {
                    errors.push(ProbeSetError::DuplicateCheck {
                        dc: i,
                        name: name(),
                        check: c.name.clone(),
                    });
                }
                if let Err(source) = c.spec.validate() {
                    errors.push(ProbeSetError::Check {
                        dc: i,
                        name: name(),
                        check: c.name.clone(),
                        source,
                    });
                }
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
            // ICMP: refuse at load time what the system would refuse at every probe.
            for c in dc
                .checks
                .iter()
                .filter(|c| matches!(c.spec.kind, CheckKind::Icmp(_)))
            {
                for v6 in [false, true] {
                    if !probed.iter().any(|(a, _)| a.is_ipv6() == v6) {
                        continue;
                    }
                    let ok = icmp_ok[usize::from(v6)].get_or_insert_with(|| icmp::permitted(v6));
                    if let Err(msg) = ok {
                        errors.push(ProbeSetError::Check {
                            dc: i,
                            name: name(),
                            check: c.name.clone(),
                            source: CheckError::IcmpNotPermitted(msg.clone()),
                        });
                        // One reason per check is enough (the sysctl covers both families).
                        break;
                    }
                }
            }
            if errors.len() > before {
                set.dcs.push(plan);
                continue;
            }
            plan.slot_bits = probed.iter().map(|(_, b)| *b).collect();
            for c in &dc.checks {
                let spec = specs
                    .entry(c.spec.clone())
                    .or_insert_with(|| Arc::new(c.spec.clone()))
                    .clone();
                let scope: Option<Arc<str>> = spec
                    .kind
                    .per_datacenter()
                    .then(|| Arc::from(dc.name.as_str()));
                let mut slots = Vec::with_capacity(probed.len());
                for (slot, (ip, _)) in probed.iter().enumerate() {
                    let addr = SocketAddr::new(*ip, spec.port());
                    let key = (spec.clone(), addr, scope.clone());
                    let id = *by_target.entry(key).or_insert_with(|| {
                        let id = TargetId(u32::try_from(set.targets.len()).unwrap_or(u32::MAX));
                        set.targets.push(Target {
                            id,
                            check: spec.clone(),
                            addr,
                            datacenter: scope.clone(),
                            users: Vec::new(),
                        });
                        id
                    });
                    let users = &mut set.targets[id.0 as usize].users;
                    if !users.contains(&(dc_id, slot)) {
                        users.push((dc_id, slot));
                    }
                    slots.push(id);
                }
                plan.checks.push(CheckPlan {
                    name: c.name.clone(),
                    check: spec,
                    slots,
                });
            }
            set.dcs.push(plan);
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// Gives dynamic datacenter `dc` the address set `addrs` (bit order) named `serial`
    /// (see the module docs). A datacenter that is not dynamic only records the serial.
    pub(crate) fn set_addresses(&mut self, dc: usize, addrs: &[IpAddr], serial: u64) -> PlanChange {
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
        let dc_id = u32::try_from(dc).unwrap_or(u32::MAX);
        let addrs: Vec<IpAddr> = bit_order(addrs)
            .into_iter()
            .take(MAX_DC_ADDRESSES)
            .collect();
        let old: Vec<TargetId> = plan.targets().collect();
        for t in &old {
            if let Some(target) = self.targets.get_mut(t.0 as usize) {
                target.users.retain(|(d, _)| *d != dc_id);
            }
        }
        let mut new = Vec::new();
        for c in 0..self.dcs[dc].checks.len() {
            let spec = self.dcs[dc].checks[c].check.clone();
            let scope: Option<Arc<str>> = spec
                .kind
                .per_datacenter()
                .then(|| Arc::from(self.dcs[dc].name.as_str()));
            let mut slots = Vec::with_capacity(addrs.len());
            for (slot, ip) in addrs.iter().enumerate() {
                let addr = SocketAddr::new(*ip, spec.port());
                let found = self.targets.iter().position(|t| {
                    t.addr == addr
                        && t.datacenter == scope
                        && (Arc::ptr_eq(&t.check, &spec) || *t.check == *spec)
                });
                let id = match found {
                    Some(i) => {
                        let id = TargetId(i as u32);
                        if self.targets[i].users.is_empty()
                            && !old.contains(&id)
                            && !change.added.contains(&id)
                        {
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
                            datacenter: scope.clone(),
                            users: Vec::new(),
                        });
                        change.added.push(id);
                        id
                    }
                };
                let users = &mut self.targets[id.0 as usize].users;
                if !users.contains(&(dc_id, slot)) {
                    users.push((dc_id, slot));
                }
                slots.push(id);
                new.push(id);
            }
            self.dcs[dc].checks[c].slots = slots;
        }
        for t in old {
            if self.targets[t.0 as usize].users.is_empty()
                && !new.contains(&t)
                && !change.retired.contains(&t)
            {
                change.retired.push(t);
            }
        }
        let p = &mut self.dcs[dc];
        p.slot_bits = (0..addrs.len()).map(|i| 1u64 << i).collect();
        p.answers = addrs;
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

    fn slots(s: &ProbeSet, dc: usize) -> Vec<TargetId> {
        s.dcs[dc].targets().collect()
    }

    #[test]
    fn addresses_still_present_keep_their_target() {
        let mut s = set();
        assert!(s.dcs[1].is_dynamic() && slots(&s, 1).is_empty());
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
        assert_eq!(slots(&s, 1), [TargetId(2), TargetId(3)]);
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
        assert!(slots(&s, 1).is_empty());
        // A static datacenter only records the serial.
        assert_eq!(
            s.set_addresses(0, &[ip("192.0.2.99")], 3),
            PlanChange::default()
        );
        assert_eq!(slots(&s, 0), [TargetId(0)]);
    }

    #[test]
    fn several_checks_get_a_target_per_address_each() {
        let mut host = DatacenterProbe::new("host", vec![], Some(CheckSpec::tcp(80)));
        host.checks.push(NamedCheck {
            name: "https".into(),
            spec: CheckSpec::tcp(443),
        });
        host.hostname = Some("lb.example.net.".into());
        let mut s = ProbeSet::build(&[host]).expect("plan");
        let c = s.set_addresses(0, &[ip("2001:db8::1"), ip("192.0.2.1")], 1);
        assert_eq!(c.added.len(), 4);
        // Bit order: IPv4 first.
        assert_eq!(s.dcs[0].answers, [ip("192.0.2.1"), ip("2001:db8::1")]);
        assert_eq!(s.dcs[0].checks[1].slots.len(), 2);
        assert_eq!(
            s.targets[s.dcs[0].checks[1].slots[0].0 as usize]
                .addr
                .port(),
            443
        );
    }

    #[test]
    fn min_up_all_needs_every_probed_address() {
        let mut s = set();
        s.dcs[1].min_up = MIN_UP_ALL;
        assert_eq!(s.dcs[1].addresses_needed(), 1, "at least one");
        s.set_addresses(1, &[ip("192.0.2.10"), ip("192.0.2.11")], 1);
        assert_eq!(s.dcs[1].addresses_needed(), 2);
        let fixed = DatacenterProbe {
            min_up: MIN_UP_ALL,
            ..DatacenterProbe::new("x", vec![ip("192.0.2.1")], Some(CheckSpec::tcp(80)))
        };
        assert!(ProbeSet::build(&[fixed]).is_ok(), "all is never too large");
    }
}
