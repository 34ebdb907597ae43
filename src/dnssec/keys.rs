//! Zone keys: algorithms, roles and states, private key files, DNSKEY/DS/CDS/CDNSKEY data,
//! and `gslbd keygen`.
//!
//! A private key is a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey`
//! writes too), readable only by its owner. The public half, the DNSKEY flags (from the role)
//! and the key tag are derived from it when the zone is loaded; nothing else is kept on disk.
//! The crypto is hickory-proto's (aws-lc-rs backend, the one rustls already uses).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hickory_proto::dnssec::crypto::{Digest, EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::{Algorithm, DigestType, SigningKey, TBS};
use hickory_proto::rr::Name;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::rr::wire_key;

/// DNSKEY flags: zone key (bit 7).
pub const FLAG_ZONE: u16 = 0x0100;
/// DNSKEY flags: secure entry point (bit 15), set on KSKs and CSKs.
pub const FLAG_SEP: u16 = 0x0001;

/// The signing algorithms gslbd makes keys for and signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// 13: ECDSA P-256 with SHA-256 (the default: small keys and signatures, universally validated).
    EcdsaP256Sha256,
    /// 15: Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    /// The accepted mnemonics, for error messages.
    pub const NAMES: &'static str = "ECDSAP256SHA256, ED25519";

    /// Parses the mnemonic (case-insensitive) or the number.
    pub fn parse(s: &str) -> Option<KeyAlgorithm> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ECDSAP256SHA256" | "13" => Some(KeyAlgorithm::EcdsaP256Sha256),
            "ED25519" | "15" => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }

    /// The algorithm number of DNSKEY, RRSIG and DS.
    pub fn number(self) -> u8 {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => 13,
            KeyAlgorithm::Ed25519 => 15,
        }
    }

    /// The mnemonic (`ECDSAP256SHA256`).
    pub fn mnemonic(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            KeyAlgorithm::Ed25519 => "ED25519",
        }
    }

    fn hickory(self) -> Algorithm {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => Algorithm::ECDSAP256SHA256,
            KeyAlgorithm::Ed25519 => Algorithm::ED25519,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

/// What a key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Combined signing key: signs everything (DNSKEY flags 257). The default.
    Csk,
    /// Key-signing key: signs the DNSKEY, CDS and CDNSKEY RRsets (flags 257).
    Ksk,
    /// Zone-signing key: signs every other RRset (flags 256).
    Zsk,
}

impl Role {
    /// Parses `csk`, `ksk` or `zsk` (case-insensitive).
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csk" => Some(Role::Csk),
            "ksk" => Some(Role::Ksk),
            "zsk" => Some(Role::Zsk),
            _ => None,
        }
    }

    /// The name in zone files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Csk => "csk",
            Role::Ksk => "ksk",
            Role::Zsk => "zsk",
        }
    }

    /// DNSKEY flags of a key in this role.
    pub fn flags(self) -> u16 {
        match self {
            Role::Csk | Role::Ksk => FLAG_ZONE | FLAG_SEP,
            Role::Zsk => FLAG_ZONE,
        }
    }

    /// Signs the apex key RRsets (DNSKEY, CDS, CDNSKEY).
    pub fn signs_keys(self) -> bool {
        matches!(self, Role::Csk | Role::Ksk)
    }

    /// Signs the zone's other RRsets.
    pub fn signs_zone(self) -> bool {
        matches!(self, Role::Csk | Role::Zsk)
    }
}

/// Where a key is in its life (see docs/dnssec.md for the rollover steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// In the DNSKEY RRset, signs nothing yet (pre-publication).
    Published,
    /// In the DNSKEY RRset and signing.
    Active,
    /// Still in the DNSKEY RRset (caches may hold its signatures), signs nothing.
    Retired,
}

impl KeyState {
    /// Parses `published`, `active` or `retired` (case-insensitive).
    pub fn parse(s: &str) -> Option<KeyState> {
        match s.trim().to_ascii_lowercase().as_str() {
            "published" => Some(KeyState::Published),
            "active" => Some(KeyState::Active),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }

    /// The name in zone files.
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// One key of a zone: ours (with its private half) or another signer's (public only).
pub struct ZoneKey {
    /// What it signs.
    pub role: Role,
    /// Where it is in its life.
    pub state: KeyState,
    /// Algorithm number.
    pub algorithm: u8,
    /// DNSKEY RDATA: flags, protocol 3, algorithm, public key.
    pub dnskey: Vec<u8>,
    /// Key tag (RFC 4034 appendix B).
    pub tag: u16,
    /// The private key file; `None` for another signer's key.
    pub file: Option<PathBuf>,
    signer: Option<Box<dyn SigningKey>>,
}

impl fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneKey")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("algorithm", &self.algorithm)
            .field("tag", &self.tag)
            .field("file", &self.file)
            .finish()
    }
}

impl ZoneKey {
    /// Builds a key from a loaded private key.
    pub fn from_signer(signer: Box<dyn SigningKey>, role: Role, state: KeyState) -> ZoneKey {
        let algorithm = u8::from(signer.algorithm());
        let public = signer
            .to_public_key()
            .map(|p| hickory_proto::dnssec::PublicKey::public_bytes(&p).to_vec())
            .unwrap_or_default();
        let dnskey = dnskey_rdata(role.flags(), algorithm, &public);
        ZoneKey {
            role,
            state,
            algorithm,
            tag: key_tag(&dnskey),
            dnskey,
            file: None,
            signer: Some(signer),
        }
    }

    /// Another signer's key (RFC 8901 multi-signer): published, never used to sign here.
    pub fn foreign(dnskey: Vec<u8>) -> ZoneKey {
        let flags = u16::from_be_bytes([dnskey[0], dnskey[1]]);
        ZoneKey {
            role: if flags & FLAG_SEP != 0 {
                Role::Ksk
            } else {
                Role::Zsk
            },
            state: KeyState::Active,
            algorithm: dnskey[3],
            tag: key_tag(&dnskey),
            dnskey,
            file: None,
            signer: None,
        }
    }

    /// Whether this instance signs with the key (ours and active).
    pub fn signs(&self) -> bool {
        self.signer.is_some() && self.state == KeyState::Active
    }

    /// We hold its private key (not another signer's).
    pub fn is_ours(&self) -> bool {
        self.signer.is_some()
    }

    /// A secure entry point (KSK or CSK): the parent's DS points at it.
    pub fn is_sep(&self) -> bool {
        u16::from_be_bytes([self.dnskey[0], self.dnskey[1]]) & FLAG_SEP != 0
    }

    /// Signs `data` (the RRSIG RDATA prefix and the canonical RRset).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        let s = self.signer.as_ref().ok_or("not our key")?;
        s.sign(&TBS::from(data)).map_err(|e| e.to_string())
    }

    /// DS RDATA (SHA-256) for this key at `owner` (lower-cased wire name).
    pub fn ds_rdata(&self, owner: &[u8]) -> Result<Vec<u8>, String> {
        ds_rdata(owner, &self.dnskey)
    }
}

/// DNSKEY RDATA from its parts.
pub fn dnskey_rdata(flags: u16, algorithm: u8, public: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + public.len());
    v.extend_from_slice(&flags.to_be_bytes());
    v.push(3);
    v.push(algorithm);
    v.extend_from_slice(public);
    v
}

/// RFC 4034 appendix B: the key tag of a DNSKEY RDATA.
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 0 {
            u32::from(*b) << 8
        } else {
            u32::from(*b)
        };
    }
    ac += ac >> 16;
    (ac & 0xFFFF) as u16
}

/// DS RDATA (digest type 2, SHA-256) for a DNSKEY RDATA at `owner` (lower-cased wire name).
pub fn ds_rdata(owner: &[u8], dnskey: &[u8]) -> Result<Vec<u8>, String> {
    let mut data = Vec::with_capacity(owner.len() + dnskey.len());
    data.extend_from_slice(owner);
    data.extend_from_slice(dnskey);
    let d = Digest::new(&data, DigestType::SHA256).map_err(|e| e.to_string())?;
    let mut v = Vec::with_capacity(4 + 32);
    v.extend_from_slice(&key_tag(dnskey).to_be_bytes());
    v.push(dnskey.get(3).copied().unwrap_or(0));
    v.push(2);
    v.extend_from_slice(d.as_ref());
    Ok(v)
}

/// Presentation form of DNSKEY RDATA: `257 3 13 base64`.
pub fn dnskey_text(rdata: &[u8]) -> String {
    if rdata.len() < 4 {
        return String::new();
    }
    format!(
        "{} {} {} {}",
        u16::from_be_bytes([rdata[0], rdata[1]]),
        rdata[2],
        rdata[3],
        data_encoding::BASE64.encode(&rdata[4..])
    )
}

/// Presentation form of DS RDATA: `12345 13 2 HEX`.
pub fn ds_text(rdata: &[u8]) -> String {
    if rdata.len() < 4 {
        return String::new();
    }
    format!(
        "{} {} {} {}",
        u16::from_be_bytes([rdata[0], rdata[1]]),
        rdata[2],
        rdata[3],
        data_encoding::HEXUPPER.encode(&rdata[4..])
    )
}

/// Parses a DNSKEY in presentation form, `257 3 13 base64...`, optionally preceded by
/// `owner [ttl] [IN] DNSKEY` as in a `.key` file or `dig` output.
pub fn parse_dnskey(s: &str) -> Result<Vec<u8>, String> {
    let tokens: Vec<&str> = s.split_whitespace().collect();
    let rest = match tokens.iter().position(|t| t.eq_ignore_ascii_case("DNSKEY")) {
        Some(i) => &tokens[i + 1..],
        None => &tokens[..],
    };
    if rest.len() < 4 {
        return Err(format!(
            "{s:?} is not a DNSKEY (expected \"FLAGS 3 ALGORITHM BASE64-KEY\")"
        ));
    }
    let flags: u16 = rest[0]
        .parse()
        .map_err(|_| format!("DNSKEY flags {:?} is not a number", rest[0]))?;
    if flags & FLAG_ZONE == 0 {
        return Err(format!(
            "DNSKEY flags {flags} lack the zone key bit (256 or 257 expected)"
        ));
    }
    if rest[1] != "3" {
        return Err(format!("DNSKEY protocol must be 3, found {}", rest[1]));
    }
    let alg: u8 = rest[2]
        .parse()
        .map_err(|_| format!("DNSKEY algorithm {:?} is not a number", rest[2]))?;
    let b64: String = rest[3..].concat();
    let public = data_encoding::BASE64
        .decode(b64.as_bytes())
        .map_err(|e| format!("DNSKEY key is not base64: {e}"))?;
    if public.is_empty() {
        return Err("DNSKEY key is empty".into());
    }
    Ok(dnskey_rdata(flags, alg, &public))
}

/// Reads a PKCS#8 PEM private key file for `alg`; errors say what to do.
pub fn load_private_key(path: &Path, alg: KeyAlgorithm) -> Result<Box<dyn SigningKey>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a PEM private key ({e}); `gslbd keygen` writes PKCS#8 PEM files",
            path.display()
        )
    })?;
    let PrivateKeyDer::Pkcs8(pkcs8) = der else {
        return Err(format!(
            "{} is not a PKCS#8 key (\"BEGIN PRIVATE KEY\"); convert it with `openssl pkcs8 -topk8 -nocrypt`",
            path.display()
        ));
    };
    let key: Result<Box<dyn SigningKey>, _> = match alg {
        KeyAlgorithm::EcdsaP256Sha256 => {
            EcdsaSigningKey::from_pkcs8(&pkcs8, alg.hickory()).map(|k| Box::new(k) as _)
        }
        KeyAlgorithm::Ed25519 => Ed25519SigningKey::from_pkcs8(&pkcs8).map(|k| Box::new(k) as _),
    };
    key.map_err(|e| {
        format!(
            "{} is not a {alg} key ({e}); set the key's `algorithm` to the one it was made with",
            path.display()
        )
    })
}

#[cfg(unix)]
fn world_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode & 0o777)
}

#[cfg(not(unix))]
fn world_readable(_: &Path) -> Option<u32> {
    None
}

/// Loads one of our keys; logs a warning when others may read the private key file.
pub fn load_zone_key(
    path: &Path,
    alg: KeyAlgorithm,
    role: Role,
    state: KeyState,
) -> Result<ZoneKey, String> {
    let signer = load_private_key(path, alg)?;
    if let Some(mode) = world_readable(path) {
        tracing::warn!(
            file = %path.display(),
            "private key file mode is {mode:o}: others may read it (chmod 600)"
        );
    }
    let mut k = ZoneKey::from_signer(signer, role, state);
    k.file = Some(path.to_path_buf());
    Ok(k)
}

/// What `gslbd keygen` made.
#[derive(Debug)]
pub struct Generated {
    /// The PKCS#8 PEM private key file (mode 0600).
    pub private_file: PathBuf,
    /// The `.key` file with the DNSKEY.
    pub key_file: PathBuf,
    /// Key tag.
    pub tag: u16,
    /// `zone. TTL IN DNSKEY ...`
    pub dnskey: String,
    /// `zone. TTL IN DS ...` (SHA-256), empty for a ZSK.
    pub ds: String,
    /// The `[[dnssec.keys]]` entry to paste into the zone file.
    pub snippet: String,
}

fn pem(der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut s = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END PRIVATE KEY-----\n");
    s
}

/// Makes a key pair for `zone` in `dir`: `K<zone>+<alg>+<tag>.private` (PKCS#8 PEM, mode
/// 0600, never overwritten) and `K<zone>+<alg>+<tag>.key` (the DNSKEY, for reference).
pub fn keygen(zone: &Name, alg: KeyAlgorithm, role: Role, dir: &Path) -> Result<Generated, String> {
    let der = match alg {
        KeyAlgorithm::EcdsaP256Sha256 => EcdsaSigningKey::generate_pkcs8(alg.hickory()),
        KeyAlgorithm::Ed25519 => Ed25519SigningKey::generate_pkcs8(),
    }
    .map_err(|e| format!("cannot generate a {alg} key: {e}"))?;
    let text = pem(der.secret_pkcs8_der());
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let signer = match alg {
        KeyAlgorithm::EcdsaP256Sha256 => {
            EcdsaSigningKey::from_pkcs8(&der, alg.hickory()).map(|k| Box::new(k) as _)
        }
        KeyAlgorithm::Ed25519 => Ed25519SigningKey::from_pkcs8(&der).map(|k| Box::new(k) as _),
    }
    .map_err(|e: hickory_proto::dnssec::DnsSecError| e.to_string())?;
    let key = ZoneKey::from_signer(signer, role, KeyState::Active);
    let zone_text = zone.to_ascii().to_ascii_lowercase();
    let zone_text = if zone_text.ends_with('.') {
        zone_text
    } else {
        format!("{zone_text}.")
    };
    let base = format!("K{}+{:03}+{:05}", zone_text, alg.number(), key.tag);
    let private_file = dir.join(format!("{base}.private"));
    let key_file = dir.join(format!("{base}.key"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&private_file)
        .map_err(|e| format!("cannot create {}: {e}", private_file.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", private_file.display()))?;
    let dnskey = format!("{zone_text} 3600 IN DNSKEY {}", dnskey_text(&key.dnskey));
    let ds = if role.signs_keys() {
        let ds = key.ds_rdata(&wire_key(zone))?;
        format!("{zone_text} 3600 IN DS {}", ds_text(&ds))
    } else {
        String::new()
    };
    std::fs::write(
        &key_file,
        format!(
            "; {} {} key {} for {zone_text}\n{dnskey}\n",
            role.name(),
            alg,
            key.tag
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", key_file.display()))?;
    let snippet = format!(
        "[[dnssec.keys]]\nfile = {:?}\nrole = \"{}\"\nstate = \"active\"\n",
        private_file.display().to_string(),
        role.name()
    );
    Ok(Generated {
        private_file,
        key_file,
        tag: key.tag,
        dnskey,
        ds,
        snippet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tag_matches_rfc4034_example() {
        // RFC 4034 section 5.4: the DNSKEY of dskey.example.com has key tag 60485.
        let key = parse_dnskey(
            "256 3 5 AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZ\
             DRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9Xzc\
             nOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
        )
        .unwrap();
        assert_eq!(key_tag(&key), 60485);
    }

    #[test]
    fn ds_matches_rfc4509_example() {
        // RFC 4509 section 2.3: dskey.example.com.
        let key = parse_dnskey(
            "dskey.example.com. 86400 IN DNSKEY 256 3 5 ( AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw== )"
                .replace(['(', ')'], "")
                .as_str(),
        )
        .unwrap();
        let owner = wire_key(&Name::from_ascii("dskey.example.com.").unwrap());
        assert_eq!(
            ds_text(&ds_rdata(&owner, &key).unwrap()),
            "60485 5 2 D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A"
        );
    }

    #[test]
    fn keygen_writes_a_private_file_only_the_owner_reads_and_it_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Name::from_ascii("Example.COM.").unwrap();
        for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
            let g = keygen(&zone, alg, Role::Csk, dir.path()).unwrap();
            assert!(
                g.private_file
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("Kexample.com.+{:03}+", alg.number()))
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&g.private_file)
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            let k = load_zone_key(&g.private_file, alg, Role::Csk, KeyState::Active).unwrap();
            assert_eq!(k.tag, g.tag);
            assert_eq!(
                g.dnskey,
                format!("example.com. 3600 IN DNSKEY {}", dnskey_text(&k.dnskey))
            );
            assert!(g.ds.starts_with(&format!(
                "example.com. 3600 IN DS {} {} 2 ",
                g.tag,
                alg.number()
            )));
            // The wrong algorithm is a clear error, not a panic.
            let other = if alg == KeyAlgorithm::Ed25519 {
                KeyAlgorithm::EcdsaP256Sha256
            } else {
                KeyAlgorithm::Ed25519
            };
            let e = load_private_key(&g.private_file, other).err().unwrap();
            assert!(e.contains(&format!("is not a {other} key")), "{e}");
        }
    }

    #[test]
    fn garbage_key_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.private");
        std::fs::write(&p, "not a key").unwrap();
        let e = load_private_key(&p, KeyAlgorithm::EcdsaP256Sha256)
            .err()
            .unwrap();
        assert!(e.contains("is not a PEM private key"), "{e}");
        let e = load_private_key(&dir.path().join("missing"), KeyAlgorithm::Ed25519)
            .err()
            .unwrap();
        assert!(e.contains("cannot read"), "{e}");
        assert!(parse_dnskey("257 3 13").is_err());
        assert!(
            parse_dnskey("1 3 13 AAAA")
                .unwrap_err()
                .contains("zone key bit")
        );
        assert!(parse_dnskey("257 3 13 !!!").unwrap_err().contains("base64"));
    }
}
