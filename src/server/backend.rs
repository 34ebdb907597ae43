//! The HTTP API's view of the running server (`api::ApiBackend`), and readiness tracking.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::State;
use crate::api::{
    ApiBackend, BoxFuture, ExplainFailure, ExplainRequest, ReloadInfo, ServerInfo, TlsInfo,
    Topology, ZoneInfo,
};
use crate::dns::wire::ClientSubnet;
use crate::explain::ExplainError;
use crate::health::AdminState;
use crate::health::aggregator::{AdminError, Status};
use crate::net::Family;
use crate::shutdown::Shutdown;

/// The API's view of a running server.
pub(crate) struct Backend {
    /// The server's state.
    pub(crate) state: Arc<State>,
}

impl ApiBackend for Backend {
    fn server_info(&self) -> ServerInfo {
        let loaded = self.state.model();
        let r = self.state.last_reload.load();
        ServerInfo {
            started: self.state.started,
            generation: self.state.generation.load(Ordering::Relaxed),
            loaded_at: loaded.model.loaded_at,
            last_reload: ReloadInfo {
                at: r.at,
                ok: r.ok,
                errors: r.errors.clone(),
            },
            zones: ZoneInfo::list(&loaded.model),
            state_files: self
                .state
                .state_problems
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default(),
            tls: self.state.cert_paths().map(|(cert, key)| {
                let r = self.state.cert_report.load();
                TlsInfo {
                    cert_file: cert.display().to_string(),
                    key_file: key.display().to_string(),
                    loaded_at: r.loaded_at,
                    checked_at: r.checked_at,
                    ok: r.ok,
                    error: r.error.clone(),
                }
            }),
        }
    }

    fn datacenter_status(&self) -> BoxFuture<'_, Option<Status>> {
        Box::pin(async move {
            let h = self.state.health_handle().await?;
            h.status().await
        })
    }

    fn set_admin<'a>(
        &'a self,
        name: &'a str,
        state: AdminState,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            let h = self
                .state
                .health_handle()
                .await
                .ok_or(AdminError::Stopped)?;
            h.set_admin_by_name(name, state).await?;
            // In a cluster the state goes to etcd too, and from there to every node. This
            // node has applied it already; if etcd cannot be reached it holds here only.
            if let Some(c) = &self.state.cluster {
                match c.share_admin(name, state).await {
                    Ok(rev) => {
                        tracing::info!(datacenter = %name, admin = state.as_str(), revision = rev, "admin state shared through etcd")
                    }
                    Err(e) => {
                        tracing::warn!(datacenter = %name, admin = state.as_str(), error = %e, "admin state set on this node only: etcd not reachable")
                    }
                }
            }
            h.persist().await
        })
    }

    fn cluster(&self) -> Option<crate::cluster::ClusterStatus> {
        self.state.cluster.as_ref().map(|c| c.status())
    }

    fn explain(&self, req: &ExplainRequest) -> Result<serde_json::Value, ExplainFailure> {
        let family = match req.qtype {
            1 => Family::V4,
            28 => Family::V6,
            other => {
                return Err(ExplainFailure::Invalid(format!(
                    "type {other}: GSLB names answer A and AAAA only"
                )));
            }
        };
        let ecs = req.ecs.map(|(addr, prefix)| ClientSubnet {
            family: if addr.is_ipv4() { 1 } else { 2 },
            source_prefix: prefix,
            addr,
        });
        // Without a resolver address, the ECS address stands for it (else loopback).
        let source = req
            .client
            .or(req.ecs.map(|e| e.0))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let serving = self.state.serving.load();
        match crate::explain::explain(
            &serving.loaded.model,
            &serving.snapshot,
            &serving.geo,
            &req.name,
            family,
            source,
            ecs.as_ref(),
        ) {
            Ok(x) => {
                let mut v =
                    serde_json::to_value(&x).map_err(|e| ExplainFailure::Invalid(e.to_string()))?;
                // The text `gslbd explain` prints, for the status page.
                v["text"] = x.to_string().into();
                Ok(v)
            }
            Err(ExplainError::NotGslb(n)) => Err(ExplainFailure::NotServed(format!(
                "{n} is not a GSLB name served here"
            ))),
            Err(ExplainError::BadInput(m)) => Err(ExplainFailure::Invalid(m)),
        }
    }

    fn ready(&self) -> bool {
        self.state.ready.load(Ordering::Relaxed)
    }

    fn xdp_status(&self) -> Vec<crate::dns::xdp::XdpStatus> {
        self.state.xdp.get().map(|v| v.status()).unwrap_or_default()
    }

    fn topology(&self) -> Topology {
        let serving = self.state.serving.load();
        Topology::of(
            &serving.loaded.model,
            serving.snapshot.resolutions.as_deref(),
        )
    }

    fn health_input(
        &self,
        update: crate::health::input::Update,
    ) -> BoxFuture<'_, Result<crate::health::input::Applied, crate::health::input::InputError>>
    {
        Box::pin(async move { self.state.health_input(update).await })
    }

    fn subscribe_events(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<crate::health::events::EventView>> {
        Some(self.state.subscribe_events())
    }

    fn feeds(&self) -> Vec<crate::health::feed::FeedStatus> {
        self.state.feeds()
    }

    fn events(&self) -> BoxFuture<'_, Vec<crate::health::events::EventView>> {
        Box::pin(async move {
            match self.state.health_handle().await {
                Some(h) => h.events().await.unwrap_or_default(),
                None => Vec::new(),
            }
        })
    }
}

/// Marks the server ready once every target has been probed or warm-started, and again after
/// a reload restarted the probes; until `stop`.
pub(crate) async fn track_readiness(state: Arc<State>, stop: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.stopped() => return,
            _ = tick.tick() => {}
        }
        if state.ready.load(Ordering::Relaxed) {
            continue;
        }
        let Some(h) = state.health_handle().await else {
            continue;
        };
        // Every hostname target asked once (answered or failed), every probe target probed.
        let resolved = state
            .serving
            .load()
            .snapshot
            .resolutions
            .as_ref()
            .is_none_or(|r| {
                r.list
                    .iter()
                    .all(|e| e.state != crate::resolve::State::Pending || e.lookups_failed > 0)
            });
        if let Some(s) = h.status().await
            && resolved
            && s.datacenters
                .iter()
                .all(|d| d.targets.iter().all(|t| t.probed || t.warm))
        {
            state.ready.store(true, Ordering::Relaxed);
        }
    }
}
