//! A datacenter's state from its inputs, and why: the one place that combines them.
//!
//! ```text
//!  targets (rise/fall) --min-up per check--> checks_up --require--> probes_up
//!  external verdicts (inputs.rs): any active down wins, else an active up ----+
//!                                                                              v
//!       healthy = the external verdict if one holds, else probes_up (else up: no check)
//!       usable  = admin obey ? healthy : admin up (down, drain: no)   (DcState::usable)
//! ```
//!
//! [`Aggregator::reevaluate`] runs after every input that can change a datacenter (a target
//! flip, an external verdict set, withdrawn or expired, the restored state at start); it logs
//! and records the change with the input that decided it, and starts slow start on recovery.

use tokio::time::Instant;

use super::{Aggregator, updown, usable};
use crate::health::events::{Change, EventKind};
use crate::health::input::Input;
use crate::health::{CheckVerdict, Why};
use crate::probe::ProbeOutcome;

/// What made a datacenter's state worth computing again.
pub(super) enum Cause<'a> {
    /// Building the aggregator (after restoring saved state): no event, no ramp.
    Start,
    /// A target flipped on this probe result; `first` ends the startup assumption.
    Probe {
        outcome: &'a ProbeOutcome,
        first: bool,
    },
    /// An external verdict was set, changed, withdrawn or expired.
    Input,
    /// A hostname datacenter's target resolves to a new address set (its probes follow).
    Resolved { name: &'a str, addresses: usize },
}

impl Aggregator {
    /// Addresses of check `c` of datacenter `dc` that are up.
    fn check_addresses_up(&self, dc: usize, c: usize) -> usize {
        self.set.dcs[dc].checks[c]
            .slots
            .iter()
            .filter(|t| self.target_up(t.0 as usize))
            .count()
    }

    /// Each check's verdict, and the probes' verdict over them (`require`).
    pub(super) fn probe_verdict(&self, dc: usize) -> (bool, Vec<bool>) {
        let plan = &self.set.dcs[dc];
        let checks: Vec<bool> = (0..plan.checks.len())
            .map(|c| self.check_addresses_up(dc, c) >= plan.addresses_needed())
            .collect();
        if checks.is_empty() {
            return (true, checks);
        }
        let up = checks.iter().filter(|u| **u).count();
        (up >= plan.needed(), checks)
    }

    /// `addr_up` bits as the probes see them: an address is up when `require` of the checks
    /// pass on it; with check addresses, every bit follows the probes' verdict.
    pub(super) fn probe_bits(&self, dc: usize) -> u64 {
        let plan = &self.set.dcs[dc];
        if !plan.has_checks() {
            return u64::MAX;
        }
        if plan.follows_check_addresses {
            return if self.dcs[dc].probes_up {
                plan.all_bits
            } else {
                0
            };
        }
        let needed = plan.needed();
        let mut bits = 0u64;
        for (slot, b) in plan.slot_bits.iter().enumerate() {
            let up = plan
                .checks
                .iter()
                .filter(|c| {
                    c.slots
                        .get(slot)
                        .is_some_and(|t| self.target_up(t.0 as usize))
                })
                .count();
            if up >= needed {
                bits |= b;
            }
        }
        bits
    }

    /// The probes in words, from counts only (stable between flips): `probes: 1 of 2
    /// addresses up (1 needed)`, or with several checks `probes: 1 of 2 checks up (require
    /// all); db: 0 of 1 addresses up (1 needed)`, naming the checks that decided: the failing
    /// ones of a datacenter that is down, the passing ones of one that is up only thanks to
    /// them (none when every check passes).
    pub(super) fn probes_summary(&self, dc: usize) -> String {
        let s = self.probes_summary_inner(dc);
        match s.strip_prefix("probes: ") {
            Some(rest) if self.uses_shared(dc) => format!("cluster: {rest}"),
            _ => s,
        }
    }

    fn probes_summary_inner(&self, dc: usize) -> String {
        let plan = &self.set.dcs[dc];
        let d = &self.dcs[dc];
        let addrs = |c: usize| {
            format!(
                "{} of {} addresses up ({} needed)",
                self.check_addresses_up(dc, c),
                plan.checks[c].slots.len(),
                plan.addresses_needed()
            )
        };
        match plan.checks.len() {
            0 => "no health check: always up".into(),
            1 => format!("probes: {}", addrs(0)),
            n => {
                let up = d.checks_up.iter().filter(|u| **u).count();
                let mut s = format!(
                    "probes: {up} of {n} checks up (require {})",
                    plan.require.describe()
                );
                if up < n {
                    for (c, check) in plan.checks.iter().enumerate() {
                        if d.checks_up.get(c).copied().unwrap_or(true) == d.probes_up {
                            s.push_str(&format!("; {}: {}", check.name, addrs(c)));
                        }
                    }
                }
                s
            }
        }
    }

    /// What decided datacenter `dc`'s health, in words (stable between changes).
    pub(super) fn health_reason(&self, dc: usize) -> String {
        match self.inputs.deciding(dc) {
            Some(e) => e.describe(),
            None => self.probes_summary(dc),
        }
    }

    /// Why datacenter `dc` is in its state, for `explain`.
    pub(super) fn why(&self, dc: usize) -> Why {
        let plan = &self.set.dcs[dc];
        let d = &self.dcs[dc];
        let mut reason = self.health_reason(dc);
        if d.admin != crate::health::AdminState::Obey {
            reason = format!("admin: {} (health: {reason})", d.admin.as_str());
        }
        Why {
            reason,
            checks: plan
                .checks
                .iter()
                .zip(&d.checks_up)
                .map(|(c, up)| CheckVerdict {
                    name: c.name.clone(),
                    up: *up,
                })
                .collect(),
            require: if plan.has_checks() {
                plan.require.describe()
            } else {
                String::new()
            },
        }
    }

    /// Computes datacenter `dc`'s checks, probe verdict and health again at `now`; logs and
    /// records what changed and why.
    pub(super) fn reevaluate(&mut self, dc: usize, now: Instant, cause: Cause<'_>) {
        let (probes_up, checks_up) = self.probe_verdict(dc);
        let plan = &self.set.dcs[dc];
        let old_checks = std::mem::replace(&mut self.dcs[dc].checks_up, checks_up.clone());
        self.dcs[dc].probes_up = probes_up;
        // Several checks: each one's change is an event of its own.
        if plan.checks.len() > 1 && !matches!(cause, Cause::Start) {
            for (c, (old, new)) in old_checks.iter().zip(&checks_up).enumerate() {
                if old != new {
                    let check = &plan.checks[c];
                    tracing::info!(dc = %plan.name, check = %check.name, old = updown(*old), new = updown(*new), "check state change");
                    let up = self.check_addresses_up(dc, c);
                    self.events.push(
                        Change {
                            check: Some(check.name.clone()),
                            input: Some(Input::Probes),
                            ..Change::new(
                                EventKind::Check,
                                &plan.name,
                                updown(*old),
                                updown(*new),
                                format!(
                                    "{up} of {} addresses up, {} needed",
                                    check.slots.len(),
                                    plan.addresses_needed()
                                ),
                            )
                        },
                        now,
                    );
                    self.why_dirty = true;
                }
            }
        }
        let (healthy, input) = match self.inputs.deciding(dc) {
            Some(e) => (e.up, e.kind.input()),
            None if plan.has_checks() && self.uses_shared(dc) => (probes_up, Input::Cluster),
            None if plan.has_checks() => (probes_up, Input::Probes),
            None => (true, Input::Config),
        };
        let d = &self.dcs[dc];
        let (was_healthy, was_input) = (d.healthy, d.health_input);
        let was_usable = usable(d.admin, d.healthy);
        if input != was_input {
            self.why_dirty = true;
        }
        self.dcs[dc].health_input = input;
        if healthy == was_healthy {
            return;
        }
        self.why_dirty = true;
        let reason = match (&cause, input) {
            (Cause::Probe { outcome, first }, Input::Probes) => {
                let detail = match plan.checks.len() {
                    1 => format!(
                        "{} of {} addresses up, {} needed",
                        self.check_addresses_up(dc, 0),
                        plan.checks[0].slots.len(),
                        plan.addresses_needed()
                    ),
                    n => format!(
                        "{} of {n} checks up, {} needed",
                        checks_up.iter().filter(|u| **u).count(),
                        plan.needed()
                    ),
                };
                format!("{} ({detail})", super::event_reason(outcome, *first))
            }
            (_, Input::Cluster) => self.probes_summary(dc),
            (Cause::Resolved { name, addresses }, Input::Probes) => format!(
                "{name} now resolves to {addresses} address{}; {}",
                if *addresses == 1 { "" } else { "es" },
                self.probes_summary(dc)
            ),
            (_, Input::Probes | Input::Config) => {
                format!(
                    "external verdicts no longer hold; {}",
                    self.probes_summary(dc)
                )
            }
            _ => self.health_reason(dc),
        };
        tracing::info!(
            dc = %plan.name,
            old = updown(was_healthy),
            new = updown(healthy),
            input = input.as_str(),
            reason = %reason,
            "datacenter state change"
        );
        if !matches!(cause, Cause::Start) {
            self.events.push(
                Change {
                    input: Some(input),
                    ..Change::new(
                        EventKind::Datacenter,
                        &plan.name,
                        updown(was_healthy),
                        updown(healthy),
                        reason,
                    )
                },
                now,
            );
        }
        // A new address set is not a recovery (its first probes decide): no ramp.
        let first = matches!(
            cause,
            Cause::Start | Cause::Resolved { .. } | Cause::Probe { first: true, .. }
        );
        let window = plan.slow_start();
        let d = &mut self.dcs[dc];
        d.healthy = healthy;
        if !was_usable && usable(d.admin, healthy) && !first {
            d.came_up_at = window.map(|_| now);
        } else if !healthy {
            d.came_up_at = None;
        }
    }
}
