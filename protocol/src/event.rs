//! Broker → client frames (docs/protocol.md, "Broker to client").

use crate::error::{ErrorCode, ProtoError};
use crate::framing::{counted_body, exact_fields, next_line, split_body, split_verb, BodyForm};
use crate::num::{parse_u64, push_u64};
use crate::{Decoded, Limits};

/// How a message was addressed: by the names the sender gave, or the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind<'a> {
    /// One distinct named target.
    Direct,
    /// Several distinct named targets.
    Multi,
    /// `*`: everyone else.
    All,
    /// A room, by its name as shown (`#room`).
    Room(&'a str),
}

impl<'a> Kind<'a> {
    /// The kind as written on the wire.
    pub fn as_str(self) -> &'a str {
        match self {
            Kind::Direct => "direct",
            Kind::Multi => "multi",
            Kind::All => "all",
            Kind::Room(room) => room,
        }
    }

    /// Parses a kind as written on the wire.
    pub fn parse(s: &'a [u8]) -> Option<Kind<'a>> {
        match s {
            b"direct" => Some(Kind::Direct),
            b"multi" => Some(Kind::Multi),
            b"all" => Some(Kind::All),
            [b'#', ..] => std::str::from_utf8(s).ok().map(Kind::Room),
            _ => None,
        }
    }
}

/// Why someone left, as announced in `LEFT <name> <reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeftReason {
    /// Sent `QUIT`.
    Quit,
    /// The connection dropped.
    Disconnect,
    /// A dead peer found by keepalive.
    Timeout,
    /// The outbound queue overflowed.
    Slow,
    /// Closed after a fatal protocol error.
    Error,
    /// Closed for flooding.
    Kicked,
}

impl LeftReason {
    /// All reasons, in the contract's order.
    pub const ALL: [LeftReason; 6] = [
        LeftReason::Quit,
        LeftReason::Disconnect,
        LeftReason::Timeout,
        LeftReason::Slow,
        LeftReason::Error,
        LeftReason::Kicked,
    ];

    /// The reason as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LeftReason::Quit => "quit",
            LeftReason::Disconnect => "disconnect",
            LeftReason::Timeout => "timeout",
            LeftReason::Slow => "slow",
            LeftReason::Error => "error",
            LeftReason::Kicked => "kicked",
        }
    }

    /// Parses a reason as written on the wire.
    pub fn parse(s: &[u8]) -> Option<LeftReason> {
        LeftReason::ALL
            .into_iter()
            .find(|r| r.as_str().as_bytes() == s)
    }
}

/// One broker → client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// `HELLO <server-name> 1 :<text>`: the greeting.
    Hello {
        /// The broker's `server_name`.
        server: &'a str,
        /// Protocol version (1).
        version: u32,
        /// Greeting for people.
        text: &'a str,
    },
    /// `OK NAME <name>`.
    NameOk {
        /// The registered name.
        name: &'a str,
    },
    /// `OK REGISTER <name>`: the name is now an account.
    RegisterOk {
        /// The name.
        name: &'a str,
    },
    /// `USERS <count> [#room] :<names>`.
    Users {
        /// How many names follow.
        count: usize,
        /// The room, for `LIST #room`.
        room: Option<&'a str>,
        /// Space-separated names, sorted case-insensitively.
        names: &'a str,
    },
    /// `OK JOIN #room <members>`: joined; `members` counts everyone in it
    /// now, the joiner included.
    JoinOk {
        /// The room as shown.
        room: &'a str,
        /// Members now.
        members: usize,
    },
    /// `OK PART #room`.
    PartOk {
        /// The room as shown.
        room: &'a str,
    },
    /// `PARTED <name> #room`: someone left a room.
    Parted {
        /// Who.
        name: &'a str,
        /// The room as shown.
        room: &'a str,
    },
    /// `ROOMS <count> :<rooms>`.
    Rooms {
        /// How many rooms follow.
        count: usize,
        /// Space-separated room names, sorted case-insensitively.
        rooms: &'a str,
    },
    /// `MSG <id> <from> <kind> <unix-ms> <len>` + body.
    Msg {
        /// Broker-wide message id.
        id: u64,
        /// Sender's name.
        from: &'a str,
        /// How it was addressed.
        kind: Kind<'a>,
        /// Broker receive time, ms since the Unix epoch.
        ts_ms: u64,
        /// The message bytes.
        body: &'a [u8],
    },
    /// `ACK <id> <queued> [<missing>]`.
    Ack {
        /// The new message's id.
        id: u64,
        /// Recipients it was queued for.
        queued: u64,
        /// Comma-separated names that were not online.
        missing: Option<&'a str>,
    },
    /// `RCPT <id> <by>`.
    Rcpt {
        /// The message id.
        id: u64,
        /// Who has shown it.
        by: &'a str,
    },
    /// `JOINED <name>` (someone registered) or `JOINED <name> #room`
    /// (someone entered a room).
    Joined {
        /// Who.
        name: &'a str,
        /// The room, if it is a room's news.
        room: Option<&'a str>,
    },
    /// `LEFT <name> <reason>`.
    Left {
        /// Who left.
        name: &'a str,
        /// Why.
        reason: LeftReason,
    },
    /// `PONG [<token>]`.
    Pong {
        /// The `PING`'s token.
        token: Option<&'a str>,
    },
    /// `INFO <len>` + body.
    Info {
        /// Text for people.
        text: &'a [u8],
    },
    /// `ERR <CODE> [<args>] :<text>`.
    Err {
        /// The error code.
        code: ErrorCode,
        /// Arguments (for `NO_SUCH_USER`, the names).
        args: Option<&'a str>,
        /// Text for people.
        text: &'a str,
    },
    /// `BYE`.
    Bye,
    /// `SHUTDOWN :<text>`.
    Shutdown {
        /// The notice.
        text: &'a str,
    },
}

const MALFORMED: ProtoError = ProtoError::new(ErrorCode::BadFrame, "malformed broker frame");
const UNKNOWN: ProtoError = ProtoError::new(ErrorCode::UnknownCommand, "unknown broker frame");

fn utf8(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

impl<'a> Event<'a> {
    /// Decodes one broker frame from the front of `buf`.
    pub fn decode(buf: &'a [u8], limits: &Limits) -> Decoded<Event<'a>> {
        let line = match next_line(buf, limits.max_line) {
            Ok(Some(line)) => line,
            Ok(None) => return Decoded::Incomplete,
            Err(e) => return Decoded::Fatal(e),
        };
        let end = line.end;
        let (verb, rest) = split_verb(line.text);
        let rest = rest.unwrap_or_default();
        // Frames with a counted body first: their length decides `consumed`.
        if verb == b"MSG" || verb == b"INFO" {
            let (head, form) = split_body(rest);
            let BodyForm::Counted(len) = form else {
                return Decoded::Invalid {
                    error: MALFORMED,
                    consumed: end,
                };
            };
            let (body, consumed) = match counted_body(buf, end, len, limits.max_body) {
                Ok(Some(found)) => found,
                Ok(None) => return Decoded::Incomplete,
                Err(e) => return Decoded::Fatal(e),
            };
            let frame = if verb == b"INFO" {
                head.is_empty().then_some(Event::Info { text: body })
            } else {
                decode_msg(head, body)
            };
            return match frame {
                Some(frame) => Decoded::Frame { frame, consumed },
                None => Decoded::Invalid {
                    error: MALFORMED,
                    consumed,
                },
            };
        }
        let frame = match verb {
            b"HELLO" => decode_hello(rest),
            b"OK" => decode_ok(rest),
            b"ROOMS" => decode_rooms(rest),
            b"PARTED" => exact_fields::<2>(rest).and_then(|[name, room]| {
                Some(Event::Parted {
                    name: utf8(name)?,
                    room: utf8(room)?,
                })
            }),
            b"USERS" => decode_users(rest),
            b"ACK" => decode_ack(rest),
            b"RCPT" => exact_fields::<2>(rest).and_then(|[id, by]| {
                Some(Event::Rcpt {
                    id: parse_u64(id)?,
                    by: utf8(by)?,
                })
            }),
            b"JOINED" => match exact_fields::<1>(rest) {
                Some([name]) => utf8(name).map(|name| Event::Joined { name, room: None }),
                None => exact_fields::<2>(rest).and_then(|[name, room]| {
                    Some(Event::Joined {
                        name: utf8(name)?,
                        room: Some(utf8(room)?),
                    })
                }),
            },
            b"LEFT" => exact_fields::<2>(rest).and_then(|[name, reason]| {
                Some(Event::Left {
                    name: utf8(name)?,
                    reason: LeftReason::parse(reason)?,
                })
            }),
            b"PONG" => match line.text.len() {
                4 => Some(Event::Pong { token: None }),
                _ => utf8(rest).map(|t| Event::Pong { token: Some(t) }),
            },
            b"ERR" => decode_err(rest),
            b"BYE" => rest.is_empty().then_some(Event::Bye),
            b"SHUTDOWN" => match split_body(rest) {
                (b"", BodyForm::Inline(text)) => utf8(text).map(|text| Event::Shutdown { text }),
                _ => None,
            },
            _ => {
                return Decoded::Invalid {
                    error: UNKNOWN,
                    consumed: end,
                }
            }
        };
        match frame {
            Some(frame) => Decoded::Frame {
                frame,
                consumed: end,
            },
            None => Decoded::Invalid {
                error: MALFORMED,
                consumed: end,
            },
        }
    }

    /// Appends this frame in its wire form (bodies counted).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Event::Hello {
                server,
                version,
                text,
            } => {
                out.extend_from_slice(b"HELLO ");
                out.extend_from_slice(server.as_bytes());
                out.push(b' ');
                push_u64(out, u64::from(*version));
                push_text(out, text);
            }
            Event::NameOk { name } => line2(out, b"OK NAME ", name),
            Event::RegisterOk { name } => line2(out, b"OK REGISTER ", name),
            Event::Users { count, room, names } => {
                out.extend_from_slice(b"USERS ");
                push_u64(out, *count as u64);
                if let Some(r) = room {
                    out.push(b' ');
                    out.extend_from_slice(r.as_bytes());
                }
                push_text(out, names);
            }
            Event::JoinOk { room, members } => {
                out.extend_from_slice(b"OK JOIN ");
                out.extend_from_slice(room.as_bytes());
                out.push(b' ');
                push_u64(out, *members as u64);
                out.push(b'\n');
            }
            Event::PartOk { room } => line2(out, b"OK PART ", room),
            Event::Parted { name, room } => {
                out.extend_from_slice(b"PARTED ");
                out.extend_from_slice(name.as_bytes());
                line2(out, b" ", room);
            }
            Event::Rooms { count, rooms } => {
                out.extend_from_slice(b"ROOMS ");
                push_u64(out, *count as u64);
                push_text(out, rooms);
            }
            Event::Msg {
                id,
                from,
                kind,
                ts_ms,
                body,
            } => encode_msg(out, *id, from, *kind, *ts_ms, body),
            Event::Ack {
                id,
                queued,
                missing,
            } => {
                out.extend_from_slice(b"ACK ");
                push_u64(out, *id);
                out.push(b' ');
                push_u64(out, *queued);
                if let Some(m) = missing {
                    out.push(b' ');
                    out.extend_from_slice(m.as_bytes());
                }
                out.push(b'\n');
            }
            Event::Rcpt { id, by } => {
                out.extend_from_slice(b"RCPT ");
                push_u64(out, *id);
                line2(out, b" ", by);
            }
            Event::Joined { name, room } => match room {
                Some(r) => {
                    out.extend_from_slice(b"JOINED ");
                    out.extend_from_slice(name.as_bytes());
                    line2(out, b" ", r);
                }
                None => line2(out, b"JOINED ", name),
            },
            Event::Left { name, reason } => {
                out.extend_from_slice(b"LEFT ");
                out.extend_from_slice(name.as_bytes());
                line2(out, b" ", reason.as_str());
            }
            Event::Pong { token } => match token {
                Some(t) => line2(out, b"PONG ", t),
                None => out.extend_from_slice(b"PONG\n"),
            },
            Event::Info { text } => {
                out.extend_from_slice(b"INFO ");
                push_u64(out, text.len() as u64);
                out.push(b'\n');
                out.extend_from_slice(text);
                out.push(b'\n');
            }
            Event::Err { code, args, text } => {
                out.extend_from_slice(b"ERR ");
                out.extend_from_slice(code.as_str().as_bytes());
                if let Some(a) = args {
                    out.push(b' ');
                    out.extend_from_slice(a.as_bytes());
                }
                push_text(out, text);
            }
            Event::Bye => out.extend_from_slice(b"BYE\n"),
            Event::Shutdown { text } => {
                out.extend_from_slice(b"SHUTDOWN");
                push_text(out, text);
            }
        }
    }
}

/// Appends a `MSG` frame; the broker's hot path calls this once per message.
pub fn encode_msg(out: &mut Vec<u8>, id: u64, from: &str, kind: Kind<'_>, ts_ms: u64, body: &[u8]) {
    out.reserve(48 + from.len() + body.len());
    out.extend_from_slice(b"MSG ");
    push_u64(out, id);
    out.push(b' ');
    out.extend_from_slice(from.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(b' ');
    push_u64(out, ts_ms);
    out.push(b' ');
    push_u64(out, body.len() as u64);
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(b'\n');
}

fn line2(out: &mut Vec<u8>, prefix: &[u8], s: &str) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

/// ` :<text>\n`, with any CR or LF in the text turned into spaces so a
/// header line can never be split.
fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b" :");
    out.extend(
        text.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.push(b'\n');
}

fn decode_hello(rest: &[u8]) -> Option<Event<'_>> {
    let (head, BodyForm::Inline(text)) = split_body(rest) else {
        return None;
    };
    let [server, version] = exact_fields::<2>(head)?;
    Some(Event::Hello {
        server: utf8(server)?,
        version: u32::try_from(parse_u64(version)?).ok()?,
        text: utf8(text)?,
    })
}

fn decode_ok(rest: &[u8]) -> Option<Event<'_>> {
    match exact_fields::<2>(rest) {
        Some([b"NAME", name]) => utf8(name).map(|name| Event::NameOk { name }),
        Some([b"REGISTER", name]) => utf8(name).map(|name| Event::RegisterOk { name }),
        Some([b"PART", room]) => utf8(room).map(|room| Event::PartOk { room }),
        _ => match exact_fields::<3>(rest)? {
            [b"JOIN", room, members] => Some(Event::JoinOk {
                room: utf8(room)?,
                members: usize::try_from(parse_u64(members)?).ok()?,
            }),
            _ => None,
        },
    }
}

fn decode_rooms(rest: &[u8]) -> Option<Event<'_>> {
    let (count, BodyForm::Inline(rooms)) = split_body(rest) else {
        return None;
    };
    Some(Event::Rooms {
        count: usize::try_from(parse_u64(count)?).ok()?,
        rooms: utf8(rooms)?,
    })
}

fn decode_users(rest: &[u8]) -> Option<Event<'_>> {
    let (head, BodyForm::Inline(names)) = split_body(rest) else {
        return None;
    };
    let (count, room) = match exact_fields::<1>(head) {
        Some([count]) => (count, None),
        None => {
            let [count, room] = exact_fields::<2>(head)?;
            (count, Some(utf8(room)?))
        }
    };
    Some(Event::Users {
        count: usize::try_from(parse_u64(count)?).ok()?,
        room,
        names: utf8(names)?,
    })
}

fn decode_msg<'a>(head: &'a [u8], body: &'a [u8]) -> Option<Event<'a>> {
    let [id, from, kind, ts] = exact_fields::<4>(head)?;
    Some(Event::Msg {
        id: parse_u64(id)?,
        from: utf8(from)?,
        kind: Kind::parse(kind)?,
        ts_ms: parse_u64(ts)?,
        body,
    })
}

fn decode_ack(rest: &[u8]) -> Option<Event<'_>> {
    let (id, queued, missing) = match exact_fields::<2>(rest) {
        Some([id, queued]) => (id, queued, None),
        None => {
            let [id, queued, missing] = exact_fields::<3>(rest)?;
            (id, queued, Some(utf8(missing)?))
        }
    };
    Some(Event::Ack {
        id: parse_u64(id)?,
        queued: parse_u64(queued)?,
        missing,
    })
}

fn decode_err(rest: &[u8]) -> Option<Event<'_>> {
    let (head, BodyForm::Inline(text)) = split_body(rest) else {
        return None;
    };
    let head = utf8(head)?;
    let (code, args) = match head.split_once(' ') {
        Some((code, args)) => (code, Some(args)),
        None => (head, None),
    };
    Some(Event::Err {
        code: ErrorCode::parse(code)?,
        args,
        text: utf8(text)?,
    })
}
