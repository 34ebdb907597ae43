//! TLS for the encrypted transports: the certificate (reloadable under running connections),
//! the rustls configurations with the ALPN each RFC names, and DNS over TLS itself (RFC 7858),
//! which is the TCP loop (`tcp::serve_stream`) over a TLS stream.
//!
//! ```text
//! cert.pem + key.pem --CertStore::load/reload--> ArcSwap<CertifiedKey>
//!                                                   ^ resolve() per handshake
//! rustls ServerConfig (ALPN dot | h2 | doq) --------+  shared by every connection
//! DoT: accept --ConnTable--> TLS handshake (bounded) --> tcp::serve_stream (TCP's loop)
//! ```
//!
//! Reloading swaps the certificate the *next* handshake gets; established connections keep
//! the keys they negotiated and are not touched. A file that does not load (unreadable, no
//! certificate, no key, a key that does not match) leaves the current certificate in place.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use tokio::io::AsyncWriteExt;

use super::conn::EncryptedLimits;
use super::handler::{PacketHandler, Peer, Transport};
use super::tcp::{StreamLimits, admit, serve_stream};
use crate::abuse::{CloseReason, ConnTable, Listener, Ticket};
use crate::shutdown::Shutdown;

/// ALPN of DNS over TLS (RFC 7858 via the IANA registry).
pub(crate) const ALPN_DOT: &[u8] = b"dot";
/// ALPN of DNS over HTTPS: HTTP/2 (RFC 8484 requires HTTP/2 or later).
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN of DNS over QUIC (RFC 9250 section 4.1.1).
pub(crate) const ALPN_DOQ: &[u8] = b"doq";

/// Why a certificate or key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate (or a broken one).
    #[error("{}: no certificate (expected a PEM chain, the server's certificate first){detail}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, if any.
        detail: String,
    },
    /// The key file holds no PEM private key (or a broken one).
    #[error("{}: no private key (expected PEM: PKCS#8, PKCS#1 or SEC1){detail}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, if any.
        detail: String,
    },
    /// The key was read but cannot be used, or does not belong to the certificate.
    #[error("{} with {}: {message}", cert.display(), key.display())]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        message: String,
    },
}

/// The server's certificate and key, swapped atomically on reload; every TLS and QUIC
/// listener resolves it per handshake.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// The crypto provider of every TLS and QUIC listener: aws-lc-rs, as the probes' reqwest uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a PEM chain and a PEM key and checks that they belong together.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_slice_iter(&cert_pem).collect();
    let chain = match chain {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            return Err(CertError::NoCertificate {
                path: cert.to_path_buf(),
                detail: String::new(),
            });
        }
        Err(e) => {
            return Err(CertError::NoCertificate {
                path: cert.to_path_buf(),
                detail: format!(": {e}"),
            });
        }
    };
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::NoKey {
        path: key.to_path_buf(),
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => String::new(),
            e => format!(": {e}"),
        },
    })?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(|e| CertError::Unusable {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        message: e.to_string(),
    })
}

impl CertStore {
    /// Loads the certificate chain and key (PEM files).
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>, CertError> {
        let provider = provider();
        let ck = load(cert, key, &provider)?;
        Ok(Arc::new(CertStore {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(ck),
        }))
    }

    /// Reads both files again: `Ok(true)` when the certificate or key changed and new
    /// handshakes now use them, `Ok(false)` when they are the same, `Err` when they do not
    /// load (the current ones stay).
    pub(crate) fn reload(&self) -> Result<bool, CertError> {
        let ck = load(&self.cert_path, &self.key_path, &self.provider)?;
        let cur = self.current.load();
        let same_key = match (ck.key.public_key(), cur.key.public_key()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if ck.cert == cur.cert && same_key {
            return Ok(false);
        }
        self.current.store(Arc::new(ck));
        Ok(true)
    }

    /// The certificate and key files.
    pub(crate) fn paths(&self) -> (&Path, &Path) {
        (&self.cert_path, &self.key_path)
    }

    /// A rustls server configuration that resolves this store's certificate per handshake
    /// and offers exactly `alpn`. `tls13_only` for QUIC, which requires TLS 1.3; DoT and DoH
    /// also accept TLS 1.2 (RFC 7858 and RFC 8484 allow it; some resolvers still use it).
    pub(crate) fn server_config(
        self: &Arc<Self>,
        alpn: &[u8],
        tls13_only: bool,
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![alpn.to_vec()];
        // Session tickets: a resolver that reconnects resumes instead of a full handshake.
        cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(Arc::new(cfg))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Accepts TCP connections for a TLS listener until `stop`: admits each through `table`
/// (refusing, or evicting the connection idle the longest, at a limit), and runs `serve` on
/// each in its own task once its TLS handshake has finished within the handshake timeout.
/// Returns when every connection has ended (the caller bounds how long it waits).
#[allow(clippy::too_many_arguments, reason = "one call site per transport")]
pub(crate) async fn accept_tls<H, F, Fut>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    which: Listener,
    handshake: Duration,
    h: Arc<H>,
    table: Arc<ConnTable>,
    stop: Shutdown,
    serve: F,
) where
    H: PacketHandler,
    F: Fn(TlsStream<TcpStream>, IpAddr, Arc<H>, Ticket, Shutdown) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<CloseReason>> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, addr) = tokio::select! {
            _ = stop.stopped() => break,
            acc = listener.accept() => match acc {
                Ok(x) => x,
                Err(e) if crate::abuse::is_resource_exhaustion(&e) => {
                    // As over TCP: free the descriptor of the connection idle the longest and
                    // wait, rather than spin on a listener that stays readable.
                    backoff = crate::abuse::next_backoff(backoff);
                    h.accept_failed(which, &e, backoff);
                    if let Some(client) = table.evict_oldest_idle() {
                        h.conn_closed(which, CloseReason::FdExhausted, client);
                    }
                    tokio::select! {
                        _ = stop.stopped() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
                Err(_) => continue,
            },
        };
        backoff = Duration::ZERO;
        let client = addr.ip();
        let Some(ticket) = admit(&table, &*h, which, client) else {
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let (h, acceptor, stop, serve) = (h.clone(), acceptor.clone(), stop.clone(), serve.clone());
        tasks.spawn(async move {
            // The handshake runs idle: a table that fills up closes a stalled one first.
            let tls = tokio::select! {
                r = tokio::time::timeout(handshake, acceptor.accept(stream)) => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(_)) => {
                        return h.conn_closed(which, CloseReason::HandshakeFailed, client);
                    }
                    Err(_) => return h.conn_closed(which, CloseReason::HandshakeTimeout, client),
                },
                () = ticket.evicted() => return,
                _ = stop.stopped() => return,
            };
            let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            h.conn_opened(which, resumed);
            if let Some(reason) = serve(tls, client, h.clone(), ticket, stop).await {
                h.conn_closed(which, reason, client);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// DNS over TLS on one listener until `stop`: length-framed queries on TCP's own connection
/// loop (idle timeout, lifetime, read and write timeouts, eviction), with the request bound of
/// the encrypted listeners and no query budget (a new connection costs a handshake).
pub(crate) async fn serve_dot<H: PacketHandler>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    h: Arc<H>,
    table: Arc<ConnTable>,
    lim: EncryptedLimits,
    stop: Shutdown,
) {
    let limits = StreamLimits {
        idle_timeout: lim.idle_timeout,
        lifetime: lim.lifetime,
        max_queries: 0,
        read_timeout: lim.read_timeout,
        write_timeout: lim.write_timeout,
        max_request: lim.max_request_size.min(usize::from(u16::MAX)),
    };
    let serve = move |mut s: TlsStream<TcpStream>,
                      client: IpAddr,
                      h: Arc<H>,
                      ticket: Ticket,
                      stop: Shutdown| async move {
        let peer = Peer::new(client, Transport::Tls);
        let end = serve_stream(&mut s, peer, &*h, &ticket, &limits, &stop).await;
        // close_notify, bounded: a peer that does not read must not hold the task.
        let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
        end.ok().flatten()
    };
    accept_tls(
        listener,
        TlsAcceptor::from(tls),
        Listener::DnsTls,
        lim.handshake_timeout,
        h,
        table,
        stop,
        serve,
    )
    .await;
}
