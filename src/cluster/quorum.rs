//! Observations and the quorum over them: a target's shared state from what the nodes that
//! probe it see.
//!
//! ```text
//!  observation (per node, per target, in etcd under the node's lease):
//!     {node, up (after that node's rise/fall), passes, fails, latency_ms, load, last, at_ms}
//!
//!  probers P (rendezvous, the live nodes), quorum q = min(check quorum or majority, |P|)
//!  fresh observations of P: down d, up u
//!     d >= q              -> down
//!     u >= |P| - q + 1    -> up      (even if every missing one said down, d < q)
//!     otherwise           -> undecided: the last decision holds (until the grace runs out)
//! ```
//!
//! Rise/fall is applied by each observer to its own results before it publishes, so a
//! quorum of `down` observations already means `fall` failures in a row on each of them.
//! One node alone never flips a target while the others see it otherwise: with the default
//! majority, a single dissenter is outvoted (or, with two probers, needs the other to agree).

use serde::{Deserialize, Serialize};

/// What one node's probes make of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Observation {
    /// The observing node.
    pub node: String,
    /// The state after the node's rise/fall.
    pub up: bool,
    /// Passes in a row.
    pub passes: u32,
    /// Fails in a row.
    pub fails: u32,
    /// Smoothed round-trip time, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Utilisation 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// The last probe's outcome in words.
    #[serde(default)]
    pub last: String,
    /// When the node wrote it, Unix ms.
    pub at_ms: u64,
}

/// The quorum a target needs: `quorum` of the check (or a majority of `replicas`), never
/// more than the probers there are.
pub(crate) fn effective_quorum(replicas: usize, quorum: Option<u32>, probers: usize) -> usize {
    let q = quorum.map_or(replicas / 2 + 1, |q| q as usize);
    q.clamp(1, probers.max(1))
}

/// A target's shared state.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decision {
    /// Enough probers see it up that it cannot be down.
    Up(String),
    /// At least the quorum sees it down.
    Down(String),
    /// Not enough fresh observations either way.
    Undecided(String),
}

/// Decides from the fresh observations `obs` of the `probers` nodes that probe the target.
pub(crate) fn decide(obs: &[&Observation], probers: usize, quorum: usize) -> Decision {
    let down: Vec<&str> = obs
        .iter()
        .filter(|o| !o.up)
        .map(|o| o.node.as_str())
        .collect();
    let up = obs.len() - down.len();
    let p = probers.max(obs.len());
    if down.len() >= quorum {
        Decision::Down(format!(
            "cluster: {} of {p} probing nodes see it down ({}), quorum {quorum}",
            down.len(),
            down.join(", ")
        ))
    } else if up + quorum > p {
        let mut s = format!("cluster: {up} of {p} probing nodes see it up, quorum {quorum}");
        if !down.is_empty() {
            s.push_str(&format!(" (down on {} only)", down.join(", ")));
        }
        Decision::Up(s)
    } else {
        Decision::Undecided(format!(
            "cluster: {} of {p} probing nodes reported ({up} up, {} down), quorum {quorum}",
            obs.len(),
            down.len()
        ))
    }
}

/// The median of the observers' latencies and the mean of their loads.
pub(crate) fn figures(obs: &[&Observation]) -> (Option<f64>, Option<f64>) {
    let mut lat: Vec<f64> = obs.iter().filter_map(|o| o.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let latency = (!lat.is_empty()).then(|| lat[lat.len() / 2]);
    let loads: Vec<f64> = obs.iter().filter_map(|o| o.load).collect();
    let load = (!loads.is_empty()).then(|| loads.iter().sum::<f64>() / loads.len() as f64);
    (latency, load)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(node: &str, up: bool) -> Observation {
        Observation {
            node: node.into(),
            up,
            passes: 0,
            fails: 0,
            latency_ms: Some(if up { 1.0 } else { 3.0 }),
            load: None,
            last: String::new(),
            at_ms: 0,
        }
    }

    fn kind(d: &Decision) -> &'static str {
        match d {
            Decision::Up(_) => "up",
            Decision::Down(_) => "down",
            Decision::Undecided(_) => "undecided",
        }
    }

    #[test]
    fn majority_of_two_needs_both() {
        let q = effective_quorum(2, None, 2);
        assert_eq!(q, 2);
        let (a, b) = (o("a", false), o("b", true));
        // One node's broken path does not take the target down.
        assert_eq!(kind(&decide(&[&a, &b], 2, q)), "up");
        let b = o("b", false);
        assert_eq!(kind(&decide(&[&a, &b], 2, q)), "down");
        // One report missing: an up settles it (the other cannot make a quorum alone)...
        assert_eq!(kind(&decide(&[&o("a", true)], 2, q)), "up");
        // ...a down does not.
        assert_eq!(kind(&decide(&[&a], 2, q)), "undecided");
        assert_eq!(kind(&decide(&[], 2, q)), "undecided");
    }

    #[test]
    fn majority_of_three() {
        let q = effective_quorum(3, None, 3);
        assert_eq!(q, 2);
        let v = [o("a", false), o("b", true), o("c", true)];
        let r: Vec<&Observation> = v.iter().collect();
        assert_eq!(kind(&decide(&r, 3, q)), "up");
        let v = [o("a", false), o("b", false), o("c", true)];
        let r: Vec<&Observation> = v.iter().collect();
        assert_eq!(kind(&decide(&r, 3, q)), "down");
        // Two of three reported, one each way: the third decides, so undecided.
        let v = [o("a", false), o("b", true)];
        let r: Vec<&Observation> = v.iter().collect();
        assert_eq!(kind(&decide(&r, 3, q)), "undecided");
    }

    #[test]
    fn quorum_is_capped_by_the_probers_there_are() {
        assert_eq!(effective_quorum(3, None, 1), 1);
        assert_eq!(effective_quorum(3, Some(3), 2), 2);
        assert_eq!(effective_quorum(5, Some(1), 5), 1);
        assert_eq!(kind(&decide(&[&o("a", false)], 1, 1)), "down");
    }

    #[test]
    fn shared_figures() {
        let v = [o("a", true), o("b", true), o("c", false)];
        let r: Vec<&Observation> = v.iter().collect();
        assert_eq!(figures(&r).0, Some(1.0));
    }
}
