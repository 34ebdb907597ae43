//! A small etcd v3 client over etcd's own JSON gateway (grpc-gateway, on every client URL
//! since etcd 3.3), using the HTTP client the probes already use: no gRPC stack, no `protoc`
//! at build time.
//!
//! ```text
//!  POST /v3/kv/range         {key, range_end}            -> {header{revision}, kvs[{key,value,mod_revision,lease}]}
//!  POST /v3/kv/put           {key, value, lease}
//!  POST /v3/kv/deleterange   {key}
//!  POST /v3/lease/grant      {TTL}                        -> {ID, TTL}
//!  POST /v3/lease/keepalive  {ID}                         -> {result{ID, TTL}}   (TTL absent: lease gone)
//!  POST /v3/lease/revoke     {ID}
//!  POST /v3/watch            {create_request{key, range_end, start_revision}}
//!                            -> a streamed response, one JSON object per line: {result{events[...]}}
//!  POST /v3/auth/authenticate {name, password}            -> {token}  (sent as `Authorization`)
//!  POST /v3/maintenance/status {}                         -> {leader, raftTerm}
//! ```
//!
//! Keys and values travel as base64; 64-bit integers as JSON strings. Endpoints are tried in
//! turn: a request that fails on one (connection refused, timeout, 5xx) goes to the next, and
//! the one that answered is tried first next time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use data_encoding::BASE64;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

/// How to reach and authenticate to etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    /// `HOST:PORT` of each member's client URL.
    pub endpoints: Vec<String>,
    /// Use `https://` (server certificate verified against `ca` or the platform roots).
    pub tls: bool,
    /// PEM file of the CA that signed etcd's server certificates.
    pub ca: Option<std::path::PathBuf>,
    /// PEM file with a client certificate and its key (etcd's `--client-cert-auth`).
    pub identity: Option<std::path::PathBuf>,
    /// etcd user and password (`/v3/auth/authenticate`; the token is renewed when refused).
    pub user: Option<(String, String)>,
    /// Timeout of one request (not of a watch stream).
    pub timeout: Duration,
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("no etcd endpoint answered ({0})")]
    Unreachable(String),
    /// etcd answered with an error.
    #[error("etcd: {0}")]
    Refused(String),
    /// A TLS file could not be read or used.
    #[error("etcd TLS setup: {0}")]
    Setup(String),
}

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value (empty for a delete event).
    pub value: Vec<u8>,
    /// Revision of its last change.
    pub mod_revision: i64,
}

/// What a watch stream reports.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// Every key under the prefix as of `revision` (sent after each (re)connection, before
    /// the changes that follow it).
    Snapshot {
        /// The keys.
        kvs: Vec<Kv>,
        /// The store's revision at the time.
        revision: i64,
    },
    /// A key was set.
    Put(Kv),
    /// A key was deleted (or its lease expired).
    Delete(String),
    /// The stream broke; a snapshot follows once reconnected.
    Lost(String),
}

/// The etcd client (cheap to clone).
#[derive(Clone, Debug)]
pub struct Etcd {
    http: reqwest::Client,
    /// A client without a total timeout, for watch streams.
    stream: reqwest::Client,
    base: Arc<Vec<String>>,
    preferred: Arc<AtomicUsize>,
    user: Option<(String, String)>,
    token: Arc<Mutex<Option<String>>>,
}

fn b64(s: &[u8]) -> String {
    BASE64.encode(s)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| BASE64.decode(s.as_bytes()).ok())
        .unwrap_or_default()
}

/// An int64 field of the gateway's JSON: a string (or absent = 0).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The end of the range of keys starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The body of a gateway response as JSON.
async fn body_json(r: reqwest::Response) -> Result<Value, String> {
    let bytes = r.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
}

fn kv(v: &Value) -> Kv {
    Kv {
        key: String::from_utf8_lossy(&unb64(&v["key"])).into_owned(),
        value: unb64(&v["value"]),
        mod_revision: int(&v["mod_revision"]),
    }
}

impl Etcd {
    /// A client for `opts` (nothing is contacted yet).
    pub fn new(opts: &EtcdOptions) -> Result<Etcd, EtcdError> {
        let scheme = if opts.tls { "https" } else { "http" };
        let base = opts
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let build = |total: Option<Duration>| -> Result<reqwest::Client, EtcdError> {
            let mut b = reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(opts.timeout)
                .user_agent(concat!("gslbd/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = total {
                b = b.timeout(t);
            }
            if let Some(ca) = &opts.ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| EtcdError::Setup(format!("{}: {e}", ca.display())))?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| EtcdError::Setup(format!("{}: {e}", ca.display())))?
                {
                    b = b.add_root_certificate(cert);
                }
            }
            if let Some(id) = &opts.identity {
                let pem = std::fs::read(id)
                    .map_err(|e| EtcdError::Setup(format!("{}: {e}", id.display())))?;
                b = b.identity(
                    reqwest::Identity::from_pem(&pem)
                        .map_err(|e| EtcdError::Setup(format!("{}: {e}", id.display())))?,
                );
            }
            b.build().map_err(|e| EtcdError::Setup(e.to_string()))
        };
        Ok(Etcd {
            http: build(Some(opts.timeout))?,
            stream: build(None)?,
            base: Arc::new(base),
            preferred: Arc::new(AtomicUsize::new(0)),
            user: opts.user.clone(),
            token: Arc::new(Mutex::new(None)),
        })
    }

    /// The endpoints, the one that answered last first.
    fn order(&self) -> Vec<(usize, String)> {
        let n = self.base.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n)
            .map(|i| (first + i) % n)
            .map(|i| (i, self.base[i].clone()))
            .collect()
    }

    async fn authenticate(&self, base: &str) -> Result<Option<String>, EtcdError> {
        let Some((name, password)) = &self.user else {
            return Ok(None);
        };
        let mut tok = self.token.lock().await;
        if let Some(t) = tok.as_ref() {
            return Ok(Some(t.clone()));
        }
        let r = self
            .http
            .post(format!("{base}/v3/auth/authenticate"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({ "name": name, "password": password }).to_string())
            .send()
            .await
            .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
        let v = body_json(r).await.map_err(EtcdError::Unreachable)?;
        match v["token"].as_str() {
            Some(t) => {
                *tok = Some(t.to_string());
                Ok(Some(t.to_string()))
            }
            None => Err(EtcdError::Refused(format!(
                "authentication as {name}: {}",
                v["message"].as_str().unwrap_or("refused")
            ))),
        }
    }

    /// One call, on each endpoint in turn until one answers.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut last = String::from("no endpoint configured");
        for (i, base) in self.order() {
            let token = match self.authenticate(&base).await {
                Ok(t) => t,
                Err(EtcdError::Unreachable(e)) => {
                    last = format!("{base}: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut req = self
                .http
                .post(format!("{base}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            if let Some(t) = &token {
                req = req.header("Authorization", t);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{base}: {e}");
                    continue;
                }
            };
            let status = resp.status();
            let v: Value = match body_json(resp).await {
                Ok(v) => v,
                Err(e) => {
                    last = format!("{base}: {e}");
                    continue;
                }
            };
            if status.is_server_error() && v.get("code").and_then(Value::as_i64) == Some(14) {
                // Unavailable (no leader on that member): try another.
                last = format!("{base}: {}", v["message"].as_str().unwrap_or("unavailable"));
                continue;
            }
            if let Some(msg) = v.get("error").or_else(|| v.get("message")) {
                let msg = msg.as_str().unwrap_or("error").to_string();
                if msg.contains("token") || msg.contains("authentication") {
                    *self.token.lock().await = None;
                }
                if status.is_server_error() {
                    last = format!("{base}: {msg}");
                    continue;
                }
                return Err(EtcdError::Refused(msg));
            }
            self.preferred.store(i, Ordering::Relaxed);
            return Ok(v);
        }
        Err(EtcdError::Unreachable(last))
    }

    /// Every key starting with `prefix`, and the store's revision.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                &json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)) }),
            )
            .await?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv).collect())
            .unwrap_or_default();
        Ok((kvs, int(&v["header"]["revision"])))
    }

    /// Sets `key` to `value`, bound to `lease` (0: none). Returns the new revision.
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let mut body = json!({ "key": b64(key.as_bytes()), "value": b64(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        let v = self.call("/v3/kv/put", &body).await?;
        Ok(int(&v["header"]["revision"]))
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.call("/v3/kv/deleterange", &json!({ "key": b64(key.as_bytes()) }))
            .await
            .map(|_| ())
    }

    /// A new lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))
            .await?;
        match int(&v["ID"]) {
            0 => Err(EtcdError::Refused("lease grant returned no id".into())),
            id => Ok(id),
        }
    }

    /// Renews `lease`; `Ok(None)` when etcd no longer knows it (expired).
    pub async fn keepalive(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        let ttl = int(&v["result"]["TTL"]);
        Ok((ttl > 0).then_some(ttl))
    }

    /// Ends `lease` now: every key bound to it is deleted.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
            .map(|_| ())
    }

    /// The member id of the current leader as the answering member sees it.
    pub async fn leader(&self) -> Result<String, EtcdError> {
        let v = self.call("/v3/maintenance/status", &json!({})).await?;
        Ok(v["leader"].as_str().unwrap_or("").to_string())
    }

    /// Watches every key under `prefix` until `events` is closed: a snapshot, then each
    /// change; after a break (`Lost`) it reconnects (on the next endpoint), sends a fresh
    /// snapshot and goes on. Never returns an error: the caller sees `Lost`.
    pub async fn watch(&self, prefix: String, events: mpsc::Sender<WatchEvent>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let err = match self.watch_once(&prefix, &events).await {
                Ok(()) => return, // the receiver is gone
                Err(e) => e,
            };
            if events.send(WatchEvent::Lost(err)).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            // The next endpoint first.
            let n = self.base.len().max(1);
            self.preferred.store(
                (self.preferred.load(Ordering::Relaxed) + 1) % n,
                Ordering::Relaxed,
            );
        }
    }

    /// One snapshot and one watch stream; `Ok` when the receiver is gone, `Err` on a break.
    async fn watch_once(
        &self,
        prefix: &str,
        events: &mpsc::Sender<WatchEvent>,
    ) -> Result<(), String> {
        let (kvs, revision) = self.range_prefix(prefix).await.map_err(|e| e.to_string())?;
        if events
            .send(WatchEvent::Snapshot { kvs, revision })
            .await
            .is_err()
        {
            return Ok(());
        }
        let (i, base) = self.order().into_iter().next().ok_or("no endpoint")?;
        let token = self.authenticate(&base).await.map_err(|e| e.to_string())?;
        let body = json!({ "create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": (revision + 1).to_string(),
        }});
        let mut req = self
            .stream
            .post(format!("{base}/v3/watch"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(t) = &token {
            req = req.header("Authorization", t);
        }
        let mut resp = req.send().await.map_err(|e| format!("{base}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{base}: watch refused: {}", resp.status()));
        }
        self.preferred.store(i, Ordering::Relaxed);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let next = tokio::select! {
                c = resp.chunk() => c,
                _ = events.closed() => return Ok(()),
            };
            let chunk = match next {
                Ok(Some(c)) => c,
                Ok(None) => return Err(format!("{base}: watch stream ended")),
                Err(e) => return Err(format!("{base}: {e}")),
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: Value = serde_json::from_slice(&line)
                    .map_err(|e| format!("{base}: bad watch message: {e}"))?;
                if let Some(e) = v.get("error") {
                    return Err(format!("{base}: watch: {e}"));
                }
                let r = &v["result"];
                if r["canceled"].as_bool() == Some(true) {
                    return Err(format!(
                        "{base}: watch canceled: {}",
                        r["cancel_reason"].as_str().unwrap_or("")
                    ));
                }
                for e in r["events"].as_array().into_iter().flatten() {
                    let kv = kv(&e["kv"]);
                    let ev = if e["type"].as_str() == Some("DELETE") {
                        WatchEvent::Delete(kv.key)
                    } else {
                        WatchEvent::Put(kv)
                    };
                    if events.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/gslbd/"), b"/gslbd0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn gateway_integers() {
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&json!(7)), 7);
        assert_eq!(int(&Value::Null), 0);
        let k = kv(&json!({"key": "L3gvYQ==", "value": "aGVsbG8=", "mod_revision": "3"}));
        assert_eq!(k.key, "/x/a");
        assert_eq!(k.value, b"hello");
        assert_eq!(k.mod_revision, 3);
    }
}
