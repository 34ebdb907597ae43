//! Building the response to one parsed query: zone lookup, referral, CNAME chase, wildcard,
//! negative answers, EDNS and truncation — all into a caller-provided buffer.
//!
//! Per query this does a handful of hash lookups on lower-cased wire names and copies
//! pre-encoded RRsets; owner names are compression pointers into the question (which keeps
//! the client's 0x20 case) or into the CNAME target just written.

use std::net::IpAddr;

use super::cookie::CookieSecrets;
use super::handler::Peer;
use super::signed::{self, Denial, Sec};
use super::wire::{HEADER_LEN, Query, Reject, Tsig, expand_name, parse};
use crate::abuse::CookieResult;
use crate::limits::{MAX_CNAME_CHAIN, OUR_UDP_SIZE};
use crate::model::{Model, Node, RRset, Zone};
use crate::rr::*;

/// What a GSLB name or an `ALIAS` contributes to an answer; implemented by the GSLB engine,
/// which writes every such record (one place for the answer shapes).
pub trait GslbAnswerer {
    /// Writes the answer of GSLB name `id` (owner = pointer `owner`) to `qtype` and returns
    /// what happened: A/AAAA records, or a CNAME to a hostname datacenter's target (then for
    /// any query type when the name may answer a CNAME, `GslbEntry::cname`).
    fn answer(
        &self,
        id: u32,
        qtype: u16,
        q: &Query,
        peer: &Peer,
        w: &mut Writer<'_>,
        owner: u16,
    ) -> GslbOutcome;

    /// Writes the A or AAAA records of an `ALIAS` to hostname `target`, with a TTL of at most
    /// `ttl`.
    fn alias(
        &self,
        _target: u32,
        _ttl: u32,
        _qtype: u16,
        _w: &mut Writer<'_>,
        _owner: u16,
    ) -> GslbOutcome {
        GslbOutcome::ServFail { scope: 0 }
    }
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
    /// A CNAME was written to hostname `target` (an index into `Model::hostnames`), its RDATA
    /// at `rdata_at` in the response: the answer goes on with the target, as after a static
    /// CNAME.
    Cname {
        /// ECS scope prefix length (the same as an address answer of the decision would have).
        scope: u8,
        /// The hostname.
        target: u32,
        /// Offset of the CNAME's RDATA (the target name) in the response.
        rdata_at: usize,
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
        self.records(owner, rr.wire, rr.count)
    }

    /// Writes `count` records given as `TYPE CLASS TTL RDLENGTH RDATA` each, with a
    /// compressed owner; returns how many.
    #[inline]
    pub(crate) fn records(&mut self, owner: u16, wire: &[u8], count: u16) -> u16 {
        if count == 1 {
            self.u16(owner);
            self.put(wire);
            return 1;
        }
        let mut at = 0;
        while at + 10 <= wire.len() {
            let rdlen = u16::from_be_bytes([wire[at + 8], wire[at + 9]]) as usize;
            self.u16(owner);
            self.put(&wire[at..at + 10 + rdlen]);
            at += 10 + rdlen;
        }
        count
    }

    /// Offsets (fixed part, RDATA, end) of each record written at `[from, len)`; owners are
    /// compression pointers or uncompressed names.
    fn walk(&self, from: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let b = &self.buf[..self.len.min(self.buf.len())];
        let mut at = from;
        std::iter::from_fn(move || {
            loop {
                let l = *b.get(at)?;
                if l & 0xC0 == 0xC0 {
                    at += 2;
                    break;
                }
                at += 1 + l as usize;
                if l == 0 {
                    break;
                }
            }
            let fixed = at;
            let rdlen = u16::from_be_bytes([*b.get(fixed + 8)?, *b.get(fixed + 9)?]) as usize;
            let end = fixed + 10 + rdlen;
            if end > b.len() {
                return None;
            }
            at = end;
            Some((fixed, fixed + 10, end))
        })
    }

    /// Type and TTL of the first record written at `from`.
    pub(crate) fn first_record(&self, from: usize) -> Option<(u16, u32)> {
        let (f, _, _) = self.walk(from).next()?;
        let b = &self.buf[f..f + 8];
        Some((
            u16::from_be_bytes([b[0], b[1]]),
            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ))
    }

    /// Sets the TTL of every record written at `[from, len)`.
    pub(crate) fn set_ttls(&mut self, from: usize, ttl: u32) {
        let mut fixed = [0usize; 64];
        let mut n = 0;
        for (f, _, _) in self.walk(from) {
            if n < fixed.len() {
                fixed[n] = f;
                n += 1;
            }
        }
        for &f in &fixed[..n] {
            self.buf[f + 4..f + 8].copy_from_slice(&ttl.to_be_bytes());
        }
    }

    /// The RDATA of every record written at `[from, len)`.
    pub(crate) fn rdatas(&self, from: usize) -> impl Iterator<Item = &[u8]> + '_ {
        self.walk(from).map(|(_, r, e)| &self.buf[r..e])
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
#[derive(Default)]
struct Decided {
    /// The full response code (extended codes above 15 go to the OPT record).
    rcode: u16,
    aa: bool,
    scope: u8,
    /// Answered from the wildcard whose closest encloser starts at this label of the query
    /// name.
    wildcard: Option<u8>,
    /// A referral at the cut starting at this label of the query name (0 after a CNAME).
    referral: Option<u8>,
}

/// What answering one node of a chain led to.
enum Step<'m> {
    /// The answer is complete.
    Done(Decided),
    /// A GSLB CNAME was written: go on with `target` (lower-cased wire name), whose name in
    /// the response is at `at`.
    Follow {
        target: &'m [u8],
        at: usize,
        scope: u8,
    },
}

impl Decided {
    fn rcode(rcode: u8, aa: bool, scope: u8) -> Decided {
        Decided {
            rcode: u16::from(rcode),
            aa,
            scope,
            ..Decided::default()
        }
    }
}

/// What kind of response was written, for response rate limiting (`dns::rrl` keys its
/// buckets on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Records for the query name, or a CNAME chain from it.
    Answer,
    /// Records synthesised from the wildcard whose closest encloser starts at label
    /// `encloser` of the query name.
    Wildcard {
        /// Label index into the query name.
        encloser: u8,
    },
    /// NXDOMAIN or NODATA.
    Negative,
    /// A referral at the cut starting at label `cut` of the query name.
    Referral {
        /// Label index into the query name.
        cut: u8,
    },
    /// Any other response code.
    Error,
}

/// The COOKIE option a response carries: the client's cookie and our fresh server cookie.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutCookie {
    client: [u8; 8],
    server: [u8; 16],
}

/// Bytes of the COOKIE option in a response.
const COOKIE_OPT_LEN: usize = 4 + 8 + 16;

/// A response written into the caller's buffer, with what metrics and rate limiting want
/// to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// Length of the response in the output buffer.
    pub len: usize,
    /// The zone (index into `Model::zones`) that answered the query name, if any.
    pub(crate) zone: Option<u32>,
    /// ECS scope prefix length sent back (0 when not client-specific).
    pub(crate) scope: u8,
    /// The full response code (BADVERS and BADCOOKIE included).
    pub(crate) rcode: u16,
    /// What kind of response it is.
    pub(crate) kind: Kind,
    /// Where the OPT record starts in the output (`len` when there is none): a truncated copy
    /// of the response keeps the header, the question and this record.
    pub(crate) opt_at: usize,
    /// What the query's COOKIE option showed, when cookies are on and it had one.
    pub(crate) cookie: Option<CookieResult>,
}

/// Answers `q` (already parsed from `req`) into `out`. The size limit is the transport's
/// (the client's UDP payload within 512..=1232, or 65535 over TCP).
#[allow(clippy::too_many_arguments)]
fn respond<G: GslbAnswerer>(
    model: &Model,
    gslb: &G,
    q: &Query,
    req: &[u8],
    peer: &Peer,
    out: &mut [u8],
    cookie: Option<OutCookie>,
    bad_cookie: bool,
) -> Answered {
    let mut zone = None;
    let mut w = Writer::new(out);
    w.put(&[0; HEADER_LEN]);
    w.put(&req[HEADER_LEN..q.question_end]);
    let limit = udp_limit(q, peer);

    let outcome = if q.edns.is_some_and(|e| e.version > 0) {
        Decided {
            rcode: RCODE_BADVERS,
            ..Decided::default()
        }
    } else if bad_cookie {
        // RFC 7873 5.2.4: no answer, the fresh cookie, and the client retries with it.
        Decided {
            rcode: RCODE_BADCOOKIE,
            ..Decided::default()
        }
    } else if q.qclass != CLASS_IN {
        // CH TXT version.bind and friends: we do not disclose, and other classes we do not serve.
        Decided::rcode(RCODE_REFUSED, false, 0)
    } else if q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR {
        Decided::rcode(RCODE_REFUSED, false, 0)
    } else if q.qtype == TYPE_OPT || q.qtype == TYPE_NXNAME {
        Decided::rcode(RCODE_FORMERR, false, 0)
    } else {
        let mut sec = Sec::new(q);
        let o = resolve(model, gslb, q, peer, &mut w, &mut zone, &mut sec);
        if sec.failed {
            // A signature we cannot serve: say so rather than answer unsigned or expired.
            w.len = q.question_end;
            w.an = 0;
            w.ns = 0;
            w.ar = 0;
            w.additional_start = None;
            w.overflow = false;
            Decided::rcode(RCODE_SERVFAIL, false, o.scope)
        } else {
            o
        }
    };
    let (scope, rcode) = (outcome.scope, outcome.rcode);
    let kind = match rcode {
        0 if outcome.referral.is_some() => Kind::Referral {
            cut: outcome.referral.unwrap_or(0),
        },
        0 if w.an == 0 => Kind::Negative,
        0 => match outcome.wildcard {
            Some(encloser) => Kind::Wildcard { encloser },
            None => Kind::Answer,
        },
        3 => Kind::Negative,
        _ => Kind::Error,
    };
    // RFC 7830: pad the response when the query was padded, on encrypted transports only
    // (padding in the clear only costs bytes).
    let pad = peer.transport.is_encrypted() && q.edns.is_some_and(|e| e.padding);
    let (len, opt_at) = finish(q, &mut w, outcome, limit, cookie, pad);
    Answered {
        len,
        zone,
        scope,
        rcode,
        kind,
        opt_at,
        cookie: None,
    }
}

/// Bytes the OPT record will take in the response.
fn opt_len(q: &Query, cookie: bool) -> usize {
    match q.edns {
        None => 0,
        Some(e) => {
            11 + e
                .ecs
                .map_or(0, |c| 8 + usize::from(c.source_prefix).div_ceil(8))
                + if cookie { COOKIE_OPT_LEN } else { 0 }
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

/// Completes the response: truncation to `limit`, the OPT record (EDNS echo, extended rcode,
/// ECS scope, cookie, and with `pad` a Padding option that makes the message a multiple of
/// [`PAD_BLOCK`] octets, as far as `limit` allows) and the header. Returns the length and
/// where the OPT record starts.
fn finish(
    q: &Query,
    w: &mut Writer<'_>,
    o: Decided,
    limit: usize,
    cookie: Option<OutCookie>,
    pad: bool,
) -> (usize, usize) {
    let opt = opt_len(q, cookie.is_some());
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
    let opt_at = w.len;
    if let Some(e) = q.edns {
        let ext = u32::from(o.rcode >> 4);
        w.put(&[0]);
        w.u16(TYPE_OPT);
        w.u16(OUR_UDP_SIZE);
        let do_bit = if e.dnssec_ok { 0x8000 } else { 0 };
        // RFC 9824 4.1: we implement compact answers with NXDOMAIN restored; say so.
        let co_bit = if e.dnssec_ok && e.compact_ok {
            0x4000
        } else {
            0
        };
        w.u32(ext << 24 | do_bit | co_bit);
        let ecs = e.ecs.filter(|_| o.rcode < 16);
        let rdlen_at = w.len;
        w.u16(0);
        if let Some(c) = ecs {
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
        if let Some(c) = cookie {
            w.u16(OPTION_COOKIE);
            w.u16(24);
            w.put(&c.client);
            w.put(&c.server);
        }
        if pad {
            padding(w, limit);
        }
        let rdlen = w.len - rdlen_at - 2;
        w.set_u16(rdlen_at, rdlen as u16);
        w.ar += 1;
    }
    let mut flags: u16 = 0x8000 | (u16::from(q.opcode) << 11) | (o.rcode & 0xF);
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
    (w.len, opt_at)
}

/// Rewrites the response `a` in `out` as a truncated one (TC=1, no records but the OPT
/// record, which keeps the cookie): what rate limiting sends instead of dropping ("slip"), so
/// a real client behind a limited prefix retries over TCP. Returns the new length.
pub(crate) fn truncate(q: &Query, a: &Answered, out: &mut [u8]) -> usize {
    let qend = q.question_end.min(a.opt_at).max(HEADER_LEN).min(out.len());
    let opt = a.opt_at.min(a.len)..a.len.min(out.len());
    let opt_len = opt.len();
    out.copy_within(opt, qend);
    let flags = u16::from_be_bytes([out[2], out[3]]) | 0x0200;
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[6..10].fill(0);
    let kept = records_in(&out[qend..qend + opt_len]);
    out[10..12].copy_from_slice(&kept.to_be_bytes());
    qend + opt_len
}

/// How many whole records `b` holds (the OPT record, and the TSIG record of a BADKEY answer
/// after it: the records a truncated response keeps, written by us, names uncompressed).
fn records_in(mut b: &[u8]) -> u16 {
    let mut n = 0;
    loop {
        let mut at = 0;
        while let Some(&l) = b.get(at) {
            at += if l & 0xC0 == 0xC0 {
                2
            } else {
                1 + usize::from(l)
            };
            if l == 0 || l & 0xC0 == 0xC0 {
                break;
            }
        }
        let Some(rdlen) = b.get(at + 8..at + 10) else {
            return n;
        };
        let end = at + 10 + usize::from(u16::from_be_bytes([rdlen[0], rdlen[1]]));
        if end > b.len() {
            return n;
        }
        n += 1;
        b = &b[end..];
    }
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
    sec: &mut Sec,
) -> Decided {
    let mut cur = Cursor::of_query(q);
    let mut aa = false;
    let mut wild = [0u8; 258];
    // The widest ECS scope of the chain: a GSLB CNAME's scope holds for what follows it.
    let mut scope = 0u8;
    for hop in 0..MAX_CNAME_CHAIN {
        // DS is the parent's half of a delegation: asked at a child apex we also serve, the
        // parent answers when it delegates there.
        let ds_at_cut = q.qtype == TYPE_DS && hop == 0;
        // Longest-match zone: the query name itself first, then each parent.
        let Some((zone, zl)) = (0..=cur.nlabels).find_map(|i| {
            let z = model.zone_at(cur.suffix(i))?;
            if i == 0
                && ds_at_cut
                && (1..=cur.nlabels).any(|j| {
                    model
                        .zone_at_apex(cur.suffix(j))
                        .and_then(|p| p.node(cur.name))
                        .is_some_and(|n| n.cut)
                })
            {
                return None;
            }
            if hop == 0 {
                *zone_out = Some(z);
            }
            Some((&model.zones[z as usize], i))
        }) else {
            // Outside every zone: REFUSED for the query itself; after a CNAME the chain
            // simply ends at our border.
            let rcode = if hop == 0 {
                RCODE_REFUSED
            } else {
                RCODE_NOERROR
            };
            return Decided::rcode(rcode, aa, scope);
        };
        let apex_ptr = cur.ptr(zl);
        let signer = sec.signer(zone);
        // A zone cut above the name (or at it) makes this a referral, not an answer.
        if zone.has_cuts {
            for i in (0..zl).rev() {
                if let Some(n) = zone.node(cur.suffix(i))
                    && n.cut
                    && !(i == 0 && ds_at_cut)
                {
                    let mut d = referral(zone, &n, cur.suffix(i), cur.ptr(i), w, aa, sec);
                    d.scope = d.scope.max(scope);
                    d.referral = Some(if hop == 0 { i as u8 } else { 0 });
                    return d;
                }
            }
        }
        aa = true;
        let mut from_wildcard = None;
        let (node, owner, wildcard) = match zone.node(cur.name) {
            Some(n) => (n, cur.ptr(0), false),
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
                    Some(n) => {
                        if hop == 0 {
                            from_wildcard = Some(ce as u8);
                        }
                        (n, cur.ptr(0), true)
                    }
                    None => {
                        let nx = deny(zone, apex_ptr, w, sec, cur.name, cur.ptr(0), Denial::NxName);
                        let rcode = if nx { RCODE_NXDOMAIN } else { RCODE_NOERROR };
                        return Decided::rcode(rcode, aa, scope);
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
            w.an += w.rrset(owner, &rr);
            if let Some(s) = signer {
                w.an += if wildcard {
                    signed::wildcard_rrset(w, sec, s, &rr, cur.name, owner)
                } else {
                    signed::static_sigs(w, sec, s, &rr, owner)
                };
            }
            if rdata_at > 0x3FFF {
                return Decided::rcode(RCODE_NOERROR, aa, scope);
            }
            cur = Cursor::of_wire(target, rdata_at);
            continue;
        }
        let at = At {
            node: &node,
            name: cur.name,
            owner,
            wildcard,
            apex_ptr,
        };
        match answer_node(model, zone, &at, gslb, q, peer, w, sec) {
            Step::Done(mut d) => {
                d.scope = d.scope.max(scope);
                d.wildcard = from_wildcard;
                return d;
            }
            Step::Follow {
                target,
                at,
                scope: s,
            } => {
                scope = scope.max(s);
                if at > 0x3FFF || q.qtype == TYPE_CNAME {
                    return Decided::rcode(RCODE_NOERROR, aa, scope);
                }
                cur = Cursor::of_wire(target, at);
            }
        }
    }
    // A CNAME loop or an overly long chain: what we have written is the answer.
    Decided::rcode(RCODE_NOERROR, aa, scope)
}

/// Where an answer is: the node, its lower-cased wire name and pointer, and how it was found.
struct At<'a> {
    node: &'a Node<'a>,
    name: &'a [u8],
    owner: u16,
    /// Synthesized from a wildcard (signed at the query name, online).
    wildcard: bool,
    apex_ptr: u16,
}

#[allow(clippy::too_many_arguments)]
fn answer_node<'m, G: GslbAnswerer>(
    model: &'m Model,
    zone: &Zone,
    at: &At<'_>,
    gslb: &G,
    q: &Query,
    peer: &Peer,
    w: &mut Writer<'_>,
    sec: &mut Sec,
) -> Step<'m> {
    let ok = |scope| Step::Done(Decided::rcode(RCODE_NOERROR, true, scope));
    let address = q.qtype == TYPE_A || q.qtype == TYPE_AAAA;
    let (node, owner) = (at.node, at.owner);
    let signer = sec.signer(zone);
    let nodata = |w: &mut Writer<'_>, sec: &mut Sec, without: Option<u16>| {
        let d = Denial::NoData {
            node,
            wild: at.wildcard,
            without,
        };
        deny(zone, at.apex_ptr, w, sec, at.name, owner, d);
    };
    if q.qtype == TYPE_ANY {
        if node.is_empty() {
            nodata(w, sec, None);
        } else {
            // RFC 8482: a small synthesized HINFO instead of the whole node.
            let ttl = zone.soa.ttl.min(3600);
            const HINFO: &[u8] = b"\x07RFC8482\x00";
            w.record(owner, TYPE_HINFO, ttl, HINFO);
            w.an += 1;
            if let Some(s) = signer {
                w.an += signed::synthesized(w, sec, s, at.name, owner, TYPE_HINFO, ttl, HINFO);
            }
        }
        return ok(0);
    }
    // A name that may answer a CNAME decides every type (RFC 1034: a CNAME owner holds no
    // other data); otherwise GSLB names and ALIASes answer A and AAAA.
    let entry = node.gslb.and_then(|id| model.gslb.get(id as usize));
    let start = w.len;
    let dynamic = match (node.gslb, node.alias) {
        (Some(id), _) if address || entry.is_some_and(|e| e.cname) => Some((
            gslb.answer(id, q.qtype, q, peer, w, owner),
            entry.map(|e| e.def.ttl),
        )),
        (None, Some(a)) if address => Some((
            gslb.alias(a.target.0, a.ttl, q.qtype, w, owner),
            Some(a.ttl),
        )),
        _ => None,
    };
    if let Some((outcome, base)) = dynamic {
        // What was written is one RRset (addresses, or the CNAME): signed online, its TTL on
        // the ladder of the name's (or the ALIAS's) TTL.
        let sign = |w: &mut Writer<'_>, sec: &mut Sec| {
            if let Some(s) = signer {
                w.an += signed::sign_written(w, sec, s, start, at.name, owner, base);
            }
        };
        return match outcome {
            GslbOutcome::Answered { scope } => {
                sign(w, sec);
                ok(scope)
            }
            GslbOutcome::NoData { scope } => {
                nodata(w, sec, Some(q.qtype));
                ok(scope)
            }
            GslbOutcome::ServFail { scope } => {
                Step::Done(Decided::rcode(RCODE_SERVFAIL, false, scope))
            }
            GslbOutcome::Cname {
                scope,
                target,
                rdata_at,
            } => {
                sign(w, sec);
                match model.hostnames.get(target as usize) {
                    Some(h) => Step::Follow {
                        target: &h.key,
                        at: rdata_at,
                        scope,
                    },
                    None => ok(scope),
                }
            }
        };
    }
    if q.qtype == TYPE_NSEC
        && let Some(s) = signer
    {
        // The NSEC of the name itself, as the answer.
        let d = Denial::NoData {
            node,
            wild: at.wildcard,
            without: None,
        };
        w.an += signed::nsec(w, sec, s, zone.soa_negative.ttl, at.name, owner, d);
        return ok(0);
    }
    match node.rrset(q.qtype) {
        Some(rr) => {
            w.an += w.rrset(owner, &rr);
            match signer {
                Some(s) if at.wildcard => {
                    w.an += signed::wildcard_rrset(w, sec, s, &rr, at.name, owner);
                }
                Some(s) => {
                    // Signed answers stay minimal: no additional data (its RRSIGs would
                    // have to come along, RFC 4035 3.1.1).
                    w.an += signed::static_sigs(w, sec, s, &rr, owner);
                }
                None => w.additional(rr.additional, rr.additional_count),
            }
        }
        None => nodata(w, sec, None),
    }
    ok(0)
}

/// Negative answer authority: the SOA with the negative TTL, and when signed its RRSIGs and
/// the compact-denial NSEC. Returns whether the rcode is NXDOMAIN (a signed NXDOMAIN is a
/// NODATA unless the resolver set Compact Answers OK, RFC 9824 3.1 and 4.1).
fn deny(
    zone: &Zone,
    apex_ptr: u16,
    w: &mut Writer<'_>,
    sec: &mut Sec,
    name: &[u8],
    owner: u16,
    denial: Denial<'_>,
) -> bool {
    let nx = matches!(denial, Denial::NxName);
    w.ns += w.rrset(apex_ptr, &zone.soa_negative.view());
    let Some(s) = sec.signer(zone) else {
        return nx;
    };
    w.ns += signed::static_sigs(w, sec, s, &zone.soa_negative.view(), apex_ptr);
    w.ns += signed::nsec(w, sec, s, zone.soa_negative.ttl, name, owner, denial);
    nx && sec.co
}

/// Referral to a child zone: NS in authority, glue in additional, no AA. Signed: the DS
/// RRset and its RRSIGs, or the NSEC proving there is none (an insecure delegation); NS and
/// glue are the child's and stay unsigned.
fn referral(
    zone: &Zone,
    cut: &Node,
    cut_name: &[u8],
    cut_ptr: u16,
    w: &mut Writer<'_>,
    aa: bool,
    sec: &mut Sec,
) -> Decided {
    if let Some(ns) = cut.rrset(TYPE_NS) {
        w.ns += w.rrset(cut_ptr, &ns);
    }
    if let Some(s) = sec.signer(zone) {
        match cut.rrset(TYPE_DS) {
            Some(ds) => {
                w.ns += w.rrset(cut_ptr, &ds);
                w.ns += signed::static_sigs(w, sec, s, &ds, cut_ptr);
            }
            None => {
                let d = Denial::NoData {
                    node: cut,
                    wild: false,
                    without: None,
                };
                w.ns += signed::nsec(w, sec, s, zone.soa_negative.ttl, cut_name, cut_ptr, d);
            }
        }
    }
    if let Some(ns) = cut.rrset(TYPE_NS) {
        w.additional(ns.additional, ns.additional_count);
    }
    Decided::rcode(RCODE_NOERROR, aa, 0)
}

/// The response to a packet that could not be parsed into a query, within `limit` bytes; with
/// `pad` (an encrypted transport and a padded query) its OPT record carries a Padding option.
/// Returns the length and where the OPT record starts (the additional records, which follow
/// it). A signed request's NOTAUTH carries an unsigned TSIG record with error BADKEY (RFC 8945
/// 5.2.1, 5.3.2), after the OPT; when that would not fit, it is left out and TC set.
pub(crate) fn reject(
    req: &[u8],
    q: &Query,
    rcode: u8,
    with_question: bool,
    limit: usize,
    pad: bool,
    out: &mut [u8],
) -> (usize, usize) {
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
    let opt_at = w.len;
    if with_question && q.edns.is_some() {
        w.put(&[0]);
        w.u16(TYPE_OPT);
        w.u16(OUR_UDP_SIZE);
        w.u32(0);
        let rdlen_at = w.len;
        w.u16(0);
        if pad {
            padding(&mut w, limit);
            let rdlen = w.len - rdlen_at - 2;
            w.set_u16(rdlen_at, rdlen as u16);
        }
        w.ar = 1;
    }
    if let Some(t) = q.tsig.filter(|_| with_question) {
        let before = w.len;
        badkey(req, &t, &mut w);
        if w.overflow || w.len > limit {
            w.len = before;
            w.overflow = false;
            flags |= 0x0200;
        } else {
            w.ar += 1;
        }
    }
    w.set_u16(0, q.id);
    w.set_u16(2, flags);
    w.set_u16(4, qd);
    w.set_u16(10, w.ar);
    (w.len, opt_at)
}

/// The TSIG record of a BADKEY answer: the request's key name and algorithm, its Time Signed,
/// Fudge and Original ID, no MAC (an error about the key is never signed), error BADKEY.
fn badkey(req: &[u8], t: &Tsig, w: &mut Writer<'_>) {
    let mut name = [0u8; 255];
    // Both names were checked to expand when the request was parsed.
    let n = expand_name(req, t.owner_at, &mut name).unwrap_or(0);
    w.put(&name[..n]);
    w.u16(TYPE_TSIG);
    w.u16(CLASS_ANY);
    w.u32(0);
    let n = expand_name(req, t.rdata_at, &mut name).unwrap_or(0);
    w.u16((n + 16) as u16);
    w.put(&name[..n]);
    w.put(req.get(t.time_at..t.time_at + 8).unwrap_or(&[0; 8]));
    w.u16(0); // MAC size
    w.u16(t.original_id);
    w.u16(TSIG_BADKEY);
    w.u16(0); // other len
}

/// The answer to a query for a server cookie (no question, RFC 7873 5.4): the header, no
/// question or records, and the OPT record with the client cookie and a fresh server cookie.
fn cookie_reply(q: &Query, rcode: u16, cookie: OutCookie, out: &mut [u8]) -> (usize, usize) {
    let mut w = Writer::new(out);
    w.put(&[0; HEADER_LEN]);
    let opt_at = w.len;
    let do_bit = if q.edns.is_some_and(|e| e.dnssec_ok) {
        0x8000
    } else {
        0
    };
    w.put(&[0]);
    w.u16(TYPE_OPT);
    w.u16(OUR_UDP_SIZE);
    w.u32(u32::from(rcode >> 4) << 24 | do_bit);
    w.u16(COOKIE_OPT_LEN as u16);
    w.u16(OPTION_COOKIE);
    w.u16(24);
    w.put(&cookie.client);
    w.put(&cookie.server);
    let mut flags: u16 = 0x8000 | (u16::from(q.opcode) << 11) | (rcode & 0xF);
    if q.rd {
        flags |= 0x0100;
    }
    w.set_u16(0, q.id);
    w.set_u16(2, flags);
    w.set_u16(10, 1);
    (w.len, opt_at)
}

/// Parses and answers one packet; `None` means drop it silently. Cookies are not looked at
/// (as by a server that does not implement them): see `handle_with`.
pub fn handle<G: GslbAnswerer>(
    model: &Model,
    gslb: &G,
    req: &[u8],
    peer: &Peer,
    q: &mut Query,
    out: &mut [u8],
) -> Option<Answered> {
    handle_with(model, gslb, None, 0, req, peer, q, out)
}

/// Parses and answers one packet with DNS cookies on (`cookies` = the server secrets, `now`
/// = unix seconds); `None` means drop it silently.
///
/// RFC 7873 5.2: a client cookie alone, or with a valid server cookie, is answered normally
/// with the client cookie and a fresh server cookie; an invalid server cookie gets BADCOOKIE
/// (with the fresh cookie) over UDP and a normal answer over TCP, where the address is proven
/// anyway. `Answered::cookie` says which case it was (a valid cookie exempts the client from
/// rate limiting).
#[allow(clippy::too_many_arguments)]
pub(crate) fn handle_with<G: GslbAnswerer>(
    model: &Model,
    gslb: &G,
    cookies: Option<&CookieSecrets>,
    now: u32,
    req: &[u8],
    peer: &Peer,
    q: &mut Query,
    out: &mut [u8],
) -> Option<Answered> {
    match parse(req, q) {
        Ok(()) => {
            let (cookie, result) = match (cookies, q.edns.and_then(|e| e.cookie)) {
                (Some(secrets), Some(c)) => {
                    let result = secrets.check(&c, peer.addr, now);
                    let out = OutCookie {
                        client: c.client,
                        server: secrets.make(&c.client, peer.addr, now),
                    };
                    (Some(out), Some(result))
                }
                _ => (None, None),
            };
            let bad = result == Some(CookieResult::Invalid) && !peer.transport.is_stream();
            let mut a = respond(model, gslb, q, req, peer, out, cookie, bad);
            a.cookie = result;
            Some(a)
        }
        Err(Reject::Drop) => None,
        Err(Reject::CookieOnly) => {
            let c = q.edns.and_then(|e| e.cookie);
            match (cookies, c) {
                (Some(secrets), Some(c)) => {
                    let result = secrets.check(&c, peer.addr, now);
                    let fresh = OutCookie {
                        client: c.client,
                        server: secrets.make(&c.client, peer.addr, now),
                    };
                    let rcode = if result == CookieResult::Invalid && !peer.transport.is_stream() {
                        RCODE_BADCOOKIE
                    } else {
                        u16::from(RCODE_NOERROR)
                    };
                    let (len, opt_at) = cookie_reply(q, rcode, fresh, out);
                    Some(Answered {
                        len,
                        zone: None,
                        scope: 0,
                        rcode,
                        kind: if rcode == 0 {
                            Kind::Answer
                        } else {
                            Kind::Error
                        },
                        opt_at,
                        cookie: Some(result),
                    })
                }
                // Cookies off: as a server that does not know them (FORMERR, RFC 7873 5.4).
                _ => {
                    let (len, opt_at) =
                        reject(req, q, RCODE_FORMERR, false, udp_limit(q, peer), false, out);
                    Some(Answered {
                        len,
                        zone: None,
                        scope: 0,
                        rcode: u16::from(RCODE_FORMERR),
                        kind: Kind::Error,
                        opt_at,
                        cookie: None,
                    })
                }
            }
        }
        Err(Reject::Rcode {
            rcode,
            with_question,
        }) => {
            let pad = peer.transport.is_encrypted() && q.edns.is_some_and(|e| e.padding);
            let (len, opt_at) = reject(req, q, rcode, with_question, udp_limit(q, peer), pad, out);
            Some(Answered {
                len,
                zone: None,
                scope: 0,
                rcode: u16::from(rcode),
                kind: Kind::Error,
                opt_at,
                cookie: None,
            })
        }
    }
}
