//! The metrics registry: counters and histograms the server updates as it works, rendered in
//! the Prometheus text exposition format for `GET /metrics`.
//!
//! ```text
//!  model build/reload --zone_slots / gslb_slots--> label sets -> integer slots (Mutex, cold)
//!                                                        |
//!  query path --query/decision/all_down/ecs(slot)--> relaxed atomic adds on this thread's
//!                                                    cache-padded shard (no lock, no alloc)
//!  aggregator / probes --probe/reload/snapshot_published--> Mutex'd maps, plain atomics (cold)
//!  /metrics --render(Extra { health: Status, server: .. })--> sum over shards -> text
//! ```
//!
//! Why slots: label strings are resolved to a `u32` once, when a model is built, exactly like
//! the model resolves names to ids (style rule 1). A label set keeps its slot for the life of
//! the process, so counters survive reloads and never go backwards; a zone or datacenter that
//! disappears keeps its last values (Prometheus counters must be monotonic).
//!
//! Why shards: two cores adding to one atomic bounce its cache line on every query. Each thread
//! picks a shard once (round-robin), every shard lives in its own 128-byte aligned lines, and a
//! scrape sums the shards. Storage grows in chunks allocated at registration time, published
//! through a `OnceLock`, so the query path only reads an already-initialised pointer.

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use crate::health::Status;

/// Counters per 128-byte cache line.
const LANES: usize = 16;

#[repr(align(128))]
struct Line([AtomicU64; LANES]);

impl Line {
    fn new() -> Line {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Most shards the registry uses, whatever the core count (bounds memory per slot).
const MAX_SHARDS: usize = 16;
/// Chunks per family: the slot capacity is `MAX_CHUNKS * chunk_slots`.
const MAX_CHUNKS: usize = 4096;

/// One chunk of a family: per shard, the lines holding `chunk_slots * width` counters.
type Chunk = Box<[Box<[Line]>]>;

/// A sharded, growable matrix of counters: `slot x width`, one copy per shard.
struct Counters {
    width: usize,
    shards: usize,
    chunk_slots: usize,
    /// `chunks[c][shard]` holds slots `c*chunk_slots ..` of that shard, `width` counters each.
    chunks: Box<[OnceLock<Chunk>]>,
}

impl Counters {
    fn new(width: usize, shards: usize, chunk_slots: usize) -> Counters {
        Counters {
            width,
            shards,
            chunk_slots,
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn capacity(&self) -> usize {
        MAX_CHUNKS * self.chunk_slots
    }

    /// Allocates the chunk that holds `slot` (registration path, never the query path).
    fn ensure(&self, slot: u32) {
        let lines = (self.chunk_slots * self.width).div_ceil(LANES);
        if let Some(cell) = self.chunks.get(slot as usize / self.chunk_slots) {
            cell.get_or_init(|| {
                (0..self.shards)
                    .map(|_| (0..lines).map(|_| Line::new()).collect())
                    .collect()
            });
        }
    }

    #[inline]
    fn cell(&self, shard: usize, slot: u32, j: usize) -> Option<&AtomicU64> {
        let slot = slot as usize;
        let chunk = self.chunks.get(slot / self.chunk_slots)?.get()?;
        let i = (slot % self.chunk_slots) * self.width + j;
        let line = chunk.get(shard)?.get(i / LANES)?;
        Some(&line.0[i % LANES])
    }

    #[inline]
    fn add(&self, shard: usize, slot: u32, j: usize, v: u64) {
        if let Some(c) = self.cell(shard, slot, j) {
            c.fetch_add(v, Relaxed);
        }
    }

    fn sum(&self, slot: u32, j: usize) -> u64 {
        (0..self.shards)
            .filter_map(|s| self.cell(s, slot, j))
            .map(|c| c.load(Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// Label sets of one family and their slots.
#[derive(Default)]
struct Interner {
    slots: HashMap<Vec<String>, u32>,
    labels: Vec<Vec<String>>,
    overflow_logged: bool,
}

/// One labelled counter family with sharded storage.
struct Family {
    interner: Mutex<Interner>,
    counters: Counters,
}

impl Family {
    fn new(width: usize, shards: usize, chunk_slots: usize) -> Family {
        Family {
            interner: Mutex::new(Interner::default()),
            counters: Counters::new(width, shards, chunk_slots),
        }
    }

    /// The slot of `labels`, allocating one (and its storage) the first time.
    fn slot(&self, what: &str, labels: Vec<String>) -> u32 {
        let mut i = lock(&self.interner);
        if let Some(&s) = i.slots.get(&labels) {
            return s;
        }
        let next = i.labels.len();
        let Ok(s) = u32::try_from(next) else {
            return NO_SLOT;
        };
        if next >= self.counters.capacity() || s == NO_SLOT {
            if !i.overflow_logged {
                i.overflow_logged = true;
                tracing::warn!(family = what, "metrics label capacity reached; not counted");
            }
            return NO_SLOT;
        }
        self.counters.ensure(s);
        i.labels.push(labels.clone());
        i.slots.insert(labels, s);
        s
    }

    fn labels(&self) -> Vec<Vec<String>> {
        lock(&self.interner).labels.clone()
    }
}

/// A poisoned lock only means a panic elsewhere while counting; the counts are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A slot that counts nothing (capacity exhausted, or an id unknown to the slot table).
const NO_SLOT: u32 = u32::MAX;

/// Query type buckets, in label order.
pub const QTYPES: [&str; 12] = [
    "A", "AAAA", "CNAME", "MX", "NS", "SOA", "TXT", "SRV", "CAA", "PTR", "ANY", "other",
];
/// Response code buckets, in label order.
pub const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];
const TRANSPORTS: [&str; 2] = ["udp", "tcp"];
const QUERY_WIDTH: usize = QTYPES.len() * RCODES.len() * TRANSPORTS.len();

#[inline]
fn qtype_bucket(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        5 => 2,
        15 => 3,
        2 => 4,
        6 => 5,
        16 => 6,
        33 => 7,
        257 => 8,
        12 => 9,
        255 => 10,
        _ => 11,
    }
}

#[inline]
fn rcode_bucket(rcode: u16) -> usize {
    match rcode {
        0..=5 => rcode as usize,
        16 => 6,
        _ => 7,
    }
}

/// The full response code of a response built for `q`: the header's 4 bits, or BADVERS (16)
/// when the query asked for an EDNS version we do not speak (its extended bits live in the
/// OPT record, which this avoids parsing). `resp` shorter than a header counts as SERVFAIL.
#[inline]
pub fn response_rcode(resp: &[u8], q: &crate::dns::Query) -> u16 {
    let Some(&b) = resp.get(3) else {
        return 2;
    };
    let rcode = u16::from(b & 0x0f);
    if rcode == 0 && q.edns.is_some_and(|e| e.version > 0) {
        crate::dns::wire::RCODE_BADVERS
    } else {
        rcode
    }
}

/// Upper bounds of the query processing time buckets, in microseconds.
pub const QUERY_BUCKETS_US: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];
/// Upper bounds of the probe duration buckets, in milliseconds.
pub const PROBE_BUCKETS_MS: [u64; 13] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000,
];
/// ECS scope prefix bucket bounds per family (IPv4, IPv6).
const ECS_BUCKETS_V4: [u8; 8] = [0, 8, 12, 16, 20, 24, 28, 32];
const ECS_BUCKETS_V6: [u8; 11] = [0, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128];

// Layout of the per-shard "hot" row: query time histogram, then ECS per family.
const HOT_DUR: usize = 0; // QUERY_BUCKETS_US.len() + 1 buckets (last = +Inf)
const HOT_DUR_SUM_NS: usize = HOT_DUR + QUERY_BUCKETS_US.len() + 1;
const HOT_ECS: usize = HOT_DUR_SUM_NS + 1; // per family: 129 exact prefix counts, then the sum
const ECS_ROW: usize = 129 + 1;
const HOT_WIDTH: usize = HOT_ECS + 2 * ECS_ROW;

/// How the query arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// `Transport::Tcp` when `tcp`, else UDP (matches `dns::Client::tcp`).
    #[inline]
    pub fn from_tcp(tcp: bool) -> Transport {
        if tcp { Transport::Tcp } else { Transport::Udp }
    }
}

/// The metrics slot of one zone (or of "no zone").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneSlot(u32);

impl ZoneSlot {
    /// Queries answered outside every zone (REFUSED, FORMERR, ...): label `zone="none"`.
    pub const NONE: ZoneSlot = ZoneSlot(0);
}

/// Zone index in a `Model` -> metrics slot; build one per model with [`Metrics::zone_slots`]
/// and swap it together with the model.
#[derive(Clone, Debug, Default)]
pub struct ZoneSlots(Box<[u32]>);

impl ZoneSlots {
    /// The slot of the zone with index `zone` in the model these slots were built for;
    /// `None` (no zone) and unknown indices count under `zone="none"`.
    #[inline]
    pub fn get(&self, zone: Option<u32>) -> ZoneSlot {
        match zone.and_then(|z| self.0.get(z as usize)) {
            Some(&s) => ZoneSlot(s),
            None => ZoneSlot::NONE,
        }
    }
}

/// Labels of one pool of a GSLB name, for [`Metrics::gslb_slots`].
#[derive(Clone, Debug)]
pub struct PoolLabels<'a> {
    pub name: &'a str,
    /// `(datacenter id, datacenter name)` of every member.
    pub members: Vec<(u32, &'a str)>,
}

/// `(datacenter id, decision slot)` of the members of one pool.
type Members = Box<[(u32, u32)]>;

/// The metrics slots of one GSLB name: its all-down counter and one decision counter per
/// (pool, member datacenter). Build at model load time with [`Metrics::gslb_slots`].
#[derive(Clone, Debug, Default)]
pub struct GslbSlots {
    all_down: u32,
    /// Indexed by pool id; a few members each, so a linear scan beats hashing.
    pools: Box<[Members]>,
}

impl GslbSlots {
    #[inline]
    fn decision(&self, pool: u32, dc: u32) -> u32 {
        self.pools
            .get(pool as usize)
            .and_then(|m| m.iter().find(|(d, _)| *d == dc))
            .map_or(NO_SLOT, |(_, s)| *s)
    }
}

/// A histogram with fixed bounds and plain atomics (not on the query path).
struct Hist {
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Hist {
    fn new(bounds: usize) -> Hist {
        Hist {
            buckets: (0..=bounds).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// The process-wide registry; share it as `Arc<Metrics>`.
pub struct Metrics {
    shards: usize,
    zones: Family,
    decisions: Family,
    all_down: Family,
    hot: Counters,
    probes: Mutex<HashMap<(String, String, String), u64>>,
    probe_time: Hist,
    snapshots: AtomicU64,
    reload_ok: AtomicU64,
    reload_err: AtomicU64,
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number (taken modulo the shard count): round-robin, so the UDP
    /// threads of a small machine each get their own.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed);
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry sized for this machine (shards = twice the cores, power of two, at most 16).
    pub fn new() -> Metrics {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Metrics::with_shards(cores * 2)
    }

    /// A registry with `shards` shards (rounded up to a power of two, 1..=16).
    pub fn with_shards(shards: usize) -> Metrics {
        let shards = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let hot = Counters::new(HOT_WIDTH, shards, 1);
        hot.ensure(0);
        let m = Metrics {
            shards,
            // 192 counters a zone: small chunks, as most servers have few zones.
            zones: Family::new(QUERY_WIDTH, shards, 4),
            decisions: Family::new(1, shards, 256),
            all_down: Family::new(1, shards, 256),
            hot,
            probes: Mutex::new(HashMap::new()),
            probe_time: Hist::new(PROBE_BUCKETS_MS.len()),
            snapshots: AtomicU64::new(0),
            reload_ok: AtomicU64::new(0),
            reload_err: AtomicU64::new(0),
        };
        let none = m.zones.slot("zones", vec!["none".into()]);
        debug_assert_eq!(none, ZoneSlot::NONE.0);
        m
    }

    #[inline]
    fn shard(&self) -> usize {
        SHARD.with(|s| *s) & (self.shards - 1)
    }

    // ---- load time -------------------------------------------------------------------------

    /// Slots for the zones of a model, in model order (pass each zone's origin). Call when a
    /// model is built (start and every reload), off the query path.
    pub fn zone_slots<I, S>(&self, origins: I) -> ZoneSlots
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ZoneSlots(
            origins
                .into_iter()
                .map(|o| self.zones.slot("zones", vec![o.as_ref().to_string()]))
                .collect(),
        )
    }

    /// Slots for GSLB name `name` (fully qualified) and its pools, in pool-id order.
    pub fn gslb_slots(&self, name: &str, pools: &[PoolLabels<'_>]) -> GslbSlots {
        let all_down = self.all_down.slot("all_down", vec![name.to_string()]);
        let pools = pools
            .iter()
            .map(|p| {
                p.members
                    .iter()
                    .map(|&(id, dc)| {
                        let labels = vec![name.to_string(), p.name.to_string(), dc.to_string()];
                        (id, self.decisions.slot("decisions", labels))
                    })
                    .collect()
            })
            .collect();
        GslbSlots { all_down, pools }
    }

    // ---- query path: relaxed atomic adds only ----------------------------------------------

    /// One answered query: `rcode` is the full (extended) response code, `elapsed` the time from
    /// receiving the packet to having the response.
    #[inline]
    pub fn query(
        &self,
        zone: ZoneSlot,
        qtype: u16,
        rcode: u16,
        transport: Transport,
        elapsed: Duration,
    ) {
        let s = self.shard();
        let j = (qtype_bucket(qtype) * RCODES.len() + rcode_bucket(rcode)) * TRANSPORTS.len()
            + transport as usize;
        self.zones.counters.add(s, zone.0, j, 1);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let b = QUERY_BUCKETS_US.partition_point(|&le| le < us);
        self.hot.add(s, 0, HOT_DUR + b, 1);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.hot.add(s, 0, HOT_DUR_SUM_NS, ns);
    }

    /// A GSLB answer from pool `pool` (the pool that answered, after fallback) that named
    /// datacenter `dc`; call once per datacenter in a multi-value answer.
    #[inline]
    pub fn decision(&self, slots: &GslbSlots, pool: u32, dc: u32) {
        let slot = slots.decision(pool, dc);
        if slot != NO_SLOT {
            self.decisions.counters.add(self.shard(), slot, 0, 1);
        }
    }

    /// A GSLB name found nothing usable and applied its all-down behaviour.
    #[inline]
    pub fn all_down(&self, slots: &GslbSlots) {
        self.all_down
            .counters
            .add(self.shard(), slots.all_down, 0, 1);
    }

    /// A query carried an EDNS Client Subnet option of `family` (1 = IPv4, 2 = IPv6, as on
    /// the wire) and the answer carried scope prefix `scope`.
    #[inline]
    pub fn ecs(&self, family: u16, scope: u8) {
        let row = HOT_ECS + if family == 2 { ECS_ROW } else { 0 };
        let s = self.shard();
        self.hot.add(s, 0, row + usize::from(scope.min(128)), 1);
        self.hot.add(s, 0, row + 129, u64::from(scope));
    }

    // ---- cold paths -----------------------------------------------------------------------

    /// One probe result for datacenter `dc` and target address `addr`; `outcome` is
    /// `probe::Outcome::kind()`. `duration` is the probe's round trip when it had one.
    pub fn probe(&self, dc: &str, addr: &str, outcome: &str, duration: Option<Duration>) {
        *lock(&self.probes)
            .entry((dc.to_string(), addr.to_string(), outcome.to_string()))
            .or_insert(0) += 1;
        if let Some(d) = duration {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let b = PROBE_BUCKETS_MS.partition_point(|&le| le < ms);
            self.probe_time.buckets[b].fetch_add(1, Relaxed);
            let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            self.probe_time.sum_ns.fetch_add(ns, Relaxed);
        }
    }

    /// The aggregator published a new health snapshot.
    pub fn snapshot_published(&self) {
        self.snapshots.fetch_add(1, Relaxed);
    }

    /// A reload finished, successfully or not.
    pub fn reload(&self, ok: bool) {
        if ok {
            &self.reload_ok
        } else {
            &self.reload_err
        }
        .fetch_add(1, Relaxed);
    }

    // ---- rendering ------------------------------------------------------------------------

    /// The whole registry plus the gauges in `extra`, in the Prometheus text format 0.0.4.
    pub fn render(&self, extra: &Extra<'_>) -> String {
        let mut o = Out::default();
        self.render_queries(&mut o);
        self.render_gslb(&mut o);
        self.render_probes(&mut o);
        o.header(
            "gslbd_snapshot_publications_total",
            "Health snapshots published.",
            "counter",
        );
        o.sample(
            "gslbd_snapshot_publications_total",
            &[],
            self.snapshots.load(Relaxed),
        );
        o.header(
            "gslbd_reloads_total",
            "Configuration reloads by result.",
            "counter",
        );
        o.sample(
            "gslbd_reloads_total",
            &[("result", "ok")],
            self.reload_ok.load(Relaxed),
        );
        o.sample(
            "gslbd_reloads_total",
            &[("result", "error")],
            self.reload_err.load(Relaxed),
        );
        if let Some(s) = &extra.server {
            render_server(&mut o, s);
        }
        if let Some(h) = extra.health {
            render_health(&mut o, h);
        }
        o.s
    }

    fn render_queries(&self, o: &mut Out) {
        let name = "gslbd_queries_total";
        o.header(
            name,
            "Queries answered, by zone, query type, response code and transport.",
            "counter",
        );
        for (slot, labels) in self.zones.labels().iter().enumerate() {
            let zone = labels.first().map_or("", String::as_str);
            for (qi, qt) in QTYPES.iter().enumerate() {
                for (ri, rc) in RCODES.iter().enumerate() {
                    for (ti, tr) in TRANSPORTS.iter().enumerate() {
                        let j = (qi * RCODES.len() + ri) * TRANSPORTS.len() + ti;
                        let v = self.zones.counters.sum(slot as u32, j);
                        // Only combinations seen so far: 192 zero series per zone would drown
                        // the scrape; a series appears with its first query and then stays.
                        if v > 0 {
                            let l = [
                                ("zone", zone),
                                ("qtype", qt),
                                ("rcode", rc),
                                ("transport", tr),
                            ];
                            o.sample(name, &l, v);
                        }
                    }
                }
            }
        }

        let h = "gslbd_query_duration_seconds";
        o.header(
            h,
            "Time from receiving a query to having its response.",
            "histogram",
        );
        let counts: Vec<u64> = (0..=QUERY_BUCKETS_US.len())
            .map(|b| self.hot.sum(0, HOT_DUR + b))
            .collect();
        let bounds: Vec<f64> = QUERY_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
        let sum = self.hot.sum(0, HOT_DUR_SUM_NS) as f64 / 1e9;
        o.histogram(h, &[], &bounds, &counts, sum);

        let e = "gslbd_ecs_queries_total";
        o.header(
            e,
            "Queries carrying an EDNS Client Subnet option, by address family.",
            "counter",
        );
        let rows = [
            ("ipv4", HOT_ECS, &ECS_BUCKETS_V4[..]),
            ("ipv6", HOT_ECS + ECS_ROW, &ECS_BUCKETS_V6[..]),
        ];
        let exact: Vec<Vec<u64>> = rows
            .iter()
            .map(|(_, row, _)| (0..=128).map(|p| self.hot.sum(0, row + p)).collect())
            .collect();
        for ((fam, _, _), ex) in rows.iter().zip(&exact) {
            o.sample(e, &[("family", fam)], ex.iter().sum::<u64>());
        }
        let s = "gslbd_ecs_scope_prefix";
        o.header(
            s,
            "ECS scope prefix length of answers to ECS queries.",
            "histogram",
        );
        for ((fam, row, bounds), ex) in rows.iter().zip(&exact) {
            let mut counts = vec![0u64; bounds.len() + 1];
            for (p, &n) in ex.iter().enumerate() {
                let b = bounds.partition_point(|&le| usize::from(le) < p);
                counts[b] += n;
            }
            let bounds: Vec<f64> = bounds.iter().map(|&b| f64::from(b)).collect();
            let sum = self.hot.sum(0, row + 129) as f64;
            o.histogram(s, &[("family", fam)], &bounds, &counts, sum);
        }
    }

    fn render_gslb(&self, o: &mut Out) {
        let d = "gslbd_gslb_decisions_total";
        o.header(d, "GSLB answers by name, pool and datacenter.", "counter");
        for (slot, l) in self.decisions.labels().iter().enumerate() {
            if let [name, pool, dc] = &l[..] {
                let v = self.decisions.counters.sum(slot as u32, 0);
                o.sample(d, &[("name", name), ("pool", pool), ("datacenter", dc)], v);
            }
        }
        let a = "gslbd_gslb_all_down_total";
        o.header(
            a,
            "GSLB answers where no datacenter was usable, by name.",
            "counter",
        );
        for (slot, l) in self.all_down.labels().iter().enumerate() {
            if let [name] = &l[..] {
                o.sample(
                    a,
                    &[("name", name)],
                    self.all_down.counters.sum(slot as u32, 0),
                );
            }
        }
    }

    fn render_probes(&self, o: &mut Out) {
        let p = "gslbd_probe_results_total";
        o.header(
            p,
            "Probe results by datacenter, target address and outcome.",
            "counter",
        );
        let mut rows: Vec<_> = lock(&self.probes)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        rows.sort();
        for ((dc, addr, outcome), v) in &rows {
            o.sample(
                p,
                &[("datacenter", dc), ("address", addr), ("outcome", outcome)],
                *v,
            );
        }
        let h = "gslbd_probe_duration_seconds";
        o.header(
            h,
            "Probe round-trip time (connect, or HTTP response headers).",
            "histogram",
        );
        let counts: Vec<u64> = self
            .probe_time
            .buckets
            .iter()
            .map(|b| b.load(Relaxed))
            .collect();
        let bounds: Vec<f64> = PROBE_BUCKETS_MS.iter().map(|&ms| ms as f64 / 1e3).collect();
        let sum = self.probe_time.sum_ns.load(Relaxed) as f64 / 1e9;
        o.histogram(h, &[], &bounds, &counts, sum);
    }
}

/// Process-level gauges, filled by the caller at scrape time.
#[derive(Clone, Debug)]
pub struct ServerGauges {
    pub started: SystemTime,
    /// Configuration generation (1 at start, +1 per successful reload).
    pub config_generation: u64,
    /// When the serving configuration was loaded.
    pub loaded_at: SystemTime,
    pub last_reload_ok: bool,
    pub zones: usize,
}

/// State rendered as gauges at scrape time, in addition to the registry's own counters.
#[derive(Clone, Debug, Default)]
pub struct Extra<'a> {
    /// Datacenter and target health from the aggregator.
    pub health: Option<&'a Status>,
    pub server: Option<ServerGauges>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn render_server(o: &mut Out, s: &ServerGauges) {
    let g = "gauge";
    o.header(
        "gslbd_start_time_seconds",
        "Process start time, Unix seconds.",
        g,
    );
    o.sample("gslbd_start_time_seconds", &[], F(unix(s.started)));
    o.header(
        "gslbd_config_generation",
        "Configuration generation serving now.",
        g,
    );
    o.sample("gslbd_config_generation", &[], s.config_generation);
    o.header(
        "gslbd_config_loaded_time_seconds",
        "When the serving configuration was loaded, Unix seconds.",
        g,
    );
    o.sample(
        "gslbd_config_loaded_time_seconds",
        &[],
        F(unix(s.loaded_at)),
    );
    o.header(
        "gslbd_config_last_reload_successful",
        "1 if the last reload succeeded.",
        g,
    );
    o.sample(
        "gslbd_config_last_reload_successful",
        &[],
        u8::from(s.last_reload_ok),
    );
    o.header("gslbd_zones", "Zones served.", g);
    o.sample("gslbd_zones", &[], s.zones);
}

fn render_health(o: &mut Out, h: &Status) {
    let g = "gauge";
    o.header(
        "gslbd_health_generation",
        "Generation of the health state last published.",
        g,
    );
    o.sample("gslbd_health_generation", &[], h.generation);
    let metrics: [(&str, &str); 6] = [
        (
            "gslbd_datacenter_up",
            "1 if the probes say the datacenter is up (after rise/fall and min-up).",
        ),
        (
            "gslbd_datacenter_usable",
            "1 if the datacenter may receive new answers (health and admin state).",
        ),
        (
            "gslbd_datacenter_load",
            "Utilisation 0..1 from the health endpoint.",
        ),
        (
            "gslbd_datacenter_latency_seconds",
            "Smoothed probe round-trip time.",
        ),
        (
            "gslbd_datacenter_slow_start_ratio",
            "Fraction of its normal traffic the datacenter gets now (slow start).",
        ),
        (
            "gslbd_datacenter_admin_state",
            "1 for the datacenter's current admin state.",
        ),
    ];
    for (i, (name, help)) in metrics.iter().enumerate() {
        o.header(name, help, g);
        for d in &h.datacenters {
            let dc = [("datacenter", d.name.as_str())];
            match i {
                0 => o.sample(name, &dc, u8::from(d.healthy)),
                1 => o.sample(name, &dc, u8::from(d.usable)),
                2 => {
                    if let Some(l) = d.load {
                        o.sample(name, &dc, F(l));
                    }
                }
                3 => {
                    if let Some(ms) = d.latency_ms {
                        o.sample(name, &dc, F(ms / 1e3));
                    }
                }
                4 => o.sample(name, &dc, F(d.slow_start)),
                _ => {
                    for st in ["obey", "up", "down", "drain"] {
                        let l = [("datacenter", d.name.as_str()), ("state", st)];
                        o.sample(name, &l, u8::from(d.admin == st));
                    }
                }
            }
        }
    }
    let t = "gslbd_target_up";
    o.header(
        t,
        "1 if the probed target is up (after rise/fall), by datacenter and address.",
        g,
    );
    for d in &h.datacenters {
        for tg in &d.targets {
            let l = [
                ("datacenter", d.name.as_str()),
                ("address", tg.addr.as_str()),
            ];
            o.sample(t, &l, u8::from(tg.up));
        }
    }
}

/// A float sample value in Prometheus spelling (`+Inf`, `-Inf`, `NaN`).
struct F(f64);

impl Display for F {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{v}")
        }
    }
}

/// Escapes a label value: backslash, double quote and newline, as the text format requires.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[derive(Default)]
struct Out {
    s: String,
}

impl Out {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        // HELP text escapes only backslash and newline.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.s, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl Display) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape_label(val));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {v}");
    }

    /// `counts` are per bucket (not cumulative), one more than `bounds` (the +Inf bucket).
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cum = 0u64;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| F(*b).to_string());
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cum);
        }
        self.sample(&format!("{name}_sum"), labels, F(sum));
        self.sample(&format!("{name}_count"), labels, cum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("parses")
    }

    fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        s.samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .and_then(|x| match &x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(*v),
                _ => None,
            })
    }

    fn histogram(s: &prometheus_parse::Scrape, name: &str) -> Vec<(f64, f64)> {
        s.samples
            .iter()
            .find(|x| x.metric == name)
            .and_then(|x| match &x.value {
                prometheus_parse::Value::Histogram(h) => {
                    Some(h.iter().map(|b| (b.less_than, b.count)).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn buckets() {
        assert_eq!(QTYPES[qtype_bucket(1)], "A");
        assert_eq!(QTYPES[qtype_bucket(28)], "AAAA");
        assert_eq!(QTYPES[qtype_bucket(257)], "CAA");
        assert_eq!(QTYPES[qtype_bucket(255)], "ANY");
        assert_eq!(QTYPES[qtype_bucket(99)], "other");
        assert_eq!(RCODES[rcode_bucket(3)], "NXDOMAIN");
        assert_eq!(RCODES[rcode_bucket(16)], "BADVERS");
        assert_eq!(RCODES[rcode_bucket(9)], "other");
    }

    #[test]
    fn rcode_of_a_response() {
        let mut q = crate::dns::Query {
            id: 0,
            opcode: 0,
            rd: false,
            cd: false,
            qname: [0; 256],
            qname_len: 0,
            labels: [0; 128],
            nlabels: 0,
            qtype: 1,
            qclass: 1,
            question_end: 12,
            edns: None,
        };
        let mut resp = [0u8; 12];
        resp[3] = 0x83; // RA + NXDOMAIN
        assert_eq!(response_rcode(&resp, &q), 3);
        resp[3] = 0x80;
        assert_eq!(response_rcode(&resp, &q), 0);
        q.edns = Some(crate::dns::wire::Edns {
            udp_size: 1232,
            version: 1,
            dnssec_ok: false,
            ecs: None,
        });
        assert_eq!(response_rcode(&resp, &q), 16);
        assert_eq!(response_rcode(&[], &q), 2);
    }

    #[test]
    fn zone_slots_are_stable_across_reloads() {
        let m = Metrics::with_shards(4);
        let a = m.zone_slots(["a.", "b."]);
        let b = m.zone_slots(["c.", "b.", "a."]);
        assert_eq!(a.get(Some(0)), b.get(Some(2)));
        assert_eq!(a.get(Some(1)), b.get(Some(1)));
        assert_ne!(b.get(Some(0)), a.get(Some(0)));
        assert_eq!(a.get(None), ZoneSlot::NONE);
        assert_eq!(a.get(Some(7)), ZoneSlot::NONE);
    }

    #[test]
    fn shards_sum_across_threads() {
        let m = std::sync::Arc::new(Metrics::with_shards(4));
        let z = m.zone_slots(["example.com."]).get(Some(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.query(z, 1, 0, Transport::Udp, Duration::from_micros(3));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = parse(&m.render(&Extra::default()));
        let l = [
            ("zone", "example.com."),
            ("qtype", "A"),
            ("rcode", "NOERROR"),
            ("transport", "udp"),
        ];
        assert_eq!(value(&s, "gslbd_queries_total", &l), Some(8000.0));
    }

    #[test]
    fn many_zones_grow_storage() {
        let m = Metrics::with_shards(2);
        let names: Vec<String> = (0..100).map(|i| format!("z{i}.")).collect();
        let slots = m.zone_slots(&names);
        for i in 0..100 {
            for _ in 0..=i {
                m.query(slots.get(Some(i)), 28, 3, Transport::Tcp, Duration::ZERO);
            }
        }
        let s = parse(&m.render(&Extra::default()));
        for i in [0u32, 57, 99] {
            let zone = format!("z{i}.");
            let l = [
                ("zone", zone.as_str()),
                ("qtype", "AAAA"),
                ("rcode", "NXDOMAIN"),
                ("transport", "tcp"),
            ];
            assert_eq!(value(&s, "gslbd_queries_total", &l), Some(f64::from(i + 1)));
        }
    }

    #[test]
    fn render_parses_with_values() {
        let m = Metrics::with_shards(2);
        let zs = m.zone_slots(["example.com."]);
        m.query(
            zs.get(Some(0)),
            1,
            0,
            Transport::Udp,
            Duration::from_micros(7),
        );
        m.query(
            zs.get(Some(0)),
            1,
            0,
            Transport::Udp,
            Duration::from_micros(40),
        );
        m.query(
            zs.get(None),
            1,
            5,
            Transport::Tcp,
            Duration::from_millis(500),
        );
        m.query(
            zs.get(Some(0)),
            6,
            16,
            Transport::Udp,
            Duration::from_micros(1),
        );
        let g = m.gslb_slots(
            "www.example.com.",
            &[
                PoolLabels {
                    name: "europe",
                    members: vec![(0, "fra"), (1, "ams")],
                },
                PoolLabels {
                    name: "world",
                    members: vec![(2, "iad"), (0, "fra")],
                },
            ],
        );
        m.decision(&g, 0, 1);
        m.decision(&g, 0, 1);
        m.decision(&g, 1, 0);
        m.decision(&g, 1, 1); // not a member of pool 1: not counted
        m.decision(&g, 9, 0); // unknown pool: not counted
        m.all_down(&g);
        m.ecs(1, 24);
        m.ecs(1, 0);
        m.ecs(2, 56);
        m.probe("fra", "10.0.0.1:80", "pass", Some(Duration::from_millis(3)));
        m.probe("fra", "10.0.0.1:80", "timeout", None);
        m.snapshot_published();
        m.reload(true);
        m.reload(false);
        m.reload(false);

        let text = m.render(&Extra::default());
        let s = parse(&text);
        let q = "gslbd_queries_total";
        let l = [
            ("zone", "example.com."),
            ("qtype", "A"),
            ("rcode", "NOERROR"),
            ("transport", "udp"),
        ];
        assert_eq!(value(&s, q, &l), Some(2.0));
        let l = [
            ("zone", "none"),
            ("qtype", "A"),
            ("rcode", "REFUSED"),
            ("transport", "tcp"),
        ];
        assert_eq!(value(&s, q, &l), Some(1.0));
        let l = [
            ("zone", "example.com."),
            ("qtype", "SOA"),
            ("rcode", "BADVERS"),
        ];
        assert_eq!(value(&s, q, &l), Some(1.0));

        let h = histogram(&s, "gslbd_query_duration_seconds");
        assert_eq!(h.first(), Some(&(5e-6, 1.0)));
        assert!(h.contains(&(1e-5, 2.0)) && h.contains(&(5e-5, 3.0)));
        assert!(h.contains(&(1.0e-1, 3.0)));
        assert!(text.contains("gslbd_query_duration_seconds_count 4\n"));
        assert!(text.contains("gslbd_query_duration_seconds_bucket{le=\"+Inf\"} 4\n"));

        let d = "gslbd_gslb_decisions_total";
        let dl = |p, dc| {
            [
                ("name", "www.example.com."),
                ("pool", p),
                ("datacenter", dc),
            ]
        };
        assert_eq!(value(&s, d, &dl("europe", "ams")), Some(2.0));
        assert_eq!(value(&s, d, &dl("europe", "fra")), Some(0.0));
        assert_eq!(value(&s, d, &dl("world", "fra")), Some(1.0));
        assert_eq!(value(&s, d, &dl("world", "iad")), Some(0.0));
        let ad = [("name", "www.example.com.")];
        assert_eq!(value(&s, "gslbd_gslb_all_down_total", &ad), Some(1.0));

        let e = "gslbd_ecs_queries_total";
        assert_eq!(value(&s, e, &[("family", "ipv4")]), Some(2.0));
        assert_eq!(value(&s, e, &[("family", "ipv6")]), Some(1.0));
        assert!(text.contains("gslbd_ecs_scope_prefix_bucket{family=\"ipv4\",le=\"0\"} 1\n"));
        assert!(text.contains("gslbd_ecs_scope_prefix_bucket{family=\"ipv4\",le=\"20\"} 1\n"));
        assert!(text.contains("gslbd_ecs_scope_prefix_bucket{family=\"ipv4\",le=\"24\"} 2\n"));
        assert!(text.contains("gslbd_ecs_scope_prefix_sum{family=\"ipv4\"} 24\n"));
        assert!(text.contains("gslbd_ecs_scope_prefix_bucket{family=\"ipv6\",le=\"48\"} 0\n"));
        assert!(text.contains("gslbd_ecs_scope_prefix_bucket{family=\"ipv6\",le=\"56\"} 1\n"));

        let p = "gslbd_probe_results_total";
        let pl = |o| {
            [
                ("datacenter", "fra"),
                ("address", "10.0.0.1:80"),
                ("outcome", o),
            ]
        };
        assert_eq!(value(&s, p, &pl("pass")), Some(1.0));
        assert_eq!(value(&s, p, &pl("timeout")), Some(1.0));
        assert!(text.contains("gslbd_probe_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("gslbd_probe_duration_seconds_count 1\n"));
        assert_eq!(
            value(&s, "gslbd_snapshot_publications_total", &[]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "gslbd_reloads_total", &[("result", "ok")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "gslbd_reloads_total", &[("result", "error")]),
            Some(2.0)
        );
        // Every family is announced once with HELP and TYPE.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap_or_default();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
    }

    #[test]
    fn health_gauges() {
        use crate::health::aggregator::{DcStatus, TargetStatus};
        let target = TargetStatus {
            addr: "10.0.0.1:443".into(),
            check: "web".into(),
            up: false,
            probed: true,
            warm: false,
            consecutive_passes: 0,
            consecutive_fails: 3,
            probes: 9,
            last_result: Some("timeout"),
            last_reason: None,
            last_ms_ago: Some(10),
            last_latency_ms: None,
            latency_ms: Some(12.0),
            load: None,
            load_age_ms: None,
            load_error: None,
        };
        let dc = DcStatus {
            id: 0,
            name: "fra".into(),
            healthy: false,
            usable: false,
            admin: "drain",
            settled: true,
            slow_start: 0.25,
            load: Some(0.5),
            load_error: None,
            latency_ms: Some(12.0),
            min_up: 1,
            addresses_up: 0,
            drain: None,
            targets: vec![target],
        };
        let status = Status {
            generation: 7,
            datacenters: vec![dc],
        };
        let m = Metrics::with_shards(1);
        let server = ServerGauges {
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            config_generation: 3,
            loaded_at: SystemTime::UNIX_EPOCH + Duration::from_secs(200),
            last_reload_ok: false,
            zones: 2,
        };
        let text = m.render(&Extra {
            health: Some(&status),
            server: Some(server),
        });
        let s = parse(&text);
        let fra = [("datacenter", "fra")];
        assert_eq!(value(&s, "gslbd_datacenter_up", &fra), Some(0.0));
        assert_eq!(value(&s, "gslbd_datacenter_load", &fra), Some(0.5));
        assert_eq!(
            value(&s, "gslbd_datacenter_latency_seconds", &fra),
            Some(0.012)
        );
        assert_eq!(
            value(&s, "gslbd_datacenter_slow_start_ratio", &fra),
            Some(0.25)
        );
        let a = "gslbd_datacenter_admin_state";
        assert_eq!(
            value(&s, a, &[("datacenter", "fra"), ("state", "drain")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, a, &[("datacenter", "fra"), ("state", "obey")]),
            Some(0.0)
        );
        let t = [("datacenter", "fra"), ("address", "10.0.0.1:443")];
        assert_eq!(value(&s, "gslbd_target_up", &t), Some(0.0));
        assert_eq!(value(&s, "gslbd_health_generation", &[]), Some(7.0));
        assert_eq!(value(&s, "gslbd_config_generation", &[]), Some(3.0));
        assert_eq!(
            value(&s, "gslbd_config_last_reload_successful", &[]),
            Some(0.0)
        );
        assert_eq!(value(&s, "gslbd_start_time_seconds", &[]), Some(100.0));
        assert_eq!(value(&s, "gslbd_zones", &[]), Some(2.0));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::with_shards(1);
        let z = m.zone_slots(["we\"ird\\zone\n."]).get(Some(0));
        m.query(z, 1, 0, Transport::Udp, Duration::ZERO);
        let text = m.render(&Extra::default());
        assert!(text.contains(r#"zone="we\"ird\\zone\n.""#), "{text}");
        assert_eq!(F(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(F(f64::NAN).to_string(), "NaN");
    }
}
