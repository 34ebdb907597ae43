//! Reading a DNS query from the wire without allocating.
//!
//! The query path sees every packet from the internet, so this parser is strict and
//! bounded: it reads the header, exactly one question (lower-casing the name into a stack
//! buffer and recording label offsets), skips any answer/authority records, and reads the OPT
//! record with its Client Subnet and COOKIE options, and where a TSIG record is. Anything
//! malformed becomes FORMERR when a header could be read, and is dropped otherwise. A signed
//! request gets NOTAUTH with TSIG error BADKEY: gslbd has no TSIG keys (RFC 8945 5.2.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::rr::{
    CLASS_ANY, OPTION_COOKIE, OPTION_ECS, OPTION_PADDING, RCODE_FORMERR, RCODE_NOTAUTH,
    RCODE_NOTIMP, TYPE_OPT, TYPE_TSIG,
};

/// Length of the DNS header.
pub(crate) const HEADER_LEN: usize = 12;

/// EDNS Client Subnet as sent by the resolver (RFC 7871), validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSubnet {
    /// Address family as sent (1 = IPv4, 2 = IPv6).
    pub(crate) family: u16,
    /// Source prefix length.
    pub(crate) source_prefix: u8,
    /// The address with every bit beyond `source_prefix` zero.
    pub(crate) addr: IpAddr,
}

/// The DNS COOKIE option of a query (RFC 7873), held without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cookie {
    /// The client cookie.
    pub(crate) client: [u8; 8],
    /// The server cookie, `server_len` bytes used.
    pub(crate) server: [u8; 32],
    /// 0 (a client cookie alone) or 8..=32.
    pub(crate) server_len: u8,
}

impl Cookie {
    /// The server cookie as sent (empty when the client sent none).
    pub(crate) fn server(&self) -> &[u8] {
        &self.server[..usize::from(self.server_len)]
    }
}

/// The OPT record of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Edns {
    /// The client's UDP payload size.
    pub(crate) udp_size: u16,
    /// EDNS version (only 0 is spoken).
    pub(crate) version: u8,
    /// The DO bit.
    pub(crate) dnssec_ok: bool,
    /// RFC 9824 4.1 "Compact Answers OK": the resolver takes NXDOMAIN with a compact NSEC.
    pub(crate) compact_ok: bool,
    /// The Client Subnet option, if sent and valid.
    pub(crate) ecs: Option<ClientSubnet>,
    /// The query carried a Padding option (RFC 7830): pad the response on an encrypted
    /// transport.
    pub(crate) padding: bool,
    /// The COOKIE option, if sent and well formed.
    pub(crate) cookie: Option<Cookie>,
}

/// Where the TSIG record of a request is (RFC 8945 4.2), for the BADKEY answer that echoes
/// its key name, algorithm, time and original id. Both names were checked to expand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tsig {
    /// The record's owner: the key name (maybe compressed).
    pub(crate) owner_at: usize,
    /// Its RDATA: the algorithm name first.
    pub(crate) rdata_at: usize,
    /// Time Signed (6 bytes) and Fudge (2), right after the algorithm name.
    pub(crate) time_at: usize,
    /// Original ID.
    pub(crate) original_id: u16,
}

/// A parsed query; the name is lower-cased wire form in a fixed buffer.
#[derive(Clone, Debug)]
pub struct Query {
    /// Message id.
    pub(crate) id: u16,
    /// Opcode (only 0, QUERY, is answered).
    pub(crate) opcode: u8,
    /// Recursion desired (echoed).
    pub(crate) rd: bool,
    /// Checking disabled (echoed).
    pub(crate) cd: bool,
    /// The question name, lower-cased wire form, `qname_len` bytes used.
    pub(crate) qname: [u8; 256],
    /// Bytes of `qname` in use.
    pub(crate) qname_len: usize,
    /// Offset of each label in `qname`; `labels[nlabels]` is the root label.
    pub(crate) labels: [u8; 128],
    /// Number of labels (without the root).
    pub(crate) nlabels: usize,
    /// The question type.
    pub(crate) qtype: u16,
    /// The question class.
    pub(crate) qclass: u16,
    /// End of the question in the request (the response copies `req[12..question_end]`).
    pub(crate) question_end: usize,
    /// The OPT record, if any.
    pub(crate) edns: Option<Edns>,
    /// The TSIG record, if the request is signed.
    pub(crate) tsig: Option<Tsig>,
}

impl Query {
    /// The lower-cased wire name.
    #[inline]
    pub(crate) fn name(&self) -> &[u8] {
        &self.qname[..self.qname_len]
    }
}

/// Why a packet could not be answered normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Not even a header, or a response: say nothing.
    Drop,
    /// Answer with this rcode, echoing the header (and the question and OPT when read).
    Rcode {
        /// The response code.
        rcode: u8,
        /// The question was read and is echoed.
        with_question: bool,
    },
    /// No question, only a COOKIE option: a client asking for a server cookie (RFC 7873 5.4).
    /// `Query::edns` holds the cookie.
    CookieOnly,
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses a query packet. On failure a partly filled `Query` is still returned so the error
/// response can echo what was read.
pub(crate) fn parse(req: &[u8], q: &mut Query) -> Result<(), Reject> {
    if req.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    q.id = u16::from_be_bytes([req[0], req[1]]);
    let flags = u16::from_be_bytes([req[2], req[3]]);
    if flags & 0x8000 != 0 {
        return Err(Reject::Drop); // a response: never answer, that is how reflection loops start
    }
    q.opcode = ((flags >> 11) & 0xF) as u8;
    q.rd = flags & 0x0100 != 0;
    q.cd = flags & 0x0010 != 0;
    q.edns = None;
    q.tsig = None;
    q.question_end = HEADER_LEN;
    q.qname_len = 0;
    q.nlabels = 0;
    let qdcount = be16(req, 4).unwrap_or(0);
    let ancount = be16(req, 6).unwrap_or(0);
    let nscount = be16(req, 8).unwrap_or(0);
    let arcount = be16(req, 10).unwrap_or(0);
    if q.opcode != 0 {
        return Err(Reject::Rcode {
            rcode: RCODE_NOTIMP,
            with_question: false,
        });
    }
    let formerr = Reject::Rcode {
        rcode: RCODE_FORMERR,
        with_question: false,
    };
    if qdcount == 0 && ancount == 0 && nscount == 0 && arcount > 0 {
        return cookie_only(req, q, arcount).unwrap_or(Err(formerr));
    }
    if qdcount != 1 {
        return Err(formerr);
    }
    // Question name: no compression pointers (there is nothing before it to point to).
    let mut at = HEADER_LEN;
    loop {
        let len = *req.get(at).ok_or(formerr)? as usize;
        if len == 0 {
            q.labels[q.nlabels] = q.qname_len as u8;
            q.qname[q.qname_len] = 0;
            q.qname_len += 1;
            at += 1;
            break;
        }
        if len > 63 || q.nlabels >= 127 || q.qname_len + len + 2 > 255 {
            return Err(formerr);
        }
        let label = req.get(at + 1..at + 1 + len).ok_or(formerr)?;
        q.labels[q.nlabels] = q.qname_len as u8;
        q.nlabels += 1;
        q.qname[q.qname_len] = len as u8;
        for (d, s) in q.qname[q.qname_len + 1..q.qname_len + 1 + len]
            .iter_mut()
            .zip(label)
        {
            *d = s.to_ascii_lowercase();
        }
        q.qname_len += 1 + len;
        at += 1 + len;
    }
    q.qtype = be16(req, at).ok_or(formerr)?;
    q.qclass = be16(req, at + 2).ok_or(formerr)?;
    at += 4;
    q.question_end = at;
    let formerr_q = Reject::Rcode {
        rcode: RCODE_FORMERR,
        with_question: true,
    };
    // Queries carry no answer or authority records, but skip them if a client sends some.
    // OPT and TSIG belong in the additional section only (RFC 6891 6.1.1, RFC 8945 5.1).
    for _ in 0..(u32::from(ancount) + u32::from(nscount)) {
        let (next, rtype, _) = skip_rr(req, at).ok_or(formerr_q)?;
        if rtype == TYPE_OPT || rtype == TYPE_TSIG {
            return Err(formerr_q);
        }
        at = next;
    }
    for i in 0..arcount {
        let (next, rtype, rdata_at) = skip_rr(req, at).ok_or(formerr_q)?;
        if rtype == TYPE_OPT {
            // OPT: owner must be the root, and only one per message (RFC 6891 6.1.1).
            if q.edns.is_some() || req[at] != 0 {
                return Err(formerr_q);
            }
            match parse_opt(req, at + 1, rdata_at, next) {
                Ok(e) => q.edns = Some(e),
                Err(header) => {
                    // A bad option: the FORMERR still carries an OPT (RFC 6891 7).
                    q.edns = header;
                    return Err(formerr_q);
                }
            }
        } else if rtype == TYPE_TSIG {
            // The last record, class ANY, and readable; else FORMERR (RFC 8945 5.1, 5.2).
            if i + 1 != arcount {
                return Err(formerr_q);
            }
            q.tsig = Some(parse_tsig(req, at, rdata_at, next).ok_or(formerr_q)?);
        }
        at = next;
    }
    if q.tsig.is_some() {
        // Signed with a key we cannot know: gslbd has none (RFC 8945 5.2.1).
        return Err(Reject::Rcode {
            rcode: RCODE_NOTAUTH,
            with_question: true,
        });
    }
    Ok(())
}

/// A query without a question (RFC 7873 5.4): only an OPT record with a COOKIE option is
/// meaningful; `None` (FORMERR) otherwise.
fn cookie_only(req: &[u8], q: &mut Query, arcount: u16) -> Option<Result<(), Reject>> {
    q.qtype = 0;
    q.qclass = 0;
    let mut at = HEADER_LEN;
    for _ in 0..arcount {
        let (next, rtype, rdata_at) = skip_rr(req, at)?;
        if rtype == TYPE_OPT {
            if q.edns.is_some() || req[at] != 0 {
                return None;
            }
            q.edns = Some(parse_opt(req, at + 1, rdata_at, next).ok()?);
        }
        at = next;
    }
    q.edns
        .is_some_and(|e| e.cookie.is_some())
        .then_some(Err(Reject::CookieOnly))
}

/// Skips a (possibly compressed) name at `at`; the offset after it.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => {
                b.get(at + 1)?;
                return Some(at + 2);
            }
            l if l & 0xC0 != 0 => return None,
            l => at += 1 + l as usize,
        }
    }
}

/// Copies the name at `at` of `b` into `out` uncompressed (labels as sent, pointers
/// followed); returns its length. `None` for a name that does not end, is longer than 255
/// bytes, or points forward (a pointer must go back, so a loop cannot hold it).
pub(crate) fn expand_name(b: &[u8], mut at: usize, out: &mut [u8; 255]) -> Option<usize> {
    let mut len = 0;
    loop {
        let l = *b.get(at)?;
        match l {
            0 => {
                *out.get_mut(len)? = 0;
                return Some(len + 1);
            }
            l if l & 0xC0 == 0xC0 => {
                let target = usize::from(u16::from_be_bytes([l & 0x3F, *b.get(at + 1)?]));
                if target >= at {
                    return None;
                }
                at = target;
            }
            l if l & 0xC0 != 0 => return None,
            l => {
                let n = 1 + usize::from(l);
                out.get_mut(len..len + n)?
                    .copy_from_slice(b.get(at..at + n)?);
                len += n;
                at += n;
            }
        }
    }
}

/// Reads the TSIG record at `owner_at` (RDATA at `rdata_at`, ending at `end`): class ANY, the
/// algorithm name, Time Signed, Fudge, the MAC, Original ID, Error and Other Data filling the
/// RDATA exactly, and both names expandable.
fn parse_tsig(b: &[u8], owner_at: usize, rdata_at: usize, end: usize) -> Option<Tsig> {
    if be16(b, rdata_at - 8)? != CLASS_ANY {
        return None;
    }
    let mut name = [0u8; 255];
    expand_name(b, owner_at, &mut name)?;
    expand_name(b, rdata_at, &mut name)?;
    let time_at = skip_name(b, rdata_at)?;
    let mac_len = usize::from(be16(b, time_at + 8)?);
    let id_at = time_at + 10 + mac_len;
    let original_id = be16(b, id_at)?;
    let other_len = usize::from(be16(b, id_at + 4)?);
    (id_at + 6 + other_len == end).then_some(Tsig {
        owner_at,
        rdata_at,
        time_at,
        original_id,
    })
}

/// Skips a resource record at `at`; returns (end, type, start of RDATA).
fn skip_rr(b: &[u8], at: usize) -> Option<(usize, u16, usize)> {
    let at = skip_name(b, at)?;
    let rtype = be16(b, at)?;
    let rdlen = be16(b, at + 8)? as usize;
    let rdata_at = at + 10;
    let end = rdata_at + rdlen;
    if end > b.len() {
        return None;
    }
    Some((end, rtype, rdata_at))
}

/// `fixed` points at TYPE of the OPT record (after the root owner byte). A malformed option
/// is an error that carries the record's header without options (`None` if even that cannot
/// be read), for the FORMERR's own OPT.
fn parse_opt(b: &[u8], fixed: usize, rdata_at: usize, end: usize) -> Result<Edns, Option<Edns>> {
    let header = || -> Option<Edns> {
        let flags = be16(b, fixed + 6)?;
        Some(Edns {
            udp_size: be16(b, fixed + 2)?,
            version: *b.get(fixed + 5)?,
            dnssec_ok: flags & 0x8000 != 0,
            compact_ok: flags & 0x4000 != 0,
            ecs: None,
            padding: false,
            cookie: None,
        })
    };
    let mut edns = header().ok_or(None)?;
    let bad = Err(Some(edns));
    let mut at = rdata_at;
    while at < end {
        let (Some(code), Some(len)) = (be16(b, at), be16(b, at + 2)) else {
            return bad;
        };
        let len = usize::from(len);
        if at + 4 + len > end {
            return bad;
        }
        let data = &b[at + 4..at + 4 + len];
        if code == OPTION_ECS {
            match parse_ecs(data) {
                Some(c) if edns.ecs.is_none() => edns.ecs = Some(c),
                _ => return bad,
            }
        } else if code == OPTION_PADDING {
            edns.padding = true;
        } else if code == OPTION_COOKIE {
            match parse_cookie(data) {
                Some(c) if edns.cookie.is_none() => edns.cookie = Some(c),
                _ => return bad,
            }
        }
        at += 4 + len;
    }
    Ok(edns)
}

/// RFC 7873 section 5.2.2: a client cookie of 8 bytes, alone or followed by a server cookie
/// of 8 to 32 bytes; any other length is FORMERR.
fn parse_cookie(d: &[u8]) -> Option<Cookie> {
    if d.len() != 8 && !(16..=40).contains(&d.len()) {
        return None;
    }
    let mut c = Cookie {
        client: [0; 8],
        server: [0; 32],
        server_len: (d.len() - 8) as u8,
    };
    c.client.copy_from_slice(&d[..8]);
    c.server[..d.len() - 8].copy_from_slice(&d[8..]);
    Some(c)
}

/// RFC 7871 section 6: FORMERR on a prefix too long for the family, an address longer than
/// the prefix needs, bits set beyond the prefix, or a non-zero scope in a query.
fn parse_ecs(d: &[u8]) -> Option<ClientSubnet> {
    if d.len() < 4 {
        return None;
    }
    let family = u16::from_be_bytes([d[0], d[1]]);
    let source = d[2];
    let scope = d[3];
    let addr = &d[4..];
    if scope != 0 {
        return None;
    }
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max || addr.len() != usize::from(source).div_ceil(8) {
        return None;
    }
    if !source.is_multiple_of(8)
        && let Some(last) = addr.last()
        && last & (0xFFu8 >> (source % 8)) != 0
    {
        return None;
    }
    let ip = if family == 1 {
        let mut o = [0u8; 4];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Some(ClientSubnet {
        family,
        source_prefix: source,
        addr: ip,
    })
}

impl Default for Query {
    fn default() -> Self {
        Query {
            id: 0,
            opcode: 0,
            rd: false,
            cd: false,
            qname: [0; 256],
            qname_len: 0,
            labels: [0; 128],
            nlabels: 0,
            qtype: 0,
            qclass: 0,
            question_end: HEADER_LEN,
            edns: None,
            tsig: None,
        }
    }
}

/// The smallest TTL of the answer and authority records of a response we wrote (for DoH's
/// `Cache-Control: max-age`, which RFC 8484 section 5.1 bounds by it); `None` when there are
/// none. Off the query path's hot loop: it walks the message once.
pub(crate) fn min_ttl(resp: &[u8]) -> Option<u32> {
    let qd = be16(resp, 4)?;
    let an = be16(resp, 6)?;
    let ns = be16(resp, 8)?;
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(resp, at)? + 4;
    }
    let mut min: Option<u32> = None;
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        let name_end = skip_name(resp, at)?;
        let ttl = u32::from_be_bytes(resp.get(name_end + 4..name_end + 8)?.try_into().ok()?);
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
        at = skip_rr(resp, at)?.0;
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut v = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(name);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v
    }

    #[test]
    fn lowercases_and_records_labels() {
        let req = query(b"\x03WwW\x07example\x03com\x00", 1);
        let mut q = Query::default();
        parse(&req, &mut q).unwrap();
        assert_eq!(q.name(), b"\x03www\x07example\x03com\x00");
        assert_eq!(q.nlabels, 3);
        assert_eq!(&q.labels[..4], &[0, 4, 12, 16]);
        assert_eq!(q.question_end, req.len());
    }

    #[test]
    fn ecs_bits_beyond_prefix_are_formerr() {
        let mut req = query(b"\x00", 1);
        req[11] = 1;
        // OPT with ECS family 1, /23 but last byte has bit 0 set.
        req.extend_from_slice(&[
            0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 23, 0, 10, 0, 3,
        ]);
        let mut q = Query::default();
        assert_eq!(
            parse(&req, &mut q),
            Err(Reject::Rcode {
                rcode: RCODE_FORMERR,
                with_question: true
            })
        );
    }

    #[test]
    fn cookie_option_lengths() {
        let with_cookie = |len: usize| {
            let mut req = query(b"\x00", 1);
            req[11] = 1;
            let rdlen = 4 + len;
            req.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
            req.extend_from_slice(&(rdlen as u16).to_be_bytes());
            req.extend_from_slice(&[0, 10]);
            req.extend_from_slice(&(len as u16).to_be_bytes());
            req.extend((0..len).map(|i| i as u8));
            let mut q = Query::default();
            parse(&req, &mut q).map(|()| q.edns.and_then(|e| e.cookie))
        };
        let c = with_cookie(8).expect("client cookie").expect("present");
        assert_eq!((c.client, c.server()), ([0, 1, 2, 3, 4, 5, 6, 7], &[][..]));
        let c = with_cookie(24).expect("both").expect("present");
        assert_eq!(c.server(), &(8..24).collect::<Vec<u8>>()[..]);
        assert!(with_cookie(40).is_ok());
        for bad in [0, 7, 9, 15, 41] {
            assert!(with_cookie(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_query_without_a_question_is_a_cookie_request_or_formerr() {
        let mut req = vec![0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1];
        req.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8]);
        req.extend_from_slice(b"clientck");
        let mut q = Query::default();
        assert_eq!(parse(&req, &mut q), Err(Reject::CookieOnly));
        assert_eq!(
            q.edns.and_then(|e| e.cookie).map(|c| c.client),
            Some(*b"clientck")
        );
        // Without a cookie: FORMERR, as before.
        let plain = [
            0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(matches!(
            parse(&plain, &mut q),
            Err(Reject::Rcode {
                rcode: RCODE_FORMERR,
                ..
            })
        ));
    }

    #[test]
    fn short_and_response_packets_are_dropped() {
        let mut q = Query::default();
        assert_eq!(parse(&[0; 5], &mut q), Err(Reject::Drop));
        let mut req = query(b"\x00", 1);
        req[2] |= 0x80;
        assert_eq!(parse(&req, &mut q), Err(Reject::Drop));
    }
    #[test]
    fn min_ttl_of_answer_and_authority() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::{Name, RData, Record, rdata};
        let name = Name::from_ascii("www.example.com.").unwrap();
        let a =
            |ttl, ip: [u8; 4]| Record::from_rdata(name.clone(), ttl, RData::A(rdata::A(ip.into())));
        let mut m = Message::response(7, hickory_proto::op::OpCode::Query);
        m.answers = vec![a(300, [192, 0, 2, 1]), a(30, [192, 0, 2, 2])];
        m.authorities = vec![a(600, [192, 0, 2, 3])];
        // Compression pointers in the owners are skipped too.
        assert_eq!(min_ttl(&m.to_vec().unwrap()), Some(30));
        m.answers.clear();
        assert_eq!(min_ttl(&m.to_vec().unwrap()), Some(600));
        m.authorities.clear();
        assert_eq!(min_ttl(&m.to_vec().unwrap()), None);
        assert_eq!(min_ttl(&[0; 5]), None);
    }
}
