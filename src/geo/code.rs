//! Geo codes as operators write them: continent `EU`, country `DE` or `EU-DE`, subdivision
//! `NA-US-CA` or `US-CA`. Rules, datacenter locations and the latency map all read them here.

use super::{CONTINENTS, Code2, CountryTables, Location};
use crate::walk::shown;

/// A place on the continent / country / subdivision ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeoCode {
    /// A continent (`EU`).
    Continent(Code2),
    /// An ISO 3166-1 country (`DE`).
    Country(Code2),
    /// A country and an ISO 3166-2 subdivision (without the country part, zero-padded).
    Subdivision(Code2, [u8; 3]),
}

/// Does `s` look like a subnet or an address rather than a geo code? (Geo codes are letters.)
pub(crate) fn looks_like_subnet(s: &str) -> bool {
    let s = s.trim();
    s.contains('/') || s.contains(':') || s.starts_with(|c: char| c.is_ascii_digit())
}

fn code2(x: &str) -> Option<Code2> {
    let b = x.as_bytes();
    (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic)).then(|| [b[0], b[1]])
}

impl GeoCode {
    /// Parses a geo code; every error says what was written and what was expected.
    pub(crate) fn parse(s: &str, tables: &CountryTables) -> Result<GeoCode, String> {
        let s = s.trim();
        let up = s.to_ascii_uppercase();
        let parts: Vec<&str> = up.split('-').collect();
        let is_continent = |c: Code2| CONTINENTS.contains(&c);
        let country = |c: Code2| -> Result<Code2, String> {
            if tables.is_country(c) {
                Ok(c)
            } else {
                Err(format!(
                    "{}: {} is not an ISO 3166-1 country code",
                    shown(s),
                    String::from_utf8_lossy(&c)
                ))
            }
        };
        let sub = |x: &str| -> Result<[u8; 3], String> {
            let b = x.as_bytes();
            if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_alphanumeric) {
                return Err(format!(
                    "{}: {} is not a subdivision code (1-3 letters or digits)",
                    shown(s),
                    shown(x)
                ));
            }
            let mut o = [0u8; 3];
            o[..b.len()].copy_from_slice(b);
            Ok(o)
        };
        let bad = || {
            format!(
                "{} is not a geo code (expected a continent such as EU, a country such as DE or EU-DE, a subdivision such as NA-US-CA, or a subnet such as 192.0.2.0/24)",
                shown(s)
            )
        };
        let in_continent = |cont: &str, cont_code: Code2, c: &str, cc: Code2| {
            if tables.continent(cc).is_some_and(|k| k != cont_code) {
                Err(format!("{}: {c} is not in {cont}", shown(s)))
            } else {
                Ok(())
            }
        };
        match parts.as_slice() {
            [one] => {
                let c = code2(one).ok_or_else(bad)?;
                if is_continent(c) {
                    Ok(GeoCode::Continent(c))
                } else {
                    Ok(GeoCode::Country(country(c)?))
                }
            }
            [a, b] => {
                let ca = code2(a).ok_or_else(bad)?;
                if is_continent(ca) {
                    let cb = country(code2(b).ok_or_else(bad)?)?;
                    in_continent(a, ca, b, cb)?;
                    Ok(GeoCode::Country(cb))
                } else {
                    Ok(GeoCode::Subdivision(country(ca)?, sub(b)?))
                }
            }
            [a, b, c] => {
                let ca = code2(a).filter(|x| is_continent(*x)).ok_or_else(bad)?;
                let cb = country(code2(b).ok_or_else(bad)?)?;
                in_continent(a, ca, b, cb)?;
                Ok(GeoCode::Subdivision(cb, sub(c)?))
            }
            _ => Err(bad()),
        }
    }

    /// Is `loc` inside this place?
    #[inline]
    pub(crate) fn contains(&self, loc: &Location) -> bool {
        match *self {
            GeoCode::Continent(c) => loc.continent == Some(c),
            GeoCode::Country(c) => loc.country == Some(c),
            GeoCode::Subdivision(c, s) => loc.country == Some(c) && loc.subdivision == Some(s),
        }
    }

    /// The country, for a country or a subdivision.
    pub(crate) fn country(&self) -> Option<Code2> {
        match *self {
            GeoCode::Continent(_) => None,
            GeoCode::Country(c) | GeoCode::Subdivision(c, _) => Some(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let t = CountryTables::builtin().unwrap();
        assert_eq!(GeoCode::parse("EU", &t), Ok(GeoCode::Continent(*b"EU")));
        assert_eq!(GeoCode::parse("de", &t), Ok(GeoCode::Country(*b"DE")));
        assert_eq!(GeoCode::parse("EU-DE", &t), Ok(GeoCode::Country(*b"DE")));
        assert_eq!(
            GeoCode::parse("NA-US-CA", &t),
            Ok(GeoCode::Subdivision(*b"US", *b"CA\0"))
        );
        assert_eq!(
            GeoCode::parse("US-CA", &t),
            Ok(GeoCode::Subdivision(*b"US", *b"CA\0"))
        );
        assert_eq!(
            GeoCode::parse("AS-DE", &t),
            Err("\"AS-DE\": DE is not in AS".into())
        );
        assert_eq!(
            GeoCode::parse("XX", &t),
            Err("\"XX\": XX is not an ISO 3166-1 country code".into())
        );
        assert!(looks_like_subnet("192.0.2.0/24") && looks_like_subnet("2001:db8::/32"));
        assert!(!looks_like_subnet("EU-DE"));
    }
}
