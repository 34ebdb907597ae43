//! The authoritative core over real sockets: one test per behaviour of the DNS core issue.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;

use crate::common::*;

fn example() -> TestServer {
    TestServer::start(&[
        ("example.com.toml", EXAMPLE),
        ("inner.example.com.toml", INNER),
    ])
}

const SOA_NEG: &str =
    "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 7 14400 3600 1209600 300";

#[test]
fn answer_is_authoritative_and_keeps_the_query_case() {
    let s = example();
    let r = s.udp(&q("WwW.ExAmPlE.cOm", "A"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.aa());
    assert!(!r.tc());
    assert_eq!(r.id(), 0x4242);
    assert_eq!(
        r.answers(),
        [
            "WwW.ExAmPlE.cOm. 3600 IN A 192.0.2.10",
            "WwW.ExAmPlE.cOm. 3600 IN A 192.0.2.11"
        ]
    );
    assert!(r.authority().is_empty());
    assert!(r.additional().is_empty());
    // The question section is echoed byte for byte, case included.
    assert_eq!(&r.raw[12..12 + 17], b"\x03WwW\x07ExAmPlE\x03cOm\x00");
}

#[test]
fn nodata_has_soa_with_negative_ttl() {
    let s = example();
    let r = s.udp(&q("www.example.com", "MX"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.aa());
    assert!(r.answers().is_empty());
    assert_eq!(r.authority(), [SOA_NEG]);
}

#[test]
fn nxdomain_has_soa_and_negative_ttl_is_the_smaller_of_ttl_and_minimum() {
    let s = example();
    let r = s.udp(&q("nope.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NXDomain);
    assert!(r.aa());
    assert_eq!(r.authority(), [SOA_NEG]);
    // inner: SOA ttl 60 < minimum 600 -> 60.
    let r = s.udp(&q("nope.inner.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NXDomain);
    assert_eq!(
        r.authority(),
        [
            "inner.example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. 1 14400 3600 1209600 600"
        ]
    );
}

#[test]
fn empty_non_terminal_is_nodata_not_nxdomain() {
    let s = example();
    let r = s.udp(&q("b.deep.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
    assert_eq!(r.authority(), [SOA_NEG]);
}

#[test]
fn outside_our_zones_is_refused() {
    let s = example();
    let r = s.udp(&q("www.example.org", "A"));
    assert_eq!(r.rcode(), ResponseCode::Refused);
    assert!(!r.aa());
    assert!(r.answers().is_empty() && r.authority().is_empty());
    let r = s.udp(&q("com", "SOA"));
    assert_eq!(r.rcode(), ResponseCode::Refused);
}

#[test]
fn the_most_specific_zone_answers() {
    let s = example();
    let r = s.udp(&q("host.inner.example.com", "A"));
    assert_eq!(
        r.answers(),
        ["host.inner.example.com. 3600 IN A 198.51.100.7"]
    );
    let r = s.udp(&q("inner.example.com", "SOA"));
    assert_eq!(
        r.answers(),
        [
            "inner.example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. 1 14400 3600 1209600 600"
        ]
    );
}

#[test]
fn cname_is_followed_inside_our_zones() {
    let s = example();
    let r = s.udp(&q("chain.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.aa());
    assert_eq!(
        r.answers(),
        [
            "chain.example.com. 3600 IN CNAME alias.example.com.",
            "alias.example.com. 3600 IN CNAME www.example.com.",
            "www.example.com. 3600 IN A 192.0.2.10",
            "www.example.com. 3600 IN A 192.0.2.11",
        ]
    );
    // Into another zone we serve.
    let r = s.udp(&q("toinner.example.com", "A"));
    assert_eq!(
        r.answers(),
        [
            "toinner.example.com. 3600 IN CNAME host.inner.example.com.",
            "host.inner.example.com. 3600 IN A 198.51.100.7"
        ]
    );
    // Out of our zones: the CNAME alone.
    let r = s.udp(&q("away.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert_eq!(
        r.answers(),
        ["away.example.com. 3600 IN CNAME www.elsewhere.net."]
    );
    // Asking for the CNAME itself does not follow it.
    let r = s.udp(&q("alias.example.com", "CNAME"));
    assert_eq!(
        r.answers(),
        ["alias.example.com. 3600 IN CNAME www.example.com."]
    );
    // Target type missing: NODATA for the target, SOA in authority.
    let r = s.udp(&q("alias.example.com", "MX"));
    assert_eq!(
        r.answers(),
        ["alias.example.com. 3600 IN CNAME www.example.com."]
    );
    assert_eq!(r.authority(), [SOA_NEG]);
}

#[test]
fn cname_to_a_missing_name_is_nxdomain_with_the_cname() {
    let s = example();
    let r = s.udp(&q("dangling.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NXDomain);
    assert_eq!(
        r.answers(),
        ["dangling.example.com. 3600 IN CNAME missing.example.com."]
    );
    assert_eq!(r.authority(), [SOA_NEG]);
}

#[test]
fn cname_loop_ends_cleanly() {
    let s = example();
    let r = s.udp(&q("loop1.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    let a = r.answers();
    assert_eq!(a.len(), 8, "{a:?}");
    assert_eq!(a[0], "loop1.example.com. 3600 IN CNAME loop2.example.com.");
    assert_eq!(a[1], "loop2.example.com. 3600 IN CNAME loop1.example.com.");
}

#[test]
fn wildcards_follow_rfc4592() {
    let s = example();
    let r = s.udp(&q("Foo.Bar.wild.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.aa());
    assert_eq!(
        r.answers(),
        ["Foo.Bar.wild.example.com. 3600 IN A 192.0.2.99"]
    );
    // An existing name is not covered by the wildcard, even for a type it lacks.
    let r = s.udp(&q("real.wild.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
    assert_eq!(r.authority(), [SOA_NEG]);
    // Below an existing name the wildcard no longer applies (closest encloser is real.wild).
    let r = s.udp(&q("x.real.wild.example.com", "A"));
    assert_eq!(r.rcode(), ResponseCode::NXDomain);
    // Wildcard node without the type: NODATA.
    let r = s.udp(&q("zz.wild.example.com", "MX"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
}

#[test]
fn delegation_gives_a_referral_with_glue() {
    let s = example();
    for name in [
        "www.sub.example.com",
        "sub.example.com",
        "deep.er.sub.example.com",
    ] {
        let r = s.udp(&q(name, "A"));
        assert_eq!(r.rcode(), ResponseCode::NoError, "{name}");
        assert!(!r.aa(), "{name}: a referral is not authoritative");
        assert!(r.answers().is_empty());
        assert_eq!(
            r.authority(),
            [
                "sub.example.com. 3600 IN NS ns.sub.example.com.",
                "sub.example.com. 3600 IN NS ns.other.net."
            ]
        );
        assert_eq!(r.additional(), ["ns.sub.example.com. 3600 IN A 192.0.2.53"]);
    }
    // The glue itself is below the cut: referral too, never an authoritative answer.
    let r = s.udp(&q("ns.sub.example.com", "A"));
    assert!(!r.aa());
    assert!(r.answers().is_empty());
}

#[test]
fn additional_section_has_in_zone_addresses_of_ns_and_mx_targets() {
    let s = example();
    let r = s.udp(&q("example.com", "NS"));
    assert_eq!(
        r.answers(),
        [
            "example.com. 3600 IN NS ns1.example.com.",
            "example.com. 3600 IN NS ns2.example.com."
        ]
    );
    assert_eq!(
        r.additional(),
        [
            "ns1.example.com. 3600 IN A 192.0.2.1",
            "ns2.example.com. 3600 IN A 192.0.2.2",
            "ns2.example.com. 3600 IN AAAA 2001:db8::2"
        ]
    );
    let r = s.udp(&q("example.com", "MX"));
    assert_eq!(
        r.answers(),
        ["example.com. 3600 IN MX 10 mail.example.com."]
    );
    assert_eq!(r.additional(), ["mail.example.com. 600 IN A 192.0.2.25"]);
}

#[test]
fn edns_is_echoed_with_our_payload_size() {
    let s = example();
    let mut query = q("www.example.com", "A");
    query.edns = Some((4096, 0, vec![0xfe, 0xed, 0, 2, 1, 2])); // an unknown option is ignored
    let r = s.udp(&query);
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert_eq!(r.opt(), Some((1232, 0, 0)));
    assert_eq!(r.answers().len(), 2);
    // No OPT in, no OPT out.
    let r = s.udp(&q("www.example.com", "A").no_edns());
    assert_eq!(r.opt(), None);
    assert_eq!(r.raw[11], 0, "ARCOUNT");
}

#[test]
fn edns_version_above_zero_is_badvers() {
    let s = example();
    let mut query = q("www.example.com", "A");
    query.edns = Some((1232, 1, vec![]));
    let r = s.udp(&query);
    assert_eq!(r.header_rcode(), 0);
    assert_eq!(
        r.opt(),
        Some((1232, 1, 0)),
        "extended rcode 1 = BADVERS (16), version 0"
    );
    assert!(r.answers().is_empty());
}

#[test]
fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let s = example();
    let r = s.udp(&q("big.example.com", "TXT").no_edns());
    assert!(r.tc(), "600 bytes do not fit 512");
    assert!(r.answers().is_empty());
    assert_eq!(r.raw.len(), 12 + 17 + 4);
    // EDNS with a 1232 buffer: it fits.
    let r = s.udp(&q("big.example.com", "TXT"));
    assert!(!r.tc());
    assert_eq!(r.answers().len(), 6);
    // EDNS asking for less than 512 still gets 512 (RFC 6891).
    let mut small = q("big.example.com", "TXT");
    small.edns = Some((256, 0, vec![]));
    assert!(s.udp(&small).tc());
    let r = s.tcp(&q("big.example.com", "TXT").no_edns());
    assert!(!r.tc());
    assert_eq!(r.answers().len(), 6);
}

#[test]
fn tcp_serves_several_queries_on_one_connection() {
    let s = example();
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for (i, name) in ["www.example.com", "mail.example.com", "nope.example.com"]
        .iter()
        .enumerate()
    {
        let mut query = q(name, "A");
        query.id = i as u16 + 1;
        let r = Resp::parse(
            tcp_exchange(&mut c, &query.bytes()).expect("answer on the same connection"),
        );
        assert_eq!(r.id(), i as u16 + 1);
        assert_eq!(
            r.rcode(),
            if i == 2 {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            }
        );
    }
}

#[test]
fn idle_tcp_connections_are_closed_and_their_number_is_bounded() {
    let s = TestServer::start_with(&[("example.com.toml", EXAMPLE)], |o| {
        o.tcp_idle_timeout = Duration::from_millis(300);
        o.tcp_max_connections = 2;
    });
    let mut a = TcpStream::connect(s.addr).unwrap();
    let mut b = TcpStream::connect(s.addr).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert!(tcp_exchange(&mut a, &q("www.example.com", "A").bytes()).is_some());
    assert!(tcp_exchange(&mut b, &q("www.example.com", "A").bytes()).is_some());
    // A third connection is over the bound: closed without an answer.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert!(tcp_exchange(&mut c, &q("www.example.com", "A").bytes()).is_none());
    // Idle connections are closed by the server: read sees EOF.
    let t = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(a.read(&mut buf).unwrap_or(0), 0);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "closed after the idle timeout"
    );
    // With the slots free again, a new connection is served.
    std::thread::sleep(Duration::from_millis(100));
    let mut d = TcpStream::connect(s.addr).unwrap();
    d.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert!(tcp_exchange(&mut d, &q("www.example.com", "A").bytes()).is_some());
}

#[test]
fn any_gets_a_small_rfc8482_answer() {
    let s = example();
    let r = s.udp(&q("www.example.com", "ANY"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert_eq!(r.answers(), ["www.example.com. 3600 IN HINFO RFC8482 "]);
    let r = s.udp(&q("nope.example.com", "ANY"));
    assert_eq!(r.rcode(), ResponseCode::NXDomain);
}

#[test]
fn other_opcodes_are_notimp() {
    let s = example();
    let mut query = q("www.example.com", "A");
    query.opcode = 2; // STATUS
    let r = s.udp(&query);
    assert_eq!(r.rcode(), ResponseCode::NotImp);
    query.opcode = 5; // UPDATE
    assert_eq!(s.udp(&query).rcode(), ResponseCode::NotImp);
}

#[test]
fn qdcount_other_than_one_is_formerr() {
    let s = example();
    let mut raw = q("www.example.com", "A").bytes();
    raw[5] = 2;
    let r = Resp::parse(udp_raw(s.addr, &raw).unwrap());
    assert_eq!(r.rcode(), ResponseCode::FormErr);
    assert_eq!(r.id(), 0x4242);
    let raw = [0x42, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let r = Resp::parse(udp_raw(s.addr, &raw).unwrap());
    assert_eq!(r.rcode(), ResponseCode::FormErr);
}

#[test]
fn other_classes_and_zone_transfers_are_refused() {
    let s = example();
    let mut query = q("version.bind", "TXT");
    query.qclass = 3;
    assert_eq!(s.udp(&query).rcode(), ResponseCode::Refused);
    let mut query = q("www.example.com", "A");
    query.qclass = 4; // HS
    assert_eq!(s.udp(&query).rcode(), ResponseCode::Refused);
    assert_eq!(
        s.tcp(&q("example.com", "AXFR")).rcode(),
        ResponseCode::Refused
    );
    assert_eq!(
        s.udp(&q("example.com", "IXFR")).rcode(),
        ResponseCode::Refused
    );
}

#[test]
fn malformed_packets_get_formerr_or_are_dropped() {
    let s = example();
    // Too short for a header: dropped.
    assert!(udp_raw(s.addr, &[1, 2, 3]).is_none());
    // A response (QR set): dropped, never answered.
    let mut raw = q("www.example.com", "A").bytes();
    raw[2] |= 0x80;
    assert!(udp_raw(s.addr, &raw).is_none());
    // Truncated question: FORMERR.
    let raw = q("www.example.com", "A").bytes();
    let r = Resp::parse(udp_raw(s.addr, &raw[..20]).unwrap());
    assert_eq!(r.rcode(), ResponseCode::FormErr);
    // Label longer than 63: FORMERR.
    let mut raw = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64];
    raw.extend_from_slice(&[b'a'; 64]);
    raw.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(
        Resp::parse(udp_raw(s.addr, &raw).unwrap()).rcode(),
        ResponseCode::FormErr
    );
    // OPT record cut short: FORMERR.
    let raw = q("www.example.com", "A").bytes();
    assert_eq!(
        Resp::parse(udp_raw(s.addr, &raw[..raw.len() - 3]).unwrap()).rcode(),
        ResponseCode::FormErr
    );
    // Two OPT records: FORMERR.
    let mut raw = q("www.example.com", "A").bytes();
    let opt = raw[raw.len() - 11..].to_vec();
    raw.extend_from_slice(&opt);
    raw[11] = 2;
    assert_eq!(
        Resp::parse(udp_raw(s.addr, &raw).unwrap()).rcode(),
        ResponseCode::FormErr
    );
    // The server is still answering.
    assert_eq!(s.udp(&q("www.example.com", "A")).answers().len(), 2);
}

#[test]
fn static_answers_echo_ecs_with_scope_zero() {
    let s = example();
    let r = s.udp(&q("www.example.com", "A").ecs("198.51.100.0".parse().unwrap(), 24));
    assert_eq!(r.answers().len(), 2);
    assert_eq!(
        r.ecs(),
        Some((1, 24, 0, vec![198, 51, 100])),
        "same answer for every client: scope 0"
    );
}
