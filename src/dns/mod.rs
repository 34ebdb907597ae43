//! DNS: the wire format, the response builder and the UDP/TCP servers.
//!
//! ```text
//! socket --bytes--> wire::parse --Query--> answer::respond(Model, GSLB) --bytes--> socket
//! ```

pub mod answer;
pub mod gslb;
pub mod server;
mod udp_batch;
pub mod wire;

pub use answer::{Answered, Client, GslbAnswerer, GslbOutcome, NoGslb, Writer, handle};
pub use wire::Query;
