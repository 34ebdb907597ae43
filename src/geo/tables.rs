//! Per-country facts that flat GeoIP files lack: the continent and a representative point.
//!
//! The data lives in `data/*.csv` (each file's header says where it comes from) and is
//! compiled into the binary with `include_str!`, so a server never depends on files beside it
//! for these. It is parsed once when a [`GeoDb`](super::GeoDb) is built into two 26x26
//! arrays indexed by the two letters of the code, so a query-time lookup is two subtractions
//! and an index.

use super::Code2;

const CONTINENT_CSV: &str = include_str!("../../data/country-continent.csv");
const CENTROID_CSV: &str = include_str!("../../data/country-centroid.csv");

/// The seven continent codes GeoIP files use.
pub(crate) const CONTINENTS: [Code2; 7] = [*b"AF", *b"AN", *b"AS", *b"EU", *b"NA", *b"OC", *b"SA"];

/// A mistake in one of the built-in tables (caught by the unit tests; reported, not panicked on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("built-in table data/{file}, line {line}: {message}")]
pub struct TableError {
    /// `country-continent.csv` or `country-centroid.csv`.
    pub(crate) file: &'static str,
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong with the line.
    pub(crate) message: &'static str,
}

/// Country -> continent and country -> representative point, for every ISO 3166-1 alpha-2
/// code (plus `XK`).
#[derive(Clone)]
pub(crate) struct CountryTables {
    continent: [[Option<Code2>; 26]; 26],
    centroid: [[Option<(f64, f64)>; 26]; 26],
}

impl std::fmt::Debug for CountryTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.continent.iter().flatten().flatten().count();
        f.debug_struct("CountryTables")
            .field("countries", &count)
            .finish_non_exhaustive()
    }
}

/// Row and column of a two-letter upper-case code in the 26x26 arrays.
#[inline]
fn slot(code: Code2) -> Option<(usize, usize)> {
    if code[0].is_ascii_uppercase() && code[1].is_ascii_uppercase() {
        Some((usize::from(code[0] - b'A'), usize::from(code[1] - b'A')))
    } else {
        None
    }
}

/// Lines of a table that carry data: numbered from 1, without comments, blanks and the
/// column-name header.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#') && !l.starts_with("country,"))
}

/// Parses a country code column: exactly two upper-case ASCII letters.
fn parse_code(field: &str) -> Option<Code2> {
    match field.as_bytes() {
        &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Some([a, b]),
        _ => None,
    }
}

impl CountryTables {
    /// Tables with no entries (for [`GeoDb::empty`](super::GeoDb::empty)).
    pub(crate) fn none() -> Self {
        CountryTables {
            continent: [[None; 26]; 26],
            centroid: [[None; 26]; 26],
        }
    }

    /// Parses the tables compiled into the binary.
    pub(crate) fn builtin() -> Result<Self, TableError> {
        Self::parse(CONTINENT_CSV, CENTROID_CSV)
    }

    fn parse(continent_csv: &str, centroid_csv: &str) -> Result<Self, TableError> {
        let mut t = Self::none();
        for (line, text) in data_lines(continent_csv) {
            let err = |message| TableError {
                file: "country-continent.csv",
                line,
                message,
            };
            let mut fields = text.split(',');
            let (Some(cc), Some(cont), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(err("expected two columns: country,continent"));
            };
            let (r, c) = parse_code(cc)
                .and_then(slot)
                .ok_or(err("country is not two upper-case letters"))?;
            let cont = parse_code(cont)
                .filter(|k| CONTINENTS.contains(k))
                .ok_or(err("continent is not one of AF AN AS EU NA OC SA"))?;
            if t.continent[r][c].replace(cont).is_some() {
                return Err(err("country listed twice"));
            }
        }
        for (line, text) in data_lines(centroid_csv) {
            let err = |message| TableError {
                file: "country-centroid.csv",
                line,
                message,
            };
            let mut fields = text.split(',');
            let (Some(cc), Some(lat), Some(lon), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(err("expected three columns: country,latitude,longitude"));
            };
            let (r, c) = parse_code(cc)
                .and_then(slot)
                .ok_or(err("country is not two upper-case letters"))?;
            let lat: f64 = lat.parse().map_err(|_| err("latitude is not a number"))?;
            let lon: f64 = lon.parse().map_err(|_| err("longitude is not a number"))?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(err("coordinates out of range"));
            }
            if t.centroid[r][c].replace((lat, lon)).is_some() {
                return Err(err("country listed twice"));
            }
        }
        Ok(t)
    }

    /// Continent of a country (`DE` -> `EU`); `None` for codes the table does not know.
    #[inline]
    pub(crate) fn continent(&self, country: Code2) -> Option<Code2> {
        slot(country).and_then(|(r, c)| self.continent[r][c])
    }

    /// Representative point (latitude, longitude) of a country.
    #[inline]
    pub(crate) fn centroid(&self, country: Code2) -> Option<(f64, f64)> {
        slot(country).and_then(|(r, c)| self.centroid[r][c])
    }

    /// True when the code is a known country (ISO 3166-1 alpha-2 or `XK`); for validating
    /// geo codes in zone files.
    pub(crate) fn is_country(&self, code: Code2) -> bool {
        self.continent(code).is_some()
    }

    /// All known country codes, in alphabetical order (the unit tests check the tables with
    /// it; `gslbd simulate` finds the continent of a datacenter's coordinates with it).
    pub(crate) fn countries(&self) -> impl Iterator<Item = Code2> + '_ {
        (0..26u8)
            .flat_map(|a| (0..26u8).map(move |b| [b'A' + a, b'A' + b]))
            .filter(|&code| self.is_country(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> CountryTables {
        match CountryTables::builtin() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn builtin_tables_parse_and_cover_the_same_countries() {
        let t = tables();
        let with_continent: Vec<Code2> = t.countries().collect();
        // 249 ISO 3166-1 codes plus XK.
        assert_eq!(with_continent.len(), 250);
        for code in &with_continent {
            assert!(t.centroid(*code).is_some(), "{:?} has no centroid", code);
        }
        let with_centroid = (0..26u8)
            .flat_map(|a| (0..26u8).map(move |b| [b'A' + a, b'A' + b]))
            .filter(|&c| t.centroid(c).is_some())
            .count();
        assert_eq!(with_centroid, 250);
    }

    #[test]
    fn every_continent_is_valid_and_used() {
        let t = tables();
        for code in t.countries() {
            let cont = t.continent(code);
            assert!(cont.is_some_and(|c| CONTINENTS.contains(&c)), "{code:?}");
        }
        for cont in CONTINENTS {
            assert!(
                t.countries().any(|c| t.continent(c) == Some(cont)),
                "no country in {cont:?}"
            );
        }
    }

    #[test]
    fn known_countries() {
        let t = tables();
        for (cc, cont) in [
            (b"DE", b"EU"),
            (b"US", b"NA"),
            (b"JP", b"AS"),
            (b"BR", b"SA"),
            (b"AU", b"OC"),
            (b"ZA", b"AF"),
            (b"AQ", b"AN"),
            (b"RU", b"EU"),
            (b"TR", b"AS"),
            (b"EG", b"AF"),
            (b"MX", b"NA"),
            (b"XK", b"EU"),
        ] {
            assert_eq!(t.continent(*cc), Some(*cont), "{}", cc.escape_ascii());
        }
        let (lat, lon) = t.centroid(*b"DE").unwrap_or_default();
        assert!((47.0..55.0).contains(&lat) && (6.0..15.0).contains(&lon));
        let (lat, lon) = t.centroid(*b"JP").unwrap_or_default();
        assert!((31.0..45.0).contains(&lat) && (130.0..145.0).contains(&lon));
        let (lat, lon) = t.centroid(*b"NZ").unwrap_or_default();
        assert!((-47.0..-34.0).contains(&lat) && (166.0..179.0).contains(&lon));
    }

    #[test]
    fn unknown_and_malformed_codes() {
        let t = tables();
        assert_eq!(t.continent(*b"ZZ"), None);
        assert_eq!(t.continent(*b"de"), None);
        assert_eq!(t.centroid(*b"1A"), None);
        assert!(!t.is_country(*b"EU"));
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let e = CountryTables::parse("# c\ncountry,continent\nDE,EU\nFR,XX\n", "");
        assert_eq!(
            e.err().map(|e| e.to_string()),
            Some(
                "built-in table data/country-continent.csv, line 4: continent is not one of \
                 AF AN AS EU NA OC SA"
                    .to_string()
            )
        );
        let e = CountryTables::parse("", "DE,51.1,10.4\nDE,1,2\n");
        assert_eq!(e.err().map(|e| e.line), Some(2));
        let e = CountryTables::parse("", "DE,91,10\n");
        assert_eq!(e.err().map(|e| e.message), Some("coordinates out of range"));
    }
}
