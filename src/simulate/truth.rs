//! The ground truth: what each datacenter and address really does over time, as the scenario
//! says. Fixed before the run starts (it does not depend on gslbd), so the engine can ask
//! "was this address down at t" and "how long of (a, b] was it down" at any point.
//!
//! ```text
//! events: health down/up, flap, latency, load ──> per datacenter: down periods, latency and
//!                                                  background-load step functions
//!                                             ──> per address: down periods
//!                                             ──> per (datacenter, check): down periods of
//!                                                 that check only (`check = "db"`)
//! ```

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::scenario::{Action, FailMode, Scenario, Subject};
use super::{Ns, ns};

/// Default probe latency when the scenario gives none.
pub(crate) const DEFAULT_LATENCY_MS: f64 = 20.0;

/// A time the subject is down: `[start, end)` in simulated time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Period {
    pub(crate) start: Ns,
    pub(crate) end: Ns,
    /// How probes fail meanwhile.
    pub(crate) fail: FailMode,
}

/// A step function over time: the value of the last step at or before `t`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Steps<T: Copy>(Vec<(Ns, T)>);

impl<T: Copy> Steps<T> {
    pub(crate) fn new(initial: T) -> Steps<T> {
        Steps(vec![(0, initial)])
    }

    fn set(&mut self, at: Ns, v: T) {
        let i = self.0.partition_point(|(t, _)| *t <= at);
        self.0.insert(i, (at, v));
    }

    pub(crate) fn at(&self, t: Ns) -> T {
        let i = self.0.partition_point(|(s, _)| *s <= t);
        self.0[i.saturating_sub(1)].1
    }
}

/// Ground truth of one datacenter.
#[derive(Clone, Debug)]
pub(crate) struct DcTruth {
    /// Down periods, sorted and merged.
    pub(crate) down: Vec<Period>,
    /// Probe latency (ms) and its jitter (ms, uniform ±).
    pub(crate) latency: Steps<(f64, f64)>,
    /// Utilisation from other traffic.
    pub(crate) background: Steps<f64>,
    /// Client queries per second at utilisation 1.
    pub(crate) capacity: f64,
}

/// Everything the scenario says about the world, by global datacenter index.
#[derive(Clone, Debug)]
pub(crate) struct Truth {
    pub(crate) dcs: Vec<DcTruth>,
    /// Down periods of single addresses, sorted and merged.
    pub(crate) addrs: FxHashMap<IpAddr, Vec<Period>>,
    /// Down periods of one check of a datacenter (its other checks pass), sorted and merged.
    pub(crate) checks: FxHashMap<(usize, String), Vec<Period>>,
}

/// Index of the period containing `t`, if any.
pub(crate) fn containing(periods: &[Period], t: Ns) -> Option<&Period> {
    let i = periods.partition_point(|p| p.end <= t);
    periods.get(i).filter(|p| p.start <= t)
}

/// Nanoseconds of `(a, b]` covered by `periods`.
pub(crate) fn overlap(periods: &[Period], a: Ns, b: Ns) -> Ns {
    if b <= a {
        return 0;
    }
    let mut total = 0;
    let first = periods.partition_point(|p| p.end <= a);
    for p in &periods[first..] {
        if p.start >= b {
            break;
        }
        total += p.end.min(b).saturating_sub(p.start.max(a));
    }
    total
}

/// Sorts and merges overlapping or touching periods (the earlier one's fail mode wins).
pub(crate) fn merge(mut v: Vec<Period>) -> Vec<Period> {
    v.sort_by_key(|p| (p.start, p.end));
    let mut out: Vec<Period> = Vec::with_capacity(v.len());
    for p in v {
        if p.end <= p.start {
            continue;
        }
        match out.last_mut() {
            Some(last) if p.start <= last.end => last.end = last.end.max(p.end),
            _ => out.push(p),
        }
    }
    out
}

/// One `health` event: (time, up?, fail mode).
type Switch = (Ns, Option<bool>, FailMode);

/// Down periods from an ordered list of switches; open at `end`.
fn periods_from(switches: &[Switch], end: Ns) -> Vec<Period> {
    let mut out = Vec::new();
    let mut open: Option<(Ns, FailMode)> = None;
    for &(t, up, fail) in switches {
        match (up, open) {
            (Some(false), None) => open = Some((t, fail)),
            (Some(true), Some((s, f))) => {
                out.push(Period {
                    start: s,
                    end: t,
                    fail: f,
                });
                open = None;
            }
            _ => {}
        }
    }
    if let Some((s, f)) = open {
        out.push(Period {
            start: s,
            end,
            fail: f,
        });
    }
    out
}

impl Truth {
    /// Builds the ground truth of `dcs` (global names, with each one's zone capacity) from the
    /// scenario; scenario time 0 is simulated time `warm`, the run ends at `end`.
    pub(crate) fn build(scenario: &Scenario, dcs: &[(String, f64)], warm: Ns, end: Ns) -> Truth {
        let index: FxHashMap<&str, usize> = dcs
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect();
        let mut out = Truth {
            dcs: dcs
                .iter()
                .map(|(name, zone_capacity)| {
                    let t = scenario
                        .datacenters
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.clone())
                        .unwrap_or_default();
                    DcTruth {
                        down: Vec::new(),
                        latency: Steps::new((
                            t.latency
                                .map_or(DEFAULT_LATENCY_MS, |d| d.as_secs_f64() * 1000.0),
                            t.latency_jitter.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
                        )),
                        background: Steps::new(t.load.unwrap_or(0.0)),
                        capacity: t.capacity.unwrap_or(*zone_capacity),
                    }
                })
                .collect(),
            addrs: FxHashMap::default(),
            checks: FxHashMap::default(),
        };
        // Switches per subject, in time order, then flaps as extra periods.
        let mut dc_switch: Vec<Vec<(Ns, Option<bool>, FailMode)>> = vec![Vec::new(); dcs.len()];
        let mut addr_switch: FxHashMap<IpAddr, Vec<(Ns, Option<bool>, FailMode)>> =
            FxHashMap::default();
        let mut dc_extra: Vec<Vec<Period>> = vec![Vec::new(); dcs.len()];
        let mut addr_extra: FxHashMap<IpAddr, Vec<Period>> = FxHashMap::default();
        let mut check_switch: FxHashMap<(usize, String), Vec<Switch>> = FxHashMap::default();
        let mut check_extra: FxHashMap<(usize, String), Vec<Period>> = FxHashMap::default();
        for e in &scenario.events {
            let at = warm + ns(e.at);
            let dc = match &e.subject {
                Some(Subject::Datacenter(n)) => index.get(n.as_str()).copied(),
                _ => None,
            };
            let addr = match &e.subject {
                Some(Subject::Address(a)) => Some(*a),
                _ => None,
            };
            match &e.action {
                Action::Health { up, fail } => {
                    let s = (at, Some(*up), *fail);
                    if let (Some(d), Some(c)) = (dc, &e.check) {
                        check_switch.entry((d, c.clone())).or_default().push(s);
                    } else if let Some(d) = dc {
                        dc_switch[d].push(s);
                    } else if let Some(a) = addr {
                        addr_switch.entry(a).or_default().push(s);
                    }
                }
                Action::Flap {
                    down,
                    up,
                    until,
                    fail,
                } => {
                    let until = (warm + ns(*until)).min(end);
                    let mut t = at;
                    let mut v = Vec::new();
                    while t < until {
                        v.push(Period {
                            start: t,
                            end: (t + ns(*down)).min(until),
                            fail: *fail,
                        });
                        t += ns(*down) + ns(*up);
                    }
                    if let (Some(d), Some(c)) = (dc, &e.check) {
                        check_extra.entry((d, c.clone())).or_default().extend(v);
                    } else if let Some(d) = dc {
                        dc_extra[d].extend(v);
                    } else if let Some(a) = addr {
                        addr_extra.entry(a).or_default().extend(v);
                    }
                }
                Action::Latency { latency, jitter } => {
                    if let Some(d) = dc {
                        let prev = out.dcs[d].latency.at(at);
                        let l = latency.as_secs_f64() * 1000.0;
                        let j = jitter.map_or(prev.1, |j| j.as_secs_f64() * 1000.0);
                        out.dcs[d].latency.set(at, (l, j));
                    }
                }
                Action::Load(l) => {
                    if let Some(d) = dc {
                        out.dcs[d].background.set(at, *l);
                    }
                }
                Action::Admin(_) | Action::Pushed { .. } | Action::Zones(_) => {}
            }
        }
        for (d, sw) in dc_switch.iter().enumerate() {
            let mut p = periods_from(sw, end);
            p.append(&mut dc_extra[d]);
            out.dcs[d].down = merge(p);
        }
        let mut keys: Vec<IpAddr> = addr_switch
            .keys()
            .chain(addr_extra.keys())
            .copied()
            .collect();
        keys.sort();
        keys.dedup();
        for a in keys {
            let mut p = addr_switch
                .get(&a)
                .map(|sw| periods_from(sw, end))
                .unwrap_or_default();
            if let Some(x) = addr_extra.get_mut(&a) {
                p.append(x);
            }
            out.addrs.insert(a, merge(p));
        }
        let mut keys: Vec<(usize, String)> = check_switch
            .keys()
            .chain(check_extra.keys())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let mut p = check_switch
                .get(&k)
                .map(|sw| periods_from(sw, end))
                .unwrap_or_default();
            if let Some(x) = check_extra.get_mut(&k) {
                p.append(x);
            }
            out.checks.insert(k, merge(p));
        }
        out
    }

    /// Down periods of check `name` of datacenter `dc` alone (empty when it never fails on
    /// its own).
    pub(crate) fn check_periods(&self, dc: usize, name: &str) -> &[Period] {
        // The map is small (one entry per check the scenario fails): a scan is enough.
        self.checks
            .iter()
            .find(|((d, c), _)| *d == dc && c == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// Down periods of address `ip` of datacenter `dc`: the datacenter's, the address's own
    /// and those of any one of its checks (what that check guards is broken: clients sent
    /// there meanwhile count as sent to a failed datacenter).
    pub(crate) fn addr_periods(&self, dc: usize, ip: IpAddr) -> Vec<Period> {
        let mut v = self.dcs[dc].down.clone();
        if let Some(a) = self.addrs.get(&ip) {
            v.extend_from_slice(a);
        }
        for ((d, _), p) in &self.checks {
            if *d == dc {
                v.extend_from_slice(p);
            }
        }
        merge(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(start: Ns, end: Ns) -> Period {
        Period {
            start,
            end,
            fail: FailMode::Timeout,
        }
    }

    #[test]
    fn periods_overlap_and_merge() {
        let v = merge(vec![p(10, 20), p(15, 30), p(40, 50), p(5, 5)]);
        assert_eq!(v, vec![p(10, 30), p(40, 50)]);
        assert_eq!(overlap(&v, 0, 100), 30);
        assert_eq!(overlap(&v, 25, 45), 10);
        assert_eq!(overlap(&v, 30, 40), 0);
        assert!(containing(&v, 10).is_some());
        assert!(containing(&v, 30).is_none());
        assert!(containing(&v, 49).is_some());
    }

    #[test]
    fn switches_make_periods() {
        let f = FailMode::Timeout;
        let sw = [
            (10, Some(false), f),
            (12, Some(false), f),
            (20, Some(true), f),
            (30, Some(false), f),
        ];
        assert_eq!(periods_from(&sw, 100), vec![p(10, 20), p(30, 100)]);
    }

    #[test]
    fn steps() {
        let mut s = Steps::new(1.0);
        s.set(10, 2.0);
        s.set(5, 3.0);
        assert_eq!(
            (s.at(0), s.at(5), s.at(9), s.at(10), s.at(99)),
            (1.0, 3.0, 3.0, 2.0, 2.0)
        );
    }
}
