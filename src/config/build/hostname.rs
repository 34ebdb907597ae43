//! Hostname targets at build time: every target name once (datacenter `target`s and `ALIAS`
//! records), and where its addresses come from. A name inside the zones we serve is answered
//! from them now (following CNAMEs and ALIASes there), so nothing about it is resolved at run
//! time; a name outside (or below a delegation) is left to the resolver.
//!
//! What can be seen here is refused here: a flattened target or an ALIAS that leads to a GSLB
//! name we serve (answering it would need a client to decide for), a chain that loops, a name
//! in our zones that does not exist or has no address.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rustc_hash::FxHashMap;

use crate::config::ConfigError;
use crate::limits::MAX_CNAME_CHAIN;
use crate::model::{Hostname, HostnameId, Lookup, Zone};
use crate::rr::{TYPE_A, TYPE_AAAA, TYPE_CNAME, put_name, wire_key};

/// Who uses a hostname, for error messages and for what is allowed.
#[derive(Clone, Debug)]
pub(super) struct Use {
    pub host: HostnameId,
    /// The datacenter, for a datacenter's target.
    pub dc: Option<u32>,
    pub file: PathBuf,
    pub path: String,
    /// Answered with the target's addresses (a flattened datacenter or an ALIAS), not only
    /// pointed to by a CNAME.
    pub flattened: bool,
}

/// The hostnames of a build.
#[derive(Debug, Default)]
pub(super) struct Hosts {
    pub list: Vec<Hostname>,
    by_key: FxHashMap<Box<[u8]>, u32>,
    pub uses: Vec<Use>,
}

impl Hosts {
    /// The id of `name`, added on first sight.
    pub(super) fn add(&mut self, name: &Name) -> HostnameId {
        let key = wire_key(name);
        if let Some(&i) = self.by_key.get(&key) {
            return HostnameId(i);
        }
        let i = self.list.len() as u32;
        let mut rdata = Vec::with_capacity(key.len());
        put_name(&mut rdata, name, false);
        self.list.push(Hostname {
            name: name.clone(),
            key: key.clone(),
            rdata: rdata.into(),
            lookup: Lookup::Remote(crate::resolve::key_of(name).into()),
        });
        self.by_key.insert(key, i);
        HostnameId(i)
    }

    /// Records a use of `host` (by datacenter `dc`, or by an ALIAS).
    pub(super) fn used(
        &mut self,
        host: HostnameId,
        dc: Option<u32>,
        file: &Path,
        path: &str,
        flattened: bool,
    ) {
        self.uses.push(Use {
            host,
            dc,
            file: file.to_path_buf(),
            path: path.to_string(),
            flattened,
        });
    }

    /// Datacenter `dc` is answered flattened by some GSLB name.
    pub(super) fn flatten_dc(&mut self, dc: u32) {
        for u in &mut self.uses {
            if u.dc == Some(dc) {
                u.flattened = true;
            }
        }
    }

    /// Works out every hostname's lookup against the built zones and reports what cannot
    /// work, at each use.
    pub(super) fn resolve(
        &mut self,
        zones: &[Zone],
        zone_by_apex: &FxHashMap<Box<[u8]>, u32>,
        errs: &mut Vec<ConfigError>,
    ) {
        let walked: Vec<Result<Lookup, String>> = self
            .list
            .iter()
            .map(|h| walk(zones, zone_by_apex, &self.list, h))
            .collect();
        for (i, r) in walked.into_iter().enumerate() {
            let name = self.list[i].name.to_string();
            match r {
                Ok(lookup) => {
                    if let Lookup::Gslb(_) = lookup {
                        for u in self
                            .uses
                            .iter()
                            .filter(|u| u.host.0 as usize == i && u.flattened)
                        {
                            errs.push(ConfigError {
                                file: u.file.clone(),
                                path: u.path.clone(),
                                message: format!(
                                    "{name} is a GSLB name served here: its addresses depend on the client, so it cannot be flattened or aliased (answer it as a CNAME with flatten = false, or use its datacenters here)"
                                ),
                            });
                        }
                    }
                    self.list[i].lookup = lookup;
                }
                Err(why) => {
                    for u in self.uses.iter().filter(|u| u.host.0 as usize == i) {
                        errs.push(ConfigError {
                            file: u.file.clone(),
                            path: u.path.clone(),
                            message: format!("{name}: {why}"),
                        });
                    }
                }
            }
        }
    }
}

impl Hosts {
    /// CNAME answers that can lead back to where they started: a GSLB name answering a CNAME
    /// to a target that is (or leads through static CNAMEs to) a GSLB name that can answer a
    /// CNAME back. Reported at the datacenter whose target closes the loop.
    pub(super) fn cname_loops(
        &self,
        gslb: &[crate::model::GslbEntry],
        dcs: &crate::model::Datacenters,
        errs: &mut Vec<ConfigError>,
    ) {
        // Edges: name -> (datacenter, name its target leads to).
        let edges: Vec<Vec<(u32, u32)>> = gslb
            .iter()
            .map(|e| {
                if !e.cname {
                    return Vec::new();
                }
                let mut v: Vec<(u32, u32)> = e
                    .def
                    .pools
                    .iter()
                    .flat_map(|p| p.members.iter())
                    .filter_map(|m| {
                        let h = dcs.list.get(m.dc.0 as usize)?.target?;
                        match self.list.get(h.0 as usize)?.lookup {
                            Lookup::Gslb(g) => Some((m.dc.0, g)),
                            _ => None,
                        }
                    })
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        let mut reported = Vec::new();
        for start in 0..gslb.len() {
            // Depth-first from `start`, looking for a way back to it.
            let mut stack: Vec<(u32, Vec<u32>)> = vec![(start as u32, vec![start as u32])];
            while let Some((at, path)) = stack.pop() {
                for &(dc, next) in &edges[at as usize] {
                    if next as usize == start {
                        if reported.contains(&dc) {
                            continue;
                        }
                        reported.push(dc);
                        let chain: Vec<String> = path
                            .iter()
                            .chain(std::iter::once(&next))
                            .map(|g| gslb[*g as usize].owner.to_string())
                            .collect();
                        let name = &dcs.list[dc as usize].name;
                        if let Some(u) = self.uses.iter().find(|u| u.dc == Some(dc)) {
                            errs.push(ConfigError {
                                file: u.file.clone(),
                                path: u.path.clone(),
                                message: format!(
                                    "datacenter {name}: its CNAME answers can loop: {}",
                                    chain.join(" -> ")
                                ),
                            });
                        }
                    } else if !path.contains(&next) && path.len() <= MAX_CNAME_CHAIN {
                        let mut p = path.clone();
                        p.push(next);
                        stack.push((next, p));
                    }
                }
            }
        }
    }
}

/// The zone holding `key` (longest match) and the number of labels above its apex.
fn zone_of<'z>(
    zones: &'z [Zone],
    by_apex: &FxHashMap<Box<[u8]>, u32>,
    key: &[u8],
) -> Option<&'z Zone> {
    let mut off = 0usize;
    loop {
        if let Some(&z) = by_apex.get(&key[off..]) {
            return zones.get(z as usize);
        }
        if off >= key.len() || key[off] == 0 {
            return None;
        }
        off += 1 + key[off] as usize;
    }
}

/// Follows `h` through our zones. `Ok(Remote)` when it leaves them (or meets a delegation).
fn walk(
    zones: &[Zone],
    by_apex: &FxHashMap<Box<[u8]>, u32>,
    hosts: &[Hostname],
    h: &Hostname,
) -> Result<Lookup, String> {
    let mut key: Box<[u8]> = h.key.clone();
    let mut ttl = u32::MAX;
    for _ in 0..=MAX_CNAME_CHAIN {
        let Some(zone) = zone_of(zones, by_apex, &key) else {
            return Ok(Lookup::Remote(name_of(&key)?));
        };
        // At or below a delegation in this zone: the child's servers answer, not us.
        let delegated = crate::rr::ancestors(&key)
            .take_while(|a| a.len() > zone.apex.len())
            .chain(std::iter::once(&key[..]))
            .any(|a| a.len() > zone.apex.len() && zone.node(a).is_some_and(|n| n.cut));
        if delegated {
            return Ok(Lookup::Remote(name_of(&key)?));
        }
        let node = match zone.node(&key) {
            Some(n) => n,
            None => {
                // RFC 4592: the wildcard at the closest encloser.
                let ce = crate::rr::ancestors(&key)
                    .find(|a| zone.node(a).is_some())
                    .unwrap_or(&zone.apex);
                let mut wild = vec![1u8, b'*'];
                wild.extend_from_slice(ce);
                match zone.node(&wild) {
                    Some(n) => n,
                    None => {
                        return Err(format!(
                            "does not exist (NXDOMAIN in the zone {} served here)",
                            zone.origin
                        ));
                    }
                }
            }
        };
        if let Some(g) = node.gslb {
            return Ok(Lookup::Gslb(g));
        }
        if let Some(a) = node.alias {
            ttl = ttl.min(a.ttl);
            let target = &hosts[a.target.0 as usize];
            key = target.key.clone();
            continue;
        }
        if let Some(target) = &node.cname {
            if let Some(rr) = node.rrset(TYPE_CNAME) {
                ttl = ttl.min(rr.ttl);
            }
            key = target.clone();
            continue;
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for rr in &node.rrsets {
            if rr.rtype != TYPE_A && rr.rtype != TYPE_AAAA {
                continue;
            }
            ttl = ttl.min(rr.ttl);
            let mut at = 0;
            while at + 10 <= rr.wire.len() {
                let rdlen = u16::from_be_bytes([rr.wire[at + 8], rr.wire[at + 9]]) as usize;
                let rdata = &rr.wire[at + 10..at + 10 + rdlen];
                match rdata.len() {
                    4 => v4.push(Ipv4Addr::from(
                        <[u8; 4]>::try_from(rdata).unwrap_or_default(),
                    )),
                    16 => v6.push(Ipv6Addr::from(
                        <[u8; 16]>::try_from(rdata).unwrap_or_default(),
                    )),
                    _ => {}
                }
                at += 10 + rdlen;
            }
        }
        if v4.is_empty() && v6.is_empty() {
            return Err(format!(
                "has no A or AAAA record in the zone {} served here",
                zone.origin
            ));
        }
        return Ok(Lookup::Local { v4, v6, ttl });
    }
    Err(format!(
        "leads into a loop (or a chain of more than {MAX_CNAME_CHAIN} CNAMEs and ALIASes) in the zones served here"
    ))
}

/// The lower-cased, fully qualified text of a wire name.
fn name_of(key: &[u8]) -> Result<Arc<str>, String> {
    let mut d = BinDecoder::new(key);
    let n = Name::read(&mut d).map_err(|e| format!("bad name: {e}"))?;
    Ok(crate::resolve::key_of(&n).into())
}
