//! The authoritative DNS core: the wire format, the response builder and the transports. It
//! depends on the model only; what a GSLB name answers comes in through [`GslbAnswerer`]
//! (implemented by `crate::gslb`), and what the server does around each query through the
//! [`PacketHandler`] it passes to the transports.
//!
//! ```text
//! udp.rs / tcp.rs --bytes, Peer--> PacketHandler (server) --> answer::handle
//!     answer::handle: wire::parse --Query--> zone lookup, CNAME, wildcard, referral
//!                     --> GslbAnswerer for GSLB names --> response bytes
//! listen.rs binds UDP+TCP per address and runs the loops under one stop node.
//! ```
//!
//! A new transport is one new file that reads queries and calls `PacketHandler::handle`.

pub mod answer;
pub mod handler;
pub mod listen;
pub mod tcp;
#[allow(unsafe_code)]
pub mod udp;
pub mod wire;

pub use answer::{Answered, GslbAnswerer, GslbOutcome, NoGslb, Writer, handle};
pub use handler::{PacketHandler, Peer, Transport};
pub use listen::{ListenConfig, Listeners};
pub use wire::Query;
