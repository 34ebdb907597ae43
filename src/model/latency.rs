//! The latency map as the query path reads it: measured client -> datacenter latencies (for
//! example exported from real-user measurements), resolved against one model's datacenter
//! ids, for the `latency` policy to prefer over the probe EWMA.
//!
//! ```text
//! map file --config::latency_map::parse--> entries (names -> ids of a model)
//!          --LatencyMap::build--> LatencyMap (immutable) --published with its model--> policy
//! ```
//!
//! # Lookup
//!
//! For a client and a datacenter, the most specific entry that has a value for that
//! datacenter: the longest subnet containing the client's address (ECS or resolver address),
//! then the client's country, then its continent (from the GeoIP location). So a subnet
//! entry that measured only some datacenters still takes the others from the country or
//! continent entries instead of mixing in the server's own probe figures. No entry: `None`,
//! and the policy falls back to the probe EWMA.
//!
//! A lookup allocates nothing: subnets sit in sorted tables, one per prefix length and
//! family, searched longest first; countries in a 26x26 array; continents in a 7-slot array.
//! [`LatencyMap::view`] resolves a client once for all the datacenters of a pool.
//!
//! Datacenter ids are those of the model the map was resolved against: the server publishes
//! a map only together with that model (`server::publish`), and re-resolves it whenever the
//! model changes.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::datacenter::DatacenterId;
use crate::geo::{CONTINENTS, Code2, Location};
use crate::net;

/// Which kind of map entry gave a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapLevel {
    /// A subnet entry.
    Subnet,
    /// A country entry.
    Country,
    /// A continent entry.
    Continent,
}

/// Where the `latency` policy took a datacenter's figure from (shown by `explain`; JSON as
/// the [`as_str`](Self::as_str) form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencySource {
    /// The latency map's entry of this level for the client.
    Map(MapLevel),
    /// The probe EWMA (`DcState::latency_ms`).
    Probe,
    /// Neither: the datacenter sorts last.
    Unknown,
}

impl LatencySource {
    /// The source as `explain` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            LatencySource::Map(MapLevel::Subnet) => "map-subnet",
            LatencySource::Map(MapLevel::Country) => "map-country",
            LatencySource::Map(MapLevel::Continent) => "map-continent",
            LatencySource::Probe => "probe",
            LatencySource::Unknown => "unknown",
        }
    }
}

impl Serialize for LatencySource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

const NONE: u32 = u32::MAX;

/// Who a map entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// A subnet.
    Subnet {
        /// Network bits left-aligned in a u128 (IPv4 in the top 32 bits, see `net::bits`).
        net: u128,
        /// Prefix length.
        prefix: u8,
        /// IPv6 or not.
        v6: bool,
    },
    /// A country.
    Country(Code2),
    /// A continent.
    Continent(Code2),
}

/// Networks of one family and one prefix length, sorted by network.
#[derive(Clone, Debug)]
struct Group {
    prefix: u8,
    nets: Vec<(u128, u32)>,
}

/// Client -> datacenter -> milliseconds, resolved against one model's datacenter ids.
#[derive(Clone)]
pub struct LatencyMap {
    path: PathBuf,
    /// Columns per row: the largest datacenter id named in the file, plus one.
    width: usize,
    /// Row-major values; NaN = no entry.
    values: Vec<f64>,
    /// Subnet tables, longest prefix first.
    v4: Vec<Group>,
    v6: Vec<Group>,
    countries: Box<[[u32; 26]; 26]>,
    continents: [u32; 7],
    /// Per datacenter: has a value in some subnet row / some country or continent row.
    in_subnets: Vec<bool>,
    in_geo: Vec<bool>,
    entries: usize,
}

impl fmt::Debug for LatencyMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyMap")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .field(
                "subnets",
                &(self.v4.iter().chain(&self.v6))
                    .map(|g| g.nets.len())
                    .sum::<usize>(),
            )
            .finish_non_exhaustive()
    }
}

fn continent_slot(c: Code2) -> Option<usize> {
    CONTINENTS.iter().position(|k| *k == c)
}

fn country_slot(c: Code2) -> Option<(usize, usize)> {
    (c[0].is_ascii_uppercase() && c[1].is_ascii_uppercase())
        .then(|| (usize::from(c[0] - b'A'), usize::from(c[1] - b'A')))
}

/// Where an entry came from in its file, for messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EntryPos {
    /// 1-based line, when known.
    pub(crate) line: Option<usize>,
    /// TOML key path (`clients."EU".fra`), for TOML files.
    pub(crate) key: Option<String>,
}

impl EntryPos {
    /// `line 4`, or the key, for "the first is at ..." messages.
    pub(crate) fn describe(&self) -> String {
        match (self.line, &self.key) {
            (Some(l), _) => format!("line {l}"),
            (None, Some(k)) => k.clone(),
            (None, None) => "elsewhere".into(),
        }
    }
}

/// One (client, datacenter, milliseconds) value of a map file, with its position.
#[derive(Clone, Debug)]
pub(crate) struct LatencyEntry {
    /// Who the value is for.
    pub(crate) client: ClientKey,
    /// The datacenter, resolved against the model the map is used with.
    pub(crate) dc: DatacenterId,
    /// Milliseconds, finite and >= 0 (the parser checks).
    pub(crate) ms: f64,
    /// Where it was written.
    pub(crate) pos: EntryPos,
}

/// Two values for the same client and datacenter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DuplicateEntry {
    /// The second one.
    pub(crate) pos: EntryPos,
    /// What to tell the operator.
    pub(crate) message: String,
}

impl LatencyMap {
    /// Builds the lookup tables from the entries of the file at `path`.
    pub(crate) fn build(path: &Path, raw: Vec<LatencyEntry>) -> Result<LatencyMap, DuplicateEntry> {
        let width = raw.iter().map(|r| r.dc.0 as usize + 1).max().unwrap_or(0);
        let mut rows: FxHashMap<ClientKey, u32> = FxHashMap::default();
        let mut values: Vec<f64> = Vec::new();
        let mut first_pos: Vec<Option<EntryPos>> = Vec::new();
        let mut in_subnets = vec![false; width];
        let mut in_geo = vec![false; width];
        let mut map = LatencyMap {
            path: path.to_path_buf(),
            width,
            values: Vec::new(),
            v4: Vec::new(),
            v6: Vec::new(),
            countries: Box::new([[NONE; 26]; 26]),
            continents: [NONE; 7],
            in_subnets: Vec::new(),
            in_geo: Vec::new(),
            entries: raw.len(),
        };
        let mut subnets: Vec<(u128, u8, bool, u32)> = Vec::new();
        for r in raw {
            let mut new_row = false;
            let row = *rows.entry(r.client).or_insert_with(|| {
                new_row = true;
                let row = (values.len() / width.max(1)) as u32;
                values.resize(values.len() + width, f64::NAN);
                first_pos.resize(first_pos.len() + width, None);
                row
            });
            let cell = row as usize * width + r.dc.0 as usize;
            if let Some(prev) = &first_pos[cell] {
                return Err(DuplicateEntry {
                    pos: r.pos.clone(),
                    message: format!(
                        "a second value for this client and datacenter (the first is at {})",
                        prev.describe()
                    ),
                });
            }
            first_pos[cell] = Some(r.pos);
            values[cell] = r.ms;
            match r.client {
                ClientKey::Subnet { net, prefix, v6 } => {
                    in_subnets[r.dc.0 as usize] = true;
                    if new_row {
                        subnets.push((net, prefix, v6, row));
                    }
                }
                ClientKey::Country(c) => {
                    in_geo[r.dc.0 as usize] = true;
                    if let Some((a, b)) = country_slot(c) {
                        map.countries[a][b] = row;
                    }
                }
                ClientKey::Continent(c) => {
                    in_geo[r.dc.0 as usize] = true;
                    if let Some(i) = continent_slot(c) {
                        map.continents[i] = row;
                    }
                }
            }
        }
        for v6 in [false, true] {
            let mut groups: Vec<Group> = Vec::new();
            for &(net, prefix, _, row) in subnets.iter().filter(|s| s.2 == v6) {
                match groups.iter_mut().find(|g| g.prefix == prefix) {
                    Some(g) => g.nets.push((net, row)),
                    None => groups.push(Group {
                        prefix,
                        nets: vec![(net, row)],
                    }),
                }
            }
            for g in &mut groups {
                g.nets.sort_unstable();
            }
            groups.sort_by_key(|g| std::cmp::Reverse(g.prefix));
            // Nested subnets: a value missing in a longer subnet comes from the longest
            // enclosing one, so a lookup only needs the longest match. Shortest first, so an
            // enclosing row is complete before the rows inside it copy from it.
            for gi in (0..groups.len()).rev() {
                for ni in 0..groups[gi].nets.len() {
                    let (net, row) = groups[gi].nets[ni];
                    let Some(outer) = groups[gi + 1..]
                        .iter()
                        .find_map(|g| find_in(g, net).map(|(r, _)| r))
                    else {
                        continue;
                    };
                    for c in 0..width {
                        let (i, o) = (row as usize * width + c, outer as usize * width + c);
                        if values[i].is_nan() {
                            values[i] = values[o];
                        }
                    }
                }
            }
            if v6 {
                map.v6 = groups;
            } else {
                map.v4 = groups;
            }
        }
        map.values = values;
        map.in_subnets = in_subnets;
        map.in_geo = in_geo;
        Ok(map)
    }

    /// Number of (client, datacenter) values in the file (the parser's unit tests count them).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// The latency in ms the map gives for the client at `addr` (located at `location`) to
    /// `dc`: the most specific entry with a value for `dc` (subnet, then country, then
    /// continent), or `None`.
    pub fn ms(&self, addr: IpAddr, location: Option<&Location>, dc: DatacenterId) -> Option<f64> {
        let bits = net::bits(addr.to_canonical()).1;
        self.view(addr, bits, location).ms(dc).map(|(v, _)| v)
    }

    /// Resolves a client once, for the lookups of one decision: its address (ECS or
    /// resolver), the ECS source prefix (the full length without ECS) and its location.
    pub(crate) fn view(
        &self,
        addr: IpAddr,
        source_prefix: u8,
        location: Option<&Location>,
    ) -> LatencyView<'_> {
        let (bits, len) = net::bits(addr.to_canonical());
        let groups = if len == 32 { &self.v4 } else { &self.v6 };
        let mut subnet = None;
        let mut subnet_scope = 0u8;
        for g in groups {
            match find_in(g, bits) {
                Some((row, _)) => {
                    subnet = subnet.or(Some(row));
                    subnet_scope = subnet_scope.max(g.prefix);
                }
                None => subnet_scope = subnet_scope.max(near_miss(g, bits, len)),
            }
        }
        let loc = location;
        let country = loc
            .and_then(|l| l.country)
            .and_then(country_slot)
            .map(|(a, b)| self.countries[a][b])
            .filter(|r| *r != NONE);
        let continent = loc
            .and_then(|l| l.continent)
            .and_then(continent_slot)
            .map(|i| self.continents[i])
            .filter(|r| *r != NONE);
        LatencyView {
            map: Some(self),
            rows: [subnet, country, continent],
            subnet_scope,
            geo_scope: loc.map_or(source_prefix, |l| l.prefix_len),
        }
    }

    fn row(&self, row: u32) -> &[f64] {
        let start = row as usize * self.width;
        self.values.get(start..start + self.width).unwrap_or(&[])
    }
}

/// The row of the network of `g` that contains `bits`, and its network.
fn find_in(g: &Group, bits: u128) -> Option<(u32, u128)> {
    let i = g.nets.partition_point(|(n, _)| *n <= bits);
    let (net, row) = *g.nets.get(i.checked_sub(1)?)?;
    (bits & net::mask(g.prefix) == net).then_some((row, net))
}

/// For an address outside every network of `g`: the prefix length that keeps an ECS scope
/// from covering any of them (one bit more than the longest prefix shared with one).
fn near_miss(g: &Group, bits: u128, len: u8) -> u8 {
    let i = g.nets.partition_point(|(n, _)| *n <= bits);
    let mut best = 0u8;
    for j in [i.wrapping_sub(1), i] {
        if let Some((net, _)) = g.nets.get(j) {
            let cpl = ((bits ^ net).leading_zeros() as u8).min(len);
            best = best.max(g.prefix.min(cpl + 1));
        }
    }
    best
}

/// One client's entries of a [`LatencyMap`], resolved once per decision (no allocation).
#[derive(Clone, Copy, Debug)]
pub struct LatencyView<'a> {
    map: Option<&'a LatencyMap>,
    /// Rows of the longest matching subnet, the country and the continent.
    rows: [Option<u32>; 3],
    subnet_scope: u8,
    geo_scope: u8,
}

impl<'a> LatencyView<'a> {
    /// No map: every lookup misses and the scope is 0.
    pub const NONE: LatencyView<'static> = LatencyView {
        map: None,
        rows: [None; 3],
        subnet_scope: 0,
        geo_scope: 0,
    };

    /// The map's value for `dc` and the level of the entry that gave it.
    pub(crate) fn ms(&self, dc: DatacenterId) -> Option<(f64, MapLevel)> {
        let map = self.map?;
        let levels = [MapLevel::Subnet, MapLevel::Country, MapLevel::Continent];
        for (row, level) in self.rows.iter().zip(levels) {
            if let Some(v) = row
                .and_then(|r| map.row(r).get(dc.0 as usize).copied())
                .filter(|v| !v.is_nan())
            {
                return Some((v, level));
            }
        }
        None
    }

    /// ECS scope for an answer ranked with this map over `dcs`: the answer may differ for any
    /// client whose map entries differ, so
    /// - when a candidate has subnet entries: the longest matching subnet's prefix, and for
    ///   each prefix length without a match, one bit more than the prefix the client shares
    ///   with the nearest network of that length (the scope never covers a network it is not
    ///   in; the same rule as subnet rules);
    /// - when a candidate has country or continent entries: the GeoIP network's prefix (the
    ///   query's source prefix when the lookup found nothing), as for geo rules.
    ///
    /// 0 when no candidate has any entry (the answer is the probe ranking for everyone).
    pub(crate) fn scope(&self, dcs: impl IntoIterator<Item = DatacenterId>) -> u8 {
        let Some(map) = self.map else { return 0 };
        let (mut sub, mut geo) = (false, false);
        for dc in dcs {
            let i = dc.0 as usize;
            sub |= map.in_subnets.get(i).copied().unwrap_or(false);
            geo |= map.in_geo.get(i).copied().unwrap_or(false);
        }
        let s = if sub { self.subnet_scope } else { 0 };
        let g = if geo { self.geo_scope } else { 0 };
        s.max(g)
    }
}
