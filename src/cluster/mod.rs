//! Several nameservers, one view of health: probe sharing and quorum through etcd
//! (`gslbd serve --cluster etcd://HOST:PORT,... --node NAME`). docs/cluster.md tells the
//! model and each failure; this is how the code is laid out.
//!
//! ```text
//!                         etcd (prefix /gslbd/<cluster>/)
//!        members/<node> (lease)   obs/<target>/<node> (lease)   admin/<datacenter>
//!              ^  |                      ^  |                          ^  |
//!   member.rs  |  |     engine.rs writer |  |  watch (etcd.rs)    API  |  |  watch
//!   grant,     |  v                      |  v                     PUT  |  v
//!   keepalive  +--+---- engine.rs: live members, observations, admin states, mode
//!                        |  assign.rs: probers(t) = rendezvous(members, replicas)
//!                        |  quorum.rs: decision(t) from the probers' fresh observations
//!                        v
//!        probe::Steering (which workers run here)   health: Update::Targets (the quorum),
//!                                                    set_admin; TargetObservation back out
//! ```
//!
//! Layering: this module uses `health` (the input API, the aggregator handle) and `probe`
//! (the plan, the steering) and is used by `server` and `api` only. `health` and `policy`
//! never see it; the query path reads the snapshot the aggregator publishes, as without a
//! cluster.
//!
//! etcd is reached through its JSON gateway over the HTTP client already in the tree
//! (`etcd.rs`), which needs no `protoc` at build time (see Cargo.toml).

pub(crate) mod assign;
mod engine;
pub mod etcd;
mod member;
pub(crate) mod quorum;
pub mod status;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::health::AdminState;
use crate::health::aggregator::AggregatorHandle;
use crate::health::input::TargetObservation;
use crate::probe::{ProbeSet, Steering};
use crate::shutdown::Shutdown;
pub use engine::Mode;
pub use etcd::{EtcdError, EtcdOptions};
pub use status::ClusterStatus;

/// Default lease time to live: a crashed node's targets move within this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// Default grace: how long the last shared view holds after etcd is lost.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Default number of nodes that probe each target.
pub const DEFAULT_REPLICAS: usize = 3;

/// `--cluster` and its companions.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How to reach etcd.
    pub etcd: EtcdOptions,
    /// This node's name (unique in the cluster).
    pub node: String,
    /// Key prefix, ending in `/` (`/gslbd/<cluster name>/`).
    pub prefix: String,
    /// Lease time to live (whole seconds, at least 1; etcd's own minimum may be higher).
    pub lease_ttl: Duration,
    /// How long the last shared view holds after etcd is lost, before probing alone.
    pub grace: Duration,
    /// Nodes probing each target, unless its check says otherwise.
    pub replicas: usize,
}

impl ClusterOptions {
    /// Options for `endpoints` (`etcd://h:p,h:p` or `etcds://...` for TLS) and `node`.
    pub fn parse(url: &str, node: &str) -> Result<ClusterOptions, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("etcd://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("etcds://") {
            (true, r)
        } else {
            return Err(format!(
                "--cluster {url:?}: expected etcd://HOST:PORT[,HOST:PORT...] (or etcds:// for TLS)"
            ));
        };
        let endpoints: Vec<String> = rest
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(format!("--cluster {url:?}: no HOST:PORT given"));
        }
        for e in &endpoints {
            if e.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!("--cluster: {e:?} is not HOST:PORT"));
            }
        }
        if node.is_empty() || node.contains('/') || node.len() > 128 {
            return Err(format!(
                "--node {node:?}: a name of 1 to 128 characters without '/'"
            ));
        }
        Ok(ClusterOptions {
            etcd: EtcdOptions {
                endpoints,
                tls,
                timeout: Duration::from_secs(1),
                ..EtcdOptions::default()
            },
            node: node.to_string(),
            prefix: "/gslbd/default/".into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            grace: DEFAULT_GRACE,
            replicas: DEFAULT_REPLICAS,
        })
    }
}

/// The running cluster membership; the server binds each probe runtime to it.
#[derive(Debug)]
pub struct Cluster {
    cmds: mpsc::Sender<engine::Command>,
    etcd: etcd::Etcd,
    opts: ClusterOptions,
    status: Arc<Mutex<ClusterStatus>>,
    write_errors: Arc<AtomicU64>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stop: Shutdown,
}

impl Cluster {
    /// Starts membership, the watch and the engine under `stop`. Nothing waits for etcd:
    /// until it answers, the node probes every target and decides alone.
    pub fn start(opts: ClusterOptions, stop: Shutdown) -> Result<Cluster, EtcdError> {
        let client = etcd::Etcd::new(&opts.etcd)?;
        let (lease_tx, lease_rx) = watch::channel(member::LeaseState::default());
        let (watch_tx, watch_rx) = mpsc::channel(1024);
        let (write_tx, write_rx) = mpsc::channel(4096);
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let status = Arc::new(Mutex::new(ClusterStatus::default()));
        let write_errors = Arc::new(AtomicU64::new(0));
        let member_key = format!("{}members/{}", opts.prefix, opts.node);
        let mut tasks = vec![tokio::spawn(member::run(
            client.clone(),
            member_key,
            opts.node.clone(),
            opts.lease_ttl,
            lease_tx,
            stop.clone(),
        ))];
        let w = client.clone();
        let prefix = opts.prefix.clone();
        let wstop = stop.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = w.watch(prefix, watch_tx) => {}
                _ = wstop.stopped() => {}
            }
        }));
        tasks.push(tokio::spawn(engine::writer(
            client.clone(),
            write_rx,
            write_errors.clone(),
        )));
        let eng = engine::Engine::new(
            opts.clone(),
            cmd_rx,
            watch_rx,
            lease_rx,
            write_tx,
            status.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(eng.run()));
        tracing::info!(node = %opts.node, endpoints = ?opts.etcd.endpoints, prefix = %opts.prefix, "cluster: starting");
        Ok(Cluster {
            cmds: cmd_tx,
            etcd: client,
            opts,
            status,
            write_errors,
            tasks: Mutex::new(tasks),
            stop,
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.opts.node
    }

    /// Steers and feeds a (new) probe runtime: its workers, its aggregator and the
    /// observations the aggregator sends out.
    pub async fn bind(
        &self,
        plan: Arc<ProbeSet>,
        handle: AggregatorHandle,
        steering: Steering,
        observations: mpsc::Receiver<TargetObservation>,
    ) {
        let _ = self
            .cmds
            .send(engine::Command::Bind(engine::Binding {
                plan,
                handle,
                steering,
                observations,
            }))
            .await;
    }

    /// Stores an admin state in etcd, for every node (this one applies it itself too).
    pub async fn share_admin(&self, datacenter: &str, state: AdminState) -> Result<i64, EtcdError> {
        let key = format!("{}admin/{datacenter}", self.opts.prefix);
        let value = serde_json::json!({
            "state": state.as_str(),
            "node": self.opts.node,
            "at_unix": crate::health::persist::unix_secs(SystemTime::now()),
        })
        .to_string();
        self.etcd.put(&key, value.as_bytes(), 0).await
    }

    /// The cluster as this node sees it now.
    pub fn status(&self) -> ClusterStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.etcd_errors += self.write_errors.load(std::sync::atomic::Ordering::Relaxed);
        s
    }

    /// Leaves the cluster (revokes the lease) and stops every task.
    pub async fn stop(&self) {
        self.stop.stop();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o = ClusterOptions::parse("etcd://127.0.0.1:2379,10.0.0.2:2379", "a").unwrap();
        assert_eq!(o.etcd.endpoints, vec!["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert!(!o.etcd.tls);
        assert!(ClusterOptions::parse("etcds://h:1", "a").unwrap().etcd.tls);
        assert!(ClusterOptions::parse("http://h:1", "a").is_err());
        assert!(ClusterOptions::parse("etcd://h", "a").is_err());
        assert!(ClusterOptions::parse("etcd://h:1", "a/b").is_err());
        assert!(ClusterOptions::parse("etcd://", "a").is_err());
    }
}
