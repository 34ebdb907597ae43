//! The `icmp` check: an echo request gets its echo reply. Its keys (none of its own),
//! identity, the load-time permission test and the probe.
//!
//! ```text
//!  socket(AF_INET[6], SOCK_DGRAM, IPPROTO_ICMP[V6])   "ping socket": no root, no CAP_NET_RAW,
//!     allowed when a group of the process is in net.ipv4.ping_group_range (both families)
//!  connect(target) --send--> echo request (seq, token payload)
//!                  <--recv-- echo reply with the same seq and payload (others ignored)
//! ```
//!
//! The kernel picks the identifier (the socket's "port") and routes replies to the socket that
//! sent the request, so concurrent probes never see each other's replies. Where the system does
//! not allow these sockets, loading a configuration with an `icmp` check fails with an error
//! that says how to allow them ([`permitted`]), instead of every probe failing later.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::outcome::ProbeOutcome;

/// The keys of an `icmp` check besides the common ones: none.
pub(crate) const KEYS: &[&str] = &[];

/// Where the kernel keeps the groups allowed to open ping sockets.
pub(crate) const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// An `icmp` check (echo request/reply; nothing to configure besides the common knobs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct IcmpCheck;

impl IcmpCheck {
    /// What is probed, for the warm-start key.
    pub(crate) fn fingerprint(&self) -> String {
        "icmp".to_string()
    }
}

fn socket(v6: bool) -> io::Result<Socket> {
    if v6 {
        Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::ICMPV6))
    } else {
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))
    }
}

/// Can this process send ICMP echo to an address of this family (`v6`)? The error says why
/// not and how to allow it.
pub fn permitted(v6: bool) -> Result<(), String> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    match socket(v6) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            let range = std::fs::read_to_string(PING_GROUP_RANGE)
                .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into());
            Err(format!(
                "icmp checks need unprivileged ICMP (ping) sockets, which this system does not \
                 allow for this process ({family}: {e}): net.ipv4.ping_group_range is \"{range}\" \
                 and must include one of the process's groups, e.g. \
                 `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`; or use a tcp check"
            ))
        }
        Err(e) => Err(format!(
            "icmp checks cannot open an {family} ICMP socket on this system: {e}"
        )),
    }
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with `seq` and `token` as its data.
fn request(v6: bool, seq: u16, token: &[u8; 8]) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0, 0, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(token);
    // The kernel fills in the identifier and, for IPv6, the checksum (it covers a pseudo
    // header); for IPv4 it is ours to set.
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Is `reply` the echo reply to our request `seq` with `token`?
fn is_reply(v6: bool, reply: &[u8], seq: u16, token: &[u8; 8]) -> bool {
    reply.len() >= 16
        && reply[0] == if v6 { 129 } else { 0 }
        && reply[6..8] == seq.to_be_bytes()
        && reply[8..16] == token[..]
}

async fn exchange(ip: IpAddr, seq: u16, token: [u8; 8]) -> io::Result<()> {
    let v6 = ip.is_ipv6();
    let s = socket(v6)?;
    s.set_nonblocking(true)?;
    s.connect(&SocketAddr::new(ip, 0).into())?;
    // A ping socket is a datagram socket: tokio's UDP socket drives its send and recv.
    let sock = UdpSocket::from_std(std::net::UdpSocket::from(s))?;
    sock.send(&request(v6, seq, &token)).await?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).await?;
        if is_reply(v6, &buf[..n], seq, &token) {
            return Ok(());
        }
    }
}

/// One echo to `addr`'s address: the verdict and the round trip.
pub(super) async fn probe(
    addr: SocketAddr,
    seq: u16,
    token: [u8; 8],
    timeout: Duration,
) -> (ProbeOutcome, Option<Duration>) {
    let start = Instant::now();
    match tokio::time::timeout(timeout, exchange(addr.ip(), seq, token)).await {
        Err(_) => (ProbeOutcome::Timeout(timeout), None),
        Ok(Ok(())) => (ProbeOutcome::Pass, Some(start.elapsed())),
        Ok(Err(e)) => (ProbeOutcome::Other(format!("icmp: {e}")), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_and_reply() {
        let token = *b"gslbd-01";
        let r = request(false, 7, &token);
        assert_eq!(r[0], 8);
        assert_eq!(checksum(&r), 0, "a packet with its checksum sums to zero");
        let mut reply = r.clone();
        reply[0] = 0;
        assert!(is_reply(false, &reply, 7, &token));
        assert!(!is_reply(false, &reply, 8, &token));
        assert!(
            !is_reply(false, &r, 7, &token),
            "our own request is not a reply"
        );
        let r6 = request(true, 7, &token);
        assert_eq!((r6[0], r6[2], r6[3]), (128, 0, 0));
    }
}
