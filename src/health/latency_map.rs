//! The latency map: measured client -> datacenter latencies from a file (for example exported
//! from real-user measurements), read by the `latency` policy before the probe EWMA.
//!
//! ```text
//! latency map file (CSV or TOML) --LatencyMap::load(names -> ids)--> LatencyMap (immutable)
//!        ^ LatencyMapWatcher::poll (mtime + size)                        |
//!        |                                                  Snapshot::latency_map (Arc)
//!        |                                                               |
//!        +-- the server polls / watches                   policy `latency`: map value for the
//!                                                         client, else DcState::latency_ms
//! ```
//!
//! # Formats
//!
//! CSV, one entry per line, `client,datacenter,ms`; `#` starts a comment line; an optional
//! header line `client,datacenter,ms`:
//!
//! ```text
//! client,datacenter,ms
//! EU,fra,12.5
//! EU-DE,fra,8
//! 192.0.2.0/24,iad,30
//! ```
//!
//! TOML, one table per client:
//!
//! ```toml
//! [clients."EU"]
//! fra = 12.5
//! iad = 95
//! [clients."192.0.2.0/24"]
//! iad = 30
//! ```
//!
//! A client is a continent (`EU`, one of `AF AN AS EU NA OC SA`: those two letters always mean
//! the continent, as in rules), a country (`DE` or `EU-DE`), or a subnet (`192.0.2.0/24`,
//! `2001:db8::/32`, or a bare address). Values are milliseconds, finite and >= 0. Datacenter
//! names are resolved to ids when the file is loaded: an unknown name is an error, and so is a
//! second value for the same client and datacenter (`DE` and `EU-DE` are the same client).
//! Every error names the file and the line (CSV, TOML) and the key (TOML).
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
//! Datacenter ids are those of the model the map was loaded against: after a model reload
//! that may renumber datacenters, load the map again with the new names.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::config::gslb::parse_subnet;
use crate::geo::{CONTINENTS, Code2, CountryTables};
use crate::model::gslb::DatacenterId;
use crate::policy::Client;

/// A latency map file could not be used. The message names the file and, where it can, the
/// line and the TOML key.
#[derive(Debug, thiserror::Error)]
pub enum LatencyMapError {
    #[error("{}: cannot read the latency map: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!(": {k}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// TOML key path (`clients."EU".fra`), for TOML files.
        key: Option<String>,
        message: String,
    },
}

impl LatencyMapError {
    /// The 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            LatencyMapError::Invalid { line, .. } => *line,
            LatencyMapError::Io { .. } => None,
        }
    }
}

/// Which kind of map entry gave a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapLevel {
    Subnet,
    Country,
    Continent,
}

impl MapLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            MapLevel::Subnet => "subnet",
            MapLevel::Country => "country",
            MapLevel::Continent => "continent",
        }
    }
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

/// File format of a latency map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFormat {
    Csv,
    Toml,
}

impl MapFormat {
    /// By extension (`.csv`, `.toml`); otherwise TOML when a line starts with `[`, else CSV.
    pub fn detect(path: &Path, text: &str) -> MapFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => MapFormat::Csv,
            Some(e) if e.eq_ignore_ascii_case("toml") => MapFormat::Toml,
            _ if text.lines().any(|l| l.trim_start().starts_with('[')) => MapFormat::Toml,
            _ => MapFormat::Csv,
        }
    }
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientKey {
    /// Network bits left-aligned in a u128 (IPv4 in the top 32 bits), prefix, IPv6 or not.
    Subnet {
        net: u128,
        prefix: u8,
        v6: bool,
    },
    Country(Code2),
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

/// Left-aligned bits and length of an address (IPv4-mapped IPv6 counts as IPv4).
fn addr_bits(addr: IpAddr) -> (u128, u8) {
    match addr.to_canonical() {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

fn continent_slot(c: Code2) -> Option<usize> {
    CONTINENTS.iter().position(|k| *k == c)
}

fn country_slot(c: Code2) -> Option<(usize, usize)> {
    (c[0].is_ascii_uppercase() && c[1].is_ascii_uppercase())
        .then(|| (usize::from(c[0] - b'A'), usize::from(c[1] - b'A')))
}

fn parse_client(s: &str, tables: &CountryTables) -> Result<ClientKey, String> {
    let s = s.trim();
    if s.contains('/') || s.contains(':') || s.starts_with(|c: char| c.is_ascii_digit()) {
        let (addr, prefix) = parse_subnet(s)?;
        let v6 = addr.is_ipv6();
        let (bits, _) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        return Ok(ClientKey::Subnet {
            net: bits,
            prefix,
            v6,
        });
    }
    let up = s.to_ascii_uppercase();
    let code2 = |x: &str| -> Option<Code2> {
        let b = x.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic)).then(|| [b[0], b[1]])
    };
    let bad = || {
        format!(
            "client {s:?} is not a continent (EU), a country (DE or EU-DE) or a subnet (192.0.2.0/24)"
        )
    };
    let country = |c: Code2| -> Result<Code2, String> {
        if tables.is_country(c) {
            Ok(c)
        } else {
            Err(format!(
                "client {s:?}: {} is not an ISO 3166-1 country code",
                String::from_utf8_lossy(&c)
            ))
        }
    };
    let parts: Vec<&str> = up.split('-').collect();
    match parts.as_slice() {
        [one] => {
            let c = code2(one).ok_or_else(bad)?;
            if CONTINENTS.contains(&c) {
                Ok(ClientKey::Continent(c))
            } else {
                Ok(ClientKey::Country(country(c)?))
            }
        }
        [a, b] => {
            let ca = code2(a).ok_or_else(bad)?;
            if !CONTINENTS.contains(&ca) {
                return Err(format!(
                    "client {s:?}: subdivisions are not supported in the latency map (use the country or a subnet)"
                ));
            }
            let cb = country(code2(b).ok_or_else(bad)?)?;
            if tables.continent(cb).is_some_and(|k| k != ca) {
                return Err(format!("client {s:?}: {b} is not in {a}"));
            }
            Ok(ClientKey::Country(cb))
        }
        _ => Err(bad()),
    }
}

/// Where an entry came from, for messages.
#[derive(Clone, Debug)]
struct Pos {
    line: Option<usize>,
    key: Option<String>,
}

impl Pos {
    fn describe(&self) -> String {
        match (self.line, &self.key) {
            (Some(l), _) => format!("line {l}"),
            (None, Some(k)) => k.clone(),
            (None, None) => "elsewhere".into(),
        }
    }
}

struct Raw {
    client: ClientKey,
    dc: DatacenterId,
    ms: f64,
    pos: Pos,
}

fn parse_ms(v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("{:?} is not a latency in ms (a number >= 0)", v.trim()))
}

fn toml_key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl LatencyMap {
    /// Reads and parses `path` (format by [`MapFormat::detect`]), resolving datacenter names
    /// with `dc_id` (for a model: `|n| model.datacenters.by_name.get(n).copied()`).
    pub fn load(
        path: &Path,
        dc_id: impl Fn(&str) -> Option<DatacenterId>,
    ) -> Result<LatencyMap, LatencyMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| LatencyMapError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        LatencyMap::parse(path, &text, MapFormat::detect(path, &text), dc_id)
    }

    /// Parses `text`; `path` is used in messages only.
    pub fn parse(
        path: &Path,
        text: &str,
        format: MapFormat,
        dc_id: impl Fn(&str) -> Option<DatacenterId>,
    ) -> Result<LatencyMap, LatencyMapError> {
        let tables = CountryTables::builtin().unwrap_or_else(|_| CountryTables::none());
        let err = |pos: &Pos, message: String| LatencyMapError::Invalid {
            path: path.to_path_buf(),
            line: pos.line,
            key: pos.key.clone(),
            message,
        };
        let resolve = |name: &str, pos: &Pos| {
            dc_id(name.trim())
                .ok_or_else(|| err(pos, format!("unknown datacenter {:?}", name.trim())))
        };
        let mut raw = Vec::new();
        match format {
            MapFormat::Csv => {
                let mut first = true;
                for (i, line) in text.lines().enumerate() {
                    let l = line.trim();
                    if l.is_empty() || l.starts_with('#') {
                        continue;
                    }
                    let pos = Pos {
                        line: Some(i + 1),
                        key: None,
                    };
                    let header = std::mem::replace(&mut first, false)
                        && l.replace(' ', "")
                            .eq_ignore_ascii_case("client,datacenter,ms");
                    if header {
                        continue;
                    }
                    let f: Vec<&str> = l.split(',').collect();
                    let [client, dc, ms] = f.as_slice() else {
                        return Err(err(
                            &pos,
                            format!("expected 3 columns client,datacenter,ms; found {}", f.len()),
                        ));
                    };
                    raw.push(Raw {
                        client: parse_client(client, &tables).map_err(|m| err(&pos, m))?,
                        dc: resolve(dc, &pos)?,
                        ms: parse_ms(ms).map_err(|m| err(&pos, m))?,
                        pos,
                    });
                }
            }
            MapFormat::Toml => Self::parse_toml(path, text, &tables, &dc_id, &mut raw)?,
        }
        Self::build(path, raw)
    }

    fn parse_toml(
        path: &Path,
        text: &str,
        tables: &CountryTables,
        dc_id: &impl Fn(&str) -> Option<DatacenterId>,
        raw: &mut Vec<Raw>,
    ) -> Result<(), LatencyMapError> {
        use std::collections::BTreeMap;
        use toml::Spanned;

        type Row = BTreeMap<Spanned<String>, Spanned<toml::Value>>;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(default)]
            clients: BTreeMap<Spanned<String>, Spanned<Row>>,
        }
        let err =
            |line: Option<usize>, key: Option<String>, message: String| LatencyMapError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message,
            };
        let doc: Doc = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let msg = e.message().trim().replace('\n', " ");
            err(
                line,
                None,
                format!("not a latency map ([clients.\"<client>\"] datacenter = ms): {msg}"),
            )
        })?;
        let mut clients: Vec<_> = doc.clients.into_iter().collect();
        clients.sort_by_key(|(k, _)| k.span().start);
        for (client, row) in clients {
            let key = format!("clients.{}", toml_key(client.get_ref()));
            let line = Some(line_of(text, client.span().start));
            let ck = parse_client(client.get_ref(), tables)
                .map_err(|m| err(line, Some(key.clone()), m))?;
            let mut values: Vec<_> = row.into_inner().into_iter().collect();
            values.sort_by_key(|(k, _)| k.span().start);
            for (dc, v) in values {
                let vkey = format!("{key}.{}", toml_key(dc.get_ref()));
                let vline = Some(line_of(text, dc.span().start));
                let id = dc_id(dc.get_ref()).ok_or_else(|| {
                    err(
                        vline,
                        Some(vkey.clone()),
                        format!("unknown datacenter {:?}", dc.get_ref()),
                    )
                })?;
                let ms = match v.get_ref() {
                    toml::Value::Integer(i) => *i as f64,
                    toml::Value::Float(f) => *f,
                    other => {
                        return Err(err(
                            vline,
                            Some(vkey),
                            format!("expected a latency in ms, found a {}", other.type_str()),
                        ));
                    }
                };
                if !ms.is_finite() || ms < 0.0 {
                    return Err(err(
                        vline,
                        Some(vkey),
                        format!("{ms} is not a latency in ms (a number >= 0)"),
                    ));
                }
                raw.push(Raw {
                    client: ck,
                    dc: id,
                    ms,
                    pos: Pos {
                        line: vline,
                        key: Some(vkey),
                    },
                });
            }
        }
        Ok(())
    }
}

impl LatencyMap {
    fn build(path: &Path, raw: Vec<Raw>) -> Result<LatencyMap, LatencyMapError> {
        let width = raw.iter().map(|r| r.dc.0 as usize + 1).max().unwrap_or(0);
        let mut rows: FxHashMap<ClientKey, u32> = FxHashMap::default();
        let mut values: Vec<f64> = Vec::new();
        let mut first_pos: Vec<Option<Pos>> = Vec::new();
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
                return Err(LatencyMapError::Invalid {
                    path: path.to_path_buf(),
                    line: r.pos.line,
                    key: r.pos.key.clone(),
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

    /// The file this map was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of (client, datacenter) values in the file.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The latency in ms the map gives for `client` to `dc`: the most specific entry with a
    /// value for `dc` (subnet, then country, then continent), or `None`.
    pub fn ms(&self, client: &Client, dc: DatacenterId) -> Option<f64> {
        self.view(client).ms(dc).map(|(v, _)| v)
    }

    /// Resolves `client` once, for the lookups of one decision.
    pub fn view(&self, client: &Client) -> LatencyView<'_> {
        let (bits, len) = addr_bits(client.addr);
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
        let loc = client.location.as_ref();
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
            geo_scope: loc.map_or(client.source_prefix, |l| l.prefix_len),
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
    (bits & mask(g.prefix) == net).then_some((row, net))
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

    /// The view of `map` for `client`, or [`Self::NONE`] without a map.
    pub fn of(map: Option<&'a LatencyMap>, client: &Client) -> LatencyView<'a> {
        map.map_or(LatencyView::NONE, |m| m.view(client))
    }

    /// The map's value for `dc` and the level of the entry that gave it.
    pub fn ms(&self, dc: DatacenterId) -> Option<(f64, MapLevel)> {
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
    pub fn scope(&self, dcs: impl IntoIterator<Item = DatacenterId>) -> u8 {
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

/// Modification time and size of a file: a cheap "did it change" test for polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub modified: SystemTime,
    pub len: u64,
}

impl FileStamp {
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: m.modified()?,
            len: m.len(),
        })
    }
}

/// Loads `path` when its stamp differs from `last` (or there is no `last`). `Ok(None)`:
/// unchanged. On success returns the map and the stamp to pass next time.
pub fn load_if_changed(
    path: &Path,
    last: Option<FileStamp>,
    dc_id: impl Fn(&str) -> Option<DatacenterId>,
) -> Result<Option<(LatencyMap, FileStamp)>, LatencyMapError> {
    let stamp = FileStamp::of(path).map_err(|source| LatencyMapError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if last == Some(stamp) {
        return Ok(None);
    }
    LatencyMap::load(path, dc_id).map(|m| Some((m, stamp)))
}

/// Polls one latency map file for changes.
///
/// [`poll`](Self::poll) reloads when the file's modification time or size changed since the
/// last poll. A bad file is reported once (the stamp is remembered), so the caller keeps the
/// map it has and logs one error per edit; [`force`](Self::force) reloads whatever the stamp
/// (after a model reload, with the new datacenter ids).
#[derive(Debug)]
pub struct LatencyMapWatcher {
    path: PathBuf,
    last: Option<FileStamp>,
    /// The file could not be examined at the last poll (reported then).
    unreadable: bool,
}

impl LatencyMapWatcher {
    pub fn new(path: impl Into<PathBuf>) -> LatencyMapWatcher {
        LatencyMapWatcher {
            path: path.into(),
            last: None,
            unreadable: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok(Some(map))`: the file changed and parsed; publish it. `Ok(None)`: unchanged.
    /// `Err`: changed (or unreadable) and unusable; keep the current map.
    pub fn poll(
        &mut self,
        dc_id: impl Fn(&str) -> Option<DatacenterId>,
    ) -> Result<Option<LatencyMap>, LatencyMapError> {
        let stamp = match FileStamp::of(&self.path) {
            Ok(s) => s,
            Err(source) => {
                // Reported once; when it comes back it is loaded whatever its stamp.
                self.last = None;
                if std::mem::replace(&mut self.unreadable, true) {
                    return Ok(None);
                }
                return Err(LatencyMapError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        self.unreadable = false;
        if self.last == Some(stamp) {
            return Ok(None);
        }
        self.last = Some(stamp);
        LatencyMap::load(&self.path, dc_id).map(Some)
    }

    /// Reload now, whether or not the file changed.
    pub fn force(
        &mut self,
        dc_id: impl Fn(&str) -> Option<DatacenterId>,
    ) -> Result<LatencyMap, LatencyMapError> {
        self.last = None;
        self.unreadable = false;
        self.poll(dc_id)?.ok_or_else(|| LatencyMapError::Io {
            path: self.path.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Location;

    const DCS: [&str; 3] = ["fra", "iad", "sin"];

    fn ids(name: &str) -> Option<DatacenterId> {
        DCS.iter()
            .position(|d| *d == name)
            .map(|i| DatacenterId(i as u32))
    }

    fn dc(name: &str) -> DatacenterId {
        ids(name).unwrap_or(DatacenterId(u32::MAX))
    }

    fn csv(text: &str) -> Result<LatencyMap, LatencyMapError> {
        LatencyMap::parse(Path::new("rum.csv"), text, MapFormat::Csv, ids)
    }

    fn toml(text: &str) -> Result<LatencyMap, LatencyMapError> {
        LatencyMap::parse(Path::new("rum.toml"), text, MapFormat::Toml, ids)
    }

    fn client(addr: &str, geo: Option<(&[u8; 2], &[u8; 2])>) -> Client {
        let mut c = Client::new(addr.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        c.location = geo.map(|(cont, country)| Location {
            continent: Some(*cont),
            country: Some(*country),
            subdivision: None,
            coords: None,
            coords_from_centroid: false,
            prefix_len: 16,
            db: 0,
        });
        c
    }

    fn err_text(r: Result<LatencyMap, LatencyMapError>) -> String {
        match r {
            Ok(m) => format!("unexpectedly parsed: {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn csv_parses_every_client_kind() {
        let m = csv("# from RUM, 2026-06\n\
                     client,datacenter,ms\n\
                     EU,fra,12.5\n\
                     EU, iad ,95\n\
                     \n\
                     EU-DE,fra,8\n\
                     US,iad,20\n\
                     192.0.2.0/24,iad,30\n\
                     2001:db8::/32,sin,7\n")
        .unwrap();
        assert_eq!(m.len(), 6);
        let de = client("203.0.113.1", Some((b"EU", b"DE")));
        let fr = client("203.0.113.1", Some((b"EU", b"FR")));
        assert_eq!(m.ms(&de, dc("fra")), Some(8.0));
        assert_eq!(m.ms(&fr, dc("fra")), Some(12.5));
        assert_eq!(m.ms(&fr, dc("iad")), Some(95.0));
        assert_eq!(m.ms(&fr, dc("sin")), None);
        let us = client("203.0.113.1", Some((b"NA", b"US")));
        assert_eq!(m.ms(&us, dc("iad")), Some(20.0));
        assert_eq!(m.ms(&client("192.0.2.77", None), dc("iad")), Some(30.0));
        assert_eq!(m.ms(&client("2001:db8:1::5", None), dc("sin")), Some(7.0));
        assert_eq!(m.ms(&client("2001:db9::5", None), dc("sin")), None);
        // IPv4-mapped IPv6 clients are IPv4 clients.
        assert_eq!(
            m.ms(&client("::ffff:192.0.2.9", None), dc("iad")),
            Some(30.0)
        );
    }

    #[test]
    fn toml_parses_the_same_model() {
        let m = toml("[clients.\"EU\"]\nfra = 12.5\niad = 95\n\n[clients.\"192.0.2.0/24\"]\niad = 30\n[clients.EU-DE]\nfra = 8\n")
            .unwrap();
        assert_eq!(m.len(), 4);
        let de = client("192.0.2.1", Some((b"EU", b"DE")));
        assert_eq!(m.view(&de).ms(dc("fra")), Some((8.0, MapLevel::Country)));
        assert_eq!(m.view(&de).ms(dc("iad")), Some((30.0, MapLevel::Subnet)));
        let it = client("198.51.100.1", Some((b"EU", b"IT")));
        assert_eq!(m.view(&it).ms(dc("iad")), Some((95.0, MapLevel::Continent)));
    }

    #[test]
    fn format_detection() {
        let p = Path::new;
        assert_eq!(MapFormat::detect(p("a.CSV"), "[x]"), MapFormat::Csv);
        assert_eq!(MapFormat::detect(p("a.toml"), "EU,fra,1"), MapFormat::Toml);
        assert_eq!(
            MapFormat::detect(p("map"), "[clients.EU]\nfra=1"),
            MapFormat::Toml
        );
        assert_eq!(MapFormat::detect(p("map"), "EU,fra,1"), MapFormat::Csv);
    }

    #[test]
    fn csv_errors_name_file_and_line() {
        let e = err_text(csv("EU,fra,12\nEU,ams,10\n"));
        assert_eq!(e, "rum.csv:2: unknown datacenter \"ams\"");
        let e = err_text(csv("client,datacenter,ms\n\nEU,fra\n"));
        assert_eq!(
            e,
            "rum.csv:3: expected 3 columns client,datacenter,ms; found 2"
        );
        let e = err_text(csv("EU,fra,fast\n"));
        assert!(e.starts_with("rum.csv:1: \"fast\" is not a latency"), "{e}");
        let e = err_text(csv("EU,fra,-1\n"));
        assert!(e.starts_with("rum.csv:1: "), "{e}");
        let e = err_text(csv("EU,fra,NaN\n"));
        assert!(e.starts_with("rum.csv:1: "), "{e}");
        let e = err_text(csv("XX,fra,1\n"));
        assert!(
            e.contains("rum.csv:1: client \"XX\": XX is not an ISO 3166-1"),
            "{e}"
        );
        let e = err_text(csv("NA-DE,fra,1\n"));
        assert!(
            e.contains("rum.csv:1: client \"NA-DE\": DE is not in NA"),
            "{e}"
        );
        let e = err_text(csv("US-CA,fra,1\n"));
        assert!(e.contains("subdivisions are not supported"), "{e}");
        let e = err_text(csv("192.0.2.1/24,fra,1\n"));
        assert!(
            e.contains("rum.csv:1: ") && e.contains("bits set beyond"),
            "{e}"
        );
        // `DE` and `EU-DE` are the same client.
        let e = err_text(csv("DE,fra,1\n# again\nEU-DE,fra,2\n"));
        assert_eq!(
            e,
            "rum.csv:3: a second value for this client and datacenter (the first is at line 1)"
        );
    }

    #[test]
    fn toml_errors_name_file_line_and_key() {
        let e = err_text(toml("[clients.EU]\nfra = 1\nams = 2\n"));
        assert_eq!(e, "rum.toml:3: clients.EU.ams: unknown datacenter \"ams\"");
        let e = err_text(toml(
            "[clients.\"EU\"]\nfra = 1\n\n[clients.\"10.0.0.0/33\"]\nfra = 2\n",
        ));
        assert!(
            e.starts_with("rum.toml:4: clients.\"10.0.0.0/33\": "),
            "{e}"
        );
        let e = err_text(toml("[clients.EU]\nfra = \"fast\"\n"));
        assert_eq!(
            e,
            "rum.toml:2: clients.EU.fra: expected a latency in ms, found a string"
        );
        let e = err_text(toml("[clients.EU]\nfra = -3\n"));
        assert!(
            e.starts_with("rum.toml:2: clients.EU.fra: -3 is not"),
            "{e}"
        );
        let e = err_text(toml(
            "[clients.EU]\nfra = 1\n[clients.EU-DE]\nfra = 1\n[clients.DE]\nfra = 2\n",
        ));
        assert_eq!(
            e,
            "rum.toml:6: clients.DE.fra: a second value for this client and datacenter (the first is at line 4)"
        );
        let e = err_text(toml("[client.EU]\nfra = 1\n"));
        assert!(e.starts_with("rum.toml:1: not a latency map"), "{e}");
        let e = err_text(toml("[clients.EU\nfra = 1\n"));
        assert!(e.starts_with("rum.toml:1: "), "{e}");
    }

    #[test]
    fn most_specific_entry_wins_per_datacenter() {
        let m = csv("EU,fra,30\nEU,iad,90\nEU,sin,200\n\
                     DE,fra,20\nDE,iad,80\n\
                     10.0.0.0/8,fra,10\n\
                     10.1.0.0/16,fra,5\n10.1.0.0/16,sin,150\n")
        .unwrap();
        let v = |addr: &str, cont: &[u8; 2], country: &[u8; 2], d: &str| {
            m.view(&client(addr, Some((cont, country)))).ms(dc(d))
        };
        // Subnet > country > continent, longest subnet first.
        assert_eq!(
            v("10.1.2.3", b"EU", b"DE", "fra"),
            Some((5.0, MapLevel::Subnet))
        );
        assert_eq!(
            v("10.2.2.3", b"EU", b"DE", "fra"),
            Some((10.0, MapLevel::Subnet))
        );
        assert_eq!(
            v("11.0.0.1", b"EU", b"DE", "fra"),
            Some((20.0, MapLevel::Country))
        );
        assert_eq!(
            v("11.0.0.1", b"EU", b"FR", "fra"),
            Some((30.0, MapLevel::Continent))
        );
        // A subnet without a value for a datacenter: the next level that has one.
        assert_eq!(
            v("10.1.2.3", b"EU", b"DE", "sin"),
            Some((150.0, MapLevel::Subnet))
        );
        assert_eq!(
            v("10.2.2.3", b"EU", b"DE", "sin"),
            Some((200.0, MapLevel::Continent))
        );
        assert_eq!(
            v("10.1.2.3", b"EU", b"DE", "iad"),
            Some((80.0, MapLevel::Country))
        );
        // Nothing for the client: None (the policy falls back to the probe EWMA).
        assert_eq!(v("11.0.0.1", b"NA", b"US", "fra"), None);
        assert_eq!(m.ms(&client("11.0.0.1", None), dc("fra")), None);
        // Ids past the file's datacenters.
        assert_eq!(v("10.1.2.3", b"EU", b"DE", "nowhere"), None);
    }

    #[test]
    fn many_subnets_longest_match() {
        let mut text = String::new();
        for i in 0..=255u32 {
            text.push_str(&format!("10.{i}.0.0/16,fra,{i}\n"));
            text.push_str(&format!("10.{i}.128.0/17,iad,{}\n", i + 1000));
        }
        text.push_str("0.0.0.0/0,sin,1\n");
        let m = csv(&text).unwrap();
        for i in [0u32, 1, 77, 254, 255] {
            let low = client(&format!("10.{i}.1.1"), None);
            let high = client(&format!("10.{i}.200.1"), None);
            assert_eq!(m.ms(&low, dc("fra")), Some(f64::from(i)));
            assert_eq!(m.ms(&low, dc("iad")), None);
            assert_eq!(m.ms(&high, dc("iad")), Some(f64::from(i + 1000)));
            assert_eq!(m.ms(&high, dc("fra")), Some(f64::from(i)), "from the /16");
            assert_eq!(m.ms(&high, dc("sin")), Some(1.0), "from the /0");
        }
        assert_eq!(m.ms(&client("11.0.0.1", None), dc("fra")), None);
        assert_eq!(m.ms(&client("11.0.0.1", None), dc("sin")), Some(1.0));
        assert_eq!(m.ms(&client("2001:db8::1", None), dc("sin")), None);
    }

    #[test]
    fn scope_covers_only_clients_with_the_same_entries() {
        let m = csv("10.1.0.0/16,fra,5\n10.1.2.0/24,iad,5\nEU,sin,9\n").unwrap();
        let all = [dc("fra"), dc("iad"), dc("sin")];
        let subnet_dcs = [dc("fra"), dc("iad")];
        // Inside the /24: 24.
        assert_eq!(m.view(&client("10.1.2.3", None)).scope(subnet_dcs), 24);
        // In the /16, outside the /24 (10.1.3.x shares 23 bits with it): 24 still.
        assert_eq!(m.view(&client("10.1.3.3", None)).scope(subnet_dcs), 24);
        // In the /16, far from the /24 (10.1.128.x shares 16 bits): 17.
        assert_eq!(m.view(&client("10.1.128.1", None)).scope(subnet_dcs), 17);
        // Geo entries: the location's prefix (16 here) when it is longer.
        let eu = client("192.0.2.1", Some((b"EU", b"DE")));
        assert_eq!(m.view(&eu).scope(all), 16);
        // Geo entries and no location: the query's source prefix (32 without ECS), as for
        // geo rules: the answer depends on the lookup finding nothing.
        assert_eq!(m.view(&client("10.1.2.3", None)).scope(all), 32);
        // Only candidates with entries count.
        assert_eq!(m.view(&eu).scope([dc("fra")]), 1);
        let none = LatencyView::NONE;
        assert_eq!(none.scope(all), 0);
        assert_eq!(none.ms(dc("fra")), None);
    }

    #[test]
    fn watcher_reloads_on_change_and_reports_bad_files_once() {
        let dir = std::env::temp_dir().join(format!("gslbd-latmap-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("rum.csv");
        let write = |t: &str| std::fs::write(&path, t).map_err(|e| e.to_string());
        let mut w = LatencyMapWatcher::new(&path);
        // Missing: reported once.
        assert!(matches!(w.poll(ids), Err(LatencyMapError::Io { .. })));
        assert!(matches!(w.poll(ids), Ok(None)));
        assert_eq!(write("EU,fra,1\n"), Ok(()));
        let m = w.poll(ids).ok().flatten();
        assert_eq!(m.map(|m| m.len()), Some(1));
        assert!(matches!(w.poll(ids), Ok(None)), "unchanged");
        // Another size: reloaded. A bad file: one error, then quiet until it changes.
        assert_eq!(write("EU,fra,1\nEU,ams,2\n"), Ok(()));
        assert!(matches!(
            w.poll(ids),
            Err(LatencyMapError::Invalid { line: Some(2), .. })
        ));
        assert!(matches!(w.poll(ids), Ok(None)));
        assert_eq!(write("EU,fra,1\nEU,iad,2\nEU,sin,3\n"), Ok(()));
        assert_eq!(w.poll(ids).ok().flatten().map(|m| m.len()), Some(3));
        assert_eq!(w.force(ids).ok().map(|m| m.len()), Some(3));
        // load_if_changed: the same test as a function.
        let first = load_if_changed(&path, None, ids).ok().flatten();
        let stamp = first.as_ref().map(|(_, s)| *s);
        assert!(stamp.is_some());
        assert!(matches!(load_if_changed(&path, stamp, ids), Ok(None)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
