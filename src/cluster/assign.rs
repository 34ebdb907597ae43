//! Which live nodes probe which target: rendezvous (highest random weight) hashing.
//!
//! ```text
//!  score(node, target) = mix64(hash(node) ^ mix64(hash(target)))     (splitmix64, src/mix.rs)
//!  probers(target)     = the `replicas` live nodes with the highest scores (all when fewer)
//! ```
//!
//! Every node computes the same answer from the same member list, with no coordination. A node
//! that leaves takes only its own share with it (each of its targets goes to the next-highest
//! node), and a node that joins takes about `replicas / members` of the targets, from
//! whichever nodes ranked below it: the minimal movement consistent hashing promises.

use crate::mix::{GOLDEN, mix64};

/// A stable 64-bit hash of a text (FNV-1a, then splitmix64): the same in every process.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h.wrapping_add(GOLDEN))
}

/// The weight of `node` for `target` (both hashed with [`hash_str`]).
pub(crate) fn score(node: u64, target: u64) -> u64 {
    mix64(node ^ mix64(target))
}

/// The `replicas` nodes (indices into `nodes`, hashed names) that probe `target`, highest
/// score first; every node when there are fewer.
pub(crate) fn probers(nodes: &[u64], target: u64, replicas: usize) -> Vec<usize> {
    let mut ranked: Vec<(u64, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (score(*n, target), i))
        .collect();
    // Highest score first; the index breaks (astronomically unlikely) ties the same way
    // everywhere because `nodes` is sorted by name.
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked
        .into_iter()
        .take(replicas.max(1))
        .map(|(_, i)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<u64> {
        (0..n).map(|i| hash_str(&format!("node-{i}"))).collect()
    }

    #[test]
    fn stable_and_distinct() {
        assert_eq!(hash_str("a"), hash_str("a"));
        assert_ne!(hash_str("a"), hash_str("b"));
        let nodes = names(5);
        let p = probers(&nodes, hash_str("t1"), 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p, probers(&nodes, hash_str("t1"), 3));
        let mut d = p.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 3);
        // Fewer nodes than replicas: all of them.
        assert_eq!(probers(&names(2), hash_str("t1"), 3).len(), 2);
    }

    #[test]
    fn balanced() {
        let nodes = names(5);
        let mut load = [0usize; 5];
        for t in 0..5000 {
            for i in probers(&nodes, hash_str(&format!("target-{t}")), 2) {
                load[i] += 1;
            }
        }
        // 10000 assignments over 5 nodes: 2000 each, within 10 %.
        for l in load {
            assert!((1800..=2200).contains(&l), "{load:?}");
        }
    }

    #[test]
    fn a_leaving_node_moves_only_its_share() {
        let all = names(5);
        let without: Vec<u64> = all.iter().copied().filter(|n| *n != all[4]).collect();
        let mut moved = 0;
        for t in 0..2000 {
            let th = hash_str(&format!("target-{t}"));
            let before: Vec<u64> = probers(&all, th, 2).into_iter().map(|i| all[i]).collect();
            let after: Vec<u64> = probers(&without, th, 2)
                .into_iter()
                .map(|i| without[i])
                .collect();
            // Every surviving prober keeps the target.
            for n in &before {
                if *n != all[4] {
                    assert!(after.contains(n));
                }
            }
            moved += usize::from(before != after);
        }
        // Node 4 had about 2/5 of the targets: only those change.
        assert!((650..=950).contains(&moved), "{moved}");
    }
}
