#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Property tests of the codec (docs/protocol.md §1): arbitrary bytes never
//! panic either decoder and `consumed` stays in range; a decode step's answer
//! depends only on the frame's own bytes, however the stream is cut; every
//! encodable frame round-trips.
//!
//! Case counts are kept modest so the whole file runs in a few seconds; the
//! fuzz targets in `fuzz/` explore the same ground for much longer.

use proptest::collection::vec;
use proptest::prelude::*;
use protocol::{Decoded, ErrorCode, Event, Kind, LeftReason, Limits, Request, Targets};

fn small_limits() -> Limits {
    Limits {
        max_line: 24,
        max_body: 32,
        max_targets: 3,
    }
}

/// Checks one decode answer against the invariants of the crate docs.
fn check<'a, T: PartialEq + std::fmt::Debug>(
    buf: &'a [u8],
    limits: &Limits,
    decode: impl Fn(&'a [u8]) -> Decoded<T>,
) -> Result<(), TestCaseError> {
    let got = decode(buf);
    match &got {
        Decoded::Incomplete => {
            // Nothing longer than a frame (plus blank lines) is ever held.
            let blanks = leading_blank_bytes(buf);
            prop_assert!(buf.len() - blanks <= limits.max_frame());
        }
        Decoded::Frame { consumed, .. } | Decoded::Invalid { consumed, .. } => {
            let consumed = *consumed;
            prop_assert!(consumed > 0, "consumed 0");
            prop_assert!(consumed <= buf.len(), "consumed past the end");
            // The frame's own bytes give the same answer, and one byte less
            // is not yet a frame.
            prop_assert_eq!(&decode(&buf[..consumed]), &got);
            prop_assert_eq!(decode(&buf[..consumed - 1]), Decoded::Incomplete);
            if let Decoded::Invalid { error, .. } = &got {
                prop_assert_ne!(error.code, ErrorCode::TooLong);
            }
        }
        Decoded::Fatal(e) => {
            prop_assert!(matches!(e.code, ErrorCode::TooLong | ErrorCode::BadFrame));
        }
    }
    // Monotone in the input: once a prefix decides, the whole buffer says
    // the same thing (this is what makes any cut of the stream safe).
    for cut in [buf.len() / 3, buf.len() / 2, buf.len().saturating_sub(1)] {
        let early = decode(&buf[..cut]);
        if early != Decoded::Incomplete {
            prop_assert_eq!(&early, &got, "cut at {}", cut);
        }
    }
    Ok(())
}

fn leading_blank_bytes(buf: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\n', ..] => n += 1,
            [b'\r', b'\n', ..] => n += 2,
            _ => return n,
        }
    }
}

/// Bytes that look like the protocol often enough to reach deep paths:
/// pieces of frames glued together, with a sprinkle of raw bytes.
fn wireish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"SEND ".to_vec()),
        Just(b"send ".to_vec()),
        Just(b"NAME ".to_vec()),
        Just(b"LIST".to_vec()),
        Just(b"RECV ".to_vec()),
        Just(b"PING".to_vec()),
        Just(b"HELP".to_vec()),
        Just(b"QUIT".to_vec()),
        Just(b"MSG 1 bob direct 2 ".to_vec()),
        Just(b"INFO ".to_vec()),
        Just(b"HELLO chat 1 :".to_vec()),
        Just(b"USERS ".to_vec()),
        Just(b"ACK 1 2".to_vec()),
        Just(b"ERR NO_SUCH_USER ".to_vec()),
        Just(b"LEFT bob quit".to_vec()),
        Just(b"PONG".to_vec()),
        Just(b"BYE".to_vec()),
        Just(b"*".to_vec()),
        Just(b",".to_vec()),
        Just(b" ".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"bob".to_vec()),
        Just(b"99999999999999999999".to_vec()),
        (0u32..40).prop_map(|n| n.to_string().into_bytes()),
        vec(any::<u8>(), 1..4),
    ];
    vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_break_the_request_decoder(buf in vec(any::<u8>(), 0..300)) {
        for limits in [Limits::default(), small_limits()] {
            check(&buf, &limits, |b| Request::decode(b, &limits))?;
        }
    }

    #[test]
    fn arbitrary_bytes_never_break_the_event_decoder(buf in vec(any::<u8>(), 0..300)) {
        for limits in [Limits::default(), small_limits()] {
            check(&buf, &limits, |b| Event::decode(b, &limits))?;
        }
    }

    #[test]
    fn wire_like_bytes_never_break_either_decoder(buf in wireish()) {
        for limits in [Limits::default(), small_limits()] {
            check(&buf, &limits, |b| Request::decode(b, &limits))?;
            check(&buf, &limits, |b| Event::decode(b, &limits))?;
        }
    }

    /// A whole stream, decoded frame by frame as a server does: every step
    /// keeps the invariants and the loop always makes progress.
    #[test]
    fn streams_decode_frame_by_frame(buf in wireish()) {
        let limits = small_limits();
        let mut rest = &buf[..];
        while !rest.is_empty() {
            check(rest, &limits, |b| Request::decode(b, &limits))?;
            match Request::decode(rest, &limits) {
                Decoded::Frame { consumed, .. } | Decoded::Invalid { consumed, .. } => {
                    rest = &rest[consumed..];
                }
                Decoded::Incomplete | Decoded::Fatal(_) => break,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Round trips: owned models of every frame, limited to what can be encoded
// (no CR or LF in header fields, fields without spaces where the syntax
// has none, and so on).
// ---------------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"
}

/// Text for a header's rest of line: anything printable, spaces included.
fn text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,40}"
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..80)
}

fn room() -> impl Strategy<Value = String> {
    "#[A-Za-z0-9_.-]{1,32}"
}

#[derive(Debug, Clone)]
enum Req {
    Name(String),
    Login(String, String),
    Register(String),
    List(Option<String>),
    Join(String),
    Part(String, Option<Vec<u8>>),
    Rooms,
    SendRoom(String, Vec<u8>),
    Send(Option<Vec<String>>, Vec<u8>),
    Recv(u64, String),
    Ping(Option<String>),
    Help,
    Quit(Option<Vec<u8>>),
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        // NAME passes anything through for the broker to judge, but two
        // words are a name and a password (Login): a name here has no
        // space, or two or more (then it is one bad name).
        "[^\r\n ]{1,40}".prop_map(Req::Name),
        "[^\r\n ]{1,10} [^\r\n ]{1,10} [^\r\n]{0,10}".prop_map(Req::Name),
        ("[^\r\n ]{1,32}", "[^\r\n ]{1,128}").prop_map(|(n, p)| Req::Login(n, p)),
        "[^\r\n]{1,128}".prop_map(Req::Register),
        proptest::option::of(room()).prop_map(Req::List),
        room().prop_map(Req::Join),
        (room(), proptest::option::of(body())).prop_map(|(r, b)| Req::Part(r, b)),
        Just(Req::Rooms),
        (room(), body()).prop_map(|(r, b)| Req::SendRoom(r, b)),
        (proptest::option::of(vec(name(), 1..6)), body()).prop_map(|(t, b)| Req::Send(t, b)),
        (any::<u64>(), "[!-~]{1,32}").prop_map(|(id, f)| Req::Recv(id, f)),
        proptest::option::of("[^\r\n]{1,20}").prop_map(Req::Ping),
        Just(Req::Help),
        proptest::option::of(body()).prop_map(Req::Quit),
    ]
}

fn as_request<'a>(r: &'a Req, joined: &'a str) -> Request<'a> {
    match r {
        Req::Name(n) => Request::Name { name: n },
        Req::Login(name, password) => Request::Login { name, password },
        Req::Register(password) => Request::Register { password },
        Req::List(room) => Request::List {
            room: room.as_deref(),
        },
        Req::Join(room) => Request::Join { room },
        Req::Part(room, reason) => Request::Part {
            room,
            reason: reason.as_deref(),
        },
        Req::Rooms => Request::Rooms,
        Req::SendRoom(room, b) => Request::Send {
            targets: Targets::Room(room),
            body: b,
        },
        Req::Send(t, b) => Request::Send {
            targets: if t.is_some() {
                Targets::Names(joined)
            } else {
                Targets::All
            },
            body: b,
        },
        Req::Recv(id, from) => Request::Recv { id: *id, from },
        Req::Ping(t) => Request::Ping {
            token: t.as_deref(),
        },
        Req::Help => Request::Help,
        Req::Quit(r) => Request::Quit {
            reason: r.as_deref(),
        },
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Hello(String, u32, String),
    NameOk(String),
    Users(usize, Option<String>, String),
    Msg(u64, String, K, u64, Vec<u8>),
    Ack(u64, u64, Option<String>),
    Rcpt(u64, String),
    Joined(String, Option<String>),
    JoinOk(String, usize),
    PartOk(String),
    Parted(String, String),
    Rooms(usize, String),
    Left(String, LeftReason),
    Pong(Option<String>),
    Info(Vec<u8>),
    Err(ErrorCode, Option<String>, String),
    Bye,
    Shutdown(String),
}

/// An owned `Kind`.
#[derive(Debug, Clone)]
enum K {
    Direct,
    Multi,
    All,
    Room(String),
}

fn kind() -> impl Strategy<Value = K> {
    prop_oneof![
        Just(K::Direct),
        Just(K::Multi),
        Just(K::All),
        room().prop_map(K::Room)
    ]
}

fn as_kind(k: &K) -> Kind<'_> {
    match k {
        K::Direct => Kind::Direct,
        K::Multi => Kind::Multi,
        K::All => Kind::All,
        K::Room(r) => Kind::Room(r),
    }
}

fn ev() -> impl Strategy<Value = Ev> {
    let names = || vec(name(), 1..5).prop_map(|v| v.join(","));
    prop_oneof![
        (name(), any::<u32>(), text()).prop_map(|(s, v, t)| Ev::Hello(s, v, t)),
        name().prop_map(Ev::NameOk),
        (
            0usize..1000,
            proptest::option::of(room()),
            vec(name(), 0..6)
        )
            .prop_map(|(c, r, n)| Ev::Users(c, r, n.join(" "))),
        (room(), 0usize..1000).prop_map(|(r, n)| Ev::JoinOk(r, n)),
        room().prop_map(Ev::PartOk),
        (name(), room()).prop_map(|(n, r)| Ev::Parted(n, r)),
        (0usize..1000, vec(room(), 0..6)).prop_map(|(c, r)| Ev::Rooms(c, r.join(" "))),
        (any::<u64>(), name(), kind(), any::<u64>(), body())
            .prop_map(|(i, f, k, t, b)| Ev::Msg(i, f, k, t, b)),
        (any::<u64>(), any::<u64>(), proptest::option::of(names()))
            .prop_map(|(i, q, m)| Ev::Ack(i, q, m)),
        (any::<u64>(), name()).prop_map(|(i, b)| Ev::Rcpt(i, b)),
        (name(), proptest::option::of(room())).prop_map(|(n, r)| Ev::Joined(n, r)),
        (name(), proptest::sample::select(LeftReason::ALL.to_vec()))
            .prop_map(|(n, r)| Ev::Left(n, r)),
        proptest::option::of(text()).prop_map(Ev::Pong),
        body().prop_map(Ev::Info),
        (
            proptest::sample::select(ErrorCode::ALL.to_vec()),
            proptest::option::of(names()),
            text()
        )
            .prop_map(|(c, a, t)| Ev::Err(c, a, t)),
        Just(Ev::Bye),
        text().prop_map(Ev::Shutdown),
    ]
}

fn as_event(e: &Ev) -> Event<'_> {
    match e {
        Ev::Hello(s, v, t) => Event::Hello {
            server: s,
            version: *v,
            text: t,
        },
        Ev::NameOk(n) => Event::NameOk { name: n },
        Ev::Users(c, r, n) => Event::Users {
            count: *c,
            room: r.as_deref(),
            names: n,
        },
        Ev::JoinOk(r, n) => Event::JoinOk {
            room: r,
            members: *n,
        },
        Ev::PartOk(r) => Event::PartOk { room: r },
        Ev::Parted(n, r) => Event::Parted { name: n, room: r },
        Ev::Rooms(c, r) => Event::Rooms {
            count: *c,
            rooms: r,
        },
        Ev::Msg(id, from, kind, ts_ms, body) => Event::Msg {
            id: *id,
            from,
            kind: as_kind(kind),
            ts_ms: *ts_ms,
            body,
        },
        Ev::Ack(id, queued, missing) => Event::Ack {
            id: *id,
            queued: *queued,
            missing: missing.as_deref(),
        },
        Ev::Rcpt(id, by) => Event::Rcpt { id: *id, by },
        Ev::Joined(n, r) => Event::Joined {
            name: n,
            room: r.as_deref(),
        },
        Ev::Left(n, r) => Event::Left {
            name: n,
            reason: *r,
        },
        Ev::Pong(t) => Event::Pong {
            token: t.as_deref(),
        },
        Ev::Info(t) => Event::Info { text: t },
        Ev::Err(c, a, t) => Event::Err {
            code: *c,
            args: a.as_deref(),
            text: t,
        },
        Ev::Bye => Event::Bye,
        Ev::Shutdown(t) => Event::Shutdown { text: t },
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn requests_round_trip(r in req()) {
        let joined = match &r {
            Req::Send(Some(t), _) => t.join(","),
            _ => String::new(),
        };
        let frame = as_request(&r, &joined);
        let mut wire = Vec::new();
        frame.encode(&mut wire);
        prop_assert_eq!(
            Request::decode(&wire, &Limits::default()),
            Decoded::Frame { frame, consumed: wire.len() }
        );
    }

    /// SEND and QUIT also round-trip in the inline form a person types,
    /// whenever the body fits on a line.
    #[test]
    fn inline_bodies_round_trip(
        targets in proptest::option::of(vec(name(), 1..6)),
        body in "[^\r\n]{0,60}",
        lower in any::<bool>(),
        cr in any::<bool>(),
    ) {
        let joined = targets.as_ref().map_or_else(|| "*".to_owned(), |t| t.join(","));
        let verb = if lower { "send" } else { "SEND" };
        let eol = if cr { "\r\n" } else { "\n" };
        let wire = format!("{verb} {joined} :{body}{eol}");
        let targets = if targets.is_some() { Targets::Names(&joined) } else { Targets::All };
        prop_assert_eq!(
            Request::decode(wire.as_bytes(), &Limits::default()),
            Decoded::Frame {
                frame: Request::Send { targets, body: body.as_bytes() },
                consumed: wire.len(),
            }
        );
        let wire = format!("QUIT :{body}{eol}");
        prop_assert_eq!(
            Request::decode(wire.as_bytes(), &Limits::default()),
            Decoded::Frame {
                frame: Request::Quit { reason: Some(body.as_bytes()) },
                consumed: wire.len(),
            }
        );
    }

    #[test]
    fn events_round_trip(e in ev()) {
        let frame = as_event(&e);
        let mut wire = Vec::new();
        frame.encode(&mut wire);
        prop_assert_eq!(
            Event::decode(&wire, &Limits::default()),
            Decoded::Frame { frame, consumed: wire.len() }
        );
    }

    /// Many frames back to back decode to the same frames, in order, however
    /// the stream is cut in two.
    #[test]
    fn encoded_streams_decode_in_order(
        evs in vec(ev(), 1..8),
        cut_seed in any::<usize>(),
    ) {
        let mut wire = Vec::new();
        for e in &evs {
            as_event(e).encode(&mut wire);
        }
        let cut = cut_seed % (wire.len() + 1);
        let limits = Limits::default();
        // First read: only the bytes before the cut.
        let mut rest = &wire[..cut];
        let mut got = 0;
        while let Decoded::Frame { frame, consumed } = Event::decode(rest, &limits) {
            prop_assert_eq!(frame, as_event(&evs[got]));
            got += 1;
            rest = &rest[consumed..];
        }
        // Second read: everything else arrives.
        let mut rest = &wire[cut - rest.len()..];
        while !rest.is_empty() {
            match Event::decode(rest, &limits) {
                Decoded::Frame { frame, consumed } => {
                    prop_assert_eq!(frame, as_event(&evs[got]));
                    got += 1;
                    rest = &rest[consumed..];
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
        prop_assert_eq!(got, evs.len());
    }
}
