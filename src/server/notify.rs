//! Webhook notifications (`--notify URL`): every health event is POSTed as JSON to each URL.
//!
//! ```text
//!  aggregator --broadcast (never waits)--> dispatcher task
//!      --> per URL: bounded queue (QUEUE_LEN; full: the oldest is dropped and counted)
//!             --> delivery task: POST, timeout, retries with doubling backoff, in order
//! ```
//!
//! A slow or failing receiver only delays its own queue: the aggregator, the other receivers
//! and the answers never wait for it. Deliveries, retries and drops are counted in
//! `gslbd_notifications_total{result}`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::health::events::EventView;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Events waiting per URL; beyond this the oldest is dropped.
pub(super) const QUEUE_LEN: usize = 256;
/// Attempts per event before it is dropped.
pub(super) const ATTEMPTS: u32 = 5;
/// Time allowed for one POST.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before the first retry; doubles each time, at most [`MAX_BACKOFF`].
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One receiver's queue.
#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<EventView>>,
    ready: Notify,
}

impl Queue {
    /// Adds `e`, dropping the oldest when full; true when one was dropped.
    fn push(&self, e: EventView) -> bool {
        let mut q = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = q.len() >= QUEUE_LEN;
        if dropped {
            q.pop_front();
        }
        q.push_back(e);
        drop(q);
        self.ready.notify_one();
        dropped
    }

    fn pop(&self) -> Option<EventView> {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

/// Starts delivering the events of `events` to `urls` until `stop`.
pub(super) fn spawn(
    urls: &[String],
    events: &broadcast::Sender<EventView>,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) -> Vec<tokio::task::JoinHandle<()>> {
    if urls.is_empty() {
        return Vec::new();
    }
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("gslbd/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("notifications disabled: cannot build the HTTP client: {e}");
            return Vec::new();
        }
    };
    let queues: Vec<(String, Arc<Queue>)> = urls
        .iter()
        .map(|u| (u.clone(), Arc::new(Queue::default())))
        .collect();
    let mut tasks: Vec<_> = queues
        .iter()
        .map(|(url, q)| {
            tokio::spawn(deliver(
                url.clone(),
                q.clone(),
                client.clone(),
                metrics.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let mut rx = events.subscribe();
    tasks.push(tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = stop.stopped() => return,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(e) => {
                    for (url, q) in &queues {
                        if q.push(e.clone()) {
                            metrics.notification("dropped");
                            tracing::warn!(%url, "notification queue full: dropped the oldest event");
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    for _ in 0..n * queues.len() as u64 {
                        metrics.notification("dropped");
                    }
                    tracing::warn!(missed = n, "notifications fell behind the events: some were dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }));
    tasks
}

/// Sends the queue's events to `url` in order, each with retries, until `stop`.
async fn deliver(
    url: String,
    q: Arc<Queue>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    stop: Shutdown,
) {
    loop {
        let Some(ev) = q.pop() else {
            tokio::select! {
                _ = stop.stopped() => return,
                _ = q.ready.notified() => continue,
            }
        };
        let body = match serde_json::to_vec(&ev) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "notification not serialisable; dropped");
                continue;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let req = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let sent = tokio::select! {
                _ = stop.stopped() => return,
                r = req.send() => r,
            };
            let err = match sent {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("status {}", r.status().as_u16())),
                Err(e) => Some(e.to_string()),
            };
            let Some(err) = err else {
                metrics.notification("sent");
                break;
            };
            if attempt == ATTEMPTS {
                metrics.notification("dropped");
                tracing::warn!(%url, seq = ev.seq, error = %err, attempts = ATTEMPTS, "notification dropped after its last attempt");
                break;
            }
            metrics.notification("retried");
            tracing::info!(%url, seq = ev.seq, error = %err, attempt, retry_in_ms = backoff.as_millis() as u64, "notification failed; will retry");
            tokio::select! {
                _ = stop.stopped() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
