//! The resolver task: one tokio task keeps every remote name current and publishes what it
//! knows after every change.
//!
//! ```text
//!  watch<Targets> (names of the serving model) --+
//!                                                v
//!  run loop: wake at the earliest of (a lookup due, a TTL running out while the upstream
//!            fails, max-stale running out) --> lookups (JoinSet, A and AAAA together)
//!            --> Slot state machine --> publish: callback + watch<Arc<ResolvedNames>>
//! ```
//!
//! A slot: `Pending` until the first answer; then `Fresh` (asked again at 80 % of the TTL
//! clamped to min-ttl..max-ttl); a failed lookup keeps the addresses and retries with a
//! backoff (1, 2, 4 ... 30 s); when the clamped TTL runs out before an answer came back
//! (the upstream fails or is too slow) the slot turns `Stale`, and `Expired` (no addresses)
//! once `max_stale` has passed after that. Any answer makes it `Fresh` again. An authoritative negative answer (NXDOMAIN, no A and no AAAA) is an answer: the
//! name has no addresses (a datacenter behind it counts as down), nothing stale is kept.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until};

use super::{Entry, MAX_ADDRESSES_PER_FAMILY, ResolvedNames, ResolverSettings, State};
use crate::shutdown::Shutdown;

/// Most lookups in flight at once.
const MAX_IN_FLIGHT: usize = 32;
/// Longest wait between two attempts at a failing name.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the resolver must keep current.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Remote names (lower-cased, fully qualified).
    pub names: Vec<Arc<str>>,
    /// Names served here as flattened GSLB names or ALIAS owners: an upstream answer whose
    /// CNAME chain enters one of them loops back into us, and is refused.
    pub loop_guard: Vec<Arc<str>>,
}

/// Where results go besides the watch channel (the server's publisher).
pub type PublishFn = Arc<dyn Fn(Arc<ResolvedNames>) + Send + Sync>;

/// The running resolver task.
pub struct Resolver {
    targets: watch::Sender<Arc<Targets>>,
    results: watch::Receiver<Arc<ResolvedNames>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Resolver {
    /// Starts resolving `targets` (with `settings.enabled`; otherwise a resolver that never
    /// asks anything: every remote name stays pending). Results are published through
    /// `publish` and [`Resolver::subscribe`]. Runs until `stop`.
    pub fn start(
        settings: ResolverSettings,
        targets: Targets,
        publish: PublishFn,
        stop: Shutdown,
    ) -> Resolver {
        let (targets_tx, targets_rx) = watch::channel(Arc::new(targets));
        let (results_tx, results_rx) = watch::channel(Arc::new(ResolvedNames::default()));
        let task = settings.enabled.then(|| {
            let upstream = build_resolver(&settings);
            tokio::spawn(run(
                settings, upstream, targets_rx, results_tx, publish, stop,
            ))
        });
        Resolver {
            targets: targets_tx,
            results: results_rx,
            task: std::sync::Mutex::new(task),
        }
    }

    /// Replaces the set of names to keep current (after a reload).
    pub fn set_targets(&self, targets: Targets) {
        self.targets.send_if_modified(|t| {
            if **t == targets {
                return false;
            }
            *t = Arc::new(targets);
            true
        });
    }

    /// What is known now.
    pub fn current(&self) -> Arc<ResolvedNames> {
        self.results.borrow().clone()
    }

    /// A receiver that sees every publication (for the probe runtime).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ResolvedNames>> {
        self.results.clone()
    }

    /// Waits for the task to end (after its stop node was stopped).
    pub async fn join(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

fn build_resolver(s: &ResolverSettings) -> Result<TokioResolver, String> {
    let mut builder = if s.servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?
    } else {
        let servers = s
            .servers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let o: &mut ResolverOpts = builder.options_mut();
    // We schedule refreshes ourselves and want the upstream's TTL, not a cached remainder.
    o.cache_size = 0;
    o.timeout = s.timeout;
    o.attempts = 2;
    o.use_hosts_file = ResolveHosts::Never;
    o.try_tcp_on_error = true;
    o.preserve_intermediates = true;
    builder
        .build()
        .map_err(|e| format!("cannot build the resolver: {e}"))
}

/// One name's schedule and state.
struct Slot {
    entry: Entry,
    /// The published copy (shared until the entry changes).
    published: Arc<Entry>,
    due: Instant,
    failures: u32,
    in_flight: bool,
    /// End of the clamped TTL: without a new answer by then the addresses are stale.
    stale_after: Option<Instant>,
    /// End of `max_stale` after `stale_after`: the addresses are dropped.
    stale_until: Option<Instant>,
}

/// What one lookup (A and AAAA) found.
#[derive(Debug, PartialEq)]
struct Answer {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    ttl: u32,
    /// Why there is no address, when there is none (NXDOMAIN...).
    negative: Option<String>,
}

struct Machine {
    settings: ResolverSettings,
    slots: FxHashMap<Arc<str>, Slot>,
    guard: FxHashSet<Arc<str>>,
    serial: u64,
    generation: u64,
}

impl Machine {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn set_targets(&mut self, t: &Targets, now: Instant) {
        self.guard = t.loop_guard.iter().cloned().collect();
        let wanted: FxHashSet<&Arc<str>> = t.names.iter().collect();
        self.slots.retain(|n, _| wanted.contains(n));
        for n in &t.names {
            self.slots.entry(n.clone()).or_insert_with(|| {
                let entry = Entry::pending(n);
                Slot {
                    published: Arc::new(entry.clone()),
                    entry,
                    due: now,
                    failures: 0,
                    in_flight: false,
                    stale_after: None,
                    stale_until: None,
                }
            });
        }
    }

    /// How long an answer of TTL `ttl` is kept: the TTL clamped to min-ttl..max-ttl (it is
    /// asked again after 80 % of that).
    fn keep(&self, ttl: u32) -> Duration {
        Duration::from_secs(u64::from(ttl)).clamp(self.settings.min_ttl, self.settings.max_ttl)
    }

    fn apply(&mut self, name: &str, result: Result<Answer, String>, now: Instant) {
        let serial = self.serial + 1;
        let keep = result.as_ref().ok().map(|a| self.keep(a.ttl));
        let max_stale = self.settings.max_stale;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.in_flight = false;
        let e = &mut slot.entry;
        let mut bumped = false;
        match result {
            Ok(a) => {
                let v4: Arc<[Ipv4Addr]> = a.v4.into();
                let v6: Arc<[Ipv6Addr]> = a.v6.into();
                if e.serial == 0 || e.v4 != v4 || e.v6 != v6 {
                    e.serial = serial;
                    bumped = true;
                }
                if e.state != State::Fresh || e.v4 != v4 || e.v6 != v6 {
                    tracing::info!(
                        name,
                        addresses = %fmt_addrs(&v4, &v6),
                        ttl = a.ttl,
                        negative = a.negative.as_deref().unwrap_or(""),
                        "hostname resolved"
                    );
                }
                e.v4 = v4;
                e.v6 = v6;
                e.state = State::Fresh;
                e.ttl = a.ttl;
                e.expires = Some(now + Duration::from_secs(u64::from(a.ttl)));
                e.resolved_at = Some(SystemTime::now());
                e.error = a.negative.map(Into::into);
                e.lookups_ok += 1;
                slot.failures = 0;
                let keep = keep.unwrap_or(self.settings.min_ttl);
                slot.stale_after = Some(now + keep);
                slot.stale_until = Some(now + keep + max_stale);
                slot.due = now + keep.mul_f64(0.8);
            }
            Err(msg) => {
                if slot.failures == 0 {
                    tracing::warn!(name, error = %msg, state = e.state.as_str(), "hostname lookup failed; keeping what we have");
                }
                e.error = Some(msg.into());
                e.lookups_failed += 1;
                slot.failures = slot.failures.saturating_add(1);
                let backoff = Duration::from_secs(1u64 << (slot.failures - 1).min(5));
                slot.due = now + backoff.min(MAX_BACKOFF);
            }
        }
        if bumped {
            self.serial = serial;
        }
        self.transitions(now);
    }

    /// Fresh -> Stale when the (clamped) TTL ran out without a new answer; Stale -> Expired
    /// after max-stale. Returns true when something changed.
    fn transitions(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let mut expired = Vec::new();
        for (name, slot) in &mut self.slots {
            let e = &mut slot.entry;
            if e.state == State::Fresh && slot.stale_after.is_some_and(|x| now >= x) {
                tracing::warn!(name = %name, "hostname TTL ran out while the upstream fails: serving the last addresses stale");
                e.state = State::Stale;
                changed = true;
            }
            if e.state == State::Stale && slot.stale_until.is_some_and(|x| now >= x) {
                tracing::warn!(name = %name, "hostname stale for longer than max-stale: no addresses until it resolves again");
                e.state = State::Expired;
                expired.push(name.clone());
                changed = true;
            }
        }
        for name in expired {
            let serial = self.next_serial();
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.entry.v4 = Arc::from([]);
                slot.entry.v6 = Arc::from([]);
                slot.entry.serial = serial;
            }
        }
        changed
    }

    /// The earliest time something is due.
    fn next_wake(&self) -> Option<Instant> {
        self.slots
            .values()
            .flat_map(|s| {
                let due = (!s.in_flight).then_some(s.due);
                let stale = (s.entry.state == State::Fresh)
                    .then_some(s.stale_after)
                    .flatten();
                let expire = (s.entry.state == State::Stale)
                    .then_some(s.stale_until)
                    .flatten();
                [due, stale, expire]
            })
            .flatten()
            .min()
    }

    /// The names due for a lookup now (marked in flight).
    fn due(&mut self, now: Instant, room: usize) -> Vec<Arc<str>> {
        let mut v: Vec<(Instant, Arc<str>)> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.in_flight && s.due <= now)
            .map(|(n, s)| (s.due, n.clone()))
            .collect();
        v.sort();
        v.truncate(room);
        for (_, n) in &v {
            if let Some(s) = self.slots.get_mut(n) {
                s.in_flight = true;
            }
        }
        v.into_iter().map(|(_, n)| n).collect()
    }

    fn snapshot(&mut self) -> Arc<ResolvedNames> {
        self.generation += 1;
        let by_name = self
            .slots
            .iter_mut()
            .map(|(n, s)| {
                if !same(&s.published, &s.entry) {
                    s.published = Arc::new(s.entry.clone());
                }
                (n.clone(), s.published.clone())
            })
            .collect();
        Arc::new(ResolvedNames {
            generation: self.generation,
            by_name,
        })
    }
}

fn same(a: &Entry, b: &Entry) -> bool {
    a.serial == b.serial
        && a.state == b.state
        && a.ttl == b.ttl
        && a.expires == b.expires
        && a.resolved_at == b.resolved_at
        && a.error == b.error
        && a.lookups_ok == b.lookups_ok
        && a.lookups_failed == b.lookups_failed
}

fn fmt_addrs(v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> String {
    let v: Vec<String> = v4
        .iter()
        .map(ToString::to_string)
        .chain(v6.iter().map(ToString::to_string))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

async fn run(
    settings: ResolverSettings,
    upstream: Result<TokioResolver, String>,
    mut targets: watch::Receiver<Arc<Targets>>,
    results: watch::Sender<Arc<ResolvedNames>>,
    publish: PublishFn,
    stop: Shutdown,
) {
    let upstream = match upstream {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::error!("hostname targets cannot be resolved: {e}");
            None
        }
    };
    let mut m = Machine {
        settings: settings.clone(),
        slots: FxHashMap::default(),
        guard: FxHashSet::default(),
        serial: 0,
        generation: 0,
    };
    let t = targets.borrow_and_update().clone();
    m.set_targets(&t, Instant::now());
    let mut lookups: JoinSet<(Arc<str>, Result<Answer, String>)> = JoinSet::new();
    let send = |m: &mut Machine| {
        let snap = m.snapshot();
        publish(snap.clone());
        results.send_replace(snap);
    };
    send(&mut m);
    loop {
        let now = Instant::now();
        let room = MAX_IN_FLIGHT.saturating_sub(lookups.len());
        for name in m.due(now, room) {
            let guard = m.guard.clone();
            let timeout = settings.timeout;
            match &upstream {
                Some(r) => {
                    let r = r.clone();
                    lookups.spawn(async move {
                        let res = lookup(&r, &name, &guard, timeout).await;
                        (name, res)
                    });
                }
                None => {
                    lookups.spawn(async move { (name, Err("no resolver configured".into())) });
                }
            }
        }
        let wake = m.next_wake().unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = stop.stopped() => break,
            changed = targets.changed() => {
                if changed.is_err() {
                    break;
                }
                let t = targets.borrow_and_update().clone();
                m.set_targets(&t, Instant::now());
                send(&mut m);
            }
            Some(done) = lookups.join_next(), if !lookups.is_empty() => {
                if let Ok((name, res)) = done {
                    m.apply(&name, res, Instant::now());
                    send(&mut m);
                }
            }
            _ = sleep_until(wake) => {
                if m.transitions(Instant::now()) {
                    send(&mut m);
                }
            }
        }
    }
    lookups.abort_all();
}

/// One family's lookup: the addresses and the smallest TTL of the answer (the CNAME chain
/// included), or the negative answer and its TTL.
enum Family<T> {
    Found(Vec<T>, u32),
    None { nxdomain: bool, ttl: Option<u32> },
}

async fn lookup(
    r: &TokioResolver,
    name: &str,
    guard: &FxHashSet<Arc<str>>,
    timeout: Duration,
) -> Result<Answer, String> {
    r.clear_lookup_cache(name, RecordType::A);
    r.clear_lookup_cache(name, RecordType::AAAA);
    let a = one(r, name, RecordType::A, guard, timeout);
    let aaaa = one(r, name, RecordType::AAAA, guard, timeout);
    let (a, aaaa) = tokio::join!(a, aaaa);
    let (a, aaaa) = (a?, aaaa?);
    let mut ttl: Option<u32> = None;
    let mut min = |t: u32| ttl = Some(ttl.map_or(t, |x| x.min(t)));
    let mut nx = false;
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    match a {
        Family::Found(v, t) => {
            min(t);
            v4 = v;
        }
        Family::None { nxdomain, ttl } => {
            nx |= nxdomain;
            if let Some(t) = ttl {
                min(t);
            }
        }
    }
    match aaaa {
        Family::Found(v, t) => {
            min(t);
            v6 = v;
        }
        Family::None { nxdomain, ttl } => {
            nx |= nxdomain;
            if let Some(t) = ttl {
                min(t);
            }
        }
    }
    v4.sort();
    v4.dedup();
    v4.truncate(MAX_ADDRESSES_PER_FAMILY);
    v6.sort();
    v6.dedup();
    v6.truncate(MAX_ADDRESSES_PER_FAMILY);
    let negative = if nx {
        Some("NXDOMAIN".to_string())
    } else if v4.is_empty() && v6.is_empty() {
        Some("no A or AAAA record".to_string())
    } else {
        None
    };
    if nx {
        v4.clear();
        v6.clear();
    }
    Ok(Answer {
        v4,
        v6,
        ttl: ttl.unwrap_or(0),
        negative,
    })
}

trait FromRData: Sized {
    fn from_rdata(r: &RData) -> Option<Self>;
}
impl FromRData for Ipv4Addr {
    fn from_rdata(r: &RData) -> Option<Self> {
        match r {
            RData::A(a) => Some(a.0),
            _ => None,
        }
    }
}
impl FromRData for Ipv6Addr {
    fn from_rdata(r: &RData) -> Option<Self> {
        match r {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        }
    }
}

async fn one<T: FromRData>(
    r: &TokioResolver,
    name: &str,
    rtype: RecordType,
    guard: &FxHashSet<Arc<str>>,
    timeout: Duration,
) -> Result<Family<T>, String> {
    // hickory bounds its own attempts; this bounds the whole lookup as well.
    let res = tokio::time::timeout(timeout * 3, r.lookup(name, rtype)).await;
    let res = match res {
        Ok(r) => r,
        Err(_) => return Err(format!("{rtype} lookup timed out")),
    };
    match res {
        Ok(lookup) => {
            let mut ttl = u32::MAX;
            let mut out = Vec::new();
            for rec in lookup.answers() {
                ttl = ttl.min(rec.ttl);
                if let RData::CNAME(c) = &rec.data {
                    let target = super::key_of(&c.0);
                    if guard.contains(target.as_str()) {
                        return Err(format!(
                            "its CNAME chain leads back to {target}, a name served here from this target: a loop"
                        ));
                    }
                }
                if let Some(a) = T::from_rdata(&rec.data) {
                    out.push(a);
                }
            }
            if out.is_empty() {
                return Ok(Family::None {
                    nxdomain: false,
                    ttl: (ttl != u32::MAX).then_some(ttl),
                });
            }
            Ok(Family::Found(out, ttl))
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
            use hickory_proto::op::ResponseCode;
            match nr.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => Ok(Family::None {
                    nxdomain: nr.response_code == ResponseCode::NXDomain,
                    ttl: nr.negative_ttl,
                }),
                other => Err(format!("{rtype} lookup: {other}")),
            }
        }
        Err(e) => Err(format!("{rtype} lookup: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            settings: ResolverSettings {
                min_ttl: Duration::from_secs(5),
                max_ttl: Duration::from_secs(100),
                max_stale: Duration::from_secs(60),
                ..ResolverSettings::default()
            },
            slots: FxHashMap::default(),
            guard: FxHashSet::default(),
            serial: 0,
            generation: 0,
        }
    }

    fn answer(v4: &[&str], ttl: u32) -> Result<Answer, String> {
        Ok(Answer {
            v4: v4.iter().map(|a| a.parse().unwrap()).collect(),
            v6: vec![],
            ttl,
            negative: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_stale_expired_and_back() {
        let mut m = machine();
        let t0 = Instant::now();
        let n: Arc<str> = "lb.example.net.".into();
        m.set_targets(
            &Targets {
                names: vec![n.clone()],
                loop_guard: vec![],
            },
            t0,
        );
        assert_eq!(m.due(t0, 8), vec![n.clone()]);
        m.apply(&n, answer(&["192.0.2.1"], 20), t0);
        let e = &m.slots[&n].entry;
        assert_eq!((e.state, e.serial, e.ttl), (State::Fresh, 1, 20));
        // Refreshed at 80 % of the TTL.
        assert_eq!(m.slots[&n].due, t0 + Duration::from_secs(16));
        assert_eq!(e.answer_ttl(30, t0 + Duration::from_millis(4500)), 15);
        // The refresh fails: still fresh until the TTL ends, then stale, then expired.
        let t1 = t0 + Duration::from_secs(16);
        m.apply(&n, Err("timeout".into()), t1);
        assert_eq!(m.slots[&n].entry.state, State::Fresh);
        assert_eq!(m.next_wake(), Some(t1 + Duration::from_secs(1)));
        m.slots.get_mut(&n).unwrap().in_flight = true;
        assert_eq!(m.next_wake(), Some(t0 + Duration::from_secs(20)));
        assert!(!m.transitions(t0 + Duration::from_secs(19)));
        assert!(m.transitions(t0 + Duration::from_secs(20)));
        let e = &m.slots[&n].entry;
        assert_eq!((e.state, e.v4.len()), (State::Stale, 1));
        assert_eq!(e.answer_ttl(60, t0), super::super::STALE_TTL);
        assert!(!m.transitions(t0 + Duration::from_secs(79)));
        assert!(m.transitions(t0 + Duration::from_secs(80)));
        let e = &m.slots[&n].entry;
        assert_eq!((e.state, e.v4.len(), e.serial), (State::Expired, 0, 2));
        assert!(!e.usable());
        // It answers again: fresh, a new serial for the new set.
        m.apply(&n, answer(&["192.0.2.2"], 20), t0 + Duration::from_secs(90));
        let e = &m.slots[&n].entry;
        assert_eq!((e.state, e.serial), (State::Fresh, 3));
        // The same set again keeps the serial.
        m.apply(
            &n,
            answer(&["192.0.2.2"], 20),
            t0 + Duration::from_secs(100),
        );
        assert_eq!(m.slots[&n].entry.serial, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_clamped_for_scheduling_only() {
        let mut m = machine();
        let t0 = Instant::now();
        let n: Arc<str> = "a.example.net.".into();
        m.set_targets(
            &Targets {
                names: vec![n.clone()],
                loop_guard: vec![],
            },
            t0,
        );
        m.apply(&n, answer(&["192.0.2.1"], 0), t0);
        // Asked again after 80 % of min-ttl, but answers carry TTL 0; not stale before the
        // clamped TTL (min-ttl) has passed.
        assert_eq!(m.slots[&n].due, t0 + Duration::from_secs(4));
        assert_eq!(m.slots[&n].entry.answer_ttl(30, t0), 0);
        assert!(!m.transitions(t0 + Duration::from_secs(4)));
        assert!(m.transitions(t0 + Duration::from_secs(5)));
        assert_eq!(m.slots[&n].entry.state, State::Stale);
        m.apply(&n, answer(&["192.0.2.1"], 86400), t0);
        assert_eq!(m.slots[&n].due, t0 + Duration::from_secs(80));
        // Names no longer wanted are dropped.
        m.set_targets(&Targets::default(), t0);
        assert!(m.slots.is_empty());
    }
}
