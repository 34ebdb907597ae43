//! DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018).
//!
//! ```text
//! query COOKIE = client cookie (8) [+ server cookie (8..32)]
//!   server cookie = version 1 | reserved 0 0 0 | timestamp (unix s) | hash (8)
//!   hash = SipHash-2-4(key = secret, client cookie | version | reserved | timestamp | client IP)
//!   valid: made with one of the accepted secrets, for this address, at most 1 h old and at
//!          most 5 min ahead (RFC 9018 4.3)
//! response COOKIE = the client cookie | a fresh server cookie (current secret, now)
//! ```
//!
//! What the server does with each case (RFC 7873 5.2) is in `answer::handle_with`: a client
//! cookie alone or a valid pair is answered normally (a valid pair also exempts the client
//! from rate limiting: its address is proven); an invalid server cookie over UDP gets BADCOOKIE
//! with a fresh cookie (a small response the client retries with at once), over TCP a normal
//! answer; a malformed option is FORMERR (in `wire`).
//!
//! Secrets rotate with overlap: the first secret makes cookies, every one of them verifies, so
//! a new secret can be introduced everywhere before it is used, and an old one kept until the
//! cookies it made have expired (RFC 9018 5). Instances that share a secret accept each
//! other's cookies, which is what an anycast or multi-server set needs.

use std::net::IpAddr;

use siphasher::sip::SipHasher24;

use crate::abuse::CookieResult;

use super::wire::Cookie;

/// The length of a secret (a SipHash-2-4 key).
pub(crate) const SECRET_LEN: usize = 16;
/// How far in the past a server cookie's timestamp may lie.
const MAX_AGE: u32 = 3600;
/// How far in the future (clock skew between servers sharing a secret).
const MAX_AHEAD: u32 = 300;

/// The accepted server secrets; the first one makes the cookies.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecrets {
    secrets: Vec<[u8; SECRET_LEN]>,
}

impl std::fmt::Debug for CookieSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        write!(f, "CookieSecrets({} secret(s))", self.secrets.len())
    }
}

impl CookieSecrets {
    /// `current` makes cookies; it and each of `also` verify them. `None` without a secret.
    pub(crate) fn new(secrets: Vec<[u8; SECRET_LEN]>) -> Option<CookieSecrets> {
        (!secrets.is_empty()).then_some(CookieSecrets { secrets })
    }

    /// A secret file: one secret a line as 32 hex digits; blank lines and `#` comments are
    /// skipped. The first secret makes cookies, every one verifies them.
    pub(crate) fn parse(text: &str) -> Result<CookieSecrets, String> {
        let mut secrets = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bytes = hex16(line).ok_or_else(|| {
                format!(
                    "line {}: expected a secret of 32 hex digits (16 bytes), found {} character(s)",
                    n + 1,
                    line.chars().count()
                )
            })?;
            secrets.push(bytes);
        }
        CookieSecrets::new(secrets).ok_or_else(|| "no secret in the file".to_string())
    }

    /// The secret that makes cookies now.
    pub(crate) fn current(&self) -> &[u8; SECRET_LEN] {
        &self.secrets[0]
    }

    /// A server cookie for `client` at `ip`, stamped `now` (unix seconds).
    pub(crate) fn make(&self, client: &[u8; 8], ip: IpAddr, now: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 1;
        c[4..8].copy_from_slice(&now.to_be_bytes());
        let head: [u8; 8] = c[..8].try_into().unwrap_or([0; 8]);
        c[8..].copy_from_slice(&mac(self.current(), client, &head, ip));
        c
    }

    /// What the query's cookie shows, for a query from `ip` at `now`.
    pub(crate) fn check(&self, cookie: &Cookie, ip: IpAddr, now: u32) -> CookieResult {
        let server = cookie.server();
        if server.is_empty() {
            return CookieResult::ClientOnly;
        }
        // We only make version-1 cookies of 16 bytes: anything else is not ours.
        if server.len() != 16 || server[0] != 1 {
            return CookieResult::Invalid;
        }
        let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // Serial number arithmetic (RFC 1982), as RFC 9018 asks.
        let age = now.wrapping_sub(stamp) as i32;
        if age > MAX_AGE as i32 || age < -(MAX_AHEAD as i32) {
            return CookieResult::Invalid;
        }
        let head: [u8; 8] = server[..8].try_into().unwrap_or([0; 8]);
        let given = &server[8..16];
        let ok = self.secrets.iter().any(|s| {
            let m = mac(s, &cookie.client, &head, ip);
            // Compare without an early exit.
            m.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if ok {
            CookieResult::Valid
        } else {
            CookieResult::Invalid
        }
    }
}

/// The RFC 9018 hash: SipHash-2-4 over client cookie, version, reserved, timestamp and the
/// client address, written in network order as the RFC's test vectors show.
fn mac(secret: &[u8; SECRET_LEN], client: &[u8; 8], head: &[u8; 8], ip: IpAddr) -> [u8; 8] {
    use std::hash::Hasher;
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client);
    h.write(head);
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    h.finish().to_le_bytes()
}

fn hex16(s: &str) -> Option<[u8; SECRET_LEN]> {
    let b = s.as_bytes();
    if b.len() != 2 * SECRET_LEN {
        return None;
    }
    let mut out = [0u8; SECRET_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn cookie(client: &str, server: &str) -> Cookie {
        let mut c = Cookie {
            client: hex(client).try_into().expect("8 bytes"),
            server: [0; 32],
            server_len: 0,
        };
        let s = hex(server);
        c.server[..s.len()].copy_from_slice(&s);
        c.server_len = s.len() as u8;
        c
    }

    fn secrets(s: &str) -> CookieSecrets {
        CookieSecrets::parse(s).expect("secret")
    }

    /// RFC 9018 appendix A.1: learning a new server cookie (IPv4).
    #[test]
    fn rfc9018_vector_ipv4() {
        let s = secrets("e5e973e5a6b2a43f48e7dc849e37bfcf");
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().expect("8");
        let ip: IpAddr = "198.51.100.100".parse().expect("ip");
        let made = s.make(&client, ip, 1559731985);
        assert_eq!(made.to_vec(), hex("010000005cf79f111f8130c3eee29480"));
        let c = cookie("2464c4abcf10c957", "010000005cf79f111f8130c3eee29480");
        assert_eq!(s.check(&c, ip, 1559731985 + 100), CookieResult::Valid);
        // Another address, an old or future stamp, another secret: invalid.
        let other: IpAddr = "198.51.100.101".parse().expect("ip");
        assert_eq!(s.check(&c, other, 1559731985), CookieResult::Invalid);
        assert_eq!(s.check(&c, ip, 1559731985 + 3601), CookieResult::Invalid);
        assert_eq!(s.check(&c, ip, 1559731985 - 301), CookieResult::Invalid);
        assert_eq!(
            secrets("00000000000000000000000000000000").check(&c, ip, 1559731985),
            CookieResult::Invalid
        );
        assert_eq!(
            s.check(&cookie("2464c4abcf10c957", ""), ip, 0),
            CookieResult::ClientOnly
        );
    }

    #[test]
    fn ipv6_clients_round_trip() {
        let s = secrets("aabbccddeeff00112233445566778899");
        let ip: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().expect("ip");
        let client: [u8; 8] = hex("7d1a1c4df5bce6b1").try_into().expect("8");
        let made = s.make(&client, ip, 0x5cf7a8d0);
        let c = cookie("7d1a1c4df5bce6b1", &hex_string(&made));
        assert_eq!(s.check(&c, ip, 0x5cf7a8d0), CookieResult::Valid);
        let near: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b9".parse().expect("ip");
        assert_eq!(s.check(&c, near, 0x5cf7a8d0), CookieResult::Invalid);
    }

    fn hex_string(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rotation_with_overlap() {
        let old = secrets("000102030405060708090a0b0c0d0e0f");
        let both = secrets(
            "# new first, old still accepted\n\
             f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n\
             000102030405060708090a0b0c0d0e0f\n",
        );
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let client = [7u8; 8];
        let made_old = old.make(&client, ip, 1000);
        let c = cookie("0707070707070707", &hex_string(&made_old));
        assert_eq!(both.check(&c, ip, 1000), CookieResult::Valid);
        assert_ne!(both.make(&client, ip, 1000), made_old);
        assert!(CookieSecrets::parse("").is_err());
        assert!(CookieSecrets::parse("abc").is_err());
        assert!(CookieSecrets::parse("zz0102030405060708090a0b0c0d0e0f").is_err());
        assert_eq!(format!("{both:?}"), "CookieSecrets(2 secret(s))");
    }
}
