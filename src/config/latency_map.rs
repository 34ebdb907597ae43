//! Reading a latency map file (CSV or TOML) into entries resolved against one model's
//! datacenters; the lookup tables themselves are `model::latency`.
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
//! The server keeps the text of the last good file and resolves it again whenever a reload
//! changes the datacenters, so a map is never used with another model's ids.

use std::path::{Path, PathBuf};

use crate::geo::{CountryTables, GeoCode, looks_like_subnet};
use crate::model::latency::{ClientKey, EntryPos, LatencyEntry};
use crate::model::{DatacenterId, LatencyMap};
use crate::net::{self, Subnet};
use crate::walk::{MESSAGE_CHARS, SHOWN_CHARS, one_line, shown};

/// A latency map file could not be used. The message names the file and, where it can, the
/// line and the TOML key.
#[derive(Debug, thiserror::Error)]
pub enum LatencyMapError {
    /// The file could not be read.
    #[error("{}: cannot read the latency map: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid map.
    #[error("{}{}{}: {}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!(": {}", one_line(k, MESSAGE_CHARS))).unwrap_or_default(), one_line(message, MESSAGE_CHARS))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// TOML key path (`clients."EU".fra`), for TOML files.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

/// File format of a latency map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFormat {
    /// `client,datacenter,ms` lines.
    Csv,
    /// `[clients."<client>"]` tables.
    Toml,
}

impl MapFormat {
    /// By extension (`.csv`, `.toml`); otherwise TOML when a line starts with `[`, else CSV.
    pub(crate) fn detect(path: &Path, text: &str) -> MapFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => MapFormat::Csv,
            Some(e) if e.eq_ignore_ascii_case("toml") => MapFormat::Toml,
            _ if text.lines().any(|l| l.trim_start().starts_with('[')) => MapFormat::Toml,
            _ => MapFormat::Csv,
        }
    }
}

fn parse_client(s: &str, tables: &CountryTables) -> Result<ClientKey, String> {
    let s = s.trim();
    if looks_like_subnet(s) {
        let sub = Subnet::parse(s)?;
        let (bits, len) = net::bits(sub.addr);
        return Ok(ClientKey::Subnet {
            net: bits,
            prefix: sub.prefix,
            v6: len == 128,
        });
    }
    let two_letters = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_alphabetic());
    let parts: Vec<&str> = s.split('-').collect();
    if !parts.iter().all(|p| two_letters(p)) || parts.len() > 2 {
        let maybe_sub = parts.len() == 2 && two_letters(parts[0]);
        if !maybe_sub {
            return Err(format!(
                "client {} is not a continent (EU), a country (DE or EU-DE) or a subnet (192.0.2.0/24)",
                shown(s)
            ));
        }
    }
    match GeoCode::parse(s, tables).map_err(|e| format!("client {e}"))? {
        GeoCode::Continent(c) => Ok(ClientKey::Continent(c)),
        GeoCode::Country(c) => Ok(ClientKey::Country(c)),
        GeoCode::Subdivision(..) => Err(format!(
            "client {}: subdivisions are not supported in the latency map (use the country or a subnet)",
            shown(s)
        )),
    }
}

fn parse_ms(v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("{} is not a latency in ms (a number >= 0)", shown(v.trim())))
}

fn toml_key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare && s.len() <= SHOWN_CHARS {
        s.to_string()
    } else {
        shown(s).to_string()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses `text`; `path` is used in messages only.
pub fn parse(
    path: &Path,
    text: &str,
    format: MapFormat,
    dc_id: impl Fn(&str) -> Option<DatacenterId>,
) -> Result<LatencyMap, LatencyMapError> {
    let tables = CountryTables::builtin().unwrap_or_else(|_| CountryTables::none());
    let err = |pos: &EntryPos, message: String| LatencyMapError::Invalid {
        path: path.to_path_buf(),
        line: pos.line,
        key: pos.key.clone(),
        message,
    };
    let resolve = |name: &str, pos: &EntryPos| {
        dc_id(name.trim())
            .ok_or_else(|| err(pos, format!("unknown datacenter {}", shown(name.trim()))))
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
                let pos = EntryPos {
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
                raw.push(LatencyEntry {
                    client: parse_client(client, &tables).map_err(|m| err(&pos, m))?,
                    dc: resolve(dc, &pos)?,
                    ms: parse_ms(ms).map_err(|m| err(&pos, m))?,
                    pos,
                });
            }
        }
        MapFormat::Toml => parse_toml(path, text, &tables, &dc_id, &mut raw)?,
    }
    LatencyMap::build(path, raw).map_err(|d| LatencyMapError::Invalid {
        path: path.to_path_buf(),
        line: d.pos.line,
        key: d.pos.key,
        message: d.message,
    })
}

fn parse_toml(
    path: &Path,
    text: &str,
    tables: &CountryTables,
    dc_id: &impl Fn(&str) -> Option<DatacenterId>,
    raw: &mut Vec<LatencyEntry>,
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
        let ck =
            parse_client(client.get_ref(), tables).map_err(|m| err(line, Some(key.clone()), m))?;
        let mut values: Vec<_> = row.into_inner().into_iter().collect();
        values.sort_by_key(|(k, _)| k.span().start);
        for (dc, v) in values {
            let vkey = format!("{key}.{}", toml_key(dc.get_ref()));
            let vline = Some(line_of(text, dc.span().start));
            let id = dc_id(dc.get_ref()).ok_or_else(|| {
                err(
                    vline,
                    Some(vkey.clone()),
                    format!("unknown datacenter {}", shown(dc.get_ref())),
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
            raw.push(LatencyEntry {
                client: ck,
                dc: id,
                ms,
                pos: EntryPos {
                    line: vline,
                    key: Some(vkey),
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Location;
    use crate::model::{LatencyView, MapLevel};
    use std::net::IpAddr;

    /// A client as the `latency` policy sees it.
    struct Client {
        addr: IpAddr,
        location: Option<Location>,
    }

    trait Lookup {
        fn ms_of(&self, c: &Client, dc: DatacenterId) -> Option<f64>;
        fn view_of(&self, c: &Client) -> LatencyView<'_>;
    }

    impl Lookup for LatencyMap {
        fn ms_of(&self, c: &Client, dc: DatacenterId) -> Option<f64> {
            LatencyMap::ms(self, c.addr, c.location.as_ref(), dc)
        }
        fn view_of(&self, c: &Client) -> LatencyView<'_> {
            let bits = net::bits(c.addr.to_canonical()).1;
            LatencyMap::view(self, c.addr, bits, c.location.as_ref())
        }
    }

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
        parse(Path::new("rum.csv"), text, MapFormat::Csv, ids)
    }

    fn toml(text: &str) -> Result<LatencyMap, LatencyMapError> {
        parse(Path::new("rum.toml"), text, MapFormat::Toml, ids)
    }

    fn client(addr: &str, geo: Option<(&[u8; 2], &[u8; 2])>) -> Client {
        let mut c = Client {
            addr: addr.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            location: None,
        };
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
        assert_eq!(m.ms_of(&de, dc("fra")), Some(8.0));
        assert_eq!(m.ms_of(&fr, dc("fra")), Some(12.5));
        assert_eq!(m.ms_of(&fr, dc("iad")), Some(95.0));
        assert_eq!(m.ms_of(&fr, dc("sin")), None);
        let us = client("203.0.113.1", Some((b"NA", b"US")));
        assert_eq!(m.ms_of(&us, dc("iad")), Some(20.0));
        assert_eq!(m.ms_of(&client("192.0.2.77", None), dc("iad")), Some(30.0));
        assert_eq!(
            m.ms_of(&client("2001:db8:1::5", None), dc("sin")),
            Some(7.0)
        );
        assert_eq!(m.ms_of(&client("2001:db9::5", None), dc("sin")), None);
        // IPv4-mapped IPv6 clients are IPv4 clients.
        assert_eq!(
            m.ms_of(&client("::ffff:192.0.2.9", None), dc("iad")),
            Some(30.0)
        );
    }

    #[test]
    fn toml_parses_the_same_model() {
        let m = toml("[clients.\"EU\"]\nfra = 12.5\niad = 95\n\n[clients.\"192.0.2.0/24\"]\niad = 30\n[clients.EU-DE]\nfra = 8\n")
            .unwrap();
        assert_eq!(m.len(), 4);
        let de = client("192.0.2.1", Some((b"EU", b"DE")));
        assert_eq!(m.view_of(&de).ms(dc("fra")), Some((8.0, MapLevel::Country)));
        assert_eq!(m.view_of(&de).ms(dc("iad")), Some((30.0, MapLevel::Subnet)));
        let it = client("198.51.100.1", Some((b"EU", b"IT")));
        assert_eq!(
            m.view_of(&it).ms(dc("iad")),
            Some((95.0, MapLevel::Continent))
        );
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
            m.view_of(&client(addr, Some((cont, country)))).ms(dc(d))
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
        assert_eq!(m.ms_of(&client("11.0.0.1", None), dc("fra")), None);
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
            assert_eq!(m.ms_of(&low, dc("fra")), Some(f64::from(i)));
            assert_eq!(m.ms_of(&low, dc("iad")), None);
            assert_eq!(m.ms_of(&high, dc("iad")), Some(f64::from(i + 1000)));
            assert_eq!(
                m.ms_of(&high, dc("fra")),
                Some(f64::from(i)),
                "from the /16"
            );
            assert_eq!(m.ms_of(&high, dc("sin")), Some(1.0), "from the /0");
        }
        assert_eq!(m.ms_of(&client("11.0.0.1", None), dc("fra")), None);
        assert_eq!(m.ms_of(&client("11.0.0.1", None), dc("sin")), Some(1.0));
        assert_eq!(m.ms_of(&client("2001:db8::1", None), dc("sin")), None);
    }

    #[test]
    fn scope_covers_only_clients_with_the_same_entries() {
        let m = csv("10.1.0.0/16,fra,5\n10.1.2.0/24,iad,5\nEU,sin,9\n").unwrap();
        let all = [dc("fra"), dc("iad"), dc("sin")];
        let subnet_dcs = [dc("fra"), dc("iad")];
        // Inside the /24: 24.
        assert_eq!(m.view_of(&client("10.1.2.3", None)).scope(subnet_dcs), 24);
        // In the /16, outside the /24 (10.1.3.x shares 23 bits with it): 24 still.
        assert_eq!(m.view_of(&client("10.1.3.3", None)).scope(subnet_dcs), 24);
        // In the /16, far from the /24 (10.1.128.x shares 16 bits): 17.
        assert_eq!(m.view_of(&client("10.1.128.1", None)).scope(subnet_dcs), 17);
        // Geo entries: the location's prefix (16 here) when it is longer.
        let eu = client("192.0.2.1", Some((b"EU", b"DE")));
        assert_eq!(m.view_of(&eu).scope(all), 16);
        // Geo entries and no location: the query's source prefix (32 without ECS), as for
        // geo rules: the answer depends on the lookup finding nothing.
        assert_eq!(m.view_of(&client("10.1.2.3", None)).scope(all), 32);
        // Only candidates with entries count.
        assert_eq!(m.view_of(&eu).scope([dc("fra")]), 1);
        let none = LatencyView::NONE;
        assert_eq!(none.scope(all), 0);
        assert_eq!(none.ms(dc("fra")), None);
    }
}
