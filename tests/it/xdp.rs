//! The AF_XDP listener end to end (feature `xdp`; root only, skipped with the reason printed
//! otherwise). Each test builds its own pair of network namespaces joined by a veth pair,
//! runs the real `gslbd` binary in the server namespace with `--listen-xdp` on its end of the
//! pair and socket listeners on the same addresses (port 53 for TCP, port 5300 for the UDP
//! socket path), sends queries from the client namespace, and removes everything at the end.
//!
//! ```text
//! client ns: 192.0.2.2, 81.2.69.10 (EU), 198.51.100.77 (NA), 203.0.113.9 (OC),
//!            2001:db8::2, 2001:db8:100::9 (AS)
//!      |  veth (no static neighbours: ARP and ND have to work through the XDP program)
//! server ns: 192.0.2.1, 2001:db8::1; gslbd: UDP 53 over AF_XDP, TCP 53 + UDP 5300 sockets
//! ```
//! The same query from the same source address goes to port 53 (XDP) and to port 5300 (the
//! kernel's UDP socket path); the answers must be the same bytes, or both absent.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::gslb::{DATACENTERS, ZONE, geo_fixture};
use crate::hardening::{cookie_of, with_cookie};

const SRV4: &str = "192.0.2.1";
const SRV6: &str = "2001:db8::1";
/// Client source addresses, and the GeoIP fixture's region of each.
const CLIENTS4: [&str; 4] = ["192.0.2.2", "81.2.69.10", "198.51.100.77", "203.0.113.9"];
const CLIENTS6: [&str; 2] = ["2001:db8::2", "2001:db8:100::9"];

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, veth, XDP)");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed");
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The query without an OPT record.
fn no_edns(mut query: Q) -> Q {
    query.edns = None;
    query
}

/// The TC bit of a response.
fn truncated(r: &Resp) -> bool {
    r.msg.metadata.truncation
}

/// Runs `ip ARGS`, panicking with its error output on failure.
fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that has entered network namespace `ns`: sockets it creates live
/// there (and stay there when used from other threads).
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            // SAFETY: a valid namespace descriptor; only this thread switches.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Two namespaces, a veth pair, zones and a GeoIP file; the server process once started.
struct Lab {
    srv_ns: String,
    cli_ns: String,
    srv_if: String,
    zones: tempfile::TempDir,
    geo: PathBuf,
    _geo_dir: tempfile::TempDir,
    server: Option<Child>,
    log: PathBuf,
}

impl Lab {
    fn new(queues: u32) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{:x}{}",
            std::process::id() & 0xfff,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let (srv_ns, cli_ns) = (format!("gslbd-xdp-{tag}-s"), format!("gslbd-xdp-{tag}-c"));
        let (srv_if, cli_if) = (format!("gxs{tag}"), format!("gxc{tag}"));
        let zones = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("datacenters.toml", DATACENTERS),
            ("gslb.test.toml", ZONE),
            ("example.com.toml", EXAMPLE),
        ] {
            std::fs::write(zones.path().join(name), text).expect("write zone");
        }
        let geo_dir = tempfile::tempdir().expect("tempdir");
        let geo = geo_fixture(geo_dir.path());
        let lab = Lab {
            srv_ns,
            cli_ns,
            srv_if,
            log: zones.path().join("gslbd.log"),
            zones,
            geo,
            _geo_dir: geo_dir,
            server: None,
        };
        let q = queues.to_string();
        run_ip(&["netns", "add", &lab.srv_ns]);
        run_ip(&["netns", "add", &lab.cli_ns]);
        #[rustfmt::skip]
        run_ip(&[
            "link", "add", &lab.srv_if, "netns", &lab.srv_ns, "numrxqueues", &q, "numtxqueues", &q,
            "type", "veth", "peer", "name", &cli_if, "netns", &lab.cli_ns,
            "numrxqueues", &q, "numtxqueues", &q,
        ]);
        let (s, c) = (lab.srv_ns.as_str(), lab.cli_ns.as_str());
        let (si, ci) = (lab.srv_if.as_str(), cli_if.as_str());
        run_ip(&["-n", s, "addr", "add", "192.0.2.1/24", "dev", si]);
        run_ip(&["-n", s, "addr", "add", "2001:db8::1/64", "dev", si, "nodad"]);
        run_ip(&["-n", c, "addr", "add", "192.0.2.2/24", "dev", ci]);
        for a in ["81.2.69.10/24", "198.51.100.77/24", "203.0.113.9/25"] {
            run_ip(&["-n", c, "addr", "add", a, "dev", ci]);
        }
        for a in ["2001:db8::2/64", "2001:db8:100::9/64"] {
            run_ip(&["-n", c, "addr", "add", a, "dev", ci, "nodad"]);
        }
        for (ns, dev) in [(s, si), (c, ci)] {
            run_ip(&["-n", ns, "link", "set", dev, "up"]);
            run_ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // The socket path answers the client's other addresses straight over the link.
        run_ip(&["-n", s, "route", "add", "default", "dev", si]);
        run_ip(&["-n", s, "-6", "route", "add", "default", "dev", si]);
        lab
    }

    fn start(&mut self, mode: &str) {
        self.start_with(mode, &[]);
    }

    /// Starts the server with the lab's listeners and `more` options.
    fn start_with(&mut self, mode: &str, more: &[&str]) {
        #[rustfmt::skip]
        let mut args = vec![
            "--listen", "192.0.2.1:53", "--listen", "192.0.2.1:5300",
            "--listen", "[2001:db8::1]:53", "--listen", "[2001:db8::1]:5300",
            "--api", "192.0.2.1:8053",
        ];
        args.extend_from_slice(more);
        let child = self.spawn(mode, &args);
        self.server = Some(child);
        self.wait_ready();
    }

    fn spawn(&self, mode: &str, extra: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let zones = self.zones.path().to_string_lossy().into_owned();
        let geo = self.geo.to_string_lossy().into_owned();
        #[rustfmt::skip]
        let mut args = vec![
            "netns", "exec", &self.srv_ns, bin().to_str().expect("utf-8 path"), "serve",
            "--zones", &zones, "--geoip", &geo, "--no-watch", "--udp-threads", "1",
            "--listen-xdp", &self.srv_if, "--xdp-mode", mode,
        ];
        args.extend_from_slice(extra);
        Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start gslbd")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until /status answers with the XDP listener in it.
    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Some(s) = self.try_status()
                && s["xdp"].as_array().is_some_and(|a| !a.is_empty())
            {
                return;
            }
            if let Some(Ok(Some(st))) = self.server.as_mut().map(|c| c.try_wait()) {
                panic!("gslbd exited ({st}):\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("gslbd not ready after 15 s:\n{}", self.log_text());
    }

    /// GET `path` from the API, from the client namespace over TCP to the server's veth
    /// address; the body.
    fn get(&self, path: &str) -> Option<String> {
        let addr: SocketAddr = "192.0.2.1:8053".parse().ok()?;
        let mut s = in_ns(&self.cli_ns, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        })
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: gslbd\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![];
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (_, body) = text.split_once("\r\n\r\n")?;
        Some(body.to_string())
    }

    fn try_status(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.get("/status")?).ok()
    }

    /// The sum of the `/metrics` samples of `name` with `labels`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").expect("/metrics answers");
        crate::ops::metric(&text, name, labels)
    }

    fn status(&self) -> serde_json::Value {
        self.try_status().expect("/status answers")
    }

    /// Sum of one per-queue counter of the XDP listener.
    fn counter(&self, name: &str) -> u64 {
        let s = self.status();
        s["xdp"][0]["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .map(|q| q[name].as_u64().expect("counter"))
            .sum()
    }

    /// A UDP socket in the client namespace bound to `src`.
    fn client(&self, src: &str) -> UdpSocket {
        let a = SocketAddr::new(ip(src), 0);
        in_ns(&self.cli_ns, move || UdpSocket::bind(a)).expect("bind client socket")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.server.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespaces deletes the veth pair in them.
        for ns in [&self.srv_ns, &self.cli_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Sends `q` from `sock` to `to`; the answer, or `None` after `wait`.
fn ask(sock: &UdpSocket, to: SocketAddr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    // Drop whatever a previous exchange left (a late answer must not pass for this one).
    sock.set_nonblocking(true).expect("nonblocking");
    let mut buf = vec![0u8; 65535];
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_nonblocking(false).expect("blocking");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    sock.send_to(q, to).expect("send");
    let t0 = Instant::now();
    while t0.elapsed() < wait {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == to => return Some(buf[..n].to_vec()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Malformed or odd messages: each must get the same treatment (same bytes or no answer)
/// on both paths.
fn odd_queries() -> Vec<(&'static str, Vec<u8>)> {
    let good = q("www.example.com", "A").bytes();
    let mut response = good.clone();
    response[2] |= 0x80; // QR: a response, not a query
    let mut notimp = good.clone();
    notimp[2] |= 2 << 3; // opcode STATUS
    let mut cut_name = good.clone();
    cut_name.truncate(20);
    let mut trailing = no_edns(q("www.example.com", "A")).bytes();
    trailing.extend_from_slice(&[1, 2, 3]);
    let mut no_question = good[..12].to_vec();
    no_question[5] = 0; // QDCOUNT 0
    vec![
        ("5 bytes", vec![1, 2, 3, 4, 5]),
        ("a response", response),
        ("opcode STATUS", notimp),
        ("name cut short", cut_name),
        ("trailing bytes", trailing),
        ("no question", no_question),
        ("EDNS version 1", {
            let mut x = q("www.example.com", "A");
            x.edns = Some((1232, 1, vec![]));
            x.bytes()
        }),
    ]
}

/// Queries whose answers must be identical over both paths, from every client address.
fn queries(v6: bool) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Q)> = vec![
        ("static A".into(), q("www.example.com", "A")),
        ("static AAAA".into(), q("www.example.com", "AAAA")),
        ("MX with additional".into(), q("example.com", "MX")),
        ("CNAME chain".into(), q("chain.example.com", "A")),
        ("NXDOMAIN".into(), q("nope.example.com", "A")),
        ("NXDOMAIN, GSLB zone".into(), q("nope.gslb.test", "A")),
        ("NODATA".into(), q("www.example.com", "MX")),
        (
            "oversize, no EDNS: TC".into(),
            no_edns(q("big.example.com", "TXT")),
        ),
        (
            "oversize, EDNS 1232: whole".into(),
            q("big.example.com", "TXT"),
        ),
        ("GSLB, no ECS".into(), q("geo.gslb.test", "A")),
        ("GSLB nearest, no ECS".into(), q("near.gslb.test", "AAAA")),
        ("GSLB hash, no ECS".into(), q("sticky.gslb.test", "A")),
        ("delegation".into(), q("x.sub.example.com", "A")),
    ];
    let regions = [
        ("81.2.69.0", 24, "EU-GB"),
        ("85.0.0.0", 16, "EU-DE"),
        ("198.51.100.0", 25, "NA"),
        ("198.51.100.200", 25, "NA subnet rule"),
        ("203.0.113.0", 25, "OC"),
        ("100.64.0.0", 10, "AF"),
        ("2001:db8:100::", 48, "AS-JP v6"),
        ("2001:db8:200::", 48, "EU-DE v6"),
    ];
    for (addr, prefix, region) in regions {
        for (name, t) in [
            ("geo.gslb.test", "A"),
            ("near.gslb.test", "AAAA"),
            ("sticky.gslb.test", "A"),
        ] {
            out.push((
                format!("{name} {t}, ECS {region}"),
                q(name, t).ecs(ip(addr), prefix),
            ));
        }
    }
    let mut small = q("big.example.com", "TXT");
    small.edns = Some((512, 0, vec![]));
    out.push(("oversize, EDNS 512: TC".into(), small));
    let mut list: Vec<(String, Vec<u8>)> = out.into_iter().map(|(l, q)| (l, q.bytes())).collect();
    // Different ids per family, so an answer can only match its own query.
    if v6 {
        for (_, b) in &mut list {
            b[0] ^= 0x66;
        }
    }
    list
}

/// Compares XDP (port 53) and socket (port 5300) answers for every query from every client
/// address of one family; returns how many answers came over XDP.
fn compare_paths(lab: &Lab, v6: bool) -> u64 {
    let (srv, clients): (&str, &[&str]) = if v6 {
        (SRV6, &CLIENTS6)
    } else {
        (SRV4, &CLIENTS4)
    };
    let xdp = SocketAddr::new(ip(srv), 53);
    let sock = SocketAddr::new(ip(srv), 5300);
    let mut answered = 0;
    for src in clients {
        let c = lab.client(src);
        for (label, bytes) in queries(v6) {
            let a = ask(&c, xdp, &bytes, Duration::from_secs(2));
            let b = ask(&c, sock, &bytes, Duration::from_secs(2));
            assert!(a.is_some(), "{label} from {src}: no answer over XDP");
            assert_eq!(a, b, "{label} from {src}: XDP and socket answers differ");
            let r = Resp::parse(a.unwrap_or_default());
            if label.contains("TC") {
                assert!(truncated(&r), "{label}: TC expected");
            }
            answered += 1;
        }
        for (label, bytes) in odd_queries() {
            let a = ask(&c, xdp, &bytes, Duration::from_millis(400));
            let b = ask(&c, sock, &bytes, Duration::from_millis(400));
            assert_eq!(a, b, "{label} from {src}: XDP and socket paths differ");
            answered += u64::from(a.is_some());
        }
    }
    answered
}

/// The MAC address of an interface inside a namespace.
fn mac(ns: &str, dev: &str) -> String {
    let out = ip_out(&["-n", ns, "-o", "link", "show", "dev", dev]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("link/ether in ip link output")
        .to_string()
}

#[test]
fn xdp_answers_like_the_socket_path_v4_v6_tcp_arp_nd() {
    require_root!();
    let mut lab = Lab::new(1);
    // A fresh namespace has no neighbour entries: the client must resolve the server's MAC
    // through ARP and ND, which the XDP program passes to the kernel.
    let cli_if = lab.srv_if.replacen("gxs", "gxc", 1);
    assert_eq!(ip_out(&["-n", &lab.cli_ns, "neigh", "show"]).trim(), "");
    lab.start("auto");
    let s = lab.status();
    let x = &s["xdp"][0];
    assert_eq!(x["interface"], lab.srv_if.as_str());
    assert_eq!(x["ports"], serde_json::json!([53]));
    assert_eq!(x["mode"], "native", "veth has native XDP");
    assert_eq!(x["queues"].as_array().map(Vec::len), Some(1));
    let before = lab.counter("answered");

    let n4 = compare_paths(&lab, false);
    let n6 = compare_paths(&lab, true);
    // Every answer on port 53 came over AF_XDP (the socket on port 53 saw none of them).
    assert_eq!(lab.counter("answered") - before, n4 + n6);
    // And the query metrics count them under their own transport label; the same queries to
    // the socket on port 5300 count as udp.
    let queries = |t| lab.metric("gslbd_queries_total", &[("transport", t)]) as u64;
    assert_eq!(queries("xdp"), n4 + n6);
    assert_eq!(queries("udp"), n4 + n6);
    let answered = lab.metric("gslbd_xdp_answered_total", &[("interface", &lab.srv_if)]);
    assert_eq!(answered as u64, lab.counter("answered"));
    assert!(lab.log_text().contains("dns listening (udp over AF_XDP)"));

    // TCP to the same address and port is the kernel's, answered by the TCP listener.
    for srv in [SRV4, SRV6] {
        let to = SocketAddr::new(ip(srv), 53);
        let mut t = in_ns(&lab.cli_ns, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })
        .expect("tcp connect");
        t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let r = Resp::parse(
            tcp_exchange(&mut t, &q("www.example.com", "A").bytes()).expect("tcp answer"),
        );
        assert_eq!(
            r.answers(),
            vec![
                "www.example.com. 3600 IN A 192.0.2.10",
                "www.example.com. 3600 IN A 192.0.2.11"
            ]
        );
    }
    // ARP and ND resolved the server's address, and the program passed those frames.
    let neigh = ip_out(&["-n", &lab.cli_ns, "neigh", "show", "dev", &cli_if]);
    let srv_mac = mac(&lab.srv_ns, &lab.srv_if);
    for a in [SRV4, SRV6] {
        assert!(
            neigh
                .lines()
                .any(|l| l.starts_with(&format!("{a} ")) && l.contains(&srv_mac)),
            "no neighbour entry {a} -> {srv_mac}: {neigh}"
        );
    }
    assert!(lab.counter("passed") > 0);
    assert_eq!(
        lab.counter("dropped"),
        lab.counter("received") - lab.counter("answered")
    );
}

#[test]
fn xdp_restart_after_sigkill_reattaches() {
    require_root!();
    let mut lab = Lab::new(1);
    lab.start("auto");
    let c = lab.client("192.0.2.2");
    let to = SocketAddr::new(ip(SRV4), 53);
    let query = q("www.example.com", "A").bytes();
    assert!(ask(&c, to, &query, Duration::from_secs(2)).is_some());
    assert!(ip_out(&["-n", &lab.srv_ns, "link", "show", "dev", &lab.srv_if]).contains("prog/xdp"));

    lab.kill();
    // The program was attached through a BPF link: the kernel detached it with the process.
    let link = ip_out(&["-n", &lab.srv_ns, "link", "show", "dev", &lab.srv_if]);
    assert!(!link.contains("prog/xdp"), "program left behind: {link}");
    assert_eq!(ask(&c, to, &query, Duration::from_millis(300)), None);

    lab.start("auto");
    let before = lab.counter("answered");
    let r = Resp::parse(ask(&c, to, &query, Duration::from_secs(2)).expect("answer"));
    assert_eq!(r.answers().len(), 2);
    assert_eq!(lab.counter("answered"), before + 1);
}

#[test]
fn xdp_second_instance_on_the_same_interface_is_refused() {
    require_root!();
    let mut lab = Lab::new(1);
    lab.start("auto");
    let mut other = lab.spawn("auto", &["--listen", "192.0.2.1:5400", "--api", "none"]);
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = other.try_wait() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "second instance still running"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(
        lab.log_text().contains("already has an XDP program"),
        "{}",
        lab.log_text()
    );
    // The first instance still serves over XDP.
    let c = lab.client("192.0.2.2");
    let before = lab.counter("answered");
    let to = SocketAddr::new(ip(SRV4), 53);
    assert!(
        ask(
            &c,
            to,
            &q("www.example.com", "A").bytes(),
            Duration::from_secs(2)
        )
        .is_some()
    );
    assert_eq!(lab.counter("answered"), before + 1);
}

#[test]
fn xdp_generic_mode_two_queues() {
    require_root!();
    let mut lab = Lab::new(2);
    lab.start("generic");
    let s = lab.status();
    assert_eq!(s["xdp"][0]["mode"], "generic");
    assert_eq!(s["xdp"][0]["bind"], "copy");
    assert_eq!(s["xdp"][0]["queues"].as_array().map(Vec::len), Some(2));
    let before = lab.counter("answered");
    let to = SocketAddr::new(ip(SRV4), 53);
    let sock = SocketAddr::new(ip(SRV4), 5300);
    // Many source ports, so the client's kernel spreads them over both queues.
    for i in 0..20u16 {
        let c = lab.client(CLIENTS4[usize::from(i) % CLIENTS4.len()]);
        let mut query = q("geo.gslb.test", "A").ecs(ip("81.2.69.0"), 24);
        query.id = i;
        let a = ask(&c, to, &query.bytes(), Duration::from_secs(2));
        assert!(a.is_some(), "query {i}");
        assert_eq!(a, ask(&c, sock, &query.bytes(), Duration::from_secs(2)));
    }
    assert_eq!(lab.counter("answered") - before, 20);
}

/// Sends every packet of `burst` from `sock` to its destination as fast as it goes, then
/// listens `grace` longer; the full answers per source port of the answer, and when the last
/// one arrived. Limited responses are dropped (the server runs with slip 0), so an answer is a
/// response the rate limit let through.
fn burst(
    sock: &UdpSocket,
    burst: &[(SocketAddr, Vec<u8>)],
    grace: Duration,
) -> (std::collections::BTreeMap<u16, u64>, Option<Instant>) {
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let (mut got, mut last) = (std::collections::BTreeMap::new(), None);
    let mut buf = vec![0u8; 4096];
    for (to, bytes) in burst {
        sock.send_to(bytes, to).expect("send");
    }
    let sent = Instant::now();
    while sent.elapsed() < grace {
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let r = Resp::parse(buf[..n].to_vec());
            if !truncated(&r) && !r.answers().is_empty() {
                *got.entry(from.port()).or_default() += 1;
                last = Some(Instant::now());
            }
        }
    }
    (got, last)
}

#[test]
fn xdp_is_rate_limited_and_checks_cookies_as_udp_sockets_do() {
    require_root!();
    let mut lab = Lab::new(1);
    // Rate 1 (a burst of 1, then 1 a second) and slip 0: every limited response is dropped,
    // so each answer that arrives is one the limit let through.
    lab.start_with("auto", &["--rrl-rate", "1", "--rrl-slip", "0"]);
    let xdp = SocketAddr::new(ip(SRV4), 53);
    let sock = SocketAddr::new(ip(SRV4), 5300);

    // Cookies, from a prefix the flood below does not use. A client cookie alone over XDP:
    // the answer carries it back with our server cookie.
    let c = lab.client("192.0.2.2");
    let client = *b"xdpclnt1";
    let with = |server: &[u8]| with_cookie(q("www.example.com", "A"), client, server).bytes();
    let wait = Duration::from_secs(2);
    let raw = ask(&c, xdp, &with(&[]), wait).expect("answer over XDP");
    let (cookie, rcode) = cookie_of(&raw);
    let cookie = cookie.expect("cookie echoed over XDP");
    assert_eq!((rcode, cookie.len(), &cookie[..8]), (0, 24, &client[..]));
    let made_by_xdp = cookie[8..].to_vec();
    // One secret for both paths: the cookie made over XDP is valid over the UDP socket, and
    // one made over the socket is valid over XDP (valid cookies are not rate limited, so
    // these repeated queries from one prefix are all answered).
    let raw = ask(&c, sock, &with(&made_by_xdp), wait).expect("socket answer");
    assert_eq!(cookie_of(&raw).1, 0);
    let made_by_socket = cookie_of(&raw).0.expect("fresh cookie")[8..].to_vec();
    let raw = ask(&c, xdp, &with(&made_by_socket), wait).expect("answer over XDP");
    assert_eq!(cookie_of(&raw).1, 0);
    assert_eq!(Resp::parse(raw).answers().len(), 2);
    // A server cookie we did not make: BADCOOKIE with a fresh cookie and no records over XDP,
    // as over the UDP socket (another bucket, class error: the first of each passes).
    let forged = [1u8, 0, 0, 0, 0x60, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let c6 = lab.client("2001:db8::2");
    for (from, to) in [(&c, xdp), (&c6, SocketAddr::new(ip(SRV6), 5300))] {
        let raw = ask(from, to, &with(&forged), wait).expect("BADCOOKIE answer");
        let (cookie, rcode) = cookie_of(&raw);
        assert_eq!(rcode, 23, "BADCOOKIE from {to}");
        assert_eq!(u16::from_be_bytes([raw[6], raw[7]]), 0, "no answer");
        assert_eq!(cookie.map(|c| c.len()), Some(24));
    }
    let cookies = |r| lab.metric("gslbd_cookie_queries_total", &[("result", r)]) as u64;
    assert_eq!(cookies("invalid"), 2);

    // The flood, from another prefix (81.2.69.0/24): first its cookie for later, asked for
    // another name (another bucket).
    let f = lab.client("81.2.69.10");
    let mx = with_cookie(q("example.com", "MX"), client, &[]).bytes();
    let raw = ask(&f, sock, &mx, wait).expect("socket answer");
    let fresh = cookie_of(&raw).0.expect("cookie")[8..].to_vec();
    // 60 identical queries over XDP: the first finds a full bucket and is answered, the rest
    // get what one a second allows.
    let pkt = q("www.example.com", "A").bytes();
    let t0 = Instant::now();
    let (got, last) = burst(
        &f,
        &vec![(xdp, pkt.clone()); 60],
        Duration::from_millis(150),
    );
    let over_xdp = got.get(&53).copied().unwrap_or(0);
    let secs = last.map_or(0.0, |t| t.duration_since(t0).as_secs_f64());
    eprintln!("XDP flood: {got:?} full answers, the last after {secs:.2} s");
    assert!(over_xdp >= 1, "the first query over XDP passes: {got:?}");
    assert!(
        over_xdp <= 1 + secs as u64,
        "{over_xdp} answers over XDP in {secs:.2} s, at most 1 + 1 a second"
    );
    // Then 60 to the UDP socket: XDP and the sockets share the buckets, so the socket path
    // does not start with a full one (it would answer at least its first query).
    let (got2, last2) = burst(
        &f,
        &vec![(sock, pkt.clone()); 60],
        Duration::from_millis(150),
    );
    let over_socket = got2.get(&5300).copied().unwrap_or(0);
    let secs = last2.map_or(secs, |t| t.duration_since(t0).as_secs_f64());
    let full = over_xdp + over_socket;
    eprintln!("then the socket: {got2:?} full answers, the last after {secs:.2} s");
    assert!(
        full <= 1 + secs as u64,
        "{full} answers over both paths in {secs:.2} s: one bucket allows 1 + 1 a second"
    );
    let dropped = lab.metric(
        "gslbd_rrl_limited_total",
        &[("class", "answer"), ("action", "dropped")],
    ) as u64;
    assert_eq!(
        dropped,
        120 - full,
        "every other response was dropped by RRL"
    );
    // The XDP listener counts the responses the limit dropped among its drops.
    assert!(lab.counter("dropped") >= 60 - over_xdp);

    // A valid cookie exempts the client over XDP, as over UDP: the same prefix, still over
    // its rate, gets all 30 answers of a burst that carries one.
    let exempt_before = lab.metric("gslbd_rrl_exempt_total", &[("reason", "cookie")]) as u64;
    let (got, _) = burst(
        &f,
        &vec![(xdp, with(&fresh)); 30],
        Duration::from_millis(500),
    );
    assert_eq!(
        got.get(&53).copied(),
        Some(30),
        "cookie queries over XDP: {got:?}"
    );
    let exempt = lab.metric("gslbd_rrl_exempt_total", &[("reason", "cookie")]) as u64;
    assert_eq!(exempt - exempt_before, 30);
}
