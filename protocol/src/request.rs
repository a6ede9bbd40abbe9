//! Client → broker frames (docs/protocol.md, "Client to broker").

use crate::error::{ErrorCode, ProtoError};
use crate::framing::{counted_body, exact_fields, next_line, split_body, split_verb, BodyForm};
use crate::num::{parse_u64, push_u64};
use crate::{Decoded, Limits};

/// The targets of a `SEND`, already checked for shape and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets<'a> {
    /// `*`: everyone else.
    All,
    /// One or more non-empty names joined by single commas, as given
    /// (repeats included; the broker folds them).
    Names(&'a str),
    /// `#room`: every other member of a room (the name is not yet checked
    /// against the room rules).
    Room(&'a str),
}

impl<'a> Targets<'a> {
    /// The names as given, in order (empty for [`Targets::All`] and
    /// [`Targets::Room`]).
    pub fn names(&self) -> impl Iterator<Item = &'a str> {
        let list = match self {
            Targets::All | Targets::Room(_) => None,
            Targets::Names(list) => Some(*list),
        };
        list.into_iter().flat_map(|l| l.split(','))
    }

    /// Parses a `SEND` target list: `*`, one `#room`, or names joined by
    /// single commas (at most `limits.max_targets`). Names and the room
    /// are not yet checked against their rules.
    pub fn parse(head: &'a str, limits: &Limits) -> Result<Targets<'a>, ProtoError> {
        if head.is_empty() || head.contains(' ') {
            return Err(BAD_SEND);
        }
        if head == "*" {
            return Ok(Targets::All);
        }
        if head.starts_with('#') {
            if head.contains(',') {
                return Err(BAD_ROOM_TARGET);
            }
            return Ok(Targets::Room(head));
        }
        let mut count = 0usize;
        for name in head.split(',') {
            if name.is_empty() || name == "*" {
                return Err(BAD_TARGETS);
            }
            if name.starts_with('#') {
                return Err(BAD_ROOM_TARGET);
            }
            count += 1;
        }
        if count > limits.max_targets {
            return Err(TOO_MANY);
        }
        Ok(Targets::Names(head))
    }

    /// The targets as written on the wire.
    pub fn as_str(&self) -> &'a str {
        match self {
            Targets::All => "*",
            Targets::Names(list) | Targets::Room(list) => list,
        }
    }
}

/// One client → broker frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `NAME <name>`. The name is not yet checked against the naming rules:
    /// the broker answers `ALREADY_NAMED` before it answers `BAD_NAME`.
    Name {
        /// The name as sent.
        name: &'a str,
    },
    /// `NAME <name> <password>`: take a name that is an account.
    Login {
        /// The name as sent (not yet checked).
        name: &'a str,
        /// The password as sent (not yet checked against the rules).
        password: &'a str,
    },
    /// `REGISTER <password>`: make the current name an account.
    Register {
        /// The password as sent (not yet checked against the rules).
        password: &'a str,
    },
    /// `LIST` (everyone online) or `LIST #room` (a room's members).
    List {
        /// The room, if one was named (not yet checked).
        room: Option<&'a str>,
    },
    /// `JOIN #room`.
    Join {
        /// The room as sent (not yet checked).
        room: &'a str,
    },
    /// `PART #room [:<reason>]`.
    Part {
        /// The room as sent (not yet checked).
        room: &'a str,
        /// Why, if the client said.
        reason: Option<&'a [u8]>,
    },
    /// `ROOMS`: the rooms that exist.
    Rooms,
    /// `SEND <targets> <len>` + body or `SEND <targets> :<text>`.
    Send {
        /// Who the message is for.
        targets: Targets<'a>,
        /// The message bytes.
        body: &'a [u8],
    },
    /// `RECV <id> <from>`: a receipt.
    Recv {
        /// The message id.
        id: u64,
        /// Who sent the message.
        from: &'a str,
    },
    /// `PING [<token>]`.
    Ping {
        /// Echoed back in `PONG`.
        token: Option<&'a str>,
    },
    /// `HELP`.
    Help,
    /// `QUIT [:<reason>]`.
    Quit {
        /// Why, if the client said.
        reason: Option<&'a [u8]>,
    },
}

const BAD_SEND: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "usage: SEND <name>[,<name>...] :<text>, SEND * :<text>, or SEND <targets> <len> + body",
);
const BAD_TARGETS: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "targets are * alone or names joined by single commas",
);
const TOO_MANY: ProtoError = ProtoError::new(ErrorCode::TooManyTargets, "too many target names");
const BAD_RECV: ProtoError = ProtoError::new(ErrorCode::BadFrame, "usage: RECV <id> <from>");
const BAD_NAME_FRAME: ProtoError = ProtoError::new(ErrorCode::BadFrame, "usage: NAME <name>");
const BAD_NAME_UTF8: ProtoError = ProtoError::new(
    ErrorCode::BadName,
    "a name uses only letters, digits, '_', '-' and '.'",
);
const BAD_REGISTER: ProtoError = ProtoError::new(ErrorCode::BadFrame, "usage: REGISTER <password>");
const BAD_PASSWORD_UTF8: ProtoError =
    ProtoError::new(ErrorCode::BadPassword, "a password is UTF-8 text");
const BAD_LIST: ProtoError = ProtoError::new(ErrorCode::BadFrame, "usage: LIST or LIST #room");
const BAD_JOIN: ProtoError = ProtoError::new(ErrorCode::BadFrame, "usage: JOIN #room");
const BAD_PART: ProtoError = ProtoError::new(ErrorCode::BadFrame, "usage: PART #room [:<reason>]");
const BAD_ROOMS: ProtoError = ProtoError::new(ErrorCode::BadFrame, "usage: ROOMS");
const BAD_ROOM_TARGET: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "a room is the only target of its SEND: SEND #room :<text>",
);
const BAD_UTF8: ProtoError = ProtoError::new(ErrorCode::BadFrame, "header is not valid UTF-8");
const UNKNOWN: ProtoError = ProtoError::new(ErrorCode::UnknownCommand, "unknown command; try HELP");

fn invalid<T>(error: ProtoError, consumed: usize) -> Decoded<T> {
    Decoded::Invalid { error, consumed }
}

impl<'a> Request<'a> {
    /// Decodes one client frame from the front of `buf`.
    pub fn decode(buf: &'a [u8], limits: &Limits) -> Decoded<Request<'a>> {
        let line = match next_line(buf, limits.max_line) {
            Ok(Some(line)) => line,
            Ok(None) => return Decoded::Incomplete,
            Err(e) => return Decoded::Fatal(e),
        };
        let end = line.end;
        let (verb, rest) = split_verb(line.text);
        let frame = |frame| Decoded::Frame {
            frame,
            consumed: end,
        };
        if verb.eq_ignore_ascii_case(b"SEND") {
            return decode_send(buf, end, rest.unwrap_or_default(), limits);
        }
        if verb.eq_ignore_ascii_case(b"NAME") {
            return match rest {
                None | Some(b"") => invalid(BAD_NAME_FRAME, end),
                Some(name) => match std::str::from_utf8(name) {
                    Ok(rest) => match rest.split_once(' ') {
                        // `NAME <name> <password>`; anything else with
                        // spaces is a name that breaks the rules.
                        Some((name, password))
                            if !name.is_empty()
                                && !password.is_empty()
                                && !password.contains(' ') =>
                        {
                            frame(Request::Login { name, password })
                        }
                        _ => frame(Request::Name { name: rest }),
                    },
                    Err(_) => invalid(BAD_NAME_UTF8, end),
                },
            };
        }
        if verb.eq_ignore_ascii_case(b"REGISTER") {
            return match rest.map(std::str::from_utf8) {
                Some(Ok(password)) if !password.is_empty() => frame(Request::Register { password }),
                Some(Err(_)) => invalid(BAD_PASSWORD_UTF8, end),
                _ => invalid(BAD_REGISTER, end),
            };
        }
        if verb.eq_ignore_ascii_case(b"LIST") {
            return match rest.map(std::str::from_utf8) {
                None => frame(Request::List { room: None }),
                Some(Ok(room)) if room.starts_with('#') && !room.contains(' ') => {
                    frame(Request::List { room: Some(room) })
                }
                _ => invalid(BAD_LIST, end),
            };
        }
        if verb.eq_ignore_ascii_case(b"JOIN") {
            return match exact_fields::<1>(rest.unwrap_or_default())
                .map(|[r]| std::str::from_utf8(r))
            {
                Some(Ok(room)) => frame(Request::Join { room }),
                _ => invalid(BAD_JOIN, end),
            };
        }
        if verb.eq_ignore_ascii_case(b"ROOMS") {
            return match rest {
                None => frame(Request::Rooms),
                Some(_) => invalid(BAD_ROOMS, end),
            };
        }
        if verb.eq_ignore_ascii_case(b"PART") {
            return decode_part(buf, end, rest.unwrap_or_default(), limits);
        }
        if verb.eq_ignore_ascii_case(b"RECV") {
            let Some([id, from]) = exact_fields::<2>(rest.unwrap_or_default()) else {
                return invalid(BAD_RECV, end);
            };
            return match (parse_u64(id), std::str::from_utf8(from)) {
                (Some(id), Ok(from)) => frame(Request::Recv { id, from }),
                _ => invalid(BAD_RECV, end),
            };
        }
        if verb.eq_ignore_ascii_case(b"PING") {
            return match rest.map(std::str::from_utf8) {
                None | Some(Ok("")) => frame(Request::Ping { token: None }),
                Some(Ok(token)) => frame(Request::Ping { token: Some(token) }),
                Some(Err(_)) => invalid(BAD_UTF8, end),
            };
        }
        if verb.eq_ignore_ascii_case(b"HELP") {
            // Arguments are ignored: people type `HELP SEND`.
            return frame(Request::Help);
        }
        if verb.eq_ignore_ascii_case(b"QUIT") {
            let rest = rest.unwrap_or_default();
            return match split_body(rest) {
                (b"", BodyForm::Counted(len)) => {
                    match counted_body(buf, end, len, limits.max_body) {
                        Ok(Some((body, body_end))) => Decoded::Frame {
                            frame: Request::Quit { reason: Some(body) },
                            consumed: body_end,
                        },
                        Ok(None) => Decoded::Incomplete,
                        Err(e) => Decoded::Fatal(e),
                    }
                }
                (b"", BodyForm::Inline(text)) => frame(Request::Quit { reason: Some(text) }),
                _ if rest.is_empty() => frame(Request::Quit { reason: None }),
                // Be kind to people: `QUIT bye now` is a reason too.
                _ => frame(Request::Quit { reason: Some(rest) }),
            };
        }
        invalid(UNKNOWN, end)
    }

    /// Appends this frame in its canonical wire form (bodies counted).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Name { name } => {
                out.extend_from_slice(b"NAME ");
                out.extend_from_slice(name.as_bytes());
                out.push(b'\n');
            }
            Request::Login { name, password } => {
                out.extend_from_slice(b"NAME ");
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                out.extend_from_slice(password.as_bytes());
                out.push(b'\n');
            }
            Request::Register { password } => {
                out.extend_from_slice(b"REGISTER ");
                out.extend_from_slice(password.as_bytes());
                out.push(b'\n');
            }
            Request::List { room } => {
                out.extend_from_slice(b"LIST");
                if let Some(r) = room {
                    out.push(b' ');
                    out.extend_from_slice(r.as_bytes());
                }
                out.push(b'\n');
            }
            Request::Join { room } => {
                out.extend_from_slice(b"JOIN ");
                out.extend_from_slice(room.as_bytes());
                out.push(b'\n');
            }
            Request::Part { room, reason } => {
                out.extend_from_slice(b"PART ");
                out.extend_from_slice(room.as_bytes());
                if let Some(r) = reason {
                    out.push(b' ');
                    push_u64(out, r.len() as u64);
                    out.push(b'\n');
                    out.extend_from_slice(r);
                }
                out.push(b'\n');
            }
            Request::Rooms => out.extend_from_slice(b"ROOMS\n"),
            Request::Send { targets, body } => {
                out.extend_from_slice(b"SEND ");
                out.extend_from_slice(targets.as_str().as_bytes());
                out.push(b' ');
                push_u64(out, body.len() as u64);
                out.push(b'\n');
                out.extend_from_slice(body);
                out.push(b'\n');
            }
            Request::Recv { id, from } => {
                out.extend_from_slice(b"RECV ");
                push_u64(out, *id);
                out.push(b' ');
                out.extend_from_slice(from.as_bytes());
                out.push(b'\n');
            }
            Request::Ping { token } => {
                out.extend_from_slice(b"PING");
                if let Some(t) = token {
                    out.push(b' ');
                    out.extend_from_slice(t.as_bytes());
                }
                out.push(b'\n');
            }
            Request::Help => out.extend_from_slice(b"HELP\n"),
            Request::Quit { reason } => {
                out.extend_from_slice(b"QUIT");
                if let Some(r) = reason {
                    out.push(b' ');
                    push_u64(out, r.len() as u64);
                    out.push(b'\n');
                    out.extend_from_slice(r);
                }
                out.push(b'\n');
            }
        }
    }
}

fn decode_send<'a>(
    buf: &'a [u8],
    end: usize,
    rest: &'a [u8],
    limits: &Limits,
) -> Decoded<Request<'a>> {
    let (head, form) = split_body(rest);
    // A counted body is consumed even when the header is wrong, so the
    // stream stays in step (docs/protocol.md, "Errors").
    let (body, consumed) = match take_body(buf, end, form, limits) {
        Ok((Some(body), consumed)) => (body, consumed),
        Ok((None, _)) => return invalid(BAD_SEND, end),
        Err(d) => return d,
    };
    if head.is_empty() || head.contains(&b' ') {
        return invalid(BAD_SEND, consumed);
    }
    let Ok(head) = std::str::from_utf8(head) else {
        return invalid(BAD_UTF8, consumed);
    };
    let targets = match Targets::parse(head, limits) {
        Ok(t) => t,
        Err(e) => return invalid(e, consumed),
    };
    Decoded::Frame {
        frame: Request::Send { targets, body },
        consumed,
    }
}

/// `PART #room`, `PART #room :<reason>` or `PART #room <len>` + reason.
fn decode_part<'a>(
    buf: &'a [u8],
    end: usize,
    rest: &'a [u8],
    limits: &Limits,
) -> Decoded<Request<'a>> {
    let (head, form) = split_body(rest);
    let (reason, consumed) = match take_body(buf, end, form, limits) {
        Ok(found) => found,
        Err(d) => return d,
    };
    match exact_fields::<1>(head).map(|[r]| std::str::from_utf8(r)) {
        Some(Ok(room)) => Decoded::Frame {
            frame: Request::Part { room, reason },
            consumed,
        },
        _ => invalid(BAD_PART, consumed),
    }
}

/// The body a header announced, if any, and the bytes used up to its end;
/// `Err` is the answer to give instead (need more bytes, or a fatal limit).
fn take_body<'a>(
    buf: &'a [u8],
    end: usize,
    form: BodyForm<'a>,
    limits: &Limits,
) -> Result<(Option<&'a [u8]>, usize), Decoded<Request<'a>>> {
    match form {
        BodyForm::None => Ok((None, end)),
        BodyForm::Inline(text) => Ok((Some(text), end)),
        BodyForm::Counted(len) => match counted_body(buf, end, len, limits.max_body) {
            Ok(Some((body, body_end))) => Ok((Some(body), body_end)),
            Ok(None) => Err(Decoded::Incomplete),
            Err(e) => Err(Decoded::Fatal(e)),
        },
    }
}
