//! Raising the open-file limit so that thousands of clients fit.

use crate::procfs;
use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (read from
/// `/proc/self/limits`) and checks that `needed` descriptors fit. Returns
/// the soft limit now in force, `None` if it is unlimited or unknown.
pub fn raise_nofile(needed: u64) -> Result<Option<u64>, String> {
    let Some((soft, hard)) = procfs::nofile_limits() else {
        return Ok(None); // no /proc: try anyway, connect errors will tell
    };
    let target = match (soft, hard) {
        (_, Some(hard)) => hard,
        // An unlimited hard limit can't be the soft value (the kernel caps
        // it at nr_open); ask for what we need with headroom.
        (_, None) => needed.saturating_mul(2).max(65_536),
    };
    let now = match soft {
        Some(soft) if soft < target => match set_nofile(target, hard) {
            Ok(()) => Some(target),
            Err(e) => {
                return check(needed, Some(soft)).map_err(|m| format!("{m} ({e})"));
            }
        },
        other => other,
    };
    check(needed, now)
}

fn check(needed: u64, limit: Option<u64>) -> Result<Option<u64>, String> {
    match limit {
        Some(l) if l < needed => Err(format!(
            "this run needs about {needed} open files but the limit is {l}; \
             raise the hard limit (ulimit -Hn) or use fewer clients"
        )),
        other => Ok(other),
    }
}

/// Sets `RLIMIT_NOFILE`.
#[allow(unsafe_code)]
fn set_nofile(soft: u64, hard: Option<u64>) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard.map_or(libc::RLIM_INFINITY, |h| h as libc::rlim_t),
    };
    // SAFETY: `setrlimit` only reads the `rlimit` struct behind the pointer
    // during the call. `&lim` points to a live, fully initialised
    // `libc::rlimit` on this stack frame (the exact type the C prototype
    // takes), nothing else aliases it, and the call has no other memory
    // effects. Invalid values are reported through the return code, which
    // is checked below.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_needs_fit() {
        assert!(raise_nofile(64).is_ok());
    }

    #[test]
    fn impossible_needs_are_refused() {
        if procfs::nofile_limits().is_some_and(|(_, h)| h.is_some()) {
            let err = raise_nofile(u64::MAX / 4).unwrap_err();
            assert!(err.contains("open files"), "{err}");
        }
    }
}
