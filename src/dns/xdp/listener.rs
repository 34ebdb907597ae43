//! Starting and stopping the AF_XDP listeners: per interface, one XDP program (all its
//! ports), one socket and one pinned thread per receive queue.
//!
//! Order at start: maps, program, attach (native first in `auto`), then the sockets, each
//! put into the XSKMAP once bound; until a queue's socket is in the map its packets go to the
//! kernel (the program's fallback), so nothing is lost while starting. At stop the link is
//! dropped first (packets go to the kernel again), then the stop node is stopped, the threads
//! end and the sockets close.
//!
//! Starting blocks (program load, ring mapping, up to two seconds of retries on a busy
//! interface): the server runs it on a blocking thread, not on a runtime worker.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bpf::{self, Link, Map, Program};
use super::worker::{self, QueueCounters};
use super::xsk::{BindMode, Xsk};
use super::{XdpListen, XdpMode, XdpQueueStatus, XdpStatus};
use crate::dns::handler::PacketHandler;
use crate::shutdown::Shutdown;

/// One interface: what is attached there and the per-queue counters.
struct Iface {
    name: String,
    ifindex: u32,
    ports: Vec<u16>,
    native: bool,
    bind: BindMode,
    queues: Vec<Queue>,
    stats: Map,
    xsks: Map,
    link: Option<Link>,
}

struct Queue {
    id: u32,
    cpu: Option<usize>,
    counters: Arc<QueueCounters>,
}

#[derive(Default)]
struct Shared {
    ifaces: Vec<Iface>,
}

/// The running AF_XDP listeners; dropping them detaches the programs, stops their node and
/// joins the threads.
#[derive(Default)]
pub(crate) struct XdpListeners {
    shared: Arc<std::sync::Mutex<Shared>>,
    stop: Shutdown,
    threads: Vec<JoinHandle<()>>,
}

/// A handle for status readers (the API), valid after the listeners stop (then empty).
#[derive(Clone)]
pub(crate) struct XdpView {
    shared: Arc<std::sync::Mutex<Shared>>,
}

impl XdpView {
    /// Interfaces, modes and per-queue counters now.
    pub(crate) fn status(&self) -> Vec<XdpStatus> {
        // The lock is taken by status readers and at stop only, never on the packet path.
        let Ok(s) = self.shared.lock() else {
            return vec![];
        };
        s.ifaces
            .iter()
            .map(|i| XdpStatus {
                interface: i.name.clone(),
                ifindex: i.ifindex,
                ports: i.ports.clone(),
                mode: if i.native { "native" } else { "generic" },
                bind: i.bind.as_str(),
                queues: i
                    .queues
                    .iter()
                    .map(|q| {
                        let [matched, passed] = i.stats.read_stats(q.id).unwrap_or_default();
                        let c = &q.counters;
                        XdpQueueStatus {
                            queue: q.id,
                            cpu: q.cpu,
                            matched,
                            passed,
                            received: c.received.load(Ordering::Relaxed),
                            answered: c.answered.load(Ordering::Relaxed),
                            dropped: c.dropped.load(Ordering::Relaxed)
                                + c.kernel_dropped.load(Ordering::Relaxed),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

impl XdpListeners {
    /// No listener (what runs without `--listen-xdp`).
    pub(crate) fn none() -> XdpListeners {
        XdpListeners::default()
    }

    /// A status reader for the API.
    pub(crate) fn view(&self) -> XdpView {
        XdpView {
            shared: self.shared.clone(),
        }
    }

    /// Detaches the programs (packets go to the kernel again) and takes the sockets out of
    /// the maps; the threads run on until the stop node is stopped.
    pub(crate) fn detach(&mut self) {
        let Ok(mut s) = self.shared.lock() else {
            return;
        };
        for i in &mut s.ifaces {
            if i.link.take().is_some() {
                tracing::info!(interface = %i.name, "XDP program detached");
            }
            for q in &i.queues {
                let _ = i.xsks.delete(q.id);
            }
        }
        s.ifaces.clear();
    }

    /// Detaches, stops the threads and joins them (what dropping does).
    pub(crate) fn join(self) {}
}

impl Drop for XdpListeners {
    /// Detaches, stops the threads (each notices within one idle wait) and joins them.
    fn drop(&mut self) {
        self.detach();
        self.stop.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("NUL in name"))?;
    // SAFETY: c is a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::other(format!(
            "no network interface {name:?} here (see `ip link`)"
        )))
    } else {
        Ok(i)
    }
}

#[repr(C)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// Receive queues of an interface, from the driver (ethtool channels), else from sysfs.
fn rx_queues(name: &str) -> u32 {
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        max_rx: 0,
        max_tx: 0,
        max_other: 0,
        max_combined: 0,
        rx_count: 0,
        tx_count: 0,
        other_count: 0,
        combined_count: 0,
    };
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: a plain datagram socket for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let from_driver = if fd >= 0 {
        // SAFETY: ifr and ch are live for the call; the kernel writes ch.
        let r = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr) };
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        (r == 0).then(|| ch.rx_count.max(ch.combined_count))
    } else {
        None
    };
    from_driver.filter(|&n| n > 0).unwrap_or_else(|| {
        std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                    .count() as u32
            })
            .unwrap_or(1)
            .max(1)
    })
}

/// CPUs this process may run on (its affinity mask, e.g. under `taskset`).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a live cpu_set_t of the size given.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return vec![];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

fn pin_to(cpu: usize) {
    // SAFETY: as in allowed_cpus; 0 = the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn attach_error(name: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EBUSY) | Some(libc::EEXIST) => format!(
            "{name} already has an XDP program (another gslbd, Knot, or a leftover: `ip link show dev {name}`; \
             `ip link set dev {name} xdp off` removes one attached without a link)"
        ),
        Some(libc::EPERM) => "needs CAP_NET_ADMIN and CAP_BPF (or root)".to_string(),
        Some(libc::EINVAL) => format!(
            "the kernel refused to attach a BPF link to {name} (kernel 5.9 or newer is needed)"
        ),
        _ => String::new(),
    };
    io::Error::new(
        e.kind(),
        format!("attaching the XDP program to {name}: {e}; {hint}"),
    )
}

/// Attaches in the requested mode; a just-killed gslbd may still hold its link for a moment,
/// so a busy interface is retried for up to two seconds.
#[allow(
    clippy::disallowed_methods,
    reason = "start-up runs on a blocking thread (see the module docs), not a runtime worker"
)]
fn attach(prog: &Program, name: &str, ifindex: u32, mode: XdpMode) -> io::Result<(Link, bool)> {
    let tries: &[(u32, bool)] = match mode {
        XdpMode::Auto => &[
            (bpf::XDP_FLAGS_DRV_MODE, true),
            (bpf::XDP_FLAGS_SKB_MODE, false),
        ],
        XdpMode::Native => &[(bpf::XDP_FLAGS_DRV_MODE, true)],
        XdpMode::Generic => &[(bpf::XDP_FLAGS_SKB_MODE, false)],
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut last = None;
        for &(flags, native) in tries {
            match prog.attach(ifindex, flags) {
                Ok(l) => return Ok((l, native)),
                Err(e) => {
                    if native && mode == XdpMode::Auto {
                        tracing::warn!(interface = name, error = %e, "native XDP not available, trying generic mode");
                    }
                    last = Some(e);
                }
            }
        }
        let e = last.unwrap_or_else(|| io::Error::other("no XDP mode to try"));
        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        return Err(attach_error(name, e));
    }
}

/// Starts AF_XDP on every interface of `list` (ports of the same interface share one
/// program), the workers running until `stop` is stopped. Blocks (see the module docs). On an
/// error what was started is detached and joined again.
pub(crate) fn start<H: PacketHandler>(
    list: &[XdpListen],
    mode: XdpMode,
    handler: Arc<H>,
    stop: Shutdown,
) -> io::Result<XdpListeners> {
    let mut out = XdpListeners {
        shared: Arc::default(),
        stop,
        threads: vec![],
    };
    let mut names: Vec<&str> = list.iter().map(|l| l.iface.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let cpus = allowed_cpus();
    let mut next_cpu = 0usize;
    for name in names {
        let mut ports: Vec<u16> = list
            .iter()
            .filter(|l| l.iface == name)
            .map(|l| l.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let ifindex = ifindex(name)?;
        let nq = rx_queues(name);
        let xsks = Map::xsks(nq).map_err(|e| map_error("XSKMAP", e))?;
        let stats = Map::stats(nq).map_err(|e| map_error("counter map", e))?;
        let insns = bpf::build_program(&ports, fd(&xsks), fd(&stats));
        let prog = Program::load(&insns, "gslbd_xdp")?;
        let (link, native) = attach(&prog, name, ifindex, mode)?;
        let mut queues = vec![];
        let mut socks = vec![];
        for qid in 0..nq {
            let x = Xsk::open(ifindex, qid, !native).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("AF_XDP socket on {name} queue {qid}: {e}"),
                )
            })?;
            xsks.set_socket(qid, x.raw_fd())?;
            let cpu = (!cpus.is_empty()).then(|| cpus[next_cpu % cpus.len()]);
            next_cpu += 1;
            socks.push(x);
            queues.push(Queue {
                id: qid,
                cpu,
                counters: Arc::new(QueueCounters::default()),
            });
        }
        let bind = socks.first().map_or(BindMode::Copy, |x| x.mode);
        tracing::info!(
            interface = name,
            ?ports,
            mode = if native { "native" } else { "generic" },
            bind = bind.as_str(),
            queues = nq,
            "dns listening (udp over AF_XDP)"
        );
        for (x, q) in socks.into_iter().zip(&queues) {
            let h = handler.clone();
            let stop = out.stop.clone();
            let c = q.counters.clone();
            let cpu = q.cpu;
            let t = std::thread::Builder::new()
                .name(format!("xdp-{name}-{}", q.id))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    worker::serve(x, &*h, &stop, &c);
                })?;
            out.threads.push(t);
        }
        if let Ok(mut s) = out.shared.lock() {
            s.ifaces.push(Iface {
                name: name.to_string(),
                ifindex,
                ports,
                native,
                bind,
                queues,
                stats,
                xsks,
                link: Some(link),
            });
        }
    }
    Ok(out)
}

fn fd(m: &Map) -> RawFd {
    m.raw_fd()
}

fn map_error(what: &str, e: io::Error) -> io::Error {
    let hint = if e.raw_os_error() == Some(libc::EPERM) {
        " (needs CAP_BPF, or root; on older kernels also enough RLIMIT_MEMLOCK)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("creating the {what}: {e}{hint}"))
}
