//! The HTTP API: status, Prometheus metrics, admin state, explain, liveness and readiness.
//!
//! ```text
//!  HTTP client --axum--> router(ApiContext)
//!     GET  /status                    -> ApiBackend::server_info + datacenter_status -> JSON
//!     GET  /metrics                   -> Metrics::render(Extra { health, server, .. }) -> text
//!     PUT  /datacenters/{name}/admin  -> bearer token check -> ApiBackend::set_admin
//!     PUT|DELETE /datacenters/{name}/health
//!     PUT|DELETE /datacenters/{name}/addresses/{addr}/health
//!                                     -> bearer token check -> ApiBackend::health_input (pushed)
//!     POST /alertmanager              -> bearer token check -> alertmanager.rs -> health_input
//!     GET  /events                    -> ApiBackend::subscribe_events -> server-sent events
//!     GET  /explain?name=&type=&client=&ecs= -> ApiBackend::explain               -> JSON
//!     GET  /healthz, /readyz          -> "ok" / ApiBackend::ready
//!     GET  /, /ui/*                   -> the status page (ui.rs), embedded in the binary
//! ```
//!
//! `/status` also carries what the status page and `gslbd status` show (view.rs): each
//! datacenter's state and deciding input, its location, the GSLB names with their share of
//! answers over the last minute (sampled from the decision counters), and recent changes.
//!
//! The API never touches server internals directly: it talks to an [`ApiBackend`] the server
//! implements over its state (model, reload report, aggregator handle, snapshot). That keeps
//! the endpoints testable with a fake backend and keeps the API off the query path: everything
//! here runs on the tokio runtime and only reads what the server already publishes.
//!
//! Errors are JSON `{ "error": "..." }` with a reason a person can act on.

pub mod alertmanager;
pub mod client;
mod listen;
mod token;
mod ui;
pub(crate) mod view;
mod xdp;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::health::aggregator::{AdminError, StateProblem};
use crate::health::events::EventView;
use crate::health::feed::FeedStatus;
use crate::health::input::{Applied, InputError, Source, SourceKind, Subject, Update, Verdict};
use crate::health::{AdminState, Status};
use crate::metrics::{Extra, Metrics, ServerGauges};
use crate::model::Model;
use crate::net::Subnet;
use crate::shutdown::Shutdown;

pub use listen::ApiLimits;
pub use token::load_token;
pub(crate) use view::Topology;

/// A boxed future, so [`ApiBackend`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the server tells the API about itself; implemented over the server's state.
pub trait ApiBackend: Send + Sync + 'static {
    /// Process and configuration facts for `/status` and the server gauges of `/metrics`.
    fn server_info(&self) -> ServerInfo;

    /// Datacenter health from the aggregator; `None` when there is none (no health checks, or
    /// the aggregator stopped).
    fn datacenter_status(&self) -> BoxFuture<'_, Option<Status>>;

    /// Set a datacenter's admin state by name (and persist it).
    /// `UnknownName`/`UnknownDatacenter` become 404, `Stopped` 503.
    fn set_admin<'a>(
        &'a self,
        name: &'a str,
        state: AdminState,
    ) -> BoxFuture<'a, Result<(), AdminError>>;

    /// The explain output for a query, from the live model and snapshot.
    fn explain(&self, req: &ExplainRequest) -> Result<Value, ExplainFailure>;

    /// Zones loaded and every target probed once (or warm-started).
    fn ready(&self) -> bool;

    /// Datacenter locations and addresses, GSLB names and their pools, for the status page.
    fn topology(&self) -> Topology {
        Topology::default()
    }

    /// Recent health state changes, newest first.
    fn events(&self) -> BoxFuture<'_, Vec<EventView>> {
        Box::pin(async { Vec::new() })
    }

    /// Hands an external verdict (pushed, alert) to the aggregator.
    /// `Unknown*`/`NotAnAddress` become 404, `Stopped` 503.
    fn health_input(&self, _update: Update) -> BoxFuture<'_, Result<Applied, InputError>> {
        Box::pin(async { Err(InputError::Stopped) })
    }

    /// Every health event from now on, for `GET /events`; `None` when there is no stream.
    fn subscribe_events(&self) -> Option<tokio::sync::broadcast::Receiver<EventView>> {
        None
    }

    /// How each health feed file is doing.
    fn feeds(&self) -> Vec<FeedStatus> {
        Vec::new()
    }

    /// The cluster as this node sees it (`--cluster`); `None` for a standalone server.
    fn cluster(&self) -> Option<crate::cluster::ClusterStatus> {
        None
    }

    /// The AF_XDP listeners and their counters (none by default).
    fn xdp_status(&self) -> Vec<crate::dns::xdp::XdpStatus> {
        vec![]
    }
}

/// Process and configuration facts for `/status`.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// When the process started.
    pub started: SystemTime,
    /// Configuration generation serving now (1 at start, +1 per successful reload).
    pub generation: u64,
    /// When the serving configuration was loaded.
    pub loaded_at: SystemTime,
    /// The last reload, successful or not.
    pub last_reload: ReloadInfo,
    /// The zones serving now.
    pub zones: Vec<ZoneInfo>,
    /// State files that could not be used since the process started, with when.
    pub state_files: Vec<(SystemTime, StateProblem)>,
    /// The certificate of the encrypted listeners (DoT, DoH, DoQ), when they run.
    pub tls: Option<TlsInfo>,
}

/// The certificate of the encrypted listeners, as `/status` shows it.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// The certificate chain file.
    pub cert_file: String,
    /// The key file.
    pub key_file: String,
    /// When the certificate serving now was loaded.
    pub loaded_at: SystemTime,
    /// When the files were last read.
    pub checked_at: SystemTime,
    /// The last read succeeded (else the previous certificate keeps serving).
    pub ok: bool,
    /// Why the last read failed.
    pub error: Option<String>,
}

/// Result of the last reload (the first load counts as one).
#[derive(Clone, Debug)]
pub struct ReloadInfo {
    /// When it was tried.
    pub at: SystemTime,
    /// It succeeded (a failed reload keeps the previous configuration serving).
    pub ok: bool,
    /// The errors that refused it, each with file and key path.
    pub errors: Vec<String>,
}

/// One served zone, as `/status` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZoneInfo {
    /// The origin, fully qualified (`example.com.`).
    pub name: String,
    /// SOA serial.
    pub serial: u32,
    /// Static resource records (one per value), the SOA included; GSLB names are not counted.
    pub records: usize,
    /// GSLB names placed in the zone.
    pub gslb_names: usize,
    /// The zone file it was loaded from.
    pub file: String,
    /// Keys, signature expiry and signing counters of a signed zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnssec: Option<crate::dnssec::signer::DnssecInfo>,
}

impl ZoneInfo {
    /// The zones of `model`, in model order.
    pub(crate) fn list(model: &Model) -> Vec<ZoneInfo> {
        model
            .zones
            .iter()
            .map(|z| ZoneInfo {
                name: z.origin.to_string(),
                serial: z.serial,
                records: z.record_count,
                gslb_names: z.gslb_count,
                file: z.file.display().to_string(),
                dnssec: z.dnssec.as_ref().map(|s| s.info()),
            })
            .collect()
    }
}

/// A validated `/explain` query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainRequest {
    /// Lower-case, fully qualified (trailing dot).
    pub name: String,
    /// Query type number (default A).
    pub qtype: u16,
    /// The resolver address; `None` = not given (the backend picks its default).
    pub client: Option<IpAddr>,
    /// EDNS Client Subnet: address (no bits set beyond the prefix) and prefix.
    pub ecs: Option<(IpAddr, u8)>,
}

/// Why `/explain` could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExplainFailure {
    /// No zone serves this name: 404.
    #[error("{0}")]
    NotServed(String),
    /// The request makes no sense for this name: 400.
    #[error("{0}")]
    Invalid(String),
}

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub struct ApiContext {
    /// The registry `/metrics` renders.
    pub(crate) metrics: Arc<Metrics>,
    /// The server behind the API.
    pub(crate) backend: Arc<dyn ApiBackend>,
    /// Bearer token for mutating calls; `None` = the API is read-only.
    pub token: Option<Arc<str>>,
    /// Samples of the decision counters, for the answer shares of `/status`.
    pub(crate) window: Arc<view::DecisionWindow>,
    /// Bounds of the listener and of request bodies.
    pub(crate) limits: ApiLimits,
    /// How `POST /alertmanager` reads alerts.
    pub(crate) alerts: alertmanager::AlertSettings,
    /// Stopped when the API stops: ends the `/events` streams.
    pub(crate) stop: Shutdown,
}

impl ApiContext {
    /// A context; `token` enables the mutating calls.
    pub fn new(metrics: Arc<Metrics>, backend: Arc<dyn ApiBackend>, token: Option<String>) -> Self {
        ApiContext {
            metrics,
            backend,
            token: token.map(Arc::from),
            window: Arc::default(),
            limits: ApiLimits::default(),
            alerts: alertmanager::AlertSettings::default(),
            stop: Shutdown::new(),
        }
    }

    /// The same context with other listener bounds.
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads Alertmanager alerts with `alerts` (label name, time to live).
    pub(crate) fn with_alerts(mut self, alerts: alertmanager::AlertSettings) -> Self {
        self.alerts = alerts;
        self
    }
}

/// The API's routes.
pub(crate) fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/datacenters/{name}/admin", put(set_admin))
        .route(
            "/datacenters/{name}/health",
            put(push_health).delete(clear_health),
        )
        .route(
            "/datacenters/{name}/addresses/{addr}/health",
            put(push_address_health).delete(clear_address_health),
        )
        .route("/alertmanager", post(alertmanager_webhook))
        .route("/events", get(events_stream))
        .route("/explain", get(explain))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .with_state(ctx)
}

/// Binds `addr` and serves the API until `shutdown` is stopped. Returns the bound address
/// (port 0 resolved) and the server task.
pub async fn serve(
    addr: SocketAddr,
    mut ctx: ApiContext,
    shutdown: Shutdown,
) -> io::Result<(SocketAddr, JoinHandle<io::Result<()>>)> {
    ctx.stop = shutdown.clone();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // The first sample is the baseline of the answers counted from now on.
    ctx.window
        .sample(ctx.metrics.gslb_totals(), tokio::time::Instant::now());
    let app = router(ctx.clone());
    let sampler_stop = shutdown.clone();
    let task = tokio::spawn(async move {
        // The answer shares need counter samples from before the request; a stopped server
        // stops sampling with it.
        let (limits, metrics) = (ctx.limits, ctx.metrics.clone());
        let sampler = tokio::spawn(async move {
            tokio::select! {
                () = sample_decisions(&ctx) => {}
                () = sampler_stop.stopped() => {}
            }
        });
        listen::accept_loop(listener, app, limits, metrics, shutdown).await;
        sampler.abort();
        Ok(())
    });
    Ok((bound, task))
}

/// Samples the decision counters every [`view::SAMPLE_EVERY`], forever.
async fn sample_decisions(ctx: &ApiContext) {
    let start = tokio::time::Instant::now() + view::SAMPLE_EVERY;
    let mut tick = tokio::time::interval_at(start, view::SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = tick.tick().await;
        ctx.window.sample(ctx.metrics.gslb_totals(), now);
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": msg.into() }))).into_response()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn status(State(ctx): State<ApiContext>) -> Response {
    let info = ctx.backend.server_info();
    let health = ctx.backend.datacenter_status().await;
    let events = ctx.backend.events().await;
    let topo = ctx.backend.topology();
    let now = tokio::time::Instant::now();
    let totals = ctx.metrics.gslb_totals();
    let (base, window) = ctx.window.baseline(now).unwrap_or_default();
    let datacenters: Vec<Value> = health
        .as_ref()
        .map(|h| {
            h.datacenters
                .iter()
                .map(|d| {
                    let info = topo.datacenters.iter().find(|i| i.name == d.name);
                    view::datacenter(d, info)
                })
                .collect()
        })
        .unwrap_or_default();
    let uptime = SystemTime::now()
        .duration_since(info.started)
        .map_or(0, |d| d.as_secs());
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_unix": unix(info.started),
        "uptime_secs": uptime,
        "generation": info.generation,
        "loaded_at_unix": unix(info.loaded_at),
        "last_reload": {
            "at_unix": unix(info.last_reload.at),
            "ok": info.last_reload.ok,
            "errors": info.last_reload.errors,
        },
        "ready": ctx.backend.ready(),
        "zones": info.zones,
        "state_files": info.state_files.iter().map(|(at, p)| json!({
            "file": p.file,
            "error": p.error,
            "moved_to": p.moved_to,
            "at_unix": unix(*at),
        })).collect::<Vec<_>>(),
        "tls": info.tls.as_ref().map(|t| json!({
            "cert_file": t.cert_file,
            "key_file": t.key_file,
            "loaded_at_unix": unix(t.loaded_at),
            "checked_at_unix": unix(t.checked_at),
            "ok": t.ok,
            "error": t.error,
        })),
        "health_generation": health.as_ref().map(|h| h.generation),
        "datacenters": datacenters,
        "answers_window_secs": window.as_secs(),
        "names": view::names(&topo, &totals, &base),
        "hostnames": topo.hostnames,
        "events": events,
        "feeds": ctx.backend.feeds(),
        "cluster": ctx.backend.cluster(),
        "xdp": ctx.backend.xdp_status(),
    });
    axum::Json(body).into_response()
}

async fn metrics(State(ctx): State<ApiContext>) -> Response {
    let info = ctx.backend.server_info();
    let health = ctx.backend.datacenter_status().await;
    let server = ServerGauges {
        started: info.started,
        config_generation: info.generation,
        loaded_at: info.loaded_at,
        last_reload_ok: info.last_reload.ok,
        zones: info.zones.len(),
        admin_file_errors: count_problems(&info, "admin.json"),
        health_file_errors: count_problems(&info, "health.json"),
        inputs_file_errors: count_problems(&info, "inputs.json"),
        feeds: {
            let now = unix(SystemTime::now());
            ctx.backend
                .feeds()
                .into_iter()
                .map(|f| {
                    let age = f.modified_unix.map(|m| now.saturating_sub(m) as f64);
                    (f.path, f.ok, age)
                })
                .collect()
        },
    };
    let topo = ctx.backend.topology();
    let dnssec = crate::dnssec::signer::ZonesGauges(
        info.zones
            .iter()
            .filter_map(|z| Some((z.name.clone(), z.dnssec.clone()?)))
            .collect(),
    );
    let cluster = ctx.backend.cluster();
    let xdp = ctx.backend.xdp_status();
    let xdp = xdp::XdpGauges(&xdp);
    let text = ctx.metrics.render(&Extra {
        health: health.as_ref().map(|h| h as &dyn crate::metrics::Gauges),
        server: Some(server),
        dnssec: (!dnssec.0.is_empty()).then_some(&dnssec as &dyn crate::metrics::Gauges),
        cluster: cluster.as_ref().map(|c| c as &dyn crate::metrics::Gauges),
        resolver: (!topo.hostnames.is_empty())
            .then_some(&topo.hostnames as &dyn crate::metrics::Gauges),
        xdp: (!xdp.0.is_empty()).then_some(&xdp as &dyn crate::metrics::Gauges),
    });
    let ct = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, ct)], text).into_response()
}

fn count_problems(info: &ServerInfo, file: &str) -> u64 {
    info.state_files
        .iter()
        .filter(|(_, p)| p.file == file)
        .count() as u64
}

async fn readyz(State(ctx): State<ApiContext>) -> Response {
    if ctx.backend.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Compares without an early exit, so response time does not reveal how much of a guess
/// was right.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// Why a mutating call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Denied {
    /// No token configured: 403.
    ReadOnly,
    /// No bearer credential: 401 with a challenge.
    Unauthenticated(&'static str),
    /// A bearer credential that is not the token: 403.
    WrongToken,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::ReadOnly => error(
                StatusCode::FORBIDDEN,
                "the API is read-only: no admin token is configured (configure a token file \
                 or environment variable)",
            ),
            Denied::Unauthenticated(msg) => {
                let mut r = error(StatusCode::UNAUTHORIZED, msg);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gslbd\""),
                );
                r
            }
            Denied::WrongToken => error(StatusCode::FORBIDDEN, "wrong token"),
        }
    }
}

/// `Ok` when the request carries the configured token.
fn authorize(ctx: &ApiContext, headers: &HeaderMap) -> Result<(), Denied> {
    let Some(token) = &ctx.token else {
        return Err(Denied::ReadOnly);
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Denied::Unauthenticated(
            "missing `Authorization: Bearer <token>` header",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let given = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => {
            return Err(Denied::Unauthenticated(
                "the Authorization header must be `Bearer <token>`",
            ));
        }
    };
    if same_token(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Denied::WrongToken)
    }
}

/// The admin state in a PUT body: plain `drain`, JSON `"drain"` or `{ "state": "drain" }`.
fn parse_admin_body(body: &[u8]) -> Result<AdminState, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let text = text.trim();
    let word = if text.starts_with('{') || text.starts_with('"') {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::String(s)) => s,
            Ok(Value::Object(mut o)) => {
                if let Some(k) = o.keys().find(|k| *k != "state") {
                    return Err(format!("unknown field `{k}`; expected only `state`"));
                }
                match o.remove("state") {
                    Some(Value::String(s)) => s,
                    Some(_) => return Err("`state` must be a string".into()),
                    None => return Err("missing field `state`".into()),
                }
            }
            Ok(_) => return Err("expected `{\"state\": \"...\"}` or a plain word".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        }
    } else {
        text.to_string()
    };
    AdminState::parse(&word.to_ascii_lowercase()).ok_or_else(|| {
        if word.is_empty() {
            "empty body; expected one of obey, up, down, drain".to_string()
        } else {
            format!("unknown admin state `{word}`; expected one of obey, up, down, drain")
        }
    })
}

/// Reads a request body of at most `max` bytes within `limits.body_timeout` (after the token
/// was checked: a stranger's body is never read).
async fn read_body(
    limits: &ApiLimits,
    max: usize,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(error(StatusCode::BAD_REQUEST, "the body could not be read")),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s",
                limits.body_timeout.as_secs()
            ),
        )),
    }
}

async fn set_admin(
    State(ctx): State<ApiContext>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(denied) = authorize(&ctx, &headers) {
        return denied.into_response();
    }
    let Ok(Path(name)) = name else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid datacenter name in the path",
        );
    };
    let body = match read_body(&ctx.limits, ctx.limits.max_body, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let state = match parse_admin_body(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match ctx.backend.set_admin(&name, state).await {
        Ok(()) => {
            tracing::info!(datacenter = %name, admin = state.as_str(), "admin state set via API");
            axum::Json(json!({ "datacenter": name, "admin": state.as_str() })).into_response()
        }
        Err(e @ (AdminError::UnknownName(_) | AdminError::UnknownDatacenter(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ AdminError::Stopped) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Longest time to live a pushed state may ask for.
pub(crate) const MAX_PUSH_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);
/// Time to live of a pushed state that gives none.
pub(crate) const DEFAULT_PUSH_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A pushed state: `{"state": "up"|"down", "load": 0.4, "ttl": "60s", "reason": "...",
/// "source": "ci"}` (only `state` is required).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PushBody {
    /// `up` (true) or `down`.
    pub(crate) up: bool,
    /// Utilisation 0..1 while the verdict holds.
    pub(crate) load: Option<f64>,
    /// How long the verdict holds (default 5 minutes, at most 7 days).
    pub(crate) ttl: std::time::Duration,
    /// Why, for people (may be empty).
    pub(crate) reason: String,
    /// Who pushes (default `api`): each source holds its own verdict.
    pub(crate) source: String,
}

/// Validates a pushed-state body.
pub(crate) fn parse_push_body(body: &[u8]) -> Result<PushBody, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("expected JSON {{\"state\": \"up\"|\"down\", \"ttl\": \"60s\", ...}}: {e}")
    })?;
    let Value::Object(o) = v else {
        return Err("expected a JSON object with `state`".into());
    };
    if let Some(k) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "state" | "load" | "ttl" | "reason" | "source"))
    {
        return Err(format!(
            "unknown field `{k}`; expected state, load, ttl, reason, source"
        ));
    }
    let up = match o.get("state") {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("up") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("down") => false,
        Some(other) => return Err(format!("state {other}: expected \"up\" or \"down\"")),
        None => return Err("missing field `state` (\"up\" or \"down\")".into()),
    };
    let load = match o.get("load") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => Some(x),
            _ => return Err(format!("load {n}: expected a number from 0 to 1")),
        },
        Some(other) => return Err(format!("load {other}: expected a number from 0 to 1")),
    };
    let ttl = match o.get("ttl") {
        None | Some(Value::Null) => DEFAULT_PUSH_TTL,
        Some(Value::String(s)) => crate::walk::parse_duration(s)
            .ok_or_else(|| format!("ttl {s:?}: expected a duration such as \"60s\" or \"5m\""))?,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("ttl {n}: expected whole seconds or a duration string"))?,
        Some(other) => return Err(format!("ttl {other}: expected a duration such as \"60s\"")),
    };
    if ttl.is_zero() || ttl > MAX_PUSH_TTL {
        return Err(format!(
            "ttl must be more than 0 and at most 7 days (got {}s); for longer, use the admin state",
            ttl.as_secs()
        ));
    }
    let reason = match o.get("reason") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= 500 => s.trim().to_string(),
        Some(Value::String(_)) => return Err("reason is longer than 500 bytes".into()),
        Some(other) => return Err(format!("reason {other}: expected a string")),
    };
    let source = match o.get("source") {
        None | Some(Value::Null) => "api".to_string(),
        Some(Value::String(s)) if valid_source(s) => s.clone(),
        Some(other) => {
            return Err(format!(
                "source {other}: expected 1 to 64 letters, digits, `.`, `_` or `-`"
            ));
        }
    };
    Ok(PushBody {
        up,
        load,
        ttl,
        reason,
        source,
    })
}

fn valid_source(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn input_error(e: InputError) -> Response {
    match e {
        InputError::Stopped => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        InputError::UnknownDatacenter(_)
        | InputError::NotAnAddress { .. }
        | InputError::UnknownAddress(_) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// The subject of `/datacenters/{name}/addresses/{addr}/health`; the error says why not.
fn address_subject(name: String, addr: &str) -> Result<Subject, String> {
    match addr.parse::<IpAddr>() {
        Ok(address) => Ok(Subject::Address {
            datacenter: name,
            address,
        }),
        Err(_) => Err(format!("`{addr}` is not an IP address")),
    }
}

async fn push(ctx: ApiContext, headers: HeaderMap, subject: Subject, body: Body) -> Response {
    if let Err(denied) = authorize(&ctx, &headers) {
        return denied.into_response();
    }
    let body = match read_body(&ctx.limits, ctx.limits.max_body, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b = match parse_push_body(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let update = Update::Set {
        source: Source::new(SourceKind::Pushed, b.source.clone()),
        verdict: Verdict {
            subject: subject.clone(),
            up: b.up,
            load: b.load,
            reason: if b.source == "api" {
                b.reason.clone()
            } else if b.reason.is_empty() {
                format!("by {}", b.source)
            } else {
                format!("{} (by {})", b.reason, b.source)
            },
            ttl: b.ttl,
        },
    };
    match ctx.backend.health_input(update).await {
        Ok(applied) => {
            let state = if b.up { "up" } else { "down" };
            tracing::info!(subject = %subject.describe(), state, ttl_secs = b.ttl.as_secs(), source = %b.source, "health pushed via API");
            axum::Json(json!({
                "subject": subject.describe(),
                "state": state,
                "load": b.load,
                "ttl_secs": b.ttl.as_secs(),
                "expires_unix": unix(SystemTime::now() + b.ttl),
                "source": b.source,
                "changed": applied.changed > 0,
            }))
            .into_response()
        }
        Err(e) => input_error(e),
    }
}

async fn clear(
    ctx: ApiContext,
    headers: HeaderMap,
    subject: Subject,
    params: Vec<(String, String)>,
) -> Response {
    if let Err(denied) = authorize(&ctx, &headers) {
        return denied.into_response();
    }
    let mut source = "api".to_string();
    for (k, v) in params {
        match k.as_str() {
            "source" if valid_source(&v) => source = v,
            "source" => return error(StatusCode::BAD_REQUEST, "invalid `source`"),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter `{k}`; expected source"),
                );
            }
        }
    }
    let update = Update::Clear {
        source: Source::new(SourceKind::Pushed, source.clone()),
        subject: subject.clone(),
    };
    match ctx.backend.health_input(update).await {
        Ok(applied) => axum::Json(json!({
            "subject": subject.describe(),
            "source": source,
            "cleared": applied.changed > 0,
        }))
        .into_response(),
        Err(e) => input_error(e),
    }
}

async fn push_health(
    State(ctx): State<ApiContext>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path(name)) = name else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid datacenter name in the path",
        );
    };
    push(ctx, headers, Subject::Datacenter(name), body).await
}

async fn push_address_health(
    State(ctx): State<ApiContext>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path((name, addr))) = path else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid datacenter or address in the path",
        );
    };
    match address_subject(name, &addr) {
        Ok(subject) => push(ctx, headers, subject, body).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn clear_health(
    State(ctx): State<ApiContext>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (Ok(Path(name)), Ok(Query(params))) = (name, params) else {
        return error(StatusCode::BAD_REQUEST, "invalid datacenter name or query");
    };
    clear(ctx, headers, Subject::Datacenter(name), params).await
}

async fn clear_address_health(
    State(ctx): State<ApiContext>,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (Ok(Path((name, addr))), Ok(Query(params))) = (path, params) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid datacenter, address or query",
        );
    };
    match address_subject(name, &addr) {
        Ok(subject) => clear(ctx, headers, subject, params).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn alertmanager_webhook(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(denied) = authorize(&ctx, &headers) {
        return denied.into_response();
    }
    let body = match read_body(&ctx.limits, ctx.limits.max_alert_body, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed = match alertmanager::parse(&body, &ctx.alerts) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut applied = 0usize;
    let mut errors: Vec<String> = Vec::new();
    for u in parsed.updates {
        match ctx.backend.health_input(u).await {
            Ok(a) => applied += a.changed,
            // Alertmanager retries a delivery that failed: let it, while gslbd cannot apply.
            Err(e @ InputError::Stopped) => return input_error(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        tracing::warn!(errors = ?errors, label = %ctx.alerts.label, "alerts name datacenters that are not configured");
    }
    axum::Json(json!({
        "alerts": parsed.alerts,
        "ignored": parsed.ignored,
        "changed": applied,
        "errors": errors,
    }))
    .into_response()
}

async fn events_stream(State(ctx): State<ApiContext>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let Some(rx) = ctx.backend.subscribe_events() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no event stream on this server",
        );
    };
    let stop = ctx.stop.clone();
    let stream = futures_util::stream::unfold((rx, stop), |(mut rx, stop)| async move {
        let next = tokio::select! {
            _ = stop.stopped() => return None,
            r = rx.recv() => r,
        };
        let ev = match next {
            Ok(e) => {
                let kind = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                Event::default()
                    .id(e.seq.to_string())
                    .event(kind)
                    .json_data(&e)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable event"))
            }
            // A reader that fell behind is told how many events it missed.
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(ev), (rx, stop)))
    });
    // A keep-alive comment well within the listener's stall timeout, so a quiet stream to a
    // client that reads is never taken for a stalled one.
    let every = (ctx.limits.stall_timeout / 2).max(std::time::Duration::from_secs(1));
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(every))
        .into_response()
}

/// `A`, `aaaa`, `TYPE65`, `28`.
fn parse_qtype(s: &str) -> Result<u16, String> {
    crate::rr::parse_type(s).ok_or_else(|| format!("unknown query type `{s}`"))
}

/// `192.0.2.0/24`, `2001:db8::/48`, or a bare address (full-length prefix); host bits set
/// beyond the prefix are refused, as `gslbd explain --ecs` and the zone files do.
fn parse_ecs(s: &str) -> Result<(IpAddr, u8), String> {
    Subnet::parse(s)
        .map(|n| (n.addr, n.prefix))
        .map_err(|e| format!("ecs: {e}"))
}

/// Validates the `/explain` parameters.
pub(crate) fn parse_explain(params: &[(String, String)]) -> Result<ExplainRequest, String> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (k, v) in params {
        if !matches!(k.as_str(), "name" | "type" | "client" | "ecs") {
            return Err(format!(
                "unknown parameter `{k}`; expected name, type, client, ecs"
            ));
        }
        if seen.insert(k, v).is_some() {
            return Err(format!("parameter `{k}` given twice"));
        }
    }
    let name = match seen.get("name").map(|n| n.trim()) {
        None | Some("") => return Err("missing parameter `name`".into()),
        Some(n) => n,
    };
    let parsed = hickory_proto::rr::Name::from_ascii(name)
        .map_err(|e| format!("name: `{name}` is not a valid DNS name: {e}"))?;
    let mut fqdn = parsed.to_ascii().to_ascii_lowercase();
    if !fqdn.ends_with('.') {
        fqdn.push('.');
    }
    let qtype = match seen.get("type") {
        None => 1,
        Some(t) => parse_qtype(t.trim())?,
    };
    let client = match seen.get("client").map(|c| c.trim()) {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<IpAddr>()
                .map_err(|_| format!("client: `{c}` is not an IP address"))?,
        ),
    };
    let ecs = match seen.get("ecs").map(|e| e.trim()) {
        None | Some("") => None,
        Some(e) => Some(parse_ecs(e)?),
    };
    Ok(ExplainRequest {
        name: fqdn,
        qtype,
        client,
        ecs,
    })
}

async fn explain(
    State(ctx): State<ApiContext>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error(StatusCode::BAD_REQUEST, "malformed query string");
    };
    let req = match parse_explain(&params) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match ctx.backend.explain(&req) {
        Ok(v) => axum::Json(v).into_response(),
        Err(ExplainFailure::NotServed(e)) => error(StatusCode::NOT_FOUND, e),
        Err(ExplainFailure::Invalid(e)) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn admin_bodies() {
        assert_eq!(parse_admin_body(b"drain\n"), Ok(AdminState::Drain));
        assert_eq!(parse_admin_body(b"UP"), Ok(AdminState::Up));
        assert_eq!(
            parse_admin_body(br#"{"state":"obey"}"#),
            Ok(AdminState::Obey)
        );
        assert_eq!(parse_admin_body(br#""down""#), Ok(AdminState::Down));
        assert!(parse_admin_body(b"").is_err());
        assert!(parse_admin_body(b"maybe").is_err());
        assert!(parse_admin_body(br#"{"state":1}"#).is_err());
        assert!(parse_admin_body(br#"{"state":"up","x":1}"#).is_err());
        assert!(parse_admin_body(br#"{"state":"#).is_err());
        assert!(parse_admin_body(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn explain_params() {
        let r = parse_explain(&p(&[
            ("name", "WWW.Example.com"),
            ("type", "aaaa"),
            ("client", "192.0.2.1"),
            ("ecs", "198.51.100.0/24"),
        ]))
        .expect("valid");
        assert_eq!(r.name, "www.example.com.");
        assert_eq!(r.qtype, 28);
        assert_eq!(r.client, Some("192.0.2.1".parse().expect("ip")));
        assert_eq!(r.ecs, Some(("198.51.100.0".parse().expect("ip"), 24)));
        let r = parse_explain(&p(&[
            ("name", "a.b."),
            ("type", "TYPE65"),
            ("ecs", "2001:db8::1"),
        ]))
        .expect("valid");
        assert_eq!((r.qtype, r.ecs.map(|e| e.1)), (65, Some(128)));
        assert_eq!(
            parse_explain(&p(&[("name", "x."), ("ecs", "0.0.0.0/0")])).map(|r| r.ecs),
            Ok(Some(("0.0.0.0".parse().expect("ip"), 0)))
        );
        for bad in [
            p(&[]),
            p(&[("name", "")]),
            p(&[("name", "a..b")]),
            p(&[("name", "a."), ("type", "BOGUS")]),
            p(&[("name", "a."), ("client", "nope")]),
            p(&[("name", "a."), ("ecs", "10.0.0.0/33")]),
            p(&[("name", "a."), ("ecs", "10.0.0.0/x")]),
            // Host bits past the prefix: refused, not silently cleared.
            p(&[("name", "a."), ("ecs", "198.51.100.77/24")]),
            p(&[("name", "a."), ("name", "b.")]),
            p(&[("name", "a."), ("qtype", "A")]),
        ] {
            assert!(parse_explain(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn push_bodies() {
        let b = parse_push_body(br#"{"state":"down","load":0.4,"ttl":"60s","reason":" x "}"#)
            .expect("valid");
        assert_eq!(
            b,
            PushBody {
                up: false,
                load: Some(0.4),
                ttl: std::time::Duration::from_secs(60),
                reason: "x".into(),
                source: "api".into(),
            }
        );
        let b = parse_push_body(br#"{"state":"UP","ttl":30,"source":"ci-1"}"#).expect("valid");
        assert_eq!(
            (b.up, b.ttl.as_secs(), b.source.as_str()),
            (true, 30, "ci-1")
        );
        assert_eq!(
            parse_push_body(br#"{"state":"up"}"#).map(|b| b.ttl),
            Ok(DEFAULT_PUSH_TTL)
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"state":"sideways"}"#,
            br#"{"state":"up","load":2}"#,
            br#"{"state":"up","ttl":"soon"}"#,
            br#"{"state":"up","ttl":0}"#,
            br#"{"state":"up","ttl":"8d"}"#,
            br#"{"state":"up","colour":"red"}"#,
            br#"{"state":"up","source":"a b"}"#,
            br#""up""#,
            b"down",
        ] {
            assert!(
                parse_push_body(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn token_comparison() {
        assert!(same_token(b"secret", b"secret"));
        assert!(!same_token(b"secret", b"secreT"));
        assert!(!same_token(b"secret", b"secret2"));
        assert!(!same_token(b"", b"x"));
    }
}
