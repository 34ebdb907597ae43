//! The probe workers and the health aggregator of the running configuration.
//!
//! One `HealthRuntime` per set of datacenters: a reload that leaves every datacenter and check
//! as it was keeps it (and so every target's counters); a reload that changes them stops it —
//! the aggregator writes its state files — and starts a new one that reads them back, so admin
//! states and the health of unchanged targets carry over. Each runtime publishes through its
//! own health generation (see `publish`), and runs under its own node of the stop tree.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::health::Publish;
use crate::health::aggregator::{Aggregator, AggregatorHandle, AggregatorSettings};
use crate::metrics::Metrics;
use crate::probe::{
    DatacenterProbe, ProbeSet, Prober, Steering, WorkerSettings, Workers, spawn_steered_workers,
};
use crate::resolve::ResolvedNames;
use crate::shutdown::Shutdown;

/// Probes and aggregator for one set of datacenters.
pub(crate) struct HealthRuntime {
    /// Talks to the aggregator.
    pub(crate) handle: AggregatorHandle,
    /// The datacenters this runtime was built for (to tell whether a reload changed them).
    pub(crate) probes: Vec<DatacenterProbe>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
    workers: Workers,
}

impl HealthRuntime {
    /// Restores state from the state dir, publishes the first snapshot into `out` and starts
    /// probing the (already validated) `plan`; hostname datacenters probe what `hosts` (the
    /// resolver's results) says their targets resolve to, as it changes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        plan: Arc<ProbeSet>,
        probes: &[DatacenterProbe],
        settings: AggregatorSettings,
        workers: WorkerSettings,
        out: Arc<dyn Publish>,
        metrics: Arc<Metrics>,
        events: tokio::sync::broadcast::Sender<crate::health::events::EventView>,
        cluster: Option<&crate::cluster::Cluster>,
        hosts: watch::Receiver<Arc<ResolvedNames>>,
        stop: Shutdown,
    ) -> Result<HealthRuntime, String> {
        let prober = Arc::new(
            Prober::with_options(&plan, workers.max_exec, cluster.map(|c| c.node()))
                .map_err(|e| format!("health checks: {e}"))?,
        );
        let current = hosts.borrow().clone();
        let (mut agg, handle) = Aggregator::new_with_hosts(plan.clone(), settings, out, &current)
            .map_err(|e| format!("state: {e}"))?;
        agg.set_metrics(metrics);
        agg.set_events_out(events);
        let steering = Steering::all(plan.targets.len());
        let observations = cluster.map(|_| {
            let (tx, rx) = mpsc::channel(plan.targets.len().max(64) * 2);
            agg.set_steering(steering.clone());
            agg.set_observations_out(tx);
            rx
        });
        // Room for a full round of results: probes never wait on a slow aggregator for long.
        let (tx, rx) = mpsc::channel(plan.targets.len().max(64) * 2);
        let workers = spawn_steered_workers(
            &plan,
            prober,
            workers,
            tx.clone(),
            steering.clone(),
            stop.clone(),
        );
        agg.follow_hosts(workers.dynamic(tx, stop.child()), hosts);
        let task = tokio::spawn(agg.run(rx, stop.clone()));
        if let (Some(c), Some(rx)) = (cluster, observations) {
            c.bind(plan.clone(), handle.clone(), steering, rx).await;
        }
        Ok(HealthRuntime {
            handle,
            probes: probes.to_vec(),
            stop,
            task,
            workers,
        })
    }

    /// Stops probing; the aggregator applies what is queued, publishes and writes its state.
    pub(crate) async fn stop(self) {
        self.stop.stop();
        self.workers.join().await;
        let _ = self.task.await;
    }
}
