//! Compact denial of existence (RFC 9824): one NSEC at the query name, whose next name is the
//! name's immediate successor `\000.<name>`, so it proves nothing about any other name.
//!
//! - a name that does not exist: type bitmap RRSIG NSEC NXNAME;
//! - a name that exists without the asked type (NODATA, empty non-terminals, wildcard NODATA):
//!   the types that are there, plus RRSIG and NSEC;
//! - a delegation without DS: NS RRSIG NSEC at the cut (the insecure-delegation proof).
//!
//! Everything here writes into caller buffers, so the query path can build an NSEC on the
//! stack and only sign it (through the cache) when it is new.

use super::sign::{TYPE_NSEC, TYPE_NXNAME, TYPE_RRSIG};

/// The most types one bitmap holds (a node has few RRsets).
pub const MAX_TYPES: usize = 32;

/// A small sorted set of RR types.
#[derive(Clone, Copy, Debug)]
pub struct TypeSet {
    types: [u16; MAX_TYPES],
    n: usize,
}

impl Default for TypeSet {
    fn default() -> Self {
        TypeSet {
            types: [0; MAX_TYPES],
            n: 0,
        }
    }
}

impl TypeSet {
    /// Adds `t` (kept sorted; beyond [`MAX_TYPES`] types it is dropped).
    pub fn insert(&mut self, t: u16) {
        if self.contains(t) || self.n == MAX_TYPES {
            return;
        }
        let at = self.types[..self.n].partition_point(|&x| x < t);
        self.types.copy_within(at..self.n, at + 1);
        self.types[at] = t;
        self.n += 1;
    }

    /// Removes `t`.
    pub fn remove(&mut self, t: u16) {
        if let Some(at) = self.types[..self.n].iter().position(|&x| x == t) {
            self.types.copy_within(at + 1..self.n, at);
            self.n -= 1;
        }
    }

    /// Whether `t` is in the set.
    pub fn contains(&self, t: u16) -> bool {
        self.types[..self.n].binary_search(&t).is_ok()
    }

    /// The types, ascending.
    pub fn as_slice(&self) -> &[u16] {
        &self.types[..self.n]
    }

    /// The set of a name that does not exist.
    pub fn nxname() -> TypeSet {
        let mut s = TypeSet::default();
        s.insert(TYPE_RRSIG);
        s.insert(TYPE_NSEC);
        s.insert(TYPE_NXNAME);
        s
    }
}

/// Writes the RFC 4034 4.1.2 type bitmap of `types` (sorted) at `out[at..]`; returns the
/// end, or `None` when it does not fit.
pub fn put_bitmap(out: &mut [u8], mut at: usize, types: &[u16]) -> Option<usize> {
    let mut i = 0;
    while i < types.len() {
        let window = types[i] >> 8;
        let mut bits = [0u8; 32];
        let mut len = 0usize;
        while i < types.len() && types[i] >> 8 == window {
            let low = (types[i] & 0xFF) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = len.max(low / 8 + 1);
            i += 1;
        }
        let d = out.get_mut(at..at + 2 + len)?;
        d[0] = window as u8;
        d[1] = len as u8;
        d[2..].copy_from_slice(&bits[..len]);
        at += 2 + len;
    }
    Some(at)
}

/// Longest NSEC RDATA we build: a 257-octet next name and a bitmap of [`MAX_TYPES`].
pub const MAX_RDATA: usize = 257 + MAX_TYPES * 34;

/// Writes the NSEC RDATA at `owner` (lower-cased wire name) into `out`: next name
/// `\000.<owner>`, then the bitmap. Returns its length; `None` when the successor would exceed
/// 255 octets.
pub fn compact_rdata(out: &mut [u8], owner: &[u8], types: &TypeSet) -> Option<usize> {
    if owner.len() + 2 > 255 {
        return None;
    }
    let d = out.get_mut(..2 + owner.len())?;
    d[0] = 1;
    d[1] = 0;
    d[2..].copy_from_slice(owner);
    put_bitmap(out, 2 + owner.len(), types.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_matches_rfc4034_example() {
        // RFC 4034 4.3: A MX RRSIG NSEC TYPE1234.
        let mut buf = [0u8; 64];
        let n = put_bitmap(&mut buf, 0, &[1, 15, 46, 47, 1234]).unwrap();
        let out = buf[..n].to_vec();
        let mut want = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        want.extend_from_slice(&[0; 26]);
        want.push(0x20);
        assert_eq!(out, want);
    }

    #[test]
    fn nxname_nsec_is_next_name_then_three_types() {
        let mut buf = [0u8; MAX_RDATA];
        let n = compact_rdata(&mut buf, b"\x01a\x07example\x00", &TypeSet::nxname()).unwrap();
        let out = buf[..n].to_vec();
        let mut want = b"\x01\x00\x01a\x07example\x00".to_vec();
        // Window 0: RRSIG (46) and NSEC (47) in byte 5; NXNAME (128) in byte 16.
        want.extend_from_slice(&[0, 17, 0, 0, 0, 0, 0, 0x03]);
        want.extend_from_slice(&[0; 10]);
        want.push(0x80);
        assert_eq!(out, want);
    }

    #[test]
    fn typeset_keeps_order_and_removes() {
        let mut s = TypeSet::default();
        for t in [28, 1, 46, 1, 6] {
            s.insert(t);
        }
        assert_eq!(s.as_slice(), &[1, 6, 28, 46]);
        s.remove(6);
        assert_eq!(s.as_slice(), &[1, 28, 46]);
        assert!(compact_rdata(&mut [0u8; MAX_RDATA], &[0u8; 254], &s).is_none());
    }
}
