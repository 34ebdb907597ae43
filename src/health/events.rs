//! Health state changes: kept for the status page and `/status`, and sent out as they happen
//! (`GET /events`, webhook notifications).
//!
//! ```text
//!  Aggregator (single writer) --push--> bounded ring (EVENTS_KEPT) --view--> /status, status page
//!                                 \--> broadcast::Sender<EventView> (never waits; a slow
//!                                       reader lags and is told how many it missed)
//!                                          --> GET /events (server-sent events)
//!                                          --> webhook notifier (its own queue and retries)
//! ```
//!
//! The aggregator records every change it logs — a target, check or datacenter going up or
//! down, an external verdict set, withdrawn or expired, an admin state change, a drain
//! completing. Nothing here is on the query path. The ring lives as long as the aggregator: a
//! reload that changes the datacenters starts a new one; the broadcast channel belongs to the
//! server and outlives every aggregator.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::input::Input;

/// How many changes are kept; older ones are dropped first.
pub(crate) const EVENTS_KEPT: usize = 64;

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// One probed address went up or down (after rise/fall).
    Target,
    /// One check of a datacenter with several went up or down (min-up over its addresses).
    Check,
    /// The datacenter's health changed (the deciding input says which verdict decided).
    Datacenter,
    /// An external verdict (pushed, feed, alert) was set, changed, withdrawn or expired.
    Input,
    /// An operator changed the admin state.
    Admin,
    /// Every answer naming a drained datacenter has expired.
    DrainComplete,
}

/// One recorded change.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    /// Increases by one per event (readers can tell new ones from seen ones).
    pub(crate) seq: u64,
    /// When it happened, on tokio's clock (for ages).
    pub(crate) at: Instant,
    /// When it happened, wall clock (for `/status`).
    pub(crate) wall: SystemTime,
    /// What changed.
    pub(crate) kind: EventKind,
    /// The datacenter it concerns.
    pub(crate) datacenter: String,
    /// The probed address, for `Target` events; the address an external verdict is about.
    pub(crate) address: Option<String>,
    /// The check, for `Target` and `Check` events.
    pub(crate) check: Option<String>,
    /// The input behind the change: which one decided (`Datacenter`), whose verdict (`Input`).
    pub(crate) input: Option<Input>,
    /// The state before (`up`/`down`, an admin state, `draining`).
    pub(crate) old: String,
    /// The state after.
    pub(crate) new: String,
    /// Why: the probe outcome (`status 503`, `connection refused`), `set through the API`, ...
    pub(crate) reason: String,
}

/// An event as `/status` shows it (with its age at the time of the request).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventView {
    /// Increases by one per event.
    pub seq: u64,
    /// When it happened, Unix milliseconds.
    pub(crate) at_unix_ms: u64,
    /// Milliseconds between the change and the request.
    pub ago_ms: u64,
    /// What changed.
    pub kind: EventKind,
    /// The datacenter it concerns.
    pub datacenter: String,
    /// The probed address, for `target` events.
    pub address: Option<String>,
    /// The check, for `target` and `check` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// The input behind the change: which one decided (`datacenter`), whose verdict
    /// (`input`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// The state before (`up`/`down`, an admin state, `draining`).
    pub old: String,
    /// The state after.
    pub new: String,
    /// Why: the probe outcome, `set by an operator`, ...
    pub reason: String,
}

/// Capacity of the server's event broadcast: readers further behind lose the oldest.
pub(crate) const BROADCAST_CAPACITY: usize = 256;

/// The bounded ring, and where new events are also sent.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventLog {
    events: VecDeque<Event>,
    next: u64,
    out: Option<broadcast::Sender<EventView>>,
}

/// What one change is, without its sequence number and time.
pub(crate) struct Change<'a> {
    /// What changed.
    pub(crate) kind: EventKind,
    /// The datacenter it concerns.
    pub(crate) datacenter: &'a str,
    /// The probed address, for `Target` changes; the address an external verdict is about.
    pub(crate) address: Option<String>,
    /// The check, for `Target` and `Check` changes.
    pub(crate) check: Option<String>,
    /// The input behind the change.
    pub(crate) input: Option<Input>,
    /// The state before.
    pub(crate) old: &'a str,
    /// The state after.
    pub(crate) new: &'a str,
    /// Why it changed.
    pub(crate) reason: String,
}

impl<'a> Change<'a> {
    /// A change of `kind` for `datacenter` from `old` to `new`, with no address, check or input.
    pub(crate) fn new(
        kind: EventKind,
        datacenter: &'a str,
        old: &'a str,
        new: &'a str,
        reason: String,
    ) -> Change<'a> {
        Change {
            kind,
            datacenter,
            address: None,
            check: None,
            input: None,
            old,
            new,
            reason,
        }
    }
}

impl EventLog {
    /// Also send every new event to `out` (without waiting: a full channel drops the oldest
    /// for the slowest reader).
    pub(crate) fn send_to(&mut self, out: broadcast::Sender<EventView>) {
        self.out = Some(out);
    }

    /// Records `c` as happening at `now`, dropping the oldest event when full.
    pub(crate) fn push(&mut self, c: Change<'_>, now: Instant) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.next += 1;
        // Wall time of `now`, which may lie a little in the past (a probe result's own time).
        let back = Instant::now().saturating_duration_since(now);
        let wall = SystemTime::now()
            .checked_sub(back)
            .unwrap_or(SystemTime::now());
        self.events.push_back(Event {
            seq: self.next,
            at: now,
            wall,
            kind: c.kind,
            datacenter: c.datacenter.to_string(),
            address: c.address,
            check: c.check,
            input: c.input,
            old: c.old.to_string(),
            new: c.new.to_string(),
            reason: c.reason,
        });
        if let (Some(out), Some(e)) = (&self.out, self.events.back()) {
            // No receiver (no stream open, no webhook) is not an error.
            let _ = out.send(view(e, now));
        }
    }

    /// Every kept event, newest first, with ages as of `now`.
    pub(crate) fn view(&self, now: Instant) -> Vec<EventView> {
        self.events.iter().rev().map(|e| view(e, now)).collect()
    }
}

/// `e` as readers see it at `now`.
fn view(e: &Event, now: Instant) -> EventView {
    EventView {
        seq: e.seq,
        at_unix_ms: e
            .wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ago_ms: u64::try_from(now.saturating_duration_since(e.at).as_millis()).unwrap_or(u64::MAX),
        kind: e.kind,
        datacenter: e.datacenter.clone(),
        address: e.address.clone(),
        check: e.check.clone(),
        input: e.input,
        old: e.old.clone(),
        new: e.new.clone(),
        reason: e.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(dc: &str) -> Change<'_> {
        Change::new(EventKind::Datacenter, dc, "up", "down", "status 503".into())
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_newest_first_with_ages() {
        let mut log = EventLog::default();
        let t0 = Instant::now();
        for i in 0..(EVENTS_KEPT + 5) {
            log.push(change(&format!("dc{i}")), t0);
            tokio::time::advance(std::time::Duration::from_millis(10)).await;
        }
        let v = log.view(Instant::now());
        assert_eq!(v.len(), EVENTS_KEPT);
        assert_eq!(v[0].datacenter, format!("dc{}", EVENTS_KEPT + 4));
        assert_eq!(v[0].seq, (EVENTS_KEPT + 5) as u64);
        assert_eq!(v.last().map(|e| e.datacenter.as_str()), Some("dc5"));
        assert_eq!(v[0].ago_ms, 10 * (EVENTS_KEPT as u64 + 5));
        assert_eq!(v[0].reason, "status 503");
    }
}
