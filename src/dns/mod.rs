//! The authoritative DNS core: the wire format, the response builder and the transports. It
//! depends on the model only; what a GSLB name answers comes in through `GslbAnswerer`
//! (implemented by `crate::gslb`), and what the server does around each query through the
//! `PacketHandler` it passes to the transports.
//!
//! ```text
//! udp.rs / tcp.rs / xdp/ / tls.rs (DoT) / https.rs (DoH) / quic.rs (DoQ)
//!     --bytes, Peer--> PacketHandler (server) --> answer::handle
//!     answer::handle: wire::parse --Query--> zone lookup, CNAME, wildcard, referral
//!                     --> GslbAnswerer for GSLB names --> response bytes (padded on the
//!                         encrypted transports when the query was)
//! listen.rs binds UDP+TCP per address (and AF_XDP per interface), and the encrypted listeners
//! on theirs (conn.rs: their limits; tls.rs: the certificate), under one stop node.
//! cookie.rs (RFC 7873/9018 server cookies) is used by answer::handle_with; rrl.rs (response
//! rate limiting) is called by the server's handler for datagram (UDP and AF_XDP) responses.
//! signed.rs adds RRSIGs and compact-denial NSECs when the query has DO and the zone is signed.
//! ```
//!
//! A new transport is one new file that reads queries and calls `PacketHandler::handle`.

pub(crate) mod answer;
pub(crate) mod conn;
pub(crate) mod cookie;
pub(crate) mod handler;
pub(crate) mod https;
pub(crate) mod listen;
pub(crate) mod quic;
pub(crate) mod rrl;
pub(crate) mod signed;
pub(crate) mod tcp;
pub(crate) mod tls;
#[allow(unsafe_code)]
pub(crate) mod udp;
pub(crate) mod wire;
pub mod xdp;

pub(crate) use answer::{GslbAnswerer, GslbOutcome, Writer};
pub use answer::{Kind, NoGslb, handle};
pub use conn::EncryptedLimits;
pub use cookie::CookieSecrets;
pub(crate) use handler::PacketHandler;
pub use handler::Peer;
pub(crate) use listen::{EncryptedConfig, ListenConfig, Listeners};
pub use rrl::{RrlConfig, default_exempt};
pub(crate) use tcp::StreamLimits;
pub use tls::{CertError, CertStore};
pub use wire::Query;
