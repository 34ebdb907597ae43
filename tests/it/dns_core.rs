//! The authoritative core where only sockets can show it: several queries on one TCP
//! connection and malformed packets over the wire (answered with FORMERR or dropped, the
//! server still answering after them). The TCP limits are in `hardening.rs`.
//!
//! Every answer the core gives (AA and case, negative answers, CNAME, wildcards, referrals,
//! additional data, EDNS, truncation, ANY, NOTIMP, FORMERR, REFUSED, ECS) is a scenario in
//! tests/scenarios/, answered in process by `scenarios.rs` and replayed there over real UDP
//! and TCP sockets (`scenarios_answer_the_same_over_sockets`).

use std::net::TcpStream;
use std::time::Duration;

use hickory_proto::op::ResponseCode;

use crate::common::*;

fn example() -> TestServer {
    TestServer::start(&[("example.com.toml", EXAMPLE)])
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
