//! Fuzzes the IRC codec (`protocol::irc`) the way the broker's IRC door
//! drives it: decode a whole buffer line by line, then feed the same bytes
//! to the encoders.
//!
//! Checked on every decode step (the same contract as `fuzz/src/lib.rs`
//! checks for the native codec, for IRC's own answers):
//! - no panic;
//! - `consumed` is > 0, <= the bytes left, and ends just past an LF;
//! - the answer depends only on the line's own bytes: decoding exactly the
//!   consumed bytes gives the same answer, one byte less is `Incomplete`;
//! - `Incomplete` holds fewer than `MAX_BUFFERED` bytes and no LF, `Fatal`
//!   has no LF in its first `MAX_BUFFERED` bytes;
//! - a decoded message is sane (at most 15 params, middles are non-empty
//!   words, no CR, LF or NUL anywhere) and re-encodes canonically with
//!   `push_command` to the same message;
//! - a decoded `PRIVMSG`/`NOTICE` re-encoded with `push_message` decodes to
//!   the same command, target and text.
//!
//! And for the encoders, with the input cut into arbitrary names and texts:
//! every line ends in CR LF, has no CR, LF or NUL inside, is at most 512
//! bytes without its tags, and decodes as one whole line that is not over
//! a limit.

#![no_main]

use protocol::irc::{
    decode, push_command, push_message, push_numeric, IrcDecoded, IrcMessage, MAX_BUFFERED,
    MAX_LINE, MAX_TAGS,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    drive(data);
    encoders(data);
});

fn drive(data: &[u8]) {
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let got = decode(rest);
        let consumed = match got {
            IrcDecoded::Incomplete => {
                assert!(rest.len() < MAX_BUFFERED);
                assert!(!rest.contains(&b'\n'));
                for cut in [0, rest.len() / 2, rest.len().saturating_sub(1)] {
                    assert_eq!(decode(&rest[..cut]), IrcDecoded::Incomplete);
                }
                return;
            }
            IrcDecoded::Fatal => {
                assert!(rest.len() >= MAX_BUFFERED);
                assert!(!rest[..MAX_BUFFERED].contains(&b'\n'));
                assert_eq!(decode(&rest[..MAX_BUFFERED]), IrcDecoded::Fatal);
                assert_eq!(decode(&rest[..MAX_BUFFERED - 1]), IrcDecoded::Incomplete);
                return;
            }
            IrcDecoded::Message { consumed, .. }
            | IrcDecoded::Empty { consumed }
            | IrcDecoded::TooLong { consumed }
            | IrcDecoded::Invalid { consumed } => consumed,
        };
        assert!(consumed > 0 && consumed <= rest.len());
        assert_eq!(rest[consumed - 1], b'\n');
        let line = &rest[..consumed];
        assert_eq!(decode(line), got);
        assert_eq!(decode(&rest[..consumed - 1]), IrcDecoded::Incomplete);
        match got {
            IrcDecoded::Message { msg, .. } => {
                check_message(&msg, line);
                canonical_round_trip(&msg);
                privmsg_round_trip(&msg);
            }
            IrcDecoded::Empty { .. } => {
                assert!(line == b"\n" || line == b"\r\n");
            }
            _ => {}
        }
        pos += consumed;
    }
}

fn check_message(msg: &IrcMessage<'_>, line: &[u8]) {
    let params = msg.params();
    assert!(params.len() <= 15);
    assert!(!msg.command.is_empty());
    let middles = params.len() - usize::from(msg.has_trailing());
    for (i, p) in params.iter().enumerate() {
        assert!(!p.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        // The 15th param may be the rest of the line without a ':'.
        if i < middles && i < 14 {
            assert!(!p.is_empty() && !p.contains(&b' ') && p[0] != b':');
        }
    }
    for (i, p) in params.iter().enumerate() {
        assert_eq!(msg.param(i), Some(*p));
    }
    assert_eq!(msg.param(params.len()), None);
    // Within the limits: tags section and the rest.
    let sans_tags = match msg.tags {
        Some(t) => {
            assert!(t.len() + 2 <= MAX_TAGS);
            &line[t.len() + 2..]
        }
        None => line,
    };
    let text = sans_tags.strip_suffix(b"\n").unwrap_or(sans_tags);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    assert!(text.len() <= MAX_LINE - 2);
}

/// `push_command` writes the message in canonical form (single spaces, no
/// tags), which is never longer, so it decodes to the same message.
fn canonical_round_trip(msg: &IrcMessage<'_>) {
    let params = msg.params();
    if params.len() == 15 && !msg.has_trailing() {
        return; // a 15th param with spaces can't be written as a middle
    }
    if msg.prefix.is_some_and(|p| p.starts_with(':')) {
        return; // a word's leading ':' is written as '_'
    }
    let Some(strs) = params
        .iter()
        .map(|p| std::str::from_utf8(p).ok())
        .collect::<Option<Vec<&str>>>()
    else {
        return;
    };
    let (middles, trailing) = if msg.has_trailing() {
        let (last, middles) = strs.split_last().unwrap();
        (middles, Some(*last))
    } else {
        (&strs[..], None)
    };
    let mut out = Vec::new();
    push_command(&mut out, None, msg.prefix, msg.command, middles, trailing);
    check_wire(&out);
    match decode(&out) {
        IrcDecoded::Message {
            msg: again,
            consumed,
        } => {
            assert_eq!(consumed, out.len());
            assert_eq!(again.prefix, msg.prefix);
            assert_eq!(again.command, msg.command);
            assert_eq!(again.params(), msg.params());
            assert_eq!(again.has_trailing(), msg.has_trailing());
        }
        other => panic!("{msg:?} re-encoded as {out:?} decodes to {other:?}"),
    }
}

/// A PRIVMSG or NOTICE carried to another client keeps its command, target
/// and text, however `push_message` has to split it.
fn privmsg_round_trip(msg: &IrcMessage<'_>) {
    let command = msg.command;
    if !(command.eq_ignore_ascii_case("PRIVMSG") || command.eq_ignore_ascii_case("NOTICE")) {
        return;
    }
    // The target must be a middle param, within push_message's 128-byte cap.
    let (Some(target), Some(text)) = (msg.param_str(0), msg.param(1)) else {
        return;
    };
    if target.len() > 128 {
        return;
    }
    for time in [None, Some(0), Some(u64::MAX)] {
        let mut out = Vec::new();
        push_message(&mut out, time, "n", "h", command, target, text);
        let mut got = Vec::new();
        for line in check_wire(&out) {
            match decode(line) {
                IrcDecoded::Message { msg: m, consumed } => {
                    assert_eq!(consumed, line.len());
                    assert_eq!(m.prefix, Some("n!n@h"));
                    assert_eq!(m.command, command);
                    assert_eq!(m.param_str(0), Some(target));
                    assert_eq!(m.params().len(), 2);
                    assert!(m.has_trailing());
                    got.extend_from_slice(m.param(1).unwrap());
                }
                other => panic!("{out:?}: {other:?}"),
            }
        }
        assert_eq!(got, text);
    }
}

/// Arbitrary names and texts through every encoder.
fn encoders(data: &[u8]) {
    let mut pieces = data.split(|&b| b == 0xFE);
    let mut next = || String::from_utf8_lossy(pieces.next().unwrap_or_default()).into_owned();
    let (nick, host, command, target, word) = (next(), next(), next(), next(), next());
    let trailing = next();
    let time = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()));

    let mut out = Vec::new();
    push_message(&mut out, time, &nick, &host, &command, &target, data);
    for line in check_wire(&out) {
        whole_line(line);
    }
    out.clear();
    let params = [word.as_str(), target.as_str(), ""];
    push_command(
        &mut out,
        time,
        Some(&nick),
        &command,
        &params,
        Some(&trailing),
    );
    push_command(&mut out, None, None, &command, &params, None);
    push_numeric(&mut out, &host, 353, &target, &params, Some(&trailing));
    let lines = check_wire(&out);
    assert_eq!(lines.len(), 3);
    for line in lines {
        whole_line(line);
    }
}

/// Splits encoder output into lines, checking the wire invariants.
fn check_wire(out: &[u8]) -> Vec<&[u8]> {
    assert!(out.ends_with(b"\r\n"));
    let mut lines = Vec::new();
    let mut rest = out;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..=lf];
        assert!(line.ends_with(b"\r\n"));
        let inner = &line[..line.len() - 2];
        assert!(!inner.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        let sans_tags = if inner.first() == Some(&b'@') {
            let sp = inner.iter().position(|&b| b == b' ').unwrap();
            assert!(sp < MAX_TAGS);
            &line[sp + 1..]
        } else {
            line
        };
        assert!(sans_tags.len() <= MAX_LINE);
        lines.push(line);
        rest = &rest[lf + 1..];
    }
    assert!(rest.is_empty());
    lines
}

/// An encoded line decodes as one whole line, never over a limit (it may be
/// Invalid when the names given were nonsense, e.g. an empty command).
fn whole_line(line: &[u8]) {
    match decode(line) {
        IrcDecoded::Message { consumed, .. } | IrcDecoded::Invalid { consumed } => {
            assert_eq!(consumed, line.len());
        }
        other => panic!("{line:?}: {other:?}"),
    }
}
