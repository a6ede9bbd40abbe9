#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Tests of the IRC codec (`protocol::irc`) against docs/irc.md and RFC
//! 1459/2812 + IRCv3 message tags.
//!
//! Decoding: real client lines as irssi, WeeChat and HexChat send them; every
//! limit at and just over its edge; invalid lines and their `consumed`; a
//! stream cut at every byte yields the same messages (nats-server's
//! `split_test.go`). Encoding: exact bytes, the server-time date conversion
//! checked against a slow independent count, line splitting, and property
//! tests that nothing an encoder writes can break the framing.

use proptest::prelude::*;
use protocol::irc::{
    decode, eq_nick, is_channel, mask_matches, push_command, push_message, push_numeric,
    push_time_tag, split_targets, IrcDecoded, IrcMessage, MAX_BUFFERED, MAX_LINE, MAX_TAGS,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// An owned view of a decode answer, to compare across buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Msg {
        tags: Option<String>,
        prefix: Option<String>,
        command: String,
        params: Vec<Vec<u8>>,
        trailing: bool,
    },
    Empty,
    TooLong,
    Invalid,
}

fn own(msg: &IrcMessage<'_>) -> Got {
    Got::Msg {
        tags: msg.tags.map(str::to_owned),
        prefix: msg.prefix.map(str::to_owned),
        command: msg.command.to_owned(),
        params: msg.params().iter().map(|p| p.to_vec()).collect(),
        trailing: msg.has_trailing(),
    }
}

/// Decodes `buf` as exactly one message that uses every byte.
#[track_caller]
fn msg(buf: &[u8]) -> IrcMessage<'_> {
    match decode(buf) {
        IrcDecoded::Message { msg, consumed } => {
            assert_eq!(
                consumed,
                buf.len(),
                "consumed of {:?}",
                String::from_utf8_lossy(buf)
            );
            msg
        }
        other => panic!("{:?} → {other:?}", String::from_utf8_lossy(buf)),
    }
}

#[track_caller]
fn params<'a>(m: &IrcMessage<'a>) -> Vec<&'a str> {
    m.params()
        .iter()
        .map(|p| std::str::from_utf8(p).unwrap())
        .collect()
}

/// Decodes a whole stream step by step the way a reader would.
fn decode_all(mut buf: &[u8]) -> (Vec<Got>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    loop {
        let (got, consumed) = match decode(buf) {
            IrcDecoded::Incomplete | IrcDecoded::Fatal => return (out, used),
            IrcDecoded::Message { msg, consumed } => (own(&msg), consumed),
            IrcDecoded::Empty { consumed } => (Got::Empty, consumed),
            IrcDecoded::TooLong { consumed } => (Got::TooLong, consumed),
            IrcDecoded::Invalid { consumed } => (Got::Invalid, consumed),
        };
        assert!(consumed > 0 && consumed <= buf.len());
        out.push(got);
        used += consumed;
        buf = &buf[consumed..];
    }
}

/// A reader that receives `chunks` one after another into a buffer and
/// decodes whatever is whole after each arrival.
fn read_in_chunks<'c>(chunks: impl IntoIterator<Item = &'c [u8]>) -> Vec<Got> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let (got, used) = decode_all(&buf);
        out.extend(got);
        buf.drain(..used);
        assert!(buf.len() < MAX_BUFFERED);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    out
}

/// Splits encoder output into lines, checking the wire invariants of every
/// line: ends in CR LF, no CR, LF or NUL inside, at most MAX_LINE bytes
/// without its tag section. Returns each line with its CR LF.
#[track_caller]
fn wire_lines(out: &[u8]) -> Vec<&[u8]> {
    assert!(out.ends_with(b"\r\n"), "{out:?}");
    let mut lines = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let lf = rest.iter().position(|&b| b == b'\n').unwrap();
        let line = &rest[..=lf];
        assert!(line.ends_with(b"\r\n"), "{line:?}");
        let inner = &line[..line.len() - 2];
        assert!(
            !inner.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "{inner:?}"
        );
        let sans_tags = if inner.first() == Some(&b'@') {
            let sp = inner.iter().position(|&b| b == b' ').unwrap();
            assert!(sp < MAX_TAGS, "tag section of {} bytes", sp + 1);
            &line[sp + 1..]
        } else {
            line
        };
        assert!(sans_tags.len() <= MAX_LINE, "{} bytes", sans_tags.len());
        lines.push(line);
        rest = &rest[lf + 1..];
    }
    lines
}

// ---------------------------------------------------------------------------
// Decoding: what real clients send
// ---------------------------------------------------------------------------

#[test]
fn registration_lines() {
    let m = msg(b"CAP LS 302\r\n");
    assert_eq!((m.tags, m.prefix, m.command), (None, None, "CAP"));
    assert_eq!(params(&m), ["LS", "302"]);
    assert!(!m.has_trailing());

    let m = msg(b"CAP REQ :server-time echo-message\r\n");
    assert_eq!(params(&m), ["REQ", "server-time echo-message"]);
    assert!(m.has_trailing());

    let m = msg(b"NICK alice\r\n");
    assert_eq!((m.command, params(&m)), ("NICK", vec!["alice"]));

    let m = msg(b"USER alice 0 * :Alice A\r\n");
    assert_eq!(m.command, "USER");
    assert_eq!(params(&m), ["alice", "0", "*", "Alice A"]);
    assert!(m.has_trailing());

    let m = msg(b"PASS :secret word\r\n");
    assert_eq!(params(&m), ["secret word"]);

    let m = msg(b"CAP END\r\n");
    assert_eq!(params(&m), ["END"]);
}

#[test]
fn messages_and_targets() {
    let m = msg(b"PRIVMSG #rust :hello there\r\n");
    assert_eq!(m.command, "PRIVMSG");
    assert_eq!(m.param(0), Some(&b"#rust"[..]));
    assert_eq!(m.param_str(1), Some("hello there"));
    assert_eq!(m.param(2), None);
    assert!(m.has_trailing());

    let m = msg(b"PRIVMSG bob,carol :hi\r\n");
    let targets: Vec<_> = split_targets(m.param_str(0).unwrap()).collect();
    assert_eq!(targets, ["bob", "carol"]);

    let m = msg(b"NOTICE bob :psst\n");
    assert_eq!((m.command, params(&m)), ("NOTICE", vec!["bob", "psst"]));

    // A one-word text without ':' (some scripts send it) is a middle param.
    let m = msg(b"PRIVMSG bob hi\r\n");
    assert_eq!(params(&m), ["bob", "hi"]);
    assert!(!m.has_trailing());

    // The trailing keeps its spaces and its own colons.
    let m = msg(b"PRIVMSG bob :  a :b  \r\n");
    assert_eq!(m.param_str(1), Some("  a :b  "));
    let m = msg(b"PRIVMSG bob ::)\r\n");
    assert_eq!(m.param_str(1), Some(":)"));
}

#[test]
fn empty_trailing_is_not_a_missing_one() {
    let m = msg(b"PRIVMSG bob :\r\n");
    assert_eq!(m.params(), [&b"bob"[..], b""]);
    assert!(m.has_trailing());

    let m = msg(b"PRIVMSG bob\r\n");
    assert_eq!(m.params(), [&b"bob"[..]]);
    assert!(!m.has_trailing());

    let m = msg(b"PRIVMSG\r\n");
    assert!(m.params().is_empty());
    assert!(!m.has_trailing());
    assert_eq!(m.param_str(0), None);

    let m = msg(b"PRIVMSG :\r\n");
    assert_eq!(m.params(), [&b""[..]]);
    assert!(m.has_trailing());
}

#[test]
fn tags_and_prefix() {
    let m = msg(b"@label=x PRIVMSG bob :hi\r\n");
    assert_eq!(m.tags, Some("label=x"));
    assert_eq!(m.prefix, None);
    assert_eq!(params(&m), ["bob", "hi"]);

    let m = msg(b":alice PRIVMSG bob :x\r\n");
    assert_eq!(m.prefix, Some("alice"));
    assert_eq!(params(&m), ["bob", "x"]);

    let m = msg(b"@a=1;+draft/reply=2;b :alice!a@host.example PRIVMSG bob :x\r\n");
    assert_eq!(m.tags, Some("a=1;+draft/reply=2;b"));
    assert_eq!(m.prefix, Some("alice!a@host.example"));

    let m = msg(b"@ PING x\r\n");
    assert_eq!(m.tags, Some(""));
    assert_eq!(m.command, "PING");

    let m = msg(b"@time=2020-01-01T00:00:00.000Z   :srv   PONG   srv   :tok\r\n");
    assert_eq!(m.tags, Some("time=2020-01-01T00:00:00.000Z"));
    assert_eq!(m.prefix, Some("srv"));
    assert_eq!(params(&m), ["srv", "tok"]);
}

#[test]
fn ping_mode_join_quit() {
    let m = msg(b"PING :irc.example\r\n");
    assert_eq!((m.command, params(&m)), ("PING", vec!["irc.example"]));
    let m = msg(b"PING irc.example\r\n");
    assert_eq!(params(&m), ["irc.example"]);
    let m = msg(b"PING\r\n");
    assert!(m.params().is_empty());

    let m = msg(b"MODE #rust\r\n");
    assert_eq!((m.command, params(&m)), ("MODE", vec!["#rust"]));
    let m = msg(b"MODE alice +i\r\n");
    assert_eq!(params(&m), ["alice", "+i"]);

    let m = msg(b"JOIN #a,#b\r\n");
    let rooms: Vec<_> = split_targets(m.param_str(0).unwrap()).collect();
    assert_eq!(rooms, ["#a", "#b"]);
    assert!(rooms.iter().all(|r| is_channel(r)));

    let m = msg(b"QUIT\r\n");
    assert_eq!(m.command, "QUIT");
    assert!(m.params().is_empty());
    let m = msg(b"QUIT :Leaving.\r\n");
    assert_eq!(params(&m), ["Leaving."]);
}

#[test]
fn lowercase_commands_and_numerics() {
    let m = msg(b"privmsg bob :hi\r\n");
    assert_eq!(m.command, "privmsg");
    assert!(m.command.eq_ignore_ascii_case("PRIVMSG"));
    let m = msg(b"Nick alice\n");
    assert_eq!(m.command, "Nick");

    let m = msg(b":srv 001 alice :Welcome\r\n");
    assert_eq!(m.command, "001");
    assert_eq!(params(&m), ["alice", "Welcome"]);
}

#[test]
fn runs_of_spaces_are_one_separator() {
    let m = msg(b"PRIVMSG   bob    :hi  there\r\n");
    assert_eq!(params(&m), ["bob", "hi  there"]);
    let m = msg(b"   NICK alice   \r\n");
    assert_eq!((m.command, params(&m)), ("NICK", vec!["alice"]));
    let m = msg(b"  :alice  MODE  #rust  +o  bob \n");
    assert_eq!(m.prefix, Some("alice"));
    assert_eq!(params(&m), ["#rust", "+o", "bob"]);
}

#[test]
fn lf_and_crlf_endings() {
    assert_eq!(own(&msg(b"NICK alice\n")), own(&msg(b"NICK alice\r\n")));
    let m = msg(b"PRIVMSG bob :hi\n");
    assert_eq!(m.param_str(1), Some("hi"));
    // Only one CR before LF belongs to the terminator.
    assert_eq!(
        decode(b"NICK alice\r\r\n"),
        IrcDecoded::Invalid { consumed: 13 }
    );
}

#[test]
fn blank_lines() {
    assert_eq!(decode(b"\n"), IrcDecoded::Empty { consumed: 1 });
    assert_eq!(decode(b"\r\n"), IrcDecoded::Empty { consumed: 2 });
    assert_eq!(decode(b"\r\nNICK a\r\n"), IrcDecoded::Empty { consumed: 2 });
    assert_eq!(decode(b"\r"), IrcDecoded::Incomplete);
    assert_eq!(decode(b""), IrcDecoded::Incomplete);
    // Spaces alone are not blank: there is no command.
    assert_eq!(decode(b"   \r\n"), IrcDecoded::Invalid { consumed: 5 });
}

#[test]
fn fifteen_params_at_most() {
    let m = msg(b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\r\n");
    assert_eq!(m.params().len(), 15);
    assert!(!m.has_trailing());
    // Past 14 middles, the rest of the line is the 15th param (RFC 2812).
    let m = msg(b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16  17\r\n");
    assert_eq!(m.params().len(), 15);
    assert_eq!(m.param_str(14), Some("15 16  17"));
    assert!(!m.has_trailing());
    let m = msg(b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 :15 16\r\n");
    assert_eq!(m.param_str(14), Some("15 16"));
    assert!(m.has_trailing());
    let m = msg(b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 :14 15 16\r\n");
    assert_eq!(m.params().len(), 14);
    assert_eq!(m.param_str(13), Some("14 15 16"));
}

#[test]
fn params_are_bytes() {
    let m = msg(b"PRIVMSG bob :caf\xe9\r\n");
    assert_eq!(m.param(1), Some(&b"caf\xe9"[..]));
    assert_eq!(m.param_str(1), None);
    assert_eq!(m.param_str(0), Some("bob"));
    let m = msg("PRIVMSG #rust :héllo 😀\r\n".as_bytes());
    assert_eq!(m.param_str(1), Some("héllo 😀"));
}

// ---------------------------------------------------------------------------
// Decoding: invalid lines
// ---------------------------------------------------------------------------

#[test]
fn invalid_lines_and_their_consumed() {
    let cases: [&[u8]; 16] = [
        b"NICK a\0b\r\n",
        b"\0\r\n",
        b"PRIVMSG bob :a\rb\r\n",
        b"\rNICK a\n",
        b"PRIVMSG bob :hi\r\r\n",
        b":alice\r\n",        // no command
        b": PRIVMSG bob\r\n", // empty prefix
        b":\r\n",
        b"@label=x\r\n", // tags, no command
        b"@label=x :alice\r\n",
        b"PRIV-MSG bob\r\n", // not letters
        b"12 bob\r\n",       // not three digits
        b"1234 bob\r\n",
        b"NICK1 a\r\n",
        b":al\xffice NICK a\r\n", // prefix not UTF-8
        b"@a=\xff NICK a\r\n",    // tags not UTF-8
    ];
    for case in cases {
        assert_eq!(
            decode(case),
            IrcDecoded::Invalid {
                consumed: case.len()
            },
            "{:?}",
            String::from_utf8_lossy(case)
        );
        // The next line is found right after.
        let mut buf = case.to_vec();
        buf.extend_from_slice(b"NICK z\r\n");
        let (got, used) = decode_all(&buf);
        assert_eq!(used, buf.len());
        assert_eq!(got[0], Got::Invalid);
        assert_eq!(got.len(), 2);
    }
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// `PRIVMSG bob :` and text up to `len` bytes before the terminator.
fn line_of(len: usize) -> Vec<u8> {
    let mut v = b"PRIVMSG bob :".to_vec();
    v.resize(len, b'x');
    v
}

#[test]
fn line_limit_at_and_over_the_edge() {
    let mut ok = line_of(510);
    ok.extend_from_slice(b"\r\n");
    assert_eq!(ok.len(), MAX_LINE);
    assert_eq!(msg(&ok).param(1).unwrap().len(), 510 - 13);

    let mut ok_lf = line_of(510);
    ok_lf.push(b'\n');
    msg(&ok_lf);

    // 511 bytes are over, with either terminator.
    for end in [&b"\r\n"[..], b"\n"] {
        let mut over = line_of(511);
        over.extend_from_slice(end);
        assert_eq!(
            decode(&over),
            IrcDecoded::TooLong {
                consumed: over.len()
            }
        );
    }

    // A too-long line is skipped and the stream goes on.
    let mut buf = line_of(600);
    buf.extend_from_slice(b"\r\nNICK a\r\n");
    let (got, used) = decode_all(&buf);
    assert_eq!(used, buf.len());
    assert_eq!(got[0], Got::TooLong);
    assert!(matches!(&got[1], Got::Msg { command, .. } if command == "NICK"));
}

#[test]
fn tag_limit_at_and_over_the_edge() {
    // '@', tags, ' ': MAX_TAGS bytes in all, then a full 510-byte line.
    let tags = |n: usize| {
        let mut v = b"@a=".to_vec();
        v.resize(n - 1, b'x');
        v.push(b' ');
        v
    };
    let mut ok = tags(MAX_TAGS);
    ok.extend_from_slice(&line_of(510));
    ok.extend_from_slice(b"\r\n");
    assert_eq!(ok.len(), MAX_BUFFERED);
    let m = msg(&ok);
    assert_eq!(m.tags.unwrap().len(), MAX_TAGS - 2);

    let mut over_tags = tags(MAX_TAGS + 1);
    over_tags.extend_from_slice(b"NICK a\r\n");
    assert_eq!(
        decode(&over_tags),
        IrcDecoded::TooLong {
            consumed: over_tags.len()
        }
    );

    let mut over_line = tags(20);
    over_line.extend_from_slice(&line_of(511));
    over_line.extend_from_slice(b"\r\n");
    assert_eq!(
        decode(&over_line),
        IrcDecoded::TooLong {
            consumed: over_line.len()
        }
    );

    // Extra spaces after the tag section count for the line.
    let mut spaced = tags(20);
    spaced.push(b' ');
    spaced.extend_from_slice(&line_of(510));
    spaced.extend_from_slice(b"\r\n");
    assert!(matches!(decode(&spaced), IrcDecoded::TooLong { .. }));

    // Tags alone, too long even for the tag section.
    let mut only = tags(MAX_TAGS);
    only.pop();
    only.push(b'x');
    only.push(b'\n');
    assert!(matches!(decode(&only), IrcDecoded::TooLong { .. }));
}

#[test]
fn no_lf_within_the_limit_is_fatal() {
    assert_eq!(MAX_BUFFERED, 4608);
    let junk = vec![b'x'; MAX_BUFFERED];
    assert_eq!(decode(&junk[..MAX_BUFFERED - 1]), IrcDecoded::Incomplete);
    assert_eq!(decode(&junk), IrcDecoded::Fatal);
    let mut longer = junk.clone();
    longer.extend_from_slice(b"\r\nNICK a\r\n");
    assert_eq!(decode(&longer), IrcDecoded::Fatal);

    // A line whose LF is the last byte the decoder looks at is whole.
    let mut edge = vec![b'x'; MAX_BUFFERED - 1];
    edge.push(b'\n');
    assert_eq!(
        decode(&edge),
        IrcDecoded::TooLong {
            consumed: MAX_BUFFERED
        }
    );
    // With CR LF at the edge: the CR is the 4607th byte, so wait for the LF.
    let mut cr = vec![b'x'; MAX_BUFFERED - 2];
    cr.push(b'\r');
    assert_eq!(decode(&cr), IrcDecoded::Incomplete);
}

#[test]
fn incomplete_never_needs_more_than_the_limit() {
    // Every prefix of the longest valid line needs more bytes, and none
    // holds MAX_BUFFERED bytes.
    let mut ok = b"@".to_vec();
    ok.resize(MAX_TAGS - 1, b't');
    ok.push(b' ');
    ok.extend_from_slice(&line_of(510));
    ok.extend_from_slice(b"\r\n");
    for cut in (0..ok.len()).step_by(7).chain([ok.len() - 2, ok.len() - 1]) {
        assert_eq!(decode(&ok[..cut]), IrcDecoded::Incomplete, "cut {cut}");
        assert!(cut < MAX_BUFFERED);
    }
    msg(&ok);
}

// ---------------------------------------------------------------------------
// Splitting: the same messages however the stream is cut
// ---------------------------------------------------------------------------

fn stream() -> Vec<u8> {
    let mut s = Vec::new();
    for line in [
        &b"CAP LS 302\r\n"[..],
        b"NICK alice\r\n",
        b"USER alice 0 * :Alice A\r\n",
        b"\r\n",
        b"@label=x PRIVMSG bob :hi\n",
        b"PRIVMSG #rust :hello there\r\n",
        b"NICK a\0b\r\n",
        b"\n",
        b":alice PRIVMSG bob,carol :\r\n",
        b"privmsg   bob  :x y\r\n",
        b"PING :irc.example\r\n",
    ] {
        s.extend_from_slice(line);
    }
    s.extend_from_slice(&line_of(700));
    s.extend_from_slice(b"\r\nQUIT\r\n");
    s
}

#[test]
fn every_cut_point_gives_the_same_messages() {
    let s = stream();
    let (whole, used) = decode_all(&s);
    assert_eq!(used, s.len());
    assert_eq!(whole.len(), 13);
    for cut in 0..=s.len() {
        let got = read_in_chunks([&s[..cut], &s[cut..]]);
        assert_eq!(got, whole, "cut at {cut}");
    }
    // One byte at a time, and every proper prefix of a line is Incomplete.
    assert_eq!(read_in_chunks(s.chunks(1)), whole);
    for i in 0..s.len() {
        let rest = &s[i..];
        if let Some(lf) = rest.iter().position(|&b| b == b'\n') {
            for cut in 0..=lf {
                assert_eq!(decode(&rest[..cut]), IrcDecoded::Incomplete);
            }
        }
    }
}

#[test]
fn random_chunk_sizes_give_the_same_messages() {
    let s = stream();
    let (whole, _) = decode_all(&s);
    for size in [2, 3, 5, 17, 64, 511, 512, 513] {
        assert_eq!(read_in_chunks(s.chunks(size)), whole, "chunks of {size}");
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

#[test]
fn numeric_exact_bytes() {
    let mut out = Vec::new();
    push_numeric(
        &mut out,
        "irc.example",
        1,
        "alice",
        &[],
        Some("Welcome to the chat, alice"),
    );
    assert_eq!(
        out,
        b":irc.example 001 alice :Welcome to the chat, alice\r\n"
    );

    out.clear();
    push_numeric(
        &mut out,
        "irc.example",
        5,
        "alice",
        &["CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=32"],
        Some("are supported by this server"),
    );
    assert_eq!(
        out,
        &b":irc.example 005 alice CASEMAPPING=ascii CHANTYPES=# NICKLEN=32 :are supported by this server\r\n"[..]
    );

    out.clear();
    push_numeric(
        &mut out,
        "srv",
        366,
        "alice",
        &["#rust"],
        Some("End of /NAMES list"),
    );
    push_numeric(
        &mut out,
        "srv",
        451,
        "",
        &[],
        Some("You have not registered"),
    );
    push_numeric(&mut out, "srv", 4, "alice", &["srv", "0.1", "i", "o"], None);
    assert_eq!(
        out,
        &b":srv 366 alice #rust :End of /NAMES list\r\n\
           :srv 451 * :You have not registered\r\n\
           :srv 004 alice srv 0.1 i o\r\n"[..]
    );

    // CR, LF, NUL in the trailing become spaces; in a word, '_'.
    out.clear();
    push_numeric(
        &mut out,
        "srv",
        421,
        "a b",
        &["X\r\nQUIT"],
        Some("a\r\nb\0c"),
    );
    assert_eq!(out, b":srv 421 a_b X__QUIT :a  b c\r\n");
    let m = msg(&out);
    assert_eq!(params(&m), ["a_b", "X__QUIT", "a  b c"]);
}

#[test]
fn numeric_trailing_is_cut_to_fit() {
    let mut out = Vec::new();
    let long = "é".repeat(400);
    push_numeric(&mut out, "srv", 353, "alice", &["=", "#rust"], Some(&long));
    let lines = wire_lines(&out);
    assert_eq!(lines.len(), 1);
    assert!(out.len() >= MAX_LINE - 1);
    let m = msg(&out);
    let text = m.param_str(3).expect("cut at a character boundary");
    assert!(long.starts_with(text));
}

#[test]
fn commands_exact_bytes() {
    let mut out = Vec::new();
    push_command(&mut out, None, None, "ERROR", &[], Some("Closing link"));
    push_command(&mut out, None, None, "PING", &[], Some("irc.example"));
    push_command(
        &mut out,
        None,
        Some("irc.example"),
        "PONG",
        &["irc.example"],
        Some("tok"),
    );
    push_command(
        &mut out,
        None,
        Some("alice!alice@srv"),
        "JOIN",
        &["#rust"],
        None,
    );
    push_command(
        &mut out,
        None,
        Some("alice!alice@srv"),
        "QUIT",
        &[],
        Some("Quit: bye"),
    );
    push_command(
        &mut out,
        None,
        Some("srv"),
        "CAP",
        &["*", "LS"],
        Some("server-time echo-message"),
    );
    push_command(
        &mut out,
        None,
        Some("alice!alice@srv"),
        "NICK",
        &[],
        Some("alice2"),
    );
    push_command(&mut out, None, Some("srv"), "MODE", &["#rust", "+nt"], None);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "ERROR :Closing link\r\n\
         PING :irc.example\r\n\
         :irc.example PONG irc.example :tok\r\n\
         :alice!alice@srv JOIN #rust\r\n\
         :alice!alice@srv QUIT :Quit: bye\r\n\
         :srv CAP * LS :server-time echo-message\r\n\
         :alice!alice@srv NICK :alice2\r\n\
         :srv MODE #rust +nt\r\n"
    );

    let mut out = Vec::new();
    push_command(&mut out, Some(0), Some("a!a@s"), "JOIN", &["#r"], None);
    assert_eq!(out, b"@time=1970-01-01T00:00:00.000Z :a!a@s JOIN #r\r\n");
}

#[test]
fn command_words_cannot_break_the_line() {
    let mut out = Vec::new();
    push_command(
        &mut out,
        None,
        Some("evil\r\nQUIT"),
        "PRIVMSG",
        &[":x", "", "a b"],
        Some("\r\n"),
    );
    assert_eq!(out, b":evil__QUIT PRIVMSG _x * a_b :  \r\n");
    let m = msg(&out);
    assert_eq!(params(&m), ["_x", "*", "a_b", "  "]);

    // A command can't pass for tags, even when the line has no prefix.
    out.clear();
    push_command(&mut out, None, None, "@x=1", &[], None);
    assert_eq!(out, b"_x=1\r\n");
    assert_eq!(decode(&out), IrcDecoded::Invalid { consumed: 6 });

    // Words that can't fit are cut: the line stays within the limit.
    let huge = "w".repeat(600);
    out.clear();
    push_command(
        &mut out,
        Some(5),
        Some(&huge),
        "PING",
        &[&huge, &huge],
        Some(&huge),
    );
    wire_lines(&out);
    out.clear();
    push_command(&mut out, None, None, "MODE", &[&huge], Some("x"));
    let lines = wire_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(out.len(), MAX_LINE);
    out.clear();
    push_numeric(&mut out, &huge, 999, "a", &[], Some(&huge));
    wire_lines(&out);
    out.clear();
    push_numeric(&mut out, "s", u16::MAX, "a", &[], None);
    assert_eq!(out, b":s 999 a\r\n");
}

#[test]
fn privmsg_with_time_tag_exact_bytes() {
    let mut out = Vec::new();
    push_message(
        &mut out,
        Some(951_782_400_000),
        "alice",
        "irc.example",
        "PRIVMSG",
        "#rust",
        b"hello there",
    );
    assert_eq!(
        out,
        &b"@time=2000-02-29T00:00:00.000Z :alice!alice@irc.example PRIVMSG #rust :hello there\r\n"
            [..]
    );
    let m = msg(&out);
    assert_eq!(m.tags, Some("time=2000-02-29T00:00:00.000Z"));
    assert_eq!(m.prefix, Some("alice!alice@irc.example"));
    assert_eq!(params(&m), ["#rust", "hello there"]);

    out.clear();
    push_message(&mut out, None, "bob", "srv", "NOTICE", "alice", b"psst");
    assert_eq!(out, b":bob!bob@srv NOTICE alice :psst\r\n");
}

/// Independent, slow conversion: count whole years, then whole months.
fn slow_time_text(unix_ms: u64) -> String {
    fn leap(y: u64) -> bool {
        // Divisible by 4 and not by 100, or by 400.
        matches!((y % 4, y % 100, y % 400), (0, 1.., _) | (_, _, 0))
    }
    let mut days = unix_ms / 86_400_000;
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let month_len = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= month_len[month] {
        days -= month_len[month];
        month += 1;
    }
    let ms = unix_ms % 86_400_000;
    format!(
        "@time={year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z ",
        month + 1,
        days + 1,
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn time_text(unix_ms: u64) -> String {
    let mut out = Vec::new();
    push_time_tag(&mut out, unix_ms);
    String::from_utf8(out).unwrap()
}

#[test]
fn server_time_known_values() {
    assert_eq!(time_text(0), "@time=1970-01-01T00:00:00.000Z ");
    assert_eq!(
        time_text(951_782_400_000),
        "@time=2000-02-29T00:00:00.000Z "
    );
    assert_eq!(
        time_text(1_795_320_400_404),
        "@time=2026-11-22T04:06:40.404Z "
    );
    assert_eq!(
        time_text(1_795_320_400_404),
        slow_time_text(1_795_320_400_404)
    );
    assert_eq!(time_text(86_399_999), "@time=1970-01-01T23:59:59.999Z ");
    assert_eq!(
        time_text(4_107_542_400_000),
        "@time=2100-03-01T00:00:00.000Z "
    );
    assert_eq!(
        time_text(253_402_300_799_999),
        "@time=9999-12-31T23:59:59.999Z "
    );
    assert_eq!(
        time_text(253_402_300_800_000),
        "@time=10000-01-01T00:00:00.000Z "
    );
    // The largest input does not overflow.
    assert!(time_text(u64::MAX).starts_with("@time=584556019-"));
}

#[test]
fn server_time_matches_slow_count_over_the_years() {
    // Every day boundary from 1970 to 2200 (leap years, centuries, 2000),
    // with odd times of day.
    let day = 86_400_000u64;
    for d in 0..(230 * 366) {
        let ms = d * day + (d * 7_919_993) % day;
        assert_eq!(time_text(ms), slow_time_text(ms), "day {d}");
    }
}

#[test]
fn body_lines_become_messages() {
    let mut out = Vec::new();
    push_message(&mut out, None, "a", "s", "PRIVMSG", "b", b"one\ntwo");
    assert_eq!(out, b":a!a@s PRIVMSG b :one\r\n:a!a@s PRIVMSG b :two\r\n");

    out.clear();
    push_message(
        &mut out,
        None,
        "a",
        "s",
        "PRIVMSG",
        "b",
        b"one\r\n\r\n\ntwo\r\n",
    );
    assert_eq!(out, b":a!a@s PRIVMSG b :one\r\n:a!a@s PRIVMSG b :two\r\n");

    // Every line gets the time tag.
    out.clear();
    push_message(&mut out, Some(0), "a", "s", "PRIVMSG", "b", b"x\ny");
    assert_eq!(
        out,
        &b"@time=1970-01-01T00:00:00.000Z :a!a@s PRIVMSG b :x\r\n\
           @time=1970-01-01T00:00:00.000Z :a!a@s PRIVMSG b :y\r\n"[..]
    );
}

#[test]
fn empty_bodies_send_one_empty_message() {
    for body in [&b""[..], b"\n", b"\r\n", b"\n\n\r\n"] {
        let mut out = Vec::new();
        push_message(&mut out, None, "a", "s", "PRIVMSG", "b", body);
        assert_eq!(out, b":a!a@s PRIVMSG b :\r\n", "{body:?}");
        let m = msg(&out);
        assert_eq!(m.param(1), Some(&b""[..]));
        assert!(m.has_trailing());
    }
    // A line of spaces is not empty.
    let mut out = Vec::new();
    push_message(&mut out, None, "a", "s", "PRIVMSG", "b", b"  ");
    assert_eq!(out, b":a!a@s PRIVMSG b :  \r\n");
}

#[test]
fn stray_cr_and_nul_become_spaces() {
    let mut out = Vec::new();
    push_message(
        &mut out,
        None,
        "a",
        "s",
        "PRIVMSG",
        "b",
        b"a\rb\0c\r\r\nd\r",
    );
    assert_eq!(out, b":a!a@s PRIVMSG b :a b c \r\n:a!a@s PRIVMSG b :d\r\n");
    wire_lines(&out);
}

/// Decodes encoder output into the texts (param 1) of its messages,
/// checking the prefix, command and target of each.
fn texts(out: &[u8], prefix: &str, command: &str, target: &str) -> Vec<Vec<u8>> {
    wire_lines(out)
        .into_iter()
        .map(|line| {
            let m = msg(line);
            assert_eq!(m.prefix, Some(prefix));
            assert_eq!(m.command, command);
            assert_eq!(m.param_str(0), Some(target));
            assert_eq!(m.params().len(), 2);
            assert!(m.has_trailing());
            m.param(1).unwrap().to_vec()
        })
        .collect()
}

#[test]
fn long_lines_are_split_and_reassemble() {
    let line: Vec<u8> = (0..2000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = Vec::new();
    push_message(
        &mut out,
        Some(1_795_320_400_404),
        "alice",
        "irc.example",
        "PRIVMSG",
        "#rust",
        &line,
    );
    let parts = texts(&out, "alice!alice@irc.example", "PRIVMSG", "#rust");
    assert!(parts.len() >= 4, "{} parts", parts.len());
    assert_eq!(parts.concat(), line);
    // Each full part fills its line to exactly 512 bytes (sans tags).
    let first = wire_lines(&out)[0];
    assert_eq!(first.len() - 31, MAX_LINE);

    // Multi-byte characters are never cut.
    for s in ["é", "€", "😀", "a😀"] {
        let body = s.repeat(1000);
        let mut out = Vec::new();
        push_message(
            &mut out,
            None,
            "alice",
            "srv",
            "PRIVMSG",
            "bob",
            body.as_bytes(),
        );
        let parts = texts(&out, "alice!alice@srv", "PRIVMSG", "bob");
        for p in &parts {
            assert!(
                std::str::from_utf8(p).is_ok(),
                "{s}: cut inside a character"
            );
        }
        assert_eq!(parts.concat(), body.as_bytes());
    }
}

#[test]
fn message_heads_are_capped_and_sanitized() {
    let long = "n".repeat(300);
    let mut out = Vec::new();
    push_message(&mut out, None, &long, &long, "PRIVMSG", &long, b"hi");
    wire_lines(&out);
    let m = msg(&out);
    assert_eq!(m.param_str(1), Some("hi"));
    assert_eq!(m.param(0).unwrap().len(), 128);

    out.clear();
    push_message(&mut out, None, "a b", "", "PRIVMSG", ":x\r\n", b"hi");
    assert_eq!(out, b":a_b!a_b@* PRIVMSG _x__ :hi\r\n");
}

#[test]
fn helpers() {
    assert!(is_channel("#rust"));
    assert!(is_channel("#"));
    assert!(!is_channel("rust"));
    assert!(!is_channel(""));
    assert!(eq_nick("Alice", "aLICE"));
    assert!(!eq_nick("alice", "alic"));
    // CASEMAPPING=ascii: no rfc1459 folding of []\~.
    assert!(!eq_nick("a[", "a{"));
    assert!(!eq_nick("É", "é"));
    assert_eq!(split_targets("bob").collect::<Vec<_>>(), ["bob"]);
    assert_eq!(
        split_targets("bob,,carol,").collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    assert_eq!(split_targets(",").count(), 0);
    assert_eq!(split_targets("").count(), 0);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Bytes that look like IRC often enough to reach deep paths.
fn irc_ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"PRIVMSG ".to_vec()),
        Just(b"NICK ".to_vec()),
        Just(b"@a=b ".to_vec()),
        Just(b":pfx ".to_vec()),
        Just(b" :".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"001".to_vec()),
        "[a-z#,]{1,6}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1..4),
        (0usize..600).prop_map(|n| vec![b'x'; n]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1500),
        proptest::collection::vec(
            prop_oneof![
                Just(b"\r".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\0".to_vec()),
                Just("😀".as_bytes().to_vec()),
                Just("é".as_bytes().to_vec()),
                Just(vec![0xff]),
                Just(vec![0x80]),
                "[a-z ]{1,40}".prop_map(String::into_bytes),
                (1usize..700).prop_map(|n| vec![b'y'; n]),
            ],
            0..20
        )
        .prop_map(|v| v.concat()),
    ]
}

/// What the texts of `push_message(body)` must be, line by line.
fn expected_lines(body: &[u8]) -> Vec<Vec<u8>> {
    let lines: Vec<Vec<u8>> = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.iter()
                .map(|&b| if b == b'\r' || b == 0 { b' ' } else { b })
                .collect()
        })
        .collect();
    if lines.is_empty() {
        vec![Vec::new()]
    } else {
        lines
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_is_total_and_cut_independent(buf in irc_ish()) {
        let got = decode(&buf);
        match got {
            IrcDecoded::Incomplete => {
                prop_assert!(buf.len() < MAX_BUFFERED);
                prop_assert!(!buf.contains(&b'\n'));
            }
            IrcDecoded::Fatal => prop_assert!(buf.len() >= MAX_BUFFERED),
            IrcDecoded::Message { consumed, .. }
            | IrcDecoded::Empty { consumed }
            | IrcDecoded::TooLong { consumed }
            | IrcDecoded::Invalid { consumed } => {
                prop_assert!(consumed > 0 && consumed <= buf.len());
                prop_assert_eq!(buf[consumed - 1], b'\n');
                prop_assert_eq!(decode(&buf[..consumed]), got);
                prop_assert_eq!(decode(&buf[..consumed - 1]), IrcDecoded::Incomplete);
            }
        }
        // Reading the stream in any two pieces gives the same messages.
        let (whole, used) = decode_all(&buf);
        let cut = buf.len() / 2;
        if used == buf.len() {
            prop_assert_eq!(read_in_chunks([&buf[..cut], &buf[cut..]]), whole);
        }
    }

    #[test]
    fn decoded_messages_are_sane(buf in irc_ish()) {
        if let IrcDecoded::Message { msg, .. } = decode(&buf) {
            prop_assert!(msg.params().len() <= 15);
            prop_assert!(!msg.command.is_empty());
            for p in msg.params() {
                prop_assert!(!p.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            }
            let n = msg.params().len();
            for (i, p) in msg.params().iter().enumerate() {
                // Middles are non-empty words.
                if i + 1 < n {
                    prop_assert!(!p.is_empty() && !p.contains(&b' '));
                }
            }
        }
    }

    #[test]
    fn push_message_keeps_the_framing(
        body in body_strategy(),
        nick in "[A-Za-z][A-Za-z0-9_.-]{0,31}",
        target in "#?[A-Za-z][A-Za-z0-9_.-]{0,31}",
        time in proptest::option::of(any::<u64>()),
    ) {
        let mut out = Vec::new();
        push_message(&mut out, time, &nick, "irc.example", "PRIVMSG", &target, &body);
        let prefix = format!("{nick}!{nick}@irc.example");
        let parts = texts(&out, &prefix, "PRIVMSG", &target);
        // Group the parts back into the body's lines.
        let mut parts = parts.into_iter();
        for line in expected_lines(&body) {
            let mut got = Vec::new();
            while got.len() < line.len() || (line.is_empty() && got.is_empty()) {
                let p = parts.next().expect("a part for every line");
                prop_assert!(!p.is_empty() || line.is_empty());
                got.extend_from_slice(&p);
                if line.is_empty() { break; }
            }
            prop_assert_eq!(got, line);
        }
        prop_assert!(parts.next().is_none());
    }

    #[test]
    fn push_command_and_numeric_keep_the_framing(
        words in proptest::collection::vec(any::<String>(), 0..5),
        trailing in proptest::option::of(any::<String>()),
        long in 0usize..600,
    ) {
        let pad = "p".repeat(long);
        let mut params: Vec<&str> = words.iter().map(String::as_str).collect();
        params.push(&pad);
        let mut out = Vec::new();
        push_command(&mut out, Some(1), Some("srv"), "MODE", &params, trailing.as_deref());
        push_numeric(&mut out, "srv", 353, "alice", &params, trailing.as_deref());
        for line in wire_lines(&out) {
            match decode(line) {
                IrcDecoded::Message { msg, consumed } => {
                    prop_assert_eq!(consumed, line.len());
                    prop_assert_eq!(msg.prefix, Some("srv"));
                    // Words stay single words: only a trailing has spaces.
                    let middles = msg.params().len() - usize::from(msg.has_trailing());
                    for p in &msg.params()[..middles] {
                        prop_assert!(!p.is_empty() && !p.contains(&b' '));
                    }
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}

#[test]
fn who_masks_match_nicks_case_insensitively() {
    for (mask, name) in [
        ("*", "bob"),
        ("*", ""),
        ("bob", "BOB"),
        ("coolni*", "coolNick"),
        ("b?b", "bOb"),
        ("*o*", "bob"),
        ("a*b*c", "axxbyyc"),
        ("a*b", "abab"),
        ("**", "x"),
    ] {
        assert!(mask_matches(mask, name), "{mask} should match {name}");
    }
    for (mask, name) in [
        ("bob", "bobby"),
        ("b?b", "bb"),
        ("a*b", "abac"),
        ("", "a"),
        ("?", ""),
        ("eva*", "shivaram"),
    ] {
        assert!(!mask_matches(mask, name), "{mask} should not match {name}");
    }
    // Many stars against a long name: no blow-up.
    assert!(!mask_matches(&"*a".repeat(100), &"a".repeat(99)));
}
