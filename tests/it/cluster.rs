//! Several nameservers, one view of health: a real 3-member etcd cluster on loopback and three
//! real `gslbd serve --cluster` processes, probing real HTTP health endpoints.
//!
//! Each test starts its own etcd (ephemeral ports, a temporary data dir per member, processes
//! kept by PID and killed by PID, each wait bounded) and its own gslbd nodes, then drives
//! failures: a node crash, a probe path broken for one node, a target really down, the etcd
//! leader killed, every etcd member stopped and started again, an admin drain on one node.
//! Probes are counted at the endpoints per node (the probes' User-Agent names the node).
//!
//! Without the `etcd` binary (Debian package `etcd-server`) the tests print why and pass;
//! with `GSLBD_ETCD_TESTS=require` (as .ci/run sets, having installed it) that is a failure.
//! The tests run one at a time: they measure time on a shared 2-core machine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{HealthHttp, HealthMode, Resp, bin, q};

const TARGETS: usize = 12;
const INTERVAL: Duration = Duration::from_millis(300);
const FALL: u32 = 2;
const RISE: u32 = 2;
const LEASE: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(3);
const TOKEN: &str = "cluster-test-token";
const NODES: [&str; 3] = ["a", "b", "c"];

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The etcd binary, or `None` after printing why the test is skipped.
fn etcd_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("etcd"))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        let msg = "etcd not found (Debian package etcd-server): cluster tests skipped";
        if std::env::var("GSLBD_ETCD_TESTS").as_deref() == Ok("require") {
            panic!("{msg}; GSLBD_ETCD_TESTS=require");
        }
        eprintln!("{msg}");
    }
    found
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 exchange (Connection: close).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((code, body))
}

/// One call to etcd's JSON gateway, with `token` as its `Authorization` header if given.
fn etcd_call(
    addr: SocketAddr,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some((code, serde_json::from_str(body).unwrap_or_default()))
}

// ----------------------------------------------------------------------------------------
// etcd

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

impl Etcd {
    fn start(bin: PathBuf, n: usize) -> Etcd {
        let mut e = Etcd {
            bin,
            dir: tempfile::tempdir().unwrap(),
            members: (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client: crate::common::free_port(),
                    peer: crate::common::free_port(),
                    child: None,
                })
                .collect(),
        };
        for i in 0..n {
            e.spawn(i, "new");
        }
        e.wait_healthy();
        e
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let cluster = self.initial_cluster();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let child = Command::new(&self.bin)
            .args([
                "--name",
                &m.name,
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "gslbd-test",
                // Fast elections, so a killed leader is replaced within about a second.
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i].child = Some(child);
    }

    fn endpoints(&self) -> String {
        let list: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        format!("etcd://{}", list.join(","))
    }

    fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].client))
    }

    fn healthy(&self, i: usize) -> bool {
        http(self.addr(i), "GET", "/health", "")
            .is_some_and(|(c, b)| c == 200 && b.contains("true"))
    }

    fn wait_healthy(&self) {
        wait_until("every etcd member healthy", Duration::from_secs(20), || {
            (0..self.members.len())
                .filter(|i| self.members[*i].child.is_some())
                .all(|i| self.healthy(i))
        });
    }

    /// Index of the leader, as the first running member reports it.
    fn leader(&self) -> usize {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let Some((200, body)) = http(self.addr(i), "POST", "/v3/maintenance/status", "{}")
            else {
                continue;
            };
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            let leader = v["leader"].as_str().unwrap_or("").to_string();
            for (j, _) in self.members.iter().enumerate() {
                if let Some((200, b)) = http(self.addr(j), "POST", "/v3/maintenance/status", "{}") {
                    let w: Value = serde_json::from_str(&b).unwrap_or_default();
                    if w["header"]["member_id"].as_str() == Some(leader.as_str()) {
                        return j;
                    }
                }
            }
        }
        panic!("no etcd leader found");
    }

    /// Kills member `i` (SIGKILL, by its PID) and reaps it.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data dir.
    fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

// ----------------------------------------------------------------------------------------
// gslbd nodes

struct Node {
    name: String,
    dns: SocketAddr,
    api: SocketAddr,
    child: Option<Child>,
    _state: tempfile::TempDir,
}

impl Node {
    fn start(name: &str, zones: &Path, etcd: &str, replicas: usize) -> Node {
        Node::start_with(name, zones, etcd, replicas, &[], &[])
    }

    /// With more arguments and environment variables.
    fn start_with(
        name: &str,
        zones: &Path,
        etcd: &str,
        replicas: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let state = tempfile::tempdir().unwrap();
        let dns = SocketAddr::from(([127, 0, 0, 1], crate::common::free_port()));
        let api = SocketAddr::from(([127, 0, 0, 1], crate::common::free_port()));
        let log = std::fs::File::create(state.path().join("log")).unwrap();
        let child = Command::new(bin())
            .args([
                "serve",
                "--zones",
                zones.to_str().unwrap(),
                "--listen",
                &dns.to_string(),
                "--api",
                &api.to_string(),
                "--api-token-env",
                "GSLBD_CLUSTER_TEST_TOKEN",
                "--state-dir",
                state.path().to_str().unwrap(),
                "--udp-threads",
                "1",
                "--no-watch",
                "--cluster",
                etcd,
                "--node",
                name,
                "--cluster-name",
                "test",
                "--cluster-replicas",
                &replicas.to_string(),
                "--cluster-lease",
                &format!("{}s", LEASE.as_secs()),
                "--cluster-grace",
                &format!("{}s", GRACE.as_secs()),
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env("GSLBD_CLUSTER_TEST_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("gslbd starts");
        let n = Node {
            name: name.into(),
            dns,
            api,
            child: Some(child),
            _state: state,
        };
        wait_until(
            &format!("node {name} answers its API"),
            Duration::from_secs(10),
            || http(n.api, "GET", "/healthz", "").is_some(),
        );
        n
    }

    fn status(&self) -> Value {
        http(self.api, "GET", "/status", "")
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or_default()
    }

    fn cluster(&self) -> Value {
        self.status()["cluster"].clone()
    }

    /// The value of one sample of `/metrics` (`name{labels}` exactly as rendered).
    fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = http(self.api, "GET", "/metrics", "")?;
        body.lines().find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// The A addresses of www.example.com (sorted).
    fn answers(&self) -> Vec<String> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let bytes = q("www.example.com", "A").bytes();
        s.send_to(&bytes, self.dns).unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = s.recv_from(&mut buf).expect("a DNS answer within 2 s");
        let mut v: Vec<String> = Resp::parse(buf[..n].to_vec())
            .answers()
            .iter()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// SIGKILL: a crash (the lease is not revoked; it expires).
    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.crash();
    }
}

// ----------------------------------------------------------------------------------------
// The setup: 12 datacenters, each checked on its own endpoint.

struct Setup {
    _serial: std::sync::MutexGuard<'static, ()>,
    endpoints: Vec<HealthHttp>,
    zones: tempfile::TempDir,
    nodes: Vec<Node>,
    etcd: Etcd,
}

fn addr_of(i: usize) -> String {
    format!("192.0.2.{}", 10 + i)
}

fn all_addrs() -> Vec<String> {
    let mut v: Vec<String> = (0..TARGETS).map(addr_of).collect();
    v.sort();
    v
}

/// The zone: datacenter `i` checked on endpoint `i`; `replicas(i)` sets its check's
/// `replicas` key (`None`: the node's `--cluster-replicas`).
fn zone(endpoints: &[HealthHttp], replicas: impl Fn(usize) -> Option<u32>) -> String {
    let mut z = String::from(
        "origin = \"example.com.\"\nttl = 3600\n[soa]\nmname = \"ns1.example.com.\"\n\
         rname = \"hostmaster.example.com.\"\nserial = 1\nminimum = 300\n\
         [records.\"@\"]\nNS = [\"ns1\"]\n[records.ns1]\nA = [\"192.0.2.53\"]\n\n",
    );
    let mut names = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        z.push_str(&format!(
            "[checks.c{i}]\ntype = \"http\"\npath = \"/health\"\nport = {}\n\
             interval = \"{}ms\"\ntimeout = \"150ms\"\nrise = {RISE}\nfall = {FALL}\n\
             jitter = \"30ms\"\n{}\n[datacenters.dc{i}]\naddresses = [\"{}\"]\ncheck = \"c{i}\"\n\
             check-addresses = [\"127.0.0.1\"]\n\n",
            e.port(),
            INTERVAL.as_millis(),
            replicas(i).map_or(String::new(), |r| format!("replicas = {r}\n")),
            addr_of(i)
        ));
        names.push(format!("\"dc{i}\""));
    }
    z.push_str(&format!(
        "[gslb.www]\nttl = 5\ndatacenters = [{}]\npolicy = \"all\"\nall-down = \"servfail\"\n",
        names.join(", ")
    ));
    z
}

impl Setup {
    fn start(replicas: usize) -> Option<Setup> {
        Setup::start_nodes(&NODES, replicas, |_| None)
    }

    /// `names` nodes with `--cluster-replicas replicas`, and `check_replicas(i)` as the
    /// `replicas` key of target `i`'s check.
    fn start_nodes(
        names: &[&str],
        replicas: usize,
        check_replicas: impl Fn(usize) -> Option<u32>,
    ) -> Option<Setup> {
        let serial = serial();
        let bin = etcd_binary()?;
        let etcd = Etcd::start(bin, 3);
        let endpoints: Vec<HealthHttp> = (0..TARGETS).map(|_| HealthHttp::start()).collect();
        let zones = tempfile::tempdir().unwrap();
        std::fs::write(
            zones.path().join("example.com.toml"),
            zone(&endpoints, check_replicas),
        )
        .unwrap();
        let url = etcd.endpoints();
        let nodes: Vec<Node> = names
            .iter()
            .map(|n| Node::start(n, zones.path(), &url, replicas))
            .collect();
        let members = nodes.len();
        let s = Setup {
            _serial: serial,
            endpoints,
            zones,
            nodes,
            etcd,
        };
        s.wait_shared(members);
        Some(s)
    }

    /// Until every running node is in shared mode, sees `members` members and has a
    /// decision on every target.
    fn wait_shared(&self, members: usize) -> Duration {
        wait_until(
            &format!("{members} members in shared mode, every target decided"),
            Duration::from_secs(20),
            || {
                self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                    let c = n.cluster();
                    c["mode"] == "shared"
                        && c["members"].as_array().map_or(0, Vec::len) == members
                        && c["targets"].as_array().is_some_and(|t| {
                            t.len() == TARGETS && t.iter().all(|t| t["decision"] == "up")
                        })
                })
            },
        )
    }

    /// Per target, the nodes that probed it in the last `window`, and how often.
    fn probes(&self, window: Duration) -> Vec<BTreeMap<String, usize>> {
        let from = Instant::now();
        std::thread::sleep(window);
        let to = Instant::now();
        self.endpoints
            .iter()
            .map(|e| e.hits_by_node(from, to))
            .collect()
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Every running node's answer.
    fn answers(&self) -> Vec<(String, Vec<String>)> {
        self.running()
            .map(|n| (n.name.clone(), n.answers()))
            .collect()
    }
}

/// The probers each node's status names for target `i`.
fn probers_of(node: &Node, i: usize) -> BTreeSet<String> {
    let c = node.cluster();
    let t = c["targets"]
        .as_array()
        .and_then(|ts| {
            ts.iter()
                .find(|t| t["datacenters"][0] == format!("dc{i}"))
                .cloned()
        })
        .unwrap_or_default();
    t["probers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn rounds(window: Duration) -> usize {
    (window.as_millis() / INTERVAL.as_millis()) as usize
}

// ----------------------------------------------------------------------------------------

/// 12 targets, replicas 2, three nodes: each target is probed by exactly the two nodes the
/// rendezvous hash names, once per interval each. Then a node crashes (SIGKILL): within one
/// lease TTL its targets are probed by two live nodes again, and no answer changes.
#[test]
fn probe_sharing_and_a_node_crash() {
    let Some(mut s) = Setup::start(2) else {
        return;
    };
    // Let the steering settle after the last join.
    std::thread::sleep(INTERVAL * 2);
    let window = INTERVAL * 10;
    let per_target = s.probes(window);
    let n = rounds(window);
    let mut total = 0;
    for (i, m) in per_target.iter().enumerate() {
        let nodes: BTreeSet<String> = m.keys().cloned().collect();
        let expected = probers_of(&s.nodes[0], i);
        assert_eq!(
            nodes, expected,
            "target {i}: probed by {m:?}, status says {expected:?}"
        );
        assert_eq!(nodes.len(), 2, "target {i}: {m:?}");
        for (node, hits) in m {
            assert!(
                (n - 2..=n + 1).contains(hits),
                "target {i}: node {node} probed {hits} times in {n} intervals"
            );
        }
        total += m.values().sum::<usize>();
    }
    // Every node sees the same assignment.
    for i in 0..TARGETS {
        let a = probers_of(&s.nodes[0], i);
        for node in &s.nodes[1..] {
            assert_eq!(
                probers_of(node, i),
                a,
                "target {i}: nodes disagree on its probers"
            );
        }
    }
    eprintln!(
        "probes per target per interval: {:.2} (3 nodes, replicas 2, {TARGETS} targets, {n} intervals)",
        total as f64 / (TARGETS * n) as f64
    );

    // Node c crashes: its targets move to the others within one lease TTL.
    let before = s.answers();
    assert!(before.iter().all(|(_, a)| *a == all_addrs()), "{before:?}");
    let c_targets: Vec<usize> = (0..TARGETS)
        .filter(|i| probers_of(&s.nodes[0], *i).contains("c"))
        .collect();
    assert!(!c_targets.is_empty());
    let crashed = Instant::now();
    s.nodes[2].crash();
    let moved = wait_until(
        "c's targets probed by two live nodes",
        LEASE + Duration::from_secs(5),
        || {
            let from = Instant::now() - INTERVAL * 2;
            c_targets.iter().all(|&i| {
                let m = s.endpoints[i].hits_by_node(from, Instant::now());
                m.len() == 2 && !m.contains_key("c")
            })
        },
    );
    eprintln!(
        "node crash: its {} targets probed by two live nodes after {moved:?} (lease TTL {LEASE:?})",
        c_targets.len()
    );
    // The move is noticed when the lease expires; the new prober's first probe follows
    // within an interval (+ jitter), counted over a 2-interval window.
    assert!(
        crashed.elapsed() <= LEASE + INTERVAL * 4 + Duration::from_secs(1),
        "moved after {:?}",
        crashed.elapsed()
    );
    s.wait_shared(2);
    for (node, a) in s.answers() {
        assert_eq!(a, all_addrs(), "node {node} after the crash");
    }
    // The survivors agree on the new assignment: two probers per target, never c.
    for i in 0..TARGETS {
        let p = probers_of(&s.nodes[0], i);
        assert_eq!(p.len(), 2);
        assert!(!p.contains("c"));
        assert_eq!(probers_of(&s.nodes[1], i), p);
    }
}

/// A probe path broken for one node only does not fail the target over; a target really
/// down is dropped by every node within fall x interval + lease/watch delay, all nodes then
/// answer the same; an admin drain set on one node is applied by all.
#[test]
fn quorum_partial_and_real_failures_and_shared_admin() {
    let Some(mut s) = Setup::start(2) else {
        return;
    };
    // Target 0: broken for its first prober only.
    let p0: Vec<String> = probers_of(&s.nodes[0], 0).into_iter().collect();
    let lonely = p0[0].clone();
    s.endpoints[0].deny_nodes(&[lonely.as_str()]);
    let until = Instant::now() + INTERVAL * (FALL + 4);
    while Instant::now() < until {
        for (node, a) in s.answers() {
            assert_eq!(
                a,
                all_addrs(),
                "node {node}: dc0 failed over though only {lonely} sees it down"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let who = s.nodes.iter().find(|n| n.name == lonely).unwrap();
    let t0 = who.cluster()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["datacenters"][0] == "dc0")
        .cloned()
        .unwrap();
    assert_eq!(t0["decision"], "up", "{t0}");
    let mine = t0["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["node"] == lonely.as_str())
        .cloned()
        .unwrap();
    assert_eq!(mine["up"], false, "{lonely} sees dc0 down: {t0}");
    s.endpoints[0].deny_nodes(&[]);

    // Target 5 really down: every node drops it.
    let failed = Instant::now();
    s.endpoints[5].set(HealthMode::Status(503));
    let mut agreed = BTreeMap::new();
    wait_until(
        "every node answers without dc5",
        Duration::from_secs(10),
        || {
            for n in s.running() {
                if !agreed.contains_key(&n.name) && !n.answers().contains(&addr_of(5)) {
                    agreed.insert(n.name.clone(), failed.elapsed());
                }
            }
            agreed.len() == 3
        },
    );
    let last = agreed.values().max().copied().unwrap();
    eprintln!(
        "real failure: dropped by every node after {last:?} ({agreed:?}); fall x interval = {:?}",
        INTERVAL * FALL
    );
    assert!(
        last <= INTERVAL * (FALL + 1) + Duration::from_millis(1500),
        "agreement took {last:?}"
    );
    // Converged: every node gives the same answer.
    std::thread::sleep(INTERVAL);
    let expected: Vec<String> = all_addrs()
        .into_iter()
        .filter(|a| *a != addr_of(5))
        .collect();
    for (node, a) in s.answers() {
        assert_eq!(a, expected, "node {node}");
    }
    // Back up: every node answers it again.
    s.endpoints[5].set(HealthMode::Healthy);
    wait_until(
        "every node answers dc5 again",
        Duration::from_secs(10),
        || s.answers().iter().all(|(_, a)| *a == all_addrs()),
    );

    // Admin drain on node b, seen by a and c.
    let (code, body) = http(
        s.nodes[1].api,
        "PUT",
        "/datacenters/dc3/admin",
        r#"{"state": "drain"}"#,
    )
    .expect("admin call");
    assert_eq!(code, 200, "{body}");
    let took = wait_until("every node drains dc3", Duration::from_secs(5), || {
        s.answers().iter().all(|(_, a)| !a.contains(&addr_of(3)))
    });
    eprintln!("admin drain on b applied by all nodes after {took:?}");
    for n in s.running() {
        let st = n.status();
        let dc3 = st["datacenters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "dc3")
            .cloned()
            .unwrap();
        assert_eq!(dc3["admin"], "drain", "node {}: {dc3}", n.name);
    }
    // A node that starts afresh (no state file) takes the shared admin state from etcd, and
    // joins the shared probing.
    let url = s.etcd.endpoints();
    s.nodes[2].crash();
    let fresh = Node::start("c", s.zones.path(), &url, 2);
    let took = wait_until(
        "the restarted c drains dc3",
        Duration::from_secs(10),
        || !fresh.answers().contains(&addr_of(3)),
    );
    eprintln!("a fresh node applied the shared drain {took:?} after its API came up");
    s.nodes[2] = fresh;
    s.wait_shared(3);
    let expected: Vec<String> = all_addrs()
        .into_iter()
        .filter(|a| *a != addr_of(3))
        .collect();
    for (node, a) in s.answers() {
        assert_eq!(a, expected, "node {node}");
    }
}

/// The etcd leader killed: no wrong answer, no verdict flap. Every etcd member stopped: the
/// nodes keep answering, fall back to probing every target after the grace, and rejoin
/// (shared probing again) when etcd returns, without a health flap.
#[test]
fn etcd_leader_loss_and_total_outage() {
    let Some(mut s) = Setup::start(2) else {
        return;
    };
    let changes = |s: &Setup| -> u64 {
        s.running()
            .map(|n| n.cluster()["verdict_changes"].as_u64().unwrap_or(0))
            .sum()
    };
    let before = changes(&s);
    let leader = s.etcd.leader();
    s.etcd.kill(leader);
    let until = Instant::now() + Duration::from_secs(4);
    let mut queries = 0;
    while Instant::now() < until {
        for (node, a) in s.answers() {
            assert_eq!(
                a,
                all_addrs(),
                "node {node} after the etcd leader was killed"
            );
            queries += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    s.wait_shared(3);
    assert_eq!(
        changes(&s),
        before,
        "a verdict flapped when the etcd leader died"
    );
    eprintln!("etcd leader m{leader} killed: {queries} answers checked, all right, no flap");
    s.etcd.restart(leader);
    s.etcd.wait_healthy();

    // Every member stopped.
    for i in 0..3 {
        s.etcd.kill(i);
    }
    let lost = Instant::now();
    wait_until(
        "every node probing alone",
        GRACE + Duration::from_secs(6),
        || {
            for (node, a) in s.answers() {
                assert_eq!(a, all_addrs(), "node {node} while etcd is down");
            }
            s.running().all(|n| n.cluster()["mode"] == "local")
        },
    );
    eprintln!(
        "etcd down: nodes in local mode after {:?} (grace {GRACE:?})",
        lost.elapsed()
    );
    assert!(lost.elapsed() >= GRACE, "local before the grace");
    // The metrics say so.
    for n in s.running() {
        let name = &n.name;
        assert_eq!(
            n.metric(&format!("gslbd_cluster_connected{{node=\"{name}\"}}")),
            Some(0.0)
        );
        assert_eq!(
            n.metric(&format!(
                "gslbd_cluster_mode{{node=\"{name}\",mode=\"local\"}}"
            )),
            Some(1.0),
            "node {name}"
        );
        assert_eq!(
            n.metric(&format!("gslbd_cluster_targets_probed{{node=\"{name}\"}}")),
            Some(TARGETS as f64),
            "node {name}"
        );
        assert!(
            n.cluster()["last_error"].is_string(),
            "node {name}: {}",
            n.cluster()
        );
    }
    // Each node now probes every target itself.
    std::thread::sleep(INTERVAL * 2);
    let per_target = s.probes(INTERVAL * 5);
    for (i, m) in per_target.iter().enumerate() {
        assert_eq!(m.len(), 3, "target {i} while etcd is down: {m:?}");
    }
    // etcd back: the nodes rejoin, shared probing again, no health flap.
    for i in 0..3 {
        s.etcd.restart(i);
    }
    // Every answer stays right while etcd comes back and the nodes rejoin (no flap on the
    // way back).
    let mut checked = 0;
    let etcd_up = wait_until("etcd healthy again", Duration::from_secs(20), || {
        for (node, a) in s.answers() {
            assert_eq!(a, all_addrs(), "node {node} while etcd restarts");
            checked += 1;
        }
        (0..3).all(|i| s.etcd.healthy(i))
    });
    let back = wait_until("every node shared again", Duration::from_secs(15), || {
        for (node, a) in s.answers() {
            assert_eq!(a, all_addrs(), "node {node} while rejoining");
            checked += 1;
        }
        s.running().all(|n| {
            let c = n.cluster();
            c["mode"] == "shared"
                && c["members"].as_array().map_or(0, Vec::len) == 3
                && c["targets"]
                    .as_array()
                    .is_some_and(|t| t.len() == TARGETS && t.iter().all(|t| t["decision"] == "up"))
        })
    });
    eprintln!(
        "etcd back: healthy {etcd_up:?} after the restart, every node shared again {back:?} later ({checked} answers checked on the way, all right)"
    );
    std::thread::sleep(INTERVAL * 2);
    let per_target = s.probes(INTERVAL * 6);
    for (i, m) in per_target.iter().enumerate() {
        assert_eq!(m.len(), 2, "target {i} after rejoining: {m:?}");
    }
    for (node, a) in s.answers() {
        assert_eq!(a, all_addrs(), "node {node} after rejoining");
    }
    // The example alerts' cluster series are exported by a cluster node.
    let (_, text) = http(s.nodes[0].api, "GET", "/metrics", "").expect("/metrics");
    let exported = crate::observability::metric_names(&text);
    let alerts = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus/alerts.yml"),
    )
    .unwrap();
    let live: String = alerts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let used: Vec<String> = crate::observability::metric_names(&live)
        .into_iter()
        .filter(|n| n.starts_with("gslbd_cluster_"))
        .collect();
    assert!(used.len() >= 2, "{used:?}");
    for u in &used {
        assert!(
            exported.contains(u),
            "alerts.yml uses {u}, a cluster node does not export it"
        );
    }
    for n in s.running() {
        let name = &n.name;
        assert_eq!(
            n.metric(&format!("gslbd_cluster_connected{{node=\"{name}\"}}")),
            Some(1.0)
        );
        assert_eq!(
            n.metric(&format!(
                "gslbd_cluster_mode{{node=\"{name}\",mode=\"shared\"}}"
            )),
            Some(1.0)
        );
        assert_eq!(
            n.metric(&format!("gslbd_cluster_members{{node=\"{name}\"}}")),
            Some(3.0)
        );
    }
}

/// Probes per target per interval with 5, 3 and 1 live nodes, for checks with replicas 2
/// (the node's `--cluster-replicas`) and 3 (the check's own `replicas` key), counted at the
/// endpoints: min(replicas, nodes) distinct nodes probe each target, each once per interval.
/// The figures are in docs/benchmarks.md.
#[test]
fn probes_per_target_with_5_3_and_1_nodes() {
    let names = ["a", "b", "c", "d", "e"];
    let replicas_of = |i: usize| if i < TARGETS / 2 { 2 } else { 3 };
    let Some(mut s) = Setup::start_nodes(&names, 2, |i| (i >= TARGETS / 2).then_some(3)) else {
        return;
    };
    let mut lines = Vec::new();
    for alive in [5usize, 3, 1] {
        for n in s.nodes.iter_mut().skip(alive) {
            n.crash();
        }
        s.wait_shared(alive);
        std::thread::sleep(INTERVAL * 2);
        let window = INTERVAL * 10;
        let per_target = s.probes(window);
        let rounds = rounds(window);
        let mut sum = [0usize; 2];
        for (i, m) in per_target.iter().enumerate() {
            let r = replicas_of(i);
            assert_eq!(
                m.len(),
                r.min(alive),
                "{alive} nodes, target {i} (replicas {r}): probed by {m:?}"
            );
            assert!(
                m.keys().all(|n| names[..alive].contains(&n.as_str())),
                "{m:?}"
            );
            for (node, hits) in m {
                assert!(
                    (rounds - 2..=rounds + 1).contains(hits),
                    "{alive} nodes, target {i}: node {node} probed {hits} times in {rounds} intervals"
                );
            }
            sum[usize::from(r == 3)] += m.values().sum::<usize>();
        }
        let per = |k: usize| sum[k] as f64 / ((TARGETS / 2) * rounds) as f64;
        lines.push(format!(
            "{alive} nodes: {:.2} probes per target per interval with replicas 2, {:.2} with replicas 3",
            per(0),
            per(1)
        ));
    }
    for l in lines {
        eprintln!("{l}");
    }
}

/// etcd with authentication on: a node with the right user and password (from a file) joins
/// and shares; a node with a wrong password (from `$ETCD_PASSWORD`) cannot, says why in
/// `/status`, and answers from its own probes meanwhile.
#[test]
fn etcd_user_and_password() {
    let _serial = serial();
    let Some(bin) = etcd_binary() else {
        return;
    };
    let etcd = Etcd::start(bin, 1);
    let e = etcd.addr(0);
    let b64 = |s: &str| data_encoding::BASE64.encode(s.as_bytes());
    for (path, body) in [
        ("/v3/auth/role/add", r#"{"name": "root"}"#.to_string()),
        (
            "/v3/auth/user/add",
            r#"{"name": "root", "password": "root-pw"}"#.to_string(),
        ),
        (
            "/v3/auth/user/grant",
            r#"{"user": "root", "role": "root"}"#.to_string(),
        ),
        (
            "/v3/auth/user/add",
            r#"{"name": "gslbd", "password": "s3cret"}"#.to_string(),
        ),
        ("/v3/auth/role/add", r#"{"name": "gslbd"}"#.to_string()),
        (
            "/v3/auth/role/grant",
            format!(
                r#"{{"name": "gslbd", "perm": {{"permType": "READWRITE", "key": "{}", "range_end": "{}"}}}}"#,
                b64("/gslbd/test/"),
                b64("/gslbd/test0")
            ),
        ),
        (
            "/v3/auth/user/grant",
            r#"{"user": "gslbd", "role": "gslbd"}"#.to_string(),
        ),
        ("/v3/auth/enable", "{}".to_string()),
    ] {
        let r = etcd_call(e, path, &body, None);
        assert!(matches!(r, Some((200, _))), "{path}: {r:?}");
    }
    // Auth is on: an anonymous read is refused.
    let anon = etcd_call(
        e,
        "/v3/kv/range",
        &format!(r#"{{"key": "{}"}}"#, b64("/gslbd/test/")),
        None,
    );
    assert!(
        !matches!(anon, Some((200, _))),
        "anonymous read allowed: {anon:?}"
    );

    let endpoints: Vec<HealthHttp> = (0..2).map(|_| HealthHttp::start()).collect();
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(
        zones.path().join("example.com.toml"),
        zone(&endpoints, |_| None),
    )
    .unwrap();
    let pw = zones.path().join("etcd-password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let url = format!("etcd://{e}");
    let good = Node::start_with(
        "a",
        zones.path(),
        &url,
        2,
        &[
            "--etcd-user",
            "gslbd",
            "--etcd-password-file",
            pw.to_str().unwrap(),
        ],
        &[],
    );
    let bad = Node::start_with(
        "b",
        zones.path(),
        &url,
        2,
        &["--etcd-user", "gslbd"],
        &[("ETCD_PASSWORD", "wrong")],
    );
    wait_until(
        "a shares through etcd with its password",
        Duration::from_secs(15),
        || {
            let c = good.cluster();
            c["mode"] == "shared"
                && c["members"] == serde_json::json!(["a"])
                && c["targets"]
                    .as_array()
                    .is_some_and(|t| t.len() == 2 && t.iter().all(|t| t["decision"] == "up"))
        },
    );
    wait_until("b says why it cannot join", Duration::from_secs(10), || {
        let c = bad.cluster();
        c["mode"] == "joining"
            && c["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("authentication"))
    });
    // b probes every target itself and answers from that.
    let b = bad.cluster();
    assert!(
        b["targets"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["probed_here"] == true)),
        "{b}"
    );
    let mut two: Vec<String> = (0..2).map(addr_of).collect();
    two.sort();
    assert_eq!(bad.answers(), two);
    assert_eq!(good.answers(), two);
    // The member key is there for the authenticated user.
    let (_, tok) = etcd_call(
        e,
        "/v3/auth/authenticate",
        r#"{"name": "gslbd", "password": "s3cret"}"#,
        None,
    )
    .expect("authenticate");
    let token = tok["token"].as_str().expect("a token").to_string();
    let (code, v) = etcd_call(
        e,
        "/v3/kv/range",
        &format!(
            r#"{{"key": "{}", "range_end": "{}"}}"#,
            b64("/gslbd/test/members/"),
            b64("/gslbd/test/members0")
        ),
        Some(&token),
    )
    .expect("range");
    assert_eq!(code, 200, "{v}");
    let keys: Vec<Vec<u8>> = v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|kv| kv["key"].as_str())
                .filter_map(|k| data_encoding::BASE64.decode(k.as_bytes()).ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(keys, vec![b"/gslbd/test/members/a".to_vec()]);
}

// ----------------------------------------------------------------------------------------
// The aggregator's side, without etcd: per-target shared verdicts (`Update::Targets`), the
// local state of targets not probed here following them, and observations going out.

mod shared_verdicts {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use gslbd::health::aggregator::{Aggregator, AggregatorSettings};
    use gslbd::health::input::{Source, SourceKind, TargetVerdict, Update};
    use gslbd::health::{Input, Snapshot};
    use gslbd::probe::{
        CheckSpec, DatacenterProbe, ProbeOutcome, ProbeResult, ProbeSet, Steering, TargetId,
    };
    use tokio::time::Instant;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// fra: one tcp check on two addresses (targets 0 and 1), min-up 1.
    fn setup() -> (Aggregator, Arc<ArcSwap<Snapshot>>, Vec<String>) {
        let dcs = vec![DatacenterProbe::new(
            "fra",
            vec![ip("192.0.2.10"), ip("192.0.2.11")],
            Some(CheckSpec::tcp(9)),
        )];
        let set = Arc::new(ProbeSet::build(&dcs).unwrap());
        let keys = set.targets.iter().map(|t| t.key()).collect();
        let out = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let s = AggregatorSettings {
            publish_interval: Duration::ZERO,
            ..AggregatorSettings::default()
        };
        let (agg, _h) = Aggregator::new(set, s, out.clone()).unwrap();
        (agg, out, keys)
    }

    fn verdicts(keys: &[String], up: bool, ttl: u64) -> Update {
        Update::Targets {
            source: Source::new(SourceKind::Cluster, "a"),
            verdicts: keys
                .iter()
                .map(|k| TargetVerdict {
                    target: k.clone(),
                    up,
                    load: None,
                    latency_ms: Some(12.0),
                    reason: format!(
                        "cluster: 2 of 2 probing nodes see it {}",
                        if up { "up" } else { "down" }
                    ),
                    ttl: Duration::from_secs(ttl),
                })
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_quorum_overrides_local_probes_and_a_target_not_probed_here_follows_it() {
        let (mut agg, out, keys) = setup();
        let steering = Steering::all(2);
        // Target 0 is probed here, target 1 by other nodes only.
        steering.set(vec![true, false]);
        agg.set_steering(steering);
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        agg.set_observations_out(tx);
        let t0 = Instant::now();
        // Locally target 0 refuses (this node's path is broken)...
        agg.apply(&ProbeResult::new(TargetId(0), ProbeOutcome::Refused, t0));
        let o = rx.try_recv().expect("an observation goes out");
        assert_eq!((o.target, o.up, o.fails), (TargetId(0), false, 1));
        // ...but the cluster sees both up: the datacenter is up, decided by the cluster.
        let applied = agg.input(verdicts(&keys, true, 3), t0).unwrap();
        assert_eq!(applied.active, 2);
        agg.publish(t0);
        let s = out.load();
        assert!(s.dcs[0].healthy);
        assert_eq!(s.dcs[0].health_input, Input::Cluster);
        assert_eq!(s.dcs[0].addr_up & 0b11, 0b11);
        assert_eq!(s.dcs[0].latency_ms, Some(12.0));

        // The cluster says both down: down.
        agg.input(verdicts(&keys, false, 3), t0).unwrap();
        agg.publish(t0);
        assert!(!out.load().dcs[0].healthy);
        assert!(
            out.load().why[0].reason.starts_with("cluster:"),
            "{}",
            out.load().why[0].reason
        );

        // The verdicts expire (etcd lost for the grace): target 1, not probed here, keeps
        // the state the cluster left; target 0 goes back to this node's own probes.
        let t1 = t0 + Duration::from_secs(4);
        agg.tick(t1);
        let st = agg.status(t1);
        let targets = &st.datacenters[0].targets;
        assert_eq!(targets[1].shared, None);
        assert!(
            !targets[1].up,
            "target 1 followed the cluster: down, no flap"
        );
        assert!(!targets[0].up, "target 0: its own probes (refused)");
        assert!(!out.load().dcs[0].healthy);
        assert_eq!(out.load().dcs[0].health_input, Input::Probes);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_targets_are_reported_and_a_withdrawn_verdict_hands_back() {
        let (mut agg, out, keys) = setup();
        let t0 = Instant::now();
        let mut u = verdicts(&keys[..1], false, 30);
        if let Update::Targets { verdicts, .. } = &mut u {
            let mut extra = verdicts[0].clone();
            extra.target = "tcp:1 127.0.0.1:1".into();
            verdicts.push(extra);
        }
        let applied = agg.input(u, t0).unwrap();
        assert_eq!(applied.unknown, vec!["tcp:1 127.0.0.1:1".to_string()]);
        assert_eq!(applied.active, 1);
        agg.publish(t0);
        // Target 0 down by the cluster, target 1 assumed up: min-up 1, still up.
        assert!(out.load().dcs[0].healthy);
        assert_eq!(out.load().dcs[0].addr_up & 0b11, 0b10);
        // An empty set withdraws it: every target probed here decides alone again.
        let applied = agg
            .input(
                Update::Targets {
                    source: Source::new(SourceKind::Cluster, "a"),
                    verdicts: vec![],
                },
                t0,
            )
            .unwrap();
        assert_eq!((applied.changed, applied.active), (1, 0));
        agg.publish(t0);
        assert_eq!(out.load().dcs[0].addr_up & 0b11, 0b11);
        assert_eq!(out.load().dcs[0].health_input, Input::Probes);
    }
}
