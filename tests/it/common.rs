//! Test harness: a server on 127.0.0.1 with an ephemeral port, a raw query builder (so tests
//! control case, EDNS and ECS byte by byte) and a response reader built on hickory-proto.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gslbd::server::{self, Running, ServeOptions};
use hickory_proto::op::{Message, ResponseCode};

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    running: Option<Running>,
    rt: tokio::runtime::Runtime,
}

impl TestServer {
    /// Writes `files` (name, text) into a fresh zones directory and starts serving it.
    pub fn start(files: &[(&str, &str)]) -> TestServer {
        Self::start_with(files, |_| {})
    }

    pub fn start_with(files: &[(&str, &str)], tweak: impl FnOnce(&mut ServeOptions)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write zone");
        }
        let mut opts = ServeOptions::new(dir.path(), vec!["127.0.0.1:0".parse().unwrap()]);
        opts.udp_threads = 2;
        opts.shutdown_grace = Duration::from_secs(1);
        tweak(&mut opts);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = rt.block_on(server::start(opts)).expect("server starts");
        TestServer {
            addr: running.dns_addrs[0],
            dir,
            running: Some(running),
            rt,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Reloads as SIGHUP would.
    pub fn reload(&self) -> Result<(), gslbd::config::ConfigErrors> {
        self.rt.block_on(self.running().state.reload())
    }

    /// Runs `f` on the server's runtime (for async control calls).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn zone_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn udp(&self, q: &Q) -> Resp {
        Resp::parse(udp_raw(self.addr, &q.bytes()).expect("udp answer"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
    }
}

pub fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

pub fn tcp_exchange(s: &mut TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// A query, built byte by byte.
#[derive(Clone, Debug)]
pub struct Q {
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    pub opcode: u8,
    pub rd: bool,
    /// EDNS: (udp size, version, options bytes)
    pub edns: Option<(u16, u8, Vec<u8>)>,
    /// The DO bit of the OPT record (only written with `edns`).
    pub dnssec_ok: bool,
}

pub fn q(name: &str, qtype: &str) -> Q {
    Q {
        id: 0x4242,
        name: name.to_string(),
        qtype: rtype(qtype),
        qclass: 1,
        opcode: 0,
        rd: false,
        edns: Some((1232, 0, vec![])),
        dnssec_ok: false,
    }
}

/// A type as written: a number, `TYPE<number>` (RFC 3597) or a mnemonic hickory-proto knows.
pub fn type_code(s: &str) -> Option<u16> {
    let up = s.to_ascii_uppercase();
    if let Ok(n) = up.strip_prefix("TYPE").unwrap_or(&up).parse::<u16>() {
        return Some(n);
    }
    up.parse::<hickory_proto::rr::RecordType>()
        .ok()
        .map(u16::from)
}

pub fn rtype(s: &str) -> u16 {
    match s {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "DS" => 43,
        "IXFR" => 251,
        "AXFR" => 252,
        "ANY" => 255,
        "CAA" => 257,
        other => type_code(other).expect("a type name or number"),
    }
}

impl Q {
    /// Adds an EDNS Client Subnet option for `addr/prefix` (address bytes truncated).
    pub fn ecs(mut self, addr: IpAddr, prefix: u8) -> Q {
        let (family, octets): (u16, Vec<u8>) = match addr {
            IpAddr::V4(a) => (1, a.octets().to_vec()),
            IpAddr::V6(a) => (2, a.octets().to_vec()),
        };
        let n = usize::from(prefix).div_ceil(8);
        let mut opt = vec![0, 8];
        opt.extend_from_slice(&((4 + n) as u16).to_be_bytes());
        opt.extend_from_slice(&family.to_be_bytes());
        opt.push(prefix);
        opt.push(0);
        opt.extend_from_slice(&octets[..n]);
        let e = self.edns.get_or_insert((1232, 0, vec![]));
        e.2.extend_from_slice(&opt);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut v = self.id.to_be_bytes().to_vec();
        let mut flags: u16 = u16::from(self.opcode) << 11;
        if self.rd {
            flags |= 0x0100;
        }
        v.extend_from_slice(&flags.to_be_bytes());
        v.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        for label in self
            .name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
        {
            v.push(label.len() as u8);
            v.extend_from_slice(label.as_bytes());
        }
        v.push(0);
        v.extend_from_slice(&self.qtype.to_be_bytes());
        v.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some((size, version, opts)) = &self.edns {
            v.push(0);
            v.extend_from_slice(&41u16.to_be_bytes());
            v.extend_from_slice(&size.to_be_bytes());
            let do_bit = if self.dnssec_ok { 0x80 } else { 0 };
            v.extend_from_slice(&[0, *version, do_bit, 0]);
            v.extend_from_slice(&(opts.len() as u16).to_be_bytes());
            v.extend_from_slice(opts);
        }
        v
    }
}

/// A parsed response with sections rendered as `name ttl class type rdata` strings.
#[derive(Debug)]
pub struct Resp {
    pub raw: Vec<u8>,
    pub msg: Message,
}

impl Resp {
    pub fn parse(raw: Vec<u8>) -> Resp {
        let msg = Message::from_vec(&raw).expect("response parses");
        Resp { raw, msg }
    }
    pub fn rcode(&self) -> ResponseCode {
        self.msg.metadata.response_code
    }
    pub fn id(&self) -> u16 {
        self.msg.metadata.id
    }
    pub fn answers(&self) -> Vec<String> {
        self.msg.answers.iter().map(|r| r.to_string()).collect()
    }
    /// The ECS option of the response: (family, source, scope, address bytes).
    pub fn ecs(&self) -> Option<(u16, u8, u8, Vec<u8>)> {
        // Walk the raw OPT rather than trust a parser's normalisation.
        let opt_start = find_opt(&self.raw)?;
        let rdlen =
            u16::from_be_bytes([self.raw[opt_start + 9], self.raw[opt_start + 10]]) as usize;
        let mut at = opt_start + 11;
        let end = at + rdlen;
        while at + 4 <= end {
            let code = u16::from_be_bytes([self.raw[at], self.raw[at + 1]]);
            let len = u16::from_be_bytes([self.raw[at + 2], self.raw[at + 3]]) as usize;
            if code == 8 {
                let d = &self.raw[at + 4..at + 4 + len];
                return Some((
                    u16::from_be_bytes([d[0], d[1]]),
                    d[2],
                    d[3],
                    d[4..].to_vec(),
                ));
            }
            at += 4 + len;
        }
        None
    }
}

/// Offset of the OPT record (its root owner byte) in a response: the last record.
fn find_opt(raw: &[u8]) -> Option<usize> {
    let msg = Message::from_vec(raw).ok()?;
    msg.edns.as_ref()?;
    // OPT is written last by gslbd: scan backwards for "00 00 29".
    (12..raw.len().saturating_sub(10))
        .rev()
        .find(|&i| raw[i] == 0 && raw[i + 1] == 0 && raw[i + 2] == 41)
}

/// A GeoIP2 City record (what `mmdb-writer` stores for a network); `coords` None leaves
/// `location` out (the server then uses the country's centroid).
pub fn geo_city(
    continent: &str,
    country: &str,
    subs: &[&str],
    coords: Option<(f64, f64)>,
) -> mmdb_writer::Value {
    use mmdb_writer::Value;
    let iso = |code: &str| Value::map([("iso_code", Value::from(code))]);
    let mut fields = vec![
        ("continent", Value::map([("code", Value::from(continent))])),
        ("country", iso(country)),
        ("registered_country", iso(country)),
        ("subdivisions", Value::array(subs.iter().map(|s| iso(s)))),
    ];
    if let Some((lat, lon)) = coords {
        fields.push((
            "location",
            Value::map([
                ("latitude", Value::from(lat)),
                ("longitude", Value::from(lon)),
            ]),
        ));
    }
    Value::map(fields)
}

/// A port on 127.0.0.1 free for both UDP and TCP, for a child process or an etcd member to
/// bind. Never the same one twice in this test process: tests run in parallel, and two that
/// pick before either binds could otherwise get the same port from the kernel.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
        let port = u.local_addr().expect("local addr").port();
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gslbd"))
}

/// The zone most tests use.
pub const EXAMPLE: &str = r#"
origin = "example.com."
ttl = 3600
[soa]
mname = "ns1.example.com."
rname = "hostmaster.example.com."
serial = 7
minimum = 300
[records."@"]
NS = ["ns1", "ns2.example.com."]
MX = ["10 mail"]
[records.ns1]
A = ["192.0.2.1"]
[records.ns2]
A = ["192.0.2.2"]
AAAA = ["2001:db8::2"]
[records.mail]
A = { values = ["192.0.2.25"], ttl = 600 }
[records.www]
A = ["192.0.2.10", "192.0.2.11"]
AAAA = ["2001:db8::10"]
[records.alias]
CNAME = ["www"]
[records.chain]
CNAME = ["alias"]
[records.away]
CNAME = ["www.elsewhere.net."]
[records.toinner]
CNAME = ["host.inner.example.com."]
[records.dangling]
CNAME = ["missing"]
[records.loop1]
CNAME = ["loop2"]
[records.loop2]
CNAME = ["loop1"]
[records."*.wild"]
A = ["192.0.2.99"]
TXT = ["wildcard"]
[records."real.wild"]
TXT = ["i exist"]
[records."a.b.deep"]
A = ["192.0.2.77"]
[records.sub]
NS = ["ns.sub", "ns.other.net."]
[records."ns.sub"]
A = ["192.0.2.53"]
[records.big]
TXT = [
  "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
  "1111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111",
  "2222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222",
  "3333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333",
  "4444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444",
  "5555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555",
]
"#;

pub const INNER: &str = r#"
origin = "inner.example.com."
[soa]
mname = "ns1.example.com."
rname = "hostmaster.example.com."
serial = 1
ttl = 60
minimum = 600
[records."@"]
NS = ["ns1.example.com."]
[records.host]
A = ["198.51.100.7"]
"#;

// ---------------------------------------------------------------------------------------------
// Switchable HTTP health endpoints on loopback (probe end-to-end tests).
// ---------------------------------------------------------------------------------------------

/// What a [`HealthHttp`] endpoint does with the next request.
#[derive(Clone, Debug, PartialEq)]
pub enum HealthMode {
    /// `200` with body `ok`.
    Healthy,
    /// This status, body `no`.
    Status(u16),
    /// `200` with this body (JSON load figures, wrong bodies).
    Body(String),
    /// Healthy, after this delay.
    Slow(Duration),
    /// Accept, read the request, never answer; hold the connection until the client closes.
    Hang,
    /// Nothing listening: connections are refused.
    Refuse,
}

struct HealthShared {
    mode: std::sync::Mutex<HealthMode>,
    /// Arrival time of every complete request, and the cluster node named in its
    /// User-Agent (`gslbd-probe/x (node NAME)`), if any.
    hits: std::sync::Mutex<Vec<(std::time::Instant, Option<String>)>>,
    /// Requests from these cluster nodes get `503` (a probe path broken for them only).
    deny: std::sync::Mutex<Vec<String>>,
    /// The Host header of every complete request (`None`: without one).
    hosts: std::sync::Mutex<Vec<Option<String>>>,
    open: std::sync::atomic::AtomicUsize,
    max_open: std::sync::atomic::AtomicUsize,
}

/// A tiny HTTP/1.1 health endpoint on a loopback address, switchable between the modes of
/// [`HealthMode`], counting requests. Runs on its own runtime, so it outlives (and is
/// independent of) the gslbd servers of a test, including across their restarts.
pub struct HealthHttp {
    pub addr: SocketAddr,
    shared: std::sync::Arc<HealthShared>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn health_rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("health-http")
            .enable_all()
            .build()
            .expect("health endpoint runtime")
    })
}

impl HealthHttp {
    /// A healthy endpoint on 127.0.0.1, ephemeral port.
    pub fn start() -> HealthHttp {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// A healthy endpoint on `addr` (any 127.0.0.0/8 address; port 0 = ephemeral).
    pub fn start_on(addr: SocketAddr) -> HealthHttp {
        let mut h = HealthHttp {
            addr,
            shared: std::sync::Arc::new(HealthShared {
                mode: std::sync::Mutex::new(HealthMode::Healthy),
                hits: std::sync::Mutex::new(Vec::new()),
                deny: std::sync::Mutex::new(Vec::new()),
                hosts: std::sync::Mutex::new(Vec::new()),
                open: Default::default(),
                max_open: Default::default(),
            }),
            task: std::sync::Mutex::new(None),
        };
        h.addr = h.listen();
        h
    }

    fn listen(&self) -> SocketAddr {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _enter = health_rt().enter();
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        // Rebinding the same port after `Refuse` must not trip over TIME_WAIT.
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(self.addr).expect("bind health endpoint");
        let listener = sock.listen(1024).expect("listen");
        let bound = listener.local_addr().expect("local addr");
        let shared = self.shared.clone();
        let task = health_rt().spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let open = shared.open.fetch_add(1, SeqCst) + 1;
                    shared.max_open.fetch_max(open, SeqCst);
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    let mut complete = false;
                    while req.len() < 8192 {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                        if req.windows(4).any(|w| w == b"\r\n\r\n") {
                            complete = true;
                            break;
                        }
                    }
                    if complete {
                        let node = node_of(&req);
                        shared
                            .hits
                            .lock()
                            .unwrap()
                            .push((std::time::Instant::now(), node.clone()));
                        let host = String::from_utf8_lossy(&req).lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
                        });
                        shared.hosts.lock().unwrap().push(host);
                        let denied = node
                            .as_ref()
                            .is_some_and(|n| shared.deny.lock().unwrap().contains(n));
                        let mode = if denied {
                            HealthMode::Status(503)
                        } else {
                            shared.mode.lock().unwrap().clone()
                        };
                        let reply = match mode {
                            HealthMode::Healthy | HealthMode::Refuse => Some((200, "ok".into())),
                            HealthMode::Status(c) => Some((c, "no".into())),
                            HealthMode::Body(b) => Some((200, b)),
                            HealthMode::Slow(d) => {
                                tokio::time::sleep(d).await;
                                Some((200, "ok".into()))
                            }
                            HealthMode::Hang => {
                                while let Ok(n) = s.read(&mut buf).await {
                                    if n == 0 {
                                        break;
                                    }
                                }
                                None
                            }
                        };
                        if let Some((code, body)) = reply {
                            let resp = format!(
                                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = s.write_all(resp.as_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                    }
                    shared.open.fetch_sub(1, SeqCst);
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
        bound
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switch what the endpoint does; `Refuse` closes the listener, leaving it re-opens it.
    pub fn set(&self, mode: HealthMode) {
        let old = std::mem::replace(&mut *self.shared.mode.lock().unwrap(), mode.clone());
        if mode == HealthMode::Refuse && old != HealthMode::Refuse {
            if let Some(t) = self.task.lock().unwrap().take() {
                t.abort();
                // Wait until the listener is really closed.
                health_rt().block_on(async {
                    let _ = t.await;
                });
            }
        } else if old == HealthMode::Refuse && mode != HealthMode::Refuse {
            self.listen();
        }
    }

    /// The Host header of every complete request so far.
    pub fn hosts(&self) -> Vec<Option<String>> {
        self.shared.hosts.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.shared.hits.lock().unwrap().len()
    }

    /// Arrival times of every request so far.
    pub fn hit_times(&self) -> Vec<std::time::Instant> {
        self.shared
            .hits
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| *t)
            .collect()
    }

    /// Arrival time of the first request, if any.
    pub fn first_hit(&self) -> Option<std::time::Instant> {
        self.shared.hits.lock().unwrap().first().map(|(t, _)| *t)
    }

    /// Requests received in `[from, to)`.
    pub fn hits_between(&self, from: std::time::Instant, to: std::time::Instant) -> usize {
        let h = self.shared.hits.lock().unwrap();
        h.iter().filter(|(t, _)| *t >= from && *t < to).count()
    }

    /// Requests received in `[from, to)` per cluster node (from the probes' User-Agent).
    pub fn hits_by_node(
        &self,
        from: std::time::Instant,
        to: std::time::Instant,
    ) -> std::collections::BTreeMap<String, usize> {
        let h = self.shared.hits.lock().unwrap();
        let mut m = std::collections::BTreeMap::new();
        for (_, n) in h.iter().filter(|(t, _)| *t >= from && *t < to) {
            *m.entry(n.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        m
    }

    /// Answer `503` to the probes of these cluster nodes only (their probe path is broken);
    /// an empty list heals it.
    pub fn deny_nodes(&self, nodes: &[&str]) {
        *self.shared.deny.lock().unwrap() = nodes.iter().map(|n| n.to_string()).collect();
    }

    /// Connections open now (hanging probes show up here).
    pub fn open(&self) -> usize {
        self.shared.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn max_open(&self) -> usize {
        self.shared
            .max_open
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The cluster node a probe request names in its User-Agent: `gslbd-probe/x (node NAME)`.
fn node_of(req: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(req);
    let ua = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("user-agent:"))?;
    let start = ua.find("(node ")? + "(node ".len();
    let end = ua[start..].find(')')? + start;
    Some(ua[start..end].to_string())
}

impl Drop for HealthHttp {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}
