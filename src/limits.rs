//! Fixed bounds that more than one layer must agree on: the loader rejects what the query path
//! could not hold, so the query path can use fixed-size buffers and never allocate.
//!
//! A leaf module: it depends on nothing else in the crate.

/// Most addresses one GSLB answer carries (the loader caps `answers` so that the policy's
/// fixed-size selection always has room).
pub(crate) const MAX_ANSWER: usize = 16;

/// Most members of one pool (the policy's candidate list lives on the stack).
pub(crate) const MAX_MEMBERS: usize = 64;

/// Most answer addresses of one datacenter: the health snapshot keeps one bit per address in a
/// `u64`.
pub(crate) const MAX_DC_ADDRESSES: usize = 64;

/// Longest CNAME chain followed inside our own zones.
pub(crate) const MAX_CNAME_CHAIN: usize = 8;

/// Our EDNS UDP payload size (DNS flag day 2020): the most a UDP answer holds.
pub(crate) const OUR_UDP_SIZE: u16 = 1232;
