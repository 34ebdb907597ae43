//! GeoIP: where a client address is.
//!
//! ```text
//! --geoip files (or geoip/ default) --GeoDb::open--> readers + country tables (immutable)
//!                                                        |
//! query: ECS address or resolver address --GeoDb::lookup--> Location --> rules, `nearest`
//! ```
//!
//! At start (and on reload) the server opens one or more mmdb files with [`GeoDb::open`];
//! with none configured it uses the freely licensed country database shipped in `geoip/`
//! ([`default_paths`]). The query path calls [`GeoDb::lookup`] once per query. Files are
//! asked in order and the first that knows the address answers, so an operator can put a
//! detailed city file first and a complete country file behind it.
//!
//! Accepted layouts: MaxMind GeoIP2/GeoLite2 City and Country, DB-IP (coordinates as 32-bit
//! floats), and the flat ip-location-db records (`country_code`, maybe `state1`,
//! `latitude`, `longitude`). What a file lacks is filled from tables compiled into the
//! binary (`data/`): the continent from the country, and a representative point of the
//! country when there are no coordinates (flagged by [`Location::coords_from_centroid`]).
//!
//! A lookup allocates nothing: records are decoded into borrowed `&str` fields and codes
//! are copied into fixed-size arrays.

mod code;
mod db;
mod record;
mod tables;

use std::fmt;

pub use code::GeoCode;
pub(crate) use code::looks_like_subnet;
pub use db::{GeoDb, GeoError, default_paths, given_or_default};
pub(crate) use tables::{CONTINENTS, CountryTables};

/// Two ASCII letters, upper case: a continent (`EU`) or an ISO 3166-1 country (`DE`).
pub(crate) type Code2 = [u8; 2];

/// What the GeoIP databases know about one client address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Location {
    /// Continent code (`AF AN AS EU NA OC SA`), from the file or the country table.
    pub continent: Option<Code2>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<Code2>,
    /// ISO 3166-2 subdivision code without the country part (`CA` of `US-CA`), up to 3 chars,
    /// zero-padded on the right.
    pub subdivision: Option<[u8; 3]>,
    /// Latitude and longitude in degrees: from the file, else the country's centroid.
    pub coords: Option<(f64, f64)>,
    /// True when `coords` is the country centroid rather than the file's own figure.
    pub coords_from_centroid: bool,
    /// Prefix length of the matched network in the database (IPv4 lengths for IPv4 addresses).
    pub prefix_len: u8,
    /// Index of the database (in `--geoip` order) that answered.
    pub db: u8,
}

impl Location {
    /// The continent as text (`EU`).
    pub(crate) fn continent_str(&self) -> Option<&str> {
        self.continent.as_ref().map(db::code_str)
    }

    /// The country as text (`DE`).
    pub fn country_str(&self) -> Option<&str> {
        self.country.as_ref().map(db::code_str)
    }

    /// The subdivision as text without its padding (`CA`).
    pub(crate) fn subdivision_str(&self) -> Option<&str> {
        self.subdivision.as_ref().map(|s| {
            let len = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            std::str::from_utf8(&s[..len]).unwrap_or("???")
        })
    }

    /// One line for people (`gslbd explain`, logs), e.g.
    /// `EU-DE-BY (48.1374, 11.5755), network /24 in database 0`, or
    /// `NA-US (37.42, -92.18 country centroid), network /8 in database 1`.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

/// The geo code in zone-file form (`EU-DE-BY`, as rules write it), the coordinates and
/// where they come from, and the matched network. Unknown parts print as `?`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.continent_str().unwrap_or("?"))?;
        match self.country_str() {
            Some(c) => write!(f, "-{c}")?,
            None => f.write_str("-?")?,
        }
        if let Some(s) = self.subdivision_str() {
            write!(f, "-{s}")?;
        }
        match self.coords {
            Some((lat, lon)) if self.coords_from_centroid => {
                write!(f, " ({lat}, {lon} country centroid)")?
            }
            Some((lat, lon)) => write!(f, " ({lat}, {lon})")?,
            None => f.write_str(" (no coordinates)")?,
        }
        write!(f, ", network /{} in database {}", self.prefix_len, self.db)
    }
}

/// JSON form for `explain --json` and the API: codes as strings, absent parts as `null`,
/// coordinates as `{"lat": .., "lon": ..}`.
impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;

        #[derive(serde::Serialize)]
        struct Coords {
            lat: f64,
            lon: f64,
        }

        let mut st = s.serialize_struct("Location", 7)?;
        st.serialize_field("continent", &self.continent_str())?;
        st.serialize_field("country", &self.country_str())?;
        st.serialize_field("subdivision", &self.subdivision_str())?;
        st.serialize_field("coords", &self.coords.map(|(lat, lon)| Coords { lat, lon }))?;
        st.serialize_field("coords_from_centroid", &self.coords_from_centroid)?;
        st.serialize_field("prefix_len", &self.prefix_len)?;
        st.serialize_field("db", &self.db)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Location {
        Location {
            continent: Some(*b"EU"),
            country: Some(*b"DE"),
            subdivision: Some(*b"BY\0"),
            coords: Some((48.1374, 11.5755)),
            coords_from_centroid: false,
            prefix_len: 24,
            db: 0,
        }
    }

    #[test]
    fn describe_full_and_partial() {
        assert_eq!(
            sample().describe(),
            "EU-DE-BY (48.1374, 11.5755), network /24 in database 0"
        );
        let loc = Location {
            continent: Some(*b"NA"),
            country: Some(*b"US"),
            subdivision: None,
            coords: Some((37.42, -92.18)),
            coords_from_centroid: true,
            prefix_len: 8,
            db: 1,
        };
        assert_eq!(
            loc.describe(),
            "NA-US (37.42, -92.18 country centroid), network /8 in database 1"
        );
        let loc = Location {
            continent: None,
            country: None,
            subdivision: None,
            coords: None,
            coords_from_centroid: false,
            prefix_len: 0,
            db: 0,
        };
        assert_eq!(
            loc.describe(),
            "?-? (no coordinates), network /0 in database 0"
        );
    }

    #[test]
    fn json_form() {
        let json = serde_json::to_value(sample()).ok();
        let expected = serde_json::json!({
            "continent": "EU", "country": "DE", "subdivision": "BY",
            "coords": {"lat": 48.1374, "lon": 11.5755},
            "coords_from_centroid": false, "prefix_len": 24, "db": 0
        });
        assert_eq!(json, Some(expected));
        let none = Location {
            subdivision: None,
            coords: None,
            ..sample()
        };
        let json = serde_json::to_value(none).ok();
        assert_eq!(
            json.as_ref().and_then(|j| j.get("coords")),
            Some(&serde_json::Value::Null)
        );
        assert_eq!(
            json.as_ref().and_then(|j| j.get("subdivision")),
            Some(&serde_json::Value::Null)
        );
    }
}
