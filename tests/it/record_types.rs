//! The record types beyond RFC 1035: HTTPS and SVCB (RFC 9460), TLSA, SSHFP, NAPTR, DS at a
//! delegation point, and any type in the RFC 3597 generic form. Each is asked over UDP and
//! TCP; the RDATA bytes of the response are compared with bytes written out by hand from the
//! RFCs (not produced by our encoder), and the response is parsed with hickory-proto.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
use hickory_proto::rr::{RData, RecordType};

use crate::common::*;

const ZONE: &str = r#"
origin = "example.com."
[soa]
mname = "ns1.example.com."
rname = "hostmaster.example.com."
[records."@"]
NS = ["ns1"]
HTTPS = ['1 . port=8443 alpn="h2,h3" ipv4hint=192.0.2.1']
[records.ns1]
A = ["192.0.2.1"]
[records.svc]
SVCB = ['2 svc mandatory=alpn alpn=h3 ipv6hint=2001:db8::1 ech=AAQBAgME']
[records."_443._tcp.www"]
TLSA = ["3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]
[records.host]
SSHFP = ["4 2 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"]
[records.sip]
NAPTR = ['100 10 "S" "SIP+D2U" "" _sip._udp']
[records.sub]
NS = ["ns.sub"]
DS = ["12345 ECDSAP256SHA256 2 00112233445566778899AABBCCDDEEFF 00112233445566778899aabbccddeeff"]
[records."ns.sub"]
A = ["192.0.2.53"]
[records.generic]
TYPE65000 = ['\# 4 c0000201']
TYPE65001 = ['\# 0']
TXT = ['\# 6 05 68656c6c6f']
"#;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The wire name of `s` (lower-case labels).
fn name(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in s.trim_end_matches('.').split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

/// (type, RDATA) of every answer record, read off the raw bytes.
fn raw_answers(raw: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let skip = |mut at: usize| loop {
        let l = raw[at];
        if l == 0 {
            return at + 1;
        }
        if l & 0xC0 == 0xC0 {
            return at + 2;
        }
        at += 1 + l as usize;
    };
    let an = u16::from_be_bytes([raw[6], raw[7]]);
    let mut at = skip(12) + 4;
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip(at);
        let t = u16::from_be_bytes([raw[at], raw[at + 1]]);
        let len = u16::from_be_bytes([raw[at + 8], raw[at + 9]]) as usize;
        out.push((t, raw[at + 10..at + 10 + len].to_vec()));
        at += 10 + len;
    }
    out
}

/// Asks over UDP and TCP; both must give the same bytes. Returns them.
fn both(s: &TestServer, qname: &str, qtype: &str) -> Vec<u8> {
    let query = q(qname, qtype).bytes();
    let udp = udp_raw(s.addr, &query).expect("udp answer");
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    let tcp = tcp_exchange(&mut c, &query).expect("tcp answer");
    assert_eq!(udp, tcp, "{qname} {qtype}: UDP and TCP answer the same");
    udp
}

#[test]
fn modern_record_types_have_the_exact_bytes() {
    let s = TestServer::start(&[("example.com.toml", ZONE)]);
    let cases: Vec<(&str, &str, u16, Vec<u8>)> = vec![
        (
            "example.com",
            "65",
            65,
            // priority 1, target root, then alpn (1), port (3), ipv4hint (4) in key order.
            hex("0001 00  0001 0006 02 6832 02 6833  0003 0002 20fb  0004 0004 c0000201"),
        ),
        (
            "svc.example.com",
            "64",
            64,
            [
                hex("0002"),
                name("svc.example.com"),
                hex("0000 0002 0001"),
                hex("0001 0003 02 6833"),
                hex("0005 0006 0004 01020304"),
                hex("0006 0010 20010db8000000000000000000000001"),
            ]
            .concat(),
        ),
        (
            "_443._tcp.www.example.com",
            "52",
            52,
            hex("03 01 01 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        ),
        (
            "host.example.com",
            "44",
            44,
            hex("04 02 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
        ),
        (
            "sip.example.com",
            "35",
            35,
            [
                hex("0064 000a 01 53 07 5349502b443255 00"),
                name("_sip._udp.example.com"),
            ]
            .concat(),
        ),
        (
            "sub.example.com",
            "DS",
            43,
            hex("3039 0d 02 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
        ),
        ("generic.example.com", "65000", 65000, hex("c0000201")),
        ("generic.example.com", "TXT", 16, hex("05 68656c6c6f")),
    ];
    for (qname, qtype, t, rdata) in cases {
        let raw = both(&s, qname, qtype);
        let msg = Message::from_vec(&raw).expect("hickory parses the response");
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{qname}");
        assert!(
            msg.metadata.authoritative,
            "{qname} {qtype}: AA (DS is the parent's)"
        );
        let got = raw_answers(&raw);
        assert_eq!(got.first(), Some(&(t, rdata)), "{qname} {qtype}");
        assert_eq!(msg.answers.len(), got.len());
        assert_eq!(u16::from(msg.answers[0].record_type()), t);
    }
    // An empty RDATA (\# 0) is a record too (RFC 3597 5); hickory-proto's message parser
    // refuses empty records of an unknown type, so it is read off the raw bytes here.
    let raw = both(&s, "generic.example.com", "65001");
    assert_eq!(raw_answers(&raw), [(65001, vec![])]);
}

#[test]
fn hickory_reads_the_svcb_parameters_back() {
    let s = TestServer::start(&[("example.com.toml", ZONE)]);
    let msg = Message::from_vec(&both(&s, "svc.example.com", "64")).unwrap();
    let RData::SVCB(v) = &msg.answers[0].data else {
        panic!("not SVCB: {:?}", msg.answers[0]);
    };
    assert_eq!(v.svc_priority, 2);
    assert_eq!(v.target_name.to_string(), "svc.example.com.");
    let keys: Vec<SvcParamKey> = v.svc_params.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            SvcParamKey::Mandatory,
            SvcParamKey::Alpn,
            SvcParamKey::EchConfigList,
            SvcParamKey::Ipv6Hint
        ]
    );
    match &v.svc_params[1].1 {
        SvcParamValue::Alpn(a) => assert_eq!(a.0, ["h3"]),
        other => panic!("{other:?}"),
    }
    let msg = Message::from_vec(&both(&s, "sip.example.com", "35")).unwrap();
    assert_eq!(
        msg.answers[0].data.to_string(),
        "100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.example.com."
    );
    let msg = Message::from_vec(&both(&s, "host.example.com", "44")).unwrap();
    assert_eq!(msg.answers[0].record_type(), RecordType::SSHFP);
}

#[test]
fn rfc3597_generic_form_round_trips() {
    // Written generic, answered, read back as bytes, written generic again: the same zone.
    let s = TestServer::start(&[(
        "example.com.toml",
        concat!(
            minimal_zone!(),
            "[records.generic]\nTYPE65000 = ['\\# 4 c0000201', '\\# 0']\n"
        ),
    )]);
    let raw = both(&s, "generic.example.com", "65000");
    let values: Vec<String> = raw_answers(&raw)
        .into_iter()
        .map(|(_, d)| {
            let h: String = d.iter().map(|b| format!("{b:02x}")).collect();
            format!("\\# {} {h}", d.len()).trim_end().to_string()
        })
        .collect();
    assert_eq!(values, ["\\# 4 c0000201", "\\# 0"]);
    let again = format!(
        "{}\n[records.generic]\nTYPE65000 = [{}]\n",
        minimal_zone!(),
        values
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let s2 = TestServer::start(&[("example.com.toml", &again)]);
    assert_eq!(
        raw_answers(&both(&s2, "generic.example.com", "65000")),
        raw_answers(&raw)
    );
    // A known type in the generic form is the same record as its presentation form.
    let a = TestServer::start(&[(
        "example.com.toml",
        concat!(
            minimal_zone!(),
            "[records.www]\nA = ['\\# 4 c0000202']\nTYPE28 = ['\\# 16 20010db8000000000000000000000002']\n"
        ),
    )]);
    assert_eq!(
        Resp::parse(both(&a, "www.example.com", "A")).answers(),
        ["www.example.com. 3600 IN A 192.0.2.2"]
    );
    assert_eq!(
        Resp::parse(both(&a, "www.example.com", "AAAA")).answers(),
        ["www.example.com. 3600 IN AAAA 2001:db8::2"]
    );
}

#[test]
fn gslb_names_answer_https_with_nodata_unless_written() {
    let zone = concat!(
        minimal_zone!(),
        r#"
[datacenters.fra]
addresses = ["192.0.2.10"]
[gslb.www]
datacenters = ["fra"]
[gslb.app]
datacenters = ["fra"]
[records.app]
HTTPS = ['1 . alpn=h2']
"#
    );
    let s = TestServer::start(&[("example.com.toml", zone)]);
    let r = Resp::parse(both(&s, "www.example.com", "HTTPS"));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.msg.answers.is_empty());
    assert_eq!(r.msg.authorities[0].record_type(), RecordType::SOA);
    let raw = both(&s, "app.example.com", "65");
    assert_eq!(raw_answers(&raw), [(65, hex("0001 00 0001 0003 02 6832"))]);
    assert_eq!(
        Resp::parse(both(&s, "app.example.com", "A")).answers(),
        ["app.example.com. 30 IN A 192.0.2.10"]
    );
}
