//! External verdicts (pushed, feed, alert): where they enter the aggregator, how they are
//! kept, and how they expire. [`Aggregator::input`] is the only way in.
//!
//! ```text
//!  Update::Set / Clear / Replace (source = kind + id)
//!     --resolve subject--> (datacenter, whole or one answer address)
//!     --upsert / remove--> entries keyed by (kind, id, datacenter, address)
//!                             each with expires = applied + ttl (the aggregator's clock)
//!     --changed?--> Input event, reevaluate the datacenter
//!  tick: entries past their expiry are removed (an event each) and the datacenter reevaluated
//! ```
//!
//! Per datacenter, among the active whole-datacenter verdicts a down one wins (the most
//! recently set); without one, an up one (the most recently set) holds; without either, the
//! probes decide. Address verdicts set or clear that answer address only (down wins).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Aggregator;
use super::combine::Cause;
use crate::health::events::{Change, EventKind};
use crate::health::input::{Applied, InputError, Source, SourceKind, Subject, Update, Verdict};
use crate::health::persist::{InputEntry, InputsFile, unix_ms};

/// What a subject names: each datacenter, with one of its answer addresses (and that
/// address's `addr_up` bit) or `None` for the whole datacenter.
type Resolved = Vec<(usize, Option<(IpAddr, u64)>)>;

/// One verdict held.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) kind: SourceKind,
    pub(super) id: String,
    pub(super) dc: usize,
    /// `None`: the whole datacenter; else one answer address and its `addr_up` bit.
    pub(super) address: Option<(IpAddr, u64)>,
    pub(super) up: bool,
    pub(super) load: Option<f64>,
    pub(super) reason: String,
    pub(super) ttl: Duration,
    pub(super) set_at: Instant,
    pub(super) expires: Instant,
    pub(super) expires_wall: SystemTime,
}

impl Entry {
    fn same_key(&self, kind: SourceKind, id: &str, dc: usize, address: Option<IpAddr>) -> bool {
        self.kind == kind && self.id == id && self.dc == dc && self.address.map(|a| a.0) == address
    }

    /// The verdict in words: `pushed: down, maintenance`.
    pub(super) fn describe(&self) -> String {
        let state = if self.up { "up" } else { "down" };
        let mut s = format!("{}: {state}", self.kind.as_str());
        if let Some((a, _)) = self.address {
            s = format!("{}: {a} {state}", self.kind.as_str());
        }
        if !self.reason.is_empty() {
            s.push_str(", ");
            s.push_str(&self.reason);
        }
        s
    }
}

/// Every verdict held, in the order they were first set.
#[derive(Clone, Debug, Default)]
pub(super) struct Inputs {
    pub(super) entries: Vec<Entry>,
}

impl Inputs {
    /// The verdict that decides datacenter `dc`'s health: the newest down one, else the newest
    /// up one, among whole-datacenter verdicts.
    pub(super) fn deciding(&self, dc: usize) -> Option<&Entry> {
        let whole = || {
            self.entries
                .iter()
                .filter(move |e| e.dc == dc && e.address.is_none())
        };
        whole()
            .filter(|e| !e.up)
            .max_by_key(|e| e.set_at)
            .or_else(|| whole().filter(|e| e.up).max_by_key(|e| e.set_at))
    }

    /// `bits` with the address verdicts of `dc` applied (ups, then downs: down wins).
    pub(super) fn apply_addresses(&self, dc: usize, mut bits: u64) -> u64 {
        let addr = || {
            self.entries
                .iter()
                .filter(move |e| e.dc == dc)
                .filter_map(|e| e.address.map(|(_, b)| (e.up, b)))
        };
        for (_, b) in addr().filter(|(up, _)| *up) {
            bits |= b;
        }
        for (_, b) in addr().filter(|(up, _)| !up) {
            bits &= !b;
        }
        bits
    }

    /// The load an external verdict gives `dc`: the newest whole-datacenter one with a load,
    /// else the mean of its address verdicts' loads.
    pub(super) fn load(&self, dc: usize) -> Option<f64> {
        let mine = || self.entries.iter().filter(move |e| e.dc == dc);
        if let Some(e) = mine()
            .filter(|e| e.address.is_none() && e.load.is_some())
            .max_by_key(|e| e.set_at)
        {
            return e.load;
        }
        let loads: Vec<f64> = mine()
            .filter(|e| e.address.is_some())
            .filter_map(|e| e.load)
            .collect();
        (!loads.is_empty()).then(|| loads.iter().sum::<f64>() / loads.len() as f64)
    }

    /// Verdicts held for `dc`.
    pub(super) fn of(&self, dc: usize) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.dc == dc)
    }
}

fn state(up: Option<bool>) -> &'static str {
    match up {
        None => "none",
        Some(true) => "up",
        Some(false) => "down",
    }
}

impl Aggregator {
    /// The (datacenter, address) pairs `subject` names.
    fn resolve(&self, subject: &Subject) -> Result<Resolved, InputError> {
        let by_name = |name: &str| {
            self.set
                .dcs
                .iter()
                .position(|d| d.name == name)
                .ok_or_else(|| InputError::UnknownDatacenter(name.to_string()))
        };
        match subject {
            Subject::Datacenter(name) => Ok(vec![(by_name(name)?, None)]),
            Subject::Address {
                datacenter,
                address,
            } => {
                let dc = by_name(datacenter)?;
                match self.address_bit(dc, *address) {
                    Some(b) => Ok(vec![(dc, Some((*address, b)))]),
                    None => Err(InputError::NotAnAddress {
                        datacenter: datacenter.clone(),
                        address: *address,
                    }),
                }
            }
            Subject::AnyAddress(address) => {
                let found: Vec<_> = (0..self.set.dcs.len())
                    .filter_map(|dc| {
                        self.address_bit(dc, *address)
                            .map(|b| (dc, Some((*address, b))))
                    })
                    .collect();
                if found.is_empty() {
                    Err(InputError::UnknownAddress(*address))
                } else {
                    Ok(found)
                }
            }
        }
    }

    /// The `addr_up` bit of answer address `a` of datacenter `dc`.
    fn address_bit(&self, dc: usize, a: IpAddr) -> Option<u64> {
        self.set
            .dcs
            .get(dc)?
            .answers
            .iter()
            .position(|x| *x == a)
            .map(|i| 1u64 << i)
    }

    /// Apply an external verdict at `now`: the one way one enters. Returns what changed.
    pub fn input(&mut self, update: Update, now: Instant) -> Result<Applied, InputError> {
        let mut applied = Applied::default();
        let mut touched: Vec<usize> = Vec::new();
        let source = match &update {
            Update::Set { source, .. }
            | Update::Clear { source, .. }
            | Update::Replace { source, .. }
            | Update::Targets { source, .. } => source.clone(),
        };
        match update {
            Update::Targets { source, verdicts } => {
                return Ok(self.input_targets(source, verdicts, now));
            }
            Update::Set { source, verdict } => {
                let targets = self.resolve(&verdict.subject)?;
                for (dc, address) in targets {
                    if self.upsert(&source, &verdict, dc, address, now) {
                        applied.changed += 1;
                        touched.push(dc);
                    }
                }
            }
            Update::Clear { source, subject } => {
                let targets = self.resolve(&subject)?;
                for (dc, address) in targets {
                    if self.remove(&source, dc, address.map(|a| a.0), now, "withdrawn") {
                        applied.changed += 1;
                        touched.push(dc);
                    }
                }
            }
            Update::Replace { source, verdicts } => {
                let mut keep: Vec<(usize, Option<IpAddr>)> = Vec::new();
                for v in &verdicts {
                    match self.resolve(&v.subject) {
                        Ok(targets) => {
                            for (dc, address) in targets {
                                keep.push((dc, address.map(|a| a.0)));
                                if self.upsert(&source, v, dc, address, now) {
                                    applied.changed += 1;
                                    touched.push(dc);
                                }
                            }
                        }
                        Err(_) => applied.unknown.push(v.subject.describe()),
                    }
                }
                let gone: Vec<(usize, Option<IpAddr>)> = self
                    .inputs
                    .entries
                    .iter()
                    .filter(|e| e.kind == source.kind && e.id == source.id)
                    .map(|e| (e.dc, e.address.map(|a| a.0)))
                    .filter(|k| !keep.contains(k))
                    .collect();
                for (dc, address) in gone {
                    if self.remove(&source, dc, address, now, "no longer listed") {
                        applied.changed += 1;
                        touched.push(dc);
                    }
                }
            }
        }
        applied.active = self
            .inputs
            .entries
            .iter()
            .filter(|e| e.kind == source.kind && e.id == source.id)
            .count();
        touched.sort_unstable();
        touched.dedup();
        for dc in touched {
            self.why_dirty = true;
            self.reevaluate(dc, now, Cause::Input);
        }
        Ok(applied)
    }

    /// Sets `source`'s verdict on (`dc`, `address`); true when it is new or says something
    /// else than before (a refresh only moves the expiry).
    fn upsert(
        &mut self,
        source: &Source,
        v: &Verdict,
        dc: usize,
        address: Option<(IpAddr, u64)>,
        now: Instant,
    ) -> bool {
        let ttl = v.ttl.max(Duration::from_millis(1));
        let expires = now + ttl;
        let expires_wall = SystemTime::now() + ttl;
        let load = v.load.filter(|l| l.is_finite()).map(|l| l.clamp(0.0, 1.0));
        let key = address.map(|a| a.0);
        let existing = self
            .inputs
            .entries
            .iter_mut()
            .find(|e| e.same_key(source.kind, &source.id, dc, key));
        let old = match existing {
            Some(e) => {
                let same = e.up == v.up && e.load == load && e.reason == v.reason;
                e.expires = expires;
                e.expires_wall = expires_wall;
                e.ttl = ttl;
                if same {
                    return false;
                }
                let old = e.up;
                e.up = v.up;
                e.load = load;
                e.reason = v.reason.clone();
                e.set_at = now;
                Some(old)
            }
            None => {
                self.inputs.entries.push(Entry {
                    kind: source.kind,
                    id: source.id.clone(),
                    dc,
                    address,
                    up: v.up,
                    load,
                    reason: v.reason.clone(),
                    ttl,
                    set_at: now,
                    expires,
                    expires_wall,
                });
                None
            }
        };
        let name = &self.set.dcs[dc].name;
        let what = format!(
            "{} {}{}{} (expires in {})",
            source.kind.as_str(),
            source.id,
            if v.reason.is_empty() { "" } else { ": " },
            v.reason,
            human(ttl)
        );
        tracing::info!(dc = %name, address = ?key, source = source.kind.as_str(), id = %source.id, old = state(old), new = state(Some(v.up)), load = ?load, ttl_secs = ttl.as_secs(), reason = %v.reason, "external verdict");
        self.events.push(
            Change {
                address: key.map(|a| a.to_string()),
                input: Some(source.kind.input()),
                ..Change::new(EventKind::Input, name, state(old), state(Some(v.up)), what)
            },
            now,
        );
        true
    }

    /// Removes `source`'s verdict on (`dc`, `address`); true when there was one.
    fn remove(
        &mut self,
        source: &Source,
        dc: usize,
        address: Option<IpAddr>,
        now: Instant,
        why: &str,
    ) -> bool {
        let Some(i) = self
            .inputs
            .entries
            .iter()
            .position(|e| e.same_key(source.kind, &source.id, dc, address))
        else {
            return false;
        };
        let e = self.inputs.entries.remove(i);
        self.record_gone(&e, now, why);
        true
    }

    fn record_gone(&mut self, e: &Entry, now: Instant, why: &str) {
        let name = &self.set.dcs[e.dc].name;
        tracing::info!(dc = %name, address = ?e.address.map(|a| a.0), source = e.kind.as_str(), id = %e.id, old = state(Some(e.up)), why, "external verdict gone");
        self.events.push(
            Change {
                address: e.address.map(|a| a.0.to_string()),
                input: Some(e.kind.input()),
                ..Change::new(
                    EventKind::Input,
                    name,
                    state(Some(e.up)),
                    "none",
                    format!("{} {}: {why}", e.kind.as_str(), e.id),
                )
            },
            now,
        );
    }

    /// Removes the verdicts whose time is up at `now` and lets the probes decide again.
    pub(crate) fn expire_inputs(&mut self, now: Instant) {
        if !self.inputs.entries.iter().any(|e| e.expires <= now) {
            return;
        }
        let (gone, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.inputs.entries)
            .into_iter()
            .partition(|e| e.expires <= now);
        self.inputs.entries = kept;
        let mut touched: Vec<usize> = Vec::new();
        for e in &gone {
            self.record_gone(e, now, &format!("expired after {}", human(e.ttl)));
            touched.push(e.dc);
        }
        touched.sort_unstable();
        touched.dedup();
        for dc in touched {
            self.why_dirty = true;
            self.reevaluate(dc, now, Cause::Input);
        }
    }

    /// The verdicts as they are saved (wall-clock expiry), for `inputs.json`.
    pub(super) fn inputs_file(&self, wall: SystemTime) -> InputsFile {
        InputsFile {
            version: crate::health::persist::VERSION,
            written_unix: crate::health::persist::unix_secs(wall),
            entries: self
                .inputs
                .entries
                .iter()
                .map(|e| InputEntry {
                    kind: e.kind,
                    id: e.id.clone(),
                    datacenter: self.set.dcs[e.dc].name.clone(),
                    address: e.address.map(|a| a.0.to_string()),
                    up: e.up,
                    load: e.load,
                    reason: e.reason.clone(),
                    ttl_secs: e.ttl.as_secs_f64(),
                    expires_unix_ms: unix_ms(e.expires_wall),
                })
                .collect(),
        }
    }

    /// Restores saved verdicts that have not expired and still name something configured.
    pub(super) fn restore_inputs(&mut self, file: &InputsFile, now: Instant, wall: SystemTime) {
        let wall_ms = unix_ms(wall);
        let mut restored = 0usize;
        for s in &file.entries {
            let left = Duration::from_millis(s.expires_unix_ms.saturating_sub(wall_ms));
            if left.is_zero() {
                continue;
            }
            let subject = match s.address.as_deref().map(str::parse::<IpAddr>) {
                None => Subject::Datacenter(s.datacenter.clone()),
                Some(Ok(address)) => Subject::Address {
                    datacenter: s.datacenter.clone(),
                    address,
                },
                Some(Err(_)) => continue,
            };
            let Ok(targets) = self.resolve(&subject) else {
                tracing::info!(dc = %s.datacenter, source = s.kind.as_str(), id = %s.id, "saved external verdict names nothing configured now; dropped");
                continue;
            };
            for (dc, address) in targets {
                self.inputs.entries.push(Entry {
                    kind: s.kind,
                    id: s.id.clone(),
                    dc,
                    address,
                    up: s.up,
                    load: s.load,
                    reason: s.reason.clone(),
                    ttl: Duration::try_from_secs_f64(s.ttl_secs).unwrap_or(left),
                    set_at: now,
                    expires: now + left,
                    expires_wall: wall + left,
                });
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::info!(verdicts = restored, "restored external verdicts");
        }
    }
}

/// `90s`, `15m`, `2h` as people write them.
pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
