//! Building one zone of the model from its validated spec: names become lower-cased wire
//! keys, RRsets are pre-encoded, additional data and glue are pre-encoded, and the DNS rules
//! that span records (CNAME alone, data below a cut, NS at the apex) are checked.

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use rustc_hash::FxHashMap;

use crate::config::{ConfigError, FileSpec, RecordSpec, ZoneSpec};
use crate::model::{Node, RRset, Zone};
use crate::rr::{TYPE_SOA, ancestors, is_below, put_name, wire_key};

/// RDATA in wire form, names inside uncompressed (each RRset is encoded on its own).
pub(crate) fn rdata_wire(rdata: &RData) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    rdata
        .emit(&mut enc)
        .map_err(|e| format!("cannot encode {rdata}: {e}"))?;
    Ok(buf)
}

/// Builds the zone of one file; errors name the file and the key path.
pub(crate) fn build_zone(f: &FileSpec, z: &ZoneSpec, errs: &mut Vec<ConfigError>) -> Option<Zone> {
    let err = |errs: &mut Vec<ConfigError>, path: &str, message: String| {
        errs.push(ConfigError {
            file: f.file.clone(),
            path: path.to_string(),
            message,
        })
    };
    let start_errs = errs.len();
    let apex = wire_key(&z.origin);

    // Gather RRsets per owner (lower-cased), keeping the spelling of the first occurrence.
    struct Pending<'a> {
        sets: Vec<(&'a RecordSpec, Vec<Vec<u8>>)>,
    }
    let mut pending: FxHashMap<Box<[u8]>, Pending<'_>> = FxHashMap::default();
    let mut order: Vec<Box<[u8]>> = Vec::new();
    for rs in &z.records {
        let key = wire_key(&rs.owner);
        let p = pending.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Pending { sets: Vec::new() }
        });
        if let Some((prev, _)) = p.sets.iter().find(|(s, _)| s.rtype == rs.rtype) {
            err(
                errs,
                &rs.path,
                format!("{} is already defined at {}", rs.rtype, prev.path),
            );
            continue;
        }
        let mut values: Vec<Vec<u8>> = Vec::with_capacity(rs.values.len());
        for v in &rs.values {
            match rdata_wire(v) {
                Ok(w) if !values.contains(&w) => values.push(w),
                Ok(_) => {}
                Err(e) => err(errs, &rs.path, e),
            }
        }
        p.sets.push((rs, values));
    }

    let apex_types: Vec<RecordType> = pending
        .get(&apex)
        .map(|p| p.sets.iter().map(|(s, _)| s.rtype).collect())
        .unwrap_or_default();
    if !apex_types.contains(&RecordType::NS) {
        err(
            errs,
            "records.\"@\".NS",
            "is required: a zone needs its name servers at the apex".into(),
        );
    }

    // Zone cuts: owners below the apex with NS.
    let cuts: Vec<Box<[u8]>> = order
        .iter()
        .filter(|k| {
            k[..] != apex[..]
                && pending[*k]
                    .sets
                    .iter()
                    .any(|(s, _)| s.rtype == RecordType::NS)
        })
        .cloned()
        .collect();
    let below_cut = |k: &[u8]| cuts.iter().any(|c| is_below(k, c));

    for k in &order {
        let p = &pending[k];
        let has_cname = p.sets.iter().find(|(s, _)| s.rtype == RecordType::CNAME);
        if let Some((cs, _)) = has_cname {
            if k[..] == apex[..] {
                err(
                    errs,
                    &cs.path,
                    "a CNAME cannot be at the zone apex (it would hide SOA and NS)".into(),
                );
            } else if p.sets.len() > 1 {
                let others: Vec<String> = p
                    .sets
                    .iter()
                    .filter(|(s, _)| s.rtype != RecordType::CNAME)
                    .map(|(s, _)| s.rtype.to_string())
                    .collect();
                err(
                    errs,
                    &cs.path,
                    format!(
                        "a name with a CNAME can hold no other data (also has {})",
                        others.join(", ")
                    ),
                );
            }
        }
        if below_cut(k) {
            for (s, _) in &p.sets {
                if s.rtype != RecordType::A && s.rtype != RecordType::AAAA {
                    err(
                        errs,
                        &s.path,
                        "is below a delegation (NS) in this zone: only glue A/AAAA may be there"
                            .into(),
                    );
                }
            }
        }
        if !cuts.contains(k) {
            for (s, _) in p.sets.iter().filter(|(s, _)| s.rtype == RecordType::DS) {
                err(
                    errs,
                    &s.path,
                    "DS belongs at a delegation point (a name below the apex with NS)".into(),
                );
            }
        }
        if cuts.contains(k) {
            for (s, _) in &p.sets {
                if !matches!(
                    s.rtype,
                    RecordType::NS | RecordType::A | RecordType::AAAA | RecordType::DS
                ) {
                    err(errs, &s.path, "is at a delegation point (NS below the apex): the data belongs in the child zone".into());
                }
            }
        }
    }
    if errs.len() > start_errs {
        return None;
    }

    // Addresses of in-zone names, for additional data and glue.
    let addresses_of = |target: &Name| -> (Vec<u8>, u16) {
        let mut out = Vec::new();
        let mut n = 0u16;
        if let Some(p) = pending.get(&wire_key(target)) {
            for (s, vals) in &p.sets {
                if s.rtype == RecordType::A || s.rtype == RecordType::AAAA {
                    let rr = RRset::encode(u16::from(s.rtype), s.ttl, vals);
                    let mut off = 0;
                    for v in vals {
                        put_name(&mut out, target, false);
                        let len = 10 + v.len();
                        out.extend_from_slice(&rr.wire[off..off + len]);
                        off += len;
                        n += 1;
                    }
                }
            }
        }
        (out, n)
    };

    let mut nodes: FxHashMap<Box<[u8]>, Node> = FxHashMap::default();
    let mut record_count = 0;
    for k in &order {
        let p = &pending[k];
        let mut node = Node {
            cut: cuts.contains(k),
            ..Default::default()
        };
        for (s, vals) in &p.sets {
            let mut rr = RRset::encode(u16::from(s.rtype), s.ttl, vals);
            record_count += vals.len();
            let targets: Vec<&Name> = s
                .values
                .iter()
                .filter_map(|v| match v {
                    RData::NS(n) => Some(&n.0),
                    RData::MX(mx) => Some(&mx.exchange),
                    RData::SRV(srv) => Some(&srv.target),
                    _ => None,
                })
                .collect();
            let mut add = Vec::new();
            let mut count = 0;
            for t in targets {
                let (bytes, n) = addresses_of(t);
                add.extend_from_slice(&bytes);
                count += n;
            }
            rr.additional = add.into();
            rr.additional_count = count;
            if let Some(RData::CNAME(c)) = s.values.first() {
                node.cname = Some(wire_key(&c.0));
            }
            node.rrsets.push(rr);
        }
        nodes.insert(k.clone(), node);
        add_empty_ancestors(&mut nodes, k, apex.len());
    }

    let soa = &z.soa;
    let soa_rdata = RData::SOA(hickory_proto::rr::rdata::SOA::new(
        soa.mname.clone(),
        soa.rname.clone(),
        soa.serial,
        soa.refresh as i32,
        soa.retry as i32,
        soa.expire as i32,
        soa.minimum,
    ));
    let soa_wire = match rdata_wire(&soa_rdata) {
        Ok(w) => w,
        Err(e) => {
            err(errs, "soa", e);
            return None;
        }
    };
    let negative_ttl = soa.ttl.min(soa.minimum);
    let soa_rr = RRset::encode(TYPE_SOA, soa.ttl, std::slice::from_ref(&soa_wire));
    let soa_negative = RRset::encode(TYPE_SOA, negative_ttl, std::slice::from_ref(&soa_wire));
    nodes
        .entry(apex.clone())
        .or_default()
        .rrsets
        .push(soa_rr.clone());

    Some(Zone {
        origin: z.origin.clone(),
        file: f.file.clone(),
        serial: soa.serial,
        apex,
        soa: soa_rr,
        soa_negative,
        has_cuts: !cuts.is_empty(),
        nodes,
        record_count: record_count + 1,
        gslb_count: 0,
        dnssec: None,
    })
}

/// Empty non-terminals between an owner and the apex exist (NODATA, not NXDOMAIN): inserts
/// every ancestor of `key` longer than the apex as an empty node where none is.
pub(crate) fn add_empty_ancestors(
    nodes: &mut FxHashMap<Box<[u8]>, Node>,
    key: &[u8],
    apex_len: usize,
) {
    for anc in ancestors(key) {
        if anc.len() <= apex_len {
            break;
        }
        nodes.entry(anc.into()).or_default();
    }
}
