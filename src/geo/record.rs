//! The parts of an mmdb record that gslbd reads, decoded without allocating.
//!
//! One struct covers every layout we accept, because the layouts do not clash:
//!
//! ```text
//! MaxMind GeoIP2/GeoLite2, DB-IP:  { continent: {code}, country: {iso_code},
//!                                    registered_country: {iso_code},
//!                                    subdivisions: [{iso_code}, ...],
//!                                    location: {latitude, longitude} }   (f64; DB-IP: f32)
//! ip-location-db (flat):           { country_code, state1?, latitude?, longitude? }
//!                                    (numbers or strings)
//! ```
//!
//! Strings are borrowed from the database buffer (`&'a str`), lists are walked without
//! collecting them, and every other field (names in many languages, time zones, ...) is
//! skipped by the decoder without being built. That keeps the per-query cost to a walk
//! over the record bytes.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};

/// One record, any supported layout. Absent fields are `None`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Record<'a> {
    /// MaxMind/DB-IP: the continent (`EU`).
    #[serde(borrow, default)]
    pub(crate) continent: Option<Continent<'a>>,
    /// MaxMind/DB-IP: the country (`DE`).
    #[serde(borrow, default)]
    pub(crate) country: Option<Country<'a>>,
    /// Where the network is registered; MaxMind sets only this for some ranges (anycast,
    /// satellite), so it stands in when `country` is absent.
    #[serde(borrow, default)]
    pub(crate) registered_country: Option<Country<'a>>,
    /// MaxMind/DB-IP: the largest subdivision (`CA` of `US-CA`).
    #[serde(borrow, default)]
    pub(crate) subdivisions: FirstSubdivision<'a>,
    /// MaxMind/DB-IP: coordinates (city databases).
    #[serde(default)]
    pub(crate) location: Option<Coords>,
    // Flat ip-location-db layout.
    /// ip-location-db: the country (`DE`); the continent comes from the built-in table.
    #[serde(borrow, default)]
    pub(crate) country_code: Option<&'a str>,
    /// ip-location-db city layouts: the first-level subdivision.
    #[serde(borrow, default)]
    pub(crate) state1: Option<&'a str>,
    /// ip-location-db city layouts: latitude, degrees.
    #[serde(default)]
    pub(crate) latitude: Option<Number>,
    /// ip-location-db city layouts: longitude, degrees.
    #[serde(default)]
    pub(crate) longitude: Option<Number>,
}

/// `continent` of the MaxMind layout.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Continent<'a> {
    /// Two-letter continent code.
    #[serde(borrow, default)]
    pub(crate) code: Option<&'a str>,
}

/// `country` / `registered_country` / one subdivision of the MaxMind layout.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Country<'a> {
    /// ISO 3166 code (two letters; a subdivision's own part for subdivisions).
    #[serde(borrow, default)]
    pub(crate) iso_code: Option<&'a str>,
}

/// `location` of the MaxMind layout.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Coords {
    /// Degrees north.
    #[serde(default)]
    pub(crate) latitude: Option<Number>,
    /// Degrees east.
    #[serde(default)]
    pub(crate) longitude: Option<Number>,
}

/// The `iso_code` of the first (largest) subdivision; the rest of the list is skipped.
#[derive(Debug, Default)]
pub(crate) struct FirstSubdivision<'a>(pub(crate) Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstSubdivision<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstSubdivision<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of subdivisions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first: Option<Country<'a>> = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstSubdivision(first.and_then(|s| s.iso_code)))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// A coordinate stored as a 64-bit float (MaxMind), a 32-bit float (DB-IP), an integer, or
/// a decimal string (some ip-location-db variants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub(crate) f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a decimal string")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_f32<E: de::Error>(self, v: f32) -> Result<Number, E> {
                // Widening 50.11f32 gives 50.110000610...; rounding to 1e-5 degree (about
                // a metre, finer than an f32 holds at these magnitudes) gives back the
                // decimal the file's author wrote.
                Ok(Number((f64::from(v) * 1e5).round() / 1e5))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                // Coordinates are at most 180 in magnitude; larger integers fail the range
                // check later, so precision lost converting them does not matter.
                Ok(Number(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                v.trim()
                    .parse()
                    .map(Number)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// Latitude and longitude when both are present, finite and in range.
pub(crate) fn coords(lat: Option<Number>, lon: Option<Number>) -> Option<(f64, f64)> {
    let (Number(lat), Number(lon)) = (lat?, lon?);
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// A country or continent code: two ASCII letters, upper-cased.
pub(crate) fn code2(s: &str) -> Option<[u8; 2]> {
    match s.as_bytes() {
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// A subdivision code: 1 to 3 ASCII letters or digits, upper-cased and zero-padded. A
/// full ISO 3166-2 code (`US-CA`) is cut to its subdivision part. Anything else (such as
/// the region *names* some ip-location-db files carry in `state1`) is not a code: `None`.
pub(crate) fn subdivision(s: &str) -> Option<[u8; 3]> {
    let part = s.rsplit_once('-').map_or(s, |(_, p)| p).as_bytes();
    if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let mut out = [0u8; 3];
    for (o, b) in out.iter_mut().zip(part) {
        *o = b.to_ascii_uppercase();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(code2("de"), Some(*b"DE"));
        assert_eq!(code2("DE"), Some(*b"DE"));
        assert_eq!(code2("DEU"), None);
        assert_eq!(code2("D1"), None);
        assert_eq!(code2(""), None);
        assert_eq!(subdivision("CA"), Some(*b"CA\0"));
        assert_eq!(subdivision("US-ca"), Some(*b"CA\0"));
        assert_eq!(subdivision("13"), Some(*b"13\0"));
        assert_eq!(subdivision("ENG"), Some(*b"ENG"));
        assert_eq!(subdivision("California"), None);
        assert_eq!(subdivision("New York"), None);
        assert_eq!(subdivision(""), None);
    }

    #[test]
    fn coords_range() {
        let n = |v| Some(Number(v));
        assert_eq!(coords(n(1.0), n(2.0)), Some((1.0, 2.0)));
        assert_eq!(coords(n(91.0), n(2.0)), None);
        assert_eq!(coords(n(1.0), n(f64::NAN)), None);
        assert_eq!(coords(n(1.0), None), None);
    }
}
