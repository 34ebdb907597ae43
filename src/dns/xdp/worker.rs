//! The loop of one AF_XDP queue: take a batch of received frames, answer each in its own
//! frame, send the batch, recycle the frames the kernel has finished sending.
//!
//! Nothing is allocated per packet: the frames are the UMEM's, the answer is built in one
//! buffer per thread and copied behind the rewritten headers (answers are small, and the
//! handler sees exactly the buffer the socket path gives it, so both paths answer alike).
//! The counters are per-queue atomics written once per batch.

use std::sync::atomic::{AtomicU64, Ordering};

use super::packet;
use super::xsk::{KernelStats, Xsk, kernel_stats};
use crate::dns::handler::{PacketHandler, Peer};
use crate::dns::wire::Query;
use crate::net::Transport;
use crate::shutdown::Shutdown;

/// Frames taken per round; also what one copy-mode send call transmits (the kernel's
/// TX_BATCH_SIZE), so one kick sends a whole batch.
const BATCH: usize = 32;
/// The answer buffer: the same size as the socket path's, so the handler behaves the same.
const OUT_LEN: usize = 4096;
/// How long an idle loop waits for packets before looking at `stop` again.
const IDLE_WAIT_MS: i32 = 100;

/// Counters of one queue, written by its worker, read by the status API.
#[derive(Default)]
pub(super) struct QueueCounters {
    /// Frames read from the rx ring.
    pub(super) received: AtomicU64,
    /// Answers queued on the tx ring.
    pub(super) answered: AtomicU64,
    /// Dropped by us.
    pub(super) dropped: AtomicU64,
    /// The kernel's drop counters of the socket, copied now and then by the worker (the
    /// socket is the worker's; nobody else touches its descriptor).
    pub(super) kernel_dropped: AtomicU64,
}

impl QueueCounters {
    fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn set_kernel(&self, k: KernelStats) {
        self.kernel_dropped
            .store(k.rx_dropped + k.rx_ring_full, Ordering::Relaxed);
    }
}

/// Answers one received frame in place; the frame length of the reply, or `None` to drop.
fn answer_frame<H: PacketHandler>(
    x: &mut Xsk,
    addr: u64,
    len: u32,
    h: &H,
    q: &mut Query,
    out: &mut [u8; OUT_LEN],
) -> Option<u32> {
    let f = x.frame(addr, len as usize)?;
    let req = packet::parse(f)?;
    let dns = f.get(req.payload..req.payload + req.len)?;
    let peer = Peer {
        addr: req.src,
        transport: Transport::Xdp,
    };
    let n = h.handle(dns, &peer, q, out)?;
    let room = x.frame_room(addr)?;
    // A UDP answer is at most 1232 bytes (OUR_UDP_SIZE) and always fits behind the headers;
    // anything else is dropped rather than sent cut.
    room.get_mut(req.payload..req.payload + n)?
        .copy_from_slice(out.get(..n)?);
    Some(packet::write_reply(room, &req, n) as u32)
}

/// Serves socket `x` until `stop` is stopped.
pub(super) fn serve<H: PacketHandler>(mut x: Xsk, h: &H, stop: &Shutdown, c: &QueueCounters) {
    let mut rx = [(0u64, 0u32); BATCH];
    let mut tx = [(0u64, 0u32); BATCH];
    let mut out = Box::new([0u8; OUT_LEN]);
    let mut q = Query::default();
    let mut rounds = 0u32;
    while !stop.is_stopped() {
        x.refill();
        let n = x.rx_peek(&mut rx) as usize;
        if n == 0 {
            // Nothing waiting: send what is still queued, then sleep until packets come
            // (poll also wakes a driver that waits for fill-ring frames).
            x.kick_tx();
            if let Ok(k) = kernel_stats(x.raw_fd()) {
                c.set_kernel(k);
            }
            x.wait(IDLE_WAIT_MS);
            continue;
        }
        for &(addr, _) in &rx[..n] {
            x.prefetch(addr);
        }
        let mut ntx = 0;
        let mut dropped = 0u64;
        for &(addr, len) in &rx[..n] {
            match answer_frame(&mut x, addr, len, h, &mut q, &mut out) {
                Some(flen) => {
                    tx[ntx] = (addr, flen);
                    ntx += 1;
                }
                None => {
                    x.recycle(addr);
                    dropped += 1;
                }
            }
        }
        x.rx_release(n as u32);
        let sent = x.tx_push(&tx[..ntx]);
        for &(addr, _) in &tx[sent..ntx] {
            // The tx ring is full (the device is behind): drop rather than wait.
            x.recycle(addr);
            dropped += 1;
        }
        x.kick_tx();
        if x.fill_needs_wakeup() {
            x.wait(0);
        }
        QueueCounters::add(&c.received, n as u64);
        QueueCounters::add(&c.answered, sent as u64);
        QueueCounters::add(&c.dropped, dropped);
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(4096)
            && let Ok(k) = kernel_stats(x.raw_fd())
        {
            c.set_kernel(k);
        }
    }
}
