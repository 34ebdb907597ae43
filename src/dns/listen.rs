//! Binding and running the DNS listeners: UDP and TCP on every configured address, on the same
//! port (also when the port is 0), UDP over AF_XDP on the `--listen-xdp` interfaces, and the
//! encrypted ones (DoT, DoH, DoQ) on theirs, all under one child of the server's stop tree
//! (AF_XDP under a child of that one).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::conn::EncryptedLimits;
use super::handler::PacketHandler;
use super::tcp::StreamLimits;
use super::tls::{ALPN_DOQ, ALPN_DOT, ALPN_H2, CertStore};
use super::xdp::{self, XdpListen, XdpListeners, XdpMode, XdpView};
use super::{https, quic, tcp, tls, udp};
use crate::abuse::{ConnTable, Listener};
use crate::shutdown::Shutdown;

/// Listener settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListenConfig {
    /// Addresses to serve on (UDP and TCP each).
    pub(crate) addrs: Vec<SocketAddr>,
    /// UDP sockets (and threads) per address; 0 = one per core.
    pub(crate) udp_threads: usize,
    /// Timeouts, lifetime and query budget of each TCP connection (the connection counts
    /// are bounded by the table given to [`start`]).
    pub(crate) tcp: StreamLimits,
    /// Skip (with a warning) addresses that cannot be bound, as long as one can: for the
    /// built-in default of 127.0.0.1 and ::1 on hosts without IPv6.
    pub(crate) best_effort: bool,
    /// DoT, DoH and DoQ listeners, if any.
    pub(crate) encrypted: Option<EncryptedConfig>,
}

/// The encrypted listeners: their addresses, the certificate they share, their limits.
#[derive(Clone, Debug)]
pub(crate) struct EncryptedConfig {
    /// DNS over TLS addresses (TCP).
    pub(crate) tls: Vec<SocketAddr>,
    /// DNS over HTTPS addresses (TCP).
    pub(crate) https: Vec<SocketAddr>,
    /// DNS over QUIC addresses (UDP).
    pub(crate) quic: Vec<SocketAddr>,
    /// The certificate and key.
    pub(crate) certs: Arc<CertStore>,
    /// Timeouts and bounds of each of the three (each has a connection table of its own).
    pub(crate) limits: EncryptedLimits,
}

/// Sockets bound and served until [`Listeners::stop`] (or until their stop node is stopped).
pub(crate) struct Listeners {
    /// The addresses actually bound (ephemeral ports resolved), one per configured address.
    pub(crate) bound: Vec<SocketAddr>,
    /// The DoT addresses bound.
    pub(crate) tls: Vec<SocketAddr>,
    /// The DoH addresses bound.
    pub(crate) https: Vec<SocketAddr>,
    /// The DoQ addresses bound.
    pub(crate) quic: Vec<SocketAddr>,
    /// The connection tables of the encrypted listeners that run (for the metrics).
    pub(crate) tables: Vec<(Listener, Arc<ConnTable>)>,
    stop: Shutdown,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
    xdp: XdpListeners,
}

impl Listeners {
    /// Stops accepting, lets in-flight TCP queries finish (bounded by `grace`), joins the UDP
    /// and AF_XDP threads. The XDP programs are detached first, so from then on the kernel
    /// gets those packets again.
    pub(crate) async fn stop(mut self, grace: Duration) {
        self.xdp.detach();
        self.stop.stop();
        for t in self.tcp_tasks.drain(..) {
            let _ = tokio::time::timeout(grace, t).await;
        }
        let threads: Vec<_> = self.udp_threads.drain(..).collect();
        let xdp = std::mem::take(&mut self.xdp);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            xdp.join();
        })
        .await;
    }

    /// Starts UDP over AF_XDP on the interfaces of `list` (refused by a build without the
    /// `xdp` feature). The set-up blocks (program load, ring mapping, retries while a killed
    /// predecessor's program goes away), so it runs on a blocking thread.
    pub(crate) async fn start_xdp<H: PacketHandler>(
        &mut self,
        list: &[XdpListen],
        mode: XdpMode,
        handler: Arc<H>,
    ) -> io::Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        let (list, stop) = (list.to_vec(), self.stop.child());
        self.xdp = tokio::task::spawn_blocking(move || xdp::start(&list, mode, handler, stop))
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    /// The AF_XDP listeners' status, for the API.
    pub(crate) fn xdp_view(&self) -> XdpView {
        self.xdp.view()
    }
}

/// Binds UDP and TCP on every address and starts serving with `handler`, until `stop`; TCP
/// connections of every address are admitted through `tcp_table`. Must be called inside a
/// tokio runtime.
pub(crate) fn start<H: PacketHandler>(
    cfg: &ListenConfig,
    handler: Arc<H>,
    tcp_table: Arc<ConnTable>,
    stop: Shutdown,
) -> io::Result<Listeners> {
    let threads = if cfg.udp_threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.udp_threads
    };
    let mut out = Listeners {
        bound: vec![],
        tls: vec![],
        https: vec![],
        quic: vec![],
        tables: vec![],
        stop,
        udp_threads: vec![],
        tcp_tasks: vec![],
        xdp: XdpListeners::none(),
    };
    for (n, &addr) in cfg.addrs.iter().enumerate() {
        let (sockets, tcp, bound) = match bind_pair(addr, threads) {
            Ok(x) => x,
            Err(e) if cfg.best_effort && (n + 1 < cfg.addrs.len() || !out.bound.is_empty()) => {
                tracing::warn!(%addr, error = %e, "cannot listen here; continuing on the other addresses");
                continue;
            }
            Err(e) => return Err(e),
        };
        out.bound.push(bound);
        for (i, sock) in sockets.into_iter().enumerate() {
            let h = handler.clone();
            let stop = out.stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("udp-{bound}-{i}"))
                .spawn(move || udp::serve(sock, &*h, &stop))?;
            out.udp_threads.push(t);
        }
        let listener = TcpListener::from_std(tcp)?;
        let task = tokio::spawn(tcp::accept_loop(
            listener,
            handler.clone(),
            tcp_table.clone(),
            cfg.tcp,
            out.stop.clone(),
        ));
        out.tcp_tasks.push(task);
    }
    if let Some(enc) = &cfg.encrypted {
        start_encrypted(enc, handler, &mut out)?;
    }
    Ok(out)
}

/// Binds the DoT, DoH and DoQ addresses and starts serving them (one connection table per
/// kind, shared by its addresses, as TCP's is).
fn start_encrypted<H: PacketHandler>(
    enc: &EncryptedConfig,
    handler: Arc<H>,
    out: &mut Listeners,
) -> io::Result<()> {
    let lim = enc.limits;
    let tls_err = |e: rustls::Error| io::Error::other(format!("TLS configuration: {e}"));
    let mut table = |l: Listener| {
        let t = ConnTable::new(lim.table());
        out.tables.push((l, t.clone()));
        t
    };
    if !enc.tls.is_empty() {
        let cfg = enc.certs.server_config(ALPN_DOT, false).map_err(tls_err)?;
        let t = table(Listener::DnsTls);
        for &addr in &enc.tls {
            let l = TcpListener::from_std(tcp::listener(addr)?)?;
            out.tls.push(l.local_addr()?);
            out.tcp_tasks.push(tokio::spawn(tls::serve_dot(
                l,
                cfg.clone(),
                handler.clone(),
                t.clone(),
                lim,
                out.stop.clone(),
            )));
        }
    }
    if !enc.https.is_empty() {
        let cfg = enc.certs.server_config(ALPN_H2, false).map_err(tls_err)?;
        let t = table(Listener::DnsHttps);
        for &addr in &enc.https {
            let l = TcpListener::from_std(tcp::listener(addr)?)?;
            out.https.push(l.local_addr()?);
            out.tcp_tasks.push(tokio::spawn(https::serve_doh(
                l,
                cfg.clone(),
                handler.clone(),
                t.clone(),
                lim,
                out.stop.clone(),
            )));
        }
    }
    if !enc.quic.is_empty() {
        let cfg = enc.certs.server_config(ALPN_DOQ, true).map_err(tls_err)?;
        let t = table(Listener::DnsQuic);
        for &addr in &enc.quic {
            let ep = quic::endpoint(quic::socket(addr)?, cfg.clone(), &lim)?;
            out.quic.push(ep.local_addr()?);
            out.tcp_tasks.push(tokio::spawn(quic::serve_doq(
                ep,
                handler.clone(),
                t.clone(),
                lim,
                out.stop.clone(),
            )));
        }
    }
    Ok(())
}

/// Binds `n` UDP sockets and a TCP listener on one address; with port 0, retries until UDP
/// and TCP share a free port.
fn bind_pair(
    addr: SocketAddr,
    n: usize,
) -> io::Result<(Vec<UdpSocket>, std::net::TcpListener, SocketAddr)> {
    let mut last_err = None;
    for _ in 0..20 {
        let first = udp::socket(addr)?;
        let bound = first.local_addr()?;
        match tcp::listener(bound) {
            Ok(tcp) => {
                let mut socks = vec![first];
                for _ in 1..n {
                    socks.push(udp::socket(bound)?);
                }
                return Ok((socks, tcp, bound));
            }
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}
