//! The two things the standard library can't do for us: local wall-clock
//! time and putting the terminal back into cooked mode from another thread.
//!
//! This is the only module with `unsafe`: three libc calls, each on values
//! we own. Pulling in a date-time crate for `HH:MM:SS` and `nix` for two
//! termios calls would buy nothing but more code to trust.
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Local time of day `(hours, minutes, seconds)` for a Unix time in seconds,
/// honouring `TZ` and `/etc/localtime`; UTC if the C library can't tell.
pub fn local_hms(unix_secs: i64) -> (u32, u32, u32) {
    let t: libc::time_t = unix_secs;
    // SAFETY: `tm` is plain old data, so all-zero is a valid value;
    // `localtime_r` only writes into the `tm` we pass and reads `t`, both
    // valid for the duration of the call. It is the thread-safe variant.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        let part = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
        (part(tm.tm_hour), part(tm.tm_min), part(tm.tm_sec))
    } else {
        let day = unix_secs.rem_euclid(86_400);
        let part = |v: i64| u32::try_from(v).unwrap_or(0);
        (part(day / 3600), part(day / 60 % 60), part(day % 60))
    }
}

static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// Remembers the terminal settings of standard input as they are now
/// (cooked), so [`restore_terminal`] can bring them back. Call before the
/// line editor switches to raw mode; harmless if stdin is not a terminal.
pub fn save_terminal() {
    // SAFETY: all-zero is a valid `termios`; `tcgetattr` writes into it and
    // reports failure (not a terminal) with -1, in which case we drop it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } == 0 {
        let _ = SAVED.set(t);
    }
}

/// Puts the terminal back the way [`save_terminal`] found it. Used when the
/// process must end while another thread has the line editor in raw mode
/// (the broker shut down, the connection was lost): the editor's own guard
/// would never run.
pub fn restore_terminal() {
    if let Some(t) = SAVED.get() {
        // SAFETY: `t` is a `termios` that `tcgetattr` filled in; `tcsetattr`
        // only reads it. A failure leaves the terminal as it was.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_in_range() {
        for t in [0, 1_763_812_345, -1, 4_000_000_000] {
            let (h, m, s) = local_hms(t);
            assert!(h < 24 && m < 60 && s < 61, "{t}: {h}:{m}:{s}");
        }
    }
}
