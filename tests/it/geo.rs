//! GeoIP module against real mmdb files: tiny fixtures built with `mmdb-writer` in a
//! tempdir, one per layout gslbd reads, and the country database shipped in `geoip/`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use gslbd::geo::{GeoDb, GeoError, Location, default_paths};
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn ip(s: &str) -> IpAddr {
    match s.parse() {
        Ok(ip) => ip,
        Err(e) => panic!("bad test address {s}: {e}"),
    }
}

/// Writes `entries` (network, record) as an mmdb file named `name` under `dir`.
fn write_db(
    dir: &Path,
    name: &str,
    version: IpVersion,
    entries: Vec<(&str, Value)>,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut w = Writer::builder(name).ip_version(version).build();
    for (net, value) in entries {
        w.insert_value(net.parse::<IpNet>()?, value)?;
    }
    let path = dir.join(format!("{name}.mmdb"));
    std::fs::write(&path, w.to_bytes()?)?;
    Ok(path)
}

fn iso(code: &str) -> Value {
    Value::map([("iso_code", Value::from(code))])
}

/// A record in the GeoIP2 City layout, with the extra fields real files carry (names,
/// geoname ids, time zone) so the test also shows they are skipped.
fn city(continent: &str, country: &str, subdivisions: &[&str], lat: f64, lon: f64) -> Value {
    let names = Value::map([
        ("en", Value::from("Somewhere")),
        ("de", Value::from("Irgendwo")),
    ]);
    Value::map([
        (
            "city",
            Value::map([("geoname_id", Value::from(1u32)), ("names", names.clone())]),
        ),
        (
            "continent",
            Value::map([
                ("code", Value::from(continent)),
                ("geoname_id", Value::from(6_255_148u32)),
                ("names", names.clone()),
            ]),
        ),
        (
            "country",
            Value::map([
                ("iso_code", Value::from(country)),
                ("geoname_id", Value::from(2_921_044u32)),
                ("names", names),
            ]),
        ),
        ("registered_country", iso(country)),
        (
            "subdivisions",
            Value::array(subdivisions.iter().map(|s| iso(s))),
        ),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::from(20u16)),
                ("latitude", Value::from(lat)),
                ("longitude", Value::from(lon)),
                ("time_zone", Value::from("Europe/London")),
            ]),
        ),
    ])
}

/// The GeoIP2 City fixture: networks on six continents, IPv4 and IPv6.
fn city_db(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    write_db(
        dir,
        "GeoIP2-City-Test",
        IpVersion::V6,
        vec![
            (
                "81.2.69.0/24",
                city("EU", "GB", &["ENG", "WSM"], 51.5142, -0.0931),
            ),
            (
                "198.51.100.0/24",
                city("NA", "US", &["CA"], 37.7749, -122.4194),
            ),
            (
                "203.0.113.0/25",
                city("OC", "AU", &["NSW"], -33.8688, 151.2093),
            ),
            (
                "192.0.2.128/26",
                city("SA", "BR", &["SP"], -23.5505, -46.6333),
            ),
            (
                "100.64.0.0/10",
                city("AF", "ZA", &["GP"], -26.2041, 28.0473),
            ),
            (
                "2001:db8:100::/48",
                city("AS", "JP", &["13"], 35.6895, 139.6917),
            ),
        ],
    )
}

fn open(paths: &[PathBuf]) -> GeoDb {
    match GeoDb::open(paths) {
        Ok(db) => db,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn city_layout_exact_locations() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = open(&[city_db(dir.path())?]);

    assert_eq!(
        db.lookup(ip("81.2.69.160")),
        Some(Location {
            continent: Some(*b"EU"),
            country: Some(*b"GB"),
            subdivision: Some(*b"ENG"),
            coords: Some((51.5142, -0.0931)),
            coords_from_centroid: false,
            prefix_len: 24,
            db: 0,
        })
    );
    assert_eq!(
        db.lookup(ip("198.51.100.7")),
        Some(Location {
            continent: Some(*b"NA"),
            country: Some(*b"US"),
            subdivision: Some(*b"CA\0"),
            coords: Some((37.7749, -122.4194)),
            coords_from_centroid: false,
            prefix_len: 24,
            db: 0,
        })
    );
    assert_eq!(
        db.lookup(ip("2001:db8:100:5::1")),
        Some(Location {
            continent: Some(*b"AS"),
            country: Some(*b"JP"),
            subdivision: Some(*b"13\0"),
            coords: Some((35.6895, 139.6917)),
            coords_from_centroid: false,
            prefix_len: 48,
            db: 0,
        })
    );
    let au = db.lookup(ip("203.0.113.1"));
    assert_eq!(au.and_then(|l| l.continent), Some(*b"OC"));
    assert_eq!(au.map(|l| l.prefix_len), Some(25));
    let br = db.lookup(ip("192.0.2.130"));
    assert_eq!(br.and_then(|l| l.country), Some(*b"BR"));
    assert_eq!(br.map(|l| l.prefix_len), Some(26));
    let za = db.lookup(ip("100.100.1.1"));
    assert_eq!(
        za.map(|l| (l.continent, l.prefix_len)),
        Some((Some(*b"AF"), 10))
    );
    Ok(())
}

#[test]
fn no_hit_is_none() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = open(&[city_db(dir.path())?]);
    assert_eq!(db.lookup(ip("10.0.0.1")), None);
    assert_eq!(db.lookup(ip("192.0.2.1")), None); // 192.0.2.0/25 is not in the file
    assert_eq!(db.lookup(ip("2001:db8:200::1")), None);
    assert_eq!(db.lookup(ip("::ffff:10.0.0.1")), None);
    assert_eq!(GeoDb::empty().lookup(ip("81.2.69.160")), None);
    assert!(GeoDb::empty().is_empty());
    Ok(())
}

#[test]
fn ipv4_mapped_ipv6_is_looked_up_as_ipv4() -> TestResult {
    let dir = tempfile::tempdir()?;
    let v6 = open(&[city_db(dir.path())?]);
    let plain = v6.lookup(ip("81.2.69.160"));
    assert!(plain.is_some());
    assert_eq!(v6.lookup(ip("::ffff:81.2.69.160")), plain);
    assert_eq!(plain.map(|l| l.prefix_len), Some(24));

    // Also against an IPv4-only file, which cannot be asked IPv6 questions at all.
    let v4 = open(&[write_db(
        dir.path(),
        "v4-only",
        IpVersion::V4,
        vec![("81.2.69.0/24", Value::map([("country_code", "GB")]))],
    )?]);
    let mapped = v4.lookup(ip("::ffff:81.2.69.160"));
    assert_eq!(
        mapped.map(|l| (l.country, l.prefix_len)),
        Some((Some(*b"GB"), 24))
    );
    assert_eq!(v4.lookup(ip("2001:db8::1")), None);
    Ok(())
}

#[test]
fn country_layout_gets_centroid_coordinates() -> TestResult {
    let dir = tempfile::tempdir()?;
    let country = |cont: &str, cc: &str| {
        Value::map([
            ("continent", Value::map([("code", Value::from(cont))])),
            ("country", iso(cc)),
            ("registered_country", iso(cc)),
        ])
    };
    let path = write_db(
        dir.path(),
        "GeoLite2-Country-Test",
        IpVersion::V4,
        vec![
            ("81.2.69.0/24", country("EU", "DE")),
            ("198.51.100.0/24", country("NA", "US")),
            // Only the registration country (MaxMind does this for some anycast ranges).
            (
                "192.0.2.0/24",
                Value::map([
                    ("continent", Value::map([("code", Value::from("EU"))])),
                    ("registered_country", iso("FR")),
                ]),
            ),
        ],
    )?;
    let db = open(&[path]);
    assert_eq!(
        db.lookup(ip("81.2.69.1")),
        Some(Location {
            continent: Some(*b"EU"),
            country: Some(*b"DE"),
            subdivision: None,
            coords: Some((51.17, 10.45)),
            coords_from_centroid: true,
            prefix_len: 24,
            db: 0,
        })
    );
    let us = db.lookup(ip("198.51.100.1"));
    assert_eq!(us.and_then(|l| l.coords), Some((37.42, -92.18)));
    let fr = db.lookup(ip("192.0.2.1"));
    assert_eq!(fr.and_then(|l| l.country), Some(*b"FR"));
    assert_eq!(fr.map(|l| l.coords_from_centroid), Some(true));
    Ok(())
}

#[test]
fn dbip_style_f32_coordinates() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rec = |cont: &str, cc: &str, lat: f32, lon: f32| {
        Value::map([
            ("continent", Value::map([("code", Value::from(cont))])),
            ("country", iso(cc)),
            ("subdivisions", Value::array([iso("HE")])),
            (
                "location",
                Value::map([
                    ("latitude", Value::from(lat)),
                    ("longitude", Value::from(lon)),
                ]),
            ),
        ])
    };
    let path = write_db(
        dir.path(),
        "DBIP-City-Lite",
        IpVersion::V6,
        vec![
            ("192.0.2.0/24", rec("EU", "DE", 50.11, 8.68)),
            ("2001:db8:f00::/40", rec("NA", "CA", 45.5017, -73.5673)),
        ],
    )?;
    let db = open(&[path]);
    assert_eq!(
        db.lookup(ip("192.0.2.77")),
        Some(Location {
            continent: Some(*b"EU"),
            country: Some(*b"DE"),
            subdivision: Some(*b"HE\0"),
            coords: Some((50.11, 8.68)),
            coords_from_centroid: false,
            prefix_len: 24,
            db: 0,
        })
    );
    let ca = db.lookup(ip("2001:db8:f12::1"));
    assert_eq!(ca.and_then(|l| l.coords), Some((45.5017, -73.5673)));
    assert_eq!(ca.map(|l| l.prefix_len), Some(40));
    assert_eq!(db.decode_errors(), 0);
    Ok(())
}

/// The flat ip-location-db layouts: `country_code` only, and the city variant with
/// `state1` / `city` / `latitude` / `longitude` (numbers or strings).
fn flat_db(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    write_db(
        dir,
        "iptoasn-country",
        IpVersion::V6,
        vec![
            ("198.51.100.0/23", Value::map([("country_code", "us")])),
            ("2001:db8:abcd::/48", Value::map([("country_code", "JP")])),
            (
                "203.0.113.128/25",
                Value::map([
                    ("country_code", Value::from("DE")),
                    ("state1", Value::from("Bavaria")),
                    ("city", Value::from("Munich")),
                    ("latitude", Value::from("48.1374")),
                    ("longitude", Value::from(11.5755f64)),
                ]),
            ),
            (
                "192.0.2.0/28",
                Value::map([
                    ("country_code", Value::from("US")),
                    ("state1", Value::from("NY")),
                    ("latitude", Value::from(40.7128f32)),
                    ("longitude", Value::from(-74.006f32)),
                ]),
            ),
            // A record that says nothing gslbd uses: a miss, so later files are asked.
            ("100.64.0.0/10", Value::map([("isp", "Example")])),
            // Not a country code: ignored, likewise a miss.
            ("100.128.0.0/9", Value::map([("country_code", "ZZZ")])),
        ],
    )
}

#[test]
fn flat_country_code_layout() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = open(&[flat_db(dir.path())?]);
    assert_eq!(
        db.lookup(ip("198.51.101.9")),
        Some(Location {
            continent: Some(*b"NA"),
            country: Some(*b"US"),
            subdivision: None,
            coords: Some((37.42, -92.18)),
            coords_from_centroid: true,
            prefix_len: 23,
            db: 0,
        })
    );
    assert_eq!(
        db.lookup(ip("2001:db8:abcd:1::53")),
        Some(Location {
            continent: Some(*b"AS"),
            country: Some(*b"JP"),
            subdivision: None,
            coords: Some((36.2, 138.25)),
            coords_from_centroid: true,
            prefix_len: 48,
            db: 0,
        })
    );
    // City variant: a region *name* is not a subdivision code; string latitude accepted.
    assert_eq!(
        db.lookup(ip("203.0.113.200")),
        Some(Location {
            continent: Some(*b"EU"),
            country: Some(*b"DE"),
            subdivision: None,
            coords: Some((48.1374, 11.5755)),
            coords_from_centroid: false,
            prefix_len: 25,
            db: 0,
        })
    );
    let ny = db.lookup(ip("192.0.2.1"));
    assert_eq!(ny.and_then(|l| l.subdivision), Some(*b"NY\0"));
    assert_eq!(ny.and_then(|l| l.coords), Some((40.7128, -74.006)));
    assert_eq!(db.lookup(ip("100.64.1.1")), None);
    assert_eq!(db.lookup(ip("100.200.1.1")), None);
    Ok(())
}

#[test]
fn first_file_with_a_hit_wins() -> TestResult {
    let dir = tempfile::tempdir()?;
    let city = city_db(dir.path())?;
    let flat = flat_db(dir.path())?;

    let db = open(&[city.clone(), flat.clone()]);
    // Both know 198.51.100.7: the city file, asked first, answers.
    let a = db.lookup(ip("198.51.100.7"));
    assert_eq!(
        a.map(|l| (l.db, l.subdivision, l.prefix_len)),
        Some((0, Some(*b"CA\0"), 24))
    );
    // Only the second file knows these.
    let b = db.lookup(ip("198.51.101.7"));
    assert_eq!(
        b.map(|l| (l.db, l.country, l.prefix_len)),
        Some((1, Some(*b"US"), 23))
    );
    let c = db.lookup(ip("2001:db8:abcd::1"));
    assert_eq!(c.map(|l| (l.db, l.country)), Some((1, Some(*b"JP"))));
    // The flat file has a useless record for 100.64/10; the city file's answer stands, and
    // in the other order the useless record falls through to the city file.
    assert_eq!(db.lookup(ip("100.64.0.1")).map(|l| l.db), Some(0));
    let rev = open(&[flat, city]);
    assert_eq!(
        rev.lookup(ip("100.64.0.1")).map(|l| (l.db, l.country)),
        Some((1, Some(*b"ZA")))
    );
    let a = rev.lookup(ip("198.51.100.7"));
    assert_eq!(
        a.map(|l| (l.db, l.subdivision, l.prefix_len)),
        Some((0, None, 23))
    );

    let names: Vec<String> = db.databases().map(|d| d.database_type.clone()).collect();
    assert_eq!(names, ["GeoIP2-City-Test", "iptoasn-country"]);
    assert_eq!(db.database(1).map(|d| d.ip_version), Some(6));
    Ok(())
}

#[test]
fn prefix_len_in_ipv4_terms() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rec = || Value::map([("country_code", "NL")]);
    let v6 = open(&[write_db(
        dir.path(),
        "v6",
        IpVersion::V6,
        vec![("192.0.2.0/24", rec()), ("2001:db8::/32", rec())],
    )?]);
    let v4 = open(&[write_db(
        dir.path(),
        "v4",
        IpVersion::V4,
        vec![("192.0.2.0/24", rec())],
    )?]);
    for db in [&v6, &v4] {
        assert_eq!(db.lookup(ip("192.0.2.1")).map(|l| l.prefix_len), Some(24));
        assert_eq!(
            db.lookup(ip("::ffff:192.0.2.1")).map(|l| l.prefix_len),
            Some(24)
        );
    }
    assert_eq!(
        v6.lookup(ip("2001:db8:1::1")).map(|l| l.prefix_len),
        Some(32)
    );
    Ok(())
}

#[test]
fn missing_file_error_names_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = city_db(dir.path())?;
    let missing = dir.path().join("no-such.mmdb");
    let err = GeoDb::open(&[good, missing.clone()]).err();
    assert!(matches!(err, Some(GeoError::Read { ref path, .. }) if *path == missing));
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("no-such.mmdb"), "{msg}");
    assert!(msg.contains("cannot read"), "{msg}");
    Ok(())
}

#[test]
fn corrupt_file_error_names_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"this is not a MaxMind DB file at all")?;
    let err = GeoDb::open(std::slice::from_ref(&garbage)).err();
    assert!(matches!(err, Some(GeoError::Invalid { ref path, .. }) if *path == garbage));
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("garbage.mmdb") && msg.contains("not a valid"),
        "{msg}"
    );

    // A real file cut short: the metadata at its end is gone.
    let city = city_db(dir.path())?;
    let bytes = std::fs::read(&city)?;
    let cut = dir.path().join("truncated.mmdb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
    let msg = GeoDb::open(&[cut])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("truncated.mmdb"), "{msg}");

    let empty = dir.path().join("empty.mmdb");
    std::fs::write(&empty, b"")?;
    assert!(matches!(
        GeoDb::open(&[empty]),
        Err(GeoError::Invalid { .. })
    ));
    Ok(())
}

#[test]
fn json_and_describe_of_a_lookup() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = open(&[city_db(dir.path())?]);
    let loc = db.lookup(ip("198.51.100.7")).ok_or("no hit")?;
    assert_eq!(
        loc.describe(),
        "NA-US-CA (37.7749, -122.4194), network /24 in database 0"
    );
    assert_eq!(
        serde_json::to_string(&loc)?,
        r#"{"continent":"NA","country":"US","subdivision":"CA","coords":{"lat":37.7749,"lon":-122.4194},"coords_from_centroid":false,"prefix_len":24,"db":0}"#
    );
    Ok(())
}

// The country database shipped in geoip/.

fn shipped() -> GeoDb {
    open(&default_paths())
}

fn country_of(db: &GeoDb, addr: &str) -> Option<String> {
    db.lookup(ip(addr))
        .and_then(|l| l.country_str().map(str::to_owned))
}

#[test]
fn shipped_database_known_addresses() {
    let db = shipped();
    assert_eq!(db.databases().count(), 2);
    let google = db.lookup(ip("8.8.8.8"));
    assert_eq!(google.and_then(|l| l.country), Some(*b"US"));
    assert_eq!(google.and_then(|l| l.continent), Some(*b"NA"));
    assert_eq!(google.map(|l| l.coords_from_centroid), Some(true));
    assert_eq!(google.map(|l| l.db), Some(0));
    // heise.de (Heise Medien, Hannover) and the University of Tokyo's 133.11.0.0/16.
    assert_eq!(country_of(&db, "193.99.144.80").as_deref(), Some("DE"));
    assert_eq!(country_of(&db, "133.11.0.1").as_deref(), Some("JP"));
    assert_eq!(country_of(&db, "::ffff:8.8.8.8").as_deref(), Some("US"));
    // IPv6: Google Public DNS, DFN (German research network), WIDE (Japan).
    let g6 = db.lookup(ip("2001:4860:4860::8888"));
    assert_eq!(g6.and_then(|l| l.country), Some(*b"US"));
    assert_eq!(g6.map(|l| l.db), Some(1));
    assert_eq!(country_of(&db, "2001:638::1").as_deref(), Some("DE"));
    assert_eq!(country_of(&db, "2001:200::1").as_deref(), Some("JP"));
    // Private and documentation space is in no routing table.
    assert_eq!(db.lookup(ip("10.1.2.3")), None);
    assert_eq!(db.lookup(ip("127.0.0.1")), None);
    assert_eq!(db.lookup(ip("2001:db8::1")), None);
    assert_eq!(db.decode_errors(), 0);
}

#[test]
fn undecodable_record_is_counted_and_falls_through() -> TestResult {
    let dir = tempfile::tempdir()?;
    // `country` as a plain string is not the MaxMind layout: the record cannot be read.
    let odd = write_db(
        dir.path(),
        "odd-layout",
        IpVersion::V6,
        vec![("198.51.100.0/24", Value::map([("country", "US")]))],
    )?;
    let db = open(&[odd, city_db(dir.path())?]);
    let loc = db.lookup(ip("198.51.100.7"));
    assert_eq!(loc.map(|l| (l.db, l.country)), Some((1, Some(*b"US"))));
    assert_eq!(db.decode_errors(), 1);
    Ok(())
}

#[test]
fn geodb_is_shareable_across_threads() {
    // The query path shares one GeoDb between the UDP threads behind an Arc.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GeoDb>();
}

/// Networks that share one data record (as every network of a country does in a country
/// file) are decoded once per thread and cached by record: repeated and interleaved lookups
/// still give each network its own prefix, and a second database instance is not confused
/// with the first.
#[test]
fn shared_records_keep_their_own_prefix_through_the_record_cache() -> TestResult {
    let dir = tempfile::tempdir()?;
    let de = || Value::map([("country_code", "DE")]);
    let path = write_db(
        dir.path(),
        "shared",
        IpVersion::V6,
        vec![
            ("10.0.0.0/8", de()),
            ("172.16.0.0/12", de()),
            ("198.51.100.0/24", Value::map([("country_code", "FR")])),
        ],
    )?;
    let db = open(std::slice::from_ref(&path));
    for _ in 0..3 {
        for (addr, country, prefix) in [
            ("10.1.2.3", "DE", 8),
            ("172.16.9.9", "DE", 12),
            ("198.51.100.7", "FR", 24),
        ] {
            let loc = db.lookup(ip(addr)).expect("hit");
            assert_eq!(
                (loc.country_str(), loc.prefix_len),
                (Some(country), prefix),
                "{addr}"
            );
        }
    }
    let other = write_db(
        dir.path(),
        "other",
        IpVersion::V6,
        vec![("10.0.0.0/8", Value::map([("country_code", "JP")]))],
    )?;
    let db2 = open(&[other]);
    assert_eq!(
        db2.lookup(ip("10.1.2.3"))
            .and_then(|l| l.country_str().map(str::to_string))
            .as_deref(),
        Some("JP")
    );
    assert_eq!(
        db.lookup(ip("10.1.2.3"))
            .and_then(|l| l.country_str().map(str::to_string))
            .as_deref(),
        Some("DE")
    );
    Ok(())
}
