//! gslbd: a global server load balancing authoritative DNS server.
//!
//! ```text
//! zones/*.toml --config--> Spec --model--> Model (immutable, ids) --arc-swap--> query path
//! probe workers --> health aggregator (single writer) --arc-swap--> Snapshot --> policy
//! UDP/TCP --> dns::handle(bytes) --> zone lookup --> policy::select --> response bytes
//! ```
pub mod api;
pub mod config;
pub mod dns;
pub mod explain;
pub mod geo;
pub mod health;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod probe;
pub mod server;
