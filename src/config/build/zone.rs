//! Building one zone of the model from its validated spec: RRsets are grouped by owner into
//! the node table, additional data and glue are pre-encoded, and the DNS rules that span
//! records (CNAME alone, data below a cut, NS at the apex) are checked.
//!
//! ```text
//! RecordTable (owner keys, encoded records, one entry per RRset, file order)
//!   --group by owner (hash table of node numbers)--> node of each RRset
//!   --counting sort--> each node's RRsets together
//!   --checks--> errors with the RRsets' key paths, or
//!   --copy in node order (+ additional data, SOA at the apex)--> Nodes --> Zone
//! ```
//! The temporaries are a few integers per RRset; the records are copied once, straight into
//! the model's arenas.

use std::hash::Hasher as _;

use hashbrown::HashTable;
use hickory_proto::rr::{RData, RecordType};
use rustc_hash::FxHasher;

use crate::config::zone::{SetSpec, rdata_into, records};
use crate::config::{ConfigError, FileSpec, ZoneSpec};
use crate::model::{Nodes, OwnedRRset, Zone};
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

fn hash(key: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key);
    h.finish()
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
    let rt = &z.records;
    let sets = &rt.sets;

    // Group RRsets by owner: node numbers in order of first appearance.
    let mut first: Vec<u32> = Vec::new(); // first RRset of each node (its owner key)
    let mut node_of: Vec<u32> = Vec::with_capacity(sets.len());
    let mut index: HashTable<u32> = HashTable::new();
    let owner_of = |n: u32, first: &[u32]| rt.owner(&sets[first[n as usize] as usize]);
    for (i, s) in sets.iter().enumerate() {
        let key = rt.owner(s);
        let h = hash(key);
        let n = match index.find(h, |&n| owner_of(n, &first) == key) {
            Some(&n) => n,
            None => {
                let n = first.len() as u32;
                first.push(i as u32);
                index.insert_unique(h, n, |&m| hash(owner_of(m, &first)));
                n
            }
        };
        node_of.push(n);
    }
    let find = |key: &[u8]| {
        index
            .find(hash(key), |&n| owner_of(n, &first) == key)
            .copied()
    };
    // Each node's RRsets together, in file order: a counting sort.
    let nodes = first.len();
    let mut range = vec![0u32; nodes + 1];
    for &n in &node_of {
        range[n as usize + 1] += 1;
    }
    for i in 0..nodes {
        range[i + 1] += range[i];
    }
    let mut order = vec![0u32; sets.len()];
    let mut fill = range.clone();
    for (i, &n) in node_of.iter().enumerate() {
        order[fill[n as usize] as usize] = i as u32;
        fill[n as usize] += 1;
    }
    drop((node_of, fill));
    let sets_of = |n: usize| {
        order[range[n] as usize..range[n + 1] as usize]
            .iter()
            .map(|&i| &sets[i as usize])
    };

    let apex_node = find(&apex);
    if !apex_node.is_some_and(|n| sets_of(n as usize).any(|s| s.rtype == TYPE_NS)) {
        err(
            errs,
            "records.\"@\".NS",
            "is required: a zone needs its name servers at the apex".into(),
        );
    }
    // Zone cuts: owners below the apex with NS. Whether a name is below one is a lookup of
    // each of its ancestors, so many delegations stay linear.
    let cut: Vec<bool> = (0..nodes)
        .map(|n| Some(n as u32) != apex_node && sets_of(n).any(|s| s.rtype == TYPE_NS))
        .collect();
    let has_cuts = cut.iter().any(|&c| c);
    let below_cut = |key: &[u8]| {
        has_cuts
            && ancestors(key)
                .take_while(|a| a.len() > apex.len())
                .any(|a| find(a).is_some_and(|n| cut[n as usize]))
    };

    for (n, &is_cut) in cut.iter().enumerate().take(nodes) {
        let key = owner_of(n as u32, &first);
        let mut seen: Vec<&SetSpec> = Vec::new();
        for s in sets_of(n) {
            if let Some(prev) = seen.iter().find(|p| p.rtype == s.rtype) {
                err(
                    errs,
                    &rt.path(s),
                    format!(
                        "{} is already defined at {}",
                        RecordType::from(s.rtype),
                        rt.path(prev)
                    ),
                );
                continue;
            }
            seen.push(s);
        }
        if let Some(cs) = seen.iter().find(|s| s.rtype == TYPE_CNAME) {
            if Some(n as u32) == apex_node {
                err(
                    errs,
                    &rt.path(cs),
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
                    &rt.path(cs),
                    format!(
                        "a name with a CNAME can hold no other data (also has {})",
                        others.join(", ")
                    ),
                );
            }
        }
        if below_cut(key) {
            for s in &seen {
                if s.rtype != TYPE_A && s.rtype != TYPE_AAAA {
                    err(
                        errs,
                        &rt.path(s),
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
                    &rt.path(s),
                    "DS belongs at a delegation point (a name below the apex with NS)".into(),
                );
            }
        }
        if is_cut {
            for s in &seen {
                if !matches!(s.rtype, TYPE_NS | TYPE_A | TYPE_AAAA | TYPE_DS) {
                    err(
                        errs,
                        &rt.path(s),
                        "is at a delegation point (NS below the apex): the data belongs in the child zone".into(),
                    );
                }
            }
        }
    }
    if errs.len() > start_errs {
        return None;
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
    let soa_rr = OwnedRRset::encode(TYPE_SOA, soa.ttl, std::slice::from_ref(&soa_wire));
    let soa_negative = OwnedRRset::encode(TYPE_SOA, negative_ttl, std::slice::from_ref(&soa_wire));

    // The model: each node with its RRsets (and, at the apex, the SOA), in order of first
    // appearance; then the empty non-terminals above them.
    let mut table = Nodes::with_capacity(
        nodes,
        sets.len() + 1,
        rt.names.len(),
        rt.wire.len() + soa_rr.wire.len(),
    );
    let mut extra = Vec::new();
    let mut lowered = [0u8; 256];
    let mut record_count = 0;
    for (n, &is_cut) in cut.iter().enumerate().take(nodes) {
        let key = owner_of(n as u32, &first);
        let cname = sets_of(n)
            .find(|s| s.rtype == TYPE_CNAME)
            .and_then(|s| rt.rdata(s).next())
            .and_then(|r| target(TYPE_CNAME, r))
            .map(|t| lower(t, &mut lowered).to_vec());
        table.push_node(key, is_cut, cname.as_deref());
        for s in sets_of(n) {
            record_count += usize::from(s.count);
            // Additional data: the in-zone addresses of the names NS, MX and SRV records
            // point to (glue under a delegation), as full records with the target's name.
            extra.clear();
            let mut count = 0u16;
            if matches!(s.rtype, TYPE_NS | TYPE_MX | TYPE_SRV) {
                for r in rt.rdata(s) {
                    let Some(t) = target(s.rtype, r) else {
                        continue;
                    };
                    let Some(tn) = find(lower(t, &mut lowered)) else {
                        continue;
                    };
                    for a in sets_of(tn as usize).filter(|a| matches!(a.rtype, TYPE_A | TYPE_AAAA))
                    {
                        for rec in records(a.wire.of(&rt.wire)) {
                            extra.extend_from_slice(t);
                            extra.extend_from_slice(rec);
                            count = count.saturating_add(1);
                        }
                    }
                }
            }
            table.push_rrset(s.rtype, s.count, s.wire.of(&rt.wire), &extra, count);
        }
        if Some(n as u32) == apex_node {
            table.push_rrset(TYPE_SOA, 1, &soa_rr.wire, &[], 0);
        }
    }
    for n in 0..nodes {
        add_empty_ancestors(&mut table, owner_of(n as u32, &first), apex.len());
    }

    Some(Zone {
        origin: z.origin.clone(),
        file: f.file.clone(),
        serial: soa.serial,
        apex,
        soa: soa_rr,
        soa_negative,
        has_cuts,
        nodes: table,
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
