//! The `gslbd` command: `serve` (the default), `check`, `explain`, and the API clients
//! `status` and `admin` (exit codes in `gslbd::api::client`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Log one query in N (client, ECS, name, type, rcode, answer); 0 = off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    query_log_sample: u32,
    /// DNS over TLS (RFC 7858, ALPN dot) on this address, usually port 853; repeatable.
    /// Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_tls: Vec<SocketAddr>,
    /// DNS over HTTPS (RFC 8484: HTTP/2, GET and POST on /dns-query, ALPN h2) on this
    /// address, usually port 443; repeatable. Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_https: Vec<SocketAddr>,
    /// DNS over QUIC (RFC 9250, ALPN doq) on this UDP address, usually port 853; repeatable.
    /// Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR:PORT")]
    listen_quic: Vec<SocketAddr>,
    /// PEM certificate chain (the server's certificate first) of the encrypted listeners;
    /// reloaded when it changes (a broken file keeps the previous certificate).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert; reloaded with it.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Encrypted listeners: a TLS/QUIC handshake must finish within this.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = duration)]
    tls_handshake_timeout: std::time::Duration,
    /// Encrypted listeners: close a connection with no query in flight for this long.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = duration)]
    tls_idle_timeout: std::time::Duration,
    /// Encrypted listeners: most connections at once (DoT, DoH and DoQ together).
    #[arg(long, default_value_t = EncryptedLimits::default().max_connections, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    tls_max_connections: usize,
    /// Encrypted listeners: most connections at once from one client address (IPv6: /64).
    #[arg(long, default_value_t = EncryptedLimits::default().max_connections_per_client,
          value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    tls_max_connections_per_client: usize,
    /// Encrypted listeners: most queries in flight on one HTTP/2 or QUIC connection.
    #[arg(long, default_value_t = EncryptedLimits::default().max_streams, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    tls_max_streams: u32,
    /// Encrypted listeners: longest DNS message accepted, in bytes (12..=65535).
    #[arg(long, default_value_t = EncryptedLimits::default().max_request_size, value_name = "BYTES",
          value_parser = clap::value_parser!(u16).range(12..).map(usize::from))]
    tls_max_request_size: usize,
}

/// A duration as the zone files write it: `500ms`, `5s`, `2m`.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    server::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?}: expected a duration such as 500ms, 5s or 2m"))
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
    let paths = if a.geoip.is_empty() {
        gslbd::geo::default_paths()
    } else {
        a.geoip
    };
    let geo = match gslbd::geo::GeoDb::open(&paths) {
        Ok(g) => g,
        Err(e) => return fail(e.to_string()),
    };
    let ecs = match a.ecs.as_deref().map(explain::parse_ecs).transpose() {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    // Without a running server there are no probe results: every datacenter counts as up.
    let snap = gslbd::health::Snapshot::all_up(model.datacenters.list.len());
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

fn serve(a: ServeArgs) -> ExitCode {
    init_logs(&a.log_format);
    let default_listen = a.listen.is_empty();
    let listen = if default_listen {
        vec![
            "127.0.0.1:5353".parse().expect("literal"),
            "[::1]:5353".parse().expect("literal"),
        ]
    } else {
        a.listen
    };
    let mut opts = ServeOptions::new(a.zones, listen);
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
    opts.startup = if a.startup == "assume-down" {
        gslbd::health::aggregator::Startup::AssumeDown
    } else {
        gslbd::health::aggregator::Startup::AssumeUp
    };
    opts.watch = !a.no_watch;
    opts.query_log_sample = a.query_log_sample;
    opts.latency_map = a.latency_map;
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
