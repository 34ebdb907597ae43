//! The `gslbd` command: `serve` (the default), `check`, `explain`, `simulate`, the DNSSEC
//! helpers `keygen` and `ds`, and the API clients `status` and `admin` (exit codes in
//! `gslbd::api::client`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand};

use gslbd::dns::EncryptedLimits;
use gslbd::server::{self, ServeOptions, TlsOptions};

#[derive(Parser, Debug)]
#[command(
    name = "gslbd",
    version,
    about = "Global server load balancing authoritative DNS server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the zones (the default: zones/ on 127.0.0.1:5353 and [::1]:5353).
    Serve(Box<ServeArgs>),
    /// Load and validate the zones; print every error; exit 1 on any error.
    Check {
        #[arg(long, default_value = "zones")]
        zones: PathBuf,
    },
    /// Explain the GSLB answer for a client: location, rule, pools, candidates, answer.
    Explain(ExplainArgs),
    /// Show a running server's datacenters, GSLB names and recent changes (GET /status).
    ///
    /// Exit codes: 0 shown; 1 the API refused; 2 usage; 3 the API cannot be reached.
    Status {
        /// The server's API.
        #[arg(long, default_value = gslbd::api::client::DEFAULT_API, value_name = "URL")]
        api: String,
    },
    /// Set a datacenter's admin state on a running server: obey, up, down or drain.
    ///
    /// Exit codes: 0 set; 1 the API refused (its reason is printed as given: wrong token,
    /// unknown datacenter, unknown state); 2 usage or unreadable token; 3 the API cannot be
    /// reached.
    Admin(AdminArgs),
    /// Make a DNSSEC key pair for ZONE; print its DNSKEY, DS and the zone-file entry.
    Keygen {
        /// The zone (example.com).
        zone: String,
        /// ECDSAP256SHA256 (default) or ED25519.
        #[arg(long, default_value = "ECDSAP256SHA256")]
        algorithm: String,
        /// csk (default: signs everything), ksk (signs the key set) or zsk (signs the rest).
        #[arg(long, default_value = "csk")]
        role: String,
        /// Directory for the key files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// What if: run a scenario (clients, resolver caches, failures, admin actions, zone
    /// changes) through the real policies, probes and aggregator on virtual time, and report
    /// shares over time, detection, drain, load and flapping (docs/simulate.md).
    ///
    /// Exit codes: 0 ran and every --check held; 1 a --check failed; 2 a bad scenario, zones,
    /// GeoIP file or --check expression, or the outputs could not be written.
    Simulate(SimulateArgs),
    /// Print the DS records of ZONE's key-signing keys, for the parent zone.
    Ds {
        /// The zone (example.com).
        zone: String,
        #[arg(long, default_value = "zones")]
        zones: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// The datacenter's name, as in the zone files.
    datacenter: String,
    /// obey | up | down | drain (checked by the API).
    #[arg(value_name = "obey|up|down|drain")]
    action: String,
    /// The server's API.
    #[arg(long, default_value = gslbd::api::client::DEFAULT_API, value_name = "URL")]
    api: String,
    /// File holding the API token.
    #[arg(long, value_name = "FILE", conflicts_with = "token_env")]
    token_file: Option<PathBuf>,
    /// Environment variable holding the API token.
    #[arg(long, value_name = "NAME")]
    token_env: Option<String>,
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    #[arg(long, default_value = "zones")]
    zones: PathBuf,
    /// The scenario file (TOML; docs/simulate.md, examples/simulate/).
    #[arg(long, required_unless_present = "metrics")]
    scenario: Option<PathBuf>,
    /// GeoIP mmdb file; repeatable (default: the shipped database).
    #[arg(long)]
    geoip: Vec<PathBuf>,
    /// Write summary.txt, summary.json, shares.csv, load.csv and the SVG charts here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// A condition the run must meet, e.g. 'max_time_to_drain("fra") < 45s'; repeatable.
    /// Exit 1 when one does not hold.
    #[arg(long = "check", value_name = "EXPR")]
    checks: Vec<String>,
    /// List the metrics --check can use, and exit.
    #[arg(long)]
    metrics: bool,
}

#[derive(clap::Args, Debug)]
struct ExplainArgs {
    /// The GSLB name (www.example.com).
    name: String,
    /// A or AAAA.
    #[arg(default_value = "A")]
    qtype: String,
    /// The resolver's address (the query's source).
    #[arg(long)]
    client: std::net::IpAddr,
    /// EDNS Client Subnet the resolver sends (192.0.2.0/24).
    #[arg(long)]
    ecs: Option<String>,
    #[arg(long, default_value = "zones")]
    zones: PathBuf,
    /// GeoIP mmdb file; repeatable (default: the shipped database).
    #[arg(long)]
    geoip: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Resolver for hostname targets outside the zones; repeatable (default: the system's).
    #[arg(long = "resolver", value_name = "ADDR:PORT")]
    resolver: Vec<SocketAddr>,
}

#[derive(clap::Parser, Debug)]
struct ServeArgs {
    /// Directory of zone files (*.toml).
    #[arg(long, default_value = "zones")]
    zones: PathBuf,
    /// Address to listen on (UDP and TCP); repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// GeoIP mmdb file; repeatable, first file with a hit wins.
    #[arg(long, value_name = "FILE")]
    geoip: Vec<PathBuf>,
    /// UDP sockets/threads per address (0 = one per core).
    #[arg(long, default_value_t = 0)]
    udp_threads: usize,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// HTTP API address (status, metrics, admin state, explain), or `none`.
    #[arg(long, default_value = "127.0.0.1:8053", value_name = "ADDR:PORT|none")]
    api: String,
    /// File holding the bearer token for mutating API calls (without a token the API is read-only).
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token (alternative to --api-token-file).
    #[arg(long, value_name = "NAME")]
    api_token_env: Option<String>,
    /// Directory for admin states and warm-start health (kept across restarts).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Refuse to start when the state directory's admin.json cannot be used (by default it is
    /// moved aside, logged, shown in /status and counted, and every datacenter starts in obey).
    #[arg(long)]
    strict_state: bool,
    /// How a never-probed datacenter counts until its first probe (without fresh warm state).
    #[arg(long, default_value = "assume-up", value_parser = ["assume-up", "assume-down"])]
    startup: String,
    /// Do not reload on changes to the zones directory or GeoIP files (SIGHUP still works).
    #[arg(long)]
    no_watch: bool,
    /// Latency map (CSV or TOML: client region or subnet -> datacenter -> ms) for `latency`
    /// pools; reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    latency_map: Option<PathBuf>,
    /// Serve UDP DNS on this interface over AF_XDP (default port 53); repeatable. Everything
    /// else (TCP, ARP/ND, other ports) still reaches the kernel. Needs the `xdp` build feature
    /// and CAP_NET_ADMIN + CAP_BPF.
    #[arg(long, value_name = "IFACE[@PORT]")]
    listen_xdp: Vec<gslbd::dns::xdp::XdpListen>,
    /// Where the XDP program runs: native (in the driver), generic (any driver, slower), or
    /// auto (native where the driver has it).
    #[arg(long, default_value = "auto", value_parser = ["auto", "native", "generic"])]
    xdp_mode: String,
    /// Log one query in N (client, ECS, name, type, rcode, answer); 0 = off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    query_log_sample: u32,

    /// Most TCP connections at once; 0 = half the descriptors left after probes and API
    /// (the soft limit is raised to the hard one at start), at most 16384.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        help_heading = "TCP limits"
    )]
    tcp_max_connections: usize,
    /// Most TCP connections of one client address (IPv6: one /64).
    #[arg(
        long,
        default_value_t = 16,
        value_name = "N",
        help_heading = "TCP limits"
    )]
    tcp_max_per_client: usize,
    /// Close a TCP connection after this long without a query.
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION", help_heading = "TCP limits")]
    tcp_idle_timeout: Duration,
    /// Close a TCP connection (between queries) once open this long.
    #[arg(long, default_value = "120s", value_parser = duration, value_name = "DURATION", help_heading = "TCP limits")]
    tcp_lifetime: Duration,
    /// Close a TCP connection after answering this many queries (0 = no budget).
    #[arg(
        long,
        default_value_t = 500,
        value_name = "N",
        help_heading = "TCP limits"
    )]
    tcp_max_queries: u32,
    /// Once the first byte of a TCP message arrived, the rest must arrive within this.
    #[arg(long, default_value = "2s", value_parser = duration, value_name = "DURATION", help_heading = "TCP limits")]
    tcp_read_timeout: Duration,
    /// A TCP response must be written within this (a client that does not read is closed).
    #[arg(long, default_value = "5s", value_parser = duration, value_name = "DURATION", help_heading = "TCP limits")]
    tcp_write_timeout: Duration,
    /// Most API connections at once (a fourth of them per client address, at least 4).
    #[arg(
        long,
        default_value_t = 64,
        value_name = "N",
        help_heading = "TCP limits"
    )]
    api_max_connections: usize,

    /// Response rate limiting: UDP responses a second per (client prefix, class, name); 0 = off.
    #[arg(
        long,
        default_value_t = 200,
        value_name = "N",
        help_heading = "Response rate limiting"
    )]
    rrl_rate: u32,
    /// Every Nth rate-limited response is sent truncated (TC=1) instead of dropped; 0 = drop all.
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        help_heading = "Response rate limiting"
    )]
    rrl_slip: u32,
    /// IPv4 clients share a bucket per prefix of this length.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=32), value_name = "LEN", help_heading = "Response rate limiting")]
    rrl_ipv4_prefix: u8,
    /// IPv6 clients share a bucket per prefix of this length.
    #[arg(long, default_value_t = 56, value_parser = clap::value_parser!(u8).range(16..=128), value_name = "LEN", help_heading = "Response rate limiting")]
    rrl_ipv6_prefix: u8,
    /// A prefix never rate limited; repeatable. Giving any replaces the default (loopback:
    /// 127.0.0.0/8 and ::1); `none` exempts nothing.
    #[arg(
        long,
        value_name = "PREFIX|none",
        help_heading = "Response rate limiting"
    )]
    rrl_exempt: Vec<String>,
    /// Count and log what rate limiting would do, but send every response.
    #[arg(long, help_heading = "Response rate limiting")]
    rrl_log_only: bool,

    /// Turn DNS cookies (RFC 7873) off.
    #[arg(long, help_heading = "DNS cookies")]
    no_cookies: bool,
    /// Cookie secrets shared by the instances of a set: one secret (32 hex digits) a line, the
    /// first makes cookies, all are accepted; re-read when it changes. Without it each
    /// process makes its own secret and replaces it daily.
    #[arg(long, value_name = "FILE", help_heading = "DNS cookies")]
    cookie_secret_file: Option<PathBuf>,
    /// Health feed file (JSON or CSV: datacenter or address -> state [, load] [, reason]),
    /// re-read when it changes; repeatable.
    #[arg(long, value_name = "FILE")]
    health_feed: Vec<PathBuf>,
    /// A health feed file older than this is ignored (its entries expire this long after it
    /// was written).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = duration)]
    health_feed_max_age: std::time::Duration,
    /// The Alertmanager label that names the datacenter a firing alert takes down
    /// (POST /alertmanager).
    #[arg(long, default_value = gslbd::api::alertmanager::DEFAULT_LABEL, value_name = "LABEL")]
    alert_label: String,
    /// A firing alert holds this long unless Alertmanager sends it again (keep the route's
    /// repeat_interval below it) or resolves it.
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = duration)]
    alert_ttl: std::time::Duration,
    /// POST every health event as JSON to this URL (retries, bounded queue); repeatable.
    #[arg(long, value_name = "URL")]
    notify: Vec<String>,
    /// exec checks running at once, at most.
    #[arg(long, default_value_t = gslbd::probe::DEFAULT_MAX_EXEC, value_name = "N")]
    max_exec_checks: usize,
    /// DNS over TLS (RFC 7858, ALPN dot) on this address, usually port 853; repeatable.
    /// Needs --tls-cert and --tls-key.
    #[arg(long, help_heading = "Encrypted transports", value_name = "ADDR:PORT")]
    listen_tls: Vec<SocketAddr>,
    /// DNS over HTTPS (RFC 8484: HTTP/2, GET and POST on /dns-query, ALPN h2) on this
    /// address, usually port 443; repeatable. Needs --tls-cert and --tls-key.
    #[arg(long, help_heading = "Encrypted transports", value_name = "ADDR:PORT")]
    listen_https: Vec<SocketAddr>,
    /// DNS over QUIC (RFC 9250, ALPN doq) on this UDP address, usually port 853; repeatable.
    /// Needs --tls-cert and --tls-key.
    #[arg(long, help_heading = "Encrypted transports", value_name = "ADDR:PORT")]
    listen_quic: Vec<SocketAddr>,
    /// PEM certificate chain (the server's certificate first) of the encrypted listeners;
    /// reloaded when it changes (a broken file keeps the previous certificate).
    #[arg(
        long,
        help_heading = "Encrypted transports",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert; reloaded with it.
    #[arg(
        long,
        help_heading = "Encrypted transports",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Encrypted listeners: a TLS/QUIC handshake must finish within this.
    #[arg(long, help_heading = "Encrypted transports", default_value = "5s", value_name = "DURATION", value_parser = duration)]
    tls_handshake_timeout: std::time::Duration,
    /// Encrypted listeners: close a connection with no query in flight for this long.
    #[arg(long, help_heading = "Encrypted transports", default_value = "30s", value_name = "DURATION", value_parser = duration)]
    tls_idle_timeout: std::time::Duration,
    /// Encrypted listeners: close a connection once open this long (when no query is in
    /// flight).
    #[arg(long, help_heading = "Encrypted transports", default_value = "1h", value_name = "DURATION", value_parser = duration)]
    tls_lifetime: std::time::Duration,
    /// Encrypted listeners: most connections at once on each of DoT, DoH and DoQ (when full,
    /// the connection idle the longest is closed to make room).
    #[arg(long, help_heading = "Encrypted transports", default_value_t = EncryptedLimits::default().max_connections, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    tls_max_connections: usize,
    /// Encrypted listeners: most connections at once from one client address (IPv6: /64), on
    /// each of DoT, DoH and DoQ.
    #[arg(long, help_heading = "Encrypted transports", default_value_t = EncryptedLimits::default().max_connections_per_client,
          value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    tls_max_connections_per_client: usize,
    /// Encrypted listeners: most queries in flight on one HTTP/2 or QUIC connection.
    #[arg(long, help_heading = "Encrypted transports", default_value_t = EncryptedLimits::default().max_streams, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    tls_max_streams: u32,
    /// Encrypted listeners: longest DNS message accepted, in bytes (12..=65535).
    #[arg(long, help_heading = "Encrypted transports", default_value_t = EncryptedLimits::default().max_request_size, value_name = "BYTES",
          value_parser = clap::value_parser!(u16).range(12..).map(usize::from))]
    tls_max_request_size: usize,
    /// Share probing and decide health by quorum with the other nodes through etcd:
    /// etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS). See docs/cluster.md.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// This node's name in the cluster (default: the host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The cluster's name: nodes with the same name share (etcd prefix /gslbd/NAME/).
    #[arg(long, default_value = "default", value_name = "NAME")]
    cluster_name: String,
    /// Nodes that probe each target (a check's `replicas` overrides it).
    #[arg(long, default_value_t = gslbd::cluster::DEFAULT_REPLICAS, value_name = "N")]
    cluster_replicas: usize,
    /// Lease time to live: a crashed node's targets move to others within this long.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = duration)]
    cluster_lease: std::time::Duration,
    /// How long the last shared view holds once etcd is lost, before probing alone.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = duration)]
    cluster_grace: std::time::Duration,
    /// PEM file of the CA that signed etcd's certificates (with etcds://).
    #[arg(long, value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// PEM file with a client certificate and its key, for etcd's client-cert auth.
    #[arg(long, value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// etcd user name (password from --etcd-password-file or $ETCD_PASSWORD).
    #[arg(long, value_name = "NAME")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, value_name = "FILE")]
    etcd_password_file: Option<PathBuf>,
    #[command(flatten)]
    resolver: ResolverArgs,
}

/// How hostname targets (datacenters that are names, ALIAS records) outside the served zones
/// are resolved.
#[derive(clap::Args, Debug, Clone)]
struct ResolverArgs {
    /// Upstream resolver for hostname targets; repeatable (default: the system's resolvers,
    /// /etc/resolv.conf).
    #[arg(long = "resolver", value_name = "ADDR:PORT")]
    servers: Vec<SocketAddr>,
    /// Shortest time a resolved target is kept before it is asked again.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = duration)]
    resolver_min_ttl: std::time::Duration,
    /// Longest time a resolved target is kept before it is asked again.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = duration)]
    resolver_max_ttl: std::time::Duration,
    /// How long past their TTL a target's last addresses are served while the upstream
    /// fails (RFC 8767); then the target counts as down.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = duration)]
    max_stale: std::time::Duration,
}

impl ResolverArgs {
    fn settings(&self) -> gslbd::resolve::ResolverSettings {
        gslbd::resolve::ResolverSettings {
            servers: self.servers.clone(),
            min_ttl: self.resolver_min_ttl,
            max_ttl: self.resolver_max_ttl.max(self.resolver_min_ttl),
            max_stale: self.max_stale,
            ..gslbd::resolve::ResolverSettings::default()
        }
    }
}

/// A duration such as `90s`, `5m` or `1h`.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    gslbd::config::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration (expected e.g. 30s, 5m, 1h)"))
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Check { zones }) => check(&zones),
        Some(Cmd::Serve(a)) => serve(*a),
        Some(Cmd::Explain(a)) => explain(a),
        Some(Cmd::Status { api }) => api_call("status", async move {
            let v = gslbd::api::client::fetch_status(&api).await?;
            print!("{}", gslbd::api::client::render_status(&api, &v));
            Ok(())
        }),
        Some(Cmd::Admin(a)) => admin(a),
        Some(Cmd::Keygen {
            zone,
            algorithm,
            role,
            dir,
        }) => keygen(&zone, &algorithm, &role, &dir),
        Some(Cmd::Ds { zone, zones }) => ds(&zone, &zones),
        Some(Cmd::Simulate(a)) => simulate(a),
        None => serve(ServeArgs::parse_from(["serve"])),
    }
}

/// Runs one API call of `gslbd status`/`admin` and turns its error into a message and an exit
/// code.
fn api_call(
    what: &str,
    f: impl std::future::Future<Output = Result<(), gslbd::api::client::CliError>>,
) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gslbd {what}: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gslbd {what}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn admin(a: AdminArgs) -> ExitCode {
    use gslbd::api::client::{CliError, set_admin};
    let token = match gslbd::api::load_token(a.token_file.as_deref(), a.token_env.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gslbd admin: {e}");
            return ExitCode::from(2);
        }
    };
    let no_token = token.is_none();
    api_call("admin", async move {
        match set_admin(&a.api, &a.datacenter, &a.action, token.as_deref()).await {
            Ok(line) => {
                println!("{line}");
                Ok(())
            }
            Err(e @ CliError::Refused { status: 401, .. }) if no_token => {
                eprintln!("gslbd admin: give the API token with --token-file or --token-env");
                Err(e)
            }
            Err(e) => Err(e),
        }
    })
}

fn check(zones: &std::path::Path) -> ExitCode {
    match server::load_model(zones) {
        Ok(m) => {
            let records: usize = m.zones.iter().map(|z| z.record_count).sum();
            println!(
                "ok: {} zone(s), {} record(s), {} GSLB name(s), {} datacenter(s) in {}",
                m.zones.len(),
                records,
                m.gslb.len(),
                m.datacenters.list.len(),
                zones.display()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s)", errs.0.len());
            ExitCode::from(1)
        }
    }
}

fn zone_name(zone: &str) -> Result<hickory_proto::rr::Name, String> {
    let fq = if zone.ends_with('.') {
        zone.to_string()
    } else {
        format!("{zone}.")
    };
    hickory_proto::rr::Name::from_ascii(&fq)
        .map_err(|e| format!("{zone:?} is not a domain name: {e}"))
}

fn keygen(zone: &str, algorithm: &str, role: &str, dir: &std::path::Path) -> ExitCode {
    use gslbd::dnssec::{KeyAlgorithm, Role};
    let fail = |msg: String| {
        eprintln!("gslbd keygen: {msg}");
        ExitCode::from(1)
    };
    let Some(alg) = KeyAlgorithm::parse(algorithm) else {
        return fail(format!(
            "--algorithm {algorithm:?}: expected one of {}",
            KeyAlgorithm::NAMES
        ));
    };
    let Some(role) = Role::parse(role) else {
        return fail(format!("--role {role:?}: expected csk, ksk or zsk"));
    };
    let name = match zone_name(zone) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    match gslbd::dnssec::keys::keygen(&name, alg, role, dir) {
        Ok(g) => {
            println!(
                "; private key (keep it secret): {}",
                g.private_file.display()
            );
            println!("; public key: {}", g.key_file.display());
            println!("{}", g.dnskey);
            if !g.ds.is_empty() {
                println!("; DS for the parent zone:");
                println!("{}", g.ds);
            }
            println!("; add to the zone file (a relative path is from the zone file's directory):");
            print!("{}", g.snippet);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn ds(zone: &str, zones: &std::path::Path) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("gslbd ds: {msg}");
        ExitCode::from(1)
    };
    let name = match zone_name(zone) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    match gslbd::config::ds_records(zones, &name) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn simulate(a: SimulateArgs) -> ExitCode {
    use gslbd::simulate::{self, Check, Scenario};
    let fail = |msg: String| {
        eprintln!("gslbd simulate: {msg}");
        ExitCode::from(2)
    };
    if a.metrics {
        print!("{}", simulate::check::metrics_help());
        return ExitCode::SUCCESS;
    }
    let Some(path) = a.scenario else {
        return fail("--scenario FILE is required".into());
    };
    // Conditions first: a typo fails before a long run.
    let mut checks = Vec::new();
    for c in &a.checks {
        match Check::parse(c) {
            Ok(c) => checks.push(c),
            Err(e) => return fail(e.to_string()),
        }
    }
    let scenario = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => return fail(format!("invalid scenario:\n{e}")),
    };
    let geo = match gslbd::geo::GeoDb::open(&gslbd::geo::given_or_default(&a.geoip)) {
        Ok(g) => g,
        Err(e) => return fail(e.to_string()),
    };
    let started = std::time::Instant::now();
    let mut report = match simulate::run(&a.zones, &scenario, &geo) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let wall = started.elapsed().as_secs_f64();
    for c in &checks {
        match c.eval(&report) {
            Ok(o) => report.checks.push(o),
            Err(e) => return fail(e.to_string()),
        }
    }
    if let Some(dir) = &a.out {
        match simulate::write_outputs(&report, dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Err(e) => return fail(e.to_string()),
        }
    }
    if a.json {
        print!("{}", report.json());
    } else {
        print!("{report}");
    }
    eprintln!(
        "simulated {:.0} client queries ({} decisions) in {:.2} s of wall time: {:.0} client queries per second",
        report.client_queries,
        report.decisions,
        wall,
        report.client_queries / wall.max(1e-9)
    );
    if report.checks.iter().all(|c| c.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn explain(a: ExplainArgs) -> ExitCode {
    use gslbd::explain;
    let fail = |msg: String| {
        eprintln!("gslbd explain: {msg}");
        ExitCode::from(1)
    };
    let family = match a.qtype.to_ascii_uppercase().as_str() {
        "A" => gslbd::net::Family::V4,
        "AAAA" => gslbd::net::Family::V6,
        other => return fail(format!("{other:?}: GSLB names answer A and AAAA only")),
    };
    let model = match server::load_model(&a.zones) {
        Ok(m) => m,
        Err(e) => return fail(format!("invalid configuration:\n{e}")),
    };
    let geo = match gslbd::geo::GeoDb::open(&gslbd::geo::given_or_default(&a.geoip)) {
        Ok(g) => g,
        Err(e) => return fail(e.to_string()),
    };
    let ecs = match a.ecs.as_deref().map(explain::parse_ecs).transpose() {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    // Without a running server there are no probe results: every datacenter counts as up.
    let mut snap = gslbd::health::Snapshot::assumed(&model.datacenters.probes);
    snap.resolutions = Some(std::sync::Arc::new(resolve_once(&model, &a.resolver)));
    match explain::explain(&model, &snap, &geo, &a.name, family, a.client, ecs.as_ref()) {
        Ok(x) if a.json => match serde_json::to_string_pretty(&x) {
            Ok(j) => {
                println!("{j}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_string()),
        },
        Ok(x) => {
            print!("{x}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

fn cluster_options(url: &str, a: &ServeArgs) -> Result<gslbd::cluster::ClusterOptions, String> {
    let node = match &a.node {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or("--node NAME is needed (the host name cannot be read)")?,
    };
    let mut c = gslbd::cluster::ClusterOptions::parse(url, &node)?;
    if a.cluster_name.is_empty() || a.cluster_name.contains('/') {
        return Err(format!(
            "--cluster-name {:?}: a name without '/'",
            a.cluster_name
        ));
    }
    c.prefix = format!("/gslbd/{}/", a.cluster_name);
    c.replicas = a.cluster_replicas.max(1);
    if a.cluster_lease < std::time::Duration::from_secs(1) {
        return Err("--cluster-lease: at least 1s".into());
    }
    c.lease_ttl = a.cluster_lease;
    c.grace = a.cluster_grace;
    c.etcd.ca = a.etcd_ca.clone();
    c.etcd.identity = a.etcd_cert.clone();
    if let Some(user) = &a.etcd_user {
        let password = match &a.etcd_password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("--etcd-password-file {}: {e}", p.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => std::env::var("ETCD_PASSWORD")
                .map_err(|_| "--etcd-user needs --etcd-password-file or $ETCD_PASSWORD")?,
        };
        c.etcd.user = Some((user.clone(), password));
    }
    Ok(c)
}

/// Resolves the model's hostname targets once (for `explain`, which runs no server): at most
/// a few seconds, then whatever is known.
fn resolve_once(model: &gslbd::model::Model, servers: &[SocketAddr]) -> gslbd::model::Resolutions {
    use gslbd::resolve::{Resolver, ResolverSettings, State};
    let targets = model.resolver_targets();
    if targets.names.is_empty() {
        return model.initial_resolutions();
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return model.initial_resolutions();
    };
    let names = rt.block_on(async {
        let stop = gslbd::shutdown::Shutdown::new();
        let settings = ResolverSettings {
            servers: servers.to_vec(),
            ..ResolverSettings::default()
        };
        let r = Resolver::start(settings, targets, std::sync::Arc::new(|_| {}), stop.clone());
        let mut rx = r.subscribe();
        let done = |n: &gslbd::resolve::ResolvedNames| {
            !n.by_name.is_empty()
                && n.by_name
                    .values()
                    .all(|e| e.state != State::Pending || e.lookups_failed > 0)
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(8), async {
            while !done(&rx.borrow_and_update()) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        let names = r.current();
        stop.stop();
        r.join().await;
        names
    });
    model.resolutions(&names)
}

fn serve(a: ServeArgs) -> ExitCode {
    init_logs(&a.log_format);
    let default_listen = a.listen.is_empty();
    let listen = if default_listen {
        vec![
            "127.0.0.1:5353".parse().expect("literal"),
            "[::1]:5353".parse().expect("literal"),
        ]
    } else {
        a.listen.clone()
    };
    let mut opts = ServeOptions::new(a.zones.clone(), listen);
    if let Some(url) = &a.cluster {
        match cluster_options(url, &a) {
            Ok(c) => opts.cluster = Some(c),
            Err(e) => {
                eprintln!("gslbd: {e}");
                return ExitCode::from(2);
            }
        }
    }
    opts.geoip = a.geoip;
    opts.udp_threads = a.udp_threads;
    opts.listen_best_effort = default_listen;
    opts.api = match a.api.as_str() {
        "none" | "off" => None,
        s => match s.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                eprintln!("gslbd: --api {s:?}: expected ADDR:PORT or none");
                return ExitCode::from(2);
            }
        },
    };
    opts.api_token =
        match gslbd::api::load_token(a.api_token_file.as_deref(), a.api_token_env.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("gslbd: API token: {e}");
                return ExitCode::from(2);
            }
        };
    opts.state_dir = a.state_dir;
    opts.strict_state = a.strict_state;
    opts.startup = if a.startup == "assume-down" {
        gslbd::health::aggregator::Startup::AssumeDown
    } else {
        gslbd::health::aggregator::Startup::AssumeUp
    };
    opts.watch = !a.no_watch;
    opts.query_log_sample = a.query_log_sample;
    opts.latency_map = a.latency_map;
    opts.tcp_max_connections = a.tcp_max_connections;
    opts.tcp_max_per_client = a.tcp_max_per_client.max(1);
    opts.tcp_idle_timeout = a.tcp_idle_timeout;
    opts.tcp_lifetime = a.tcp_lifetime;
    opts.tcp_max_queries = a.tcp_max_queries;
    opts.tcp_read_timeout = a.tcp_read_timeout;
    opts.tcp_write_timeout = a.tcp_write_timeout;
    opts.api_limits.max_connections = a.api_max_connections.max(1);
    opts.rrl.rate = a.rrl_rate;
    opts.rrl.slip = a.rrl_slip;
    opts.rrl.ipv4_prefix = a.rrl_ipv4_prefix;
    opts.rrl.ipv6_prefix = a.rrl_ipv6_prefix;
    opts.rrl.log_only = a.rrl_log_only;
    if !a.rrl_exempt.is_empty() {
        opts.rrl.exempt = match gslbd::server::parse_exempt(&a.rrl_exempt) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("gslbd: --rrl-exempt: {e}");
                return ExitCode::from(2);
            }
        };
    }
    opts.cookies = !a.no_cookies;
    opts.cookie_secret_file = a.cookie_secret_file;
    opts.health_feeds = a.health_feed;
    opts.health_feed_max_age = a.health_feed_max_age;
    opts.alert_label = a.alert_label;
    opts.alert_ttl = a.alert_ttl;
    for url in &a.notify {
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || reqwest::Url::parse(url).is_err()
        {
            eprintln!("gslbd: --notify {url:?}: expected an http:// or https:// URL");
            return ExitCode::from(2);
        }
    }
    opts.notify = a.notify;
    opts.max_exec_checks = a.max_exec_checks.max(1);
    opts.resolver = a.resolver.settings();
    opts.xdp = a.listen_xdp;
    opts.xdp_mode = a.xdp_mode.parse().unwrap_or_default();
    let encrypted =
        !(a.listen_tls.is_empty() && a.listen_https.is_empty() && a.listen_quic.is_empty());
    opts.tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsOptions {
            cert,
            key,
            listen_tls: a.listen_tls,
            listen_https: a.listen_https,
            listen_quic: a.listen_quic,
            limits: EncryptedLimits {
                handshake_timeout: a.tls_handshake_timeout,
                idle_timeout: a.tls_idle_timeout,
                lifetime: a.tls_lifetime,
                read_timeout: a.tcp_read_timeout,
                write_timeout: a.tcp_write_timeout,
                max_connections: a.tls_max_connections,
                max_connections_per_client: a.tls_max_connections_per_client,
                max_streams: a.tls_max_streams,
                max_request_size: a.tls_max_request_size,
            },
        }),
        _ if encrypted => {
            eprintln!(
                "gslbd: --listen-tls, --listen-https and --listen-quic need --tls-cert and --tls-key"
            );
            return ExitCode::from(2);
        }
        _ => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(server::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gslbd: {e}");
            ExitCode::from(1)
        }
    }
}
