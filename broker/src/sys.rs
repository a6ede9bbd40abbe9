//! Operating-system knobs: the open-file limit.

use std::io;

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit,
/// so the broker (or the load generator) can hold as many sockets as the
/// system allows. Returns the `(before, after)` soft limits.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live,
    // properly aligned local that outlives the call; no other memory is
    // touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    // An unlimited hard limit can't be the soft value for open files (the
    // kernel caps it at fs.nr_open, 1048576 by default).
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur < target {
        lim.rlim_cur = target;
        // SAFETY: setrlimit only reads the `rlimit` behind the pointer, a
        // live local initialised above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}
