//! The running server: loads the zones, binds the sockets, reloads on SIGHUP and stops on
//! SIGTERM/SIGINT.
//!
//! ```text
//! load_dir -> Model::build --swap--> State.model (ArcSwap) <--load-- UDP/TCP handler
//! ```
//! A reload builds a complete new model off the query path and swaps it in with one atomic
//! store; a failed reload leaves the old model in place and reports every error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::config::{self, ConfigErrors};
use crate::dns::gslb::GslbContext;
use crate::dns::server::{ListenConfig, Listeners, PacketHandler};
use crate::dns::{self, Client, Query};
use crate::geo::GeoDb;
use crate::health::Snapshot;
use crate::model::Model;

/// What `gslbd serve` is told on the command line.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub zones_dir: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub geoip: Vec<PathBuf>,
    pub udp_threads: usize,
    pub tcp_max_connections: usize,
    pub tcp_idle_timeout: Duration,
}

impl ServeOptions {
    pub fn new(zones_dir: impl Into<PathBuf>, listen: Vec<SocketAddr>) -> Self {
        ServeOptions {
            zones_dir: zones_dir.into(),
            listen,
            geoip: vec![],
            udp_threads: 0,
            tcp_max_connections: 512,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Result of the last reload, for logs and the status API.
#[derive(Clone, Debug)]
pub struct ReloadReport {
    pub at: SystemTime,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// Everything the query path reads, each part swappable on its own.
pub struct State {
    pub model: ArcSwap<Model>,
    /// Health of every datacenter, published by the aggregator (all up until it runs).
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub geo: ArcSwap<GeoDb>,
    pub generation: AtomicU64,
    pub last_reload: ArcSwap<ReloadReport>,
    opts: ServeOptions,
}

impl PacketHandler for State {
    #[inline]
    fn handle(&self, req: &[u8], client: &Client, q: &mut Query, out: &mut [u8]) -> Option<usize> {
        let model = self.model.load();
        let gslb = GslbContext {
            model: &model,
            snapshot: &self.snapshot,
            geo: &self.geo,
        };
        dns::handle(&model, &gslb, req, client, q, out)
    }
}

/// Reads and validates the zones directory into a model.
pub fn load_model(dir: &std::path::Path) -> Result<Model, ConfigErrors> {
    let cfg = config::load_dir(dir)?;
    Model::build(&cfg)
}

impl State {
    /// Re-reads the zones; on success swaps the new model in, on failure keeps the old one.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        match load_model(&self.opts.zones_dir) {
            Ok(m) => {
                let zones = m.zones.len();
                self.model.store(Arc::new(m));
                let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                self.last_reload.store(Arc::new(ReloadReport {
                    at: SystemTime::now(),
                    ok: true,
                    errors: vec![],
                }));
                tracing::info!(generation = g, zones, "reloaded");
                Ok(())
            }
            Err(e) => {
                for err in &e.0 {
                    tracing::error!("reload failed: {err}");
                }
                self.last_reload.store(Arc::new(ReloadReport {
                    at: SystemTime::now(),
                    ok: false,
                    errors: e.0.iter().map(ToString::to_string).collect(),
                }));
                Err(e)
            }
        }
    }
}

/// A started server.
pub struct Running {
    pub state: Arc<State>,
    /// Bound DNS addresses (ephemeral ports resolved).
    pub dns_addrs: Vec<SocketAddr>,
    listeners: Listeners,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
    #[error("GeoIP: {0}")]
    Geo(crate::geo::GeoError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl Running {
    /// Stops listening, lets in-flight TCP queries finish (at most `grace`).
    pub async fn shutdown(self, grace: Duration) {
        self.listeners.stop(grace).await;
    }
}

/// Loads the configuration and starts listening. Must run inside a tokio runtime.
pub async fn start(opts: ServeOptions) -> Result<Running, StartError> {
    let model = load_model(&opts.zones_dir).map_err(StartError::Config)?;
    let geo_paths = if opts.geoip.is_empty() {
        crate::geo::default_paths()
    } else {
        opts.geoip.clone()
    };
    let geo = GeoDb::open(&geo_paths).map_err(StartError::Geo)?;
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::all_up(
        model.datacenters.list.len(),
    )));
    let state = Arc::new(State {
        model: ArcSwap::from_pointee(model),
        snapshot,
        geo: ArcSwap::from_pointee(geo),
        generation: AtomicU64::new(1),
        last_reload: ArcSwap::from_pointee(ReloadReport {
            at: SystemTime::now(),
            ok: true,
            errors: vec![],
        }),
        opts: opts.clone(),
    });
    let cfg = ListenConfig {
        addrs: opts.listen.clone(),
        udp_threads: opts.udp_threads,
        tcp_max_connections: opts.tcp_max_connections,
        tcp_idle_timeout: opts.tcp_idle_timeout,
    };
    let listeners = dns::server::start(&cfg, state.clone()).map_err(|e| StartError::Bind {
        addr: format!("{:?}", opts.listen),
        source: e,
    })?;
    let dns_addrs = listeners.bound.clone();
    Ok(Running {
        state,
        dns_addrs,
        listeners,
    })
}

/// `gslbd serve`: runs until SIGTERM/SIGINT; SIGHUP reloads.
pub async fn run(opts: ServeOptions) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};
    let running = start(opts).await?;
    for a in &running.dns_addrs {
        tracing::info!(%a, "listening (udp, tcp)");
    }
    let sig = |k| {
        signal(k).map_err(|e| StartError::Bind {
            addr: "signals".into(),
            source: e,
        })
    };
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = running.state.reload();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    running.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
