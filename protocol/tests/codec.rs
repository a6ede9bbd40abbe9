#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Exhaustive tests of the v1 codec against the wire contract.
//!
//! Section numbers (§) are those of `docs/protocol.md`; the contract's own
//! headings are named in brackets where it helps ("[framing]" is the
//! contract's "Transport and framing", "[c→b]" its "Client → broker",
//! "[b→c]" its "Broker → client").
//!
//! Every frame of both directions is decoded in its inline and counted body
//! forms, with LF and CR LF, and encoded back; every limit is tried at and
//! just over its edge; every invalid frame is checked for its error code and
//! for `consumed`. The splitting tests at the end follow nats-server's
//! `split_test.go`: every proper prefix of a frame needs more bytes, and a
//! stream cut at every byte (and in random chunks) yields the same frames.

use protocol::{
    encode_msg, Decoded, ErrorCode, Event, Kind, LeftReason, Limits, Request, Targets, VERSION,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn lim() -> Limits {
    Limits::default()
}

#[track_caller]
fn req_frame(buf: &[u8]) -> Request<'_> {
    req_frame_with(buf, &lim())
}

/// Decodes `buf` as exactly one request frame that uses every byte.
#[track_caller]
fn req_frame_with<'a>(buf: &'a [u8], limits: &Limits) -> Request<'a> {
    match Request::decode(buf, limits) {
        Decoded::Frame { frame, consumed } => {
            assert_eq!(consumed, buf.len(), "consumed for {:?}", lossy(buf));
            frame
        }
        other => panic!("{:?}: expected a frame, got {other:?}", lossy(buf)),
    }
}

#[track_caller]
fn req_invalid(buf: &[u8], code: ErrorCode, consumed: usize) {
    req_invalid_with(buf, &lim(), code, consumed);
}

#[track_caller]
fn req_invalid_with(buf: &[u8], limits: &Limits, code: ErrorCode, consumed: usize) {
    match Request::decode(buf, limits) {
        Decoded::Invalid {
            error,
            consumed: got,
        } => {
            assert_eq!(error.code, code, "code for {:?}", lossy(buf));
            assert_eq!(got, consumed, "consumed for {:?}", lossy(buf));
            assert!(!error.reason.is_empty());
        }
        other => panic!("{:?}: expected Invalid {code}, got {other:?}", lossy(buf)),
    }
}

#[track_caller]
fn req_fatal(buf: &[u8], code: ErrorCode) {
    req_fatal_with(buf, &lim(), code);
}

#[track_caller]
fn req_fatal_with(buf: &[u8], limits: &Limits, code: ErrorCode) {
    match Request::decode(buf, limits) {
        Decoded::Fatal(error) => assert_eq!(error.code, code, "code for {:?}", lossy(buf)),
        other => panic!("{:?}: expected Fatal {code}, got {other:?}", lossy(buf)),
    }
}

#[track_caller]
fn req_incomplete(buf: &[u8]) {
    req_incomplete_with(buf, &lim());
}

#[track_caller]
fn req_incomplete_with(buf: &[u8], limits: &Limits) {
    let got = Request::decode(buf, limits);
    assert_eq!(got, Decoded::Incomplete, "{:?}", lossy(buf));
}

/// Decodes `buf` as exactly one event frame that uses every byte.
#[track_caller]
fn ev_frame(buf: &[u8]) -> Event<'_> {
    match Event::decode(buf, &lim()) {
        Decoded::Frame { frame, consumed } => {
            assert_eq!(consumed, buf.len(), "consumed for {:?}", lossy(buf));
            frame
        }
        other => panic!("{:?}: expected a frame, got {other:?}", lossy(buf)),
    }
}

#[track_caller]
fn ev_invalid(buf: &[u8], code: ErrorCode, consumed: usize) {
    match Event::decode(buf, &lim()) {
        Decoded::Invalid {
            error,
            consumed: got,
        } => {
            assert_eq!(error.code, code, "code for {:?}", lossy(buf));
            assert_eq!(got, consumed, "consumed for {:?}", lossy(buf));
        }
        other => panic!("{:?}: expected Invalid {code}, got {other:?}", lossy(buf)),
    }
}

#[track_caller]
fn ev_fatal(buf: &[u8], code: ErrorCode) {
    match Event::decode(buf, &lim()) {
        Decoded::Fatal(error) => assert_eq!(error.code, code, "code for {:?}", lossy(buf)),
        other => panic!("{:?}: expected Fatal {code}, got {other:?}", lossy(buf)),
    }
}

fn enc_req(r: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

fn enc_ev(e: &Event<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    e.encode(&mut out);
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The same bytes with every LF turned into CR LF.
fn crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() * 2);
    for &c in b {
        if c == b'\n' {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

fn send<'a>(targets: &'a str, body: &'a [u8]) -> Request<'a> {
    let targets = if targets == "*" {
        Targets::All
    } else {
        Targets::Names(targets)
    };
    Request::Send { targets, body }
}

// ---------------------------------------------------------------------------
// §1.2–1.4 Framing [framing]: verbs, line endings, blank lines
// ---------------------------------------------------------------------------

/// §1.6: verbs are case-insensitive on input, for every client verb.
#[test]
fn request_verbs_are_case_insensitive() {
    for verb in ["NAME", "name", "Name", "nAmE"] {
        let line = format!("{verb} alice\n");
        assert_eq!(req_frame(line.as_bytes()), Request::Name { name: "alice" });
    }
    for (line, want) in [
        (&b"list\n"[..], Request::List { room: None }),
        (b"List\n", Request::List { room: None }),
        (b"help\n", Request::Help),
        (b"HeLp\n", Request::Help),
        (b"ping\n", Request::Ping { token: None }),
        (b"quit\n", Request::Quit { reason: None }),
        (b"send bob :hi\n", send("bob", b"hi")),
        (b"SeNd * 2\nhi\n", send("*", b"hi")),
        (b"recv 7 bob\n", Request::Recv { id: 7, from: "bob" }),
    ] {
        assert_eq!(req_frame(line), want, "{:?}", lossy(line));
    }
}

/// §1.6: the broker writes verbs in upper case, and the client-side decoder
/// only accepts what the broker writes.
#[test]
fn event_verbs_are_upper_case() {
    ev_invalid(b"bye\n", ErrorCode::UnknownCommand, 4);
    ev_invalid(b"Pong\n", ErrorCode::UnknownCommand, 5);
    for e in all_events() {
        let bytes = enc_ev(&e);
        let verb_end = bytes.iter().position(|&b| b == b' ' || b == b'\n').unwrap();
        assert!(
            bytes[..verb_end].iter().all(|b| b.is_ascii_uppercase()),
            "{:?}",
            lossy(&bytes)
        );
    }
}

/// §1.4: a CR right before the LF is ignored, on headers and after bodies.
#[test]
fn crlf_is_accepted_everywhere() {
    for (wire, want) in [
        (&b"NAME alice\n"[..], Request::Name { name: "alice" }),
        (b"LIST\n", Request::List { room: None }),
        (b"SEND bob :hi there\n", send("bob", b"hi there")),
        (
            b"SEND bob 11\nhello\nworld\n",
            send("bob", b"hello\r\nworld"),
        ),
        (
            b"RECV 17 bob\n",
            Request::Recv {
                id: 17,
                from: "bob",
            },
        ),
        (b"PING\n", Request::Ping { token: None }),
        (b"PING abc\n", Request::Ping { token: Some("abc") }),
        (b"HELP\n", Request::Help),
        (b"QUIT\n", Request::Quit { reason: None }),
        (
            b"QUIT :gone\n",
            Request::Quit {
                reason: Some(b"gone"),
            },
        ),
        (
            b"QUIT 5\ngone!\n",
            Request::Quit {
                reason: Some(b"gone!"),
            },
        ),
    ] {
        let wire = crlf(wire);
        // The counted SEND above: its body gained a CR too (12 bytes then).
        let wire = if wire.starts_with(b"SEND bob 11") {
            [&b"SEND bob 12"[..], &wire[11..]].concat()
        } else {
            wire
        };
        assert_eq!(req_frame(&wire), want, "{:?}", lossy(&wire));
    }
    // A CR anywhere else stays part of the line.
    req_invalid(b"LIST\r\r\n", ErrorCode::UnknownCommand, 7);
    assert_eq!(
        req_frame(b"PING a\rb\r\n"),
        Request::Ping {
            token: Some("a\rb")
        }
    );
    // Counted body then CR LF, or then a lone LF.
    assert_eq!(req_frame(b"SEND bob 2\r\nhi\n"), send("bob", b"hi"));
    assert_eq!(req_frame(b"SEND bob 2\nhi\r\n"), send("bob", b"hi"));

    for e in all_events() {
        let wire = enc_ev(&e);
        let header_end = wire.iter().position(|&b| b == b'\n').unwrap();
        // CR LF on the header line (and after the body, if any).
        let mut with_cr = wire[..header_end].to_vec();
        with_cr.extend_from_slice(b"\r\n");
        let rest = &wire[header_end + 1..];
        if let Some(body) = rest.strip_suffix(b"\n") {
            with_cr.extend_from_slice(body);
            with_cr.extend_from_slice(b"\r\n");
        }
        assert_eq!(ev_frame(&with_cr), e, "{:?}", lossy(&with_cr));
    }
}

/// §1.4: blank lines (LF or CR LF) are ignored, and counted in `consumed` of
/// the frame after them.
#[test]
fn blank_lines_are_ignored() {
    let wire = b"\n\r\n\nLIST\n";
    assert_eq!(
        Request::decode(wire, &lim()),
        Decoded::Frame {
            frame: Request::List { room: None },
            consumed: wire.len()
        }
    );
    req_incomplete(b"\n");
    req_incomplete(b"\r\n\r\n\n");
    req_incomplete(b"\n\n\r");
    req_incomplete(b"\n\nLI");
    // A blank line between a counted header and its body is body, not blank.
    assert_eq!(req_frame(b"SEND bob 3\n\nhi\n"), send("bob", b"\nhi"));
    // A blank line right after a frame belongs to the next decode.
    assert_eq!(
        Request::decode(b"LIST\n\nHELP\n", &lim()),
        Decoded::Frame {
            frame: Request::List { room: None },
            consumed: 5
        }
    );
    // Blank lines before an invalid frame are consumed with it.
    req_invalid(b"\r\n\nFROB\n", ErrorCode::UnknownCommand, 8);
    // Events too.
    assert_eq!(
        Event::decode(b"\n\r\nBYE\n", &lim()),
        Decoded::Frame {
            frame: Event::Bye,
            consumed: 7
        }
    );
    assert_eq!(Event::decode(b"\n\r\n", &lim()), Decoded::Incomplete);
}

/// §1.2: a frame ends at its LF; nothing is decided before it arrives.
#[test]
fn nothing_is_decided_before_the_lf() {
    for partial in [
        &b""[..],
        b"L",
        b"LIST",
        b"LIST\r",
        b"FROB",
        b"SEND , :x",
        b"NAME",
        b"SEND bob 5",
        b"SEND bob 5\r",
    ] {
        req_incomplete(partial);
        assert_eq!(Event::decode(partial, &lim()), Decoded::Incomplete);
    }
}

// ---------------------------------------------------------------------------
// §1.3 Bodies [framing]: counted and inline
// ---------------------------------------------------------------------------

/// §1.3: the contract's own examples.
#[test]
fn contract_body_examples() {
    assert_eq!(
        req_frame(b"SEND bob 11\nhello\nworld\n"),
        send("bob", b"hello\nworld")
    );
    assert_eq!(req_frame(b"SEND bob :hi there\n"), send("bob", b"hi there"));
}

/// §1.3: counted bodies are arbitrary bytes: LF, CR, NUL, invalid UTF-8,
/// something that looks like a frame, an empty body.
#[test]
fn counted_bodies_are_arbitrary_bytes() {
    let bodies: [&[u8]; 8] = [
        b"",
        b"\n",
        b"\r\n",
        b"\0\0\0",
        b"\xff\xfe\xc3",
        b"LIST\nSEND bob 3\n",
        "h\u{e9}llo w\u{f6}rld \u{1f600}".as_bytes(),
        b" :x 5\n",
    ];
    for body in bodies {
        let mut wire = format!("SEND bob {}\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.push(b'\n');
        assert_eq!(req_frame(&wire), send("bob", body));
        assert_eq!(enc_req(&send("bob", body)), wire);

        let mut wire = format!("QUIT {}\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.extend_from_slice(b"\r\n");
        assert_eq!(req_frame(&wire), Request::Quit { reason: Some(body) });

        let msg = Event::Msg {
            id: 1,
            from: "bob",
            kind: Kind::Direct,
            ts_ms: 2,
            body,
        };
        assert_eq!(ev_frame(&enc_ev(&msg)), msg);
        let info = Event::Info { text: body };
        assert_eq!(ev_frame(&enc_ev(&info)), info);
    }
}

/// §1.3: an inline body is the rest of the line after the `:` — spaces,
/// more colons, digits, and bytes that are not UTF-8 included.
#[test]
fn inline_bodies_are_the_rest_of_the_line() {
    for (wire, body) in [
        (&b"SEND bob :\n"[..], &b""[..]),
        (b"SEND bob : \n", b" "),
        (b"SEND bob ::\n", b":"),
        (b"SEND bob :a :b c  d \n", b"a :b c  d "),
        (b"SEND bob :5\n", b"5"),
        (b"SEND bob :\xff\x00\xfe\n", b"\xff\x00\xfe"),
        (b"SEND bob :SEND bob 3\n", b"SEND bob 3"),
    ] {
        assert_eq!(req_frame(wire), send("bob", body), "{:?}", lossy(wire));
    }
    // The first field that starts with ':' starts the body.
    assert_eq!(req_frame(b"SEND bob :x :y\n"), send("bob", b"x :y"));
}

/// §1.3: length fields are plain decimal: no sign, no spaces, no trailing
/// garbage. A last field that isn't all digits doesn't announce a body, so
/// only the line is consumed.
#[test]
fn length_fields_are_strict_decimal() {
    for wire in [
        &b"SEND bob -1\n"[..],
        b"SEND bob +1\n",
        b"SEND bob 1x\n",
        b"SEND bob 0x10\n",
        b"SEND bob 1e3\n",
        b"SEND bob 1.0\n",
        b"SEND bob \xd9\xa3\n", // an Arabic-Indic digit three
        b"SEND bob 5 \n",       // trailing space: the last field is empty
    ] {
        req_invalid(wire, ErrorCode::BadFrame, wire.len());
    }
    // Leading zeros are still decimal.
    assert_eq!(req_frame(b"SEND bob 002\nhi\n"), send("bob", b"hi"));
    assert_eq!(req_frame(b"SEND bob 0\n\n"), send("bob", b""));
    // A length that doesn't fit in 64 bits is over any limit: TOO_LONG, fatal,
    // before any body byte is read.
    req_fatal(b"SEND bob 18446744073709551616\n", ErrorCode::TooLong);
    req_fatal(b"SEND bob 99999999999999999999999999\n", ErrorCode::TooLong);
    req_fatal(b"QUIT 99999999999999999999999999\n", ErrorCode::TooLong);
    req_fatal(b"SEND bob 18446744073709551615\n", ErrorCode::TooLong);
    // ... even when the targets are bad (the length decides framing first).
    req_fatal(b"SEND , 99999999999999999999\n", ErrorCode::TooLong);
    ev_fatal(
        b"MSG 1 bob direct 2 99999999999999999999999\n",
        ErrorCode::TooLong,
    );
    ev_fatal(b"INFO 18446744073709551616\n", ErrorCode::TooLong);
}

/// §1.3, §5: a counted body must be followed by LF (or CR LF); otherwise the
/// stream can't be trusted: fatal BAD_FRAME, for good and bad headers alike.
#[test]
fn counted_body_without_lf_is_fatal() {
    for wire in [
        &b"SEND bob 2\nhiX"[..],
        b"SEND bob 2\nhi\rX",
        b"SEND bob 2\nhi\r\r\n",
        b"SEND bob 0\nX",
        b"SEND bob 1\nhi\n", // announced one byte too few
        b"SEND , 2\nhiX",    // bad targets, same rule
        b"QUIT 2\nhiX",
    ] {
        req_fatal(wire, ErrorCode::BadFrame);
    }
    ev_fatal(b"MSG 1 bob direct 2 2\nhiX", ErrorCode::BadFrame);
    ev_fatal(b"INFO 2\nhi\rX", ErrorCode::BadFrame);
    ev_fatal(b"MSG 1 bob nope 2 2\nhiX", ErrorCode::BadFrame);
    // One byte too many announced: waits for the rest, then sees no LF.
    req_incomplete(b"SEND bob 3\nhi\n");
    req_fatal(b"SEND bob 3\nhi\nX", ErrorCode::BadFrame);
}

/// §1.3: the body may arrive in pieces; nothing is decided until its LF.
#[test]
fn counted_body_waits_for_all_its_bytes_and_its_lf() {
    let wire = b"SEND bob 11\nhello\nworld\r\n";
    for cut in 0..wire.len() {
        req_incomplete(&wire[..cut]);
    }
    assert_eq!(req_frame(wire), send("bob", b"hello\nworld"));
}

// ---------------------------------------------------------------------------
// §1.5 Limits [framing]
// ---------------------------------------------------------------------------

#[test]
fn default_limits_are_the_contracts() {
    let l = Limits::default();
    assert_eq!(l.max_line, 1024);
    assert_eq!(l.max_body, 65536);
    assert_eq!(l.max_targets, 100);
    assert_eq!(l.max_frame(), 1024 + 2 + 65536 + 2);
    assert_eq!(VERSION, 1);
}

/// A PING line of exactly `len` bytes (without CR LF).
fn ping_line(len: usize) -> Vec<u8> {
    assert!(len >= 6);
    let mut line = b"PING ".to_vec();
    line.resize(len, b'x');
    line
}

/// §1.5: a header line may be max_line bytes, not counting its CR LF; one
/// more is TOO_LONG, fatal, whether or not its LF has arrived.
#[test]
fn header_line_limit_at_and_over_the_edge() {
    for limits in [
        lim(),
        Limits {
            max_line: 16,
            ..lim()
        },
    ] {
        let max = limits.max_line;
        let at = ping_line(max);
        let over = ping_line(max + 1);

        for ending in [&b"\n"[..], b"\r\n"] {
            let wire = [&at[..], ending].concat();
            match Request::decode(&wire, &limits) {
                Decoded::Frame { frame, consumed } => {
                    assert_eq!(consumed, wire.len());
                    assert_eq!(
                        frame,
                        Request::Ping {
                            token: Some(&lossy(&at)[5..])
                        }
                    );
                }
                other => panic!("{max}: {other:?}"),
            }
            let mut ev = b"PONG ".to_vec();
            ev.extend_from_slice(&at[5..]);
            ev.extend_from_slice(ending);
            assert!(matches!(Event::decode(&ev, &limits), Decoded::Frame { .. }));

            let wire = [&over[..], ending].concat();
            req_fatal_with(&wire, &limits, ErrorCode::TooLong);
            let mut ev = b"PONG ".to_vec();
            ev.extend_from_slice(&over[5..]);
            ev.extend_from_slice(ending);
            assert!(matches!(
                Event::decode(&ev, &limits),
                Decoded::Fatal(e) if e.code == ErrorCode::TooLong
            ));
        }
        // At the limit, still waiting for the LF (or for the LF after CR).
        req_incomplete_with(&at, &limits);
        req_incomplete_with(&[&at[..], b"\r"].concat(), &limits);
        // Over the limit is known as soon as the extra byte arrives: the
        // decoder never waits for (buffers) more than max_line + 2 bytes.
        req_fatal_with(&over, &limits, ErrorCode::TooLong);
        req_fatal_with(&[&at[..], b"\r\r"].concat(), &limits, ErrorCode::TooLong);
        req_fatal_with(&[&at[..], b"\rx"].concat(), &limits, ErrorCode::TooLong);
        // The limit is per line: blank lines before it don't count.
        let wire = [&b"\r\n\n\n"[..], &at, b"\n"].concat();
        assert!(matches!(
            Request::decode(&wire, &limits),
            Decoded::Frame { consumed, .. } if consumed == wire.len()
        ));
        // An unknown verb over the limit is still TOO_LONG, not UNKNOWN_COMMAND.
        let mut junk = vec![b'z'; max + 1];
        junk.push(b'\n');
        req_fatal_with(&junk, &limits, ErrorCode::TooLong);
    }
}

/// §1.5: a body may be max_body bytes; one more is TOO_LONG, fatal, as soon
/// as the header announces it (before any body byte is buffered).
#[test]
fn body_limit_at_and_over_the_edge() {
    for limits in [
        lim(),
        Limits {
            max_body: 10,
            ..lim()
        },
    ] {
        let max = limits.max_body;
        let body = vec![b'b'; max];

        let mut wire = format!("SEND bob {max}\n").into_bytes();
        wire.extend_from_slice(&body);
        wire.push(b'\n');
        assert_eq!(req_frame_with(&wire, &limits), send("bob", &body));

        let mut wire = format!("QUIT {max}\n").into_bytes();
        wire.extend_from_slice(&body);
        wire.push(b'\n');
        assert_eq!(
            req_frame_with(&wire, &limits),
            Request::Quit {
                reason: Some(&body)
            }
        );

        let over = max + 1;
        for header in [
            format!("SEND bob {over}\n"),
            format!("SEND * {over}\n"),
            format!("SEND , {over}\n"), // bad targets: the limit still wins
            format!("QUIT {over}\n"),
        ] {
            req_fatal_with(header.as_bytes(), &limits, ErrorCode::TooLong);
        }
        for header in [
            format!("MSG 1 bob all 2 {over}\n"),
            format!("INFO {over}\n"),
        ] {
            assert!(matches!(
                Event::decode(header.as_bytes(), &limits),
                Decoded::Fatal(e) if e.code == ErrorCode::TooLong
            ));
        }
        let mut msg = format!("MSG 1 bob all 2 {max}\n").into_bytes();
        msg.extend_from_slice(&body);
        msg.extend_from_slice(b"\r\n");
        assert!(matches!(
            Event::decode(&msg, &limits),
            Decoded::Frame { consumed, .. } if consumed == msg.len()
        ));
    }
    // An inline body is part of the header line, so max_line bounds it.
    let limits = Limits {
        max_line: 16,
        ..lim()
    };
    let at = b"SEND bob :123456\n"; // 16 bytes before the LF
    assert_eq!(req_frame_with(at, &limits), send("bob", b"123456"));
    req_fatal_with(b"SEND bob :1234567\n", &limits, ErrorCode::TooLong);
}

/// §1.5, §4.3: 1 to max_targets names; one more is TOO_MANY_TARGETS, which
/// is not fatal; a counted body is consumed with it.
#[test]
fn target_limit_at_and_over_the_edge() {
    for limits in [
        lim(),
        Limits {
            max_targets: 3,
            ..lim()
        },
    ] {
        let max = limits.max_targets;
        let names: Vec<String> = (0..=max).map(|i| format!("u{i}")).collect();
        let at = names[..max].join(",");
        let over = names.join(",");

        let wire = format!("SEND {at} :hi\n");
        let got = req_frame_with(wire.as_bytes(), &limits);
        let Request::Send {
            targets: targets @ Targets::Names(_),
            body: b"hi",
        } = got
        else {
            panic!("{got:?}")
        };
        assert_eq!(targets.names().count(), max);

        let wire = format!("SEND {over} :hi\n");
        req_invalid_with(
            wire.as_bytes(),
            &limits,
            ErrorCode::TooManyTargets,
            wire.len(),
        );
        let wire = format!("SEND {over} 5\nhello\nLIST\n");
        req_invalid_with(
            wire.as_bytes(),
            &limits,
            ErrorCode::TooManyTargets,
            wire.len() - 5,
        );
        // Repeats count against the limit: they are only folded later (§4.3).
        let same = vec!["bob"; max + 1].join(",");
        let wire = format!("SEND {same} :hi\n");
        req_invalid_with(
            wire.as_bytes(),
            &limits,
            ErrorCode::TooManyTargets,
            wire.len(),
        );
        // An empty name is BAD_FRAME even when the list is also too long.
        let wire = format!("SEND {over},,x :hi\n");
        req_invalid_with(wire.as_bytes(), &limits, ErrorCode::BadFrame, wire.len());
    }
}

// ---------------------------------------------------------------------------
// §4.1 NAME
// ---------------------------------------------------------------------------

#[test]
fn name_frames() {
    assert_eq!(req_frame(b"NAME alice\n"), Request::Name { name: "alice" });
    assert_eq!(
        req_frame(b"NAME Bob_1.x\r\n"),
        Request::Name { name: "Bob_1.x" }
    );
    // The naming rules are the broker's (§2): it must answer ALREADY_NAMED
    // first, so the codec passes any name through. Two words are a name
    // and a password (accounts); more spaces than that are one bad name.
    assert_eq!(
        req_frame(b"NAME a b\n"),
        Request::Login {
            name: "a",
            password: "b"
        }
    );
    assert_eq!(req_frame(b"NAME a b c\n"), Request::Name { name: "a b c" });
    assert_eq!(req_frame(b"NAME a \n"), Request::Name { name: "a " });
    assert_eq!(
        req_frame(b"REGISTER hunter22\n"),
        Request::Register {
            password: "hunter22"
        }
    );
    req_invalid(b"REGISTER\n", ErrorCode::BadFrame, 9);
    assert_eq!(req_frame(b"NAME -x\n"), Request::Name { name: "-x" });
    assert_eq!(req_frame(b"NAME all\n"), Request::Name { name: "all" });
    assert_eq!(req_frame(b"NAME :x\n"), Request::Name { name: ":x" });
    assert_eq!(req_frame(b"NAME 12\n"), Request::Name { name: "12" });
    assert_eq!(req_frame(b"NAME  x\n"), Request::Name { name: " x" });
    assert_eq!(req_frame(b"NAME a\0b\n"), Request::Name { name: "a\0b" });
    // Missing name: BAD_FRAME.
    req_invalid(b"NAME\n", ErrorCode::BadFrame, 5);
    req_invalid(b"NAME \n", ErrorCode::BadFrame, 6);
    req_invalid(b"name\r\n", ErrorCode::BadFrame, 6);
    // A name that isn't UTF-8 can't be any valid name: the codec answers
    // BAD_NAME itself (so even after NAME, this one isn't ALREADY_NAMED).
    req_invalid(b"NAME b\xf8b\n", ErrorCode::BadName, 9);
    req_invalid(b"NAME \xc3\n", ErrorCode::BadName, 7);
    // `NAME 12` is a name, not a counted body: nothing more is read.
    assert!(matches!(
        Request::decode(b"NAME 3\nabc\n", &lim()),
        Decoded::Frame {
            frame: Request::Name { name: "3" },
            consumed: 7
        }
    ));
}

// ---------------------------------------------------------------------------
// §4.2 LIST
// ---------------------------------------------------------------------------

#[test]
fn list_frames() {
    assert_eq!(req_frame(b"LIST\n"), Request::List { room: None });
    assert_eq!(req_frame(b"list\r\n"), Request::List { room: None });
    // LIST has no fields.
    req_invalid(b"LIST all\n", ErrorCode::BadFrame, 9);
    req_invalid(b"LIST \n", ErrorCode::BadFrame, 6);
    // A trailing number is not a body for LIST: only the line is consumed.
    req_invalid(b"LIST 3\nabc\n", ErrorCode::BadFrame, 7);
}

// ---------------------------------------------------------------------------
// §4.3 SEND
// ---------------------------------------------------------------------------

#[test]
fn send_frames() {
    assert_eq!(req_frame(b"SEND bob :hi bob\n"), send("bob", b"hi bob"));
    assert_eq!(
        req_frame(b"SEND bob,carol :hello both\n"),
        send("bob,carol", b"hello both")
    );
    assert_eq!(
        req_frame(b"SEND * 11\nhello\nworld\n"),
        send("*", b"hello\nworld")
    );
    assert_eq!(req_frame(b"SEND * :x\n"), send("*", b"x"));
    // Targets are kept as given: order, case and repeats (the broker folds).
    let Request::Send { targets, .. } = req_frame(b"SEND Bob,carol,BOB,dan :x\n") else {
        panic!()
    };
    assert_eq!(targets, Targets::Names("Bob,carol,BOB,dan"));
    assert_eq!(targets.as_str(), "Bob,carol,BOB,dan");
    assert_eq!(
        targets.names().collect::<Vec<_>>(),
        ["Bob", "carol", "BOB", "dan"]
    );
    assert_eq!(Targets::All.as_str(), "*");
    assert_eq!(Targets::All.names().count(), 0);
    // A target that is not a valid name is only "not online" (NO_SUCH_USER,
    // the broker's answer): the codec lets it through.
    for wire in [
        &b"SEND **,bob :x\n"[..],
        b"SEND b:ob :x\n",
        b"SEND -x,.y :x\n",
        b"SEND all,server :x\n",
        b"SEND b\0b :x\n",
        b"SEND 12345 :x\n",
    ] {
        assert!(
            matches!(
                Request::decode(wire, &lim()),
                Decoded::Frame {
                    frame: Request::Send {
                        targets: Targets::Names(_),
                        ..
                    },
                    ..
                }
            ),
            "{:?}",
            lossy(wire)
        );
    }
    // A 33-character name is a name (too long to be anyone, but a name).
    let wire = format!("SEND {} :x\n", "z".repeat(33));
    assert!(matches!(
        Request::decode(wire.as_bytes(), &lim()),
        Decoded::Frame { .. }
    ));
}

/// §4.3 step 1: `*` alone, or names joined by single commas; `*` mixed with
/// names or an empty name is BAD_FRAME.
#[test]
fn send_bad_targets() {
    for wire in [
        &b"SEND , :x\n"[..],
        b"SEND ,, :x\n",
        b"SEND bob,,carol :x\n",
        b"SEND ,bob :x\n",
        b"SEND bob, :x\n",
        b"SEND *,bob :x\n",
        b"SEND bob,* :x\n",
        b"SEND *,* :x\n",
        b"SEND bob,*,carol :x\n",
    ] {
        req_invalid(wire, ErrorCode::BadFrame, wire.len());
        // The same with a counted body: the body is consumed first (§5).
        let head = &wire[..wire.len() - 4];
        let mut counted = head.to_vec();
        counted.extend_from_slice(b" 3\na\nb\nLIST\n");
        req_invalid(&counted, ErrorCode::BadFrame, counted.len() - 5);
    }
}

/// §4.3, §5: missing or malformed SEND fields are BAD_FRAME; an announced
/// counted body is consumed first.
#[test]
fn send_malformed() {
    for wire in [
        &b"SEND\n"[..],
        b"SEND \n",
        b"SEND bob\n",
        b"SEND bob \n",
        b"SEND :x\n",      // no targets
        b"SEND  bob :x\n", // two spaces: an empty field
        b"SEND bob  :x\n",
        b"SEND bob carol :x\n", // names are joined by commas, not spaces
        b"SEND bob 5 :x\n",
        b"SEND bob,carol\n",
    ] {
        req_invalid(wire, ErrorCode::BadFrame, wire.len());
    }
    // A header whose last field is a length announces a body even if the
    // fields before it are wrong; the body is skipped so the next frame is
    // read from the right place.
    for head in [
        &b"SEND 3"[..],
        b"SEND  3",
        b"SEND bob carol 3",
        b"SEND bob,carol  3",
    ] {
        let mut wire = head.to_vec();
        wire.extend_from_slice(b"\nabc\nLIST\n");
        req_invalid(&wire, ErrorCode::BadFrame, wire.len() - 5);
    }
    // ... but a ':' field before the number makes it inline text.
    assert_eq!(req_frame(b"SEND bob :x 3\n"), send("bob", b"x 3"));
    // Targets that aren't UTF-8: BAD_FRAME; a counted body is consumed.
    req_invalid(b"SEND b\xffb :x\n", ErrorCode::BadFrame, 12);
    req_invalid(b"SEND b\xffb 1\nx\nLIST\n", ErrorCode::BadFrame, 13);
}

// ---------------------------------------------------------------------------
// §4.4 RECV
// ---------------------------------------------------------------------------

#[test]
fn recv_frames() {
    assert_eq!(
        req_frame(b"RECV 17 bob\n"),
        Request::Recv {
            id: 17,
            from: "bob"
        }
    );
    assert_eq!(req_frame(b"RECV 0 a\n"), Request::Recv { id: 0, from: "a" });
    assert_eq!(
        req_frame(b"RECV 18446744073709551615 bob\r\n"),
        Request::Recv {
            id: u64::MAX,
            from: "bob"
        }
    );
    for wire in [
        &b"RECV\n"[..],
        b"RECV \n",
        b"RECV 17\n",
        b"RECV 17 \n",
        b"RECV bob\n",
        b"RECV bob 17\n",
        b"RECV 17 bob extra\n",
        b"RECV 17  bob\n",
        b"RECV  17 bob\n",
        b"RECV -1 bob\n",
        b"RECV +1 bob\n",
        b"RECV 1x bob\n",
        b"RECV 18446744073709551616 bob\n",
        b"RECV 17 b\xffb\n",
    ] {
        req_invalid(wire, ErrorCode::BadFrame, wire.len());
    }
    // A from that is not a valid name is simply nobody: the broker's concern.
    assert_eq!(
        req_frame(b"RECV 17 :bob\n"),
        Request::Recv {
            id: 17,
            from: ":bob"
        }
    );
}

// ---------------------------------------------------------------------------
// §4.5 PING
// ---------------------------------------------------------------------------

#[test]
fn ping_frames() {
    assert_eq!(req_frame(b"PING\n"), Request::Ping { token: None });
    assert_eq!(req_frame(b"PING \n"), Request::Ping { token: None });
    assert_eq!(req_frame(b"PING 42\n"), Request::Ping { token: Some("42") });
    // The token is the rest of the line, verbatim.
    for token in ["a b  c ", ":x", " x", "5", "\u{e9}t\u{e9}", "a\0b"] {
        let wire = format!("PING {token}\r\n");
        assert_eq!(
            req_frame(wire.as_bytes()),
            Request::Ping { token: Some(token) }
        );
    }
    // `PING 3` is a token, not a counted body.
    assert!(matches!(
        Request::decode(b"PING 3\nabc\n", &lim()),
        Decoded::Frame {
            frame: Request::Ping { token: Some("3") },
            consumed: 7
        }
    ));
    req_invalid(b"PING \xff\n", ErrorCode::BadFrame, 7);
}

// ---------------------------------------------------------------------------
// §4.6 HELP
// ---------------------------------------------------------------------------

#[test]
fn help_frames() {
    for wire in [
        &b"HELP\n"[..],
        b"help\r\n",
        b"HELP SEND\n",
        b"HELP \n",
        b"HELP a b :c\n",
        b"HELP \xff\n",
    ] {
        assert_eq!(req_frame(wire), Request::Help, "{:?}", lossy(wire));
    }
    // Arguments are ignored, so a number is not a body either.
    assert!(matches!(
        Request::decode(b"HELP 3\nabc\n", &lim()),
        Decoded::Frame {
            frame: Request::Help,
            consumed: 7
        }
    ));
}

// ---------------------------------------------------------------------------
// §4.7 QUIT
// ---------------------------------------------------------------------------

#[test]
fn quit_frames() {
    let q = |r: Option<&'static [u8]>| Request::Quit { reason: r };
    assert_eq!(req_frame(b"QUIT\n"), q(None));
    assert_eq!(req_frame(b"QUIT \n"), q(None));
    assert_eq!(req_frame(b"QUIT :\n"), q(Some(b"")));
    assert_eq!(req_frame(b"QUIT :bye now\n"), q(Some(b"bye now")));
    assert_eq!(req_frame(b"QUIT 7\nbye\nnow\n"), q(Some(b"bye\nnow")));
    assert_eq!(req_frame(b"QUIT 0\n\r\n"), q(Some(b"")));
    // Bare words are a reason too: people type `QUIT bye now`.
    assert_eq!(req_frame(b"QUIT bye now\n"), q(Some(b"bye now")));
    assert_eq!(req_frame(b"QUIT bye 5\n"), q(Some(b"bye 5")));
    assert_eq!(req_frame(b"QUIT bye :now\n"), q(Some(b"bye :now")));
    assert_eq!(req_frame(b"QUIT -1\n"), q(Some(b"-1")));
    assert_eq!(req_frame(b"QUIT \xff\n"), q(Some(b"\xff")));
    req_incomplete(b"QUIT 3\nby");
    req_fatal(b"QUIT 3\nbyeX", ErrorCode::BadFrame);
    req_fatal(b"QUIT 65537\n", ErrorCode::TooLong);
}

// ---------------------------------------------------------------------------
// Unknown verbs [c→b]
// ---------------------------------------------------------------------------

#[test]
fn unknown_verbs() {
    for wire in [
        &b"FROB\n"[..],
        b"FROB x y\n",
        b"SENDX bob :x\n",
        b"SEN bob :x\n",
        b"LISTS\n",
        b" LIST\n", // leading space: the verb is empty
        b"LI ST\n",
        b"\xff\xfe\n",
        b"\0\n",
        b"NAME\0 bob\n",
        b"MSG 1 bob direct 2 0\n", // broker frames aren't client verbs
        b"OK NAME bob\n",
        b"\rLIST\n",
    ] {
        req_invalid(wire, ErrorCode::UnknownCommand, wire.len());
    }
    // An unknown verb announces no body: only the line is consumed.
    req_invalid(b"FROB 3\nabc\n", ErrorCode::UnknownCommand, 7);
}

// ---------------------------------------------------------------------------
// Request encoding (canonical form: upper-case verbs, counted bodies)
// ---------------------------------------------------------------------------

#[test]
fn requests_encode_canonically() {
    for (r, wire) in [
        (Request::Name { name: "alice" }, &b"NAME alice\n"[..]),
        (Request::List { room: None }, b"LIST\n"),
        (send("bob", b"hi bob"), b"SEND bob 6\nhi bob\n"),
        (send("*", b"hello\nworld"), b"SEND * 11\nhello\nworld\n"),
        (send("bob,carol", b""), b"SEND bob,carol 0\n\n"),
        (
            Request::Recv {
                id: 17,
                from: "bob",
            },
            b"RECV 17 bob\n",
        ),
        (Request::Ping { token: None }, b"PING\n"),
        (Request::Ping { token: Some("a b") }, b"PING a b\n"),
        (Request::Help, b"HELP\n"),
        (Request::Quit { reason: None }, b"QUIT\n"),
        (
            Request::Quit {
                reason: Some(b"bye"),
            },
            b"QUIT 3\nbye\n",
        ),
        (Request::Quit { reason: Some(b"") }, b"QUIT 0\n\n"),
    ] {
        assert_eq!(enc_req(&r), wire, "{r:?}");
        assert_eq!(req_frame(wire), r);
    }
}

// ---------------------------------------------------------------------------
// §4.8–4.20 Broker → client frames [b→c]
// ---------------------------------------------------------------------------

/// One of every event, with every kind, reason and error code.
fn all_events() -> Vec<Event<'static>> {
    let mut v = vec![
        Event::Hello {
            server: "chat",
            version: 1,
            text: "Welcome. Choose a name with NAME <name>",
        },
        Event::NameOk { name: "alice" },
        Event::Users {
            room: None,
            count: 2,
            names: "alice bob",
        },
        Event::Users {
            room: None,
            count: 0,
            names: "",
        },
        Event::Ack {
            id: 17,
            queued: 1,
            missing: None,
        },
        Event::Ack {
            id: 18,
            queued: 1,
            missing: Some("carol,dan"),
        },
        Event::Ack {
            id: 19,
            queued: 0,
            missing: None,
        },
        Event::Rcpt { id: 17, by: "bob" },
        Event::Joined {
            name: "bob",
            room: None,
        },
        Event::Pong { token: None },
        Event::Pong {
            token: Some("tok en"),
        },
        Event::Info {
            text: b"Commands:\nNAME <name>\n",
        },
        Event::Info { text: b"" },
        Event::Err {
            code: ErrorCode::NoSuchUser,
            args: Some("bob,carol"),
            text: "none of those is online",
        },
        Event::Bye,
        Event::Shutdown {
            text: "the broker is stopping",
        },
    ];
    for kind in [Kind::Direct, Kind::Multi, Kind::All] {
        v.push(Event::Msg {
            id: 20,
            from: "bob",
            kind,
            ts_ms: 1_763_812_345_678,
            body: b"hi alice",
        });
    }
    for reason in LeftReason::ALL {
        v.push(Event::Left {
            name: "bob",
            reason,
        });
    }
    for code in ErrorCode::ALL {
        v.push(Event::Err {
            code,
            args: None,
            text: "why",
        });
    }
    v
}

#[test]
fn every_event_round_trips() {
    for e in all_events() {
        let wire = enc_ev(&e);
        assert!(wire.ends_with(b"\n"));
        assert_eq!(ev_frame(&wire), e, "{:?}", lossy(&wire));
    }
}

#[test]
fn events_encode_canonically() {
    for (e, wire) in [
        (
            Event::Hello {
                server: "chat",
                version: VERSION,
                text: "Welcome. Choose a name with NAME <name>",
            },
            &b"HELLO chat 1 :Welcome. Choose a name with NAME <name>\n"[..],
        ),
        (Event::NameOk { name: "alice" }, b"OK NAME alice\n"),
        (
            Event::Users {
                room: None,
                count: 2,
                names: "alice bob",
            },
            b"USERS 2 :alice bob\n",
        ),
        (
            Event::Users {
                room: None,
                count: 0,
                names: "",
            },
            b"USERS 0 :\n",
        ),
        (
            Event::Msg {
                id: 20,
                from: "bob",
                kind: Kind::Direct,
                ts_ms: 1_763_812_345_678,
                body: b"hi alice",
            },
            b"MSG 20 bob direct 1763812345678 8\nhi alice\n",
        ),
        (
            Event::Ack {
                id: 17,
                queued: 1,
                missing: None,
            },
            b"ACK 17 1\n",
        ),
        (
            Event::Ack {
                id: 18,
                queued: 1,
                missing: Some("carol"),
            },
            b"ACK 18 1 carol\n",
        ),
        (Event::Rcpt { id: 17, by: "bob" }, b"RCPT 17 bob\n"),
        (
            Event::Joined {
                name: "bob",
                room: None,
            },
            b"JOINED bob\n",
        ),
        (
            Event::Left {
                name: "bob",
                reason: LeftReason::Quit,
            },
            b"LEFT bob quit\n",
        ),
        (Event::Pong { token: None }, b"PONG\n"),
        (Event::Pong { token: Some("7") }, b"PONG 7\n"),
        (Event::Info { text: b"a\nb" }, b"INFO 3\na\nb\n"),
        (
            Event::Err {
                code: ErrorCode::NoSuchUser,
                args: Some("bob,carol"),
                text: "not online",
            },
            b"ERR NO_SUCH_USER bob,carol :not online\n",
        ),
        (
            Event::Err {
                code: ErrorCode::TooLong,
                args: None,
                text: "header line over the limit",
            },
            b"ERR TOO_LONG :header line over the limit\n",
        ),
        (Event::Bye, b"BYE\n"),
        (Event::Shutdown { text: "bye all" }, b"SHUTDOWN :bye all\n"),
    ] {
        assert_eq!(enc_ev(&e), wire, "{e:?}");
        assert_eq!(ev_frame(wire), e);
    }
    // encode_msg is the broker's hot path: same bytes as Event::Msg.
    let mut out = Vec::new();
    encode_msg(&mut out, 20, "bob", Kind::Multi, 5, b"x\ny");
    assert_eq!(out, b"MSG 20 bob multi 5 3\nx\ny\n");
}

/// Text fields can't carry CR or LF: the encoder turns them into spaces so a
/// header line is never split (§1.2).
#[test]
fn event_text_never_splits_a_line() {
    let e = Event::Shutdown { text: "a\nb\r\nc" };
    assert_eq!(enc_ev(&e), b"SHUTDOWN :a b  c\n");
    let e = Event::Hello {
        server: "chat",
        version: 1,
        text: "x\ny",
    };
    assert_eq!(enc_ev(&e), b"HELLO chat 1 :x y\n");
    let e = Event::Err {
        code: ErrorCode::BadFrame,
        args: None,
        text: "\n",
    };
    assert_eq!(enc_ev(&e), b"ERR BAD_FRAME : \n");
}

#[test]
fn kinds_reasons_and_codes_are_the_contracts() {
    let kinds: Vec<_> = [Kind::Direct, Kind::Multi, Kind::All]
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(kinds, ["direct", "multi", "all"]);
    for k in ["direct", "multi", "all"] {
        assert_eq!(Kind::parse(k.as_bytes()).unwrap().as_str(), k);
    }
    assert_eq!(Kind::parse(b"Direct"), None);
    let reasons: Vec<_> = LeftReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        reasons,
        ["quit", "disconnect", "timeout", "slow", "error", "kicked"]
    );
    for r in LeftReason::ALL {
        assert_eq!(LeftReason::parse(r.as_str().as_bytes()), Some(r));
    }
    assert_eq!(LeftReason::parse(b"QUIT"), None);
    let codes: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        codes,
        [
            "UNKNOWN_COMMAND",
            "BAD_FRAME",
            "TOO_LONG",
            "NOT_REGISTERED",
            "NAME_TAKEN",
            "BAD_NAME",
            "ALREADY_NAMED",
            "NO_SUCH_USER",
            "TOO_MANY_TARGETS",
            "RATE_LIMITED",
            "SERVER_FULL",
            "SLOW_CONSUMER",
            "TIMEOUT",
            "NOT_IN_ROOM",
            "ALREADY_IN_ROOM",
            "TOO_MANY_ROOMS",
            "NAME_OWNED",
            "BAD_PASSWORD",
            "ALREADY_REGISTERED",
            "UNAVAILABLE",
        ]
    );
    for (i, c) in ErrorCode::ALL.into_iter().enumerate() {
        assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        assert_eq!(c.index(), i);
        assert_eq!(c.to_string(), c.as_str());
    }
    assert_eq!(ErrorCode::parse("bad_frame"), None);
}

#[test]
fn event_frames_in_detail() {
    assert_eq!(
        ev_frame(b"HELLO chat 1 :Welcome. Choose a name with NAME <name>\n"),
        Event::Hello {
            server: "chat",
            version: 1,
            text: "Welcome. Choose a name with NAME <name>"
        }
    );
    // The version is passed through for the client to check.
    assert!(matches!(
        ev_frame(b"HELLO chat 2 :x\n"),
        Event::Hello { version: 2, .. }
    ));
    assert_eq!(
        ev_frame(b"USERS 3 :alice Bob carol\n"),
        Event::Users {
            room: None,
            count: 3,
            names: "alice Bob carol"
        }
    );
    assert_eq!(
        ev_frame(b"ACK 18 1 carol,dan\r\n"),
        Event::Ack {
            id: 18,
            queued: 1,
            missing: Some("carol,dan")
        }
    );
    assert_eq!(
        ev_frame(b"PONG a b \n"),
        Event::Pong {
            token: Some("a b ")
        }
    );
    assert_eq!(
        ev_frame(b"ERR NO_SUCH_USER bob carol :x :y\n"),
        Event::Err {
            code: ErrorCode::NoSuchUser,
            args: Some("bob carol"),
            text: "x :y"
        }
    );
    assert_eq!(
        ev_frame(b"ERR BAD_FRAME :\n"),
        Event::Err {
            code: ErrorCode::BadFrame,
            args: None,
            text: ""
        }
    );
    assert_eq!(ev_frame(b"BYE \n"), Event::Bye);
    assert_eq!(ev_frame(b"INFO 0\n\n"), Event::Info { text: b"" });
}

#[test]
fn malformed_events() {
    for wire in [
        &b"HELLO chat 1\n"[..],
        b"HELLO chat :x\n",
        b"HELLO chat x :y\n",
        b"HELLO chat 4294967296 :y\n",
        b"OK\n",
        b"OK NAME\n",
        b"OK NAMES bob\n",
        b"OK NAME bob x\n",
        b"USERS 2 alice bob\n",
        b"USERS x :alice\n",
        b"USERS :alice\n",
        b"ACK\n",
        b"ACK 1\n",
        b"ACK x 1\n",
        b"ACK 1 -1\n",
        b"ACK 1 1 bob carol\n",
        b"ACK 1 1 \n",
        b"RCPT 1\n",
        b"RCPT x bob\n",
        b"RCPT 1 bob x\n",
        b"JOINED\n",
        b"JOINED a b c\n",
        b"PARTED a\n",
        b"OK JOIN #r\n",
        b"OK JOIN #r x\n",
        b"OK PART\n",
        b"ROOMS 2 #a #b\n",
        b"LEFT bob\n",
        b"LEFT bob gone\n",
        b"LEFT bob QUIT\n",
        b"LEFT bob quit x\n",
        b"PONG \xff\n",
        b"ERR\n",
        b"ERR BAD_FRAME\n",
        b"ERR NOPE :x\n",
        b"ERR bad_frame :x\n",
        b"BYE now\n",
        b"SHUTDOWN\n",
        b"SHUTDOWN now\n",
        b"MSG 1 bob direct 2 :hi\n", // the broker always counts bodies
        b"MSG 1 bob direct\n",
        b"INFO :hi\n",
        b"INFO\n",
        b"INFO 5 x\n",
    ] {
        ev_invalid(wire, ErrorCode::BadFrame, wire.len());
    }
    // A malformed MSG/INFO header with a counted body: the body is skipped.
    for head in [
        &b"MSG 1 bob group 2 3"[..],
        b"MSG x bob all 2 3",
        b"MSG 1 bob all 3",
        b"MSG 1 b\xffb all 2 3",
        b"MSG 1 bob all 2 x 3",
        b"INFO x 3",
    ] {
        let mut wire = head.to_vec();
        wire.extend_from_slice(b"\nabc\nBYE\n");
        ev_invalid(&wire, ErrorCode::BadFrame, wire.len() - 4);
    }
    for wire in [
        &b"WAT\n"[..],
        b"msg 1 bob all 2 0\n",
        b"NAME bob\n",
        b"\0\n",
    ] {
        ev_invalid(wire, ErrorCode::UnknownCommand, wire.len());
    }
    ev_fatal(&[b'x'; 1025], ErrorCode::TooLong);
    // A last field of digits announces a body, even on a short MSG header:
    // the reader waits for it, then rejects the header.
    assert_eq!(
        Event::decode(b"MSG 1 bob direct 2\n", &lim()),
        Decoded::Incomplete
    );
    ev_invalid(b"MSG 1 bob direct 2\nhi\n", ErrorCode::BadFrame, 22);
}

// ---------------------------------------------------------------------------
// §7 The example session, both directions
// ---------------------------------------------------------------------------

#[test]
fn example_session_decodes() {
    let client = b"NAME alice\nLIST\nSEND bob :hi bob\nSEND bob,carol :hello both\n\
SEND * 11\nhello\nworld\nQUIT\n";
    let want = [
        Request::Name { name: "alice" },
        Request::List { room: None },
        send("bob", b"hi bob"),
        send("bob,carol", b"hello both"),
        send("*", b"hello\nworld"),
        Request::Quit { reason: None },
    ];
    let mut rest = &client[..];
    for w in want {
        match Request::decode(rest, &lim()) {
            Decoded::Frame { frame, consumed } => {
                assert_eq!(frame, w);
                rest = &rest[consumed..];
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(rest.is_empty());

    let broker = b"HELLO chat 1 :Welcome. Choose a name with NAME <name>\nOK NAME alice\n\
JOINED bob\nUSERS 2 :alice bob\nACK 17 1\nACK 18 1 carol\nACK 19 1\nRCPT 17 bob\n\
MSG 20 bob direct 1763812345678 8\nhi alice\nLEFT bob quit\nBYE\n";
    let mut rest = &broker[..];
    let mut n = 0;
    while !rest.is_empty() {
        match Event::decode(rest, &lim()) {
            Decoded::Frame { frame, consumed } => {
                // Canonical: re-encoding gives the same bytes.
                assert_eq!(enc_ev(&frame), &rest[..consumed]);
                rest = &rest[consumed..];
                n += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(n, 11);
}

// ---------------------------------------------------------------------------
// Splitting (after nats-server split_test.go): §1.2–1.4
// ---------------------------------------------------------------------------

/// What one decode step said, owned, so outcomes from different buffers can
/// be compared.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Step {
    Frame(String, usize),
    Invalid(ErrorCode, usize),
    Fatal(ErrorCode),
}

fn step<T: std::fmt::Debug>(d: Decoded<T>) -> Option<Step> {
    match d {
        Decoded::Incomplete => None,
        Decoded::Frame { frame, consumed } => Some(Step::Frame(format!("{frame:?}"), consumed)),
        Decoded::Invalid { error, consumed } => Some(Step::Invalid(error.code, consumed)),
        Decoded::Fatal(e) => Some(Step::Fatal(e.code)),
    }
}

type DecodeFn = fn(&[u8], &Limits) -> Option<Step>;

fn req_step(b: &[u8], l: &Limits) -> Option<Step> {
    step(Request::decode(b, l))
}

fn ev_step(b: &[u8], l: &Limits) -> Option<Step> {
    step(Event::decode(b, l))
}

/// Feeds `stream` to a reader in the given chunk sizes, the way a server
/// reads a socket: append, decode until Incomplete, drop what was consumed.
fn feed(stream: &[u8], chunks: &mut dyn Iterator<Item = usize>, decode: DecodeFn) -> Vec<Step> {
    let limits = lim();
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < stream.len() {
        let n = chunks.next().unwrap_or(1).clamp(1, stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        loop {
            match decode(&buf, &limits) {
                None => break,
                Some(s) => {
                    let consumed = match &s {
                        Step::Frame(_, c) | Step::Invalid(_, c) => *c,
                        Step::Fatal(_) => {
                            out.push(s);
                            return out;
                        }
                    };
                    assert!(consumed > 0 && consumed <= buf.len());
                    buf.drain(..consumed);
                    out.push(s);
                }
            }
        }
    }
    assert!(buf.is_empty(), "left over: {:?}", lossy(&buf));
    out
}

/// A tiny deterministic PRNG (xorshift64*), so the random chunkings are the
/// same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Checks the split properties for a stream made of `frames`.
fn check_splits(frames: &[&[u8]], decode: DecodeFn) {
    let stream: Vec<u8> = frames.concat();
    let limits = lim();

    // Each frame on its own: every proper prefix needs more bytes; the whole
    // frame decodes using exactly its bytes, and the same with the rest of
    // the stream after it.
    let mut start = 0;
    for f in frames {
        for cut in 0..f.len() {
            assert_eq!(
                decode(&f[..cut], &limits),
                None,
                "prefix {cut} of {:?}",
                lossy(f)
            );
        }
        let alone = decode(f, &limits).expect("a whole frame decodes");
        let in_stream = decode(&stream[start..], &limits).unwrap();
        assert_eq!(alone, in_stream, "{:?}", lossy(f));
        match alone {
            Step::Frame(_, c) | Step::Invalid(_, c) => assert_eq!(c, f.len(), "{:?}", lossy(f)),
            Step::Fatal(_) => {}
        }
        start += f.len();
    }

    // The whole stream in one read is the reference.
    let whole = feed(&stream, &mut std::iter::once(stream.len()), decode);
    assert_eq!(whole.len(), frames.len());

    // Cut in two at every byte.
    for cut in 1..stream.len() {
        let mut chunks = [cut, stream.len() - cut].into_iter();
        assert_eq!(feed(&stream, &mut chunks, decode), whole, "cut at {cut}");
    }
    // One byte at a time.
    assert_eq!(feed(&stream, &mut std::iter::repeat(1), decode), whole);
    // Random chunkings, small and large.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let max = [2, 7, 33, 200][round % 4];
        let mut chunks = std::iter::from_fn(|| Some(1 + (rng.next() % max) as usize));
        assert_eq!(
            feed(&stream, &mut chunks, decode),
            whole,
            "random round {round}"
        );
    }
}

#[test]
fn request_stream_splits_anywhere() {
    let frames: Vec<&[u8]> = vec![
        b"NAME alice\n",
        b"\r\n\nlist\r\n",
        b"SEND bob :hi there\n",
        b"SEND bob 11\nhello\nworld\n",
        b"SEND bob,carol 2\r\nhi\r\n",
        b"SEND * 0\n\n",
        b"SEND * :\n",
        b"SEND , :x\n",              // invalid, line consumed
        b"SEND bob,,carol 3\nabc\n", // invalid, body consumed
        b"SEND *,bob :x\n",
        b"SEND bob -1\n",
        b"SEND bob 4\n\r\n\r\n\n", // a body of CR LF CR LF
        b"RECV 17 bob\n",
        b"RECV x bob\n",
        b"PING\n",
        b"PING a b\r\n",
        b"HELP SEND\n",
        b"FROB 3\n",
        b"abc\n", // the "body" FROB didn't announce: just another bad verb
        b"NAME\n",
        b"QUIT bye now\n",
        b"QUIT :bye\n",
        b"QUIT 3\nbye\n",
        b"\n\nQUIT\n",
    ];
    check_splits(&frames, req_step);
}

#[test]
fn request_stream_ending_in_a_fatal_error_splits_anywhere() {
    for last in [&b"SEND bob 2\nhiX"[..], b"SEND bob 70000\n"] {
        let frames: Vec<&[u8]> = vec![b"NAME a\n", b"SEND b :x\n", last];
        let stream = frames.concat();
        let whole = feed(&stream, &mut std::iter::once(stream.len()), req_step);
        assert!(matches!(whole.last(), Some(Step::Fatal(_))));
        for cut in 1..stream.len() {
            let mut chunks = [cut, stream.len() - cut].into_iter();
            assert_eq!(feed(&stream, &mut chunks, req_step), whole);
        }
        assert_eq!(feed(&stream, &mut std::iter::repeat(1), req_step), whole);
    }
    // An over-long line is fatal as soon as it is too long, whatever the cut.
    let mut stream = b"LIST\n".to_vec();
    stream.resize(stream.len() + 1100, b'x');
    for cut in 1..stream.len() {
        let mut chunks = [cut, stream.len() - cut].into_iter();
        let got = feed(&stream, &mut chunks, req_step);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Step::Fatal(ErrorCode::TooLong));
    }
}

#[test]
fn event_stream_splits_anywhere() {
    let encoded: Vec<Vec<u8>> = all_events().iter().map(enc_ev).collect();
    let mut frames: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    frames.extend([
        &b"\r\nMSG 21 bob all 5 3\r\na\nb\r\n"[..],
        b"MSG 1 bob nope 2 3\nabc\n", // invalid, body skipped
        b"WAT\n",
        b"INFO 0\n\n",
    ]);
    check_splits(&frames, ev_step);
}

// ---- Rooms (protocol.md, "Rooms") ----

#[test]
fn room_requests() {
    assert_eq!(req_frame(b"JOIN #rust\n"), Request::Join { room: "#rust" });
    assert_eq!(
        req_frame(b"join #Rust\r\n"),
        Request::Join { room: "#Rust" }
    );
    assert_eq!(
        req_frame(b"PART #rust\n"),
        Request::Part {
            room: "#rust",
            reason: None
        }
    );
    assert_eq!(
        req_frame(b"PART #rust :bye all\n"),
        Request::Part {
            room: "#rust",
            reason: Some(b"bye all")
        }
    );
    assert_eq!(
        req_frame(b"PART #rust 3\nbye\n"),
        Request::Part {
            room: "#rust",
            reason: Some(b"bye")
        }
    );
    assert_eq!(req_frame(b"ROOMS\n"), Request::Rooms);
    assert_eq!(
        req_frame(b"LIST #rust\n"),
        Request::List {
            room: Some("#rust")
        }
    );
    assert_eq!(
        req_frame(b"SEND #rust :hi\n"),
        Request::Send {
            targets: Targets::Room("#rust"),
            body: b"hi"
        }
    );
    assert_eq!(
        req_frame(b"SEND #rust 2\nhi\n"),
        Request::Send {
            targets: Targets::Room("#rust"),
            body: b"hi"
        }
    );
    for bad in [
        &b"JOIN\n"[..],
        b"JOIN #a #b\n",
        b"PART\n",
        b"PART #a #b\n",
        b"ROOMS x\n",
        b"LIST bob\n",
        b"LIST #a #b\n",
        // One room per SEND, never mixed with names or *.
        b"SEND #a,#b :x\n",
        b"SEND #a,bob :x\n",
        b"SEND bob,#a :x\n",
    ] {
        req_invalid(bad, ErrorCode::BadFrame, bad.len());
    }
}

#[test]
fn room_events() {
    for (event, wire) in [
        (
            Event::JoinOk {
                room: "#rust",
                members: 3,
            },
            &b"OK JOIN #rust 3\n"[..],
        ),
        (Event::PartOk { room: "#rust" }, b"OK PART #rust\n"),
        (
            Event::Joined {
                name: "bob",
                room: Some("#rust"),
            },
            b"JOINED bob #rust\n",
        ),
        (
            Event::Parted {
                name: "bob",
                room: "#rust",
            },
            b"PARTED bob #rust\n",
        ),
        (
            Event::Users {
                count: 2,
                room: Some("#rust"),
                names: "alice bob",
            },
            b"USERS 2 #rust :alice bob\n",
        ),
        (
            Event::Rooms {
                count: 2,
                rooms: "#a #b",
            },
            b"ROOMS 2 :#a #b\n",
        ),
        (
            Event::Rooms {
                count: 0,
                rooms: "",
            },
            b"ROOMS 0 :\n",
        ),
        (
            Event::Msg {
                id: 9,
                from: "bob",
                kind: Kind::Room("#rust"),
                ts_ms: 5,
                body: b"hi",
            },
            b"MSG 9 bob #rust 5 2\nhi\n",
        ),
    ] {
        assert_eq!(enc_ev(&event), wire);
        assert_eq!(ev_frame(wire), event);
    }
}
