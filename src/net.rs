//! Addresses, prefixes and subnets: the arithmetic every layer shares.
//!
//! Rules match client subnets, the latency map keys on them, `hash` masks the client to its
//! granularity, ECS scopes are prefix lengths and the explain inputs are subnets in text. All of
//! them work on one representation: an address as 128 bits with IPv4 in the top 32
//! (`bits`), so one mask and one common-prefix function serve both families.
//!
//! A leaf module: it depends on nothing else in the crate.

use std::fmt;
use std::net::IpAddr;

use crate::walk::shown;

/// The address family of a query (`A` = V4, `AAAA` = V6) or of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4, the family of `A` records.
    V4,
    /// IPv6, the family of `AAAA` records.
    V6,
}

impl Family {
    /// Address length in bits.
    pub(crate) fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The family of `addr`, IPv4-mapped IPv6 counting as IPv4.
    pub(crate) fn of(addr: IpAddr) -> Family {
        if addr.to_canonical().is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// How a query reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// Plain DNS over UDP, taken from the driver through AF_XDP (`--listen-xdp`): the same
    /// messages and size rules as `Udp`, counted apart.
    Xdp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS, HTTP/2 (RFC 8484).
    Https,
    /// DNS over QUIC (RFC 9250).
    Quic,
}

impl Transport {
    /// Every transport, in metric label order.
    pub(crate) const ALL: [Transport; 6] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Xdp,
        Transport::Tls,
        Transport::Https,
        Transport::Quic,
    ];

    /// The metric label (`udp`, `tcp`, `xdp`, `tls`, `https`, `quic`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Xdp => "xdp",
            Transport::Tls => "tls",
            Transport::Https => "https",
            Transport::Quic => "quic",
        }
    }

    /// A stream transport: no UDP size limit, messages framed by length (or by HTTP).
    pub fn is_stream(self) -> bool {
        match self {
            Transport::Udp | Transport::Xdp => false,
            Transport::Tcp | Transport::Tls | Transport::Https | Transport::Quic => true,
        }
    }

    /// An encrypted transport: responses to padded queries are padded (RFC 7830, RFC 8467).
    pub fn is_encrypted(self) -> bool {
        match self {
            Transport::Udp | Transport::Tcp | Transport::Xdp => false,
            Transport::Tls | Transport::Https | Transport::Quic => true,
        }
    }

    /// Position in [`Transport::ALL`].
    #[inline]
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// `addr` as 128 bits with IPv4 in the top 32, and the family's length in bits.
#[inline]
pub(crate) fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The mask of the first `prefix` bits of a [`bits`] value (0 = no bit).
#[inline]
pub(crate) fn mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// `addr` with every bit past `prefix` cleared (the prefix is capped at the family's length).
pub(crate) fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask(prefix.min(128))).into()),
    }
}

/// Length of the common prefix of two addresses of the same family (`None` across families).
#[inline]
pub(crate) fn common_prefix(a: IpAddr, b: IpAddr) -> Option<u8> {
    let ((x, bits_a), (y, bits_b)) = (bits(a), bits(b));
    (bits_a == bits_b).then(|| ((x ^ y).leading_zeros() as u8).min(bits_a))
}

/// A network: an address with no bit set past its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length, at most the family's length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host route). Host bits set
    /// past the prefix are an error, not silently cleared: `192.0.2.1/24` usually means the
    /// writer meant something else (the same rule RFC 7871 gives servers for ECS).
    pub(crate) fn parse(s: &str) -> Result<Subnet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{} is not a subnet (expected e.g. 192.0.2.0/24)", shown(s)))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&x| x <= max)
                .ok_or_else(|| format!("{}: prefix length must be 0..={max}", shown(s)))?,
            None => max,
        };
        if masked(addr, prefix) != addr {
            return Err(format!(
                "{} has bits set beyond the /{prefix} prefix",
                shown(s)
            ));
        }
        Ok(Subnet { addr, prefix })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn common_prefix_lengths() {
        let p = |a: &str, b: &str| common_prefix(ip(a), ip(b));
        assert_eq!(p("10.0.0.0", "10.0.0.0"), Some(32));
        assert_eq!(p("10.0.0.0", "10.128.0.0"), Some(8));
        assert_eq!(p("2001:db8::", "2001:db8::1"), Some(127));
        assert_eq!(p("10.0.0.0", "::1"), None);
    }

    #[test]
    fn subnets_parse_strictly() {
        assert_eq!(
            Subnet::parse("192.0.2.0/24"),
            Ok(Subnet {
                addr: ip("192.0.2.0"),
                prefix: 24
            })
        );
        assert_eq!(Subnet::parse("2001:db8::1").map(|s| s.prefix), Ok(128));
        assert_eq!(
            Subnet::parse("192.0.2.1/24"),
            Err("\"192.0.2.1/24\" has bits set beyond the /24 prefix".into())
        );
        assert_eq!(
            Subnet::parse("10.0.0.0/33"),
            Err("\"10.0.0.0/33\": prefix length must be 0..=32".into())
        );
        assert!(Subnet::parse("nope/8").is_err());
        assert_eq!(Subnet::parse("0.0.0.0/0").map(|s| s.prefix), Ok(0));
    }

    #[test]
    fn masks() {
        assert_eq!(masked(ip("192.0.2.77"), 24), ip("192.0.2.0"));
        assert_eq!(masked(ip("2001:db8:ff::1"), 32), ip("2001:db8::"));
        assert_eq!(masked(ip("192.0.2.77"), 0), ip("0.0.0.0"));
        assert_eq!(mask(0), 0);
        assert_eq!(mask(128), u128::MAX);
        assert_eq!(Family::of(ip("::ffff:192.0.2.1")), Family::V4);
    }
}
