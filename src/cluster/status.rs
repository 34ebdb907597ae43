//! What `/status` (its `cluster` section) and `/metrics` (`gslbd_cluster_*`) show of the
//! cluster: the members, which node probes which target, each node's observation of each
//! target, the quorum's result, and the etcd connection (state, keepalive round trip, watch
//! lag, errors).

use serde::Serialize;

use super::engine::Mode;
use crate::metrics::{F, Gauges, Text};

/// One node's observation of one target, as this node holds it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ObservationStatus {
    /// The observing node.
    pub node: String,
    /// Its state after rise/fall.
    pub up: bool,
    /// Passes in a row.
    pub passes: u32,
    /// Fails in a row.
    pub fails: u32,
    /// Smoothed round-trip time, ms.
    pub latency_ms: Option<f64>,
    /// Utilisation 0..1.
    pub load: Option<f64>,
    /// The last probe's outcome in words.
    pub last: String,
    /// Milliseconds since it was written (or received).
    pub age_ms: u64,
    /// It counted in the last quorum (fresh, and from a current prober).
    pub counted: bool,
}

/// One target as the cluster sees it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TargetView {
    /// The target (check identity and address).
    pub target: String,
    /// Its id in etcd keys.
    pub id: String,
    /// The datacenters it decides.
    pub datacenters: Vec<String>,
    /// The live nodes that probe it (rendezvous hashing), highest weight first.
    pub probers: Vec<String>,
    /// This node probes it now (a prober, or falling back to probing alone).
    pub probed_here: bool,
    /// Down observations needed to take it down.
    pub quorum: usize,
    /// `up`, `down`, `up (held)` / `down (held)` (the last decision, while the probers'
    /// reports are incomplete), or `undecided`.
    pub decision: &'static str,
    /// The quorum in words.
    pub reason: String,
    /// Every node's observation held.
    pub observations: Vec<ObservationStatus>,
}

/// The cluster as this node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// The etcd key prefix of this cluster.
    pub prefix: String,
    /// etcd client endpoints.
    pub endpoints: Vec<String>,
    /// `joining`, `shared`, `degraded` (etcd lost, last shared view held) or `local`
    /// (probing every target and deciding alone).
    #[serde(serialize_with = "mode_str")]
    pub mode: Mode,
    /// Since when, Unix seconds.
    pub mode_since_unix: u64,
    /// Lease alive and watch streaming.
    pub connected: bool,
    /// This node's lease (hex), once granted.
    pub lease: Option<String>,
    /// The lease's time to live.
    pub lease_ttl_secs: u64,
    /// How long the last shared view holds after etcd is lost.
    pub grace_secs: f64,
    /// Round trip of the last lease keepalive, ms.
    pub keepalive_rtt_ms: Option<f64>,
    /// Age of the last observation received through the watch when it arrived, ms (the
    /// time from a probe's result on another node to this node knowing it).
    pub watch_lag_ms: Option<f64>,
    /// The last etcd revision seen.
    pub revision: i64,
    /// Failed lease calls.
    pub etcd_errors: u64,
    /// Watch streams broken (and reconnected).
    pub watch_breaks: u64,
    /// Leases granted (more than one: the node joined again).
    pub lease_grants: u64,
    /// Shared target verdicts that changed state.
    pub verdict_changes: u64,
    /// Why etcd is not reachable, while it is not.
    pub last_error: Option<String>,
    /// Live members (including this node once joined).
    pub members: Vec<String>,
    /// Admin states in etcd: (datacenter, state, revision).
    pub admin: Vec<(String, String, i64)>,
    /// Every target.
    pub targets: Vec<TargetView>,
}

fn mode_str<S: serde::Serializer>(m: &Mode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

impl Default for ClusterStatus {
    fn default() -> Self {
        ClusterStatus {
            node: String::new(),
            prefix: String::new(),
            endpoints: Vec::new(),
            mode: Mode::Joining,
            mode_since_unix: 0,
            connected: false,
            lease: None,
            lease_ttl_secs: 0,
            grace_secs: 0.0,
            keepalive_rtt_ms: None,
            watch_lag_ms: None,
            revision: 0,
            etcd_errors: 0,
            watch_breaks: 0,
            lease_grants: 0,
            verdict_changes: 0,
            last_error: None,
            members: Vec::new(),
            admin: Vec::new(),
            targets: Vec::new(),
        }
    }
}

impl Gauges for ClusterStatus {
    fn render(&self, o: &mut Text) {
        let (g, c) = ("gauge", "counter");
        let node = [("node", self.node.as_str())];
        o.header(
            "gslbd_cluster_connected",
            "1 while this node's etcd lease is alive and its watch streams.",
            g,
        );
        o.sample("gslbd_cluster_connected", &node, u8::from(self.connected));
        o.header(
            "gslbd_cluster_mode",
            "1 for the node's cluster mode: joining, shared, degraded (etcd lost, last shared view held) or local (probing alone).",
            g,
        );
        for m in Mode::ALL {
            o.sample(
                "gslbd_cluster_mode",
                &[("node", self.node.as_str()), ("mode", m.as_str())],
                u8::from(m == self.mode),
            );
        }
        o.header("gslbd_cluster_members", "Live cluster members seen.", g);
        o.sample("gslbd_cluster_members", &node, self.members.len());
        o.header(
            "gslbd_cluster_targets_probed",
            "Targets this node probes now (its share, or all when probing alone).",
            g,
        );
        o.sample(
            "gslbd_cluster_targets_probed",
            &node,
            self.targets.iter().filter(|t| t.probed_here).count(),
        );
        o.header(
            "gslbd_cluster_target_probers",
            "Live nodes assigned to probe each target.",
            g,
        );
        o.header(
            "gslbd_cluster_target_up",
            "The cluster's decision on each target: 1 up, 0 down (absent: undecided).",
            g,
        );
        o.header(
            "gslbd_cluster_observation_up",
            "Each node's observation of each target held here: 1 up, 0 down.",
            g,
        );
        for t in &self.targets {
            let l = [("target", t.target.as_str())];
            o.sample("gslbd_cluster_target_probers", &l, t.probers.len());
            match t.decision {
                "up" | "up (held)" => o.sample("gslbd_cluster_target_up", &l, 1),
                "down" | "down (held)" => o.sample("gslbd_cluster_target_up", &l, 0),
                _ => {}
            }
            for ob in &t.observations {
                o.sample(
                    "gslbd_cluster_observation_up",
                    &[
                        ("target", t.target.as_str()),
                        ("observer", ob.node.as_str()),
                    ],
                    u8::from(ob.up),
                );
            }
        }
        o.header(
            "gslbd_cluster_keepalive_seconds",
            "Round trip of the last etcd lease keepalive.",
            g,
        );
        if let Some(ms) = self.keepalive_rtt_ms {
            o.sample("gslbd_cluster_keepalive_seconds", &node, F(ms / 1e3));
        }
        o.header(
            "gslbd_cluster_watch_lag_seconds",
            "Age of the last observation received through the etcd watch.",
            g,
        );
        if let Some(ms) = self.watch_lag_ms {
            o.sample("gslbd_cluster_watch_lag_seconds", &node, F(ms / 1e3));
        }
        o.header("gslbd_cluster_revision", "The last etcd revision seen.", g);
        o.sample("gslbd_cluster_revision", &node, self.revision);
        o.header(
            "gslbd_cluster_etcd_errors_total",
            "Failed etcd lease calls.",
            c,
        );
        o.sample("gslbd_cluster_etcd_errors_total", &node, self.etcd_errors);
        o.header(
            "gslbd_cluster_watch_breaks_total",
            "etcd watch streams that broke (each reconnected).",
            c,
        );
        o.sample("gslbd_cluster_watch_breaks_total", &node, self.watch_breaks);
        o.header(
            "gslbd_cluster_verdict_changes_total",
            "Shared target verdicts that changed state.",
            c,
        );
        o.sample(
            "gslbd_cluster_verdict_changes_total",
            &node,
            self.verdict_changes,
        );
    }
}
