//! The `tcp` check: a connect to the port succeeds. Its keys, validation, identity and probe.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::outcome::ProbeOutcome;
use crate::walk::{Errors, Table};

/// The keys of a `tcp` check besides the common ones.
pub(crate) const KEYS: &[&str] = &["port"];

/// A `tcp` check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TcpCheck {
    /// Port connected to on every target address.
    pub(crate) port: u16,
}

impl TcpCheck {
    /// Reads the keys of a `tcp` check (`port` is required); `None` after reporting an error.
    pub(crate) fn read(t: &mut Table<'_>, errs: &mut Errors) -> Option<TcpCheck> {
        let port = t.int("port", 1, 65535, errs).map(|x| x as u16);
        if port.is_none() && !t.has("port") {
            errs.add(&t.key_path("port"), "is required for a tcp check");
        }
        Some(TcpCheck { port: port? })
    }

    /// What is probed, for the warm-start key.
    pub(crate) fn fingerprint(&self) -> String {
        format!("tcp:{}", self.port)
    }
}

/// One connect to `addr`: the verdict and the connect time.
pub(super) async fn probe(addr: SocketAddr, timeout: Duration) -> (ProbeOutcome, Option<Duration>) {
    let start = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => (ProbeOutcome::Timeout(timeout), None),
        Ok(Ok(_stream)) => (ProbeOutcome::Pass, Some(start.elapsed())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => (ProbeOutcome::Refused, None),
        Ok(Err(e)) => (ProbeOutcome::Other(e.to_string()), None),
    }
}
