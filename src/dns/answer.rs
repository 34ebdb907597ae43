//! Building the response to one parsed query: zone lookup, referral, CNAME chase, wildcard,
//! negative answers, EDNS and truncation — all into a caller-provided buffer.
//!
//! Per query this does a handful of hash lookups on lower-cased wire names and copies
//! pre-encoded RRsets; owner names are compression pointers into the question (which keeps
//! the client's 0x20 case) or into the CNAME target just written.

use std::net::IpAddr;

use super::handler::Peer;
use super::wire::{HEADER_LEN, Query, Reject, parse};
use crate::limits::{MAX_CNAME_CHAIN, OUR_UDP_SIZE};
use crate::model::{Model, Node, RRset, Zone};
use crate::rr::*;

/// What a GSLB name contributes to an answer; implemented by the GSLB engine.
pub trait GslbAnswerer {
    /// Writes the A/AAAA records of GSLB name `id` (owner = pointer `owner`) and returns
    /// what happened.
    fn answer(
        &self,
        id: u32,
        qtype: u16,
        q: &Query,
        peer: &Peer,
        w: &mut Writer<'_>,
        owner: u16,
    ) -> GslbOutcome;
}

/// Result of a GSLB decision for the response builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GslbOutcome {
    /// Records were written; `scope` is the ECS scope prefix.
    Answered {
        /// ECS scope prefix length.
        scope: u8,
    },
    /// Nothing to answer for this type: NODATA.
    NoData {
        /// ECS scope prefix length.
        scope: u8,
    },
    /// SERVFAIL (the name's all-down behaviour).
    ServFail {
        /// ECS scope prefix length.
        scope: u8,
    },
}

/// A GSLB answerer for models without GSLB names (and for tests of the static core).
pub struct NoGslb;

impl GslbAnswerer for NoGslb {
    fn answer(
        &self,
        _: u32,
        _: u16,
        _: &Query,
        _: &Peer,
        _: &mut Writer<'_>,
        _: u16,
    ) -> GslbOutcome {
        GslbOutcome::NoData { scope: 0 }
    }
}

/// A response being written into a fixed buffer; overflow is remembered, not a panic.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    /// Bytes written so far.
    pub(crate) len: usize,
    /// Answer records written.
    pub(crate) an: u16,
    /// Authority records written.
    pub(crate) ns: u16,
    /// Additional records written.
    pub(crate) ar: u16,
    /// Something did not fit.
    pub(crate) overflow: bool,
    /// Where the additional section starts, once something was written to it.
    pub(crate) additional_start: Option<usize>,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            len: 0,
            an: 0,
            ns: 0,
            ar: 0,
            overflow: false,
            additional_start: None,
        }
    }

    /// Appends pre-encoded additional records (full owner names included).
    pub(crate) fn additional(&mut self, bytes: &[u8], count: u16) {
        if count == 0 {
            return;
        }
        if self.additional_start.is_none() {
            self.additional_start = Some(self.len);
        }
        self.put(bytes);
        self.ar += count;
    }

    /// Appends raw bytes.
    #[inline]
    pub(crate) fn put(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.len..self.len + b.len()) {
            Some(d) => {
                d.copy_from_slice(b);
                self.len += b.len();
            }
            None => self.overflow = true,
        }
    }

    /// Appends a big-endian u16.
    #[inline]
    pub(crate) fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    /// Appends a big-endian u32.
    #[inline]
    pub(crate) fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// Writes each record of `rr` with a compressed owner; returns how many.
    #[inline]
    pub(crate) fn rrset(&mut self, owner: u16, rr: &RRset) -> u16 {
        if rr.count == 1 {
            self.u16(owner);
            self.put(&rr.wire);
            return 1;
        }
        let mut at = 0;
        while at + 10 <= rr.wire.len() {
            let rdlen = u16::from_be_bytes([rr.wire[at + 8], rr.wire[at + 9]]) as usize;
            self.u16(owner);
            self.put(&rr.wire[at..at + 10 + rdlen]);
            at += 10 + rdlen;
        }
        rr.count
    }

    /// One A/AAAA (or any) record with a compressed owner.
    #[inline]
    pub(crate) fn record(&mut self, owner: u16, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.u16(owner);
        self.u16(rtype);
        self.u16(CLASS_IN);
        self.u32(ttl);
        self.u16(rdata.len() as u16);
        self.put(rdata);
    }

    fn set_u16(&mut self, at: usize, v: u16) {
        if let Some(d) = self.buf.get_mut(at..at + 2) {
            d.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// Compression pointer to offset `at`.
#[inline]
fn ptr(at: usize) -> u16 {
    0xC000 | at as u16
}

/// The name being resolved at one step of a CNAME chain.
struct Cursor<'n> {
    name: &'n [u8],
    /// Offset of the name in the response, for compression pointers.
    at: usize,
    labels: [u8; 128],
    nlabels: usize,
}

impl<'n> Cursor<'n> {
    fn of_query(q: &'n Query) -> Self {
        Cursor {
            name: q.name(),
            at: HEADER_LEN,
            labels: q.labels,
            nlabels: q.nlabels,
        }
    }

    /// A name in wire form (from our own model, so well formed).
    fn of_wire(name: &'n [u8], at: usize) -> Self {
        let mut c = Cursor {
            name,
            at,
            labels: [0; 128],
            nlabels: 0,
        };
        let mut off = 0;
        while off < name.len() && name[off] != 0 && c.nlabels < 127 {
            c.labels[c.nlabels] = off as u8;
            c.nlabels += 1;
            off += 1 + name[off] as usize;
        }
        c.labels[c.nlabels] = off as u8;
        c
    }

    #[inline]
    fn suffix(&self, i: usize) -> &'n [u8] {
        &self.name[self.labels[i] as usize..]
    }

    /// Pointer to the suffix starting at label `i`, if it fits a pointer.
    #[inline]
    fn ptr(&self, i: usize) -> u16 {
        ptr(self.at + self.labels[i] as usize)
    }
}

/// Flags and scope decided while answering.
struct Decided {
    rcode: u8,
    aa: bool,
    scope: u8,
}

/// A response written into the caller's buffer, with what metrics want to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// Length of the response in the output buffer.
    pub len: usize,
    /// The zone (index into `Model::zones`) that answered the query name, if any.
    pub(crate) zone: Option<u32>,
    /// ECS scope prefix length sent back (0 when not client-specific).
    pub(crate) scope: u8,
}

/// Answers `q` (already parsed from `req`) into `out`. The size limit is the transport's
/// (the client's UDP payload within 512..=1232, or 65535 over TCP).
pub(crate) fn respond<G: GslbAnswerer>(
    model: &Model,
    gslb: &G,
    q: &Query,
    req: &[u8],
    peer: &Peer,
    out: &mut [u8],
) -> Answered {
    let mut zone = None;
    let mut w = Writer::new(out);
    w.put(&[0; HEADER_LEN]);
    w.put(&req[HEADER_LEN..q.question_end]);
    let limit = udp_limit(q, peer);

    let badvers = q.edns.is_some_and(|e| e.version > 0);
    let outcome = if badvers {
        Decided {
            rcode: 0,
            aa: false,
            scope: 0,
        }
    } else if q.qclass != CLASS_IN {
        // CH TXT version.bind and friends: we do not disclose, and other classes we do not serve.
        Decided {
            rcode: RCODE_REFUSED,
            aa: false,
            scope: 0,
        }
    } else if q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR {
        Decided {
            rcode: RCODE_REFUSED,
            aa: false,
            scope: 0,
        }
    } else if q.qtype == TYPE_OPT {
        Decided {
            rcode: RCODE_FORMERR,
            aa: false,
            scope: 0,
        }
    } else {
        resolve(model, gslb, q, peer, &mut w, &mut zone)
    };
    let scope = outcome.scope;
    // RFC 7830: pad the response when the query was padded, on encrypted transports only
    // (padding in the clear only costs bytes).
    let pad = peer.transport.is_encrypted() && q.edns.is_some_and(|e| e.padding);
    let len = finish(q, &mut w, outcome, badvers, limit, pad);
    Answered { len, zone, scope }
}

/// Bytes the OPT record will take in the response.
fn opt_len(q: &Query) -> usize {
    match q.edns {
        None => 0,
        Some(e) => {
            11 + e
                .ecs
                .map_or(0, |c| 8 + usize::from(c.source_prefix).div_ceil(8))
        }
    }
}

/// The most a UDP response may hold for this client.
fn udp_limit(q: &Query, peer: &Peer) -> usize {
    if peer.transport.is_stream() {
        return 65535;
    }
    match q.edns {
        None => 512,
        Some(e) => usize::from(e.udp_size.clamp(512, OUR_UDP_SIZE)),
    }
}

/// The block length responses are padded to (RFC 8467 section 4.1, Block-Length Padding: the
/// recommended 468 octets for responses).
pub(crate) const PAD_BLOCK: usize = 468;

/// Completes the response: truncation to `limit`, the OPT record (EDNS echo, ECS scope, and
/// with `pad` a Padding option that makes the message a multiple of [`PAD_BLOCK`] octets, as
/// far as `limit` allows), the header.
fn finish(
    q: &Query,
    w: &mut Writer<'_>,
    o: Decided,
    badvers: bool,
    limit: usize,
    pad: bool,
) -> usize {
    let opt = opt_len(q);
    let mut tc = false;
    if w.overflow || w.len + opt > limit {
        // Additional data is optional: when answer and authority fit, drop only it (RFC 2181
        // 9); otherwise signal truncation so the client retries over TCP.
        let fits_without_additional =
            !w.overflow && w.additional_start.is_some_and(|s| s + opt <= limit);
        if fits_without_additional {
            w.len = w.additional_start.unwrap_or(w.len);
            w.ar = 0;
        } else {
            w.len = q.question_end;
            w.an = 0;
            w.ns = 0;
            w.ar = 0;
            tc = true;
        }
        w.overflow = false;
    }
    if let Some(e) = q.edns {
        let ext = if badvers {
            (RCODE_BADVERS >> 4) as u32
        } else {
            0
        };
        w.put(&[0]);
        w.u16(TYPE_OPT);
        w.u16(OUR_UDP_SIZE);
        let do_bit = if e.dnssec_ok { 0x8000 } else { 0 };
        w.u32(ext << 24 | do_bit);
        let rdlen_at = w.len;
        w.u16(0);
        if let Some(c) = e.ecs.filter(|_| !badvers) {
            let alen = usize::from(c.source_prefix).div_ceil(8);
            w.u16(OPTION_ECS);
            w.u16((4 + alen) as u16);
            w.u16(c.family);
            w.put(&[c.source_prefix, o.scope.min(c.source_prefix)]);
            match c.addr {
                IpAddr::V4(a) => w.put(&a.octets()[..alen]),
                IpAddr::V6(a) => w.put(&a.octets()[..alen]),
            }
        }
        if pad {
            padding(w, limit);
        }
        let rdlen = w.len - rdlen_at - 2;
        w.set_u16(rdlen_at, rdlen as u16);
        w.ar += 1;
    }
    let mut flags: u16 = 0x8000 | (u16::from(q.opcode) << 11) | u16::from(o.rcode & 0xF);
    if q.rd {
        flags |= 0x0100;
    }
    if q.cd {
        flags |= 0x0010;
    }
    if o.aa {
        flags |= 0x0400;
    }
    if tc {
        flags |= 0x0200;
    }
    w.set_u16(0, q.id);
    w.set_u16(2, flags);
    w.set_u16(4, 1);
    w.set_u16(6, w.an);
    w.set_u16(8, w.ns);
    w.set_u16(10, w.ar);
    w.len
}

/// Appends a Padding option that makes the message a multiple of [`PAD_BLOCK`] octets (at
/// most `limit`; none when even an empty option would not fit). The OPT record's RDLENGTH is
/// the caller's.
fn padding(w: &mut Writer<'_>, limit: usize) {
    let unpadded = w.len + 4;
    let padded = unpadded.next_multiple_of(PAD_BLOCK).min(limit);
    if padded >= unpadded {
        w.u16(OPTION_PADDING);
        w.u16((padded - unpadded) as u16);
        w.put(&[0; PAD_BLOCK][..padded - unpadded]);
    }
}

/// Resolves the query name through referrals, CNAMEs and wildcards into `w`.
fn resolve<G: GslbAnswerer>(
    model: &Model,
    gslb: &G,
    q: &Query,
    peer: &Peer,
    w: &mut Writer<'_>,
    zone_out: &mut Option<u32>,
) -> Decided {
    let mut cur = Cursor::of_query(q);
    let mut aa = false;
    let mut wild = [0u8; 258];
    for hop in 0..MAX_CNAME_CHAIN {
        // Longest-match zone: the query name itself first, then each parent.
        let Some((zone, zl)) = (0..=cur.nlabels).find_map(|i| {
            model.zone_at(cur.suffix(i)).map(|z| {
                if hop == 0 {
                    *zone_out = Some(z);
                }
                (&model.zones[z as usize], i)
            })
        }) else {
            // Outside every zone: REFUSED for the query itself; after a CNAME the chain
            // simply ends at our border.
            let rcode = if hop == 0 {
                RCODE_REFUSED
            } else {
                RCODE_NOERROR
            };
            return Decided {
                rcode,
                aa,
                scope: 0,
            };
        };
        let apex_ptr = cur.ptr(zl);
        // A zone cut above the name (or at it) makes this a referral, not an answer.
        if zone.has_cuts {
            for i in (0..zl).rev() {
                if let Some(n) = zone.node(cur.suffix(i))
                    && n.cut
                    && !(i == 0 && q.qtype == TYPE_DS && hop == 0)
                {
                    return referral(n, cur.ptr(i), w, aa);
                }
            }
        }
        aa = true;
        let (node, owner) = match zone.node(cur.name) {
            Some(n) => (n, cur.ptr(0)),
            None => {
                // RFC 4592: the wildcard at the closest encloser answers for a name that does not
                // exist; a name that exists (even empty) is never covered.
                let ce = (1..=zl)
                    .find(|&i| zone.node(cur.suffix(i)).is_some())
                    .unwrap_or(zl);
                let encloser = cur.suffix(ce);
                wild[0] = 1;
                wild[1] = b'*';
                wild[2..2 + encloser.len()].copy_from_slice(encloser);
                match zone.node(&wild[..2 + encloser.len()]) {
                    Some(n) => (n, cur.ptr(0)),
                    None => {
                        negative(zone, apex_ptr, w);
                        return Decided {
                            rcode: RCODE_NXDOMAIN,
                            aa,
                            scope: 0,
                        };
                    }
                }
            }
        };
        if let Some(target) = &node.cname
            && q.qtype != TYPE_CNAME
            && let Some(rr) = node.rrset(TYPE_CNAME)
        {
            // Answer the CNAME, then continue with its target, whose owner pointer is the
            // RDATA we just wrote (when it is within pointer range).
            let rdata_at = w.len + 12;
            w.an += w.rrset(owner, rr);
            if rdata_at > 0x3FFF {
                return Decided {
                    rcode: RCODE_NOERROR,
                    aa,
                    scope: 0,
                };
            }
            cur = Cursor::of_wire(target, rdata_at);
            continue;
        }
        return answer_node(zone, node, gslb, q, peer, w, owner, apex_ptr);
    }
    // A CNAME loop or an overly long chain: what we have written is the answer.
    Decided {
        rcode: RCODE_NOERROR,
        aa,
        scope: 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn answer_node<G: GslbAnswerer>(
    zone: &Zone,
    node: &Node,
    gslb: &G,
    q: &Query,
    peer: &Peer,
    w: &mut Writer<'_>,
    owner: u16,
    apex_ptr: u16,
) -> Decided {
    let ok = |scope| Decided {
        rcode: RCODE_NOERROR,
        aa: true,
        scope,
    };
    if q.qtype == TYPE_ANY {
        if node.is_empty() {
            negative(zone, apex_ptr, w);
        } else {
            // RFC 8482: a small synthesized HINFO instead of the whole node.
            w.record(
                owner,
                TYPE_HINFO,
                zone.soa.ttl.min(3600),
                b"\x07RFC8482\x00",
            );
            w.an += 1;
        }
        return ok(0);
    }
    if let Some(id) = node.gslb
        && (q.qtype == TYPE_A || q.qtype == TYPE_AAAA)
    {
        return match gslb.answer(id, q.qtype, q, peer, w, owner) {
            GslbOutcome::Answered { scope } => ok(scope),
            GslbOutcome::NoData { scope } => {
                negative(zone, apex_ptr, w);
                ok(scope)
            }
            GslbOutcome::ServFail { scope } => Decided {
                rcode: RCODE_SERVFAIL,
                aa: false,
                scope,
            },
        };
    }
    match node.rrset(q.qtype) {
        Some(rr) => {
            w.an += w.rrset(owner, rr);
            w.additional(&rr.additional, rr.additional_count);
        }
        None => negative(zone, apex_ptr, w),
    }
    ok(0)
}

/// NODATA/NXDOMAIN authority: the SOA with the negative TTL.
fn negative(zone: &Zone, apex_ptr: u16, w: &mut Writer<'_>) {
    w.ns += w.rrset(apex_ptr, &zone.soa_negative);
}

/// Referral to a child zone: NS in authority, glue in additional, no AA.
fn referral(cut: &Node, cut_ptr: u16, w: &mut Writer<'_>, aa: bool) -> Decided {
    if let Some(ns) = cut.rrset(TYPE_NS) {
        w.ns += w.rrset(cut_ptr, ns);
        w.additional(&ns.additional, ns.additional_count);
    }
    Decided {
        rcode: RCODE_NOERROR,
        aa,
        scope: 0,
    }
}

/// The response to a packet that could not be parsed into a query; with `pad` (an encrypted
/// transport and a padded query) its OPT record carries a Padding option.
pub(crate) fn reject(
    req: &[u8],
    q: &Query,
    rcode: u8,
    with_question: bool,
    pad: bool,
    out: &mut [u8],
) -> usize {
    let mut w = Writer::new(out);
    w.put(&[0; HEADER_LEN]);
    let mut flags: u16 = 0x8000 | (u16::from(q.opcode) << 11) | u16::from(rcode);
    if q.rd {
        flags |= 0x0100;
    }
    let qd = if with_question && q.question_end > HEADER_LEN && q.question_end <= req.len() {
        w.put(&req[HEADER_LEN..q.question_end]);
        1
    } else {
        0
    };
    if with_question && q.edns.is_some() {
        w.put(&[0]);
        w.u16(TYPE_OPT);
        w.u16(OUR_UDP_SIZE);
        w.u32(0);
        let rdlen_at = w.len;
        w.u16(0);
        if pad {
            padding(&mut w, usize::from(u16::MAX));
            let rdlen = w.len - rdlen_at - 2;
            w.set_u16(rdlen_at, rdlen as u16);
        }
        w.ar = 1;
    }
    w.set_u16(0, q.id);
    w.set_u16(2, flags);
    w.set_u16(4, qd);
    w.set_u16(10, w.ar);
    w.len
}

/// Parses and answers one packet; `None` means drop it silently.
pub fn handle<G: GslbAnswerer>(
    model: &Model,
    gslb: &G,
    req: &[u8],
    peer: &Peer,
    q: &mut Query,
    out: &mut [u8],
) -> Option<Answered> {
    match parse(req, q) {
        Ok(()) => Some(respond(model, gslb, q, req, peer, out)),
        Err(Reject::Drop) => None,
        Err(Reject::Rcode {
            rcode,
            with_question,
        }) => Some(Answered {
            len: reject(
                req,
                q,
                rcode,
                with_question,
                peer.transport.is_encrypted() && q.edns.is_some_and(|e| e.padding),
                out,
            ),
            zone: None,
            scope: 0,
        }),
    }
}
