//! The XDP program and the `bpf()` system calls that load, attach and query it.
//!
//! The program is assembled here, instruction by instruction, when the listener starts, so
//! building gslbd needs no BPF toolchain (clang, bpf-linker) and no library (libbpf, libxdp):
//! it is 58 instructions for one port (one more per extra port), fixed but for the listen
//! ports, which are written in as immediates, and the map descriptors. It keeps the kernel in charge of everything but our DNS queries:
//!
//! ```text
//! frame -> Ethernet type IPv4 (no options, not a fragment) or IPv6 (UDP as the next header)
//!       -> UDP destination port in the listen set?  no -> count "passed", XDP_PASS (kernel)
//!                                                   yes -> count "matched",
//!                                                          redirect to xsks[rx queue]
//!                                                          (XDP_PASS if no socket is there)
//! ```
//! IPv4 with options, IPv6 extension headers, fragments and VLAN tags go to the kernel, which
//! still answers them when gslbd also listens on a socket for that address.
//!
//! The program is attached with a BPF link (`BPF_LINK_CREATE`): the link lives as long as
//! its file descriptor, so when gslbd exits, however it exits (SIGKILL included), the kernel
//! detaches the program, and the next start finds the interface clean.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf() commands (linux/bpf.h).
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_PROG_LOAD: u32 = 5;
const BPF_LINK_CREATE: u32 = 28;

const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, run by the kernel on the socket buffer (any driver).
pub(super) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run by the driver before any socket buffer exists.
pub(super) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

const XDP_PASS: i32 = 2;

// Helper function ids.
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_REDIRECT_MAP: i32 = 51;

/// Offsets in `struct xdp_md`.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE: i16 = 16;

/// Per-queue counters kept by the program: slot 0 = sent to the socket, 1 = passed.
pub(super) const STAT_SLOTS: usize = 2;

fn bpf(cmd: u32, attr: *mut u8, size: usize) -> io::Result<i64> {
    // SAFETY: `attr` points at a live, initialised attribute struct of `size` bytes for `cmd`
    // (each caller passes its own repr(C) struct); the kernel reads and may write it.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr, size) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn bpf_attr<T>(cmd: u32, attr: &mut T) -> io::Result<i64> {
    bpf(cmd, (attr as *mut T).cast(), size_of::<T>())
}

fn fd_from(r: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, c) in n.iter_mut().zip(s.bytes().take(15)) {
        *d = c;
    }
    n
}

#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// A BPF map (closed when dropped).
pub(super) struct Map {
    fd: OwnedFd,
    value_size: usize,
}

impl Map {
    fn create(map_type: u32, value_size: u32, max_entries: u32, name: &str) -> io::Result<Map> {
        let mut a = MapCreate {
            map_type,
            key_size: 4,
            value_size,
            max_entries,
            map_flags: 0,
            inner_map_fd: 0,
            numa_node: 0,
            map_name: name16(name),
        };
        let r = bpf_attr(BPF_MAP_CREATE, &mut a)?;
        Ok(Map {
            fd: fd_from(r),
            value_size: value_size as usize,
        })
    }

    /// The XSKMAP the program redirects into: key = receive queue, value = AF_XDP socket.
    pub(super) fn xsks(queues: u32) -> io::Result<Map> {
        Map::create(BPF_MAP_TYPE_XSKMAP, 4, queues, "gslbd_xsks")
    }

    /// Per-CPU counters: key = receive queue, value = [`STAT_SLOTS`] u64.
    pub(super) fn stats(queues: u32) -> io::Result<Map> {
        Map::create(
            BPF_MAP_TYPE_PERCPU_ARRAY,
            (8 * STAT_SLOTS) as u32,
            queues,
            "gslbd_xdp_stats",
        )
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Puts socket `sock` at `key` in an XSKMAP.
    pub(super) fn set_socket(&self, key: u32, sock: RawFd) -> io::Result<()> {
        let v: u32 = sock as u32;
        let mut a = MapElem {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: (&key as *const u32) as u64,
            value: (&v as *const u32) as u64,
            flags: 0,
        };
        bpf_attr(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }

    /// Removes `key` (the socket goes away from the map before it is closed).
    pub(super) fn delete(&self, key: u32) -> io::Result<()> {
        let mut a = MapElem {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: (&key as *const u32) as u64,
            value: 0,
            flags: 0,
        };
        bpf_attr(BPF_MAP_DELETE_ELEM, &mut a).map(|_| ())
    }

    /// The per-queue counters of a stats map, summed over every possible CPU.
    pub(super) fn read_stats(&self, key: u32) -> io::Result<[u64; STAT_SLOTS]> {
        let cpus = possible_cpus()?;
        // The kernel writes one value (rounded up to 8 bytes) per possible CPU.
        let per = self.value_size.div_ceil(8);
        let mut buf = vec![0u64; per * cpus];
        let mut a = MapElem {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: (&key as *const u32) as u64,
            value: buf.as_mut_ptr() as u64,
            flags: 0,
        };
        bpf_attr(BPF_MAP_LOOKUP_ELEM, &mut a)?;
        let mut out = [0u64; STAT_SLOTS];
        for cpu in buf.chunks_exact(per) {
            for (o, v) in out.iter_mut().zip(cpu) {
                *o += v;
            }
        }
        Ok(out)
    }
}

/// CPUs the kernel sizes per-CPU maps for (`/sys/devices/system/cpu/possible`, e.g. "0-3").
fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut max = 0usize;
    for part in s.trim().split(',') {
        let last = part.rsplit('-').next().unwrap_or(part);
        let n: usize = last
            .parse()
            .map_err(|_| io::Error::other(format!("cannot read possible CPUs from {s:?}")))?;
        max = max.max(n);
    }
    Ok(max + 1)
}

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R10: u8 = 10;

// Opcodes (class | size/op | source).
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const LDX_DW: u8 = 0x79;
const STX_W: u8 = 0x63;
const STX_DW: u8 = 0x7b;
const MOV64_K: u8 = 0xb7;
const MOV64_X: u8 = 0xbf;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
/// `src_reg` of a 64-bit immediate load that holds a map file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Pass,
    V4,
    Port,
    Match,
    CountedPass,
    CountedMatch,
}

/// A tiny assembler: instructions plus forward jumps to named labels, patched at the end.
struct Asm {
    code: Vec<Insn>,
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        });
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.jumps.push((self.code.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.code.len()));
    }
    fn ld_map(&mut self, dst: u8, fd: RawFd) {
        self.op(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd);
        self.op(0, 0, 0, 0, 0);
    }
    /// `if data + len > data_end goto Pass` (r2 = data, r3 = data_end; clobbers r4).
    fn need(&mut self, len: i32) {
        self.op(MOV64_X, R4, R2, 0, 0);
        self.op(ADD64_K, R4, 0, 0, len);
        self.jump(JGT_X, R4, R3, 0, Label::Pass);
    }
    /// Adds one to counter `slot` of this receive queue (r6 = ctx; clobbers r0-r5).
    fn count(&mut self, stats: RawFd, slot: i16, done: Label) {
        self.op(LDX_W, R2, R6, MD_RX_QUEUE, 0);
        self.op(STX_W, R10, R2, -4, 0);
        self.op(MOV64_X, R2, R10, 0, 0);
        self.op(ADD64_K, R2, 0, 0, -4);
        self.ld_map(R1, stats);
        self.op(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM);
        self.jump(JEQ_K, R0, 0, 0, done);
        // Per-CPU slot: no other CPU writes it, a plain add is exact.
        self.op(LDX_DW, R1, R0, slot * 8, 0);
        self.op(ADD64_K, R1, 0, 0, 1);
        self.op(STX_DW, R0, R1, slot * 8, 0);
        self.label(done);
    }
    fn finish(mut self) -> Vec<Insn> {
        for &(at, to) in &self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == to)
                .map(|&(_, i)| i)
                .expect("every jump label is placed by build_program");
            // Jump offsets count from the instruction after the jump.
            self.code[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.code
    }
}

/// A big-endian (network order) 16-bit field as a 16-bit load on this host reads it.
fn wire16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// Assembles the XDP program for `ports`, with the XSKMAP and stats map descriptors built in.
pub(super) fn build_program(ports: &[u16], xsks: RawFd, stats: RawFd) -> Vec<Insn> {
    let mut a = Asm {
        code: vec![],
        jumps: vec![],
        labels: vec![],
    };
    a.op(MOV64_X, R6, R1, 0, 0);
    a.op(LDX_W, R2, R6, MD_DATA, 0);
    a.op(LDX_W, R3, R6, MD_DATA_END, 0);
    a.need(14);
    a.op(LDX_H, R5, R2, 12, 0); // Ethernet type
    a.jump(JEQ_K, R5, 0, wire16(0x0800), Label::V4);
    a.jump(JNE_K, R5, 0, wire16(0x86dd), Label::Pass);
    // IPv6: fixed header, UDP straight after it.
    a.need(14 + 40 + 8);
    a.op(LDX_B, R5, R2, 14 + 6, 0); // next header
    a.jump(JNE_K, R5, 0, 17, Label::Pass);
    a.op(LDX_H, R5, R2, 14 + 40 + 2, 0); // UDP destination port
    a.jump(JA, 0, 0, 0, Label::Port);
    a.label(Label::V4);
    a.need(14 + 20 + 8);
    a.op(LDX_B, R5, R2, 14, 0); // version 4, header length 5 words (no options)
    a.jump(JNE_K, R5, 0, 0x45, Label::Pass);
    a.op(LDX_B, R5, R2, 14 + 9, 0); // protocol
    a.jump(JNE_K, R5, 0, 17, Label::Pass);
    a.op(LDX_H, R5, R2, 14 + 6, 0); // flags and fragment offset
    a.op(AND64_K, R5, 0, 0, wire16(0x3fff)); // more-fragments bit and offset
    a.jump(JNE_K, R5, 0, 0, Label::Pass);
    a.op(LDX_H, R5, R2, 14 + 20 + 2, 0); // UDP destination port
    a.label(Label::Port);
    for &p in ports {
        a.jump(JEQ_K, R5, 0, wire16(p), Label::Match);
    }
    a.label(Label::Pass);
    a.count(stats, 1, Label::CountedPass);
    a.op(MOV64_K, R0, 0, 0, XDP_PASS);
    a.op(EXIT, 0, 0, 0, 0);
    a.label(Label::Match);
    a.count(stats, 0, Label::CountedMatch);
    a.op(LDX_W, R2, R6, MD_RX_QUEUE, 0);
    a.ld_map(R1, xsks);
    // Flags = the action when the queue has no socket: hand the packet to the kernel.
    a.op(MOV64_K, R3, 0, 0, XDP_PASS);
    a.op(CALL, 0, 0, 0, FN_REDIRECT_MAP);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

/// A loaded program (unloaded when its last reference, fd or link, goes).
pub(super) struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as an XDP program; a verifier refusal comes back with the verifier's log.
    pub(super) fn load(insns: &[Insn], name: &str) -> io::Result<Program> {
        let license = CString::new("Apache-2.0").expect("no NUL in a literal");
        let mut log = vec![0u8; 64 * 1024];
        let attempt = |log_level: u32, log: &mut [u8]| {
            let mut a = ProgLoad {
                prog_type: BPF_PROG_TYPE_XDP,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level,
                log_size: if log_level > 0 { log.len() as u32 } else { 0 },
                log_buf: if log_level > 0 {
                    log.as_mut_ptr() as u64
                } else {
                    0
                },
                kern_version: 0,
                prog_flags: 0,
                prog_name: name16(name),
                prog_ifindex: 0,
                expected_attach_type: BPF_XDP,
            };
            bpf_attr(BPF_PROG_LOAD, &mut a)
        };
        match attempt(0, &mut log) {
            Ok(r) => Ok(Program { fd: fd_from(r) }),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(io::Error::new(
                e.kind(),
                format!("loading the XDP program: {e} (needs CAP_BPF and CAP_NET_ADMIN, or root)"),
            )),
            Err(e) => {
                // Load again with the verifier log on, to say why.
                let _ = attempt(1, &mut log);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "the kernel refused the XDP program: {e}; verifier: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                ))
            }
        }
    }

    /// Attaches the program to `ifindex` with a BPF link in mode `flags`
    /// ([`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]). Dropping the link detaches it.
    pub(super) fn attach(&self, ifindex: u32, flags: u32) -> io::Result<Link> {
        let mut a = LinkCreate {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags,
        };
        bpf_attr(BPF_LINK_CREATE, &mut a).map(|r| Link { _fd: fd_from(r) })
    }
}

/// An attached XDP program: closing the descriptor (drop, exit or crash) detaches it.
pub(super) struct Link {
    _fd: OwnedFd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let p = build_program(&[53, 5353], 100, 101);
        // Every conditional jump stays inside the program and lands past itself.
        for (i, ins) in p.iter().enumerate() {
            if matches!(ins.code, JEQ_K | JNE_K | JGT_X | JA) {
                let to = i as isize + 1 + ins.off as isize;
                assert!(to > i as isize && (to as usize) < p.len(), "jump at {i}");
            }
        }
        // Both ports are compared, in network order as a 16-bit load reads them.
        let ports: Vec<i32> = p
            .iter()
            .filter(|i| i.code == JEQ_K && i.regs == R5)
            .map(|i| i.imm)
            .collect();
        assert!(ports.contains(&wire16(53)) && ports.contains(&wire16(5353)));
        // The map descriptors are built into the 64-bit loads.
        let maps: Vec<i32> = p
            .iter()
            .filter(|i| i.code == LD_IMM64)
            .map(|i| i.imm)
            .collect();
        assert_eq!(maps, vec![101, 101, 100]);
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
        // One compare per port; 58 instructions (counting each 64-bit load as 2) for one.
        assert_eq!(build_program(&[53], 100, 101).len() + 1, p.len());
        assert_eq!(build_program(&[53], 100, 101).len(), 58);
    }

    #[test]
    fn wire_order() {
        let x = wire16(0x0800);
        assert_eq!((x as u16).to_ne_bytes(), [0x08, 0x00]);
    }
}
