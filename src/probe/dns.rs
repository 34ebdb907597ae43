//! The `dns` check: a query sent to the target address must come back with the expected
//! response code and, optionally, a given text in its answer section. Its keys, validation,
//! identity and probe.
//!
//! ```text
//!  query (id, name, type, EDNS 1232) --UDP--> target:port
//!        <-- answer with that id and question (others are ignored until the timeout)
//!        TC bit set --> the same query again over TCP
//!  verdict: rcode == expect-rcode, and expect-answer (if set) is in an answer record's data
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::outcome::ProbeOutcome;
use crate::rr::{CLASS_IN, TYPE_A, TYPE_OPT, parse_type, put_name};
use crate::walk::{Errors, Table};

/// The keys of a `dns` check besides the common ones.
pub(crate) const KEYS: &[&str] = &[
    "port",
    "query",
    "query-type",
    "expect-rcode",
    "expect-answer",
    "recursion-desired",
];

/// Response codes by name, for `expect-rcode` and messages.
const RCODES: &[(&str, u8)] = &[
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("YXDOMAIN", 6),
    ("YXRRSET", 7),
    ("NXRRSET", 8),
    ("NOTAUTH", 9),
    ("NOTZONE", 10),
];

/// The name of response code `code` (`NXDOMAIN`), or its number.
pub(crate) fn rcode_name(code: u16) -> String {
    RCODES
        .iter()
        .find(|(_, c)| u16::from(*c) == code)
        .map_or_else(|| code.to_string(), |(n, _)| (*n).to_string())
}

/// A `dns` check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnsCheck {
    /// Port queried on every target address (default 53).
    pub port: u16,
    /// The name asked, fully qualified and lower-case (`www.example.com.`).
    pub query: String,
    /// The type asked (default A).
    pub qtype: u16,
    /// The response code that passes (default NOERROR).
    pub expect_rcode: u8,
    /// Text that must appear in the data of an answer record (`192.0.2.10`).
    pub expect_answer: Option<String>,
    /// Set the RD bit (for checking a recursive resolver; default false).
    pub recursion_desired: bool,
}

impl DnsCheck {
    /// A query for `query` (type A) on `port`, expecting NOERROR.
    pub fn new(query: impl Into<String>, port: u16) -> DnsCheck {
        DnsCheck {
            port,
            query: query.into(),
            qtype: TYPE_A,
            expect_rcode: 0,
            expect_answer: None,
            recursion_desired: false,
        }
    }

    /// Reads the keys of a `dns` check (`query` is required); `None` after reporting an error.
    pub(crate) fn read(t: &mut Table<'_>, errs: &mut Errors) -> Option<DnsCheck> {
        let before = errs.list.len();
        let port = t.int("port", 1, 65535, errs).map_or(53, |x| x as u16);
        let query = match t.str("query", errs) {
            Some(q) => match Name::from_ascii(q) {
                Ok(n) => {
                    let mut s = n.to_ascii().to_ascii_lowercase();
                    if !s.ends_with('.') {
                        s.push('.');
                    }
                    Some(s)
                }
                Err(e) => {
                    errs.add(
                        &t.key_path("query"),
                        format!("{q:?} is not a DNS name: {e}"),
                    );
                    None
                }
            },
            None => {
                if !t.has("query") {
                    errs.add(
                        &t.key_path("query"),
                        "is required for a dns check (the name to ask, e.g. \"www.example.com\")",
                    );
                }
                None
            }
        };
        let qtype = match t.str("query-type", errs) {
            Some(s) => match parse_type(s.trim()) {
                Some(q) => q,
                None => {
                    errs.add(
                        &t.key_path("query-type"),
                        format!("{s:?} is not a record type (expected e.g. A, AAAA, TXT, SOA)"),
                    );
                    TYPE_A
                }
            },
            None => TYPE_A,
        };
        let rcode = t.get("expect-rcode");
        let expect_rcode = match (rcode, rcode.and_then(crate::walk::integer)) {
            (None, _) => 0,
            (Some(_), Some(i)) if (0..=15).contains(&i) => i as u8,
            (Some(crate::walk::DeValue::String(s)), _) => {
                match RCODES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
                {
                    Some((_, c)) => *c,
                    None => {
                        errs.add(
                            &t.key_path("expect-rcode"),
                            format!(
                                "{s:?} is not a response code (expected one of {}, or 0..15)",
                                RCODES.iter().map(|r| r.0).collect::<Vec<_>>().join(", ")
                            ),
                        );
                        0
                    }
                }
            }
            (Some(_), _) => {
                errs.add(
                    &t.key_path("expect-rcode"),
                    "expected a response code such as \"NOERROR\" or \"NXDOMAIN\"",
                );
                0
            }
        };
        let expect_answer = t.str("expect-answer", errs).map(str::to_string);
        let recursion_desired = t.bool("recursion-desired", errs).unwrap_or(false);
        if errs.list.len() > before {
            return None;
        }
        Some(DnsCheck {
            port,
            query: query?,
            qtype,
            expect_rcode,
            expect_answer,
            recursion_desired,
        })
    }

    /// What is probed, for the warm-start key.
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "dns:{}:{}:{}:{}:{}",
            self.port,
            self.query,
            self.qtype,
            self.expect_rcode,
            self.expect_answer.as_deref().unwrap_or("")
        )
    }

    /// The query message with id `id`.
    fn message(&self, id: u16) -> Result<Vec<u8>, String> {
        let name = Name::from_ascii(&self.query).map_err(|e| e.to_string())?;
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&(if self.recursion_desired { 0x0100u16 } else { 0 }).to_be_bytes());
        // One question, no answers or authorities, one additional (the OPT record).
        v.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
        put_name(&mut v, &name, true);
        v.extend_from_slice(&self.qtype.to_be_bytes());
        v.extend_from_slice(&CLASS_IN.to_be_bytes());
        // OPT: root name, type, UDP payload size 1232, rcode/version/flags 0, no options.
        v.push(0);
        v.extend_from_slice(&TYPE_OPT.to_be_bytes());
        v.extend_from_slice(&1232u16.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        Ok(v)
    }

    /// Judges an answer: response code, then the expected text.
    fn judge(&self, msg: &Message) -> ProbeOutcome {
        let rcode = u16::from(msg.metadata.response_code);
        if rcode != u16::from(self.expect_rcode) {
            return ProbeOutcome::Rcode(format!(
                "{}, expected {}",
                rcode_name(rcode),
                rcode_name(u16::from(self.expect_rcode))
            ));
        }
        if let Some(want) = &self.expect_answer {
            let found = msg
                .answers
                .iter()
                .any(|r| r.data.to_string().contains(want.as_str()));
            if !found {
                let got: Vec<String> = msg.answers.iter().map(|r| r.data.to_string()).collect();
                return ProbeOutcome::AnswerMismatch(format!(
                    "no answer contains {want:?} (answers: [{}])",
                    got.join(", ")
                ));
            }
        }
        ProbeOutcome::Pass
    }
}

/// Does `msg` answer our query `id`?
fn is_answer(msg: &Message, id: u16) -> bool {
    msg.metadata.id == id && msg.metadata.message_type == hickory_proto::op::MessageType::Response
}

/// One query of `d` to `addr`: the verdict and the round trip.
pub(super) async fn probe(
    addr: SocketAddr,
    d: &DnsCheck,
    id: u16,
    timeout: Duration,
) -> (ProbeOutcome, Option<Duration>) {
    let start = Instant::now();
    let query = match d.message(id) {
        Ok(q) => q,
        Err(e) => {
            return (
                ProbeOutcome::Other(format!("cannot build the query: {e}")),
                None,
            );
        }
    };
    let work = async {
        let msg = match udp(addr, &query, id).await {
            Ok(m) if m.metadata.truncation => tcp(addr, &query, id).await,
            other => other,
        };
        match msg {
            Ok(m) => (d.judge(&m), Some(start.elapsed())),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                (ProbeOutcome::Refused, None)
            }
            Err(e) => (ProbeOutcome::Other(e.to_string()), None),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => (ProbeOutcome::Timeout(timeout), None),
    }
}

async fn udp(addr: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Message> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    // Connected: the kernel drops datagrams from anyone else, and an ICMP port unreachable
    // comes back as "connection refused".
    sock.connect(addr).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Not a DNS message, or an answer to something else: keep waiting (until the timeout).
        if let Ok(m) = Message::from_vec(&buf[..n])
            && is_answer(&m, id)
        {
            return Ok(m);
        }
    }
}

async fn tcp(addr: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Message> {
    let mut s = TcpStream::connect(addr).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).await?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf)
        .map_err(|e| std::io::Error::other(format!("malformed answer over TCP: {e}")))?;
    if !is_answer(&m, id) {
        return Err(std::io::Error::other("the TCP answer is not for our query"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let d = DnsCheck::new("www.example.com.", 53);
        let q = d.message(0x1234).expect("query");
        assert_eq!(&q[..4], &[0x12, 0x34, 0, 0]);
        let m = Message::from_vec(&q).expect("parses");
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name().to_ascii(), "www.example.com.");
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(rcode_name(15), "15");
    }
}
