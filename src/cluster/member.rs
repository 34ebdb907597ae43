//! Membership: this node's lease and its member key.
//!
//! ```text
//!  grant(lease TTL) --> put {prefix}members/{node} (bound to the lease) --> keepalive every TTL/3
//!      ^                                                                      |
//!      +---- keepalive says the lease is gone (expired while etcd was away) --+
//!  a failed call: "disconnected" (the lease id is kept: etcd may come back with it alive)
//!  stop: revoke the lease, so the others see this node leave at once
//! ```
//!
//! The live members are the member keys present: a node that crashes disappears when its
//! lease expires (at most one TTL), and with it every observation it published.

use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::etcd::Etcd;
use crate::shutdown::Shutdown;

/// The lease as the other tasks see it.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeaseState {
    /// The lease this node's keys are bound to, once granted.
    pub(crate) lease: Option<i64>,
    /// The last etcd call of this task succeeded.
    pub(crate) connected: bool,
    /// Round trip of the last keepalive, ms.
    pub(crate) rtt_ms: Option<f64>,
    /// Why the last call failed.
    pub(crate) error: Option<String>,
    /// Failed calls so far.
    pub(crate) errors: u64,
    /// Leases granted so far (more than one: a lease was lost and replaced).
    pub(crate) grants: u64,
}

/// Keeps this node's lease and member key alive until `stop`; then revokes the lease.
pub(crate) async fn run(
    etcd: Etcd,
    member_key: String,
    node: String,
    ttl: Duration,
    out: watch::Sender<LeaseState>,
    stop: Shutdown,
) {
    let ttl_secs = ttl.as_secs().max(1);
    let every = Duration::from_secs(ttl_secs) / 3;
    let started = crate::health::persist::unix_secs(SystemTime::now());
    let value = json!({
        "node": node,
        "started_unix": started,
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string();
    let mut st = LeaseState::default();
    loop {
        let begin = Instant::now();
        let result = match st.lease {
            None => match etcd.grant(ttl_secs).await {
                Ok(id) => match etcd.put(&member_key, value.as_bytes(), id).await {
                    Ok(_) => {
                        st.grants += 1;
                        tracing::info!(node = %node, lease = id, "cluster: joined (lease granted, member key written)");
                        Ok(Some(id))
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Some(id) => match etcd.keepalive(id).await {
                Ok(Some(_)) => Ok(Some(id)),
                Ok(None) => {
                    tracing::warn!(node = %node, lease = id, "cluster: lease expired; joining again");
                    Ok(None)
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(lease) => {
                st.rtt_ms = Some(begin.elapsed().as_secs_f64() * 1000.0);
                if !st.connected {
                    st.error = None;
                }
                st.connected = true;
                st.lease = lease;
            }
            Err(e) => {
                if st.connected || st.error.is_none() {
                    tracing::warn!(node = %node, error = %e, "cluster: etcd call failed");
                }
                st.connected = false;
                st.error = Some(e.to_string());
                st.errors += 1;
            }
        }
        let _ = out.send(st.clone());
        // A lost lease is replaced at once; a failure is retried soon.
        let wait = if st.connected && st.lease.is_some() {
            every
        } else if st.connected {
            Duration::ZERO
        } else {
            Duration::from_millis(200).min(every)
        };
        tokio::select! {
            _ = stop.stopped() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if let Some(id) = st.lease {
        match tokio::time::timeout(Duration::from_secs(1), etcd.revoke(id)).await {
            Ok(Ok(())) => tracing::info!(node = %node, "cluster: left (lease revoked)"),
            _ => tracing::info!(node = %node, "cluster: left (lease not revoked: it expires)"),
        }
    }
}
