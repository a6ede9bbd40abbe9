//! The message body the load generator sends: `<sender>:<seq>:<send-ns>:`
//! in decimal, padded with `.` to exactly `size` bytes.
//!
//! Readable on `nc`, parsed in place without allocating. `<sender>` is the
//! sending client's index (`lg-<sender>`), `<seq>` counts that sender's
//! messages from 0, and `<send-ns>` is the send time (or, at a fixed rate,
//! the intended send time) in nanoseconds since the run's start instant,
//! which every loadgen thread shares, so receivers can compute end-to-end
//! latency with one clock read.

use protocol::push_u64;

/// The smallest `--size`: room for the widest stamp (5-digit sender index,
/// two 20-digit numbers and three `:`).
pub const MIN_SIZE: usize = 48;

/// The largest client count, so that a sender index fits 5 digits.
pub const MAX_CLIENTS: usize = 100_000;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the sending client.
    pub sender: u32,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// (Intended) send time, ns since the run's epoch.
    pub send_ns: u64,
}

/// Appends a `size`-byte payload carrying `stamp`. `size` must be at least
/// [`MIN_SIZE`] (the argument parser enforces it); a stamp that doesn't fit
/// is still written whole, so the body is never silently corrupted.
pub fn write(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let start = out.len();
    push_u64(out, u64::from(stamp.sender));
    out.push(b':');
    push_u64(out, stamp.seq);
    out.push(b':');
    push_u64(out, stamp.send_ns);
    out.push(b':');
    let target = start.saturating_add(size);
    if out.len() < target {
        out.resize(target, b'.');
    }
}

/// Reads the stamp at the front of a body; `None` if it isn't one of ours.
/// One pass over the stamp's bytes: this runs once per delivery.
pub fn parse(body: &[u8]) -> Option<Stamp> {
    let mut bytes = body.iter();
    let sender = u32::try_from(field(&mut bytes)?).ok()?;
    let seq = field(&mut bytes)?;
    let send_ns = field(&mut bytes)?;
    Some(Stamp {
        sender,
        seq,
        send_ns,
    })
}

/// A non-empty decimal field ended by `:` (which is consumed).
fn field(bytes: &mut std::slice::Iter<'_, u8>) -> Option<u64> {
    let mut n: u64 = 0;
    for (i, &b) in bytes.by_ref().enumerate() {
        if b == b':' {
            return (i > 0).then_some(n);
        }
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_exact_size() {
        let stamp = Stamp {
            sender: 42,
            seq: 7,
            send_ns: 123_456_789,
        };
        let mut out = b"prefix".to_vec();
        write(&mut out, stamp, 100);
        assert_eq!(out.len(), 106);
        assert!(out.starts_with(b"prefix42:7:123456789:...."));
        assert_eq!(parse(&out[6..]), Some(stamp));
    }

    #[test]
    fn widest_stamp_fits_min_size() {
        let stamp = Stamp {
            sender: (MAX_CLIENTS - 1) as u32,
            seq: u64::MAX,
            send_ns: u64::MAX,
        };
        let mut out = Vec::new();
        write(&mut out, stamp, MIN_SIZE);
        assert_eq!(out.len(), MIN_SIZE);
        assert_eq!(parse(&out), Some(stamp));
    }

    #[test]
    fn foreign_bodies_are_rejected() {
        for bad in [
            &b""[..],
            b"hello",
            b"1:2:3",
            b"1:2:x:",
            b":2:3:",
            b"1:-2:3:",
            b"99999999999999999999999:1:1:",
            b"4294967296:1:1:",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(b"1:2:3:").is_some());
    }
}
