//! The running server: loads the zones, binds the sockets, runs the probes and the API,
//! reloads on SIGHUP or a file change, and stops cleanly on SIGTERM/SIGINT.
//!
//! ```text
//! config::load -> Loaded{Model, metric slots} --+
//! HealthRuntime (probes -> aggregator) ---------+--> Publisher: ArcSwap<Serving> <--load--
//! latency map poller, GeoIP files --------------+        (one pair per query)   UDP/TCP handler
//! health feed pollers, API (pushed, alerts) --input--> aggregator
//! aggregator --events (broadcast)--> /events stream, webhook notifier
//! Resolver (hostname targets, by name) ---------+--> also watched by the HealthRuntime
//! ```
//! A reload builds a complete new model off the query path and publishes it, with the health
//! of the same datacenter ids, in one atomic store (`publish.rs`); a failed reload leaves the
//! old model in place and reports every error. Every task and thread runs under one stop tree
//! (`crate::shutdown`): `Running::shutdown` stops and joins each part in order.

mod backend;
mod feed;
mod guard;
pub(crate) mod health;
#[allow(unsafe_code)]
mod heap;
mod latency_map;
mod notify;
pub mod publish;
#[allow(unsafe_code)]
mod rlimit;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::abuse::{CloseReason, ConnLimits, ConnLog, ConnTable, Listener, RrlAction, RrlExempt};
use crate::config::{self, ConfigErrors};
use crate::dns::rrl::{Rrl, Verdict};
use crate::dns::{
    self, CertError, CertStore, EncryptedConfig, EncryptedLimits, ListenConfig, Listeners,
    PacketHandler, Peer, Query, RrlConfig, StreamLimits,
};
use crate::geo::GeoDb;
use crate::gslb::GslbContext;
use crate::health::aggregator::{AggregatorSettings, Startup, StateProblem};
use crate::metrics::{GslbSlots, Metrics, PoolLabels, ZoneSlots};
use crate::model::Model;
use crate::probe::WorkerSettings;
use crate::resolve::{Resolver, ResolverSettings};
use crate::shutdown::Shutdown;
use health::HealthRuntime;
use publish::{Publisher, Serving};

/// What `gslbd serve` is told on the command line.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The zones directory.
    pub(crate) zones_dir: PathBuf,
    /// DNS listen addresses (UDP and TCP each).
    pub(crate) listen: Vec<SocketAddr>,
    /// GeoIP files; empty = the shipped database.
    pub geoip: Vec<PathBuf>,
    /// UDP sockets and threads per address; 0 = one per core.
    pub udp_threads: usize,
    /// Most TCP connections at once; 0 = sized from the descriptor limit.
    pub tcp_max_connections: usize,
    /// Most TCP connections of one client address (IPv6: one /64) at once.
    pub tcp_max_per_client: usize,
    /// Idle TCP connections are closed after this long.
    pub tcp_idle_timeout: Duration,
    /// A TCP connection is closed (between queries) once open this long.
    pub tcp_lifetime: Duration,
    /// A TCP connection is closed after answering this many queries (0 = no budget).
    pub tcp_max_queries: u32,
    /// The rest of a TCP message must arrive within this once its first byte did.
    pub tcp_read_timeout: Duration,
    /// A TCP response must be written within this (a client that does not read is closed).
    pub tcp_write_timeout: Duration,
    /// Bounds of the API listener (connections, timeouts, body size).
    pub api_limits: crate::api::ApiLimits,
    /// Response rate limiting of UDP answers, over sockets and AF_XDP (rate 0 = off).
    pub rrl: RrlConfig,
    /// DNS cookies (RFC 7873) on.
    pub cookies: bool,
    /// Cookie secrets shared by instances (one hex secret a line, the first makes cookies);
    /// `None` = a secret made by the process, rotated daily.
    pub cookie_secret_file: Option<PathBuf>,
    /// HTTP API address; `None` = no API.
    pub api: Option<SocketAddr>,
    /// Bearer token for mutating API calls (read from a file or the environment by the caller).
    pub api_token: Option<String>,
    /// Where admin states and warm-start health are kept; `None` = a private directory that
    /// lasts as long as the process (state then survives reloads, not restarts).
    pub state_dir: Option<PathBuf>,
    /// How never-probed targets count before their first probe (without warm state).
    pub startup: Startup,
    /// Warm state older than this is ignored.
    pub(crate) warm_max_age: Duration,
    /// Refuse to start (or a reload to restart the probes) when `admin.json` cannot be used,
    /// instead of moving it aside and going on with every datacenter in `obey`.
    pub strict_state: bool,
    /// Reload when the zones directory or the GeoIP files change.
    pub watch: bool,
    /// Probes in flight at once.
    pub(crate) max_probes_in_flight: usize,
    /// Grace time for in-flight TCP queries at shutdown.
    pub shutdown_grace: Duration,
    /// Log one query in this many (0 = no query log): client, ECS, name, type, rcode, answer.
    pub query_log_sample: u32,
    /// Go on when some listen addresses cannot be bound (the built-in default includes ::1).
    pub listen_best_effort: bool,
    /// Latency map file (client region or subnet -> datacenter -> ms) for the `latency` policy.
    pub latency_map: Option<PathBuf>,
    /// Health feed files (datacenter or address -> state), polled for changes.
    pub health_feeds: Vec<PathBuf>,
    /// A feed file older than this is ignored (its entries expire this long after it was
    /// written).
    pub health_feed_max_age: Duration,
    /// The Alertmanager label that names the datacenter an alert takes down.
    pub alert_label: String,
    /// A firing alert holds this long unless Alertmanager sends it again (or resolves it).
    pub alert_ttl: Duration,
    /// Webhook URLs that receive every health event.
    pub notify: Vec<String>,
    /// `exec` checks running at once, at most.
    pub max_exec_checks: usize,
    /// Time of DNSSEC signatures (the system clock; tests shift it) and the signing
    /// counters, kept across reloads.
    pub dnssec: crate::dnssec::Env,
    /// The encrypted listeners (DoT, DoH, DoQ) and their certificate; `None` = none.
    pub tls: Option<TlsOptions>,
    /// `--cluster`: share probing and decide by quorum with the other nodes through etcd.
    pub cluster: Option<crate::cluster::ClusterOptions>,
    /// Seed of the probe jitter; `None` = random. A fixed seed gives the probe schedule
    /// `gslbd simulate` computes for the same seed (its tests compare the two).
    pub probe_seed: Option<u64>,
    /// How hostname targets outside our zones are resolved.
    pub resolver: ResolverSettings,
    /// UDP over AF_XDP on these interfaces (`--listen-xdp`; needs the `xdp` feature).
    pub xdp: Vec<dns::xdp::XdpListen>,
    /// Where the XDP program runs (`--xdp-mode`).
    pub xdp_mode: dns::xdp::XdpMode,
}

/// The encrypted listeners and the certificate they share.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// PEM certificate chain, the server's certificate first (watched and reloaded).
    pub cert: PathBuf,
    /// PEM private key (watched and reloaded).
    pub key: PathBuf,
    /// DNS over TLS addresses.
    pub listen_tls: Vec<SocketAddr>,
    /// DNS over HTTPS addresses.
    pub listen_https: Vec<SocketAddr>,
    /// DNS over QUIC addresses.
    pub listen_quic: Vec<SocketAddr>,
    /// Timeouts and bounds of the three.
    pub limits: EncryptedLimits,
}

impl TlsOptions {
    /// No listener yet, default limits.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsOptions {
        TlsOptions {
            cert: cert.into(),
            key: key.into(),
            listen_tls: vec![],
            listen_https: vec![],
            listen_quic: vec![],
            limits: EncryptedLimits::default(),
        }
    }
}

impl ServeOptions {
    /// Options with the defaults, serving `zones_dir` on `listen`.
    pub fn new(zones_dir: impl Into<PathBuf>, listen: Vec<SocketAddr>) -> Self {
        ServeOptions {
            zones_dir: zones_dir.into(),
            listen,
            geoip: vec![],
            udp_threads: 0,
            tcp_max_connections: 0,
            tcp_max_per_client: 16,
            tcp_idle_timeout: StreamLimits::default().idle_timeout,
            tcp_lifetime: StreamLimits::default().lifetime,
            tcp_max_queries: StreamLimits::default().max_queries,
            tcp_read_timeout: StreamLimits::default().read_timeout,
            tcp_write_timeout: StreamLimits::default().write_timeout,
            api_limits: crate::api::ApiLimits::default(),
            rrl: RrlConfig::default(),
            cookies: true,
            cookie_secret_file: None,
            api: None,
            api_token: None,
            state_dir: None,
            startup: Startup::AssumeUp,
            warm_max_age: Duration::from_secs(300),
            strict_state: false,
            watch: false,
            max_probes_in_flight: 256,
            shutdown_grace: Duration::from_secs(5),
            query_log_sample: 0,
            listen_best_effort: false,
            latency_map: None,
            health_feeds: vec![],
            health_feed_max_age: Duration::from_secs(300),
            alert_label: crate::api::alertmanager::DEFAULT_LABEL.to_string(),
            alert_ttl: crate::api::alertmanager::DEFAULT_TTL,
            notify: vec![],
            max_exec_checks: crate::probe::DEFAULT_MAX_EXEC,
            dnssec: crate::dnssec::Env::system(),
            cluster: None,
            probe_seed: None,
            resolver: ResolverSettings::default(),
            xdp: vec![],
            xdp_mode: dns::xdp::XdpMode::Auto,
            tls: None,
        }
    }

    fn geoip_paths(&self) -> Vec<PathBuf> {
        crate::geo::given_or_default(&self.geoip)
    }
}

/// Result of the last reload, for logs and the status API.
#[derive(Clone, Debug)]
pub struct ReloadReport {
    /// When it finished.
    pub(crate) at: SystemTime,
    /// It succeeded.
    pub ok: bool,
    /// Every error, when it failed.
    pub(crate) errors: Vec<String>,
}

/// The certificate of the encrypted listeners: what serves now and how the last reload went,
/// for logs and the status API.
#[derive(Clone, Debug)]
pub struct CertReport {
    /// When the certificate serving now was loaded.
    pub(crate) loaded_at: SystemTime,
    /// When the files were last read (start, a change, SIGHUP).
    pub(crate) checked_at: SystemTime,
    /// The last read loaded (or found the same certificate).
    pub ok: bool,
    /// Why the last read failed (the previous certificate keeps serving).
    pub(crate) error: Option<String>,
}

/// A model and the metric slots of its zones and GSLB names, published together.
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// Metric slot of each zone.
    pub(crate) zone_slots: ZoneSlots,
    /// Metric slots of each GSLB name.
    pub gslb_slots: Vec<GslbSlots>,
}

impl Loaded {
    /// Resolves the metric slots of `model`'s zones and GSLB names.
    pub fn new(model: Model, metrics: &Metrics) -> Loaded {
        let zone_slots = metrics.zone_slots(model.zones.iter().map(|z| z.origin.to_string()));
        let dcs = &model.datacenters.list;
        let gslb_slots = model
            .gslb
            .iter()
            .map(|g| {
                let pools: Vec<PoolLabels<'_>> = g
                    .def
                    .pools
                    .iter()
                    .map(|p| PoolLabels {
                        name: &p.name,
                        members: p
                            .members
                            .iter()
                            .map(|m| (m.dc.0, dcs.get(m.dc.0 as usize).map_or("?", |d| &*d.name)))
                            .collect(),
                    })
                    .collect();
                metrics.gslb_slots(&g.owner.to_string(), &pools)
            })
            .collect();
        Loaded {
            model,
            zone_slots,
            gslb_slots,
        }
    }
}

/// Everything the query path reads (one publication) plus the control state.
pub struct State {
    /// The model, health, latency map and GeoIP databases, published together.
    pub serving: Arc<Publisher>,
    /// Counters and histograms.
    pub(crate) metrics: Arc<Metrics>,
    /// Configuration generation (1 at start, +1 per successful reload).
    pub(crate) generation: AtomicU64,
    /// The last reload's result.
    pub last_reload: ArcSwap<ReloadReport>,
    /// Process start.
    pub(crate) started: SystemTime,
    /// True once every target was probed or warm-started (`/readyz`).
    pub(crate) ready: AtomicBool,
    health: tokio::sync::Mutex<Option<HealthRuntime>>,
    /// Keeps hostname targets resolved.
    resolver: Resolver,
    /// Generation of the newest probe runtime (see `publish`).
    health_gen: AtomicU64,
    /// State files that could not be used since the process started (`/status`, metrics).
    pub(crate) state_problems: std::sync::Mutex<Vec<(SystemTime, StateProblem)>>,
    /// Every health event of every probe runtime (SSE, webhooks).
    events: tokio::sync::broadcast::Sender<crate::health::events::EventView>,
    /// The health feed files, in `--health-feed` order.
    feeds: std::sync::Mutex<Vec<crate::health::feed::FeedStatus>>,
    /// One reload at a time (SIGHUP, file watch and tests may race).
    reload_lock: tokio::sync::Mutex<()>,
    opts: ServeOptions,
    state_dir: PathBuf,
    private_state_dir: bool,
    /// Parent of every probe runtime's stop node.
    stop: Shutdown,
    /// The certificate of the encrypted listeners, when they run.
    certs: Option<Arc<CertStore>>,
    /// How the certificate's last (re)load went.
    pub cert_report: ArcSwap<CertReport>,
    /// The cluster membership, with `--cluster`.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Response rate limiting of UDP answers, sockets and AF_XDP alike (`None` = off).
    rrl: Option<Rrl>,
    /// Cookie secrets (`None` = cookies off).
    cookies: Option<Arc<guard::CookieJar>>,
    /// Throttled logs of the stream listeners' limits, by `Listener::index`.
    conn_logs: [ConnLog; Listener::ALL.len()],
    /// Failed reloads in a row (0 after a success): the retry backs off with it.
    reload_failures: AtomicU32,
    /// Woken by a failed reload.
    reload_retry: tokio::sync::Notify,
    /// The AF_XDP listeners' counters, once they run (for /status and /metrics).
    xdp: std::sync::OnceLock<dns::xdp::XdpView>,
}

impl PacketHandler for State {
    #[inline]
    fn handle(&self, req: &[u8], peer: &Peer, q: &mut Query, out: &mut [u8]) -> Option<usize> {
        #[allow(
            clippy::disallowed_methods,
            reason = "query duration: the hot path runs on plain threads and measures real time"
        )]
        let t0 = std::time::Instant::now();
        let serving = self.serving.load();
        let Serving {
            loaded,
            snapshot,
            geo,
        } = &**serving;
        let gslb = GslbContext {
            model: &loaded.model,
            snapshot,
            geo,
            metrics: &self.metrics,
            slots: &loaded.gslb_slots,
        };
        let jar = self.cookies.as_deref();
        let (secrets, now) = match jar {
            Some(j) => (Some(j.secrets()), j.unix(t0)),
            None => (None, 0),
        };
        let a = dns::answer::handle_with(
            &loaded.model,
            &gslb,
            secrets.as_deref().map(|s| &**s),
            now,
            req,
            peer,
            q,
            out,
        )?;
        let mut len = a.len;
        if let Some(c) = a.cookie {
            self.metrics.cookie(c);
        }
        // Every datagram transport (UDP, and UDP over AF_XDP): their answers can be sent to a
        // forged source, so they are rate limited alike.
        if !peer.transport.is_stream()
            && let Some(rrl) = &self.rrl
        {
            if a.cookie == Some(crate::abuse::CookieResult::Valid) {
                self.metrics.rrl_exempt(RrlExempt::Cookie);
            } else {
                match rrl.check(peer.addr, q, &a, &loaded.model, t0) {
                    Verdict::Pass => {}
                    Verdict::Exempt => self.metrics.rrl_exempt(RrlExempt::Prefix),
                    Verdict::Limited(class, action) => {
                        self.metrics.rrl_limited(class, action);
                        if rrl.log.allow(t0).is_some() {
                            rrl_log(rrl, peer, q, &a, &loaded.model, action);
                        }
                        match action {
                            RrlAction::Dropped => return None,
                            RrlAction::Slipped => len = dns::answer::truncate(q, &a, out),
                            RrlAction::LogOnly => {}
                        }
                    }
                }
            }
        }
        let resp = &out[..len];
        if let Some(ecs) = q.edns.as_ref().and_then(|e| e.ecs.as_ref()) {
            self.metrics.ecs(ecs.family, a.scope);
        }
        self.metrics.query(
            loaded.zone_slots.get(a.zone),
            q.qtype,
            a.rcode,
            peer.transport,
            t0.elapsed(),
        );
        if self.opts.query_log_sample > 0 {
            sample_log(self.opts.query_log_sample, peer, q, resp);
        }
        Some(len)
    }

    fn conn_closed(&self, listener: Listener, reason: CloseReason, client: std::net::IpAddr) {
        self.metrics.conn_closed(listener, reason);
        self.conn_logs[listener.index()].closed(reason, client);
    }

    fn conn_opened(&self, listener: Listener, resumed: bool) {
        self.metrics.conn_opened(listener, resumed);
    }

    fn request_limited(&self, listener: Listener, reason: CloseReason, client: std::net::IpAddr) {
        self.metrics.request_limited(listener, reason);
        self.conn_logs[listener.index()].closed(reason, client);
    }

    fn accept_failed(&self, listener: Listener, err: &std::io::Error, backoff: Duration) {
        self.metrics.accept_failed(listener);
        self.conn_logs[listener.index()].accept_failed(err, backoff);
    }
}

/// The throttled log line of response rate limiting (at most one every 10 s; allocates).
#[cold]
fn rrl_log(
    rrl: &Rrl,
    peer: &Peer,
    q: &Query,
    a: &dns::answer::Answered,
    model: &Model,
    action: RrlAction,
) {
    let (class, name) = dns::rrl::key_text(q, a, model);
    let prefix = crate::net::masked(peer.addr, rrl.prefix_len(peer.addr));
    tracing::warn!(
        prefix = %format!("{prefix}/{}", rrl.prefix_len(peer.addr)),
        class = class.label(),
        name = %name,
        action = action.label(),
        "response rate limit: responses to this prefix are over the rate (more in gslbd_rrl_limited_total)"
    );
}

thread_local! {
    static QUERY_LOG_COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The sampled query log: one query in `every`, decoded off the answer bytes (allocation is
/// fine here, it happens only for the sampled query).
#[cold]
fn sample_log_inner(peer: &Peer, q: &Query, resp: &[u8]) {
    let Ok(msg) = hickory_proto::op::Message::from_vec(resp) else {
        return;
    };
    let name = msg
        .queries
        .first()
        .map(|x| x.name().to_string())
        .unwrap_or_default();
    let answer: Vec<String> = msg.answers.iter().map(|r| r.data.to_string()).collect();
    let ecs = q
        .edns
        .as_ref()
        .and_then(|e| e.ecs)
        .map(|e| format!("{}/{}", e.addr, e.source_prefix));
    tracing::info!(
        target: "gslbd::query",
        client = %peer.addr,
        ecs = ecs.as_deref().unwrap_or("-"),
        name = %name,
        qtype = q.qtype,
        rcode = %msg.metadata.response_code,
        transport = peer.transport.label(),
        answer = %answer.join(" "),
        "query"
    );
}

#[inline]
fn sample_log(every: u32, peer: &Peer, q: &Query, resp: &[u8]) {
    let n = QUERY_LOG_COUNT.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    if n.is_multiple_of(every) {
        sample_log_inner(peer, q, resp);
    }
}

/// Parses the `--rrl-exempt` list: prefixes (`192.0.2.0/24`, `2001:db8::/32`, bare
/// addresses), or `none` alone for no exemption.
pub fn parse_exempt(list: &[String]) -> Result<Vec<crate::net::Subnet>, String> {
    if list.iter().any(|s| s == "none") {
        return if list.len() == 1 {
            Ok(vec![])
        } else {
            Err("`none` cannot be combined with prefixes".into())
        };
    }
    list.iter().map(|s| crate::net::Subnet::parse(s)).collect()
}

/// Reads and validates the zones directory into a model (`config::load`).
pub fn load_model(dir: &Path) -> Result<Model, ConfigErrors> {
    config::load(dir)
}

impl State {
    /// The current model.
    pub fn model(&self) -> Arc<Loaded> {
        self.serving.load().loaded.clone()
    }

    fn aggregator_settings(&self) -> AggregatorSettings {
        AggregatorSettings {
            startup: self.opts.startup,
            state_dir: Some(self.state_dir.clone()),
            warm_max_age: self.opts.warm_max_age,
            strict_state: self.opts.strict_state,
            ..AggregatorSettings::default()
        }
    }

    /// Starts a probe runtime for `model` when its datacenters differ from the running
    /// one's (stopping that one first, so its state files carry over). Returns the new
    /// runtime's health generation, or `None` when the running one is kept.
    async fn sync_health(&self, model: &Model) -> Result<Option<u64>, String> {
        let mut guard = self.health.lock().await;
        if guard
            .as_ref()
            .is_some_and(|h| h.probes == model.datacenters.probes)
        {
            return Ok(None);
        }
        if let Some(old) = guard.take() {
            old.stop().await;
        }
        self.ready.store(false, Ordering::Relaxed);
        let generation = self.health_gen.fetch_add(1, Ordering::Relaxed) + 1;
        let rt = HealthRuntime::start(
            model.datacenters.plan.clone(),
            &model.datacenters.probes,
            self.aggregator_settings(),
            {
                let mut w = WorkerSettings {
                    max_in_flight: self.opts.max_probes_in_flight,
                    max_exec: self.opts.max_exec_checks,
                    ..WorkerSettings::default()
                };
                if let Some(seed) = self.opts.probe_seed {
                    w.seed = seed;
                }
                w
            },
            self.serving.health_sink(generation),
            self.metrics.clone(),
            self.events.clone(),
            self.cluster.as_deref(),
            self.resolver.subscribe(),
            self.stop.child(),
        )
        .await?;
        if !rt.problems.is_empty() {
            let now = SystemTime::now();
            if let Ok(mut list) = self.state_problems.lock() {
                list.extend(rt.problems.iter().map(|p| (now, p.clone())));
            }
        }
        *guard = Some(rt);
        Ok(Some(generation))
    }

    /// The aggregator's handle, when probes run.
    pub async fn health_handle(&self) -> Option<crate::health::aggregator::AggregatorHandle> {
        self.health.lock().await.as_ref().map(|h| h.handle.clone())
    }

    /// Hands an external verdict (pushed, feed, alert) to the running aggregator.
    pub(crate) async fn health_input(
        &self,
        update: crate::health::input::Update,
    ) -> Result<crate::health::input::Applied, crate::health::input::InputError> {
        let h = self
            .health_handle()
            .await
            .ok_or(crate::health::input::InputError::Stopped)?;
        let applied = h.input(update).await?;
        // Written at once, as admin states are: a crash must not forget a pushed "down".
        if applied.changed > 0 {
            let _ = h.persist().await;
        }
        Ok(applied)
    }

    /// Every health event from now on (for `/events`).
    pub(crate) fn subscribe_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::health::events::EventView> {
        self.events.subscribe()
    }

    /// How each health feed file is doing; `stale` as of now.
    pub(crate) fn feeds(&self) -> Vec<crate::health::feed::FeedStatus> {
        let now = crate::health::persist::unix_secs(SystemTime::now());
        let max_age = self.opts.health_feed_max_age.as_secs();
        let mut v = self.feeds.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for f in &mut v {
            f.stale = f
                .modified_unix
                .is_some_and(|m| now.saturating_sub(m) >= max_age);
        }
        v
    }

    fn set_feed_status(&self, index: usize, status: crate::health::feed::FeedStatus) {
        self.update_feed_status(index, |s| *s = status);
    }

    fn update_feed_status(
        &self,
        index: usize,
        f: impl FnOnce(&mut crate::health::feed::FeedStatus),
    ) {
        let mut v = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = v.get_mut(index) {
            f(s);
        }
    }

    /// Re-reads the zones and GeoIP files; on success swaps the new model in, on failure keeps
    /// the old one serving and reports every error (log, /status, metric).
    pub async fn reload(&self) -> Result<(), ConfigErrors> {
        let _one = self.reload_lock.lock().await;
        let result = self.try_reload().await;
        match &result {
            Ok(()) => {
                let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                self.last_reload.store(Arc::new(ReloadReport {
                    at: SystemTime::now(),
                    ok: true,
                    errors: vec![],
                }));
                self.metrics.reload(true);
                self.reload_failures.store(0, Ordering::Relaxed);
                tracing::info!(
                    generation = g,
                    zones = self.model().model.zones.len(),
                    "reloaded"
                );
            }
            Err(e) => {
                let failures = self.reload_failures.fetch_add(1, Ordering::Relaxed) + 1;
                for err in &e.0 {
                    tracing::error!(
                        "reload failed, still serving the previous configuration: {err}"
                    );
                }
                tracing::warn!(
                    failures_in_a_row = failures,
                    retry_in_secs = retry_delay(failures).as_secs(),
                    "the failed reload will be retried"
                );
                self.reload_retry.notify_one();
                self.last_reload.store(Arc::new(ReloadReport {
                    at: SystemTime::now(),
                    ok: false,
                    errors: e.0.iter().map(ToString::to_string).collect(),
                }));
                self.metrics.reload(false);
            }
        }
        result
    }

    /// Reads the certificate and key files again: new handshakes get the new certificate,
    /// established connections keep theirs. A file that does not load keeps the current
    /// certificate serving and reports the error (log, /status, metric). `Ok(true)` = changed.
    pub async fn reload_certs(&self) -> Result<bool, String> {
        let Some(store) = self.certs.clone() else {
            return Ok(false);
        };
        let result = tokio::task::spawn_blocking(move || store.reload().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(format!("certificate reload task failed: {e}")));
        let now = SystemTime::now();
        let prev = self.cert_report.load_full();
        let report = match &result {
            Ok(changed) => {
                if *changed {
                    self.metrics.cert_reload(true);
                    tracing::info!("TLS certificate reloaded; new connections use it");
                }
                CertReport {
                    loaded_at: if *changed { now } else { prev.loaded_at },
                    checked_at: now,
                    ok: true,
                    error: None,
                }
            }
            Err(e) => {
                self.metrics.cert_reload(false);
                tracing::error!(
                    "TLS certificate reload failed, still serving the previous certificate: {e}"
                );
                CertReport {
                    loaded_at: prev.loaded_at,
                    checked_at: now,
                    ok: false,
                    error: Some(e.clone()),
                }
            }
        };
        self.cert_report.store(Arc::new(report));
        result
    }

    /// The certificate and key files of the encrypted listeners, when they run.
    pub(crate) fn cert_paths(&self) -> Option<(PathBuf, PathBuf)> {
        self.certs.as_ref().map(|c| {
            let (a, b) = c.paths();
            (a.to_path_buf(), b.to_path_buf())
        })
    }

    async fn try_reload(&self) -> Result<(), ConfigErrors> {
        let dir = self.opts.zones_dir.clone();
        let paths = self.opts.geoip_paths();
        let env = self.opts.dnssec.clone();
        // File reading, validation and signing stay off the runtime's worker threads.
        let (model, geo) = tokio::task::spawn_blocking(move || {
            (
                config::load_signed_with_specs(&dir, &env, heap::trim).map(|(model, _)| model),
                GeoDb::open(&paths),
            )
        })
        .await
        .map_err(|e| one_error(&self.opts.zones_dir, format!("reload task failed: {e}")))?;
        let model = model?;
        let geo = geo.map_err(|e| one_error(&self.opts.zones_dir, format!("GeoIP: {e}")))?;
        let loaded = Arc::new(Loaded::new(model, &self.metrics));
        let health_gen = self
            .sync_health(&loaded.model)
            .await
            .map_err(|e| one_error(&self.opts.zones_dir, e))?;
        let targets = loaded.model.resolver_targets();
        if let Err(e) = self.serving.swap_model(loaded, Arc::new(geo), health_gen) {
            tracing::error!("latency map dropped: it does not fit the new configuration: {e}");
        }
        self.resolver.set_targets(targets);
        // The old model is freed when the last query holding it is done (within a batch);
        // then its memory goes back to the system, so reloads do not grow the resident size.
        // (The specs of the new model were freed before it was published: a reload is not
        // in a hurry, and its peak stays lower.)
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tokio::task::spawn_blocking(heap::trim).await;
        });
        Ok(())
    }
}

/// The wait before retrying after `failures` failed reloads in a row: 1 s, doubling, at most
/// 5 minutes. A failure may be passing (out of descriptors, a file being written, a GeoIP
/// file being replaced), and nothing else would try again until the next change.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// Retries failed reloads with backoff until one succeeds (or a reload from elsewhere does).
fn spawn_reload_retry(state: Arc<State>, stop: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                () = state.reload_retry.notified() => {}
            }
            let failures = state.reload_failures.load(Ordering::Relaxed);
            if failures == 0 {
                continue;
            }
            tokio::select! {
                _ = stop.stopped() => return,
                () = tokio::time::sleep(retry_delay(failures)) => {}
            }
            if state.reload_failures.load(Ordering::Relaxed) == 0 {
                continue; // a reload from elsewhere succeeded meanwhile
            }
            tracing::info!(attempt = failures + 1, "retrying the failed reload");
            let _ = state.reload().await;
        }
    })
}

fn one_error(file: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![config::ConfigError {
        file: file.to_path_buf(),
        path: String::new(),
        message,
    }])
}

/// A started server.
pub struct Running {
    /// The server's state.
    pub state: Arc<State>,
    /// Bound DNS addresses (ephemeral ports resolved).
    pub dns_addrs: Vec<SocketAddr>,
    /// Bound API address, when the API runs.
    pub api_addr: Option<SocketAddr>,
    /// Bound DNS over TLS addresses.
    pub tls_addrs: Vec<SocketAddr>,
    /// Bound DNS over HTTPS addresses.
    pub https_addrs: Vec<SocketAddr>,
    /// Bound DNS over QUIC addresses.
    pub quic_addrs: Vec<SocketAddr>,
    listeners: Listeners,
    stop: Shutdown,
    api_stop: Shutdown,
    api_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    background_stop: Shutdown,
    background: Vec<tokio::task::JoinHandle<()>>,
    resolver_stop: Shutdown,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The zones directory does not validate.
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
    /// A GeoIP file cannot be used.
    #[error("GeoIP: {0}")]
    Geo(crate::geo::GeoError),
    /// The probe runtime could not start (its state files).
    #[error("health checks: {0}")]
    Health(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address(es).
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster options cannot be used (a TLS file).
    #[error("cluster: {0}")]
    Cluster(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The certificate or key of the encrypted listeners cannot be used.
    #[error("TLS certificate: {0}")]
    Tls(CertError),
    /// Encrypted listeners were asked for without a certificate, or the other way round.
    #[error("{0}")]
    Usage(String),
    /// The cookie secrets cannot be read or made.
    #[error("{0}")]
    Cookies(String),
    /// The state directory cannot be created.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Running {
    /// Stops accepting, answers in-flight TCP queries (at most `shutdown_grace`), stops the
    /// API, then stops the probes (the aggregator writes its state files).
    pub async fn shutdown(self) {
        let grace = self.state.opts.shutdown_grace;
        self.listeners.stop(grace).await;
        self.api_stop.stop();
        if let Some(t) = self.api_task {
            let _ = tokio::time::timeout(grace, t).await;
        }
        self.background_stop.stop();
        for t in self.background {
            let _ = tokio::time::timeout(grace, t).await;
        }
        self.resolver_stop.stop();
        let _ = tokio::time::timeout(grace, self.state.resolver.join()).await;
        if let Some(h) = self.state.health.lock().await.take() {
            h.stop().await;
        }
        // Leaving revokes the lease: the other nodes take this node's targets at once.
        if let Some(c) = &self.state.cluster {
            c.stop().await;
        }
        self.stop.stop();
        if self.state.private_state_dir {
            let _ = std::fs::remove_dir_all(&self.state.state_dir);
        }
    }
}

/// Loads the configuration and starts listening. Must run inside a tokio runtime.
pub async fn start(opts: ServeOptions) -> Result<Running, StartError> {
    let certs = match &opts.tls {
        Some(t) => {
            if t.listen_tls.is_empty() && t.listen_https.is_empty() && t.listen_quic.is_empty() {
                return Err(StartError::Usage(
                    "a TLS certificate was given but no --listen-tls, --listen-https or \
                     --listen-quic address"
                        .into(),
                ));
            }
            Some(CertStore::load(&t.cert, &t.key).map_err(StartError::Tls)?)
        }
        None => None,
    };
    // Off the runtime's threads: reading waits for files still being written, and signing.
    let dir = opts.zones_dir.clone();
    let env = opts.dnssec.clone();
    let (model, specs) =
        tokio::task::spawn_blocking(move || config::load_signed_with_specs(&dir, &env, || {}))
            .await
            .map_err(|e| {
                StartError::Config(one_error(&opts.zones_dir, format!("load task failed: {e}")))
            })?
            .map_err(StartError::Config)?;
    // The specs are freed, and what reading the files took beyond the model goes back to the
    // system, beside the rest of the start: the first answer does not wait for it.
    tokio::task::spawn_blocking(move || {
        drop(specs);
        heap::trim();
    });
    let geo = GeoDb::open(&opts.geoip_paths()).map_err(StartError::Geo)?;
    let (state_dir, private_state_dir) = match &opts.state_dir {
        Some(d) => (d.clone(), false),
        None => {
            static N: AtomicU64 = AtomicU64::new(0);
            let d = std::env::temp_dir().join(format!(
                "gslbd-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            (d, true)
        }
    };
    std::fs::create_dir_all(&state_dir).map_err(|source| StartError::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    let metrics = Arc::new(Metrics::new());
    let loaded = Arc::new(Loaded::new(model, &metrics));
    let all_up = Arc::new(crate::health::Snapshot::all_up(
        loaded.model.datacenters.list.len(),
    ));
    let serving = Arc::new(Publisher::new(loaded.clone(), Arc::new(geo), 0, all_up));
    let stop = Shutdown::new();
    let cluster = match &opts.cluster {
        Some(c) => Some(Arc::new(
            crate::cluster::Cluster::start(c.clone(), stop.child())
                .map_err(|e| StartError::Cluster(e.to_string()))?,
        )),
        None => None,
    };
    #[allow(
        clippy::disallowed_methods,
        reason = "the origin of the query path's clock, which runs on plain threads"
    )]
    let clock_base = std::time::Instant::now();
    let cookies = if opts.cookies {
        let jar = guard::CookieJar::new(opts.cookie_secret_file.as_deref(), clock_base)
            .map_err(StartError::Cookies)?;
        Some(Arc::new(jar))
    } else {
        None
    };
    let resolver_stop = stop.child();
    let resolver = {
        let publisher = Arc::downgrade(&serving);
        Resolver::start(
            opts.resolver.clone(),
            loaded.model.resolver_targets(),
            Arc::new(move |names| {
                if let Some(p) = publisher.upgrade() {
                    p.set_resolved(names);
                }
            }),
            resolver_stop.clone(),
        )
    };
    let state = Arc::new(State {
        serving,
        metrics,
        generation: AtomicU64::new(1),
        last_reload: ArcSwap::from_pointee(ReloadReport {
            at: SystemTime::now(),
            ok: true,
            errors: vec![],
        }),
        started: SystemTime::now(),
        ready: AtomicBool::new(false),
        health: tokio::sync::Mutex::new(None),
        resolver,
        health_gen: AtomicU64::new(0),
        state_problems: std::sync::Mutex::new(Vec::new()),
        events: tokio::sync::broadcast::channel(crate::health::events::BROADCAST_CAPACITY).0,
        feeds: std::sync::Mutex::new(
            opts.health_feeds
                .iter()
                .map(|p| crate::health::feed::FeedStatus {
                    path: p.display().to_string(),
                    error: Some("not read yet".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        reload_lock: tokio::sync::Mutex::new(()),
        opts: opts.clone(),
        state_dir,
        private_state_dir,
        stop: stop.clone(),
        certs: certs.clone(),
        cert_report: ArcSwap::from_pointee(CertReport {
            loaded_at: SystemTime::now(),
            checked_at: SystemTime::now(),
            ok: true,
            error: None,
        }),
        cluster,
        rrl: Rrl::new(&opts.rrl, clock_base),
        cookies,
        conn_logs: Listener::ALL.map(ConnLog::new),
        reload_failures: AtomicU32::new(0),
        reload_retry: tokio::sync::Notify::new(),
        xdp: std::sync::OnceLock::new(),
    });
    let health_gen = state
        .sync_health(&loaded.model)
        .await
        .map_err(StartError::Health)?;
    let geo = state.serving.load().geo.clone();
    // The first runtime's snapshot replaces the all-up placeholder (same model, same ids).
    let _ = state.serving.swap_model(loaded, geo, health_gen);

    let cfg = ListenConfig {
        addrs: opts.listen.clone(),
        udp_threads: opts.udp_threads,
        tcp: StreamLimits {
            idle_timeout: opts.tcp_idle_timeout,
            lifetime: opts.tcp_lifetime,
            max_queries: opts.tcp_max_queries,
            read_timeout: opts.tcp_read_timeout,
            write_timeout: opts.tcp_write_timeout,
            max_request: usize::from(u16::MAX),
        },
        best_effort: opts.listen_best_effort,
        encrypted: opts
            .tls
            .as_ref()
            .zip(certs)
            .map(|(t, certs)| EncryptedConfig {
                tls: t.listen_tls.clone(),
                https: t.listen_https.clone(),
                quic: t.listen_quic.clone(),
                certs,
                limits: t.limits,
            }),
    };
    let nofile = rlimit::nofile();
    let tcp_max = match opts.tcp_max_connections {
        0 => rlimit::auto_tcp_limit(
            nofile,
            opts.max_probes_in_flight,
            opts.api_limits.max_connections,
        ),
        n => n,
    };
    tracing::info!(
        max_connections = tcp_max,
        max_per_client = opts.tcp_max_per_client,
        descriptor_limit = nofile.unwrap_or(0),
        "tcp connection limits"
    );
    let tcp_table = ConnTable::new(ConnLimits {
        max_total: tcp_max,
        max_per_client: opts.tcp_max_per_client,
    });
    state
        .metrics
        .register_conns(Listener::DnsTcp, tcp_table.clone());
    let mut listeners =
        dns::listen::start(&cfg, state.clone(), tcp_table, stop.child()).map_err(|e| {
            StartError::Bind {
                addr: listen_list(&opts),
                source: e,
            }
        })?;
    for (l, t) in &listeners.tables {
        state.metrics.register_conns(*l, t.clone());
    }
    if let Err(e) = listeners
        .start_xdp(&opts.xdp, opts.xdp_mode, state.clone())
        .await
    {
        listeners.stop(opts.shutdown_grace).await;
        let list: Vec<String> = opts.xdp.iter().map(ToString::to_string).collect();
        return Err(StartError::Bind {
            addr: format!("AF_XDP {}", list.join(", ")),
            source: e,
        });
    }
    let _ = state.xdp.set(listeners.xdp_view());
    let dns_addrs = listeners.bound.clone();

    let api_stop = stop.child();
    let (api_addr, api_task) = match opts.api {
        Some(addr) => {
            let ctx = crate::api::ApiContext::new(
                state.metrics.clone(),
                Arc::new(backend::Backend {
                    state: state.clone(),
                }),
                opts.api_token.clone(),
            )
            .with_limits(opts.api_limits)
            .with_alerts(crate::api::alertmanager::AlertSettings {
                label: opts.alert_label.clone(),
                ttl: opts.alert_ttl,
            });
            let (bound, task) = crate::api::serve(addr, ctx, api_stop.clone())
                .await
                .map_err(|e| StartError::Bind {
                    addr: addr.to_string(),
                    source: e,
                })?;
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    let background_stop = stop.child();
    let mut background = vec![
        tokio::spawn(backend::track_readiness(
            state.clone(),
            background_stop.clone(),
        )),
        spawn_reload_retry(state.clone(), background_stop.clone()),
        tokio::spawn(dnssec_maintenance(state.clone(), background_stop.clone())),
    ];
    if let Some(jar) = &state.cookies {
        background.push(jar.clone().spawn(background_stop.clone()));
    }
    if let Some(path) = &opts.latency_map {
        background.push(latency_map::spawn(
            state.clone(),
            path.clone(),
            background_stop.clone(),
        ));
    }
    for (i, path) in opts.health_feeds.iter().enumerate() {
        background.push(feed::spawn(
            state.clone(),
            i,
            path.clone(),
            opts.health_feed_max_age,
            background_stop.clone(),
        ));
    }
    background.extend(notify::spawn(
        &opts.notify,
        &state.events,
        state.metrics.clone(),
        background_stop.clone(),
    ));
    if opts.watch {
        background.push(watch::spawn(
            state.clone(),
            opts.zones_dir.clone(),
            opts.geoip_paths(),
            background_stop.clone(),
        ));
        if let Some((cert, key)) = state.cert_paths() {
            background.push(watch::spawn_certs(
                state.clone(),
                cert,
                key,
                background_stop.clone(),
            ));
        }
    }
    Ok(Running {
        state,
        dns_addrs,
        api_addr,
        tls_addrs: listeners.tls.clone(),
        https_addrs: listeners.https.clone(),
        quic_addrs: listeners.quic.clone(),
        listeners,
        stop,
        api_stop,
        api_task,
        background_stop,
        background,
        resolver_stop,
    })
}

/// Every listen address asked for, for a bind error.
fn listen_list(opts: &ServeOptions) -> String {
    let mut all: Vec<String> = opts.listen.iter().map(ToString::to_string).collect();
    if let Some(t) = &opts.tls {
        for (v, what) in [
            (&t.listen_tls, "tls"),
            (&t.listen_https, "https"),
            (&t.listen_quic, "quic"),
        ] {
            all.extend(v.iter().map(|a| format!("{a} ({what})")));
        }
    }
    all.join(", ")
}

/// Re-signs the static RRsets of every signed zone before their signatures expire, and
/// alarms (error log) when the serving signatures get close to expiry anyway. Runs under the
/// background stop node; the signing itself runs on a blocking thread.
async fn dnssec_maintenance(state: Arc<State>, stop: Shutdown) {
    // Zones are signed when they are loaded: the first check is one interval later.
    let mut wait = Duration::from_secs(30);
    loop {
        let loaded = state.model();
        let signers: Vec<Arc<crate::dnssec::ZoneSigner>> = loaded
            .model
            .zones
            .iter()
            .filter_map(|z| z.dnssec.clone())
            .collect();
        drop(loaded);
        for s in &signers {
            wait = wait.min(s.check_interval());
        }
        tokio::select! {
            _ = stop.stopped() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        for s in signers {
            let now = s.clock.now();
            let st = s.statics();
            let (refresh_at, expires) = (st.refresh_at, st.expires);
            drop(st);
            if now < refresh_at {
                continue;
            }
            let zone = s.origin.clone();
            let done = tokio::task::spawn_blocking(move || s.maintain(s.clock.now())).await;
            match done {
                Ok(Ok(_)) => tracing::info!(%zone, "re-signed static RRsets"),
                Ok(Err(e)) => tracing::error!(%zone, error = %e, "re-signing failed"),
                Err(e) => tracing::error!(%zone, error = %e, "re-signing task failed"),
            }
            if expires.saturating_sub(now) < (expires - refresh_at) / 2 {
                tracing::error!(
                    %zone,
                    expires_in_secs = expires.saturating_sub(now),
                    "DNSSEC signatures close to expiry: re-signing is late"
                );
            }
        }
        wait = Duration::from_secs(30);
    }
}

/// `gslbd serve`: runs until SIGTERM/SIGINT; SIGHUP reloads.
pub async fn run(opts: ServeOptions) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |k| signal(k).map_err(StartError::Signals);
    // Signal handlers first: a SIGHUP during start-up must not kill the process.
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    // Connections are descriptors: take every one the hard limit allows.
    match rlimit::raise_nofile() {
        Ok((before, after)) if before != after => {
            tracing::info!(
                before,
                after,
                "raised the open file limit to the hard limit"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    let running = start(opts).await?;
    for a in &running.dns_addrs {
        tracing::info!(%a, "dns listening (udp, tcp)");
    }
    for (addrs, what) in [
        (&running.tls_addrs, "dns over tls listening"),
        (
            &running.https_addrs,
            "dns over https listening (https://ADDR/dns-query)",
        ),
        (&running.quic_addrs, "dns over quic listening"),
    ] {
        for a in addrs {
            tracing::info!(%a, "{what}");
        }
    }
    if let Some(a) = running.api_addr {
        tracing::info!(%a, "api listening (http)");
    }
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = running.state.reload().await;
                let _ = running.state.reload_certs().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
