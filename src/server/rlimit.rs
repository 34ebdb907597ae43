//! The file descriptor limit: raised from the soft to the hard limit at start (a DNS server's
//! connections are descriptors, and the usual soft limit of 1024 is far below what TCP clients
//! and the API may need), and read to size the TCP connection limit.
//!
//! `getrlimit`/`setrlimit` are C calls on a plain struct: this file is allowed `unsafe` for
//! them, each block says why it holds.

use std::io;

fn get() -> io::Result<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if rc == 0 {
        Ok(r)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft limit on open descriptors now (`None` when it cannot be read; `u64::MAX` when
/// unlimited).
pub(crate) fn nofile() -> Option<u64> {
    get().ok().map(|r| r.rlim_cur)
}

/// Raises the soft descriptor limit to the hard limit. Returns (before, after).
pub(crate) fn raise_nofile() -> io::Result<(u64, u64)> {
    let r = get()?;
    if r.rlim_cur >= r.rlim_max {
        return Ok((r.rlim_cur, r.rlim_cur));
    }
    let new = libc::rlimit {
        rlim_cur: r.rlim_max,
        rlim_max: r.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit that lives across the call; raising the soft limit up to
    // the hard one is always permitted.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) };
    if rc == 0 {
        Ok((r.rlim_cur, r.rlim_max))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Descriptors kept aside from TCP: the process itself, UDP sockets and listeners, files read
/// by reloads and state writes (beside the probes and API connections, counted apart).
const RESERVE: u64 = 128;
/// The automatic TCP limit never exceeds this: ample for an authoritative server, and it
/// bounds the memory idle connections can take (a few KiB each with kernel buffers).
pub(crate) const AUTO_MAX: usize = 16_384;

/// The TCP connection limit for a descriptor limit of `nofile`: half of what is left after
/// the probes, the API connections and a reserve, at least 16, at most [`AUTO_MAX`].
pub(crate) fn auto_tcp_limit(nofile: Option<u64>, probes: usize, api: usize) -> usize {
    let Some(n) = nofile else {
        return 4096;
    };
    let left = n.saturating_sub(RESERVE + probes as u64 + api as u64);
    usize::try_from(left / 2)
        .unwrap_or(AUTO_MAX)
        .clamp(16, AUTO_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_limit() {
        assert_eq!(auto_tcp_limit(Some(1024), 256, 64), 288);
        assert_eq!(auto_tcp_limit(Some(256), 256, 64), 16);
        assert_eq!(auto_tcp_limit(Some(1 << 20), 256, 64), AUTO_MAX);
        assert_eq!(auto_tcp_limit(Some(u64::MAX), 256, 64), AUTO_MAX);
        assert_eq!(auto_tcp_limit(None, 256, 64), 4096);
        assert!(nofile().is_some());
    }
}
