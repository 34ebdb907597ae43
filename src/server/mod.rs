//! The running server: loads the zones, binds the sockets, runs the probes and the API,
//! reloads on SIGHUP or a file change, and stops cleanly on SIGTERM/SIGINT.
//!
//! ```text
//! config::load -> Loaded{Model, metric slots} --+
//! HealthRuntime (probes -> aggregator) ---------+--> Publisher: ArcSwap<Serving> <--load--
//! latency map poller, GeoIP files --------------+        (one pair per query)   UDP/TCP handler
//! ```
//! A reload builds a complete new model off the query path and publishes it, with the health
//! of the same datacenter ids, in one atomic store (`publish.rs`); a failed reload leaves the
//! old model in place and reports every error. Every task and thread runs under one stop tree
//! (`crate::shutdown`): `Running::shutdown` stops and joins each part in order.

mod backend;
pub(crate) mod health;
mod latency_map;
pub mod publish;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::config::{self, ConfigErrors};
use crate::dns::wire::response_rcode;
use crate::dns::{
    self, CertError, CertStore, EncryptedConfig, EncryptedLimits, ListenConfig, Listeners,
    PacketHandler, Peer, Query,
};
use crate::geo::GeoDb;
use crate::gslb::GslbContext;
use crate::health::aggregator::{AggregatorSettings, Startup};
use crate::metrics::{GslbSlots, Metrics, PoolLabels, ZoneSlots};
use crate::model::Model;
use crate::net::{ConnEvent, Transport};
use crate::probe::WorkerSettings;
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
    /// Most TCP connections at once.
    pub tcp_max_connections: usize,
    /// Idle TCP connections are closed after this long.
    pub tcp_idle_timeout: Duration,
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
    /// The encrypted listeners (DoT, DoH, DoQ) and their certificate; `None` = none.
    pub tls: Option<TlsOptions>,
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

/// Parses a duration as the zone files write it (`500ms`, `5s`, `2m`, `1h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::walk::parse_duration(s)
}

impl ServeOptions {
    /// Options with the defaults, serving `zones_dir` on `listen`.
    pub fn new(zones_dir: impl Into<PathBuf>, listen: Vec<SocketAddr>) -> Self {
        ServeOptions {
            zones_dir: zones_dir.into(),
            listen,
            geoip: vec![],
            udp_threads: 0,
            tcp_max_connections: 512,
            tcp_idle_timeout: Duration::from_secs(10),
            api: None,
            api_token: None,
            state_dir: None,
            startup: Startup::AssumeUp,
            warm_max_age: Duration::from_secs(300),
            watch: false,
            max_probes_in_flight: 256,
            shutdown_grace: Duration::from_secs(5),
            query_log_sample: 0,
            listen_best_effort: false,
            latency_map: None,
            tls: None,
        }
    }

    fn geoip_paths(&self) -> Vec<PathBuf> {
        if self.geoip.is_empty() {
            crate::geo::default_paths()
        } else {
            self.geoip.clone()
        }
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
    /// Generation of the newest probe runtime (see `publish`).
    health_gen: AtomicU64,
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
        let a = dns::handle(&loaded.model, &gslb, req, peer, q, out)?;
        let resp = &out[..a.len];
        if let Some(ecs) = q.edns.as_ref().and_then(|e| e.ecs.as_ref()) {
            self.metrics.ecs(ecs.family, a.scope);
        }
        self.metrics.query(
            loaded.zone_slots.get(a.zone),
            q.qtype,
            response_rcode(resp, q),
            peer.transport,
            t0.elapsed(),
        );
        if self.opts.query_log_sample > 0 {
            sample_log(self.opts.query_log_sample, peer, q, resp);
        }
        Some(a.len)
    }

    fn conn_event(&self, transport: Transport, event: ConnEvent) {
        self.metrics.conn_event(transport, event);
    }
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
            WorkerSettings {
                max_in_flight: self.opts.max_probes_in_flight,
                ..WorkerSettings::default()
            },
            self.serving.health_sink(generation),
            self.metrics.clone(),
            self.stop.child(),
        )?;
        *guard = Some(rt);
        Ok(Some(generation))
    }

    /// The aggregator's handle, when probes run.
    pub async fn health_handle(&self) -> Option<crate::health::aggregator::AggregatorHandle> {
        self.health.lock().await.as_ref().map(|h| h.handle.clone())
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
                tracing::info!(
                    generation = g,
                    zones = self.model().model.zones.len(),
                    "reloaded"
                );
            }
            Err(e) => {
                for err in &e.0 {
                    tracing::error!(
                        "reload failed, still serving the previous configuration: {err}"
                    );
                }
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
        // File reading and validation stay off the runtime's worker threads.
        let (model, geo) =
            tokio::task::spawn_blocking(move || (load_model(&dir), GeoDb::open(&paths)))
                .await
                .map_err(|e| one_error(&self.opts.zones_dir, format!("reload task failed: {e}")))?;
        let model = model?;
        let geo = geo.map_err(|e| one_error(&self.opts.zones_dir, format!("GeoIP: {e}")))?;
        let loaded = Arc::new(Loaded::new(model, &self.metrics));
        let health_gen = self
            .sync_health(&loaded.model)
            .await
            .map_err(|e| one_error(&self.opts.zones_dir, e))?;
        if let Err(e) = self.serving.swap_model(loaded, Arc::new(geo), health_gen) {
            tracing::error!("latency map dropped: it does not fit the new configuration: {e}");
        }
        Ok(())
    }
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
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The certificate or key of the encrypted listeners cannot be used.
    #[error("TLS certificate: {0}")]
    Tls(CertError),
    /// Encrypted listeners were asked for without a certificate, or the other way round.
    #[error("{0}")]
    Usage(String),
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
        if let Some(h) = self.state.health.lock().await.take() {
            h.stop().await;
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
    let model = load_model(&opts.zones_dir).map_err(StartError::Config)?;
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
        health_gen: AtomicU64::new(0),
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
        tcp_max_connections: opts.tcp_max_connections,
        tcp_idle_timeout: opts.tcp_idle_timeout,
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
    let listeners =
        dns::listen::start(&cfg, state.clone(), stop.child()).map_err(|e| StartError::Bind {
            addr: listen_list(&opts),
            source: e,
        })?;
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
            );
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
    let mut background = vec![tokio::spawn(backend::track_readiness(
        state.clone(),
        background_stop.clone(),
    ))];
    if let Some(path) = &opts.latency_map {
        background.push(latency_map::spawn(
            state.clone(),
            path.clone(),
            background_stop.clone(),
        ));
    }
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

/// `gslbd serve`: runs until SIGTERM/SIGINT; SIGHUP reloads.
pub async fn run(opts: ServeOptions) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |k| signal(k).map_err(StartError::Signals);
    // Signal handlers first: a SIGHUP during start-up must not kill the process.
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
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
