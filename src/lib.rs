//! gslbd: a global server load balancing authoritative DNS server.
//!
//! ```text
//! zones/*.toml --config (parse + one build step)--> Model (immutable, ids, probe plan)
//! probe workers --> health aggregator (single writer) --> Snapshot (same ids as the Model)
//! resolver (hostname targets) --> by name --> re-keyed to the Model's ids, and the probes
//!            Model + Snapshot + latency map + resolutions + GeoIP --one publication--> query path
//! UDP/TCP --> dns::handle(bytes) --> zone lookup --> gslb --> policy::select --> response bytes
//! ```
//!
//! The modules form layers; each may use only those below it (a test reads the `crate::`
//! paths of every module and fails on a cycle):
//!
//! 1. leaves, the shared vocabulary: [`net`] (addresses, prefixes, families, transports),
//!    `rr` (record types, rcodes, wire names), `limits`, `abuse` (connection limits, rate
//!    limiting and cookie vocabulary, log throttle), `walk` (the TOML walker),
//!    [`geo`] (GeoIP and geo codes), [`shutdown`] (the stop tree), `mix` (splitmix64),
//!    [`metrics`];
//! 2. [`probe`]: check kinds, the probe plan and the workers; [`dnssec`]: keys, signing,
//!    the signature caches and the signer of a zone (record bytes and time, no zones);
//!    [`resolve`]: hostname targets resolved in the background;
//! 3. [`model`]: the immutable tables the query path reads;
//! 4. [`config`]: zone files to specs, and the one build step to a [`model::Model`];
//! 5. [`health`]: the aggregator and the published [`health::Snapshot`];
//! 6. [`policy`]: the pure GSLB decision;
//! 7. [`dns`]: the wire format, the answer code and the transports (model only);
//! 8. [`gslb`]: the glue that answers GSLB names on the query path; [`explain`];
//!    [`simulate`] (what-if runs of the same decision code, probes and aggregator on
//!    virtual time);
//! 9. [`api`] and [`server`] on top.
#![deny(unsafe_code)]
// Public items are documented; an item not used outside the crate (tests, benches and the
// binary count as outside) is `pub(crate)`, so the compiler reports it when it becomes dead.
#![warn(missing_docs, unreachable_pub)]
// The clock rule of .clippy.toml (tokio's clock, paused in tests), for the library only.
#![warn(clippy::disallowed_methods)]

pub(crate) mod abuse;
pub mod api;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod dnssec;
pub mod explain;
pub mod geo;
pub mod gslb;
pub mod health;
pub(crate) mod limits;
pub mod metrics;
pub(crate) mod mix;
pub mod model;
pub mod net;
pub mod policy;
pub mod probe;
pub mod resolve;
pub(crate) mod rr;
pub mod server;
pub mod shutdown;
pub mod simulate;
pub(crate) mod walk;
