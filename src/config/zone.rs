//! Reading one zone file: origin, default TTL, SOA and static records.
//!
//! Values are parsed from RFC 1035 presentation form with hickory-proto's parsers at load
//! time, so a typo is reported with its key path before the server ever sees it. Every type
//! also takes the RFC 3597 generic form (`\# <length> <hex>`), and a type gslbd has no name
//! for is written `TYPE<number>` with generic values. `ALIAS` is not a DNS type: it is read
//! into [`AliasSpec`] (the name answers A/AAAA with the target's current addresses).

use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{CNAME, HTTPS, MX, NAPTR, NS, NULL, PTR, SRV, SVCB, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{
    BinDecoder, BinEncodable, BinEncoder, NameEncoding, Restrict,
};

use crate::model::{Span, encode_record};
use crate::rr;
use crate::walk::{
    self, DeValue, Errors, SHOWN_CHARS, Table, index, join, one_line, shown, type_name,
};

/// The SOA of a zone, with defaults that pass common zone checks (RFC 1912 ranges).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SoaSpec {
    /// Primary nameserver, fully qualified.
    pub(crate) mname: Name,
    /// Responsible person's mailbox as a name (`hostmaster.example.com.`).
    pub(crate) rname: Name,
    /// Zone serial (default 1).
    pub(crate) serial: u32,
    /// Seconds between secondary refreshes (default 14400).
    pub(crate) refresh: u32,
    /// Seconds before a failed refresh is retried (default 3600).
    pub(crate) retry: u32,
    /// Seconds until secondaries stop answering without a refresh (default 1209600).
    pub(crate) expire: u32,
    /// Negative-caching TTL cap, seconds (default 300; RFC 2308).
    pub(crate) minimum: u32,
    /// TTL of the SOA record itself (default: the zone's `ttl`).
    pub(crate) ttl: u32,
}

/// One RRset as written under `records.<name>.<TYPE>`, in a [`RecordTable`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct SetSpec {
    /// Lower-cased wire form of the owner, in `RecordTable::names`.
    pub(crate) owner: Span,
    /// The owner's key as written, in `RecordTable::keys`, for messages; `WRITTEN_AS_OWNER`
    /// when it is the owner's own relative form (`www`, `@`: most keys, kept for nothing).
    pub(crate) key: Span,
    /// The records, in `RecordTable::wire`.
    pub(crate) wire: Span,
    /// The record type.
    pub(crate) rtype: u16,
    /// Number of records (distinct values; each carries the TTL: the set's own `ttl`, else
    /// the zone's `ttl`, else 3600).
    pub(crate) count: u16,
}

/// Every `records.<name>.<TYPE>` RRset of a zone file, read and already encoded as the model
/// keeps them: owner keys and records in flat arenas, one small fixed entry per RRset. A zone
/// of a million records is a few allocations here, not millions (issue 9: the specs of a big
/// zone used to take more memory than the model).
#[derive(Clone, Debug, Default)]
pub(crate) struct RecordTable {
    /// Owner keys (lower-cased wire names).
    pub(crate) names: Vec<u8>,
    /// The records of every set, TYPE CLASS TTL RDLENGTH RDATA each (names in RDATA
    /// uncompressed, as written).
    pub(crate) wire: Vec<u8>,
    /// The owner keys as written, where they are not the owner's own relative form.
    pub(crate) keys: Vec<u8>,
    /// The RRsets, in file order.
    pub(crate) sets: Vec<SetSpec>,
}

impl RecordTable {
    /// Reserves room for the rest of a file read in parts, from what `read` bytes of its
    /// `total` bytes of records text made, with an eighth more: the arenas then do not grow
    /// by doubling, whose copies a big zone left behind as freed but resident memory (and
    /// pages reserved but never written cost nothing).
    pub(crate) fn reserve_like(&mut self, read: usize, total: usize) {
        if read == 0 || total <= read {
            return;
        }
        let scale = (total - read) as f64 / read as f64 * 1.125;
        let more = |len: usize| (len as f64 * scale) as usize;
        // An estimate: if the system will not give that much, the arenas grow as they go.
        let _ = self.names.try_reserve_exact(more(self.names.len()));
        let _ = self.wire.try_reserve_exact(more(self.wire.len()));
        let _ = self.keys.try_reserve_exact(more(self.keys.len()));
        let _ = self.sets.try_reserve_exact(more(self.sets.len()));
    }
}

/// The key of a set whose owner was written as its own relative form (`www` for
/// `www.<origin>`, `@` for the origin): nothing is kept, the path is made from the owner.
const WRITTEN_AS_OWNER: Span = Span {
    at: u32::MAX,
    len: 0,
};

/// The labels of `owner` (a lower-cased wire name ending in the origin's `apex_len` bytes)
/// above the origin, first to last.
fn labels_above(owner: &[u8], apex_len: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = owner
        .get(..owner.len().saturating_sub(apex_len))
        .unwrap_or_default();
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let (label, after) = tail.split_at_checked(usize::from(len))?;
        rest = after;
        Some(label)
    })
}

/// Whether `key` is how `owner` reads relative to the origin ([`relative_form`]), compared
/// without making that text (this runs for every owner of a zone).
fn is_relative_form(key: &str, owner: &[u8], apex_len: usize) -> bool {
    let mut labels = labels_above(owner, apex_len).peekable();
    if labels.peek().is_none() {
        return key == "@";
    }
    let mut text = key.as_bytes();
    for (i, label) in labels.enumerate() {
        if i > 0 {
            let Some(rest) = text.strip_prefix(b".") else {
                return false;
            };
            text = rest;
        }
        let Some(rest) = text.strip_prefix(label) else {
            return false;
        };
        text = rest;
    }
    text.is_empty()
}

/// The key path of `s` as messages name it, `records.<key as written>.<TYPE>`, from the
/// `keys` and `names` arenas of its [`RecordTable`] and the length of the origin's wire form.
pub(crate) fn set_path(keys: &[u8], names: &[u8], apex_len: usize, s: &SetSpec) -> String {
    let key = if s.key == WRITTEN_AS_OWNER {
        relative_form(s.owner.of(names), apex_len)
    } else {
        String::from_utf8_lossy(s.key.of(keys)).into_owned()
    };
    let rtype = RecordType::from(s.rtype);
    format!("{}.{rtype}", join("records", &key))
}

/// `owner` relative to the origin: `@` for the origin itself, else its labels above the
/// origin joined by dots.
fn relative_form(owner: &[u8], apex_len: usize) -> String {
    let labels: Vec<&[u8]> = labels_above(owner, apex_len).collect();
    if labels.is_empty() {
        return "@".into();
    }
    String::from_utf8_lossy(&labels.join(&b'.')).into_owned()
}

/// The records (TYPE CLASS TTL RDLENGTH RDATA each) of an encoded set, one slice each.
pub(crate) fn records(mut wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = 10 + usize::from(u16::from_be_bytes([*wire.get(8)?, *wire.get(9)?]));
        let (r, rest) = wire.split_at_checked(len)?;
        wire = rest;
        Some(r)
    })
}

/// `records.<name>.ALIAS`: the name answers A and AAAA with the current addresses of
/// `target` (CNAME flattening, Route 53 alias), resolved in the background.
#[derive(Clone, Debug)]
pub(crate) struct AliasSpec {
    /// Fully qualified owner, case as written.
    pub(crate) owner: Name,
    /// Key path (`records."@".ALIAS`).
    pub(crate) path: String,
    /// The name whose addresses are answered.
    pub(crate) target: Name,
    /// The most a flattened answer's TTL may be (also capped by the target's remaining TTL).
    pub(crate) ttl: u32,
}

/// Everything one zone file says about DNS records (GSLB sections are read by `config::gslb`).
#[derive(Clone, Debug)]
pub(crate) struct ZoneSpec {
    /// The zone apex, fully qualified.
    pub(crate) origin: Name,
    /// The `[soa]` table with its defaults.
    pub(crate) soa: SoaSpec,
    /// Every `records.<name>.<TYPE>` RRset.
    pub(crate) records: RecordTable,
    /// `ALIAS` entries (not records: answered from resolved addresses).
    pub(crate) aliases: Vec<AliasSpec>,
    /// `[dnssec]`: the zone is signed.
    pub(crate) dnssec: Option<super::dnssec::DnssecSpec>,
}

/// TTL of records when neither the record nor the zone gives one.
pub(crate) const DEFAULT_TTL: u32 = 3600;

/// Reads the records kept elsewhere (the parts of a file read in parts): origin, zone TTL,
/// the records and ALIAS targets read so far, errors.
pub(crate) type MoreRecords<'a> =
    dyn FnMut(&Name, u32, &mut RecordTable, &mut Vec<AliasSpec>, &mut Errors) + 'a;

/// Reads origin, ttl, soa and records from the top table of a zone file.
///
/// `more` reads the records kept elsewhere (the parts of a file read in parts) with the
/// origin and the zone's TTL, after those of `top`.
pub(crate) fn read_zone(
    top: &mut Table<'_>,
    errs: &mut Errors,
    more: &mut MoreRecords<'_>,
) -> Option<ZoneSpec> {
    let origin = match top.required_str("origin", errs) {
        Some(s) => match parse_origin(s) {
            Ok(n) => Some(n),
            Err(e) => {
                errs.add("origin", e);
                None
            }
        },
        None => None,
    };
    let ttl = top.u32("ttl", errs).unwrap_or(DEFAULT_TTL);
    let origin_for_names = origin.clone().unwrap_or_else(Name::root);
    let soa = match top.table("soa", errs) {
        Some(t) => read_soa(t, &origin_for_names, ttl, errs),
        None => {
            if !errs.list.iter().any(|e| e.path == "soa") {
                errs.add("soa", "is required (a table with mname, rname, serial...)");
            }
            None
        }
    };
    let mut records = RecordTable::default();
    let mut aliases = Vec::new();
    if let Some(t) = top.table("records", errs) {
        read_records(t, &origin_for_names, ttl, &mut records, &mut aliases, errs);
    }
    more(&origin_for_names, ttl, &mut records, &mut aliases, errs);
    // Not shrunk: the build moves these arenas into the model, appends to them (the SOA,
    // CNAME targets) and shrinks them once, and reserved pages never written cost nothing.
    Some(ZoneSpec {
        dnssec: None,
        origin: origin?,
        soa: soa?,
        records,
        aliases,
    })
}

fn parse_origin(s: &str) -> Result<Name, String> {
    if !s.ends_with('.') {
        return Err(format!(
            "{} must be a fully qualified name ending in \".\"",
            shown(s)
        ));
    }
    Name::from_ascii(s).map_err(|e| format!("{} is not a valid domain name: {e}", shown(s)))
}

fn read_soa(mut t: Table<'_>, origin: &Name, zone_ttl: u32, errs: &mut Errors) -> Option<SoaSpec> {
    let name = |key: &str, t: &mut Table<'_>, errs: &mut Errors| -> Option<Name> {
        let s = t.required_str(key, errs)?;
        match parse_name(s, origin) {
            Ok(n) => Some(n),
            Err(e) => {
                errs.add(&t.key_path(key), e);
                None
            }
        }
    };
    let mname = name("mname", &mut t, errs);
    let rname = name("rname", &mut t, errs);
    let serial = t.u32("serial", errs).unwrap_or(1);
    let refresh = t.u32("refresh", errs).unwrap_or(14400);
    let retry = t.u32("retry", errs).unwrap_or(3600);
    let expire = t.u32("expire", errs).unwrap_or(1_209_600);
    let minimum = t.u32("minimum", errs).unwrap_or(300);
    let ttl = t.u32("ttl", errs).unwrap_or(zone_ttl);
    t.finish(
        &[
            "mname", "rname", "serial", "refresh", "retry", "expire", "minimum", "ttl",
        ],
        errs,
    );
    Some(SoaSpec {
        mname: mname?,
        rname: rname?,
        serial,
        refresh,
        retry,
        expire,
        minimum,
        ttl,
    })
}

/// An owner or target name: `@` is the origin, a name ending in `.` is absolute, anything
/// else is relative to the origin.
pub(crate) fn parse_name(s: &str, origin: &Name) -> Result<Name, String> {
    if s == "@" {
        return Ok(origin.clone());
    }
    let n = Name::parse(s, Some(origin))
        .map_err(|e| format!("{} is not a valid domain name: {e}", shown(s)))?;
    Ok(n)
}

/// The record type a `records.<name>.<KEY>` key names: a mnemonic gslbd knows, or
/// `TYPE<number>` (RFC 3597) for any other data type (and for known ones: `TYPE1` is `A`).
fn record_type_of(upper: &str) -> Result<RecordType, String> {
    if let Some(num) = upper.strip_prefix("TYPE")
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
    {
        let code: u16 = num
            .parse()
            .map_err(|_| format!("{upper}: a type number is 1..65535"))?;
        if let Some(why) = rr::not_writable(code) {
            return Err(format!("{upper}: {why}"));
        }
        return Ok(RecordType::from(code));
    }
    if rr::static_type_names().any(|n| n == upper) {
        return upper.parse().map_err(|_| "unknown record type".to_string());
    }
    Err(format!(
        "unknown record type (expected one of: {}, ALIAS, or TYPE<number> with RFC 3597 values)",
        rr::static_type_names().collect::<Vec<_>>().join(", ")
    ))
}

/// Reads the `records` table `t` into `out` and `aliases` (appending: a big file is read in
/// parts).
pub(crate) fn read_records(
    mut t: Table<'_>,
    origin: &Name,
    zone_ttl: u32,
    out: &mut RecordTable,
    aliases: &mut Vec<AliasSpec>,
    errs: &mut Errors,
) {
    let mut scratch = Vec::with_capacity(64);
    rr::put_name(&mut scratch, origin, true);
    let apex_len = scratch.len();
    for (owner_key, v) in t.entries() {
        let node_path = join(&t.path, owner_key);
        let owner = match parse_name(owner_key, origin) {
            Ok(n) if origin.zone_of(&n) => n,
            Ok(_) => {
                errs.add(
                    &node_path,
                    format!("{} is not inside the zone {origin}", shown(owner_key)),
                );
                continue;
            }
            Err(e) => {
                errs.add(&node_path, e);
                continue;
            }
        };
        let Some(mut node) = Table::from_value(v, node_path.clone(), errs) else {
            continue;
        };
        let names_at = out.names.len();
        rr::put_name(&mut out.names, &owner, true);
        let owner_span = Span {
            at: names_at as u32,
            len: (out.names.len() - names_at) as u32,
        };
        let key_span = if is_relative_form(owner_key, owner_span.of(&out.names), apex_len) {
            WRITTEN_AS_OWNER
        } else {
            Span::push(&mut out.keys, owner_key.as_bytes())
        };
        for (type_key, tv) in node.entries() {
            let path = join(&node_path, type_key);
            let upper = type_key.to_ascii_uppercase();
            if upper == "SOA" {
                errs.add(
                    &path,
                    "the SOA is written in the [soa] table, not under records",
                );
                continue;
            }
            let is_alias = upper == "ALIAS";
            let rtype = if is_alias {
                None
            } else {
                match record_type_of(&upper) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let nested = tv.is_table()
                            && !tv.as_table().is_some_and(|t| t.contains_key("values"));
                        if nested && !upper.starts_with("TYPE") {
                            errs.add(
                                &path,
                                format!("unknown record type; a dotted name makes nested tables: quote it, as in [records.\"{owner_key}.{type_key}\"]"),
                            );
                        } else {
                            errs.add(&path, e);
                        }
                        continue;
                    }
                }
            };
            let (values_v, values_path, ttl) = match tv {
                DeValue::Table(_) => {
                    let Some(mut rt) = Table::from_value(tv, path.clone(), errs) else {
                        continue;
                    };
                    let ttl = rt.u32("ttl", errs).unwrap_or(zone_ttl);
                    let vals = rt.get("values");
                    rt.finish(&["values", "ttl"], errs);
                    match vals {
                        Some(v) => (v, join(&path, "values"), ttl),
                        None => {
                            errs.add(
                                &join(&path, "values"),
                                "is required (a list of record values)",
                            );
                            continue;
                        }
                    }
                }
                other => (other, path.clone(), zone_ttl),
            };
            // One value, or a list of them.
            let (single, many): (Option<&DeValue<'_>>, &[toml::Spanned<DeValue<'_>>]) =
                match values_v {
                    DeValue::String(_) => (Some(values_v), &[]),
                    DeValue::Array(a) => (None, &a[..]),
                    other => {
                        errs.add(
                            &values_path,
                            format!(
                                "expected a list of {upper} values, found {}",
                                type_name(other)
                            ),
                        );
                        continue;
                    }
                };
            let listed = single.is_none();
            let items = || single.into_iter().chain(walk::items(many));
            let item_count = if listed { many.len() } else { 1 };
            if item_count == 0 {
                errs.add(&values_path, "is empty (expected at least one value)");
                continue;
            }
            let Some(rtype) = rtype else {
                // ALIAS: one target name.
                if item_count > 1 {
                    errs.add(&values_path, "a name has at most one ALIAS target");
                    continue;
                }
                let Some(item) = items().next() else {
                    continue;
                };
                let p = if listed {
                    index(&values_path, 0)
                } else {
                    values_path.clone()
                };
                let DeValue::String(s) = item else {
                    errs.add(&p, format!("expected a string, found {}", type_name(item)));
                    continue;
                };
                match parse_name(s.trim(), origin) {
                    Ok(target) => aliases.push(AliasSpec {
                        owner: owner.clone(),
                        path,
                        target,
                        ttl,
                    }),
                    Err(e) => errs.add(&p, e),
                }
                continue;
            };
            if rtype == RecordType::CNAME && item_count > 1 {
                errs.add(&values_path, "a name has at most one CNAME");
            }
            let wire_at = out.wire.len();
            let mut count = 0usize;
            let code = u16::from(rtype);
            for (i, item) in items().enumerate() {
                let item_path = || {
                    if listed {
                        index(&values_path, i)
                    } else {
                        values_path.clone()
                    }
                };
                let DeValue::String(s) = item else {
                    errs.add(
                        &item_path(),
                        format!("expected a string, found {}", type_name(item)),
                    );
                    continue;
                };
                scratch.clear();
                if let Err(e) = encode_rdata(rtype, s, origin, &mut scratch) {
                    errs.add(&item_path(), e);
                    continue;
                }
                // The same value twice is one record.
                if records(&out.wire[wire_at..]).any(|r| r[10..] == scratch[..]) {
                    continue;
                }
                if scratch.len() > usize::from(u16::MAX) {
                    errs.add(&item_path(), "is longer than a record can be (65535 bytes)");
                    continue;
                }
                encode_record(&mut out.wire, code, ttl, &scratch);
                count += 1;
            }
            let Ok(count) = u16::try_from(count) else {
                errs.add(&values_path, "has more than 65535 records");
                out.wire.truncate(wire_at);
                continue;
            };
            out.sets.push(SetSpec {
                owner: owner_span,
                key: key_span,
                wire: Span {
                    at: wire_at as u32,
                    len: (out.wire.len() - wire_at) as u32,
                },
                rtype: code,
                count,
            });
        }
        // entries() marked every key used; nothing to finish for a node.
    }
}

/// Encodes one value in presentation form as RDATA into `out` (names uncompressed, relative
/// ones completed with the origin). Addresses take a short path: they are most records.
pub(crate) fn encode_rdata(
    rtype: RecordType,
    s: &str,
    origin: &Name,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // The RFC 3597 generic form (`\# <length> <hex>`) goes through parse_rdata for every type.
    let generic = s.trim_start().starts_with("\\#");
    match rtype {
        RecordType::A if !generic => {
            let a = s
                .trim()
                .parse::<std::net::Ipv4Addr>()
                .map_err(|_| format!("{} is not an IPv4 address", shown(s)))?;
            out.extend_from_slice(&a.octets());
            Ok(())
        }
        RecordType::AAAA if !generic => {
            let a = s
                .trim()
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{} is not an IPv6 address", shown(s)))?;
            out.extend_from_slice(&a.octets());
            Ok(())
        }
        _ => rdata_into(&parse_rdata(rtype, s, origin)?, out),
    }
}

/// RDATA in wire form into `out`, names inside uncompressed (each RRset is encoded on its
/// own).
pub(crate) fn rdata_into(rdata: &RData, out: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut enc).map_err(|e| {
        format!(
            "cannot encode {}: {e}",
            one_line(&rdata.to_string(), SHOWN_CHARS)
        )
    })?;
    out.extend_from_slice(&buf);
    Ok(())
}

/// Parses one value in presentation form; relative names in the data are completed with the
/// origin.
pub(crate) fn parse_rdata(rtype: RecordType, s: &str, origin: &Name) -> Result<RData, String> {
    if let Some(rest) = s.trim_start().strip_prefix("\\#") {
        return parse_generic(rtype, rest, s);
    }
    match rtype {
        RecordType::DS => return parse_ds(s),
        RecordType::Unknown(code) => {
            return Err(format!(
                "{s:?}: TYPE{code} values are written in the RFC 3597 generic form, \\# <length> <hex> (e.g. \"\\# 4 c0000201\")"
            ));
        }
        RecordType::A => {
            return s
                .trim()
                .parse::<std::net::Ipv4Addr>()
                .map(|a| RData::A(a.into()))
                .map_err(|_| format!("{} is not an IPv4 address", shown(s)));
        }
        RecordType::AAAA => {
            return s
                .trim()
                .parse::<std::net::Ipv6Addr>()
                .map(|a| RData::AAAA(a.into()))
                .map_err(|_| format!("{} is not an IPv6 address", shown(s)));
        }
        // A TXT value not starting with a quote is one text (split in 255-byte strings), so
        // operators need not quote spaces; a quoted value is presentation form.
        RecordType::TXT if !s.trim_start().starts_with('"') => {
            if s.is_empty() {
                return Ok(RData::TXT(TXT::new(vec![String::new()])));
            }
            let mut parts = Vec::new();
            let mut rest = s;
            while !rest.is_empty() {
                let mut cut = rest.len().min(255);
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                parts.push(rest[..cut].to_string());
                rest = &rest[cut..];
            }
            return Ok(RData::TXT(TXT::new(parts)));
        }
        _ => {}
    }
    let rdata = RData::try_from_str(rtype, s)
        .map_err(|e| format!("{} is not a valid {rtype} record: {e}", shown(s)))?;
    let fix = |n: Name| -> Result<Name, String> {
        if n.is_fqdn() {
            Ok(n)
        } else {
            n.append_domain(origin)
                .map_err(|e| format!("{}: name too long with the origin: {e}", shown(s)))
        }
    };
    Ok(match rdata {
        RData::CNAME(CNAME(n)) => RData::CNAME(CNAME(fix(n)?)),
        RData::NS(NS(n)) => RData::NS(NS(fix(n)?)),
        RData::PTR(PTR(n)) => RData::PTR(PTR(fix(n)?)),
        RData::MX(mx) => RData::MX(MX::new(mx.preference, fix(mx.exchange)?)),
        RData::SRV(srv) => RData::SRV(SRV::new(
            srv.priority,
            srv.weight,
            srv.port,
            fix(srv.target)?,
        )),
        RData::NAPTR(n) => RData::NAPTR(NAPTR::new(
            n.order,
            n.preference,
            n.flags,
            n.services,
            n.regexp,
            fix(n.replacement)?,
        )),
        RData::SVCB(v) => RData::SVCB(svcb(v, &fix, s)?),
        RData::HTTPS(HTTPS(v)) => RData::HTTPS(HTTPS(svcb(v, &fix, s)?)),
        other => other,
    })
}

/// An SVCB/HTTPS value as RFC 9460 wants it on the wire: a relative target completed with
/// the origin (`.` is the owner itself), the parameters in increasing key order (they may be
/// written in any order), each key once, and every key listed in `mandatory` present.
fn svcb(v: SVCB, fix: &dyn Fn(Name) -> Result<Name, String>, s: &str) -> Result<SVCB, String> {
    let target = fix(v.target_name)?;
    let mut params = v.svc_params;
    params.sort_by_key(|(k, _)| u16::from(*k));
    for w in params.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(format!("{s:?}: the parameter {} is given twice", w[0].0));
        }
    }
    for (k, val) in &params {
        if let SvcParamValue::Mandatory(m) = val {
            for key in &m.0 {
                if *key == SvcParamKey::Mandatory {
                    return Err(format!("{s:?}: mandatory may not list itself"));
                }
                if !params.iter().any(|(k2, _)| k2 == key) {
                    return Err(format!(
                        "{s:?}: mandatory lists {key}, which the record does not have"
                    ));
                }
            }
        }
        if *k == SvcParamKey::Mandatory && !matches!(val, SvcParamValue::Mandatory(_)) {
            return Err(format!("{s:?}: bad mandatory list"));
        }
    }
    Ok(SVCB::new(v.svc_priority, target, params))
}

/// The RFC 3597 generic form after `\#`: the RDATA length in bytes, then the RDATA in hex
/// (spaces allowed between hex digits). Known types are decoded (so a wrong length or a bad
/// name inside is reported here); unknown ones are kept as bytes.
fn parse_generic(rtype: RecordType, rest: &str, s: &str) -> Result<RData, String> {
    // Quoted as written: a debug-escaped `\\#` would read as two backslashes.
    let s = format!("\"{s}\"");
    let mut parts = rest.split_whitespace();
    let len: usize = parts
        .next()
        .and_then(|l| l.parse().ok())
        .filter(|l| *l <= 65535)
        .ok_or_else(|| format!("{s}: the generic form is \\# <length> <hex>, length 0..65535"))?;
    let hex: String = parts.collect();
    let bytes = decode_hex(&hex).map_err(|e| format!("{s}: {e}"))?;
    if bytes.len() != len {
        return Err(format!(
            "{s}: the length says {len} bytes but the hex holds {}",
            bytes.len()
        ));
    }
    if matches!(rtype, RecordType::Unknown(_)) {
        let rdata = if bytes.is_empty() {
            NULL::new()
        } else {
            NULL::with(bytes)
        };
        return Ok(RData::Unknown { code: rtype, rdata });
    }
    let mut d = BinDecoder::new(&bytes);
    let rdata = RData::read(&mut d, rtype, Restrict::new(len as u16))
        .map_err(|e| format!("{s} is not a valid {rtype} record: {e}"))?;
    if !d.is_empty() {
        return Err(format!("{s}: bytes left over after the {rtype} data"));
    }
    Ok(rdata)
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".into());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .map_err(|_| format!("{:?} is not hex", &hex[i..i + 2]))
        })
        .collect()
}

/// DNSSEC algorithm mnemonics of RFC 4034 and its successors (numbers are accepted too).
const DNSSEC_ALGORITHMS: &[(&str, u8)] = &[
    ("RSAMD5", 1),
    ("DH", 2),
    ("DSA", 3),
    ("RSASHA1", 5),
    ("DSA-NSEC3-SHA1", 6),
    ("RSASHA1-NSEC3-SHA1", 7),
    ("RSASHA256", 8),
    ("RSASHA512", 10),
    ("ECC-GOST", 12),
    ("ECDSAP256SHA256", 13),
    ("ECDSAP384SHA384", 14),
    ("ED25519", 15),
    ("ED448", 16),
];

/// `DS = ["<key tag> <algorithm> <digest type> <digest hex>"]` (RFC 4034 5.3); the digest
/// length is checked for the digest types it is known for (SHA-1, SHA-256, SHA-384).
fn parse_ds(s: &str) -> Result<RData, String> {
    let mut parts = s.split_whitespace();
    let usage = "expected \"<key tag> <algorithm> <digest type> <digest in hex>\"";
    let (Some(tag), Some(alg), Some(dt)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{s:?}: {usage}"));
    };
    let tag: u16 = tag
        .parse()
        .map_err(|_| format!("{s:?}: key tag {tag:?} is not 0..65535"))?;
    let alg: u8 = match alg.parse() {
        Ok(n) => n,
        Err(_) => DNSSEC_ALGORITHMS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(alg))
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("{s:?}: unknown DNSSEC algorithm {alg:?}"))?,
    };
    let dt: u8 = dt
        .parse()
        .map_err(|_| format!("{s:?}: digest type {dt:?} is not 0..255"))?;
    let hex: String = parts.collect();
    if hex.is_empty() {
        return Err(format!("{s:?}: {usage}"));
    }
    let digest = decode_hex(&hex).map_err(|e| format!("{s:?}: digest: {e}"))?;
    let want = match dt {
        1 => Some(20),
        2 => Some(32),
        4 => Some(48),
        _ => None,
    };
    if let Some(w) = want
        && digest.len() != w
    {
        return Err(format!(
            "{s:?}: a digest of type {dt} is {w} bytes, this one is {}",
            digest.len()
        ));
    }
    let mut bytes = Vec::with_capacity(4 + digest.len());
    bytes.extend_from_slice(&tag.to_be_bytes());
    bytes.push(alg);
    bytes.push(dt);
    bytes.extend_from_slice(&digest);
    Ok(RData::Unknown {
        code: RecordType::DS,
        rdata: NULL::with(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_read_as_their_owner_are_not_kept() {
        let origin = origin();
        let apex = rr::wire_key(&origin).len();
        let owner = |key: &str| rr::wire_key(&parse_name(key, &origin).unwrap()).to_vec();
        for key in ["@", "www", "a.b.c", "h999999"] {
            assert!(is_relative_form(key, &owner(key), apex), "{key}");
            assert_eq!(relative_form(&owner(key), apex), key);
        }
        // Written otherwise: kept as written, for the paths of messages.
        for key in ["WWW", "www.example.com.", "a.b.c.example.com.", "a.b"] {
            let other = if key == "a.b" {
                owner("a.bc")
            } else {
                owner(key)
            };
            assert!(!is_relative_form(key, &other, apex), "{key}");
        }
        assert!(!is_relative_form("www", &owner("@"), apex));
        assert!(!is_relative_form("@", &owner("www"), apex));
        assert!(!is_relative_form("ww", &owner("www"), apex));
    }

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    #[test]
    fn relative_names_get_the_origin() {
        let r = parse_rdata(RecordType::MX, "10 mail", &origin()).unwrap();
        assert_eq!(r.to_string(), "10 mail.example.com.");
        let r = parse_rdata(RecordType::CNAME, "other.net.", &origin()).unwrap();
        assert_eq!(r.to_string(), "other.net.");
    }

    #[test]
    fn bad_addresses_say_what_was_expected() {
        assert_eq!(
            parse_rdata(RecordType::A, "300.1.2.3", &origin()).unwrap_err(),
            "\"300.1.2.3\" is not an IPv4 address"
        );
    }

    #[test]
    fn unquoted_txt_is_one_text() {
        let r = parse_rdata(RecordType::TXT, "v=spf1 -all", &origin()).unwrap();
        match r {
            RData::TXT(t) => assert_eq!(t.txt_data.len(), 1),
            _ => panic!("not TXT"),
        }
    }
}
