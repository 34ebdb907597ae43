//! DNS over HTTPS (RFC 8484) on HTTP/2: `GET /dns-query?dns=<base64url>` and
//! `POST /dns-query` with an `application/dns-message` body, over the TLS accept loop of
//! `tls.rs` (ALPN `h2`).
//!
//! ```text
//! TLS stream --h2 handshake (bounded)--> connection task: accept streams (at most max_streams
//!     at once, announced in SETTINGS), close after idle_timeout or the lifetime with none
//!     in flight (idle = evictable in the listener's ConnTable)
//!       └─ stream task: path, method, size bound, body (within the read timeout)
//!            --> PacketHandler::handle (the same answer as UDP/TCP) --> 200 + DNS message
//!            bad request 400, wrong path 404, method 405, too large 413/414, type 415
//! ```
//!
//! hickory-server's DoH handler is not used: in 0.26 it answers only POST (GET is
//! "unimplemented"), requires an `Accept` header, drops a bad request without any HTTP status,
//! and offers no stream or size limits; the request and response also pass through its
//! message types. This is the same `h2` crate it uses, driven by our own loop.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::conn::{self, EncryptedLimits};
use super::handler::{PacketHandler, Peer, Transport};
use super::tls::accept_tls;
use super::wire::min_ttl;
use crate::abuse::{CloseReason, ConnTable, Listener, Ticket};
use crate::shutdown::Shutdown;

/// The path RFC 8484 suggests, and the one every client uses by default.
pub(crate) const DOH_PATH: &str = "/dns-query";
/// The media type of a DNS message (RFC 8484 section 6).
const DNS_MESSAGE: &str = "application/dns-message";
/// Most header bytes a request may carry (the GET URI included).
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// DNS over HTTPS on one listener until `stop`.
pub(crate) async fn serve_doh<H: PacketHandler>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    h: Arc<H>,
    table: Arc<ConnTable>,
    limits: EncryptedLimits,
    stop: Shutdown,
) {
    let serve = move |s: TlsStream<TcpStream>,
                      client: IpAddr,
                      h: Arc<H>,
                      ticket: Ticket,
                      stop: Shutdown| async move {
        let peer = Peer::new(client, Transport::Https);
        serve_h2(s, peer, h, &ticket, limits, stop).await
    };
    accept_tls(
        listener,
        TlsAcceptor::from(tls),
        Listener::DnsHttps,
        limits.handshake_timeout,
        h,
        table,
        stop,
        serve,
    )
    .await;
}

/// One HTTP/2 connection: its streams each in a task, until the peer closes, `stop`, an
/// eviction, the lifetime or idle_timeout passes with no stream in flight. Returns the limit
/// that ended it, if one did (an eviction is counted where it was decided).
async fn serve_h2<IO, H>(
    io: IO,
    peer: Peer,
    h: Arc<H>,
    ticket: &Ticket,
    lim: EncryptedLimits,
    stop: Shutdown,
) -> Option<CloseReason>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: PacketHandler,
{
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(lim.max_streams)
        .max_header_list_size(MAX_HEADER_LIST);
    let mut conn = match timeout(lim.handshake_timeout, b.handshake::<_, Bytes>(io)).await {
        Ok(Ok(c)) => c,
        Ok(Err(_)) => return Some(CloseReason::HandshakeFailed),
        Err(_) => return Some(CloseReason::HandshakeTimeout),
    };
    let mut streams = tokio::task::JoinSet::new();
    let end_of_life = Instant::now() + lim.lifetime;
    let mut idle_at = Instant::now() + lim.idle_timeout;
    let end = loop {
        // With no stream in flight the connection is idle: evictable, and closed at the idle
        // timeout or at the end of its lifetime, whichever comes first.
        let (wake, why) = if end_of_life <= idle_at {
            (end_of_life, CloseReason::Lifetime)
        } else {
            (idle_at, CloseReason::Idle)
        };
        tokio::select! {
            _ = stop.stopped() => break None,
            () = ticket.evicted(), if streams.is_empty() => break None,
            r = conn.accept() => match r {
                Some(Ok((req, respond))) => {
                    while streams.try_join_next().is_some() {}
                    ticket.busy();
                    streams.spawn(request(req, respond, peer, h.clone(), lim));
                    if streams.len() == lim.max_streams as usize {
                        h.request_limited(Listener::DnsHttps, CloseReason::Streams, peer.addr);
                    }
                }
                // A connection error we found in what the client sent (h2 has answered it
                // with GOAWAY): not HTTP/2 as it must be.
                Some(Err(e)) if !e.is_remote() && !e.is_io()
                    && e.reason().is_some_and(|r| r != h2::Reason::NO_ERROR) =>
                {
                    return Some(CloseReason::Malformed);
                }
                // Closed by the peer. The request tasks end with the connection; waiting for
                // them (bounded) keeps what they count (a request too large, a read timeout)
                // from being lost to an abort when the set is dropped.
                Some(Err(_)) | None => {
                    let _ = timeout(lim.handshake_timeout, async {
                        while streams.join_next().await.is_some() {}
                    })
                    .await;
                    return None;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {
                if streams.is_empty() {
                    ticket.idle();
                    idle_at = Instant::now() + lim.idle_timeout;
                }
            }
            _ = tokio::time::sleep_until(wake), if streams.is_empty() => break Some(why),
        }
    };
    // GOAWAY, then drive the connection until the streams in flight have their answers
    // (bounded); streams the client opens meanwhile are refused by dropping them.
    conn.graceful_shutdown();
    let _ = timeout(lim.handshake_timeout, async {
        while conn.accept().await.is_some() {}
    })
    .await;
    end
}

/// Why a request gets no DNS answer: the HTTP status, and what it counts as.
type Refusal = (StatusCode, Option<CloseReason>);

/// One stream: read the query, answer it, send the response.
async fn request<H: PacketHandler>(
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    peer: Peer,
    h: Arc<H>,
    lim: EncryptedLimits,
) {
    let msg = match read_query(req, &lim).await {
        Ok(m) => m,
        Err((status, event)) => {
            if let Some(e) = event {
                h.request_limited(Listener::DnsHttps, e, peer.addr);
            }
            return refuse(respond, status);
        }
    };
    let Some(answer) = conn::answer(&*h, &msg, &peer, false) else {
        h.request_limited(Listener::DnsHttps, CloseReason::Malformed, peer.addr);
        return refuse(respond, StatusCode::BAD_REQUEST);
    };
    // RFC 8484 5.1: the freshness lifetime must not exceed the smallest TTL; `private`
    // because a GSLB answer is for this client (its address or ECS), not for a shared cache.
    let max_age = min_ttl(&answer).unwrap_or(0);
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, DNS_MESSAGE)
        .header(header::CONTENT_LENGTH, answer.len())
        .header(header::CACHE_CONTROL, format!("private, max-age={max_age}"))
        .body(());
    send(respond, resp, Bytes::from(answer));
}

fn send(mut respond: SendResponse<Bytes>, resp: Result<Response<()>, http::Error>, body: Bytes) {
    let Ok(resp) = resp else { return };
    if let Ok(mut s) = respond.send_response(resp, false) {
        let _ = s.send_data(body, true);
    }
}

fn refuse(respond: SendResponse<Bytes>, status: StatusCode) {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if status == StatusCode::METHOD_NOT_ALLOWED {
        b = b.header(header::ALLOW, "GET, POST");
    }
    let text = format!("{}\n", status.canonical_reason().unwrap_or("error"));
    send(respond, b.body(()), Bytes::from(text));
}

/// The DNS message of a request, or why there is none.
async fn read_query(req: Request<RecvStream>, lim: &EncryptedLimits) -> Result<Vec<u8>, Refusal> {
    let malformed = |s| (s, Some(CloseReason::Malformed));
    let too_large = |s| (s, Some(CloseReason::TooLarge));
    if req.uri().path() != DOH_PATH {
        return Err(malformed(StatusCode::NOT_FOUND));
    }
    match *req.method() {
        http::Method::GET => {
            let query = req.uri().query().unwrap_or("");
            let Some(b64) = query.split('&').find_map(|kv| kv.strip_prefix("dns=")) else {
                return Err(malformed(StatusCode::BAD_REQUEST));
            };
            if b64.len() > lim.max_request_size.div_ceil(3) * 4 {
                return Err(too_large(StatusCode::URI_TOO_LONG));
            }
            let msg = data_encoding::BASE64URL_NOPAD
                .decode(b64.as_bytes())
                .map_err(|_| malformed(StatusCode::BAD_REQUEST))?;
            if msg.len() > lim.max_request_size {
                return Err(too_large(StatusCode::URI_TOO_LONG));
            }
            Ok(msg)
        }
        http::Method::POST => {
            if !is_dns_message(req.headers().get(header::CONTENT_TYPE)) {
                return Err(malformed(StatusCode::UNSUPPORTED_MEDIA_TYPE));
            }
            let announced = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if announced.is_some_and(|n| n > lim.max_request_size as u64) {
                return Err(too_large(StatusCode::PAYLOAD_TOO_LARGE));
            }
            let mut body = req.into_body();
            let mut msg = Vec::with_capacity(announced.map_or(512, |n| n as usize));
            // The whole body within the read timeout, as the rest of a TCP message.
            let deadline = Instant::now() + lim.read_timeout;
            loop {
                let chunk = match tokio::time::timeout_at(deadline, body.data()).await {
                    Err(_) => {
                        return Err((StatusCode::REQUEST_TIMEOUT, Some(CloseReason::ReadTimeout)));
                    }
                    Ok(None) => break,
                    // The client reset the stream: nobody reads an answer.
                    Ok(Some(Err(_))) => return Err((StatusCode::BAD_REQUEST, None)),
                    Ok(Some(Ok(c))) => c,
                };
                let _ = body.flow_control().release_capacity(chunk.len());
                if msg.len() + chunk.len() > lim.max_request_size {
                    return Err(too_large(StatusCode::PAYLOAD_TOO_LARGE));
                }
                msg.extend_from_slice(&chunk);
            }
            Ok(msg)
        }
        _ => Err(malformed(StatusCode::METHOD_NOT_ALLOWED)),
    }
}

/// `application/dns-message`, parameters and case aside.
fn is_dns_message(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .and_then(|s| s.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(DNS_MESSAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(is_dns_message(v("application/dns-message").as_ref()));
        assert!(is_dns_message(v("Application/DNS-Message; q=1").as_ref()));
        assert!(!is_dns_message(v("application/json").as_ref()));
        assert!(!is_dns_message(None));
    }
}
