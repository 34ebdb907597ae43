//! UDP DNS over AF_XDP: queries taken from the network driver before the kernel's IP and
//! UDP stack, answered by the same handler as the socket path, sent back the same way.
//!
//! ```text
//! NIC queue q --XDP program (bpf.rs): UDP to our port?--no--> kernel (ARP, ND, TCP, API...)
//!                         | yes
//!                         v
//!             AF_XDP socket q (xsk.rs: UMEM + rings) <-- one thread per queue, pinned
//!                         |
//!     packet::parse --DNS bytes, Peer{src, Xdp}--> PacketHandler::handle --> packet::write_reply
//!                         |                                                       |
//!                         +---- same frame back out on the tx ring <--------------+
//! ```
//! `--listen-xdp IFACE[@PORT]` turns it on for an interface (needs the `xdp` cargo feature and
//! CAP_NET_ADMIN + CAP_BPF, see docs/operations.md). Everything the program does not redirect
//! reaches the kernel untouched, so TCP, the HTTP API and any socket listener on the same
//! addresses keep working. The program is attached through a BPF link, so a crashed gslbd
//! leaves nothing behind and a restart attaches again. The listeners run under a child of the
//! DNS listeners' stop node (`super::listen`); the workers poll it between batches.
//!
//! This part (listener specs and the status the API shows) is always compiled; the engine
//! only with the `xdp` feature. The engine's modules that talk to the kernel (`bpf.rs`: the
//! `bpf()` system call; `xsk.rs`: the shared rings; `listener.rs`: ioctl, affinity) are
//! allowed `unsafe`, and each block says why it holds.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[cfg(feature = "xdp")]
#[allow(unsafe_code)]
mod bpf;
#[cfg(feature = "xdp")]
#[allow(unsafe_code)]
mod listener;
#[cfg(feature = "xdp")]
mod packet;
#[cfg(feature = "xdp")]
mod worker;
#[cfg(feature = "xdp")]
#[allow(unsafe_code)]
mod xsk;

#[cfg(feature = "xdp")]
pub(crate) use listener::{XdpListeners, XdpView, start};

#[cfg(all(feature = "xdp", not(target_os = "linux")))]
compile_error!("the xdp feature needs Linux (AF_XDP)");

/// One `--listen-xdp IFACE[@PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpListen {
    /// The interface name (`eth0`).
    pub(crate) iface: String,
    /// The UDP port served there (53 unless given).
    pub(crate) port: u16,
}

impl FromStr for XdpListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (iface, port) = match s.rsplit_once('@') {
            Some((i, p)) => (
                i,
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("{s:?}: port {p:?} is not a number in 1..=65535"))?,
            ),
            None => (s, 53),
        };
        // Linux interface names: 1-15 bytes, no '/', no whitespace.
        if iface.is_empty()
            || iface.len() > 15
            || iface.bytes().any(|b| b == b'/' || b.is_ascii_whitespace())
        {
            return Err(format!(
                "{s:?}: expected IFACE[@PORT], with an interface name of 1-15 characters"
            ));
        }
        Ok(XdpListen {
            iface: iface.to_string(),
            port,
        })
    }
}

impl fmt::Display for XdpListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.iface, self.port)
    }
}

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native where the driver has it, generic otherwise.
    #[default]
    Auto,
    /// In the driver, before the kernel allocates anything for the packet (fast).
    Native,
    /// In the kernel's generic receive path, after the socket buffer exists (any driver;
    /// slower, for testing or drivers without XDP).
    Generic,
}

impl FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(XdpMode::Auto),
            "native" => Ok(XdpMode::Native),
            "generic" => Ok(XdpMode::Generic),
            _ => Err(format!("{s:?}: expected auto, native or generic")),
        }
    }
}

/// One interface served over AF_XDP, as `/status` and `/metrics` show it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct XdpStatus {
    /// The interface name.
    pub interface: String,
    /// Its index (as `ip link` shows it).
    pub ifindex: u32,
    /// The UDP ports the program redirects.
    pub ports: Vec<u16>,
    /// `native` or `generic`.
    pub mode: &'static str,
    /// `zerocopy` or `copy`.
    pub bind: &'static str,
    /// One entry per receive queue.
    pub queues: Vec<XdpQueueStatus>,
}

/// Counters of one receive queue.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct XdpQueueStatus {
    /// The receive queue.
    pub queue: u32,
    /// The CPU its thread is pinned to.
    pub cpu: Option<usize>,
    /// Packets the XDP program sent to the socket.
    pub matched: u64,
    /// Packets the XDP program passed to the kernel (not UDP to our ports).
    pub passed: u64,
    /// Packets read from the socket.
    pub received: u64,
    /// Answers sent.
    pub answered: u64,
    /// Packets dropped: by us (malformed, no answer, no room to send) and by the kernel
    /// before we saw them (no free frame, receive ring full).
    pub dropped: u64,
}

/// Without the `xdp` feature: `--listen-xdp` is refused at start with a clear error.
#[cfg(not(feature = "xdp"))]
mod disabled {
    use std::sync::Arc;

    use super::{XdpListen, XdpMode, XdpStatus};
    use crate::dns::handler::PacketHandler;
    use crate::shutdown::Shutdown;

    /// Nothing runs; kept so the listener code is the same with and without the feature.
    #[derive(Default)]
    pub(crate) struct XdpListeners;

    impl XdpListeners {
        /// No listener.
        pub(crate) fn none() -> XdpListeners {
            XdpListeners
        }
        /// A status reader (always empty).
        pub(crate) fn view(&self) -> XdpView {
            XdpView
        }
        /// Nothing is attached.
        pub(crate) fn detach(&mut self) {}
        /// No thread to join.
        pub(crate) fn join(self) {}
    }

    /// Status of the (absent) AF_XDP listeners.
    #[derive(Clone)]
    pub(crate) struct XdpView;

    impl XdpView {
        /// No interface.
        pub(crate) fn status(&self) -> Vec<XdpStatus> {
            vec![]
        }
    }

    /// Refuses a non-empty `list`: this build has no AF_XDP engine.
    pub(crate) fn start<H: PacketHandler>(
        list: &[XdpListen],
        _mode: XdpMode,
        _handler: Arc<H>,
        _stop: Shutdown,
    ) -> std::io::Result<XdpListeners> {
        if list.is_empty() {
            Ok(XdpListeners)
        } else {
            Err(std::io::Error::other(
                "--listen-xdp: this gslbd was built without AF_XDP support (cargo feature `xdp`)",
            ))
        }
    }
}

#[cfg(not(feature = "xdp"))]
pub(crate) use disabled::{XdpListeners, XdpView, start};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_spec() {
        assert_eq!(
            "eth0".parse::<XdpListen>().unwrap(),
            XdpListen {
                iface: "eth0".into(),
                port: 53
            }
        );
        assert_eq!("gwsrv@5353".parse::<XdpListen>().unwrap().port, 5353);
        for bad in [
            "",
            "@53",
            "eth0@",
            "eth0@0",
            "eth0@70000",
            "a/b",
            "sixteen-chars-xx",
        ] {
            assert!(bad.parse::<XdpListen>().is_err(), "{bad:?}");
        }
        assert_eq!("generic".parse::<XdpMode>(), Ok(XdpMode::Generic));
        assert!("fast".parse::<XdpMode>().is_err());
    }
}
