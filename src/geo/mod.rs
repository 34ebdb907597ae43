//! GeoIP: where a client address is.
//!
//! Reads one or more mmdb files at start (and on reload); the query path calls
//! [`GeoDb::lookup`] once per query with the ECS address or the resolver's address.

/// Two ASCII letters, upper case: a continent (`EU`) or an ISO 3166-1 country (`DE`).
pub type Code2 = [u8; 2];

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
