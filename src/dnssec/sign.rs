//! Signing one RRset given in wire form: canonical RDATA (RFC 4034 6.2), canonical order
//! (6.3), the signed data (RFC 4035 5.3.2) and the RRSIG RDATA.
//!
//! The model keeps every RRset pre-encoded; this works on those bytes directly, so a static
//! RRset, a GSLB answer written into a response and a synthesized NSEC go through the same
//! code.

use super::keys::ZoneKey;

/// Type NS.
pub const TYPE_NS: u16 = 2;
/// Type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Type SOA.
pub const TYPE_SOA: u16 = 6;
/// Type PTR.
pub const TYPE_PTR: u16 = 12;
/// Type MX.
pub const TYPE_MX: u16 = 15;
/// Type SRV.
pub const TYPE_SRV: u16 = 33;
/// Type DNAME.
pub const TYPE_DNAME: u16 = 39;
/// Type DS.
pub const TYPE_DS: u16 = 43;
/// Type RRSIG.
pub const TYPE_RRSIG: u16 = 46;
/// Type NSEC.
pub const TYPE_NSEC: u16 = 47;
/// Type DNSKEY.
pub const TYPE_DNSKEY: u16 = 48;
/// Type CDS (RFC 7344).
pub const TYPE_CDS: u16 = 59;
/// Type CDNSKEY (RFC 7344).
pub const TYPE_CDNSKEY: u16 = 60;
/// RFC 9824: the NXDOMAIN indicator in a compact-denial NSEC type bitmap.
pub const TYPE_NXNAME: u16 = 128;

const CLASS_IN: u16 = 1;

/// The RRsets only key-signing keys sign.
pub fn signed_by_ksk(rtype: u16) -> bool {
    matches!(rtype, TYPE_DNSKEY | TYPE_CDS | TYPE_CDNSKEY)
}

/// Validity window of a signature, Unix seconds (written modulo 2^32, RFC 4034 3.1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Signature inception.
    pub inception: u64,
    /// Signature expiration.
    pub expiration: u64,
}

/// Lower-cases the ASCII letters of a wire-form name starting at `at`; returns the end.
/// Length octets are at most 63, below 'A', so only label bytes change.
fn lower_name(b: &mut [u8], mut at: usize) -> usize {
    while at < b.len() {
        let len = b[at] as usize;
        if len == 0 || len & 0xC0 != 0 {
            return at + 1;
        }
        let end = (at + 1 + len).min(b.len());
        b[at + 1..end].make_ascii_lowercase();
        at = end;
    }
    at
}

/// RFC 4034 6.2 (as corrected by RFC 6840 5.1): names inside the RDATA of these types are
/// lower-cased for signing. The rest are signed as they are.
pub fn canonicalize(rtype: u16, rdata: &mut [u8]) {
    match rtype {
        TYPE_NS | TYPE_CNAME | TYPE_PTR | TYPE_DNAME => {
            lower_name(rdata, 0);
        }
        TYPE_MX if rdata.len() > 2 => {
            lower_name(rdata, 2);
        }
        TYPE_SRV if rdata.len() > 6 => {
            lower_name(rdata, 6);
        }
        TYPE_SOA => {
            let end = lower_name(rdata, 0);
            lower_name(rdata, end);
        }
        _ => {}
    }
}

/// RRSIG labels field: the owner's labels, not counting the root or a leading `*`.
pub fn label_count(owner: &[u8]) -> u8 {
    let mut n = 0u8;
    let mut at = 0usize;
    let mut first_star = false;
    while at < owner.len() && owner[at] != 0 {
        if n == 0 && owner[at] == 1 && owner.get(at + 1) == Some(&b'*') {
            first_star = true;
        }
        n = n.saturating_add(1);
        at += 1 + owner[at] as usize;
    }
    if first_star { n - 1 } else { n }
}

/// The RDATA slices of pre-encoded records (`TYPE CLASS TTL RDLENGTH RDATA` each, no owner).
pub fn rdata_iter(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + 10 > wire.len() {
            return None;
        }
        let len = u16::from_be_bytes([wire[at + 8], wire[at + 9]]) as usize;
        let end = (at + 10 + len).min(wire.len());
        let r = &wire[at + 10..end];
        at = end;
        Some(r)
    })
}

/// [`rdata_iter`], collected (load time).
pub fn rdatas(wire: &[u8]) -> Vec<&[u8]> {
    rdata_iter(wire).collect()
}

/// Canonical RDATA of a set, sorted and without duplicates (RFC 4034 6.3).
pub fn canonical_set(rtype: u16, rdatas: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = rdatas
        .iter()
        .map(|r| {
            let mut c = r.to_vec();
            canonicalize(rtype, &mut c);
            c
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Everything that goes into one RRSIG except the key.
#[derive(Clone, Copy, Debug)]
pub struct SigFields<'a> {
    /// Lower-cased wire name of the RRset's owner.
    pub owner: &'a [u8],
    /// Type covered.
    pub rtype: u16,
    /// Original TTL (the TTL of the records as served).
    pub ttl: u32,
    /// Lower-cased wire name of the zone (the signer).
    pub signer: &'a [u8],
    /// Inception and expiration.
    pub window: Window,
}

/// The RRSIG RDATA up to (not including) the signature.
fn rrsig_head(out: &mut Vec<u8>, f: &SigFields<'_>, key: &ZoneKey) {
    out.extend_from_slice(&f.rtype.to_be_bytes());
    out.push(key.algorithm);
    out.push(label_count(f.owner));
    out.extend_from_slice(&f.ttl.to_be_bytes());
    out.extend_from_slice(&(f.window.expiration as u32).to_be_bytes());
    out.extend_from_slice(&(f.window.inception as u32).to_be_bytes());
    out.extend_from_slice(&key.tag.to_be_bytes());
    out.extend_from_slice(f.signer);
}

/// Signs a canonical, sorted RRset with `key`; returns the RRSIG RDATA.
pub fn sign_canonical(
    key: &ZoneKey,
    f: &SigFields<'_>,
    canonical: &[Vec<u8>],
) -> Result<Vec<u8>, String> {
    let mut data = Vec::with_capacity(
        64 + canonical
            .iter()
            .map(|r| f.owner.len() + 10 + r.len())
            .sum::<usize>(),
    );
    rrsig_head(&mut data, f, key);
    let head_len = data.len();
    // RFC 4035 5.3.2: the owner as the RRSIG labels say (a wildcard owner keeps its `*`).
    for r in canonical {
        data.extend_from_slice(f.owner);
        data.extend_from_slice(&f.rtype.to_be_bytes());
        data.extend_from_slice(&CLASS_IN.to_be_bytes());
        data.extend_from_slice(&f.ttl.to_be_bytes());
        data.extend_from_slice(&(r.len() as u16).to_be_bytes());
        data.extend_from_slice(r);
    }
    let sig = key.sign(&data)?;
    let mut rdata = data;
    rdata.truncate(head_len);
    rdata.extend_from_slice(&sig);
    Ok(rdata)
}

/// The RRSIG records (`TYPE CLASS TTL RDLENGTH RDATA` each, owner left to the writer) of an
/// RRset, one per key in `keys` that signs it. Returns (wire, count).
pub fn rrsig_records<'k>(
    keys: impl Iterator<Item = &'k ZoneKey>,
    f: &SigFields<'_>,
    canonical: &[Vec<u8>],
) -> Result<(Vec<u8>, u16), String> {
    let mut wire = Vec::with_capacity(128);
    let mut n = 0u16;
    for key in keys {
        let rdata = sign_canonical(key, f, canonical)?;
        wire.extend_from_slice(&TYPE_RRSIG.to_be_bytes());
        wire.extend_from_slice(&CLASS_IN.to_be_bytes());
        wire.extend_from_slice(&f.ttl.to_be_bytes());
        wire.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        wire.extend_from_slice(&rdata);
        n += 1;
    }
    Ok((wire, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_rdata_are_lowercased_only_where_rfc4034_says() {
        let mut mx = b"\x00\x0a\x04MaIl\x07Example\x03COM\x00".to_vec();
        canonicalize(TYPE_MX, &mut mx);
        assert_eq!(mx, b"\x00\x0a\x04mail\x07example\x03com\x00");
        let mut txt = b"\x05HeLLo".to_vec();
        canonicalize(16, &mut txt);
        assert_eq!(txt, b"\x05HeLLo");
        let mut soa = b"\x02NS\x00\x02HM\x00\x00\x00\x00\x01".to_vec();
        canonicalize(TYPE_SOA, &mut soa);
        assert_eq!(soa, b"\x02ns\x00\x02hm\x00\x00\x00\x00\x01");
    }

    #[test]
    fn labels_skip_root_and_leading_wildcard() {
        assert_eq!(label_count(b"\x00"), 0);
        assert_eq!(label_count(b"\x03www\x07example\x03com\x00"), 3);
        assert_eq!(label_count(b"\x01*\x04wild\x07example\x03com\x00"), 3);
    }

    #[test]
    fn canonical_order_sorts_and_dedups() {
        let set = canonical_set(1, &[&[10, 0, 0, 2], &[10, 0, 0, 1], &[10, 0, 0, 2]]);
        assert_eq!(set, vec![vec![10, 0, 0, 1], vec![10, 0, 0, 2]]);
    }
}
