//! Resource readings from `/proc` (Linux): CPU time of a process or of one
//! thread, resident memory, thread ids and the open-file hard limit.
//!
//! Everything here is a plain file read, so none of it needs `unsafe`. On a
//! system without `/proc` every reading is `None` and the report says "not
//! measured".

use std::fs;
use std::path::Path;

/// `AT_CLKTCK` in the ELF auxiliary vector: clock ticks per second, the unit
/// of the CPU fields in `/proc/*/stat`.
const AT_CLKTCK: u64 = 17;

/// Clock ticks per second for `/proc/*/stat` CPU fields, read from
/// `/proc/self/auxv` (100 on every mainstream Linux, used as the fallback).
pub fn clock_ticks_per_sec() -> u64 {
    fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| auxv_value(&auxv, AT_CLKTCK))
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Finds `key` in a 64-bit auxiliary vector (native-endian `(key, value)`
/// pairs of u64, ended by key 0).
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    let word = |b: &[u8]| -> Option<u64> { Some(u64::from_ne_bytes(b.try_into().ok()?)) };
    for pair in auxv.chunks_exact(16) {
        let k = word(pair.get(..8)?)?;
        let v = word(pair.get(8..)?)?;
        if k == 0 {
            return None;
        }
        if k == key {
            return Some(v);
        }
    }
    None
}

/// User + system CPU of a `stat` file (`/proc/<pid>/stat` sums all threads of
/// a process; `/proc/self/task/<tid>/stat` is one thread), in clock ticks.
pub fn cpu_ticks(stat_path: &Path) -> Option<u64> {
    parse_stat_cpu(&fs::read_to_string(stat_path).ok()?)
}

/// utime + stime from the text of a `stat` file. The command name (field 2)
/// is in parentheses and may itself contain spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat_cpu(text: &str) -> Option<u64> {
    let after = text.get(text.rfind(')')?.checked_add(1)?..)?;
    let mut fields = after.split_ascii_whitespace();
    // After the `)` come field 3 (state) onwards; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Resident set size in KiB from a `status` file (`VmRSS`).
pub fn rss_kib(status_path: &Path) -> Option<u64> {
    parse_status_kib(&fs::read_to_string(status_path).ok()?, "VmRSS:")
}

/// A `kB` value from the text of a `status` file.
pub fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The calling thread's kernel thread id (`/proc/thread-self` links to
/// `<pid>/task/<tid>`).
pub fn current_tid() -> Option<u32> {
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// The `stat` file of one of this process's threads.
pub fn thread_stat_path(tid: u32) -> std::path::PathBuf {
    format!("/proc/self/task/{tid}/stat").into()
}

/// The soft and hard limits on open files, from `/proc/self/limits`
/// (`None` for "unlimited").
pub fn nofile_limits() -> Option<(Option<u64>, Option<u64>)> {
    parse_nofile(&fs::read_to_string("/proc/self/limits").ok()?)
}

/// Parses the "Max open files" row of `/proc/self/limits`.
pub fn parse_nofile(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let row = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    let mut cols = row.split_ascii_whitespace();
    let value = |s: &str| -> Option<Option<u64>> {
        if s == "unlimited" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let soft = value(cols.next()?)?;
    let hard = value(cols.next()?)?;
    Some((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_paren() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 30 0 0 20 0 3 0 100 1000000 200 18446744073709551615";
        assert_eq!(parse_stat_cpu(line), Some(280));
        assert_eq!(parse_stat_cpu("1234 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        if Path::new("/proc/self/stat").exists() {
            assert!(cpu_ticks(Path::new("/proc/self/stat")).is_some());
            assert!(rss_kib(Path::new("/proc/self/status")).unwrap() > 0);
            let tid = current_tid().unwrap();
            assert!(cpu_ticks(&thread_stat_path(tid)).is_some());
            assert!(clock_ticks_per_sec() >= 1);
        }
    }

    #[test]
    fn status_and_limits_parse() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_nofile(limits), Some((Some(1024), Some(524288))));
        let unl = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_nofile(unl), Some((None, None)));
    }

    #[test]
    fn auxv_lookup() {
        let mut v = Vec::new();
        for (k, val) in [(6u64, 4096u64), (17, 100), (0, 0)] {
            v.extend_from_slice(&k.to_ne_bytes());
            v.extend_from_slice(&val.to_ne_bytes());
        }
        assert_eq!(auxv_value(&v, 17), Some(100));
        assert_eq!(auxv_value(&v, 99), None);
    }
}
