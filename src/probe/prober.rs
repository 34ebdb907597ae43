//! Running one probe of one target: the per-target state a check kind needs (an HTTP client or
//! a TLS configuration, built once; the bound on `exec` commands) and the dispatch to the
//! kind's probe function.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::exec::DEFAULT_MAX_EXEC;
use super::http::{self, ClientKey};
use super::outcome::{ProbeOutcome, ProbeResult};
use super::plan::{ProbeSet, Target};
use super::spec::CheckKind;
use super::{dns, exec, icmp, tcp, tls};
use crate::mix::mix64;

/// What a probe client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    /// The HTTP clients (TLS initialisation).
    #[error("building the HTTP probe client: {0}")]
    Http(#[from] reqwest::Error),
    /// The TLS configuration of `tls` checks (the system's certificate store).
    #[error("building the TLS probe configuration: {0}")]
    Tls(#[from] tokio_rustls::rustls::Error),
}

/// What one target needs to be probed, built once.
enum Runner {
    /// `reqwest::Client` is an `Arc` inside: targets with the same settings share one.
    Http(reqwest::Client),
    Tcp,
    Dns,
    /// One connector per verify setting, shared.
    Tls(TlsConnector),
    Exec,
    Icmp,
}

/// Runs probes for the targets of one [`ProbeSet`] (or of targets added at run time).
pub struct Prober {
    runners: FxHashMap<u32, Runner>,
    /// Bounds `exec` commands running at once.
    exec_slots: Arc<Semaphore>,
    /// Query ids and ICMP sequence numbers: unpredictable, never repeated soon.
    counter: AtomicU64,
    seed: u64,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Runner::Http(_) => "Http",
            Runner::Tcp => "Tcp",
            Runner::Dns => "Dns",
            Runner::Tls(_) => "Tls",
            Runner::Exec => "Exec",
            Runner::Icmp => "Icmp",
        })
    }
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("runners", &self.runners)
            .finish_non_exhaustive()
    }
}

impl Prober {
    /// Builds what every target of `set` needs, with the default bound on `exec` commands.
    pub fn new(set: &ProbeSet) -> Result<Prober, ProberError> {
        Prober::with_max_exec(set, DEFAULT_MAX_EXEC)
    }

    /// [`Prober::new`] running at most `max_exec` `exec` commands at once.
    pub fn with_max_exec(set: &ProbeSet, max_exec: usize) -> Result<Prober, ProberError> {
        Prober::with_options(set, max_exec, None)
    }

    /// [`Prober::with_max_exec`], naming `node` in the User-Agent of `http` checks
    /// (`gslbd-probe/VERSION (node NAME)`), so a target's logs tell which cluster node probed.
    pub fn with_options(
        set: &ProbeSet,
        max_exec: usize,
        node: Option<&str>,
    ) -> Result<Prober, ProberError> {
        Prober::for_targets_as(&set.targets, max_exec, node)
    }

    /// What `targets` need (a hostname datacenter's new addresses), with the bound on `exec`.
    pub(crate) fn for_targets(targets: &[Target], max_exec: usize) -> Result<Prober, ProberError> {
        Prober::for_targets_as(targets, max_exec, None)
    }

    /// [`Prober::for_targets`], naming `node` (a cluster node) in the User-Agent.
    fn for_targets_as(
        targets: &[Target],
        max_exec: usize,
        node: Option<&str>,
    ) -> Result<Prober, ProberError> {
        let agent = match node {
            Some(n) => format!("gslbd-probe/{} (node {n})", env!("CARGO_PKG_VERSION")),
            None => concat!("gslbd-probe/", env!("CARGO_PKG_VERSION")).to_string(),
        };
        let mut built: HashMap<ClientKey, reqwest::Client> = HashMap::new();
        let mut tls_built: HashMap<bool, TlsConnector> = HashMap::new();
        let mut runners = FxHashMap::default();
        for t in targets {
            let runner = match &t.check.kind {
                CheckKind::Http(h) => {
                    let key = ClientKey::of(h, t.addr);
                    let client = match built.get(&key) {
                        Some(c) => c.clone(),
                        None => {
                            let c = key.build(&agent)?;
                            built.insert(key, c.clone());
                            c
                        }
                    };
                    Runner::Http(client)
                }
                CheckKind::Tls(c) => {
                    let conn = match tls_built.get(&c.verify) {
                        Some(x) => x.clone(),
                        None => {
                            let x = TlsConnector::from(tls::client_config(c.verify)?);
                            tls_built.insert(c.verify, x.clone());
                            x
                        }
                    };
                    Runner::Tls(conn)
                }
                CheckKind::Tcp(_) => Runner::Tcp,
                CheckKind::Dns(_) => Runner::Dns,
                CheckKind::Exec(_) => Runner::Exec,
                CheckKind::Icmp(_) => Runner::Icmp,
            };
            runners.insert(t.id.0, runner);
        }
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ok(Prober {
            runners,
            exec_slots: Arc::new(Semaphore::new(max_exec.max(1))),
            counter: AtomicU64::new(0),
            seed,
        })
    }

    /// A fresh unpredictable number (DNS query id, ICMP sequence and token).
    fn nonce(&self) -> u64 {
        mix64(self.seed ^ self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Probe `target` once; never takes longer than its check's timeout (plus scheduling,
    /// and for `exec` the wait for a free slot).
    pub async fn probe(&self, target: &Target) -> ProbeResult {
        let timeout = target.check.timeout;
        let start = Instant::now();
        let runner = self.runners.get(&target.id.0);
        let (outcome, latency, load) = match (&target.check.kind, runner) {
            (CheckKind::Tcp(_), Some(Runner::Tcp)) => {
                let (o, l) = tcp::probe(target.addr, timeout).await;
                (o, l, None)
            }
            (CheckKind::Http(h), Some(Runner::Http(client))) => {
                http::probe(client, target.addr, h, timeout, start).await
            }
            (CheckKind::Dns(d), Some(Runner::Dns)) => {
                let id = self.nonce() as u16;
                let (o, l) = dns::probe(target.addr, d, id, timeout).await;
                (o, l, None)
            }
            (CheckKind::Tls(c), Some(Runner::Tls(conn))) => {
                let (o, l) = tls::probe(conn, target.addr, c, timeout).await;
                (o, l, None)
            }
            (CheckKind::Exec(e), Some(Runner::Exec)) => {
                // Closed only when the prober is dropped; then there is nothing to run.
                match self.exec_slots.acquire().await {
                    Ok(_slot) => {
                        let dc = target.datacenter.as_deref().unwrap_or("");
                        exec::probe(e, target.addr, dc, timeout).await
                    }
                    Err(_) => (ProbeOutcome::Other("prober stopped".into()), None, None),
                }
            }
            (CheckKind::Icmp(_), Some(Runner::Icmp)) => {
                let n = self.nonce();
                let (o, l) = icmp::probe(
                    target.addr,
                    n as u16,
                    (n ^ self.seed).to_be_bytes(),
                    timeout,
                )
                .await;
                (o, l, None)
            }
            (
                CheckKind::Tcp(_)
                | CheckKind::Http(_)
                | CheckKind::Dns(_)
                | CheckKind::Tls(_)
                | CheckKind::Exec(_)
                | CheckKind::Icmp(_),
                _,
            ) => (
                ProbeOutcome::Other("target not in this prober's probe set".into()),
                None,
                None,
            ),
        };
        ProbeResult {
            target: target.id,
            outcome,
            latency,
            load,
            at: Instant::now(),
        }
    }
}
