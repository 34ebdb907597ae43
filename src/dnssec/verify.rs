//! An independent check of signed responses with hickory-proto's own canonical form and
//! verifier (not our signing code): every RRSIG of a response must verify against one of the
//! given DNSKEYs and cover an RRset present in the same section.
//!
//! Used by tests (unit and integration) next to a real validator (`delv`), and handy when
//! debugging a signed zone.

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_proto::dnssec::{Algorithm, PublicKeyBuf, Verifier};
use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, RData, Record};

/// What a verified response held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// RRSIGs that verified.
    pub signatures: usize,
    /// RRsets (section, owner, type) without any RRSIG.
    pub unsigned: Vec<String>,
}

fn dnskey_of(rdata: &[u8]) -> Option<DNSKEY> {
    if rdata.len() < 5 {
        return None;
    }
    Some(DNSKEY::with_flags(
        u16::from_be_bytes([rdata[0], rdata[1]]),
        PublicKeyBuf::new(rdata[4..].to_vec(), Algorithm::from_u8(rdata[3])),
    ))
}

fn check_section(
    name: &str,
    records: &[Record],
    keys: &[DNSKEY],
    now: u32,
    out: &mut Verified,
) -> Result<(), String> {
    for r in records {
        let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data else {
            continue;
        };
        verify_one(r, sig, records, keys, now).map_err(|e| format!("{name}: {e}"))?;
        out.signatures += 1;
    }
    // Every non-RRSIG RRset has a signature (the caller filters what may be unsigned).
    let mut seen: Vec<(String, u16)> = Vec::new();
    for r in records {
        let t = u16::from(r.record_type());
        if t == 46 || t == 41 {
            continue;
        }
        let owner = r.name.to_ascii().to_ascii_lowercase();
        if seen.contains(&(owner.clone(), t)) {
            continue;
        }
        seen.push((owner.clone(), t));
        let signed = records.iter().any(|s| match &s.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                u16::from(sig.input().type_covered) == t
                    && s.name.to_ascii().eq_ignore_ascii_case(&owner)
            }
            _ => false,
        });
        if !signed {
            out.unsigned
                .push(format!("{name} {owner} {}", r.record_type()));
        }
    }
    Ok(())
}

fn verify_one(
    r: &Record,
    sig: &RRSIG,
    records: &[Record],
    keys: &[DNSKEY],
    now: u32,
) -> Result<(), String> {
    let input = sig.input();
    let (inc, exp) = (input.sig_inception.get(), input.sig_expiration.get());
    if (now.wrapping_sub(inc) as i32) < 0 {
        return Err(format!("{}: signature not yet valid", r.name));
    }
    if (exp.wrapping_sub(now) as i32) <= 0 {
        return Err(format!("{}: signature expired", r.name));
    }
    let covered: Vec<&Record> = records
        .iter()
        .filter(|x| x.record_type() == input.type_covered && x.name == r.name)
        .collect();
    if covered.is_empty() {
        return Err(format!(
            "{}: RRSIG covers {} but no such RRset is in the section",
            r.name, input.type_covered
        ));
    }
    let mut last = String::from("no DNSKEY with this key tag");
    for k in keys {
        let Ok(tag) = k.calculate_key_tag() else {
            continue;
        };
        if tag != input.key_tag || k.algorithm() != input.algorithm {
            continue;
        }
        match k.verify_rrsig(&r.name, DNSClass::IN, sig, covered.iter().copied()) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "{} {}: RRSIG (tag {}) does not verify: {last}",
        r.name, input.type_covered, input.key_tag
    ))
}

/// Verifies every RRSIG in `response` against `dnskeys` (RDATA) at time `now` (Unix).
pub fn verify_response(response: &[u8], dnskeys: &[Vec<u8>], now: u64) -> Result<Verified, String> {
    let msg = Message::from_vec(response).map_err(|e| format!("response does not parse: {e}"))?;
    let keys: Vec<DNSKEY> = dnskeys.iter().filter_map(|k| dnskey_of(k)).collect();
    let mut out = Verified::default();
    let now = now as u32;
    check_section("answer", &msg.answers, &keys, now, &mut out)?;
    check_section("authority", &msg.authorities, &keys, now, &mut out)?;
    check_section("additional", &msg.additionals, &keys, now, &mut out)?;
    Ok(out)
}
