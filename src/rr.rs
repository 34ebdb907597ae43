//! DNS vocabulary shared by the zone loader, the answer code and the metrics: record type,
//! class and response code numbers, the one table of record types gslbd knows by name, and
//! names in lower-cased wire form (the key of every table on the query path).
//!
//! A leaf module: it depends on nothing else in the crate (only on hickory-proto's `Name`).

use hickory_proto::rr::Name;

/// Type `A` (IPv4 address).
pub(crate) const TYPE_A: u16 = 1;
/// Type `NS`.
pub(crate) const TYPE_NS: u16 = 2;
/// Type `CNAME`.
pub(crate) const TYPE_CNAME: u16 = 5;
/// Type `SOA`.
pub(crate) const TYPE_SOA: u16 = 6;
/// Type `PTR`.
pub(crate) const TYPE_PTR: u16 = 12;
/// Type `HINFO` (only synthesised, for `ANY`, RFC 8482).
pub(crate) const TYPE_HINFO: u16 = 13;
/// Type `MX`.
pub(crate) const TYPE_MX: u16 = 15;
/// Type `TXT`.
pub(crate) const TYPE_TXT: u16 = 16;
/// Type `AAAA` (IPv6 address).
pub(crate) const TYPE_AAAA: u16 = 28;
/// Type `SRV`.
pub(crate) const TYPE_SRV: u16 = 33;
/// Type `NAPTR` (RFC 3403).
pub(crate) const TYPE_NAPTR: u16 = 35;
/// Type `OPT` (EDNS pseudo-record).
pub(crate) const TYPE_OPT: u16 = 41;
/// Type `DS` (RFC 4034): the hash of a child zone's key, at a delegation point.
pub(crate) const TYPE_DS: u16 = 43;
/// Type `SSHFP` (RFC 4255).
pub(crate) const TYPE_SSHFP: u16 = 44;
/// Type `RRSIG` (made by the signer, never written).
pub(crate) const TYPE_RRSIG: u16 = 46;
/// Type `NSEC` (made by the signer, never written).
pub(crate) const TYPE_NSEC: u16 = 47;
/// Type `NSEC3` (never written: gslbd's denial is NSEC).
pub(crate) const TYPE_NSEC3: u16 = 50;
/// Type `TLSA` (RFC 6698).
pub(crate) const TYPE_TLSA: u16 = 52;
/// Type `SVCB` (RFC 9460).
pub(crate) const TYPE_SVCB: u16 = 64;
/// Type `HTTPS` (RFC 9460).
pub(crate) const TYPE_HTTPS: u16 = 65;
/// Meta type `NXNAME` (RFC 9824): only in compact-denial NSEC bitmaps; asked for, FORMERR.
pub(crate) const TYPE_NXNAME: u16 = 128;
/// Type `CAA`.
pub(crate) const TYPE_CAA: u16 = 257;
/// Meta type `TSIG`: a transaction signature, last in the additional section (RFC 8945).
pub(crate) const TYPE_TSIG: u16 = 250;
/// Query type `IXFR`.
pub(crate) const TYPE_IXFR: u16 = 251;
/// Query type `AXFR`.
pub(crate) const TYPE_AXFR: u16 = 252;
/// Query type `ANY`.
pub(crate) const TYPE_ANY: u16 = 255;

/// Class `IN`.
pub(crate) const CLASS_IN: u16 = 1;
/// Class `ANY` (the class of a TSIG record).
pub(crate) const CLASS_ANY: u16 = 255;

/// EDNS option code of Client Subnet (RFC 7871).
pub(crate) const OPTION_ECS: u16 = 8;
/// EDNS option code of Padding (RFC 7830).
pub(crate) const OPTION_PADDING: u16 = 12;

/// EDNS option code of DNS COOKIE (RFC 7873).
pub(crate) const OPTION_COOKIE: u16 = 10;

/// Response code NOERROR.
pub(crate) const RCODE_NOERROR: u8 = 0;
/// Response code FORMERR.
pub(crate) const RCODE_FORMERR: u8 = 1;
/// Response code SERVFAIL.
pub(crate) const RCODE_SERVFAIL: u8 = 2;
/// Response code NXDOMAIN.
pub(crate) const RCODE_NXDOMAIN: u8 = 3;
/// Response code NOTIMP.
pub(crate) const RCODE_NOTIMP: u8 = 4;
/// Response code REFUSED.
pub(crate) const RCODE_REFUSED: u8 = 5;
/// Response code NOTAUTH (RFC 8945: with a TSIG error when a signed request is refused).
pub(crate) const RCODE_NOTAUTH: u8 = 9;
/// TSIG error BADKEY: the key is not known to the server (RFC 8945 5.2.1).
pub(crate) const TSIG_BADKEY: u16 = 17;
/// Extended rcode 16: upper bits 1 in the OPT TTL, lower bits 0 in the header.
pub(crate) const RCODE_BADVERS: u16 = 16;
/// Extended response code BADCOOKIE (RFC 7873): the server cookie could not be verified.
pub(crate) const RCODE_BADCOOKIE: u16 = 23;

/// What gslbd knows about one record type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TypeInfo {
    /// The type number.
    pub(crate) code: u16,
    /// The mnemonic (`AAAA`).
    pub(crate) name: &'static str,
    /// May be written as a static record in a zone file (`records.<name>.<TYPE>`).
    pub(crate) static_record: bool,
    /// Counted under its own `qtype` label in the query metrics (others count as `other`).
    pub(crate) metric: bool,
}

const fn t(code: u16, name: &'static str, static_record: bool, metric: bool) -> TypeInfo {
    TypeInfo {
        code,
        name,
        static_record,
        metric,
    }
}

/// Every record type gslbd knows by name: the one list the zone loader, the metrics labels
/// and the explain API read. Adding a static record type starts here.
pub(crate) const TYPES: &[TypeInfo] = &[
    t(TYPE_A, "A", true, true),
    t(TYPE_AAAA, "AAAA", true, true),
    t(TYPE_CNAME, "CNAME", true, true),
    t(TYPE_NS, "NS", true, true),
    t(TYPE_MX, "MX", true, true),
    t(TYPE_SOA, "SOA", false, true),
    t(TYPE_TXT, "TXT", true, true),
    t(TYPE_SRV, "SRV", true, true),
    t(TYPE_CAA, "CAA", true, true),
    t(TYPE_PTR, "PTR", true, true),
    t(TYPE_HTTPS, "HTTPS", true, true),
    t(TYPE_SVCB, "SVCB", true, true),
    t(TYPE_DS, "DS", true, true),
    t(TYPE_TLSA, "TLSA", true, false),
    t(TYPE_SSHFP, "SSHFP", true, false),
    t(TYPE_NAPTR, "NAPTR", true, false),
    t(TYPE_ANY, "ANY", false, true),
];

/// The mnemonics of the types a zone file may hold, in table order.
pub(crate) fn static_type_names() -> impl Iterator<Item = &'static str> {
    TYPES.iter().filter(|t| t.static_record).map(|t| t.name)
}

/// Why type number `code` cannot be written as a static record (in the RFC 3597 `TYPEnnn`
/// form or otherwise), or `None` when it can: meta and query types never hold data, the SOA
/// has its own table, and DNSSEC records are made by a signer.
pub(crate) fn not_writable(code: u16) -> Option<&'static str> {
    match code {
        0 => Some("type 0 is reserved"),
        TYPE_SOA => Some("the SOA is written in the [soa] table, not under records"),
        TYPE_OPT | 128..=255 => Some("a meta or query type holds no data"),
        TYPE_RRSIG | TYPE_NSEC | TYPE_NSEC3 => {
            Some("DNSSEC signatures and denial records are made by a signer, not written")
        }
        _ => None,
    }
}

/// A query type as people write it: a mnemonic in any case (`aaaa`), `TYPE65`, or a number.
pub(crate) fn parse_type(s: &str) -> Option<u16> {
    let up = s.trim().to_ascii_uppercase();
    if let Ok(n) = up.strip_prefix("TYPE").unwrap_or(&up).parse::<u16>() {
        return Some(n);
    }
    if let Some(t) = TYPES.iter().find(|t| t.name == up) {
        return Some(t.code);
    }
    up.parse::<hickory_proto::rr::RecordType>()
        .ok()
        .map(u16::from)
}

/// Appends `name` in uncompressed wire form, lower-cased when `lower`.
pub(crate) fn put_name(out: &mut Vec<u8>, name: &Name, lower: bool) {
    for label in name.iter() {
        out.push(label.len() as u8);
        if lower {
            out.extend(label.iter().map(u8::to_ascii_lowercase));
        } else {
            out.extend_from_slice(label);
        }
    }
    out.push(0);
}

/// Lower-cased wire form of `name`: the key of every table on the query path.
pub(crate) fn wire_key(name: &Name) -> Box<[u8]> {
    let mut v = Vec::with_capacity(name.len() + 2);
    put_name(&mut v, name, true);
    v.into_boxed_slice()
}

/// The ancestors of the wire name `key` (without itself), nearest first, down to the root.
pub(crate) fn ancestors(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off >= key.len() || key[off] == 0 {
            return None;
        }
        off += 1 + key[off] as usize;
        key.get(off..)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_numbers() {
        assert_eq!(parse_type("aaaa"), Some(TYPE_AAAA));
        assert_eq!(parse_type("TYPE65"), Some(65));
        assert_eq!(parse_type("28"), Some(28));
        assert_eq!(parse_type("HTTPS"), Some(65));
        assert_eq!(parse_type("NOPE"), None);
        assert!(static_type_names().any(|n| n == "CAA"));
        assert!(!static_type_names().any(|n| n == "SOA"));
    }

    #[test]
    fn wire_names() {
        let n: Name = "WWW.Example.com.".parse().unwrap();
        let k = wire_key(&n);
        assert_eq!(&k[..], b"\x03www\x07example\x03com\x00");
        let anc: Vec<&[u8]> = ancestors(&k).collect();
        assert_eq!(
            anc,
            vec![&b"\x07example\x03com\x00"[..], b"\x03com\x00", b"\x00"]
        );
    }
}
