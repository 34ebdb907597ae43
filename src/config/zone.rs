//! Reading one zone file: origin, default TTL, SOA and static records.
//!
//! Values are parsed from RFC 1035 presentation form with hickory-proto's parsers at load
//! time, so a typo is reported with its key path before the server ever sees it.

use hickory_proto::rr::rdata::{CNAME, MX, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::rr;
use crate::walk::{Errors, Table, index, join, type_name};

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

/// One RRset as written under `records.<name>.<TYPE>`.
#[derive(Clone, Debug)]
pub(crate) struct RecordSpec {
    /// Fully qualified owner, case as written.
    pub(crate) owner: Name,
    /// Key path of the RRset (`records.www.A`), for later error messages.
    pub(crate) path: String,
    /// The record type (the key under the owner).
    pub(crate) rtype: RecordType,
    /// TTL of the RRset: its own `ttl`, else the zone's `ttl`, else 3600.
    pub(crate) ttl: u32,
    /// The records, parsed from presentation form, in file order.
    pub(crate) values: Vec<RData>,
}

/// Everything one zone file says about DNS records (GSLB sections are read by `config::gslb`).
#[derive(Clone, Debug)]
pub(crate) struct ZoneSpec {
    /// The zone apex, fully qualified.
    pub(crate) origin: Name,
    /// The `[soa]` table with its defaults.
    pub(crate) soa: SoaSpec,
    /// Every `records.<name>.<TYPE>` RRset.
    pub(crate) records: Vec<RecordSpec>,
    /// `[dnssec]`: the zone is signed.
    pub(crate) dnssec: Option<super::dnssec::DnssecSpec>,
}

/// TTL of records when neither the record nor the zone gives one.
pub(crate) const DEFAULT_TTL: u32 = 3600;

/// Reads origin, ttl, soa and records from the top table of a zone file.
pub(crate) fn read_zone(top: &mut Table<'_>, errs: &mut Errors) -> Option<ZoneSpec> {
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
    let mut records = Vec::new();
    if let Some(t) = top.table("records", errs) {
        read_records(t, &origin_for_names, ttl, &mut records, errs);
    }
    Some(ZoneSpec {
        dnssec: None,
        origin: origin?,
        soa: soa?,
        records,
    })
}

fn parse_origin(s: &str) -> Result<Name, String> {
    if !s.ends_with('.') {
        return Err(format!(
            "{s:?} must be a fully qualified name ending in \".\""
        ));
    }
    Name::from_ascii(s).map_err(|e| format!("{s:?} is not a valid domain name: {e}"))
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
        .map_err(|e| format!("{s:?} is not a valid domain name: {e}"))?;
    Ok(n)
}

fn read_records(
    mut t: Table<'_>,
    origin: &Name,
    zone_ttl: u32,
    out: &mut Vec<RecordSpec>,
    errs: &mut Errors,
) {
    for (owner_key, v) in t.entries() {
        let node_path = join(&t.path, owner_key);
        let owner = match parse_name(owner_key, origin) {
            Ok(n) if origin.zone_of(&n) => n,
            Ok(_) => {
                errs.add(
                    &node_path,
                    format!("{owner_key:?} is not inside the zone {origin}"),
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
            let known = rr::static_type_names().any(|n| n == upper);
            if !known && tv.is_table() && !tv.as_table().is_some_and(|t| t.contains_key("values")) {
                errs.add(
                    &path,
                    format!("unknown record type; a dotted name makes nested tables: quote it, as in [records.\"{owner_key}.{type_key}\"]"),
                );
                continue;
            }
            if !known {
                errs.add(
                    &path,
                    format!(
                        "unknown record type (expected one of: {})",
                        rr::static_type_names().collect::<Vec<_>>().join(", ")
                    ),
                );
                continue;
            }
            let rtype: RecordType = match upper.parse() {
                Ok(r) => r,
                Err(_) => {
                    errs.add(&path, "unknown record type");
                    continue;
                }
            };
            let (values_v, values_path, ttl) = match tv {
                toml::Value::Table(_) => {
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
            let items: Vec<(String, &str)> = match values_v {
                toml::Value::String(s) => vec![(values_path.clone(), s.as_str())],
                toml::Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| match item {
                        toml::Value::String(s) => Some((index(&values_path, i), s.as_str())),
                        other => {
                            errs.add(
                                &index(&values_path, i),
                                format!("expected a string, found {}", type_name(other)),
                            );
                            None
                        }
                    })
                    .collect(),
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
            if items.is_empty() {
                errs.add(&values_path, "is empty (expected at least one value)");
                continue;
            }
            if rtype == RecordType::CNAME && items.len() > 1 {
                errs.add(&values_path, "a name has at most one CNAME");
            }
            let mut values = Vec::with_capacity(items.len());
            for (p, s) in items {
                match parse_rdata(rtype, s, origin) {
                    Ok(r) => values.push(r),
                    Err(e) => errs.add(&p, e),
                }
            }
            out.push(RecordSpec {
                owner: owner.clone(),
                path,
                rtype,
                ttl,
                values,
            });
        }
        // entries() marked every key used; nothing to finish for a node.
    }
}

/// Parses one value in presentation form; relative names in the data are completed with the
/// origin.
pub(crate) fn parse_rdata(rtype: RecordType, s: &str, origin: &Name) -> Result<RData, String> {
    match rtype {
        RecordType::A => {
            return s
                .trim()
                .parse::<std::net::Ipv4Addr>()
                .map(|a| RData::A(a.into()))
                .map_err(|_| format!("{s:?} is not an IPv4 address"));
        }
        RecordType::AAAA => {
            return s
                .trim()
                .parse::<std::net::Ipv6Addr>()
                .map(|a| RData::AAAA(a.into()))
                .map_err(|_| format!("{s:?} is not an IPv6 address"));
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
        .map_err(|e| format!("{s:?} is not a valid {rtype} record: {e}"))?;
    let fix = |n: Name| -> Result<Name, String> {
        if n.is_fqdn() {
            Ok(n)
        } else {
            n.append_domain(origin)
                .map_err(|e| format!("{s:?}: name too long with the origin: {e}"))
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
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
