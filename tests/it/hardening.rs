//! The defences against abuse, over real sockets with bounded counts: the TCP limits (a share
//! per client, the oldest idle closed when full, trickle and non-reading clients closed), the
//! descriptor limit (the binary with a lowered RLIMIT_NOFILE), the API's limits, response rate
//! limiting and DNS cookies (RFC 7873), and the retry of a failed reload.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gslbd::dns::RrlConfig;
use gslbd::server::ServeOptions;

use crate::common::*;

// ---- helpers ---------------------------------------------------------------------------------

fn server(tweak: impl FnOnce(&mut ServeOptions)) -> TestServer {
    TestServer::start_with(&[("example.com.toml", EXAMPLE)], |o| {
        o.api = Some("127.0.0.1:0".parse().unwrap());
        tweak(o);
    })
}

/// A TCP connection from local address `from` (any 127.0.0.0/8 address works on Linux).
fn tcp_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn udp_from(from: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s
}

/// True when the server closed `s`: a read sees EOF or a reset (within the read timeout).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_)) && {
        // A read timeout is not a close.
        !matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

fn served(s: &mut TcpStream) -> bool {
    tcp_exchange(s, &q("www.example.com", "A").bytes())
        .map(Resp::parse)
        .is_some_and(|r| r.answers().len() == 2)
}

/// A plain HTTP/1.1 GET (Connection: close) on the server's API.
fn http_get(s: &TestServer, path: &str) -> String {
    let mut c = TcpStream::connect(s.running().api_addr.expect("api")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

fn metric(s: &TestServer, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = http_get(s, "/metrics");
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse");
    scrape
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn closed_metric(s: &TestServer, listener: &str, reason: &str) -> f64 {
    metric(
        s,
        "gslbd_connections_closed_total",
        &[("listener", listener), ("reason", reason)],
    )
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what}: not within {limit:?}");
}

// ---- TCP -------------------------------------------------------------------------------------

#[test]
fn per_client_tcp_limit_refuses_the_excess_while_another_client_is_served() {
    let s = server(|o| {
        o.tcp_max_per_client = 2;
        o.tcp_max_connections = 50;
    });
    let a = Ipv4Addr::new(127, 0, 0, 1);
    let mut a1 = tcp_from(a, s.addr);
    let mut a2 = tcp_from(a, s.addr);
    assert!(served(&mut a1) && served(&mut a2));
    // A third connection of the same address is closed without an answer.
    let mut a3 = tcp_from(a, s.addr);
    assert!(!served(&mut a3), "over the per-client share");
    // Another client address is served meanwhile, and the first two still are.
    let mut b = tcp_from(Ipv4Addr::new(127, 0, 0, 2), s.addr);
    assert!(served(&mut b));
    assert!(served(&mut a1) && served(&mut a2));
    assert_eq!(closed_metric(&s, "dns_tcp", "per_client_limit"), 1.0);
    // A slot freed by the client is its own again.
    drop(a1);
    wait_for("the freed slot", Duration::from_secs(3), || {
        let mut c = tcp_from(a, s.addr);
        served(&mut c)
    });
}

#[test]
fn when_full_the_oldest_idle_connection_is_closed_for_a_new_one() {
    let s = server(|o| {
        o.tcp_max_connections = 3;
        o.tcp_max_per_client = 10;
    });
    let lo = Ipv4Addr::LOCALHOST;
    let mut c: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut x = tcp_from(lo, s.addr);
            assert!(served(&mut x));
            std::thread::sleep(Duration::from_millis(30));
            x
        })
        .collect();
    // c[0] has been idle the longest; use c[1] and c[2] again.
    assert!(served(&mut c[1]) && served(&mut c[2]));
    let mut d = tcp_from(lo, s.addr);
    assert!(served(&mut d), "a new connection is served, not refused");
    assert!(
        closed_by_server(&mut c[0]),
        "the oldest idle one was closed"
    );
    assert!(served(&mut c[1]) && served(&mut c[2]));
    assert_eq!(closed_metric(&s, "dns_tcp", "evicted"), 1.0);
    assert_eq!(closed_metric(&s, "dns_tcp", "full"), 0.0);
    assert_eq!(
        metric(&s, "gslbd_connections_open", &[("listener", "dns_tcp")]),
        3.0
    );
}

#[test]
fn a_trickling_client_is_closed_by_the_lifetime() {
    let s = server(|o| {
        o.tcp_idle_timeout = Duration::from_millis(1500);
        o.tcp_lifetime = Duration::from_millis(2500);
        o.tcp_max_queries = 0;
    });
    // One query every 300 ms keeps the idle timer from ever firing; the lifetime still ends
    // the connection.
    let t = Instant::now();
    let mut c = tcp_from(Ipv4Addr::LOCALHOST, s.addr);
    let mut answered = 0;
    while t.elapsed() < Duration::from_secs(8) && served(&mut c) {
        answered += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let lived = t.elapsed();
    assert!(
        (Duration::from_millis(2400)..Duration::from_millis(5000)).contains(&lived),
        "closed after {lived:?} and {answered} answers"
    );
    assert!(answered >= 5, "{answered}");
    assert_eq!(closed_metric(&s, "dns_tcp", "lifetime"), 1.0);
    assert_eq!(closed_metric(&s, "dns_tcp", "idle"), 0.0);
}

#[test]
fn the_query_budget_and_the_read_timeout_close_a_connection() {
    let s = server(|o| {
        o.tcp_max_queries = 4;
        o.tcp_read_timeout = Duration::from_millis(500);
    });
    // The 4th answer is the last on a connection.
    let mut c = tcp_from(Ipv4Addr::LOCALHOST, s.addr);
    for _ in 0..4 {
        assert!(served(&mut c));
    }
    assert!(closed_by_server(&mut c));
    assert_eq!(closed_metric(&s, "dns_tcp", "query_budget"), 1.0);
    // Half a length prefix, then nothing: the read timeout closes it.
    let mut c = tcp_from(Ipv4Addr::LOCALHOST, s.addr);
    c.write_all(&[0]).unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut c));
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    // A message trickled a byte at a time: the read timeout runs from its first byte.
    let mut c = tcp_from(Ipv4Addr::LOCALHOST, s.addr);
    let query = q("www.example.com", "A").bytes();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    let t = Instant::now();
    for b in &framed {
        if c.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed_by_server(&mut c));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(closed_metric(&s, "dns_tcp", "read_timeout"), 2.0);
}

#[test]
fn a_client_that_does_not_read_is_closed_by_the_write_timeout() {
    let s = server(|o| {
        o.tcp_write_timeout = Duration::from_millis(300);
        o.tcp_idle_timeout = Duration::from_secs(30);
        o.tcp_max_queries = 0;
    });
    // A small receive buffer, and pipelined queries for a big answer that are never read.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&s.addr.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut query = q("big.example.com", "TXT").bytes();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.append(&mut query);
    let batch: Vec<u8> = framed
        .iter()
        .copied()
        .cycle()
        .take(framed.len() * 100)
        .collect();
    let t = Instant::now();
    let mut sent = 0;
    let mut write_failed = false;
    // Bounded: at most 30 000 queries (~20 MB of answers), at most 20 s.
    while sent < 30_000 && t.elapsed() < Duration::from_secs(20) {
        if c.write_all(&batch).is_err() {
            write_failed = true;
            break;
        }
        sent += 100;
        if closed_metric(&s, "dns_tcp", "write_timeout") >= 1.0 {
            break;
        }
    }
    wait_for("the write timeout", Duration::from_secs(10), || {
        closed_metric(&s, "dns_tcp", "write_timeout") == 1.0
    });
    // Meanwhile (and after) another client is served.
    let mut other = tcp_from(Ipv4Addr::new(127, 0, 0, 3), s.addr);
    assert!(served(&mut other));
    let _ = write_failed;
}

#[test]
fn idle_tcp_connections_are_closed() {
    let s = server(|o| o.tcp_idle_timeout = Duration::from_millis(300));
    let mut a = tcp_from(Ipv4Addr::LOCALHOST, s.addr);
    assert!(served(&mut a));
    let t = Instant::now();
    assert!(closed_by_server(&mut a));
    assert!(t.elapsed() < Duration::from_secs(2));
    wait_for("the idle close counted", Duration::from_secs(2), || {
        closed_metric(&s, "dns_tcp", "idle") == 1.0
    });
}

// ---- descriptors -----------------------------------------------------------------------------

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
fn out_of_descriptors_the_server_backs_off_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.toml"), EXAMPLE).unwrap();
    let (dns_port, api_port) = (free_port(), free_port());
    let dns: SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--zones"])
        .arg(dir.path())
        .args(["--listen", &dns.to_string()])
        .args(["--api", &format!("127.0.0.1:{api_port}")])
        .args([
            "--udp-threads",
            "1",
            "--no-watch",
            "--tcp-max-connections",
            "1000",
        ])
        .args(["--tcp-max-per-client", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only setrlimit, which is async-signal-safe, runs.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let guard = Kill(child);
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let l = log.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = std::io::BufReader::new(stderr);
        while let Ok(n) = std::io::BufRead::read_line(&mut r, &mut s) {
            if n == 0 {
                break;
            }
            l.lock().unwrap().push_str(&s);
            s.clear();
        }
    });
    wait_for("the server answers", Duration::from_secs(20), || {
        udp_raw(dns, &q("www.example.com", "A").bytes()).is_some()
    });
    // 100 idle connections: more than the 64 descriptors the process has.
    let conns: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(dns).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let c0 = cpu_secs(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_secs(pid) - c0;
    assert!(
        used < 0.5,
        "{used:.2} s of CPU in 2 s while out of descriptors: spinning"
    );
    // UDP still answers, and a new TCP client is served: an idle connection makes room.
    assert!(udp_raw(dns, &q("www.example.com", "A").bytes()).is_some());
    let mut c = TcpStream::connect(dns).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = tcp_exchange(&mut c, &q("www.example.com", "A").bytes());
    let text = log.lock().unwrap().clone();
    assert!(
        r.is_some(),
        "a new TCP client is served while descriptors are short: {text}"
    );
    assert!(
        text.contains("accept failed; waiting before the next try"),
        "the back-off is logged: {text}"
    );
    // Throttled: a handful of lines, not one per failed accept.
    assert!(text.matches("accept failed").count() <= 3, "{text}");
    drop(conns);
    drop(guard);
}

// ---- API -------------------------------------------------------------------------------------

fn api_server(token: Option<&str>, tweak: impl FnOnce(&mut gslbd::api::ApiLimits)) -> TestServer {
    let token = token.map(str::to_string);
    server(move |o| {
        o.api_token = token;
        tweak(&mut o.api_limits);
    })
}

/// Sends `head` and then up to `body_bytes` of body, slowly; returns the response text read
/// so far and how many body bytes went out before it came.
fn put_with_big_body(s: &TestServer, head: &str, body_bytes: usize) -> (String, usize) {
    let mut c = TcpStream::connect(s.running().api_addr.unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 1024];
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while sent < body_bytes {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
        if c.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = c.read(&mut buf).map(|n| got.extend_from_slice(&buf[..n]));
    (String::from_utf8_lossy(&got).to_string(), sent)
}

#[test]
fn api_refuses_a_tokenless_big_body_before_reading_it_and_bounds_bodies() {
    let s = api_server(Some("s3cret"), |_| {});
    let head = "PUT /datacenters/fra/admin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n";
    let (resp, sent) = put_with_big_body(&s, head, 10_000_000);
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(
        sent < 200_000,
        "answered after {sent} body bytes: the body was read first"
    );
    // The same for the other calls that take a body (health push, Alertmanager).
    for path in ["PUT /datacenters/fra/health", "POST /alertmanager"] {
        let head = format!("{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n");
        let (resp, sent) = put_with_big_body(&s, &head, 10_000_000);
        assert!(resp.starts_with("HTTP/1.1 401"), "{path}: {resp}");
        assert!(sent < 200_000, "{path}: answered after {sent} body bytes");
    }
    // With the token, a body over the limit is refused by its declared length (413).
    let head = "PUT /datacenters/fra/admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\
                Content-Length: 10000000\r\n\r\n";
    let (resp, sent) = put_with_big_body(&s, head, 10_000_000);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(sent < 200_000, "{sent}");
    // ... and a chunked one once it passes the limit.
    let head = "PUT /datacenters/fra/admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let mut c = TcpStream::connect(s.running().api_addr.unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    for _ in 0..8 {
        let _ = c.write_all(b"400\r\n");
        let _ = c.write_all(&[b'x'; 1024]);
        let _ = c.write_all(b"\r\n");
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
}

#[test]
fn api_closes_idle_and_slow_connections_and_bounds_each_client() {
    let s = api_server(None, |l| {
        l.header_timeout = Duration::from_millis(500);
        l.max_connections = 8;
    });
    let api = s.running().api_addr.unwrap();
    // A connection that sends nothing is closed after the header timeout.
    let mut idle = TcpStream::connect(api).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut idle));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // So is one that trickles its headers.
    let mut slow = TcpStream::connect(api).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let t = Instant::now();
    for b in b"GET /healthz HTTP/1.1\r\n" {
        if slow.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed_by_server(&mut slow));
    assert!(t.elapsed() < Duration::from_secs(3));
    // A keep-alive connection that has been answered is closed once idle too.
    let mut ka = TcpStream::connect(api).unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(ka.read(&mut buf).unwrap() > 0);
    assert!(closed_by_server(&mut ka));
    // Counted just after the close the client saw.
    wait_for("two idle closes counted", Duration::from_secs(5), || {
        closed_metric(&s, "api", "idle") >= 2.0
    });
    // One address holds at most 4 of the 8 connections (a fourth, at least 4); with the
    // default header timeout (5 s), so none of them times out meanwhile.
    drop(s);
    let s = api_server(None, |l| l.max_connections = 8);
    let api = s.running().api_addr.unwrap();
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(api).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fifth = TcpStream::connect(api).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = fifth.read_to_string(&mut out);
    assert!(out.is_empty(), "over the per-client share: {out}");
    drop(held);
    // The scrape comes from the same address: it gets through once the held ones are gone.
    wait_for(
        "the per-client refusal counted",
        Duration::from_secs(5),
        || closed_metric(&s, "api", "per_client_limit") >= 1.0,
    );
}

// ---- response rate limiting ------------------------------------------------------------------

fn rrl(rate: u32) -> RrlConfig {
    RrlConfig {
        rate,
        exempt: vec![],
        ..RrlConfig::default()
    }
}

/// (full answers, truncated answers) counted by a receiver on `sock` until `stop`.
fn count_answers(sock: UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (mut full, mut tc) = (0u64, 0u64);
        let mut buf = [0u8; 2048];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 => {
                    if buf[2] & 0x02 != 0 {
                        tc += 1;
                    } else if u16::from_be_bytes([buf[6], buf[7]]) > 0 {
                        full += 1;
                    }
                }
                Ok(_) => {}
                Err(_) if stop.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        (full, tc)
    })
}

#[test]
fn rrl_a_flood_from_one_prefix_gets_the_rate_plus_slips_while_another_is_served() {
    let rate = 100;
    let s = server(|o| o.rrl = rrl(rate));
    let flood = udp_from(Ipv4Addr::new(127, 0, 0, 1));
    let stop = Arc::new(AtomicBool::new(false));
    let rx = count_answers(flood.try_clone().unwrap(), stop.clone());
    let sent = Arc::new(AtomicU64::new(0));
    // 50 000 identical queries a second for 5 s (as fast as this machine manages, if slower).
    let (addr, n) = (s.addr, sent.clone());
    let tx = std::thread::spawn(move || {
        let pkt = q("www.example.com", "A").bytes();
        let t = Instant::now();
        let mut i = 0u64;
        while t.elapsed() < Duration::from_secs(5) {
            let due = (t.elapsed().as_micros() as u64) * 50_000 / 1_000_000;
            while i < due.min(250_000) {
                let _ = flood.send_to(&pkt, addr);
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        n.store(i, Ordering::Relaxed);
        t.elapsed()
    });
    // Another prefix (127.0.1.0/24) asks 50 times meanwhile and gets every answer in full. Like
    // a resolver it asks again after a timeout: the flood shares the server's socket buffer,
    // so a packet may be lost there (not limited: loss is not what is tested).
    let other = udp_from(Ipv4Addr::new(127, 0, 1, 1));
    other
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut fine = 0;
    for i in 0..50u16 {
        let mut query = q("www.example.com", "A");
        query.id = i;
        'tries: for _try in 0..5 {
            other.send_to(&query.bytes(), s.addr).unwrap();
            let mut buf = [0u8; 2048];
            // A late answer to an earlier query is skipped; a timeout asks again.
            while let Ok(n) = other.recv(&mut buf) {
                let r = Resp::parse(buf[..n].to_vec());
                if r.id() == i {
                    fine += u32::from(r.answers().len() == 2);
                    break 'tries;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(80));
    }
    let took = tx.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (full, tc) = rx.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("sent {sent} in {took:?}: {full} full, {tc} truncated; other prefix {fine}/50");
    assert_eq!(fine, 50, "the other prefix is served in full");
    let allowed = u64::from(rate) * (took.as_secs() + 2);
    assert!(full <= allowed, "{full} full answers, at most {allowed}");
    assert!(
        full >= u64::from(rate) * 4,
        "the rate still gets through: {full}"
    );
    // slip 2: about every second limited response is truncated, the rest dropped.
    let limited = sent.saturating_sub(full);
    assert!(
        tc > 0 && tc <= limited / 2 + 1,
        "{tc} truncated of {limited} limited"
    );
    let dropped = metric(
        &s,
        "gslbd_rrl_limited_total",
        &[("class", "answer"), ("action", "dropped")],
    );
    let slipped = metric(
        &s,
        "gslbd_rrl_limited_total",
        &[("class", "answer"), ("action", "slipped")],
    );
    // The receiver counts what reached it: at most what the server slipped, and most of it
    // (its socket buffer may overflow when this thread waits for a busy core).
    let tc = tc as f64;
    assert!(
        dropped > 0.0 && slipped > 0.0 && tc <= slipped && tc >= slipped / 4.0,
        "{tc} truncated answers received, {slipped} slipped, {dropped} dropped"
    );
}

#[test]
fn rrl_log_only_limits_nothing_and_the_class_keys_on_the_zone_for_nxdomain() {
    let s = server(|o| {
        o.rrl = RrlConfig {
            log_only: true,
            ..rrl(5)
        }
    });
    let c = udp_from(Ipv4Addr::new(127, 0, 0, 9));
    let mut got = 0;
    for i in 0..40 {
        // Random names: NXDOMAIN, one bucket for the whole zone.
        c.send_to(&q(&format!("nx{i}.example.com"), "A").bytes(), s.addr)
            .unwrap();
        let mut buf = [0u8; 2048];
        if c.recv(&mut buf).is_ok() {
            got += 1;
        }
    }
    assert_eq!(got, 40, "log-only sends everything");
    let logged = metric(
        &s,
        "gslbd_rrl_limited_total",
        &[("class", "negative"), ("action", "log_only")],
    );
    assert!(logged >= 30.0, "{logged}");
}

// ---- cookies ---------------------------------------------------------------------------------

/// A query with a COOKIE option: the client cookie and an optional server cookie.
pub(crate) fn with_cookie(mut query: Q, client: [u8; 8], server: &[u8]) -> Q {
    let mut opt = vec![0, 10];
    opt.extend_from_slice(&((8 + server.len()) as u16).to_be_bytes());
    opt.extend_from_slice(&client);
    opt.extend_from_slice(server);
    let e = query.edns.get_or_insert((1232, 0, vec![]));
    e.2.extend_from_slice(&opt);
    query
}

/// The COOKIE option of a raw response and its extended rcode: (cookie bytes, full rcode).
pub(crate) fn cookie_of(raw: &[u8]) -> (Option<Vec<u8>>, u16) {
    let msg = hickory_proto::op::Message::from_vec(raw).expect("parses");
    let low = u16::from(raw[3] & 0x0f);
    let _ = msg;
    // The OPT record is the last record: find "00 00 29" from the end.
    let Some(at) = (12..raw.len().saturating_sub(10))
        .rev()
        .find(|&i| raw[i] == 0 && raw[i + 1] == 0 && raw[i + 2] == 41)
    else {
        return (None, low);
    };
    let ext = u16::from(raw[at + 5]);
    let rdlen = u16::from_be_bytes([raw[at + 9], raw[at + 10]]) as usize;
    let mut i = at + 11;
    let mut cookie = None;
    while i + 4 <= at + 11 + rdlen {
        let code = u16::from_be_bytes([raw[i], raw[i + 1]]);
        let len = u16::from_be_bytes([raw[i + 2], raw[i + 3]]) as usize;
        if code == 10 {
            cookie = Some(raw[i + 4..i + 4 + len].to_vec());
        }
        i += 4 + len;
    }
    (cookie, ext << 4 | low)
}

fn ask(sock: &UdpSocket, to: SocketAddr, query: &Q) -> Option<Vec<u8>> {
    sock.send_to(&query.bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn cookies_echoed_verified_and_badcookie_over_udp_only() {
    let s = server(|_| {});
    let c = udp_from(Ipv4Addr::LOCALHOST);
    let client = *b"clientck";
    // A client cookie alone: a normal answer with our cookie (client cookie + 16 bytes).
    let raw = ask(
        &c,
        s.addr,
        &with_cookie(q("www.example.com", "A"), client, &[]),
    )
    .unwrap();
    let (cookie, rcode) = cookie_of(&raw);
    let cookie = cookie.expect("cookie echoed");
    assert_eq!((rcode, cookie.len(), &cookie[..8]), (0, 24, &client[..]));
    assert_eq!(Resp::parse(raw).answers().len(), 2);
    let server_cookie = cookie[8..].to_vec();
    assert_eq!(server_cookie[0], 1, "RFC 9018 version 1");
    // With our server cookie: answered, a fresh cookie back.
    let raw = ask(
        &c,
        s.addr,
        &with_cookie(q("www.example.com", "A"), client, &server_cookie),
    )
    .unwrap();
    assert_eq!(cookie_of(&raw).1, 0);
    assert_eq!(Resp::parse(raw).answers().len(), 2);
    // A server cookie we did not make: BADCOOKIE over UDP, no records, a fresh cookie.
    let forged = [1u8, 0, 0, 0, 0x60, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let raw = ask(
        &c,
        s.addr,
        &with_cookie(q("www.example.com", "A"), client, &forged),
    )
    .unwrap();
    let (cookie, rcode) = cookie_of(&raw);
    assert_eq!(rcode, 23, "BADCOOKIE");
    assert_eq!(u16::from_be_bytes([raw[6], raw[7]]), 0, "no answer");
    assert_eq!(cookie.as_ref().map(Vec::len), Some(24));
    // Retrying with the fresh cookie works, as RFC 7873 5.3 has the client do.
    let fresh = cookie.unwrap()[8..].to_vec();
    let raw = ask(
        &c,
        s.addr,
        &with_cookie(q("www.example.com", "A"), client, &fresh),
    )
    .unwrap();
    assert_eq!(cookie_of(&raw).1, 0);
    // Over TCP the same forged cookie is answered normally (the address is proven).
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let raw = tcp_exchange(
        &mut t,
        &with_cookie(q("www.example.com", "A"), client, &forged).bytes(),
    )
    .unwrap();
    assert_eq!(cookie_of(&raw).1, 0);
    assert_eq!(Resp::parse(raw).answers().len(), 2);
    // A malformed option (12 bytes) is FORMERR.
    let raw = ask(
        &c,
        s.addr,
        &with_cookie(q("www.example.com", "A"), client, &[1, 2, 3, 4]),
    )
    .unwrap();
    assert_eq!(raw[3] & 0x0f, 1, "FORMERR");
    // A query without a question asks for a server cookie (RFC 7873 5.4): NOERROR, no
    // question, the cookie; with a server cookie we cannot verify, BADCOOKIE.
    let ask_cookie = |server: &[u8]| {
        let mut raw = vec![
            0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0,
        ];
        raw.extend_from_slice(&((4 + 8 + server.len()) as u16).to_be_bytes());
        raw.extend_from_slice(&[0, 10]);
        raw.extend_from_slice(&((8 + server.len()) as u16).to_be_bytes());
        raw.extend_from_slice(&client);
        raw.extend_from_slice(server);
        c.send_to(&raw, s.addr).unwrap();
        let mut buf = [0u8; 512];
        let n = c.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    let raw = ask_cookie(&[]);
    assert_eq!(&raw[..2], &[0x77, 0x77]);
    assert_eq!(&raw[4..6], &[0, 0], "no question");
    let (cookie, rcode) = cookie_of(&raw);
    assert_eq!((rcode, cookie.map(|c| c.len())), (0, Some(24)));
    assert_eq!(cookie_of(&ask_cookie(&forged)).1, 23);
    assert_eq!(
        metric(&s, "gslbd_cookie_queries_total", &[("result", "invalid")]),
        3.0
    );
    assert!(metric(&s, "gslbd_cookie_queries_total", &[("result", "valid")]) >= 2.0);
    assert_eq!(
        metric(
            &s,
            "gslbd_cookie_queries_total",
            &[("result", "client_only")]
        ),
        2.0
    );
}

#[test]
fn a_cookie_bearing_client_is_not_rate_limited() {
    let s = server(|o| o.rrl = rrl(10));
    let c = udp_from(Ipv4Addr::new(127, 0, 2, 1));
    let client = *b"ck-rrl-1";
    let raw = ask(
        &c,
        s.addr,
        &with_cookie(q("www.example.com", "A"), client, &[]),
    )
    .unwrap();
    let mut server_cookie = cookie_of(&raw).0.unwrap()[8..].to_vec();
    let mut full = 0;
    for _ in 0..60 {
        let Some(raw) = ask(
            &c,
            s.addr,
            &with_cookie(q("www.example.com", "A"), client, &server_cookie),
        ) else {
            continue;
        };
        server_cookie = cookie_of(&raw).0.unwrap()[8..].to_vec();
        if raw[2] & 0x02 == 0 && u16::from_be_bytes([raw[6], raw[7]]) == 2 {
            full += 1;
        }
    }
    assert_eq!(full, 60, "every answer in full with a valid cookie");
    // The same prefix without a cookie is limited to its rate (10 a second, burst 10).
    let plain = udp_from(Ipv4Addr::new(127, 0, 2, 2));
    plain
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let mut plain_full = 0;
    for _ in 0..60 {
        if let Some(raw) = ask(&plain, s.addr, &q("www.example.com", "A"))
            && raw[2] & 0x02 == 0
        {
            plain_full += 1;
        }
    }
    assert!(
        plain_full < 60,
        "without a cookie the rate applies: {plain_full}"
    );
    assert!(metric(&s, "gslbd_rrl_exempt_total", &[("reason", "cookie")]) >= 60.0);
}

#[test]
fn instances_sharing_a_secret_file_accept_each_others_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("cookie-secret");
    std::fs::write(
        &shared,
        "# the set's secret\n00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    let other = dir.path().join("other-secret");
    std::fs::write(&other, "ffeeddccbbaa99887766554433221100\n").unwrap();
    let (f1, f2, f3) = (shared.clone(), shared.clone(), other.clone());
    let a = server(move |o| o.cookie_secret_file = Some(f1));
    let b = server(move |o| o.cookie_secret_file = Some(f2));
    let c = server(move |o| o.cookie_secret_file = Some(f3));
    let sock = udp_from(Ipv4Addr::LOCALHOST);
    let client = *b"anycast!";
    let raw = ask(
        &sock,
        a.addr,
        &with_cookie(q("www.example.com", "A"), client, &[]),
    )
    .unwrap();
    let from_a = cookie_of(&raw).0.unwrap()[8..].to_vec();
    let raw = ask(
        &sock,
        b.addr,
        &with_cookie(q("www.example.com", "A"), client, &from_a),
    )
    .unwrap();
    assert_eq!(cookie_of(&raw).1, 0, "b accepts a's cookie");
    let raw = ask(
        &sock,
        c.addr,
        &with_cookie(q("www.example.com", "A"), client, &from_a),
    )
    .unwrap();
    assert_eq!(cookie_of(&raw).1, 23, "c has another secret: BADCOOKIE");
    // Cookies off: the option is ignored, as by a server without cookies.
    let off = server(|o| o.cookies = false);
    let raw = ask(
        &sock,
        off.addr,
        &with_cookie(q("www.example.com", "A"), client, &from_a),
    )
    .unwrap();
    assert_eq!(cookie_of(&raw), (None, 0));
}

// ---- reload retry ----------------------------------------------------------------------------

#[test]
fn a_failed_reload_is_retried_until_it_succeeds() {
    let s = TestServer::start_with(&[("example.com.toml", EXAMPLE)], |o| o.watch = false);
    let path = s.zone_path("example.com.toml");
    std::fs::write(&path, "this is not TOML [").unwrap();
    assert!(s.reload().is_err());
    // Fixed without a signal or a watched change: the retry (1 s later) picks it up.
    std::fs::write(&path, EXAMPLE.replace("192.0.2.10", "192.0.2.110")).unwrap();
    wait_for("the retried reload", Duration::from_secs(5), || {
        s.udp(&q("www.example.com", "A"))
            .answers()
            .iter()
            .any(|a| a.contains("192.0.2.110"))
    });
}
