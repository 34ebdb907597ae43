//! Per-target verdicts from a shared store (a cluster's quorum), and the observations that go
//! back out to it.
//!
//! ```text
//!  Update::Targets{source, [TargetVerdict]} --resolve key--> shared[target] = verdict
//!       (replaces the source's whole set; missing targets released)   expires = now + ttl
//!                                         |
//!      target_up(t) = shared[t].up if held, else the local rise/fall state (targets[t].up)
//!      --> combine.rs: min-up per check, require per datacenter (unchanged)
//!
//!  a target this process does not probe now (Steering says inactive) follows the shared
//!  verdict in its local state, so whenever the local probes take over again (the target is
//!  handed to this node, or the cluster is lost) they start from the shared view: no flap.
//!
//!  apply(probe result) --> TargetObservation (state after rise/fall) --try_send--> cluster
//! ```
//!
//! Only the targets of the plan the runtime started with are shared: those a hostname
//! datacenter gains at run time are probed by every node and decided by each alone.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::combine::Cause;
use super::{Aggregator, updown};
use crate::health::events::{Change, EventKind};
use crate::health::input::{Applied, Input, Source, TargetObservation, TargetVerdict};
use crate::probe::{LoadFigure, Steering, TargetId};

/// One shared verdict held for a target.
#[derive(Clone, Debug)]
pub(super) struct SharedVerdict {
    pub(super) source: Source,
    pub(super) up: bool,
    pub(super) load: Option<f64>,
    pub(super) latency_ms: Option<f64>,
    pub(super) reason: String,
    pub(super) expires: Instant,
}

impl Aggregator {
    /// The state a target counts as: its shared verdict while one holds, else its own.
    pub(super) fn target_up(&self, t: usize) -> bool {
        match self.shared.get(t).and_then(Option::as_ref) {
            Some(v) => v.up,
            None => self.targets[t].up,
        }
    }

    /// Whether datacenter `dc`'s probe verdict rests on at least one shared target verdict.
    pub(super) fn uses_shared(&self, dc: usize) -> bool {
        self.set.dcs[dc]
            .targets()
            .any(|t| self.shared.get(t.0 as usize).is_some_and(Option::is_some))
    }

    /// The shared verdict held for target `t`, if any.
    pub(super) fn shared_of(&self, t: usize) -> Option<&SharedVerdict> {
        self.shared.get(t).and_then(Option::as_ref)
    }

    /// From now on, targets `steering` marks inactive follow the shared verdicts in their
    /// local state (they are not probed here).
    pub fn set_steering(&mut self, steering: Steering) {
        self.steering = Some(steering);
    }

    /// Sends what the local probes make of each target, after every result applied, to
    /// `out` (never waiting: when `out` is full the observation is dropped; the next result
    /// brings a newer one).
    pub fn set_observations_out(&mut self, out: mpsc::Sender<TargetObservation>) {
        self.observations = Some(out);
    }

    /// The observation of target `t` as it stands, sent to the observer if there is one.
    pub(super) fn send_observation(&self, t: TargetId, now: Instant) {
        let Some(out) = &self.observations else {
            return;
        };
        let Some(s) = self.targets.get(t.0 as usize) else {
            return;
        };
        let load = s
            .fresh_load(now, self.settings.load_max_age)
            .and_then(|f| match f {
                LoadFigure::Utilisation(u) => Some(u),
                LoadFigure::Connections(_) => None,
            });
        let _ = out.try_send(TargetObservation {
            target: t,
            up: s.up,
            passes: s.passes,
            fails: s.fails,
            latency_ms: s.latency.get(),
            load,
            last: s
                .last
                .as_ref()
                .map(|l| l.outcome.to_string())
                .unwrap_or_default(),
        });
    }

    /// A target that is not probed here takes the shared state into its local state.
    fn follow(&mut self, t: usize, up: bool) {
        let probed_here = self
            .steering
            .as_ref()
            .is_none_or(|s| s.is_active(TargetId(t as u32)));
        if probed_here {
            return;
        }
        let s = &mut self.targets[t];
        s.up = up;
        s.passes = 0;
        s.fails = 0;
        s.warm = true;
        s.since_change = s.rise.max(s.fall);
    }

    /// Applies `Update::Targets`: `source`'s per-target verdicts become exactly `verdicts`.
    pub(super) fn input_targets(
        &mut self,
        source: Source,
        verdicts: Vec<TargetVerdict>,
        now: Instant,
    ) -> Applied {
        let mut applied = Applied::default();
        // Targets added at run time (hostname datacenters) have no slot here: they are
        // never shared, every node decides them from its own probes.
        let mut listed = vec![false; self.shared.len()];
        let mut changed_targets: Vec<(usize, bool, bool, String)> = Vec::new();
        for v in verdicts {
            let Some(&t) = self
                .target_keys
                .get(&v.target)
                .filter(|&&t| t < self.shared.len())
            else {
                applied.unknown.push(v.target);
                continue;
            };
            listed[t] = true;
            let before = self.target_up(t);
            let ttl = v.ttl.max(Duration::from_millis(1));
            let load = v.load.filter(|l| l.is_finite()).map(|l| l.clamp(0.0, 1.0));
            let same = self.shared[t]
                .as_ref()
                .is_some_and(|old| old.up == v.up && old.source == source);
            if !same {
                applied.changed += 1;
            }
            self.shared[t] = Some(SharedVerdict {
                source: source.clone(),
                up: v.up,
                load,
                latency_ms: v.latency_ms,
                reason: v.reason.clone(),
                expires: now + ttl,
            });
            self.follow(t, v.up);
            if before != v.up {
                changed_targets.push((t, before, v.up, v.reason));
            }
        }
        for (t, was_listed) in listed.iter().enumerate() {
            if *was_listed {
                continue;
            }
            if self.shared[t].as_ref().is_some_and(|v| v.source == source) {
                applied.changed += 1;
                let before = self.target_up(t);
                let old = self.shared[t].take();
                if let Some(old) = old {
                    self.follow(t, old.up);
                }
                let after = self.target_up(t);
                if before != after {
                    changed_targets.push((t, before, after, "shared verdict withdrawn".into()));
                }
            }
        }
        applied.active = self
            .shared
            .iter()
            .filter(|v| v.as_ref().is_some_and(|v| v.source == source))
            .count();
        if applied.changed > 0 {
            self.why_dirty = true;
        }
        self.after_shared_change(changed_targets, now);
        applied
    }

    /// Removes the shared verdicts whose time is up at `now`: the local probes decide those
    /// targets again, starting from the state the verdict left.
    pub(crate) fn expire_shared(&mut self, now: Instant) {
        let mut changed = Vec::new();
        for t in 0..self.shared.len() {
            if self.shared[t].as_ref().is_some_and(|v| v.expires <= now) {
                let before = self.target_up(t);
                if let Some(old) = self.shared[t].take() {
                    self.follow(t, old.up);
                }
                self.why_dirty = true;
                let after = self.target_up(t);
                if before != after {
                    changed.push((t, before, after, "shared verdict expired".into()));
                }
            }
        }
        if !changed.is_empty() || self.why_dirty {
            self.after_shared_change(changed, now);
        }
    }

    /// Events for targets whose effective state changed, and the datacenters they decide
    /// computed again.
    fn after_shared_change(&mut self, changed: Vec<(usize, bool, bool, String)>, now: Instant) {
        let mut dcs: Vec<usize> = Vec::new();
        for (t, before, after, reason) in changed {
            let target = &self.set.targets[t];
            let addr = target.addr;
            for &(dc, _) in &target.users {
                let plan = &self.set.dcs[dc as usize];
                let check = plan
                    .checks
                    .iter()
                    .find(|c| c.slots.contains(&TargetId(t as u32)))
                    .map(|c| c.name.clone());
                tracing::info!(dc = %plan.name, check = check.as_deref().unwrap_or(""), addr = %addr, old = updown(before), new = updown(after), reason = %reason, "target state change (cluster)");
                self.events.push(
                    Change {
                        address: Some(addr.to_string()),
                        check,
                        input: Some(Input::Cluster),
                        ..Change::new(
                            EventKind::Target,
                            &plan.name,
                            updown(before),
                            updown(after),
                            reason.clone(),
                        )
                    },
                    now,
                );
                dcs.push(dc as usize);
            }
        }
        // A verdict may also have appeared or gone without changing the state: the deciding
        // input (probes or cluster) is worth computing again for every datacenter.
        dcs.extend(0..self.dcs.len());
        dcs.sort_unstable();
        dcs.dedup();
        for dc in dcs {
            self.reevaluate(dc, now, Cause::Input);
        }
    }
}
