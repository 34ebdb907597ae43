//! UDP: the socket setup and the receive/answer/send loop with batched system calls.
//!
//! UDP is the hot path: one socket per core per address with SO_REUSEPORT, each served by a
//! plain thread in a blocking receive loop (no task spawn, no channel hop, one set of reusable
//! buffers per thread).
//!
//! Under load most of a DNS server's time is spent in the kernel; `recvmmsg` takes every
//! queued datagram (up to `BATCH`) in one call and `sendmmsg` sends their answers in one, so
//! the per-packet system call cost is shared. With one packet waiting it behaves like
//! `recvfrom`/`sendto` (MSG_WAITFORONE returns as soon as one datagram is there).

//!
//! This is the one module allowed `unsafe` (besides one `kill(2)` of a process group in
//! `probe::exec`): `recvmmsg`/`sendmmsg` take C structures that point into our buffers. Each
//! `unsafe` block says why it holds.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::handler::{PacketHandler, Peer};
use super::wire::Query;
use crate::shutdown::Shutdown;

/// Datagrams taken per system call.
const BATCH: usize = 32;
/// Largest query read; a longer one is truncated by the kernel and dropped (queries are small).
const REQ_LEN: usize = 4096;
/// Response buffer per datagram: a UDP answer never exceeds our 1232-byte EDNS size, and
/// anything longer than this buffer is answered with TC=1 by the writer.
const RESP_LEN: usize = 4096;

/// Fixed buffers for one batch, allocated once per thread.
struct Buffers {
    req: Vec<[u8; REQ_LEN]>,
    resp: Vec<[u8; RESP_LEN]>,
    addrs: Vec<libc::sockaddr_storage>,
    iov_in: Vec<libc::iovec>,
    msgs_in: Vec<libc::mmsghdr>,
    iov_out: Vec<libc::iovec>,
    msgs_out: Vec<libc::mmsghdr>,
}

/// A value of all zero bytes.
///
/// # Safety
/// `T` must be a plain C struct for which all zero bytes is a valid value (here:
/// `sockaddr_storage`, `iovec`, `mmsghdr`: integers and null pointers).
unsafe fn zeroed<T>() -> T {
    // SAFETY: the caller guarantees all-zero is a valid `T`.
    unsafe { MaybeUninit::<T>::zeroed().assume_init() }
}

impl Buffers {
    fn new() -> Box<Buffers> {
        Box::new(Buffers {
            req: vec![[0u8; REQ_LEN]; BATCH],
            resp: vec![[0u8; RESP_LEN]; BATCH],
            // SAFETY (all five): plain C structs of integers and pointers; zero is valid (null
            // pointers, zero lengths) and each is filled in before the kernel reads it.
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            iov_in: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            msgs_in: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            iov_out: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            msgs_out: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
        })
    }

    /// Points every receive header at its buffer and address slot (the kernel rewrites the
    /// lengths on each call, so this runs before each `recvmmsg`).
    fn arm_receive(&mut self) {
        for i in 0..BATCH {
            self.iov_in[i] = libc::iovec {
                iov_base: self.req[i].as_mut_ptr().cast(),
                iov_len: REQ_LEN,
            };
            let h = &mut self.msgs_in[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov_in[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.msgs_in[i].msg_len = 0;
        }
    }
}

/// The source address of a received datagram.
fn source_ip(sa: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(sa.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in here (family AF_INET); the storage is
            // large and aligned enough for it.
            let sin =
                unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6 (family AF_INET6).
            let sin6 =
                unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// A UDP socket for one serving thread: SO_REUSEPORT (the kernel spreads packets over the
/// threads' sockets), large buffers, and a read timeout so the loop notices shutdown.
pub(crate) fn socket(addr: SocketAddr) -> io::Result<UdpSocket> {
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

/// Serves `sock` until `stop` is stopped. The socket's read timeout bounds how long a quiet
/// loop takes to notice.
pub(crate) fn serve<H: PacketHandler>(sock: UdpSocket, h: &H, stop: &Shutdown) {
    let fd = sock.as_raw_fd();
    let mut b = Buffers::new();
    let mut q = Query::default();
    while !stop.is_stopped() {
        b.arm_receive();
        // SAFETY: msgs_in holds BATCH headers, each pointing at live buffers owned by `b`,
        // which outlives the call; a null timeout means "use SO_RCVTIMEO".
        let n = unsafe {
            libc::recvmmsg(
                fd,
                b.msgs_in.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                tracing::warn!(error = %e, "udp receive failed");
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a UDP receive thread, not a runtime worker"
                )]
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let mut out = 0usize;
        for i in 0..n as usize {
            let m = &b.msgs_in[i];
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue; // longer than any sane query
            }
            let Some(addr) = source_ip(&b.addrs[i]) else {
                continue;
            };
            let len = (m.msg_len as usize).min(REQ_LEN);
            let peer = Peer::udp(addr);
            let (req, resp) = (&b.req[i][..len], &mut b.resp[i]);
            let Some(rlen) = h.handle(req, &peer, &mut q, resp) else {
                continue;
            };
            b.iov_out[out] = libc::iovec {
                iov_base: b.resp[i].as_mut_ptr().cast(),
                iov_len: rlen,
            };
            let hdr = &mut b.msgs_out[out].msg_hdr;
            hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = b.msgs_in[i].msg_hdr.msg_namelen;
            hdr.msg_iov = &mut b.iov_out[out];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            out += 1;
        }
        let mut sent = 0usize;
        while sent < out {
            // SAFETY: msgs_out[sent..out] point at response buffers and addresses in `b`.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    b.msgs_out[sent..].as_mut_ptr(),
                    (out - sent) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A datagram the kernel refuses (e.g. a destination that cannot be reached):
                // skip it, as a failed sendto would be.
                sent += 1;
                continue;
            }
            sent += r as usize;
        }
    }
}
