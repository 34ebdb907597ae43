//! DNS over TLS, HTTPS and QUIC end to end: the real server with a certificate made here
//! (a CA and a server certificate for `dns.test` and 127.0.0.1, by rcgen), queried by
//! independent clients (kdig for DoT, DoH POST/GET and DoQ; hickory's DoQ client) and by
//! small raw clients where a test needs bytes or misbehaviour (rustls, h2, quinn).
//!
//! What they show: the same answers as over UDP/TCP (static, GSLB with ECS, NXDOMAIN, an
//! answer too large for UDP), byte for byte; many queries on one connection; a certificate
//! reload under open connections (and a broken file that keeps the old one); every limit hit
//! once while the server keeps serving others; HTTP errors for bad DoH requests; a non-DNS
//! payload that closes only its own connection; EDNS padding on the encrypted transports only.
//!
//! kdig (Debian knot-dnsutils) is installed by `.ci/run`, which sets
//! `GSLBD_KDIG_TESTS=require`; without it the kdig parts are skipped with a notice.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gslbd::dns::EncryptedLimits;
use gslbd::server::TlsOptions;
use hickory_proto::op::{DnsRequestOptions, Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Writer};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Fixture: certificates, zone, GeoIP, the server
// ---------------------------------------------------------------------------------------------

/// A test CA and the server certificate it signed, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    ca_params: rcgen::CertificateParams,
    /// DER of the server certificate written last.
    leaf: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = rcgen::CertificateParams::new(vec![]).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gslbd test CA");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        std::fs::write(dir.path().join("ca.pem"), pem("CERTIFICATE", ca_cert.der()))
            .expect("write ca");
        let mut p = Pki {
            dir,
            ca_cert,
            ca_key,
            ca_params,
            leaf: CertificateDer::from(vec![]),
        };
        p.leaf = p.issue("dns.test");
        p
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A new key and a certificate for `dns.test` and 127.0.0.1 (common name `cn`), written
    /// over cert.pem and key.pem (each by rename, as certbot and Kubernetes do); returns the
    /// certificate's DER.
    fn issue(&self, cn: &str) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["dns.test".into(), "127.0.0.1".into()])
            .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let _ = &self.ca_cert;
        self.replace(&self.key(), &pem("PRIVATE KEY", &key.serialize_der()));
        self.replace(&self.cert(), &pem("CERTIFICATE", cert.der()));
        cert.der().clone()
    }

    fn replace(&self, path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    /// A client configuration trusting the test CA, offering `alpn`.
    fn client(&self, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        Arc::new(self.client_config(alpn))
    }

    fn client_config(&self, alpn: &[u8]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_cert.der().clone())
            .expect("trust the test CA");
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        c.alpn_protocols = vec![alpn.to_vec()];
        c
    }
}

/// PEM text of a DER object.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

const ZONE: &str = r#"
origin = "gslb.test."
ttl = 3600
[soa]
mname = "ns1.gslb.test."
rname = "hostmaster.gslb.test."
serial = 1
minimum = 300
[records."@"]
NS = ["ns1"]
[records.ns1]
A = ["192.0.2.1"]
[records.www]
A = ["192.0.2.10", "192.0.2.11"]
AAAA = ["2001:db8::10"]
[gslb.geo]
ttl = 30
rules = [
  { match = ["EU"], pool = "europe" },
  { match = ["NA"], pool = "america" },
  { pool = "world" },
]
[gslb.geo.pools.europe]
datacenters = ["lon"]
[gslb.geo.pools.america]
datacenters = ["iad"]
[gslb.geo.pools.world]
datacenters = ["sin"]
"#;

const DATACENTERS: &str = r#"
[datacenters.lon]
addresses = ["192.0.2.20", "2001:db8:20::20"]
location = { lat = 51.51, lon = -0.13 }
[datacenters.iad]
addresses = ["198.51.100.30"]
location = { lat = 38.95, lon = -77.45 }
[datacenters.sin]
addresses = ["203.0.113.50"]
location = { lat = 1.29, lon = 103.85 }
"#;

/// The zone with a TXT set of about 4 KB: TC over UDP, whole over every stream transport.
fn zone() -> String {
    let strings: Vec<String> = (0..20)
        .map(|i| format!("\"{}\"", format!("{i:02}").repeat(100)))
        .collect();
    format!("{ZONE}[records.big]\nTXT = [{}]\n", strings.join(", "))
}

fn geo(dir: &Path) -> PathBuf {
    let nets = [
        (
            "81.2.69.0/24",
            geo_city("EU", "GB", &["ENG"], Some((51.5, -0.09))),
        ),
        (
            "198.51.100.0/24",
            geo_city("NA", "US", &["CA"], Some((37.77, -122.42))),
        ),
        (
            "127.0.0.0/8",
            geo_city("AS", "SG", &[], Some((1.29, 103.85))),
        ),
    ];
    let mut w = Writer::builder("GeoIP2-City-Test")
        .ip_version(IpVersion::V6)
        .build();
    for (net, v) in nets {
        w.insert_value(net.parse::<IpNet>().expect("net"), v)
            .expect("insert");
    }
    let path = dir.join("city.mmdb");
    std::fs::write(&path, w.to_bytes().expect("mmdb")).expect("write mmdb");
    path
}

struct Fx {
    s: TestServer,
    pki: Pki,
    _geo: tempfile::TempDir,
}

impl Fx {
    fn start(limits: EncryptedLimits) -> Fx {
        let geo_dir = tempfile::tempdir().expect("tempdir");
        let geo = geo(geo_dir.path());
        let zone = zone();
        Fx::start_with(
            &[("gslb.test.toml", &zone), ("datacenters.toml", DATACENTERS)],
            geo,
            geo_dir,
            limits,
        )
    }

    /// The server on `files` with the GeoIP database `geo` (in `geo_dir`).
    fn start_with(
        files: &[(&str, &str)],
        geo: PathBuf,
        geo_dir: tempfile::TempDir,
        limits: EncryptedLimits,
    ) -> Fx {
        let pki = Pki::new();
        let s = TestServer::start_with(files, |o| {
            o.geoip = vec![geo];
            o.api = Some("127.0.0.1:0".parse().unwrap());
            o.watch = true;
            let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let mut t = TlsOptions::new(pki.cert(), pki.key());
            t.listen_tls = vec![any];
            t.listen_https = vec![any];
            t.listen_quic = vec![any];
            t.limits = limits;
            o.tls = Some(t);
        });
        Fx {
            s,
            pki,
            _geo: geo_dir,
        }
    }

    fn dot(&self) -> SocketAddr {
        self.s.running().tls_addrs[0]
    }
    fn doh(&self) -> SocketAddr {
        self.s.running().https_addrs[0]
    }
    fn doq(&self) -> SocketAddr {
        self.s.running().quic_addrs[0]
    }

    fn api(&self, path: &str) -> String {
        let url = format!("http://{}{path}", self.s.running().api_addr.unwrap());
        self.s
            .block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() })
    }

    /// The value of one series of /metrics, written as exported (`name{a="b",c="d"}`).
    fn metric(&self, series: &str) -> f64 {
        let text = self.api("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in /metrics"))
    }

    /// One series of /metrics, 0 when it is not there.
    fn metric_or_zero(&self, series: &str) -> f64 {
        let text = self.api("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// How often a limit (or error) of `reason` stopped a connection or a request of
    /// `transport` (`tls`, `https`, `quic`): closes plus single DoH/DoQ requests.
    fn limit(&self, transport: &str, reason: &str) -> f64 {
        let labels = format!("{{listener=\"dns_{transport}\",reason=\"{reason}\"}}");
        self.metric_or_zero(&format!("gslbd_connections_closed_total{labels}"))
            + self.metric_or_zero(&format!("gslbd_requests_limited_total{labels}"))
    }

    /// Waits (bounded) until the count of `limit` is `n`: a connection's close is counted
    /// just after the client saw it (TLS sends its close_notify first).
    fn limit_is(&self, transport: &str, reason: &str, n: f64) {
        self.eventually(&format!("{transport} {reason} counted {n}"), |fx| {
            fx.limit(transport, reason) == n
        });
    }

    fn connections(&self, transport: &str) -> f64 {
        self.metric(&format!(
            "gslbd_connections_opened_total{{listener=\"dns_{transport}\"}}"
        ))
    }

    /// Waits (bounded) until `f` holds.
    fn eventually(&self, what: &str, mut f: impl FnMut(&Fx) -> bool) {
        let t = Instant::now();
        while !f(self) {
            assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The defaults, but a read timeout proportionate to a loaded test machine: a query's bytes
/// that sit 2 s in a starved debug build must not turn a test about something else into a
/// read-timeout test (the one about it sets its own).
fn test_limits() -> EncryptedLimits {
    EncryptedLimits {
        read_timeout: Duration::from_secs(10),
        ..EncryptedLimits::default()
    }
}

/// Short timeouts, for the tests that wait for them (long enough that the test's own
/// handshakes and first queries make it on a loaded machine).
fn short_timeouts() -> EncryptedLimits {
    EncryptedLimits {
        handshake_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_millis(1500),
        ..test_limits()
    }
}

/// Small counts and sizes (with the default timeouts, so nothing idles out meanwhile).
fn small_limits() -> EncryptedLimits {
    EncryptedLimits {
        max_connections: 4,
        max_connections_per_client: 2,
        max_streams: 3,
        max_request_size: 512,
        ..test_limits()
    }
}

fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Another client (from 127.0.0.`from`) connects over DoT and is answered.
fn others_served(fx: &Fx, from: u8) {
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    fx.s.block_on(async {
        let mut t = tls_from(&fx.pki, fx.dot(), lo(from), b"dot")
            .await
            .expect("another client connects");
        assert!(
            dot_exchange(&mut t, &www).await.is_some(),
            "another client is served"
        );
    })
}

// ---------------------------------------------------------------------------------------------
// Raw clients
// ---------------------------------------------------------------------------------------------

/// A TLS connection from `from` (a loopback address) with `alpn`.
async fn tls_from(
    pki: &Pki,
    addr: SocketAddr,
    from: IpAddr,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let tcp = sock.connect(addr).await?;
    let name = ServerName::try_from("dns.test").unwrap();
    TlsConnector::from(pki.client(alpn))
        .connect(name, tcp)
        .await
}

async fn dot(pki: &Pki, addr: SocketAddr) -> TlsStream<TcpStream> {
    tls_from(pki, addr, "127.0.0.1".parse().unwrap(), b"dot")
        .await
        .expect("DoT connection")
}

/// One framed exchange on a stream; `None` when the server closed it.
async fn dot_exchange<S>(s: &mut S, msg: &[u8]) -> Option<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.write_all(&framed).await.ok()?;
    s.flush().await.ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

/// Reads until the server closes the stream (EOF or error), bounded.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let t = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout_at(t + within, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

type H2 = h2::client::SendRequest<Bytes>;

async fn doh(pki: &Pki, addr: SocketAddr) -> H2 {
    let tls = tls_from(pki, addr, "127.0.0.1".parse().unwrap(), b"h2")
        .await
        .expect("DoH connection");
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// A DoH POST whose body is begun (the first 5 bytes of `msg`) and not ended: the request
/// stays in flight until the caller sends the rest or lets it go.
async fn doh_half_post(h2: &H2, msg: &[u8]) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let req = doh_request("POST", "https://dns.test/dns-query")
        .header("content-type", "application/dns-message")
        .body(())
        .unwrap();
    let mut ready = h2.clone().ready().await.expect("h2 ready");
    let (resp, mut body) = ready.send_request(req, false).expect("send request");
    body.send_data(Bytes::from(msg[..5].to_vec()), false)
        .expect("send the first bytes");
    (resp, body)
}

fn doh_request(method: &str, uri: &str) -> http::request::Builder {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", "application/dns-message")
}

async fn doh_send(h2: &mut H2, req: http::Request<()>, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
    let mut h2 = h2.clone().ready().await.expect("h2 ready");
    let (resp, mut stream) = h2.send_request(req, body.is_none()).expect("send request");
    if let Some(b) = body {
        stream.send_data(Bytes::from(b), true).expect("send body");
    }
    let resp = resp.await.expect("response");
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (ctype, cache) = (header("content-type"), header("cache-control"));
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    if status == 200 {
        assert_eq!(ctype.as_deref(), Some("application/dns-message"));
        // RFC 8484 5.1: a freshness lifetime no longer than the smallest TTL.
        let m = Message::from_vec(&out).expect("a DNS message");
        let ttl = m.answers.iter().chain(&m.authorities).map(|r| r.ttl).min();
        assert_eq!(
            cache,
            Some(format!("private, max-age={}", ttl.unwrap_or(0))),
            "cache-control"
        );
    }
    (status, out)
}

async fn doh_post(h2: &mut H2, msg: &[u8]) -> (u16, Vec<u8>) {
    let req = doh_request("POST", "https://dns.test/dns-query")
        .header("content-type", "application/dns-message")
        .body(())
        .unwrap();
    doh_send(h2, req, Some(msg.to_vec())).await
}

async fn doh_get(h2: &mut H2, msg: &[u8]) -> (u16, Vec<u8>) {
    let b64 = data_encoding::BASE64URL_NOPAD.encode(msg);
    let req = doh_request("GET", &format!("https://dns.test/dns-query?dns={b64}"))
        .body(())
        .unwrap();
    doh_send(h2, req, None).await
}

async fn doq(pki: &Pki, addr: SocketAddr) -> quinn::Connection {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(pki.client_config(b"doq"))
        .expect("quic client config");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep.connect(addr, "dns.test")
        .expect("connect")
        .await
        .expect("DoQ connection")
}

/// One DoQ exchange on a new stream (raw: the message as given, ID included).
async fn doq_exchange(c: &quinn::Connection, msg: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = c.open_bi().await.map_err(|e| e.to_string())?;
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    send.write_all(&framed).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let data = recv.read_to_end(70_000).await.map_err(|e| e.to_string())?;
    let (len, msg) = data.split_first_chunk::<2>().ok_or("short answer")?;
    assert_eq!(
        usize::from(u16::from_be_bytes(*len)),
        msg.len(),
        "DoQ framing"
    );
    Ok(msg.to_vec())
}

/// hickory's DoQ client, connected to `addr` trusting the test CA.
async fn hickory_doq(pki: &Pki, addr: SocketAddr) -> hickory_net::quic::QuicClientStream {
    hickory_net::quic::QuicClientStream::builder()
        .crypto_config(pki.client_config(b"doq"))
        .build(addr, Arc::from("dns.test"))
        .await
        .expect("hickory DoQ connection")
}

async fn hickory_query(
    c: &mut hickory_net::quic::QuicClientStream,
    msg: Message,
) -> hickory_proto::op::DnsResponse {
    use hickory_net::xfer::{DnsRequestSender, FirstAnswer};
    let req = hickory_proto::op::DnsRequest::new(msg, DnsRequestOptions::default());
    c.send_message(req)
        .first_answer()
        .await
        .expect("DoQ answer")
}

/// `plain` (the UDP or TCP answer to `bytes`) comes back byte for byte over DoT, DoH POST and
/// GET, and DoQ.
async fn same_over_dot_doh_doq(fx: &Fx, bytes: &[u8], plain: &[u8], name: &impl std::fmt::Display) {
    let mut t = dot(&fx.pki, fx.dot()).await;
    assert_eq!(
        dot_exchange(&mut t, bytes).await.unwrap(),
        plain,
        "DoT {name}"
    );
    let mut h = doh(&fx.pki, fx.doh()).await;
    assert_eq!(
        doh_post(&mut h, bytes).await,
        (200, plain.to_vec()),
        "POST {name}"
    );
    assert_eq!(
        doh_get(&mut h, bytes).await,
        (200, plain.to_vec()),
        "GET {name}"
    );
    let q = doq(&fx.pki, fx.doq()).await;
    assert_eq!(doq_exchange(&q, bytes).await.unwrap(), plain, "DoQ {name}");
}

/// A query as hickory builds it (ID 0, as DoQ requires; EDNS 1232; optional ECS).
fn hq(name: &str, t: RecordType, ecs: Option<(&str, u8)>) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), t));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    if let Some((a, p)) = ecs {
        let addr: IpAddr = a.parse().unwrap();
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(addr, p, 0)));
    }
    m.edns = Some(e);
    m
}

// ---------------------------------------------------------------------------------------------
// kdig
// ---------------------------------------------------------------------------------------------

/// Runs kdig; `None` (with a notice) when it is not installed and not required.
fn kdig(args: &[String]) -> Option<String> {
    let out = match Command::new("kdig").args(args).output() {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("GSLBD_KDIG_TESTS").as_deref() != Ok("require"),
                "kdig is required (GSLBD_KDIG_TESTS=require) but cannot run: {e}"
            );
            eprintln!("kdig not found (Debian knot-dnsutils): kdig checks skipped");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kdig {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("utf-8"))
}

/// kdig's answer without what differs between transports by design: the session lines,
/// message ID, timing, size, server address, and the EDNS padding.
fn normalise(out: &str) -> String {
    out.lines()
        .filter(|l| {
            ![
                ";; TLS session",
                ";; HTTP session",
                ";; QUIC session",
                ";; Received",
                ";; Time",
                ";; From",
                ";; PADDING",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| match l.find("; id: ") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// kdig over DoT (strict: our CA, name dns.test), DoH POST and GET, and DoQ prints the same
/// answer as over UDP (kdig falls back to TCP for the truncated large answer).
#[test]
fn kdig_gets_the_udp_answer_over_every_transport() {
    let fx = Fx::start(test_limits());
    let ca = format!("+tls-ca={}", fx.pki.ca().display());
    let strict = [ca.as_str(), "+tls-hostname=dns.test"];
    let cases: [(&str, &[&str]); 5] = [
        ("www.gslb.test", &["A"]),
        ("geo.gslb.test", &["A", "+subnet=81.2.69.0/24"]),
        ("geo.gslb.test", &["A", "+subnet=198.51.100.0/24"]),
        ("nx.gslb.test", &["A"]),
        ("big.gslb.test", &["TXT"]),
    ];
    for (name, extra) in cases {
        let base = |server: SocketAddr, more: &[&str]| -> Vec<String> {
            let mut v = vec![
                format!("@{}", server.ip()),
                "-p".into(),
                server.port().to_string(),
                name.into(),
            ];
            // EDNS over UDP too: kdig adds it (with padding) on the encrypted transports.
            v.push("+edns".into());
            v.extend(extra.iter().map(|s| s.to_string()));
            v.extend(more.iter().map(|s| s.to_string()));
            v
        };
        let Some(udp) = kdig(&base(fx.s.addr, &[])) else {
            return;
        };
        let udp = normalise(&udp);
        assert!(
            udp.contains("ANSWER SECTION") || udp.contains("NXDOMAIN"),
            "{udp}"
        );
        let tls = [strict.as_slice(), &["+tls"]].concat();
        let https = [strict.as_slice(), &["+https"]].concat();
        let get = [strict.as_slice(), &["+https", "+https-get"]].concat();
        for (what, server, more) in [
            ("tls", fx.dot(), tls.as_slice()),
            ("https POST", fx.doh(), https.as_slice()),
            ("https GET", fx.doh(), get.as_slice()),
            ("quic", fx.doq(), &["+quic"][..]),
        ] {
            let out = kdig(&base(server, more)).expect("kdig ran before");
            assert_eq!(normalise(&out), udp, "{name} {extra:?} over {what}:\n{out}");
        }
    }
    // The GSLB answers differ by the ECS region, as over UDP.
    let eu = kdig(&[
        "@127.0.0.1".to_string(),
        "-p".into(),
        fx.doq().port().to_string(),
        "+quic".into(),
        "+short".into(),
        "+subnet=81.2.69.0/24".into(),
        "geo.gslb.test".into(),
    ])
    .unwrap();
    assert_eq!(eu.trim(), "192.0.2.20");
}

/// The raw response bytes are the same over UDP (TCP for the large answer), DoT, DoH POST,
/// DoH GET, DoQ (raw quinn) and hickory's DoQ client, for the same query from the same
/// address: one answer function behind every transport.
#[test]
fn byte_identical_answers_over_every_transport() {
    let fx = Fx::start(test_limits());
    let queries = [
        hq("www.gslb.test.", RecordType::A, None),
        hq("geo.gslb.test.", RecordType::A, Some(("81.2.69.0", 24))),
        hq("geo.gslb.test.", RecordType::A, Some(("198.51.100.0", 24))),
        hq("geo.gslb.test.", RecordType::AAAA, Some(("81.2.69.0", 24))),
        hq("geo.gslb.test.", RecordType::A, None),
        hq("nx.gslb.test.", RecordType::A, None),
        hq("big.gslb.test.", RecordType::TXT, None),
    ];
    for m in queries {
        let bytes = m.to_vec().unwrap();
        let plain = udp_raw(fx.s.addr, &bytes).expect("udp answer");
        let plain = if Message::from_vec(&plain).unwrap().metadata.truncation {
            let mut s = std::net::TcpStream::connect(fx.s.addr).unwrap();
            tcp_exchange(&mut s, &bytes).expect("tcp answer")
        } else {
            plain
        };
        let name = &m.queries[0];
        fx.s.block_on(async {
            same_over_dot_doh_doq(&fx, &bytes, &plain, name).await;
            let mut hk = hickory_doq(&fx.pki, fx.doq()).await;
            let r = hickory_query(&mut hk, m.clone()).await;
            assert_eq!(r.as_buffer(), &plain[..], "hickory DoQ {name}");
        });
    }
    assert!(
        fx.metric(
            "gslbd_queries_total{zone=\"gslb.test.\",qtype=\"TXT\",rcode=\"NOERROR\",transport=\"quic\"}"
        ) >= 2.0
    );
}

/// DNSSEC answers (DO set, a signed zone) are the same bytes over every transport: RRSIGs of
/// static RRsets, online-signed GSLB answers for ECS clients, a compact denial, a referral
/// with its DS, and a signed answer too large for UDP (whole over the stream transports).
#[test]
fn signed_answers_are_byte_identical_over_every_transport() {
    use crate::dnssec::{CSK, Keys, geo_fixture, signed_zone};
    let keys = Keys::new("signed.test.", CSK);
    let geo_dir = tempfile::tempdir().expect("tempdir");
    let geo = geo_fixture(geo_dir.path());
    let zone = signed_zone(&keys, "");
    let fx = Fx::start_with(&[("signed.test.toml", &zone)], geo, geo_dir, test_limits());
    let signed = |name: &str, t: RecordType, ecs: Option<(&str, u8)>| {
        let mut m = hq(name, t, ecs);
        m.edns.as_mut().unwrap().set_dnssec_ok(true);
        m
    };
    let queries = [
        signed("www.signed.test.", RecordType::A, None),
        signed("geo.signed.test.", RecordType::A, Some(("81.2.69.0", 24))),
        signed(
            "geo.signed.test.",
            RecordType::A,
            Some(("198.51.100.0", 24)),
        ),
        signed("nx.signed.test.", RecordType::A, None),
        signed("x.sec.signed.test.", RecordType::A, None),
        signed("big.signed.test.", RecordType::TXT, None),
    ];
    let mut saw_tc = false;
    for m in queries {
        let bytes = m.to_vec().unwrap();
        let plain = udp_raw(fx.s.addr, &bytes).expect("udp answer");
        let parsed = Message::from_vec(&plain).unwrap();
        let plain = if parsed.metadata.truncation {
            saw_tc = true;
            let mut s = std::net::TcpStream::connect(fx.s.addr).unwrap();
            tcp_exchange(&mut s, &bytes).expect("tcp answer")
        } else {
            assert!(
                parsed
                    .answers
                    .iter()
                    .chain(&parsed.authorities)
                    .any(|r| r.record_type() == RecordType::RRSIG),
                "signed: {parsed:?}"
            );
            plain
        };
        let name = &m.queries[0];
        fx.s.block_on(async {
            same_over_dot_doh_doq(&fx, &bytes, &plain, name).await;
        });
    }
    assert!(saw_tc, "the big signed answer is TC over UDP");
}

/// Hundreds of queries on one connection per transport, many in flight at once on DoH and
/// DoQ (more than hickory-server's 100-queries-per-connection cap), and kdig reusing one DoT
/// connection for several queries.
#[test]
fn many_queries_on_one_connection() {
    let fx = Fx::start(test_limits());
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    let expect = udp_raw(fx.s.addr, &www).unwrap();
    fx.s.block_on(async {
        let mut t = dot(&fx.pki, fx.dot()).await;
        for _ in 0..300 {
            assert_eq!(dot_exchange(&mut t, &www).await.unwrap(), expect);
        }
        let mut h = doh(&fx.pki, fx.doh()).await;
        // One exchange first: a client may exceed the stream limit before it has the
        // server's SETTINGS (the server then refuses the excess with REFUSED_STREAM, which
        // clients retry; RFC 9113 8.7); after it, the client queues instead.
        assert_eq!(doh_post(&mut h, &www).await, (200, expect.clone()));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..300 {
            let (mut h, www) = (h.clone(), www.clone());
            set.spawn(async move {
                if i % 2 == 0 {
                    doh_post(&mut h, &www).await
                } else {
                    doh_get(&mut h, &www).await
                }
            });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap(), (200, expect.clone()));
        }
        let q = doq(&fx.pki, fx.doq()).await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..300 {
            let (q, www) = (q.clone(), www.clone());
            set.spawn(async move { doq_exchange(&q, &www).await });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().unwrap(), expect);
        }
        let mut hk = hickory_doq(&fx.pki, fx.doq()).await;
        for _ in 0..150 {
            let r = hickory_query(&mut hk, hq("www.gslb.test.", RecordType::A, None)).await;
            assert_eq!(r.as_buffer(), &expect[..]);
        }
    });
    assert_eq!(fx.connections("tls"), 1.0);
    assert_eq!(fx.connections("https"), 1.0);
    assert_eq!(fx.connections("quic"), 2.0, "raw quinn + hickory");
    let names: Vec<String> = (0..5).map(|i| format!("n{i}.gslb.test")).collect();
    let mut args = vec![
        "@127.0.0.1".to_string(),
        "-p".into(),
        fx.dot().port().to_string(),
        "+tls".into(),
        "+keepopen".into(),
    ];
    args.extend(names);
    if let Some(out) = kdig(&args) {
        assert_eq!(out.matches("status: NXDOMAIN").count(), 5, "{out}");
        assert_eq!(
            fx.connections("tls"),
            2.0,
            "kdig +keepopen used one connection"
        );
    }
}

/// A client that comes back with a session ticket resumes (no full handshake), and the
/// resumption is counted.
#[test]
fn returning_clients_resume_their_tls_session() {
    let fx = Fx::start(test_limits());
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    let cfg = fx.pki.client(b"dot");
    fx.s.block_on(async {
        for _ in 0..3 {
            let tcp = TcpStream::connect(fx.dot()).await.unwrap();
            let name = ServerName::try_from("dns.test").unwrap();
            let mut t = TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .unwrap();
            // The answer comes after the tickets: reading it stores them in `cfg`.
            assert!(dot_exchange(&mut t, &www).await.is_some());
        }
    });
    assert_eq!(fx.connections("tls"), 3.0);
    assert_eq!(
        fx.metric("gslbd_connections_resumed_total{listener=\"dns_tls\"}"),
        2.0
    );
}

/// A new certificate and key are picked up by new handshakes while connections opened
/// before keep answering; a broken file keeps the last good certificate and is reported.
#[test]
fn certificate_reload_keeps_open_connections() {
    let mut fx = Fx::start(test_limits());
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    let first = fx.pki.leaf.clone();
    let peer_cert =
        |t: &TlsStream<TcpStream>| t.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut t, mut h, q) = fx.s.block_on(async {
        let t = dot(&fx.pki, fx.dot()).await;
        assert_eq!(peer_cert(&t), first);
        (
            t,
            doh(&fx.pki, fx.doh()).await,
            doq(&fx.pki, fx.doq()).await,
        )
    });
    let ask = |fx: &Fx, t: &mut TlsStream<TcpStream>, h: &mut H2, q: &quinn::Connection| {
        fx.s.block_on(async {
            assert!(
                dot_exchange(t, &www).await.is_some(),
                "DoT connection still answers"
            );
            assert_eq!(
                doh_post(h, &www).await.0,
                200,
                "DoH connection still answers"
            );
            assert!(
                doq_exchange(q, &www).await.is_ok(),
                "DoQ connection still answers"
            );
        })
    };
    ask(&fx, &mut t, &mut h, &q);

    let second = fx.pki.issue("second");
    fx.pki.leaf = second.clone();
    fx.eventually("the new certificate is loaded", |fx| {
        fx.metric("gslbd_tls_cert_reloads_total{result=\"ok\"}") >= 1.0
    });
    ask(&fx, &mut t, &mut h, &q);
    fx.s.block_on(async {
        let fresh = dot(&fx.pki, fx.dot()).await;
        assert_eq!(
            peer_cert(&fresh),
            second,
            "a new handshake gets the new certificate"
        );
        let fresh = doq(&fx.pki, fx.doq()).await;
        let der = fresh
            .peer_identity()
            .unwrap()
            .downcast::<Vec<CertificateDer<'static>>>()
            .unwrap();
        assert_eq!(der[0], second, "so does a new QUIC connection");
    });

    std::fs::write(fx.pki.cert(), "not a certificate\n").unwrap();
    fx.eventually("the broken file is reported", |fx| {
        fx.metric("gslbd_tls_cert_reloads_total{result=\"error\"}") >= 1.0
    });
    let status: serde_json::Value = serde_json::from_str(&fx.api("/status")).unwrap();
    assert_eq!(status["tls"]["ok"], false, "{status}");
    let err = status["tls"]["error"].as_str().unwrap();
    assert!(
        err.contains("cert.pem") && err.contains("no certificate"),
        "{err}"
    );
    ask(&fx, &mut t, &mut h, &q);
    fx.s.block_on(async {
        let fresh = dot(&fx.pki, fx.dot()).await;
        assert_eq!(
            peer_cert(&fresh),
            second,
            "the last good certificate still serves"
        );
    });
}

/// The handshake and idle timeouts close connections (counted), and the server goes on
/// serving others.
#[test]
fn timeouts_close_connections_and_others_are_served() {
    let fx = Fx::start(short_timeouts());
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    let served = others_served;

    // Handshake timeout: a TCP connection that never starts TLS is closed.
    fx.s.block_on(async {
        let mut s = TcpStream::connect(fx.dot()).await.unwrap();
        assert!(closed_by_server(&mut s, Duration::from_secs(6)).await);
    });
    fx.limit_is("tls", "handshake_timeout", 1.0);
    served(&fx, 1);

    // Idle timeout: DoT, DoH and DoQ connections with nothing in flight are closed.
    fx.s.block_on(async {
        let mut t = dot(&fx.pki, fx.dot()).await;
        // Before the exchange: the server's idle time starts after its answer.
        let t0 = tokio::time::Instant::now();
        assert!(dot_exchange(&mut t, &www).await.is_some());
        assert!(closed_by_server(&mut t, Duration::from_secs(6)).await);
        assert!(t0.elapsed() >= Duration::from_millis(1500), "not before the idle time");
        let q = doq(&fx.pki, fx.doq()).await;
        assert!(doq_exchange(&q, &www).await.is_ok());
        let why = tokio::time::timeout(Duration::from_secs(6), q.closed())
            .await
            .expect("idle DoQ connection closed");
        assert!(
            matches!(why, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == quinn::VarInt::from_u32(0)),
            "closed with DOQ_NO_ERROR: {why:?}"
        );
    });
    // The DoH connection stays open on the client side: the server closes it.
    let _h = fx.s.block_on(async {
        let mut h = doh(&fx.pki, fx.doh()).await;
        assert_eq!(doh_post(&mut h, &www).await.0, 200);
        h
    });
    fx.eventually("idle closes counted", |fx| {
        fx.limit("tls", "idle") == 1.0
            && fx.limit("quic", "idle") == 1.0
            && fx.limit("https", "idle") == 1.0
    });
    served(&fx, 2);
}

/// The read timeout (a query begun but not finished) and the lifetime (a connection that
/// keeps trickling queries) stop DoT, DoH and DoQ connections or requests (counted), and the
/// server goes on serving others.
#[test]
fn read_timeout_and_lifetime_are_enforced() {
    let fx = Fx::start(EncryptedLimits {
        read_timeout: Duration::from_millis(300),
        // Long enough for the DoH and DoQ checks below on their own connections.
        lifetime: Duration::from_millis(3000),
        ..test_limits()
    });
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    fx.s.block_on(async {
        // DoT: the first byte of a length, then nothing: the connection is closed.
        let mut t = dot(&fx.pki, fx.dot()).await;
        let t0 = tokio::time::Instant::now();
        t.write_all(&[0]).await.unwrap();
        t.flush().await.unwrap();
        assert!(closed_by_server(&mut t, Duration::from_secs(3)).await);
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "not before the read timeout"
        );

        // DoH: a POST whose body does not end gets 408; the connection goes on.
        let mut h = doh(&fx.pki, fx.doh()).await;
        assert_eq!(doh_post(&mut h, &www).await.0, 200);
        let (resp, _body) = doh_half_post(&h, &www).await;
        let resp = tokio::time::timeout(Duration::from_secs(3), resp)
            .await
            .expect("answered within the read timeout")
            .unwrap();
        assert_eq!(resp.status(), 408);
        assert_eq!(
            doh_post(&mut h, &www).await.0,
            200,
            "the DoH connection goes on"
        );

        // DoQ: a stream without FIN is reset; the connection goes on.
        let q = doq(&fx.pki, fx.doq()).await;
        let (mut send, mut recv) = q.open_bi().await.unwrap();
        send.write_all(&(www.len() as u16).to_be_bytes())
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(3), recv.read_to_end(4096))
            .await
            .expect("the stream ends within the read timeout");
        assert!(r.is_err(), "reset, not answered: {r:?}");
        assert!(
            doq_exchange(&q, &www).await.is_ok(),
            "the DoQ connection goes on"
        );

        // Lifetime: a DoT connection that asks every 200 ms (never idle for the idle timeout)
        // is closed once it is 3 s old, between two queries.
        let t0 = tokio::time::Instant::now();
        let mut t = dot(&fx.pki, fx.dot()).await;
        let mut answered = 0;
        while dot_exchange(&mut t, &www).await.is_some() {
            answered += 1;
            assert!(
                t0.elapsed() < Duration::from_secs(8),
                "closed by its lifetime"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(3000),
            "not before the lifetime"
        );
        assert!(answered >= 5, "served until then: {answered}");
    });
    fx.limit_is("tls", "read_timeout", 1.0);
    fx.limit_is("https", "read_timeout", 1.0);
    fx.eventually("DoQ read timeout counted", |fx| {
        fx.limit("quic", "read_timeout") == 1.0
    });
    fx.limit_is("tls", "lifetime", 1.0);
    others_served(&fx, 9);
}

/// Each count and size limit once, on the transports where it is easiest to provoke, and
/// after each the server still serves another client.
#[test]
fn connection_stream_and_size_limits_are_hit_and_others_are_served() {
    let fx = Fx::start(small_limits());
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    let served = others_served;

    // Per client (2) and in total (4), in the DoT listener's table: a third connection from
    // one address is closed at once; a fifth in all takes the place of the connection idle
    // the longest; with every connection busy (a query begun), a new one is closed at once.
    fx.s.block_on(async {
        let mut a1 = tls_from(&fx.pki, fx.dot(), lo(1), b"dot").await.unwrap();
        assert!(dot_exchange(&mut a1, &www).await.is_some());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut a2 = tls_from(&fx.pki, fx.dot(), lo(1), b"dot").await.unwrap();
        let mut c = TcpSocket::new_v4().unwrap();
        c.bind(SocketAddr::new(lo(1), 0)).unwrap();
        let mut third = c.connect(fx.dot()).await.unwrap();
        assert!(
            closed_by_server(&mut third, Duration::from_secs(2)).await,
            "a third connection from 127.0.0.1 is closed at once"
        );
        let mut d = tls_from(&fx.pki, fx.dot(), lo(2), b"dot").await.unwrap();
        let mut e = tls_from(&fx.pki, fx.dot(), lo(3), b"dot").await.unwrap();
        assert!(
            dot_exchange(&mut e, &www).await.is_some(),
            "the 4th connection is served"
        );
        let mut f = tls_from(&fx.pki, fx.dot(), lo(4), b"dot").await.unwrap();
        assert!(
            dot_exchange(&mut f, &www).await.is_some(),
            "a 5th connection is served"
        );
        assert!(
            closed_by_server(&mut a1, Duration::from_secs(2)).await,
            "in place of the one idle the longest"
        );
        // A query begun (one byte of its length) makes a connection busy: not evictable.
        for s in [&mut a2, &mut d, &mut e, &mut f] {
            s.write_all(&[0]).await.unwrap();
            s.flush().await.unwrap();
        }
        // Time for the server to read each byte, on a loaded machine (the read timeout is 10 s).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        c = TcpSocket::new_v4().unwrap();
        c.bind(SocketAddr::new(lo(5), 0)).unwrap();
        let mut sixth = c.connect(fx.dot()).await.unwrap();
        assert!(
            closed_by_server(&mut sixth, Duration::from_secs(2)).await,
            "with every connection busy a new one is closed at once"
        );
        drop((a2, d, e, f));
    });
    fx.limit_is("tls", "per_client_limit", 1.0);
    fx.limit_is("tls", "evicted", 1.0);
    fx.limit_is("tls", "full", 1.0);
    fx.eventually("connections released", |fx| {
        fx.metric("gslbd_connections_open{listener=\"dns_tls\"}") == 0.0
    });
    served(&fx, 5);

    // Concurrent streams: 3 queries held open on one DoH and one DoQ connection reach the
    // limit; a 4th waits for credit and is answered once one of them completes.
    fx.s.block_on(async {
        let mut h = doh(&fx.pki, fx.doh()).await;
        // One exchange first: the client then knows the server's SETTINGS (the stream limit).
        assert_eq!(doh_post(&mut h, &www).await.0, 200);
        let mut held = vec![];
        for _ in 0..3 {
            held.push(doh_half_post(&h, &www).await);
        }
        let mut h4 = h.clone();
        let www4 = www.clone();
        let fourth = tokio::spawn(async move { doh_post(&mut h4, &www4).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !fourth.is_finished(),
            "the 4th stream waits for the server's credit"
        );
        let (resp, mut body) = held.remove(0);
        body.send_data(Bytes::from(www[5..].to_vec()), true)
            .unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        assert_eq!(fourth.await.unwrap().0, 200);

        let q = doq(&fx.pki, fx.doq()).await;
        let mut open = vec![];
        for _ in 0..3 {
            let (mut s, r) = q.open_bi().await.unwrap();
            s.write_all(&(www.len() as u16).to_be_bytes())
                .await
                .unwrap();
            open.push((s, r));
        }
        let q4 = q.clone();
        let www4 = www.clone();
        let fourth = tokio::spawn(async move { doq_exchange(&q4, &www4).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!fourth.is_finished(), "the 4th DoQ stream waits for credit");
        let (mut s, mut r) = open.remove(0);
        s.write_all(&www).await.unwrap();
        s.finish().unwrap();
        assert!(r.read_to_end(4096).await.is_ok());
        assert!(fourth.await.unwrap().is_ok());
        drop((held, open));
    });
    // Reached twice on each: by the three held streams, and again when the fourth took the
    // place of the one that completed.
    fx.limit_is("https", "streams_limit", 2.0);
    fx.limit_is("quic", "streams_limit", 2.0);
    served(&fx, 6);

    // Request size: a DoT message over 512 bytes closes that connection; DoH says 413/414;
    // DoQ closes the connection.
    let big = vec![0u8; 600];
    fx.s.block_on(async {
        let mut t = dot(&fx.pki, fx.dot()).await;
        assert!(dot_exchange(&mut t, &big).await.is_none());
        let mut h = doh(&fx.pki, fx.doh()).await;
        assert_eq!(doh_post(&mut h, &big).await.0, 413);
        assert_eq!(doh_get(&mut h, &big).await.0, 414);
        assert_eq!(
            doh_post(&mut h, &www).await.0,
            200,
            "the DoH connection goes on"
        );
        let q = doq(&fx.pki, fx.doq()).await;
        assert!(doq_exchange(&q, &big).await.is_err());
    });
    fx.limit_is("tls", "request_too_large", 1.0);
    fx.limit_is("https", "request_too_large", 2.0);
    fx.eventually("DoQ too large counted", |fx| {
        fx.limit("quic", "request_too_large") == 1.0
    });
    served(&fx, 7);
}

/// A DoQ query too large ends its connection, and is counted as that even when the client
/// closes the connection the moment its stream fails (the server then sees the stream's end
/// and the peer's close together).
#[test]
fn a_doq_query_too_large_is_counted_when_the_client_leaves_at_once() {
    let fx = Fx::start(small_limits());
    let big = vec![0u8; 600];
    const N: usize = 30;
    fx.s.block_on(async {
        for _ in 0..N {
            let q = doq(&fx.pki, fx.doq()).await;
            assert!(doq_exchange(&q, &big).await.is_err());
            q.close(quinn::VarInt::from_u32(0), b"bye");
        }
    });
    fx.eventually("every DoQ query too large counted", |fx| {
        fx.limit("quic", "request_too_large") == N as f64
    });
    fx.eventually("connections released", |fx| {
        fx.metric("gslbd_connections_open{listener=\"dns_quic\"}") == 0.0
    });
}

/// A DoH client that goes away with a request half sent: its connection is released at once
/// (the request task ends with the connection; the server waits for it, so what it counts is
/// not lost, but not for its read timeout).
#[test]
fn a_doh_client_gone_mid_request_is_released_at_once() {
    let fx = Fx::start(test_limits());
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    let (driver, held) = fx.s.block_on(async {
        let tls = tls_from(&fx.pki, fx.doh(), lo(1), b"h2").await.unwrap();
        let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let held = doh_half_post(&send, &www).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        (driver, held)
    });
    let open = |fx: &Fx| fx.metric("gslbd_connections_open{listener=\"dns_https\"}");
    assert_eq!(open(&fx), 1.0);
    // The connection's socket goes with its driver.
    fx.s.block_on(async {
        driver.abort();
        let _ = driver.await;
    });
    drop(held);
    let t = Instant::now();
    while open(&fx) != 0.0 {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "released within 3 s (the read timeout is 10 s, the drain bound 5 s)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// DoH requests that are not DNS queries get HTTP errors (the connection goes on); a
/// non-DNS payload on DoT or DoQ closes that connection only.
#[test]
fn bad_requests_get_errors_and_close_only_their_connection() {
    let fx = Fx::start(test_limits());
    let www = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    fx.s.block_on(async {
        let mut h = doh(&fx.pki, fx.doh()).await;
        let get = |uri: &str| doh_request("GET", uri).body(()).unwrap();
        let cases = [
            (get("https://dns.test/dns-query?dns=%%%not-base64"), None, 400),
            (get("https://dns.test/dns-query?other=1"), None, 400),
            (get("https://dns.test/other?dns=AAAA"), None, 404),
            (
                doh_request("POST", "https://dns.test/dns-query")
                    .header("content-type", "application/dns-message")
                    .body(())
                    .unwrap(),
                Some(b"hello".to_vec()),
                400,
            ),
            (
                doh_request("POST", "https://dns.test/dns-query")
                    .header("content-type", "application/json")
                    .body(())
                    .unwrap(),
                Some(www.clone()),
                415,
            ),
            (
                doh_request("PUT", "https://dns.test/dns-query").body(()).unwrap(),
                None,
                405,
            ),
        ];
        for (req, body, status) in cases {
            let what = format!("{} {}", req.method(), req.uri());
            assert_eq!(doh_send(&mut h, req, body).await.0, status, "{what}");
        }
        assert_eq!(doh_post(&mut h, &www).await.0, 200, "same connection still answers");

        let mut bystander = dot(&fx.pki, fx.dot()).await;
        let mut t = dot(&fx.pki, fx.dot()).await;
        assert!(dot_exchange(&mut t, b"hello").await.is_none(), "closed");
        assert!(dot_exchange(&mut bystander, &www).await.is_some());

        let bystander = doq(&fx.pki, fx.doq()).await;
        let q = doq(&fx.pki, fx.doq()).await;
        assert!(doq_exchange(&q, b"hello").await.is_err());
        let why = q.closed().await;
        assert!(
            matches!(why, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == quinn::VarInt::from_u32(2)),
            "DOQ_PROTOCOL_ERROR: {why:?}"
        );
        // A query with a non-zero message ID is a protocol error too (RFC 9250 4.2.1).
        let q = doq(&fx.pki, fx.doq()).await;
        let mut id7 = www.clone();
        id7[1] = 7;
        assert!(doq_exchange(&q, &id7).await.is_err());
        assert!(doq_exchange(&bystander, &www).await.is_ok());
    });
    fx.limit_is("https", "malformed", 6.0);
    fx.limit_is("tls", "malformed", 1.0);
    fx.eventually("DoQ malformed counted", |fx| {
        fx.limit("quic", "malformed") == 2.0
    });

    // A TLS client offering only another protocol fails the handshake (ALPN, RFC 7301).
    fx.s.block_on(async {
        let r = tls_from(&fx.pki, fx.dot(), "127.0.0.1".parse().unwrap(), b"h2").await;
        assert!(r.is_err(), "h2 offered to the DoT listener");
    });
    fx.eventually("ALPN mismatch counted", |fx| {
        fx.limit("tls", "handshake_failed") == 1.0
    });
}

/// Padded queries get responses padded to a multiple of 468 bytes on the encrypted
/// transports, and unpadded over UDP and TCP (RFC 7830, RFC 8467).
#[test]
fn responses_to_padded_queries_are_padded_on_encrypted_transports() {
    let fx = Fx::start(test_limits());
    let mut m = hq("www.gslb.test.", RecordType::A, None);
    m.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(12, vec![0; 40]));
    let padded = m.to_vec().unwrap();
    let plain = hq("www.gslb.test.", RecordType::A, None).to_vec().unwrap();
    let has_padding = |r: &[u8]| {
        Message::from_vec(r)
            .unwrap()
            .edns
            .unwrap()
            .option(hickory_proto::rr::rdata::opt::EdnsCode::Padding)
            .is_some()
    };
    let udp = udp_raw(fx.s.addr, &padded).unwrap();
    assert!(!has_padding(&udp), "no padding in the clear");
    let mut s = std::net::TcpStream::connect(fx.s.addr).unwrap();
    assert!(!has_padding(&tcp_exchange(&mut s, &padded).unwrap()));
    fx.s.block_on(async {
        let mut t = dot(&fx.pki, fx.dot()).await;
        let r = dot_exchange(&mut t, &padded).await.unwrap();
        assert_eq!(r.len() % 468, 0, "DoT response padded to 468");
        assert!(has_padding(&r));
        let mut h = doh(&fx.pki, fx.doh()).await;
        let (_, r) = doh_post(&mut h, &padded).await;
        assert_eq!(r.len(), 468);
        let q = doq(&fx.pki, fx.doq()).await;
        assert_eq!(doq_exchange(&q, &padded).await.unwrap().len(), 468);
        // A large answer pads to the next block too.
        let mut big = hq("big.gslb.test.", RecordType::TXT, None);
        big.edns
            .as_mut()
            .unwrap()
            .options_mut()
            .insert(EdnsOption::Unknown(12, vec![]));
        let r = doq_exchange(&q, &big.to_vec().unwrap()).await.unwrap();
        assert!(r.len() > 4000 && r.len() % 468 == 0, "{}", r.len());
        // A FORMERR (a second OPT record) to a padded query is padded too.
        let mut two_opts = padded.clone();
        two_opts[11] = 2;
        two_opts.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let r = dot_exchange(&mut t, &two_opts).await.unwrap();
        assert_eq!(r[3] & 0x0f, 1, "FORMERR");
        assert_eq!(r.len() % 468, 0, "FORMERR padded");
        // Unpadded query: the same bytes as UDP.
        assert_eq!(
            dot_exchange(&mut t, &plain).await.unwrap(),
            udp_raw(fx.s.addr, &plain).unwrap()
        );
    });
}

/// Asking for encrypted listeners without a certificate, or a certificate that cannot be
/// used, stops the server at start with a message naming the file.
#[test]
fn start_refuses_missing_or_broken_certificates() {
    let out = Command::new(bin())
        .args([
            "serve",
            "--zones",
            "/nonexistent",
            "--listen-tls",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need --tls-cert and --tls-key"));

    let pki = Pki::new();
    std::fs::write(
        pki.key(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(zones.path().join("gslb.test.toml"), zone()).unwrap();
    std::fs::write(zones.path().join("datacenters.toml"), DATACENTERS).unwrap();
    let mut opts =
        gslbd::server::ServeOptions::new(zones.path(), vec!["127.0.0.1:0".parse().unwrap()]);
    let mut t = TlsOptions::new(pki.cert(), pki.key());
    t.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
    opts.tls = Some(t);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = match rt.block_on(gslbd::server::start(opts)) {
        Ok(_) => panic!("started with a broken key"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("key.pem"), "{err}");
}
