//! The metrics registry: counters and histograms the server updates as it works, rendered in
//! the Prometheus text exposition format for `GET /metrics`.
//!
//! ```text
//!  model build/reload --zone_slots / gslb_slots--> label sets -> integer slots (Mutex, cold)
//!                                                        |
//!  query path --query/decision/all_down/ecs(slot)--> relaxed atomic adds on this thread's
//!                                                    cache-padded shard (no lock, no alloc)
//!  aggregator / probes --probe/reload/snapshot_published--> Mutex'd maps, plain atomics (cold)
//!  /metrics --render(Extra { health: &dyn Gauges, server: .. })--> sum over shards -> text
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
//!
//! The parts: `registry.rs` (sharded storage and label interning), `slots.rs` (label buckets
//! and the per-model slot tables), `render.rs` (the text format), and this file (the counting
//! API). The registry knows no module above the leaves: health renders its own gauges through
//! `Gauges`, and callers pass plain numbers (type, rcode) and the leaves' vocabulary
//! (`net::Transport`; `abuse`'s close reasons, rate limiting classes and cookie results, and
//! the connection tables whose sizes it reports).

mod registry;
mod render;
mod slots;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use registry::{Counters, Family, Hist, MAX_SHARDS, NO_SLOT, lock};
pub(crate) use render::{Extra, F, Gauges, ServerGauges, Text};
pub use slots::PoolLabels;
use slots::{
    ECS_ROW, HOT_ACCEPT, HOT_CLOSED, HOT_COOKIE, HOT_DUR, HOT_DUR_SUM_NS, HOT_ECS, HOT_RRL,
    HOT_RRL_EXEMPT, HOT_STALE, HOT_WIDTH, N_TRANSPORTS, QUERY_WIDTH, RCODES, qtype_bucket,
    rcode_bucket,
};
pub(crate) use slots::{GslbSlots, PROBE_BUCKETS_MS, QUERY_BUCKETS_US, ZoneSlot, ZoneSlots};

use crate::abuse::{
    CloseReason, ConnTable, CookieResult, Listener, RrlAction, RrlClass, RrlExempt,
};
use crate::net::Transport;

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
    /// The connection tables of the stream listeners, for the open/max gauges.
    conn_tables: Mutex<Vec<(Listener, std::sync::Arc<ConnTable>)>>,
    /// Webhook notifications: sent, retried, dropped.
    notifications: [AtomicU64; 3],
    /// Connections established per listener (DNS listeners; after the handshake for the
    /// encrypted ones): per connection, not per query.
    opened: [AtomicU64; Listener::ALL.len()],
    /// Of those, TLS handshakes that resumed a session.
    resumed: [AtomicU64; Listener::ALL.len()],
    /// Requests of a multiplexed connection (DoH, DoQ) stopped by a limit or an error
    /// without closing the connection, per (listener, reason).
    limited: [[AtomicU64; CloseReason::ALL.len()]; Listener::ALL.len()],
    cert_reload_ok: AtomicU64,
    cert_reload_err: AtomicU64,
}

/// The `result` labels of `gslbd_notifications_total`, in storage order.
pub(crate) const NOTIFICATION_RESULTS: [&str; 3] = ["sent", "retried", "dropped"];

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
            // 576 counters a zone (12 types x 8 rcodes x 6 transports): small chunks, as most
            // servers have few zones.
            zones: Family::new(QUERY_WIDTH, shards, 4),
            decisions: Family::new(1, shards, 256),
            all_down: Family::new(1, shards, 256),
            hot,
            probes: Mutex::new(HashMap::new()),
            probe_time: Hist::new(PROBE_BUCKETS_MS.len()),
            snapshots: AtomicU64::new(0),
            reload_ok: AtomicU64::new(0),
            reload_err: AtomicU64::new(0),
            conn_tables: Mutex::new(Vec::new()),
            notifications: Default::default(),
            opened: Default::default(),
            resumed: Default::default(),
            limited: Default::default(),
            cert_reload_ok: AtomicU64::new(0),
            cert_reload_err: AtomicU64::new(0),
        };
        let none = m.zones.slot("zones", &["none"]);
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
                .map(|o| self.zones.slot("zones", &[o.as_ref()]))
                .collect(),
        )
    }

    /// Slots for GSLB name `name` (fully qualified) and its pools, in pool-id order.
    pub fn gslb_slots(&self, name: &str, pools: &[PoolLabels<'_>]) -> GslbSlots {
        let all_down = self.all_down.slot("all_down", &[name]);
        let pools = self.decisions.register("decisions", |r| {
            let name = r.id(name);
            pools
                .iter()
                .map(|p| {
                    let pool = r.id(p.name);
                    p.members
                        .iter()
                        .map(|&(id, dc)| {
                            let dc = r.id(dc);
                            (id, r.slot([name, pool, dc]))
                        })
                        .collect()
                })
                .collect()
        });
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
        let j = (qtype_bucket(qtype) * RCODES.len() + rcode_bucket(rcode)) * N_TRANSPORTS
            + transport.index();
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

    /// An answer carried addresses of a hostname target past its TTL (RFC 8767 serve-stale).
    #[inline]
    pub fn stale_answer(&self) {
        self.hot.add(self.shard(), 0, HOT_STALE, 1);
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

    /// A UDP response over its rate-limit bucket, of `class`, handled by `action`.
    #[inline]
    pub(crate) fn rrl_limited(&self, class: RrlClass, action: RrlAction) {
        let j = HOT_RRL + class.index() * RrlAction::ALL.len() + action.index();
        self.hot.add(self.shard(), 0, j, 1);
    }

    /// A UDP response not rate limited because of `why`.
    #[inline]
    pub(crate) fn rrl_exempt(&self, why: RrlExempt) {
        self.hot
            .add(self.shard(), 0, HOT_RRL_EXEMPT + why.index(), 1);
    }

    /// A query carried a COOKIE option that showed `result`.
    #[inline]
    pub(crate) fn cookie(&self, result: CookieResult) {
        self.hot
            .add(self.shard(), 0, HOT_COOKIE + result.index(), 1);
    }

    /// A connection of `listener` was closed or refused by a limit.
    pub(crate) fn conn_closed(&self, listener: Listener, reason: CloseReason) {
        let j = HOT_CLOSED + listener.index() * CloseReason::ALL.len() + reason.index();
        self.hot.add(self.shard(), 0, j, 1);
    }

    /// Accepting on `listener` failed for lack of descriptors or memory.
    pub(crate) fn accept_failed(&self, listener: Listener) {
        self.hot
            .add(self.shard(), 0, HOT_ACCEPT + listener.index(), 1);
    }

    /// Reports the open connections of `listener`'s table (and its bounds) as gauges.
    pub(crate) fn register_conns(&self, listener: Listener, table: std::sync::Arc<ConnTable>) {
        let mut t = lock(&self.conn_tables);
        t.retain(|(l, _)| *l != listener);
        t.push((listener, table));
    }

    // ---- cold paths -----------------------------------------------------------------------

    /// One probe result for datacenter `dc` and target address `addr`; `outcome` is
    /// `probe::ProbeOutcome::kind()`. `duration` is the probe's round trip when it had one.
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

    /// A webhook notification was `sent`, `retried` or `dropped` (other words are ignored).
    pub(crate) fn notification(&self, result: &str) {
        if let Some(i) = NOTIFICATION_RESULTS.iter().position(|r| *r == result) {
            self.notifications[i].fetch_add(1, Relaxed);
        }
    }

    /// A connection of `listener` is established (`resumed`: its TLS handshake resumed an
    /// earlier session). Once per connection, never per query.
    pub(crate) fn conn_opened(&self, listener: Listener, resumed: bool) {
        self.opened[listener.index()].fetch_add(1, Relaxed);
        if resumed {
            self.resumed[listener.index()].fetch_add(1, Relaxed);
        }
    }

    /// A request on a DoH or DoQ connection was stopped by `reason` (the connection stays).
    pub(crate) fn request_limited(&self, listener: Listener, reason: CloseReason) {
        self.limited[listener.index()][reason.index()].fetch_add(1, Relaxed);
    }

    /// A TLS certificate reload finished, successfully or not.
    pub fn cert_reload(&self, ok: bool) {
        if ok {
            &self.cert_reload_ok
        } else {
            &self.cert_reload_err
        }
        .fetch_add(1, Relaxed);
    }

    /// GSLB answers counted so far per `(name, datacenter)` (summed over pools), and
    /// all-down answers per name; for the status page's answer shares (cold path).
    pub(crate) fn gslb_totals(&self) -> GslbTotals {
        let mut t = GslbTotals::default();
        for (slot, [name, _pool, dc]) in self.decisions.labels().iter() {
            *t.decisions
                .entry((name.to_string(), dc.to_string()))
                .or_insert(0) += self.decisions.counters.sum(slot, 0);
        }
        for (slot, [name, ..]) in self.all_down.labels().iter() {
            *t.all_down.entry(name.to_string()).or_insert(0) += self.all_down.counters.sum(slot, 0);
        }
        t
    }
}

/// Counter totals of [`Metrics::gslb_totals`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GslbTotals {
    /// `(name, datacenter)` -> answers naming that datacenter.
    pub(crate) decisions: HashMap<(String, String), u64>,
    /// name -> answers given under the all-down behaviour.
    pub(crate) all_down: HashMap<String, u64>,
}

/// Reading the text format back in unit tests, as Prometheus would.
#[cfg(test)]
pub(crate) mod scrape {
    /// Parses a whole exposition.
    pub(crate) fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("parses")
    }

    /// The value of the sample `name` with (at least) `labels`.
    pub(crate) fn value(
        s: &prometheus_parse::Scrape,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
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
}

#[cfg(test)]
mod tests {
    use super::scrape::{parse, value};
    use super::slots::qtype_labels;
    use super::*;

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
        assert_eq!(qtype_labels().nth(qtype_bucket(1)), Some("A"));
        assert_eq!(qtype_labels().nth(qtype_bucket(28)), Some("AAAA"));
        assert_eq!(qtype_labels().nth(qtype_bucket(257)), Some("CAA"));
        assert_eq!(qtype_labels().nth(qtype_bucket(255)), Some("ANY"));
        assert_eq!(qtype_labels().nth(qtype_bucket(99)), Some("other"));
        assert_eq!(RCODES[rcode_bucket(3)], "NXDOMAIN");
        assert_eq!(RCODES[rcode_bucket(16)], "BADVERS");
        assert_eq!(RCODES[rcode_bucket(9)], "other");
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
    fn label_values_are_escaped() {
        let m = Metrics::with_shards(1);
        let z = m.zone_slots(["we\"ird\\zone\n."]).get(Some(0));
        m.query(z, 1, 0, Transport::Udp, Duration::ZERO);
        let text = m.render(&Extra::default());
        assert!(text.contains(r#"zone="we\"ird\\zone\n.""#), "{text}");
        assert_eq!(F(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(F(f64::NAN).to_string(), "NaN");
    }

    #[test]
    fn gslb_totals_sum_pools_per_datacenter() {
        let m = Metrics::with_shards(2);
        let pools = [
            PoolLabels {
                name: "europe",
                members: vec![(0, "fra"), (1, "ams")],
            },
            PoolLabels {
                name: "world",
                members: vec![(0, "fra")],
            },
        ];
        let g = m.gslb_slots("www.example.com.", &pools);
        m.decision(&g, 0, 0);
        m.decision(&g, 1, 0);
        m.decision(&g, 0, 1);
        m.all_down(&g);
        let t = m.gslb_totals();
        let key = |dc: &str| ("www.example.com.".to_string(), dc.to_string());
        assert_eq!(t.decisions.get(&key("fra")), Some(&2));
        assert_eq!(t.decisions.get(&key("ams")), Some(&1));
        assert_eq!(t.all_down.get("www.example.com."), Some(&1));
    }
}
