//! Routing: who gets a core event, and its bytes for each door.
//!
//! The core speaks in [`Note`]s (a message, someone joining or leaving the
//! chat or a room), never in wire bytes. A [`Fan`] carries one note to its
//! recipients and encodes it at most once per door (and, for IRC, once per
//! variant: with or without a `server-time` tag), the first time a
//! recipient of that door turns up. Only an IRC message addressed to a
//! person (whose target is that person's nick) is encoded per recipient.

use crate::core::conn::{flag, Conn, Door, Frame};
use crate::core::outbound::Outbox;
use crate::Shared;
use protocol::web::{self, http, ws};
use protocol::{encode_msg, irc, ErrorCode, Event, Kind, LeftReason};
use std::cell::RefCell;
use std::sync::Arc;

/// A core event, as neutral as the doors need it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Note<'a> {
    /// A message.
    Msg {
        /// Broker-wide id.
        id: u64,
        /// Sender's name.
        from: &'a str,
        /// Sender's connection id (for receipts).
        from_conn: u64,
        /// How it was addressed.
        kind: Kind<'a>,
        /// Receive time, Unix ms.
        ts: u64,
        /// The bytes.
        body: &'a [u8],
        /// Sent as an IRC `NOTICE` (IRC recipients get a `NOTICE`, which
        /// clients never answer automatically; natives see a plain `MSG`).
        notice: bool,
    },
    /// Someone registered (`room: None`) or entered a room.
    Joined {
        /// Who.
        name: &'a str,
        /// The room's shown name, for a room.
        room: Option<&'a str>,
    },
    /// Someone left the chat.
    Left {
        /// Who.
        name: &'a str,
        /// Why.
        reason: LeftReason,
        /// What they said when they quit, if anything.
        text: Option<&'a [u8]>,
    },
    /// Someone left a room.
    Parted {
        /// Who.
        name: &'a str,
        /// The room's shown name.
        room: &'a str,
        /// What they said, if anything.
        text: Option<&'a [u8]>,
    },
}

/// One note on its way to its recipients, with its bytes per door.
pub(crate) struct Fan<'a> {
    note: Note<'a>,
    /// The server name, the host part of IRC prefixes.
    server: &'a str,
    native: Option<Frame>,
    /// The WebSocket frame with the note's JSON.
    web: Option<Frame>,
    /// IRC bytes without and with a `server-time` tag.
    irc: [Option<Frame>; 2],
    /// Connections outside `#all` that still hear of a `Left` (they shared
    /// a room with the leaver), sorted.
    also: &'a [u64],
    /// Every recipient's ring records a message for its receipt (a
    /// message from another node, whose sender's ring is not here).
    every: bool,
}

impl<'a> Fan<'a> {
    /// A fan for `note`; `server` is the broker's `server_name`.
    pub fn new(note: Note<'a>, server: &'a str) -> Fan<'a> {
        Fan {
            note,
            server,
            native: None,
            web: None,
            irc: [None, None],
            also: &[],
            every: false,
        }
    }

    /// Each recipient remembers the message for its `RECV`, whatever its
    /// kind (a message from another node).
    pub fn receipted(mut self) -> Fan<'a> {
        self.every = true;
        self
    }

    /// Connections outside `#all` that should hear of a `Left` too.
    pub fn also(mut self, ids: &'a [u64]) -> Fan<'a> {
        self.also = ids;
        self
    }

    /// Queues the note to `to` in its door's form; true if queued. An IRC
    /// connection outside `#all` gets nothing of everyone's messages and of
    /// presence outside its rooms.
    #[inline]
    pub fn push(&mut self, out: &mut Outbox, to: &Arc<Conn>) -> bool {
        match to.door {
            Door::Native | Door::Web => {
                let f = if to.door == Door::Web {
                    match &self.web {
                        Some(f) => f,
                        None => self.web.insert(web_note(&self.note)),
                    }
                } else {
                    match &self.native {
                        Some(f) => f,
                        None => self.native.insert(native(&self.note)),
                    }
                };
                match self.note {
                    // Addressed by name: the reader's own ring records it
                    // for its receipt. To everyone or a room, the sender's
                    // ring does, once (`core::receipt`).
                    Note::Msg {
                        id,
                        from_conn,
                        kind: Kind::Direct | Kind::Multi,
                        ..
                    } => out.push_msg(to, f, id, from_conn),
                    Note::Msg { id, from_conn, .. } if self.every => {
                        out.push_msg(to, f, id, from_conn)
                    }
                    _ => out.push(to, f),
                }
            }
            Door::Irc => self.push_irc(out, to),
        }
    }

    fn push_irc(&mut self, out: &mut Outbox, to: &Arc<Conn>) -> bool {
        let in_all = to.has(flag::IN_ALL);
        let shared_target = match self.note {
            Note::Msg {
                kind: Kind::Direct | Kind::Multi,
                ..
            } => false,
            Note::Msg {
                kind: Kind::All, ..
            }
            | Note::Joined { room: None, .. } => {
                if !in_all {
                    return false;
                }
                true
            }
            Note::Left { .. } => {
                if !in_all && self.also.binary_search(&to.id).is_err() {
                    return false;
                }
                true
            }
            _ => true,
        };
        let timed = usize::from(to.has(flag::SERVER_TIME));
        let frame = if shared_target {
            let slot = self.irc.get_mut(timed);
            match slot {
                Some(Some(f)) => Frame::clone(f),
                Some(slot) => {
                    let f = irc_bytes(&self.note, self.server, timed == 1, None);
                    Frame::clone(slot.insert(f))
                }
                None => return false,
            }
        } else {
            let nick = to.name().unwrap_or("*");
            irc_bytes(&self.note, self.server, timed == 1, Some(nick))
        };
        // IRC has no receipts: nothing to remember for a RECV, which also
        // spares each IRC connection the receipt ring.
        out.push(to, &frame)
    }
}

/// The native frame of a note.
fn native(note: &Note<'_>) -> Frame {
    ENCODE.with(|buf| {
        let scratch = &mut *buf.borrow_mut();
        scratch.clear();
        native_into(note, scratch);
        Frame::from(&scratch[..])
    })
}

fn native_into(note: &Note<'_>, scratch: &mut Vec<u8>) {
    match *note {
        Note::Msg {
            id,
            from,
            kind,
            ts,
            body,
            ..
        } => encode_msg(scratch, id, from, kind, ts, body),
        Note::Joined { name, room } => Event::Joined { name, room }.encode(scratch),
        Note::Left { name, reason, .. } => Event::Left { name, reason }.encode(scratch),
        Note::Parted { name, room, .. } => Event::Parted { name, room }.encode(scratch),
    }
}

/// The web frame of a note: its JSON in a WebSocket text frame.
fn web_note(note: &Note<'_>) -> Frame {
    web_json(|json| match *note {
        Note::Msg {
            id,
            from,
            kind,
            ts,
            body,
            ..
        } => web::push_msg(json, id, from, kind, ts, body),
        Note::Joined { name, room } => web::push_event(json, &Event::Joined { name, room }, None),
        Note::Left { name, reason, .. } => {
            web::push_event(json, &Event::Left { name, reason }, None)
        }
        Note::Parted { name, room, .. } => {
            web::push_event(json, &Event::Parted { name, room }, None)
        }
    })
}

/// A WebSocket text frame around the JSON that `write` appends.
fn web_json(write: impl FnOnce(&mut Vec<u8>)) -> Frame {
    JSON.with(|json| {
        let json = &mut *json.borrow_mut();
        json.clear();
        write(json);
        ENCODE.with(|buf| {
            let scratch = &mut *buf.borrow_mut();
            scratch.clear();
            ws::push_frame(scratch, ws::WsOp::Text, json);
            Frame::from(&scratch[..])
        })
    })
}

/// An event as a web connection gets it, with the `ref` of the request
/// being applied if it is this connection's (see [`with_reply_ref`]).
fn web_event(conn: &Conn, event: &Event<'_>) -> Frame {
    REPLY_REF.with(|r| {
        let r = r.borrow();
        let reference = r.as_ref().filter(|(id, _)| *id == conn.id).map(|(_, v)| v);
        web_json(|json| web::push_event(json, event, reference))
    })
}

/// Runs `apply` with `reference` as the `ref` of every reply it queues to
/// connection `conn` (a web request's `ref` is copied onto its reply).
pub(crate) fn with_reply_ref<R>(
    conn: u64,
    reference: Option<serde_json::Value>,
    apply: impl FnOnce() -> R,
) -> R {
    let Some(v) = reference else {
        return apply();
    };
    REPLY_REF.with(|r| *r.borrow_mut() = Some((conn, v)));
    let result = apply();
    REPLY_REF.with(|r| *r.borrow_mut() = None);
    result
}

/// The `ref` of the web request being applied, if it is `conn`'s: for a
/// request answered later, by another thread.
pub(crate) fn current_reply_ref(conn: u64) -> Option<serde_json::Value> {
    REPLY_REF.with(|r| {
        r.borrow()
            .as_ref()
            .filter(|(id, _)| *id == conn)
            .map(|(_, v)| v.clone())
    })
}

/// A reply to one connection in its door's form: a native frame, or JSON
/// on the web.
pub(crate) fn reply_frame(conn: &Conn, event: &Event<'_>) -> Frame {
    match conn.door {
        Door::Web => web_event(conn, event),
        Door::Native | Door::Irc => frame(event),
    }
}

/// The last bytes a web connection gets: after its upgrade, `event` as
/// JSON and a WebSocket `Close` with `code`; before it, an HTTP status.
pub(crate) fn web_closing(conn: &Conn, event: &Event<'_>, code: u16, reason: &str) -> Frame {
    let mut b = Vec::new();
    if conn.has(flag::UPGRADED) {
        b.extend_from_slice(&web_event(conn, event));
        ws::push_close(&mut b, code, reason);
    } else {
        let status = match code {
            ws::close::TOO_BIG => 431,
            ws::close::TRY_LATER | ws::close::GOING_AWAY => 503,
            ws::close::POLICY => 408,
            _ => 400,
        };
        http::push_text(&mut b, status, reason);
    }
    Frame::from(b)
}

/// The WebSocket close code for closing a connection with `code`.
fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::TooLong => ws::close::TOO_BIG,
        ErrorCode::ServerFull => ws::close::TRY_LATER,
        ErrorCode::BadFrame => ws::close::PROTOCOL,
        _ => ws::close::POLICY,
    }
}

/// The IRC lines of a note; `to_nick` is the target of a message addressed
/// to people (the recipient's own nick).
fn irc_bytes(note: &Note<'_>, server: &str, timed: bool, to_nick: Option<&str>) -> Frame {
    ENCODE.with(|buf| {
        let scratch = &mut *buf.borrow_mut();
        scratch.clear();
        irc_into(note, server, timed, to_nick, scratch);
        Frame::from(&scratch[..])
    })
}

fn irc_into(
    note: &Note<'_>,
    server: &str,
    timed: bool,
    to_nick: Option<&str>,
    scratch: &mut Vec<u8>,
) {
    match *note {
        Note::Msg {
            from,
            kind,
            ts,
            body,
            notice,
            ..
        } => {
            let command = if notice { "NOTICE" } else { "PRIVMSG" };
            let target = match kind {
                Kind::All => "#all",
                Kind::Room(room) => room,
                Kind::Direct | Kind::Multi => to_nick.unwrap_or("*"),
            };
            let time = timed.then_some(ts);
            irc::push_message(scratch, time, from, server, command, target, body);
        }
        Note::Joined { name, room } => {
            let prefix = irc_prefix(name, server);
            let time = timed.then(now_ms);
            irc::push_command(
                scratch,
                time,
                Some(&prefix),
                "JOIN",
                &[room.unwrap_or("#all")],
                None,
            );
        }
        Note::Left { name, reason, text } => {
            let prefix = irc_prefix(name, server);
            let why = match (reason, text) {
                (LeftReason::Quit, Some(t)) if !t.is_empty() => {
                    format!("Quit: {}", String::from_utf8_lossy(t))
                }
                (LeftReason::Quit, _) => "Quit".to_string(),
                (r, _) => r.as_str().to_string(),
            };
            let time = timed.then(now_ms);
            irc::push_command(scratch, time, Some(&prefix), "QUIT", &[], Some(&why));
        }
        Note::Parted { name, room, text } => {
            let prefix = irc_prefix(name, server);
            let why = text.map(String::from_utf8_lossy);
            let time = timed.then(now_ms);
            irc::push_command(
                scratch,
                time,
                Some(&prefix),
                "PART",
                &[room],
                why.as_deref(),
            );
        }
    }
}

/// `nick!nick@server`: everyone's IRC prefix.
pub(crate) fn irc_prefix(nick: &str, server: &str) -> String {
    format!("{nick}!{nick}@{server}")
}

/// The time now in Unix ms (for the `server-time` of presence lines).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

thread_local! {
    /// Encoding space reused by every frame this thread builds.
    static ENCODE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    /// Space for the JSON of web frames.
    static JSON: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    /// The web request being applied: its connection and `ref`.
    static REPLY_REF: RefCell<Option<(u64, serde_json::Value)>> = const { RefCell::new(None) };
}

/// Encodes an event into its own shared frame (one allocation).
pub(crate) fn frame(event: &Event<'_>) -> Frame {
    ENCODE.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        event.encode(&mut buf);
        Frame::from(&buf[..])
    })
}

/// An error as the connection's door says it: `ERR …` on the native door;
/// on IRC a `NOTICE`, or `ERROR :Closing link: …` before a close.
pub(crate) fn error_frame(
    shared: &Shared,
    conn: &Conn,
    code: ErrorCode,
    args: Option<&str>,
    text: &str,
) -> Frame {
    match conn.door {
        Door::Native => frame(&Event::Err { code, args, text }),
        Door::Web if conn.is_closing() => closing_frame(conn, code, text),
        Door::Web => web_event(conn, &Event::Err { code, args, text }),
        Door::Irc => irc_error_frame(&shared.config.server_name, conn, code, text),
    }
}

/// `ERROR :<text>`: the last line before the broker closes an IRC
/// connection.
pub(crate) fn irc_error_line(text: &str) -> Frame {
    let mut b = Vec::with_capacity(32 + text.len());
    irc::push_command(&mut b, None, None, "ERROR", &[], Some(text));
    Frame::from(b)
}

/// The IRC form of an error raised on a shared path (rate limit, slow
/// consumer, timeouts, fatal framing): a `NOTICE` if the connection goes
/// on, `ERROR :Closing link: …` if it is being closed.
fn irc_error_frame(server: &str, conn: &Conn, code: ErrorCode, text: &str) -> Frame {
    let closing = matches!(
        code,
        ErrorCode::TooLong | ErrorCode::SlowConsumer | ErrorCode::Timeout | ErrorCode::ServerFull
    ) || conn.is_closing();
    if closing {
        return irc_error_line(&format!("Closing link: {text}"));
    }
    let mut b = Vec::with_capacity(64);
    let nick = conn.name().unwrap_or("*");
    irc::push_command(&mut b, None, Some(server), "NOTICE", &[nick], Some(text));
    Frame::from(b)
}

/// The last frame before the broker closes a connection for `code`: `ERR`
/// on the native door, `ERROR :Closing link: …` on IRC.
pub(crate) fn closing_frame(conn: &Conn, code: ErrorCode, text: &str) -> Frame {
    match conn.door {
        Door::Native => frame(&Event::Err {
            code,
            args: None,
            text,
        }),
        Door::Irc => irc_error_line(&format!("Closing link: {text}")),
        Door::Web => web_closing(
            conn,
            &Event::Err {
                code,
                args: None,
                text,
            },
            close_code(code),
            text,
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn conn(id: u64, door: Door, name: &str, flags: u8) -> Arc<Conn> {
        let c = Conn::new(id, 0, 0, "127.0.0.1:1".parse().unwrap(), door, 1 << 20);
        c.set_name(name);
        c.set_flag(flags, flags != 0);
        c
    }

    fn taken(c: &Conn) -> Vec<Frame> {
        let mut spare = Vec::new();
        c.take(&mut spare);
        spare
    }

    fn msg(kind: Kind<'_>) -> Note<'_> {
        Note::Msg {
            id: 7,
            from: "alice",
            from_conn: 99,
            kind,
            ts: 0,
            body: b"hi",
            notice: false,
        }
    }

    #[test]
    fn one_encoding_per_door_and_variant() {
        let n1 = conn(1, Door::Native, "n1", 0);
        let n2 = conn(2, Door::Native, "n2", 0);
        let i1 = conn(3, Door::Irc, "i1", flag::IN_ALL);
        let i2 = conn(4, Door::Irc, "i2", flag::IN_ALL);
        let t1 = conn(5, Door::Irc, "t1", flag::IN_ALL | flag::SERVER_TIME);
        let outside = conn(6, Door::Irc, "o", 0);
        let mut out = Outbox::new(1, Some(0));
        let mut fan = Fan::new(msg(Kind::All), "chat");
        for c in [&n1, &n2, &i1, &i2, &t1] {
            assert!(fan.push(&mut out, c));
        }
        // Not in #all: everyone's messages are not for it.
        assert!(!fan.push(&mut out, &outside));
        let (a, b) = (taken(&n1), taken(&n2));
        assert!(Frame::ptr_eq(&a[0], &b[0]), "native encoded once");
        assert_eq!(&*a[0], b"MSG 7 alice all 0 2\nhi\n");
        let (c, d, t) = (taken(&i1), taken(&i2), taken(&t1));
        assert!(Frame::ptr_eq(&c[0], &d[0]), "IRC encoded once per variant");
        assert_eq!(&*c[0], b":alice!alice@chat PRIVMSG #all :hi\r\n");
        assert!(t[0].starts_with(b"@time=1970-01-01T00:00:00.000Z :alice!alice@chat PRIVMSG"));
        assert!(taken(&outside).is_empty());
        // A message to everyone leaves no per-reader record.
        assert!(!n1.take_receipt(7, 99));
    }

    #[test]
    fn a_message_to_people_reaches_irc_addressed_to_each() {
        let i1 = conn(3, Door::Irc, "bob", 0);
        let i2 = conn(4, Door::Irc, "carol", 0);
        let mut out = Outbox::new(1, Some(0));
        let mut fan = Fan::new(msg(Kind::Multi), "chat");
        assert!(fan.push(&mut out, &i1));
        assert!(fan.push(&mut out, &i2));
        assert_eq!(&*taken(&i1)[0], b":alice!alice@chat PRIVMSG bob :hi\r\n");
        assert_eq!(&*taken(&i2)[0], b":alice!alice@chat PRIVMSG carol :hi\r\n");
    }

    #[test]
    fn presence_in_each_door() {
        let n = conn(1, Door::Native, "n", 0);
        let all = conn(2, Door::Irc, "a", flag::IN_ALL);
        let mate = conn(3, Door::Irc, "m", 0);
        let stranger = conn(4, Door::Irc, "s", 0);
        let mut out = Outbox::new(1, Some(0));
        let note = Note::Left {
            name: "carol",
            reason: LeftReason::Quit,
            text: Some(b"lunch"),
        };
        let mates = [3u64];
        let mut fan = Fan::new(note, "chat").also(&mates);
        assert!(fan.push(&mut out, &n));
        assert!(fan.push(&mut out, &all));
        assert!(fan.push(&mut out, &mate));
        assert!(!fan.push(&mut out, &stranger));
        assert_eq!(&*taken(&n)[0], b"LEFT carol quit\n");
        assert_eq!(&*taken(&all)[0], b":carol!carol@chat QUIT :Quit: lunch\r\n");
        assert_eq!(
            &*taken(&mate)[0],
            b":carol!carol@chat QUIT :Quit: lunch\r\n"
        );
        let mut fan = Fan::new(
            Note::Joined {
                name: "dave",
                room: Some("#r"),
            },
            "chat",
        );
        assert!(fan.push(&mut out, &n));
        assert!(fan.push(&mut out, &stranger));
        assert_eq!(&*taken(&n)[0], b"JOINED dave #r\n");
        assert_eq!(&*taken(&stranger)[0], b":dave!dave@chat JOIN #r\r\n");
    }
}
