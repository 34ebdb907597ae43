//! Opening mmdb files and answering lookups.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use maxminddb::{MaxMindDbError, Reader};

use super::record::{self, Record};
use super::tables::{CONTINENTS, CountryTables, TableError};
use super::{Code2, Location};

/// Why GeoIP data could not be loaded. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read (missing, permissions, ...).
    #[error("GeoIP database {}: cannot read the file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file was read but is not a usable mmdb file (truncated, corrupt, not an mmdb).
    #[error("GeoIP database {}: not a valid MaxMind DB (.mmdb) file: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the mmdb reader found wrong.
        source: MaxMindDbError,
    },
    /// More files than [`Location::db`] can number.
    #[error("too many GeoIP databases ({count}); at most 256 are supported")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A built-in country table is malformed (a build defect; the unit tests catch it).
    #[error(transparent)]
    Table(#[from] TableError),
}

/// What was loaded from one file, for `explain`, the status API and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    /// The path as given to [`GeoDb::open`].
    pub(crate) path: PathBuf,
    /// The file's `database_type` metadata (`GeoLite2-City`, `country ipv4`, ...).
    pub database_type: String,
    /// 4 or 6: whether the file can answer IPv6 addresses.
    pub ip_version: u16,
    /// When the file was built, in seconds since the Unix epoch.
    pub(crate) build_epoch: u64,
}

struct Db {
    reader: Reader<Vec<u8>>,
    info: DbInfo,
}

/// One or more opened GeoIP databases, asked in order, plus the country tables that fill in
/// what a file lacks. Immutable once built; share it behind an `Arc` and swap a new one in
/// on reload.
pub struct GeoDb {
    dbs: Vec<Db>,
    tables: Box<CountryTables>,
    /// Records that were found but could not be decoded (a file whose layout we do not
    /// understand); counted rather than logged so the query path stays quiet and cheap.
    decode_errors: AtomicU64,
    /// Distinguishes this instance in the per-thread record cache (a reload opens a new one).
    id: u64,
}

/// Per-thread cache of decoded records, keyed by (database instance, file, data offset).
/// mmdb files share one data record between every network with the same content (a country
/// file has a few hundred), so most lookups find their record here and skip the decode.
const RECORD_CACHE: usize = 512;

thread_local! {
    static DECODED: std::cell::RefCell<Vec<(u64, Option<Location>)>> =
        std::cell::RefCell::new(vec![(u64::MAX, None); RECORD_CACHE]);
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("databases", &self.databases().collect::<Vec<_>>())
            .field("decode_errors", &self.decode_errors())
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Opens the files in order; on a lookup the first file that knows the address wins.
    ///
    /// Each file is read into memory whole (a country file is a few MB, a city file tens)
    /// and its metadata and section layout are checked, so a truncated or non-mmdb file is
    /// refused here and the caller keeps what it had. A full `verify()` walk is not done:
    /// the reader documents it as stricter than the format and slow on large files, and a
    /// record that fails to decode at query time is only a miss (see `decode_errors`).
    pub fn open(paths: &[PathBuf]) -> Result<GeoDb, GeoError> {
        if paths.len() > usize::from(u8::MAX) + 1 {
            return Err(GeoError::TooMany { count: paths.len() });
        }
        let tables = Box::new(CountryTables::builtin()?);
        let dbs = paths
            .iter()
            .map(|p| open_one(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GeoDb {
            dbs,
            tables,
            decode_errors: AtomicU64::new(0),
            id: next_id(),
        })
    }

    /// No files: every lookup is `None` (the server then treats every client alike).
    pub fn empty() -> GeoDb {
        GeoDb {
            dbs: Vec::new(),
            tables: Box::new(CountryTables::none()),
            decode_errors: AtomicU64::new(0),
            id: next_id(),
        }
    }

    /// Where the client address is, from the first file that knows it; `None` when no file
    /// does. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as IPv4.
    ///
    /// A file "knows" an address when it has a record for it that yields a continent, a
    /// country or coordinates; an empty or undecodable record falls through to the next
    /// file.
    pub fn lookup(&self, ip: IpAddr) -> Option<Location> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.dbs
            .iter()
            .enumerate()
            .find_map(|(i, db)| self.lookup_in(db, i, ip))
    }

    fn lookup_in(&self, db: &Db, index: usize, ip: IpAddr) -> Option<Location> {
        // An IPv4-only file cannot answer IPv6; asking would build an error value.
        if ip.is_ipv6() && db.info.ip_version == 4 {
            return None;
        }
        let found = db.reader.lookup(ip).ok()?;
        if !found.has_data() {
            return None;
        }
        let key = found
            .offset()
            .map(|off| (self.id << 40) ^ ((index as u64) << 32) ^ off as u64);
        let cached = key.and_then(|k| {
            DECODED.with(|c| {
                let c = c.borrow();
                let (ck, loc) = c[(k as usize).wrapping_mul(0x9E37_79B9) % RECORD_CACHE];
                (ck == k).then_some(loc)
            })
        });
        let decoded = match cached {
            Some(loc) => loc,
            None => {
                let loc = match found.decode::<Record>() {
                    Ok(Some(rec)) => self.location_from(&rec),
                    Ok(None) => None,
                    Err(_) => {
                        self.decode_errors.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                };
                if let Some(k) = key {
                    DECODED.with(|c| {
                        c.borrow_mut()[(k as usize).wrapping_mul(0x9E37_79B9) % RECORD_CACHE] =
                            (k, loc)
                    });
                }
                loc
            }
        };
        let mut loc = decoded?;
        loc.db = u8::try_from(index).unwrap_or(u8::MAX);
        // `network()` already reports an IPv4 address found under ::/96 of an IPv6 file in
        // IPv4 terms. A file without an IPv4 subtree answers from an IPv6 node; its prefix
        // is then clamped to IPv4 terms by dropping the 96 bits above the IPv4 space.
        loc.prefix_len = match (found.network(), ip) {
            (Ok(net), IpAddr::V4(_)) if net.is_ipv6() => net.prefix().saturating_sub(96),
            (Ok(net), _) => net.prefix(),
            (Err(_), _) => 0,
        };
        Some(loc)
    }

    /// Calls `f` with every network of every file that has a location (the network address,
    /// its prefix length, and the location with `prefix_len` and `db` set), IPv6 networks
    /// only when `v6`, IPv4 networks only otherwise. Files are walked whole and in order, and a
    /// network may come from several files: `gslbd simulate` draws client subnets of a region
    /// from it and then confirms each with [`GeoDb::lookup`]. Never on the query path.
    pub(crate) fn networks(&self, v6: bool, mut f: impl FnMut(IpAddr, u8, &Location)) {
        for (i, db) in self.dbs.iter().enumerate() {
            if v6 && db.info.ip_version == 4 {
                continue;
            }
            let Ok(iter) = db.reader.networks(Default::default()) else {
                continue;
            };
            for found in iter.flatten() {
                let Ok(net) = found.network() else { continue };
                let addr = net.network().to_canonical();
                if addr.is_ipv6() != v6 {
                    continue;
                }
                let prefix = if addr.is_ipv4() && net.is_ipv6() {
                    net.prefix().saturating_sub(96)
                } else {
                    net.prefix()
                };
                let Ok(Some(rec)) = found.decode::<Record>() else {
                    continue;
                };
                if let Some(mut loc) = self.location_from(&rec) {
                    loc.prefix_len = prefix;
                    loc.db = u8::try_from(i).unwrap_or(u8::MAX);
                    f(addr, prefix, &loc);
                }
            }
        }
    }

    /// Builds a [`Location`] from a record, filling continent and coordinates from the
    /// tables; `None` when the record says nothing useful.
    fn location_from(&self, rec: &Record) -> Option<Location> {
        let country = rec
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(rec.country_code)
            .or_else(|| rec.registered_country.as_ref().and_then(|c| c.iso_code))
            .and_then(record::code2);
        let continent = rec
            .continent
            .as_ref()
            .and_then(|c| c.code)
            .and_then(record::code2)
            .filter(|c| CONTINENTS.contains(c))
            .or_else(|| country.and_then(|c| self.tables.continent(c)));
        let subdivision = rec
            .subdivisions
            .0
            .or(rec.state1)
            .and_then(record::subdivision);
        let file_coords = match &rec.location {
            Some(l) => record::coords(l.latitude, l.longitude),
            None => None,
        }
        .or_else(|| record::coords(rec.latitude, rec.longitude));
        let (coords, coords_from_centroid) = match file_coords {
            Some(c) => (Some(c), false),
            None => {
                let c = country.and_then(|c| self.tables.centroid(c));
                (c, c.is_some())
            }
        };
        if continent.is_none() && country.is_none() && coords.is_none() {
            return None;
        }
        Some(Location {
            continent,
            country,
            subdivision,
            coords,
            coords_from_centroid,
            prefix_len: 0,
            db: 0,
        })
    }

    /// The opened files, in lookup order (index = [`Location::db`]).
    pub fn databases(&self) -> impl Iterator<Item = &DbInfo> {
        self.dbs.iter().map(|d| &d.info)
    }

    /// The file behind a [`Location::db`] index.
    pub fn database(&self, index: u8) -> Option<&DbInfo> {
        self.dbs.get(usize::from(index)).map(|d| &d.info)
    }

    /// How many found records could not be decoded since this `GeoDb` was opened (a
    /// metric: non-zero means a file's layout is not one gslbd reads).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    /// True when no file is loaded.
    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }
}

fn open_one(path: &Path) -> Result<Db, GeoError> {
    let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |source| GeoError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let reader = Reader::from_source(bytes).map_err(invalid)?;
    let m = reader.metadata();
    let info = DbInfo {
        path: path.to_path_buf(),
        database_type: m.database_type.clone(),
        ip_version: m.ip_version,
        build_epoch: m.build_epoch,
    };
    Ok(Db { reader, info })
}

/// `given` (the `--geoip` files), or the shipped database when none are given: what `serve`,
/// `explain` and `simulate` open.
pub fn given_or_default(given: &[PathBuf]) -> Vec<PathBuf> {
    if given.is_empty() {
        default_paths()
    } else {
        given.to_vec()
    }
}

/// The country database shipped in `geoip/` (IPv4 file first, then IPv6).
///
/// Paths are relative to the working directory when they exist there (a checkout or an
/// installed tree with `geoip/` beside it), else under the crate root this binary was built
/// from, so tests and `cargo run` find them from any directory.
pub fn default_paths() -> Vec<PathBuf> {
    const FILES: [&str; 2] = [
        "geoip/iptoasn-country-ipv4.mmdb",
        "geoip/iptoasn-country-ipv6.mmdb",
    ];
    FILES
        .iter()
        .map(|rel| {
            let p = PathBuf::from(rel);
            if p.exists() {
                p
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
            }
        })
        .collect()
}

/// Continent and country as written in zone files (`EU`, `DE`), for messages.
pub(crate) fn code_str(code: &Code2) -> &str {
    std::str::from_utf8(code).unwrap_or("??")
}
