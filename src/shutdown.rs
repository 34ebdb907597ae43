//! One stop signal for the whole server, as a tree: the server holds the root; each part
//! (UDP threads, TCP listeners, the API, the probe runtime of one configuration, background
//! tasks) gets a child. Stopping a node stops its whole subtree, so stopping the root stops
//! everything; stopping a child (a reload replacing the probe runtime) leaves the rest
//! running. Whoever spawned a part joins it after stopping it: nothing outlives the server.
//!
//! ```text
//! root --child--> listeners (UDP threads poll `is_stopped`, TCP tasks await `stopped`)
//!      --child--> api
//!      --child--> health runtime (probes, aggregator)   <- replaced, with its child, on reload
//!      --child--> background tasks (watchers, readiness)
//! ```
//!
//! A leaf module: it depends on nothing else in the crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Node {
    stopped: AtomicBool,
    notify: Notify,
    children: Mutex<Vec<Weak<Node>>>,
}

impl Node {
    fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.notify.notify_waiters();
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for c in children.iter().filter_map(Weak::upgrade) {
            c.stop();
        }
    }
}

/// A node of the stop tree; clones share the node.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    node: Arc<Node>,
}

impl Shutdown {
    /// A new root.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A new node below this one: stopped with it, or on its own.
    pub(crate) fn child(&self) -> Shutdown {
        let child = Shutdown::new();
        {
            let mut children = self.node.children.lock().unwrap_or_else(|e| e.into_inner());
            children.retain(|w| w.strong_count() > 0);
            children.push(Arc::downgrade(&child.node));
        }
        // A parent that stopped before the child was linked stops it here.
        if self.is_stopped() {
            child.stop();
        }
        child
    }

    /// Stops this node and every node below it.
    pub fn stop(&self) {
        self.node.stop();
    }

    /// Has this node (or an ancestor) been stopped? A cheap atomic load, for blocking loops.
    #[inline]
    pub(crate) fn is_stopped(&self) -> bool {
        self.node.stopped.load(Ordering::Acquire)
    }

    /// Completes once this node is stopped.
    pub(crate) async fn stopped(&self) {
        loop {
            let notified = self.node.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a stop between the check and the await is seen.
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stopping_a_node_stops_its_subtree_only() {
        let root = Shutdown::new();
        let a = root.child();
        let a1 = a.child();
        let b = root.child();
        let waiter = {
            let a1 = a1.clone();
            tokio::spawn(async move { a1.stopped().await })
        };
        a.stop();
        assert!(a.is_stopped() && a1.is_stopped());
        assert!(!root.is_stopped() && !b.is_stopped());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        root.stop();
        assert!(b.is_stopped());
        // A child made after the stop starts stopped.
        assert!(root.child().is_stopped());
        tokio::time::timeout(Duration::from_secs(5), b.stopped())
            .await
            .expect("already stopped");
    }
}
