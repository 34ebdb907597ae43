//! The per-target state machine: rise/fall hysteresis over probe results, with the load
//! figure and the latency EWMA they carry. Pure over its inputs (the result's own time), so it
//! is tested here without a runtime.
//!
//! The first result of a target without warm state decides its state directly (the first
//! probe round ends the startup assumption); after that, `rise` consecutive passes bring it
//! up and `fall` consecutive fails take it down.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::health::ewma::Ewma;
use crate::probe::{LoadFigure, ProbeOutcome, ProbeResult};

/// The last result of a target.
#[derive(Clone, Debug)]
pub(super) struct Last {
    pub(super) outcome: ProbeOutcome,
    pub(super) at: Instant,
    pub(super) latency: Option<Duration>,
}

/// What the aggregator knows of one target (one check on one address).
#[derive(Clone, Debug)]
pub(super) struct TargetState {
    pub(super) addr: SocketAddr,
    pub(super) fingerprint: String,
    pub(super) rise: u32,
    pub(super) fall: u32,
    pub(super) up: bool,
    /// At least one probe result since start.
    pub(super) probed: bool,
    /// State came from a fresh warm-start file (still used to decide until probes change it;
    /// unsettled until the first probe).
    pub(super) warm: bool,
    pub(super) passes: u32,
    pub(super) fails: u32,
    /// Results since the last state change; `u32::MAX` when there was none.
    pub(super) since_change: u32,
    pub(super) probes: u64,
    pub(super) last: Option<Last>,
    pub(super) load: Option<(LoadFigure, Instant)>,
    pub(super) load_error: Option<String>,
    pub(super) latency: Ewma,
}

impl TargetState {
    /// Confirmed by a live probe, and not within rise/fall of a change. Before its first
    /// probe a target is unsettled whether it stands on the startup assumption or on warm
    /// state restored from `health.json`: that state is used to decide, but it may be stale
    /// (the datacenter may have changed while gslbd was down), so answers built from it carry
    /// at most the check interval as TTL until a probe confirms it.
    pub(super) fn settled(&self) -> bool {
        if !self.probed {
            return false;
        }
        let pending_flip = if self.up {
            self.fails > 0
        } else {
            self.passes > 0
        };
        let threshold = if self.up { self.rise } else { self.fall };
        !pending_flip && self.since_change >= threshold
    }

    /// The load figure, unless older than `max_age`.
    pub(super) fn fresh_load(&self, now: Instant, max_age: Duration) -> Option<LoadFigure> {
        self.load
            .filter(|(_, at)| now.saturating_duration_since(*at) <= max_age)
            .map(|(f, _)| f)
    }
}

/// A change of a target's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Flip {
    /// The new state (up = true).
    pub(super) up: bool,
    /// The change ends the startup assumption (not a recovery: no slow start).
    pub(super) first: bool,
}

impl TargetState {
    /// A target that has not been probed, assumed `up` (the startup setting).
    pub(super) fn new(
        addr: SocketAddr,
        fingerprint: String,
        rise: u32,
        fall: u32,
        up: bool,
        half_life: Duration,
    ) -> TargetState {
        TargetState {
            addr,
            fingerprint,
            rise,
            fall,
            up,
            probed: false,
            warm: false,
            passes: 0,
            fails: 0,
            since_change: u32::MAX,
            probes: 0,
            last: None,
            load: None,
            load_error: None,
            latency: Ewma::new(half_life),
        }
    }

    /// Takes one result at its own time `r.at`; returns the state change, if any.
    pub(super) fn observe(&mut self, r: &ProbeResult) -> Option<Flip> {
        let now = r.at;
        self.probes += 1;
        self.last = Some(Last {
            outcome: r.outcome.clone(),
            at: now,
            latency: r.latency,
        });
        let pass = r.outcome.is_pass();
        if pass && let Some(l) = r.latency {
            self.latency.update(l.as_secs_f64() * 1000.0, now);
        }
        match (&r.outcome, r.load) {
            (ProbeOutcome::BadLoad(reason), _) => {
                if self.load_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(target_addr = %self.addr, reason = %reason, "load figure unreadable; keeping the last good value");
                }
                self.load_error = Some(reason.clone());
            }
            (ProbeOutcome::Pass, Some(fig)) => {
                self.load = Some((fig, now));
                self.load_error = None;
            }
            _ => {}
        }
        if pass {
            self.passes = self.passes.saturating_add(1);
            self.fails = 0;
        } else {
            self.fails = self.fails.saturating_add(1);
            self.passes = 0;
        }
        let first = !self.probed && !self.warm;
        self.probed = true;
        let new_up = if first {
            pass
        } else if self.up {
            self.fails < self.fall
        } else {
            self.passes >= self.rise
        };
        if new_up == self.up {
            self.since_change = self.since_change.saturating_add(1);
            return None;
        }
        self.up = new_up;
        self.since_change = 0;
        Some(Flip { up: new_up, first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::TargetId;

    fn target(up: bool) -> TargetState {
        TargetState::new(
            "127.0.0.1:80".parse().unwrap(),
            "tcp:80".into(),
            2,
            3,
            up,
            Duration::from_secs(30),
        )
    }

    fn result(pass: bool, at: Instant) -> ProbeResult {
        let outcome = if pass {
            ProbeOutcome::Pass
        } else {
            ProbeOutcome::Refused
        };
        ProbeResult::new(TargetId(0), outcome, at)
    }

    #[test]
    fn first_result_decides_then_rise_and_fall_apply() {
        let t0 = Instant::now();
        let mut t = target(true);
        assert!(!t.settled(), "on the startup assumption");
        // First result: down at once, marked first (no slow start for it).
        assert_eq!(
            t.observe(&result(false, t0)),
            Some(Flip {
                up: false,
                first: true
            })
        );
        // One pass is not enough to rise (rise = 2).
        assert_eq!(t.observe(&result(true, t0)), None);
        assert!(!t.up && !t.settled());
        assert_eq!(
            t.observe(&result(true, t0)),
            Some(Flip {
                up: true,
                first: false
            })
        );
        // Two fails stay up (fall = 3), a pass resets the count.
        assert_eq!(t.observe(&result(false, t0)), None);
        assert_eq!(t.observe(&result(false, t0)), None);
        assert_eq!(t.observe(&result(true, t0)), None);
        assert_eq!(t.observe(&result(false, t0)), None);
        assert_eq!(t.observe(&result(false, t0)), None);
        assert_eq!(
            t.observe(&result(false, t0)),
            Some(Flip {
                up: false,
                first: false
            })
        );
        assert_eq!(t.probes, 9);
    }

    #[test]
    fn settled_after_rise_or_fall_results_without_a_pending_flip() {
        let t0 = Instant::now();
        let mut t = target(true);
        t.observe(&result(true, t0));
        // Still up; since_change counts results since the last change (none: MAX).
        assert!(t.settled());
        t.observe(&result(false, t0));
        assert!(!t.settled(), "a fail is pending against the up state");
        t.observe(&result(true, t0));
        assert!(t.settled());
    }

    #[test]
    fn warm_state_is_unsettled_until_a_probe_confirms_it() {
        let t0 = Instant::now();
        // Restored as down, its fall long done: used to decide, but not settled.
        let mut t = target(false);
        t.warm = true;
        t.fails = 5;
        assert!(!t.settled(), "restored, not probed yet");
        // A live fail confirms it.
        assert_eq!(t.observe(&result(false, t0)), None);
        assert!(t.settled());
        // Restored as up; a live pass confirms it.
        let mut t = target(true);
        t.warm = true;
        t.passes = 3;
        assert!(!t.settled(), "restored, not probed yet");
        assert_eq!(t.observe(&result(true, t0)), None);
        assert!(t.settled());
    }

    #[test]
    fn load_figures_and_errors() {
        let t0 = Instant::now();
        let mut t = target(true);
        let mut r = result(true, t0);
        r.load = Some(LoadFigure::Utilisation(0.4));
        t.observe(&r);
        assert_eq!(
            t.fresh_load(t0, Duration::from_secs(60)),
            Some(LoadFigure::Utilisation(0.4))
        );
        let bad = ProbeResult::new(TargetId(0), ProbeOutcome::BadLoad("no value".into()), t0);
        assert_eq!(
            t.observe(&bad),
            None,
            "a bad load figure still counts as a pass"
        );
        assert_eq!(t.load_error.as_deref(), Some("no value"));
        assert_eq!(
            t.fresh_load(t0, Duration::from_secs(60)),
            Some(LoadFigure::Utilisation(0.4)),
            "the last good figure is kept"
        );
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            t.fresh_load(later, Duration::from_secs(60)),
            None,
            "aged out"
        );
    }
}
