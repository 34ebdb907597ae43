//! One AF_XDP socket with its own UMEM: the frame area and the four rings shared with the
//! kernel.
//!
//! ```text
//!            fill ring (free frames) ---------> kernel writes received packets into them
//! userspace  rx ring   (received frames) <----- kernel
//!            tx ring   (frames to send) ------> kernel sends them
//!            completion ring (sent frames) <--- kernel, the frame is ours again
//! ```
//! Each ring is a power-of-two array of descriptors with a producer and a consumer index in
//! shared memory; one side only advances the producer, the other only the consumer, so
//! neither side locks. We load the other side's index with Acquire (its descriptors are
//! visible once we see it) and publish ours with Release (our descriptors are visible
//! before the index). Indices are free-running u32 and wrap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes per frame: room for the largest UDP answer (1232 bytes of DNS, OUR_UDP_SIZE) plus
/// its headers, and the smallest chunk size AF_XDP accepts.
pub(super) const FRAME_SIZE: u32 = 2048;
/// Frames per socket: what the fill ring can hold, so a returned frame always fits there.
pub(super) const FRAMES: u32 = 4096;
/// Receive and transmit ring sizes.
pub(super) const RING_SIZE: u32 = 2048;

/// A shared-memory mapping, unmapped when dropped.
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; which thread touches it is governed by the owner.
unsafe impl Send for Mmap {}

impl Mmap {
    fn new(len: usize, fd: RawFd, offset: u64) -> io::Result<Mmap> {
        let (flags, fd) = if fd < 0 {
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
        } else {
            (libc::MAP_SHARED, fd)
        };
        // SAFETY: a fresh mapping with no address hint; the kernel picks where it goes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_POPULATE,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing uses them after drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One ring; `T` is `u64` (frame addresses: fill, completion) or `xdp_desc` (rx, tx).
struct Ring<T> {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut T,
    mask: u32,
    /// Our copy of the index we own, and the last value we read of the other side's.
    head: u32,
    other: u32,
}

// SAFETY: a ring is owned by one thread at a time (the worker that serves its socket).
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        let len = off.desc as usize + size as usize * size_of::<T>();
        let m = Mmap::new(len, fd, pgoff)?;
        let base = m.ptr.as_ptr();
        // SAFETY: the kernel's offsets lie inside the mapping it sized for this ring.
        let (producer, consumer, flags, desc) = unsafe {
            (
                base.add(off.producer as usize).cast::<AtomicU32>(),
                base.add(off.consumer as usize).cast::<AtomicU32>(),
                base.add(off.flags as usize).cast::<AtomicU32>(),
                base.add(off.desc as usize).cast::<T>(),
            )
        };
        Ok(Ring {
            _map: m,
            producer,
            consumer,
            flags,
            desc,
            mask: size - 1,
            head: 0,
            other: 0,
        })
    }

    fn load(p: *const AtomicU32) -> u32 {
        // SAFETY: p points into our live mapping, at a u32 the kernel updates atomically.
        unsafe { (*p).load(Ordering::Acquire) }
    }

    fn store(p: *const AtomicU32, v: u32) {
        // SAFETY: as in `load`.
        unsafe { (*p).store(v, Ordering::Release) }
    }

    fn needs_wakeup(&self) -> bool {
        Self::load(self.flags) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // --- rings we produce into (fill, tx) ---

    /// Free slots, up to `want`.
    fn free(&mut self, want: u32) -> u32 {
        let size = self.mask + 1;
        let mut free = size - self.head.wrapping_sub(self.other);
        if free < want {
            self.other = Self::load(self.consumer);
            free = size - self.head.wrapping_sub(self.other);
        }
        free.min(want)
    }

    /// Writes slot `i` past the head (within what `free` returned).
    fn write(&mut self, i: u32, v: T) {
        let idx = (self.head.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask, inside the descriptor array of our mapping; the slot is free
        // (the kernel consumed it), so nobody reads it concurrently.
        unsafe { self.desc.add(idx).write(v) }
    }

    /// Publishes `n` written slots to the kernel.
    fn submit(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        Self::store(self.producer, self.head);
    }

    /// Slots produced and not yet consumed by the kernel.
    fn outstanding(&mut self) -> u32 {
        self.other = Self::load(self.consumer);
        self.head.wrapping_sub(self.other)
    }

    // --- rings we consume from (rx, completion) ---

    /// Filled slots, up to `max`.
    fn available(&mut self, max: u32) -> u32 {
        let mut n = self.other.wrapping_sub(self.head);
        if n == 0 {
            self.other = Self::load(self.producer);
            n = self.other.wrapping_sub(self.head);
        }
        n.min(max)
    }

    fn read(&self, i: u32) -> T {
        let idx = (self.head.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask; the kernel produced this slot and will not touch it until we
        // release it.
        unsafe { self.desc.add(idx).read() }
    }

    fn release(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        Self::store(self.consumer, self.head);
    }
}

/// How the socket is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BindMode {
    /// The driver writes packets straight into our frames.
    ZeroCopy,
    /// The kernel copies packets between its buffers and our frames.
    Copy,
}

impl BindMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            BindMode::ZeroCopy => "zerocopy",
            BindMode::Copy => "copy",
        }
    }
}

/// Kernel drop counters of the socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct KernelStats {
    /// Packets dropped for want of a free frame, among others.
    pub(super) rx_dropped: u64,
    /// Packets dropped because the receive ring was full (we were too slow).
    pub(super) rx_ring_full: u64,
    pub(super) rx_invalid_descs: u64,
    pub(super) tx_invalid_descs: u64,
}

/// An AF_XDP socket bound to one queue of one interface, with its UMEM and rings.
pub(super) struct Xsk {
    fd: OwnedFd,
    umem: Mmap,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// Frames that are ours (not in any ring): start of the free list.
    spare: Vec<u64>,
    pub(super) mode: BindMode,
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v is a live value of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Adds what the failed step was, and what usually fixes it, to an error.
fn step(what: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) if what == "creating the socket" => {
            " (AF_XDP sockets need CAP_NET_RAW)"
        }
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) if what == "registering the UMEM" => {
            " (its 8 MiB per queue count against the locked-memory limit: raise RLIMIT_MEMLOCK, \
             e.g. LimitMEMLOCK=infinity in the systemd unit, or grant CAP_IPC_LOCK)"
        }
        Some(libc::EBUSY) if what == "binding" => " (another AF_XDP socket is bound to this queue)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

impl Xsk {
    /// Creates the socket and its UMEM, fills the fill ring and binds to `ifindex`/`queue`.
    /// With `copy_only` false the kernel uses zero-copy where the driver has it and copy mode
    /// otherwise (one socket and one UMEM either way; `mode` says which it chose).
    pub(super) fn open(ifindex: u32, queue: u32, copy_only: bool) -> io::Result<Xsk> {
        // SAFETY: plain socket creation.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(step("creating the socket", io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mmap::new((FRAMES * FRAME_SIZE) as usize, -1, 0)
            .map_err(|e| step("allocating the UMEM", e))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem.len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(|e| step("registering the UMEM", e))?;
        let rings = || -> io::Result<()> {
            setsockopt(raw, libc::XDP_UMEM_FILL_RING, &FRAMES)?;
            setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &FRAMES)?;
            setsockopt(raw, libc::XDP_RX_RING, &RING_SIZE)?;
            setsockopt(raw, libc::XDP_TX_RING, &RING_SIZE)
        };
        rings().map_err(|e| step("sizing the rings", e))?;
        // SAFETY: all-zero is a valid xdp_mmap_offsets.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut optlen = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: off is a live buffer of optlen bytes.
        let r = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut optlen,
            )
        };
        if r < 0 {
            return Err(step("reading ring offsets", io::Error::last_os_error()));
        }
        if optlen as usize != size_of::<libc::xdp_mmap_offsets>() {
            return Err(io::Error::other(
                "AF_XDP ring offsets without the flags field: kernel older than 5.4",
            ));
        }
        let map = |e| step("mapping the rings", e);
        let fill = Ring::map(raw, &off.fr, FRAMES, libc::XDP_UMEM_PGOFF_FILL_RING).map_err(map)?;
        let comp =
            Ring::map(raw, &off.cr, FRAMES, libc::XDP_UMEM_PGOFF_COMPLETION_RING).map_err(map)?;
        let rx = Ring::map(raw, &off.rx, RING_SIZE, libc::XDP_PGOFF_RX_RING as u64).map_err(map)?;
        let tx = Ring::map(raw, &off.tx, RING_SIZE, libc::XDP_PGOFF_TX_RING as u64).map_err(map)?;
        let mut x = Xsk {
            fd,
            umem,
            fill,
            comp,
            rx,
            tx,
            spare: Vec::with_capacity(FRAMES as usize),
            mode: BindMode::Copy,
        };
        // Every frame starts in the fill ring: the kernel may receive into any of them.
        let n = x.fill.free(FRAMES);
        for i in 0..n {
            x.fill.write(i, u64::from(i * FRAME_SIZE));
        }
        x.fill.submit(n);
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP | if copy_only { libc::XDP_COPY } else { 0 },
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: sa is a valid sockaddr_xdp of the size given.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(step("binding", io::Error::last_os_error()));
        }
        let mut opts = libc::xdp_options { flags: 0 };
        let mut len = size_of::<libc::xdp_options>() as libc::socklen_t;
        // SAFETY: opts is a live buffer of len bytes.
        let r = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_OPTIONS,
                (&mut opts as *mut libc::xdp_options).cast(),
                &mut len,
            )
        };
        if r == 0 && opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
            x.mode = BindMode::ZeroCopy;
        }
        Ok(x)
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The frame at UMEM address `addr`, `len` bytes (None if the kernel's descriptor were
    /// ever outside the area).
    pub(super) fn frame(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        // A frame never spans chunks: stay inside the one `addr` is in.
        let chunk_end = (start / FRAME_SIZE as usize + 1) * FRAME_SIZE as usize;
        if start.checked_add(len)? > chunk_end.min(self.umem.len) {
            return None;
        }
        // SAFETY: start..start+len is inside the UMEM mapping; this frame was handed to us by
        // the rx ring and is not in any ring the kernel reads until we put it back.
        Some(unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(start), len) })
    }

    /// Asks the CPU to start loading the headers of the frame at `addr` (written by the
    /// kernel on another core, so the first read misses the cache): issued for a whole batch
    /// before it is answered, the loads overlap with the work on the frames before.
    #[inline]
    pub(super) fn prefetch(&self, addr: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Ok(a) = usize::try_from(addr)
            && a < self.umem.len
        {
            // SAFETY: the address is inside the UMEM mapping; a prefetch reads nothing and
            // cannot fault.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(self.umem.ptr.as_ptr().add(a).cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = addr;
    }

    /// The whole chunk of the frame at `addr`, from `addr` to the chunk end.
    pub(super) fn frame_room(&mut self, addr: u64) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        let chunk_end = (start / FRAME_SIZE as usize + 1) * FRAME_SIZE as usize;
        self.frame(addr, chunk_end.checked_sub(start)?)
    }

    /// Takes up to `max` received descriptors (address, length) into `out`; call
    /// [`Xsk::rx_release`] with the count once they are read.
    pub(super) fn rx_peek(&mut self, out: &mut [(u64, u32)]) -> u32 {
        let n = self.rx.available(out.len() as u32);
        for i in 0..n {
            let d = self.rx.read(i);
            out[i as usize] = (d.addr, d.len);
        }
        n
    }

    pub(super) fn rx_release(&mut self, n: u32) {
        self.rx.release(n);
    }

    /// Queues frames for sending; returns how many fit (the rest stay with the caller).
    pub(super) fn tx_push(&mut self, frames: &[(u64, u32)]) -> usize {
        let n = self.tx.free(frames.len() as u32);
        for i in 0..n {
            let (addr, len) = frames[i as usize];
            self.tx.write(
                i,
                libc::xdp_desc {
                    addr,
                    len,
                    options: 0,
                },
            );
        }
        self.tx.submit(n);
        n as usize
    }

    /// Hands frames back for receiving (dropped queries, completed sends).
    pub(super) fn recycle(&mut self, addr: u64) {
        self.spare.push(addr);
    }

    /// Moves completed sends and spare frames to the fill ring.
    pub(super) fn refill(&mut self) {
        let n = self.comp.available(FRAMES);
        for i in 0..n {
            let a = self.comp.read(i);
            self.spare.push(a);
        }
        self.comp.release(n);
        let n = self.fill.free(self.spare.len() as u32);
        for i in 0..n {
            // The offset inside a chunk is cleared: the kernel wants chunk-aligned addresses.
            let a = self.spare[self.spare.len() - 1 - i as usize];
            self.fill.write(i, a - a % u64::from(FRAME_SIZE));
        }
        self.fill.submit(n);
        let keep = self.spare.len() - n as usize;
        self.spare.truncate(keep);
    }

    /// Tells the kernel to send what is in the tx ring, when it asks to be told (copy mode
    /// always does: the sending happens inside this system call).
    pub(super) fn kick_tx(&mut self) {
        let mut tries = 0;
        while self.tx.outstanding() > 0 && tries < 8 {
            if !self.tx.needs_wakeup() && self.mode == BindMode::ZeroCopy {
                return;
            }
            // SAFETY: a zero-length send on our socket, as the AF_XDP interface defines.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error().raw_os_error();
                // EAGAIN: the kernel sent a batch and wants another call; ENOBUFS/EBUSY: the
                // device is busy now, the frames stay queued for the next kick.
                if !matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR)) {
                    return;
                }
            }
            tries += 1;
        }
    }

    /// Waits up to `timeout_ms` for received packets; also lets the driver see a refilled fill
    /// ring when it asked to be woken.
    pub(super) fn wait(&mut self, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }

    /// Whether the driver asked to be woken to take new fill-ring frames.
    pub(super) fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }
}

/// Reads the kernel's counters of a socket (by descriptor, from any thread).
pub(super) fn kernel_stats(fd: RawFd) -> io::Result<KernelStats> {
    // SAFETY: all-zero is a valid xdp_statistics.
    let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: s is a live buffer of len bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut s as *mut libc::xdp_statistics).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let full = len as usize >= size_of::<libc::xdp_statistics>();
    Ok(KernelStats {
        rx_dropped: s.rx_dropped,
        rx_ring_full: if full { s.rx_ring_full } else { 0 },
        rx_invalid_descs: s.rx_invalid_descs,
        tx_invalid_descs: s.tx_invalid_descs,
    })
}
