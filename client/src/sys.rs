//! The three things the standard library can't do for us: local wall-clock
//! time, putting the terminal back into cooked mode from another thread,
//! and reading a password without echoing it.
//!
//! This is the only module with `unsafe`: three libc calls, each on values
//! we own. Pulling in a date-time crate for `HH:MM:SS` and `nix` (or
//! `rpassword`) for three termios calls would buy nothing but more code to
//! trust.
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

/// The local calendar day `(year, month 1-12, day 1-31)` of a Unix time in
/// seconds (UTC if the C library can't tell).
pub fn local_date(unix_secs: i64) -> (i32, u32, u32) {
    let t: libc::time_t = unix_secs;
    // SAFETY: as in `local_hms`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        // Good enough for "is it today": days since the epoch.
        let days = unix_secs.div_euclid(86_400);
        return (1970, 1, u32::try_from(days.rem_euclid(31)).unwrap_or(0) + 1);
    }
    let part = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
    (
        tm.tm_year.saturating_add(1900),
        part(tm.tm_mon).saturating_add(1),
        part(tm.tm_mday),
    )
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

/// Reads one line from standard input (a terminal) with echo off, for a
/// password: the typed characters are not shown, the Enter is (`ECHONL`),
/// and the settings are put back afterwards. `None` at end of input (Ctrl-D)
/// or if standard input is not a terminal.
///
/// Ctrl-C still sends SIGINT, whose handler puts back the settings saved
/// by [`save_terminal`] (echo on) before it exits, so an interrupted prompt
/// never leaves the shell without echo. The terminal is in canonical mode
/// here (the line editor is not reading), so one `read` returns at most
/// this one line and nothing the line editor should see is consumed.
pub fn read_hidden_line() -> Option<String> {
    // SAFETY: as in `save_terminal`: all-zero is a valid `termios`,
    // `tcgetattr` fills it or fails with -1.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
        return None;
    }
    let shown = t;
    t.c_lflag &= !libc::ECHO;
    t.c_lflag |= libc::ECHONL;
    // SAFETY: `t` is a valid `termios` (from `tcgetattr`); `tcsetattr` only
    // reads it. TCSANOW, not TCSAFLUSH: a line typed ahead is kept.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) } != 0 {
        return None;
    }
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    // SAFETY: `shown` is the `termios` read above.
    unsafe {
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &shown);
    }
    match read {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
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
            let (y, mo, d) = local_date(t);
            assert!((1900..3000).contains(&y) && (1..=12).contains(&mo) && (1..=31).contains(&d));
        }
    }
}
