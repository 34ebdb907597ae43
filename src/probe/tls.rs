//! The `tls` check: a TLS handshake with the target succeeds (SNI = `host`), the certificate
//! chain verifies (unless `verify-tls = false`), and no certificate the server sends expires
//! within `min-days` (default 7). A certificate about to expire takes the datacenter down
//! before users see errors. Its keys, validation, identity and probe.
//!
//! ```text
//!  TCP connect --> rustls handshake (SNI host, platform verifier or none)
//!       --> earliest notAfter of the served chain (x509-parser) --> now + min-days < it ?
//! ```
//!
//! The verifier is the one reqwest uses for `https` checks (rustls-platform-verifier: the
//! system's roots), so a `tls` and an `https` check of the same endpoint agree on trust.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::outcome::ProbeOutcome;
use crate::walk::{Errors, Table};

/// The keys of a `tls` check besides the common ones.
pub(crate) const KEYS: &[&str] = &["port", "host", "verify-tls", "min-days"];

/// Default `min-days`.
pub(crate) const DEFAULT_MIN_DAYS: u32 = 7;

/// A `tls` check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsCheck {
    /// Port connected to on every target address (default 443).
    pub port: u16,
    /// SNI name and the name the certificate must be valid for; `None` = the target address.
    pub host: Option<String>,
    /// Verify the chain against the system's roots (default true).
    pub verify: bool,
    /// Down when a served certificate expires within this many days (default 7; 0 = only
    /// when expired).
    pub min_days: u32,
}

impl TlsCheck {
    /// A handshake on `port` with the defaults.
    pub fn new(port: u16) -> TlsCheck {
        TlsCheck {
            port,
            host: None,
            verify: true,
            min_days: DEFAULT_MIN_DAYS,
        }
    }

    /// Reads the keys of a `tls` check; `None` after reporting an error.
    pub(crate) fn read(t: &mut Table<'_>, errs: &mut Errors) -> Option<TlsCheck> {
        let before = errs.list.len();
        let mut c = TlsCheck::new(t.int("port", 1, 65535, errs).map_or(443, |x| x as u16));
        if let Some(h) = t.str("host", errs) {
            if ServerName::try_from(h.to_string()).is_err() {
                errs.add(
                    &t.key_path("host"),
                    format!("{h:?} is not a DNS name or IP address usable as a TLS server name"),
                );
            }
            c.host = Some(h.to_string());
        }
        c.verify = t.bool("verify-tls", errs).unwrap_or(true);
        if let Some(d) = t.int("min-days", 0, 3650, errs) {
            c.min_days = d as u32;
        }
        (errs.list.len() == before).then_some(c)
    }

    /// What is probed, for the warm-start key.
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "tls:{}:{}:{}",
            self.port,
            self.host.as_deref().unwrap_or(""),
            self.min_days
        )
    }
}

/// The rustls configuration for checks with verification on (`verify`) or off.
pub(super) fn client_config(verify: bool) -> Result<Arc<ClientConfig>, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if verify {
        b.with_platform_verifier()?.with_no_client_auth()
    } else {
        b.dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `verify-tls = false`: any chain is accepted, but the handshake signatures are still
/// checked (the server must hold the key of the certificate it sends).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The earliest expiry among `certs`: (unix seconds, the certificate's subject).
pub(crate) fn earliest_expiry(certs: &[CertificateDer<'_>]) -> Result<(i64, String), String> {
    let mut best: Option<(i64, String)> = None;
    for (i, der) in certs.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("certificate {i} of the chain cannot be read: {e}"))?;
        let at = cert.validity().not_after.timestamp();
        if best.as_ref().is_none_or(|(b, _)| at < *b) {
            best = Some((at, cert.subject().to_string()));
        }
    }
    best.ok_or_else(|| "the server sent no certificate".to_string())
}

/// Judges the time left before `not_after` (unix seconds) at `now` against `min_days`.
pub(crate) fn judge_expiry(
    not_after: i64,
    subject: &str,
    now: SystemTime,
    min_days: u32,
) -> ProbeOutcome {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let left = not_after.saturating_sub(now);
    let days = left as f64 / 86_400.0;
    let who = if subject.is_empty() {
        String::new()
    } else {
        format!(" ({subject})")
    };
    if left <= 0 {
        return ProbeOutcome::Expiring(format!("expired {:.1} days ago{who}", -days));
    }
    if left < i64::from(min_days) * 86_400 {
        return ProbeOutcome::Expiring(format!(
            "expires in {days:.1} days{who}, below min-days {min_days}"
        ));
    }
    ProbeOutcome::Pass
}

/// One handshake of `c` with `addr`: the verdict and the time to a completed handshake.
pub(super) async fn probe(
    connector: &TlsConnector,
    addr: SocketAddr,
    c: &TlsCheck,
    timeout: Duration,
) -> (ProbeOutcome, Option<Duration>) {
    let start = Instant::now();
    let name = match &c.host {
        Some(h) => match ServerName::try_from(h.clone()) {
            Ok(n) => n,
            Err(e) => return (ProbeOutcome::Other(format!("server name {h:?}: {e}")), None),
        },
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let work = async {
        let tcp = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return (ProbeOutcome::Refused, None);
            }
            Err(e) => return (ProbeOutcome::Other(e.to_string()), None),
        };
        let tls = match connector.connect(name, tcp).await {
            Ok(s) => s,
            Err(e) => return (ProbeOutcome::Other(format!("TLS handshake: {e}")), None),
        };
        let took = start.elapsed();
        let certs = tls.get_ref().1.peer_certificates().unwrap_or(&[]);
        let outcome = match earliest_expiry(certs) {
            Ok((at, subject)) => judge_expiry(at, &subject, SystemTime::now(), c.min_days),
            Err(e) => ProbeOutcome::Other(e),
        };
        (outcome, Some(took))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => (ProbeOutcome::Timeout(timeout), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_against_min_days() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let day = 86_400;
        let at = |d: i64| 1_000_000_000 + d * day;
        assert_eq!(judge_expiry(at(30), "", now, 7), ProbeOutcome::Pass);
        assert!(matches!(
            judge_expiry(at(3), "CN=x", now, 7),
            ProbeOutcome::Expiring(m) if m == "expires in 3.0 days (CN=x), below min-days 7"
        ));
        assert!(
            matches!(judge_expiry(at(-2), "", now, 0), ProbeOutcome::Expiring(m) if m.starts_with("expired 2.0"))
        );
        assert_eq!(judge_expiry(at(1), "", now, 0), ProbeOutcome::Pass);
    }
}
