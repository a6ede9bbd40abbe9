//! Framing shared by both directions: header lines, fields and bodies
//! (docs/protocol.md, "Framing").

use crate::error::{ErrorCode, ProtoError};
use crate::num::{is_digits, parse_u64};

pub(crate) const LINE_TOO_LONG: ProtoError =
    ProtoError::new(ErrorCode::TooLong, "header line over the limit");
pub(crate) const BODY_TOO_LONG: ProtoError =
    ProtoError::new(ErrorCode::TooLong, "body over the limit");
pub(crate) const BODY_NO_LF: ProtoError =
    ProtoError::new(ErrorCode::BadFrame, "counted body not followed by LF");

/// One header line found in a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// The line without its CR LF; never empty.
    pub text: &'a [u8],
    /// Offset just past the line's LF.
    pub end: usize,
}

/// Finds the first non-blank header line. `Ok(None)` means more bytes are
/// needed; the limit is enforced without looking past `max_line + 2` bytes of
/// any one line.
pub(crate) fn next_line(buf: &[u8], max_line: usize) -> Result<Option<Line<'_>>, ProtoError> {
    let mut start = 0;
    loop {
        let rest = buf.get(start..).unwrap_or_default();
        // A line may use max_line bytes, then CR, then LF.
        let window = rest.get(..max_line.saturating_add(2)).unwrap_or(rest);
        match window.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let raw = rest.get(..lf).unwrap_or_default();
                let text = raw.strip_suffix(b"\r").unwrap_or(raw);
                let end = start + lf + 1;
                if text.len() > max_line {
                    return Err(LINE_TOO_LONG);
                }
                if text.is_empty() {
                    start = end; // blank lines are ignored
                    continue;
                }
                return Ok(Some(Line { text, end }));
            }
            None => {
                let over = window.len() > max_line.saturating_add(1)
                    || (window.len() == max_line.saturating_add(1)
                        && window.last() != Some(&b'\r'));
                return if over { Err(LINE_TOO_LONG) } else { Ok(None) };
            }
        }
    }
}

/// Bytes of whole blank lines (`LF` or `CR LF`) at the front of `buf`. A
/// reader drops them when the decoder says `Incomplete`, so a peer sending
/// nothing but newlines never makes it buffer more.
pub fn leading_blank_lines(buf: &[u8]) -> usize {
    let mut used = 0;
    loop {
        match buf.get(used..) {
            Some([b'\n', ..]) => used += 1,
            Some([b'\r', b'\n', ..]) => used += 2,
            _ => return used,
        }
    }
}

/// Splits a line into its verb and the rest after the first space.
pub(crate) fn split_verb(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    match line.iter().position(|&b| b == b' ') {
        Some(sp) => (line.get(..sp).unwrap_or_default(), line.get(sp + 1..)),
        None => (line, None),
    }
}

/// Where a frame's body comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyForm<'a> {
    /// No body field.
    None,
    /// `:<text>` to the end of the line.
    Inline(&'a [u8]),
    /// A decimal length; `None` when it overflows a `u64`.
    Counted(Option<u64>),
}

/// Splits the fields after the verb into the fields before the body and the
/// body form: the first field starting with `:` starts an inline body;
/// otherwise a last field of digits announces a counted body.
pub(crate) fn split_body(rest: &[u8]) -> (&[u8], BodyForm<'_>) {
    let mut field_start = 0;
    loop {
        if rest.get(field_start) == Some(&b':') {
            let head = rest
                .get(..field_start.saturating_sub(1))
                .unwrap_or_default();
            let head = if field_start == 0 { &[][..] } else { head };
            return (
                head,
                BodyForm::Inline(rest.get(field_start + 1..).unwrap_or_default()),
            );
        }
        match rest
            .get(field_start..)
            .and_then(|r| r.iter().position(|&b| b == b' '))
        {
            Some(sp) => field_start += sp + 1,
            None => break,
        }
    }
    let last = rest.get(field_start..).unwrap_or_default();
    if is_digits(last) {
        let head = if field_start == 0 {
            &[][..]
        } else {
            rest.get(..field_start - 1).unwrap_or_default()
        };
        (head, BodyForm::Counted(parse_u64(last)))
    } else {
        (rest, BodyForm::None)
    }
}

/// Takes a counted body of `len` bytes starting at `start`, followed by LF or
/// CR LF. `Ok(None)`: need more bytes. Returns the body and the offset past
/// its terminator.
pub(crate) fn counted_body(
    buf: &[u8],
    start: usize,
    len: Option<u64>,
    max_body: usize,
) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let len = match len.and_then(|l| usize::try_from(l).ok()) {
        Some(l) if l <= max_body => l,
        _ => return Err(BODY_TOO_LONG),
    };
    let body_end = start.saturating_add(len);
    let Some(body) = buf.get(start..body_end) else {
        return Ok(None);
    };
    match buf.get(body_end) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((body, body_end + 1))),
        Some(b'\r') => match buf.get(body_end + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((body, body_end + 2))),
            Some(_) => Err(BODY_NO_LF),
        },
        Some(_) => Err(BODY_NO_LF),
    }
}

/// Iterates over single-space separated fields; an empty field (two spaces
/// in a row, a trailing space) comes out as an empty slice.
pub(crate) fn fields(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty = head.is_empty();
    head.split(|&b| b == b' ').filter(move |_| !empty)
}

/// Splits `head` into exactly `N` fields, all non-empty.
pub(crate) fn exact_fields<const N: usize>(head: &[u8]) -> Option<[&[u8]; N]> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut it = fields(head);
    for slot in out.iter_mut() {
        let f = it.next()?;
        if f.is_empty() {
            return None;
        }
        *slot = f;
    }
    if it.next().is_some() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_limits_at_and_over_the_edge() {
        let max = 8;
        let ok = b"12345678\n";
        assert_eq!(next_line(ok, max).unwrap().unwrap().text, b"12345678");
        let ok_cr = b"12345678\r\n";
        assert_eq!(next_line(ok_cr, max).unwrap().unwrap().text, b"12345678");
        // Max bytes then CR with the LF still to come: wait.
        assert_eq!(next_line(b"12345678\r", max).unwrap().map(|l| l.end), None);
        assert_eq!(next_line(b"12345678", max).unwrap().map(|l| l.end), None);
        assert_eq!(next_line(b"123456789", max).unwrap_err(), LINE_TOO_LONG);
        assert_eq!(next_line(b"123456789\n", max).unwrap_err(), LINE_TOO_LONG);
        assert_eq!(
            next_line(b"12345678\r\r\n", max).unwrap_err(),
            LINE_TOO_LONG
        );
    }

    #[test]
    fn blank_lines_are_skipped() {
        let l = next_line(b"\n\r\n\nLIST\n", 16).unwrap().unwrap();
        assert_eq!(l.text, b"LIST");
        assert_eq!(l.end, 9);
        assert!(next_line(b"\n\r\n", 16).unwrap().is_none());
    }

    #[test]
    fn leading_blank_lines_are_measured() {
        assert_eq!(leading_blank_lines(b""), 0);
        assert_eq!(leading_blank_lines(b"\n\r\n\nLIST"), 4);
        assert_eq!(leading_blank_lines(b"\n\r"), 1);
        assert_eq!(leading_blank_lines(b"LIST\n\n"), 0);
    }

    #[test]
    fn body_forms() {
        assert_eq!(
            split_body(b"bob :hi there"),
            (&b"bob"[..], BodyForm::Inline(b"hi there"))
        );
        assert_eq!(split_body(b":x :y"), (&b""[..], BodyForm::Inline(b"x :y")));
        assert_eq!(
            split_body(b"bob 12"),
            (&b"bob"[..], BodyForm::Counted(Some(12)))
        );
        assert_eq!(split_body(b"12"), (&b""[..], BodyForm::Counted(Some(12))));
        assert_eq!(split_body(b"bob"), (&b"bob"[..], BodyForm::None));
        assert_eq!(split_body(b"bob -1"), (&b"bob -1"[..], BodyForm::None));
        assert_eq!(
            split_body(b"bob 99999999999999999999999"),
            (&b"bob"[..], BodyForm::Counted(None))
        );
    }

    #[test]
    fn counted_bodies() {
        let buf = b"hello\nworld\nX";
        assert_eq!(
            counted_body(buf, 0, Some(11), 64),
            Ok(Some((&buf[..11], 12)))
        );
        assert_eq!(
            counted_body(b"hi\r\n", 0, Some(2), 64),
            Ok(Some((&b"hi"[..], 4)))
        );
        assert_eq!(counted_body(b"hi\r", 0, Some(2), 64), Ok(None));
        assert_eq!(counted_body(b"hi", 0, Some(2), 64), Ok(None));
        assert_eq!(counted_body(b"hiX", 0, Some(2), 64), Err(BODY_NO_LF));
        assert_eq!(counted_body(b"hi\rX", 0, Some(2), 64), Err(BODY_NO_LF));
        assert_eq!(counted_body(b"", 0, Some(65), 64), Err(BODY_TOO_LONG));
        assert_eq!(counted_body(b"", 0, None, 64), Err(BODY_TOO_LONG));
    }

    #[test]
    fn exact_field_counts() {
        assert_eq!(exact_fields::<2>(b"a b"), Some([&b"a"[..], b"b"]));
        assert_eq!(exact_fields::<2>(b"a"), None);
        assert_eq!(exact_fields::<2>(b"a b c"), None);
        assert_eq!(exact_fields::<2>(b"a  b"), None);
        assert_eq!(exact_fields::<1>(b""), None);
        assert_eq!(exact_fields::<0>(b""), Some([]));
        assert_eq!(exact_fields::<0>(b"x"), None);
    }
}
