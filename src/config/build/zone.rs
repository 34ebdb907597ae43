//! Building one zone of the model from its validated spec: RRsets are grouped by owner into
//! the node table, additional data and glue are pre-encoded, and the DNS rules that span
//! records (CNAME alone, data below a cut, NS at the apex) are checked.
//!
//! ```text
//! RecordTable (owner keys, encoded records, one entry per RRset, file order)
//!   --names and records arenas moved, not copied--> Nodes (the model's arenas)
//!   --group by owner (the model's own index)--> name number of each RRset
//!   --(a name written under two keys apart: a stable sort)--> each name's RRsets together
//!   --checks--> errors with the RRsets' key paths, or
//!   --CNAME targets, additional data; RRset entries converted in place, SOA at the apex--> Zone
//! ```
//! A reload of a big zone holds the old model and one copy of the new records: the specs'
//! arenas become the model's (issue 9: the copy from specs to model made the reload peak
//! 2.65x the steady size). Temporaries: the additional data's place for each NS, MX and SRV
//! RRset, and only for a name written under two keys apart, a sorted copy of the RRsets.

use hickory_proto::rr::{RData, RecordType};

use crate::config::zone::{RecordTable, SetSpec, rdata_into, records, set_path};
use crate::config::{ConfigError, FileSpec, ZoneSpec};
use crate::model::{Nodes, OwnedRRset, RRsetEntry, Span, Zone};
use crate::rr::{
    TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_DS, TYPE_MX, TYPE_NS, TYPE_SOA, TYPE_SRV, ancestors,
    wire_key,
};

/// RDATA in wire form, names inside uncompressed (each RRset is encoded on its own).
pub(crate) fn rdata_wire(rdata: &RData) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(64);
    rdata_into(rdata, &mut buf)?;
    Ok(buf)
}

/// The uncompressed wire name at the start of `b`, if it is one.
fn name_at(b: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    loop {
        let l = usize::from(*b.get(at)?);
        if l == 0 {
            return b.get(..at + 1);
        }
        if l > 63 {
            return None;
        }
        at += 1 + l;
    }
}

/// The name an RRset's record points to for additional data: NS, MX and SRV targets, and
/// the CNAME target (offset of the name in the RDATA by type).
fn target(rtype: u16, rdata: &[u8]) -> Option<&[u8]> {
    let skip = match rtype {
        TYPE_NS | TYPE_CNAME => 0,
        TYPE_MX => 2,
        TYPE_SRV => 6,
        _ => return None,
    };
    name_at(rdata.get(skip..)?)
}

/// `name` lower-cased into `buf`.
fn lower<'a>(name: &[u8], buf: &'a mut [u8; 256]) -> &'a [u8] {
    let n = name.len().min(256);
    for (d, s) in buf[..n].iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..n]
}

/// Builds the zone of one file from its records (taken from its spec); errors name the file
/// and the key path.
pub(crate) fn build_zone(
    f: &FileSpec,
    z: &ZoneSpec,
    table: RecordTable,
    errs: &mut Vec<ConfigError>,
) -> Option<Zone> {
    let err = |errs: &mut Vec<ConfigError>, path: &str, message: String| {
        errs.push(ConfigError {
            file: f.file.clone(),
            path: path.to_string(),
            message,
        })
    };
    let start_errs = errs.len();
    let apex = wire_key(&z.origin);
    let RecordTable {
        names,
        wire,
        keys,
        sets,
    } = table;
    let mut sets = sets;
    // Room for the apex's RRsets to move to the end of the table with the SOA (and the key
    // RRsets of a signed zone): the RRset entries are converted in place, and growing them
    // there would copy the whole table.
    let at_apex = sets
        .iter()
        .filter(|s| s.owner.of(&names) == &apex[..])
        .count();
    sets.reserve(at_apex + 4);
    // A name's RRsets are mostly written together: owner changes along the list count the
    // names (at least; a name written under two keys apart counts twice).
    let owners = 1 + sets.windows(2).filter(|w| w[0].owner != w[1].owner).count();

    // Group RRsets by owner: the names of the model, numbered in order of first appearance,
    // their keys where the specs put them.
    let mut nodes = Nodes::over(names, wire, owners);
    let path = |s: &SetSpec, nodes: &Nodes| set_path(&keys, nodes.names(), apex.len(), s);
    let mut grouped = true;
    for (i, s) in sets.iter().enumerate() {
        match nodes.add_at(s.owner) {
            Ok(n) => nodes.set_rrsets_of(n, i, 1),
            Err(n) if n as usize + 1 == nodes.len() => {
                let r = nodes.rrsets_of(n);
                if r.len() == usize::from(u16::MAX) {
                    // Only the same types again can make that many: reported by the sort path.
                    grouped = false;
                    break;
                }
                nodes.set_rrsets_of(n, r.start, r.len() + 1);
            }
            Err(_) => {
                grouped = false;
                break;
            }
        }
    }
    // A name written under two keys apart (`www` and `"www.example.com."`): its RRsets are
    // brought together by a stable sort on name numbers (in order of first appearance).
    let sets = if grouped {
        sets
    } else {
        let mut keyed: Vec<(u32, SetSpec)> = sets
            .into_iter()
            .map(|s| (nodes.add_at(s.owner).unwrap_or_else(|n| n), s))
            .collect();
        keyed.sort_by_key(|&(n, _)| n);
        let mut at = 0;
        for run in keyed.chunk_by(|a, b| a.0 == b.0) {
            if run.len() > usize::from(u16::MAX) {
                err(
                    errs,
                    &path(&run[0].1, &nodes),
                    format!("has {} RRsets under one name (at most 65535)", run.len()),
                );
                return None;
            }
            nodes.set_rrsets_of(run[0].0, at, run.len());
            at += run.len();
        }
        keyed.into_iter().map(|(_, s)| s).collect()
    };
    let count = nodes.len();
    let sets_of = |n: u32, nodes: &Nodes| &sets[nodes.rrsets_of(n)];

    let apex_node = nodes.number(&apex);
    if !apex_node.is_some_and(|n| sets_of(n, &nodes).iter().any(|s| s.rtype == TYPE_NS)) {
        err(
            errs,
            "records.\"@\".NS",
            "is required: a zone needs its name servers at the apex".into(),
        );
    }
    // Zone cuts: owners below the apex with NS. Whether a name is below one is a lookup of
    // each of its ancestors, so many delegations stay linear.
    let mut has_cuts = false;
    for n in 0..count as u32 {
        let cut = Some(n) != apex_node && sets_of(n, &nodes).iter().any(|s| s.rtype == TYPE_NS);
        if cut {
            nodes.set_cut(n);
            has_cuts = true;
        }
    }
    let below_cut = |key: &[u8]| {
        has_cuts
            && ancestors(key)
                .take_while(|a| a.len() > apex.len())
                .any(|a| nodes.number(a).is_some_and(|n| nodes.is_cut(n)))
    };

    for n in 0..count as u32 {
        let is_cut = nodes.is_cut(n);
        let mut seen: Vec<&SetSpec> = Vec::new();
        for s in sets_of(n, &nodes) {
            if let Some(prev) = seen.iter().find(|p| p.rtype == s.rtype) {
                err(
                    errs,
                    &path(s, &nodes),
                    format!(
                        "{} is already defined at {}",
                        RecordType::from(s.rtype),
                        path(prev, &nodes)
                    ),
                );
                continue;
            }
            seen.push(s);
        }
        if let Some(cs) = seen.iter().find(|s| s.rtype == TYPE_CNAME) {
            if Some(n) == apex_node {
                err(
                    errs,
                    &path(cs, &nodes),
                    "a CNAME cannot be at the zone apex (it would hide SOA and NS)".into(),
                );
            } else if seen.len() > 1 {
                let others: Vec<String> = seen
                    .iter()
                    .filter(|s| s.rtype != TYPE_CNAME)
                    .map(|s| RecordType::from(s.rtype).to_string())
                    .collect();
                err(
                    errs,
                    &path(cs, &nodes),
                    format!(
                        "a name with a CNAME can hold no other data (also has {})",
                        others.join(", ")
                    ),
                );
            }
        }
        if below_cut(nodes.key(n)) {
            for s in &seen {
                if s.rtype != TYPE_A && s.rtype != TYPE_AAAA {
                    err(
                        errs,
                        &path(s, &nodes),
                        "is below a delegation (NS) in this zone: only glue A/AAAA may be there"
                            .into(),
                    );
                }
            }
        }
        if !is_cut {
            for s in seen.iter().filter(|s| s.rtype == TYPE_DS) {
                err(
                    errs,
                    &path(s, &nodes),
                    "DS belongs at a delegation point (a name below the apex with NS)".into(),
                );
            }
        }
        if is_cut {
            for s in &seen {
                if !matches!(s.rtype, TYPE_NS | TYPE_A | TYPE_AAAA | TYPE_DS) {
                    err(
                        errs,
                        &path(s, &nodes),
                        "is at a delegation point (NS below the apex): the data belongs in the child zone".into(),
                    );
                }
            }
        }
    }
    if errs.len() > start_errs {
        return None;
    }
    drop(keys);

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
    let soa_rr = OwnedRRset::encode(TYPE_SOA, soa.ttl, std::slice::from_ref(&soa_wire));
    let soa_negative = OwnedRRset::encode(TYPE_SOA, negative_ttl, std::slice::from_ref(&soa_wire));

    // CNAME targets and additional data: the in-zone addresses of the names NS, MX and SRV
    // records point to (glue under a delegation), as full records with the target's name.
    let mut extra = Vec::new();
    let mut additional: Vec<(u32, Span, u16)> = Vec::new(); // (RRset, records, how many)
    let mut lowered = [0u8; 256];
    let mut record_count = 0;
    for n in 0..count as u32 {
        let here = nodes.rrsets_of(n);
        let cname = sets[here.clone()]
            .iter()
            .find(|s| s.rtype == TYPE_CNAME)
            .and_then(|s| records(s.wire.of(nodes.data())).next())
            .and_then(|r| target(TYPE_CNAME, &r[10..]))
            .map(|t| lower(t, &mut lowered).len());
        if let Some(len) = cname {
            nodes.set_cname(n, &lowered[..len]);
        }
        for (i, s) in sets.iter().enumerate().take(here.end).skip(here.start) {
            record_count += usize::from(s.count);
            if !matches!(s.rtype, TYPE_NS | TYPE_MX | TYPE_SRV) {
                continue;
            }
            extra.clear();
            let mut found = 0u16;
            for r in records(s.wire.of(nodes.data())) {
                let Some(t) = target(s.rtype, &r[10..]) else {
                    continue;
                };
                let Some(tn) = nodes.number(lower(t, &mut lowered)) else {
                    continue;
                };
                for a in sets_of(tn, &nodes)
                    .iter()
                    .filter(|a| matches!(a.rtype, TYPE_A | TYPE_AAAA))
                {
                    for rec in records(a.wire.of(nodes.data())) {
                        extra.extend_from_slice(t);
                        extra.extend_from_slice(rec);
                        found = found.saturating_add(1);
                    }
                }
            }
            additional.push((i as u32, nodes.push_extra(&extra), found));
        }
    }

    // The specs' RRsets become the model's in place (the same size: no second table).
    let mut additional = additional.into_iter().peekable();
    let rrsets: Vec<RRsetEntry> = sets
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (additional, additional_count) = additional
                .next_if(|a| a.0 == i as u32)
                .map_or((Span::default(), 0), |a| (a.1, a.2));
            RRsetEntry {
                rtype: s.rtype,
                count: s.count,
                wire: s.wire,
                additional,
                additional_count,
                sig: 0,
            }
        })
        .collect();
    nodes.set_rrsets(rrsets);
    // The SOA joins the apex's RRsets (moved to the end of the table to stay together).
    nodes.replace_rrsets(&apex, std::slice::from_ref(&soa_rr));
    let mut key = [0u8; 256];
    for n in 0..count as u32 {
        let k = nodes.key(n);
        let len = k.len().min(256);
        key[..len].copy_from_slice(&k[..len]);
        add_empty_ancestors(&mut nodes, &key[..len], apex.len());
    }

    Some(Zone {
        origin: z.origin.clone(),
        file: f.file.clone(),
        serial: soa.serial,
        apex,
        soa: soa_rr,
        soa_negative,
        has_cuts,
        nodes,
        record_count: record_count + 1,
        gslb_count: 0,
        dnssec: None,
    })
}

/// Empty non-terminals between an owner and the apex exist (NODATA, not NXDOMAIN): adds
/// every ancestor of `key` longer than the apex as an empty node where none is.
pub(crate) fn add_empty_ancestors(nodes: &mut Nodes, key: &[u8], apex_len: usize) {
    for anc in ancestors(key) {
        if anc.len() <= apex_len {
            break;
        }
        nodes.ensure(anc);
    }
}
