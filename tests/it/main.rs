//! Integration tests: the real server on loopback, real UDP/TCP queries, exact answers.
mod common;
mod dns_core;
mod fuzz;
mod gslb;
mod latency;
mod ops;
mod probe_e2e;
mod reload;
mod zone_errors;
