//! Running one probe: HTTP(S) through reqwest, TCP through tokio.
//!
//! Clients are built once per [`Prober`]: one per (TLS verify, redirects) setting shared by
//! every target, plus one per https target that names a `host`, because SNI and certificate
//! checks need that name in the URL while the connection must go to the target address
//! (`ClientBuilder::resolve` pins it, and that pin is a client setting).

use std::collections::HashMap;
use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::{HOST, HeaderValue};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::outcome::{LoadFigure, Outcome, ProbeResult};
use super::spec::{CheckKind, HttpCheck};
use super::target::{ProbeSet, Target};

/// Bodies are read up to this size: enough for any health document, bounded against a
/// misbehaving endpoint.
pub const MAX_BODY: usize = 64 * 1024;

/// The HTTP clients could not be built (TLS initialisation).
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP probe client: {0}")]
pub struct ProberError(#[from] reqwest::Error);

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    verify: bool,
    follow_redirects: bool,
    pin: Option<(String, SocketAddr)>,
}

/// Runs probes for the targets of one [`ProbeSet`].
#[derive(Debug)]
pub struct Prober {
    /// Client of each target (None for TCP targets). `reqwest::Client` is an `Arc` inside.
    clients: Vec<Option<reqwest::Client>>,
}

impl Prober {
    pub fn new(set: &ProbeSet) -> Result<Prober, ProberError> {
        let mut built: HashMap<ClientKey, reqwest::Client> = HashMap::new();
        let mut clients = Vec::with_capacity(set.targets.len());
        for t in &set.targets {
            let CheckKind::Http(h) = &t.check.kind else {
                clients.push(None);
                continue;
            };
            let key = ClientKey {
                verify: h.verify || !h.tls,
                follow_redirects: h.follow_redirects,
                pin: match (&h.host, h.tls) {
                    (Some(host), true) => Some((host.clone(), t.addr)),
                    _ => None,
                },
            };
            let client = match built.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = build_client(&key)?;
                    built.insert(key, c.clone());
                    c
                }
            };
            clients.push(Some(client));
        }
        Ok(Prober { clients })
    }

    /// Probe `target` once; never takes longer than its check's timeout (plus scheduling).
    pub async fn probe(&self, target: &Target) -> ProbeResult {
        let timeout = target.check.timeout;
        let start = Instant::now();
        let (outcome, latency, load) = match &target.check.kind {
            CheckKind::Tcp { .. } => {
                let (o, l) = tcp(target.addr, timeout).await;
                (o, l, None)
            }
            CheckKind::Http(h) => match self
                .clients
                .get(target.id.0 as usize)
                .and_then(|c| c.as_ref())
            {
                Some(client) => http(client, target.addr, h, timeout, start).await,
                None => (
                    Outcome::Other("no HTTP client for this target".into()),
                    None,
                    None,
                ),
            },
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

fn build_client(key: &ClientKey) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        // Probes go straight to the target: an HTTP_PROXY in the environment must not apply.
        .no_proxy()
        // A fresh connection per probe: a listener that stopped accepting must fail the check
        // even while an old keep-alive connection still works.
        .pool_max_idle_per_host(0)
        .user_agent(concat!("gslbd-probe/", env!("CARGO_PKG_VERSION")))
        .redirect(if key.follow_redirects {
            reqwest::redirect::Policy::limited(5)
        } else {
            reqwest::redirect::Policy::none()
        })
        .tls_danger_accept_invalid_certs(!key.verify);
    if let Some((host, addr)) = &key.pin {
        b = b.resolve(host, *addr);
    }
    b.build()
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> (Outcome, Option<Duration>) {
    let start = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => (Outcome::Timeout(timeout), None),
        Ok(Ok(_stream)) => (Outcome::Pass, Some(start.elapsed())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => (Outcome::Refused, None),
        Ok(Err(e)) => (Outcome::Other(e.to_string()), None),
    }
}

fn url(addr: SocketAddr, h: &HttpCheck) -> String {
    let scheme = if h.tls { "https" } else { "http" };
    let host = match (&h.host, h.tls) {
        // https with a name: the name goes in the URL (SNI, certificate), the client pins it
        // to the target address.
        (Some(host), true) => host.clone(),
        _ => match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        },
    };
    let slash = if h.path.starts_with('/') { "" } else { "/" };
    format!("{scheme}://{host}:{}{slash}{}", addr.port(), h.path)
}

async fn http(
    client: &reqwest::Client,
    addr: SocketAddr,
    h: &HttpCheck,
    timeout: Duration,
    start: Instant,
) -> (Outcome, Option<Duration>, Option<LoadFigure>) {
    let mut req = client.get(url(addr, h)).timeout(timeout);
    if let (Some(host), false) = (&h.host, h.tls) {
        match HeaderValue::from_str(host) {
            Ok(v) => req = req.header(HOST, v),
            Err(_) => {
                return (
                    Outcome::Other(format!("invalid Host header `{host}`")),
                    None,
                    None,
                );
            }
        }
    }
    // The outer timeout also bounds reading the body, which reqwest's covers too; belt and
    // braces, because a hanging target must never hold a probe slot longer than the timeout.
    let work = async {
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (classify(&e, timeout), None, None),
        };
        let ttfb = start.elapsed();
        let status = resp.status().as_u16();
        if !h.status_ok(status) {
            return (Outcome::Status(status), Some(ttfb), None);
        }
        if !h.needs_body() {
            return (Outcome::Pass, Some(ttfb), None);
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    let room = MAX_BODY - body.len();
                    body.extend_from_slice(&c[..c.len().min(room)]);
                    if body.len() >= MAX_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return (classify(&e, timeout), Some(ttfb), None),
            }
        }
        if let Some(needle) = &h.body_contains
            && !String::from_utf8_lossy(&body).contains(needle.as_str())
        {
            return (Outcome::BodyMismatch, Some(ttfb), None);
        }
        let figure = match (&h.load_pointer, &h.connections_pointer) {
            (Some(p), _) => read_number(&body, p).map(|v| LoadFigure::Utilisation(v.min(1.0))),
            (None, Some(p)) => read_number(&body, p).map(LoadFigure::Connections),
            (None, None) => return (Outcome::Pass, Some(ttfb), None),
        };
        match figure {
            Ok(f) => (Outcome::Pass, Some(ttfb), Some(f)),
            Err(reason) => (Outcome::BadLoad(reason), Some(ttfb), None),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => (Outcome::Timeout(timeout), None, None),
    }
}

/// Read a non-negative finite number at JSON `pointer` in `body`; the error says why not.
pub fn read_number(body: &[u8], pointer: &str) -> Result<f64, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e})"))?;
    let v = doc
        .pointer(pointer)
        .ok_or_else(|| format!("no value at `{pointer}`"))?;
    let n = v
        .as_f64()
        .ok_or_else(|| format!("`{pointer}` is {v}, not a number"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("`{pointer}` is {n}, not a non-negative number"));
    }
    Ok(n)
}

fn classify(e: &reqwest::Error, timeout: Duration) -> Outcome {
    if e.is_timeout() {
        return Outcome::Timeout(timeout);
    }
    // reqwest's own message is terse ("error sending request"); the cause is in the chain.
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::ConnectionRefused {
                return Outcome::Refused;
            }
            if io.kind() == io::ErrorKind::TimedOut {
                return Outcome::Timeout(timeout);
            }
        }
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    Outcome::Other(msg)
}
