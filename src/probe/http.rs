//! The `http` and `https` check: everything about it in one place — its zone-file keys, its
//! validation, its identity for warm start, and the probe itself (a GET through reqwest).
//!
//! Clients are built once per [`Prober`](super::Prober): one per (TLS verify, redirects)
//! setting shared by every target, plus one per https target that names a `host`, because SNI
//! and certificate checks need that name in the URL while the connection must go to the target
//! address (`ClientBuilder::resolve` pins it, and that pin is a client setting).

use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use reqwest::header::{HOST, HeaderValue};
use tokio::time::Instant;

use super::outcome::{LoadFigure, ProbeOutcome};
use super::spec::CheckError;
use crate::walk::{self, DeValue, Errors, SHOWN_CHARS, Table, index, one_line, shown};

/// Bodies are read up to this size: enough for any health document, bounded against a
/// misbehaving endpoint.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The keys of an `http`/`https` check besides the common ones.
pub(crate) const KEYS: &[&str] = &[
    "path",
    "port",
    "host",
    "expect",
    "body",
    "verify-tls",
    "follow-redirects",
    "load",
    "connections",
];

/// An `http`/`https` check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// `https` when true.
    pub tls: bool,
    /// Verify the server certificate (https only; default true). Off for self-signed endpoints.
    pub verify: bool,
    /// Request path, e.g. `/health`.
    pub(crate) path: String,
    /// Port probed on every target address (default 80, or 443 for https).
    pub(crate) port: u16,
    /// Host header, and the TLS SNI name for https; `None` = the target address.
    pub host: Option<String>,
    /// Accepted status codes (default `200..=299`).
    pub(crate) expect_status: Vec<RangeInclusive<u16>>,
    /// The body must contain this substring.
    pub body_contains: Option<String>,
    /// Follow redirects (default false: a 3xx is judged as it is).
    pub follow_redirects: bool,
    /// JSON pointer (RFC 6901) to a utilisation 0..1 in the body.
    pub load_pointer: Option<String>,
    /// JSON pointer to a connection count in the body; load = count / datacenter capacity.
    pub connections_pointer: Option<String>,
}

impl HttpCheck {
    /// A plain http GET of `path` on `port` with the documented defaults.
    pub fn new(path: impl Into<String>, port: u16) -> HttpCheck {
        HttpCheck {
            tls: false,
            verify: true,
            path: path.into(),
            port,
            host: None,
            expect_status: vec![200..=299],
            body_contains: None,
            follow_redirects: false,
            load_pointer: None,
            connections_pointer: None,
        }
    }

    /// Reads the keys of an `http` (`tls` false) or `https` check from `t`.
    pub(crate) fn read(t: &mut Table<'_>, tls: bool, errs: &mut Errors) -> HttpCheck {
        let port = t.int("port", 1, 65535, errs).map(|x| x as u16);
        let mut h = HttpCheck::new(
            t.str("path", errs).unwrap_or("/"),
            port.unwrap_or(if tls { 443 } else { 80 }),
        );
        h.tls = tls;
        h.host = t.str("host", errs).map(str::to_string);
        if let Some(v) = t.get("expect") {
            h.expect_status = status_ranges(v, &t.key_path("expect"), errs);
        }
        h.body_contains = t.str("body", errs).map(str::to_string);
        h.verify = t.bool("verify-tls", errs).unwrap_or(true);
        h.follow_redirects = t.bool("follow-redirects", errs).unwrap_or(false);
        h.load_pointer = t.str("load", errs).map(str::to_string);
        h.connections_pointer = t.str("connections", errs).map(str::to_string);
        h
    }

    /// Does the body have to be read at all?
    pub(crate) fn needs_body(&self) -> bool {
        self.body_contains.is_some()
            || self.load_pointer.is_some()
            || self.connections_pointer.is_some()
    }

    /// Is `status` one of the expected codes?
    pub(crate) fn status_ok(&self, status: u16) -> bool {
        self.expect_status.iter().any(|r| r.contains(&status))
    }

    /// What is probed, for the warm-start key (see `CheckSpec::fingerprint`).
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            if self.tls { "https" } else { "http" },
            self.port,
            self.host.as_deref().unwrap_or(""),
            self.path
        )
    }

    /// Rejects settings that cannot work.
    pub(crate) fn validate(&self) -> Result<(), CheckError> {
        if self.load_pointer.is_some() && self.connections_pointer.is_some() {
            return Err(CheckError::BothLoadAndConnections);
        }
        for p in self
            .load_pointer
            .iter()
            .chain(self.connections_pointer.iter())
        {
            if !(p.is_empty() || p.starts_with('/')) {
                return Err(CheckError::BadPointer(p.clone()));
            }
        }
        if self.expect_status.is_empty() || self.expect_status.iter().any(|r| r.start() > r.end()) {
            return Err(CheckError::BadStatusRanges);
        }
        Ok(())
    }
}

fn status_ranges(v: &DeValue<'_>, p: &str, errs: &mut Errors) -> Vec<RangeInclusive<u16>> {
    let items: Vec<(String, &DeValue<'_>)> = match v {
        DeValue::Array(a) => walk::items(a)
            .enumerate()
            .map(|(i, x)| (index(p, i), x))
            .collect(),
        other => vec![(p.to_string(), other)],
    };
    let mut out = Vec::new();
    for (ip, x) in items {
        let r = match x {
            DeValue::Integer(_) => walk::integer(x)
                .filter(|i| (100..=599).contains(i))
                .map(|i| i as u16..=i as u16),
            DeValue::String(s) => s.split_once('-').and_then(|(a, b)| {
                let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
                (100 <= a && a <= b && b <= 599).then_some(a..=b)
            }),
            _ => None,
        };
        match r {
            Some(r) => out.push(r),
            None => errs.add(
                &ip,
                "expected an HTTP status (200) or a range (\"200-299\")",
            ),
        }
    }
    out
}

/// What makes two targets need different HTTP clients.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    verify: bool,
    follow_redirects: bool,
    pin: Option<(String, SocketAddr)>,
}

impl ClientKey {
    pub(super) fn of(h: &HttpCheck, addr: SocketAddr) -> ClientKey {
        ClientKey {
            verify: h.verify || !h.tls,
            follow_redirects: h.follow_redirects,
            pin: match (&h.host, h.tls) {
                (Some(host), true) => Some((host.clone(), addr)),
                _ => None,
            },
        }
    }

    pub(super) fn build(&self, agent: &str) -> Result<reqwest::Client, reqwest::Error> {
        let mut b = reqwest::Client::builder()
            // Probes go straight to the target: an HTTP_PROXY in the environment must not apply.
            .no_proxy()
            // A fresh connection per probe: a listener that stopped accepting must fail the
            // check even while an old keep-alive connection still works.
            .pool_max_idle_per_host(0)
            .user_agent(agent)
            .redirect(if self.follow_redirects {
                reqwest::redirect::Policy::limited(5)
            } else {
                reqwest::redirect::Policy::none()
            })
            .tls_danger_accept_invalid_certs(!self.verify);
        if let Some((host, addr)) = &self.pin {
            b = b.resolve(host, *addr);
        }
        b.build()
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

/// One GET of `h` against `addr`: the verdict, the time to the response headers and the load
/// figure when the check reads one.
pub(super) async fn probe(
    client: &reqwest::Client,
    addr: SocketAddr,
    h: &HttpCheck,
    timeout: Duration,
    start: Instant,
) -> (ProbeOutcome, Option<Duration>, Option<LoadFigure>) {
    let mut req = client.get(url(addr, h)).timeout(timeout);
    if let (Some(host), false) = (&h.host, h.tls) {
        match HeaderValue::from_str(host) {
            Ok(v) => req = req.header(HOST, v),
            Err(_) => {
                return (
                    ProbeOutcome::Other(format!("invalid Host header {}", shown(host))),
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
            return (ProbeOutcome::Status(status), Some(ttfb), None);
        }
        if !h.needs_body() {
            return (ProbeOutcome::Pass, Some(ttfb), None);
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
            return (ProbeOutcome::BodyMismatch, Some(ttfb), None);
        }
        let figure = match (&h.load_pointer, &h.connections_pointer) {
            (Some(p), _) => read_number(&body, p).map(|v| LoadFigure::Utilisation(v.min(1.0))),
            (None, Some(p)) => read_number(&body, p).map(LoadFigure::Connections),
            (None, None) => return (ProbeOutcome::Pass, Some(ttfb), None),
        };
        match figure {
            Ok(f) => (ProbeOutcome::Pass, Some(ttfb), Some(f)),
            Err(reason) => (ProbeOutcome::BadLoad(reason), Some(ttfb), None),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => (ProbeOutcome::Timeout(timeout), None, None),
    }
}

/// Read a non-negative finite number at JSON `pointer` in `body`; the error says why not.
pub(crate) fn read_number(body: &[u8], pointer: &str) -> Result<f64, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e})"))?;
    let v = doc
        .pointer(pointer)
        .ok_or_else(|| format!("no value at {}", shown(pointer)))?;
    let n = v.as_f64().ok_or_else(|| {
        let v = v.to_string();
        format!(
            "{} is {}, not a number",
            shown(pointer),
            one_line(&v, SHOWN_CHARS)
        )
    })?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!(
            "{} is {n}, not a non-negative number",
            shown(pointer)
        ));
    }
    Ok(n)
}

fn classify(e: &reqwest::Error, timeout: Duration) -> ProbeOutcome {
    if e.is_timeout() {
        return ProbeOutcome::Timeout(timeout);
    }
    // reqwest's own message is terse ("error sending request"); the cause is in the chain.
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::ConnectionRefused {
                return ProbeOutcome::Refused;
            }
            if io.kind() == io::ErrorKind::TimedOut {
                return ProbeOutcome::Timeout(timeout);
            }
        }
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ProbeOutcome::Other(msg)
}
