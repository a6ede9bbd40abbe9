//! Raising the open-file limit so that thousands of clients fit.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the broker's own
/// [`broker::sys::raise_nofile_limit`]) and checks that `needed`
/// descriptors fit. Returns the soft limit now in force.
pub fn raise_nofile(needed: u64) -> Result<Option<u64>, String> {
    let now = match broker::sys::raise_nofile_limit() {
        Ok((_, after)) => after,
        // Can't read or raise it: try anyway, connect errors will tell.
        Err(_) => return Ok(None),
    };
    if now < needed {
        return Err(format!(
            "this run needs about {needed} open files but the limit is {now}; \
             raise the hard limit (ulimit -Hn) or use fewer clients"
        ));
    }
    Ok(Some(now))
}
