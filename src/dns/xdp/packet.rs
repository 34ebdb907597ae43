//! Ethernet/IPv4/IPv6/UDP framing of the AF_XDP path: find the DNS payload of a received
//! frame, and turn the same frame into the reply (addresses and ports swapped, lengths and
//! checksums written). Pure functions over byte slices, so they are tested without sockets.
//!
//! The XDP program already let through only untagged IPv4 without options and not
//! fragmented, or IPv6 with UDP as the next header, to one of our ports; this module checks
//! the lengths again (a frame is outside input) and drops anything inconsistent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(super) const ETH_LEN: usize = 14;
const IP4_LEN: usize = 20;
const IP6_LEN: usize = 40;
const UDP_LEN: usize = 8;
/// Largest header in front of the DNS payload (Ethernet + IPv6 + UDP).
pub(super) const MAX_HEADERS: usize = ETH_LEN + IP6_LEN + UDP_LEN;

/// Where the DNS message of a received frame is, and who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub(super) src: IpAddr,
    /// Offset of the DNS message (= header length: 42 for IPv4, 62 for IPv6).
    pub(super) payload: usize,
    /// Length of the DNS message, from the UDP length (frames may carry Ethernet padding).
    pub(super) len: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses a frame the XDP program redirected; `None` for anything inconsistent (drop), and
/// for what the socket path could not answer either: a frame sent to a group MAC address
/// (broadcast, multicast), or from one, a source address that cannot be answered
/// (unspecified, broadcast, multicast) or source port 0. Answering those would reflect
/// traffic at addresses that did not ask.
pub(super) fn parse(f: &[u8]) -> Option<Request> {
    if f.len() < ETH_LEN + IP4_LEN + UDP_LEN || f[0] & 1 != 0 || f[6] & 1 != 0 {
        return None;
    }
    let r = parse_ip(f)?;
    let sport = be16(f, r.payload - UDP_LEN);
    let bad_src = match r.src {
        IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast() || a.is_multicast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    (sport != 0 && !bad_src).then_some(r)
}

fn parse_ip(f: &[u8]) -> Option<Request> {
    match be16(f, 12) {
        0x0800 => {
            let ip = &f[ETH_LEN..];
            if ip[0] != 0x45 || ip[9] != 17 || be16(ip, 6) & 0x3fff != 0 {
                return None;
            }
            // The kernel drops IPv4 headers with a bad checksum; so do we.
            if checksum(0, &ip[..IP4_LEN]) != 0xffff {
                return None;
            }
            let total = usize::from(be16(ip, 2));
            if total < IP4_LEN + UDP_LEN || ETH_LEN + total > f.len() {
                return None;
            }
            let udp_len = usize::from(be16(ip, IP4_LEN + 4));
            if udp_len < UDP_LEN || udp_len > total - IP4_LEN {
                return None;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            Some(Request {
                src: IpAddr::V4(src),
                payload: ETH_LEN + IP4_LEN + UDP_LEN,
                len: udp_len - UDP_LEN,
            })
        }
        0x86dd => {
            if f.len() < MAX_HEADERS {
                return None;
            }
            let ip = &f[ETH_LEN..];
            if ip[0] >> 4 != 6 || ip[6] != 17 {
                return None;
            }
            let plen = usize::from(be16(ip, 4));
            if plen < UDP_LEN || ETH_LEN + IP6_LEN + plen > f.len() {
                return None;
            }
            let udp_len = usize::from(be16(ip, IP6_LEN + 4));
            if udp_len < UDP_LEN || udp_len > plen {
                return None;
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            Some(Request {
                src: IpAddr::V6(Ipv6Addr::from(a)),
                payload: MAX_HEADERS,
                len: udp_len - UDP_LEN,
            })
        }
        _ => None,
    }
}

/// Ones' complement sum of `data` added to `sum` (not yet inverted; folded to 16 bits).
pub(super) fn checksum(sum: u32, data: &[u8]) -> u16 {
    let mut s = u64::from(sum);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Rewrites the headers of frame `f` (received as `req`) into the reply carrying `dns_len`
/// bytes of DNS message already written at `req.payload`; returns the frame length.
pub(super) fn write_reply(f: &mut [u8], req: &Request, dns_len: usize) -> usize {
    // Ethernet: back to where it came from.
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    let udp_len = UDP_LEN + dns_len;
    let (ip_hdr, udp_at) = if req.payload == MAX_HEADERS {
        (IP6_LEN, ETH_LEN + IP6_LEN)
    } else {
        (IP4_LEN, ETH_LEN + IP4_LEN)
    };
    let end = udp_at + udp_len;
    let ip = &mut f[ETH_LEN..end];
    let pseudo = if ip_hdr == IP4_LEN {
        let total = (IP4_LEN + udp_len) as u16;
        ip[1] = 0; // DSCP/ECN
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
        ip[8] = 64; // TTL
        ip[10..12].copy_from_slice(&[0, 0]);
        for i in 12..16 {
            ip.swap(i, i + 4);
        }
        let c = !checksum(0, &ip[..IP4_LEN]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        // Pseudo-header: addresses, protocol, UDP length.
        u32::from(checksum(0, &ip[12..20])) + 17 + udp_len as u32
    } else {
        ip[..4].copy_from_slice(&[0x60, 0, 0, 0]); // version, no traffic class or flow label
        ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        ip[7] = 64; // hop limit
        for i in 8..24 {
            ip.swap(i, i + 16);
        }
        u32::from(checksum(0, &ip[8..40])) + 17 + udp_len as u32
    };
    let udp = &mut ip[ip_hdr..];
    for i in 0..2 {
        udp.swap(i, i + 2);
    }
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let c = !checksum(pseudo, udp);
    // A computed zero goes out as all ones (zero means "no checksum" over IPv4, and is not
    // allowed over IPv6).
    let c = if c == 0 { 0xffff } else { c };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_frame(dns: &[u8], pad: usize) -> Vec<u8> {
        let mut f = vec![];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]); // dst MAC
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2]); // src MAC
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + dns.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0, 0, 63, 17, 0, 0]);
        ip.extend_from_slice(&[198, 51, 100, 7]); // src
        ip.extend_from_slice(&[192, 0, 2, 1]); // dst
        let c = !checksum(0, &ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(dns);
        f.extend(std::iter::repeat_n(0, pad));
        f
    }

    fn v6_frame(dns: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(dns);
        f
    }

    /// The UDP checksum over the pseudo-header verifies (sums to all ones).
    fn udp_ok(f: &[u8]) -> bool {
        let (src, dst, udp) = if be16(f, 12) == 0x0800 {
            (&f[26..30], &f[30..34], &f[34..])
        } else {
            (&f[22..38], &f[38..54], &f[54..])
        };
        let len = usize::from(be16(udp, 4));
        let mut s = u32::from(checksum(0, src)) + u32::from(checksum(0, dst));
        s += 17 + len as u32;
        checksum(s, &udp[..len]) == 0xffff
    }

    #[test]
    fn parses_v4_and_ignores_padding() {
        let f = v4_frame(&[1, 2, 3], 20);
        let r = parse(&f).unwrap();
        assert_eq!(r.src, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!((r.payload, r.len), (42, 3));
    }

    #[test]
    fn rejects_inconsistent_v4() {
        let good = v4_frame(&[1, 2, 3, 4], 0);
        let mut bad_sum = good.clone();
        bad_sum[14 + 8] = 1; // TTL changed, checksum not
        assert_eq!(parse(&bad_sum), None);
        let mut long_udp = good.clone();
        long_udp[14 + 20 + 5] = 200; // UDP length past the IP payload
        assert_eq!(parse(&long_udp), None);
        let short = &good[..40];
        assert_eq!(parse(short), None);
        let mut frag = good.clone();
        frag[14 + 6] = 0x20; // more fragments
        let c = {
            frag[24] = 0;
            frag[25] = 0;
            !checksum(0, &frag[14..34])
        };
        frag[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&frag), None);
    }

    #[test]
    fn rejects_what_cannot_be_answered() {
        let good = v4_frame(&[1, 2, 3, 4], 0);
        assert!(parse(&good).is_some());
        let mut bcast_dst = good.clone();
        bcast_dst[..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(parse(&bcast_dst), None);
        let mut mcast_src_mac = good.clone();
        mcast_src_mac[6] = 0x01;
        assert_eq!(parse(&mcast_src_mac), None);
        let mut port0 = good.clone();
        port0[34..36].copy_from_slice(&[0, 0]);
        assert_eq!(parse(&port0), None);
        for src in [[0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 251]] {
            let mut f = good.clone();
            f[26..30].copy_from_slice(&src);
            f[24..26].copy_from_slice(&[0, 0]);
            let c = !checksum(0, &f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            assert_eq!(parse(&f), None, "source {src:?}");
        }
        let mut v6 = v6_frame(&[1; 4]);
        assert!(parse(&v6).is_some());
        v6[22..38].copy_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(parse(&v6), None);
    }

    #[test]
    fn v4_reply_swaps_and_checksums() {
        let mut f = v4_frame(&[9; 5], 0);
        f.resize(200, 0);
        let r = parse(&f).unwrap();
        let answer = [7u8; 33];
        f[r.payload..r.payload + 33].copy_from_slice(&answer);
        let n = write_reply(&mut f, &r, 33);
        assert_eq!(n, 42 + 33);
        let f = &f[..n];
        assert_eq!(&f[0..12], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[26..34], &[192, 0, 2, 1, 198, 51, 100, 7]);
        assert_eq!((be16(f, 34), be16(f, 36)), (53, 40000));
        assert_eq!(checksum(0, &f[14..34]), 0xffff);
        assert_eq!(usize::from(be16(f, 16)), 20 + 8 + 33);
        assert!(udp_ok(f));
        // And the reply parses as a packet from the server.
        let back = parse(f).unwrap();
        assert_eq!(back.src, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(back.len, 33);
    }

    #[test]
    fn v6_reply_swaps_and_checksums() {
        let mut f = v6_frame(&[1; 17]);
        f.resize(300, 0);
        let r = parse(&f).unwrap();
        assert_eq!((r.payload, r.len), (62, 17));
        assert_eq!(r.src, "2001:db8::7".parse::<IpAddr>().unwrap());
        for (i, b) in f[62..62 + 101].iter_mut().enumerate() {
            *b = i as u8;
        }
        let n = write_reply(&mut f, &r, 101);
        let f = &f[..n];
        assert_eq!(n, 62 + 101);
        assert_eq!(
            &f[22..38],
            &"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert!(udp_ok(f));
        assert_eq!(parse(f).unwrap().len, 101);
    }

    proptest::proptest! {
        /// Any bytes, and any bytes behind valid-looking headers: no panic; what parses has its
        /// payload inside the frame and turns into a reply whose checksums verify.
        #[test]
        fn any_frame_is_safe(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            v6 in proptest::prelude::any::<bool>(),
            cut in 0usize..80,
            answer in 0usize..600,
        ) {
            assert!(parse(&raw).is_none_or(|r| r.payload + r.len <= raw.len()));
            let mut f = if v6 { v6_frame(&raw) } else { v4_frame(&raw, 0) };
            let keep = f.len().saturating_sub(cut);
            f.truncate(keep);
            if let Some(r) = parse(&f) {
                proptest::prop_assert!(r.payload + r.len <= f.len());
                f.resize(r.payload + answer, 0x5a);
                let n = write_reply(&mut f, &r, answer);
                proptest::prop_assert!(udp_ok(&f[..n]));
            }
        }
    }

    #[test]
    fn odd_lengths_checksum() {
        for len in [0usize, 1, 2, 3, 12, 13, 511] {
            let mut f = v4_frame(&[0xab; 3], 0);
            f.resize(1000, 0);
            let r = parse(&f).unwrap();
            for b in &mut f[42..42 + len] {
                *b = 0xff;
            }
            let n = write_reply(&mut f, &r, len);
            assert!(udp_ok(&f[..n]), "len {len}");
        }
    }
}
