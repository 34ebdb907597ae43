//! UDP and TCP listeners.
//!
//! UDP is the hot path: one socket per core per address with SO_REUSEPORT, each served by a
//! plain thread in a blocking receive loop (no task spawn, no channel hop, one reusable buffer
//! per thread). TCP is rare and slow by nature: tokio tasks, a bound on connections, an idle
//! timeout, and several queries per connection.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::answer::Client;
use super::wire::Query;

/// Answers one packet into `out`; `None` = drop. Implemented by the running server state.
pub trait PacketHandler: Send + Sync + 'static {
    fn handle(&self, req: &[u8], client: &Client, q: &mut Query, out: &mut [u8]) -> Option<usize>;
}

/// Listener settings.
#[derive(Clone, Debug)]
pub struct ListenConfig {
    pub addrs: Vec<SocketAddr>,
    /// UDP sockets (and threads) per address; 0 = one per core.
    pub udp_threads: usize,
    pub tcp_max_connections: usize,
    pub tcp_idle_timeout: Duration,
    /// Skip (with a warning) addresses that cannot be bound, as long as one can: for the
    /// built-in default of 127.0.0.1 and ::1 on hosts without IPv6.
    pub best_effort: bool,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            addrs: vec![],
            udp_threads: 0,
            tcp_max_connections: 512,
            tcp_idle_timeout: Duration::from_secs(10),
            best_effort: false,
        }
    }
}

/// Sockets bound and served; dropping or calling `stop` ends every loop.
pub struct Listeners {
    /// The addresses actually bound (ephemeral ports resolved), one per configured address.
    pub bound: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    tcp_stop: watch::Sender<bool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    /// Stops accepting, lets in-flight TCP queries finish (bounded), joins the UDP threads.
    pub async fn stop(mut self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.tcp_stop.send(true);
        for t in self.tcp_tasks.drain(..) {
            let _ = tokio::time::timeout(grace, t).await;
        }
        let threads: Vec<_> = self.udp_threads.drain(..).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    // Bursts should queue in the kernel rather than be dropped.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    // A read timeout lets the loop notice shutdown without a wake-up packet.
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Binds UDP and TCP on every address (the same port for both, also when the port is 0)
/// and starts serving with `handler`. Must be called inside a tokio runtime.
pub fn start<H: PacketHandler>(cfg: &ListenConfig, handler: Arc<H>) -> io::Result<Listeners> {
    let threads = if cfg.udp_threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.udp_threads
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (tcp_stop, tcp_stop_rx) = watch::channel(false);
    let mut out = Listeners {
        bound: vec![],
        stop: stop.clone(),
        tcp_stop,
        udp_threads: vec![],
        tcp_tasks: vec![],
    };
    let conns = Arc::new(Semaphore::new(cfg.tcp_max_connections));
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
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("udp-{bound}-{i}"))
                .spawn(move || super::udp_batch::serve(sock, &*h, &stop))?;
            out.udp_threads.push(t);
        }
        let listener = TcpListener::from_std(tcp)?;
        let task = tokio::spawn(tcp_accept_loop(
            listener,
            handler.clone(),
            conns.clone(),
            cfg.tcp_idle_timeout,
            tcp_stop_rx.clone(),
        ));
        out.tcp_tasks.push(task);
    }
    Ok(out)
}

/// Binds `n` UDP sockets and a TCP listener on one address; with port 0, retries until UDP
/// and TCP share a free port.
fn bind_pair(
    addr: SocketAddr,
    n: usize,
) -> io::Result<(Vec<UdpSocket>, std::net::TcpListener, SocketAddr)> {
    let mut last_err = None;
    for _ in 0..20 {
        let first = udp_socket(addr)?;
        let bound = first.local_addr()?;
        match tcp_listener(bound) {
            Ok(tcp) => {
                let mut socks = vec![first];
                for _ in 1..n {
                    socks.push(udp_socket(bound)?);
                }
                return Ok((socks, tcp, bound));
            }
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}

async fn tcp_accept_loop<H: PacketHandler>(
    listener: TcpListener,
    h: Arc<H>,
    conns: Arc<Semaphore>,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            acc = listener.accept() => {
                let Ok((stream, peer)) = acc else { continue };
                // At the connection limit, close new connections at once rather than queue them.
                let Ok(permit) = conns.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let h = h.clone();
                let stop = stop.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let _ = tcp_conn(stream, peer, &*h, idle, stop).await;
                });
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    // In-flight connections finish the query they are on (tcp_conn checks `stop` between
    // queries); the caller bounds how long we wait.
    while tasks.join_next().await.is_some() {}
}

async fn tcp_conn<H: PacketHandler>(
    mut s: TcpStream,
    peer: SocketAddr,
    h: &H,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut req = vec![0u8; 65535];
    let mut resp = vec![0u8; 65537];
    let mut q = Query::default();
    let client = Client {
        addr: peer.ip(),
        tcp: true,
    };
    loop {
        let mut len = [0u8; 2];
        // Between queries, shutdown closes the connection; once the first byte of a query has
        // arrived, the query is read and answered (bounded by the idle timeout).
        tokio::select! {
            r = tokio::time::timeout(idle, s.read_exact(&mut len[..1])) => match r {
                Ok(Ok(_)) => {}
                _ => return Ok(()), // idle timeout or closed
            },
            _ = stop.changed() => return Ok(()),
        }
        match tokio::time::timeout(idle, s.read_exact(&mut len[1..])).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        match tokio::time::timeout(idle, s.read_exact(&mut req[..n])).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(rlen) = h.handle(&req[..n], &client, &mut q, &mut resp[2..]) else {
            return Ok(());
        };
        resp[..2].copy_from_slice(&(rlen as u16).to_be_bytes());
        s.write_all(&resp[..rlen + 2]).await?;
    }
}
