//! The API's listener: our own accept loop over hyper's HTTP/1 connection, so that the API
//! has the bounds a port reachable by strangers needs.
//!
//! ```text
//! accept --(EMFILE/ENFILE: evict the oldest idle, back off 10 ms .. 1 s)-->
//!   ConnTable::admit (per client, total; when full the oldest idle goes) --> task:
//!     hyper http1: header timeout (also the idle timeout: it runs while waiting for a
//!                  request), 16 KiB header buffer
//!     service: Router, the connection busy while a request is handled (not evictable)
//!     watchdog: no byte read or written for `stall_timeout` --> closed (a client that
//!               does not read its response)
//! PUT/POST with a body: token checked from the headers, then at most `max_body` bytes
//!            (`max_alert_body` for /alertmanager) within `body_timeout` (Content-Length
//!            over the limit: 413 without reading)
//! /events (server-sent events): a keep-alive every half stall timeout
//! ```

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::abuse::{Admission, CloseReason, ConnLimits, ConnLog, ConnTable, Listener, Ticket};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Bounds of the API listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Most connections at once; a client address may hold a fourth of them (at least 4).
    pub max_connections: usize,
    /// A request's headers must be complete within this from the moment the connection waits
    /// for it (new, or after the previous response): also the idle timeout of keep-alive.
    pub header_timeout: Duration,
    /// The body of a request must arrive within this.
    pub body_timeout: Duration,
    /// A connection that moves no byte in either direction for this long is closed.
    pub stall_timeout: Duration,
    /// Largest request body read by the admin and health push calls (they send a word or a
    /// small JSON object).
    pub max_body: usize,
    /// Largest body of `POST /alertmanager` (Alertmanager sends a group of alerts at once).
    pub max_alert_body: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(10),
            max_body: 4096,
            max_alert_body: 256 * 1024,
        }
    }
}

impl ApiLimits {
    fn table(&self) -> ConnLimits {
        ConnLimits {
            max_total: self.max_connections.max(1),
            max_per_client: (self.max_connections / 4).max(4),
        }
    }
}

/// A stream that notes when it last moved a byte.
struct Tracked {
    inner: TcpStream,
    base: Instant,
    /// Milliseconds since `base` of the last read or write that moved a byte.
    progress: Arc<AtomicU64>,
}

impl Tracked {
    fn moved(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.progress.store(ms, Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What every connection task shares.
struct Shared {
    app: Router,
    limits: ApiLimits,
    metrics: Arc<Metrics>,
    log: ConnLog,
    stop: Shutdown,
}

impl Shared {
    fn closed(&self, reason: CloseReason, client: std::net::IpAddr) {
        self.metrics.conn_closed(Listener::Api, reason);
        self.log.closed(reason, client);
    }
}

/// Accepts API connections until `stop`; returns when every connection has finished.
pub(super) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ApiLimits,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) {
    let table = ConnTable::new(limits.table());
    metrics.register_conns(Listener::Api, table.clone());
    let shared = Arc::new(Shared {
        app,
        limits,
        metrics,
        log: ConnLog::new(Listener::Api),
        stop: stop.clone(),
    });
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.stopped() => break,
            acc = listener.accept() => match acc {
                Ok(x) => x,
                Err(e) if crate::abuse::is_resource_exhaustion(&e) => {
                    backoff = crate::abuse::next_backoff(backoff);
                    shared.metrics.accept_failed(Listener::Api);
                    shared.log.accept_failed(&e, backoff);
                    if let Some(client) = table.evict_oldest_idle() {
                        shared.closed(CloseReason::FdExhausted, client);
                    }
                    tokio::select! {
                        _ = stop.stopped() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
                Err(_) => continue,
            },
        };
        backoff = Duration::ZERO;
        let ticket = match table.admit(peer.ip()) {
            Admission::Admitted { ticket, evicted } => {
                if evicted {
                    shared.closed(CloseReason::Evicted, peer.ip());
                }
                ticket
            }
            Admission::Refused(reason) => {
                drop(stream);
                shared.closed(reason, peer.ip());
                continue;
            }
        };
        conns.spawn(serve_conn(stream, peer, ticket, shared.clone()));
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

async fn serve_conn(stream: TcpStream, peer: SocketAddr, ticket: Ticket, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let base = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        base,
        progress: progress.clone(),
    });
    let ticket = Arc::new(ticket);
    let t = ticket.clone();
    let app = shared.app.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        t.busy();
        let (app, t) = (app.clone(), t.clone());
        async move {
            let r = app.oneshot(req).await;
            t.idle();
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let stall_ms = u64::try_from(shared.limits.stall_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut watchdog = tokio::time::interval(Duration::from_millis(500));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r
                    && e.is_timeout()
                {
                    shared.closed(CloseReason::Idle, peer.ip());
                }
                return;
            }
            () = ticket.evicted() => return, // counted where it was decided
            _ = shared.stop.stopped() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(shared.limits.stall_timeout, conn.as_mut()).await;
                return;
            }
            _ = watchdog.tick() => {
                let now = u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX);
                if now.saturating_sub(progress.load(Relaxed)) > stall_ms {
                    shared.closed(CloseReason::WriteTimeout, peer.ip());
                    return;
                }
            }
        }
    }
}
