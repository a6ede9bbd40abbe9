//! The load generator as a WebSocket client of the broker's web door
//! (`--door web`, docs: `doors.md`, "Web door"): the upgrade it asks for,
//! the frames it writes and reads, and what it makes of the JSON the
//! broker sends.
//!
//! ```text
//! connect ─► GET /ws HTTP/1.1 (Upgrade: websocket, Sec-WebSocket-Key: k)
//!        ◄── HTTP/1.1 101 Switching Protocols (Sec-WebSocket-Accept: f(k))
//!        ◄── {"type":"hello",...}
//!        ─► {"op":"name","name":"lg-<i>"}
//!        ◄── {"type":"ok","op":"name","name":"lg-<i>"}
//!        ─► [{"op":"join","room":"#load"}]
//!        ◄── [{"type":"ok","op":"join","room":"#load","members":N}]   ready
//! [nodes ─► {"op":"list"}  ◄── {"type":"users","count":N,"names":[...]}]
//! run    ─► {"op":"send","to":"*"|"lg-<j>"|["lg-<j>",...]|"#load","text":"<payload>"}
//!        ◄── {"type":"ack","id":N,"queued":K,"missing":[]}
//!        ◄── {"type":"msg","id":N,"from":"lg-<k>","kind":..,"ts":..,"text":"<payload>"}
//! ```
//!
//! The web door speaks the native verbs in JSON, so each object the
//! broker sends is translated into the native [`Event`] it stands for and
//! the worker accounts for it exactly as for the native door (ACK's
//! `queued`, `NAME_TAKEN` retries, `LEFT`, `SHUTDOWN`).
//!
//! Frames follow RFC 6455, read with the shared codec `protocol::web::ws`
//! (on `tungstenite`'s frame header): what the client writes is masked
//! (section 5.3), what the server writes is not;
//! a `Ping` gets a `Pong` with its payload, a `Close` ends the client. The
//! hot path allocates nothing: a `send` is written as JSON straight into
//! the connection's output buffer, its header put in front and the mask
//! applied in place ([`push_text`]); a delivery in the broker's own
//! encoding is read where it lies without a JSON parser ([`fast_msg`]),
//! anything else is parsed into borrowed strings ([`Incoming`]), copied
//! only if they hold JSON escapes.

use crate::rng::Rng;
use protocol::web::ws::{self, WsDecoded, WsOp};
use protocol::{push_u64, ErrorCode, Event, Kind, LeftReason};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The WebSocket endpoint on the web door.
pub const PATH: &str = "/ws";

/// The web door's address unless the broker is configured otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7880";

/// Longest HTTP response head accepted for the upgrade (the broker's own
/// limit for request heads).
pub const MAX_HEAD: usize = 8 * 1024;

/// Largest message (one frame, or the fragments of one message together)
/// accepted from the broker; checked on the frame header, before any of
/// the payload is buffered. A 64 KiB body is about 64 KiB of JSON; this
/// leaves room for a foreign body full of escapes.
pub const MAX_MESSAGE: usize = 512 * 1024;

/// Largest frame on the wire: [`MAX_MESSAGE`] and the longest header.
pub const MAX_FRAME: usize = MAX_MESSAGE + 14;

/// A fresh `Sec-WebSocket-Key` (16 random bytes in base64).
pub fn new_key() -> String {
    tungstenite::handshake::client::generate_key()
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
pub fn accept_for(key: &str) -> String {
    derive_accept_key(key.as_bytes())
}

/// Appends the upgrade request: `GET /ws` to `host` with `key`.
pub fn push_upgrade(out: &mut Vec<u8>, host: &str, key: &str) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(PATH.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
}

/// What the front of the bytes after the upgrade request holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// No whole response head yet (and under [`MAX_HEAD`]).
    Incomplete,
    /// `101` with the right `Sec-WebSocket-Accept`: frames follow from
    /// `consumed` on.
    Accepted {
        /// Bytes the head took, its blank line included.
        consumed: usize,
    },
    /// Anything else: the status line or the header that is wrong.
    Refused(String),
}

/// Reads the server's answer to the upgrade, whose key's accept value is
/// `accept` (see [`accept_for`]).
pub fn parse_upgrade(data: &[u8], accept: &str) -> Upgrade {
    // Not HTTP at all (say, a native or IRC door): say so at once rather
    // than wait for a blank line that never comes.
    let version = b"HTTP/1.";
    let seen = data.len().min(version.len());
    if data.get(..seen) != version.get(..seen) {
        let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
        return Upgrade::Refused(format!(
            "not an HTTP answer: {}",
            String::from_utf8_lossy(first).trim_end()
        ));
    }
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if data.len() >= MAX_HEAD {
            Upgrade::Refused(format!("response head over {MAX_HEAD} bytes"))
        } else {
            Upgrade::Incomplete
        };
    };
    if end + 4 > MAX_HEAD {
        return Upgrade::Refused(format!("response head over {MAX_HEAD} bytes"));
    }
    let head = String::from_utf8_lossy(data.get(..end).unwrap_or_default());
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code != "101" {
        return Upgrade::Refused(format!("not upgraded: {status}"));
    }
    let (mut upgrade, mut connection, mut accepted) = (false, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Upgrade::Refused(format!("malformed header line: {line}"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if value != accept {
                return Upgrade::Refused(format!(
                    "Sec-WebSocket-Accept is {value}, expected {accept}"
                ));
            }
            accepted = true;
        }
    }
    match (upgrade, connection, accepted) {
        (true, true, true) => Upgrade::Accepted { consumed: end + 4 },
        (false, _, _) => Upgrade::Refused("101 without Upgrade: websocket".into()),
        (_, false, _) => Upgrade::Refused("101 without Connection: Upgrade".into()),
        (_, _, false) => Upgrade::Refused("101 without Sec-WebSocket-Accept".into()),
    }
}

/// Appends one whole, masked text frame whose payload `body` writes
/// straight into `out`: the header goes in front of it afterwards (a short
/// move within the buffer) and the mask is applied in place, so a `send`
/// is never built in a buffer of its own and copied (which
/// `protocol::web::ws::push_client_frame` needs). The bytes are those of
/// `push_client_frame` and of `tungstenite`'s `Frame::format` with the
/// same mask.
pub fn push_text(out: &mut Vec<u8>, mask: [u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    body(out);
    let len = out.len() - start;
    let header = FrameHeader {
        is_final: true,
        opcode: OpCode::Data(Data::Text),
        mask: Some(mask),
        ..FrameHeader::default()
    };
    let head_len = header.len(len as u64);
    out.resize(out.len() + head_len, 0);
    out.copy_within(start..start + len, start + head_len);
    let written = match out.get_mut(start..start + head_len) {
        Some(mut slot) => header.format(len as u64, &mut slot).is_ok() && slot.is_empty(),
        None => false,
    };
    if !written {
        // Cannot happen (`len` sized the slot); never leave half a frame.
        out.truncate(start);
        return;
    }
    if let Some(payload) = out.get_mut(start + head_len..) {
        apply_mask(payload, mask);
    }
}

/// XORs `data` with the repeated 4-byte `mask` (RFC 6455, 5.3).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in chunks.by_ref() {
        if let Ok(four) = <[u8; 4]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u32::from_ne_bytes(four) ^ word).to_ne_bytes());
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// Appends a text frame holding `{"op":"name","name":"lg-<idx>"}`.
pub fn push_name(out: &mut Vec<u8>, idx: u32, mask: [u8; 4]) {
    push_text(out, mask, |out| {
        out.extend_from_slice(br#"{"op":"name","name":"lg-"#);
        push_u64(out, u64::from(idx));
        out.extend_from_slice(br#""}"#);
    });
}

/// Appends a text frame holding `{"op":"list"}`: who is online.
pub fn push_list(out: &mut Vec<u8>, mask: [u8; 4]) {
    push_text(out, mask, |out| out.extend_from_slice(br#"{"op":"list"}"#));
}

/// Appends a text frame holding `{"op":"join","room":"<room>"}` (`room`
/// is one of ours: nothing in it needs escaping).
pub fn push_join(out: &mut Vec<u8>, room: &str, mask: [u8; 4]) {
    push_text(out, mask, |out| {
        out.extend_from_slice(br#"{"op":"join","room":""#);
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(br#""}"#);
    });
}

/// Appends the `Pong` that answers a `Ping` with `payload`.
pub fn push_pong(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    ws::push_client_frame(out, WsOp::Pong, true, payload, mask);
}

/// Appends the `Close` that answers the server's: its status code echoed
/// (RFC 6455, 5.5.1), or none if it gave none.
pub fn push_close(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    let code = payload.get(..2).unwrap_or_default();
    ws::push_client_frame(out, WsOp::Close, true, code, mask);
}

/// One frame at the front of the bytes from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Not a whole frame yet.
    Incomplete,
    /// A whole frame.
    Whole {
        /// Its kind.
        op: WsOp,
        /// The last frame of its message.
        fin: bool,
        /// Its payload.
        payload: &'a [u8],
        /// Bytes the frame took.
        consumed: usize,
    },
    /// The bytes break RFC 6455 for a server, or the frame is over
    /// [`MAX_MESSAGE`]: the stream can't be followed any more.
    Fatal(&'static str),
}

/// Decodes one server frame from the front of `data` with the shared codec
/// (`protocol::web::ws`, which checks reserved bits and opcodes, control
/// frame rules, and the length before the payload is waited for), adding
/// the client's rule that servers don't mask (RFC 6455, 5.1).
pub fn decode_frame(data: &[u8]) -> Frame<'_> {
    match ws::decode(data, MAX_MESSAGE) {
        WsDecoded::Incomplete => Frame::Incomplete,
        WsDecoded::Frame { mask: Some(_), .. } => Frame::Fatal("masked frame from the server"),
        WsDecoded::Frame {
            op,
            fin,
            payload,
            mask: None,
            consumed,
        } => Frame::Whole {
            op,
            fin,
            payload,
            consumed,
        },
        WsDecoded::TooBig => Frame::Fatal("frame over the size limit"),
        WsDecoded::Bad(why) => Frame::Fatal(why),
    }
}

/// What a WebSocket client keeps between reads: the upgrade's expected
/// answer, a message arriving in fragments, and its masks.
#[derive(Debug)]
pub struct Session {
    /// The `Sec-WebSocket-Accept` the upgrade must be answered with
    /// (emptied once it was).
    pub accept: String,
    /// A message the server is sending in fragments.
    pub fragments: Fragments,
    masks: Rng,
}

impl Session {
    /// A session whose masks come from `seed`.
    pub fn new(seed: u64) -> Session {
        Session {
            accept: String::new(),
            fragments: Fragments::default(),
            masks: Rng::new(seed),
        }
    }

    /// The mask for the next client frame (RFC 6455, 5.3: a fresh one for
    /// every frame).
    pub fn next_mask(&mut self) -> [u8; 4] {
        (self.masks.next_u64() as u32).to_ne_bytes()
    }
}

/// A message that arrives in several frames (RFC 6455, 5.4): a text or
/// binary frame without FIN, continuations, the last with FIN. Whole
/// messages, the usual case, never come here.
#[derive(Debug, Default)]
pub struct Fragments {
    buf: Vec<u8>,
    open: bool,
}

impl Fragments {
    /// Whether a message is under way (its first frame came, its last not).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Adds one data frame. `Ok(true)`: `fin` ended the message, which is
    /// [`Fragments::message`] until the next `push`. The size limit holds
    /// for the message as a whole, checked before anything is copied.
    pub fn push(&mut self, op: WsOp, fin: bool, payload: &[u8]) -> Result<bool, &'static str> {
        if !self.open {
            self.buf.clear();
        }
        match (op, self.open) {
            (WsOp::Text | WsOp::Binary, false) | (WsOp::Continue, true) => {}
            (WsOp::Continue, false) => return Err("continuation without a message"),
            (WsOp::Text | WsOp::Binary, true) => return Err("a message inside a fragmented one"),
            _ => return Err("a control frame is not a fragment"),
        }
        if self.buf.len().saturating_add(payload.len()) > MAX_MESSAGE {
            return Err("fragmented message over the size limit");
        }
        self.buf.extend_from_slice(payload);
        self.open = !fin;
        Ok(fin)
    }

    /// The message the last `push` ended.
    pub fn message(&self) -> &[u8] {
        &self.buf
    }
}

/// The fan-out's hot path: a `msg` exactly as the broker's encoder
/// writes it (`protocol::web::push_msg`: compact, fields in the order
/// `type, id, from, kind, ts, text`) and with nothing to unescape, read
/// without a JSON parser. `None` for anything else, which then goes
/// through [`parse`]: whatever this accepts, [`parse`] reads as the same
/// event (the tests hold it to that). Parsing every delivery with
/// `serde_json` took the load generator more CPU than the broker used to
/// send it.
pub fn fast_msg(json: &[u8]) -> Option<Event<'_>> {
    let rest = json.strip_prefix(br#"{"type":"msg","id":"#)?;
    let (id, rest) = number(rest)?;
    let rest = rest.strip_prefix(br#","from":""#)?;
    let (from, rest) = plain(rest)?;
    let rest = rest.strip_prefix(br#"","kind":""#)?;
    let (kind, rest) = plain(rest)?;
    let rest = rest.strip_prefix(br#"","ts":"#)?;
    let (ts_ms, rest) = number(rest)?;
    let body = rest.strip_prefix(br#","text":""#)?.strip_suffix(br#""}"#)?;
    if !body.iter().all(|&b| is_plain(b)) {
        return None;
    }
    Some(Event::Msg {
        id,
        from: std::str::from_utf8(from).ok()?,
        kind: Kind::parse(kind)?,
        ts_ms,
        body,
    })
}

/// A byte that stands for itself inside a JSON string, whatever follows:
/// printable ASCII but `"` and `\`.
fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// Plain bytes (see [`is_plain`]) up to the next `"`, and what follows it.
fn plain(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.iter().position(|&b| !is_plain(b))?;
    match data.split_at_checked(end)? {
        (text, rest) if rest.first() == Some(&b'"') => Some((text, rest)),
        _ => None,
    }
}

/// A JSON non-negative integer that fits `u64` (no sign, fraction,
/// exponent or leading zero), and what follows it.
fn number(data: &[u8]) -> Option<(u64, &[u8])> {
    let end = data
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(data.len());
    let (digits, rest) = data.split_at_checked(end)?;
    if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, rest))
}

/// A JSON string from the broker: borrowed from the frame unless it holds
/// escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

/// The fields of a broker → client object that the load generator reads;
/// the others (`missing`, `ref`, ...) are skipped unread.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// The native verb in lower case.
    #[serde(rename = "type", borrow)]
    pub kind: Str<'a>,
    /// `ok`: the request's verb.
    #[serde(borrow, default)]
    pub op: Option<Str<'a>>,
    /// `ok name`, `joined`, `left`, `parted`.
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    /// `ok join`/`part`, `joined`, `parted`.
    #[serde(borrow, default)]
    pub room: Option<Str<'a>>,
    /// `msg`: the sender.
    #[serde(borrow, default)]
    pub from: Option<Str<'a>>,
    /// `msg`: `direct`, `multi`, `all` or the room (field `kind`).
    #[serde(rename = "kind", borrow, default)]
    pub msg_kind: Option<Str<'a>>,
    /// `msg`, `error`, `shutdown`, `hello`.
    #[serde(borrow, default)]
    pub text: Option<Str<'a>>,
    /// `error`: the native code.
    #[serde(borrow, default)]
    pub code: Option<Str<'a>>,
    /// `error`: the arguments (for `NO_SUCH_USER`, the names).
    #[serde(borrow, default)]
    pub args: Option<Str<'a>>,
    /// `users`: the names listed (read only while the nodes settle; no
    /// other object has the field, so nothing else allocates for it).
    #[serde(borrow, default)]
    pub names: Option<Vec<Str<'a>>>,
    /// `pong`: the ping's token.
    #[serde(borrow, default)]
    pub token: Option<Str<'a>>,
    /// `left`: why.
    #[serde(borrow, default)]
    pub reason: Option<Str<'a>>,
    /// `hello`: the server's name.
    #[serde(borrow, default)]
    pub server: Option<Str<'a>>,
    /// `msg`, `ack`: the message id.
    #[serde(default)]
    pub id: Option<u64>,
    /// `msg`: broker receive time, Unix ms.
    #[serde(default)]
    pub ts: Option<u64>,
    /// `ack`: recipients it was queued for.
    #[serde(default)]
    pub queued: Option<u64>,
    /// `ok join`: members now.
    #[serde(default)]
    pub members: Option<u64>,
    /// `hello`: protocol version.
    #[serde(default)]
    pub version: Option<u64>,
}

/// Parses one JSON text message; the error says what was wrong.
pub fn parse(json: &[u8]) -> Result<Incoming<'_>, serde_json::Error> {
    serde_json::from_slice(json)
}

fn s<'b>(field: &'b Option<Str<'_>>) -> Option<&'b str> {
    field.as_ref().map(|v| v.0.as_ref())
}

impl Incoming<'_> {
    /// The native frame this object stands for: `Ok(None)` for one the
    /// load generator has no use for (`users`, `rooms`, `rcpt`, an `ok`
    /// to another verb, a type it doesn't know), `Err` with what is
    /// missing for one that breaks the contract.
    pub fn event(&self) -> Result<Option<Event<'_>>, &'static str> {
        Ok(Some(match self.kind.0.as_ref() {
            "msg" => Event::Msg {
                id: self.id.ok_or("msg without id")?,
                from: s(&self.from).ok_or("msg without from")?,
                kind: s(&self.msg_kind)
                    .and_then(|k| Kind::parse(k.as_bytes()))
                    .ok_or("msg without a valid kind")?,
                ts_ms: self.ts.ok_or("msg without ts")?,
                body: s(&self.text).ok_or("msg without text")?.as_bytes(),
            },
            "ack" => Event::Ack {
                id: self.id.ok_or("ack without id")?,
                queued: self.queued.ok_or("ack without queued")?,
                missing: None,
            },
            "ok" => match s(&self.op) {
                Some("name") => Event::NameOk {
                    name: s(&self.name).ok_or("ok name without name")?,
                },
                Some("join") => Event::JoinOk {
                    room: s(&self.room).ok_or("ok join without room")?,
                    members: usize::try_from(self.members.unwrap_or(0)).unwrap_or(usize::MAX),
                },
                Some("part") => Event::PartOk {
                    room: s(&self.room).ok_or("ok part without room")?,
                },
                Some(_) => return Ok(None),
                None => return Err("ok without op"),
            },
            "error" => Event::Err {
                code: s(&self.code)
                    .and_then(ErrorCode::parse)
                    .ok_or("error without a known code")?,
                args: s(&self.args),
                text: s(&self.text).unwrap_or_default(),
            },
            "hello" => Event::Hello {
                server: s(&self.server).unwrap_or_default(),
                version: u32::try_from(self.version.unwrap_or(1)).unwrap_or(u32::MAX),
                text: s(&self.text).unwrap_or_default(),
            },
            "joined" => Event::Joined {
                name: s(&self.name).ok_or("joined without name")?,
                room: s(&self.room),
            },
            "left" => Event::Left {
                name: s(&self.name).ok_or("left without name")?,
                // The worker doesn't look at the reason; one it doesn't
                // know is still someone leaving.
                reason: s(&self.reason)
                    .and_then(|r| LeftReason::parse(r.as_bytes()))
                    .unwrap_or(LeftReason::Disconnect),
            },
            "parted" => Event::Parted {
                name: s(&self.name).ok_or("parted without name")?,
                room: s(&self.room).ok_or("parted without room")?,
            },
            "pong" => Event::Pong {
                token: s(&self.token),
            },
            "bye" => Event::Bye,
            "shutdown" => Event::Shutdown {
                text: s(&self.text).unwrap_or_default(),
            },
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{self, Stamp, MIN_SIZE};
    use tungstenite::protocol::frame::coding::Control;
    use tungstenite::protocol::frame::Frame as TFrame;

    /// RFC 6455, 1.3: the sample key and its accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn upgrade_request_and_accept_key() {
        assert_eq!(accept_for(KEY), ACCEPT);
        let mut out = Vec::new();
        push_upgrade(&mut out, "127.0.0.1:7880", KEY);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:7880\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        let key = new_key();
        assert_eq!(key.len(), 24, "16 bytes in base64: {key}");
        assert_ne!(key, new_key());
    }

    fn response(headers: &str) -> Vec<u8> {
        format!("HTTP/1.1 101 Switching Protocols\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn upgrade_response_at_every_cut() {
        let mut data = response(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n"
        ));
        let head = data.len();
        // The hello frame may come in the same read.
        data.extend_from_slice(b"\x81\x02{}");
        for cut in 0..head {
            assert_eq!(
                parse_upgrade(&data[..cut], ACCEPT),
                Upgrade::Incomplete,
                "{cut}"
            );
        }
        for cut in head..=data.len() {
            assert_eq!(
                parse_upgrade(&data[..cut], ACCEPT),
                Upgrade::Accepted { consumed: head }
            );
        }
    }

    #[test]
    fn upgrade_headers_are_case_insensitive() {
        let data = response(&format!(
            "upgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n\
             sec-websocket-accept: {ACCEPT}\r\nServer: x\r\n"
        ));
        assert!(matches!(
            parse_upgrade(&data, ACCEPT),
            Upgrade::Accepted { .. }
        ));
    }

    #[test]
    fn upgrade_refusals_say_why() {
        let refused = |data: &[u8]| match parse_upgrade(data, ACCEPT) {
            Upgrade::Refused(why) => why,
            other => panic!("{other:?}"),
        };
        let why = refused(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert!(why.contains("404 Not Found"), "{why}");
        let why = refused(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(why.contains("503"), "{why}");
        let why = refused(&response(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n",
        ));
        assert!(why.contains("expected"), "{why}");
        let why = refused(&response(&format!(
            "Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n"
        )));
        assert!(why.contains("Upgrade: websocket"), "{why}");
        let why = refused(&response("Upgrade: websocket\r\nConnection: Upgrade\r\n"));
        assert!(why.contains("Accept"), "{why}");
        let why = refused(&response("Upgrade websocket\r\n"));
        assert!(why.contains("malformed"), "{why}");
        let mut long = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        long.resize(MAX_HEAD, b'a');
        let why = refused(&long);
        assert!(why.contains("over"), "{why}");
        // Another protocol: refused as soon as the first bytes show it.
        let why = refused(b"HELLO chat 1 :welcome\n");
        assert_eq!(why, "not an HTTP answer: HELLO chat 1 :welcome");
        let why = refused(b"HTTP/2");
        assert!(why.contains("HTTP/2"), "{why}");
        assert_eq!(parse_upgrade(b"HTT", ACCEPT), Upgrade::Incomplete);
    }

    /// Our text frames are tungstenite's and the shared codec's, byte for
    /// byte, for every length class.
    #[test]
    fn client_frames_match_tungstenite_and_the_codec() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in [0, 1, 5, 125, 126, 127, 1000, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut ours = b"before".to_vec();
            push_text(&mut ours, mask, |out| out.extend_from_slice(&payload));
            let mut frame = TFrame::message(payload.clone(), OpCode::Data(Data::Text), true);
            frame.header_mut().mask = Some(mask);
            let mut theirs = b"before".to_vec();
            frame.format(&mut theirs).unwrap();
            assert_eq!(ours, theirs, "length {len}");
            let mut codec = b"before".to_vec();
            ws::push_client_frame(&mut codec, WsOp::Text, true, &payload, mask);
            assert_eq!(ours, codec, "length {len}");
        }
        // RFC 6455, 5.7: a masked "Hello".
        let mut out = Vec::new();
        push_text(&mut out, mask, |o| o.extend_from_slice(b"Hello"));
        assert_eq!(out, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    }

    /// What the client writes, unmasked again, is the JSON of the contract.
    fn unmasked(frame: &[u8]) -> (WsOp, Vec<u8>) {
        match ws::decode(frame, MAX_MESSAGE) {
            WsDecoded::Frame {
                op,
                fin: true,
                payload,
                mask: Some(mask),
                consumed,
            } => {
                assert_eq!(consumed, frame.len());
                let mut plain = Vec::new();
                ws::unmask_into(&mut plain, payload, mask);
                (op, plain)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn apply_mask_at_every_length_and_offset() {
        let mask = [1, 2, 4, 8];
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(17)).collect();
            let mut ours = data.clone();
            apply_mask(&mut ours, mask);
            let mut theirs = Vec::new();
            ws::unmask_into(&mut theirs, &data, mask);
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn client_requests_are_the_contract_json() {
        let mut session = Session::new(7);
        let m = session.next_mask();
        assert_ne!(m, session.next_mask(), "a fresh mask per frame");
        let mut out = Vec::new();
        push_name(&mut out, 17, m);
        assert_eq!(
            unmasked(&out),
            (WsOp::Text, br#"{"op":"name","name":"lg-17"}"#.to_vec())
        );
        out.clear();
        push_join(&mut out, "#load", m);
        assert_eq!(unmasked(&out).1, br##"{"op":"join","room":"#load"}"##);
        out.clear();
        push_pong(&mut out, b"tok", m);
        assert_eq!(unmasked(&out), (WsOp::Pong, b"tok".to_vec()));
        out.clear();
        push_close(&mut out, b"\x03\xe9going away", m);
        assert_eq!(
            unmasked(&out),
            (WsOp::Close, b"\x03\xe9".to_vec()),
            "the code alone is echoed"
        );
        // The broker's own parser takes our requests.
        for json in [
            r#"{"op":"name","name":"lg-17"}"#,
            r##"{"op":"join","room":"#load"}"##,
        ] {
            let req = protocol::web::WebRequest::parse(json.as_bytes()).unwrap();
            assert!(req.request(&protocol::Limits::default()).is_ok(), "{json}");
        }
    }

    /// A frame as the broker writes it (unmasked).
    fn server_frame(op: WsOp, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut frame = TFrame::message(payload.to_vec(), OpCode::Data(Data::Text), fin);
        frame.header_mut().opcode = match op {
            WsOp::Text => OpCode::Data(Data::Text),
            WsOp::Binary => OpCode::Data(Data::Binary),
            WsOp::Continue => OpCode::Data(Data::Continue),
            WsOp::Close => OpCode::Control(Control::Close),
            WsOp::Ping => OpCode::Control(Control::Ping),
            WsOp::Pong => OpCode::Control(Control::Pong),
        };
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[test]
    fn server_frames_decode_at_every_cut() {
        for len in [0, 3, 125, 126, 300, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 7) as u8 + b'a').collect();
            let mut data = server_frame(WsOp::Text, true, &payload);
            let whole = data.len();
            data.extend_from_slice(b"\x89\x00");
            let step = if len > 1000 { 997 } else { 1 };
            for cut in (0..whole).step_by(step) {
                assert_eq!(decode_frame(&data[..cut]), Frame::Incomplete, "{len} {cut}");
            }
            assert_eq!(
                decode_frame(&data),
                Frame::Whole {
                    op: WsOp::Text,
                    fin: true,
                    payload: &payload,
                    consumed: whole,
                }
            );
            assert_eq!(
                decode_frame(&data[whole..]),
                Frame::Whole {
                    op: WsOp::Ping,
                    fin: true,
                    payload: b"",
                    consumed: 2,
                }
            );
        }
    }

    #[test]
    fn server_frames_that_break_the_rules() {
        // Masked.
        let mut masked = Vec::new();
        push_text(&mut masked, [1, 2, 3, 4], |o| o.extend_from_slice(b"hi"));
        assert_eq!(
            decode_frame(&masked),
            Frame::Fatal("masked frame from the server")
        );
        // Reserved bit, reserved opcode.
        assert!(matches!(decode_frame(b"\xc1\x00"), Frame::Fatal(_)));
        assert!(matches!(decode_frame(b"\x83\x00"), Frame::Fatal(_)));
        // A fragmented or long control frame.
        assert!(matches!(decode_frame(b"\x09\x00"), Frame::Fatal(_)));
        let long_ping = server_frame(WsOp::Ping, true, &[0; 126]);
        assert!(matches!(decode_frame(&long_ping), Frame::Fatal(_)));
        // Over the limit: refused from the header alone.
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
        assert_eq!(
            decode_frame(&huge),
            Frame::Fatal("frame over the size limit")
        );
        let mut at_limit = vec![0x81, 127];
        at_limit.extend_from_slice(&(MAX_MESSAGE as u64).to_be_bytes());
        assert_eq!(decode_frame(&at_limit), Frame::Incomplete);
        // A first fragment and a continuation are fine.
        assert!(matches!(
            decode_frame(&server_frame(WsOp::Text, false, b"{")),
            Frame::Whole { fin: false, .. }
        ));
        assert!(matches!(
            decode_frame(&server_frame(WsOp::Continue, true, b"}")),
            Frame::Whole {
                op: WsOp::Continue,
                fin: true,
                ..
            }
        ));
    }

    /// Every event the worker acts on, as the broker's own encoder writes
    /// it, comes back as the same native event.
    #[test]
    fn the_brokers_json_round_trips() {
        let body = b"7:12:345:.....";
        let events = [
            Event::Hello {
                server: "chat",
                version: 1,
                text: "welcome",
            },
            Event::NameOk { name: "lg-17" },
            Event::JoinOk {
                room: "#load",
                members: 200,
            },
            Event::PartOk { room: "#load" },
            Event::Msg {
                id: 9,
                from: "lg-7",
                kind: Kind::Multi,
                ts_ms: 1_700_000_000_123,
                body,
            },
            Event::Msg {
                id: 10,
                from: "lg-7",
                kind: Kind::Room("#load"),
                ts_ms: 1,
                body: b"with \"quotes\" and \\ and \n",
            },
            Event::Ack {
                id: 9,
                queued: 3,
                missing: None,
            },
            Event::Err {
                code: ErrorCode::NoSuchUser,
                args: Some("bob,carol"),
                text: "not online",
            },
            Event::Err {
                code: ErrorCode::RateLimited,
                args: None,
                text: "slow down",
            },
            Event::Joined {
                name: "lg-3",
                room: None,
            },
            Event::Joined {
                name: "lg-3",
                room: Some("#load"),
            },
            Event::Parted {
                name: "lg-3",
                room: "#load",
            },
            Event::Left {
                name: "lg-3",
                reason: LeftReason::Timeout,
            },
            Event::Pong { token: Some("t") },
            Event::Pong { token: None },
            Event::Bye,
            Event::Shutdown { text: "restarting" },
        ];
        for event in events {
            let mut json = Vec::new();
            protocol::web::push_event(&mut json, &event, None);
            let inc = parse(&json).unwrap();
            assert_eq!(
                inc.event(),
                Ok(Some(event)),
                "{}",
                String::from_utf8_lossy(&json)
            );
        }
        // The fan-out's own encoder, and a ref on a reply.
        let mut json = Vec::new();
        protocol::web::push_msg(&mut json, 5, "lg-1", Kind::All, 77, body);
        let inc = parse(&json).unwrap();
        assert!(matches!(inc.text, Some(Str(Cow::Borrowed(_)))), "no copy");
        assert!(matches!(inc.event(), Ok(Some(Event::Msg { body: b, .. })) if b == body));
        let mut json = Vec::new();
        let reference = serde_json::json!({"n": [1, 2]});
        let ack = Event::Ack {
            id: 1,
            queued: 2,
            missing: Some("bob"),
        };
        protocol::web::push_event(&mut json, &ack, Some(&reference));
        assert_eq!(
            parse(&json).unwrap().event(),
            Ok(Some(Event::Ack {
                id: 1,
                queued: 2,
                missing: None
            }))
        );
    }

    #[test]
    fn fragments_make_one_message() {
        let mut f = Fragments::default();
        assert!(!f.is_open());
        assert_eq!(f.push(WsOp::Text, false, b"{\"type\":"), Ok(false));
        assert!(f.is_open());
        assert_eq!(f.push(WsOp::Continue, false, b"\"pong\""), Ok(false));
        assert_eq!(f.push(WsOp::Continue, true, b"}"), Ok(true));
        assert!(!f.is_open());
        assert_eq!(f.message(), br#"{"type":"pong"}"#);
        assert_eq!(
            parse(f.message()).unwrap().event(),
            Ok(Some(Event::Pong { token: None }))
        );
        // The next message starts afresh.
        assert_eq!(f.push(WsOp::Text, false, b"a"), Ok(false));
        assert_eq!(f.push(WsOp::Continue, true, b"b"), Ok(true));
        assert_eq!(f.message(), b"ab");
        // Out of order.
        let mut f = Fragments::default();
        assert!(f.push(WsOp::Continue, true, b"x").is_err());
        assert_eq!(f.push(WsOp::Text, false, b"x"), Ok(false));
        assert!(f.push(WsOp::Text, true, b"y").is_err());
        assert!(Fragments::default().push(WsOp::Ping, true, b"").is_err());
        // Bounded as a whole.
        let mut f = Fragments::default();
        let half = vec![b' '; MAX_MESSAGE / 2 + 1];
        assert_eq!(f.push(WsOp::Text, false, &half), Ok(false));
        assert!(f.push(WsOp::Continue, true, &half).is_err());
    }

    /// The fast path reads the broker's own `msg` encoding, agrees with
    /// the full parse on everything it accepts, and leaves the rest to it.
    #[test]
    fn fast_msg_agrees_with_the_full_parse() {
        let stamp = Stamp {
            sender: 12,
            seq: 34,
            send_ns: 56,
        };
        let mut ours = Vec::new();
        payload::write(&mut ours, stamp, 100);
        let bodies: Vec<Vec<u8>> = vec![
            ours,
            Vec::new(),
            b"plain text, with: punctuation & {braces} [and] 'quotes'".to_vec(),
            b"a \"quote\"".to_vec(),
            b"back\\slash".to_vec(),
            b"tab\there".to_vec(),
            b"line\nbreak".to_vec(),
            "caf\u{e9} \u{1f600}".as_bytes().to_vec(),
            b"bad \xff utf-8".to_vec(),
            b"\x7f delete".to_vec(),
            b"ends with \"}".to_vec(),
        ];
        let kinds = [Kind::All, Kind::Direct, Kind::Multi, Kind::Room("#load")];
        let mut fast = 0;
        for body in &bodies {
            for (i, kind) in kinds.into_iter().enumerate() {
                let (id, ts) = ([0, 1, 9, u64::MAX][i], [u64::MAX, 0, 10, 7][i]);
                let mut json = Vec::new();
                protocol::web::push_msg(&mut json, id, "lg-7", kind, ts, body);
                let full = parse(&json).unwrap();
                let full = full.event().unwrap();
                match fast_msg(&json) {
                    Some(event) => {
                        fast += 1;
                        assert_eq!(Some(event), full, "{}", String::from_utf8_lossy(&json));
                    }
                    None => assert!(
                        body.iter().any(|&b| !is_plain(b)),
                        "{}",
                        String::from_utf8_lossy(&json)
                    ),
                }
                // A cut message is never read.
                for cut in 0..json.len() {
                    assert_eq!(fast_msg(&json[..cut]), None, "{cut}");
                }
            }
        }
        assert_eq!(fast, 3 * kinds.len(), "the plain bodies take the fast path");
        // Other shapes and other objects: the full parse's business.
        for json in [
            r#"{"type":"msg","id":01,"from":"a","kind":"all","ts":1,"text":"x"}"#,
            r#"{"type":"msg","id":1,"from":"a","kind":"all","ts":-1,"text":"x"}"#,
            r#"{"type":"msg","id":1.5,"from":"a","kind":"all","ts":1,"text":"x"}"#,
            r#"{"type":"msg","id":18446744073709551616,"from":"a","kind":"all","ts":1,"text":"x"}"#,
            r#"{"type":"msg","id":1,"from":"a","kind":"sideways","ts":1,"text":"x"}"#,
            r#"{"type":"msg","id":1,"from":"a\"b","kind":"all","ts":1,"text":"x"}"#,
            r#"{"type":"msg", "id":1,"from":"a","kind":"all","ts":1,"text":"x"}"#,
            r#"{"id":1,"type":"msg","from":"a","kind":"all","ts":1,"text":"x"}"#,
            r#"{"type":"msg","id":1,"from":"a","kind":"all","ts":1,"text":"x","ref":1}"#,
            r#"{"type":"msg","id":1,"from":"a","kind":"all","ts":1,"text":"x"} "#,
            r#"{"type":"ack","id":1,"queued":1,"missing":[]}"#,
        ] {
            assert_eq!(fast_msg(json.as_bytes()), None, "{json}");
        }
    }

    fn event_of(json: &str) -> Result<Option<String>, String> {
        let inc = parse(json.as_bytes()).map_err(|e| e.to_string())?;
        let ev = inc.event().map_err(str::to_owned)?;
        Ok(ev.map(|e| format!("{e:?}")))
    }

    #[test]
    fn deliveries_parse_in_place() {
        let stamp = Stamp {
            sender: 99_999,
            seq: u64::MAX,
            send_ns: 123,
        };
        for size in [MIN_SIZE, 100, 65_536] {
            let mut body = Vec::new();
            payload::write(&mut body, stamp, size);
            let json = format!(
                r#"{{"type":"msg","id":42,"from":"lg-3","kind":"all","ts":1700000000000,"text":"{}"}}"#,
                String::from_utf8(body.clone()).unwrap()
            );
            let inc = parse(json.as_bytes()).unwrap();
            assert!(matches!(inc.text, Some(Str(Cow::Borrowed(_)))), "no copy");
            match inc.event().unwrap().unwrap() {
                Event::Msg {
                    id,
                    from,
                    kind,
                    ts_ms,
                    body: got,
                } => {
                    assert_eq!(
                        (id, from, kind, ts_ms),
                        (42, "lg-3", Kind::All, 1_700_000_000_000)
                    );
                    assert_eq!(got, &body[..]);
                    assert_eq!(payload::parse(got), Some(stamp));
                }
                other => panic!("{other:?}"),
            }
        }
        // Field order is free; rooms are kinds; escapes are decoded.
        let inc = parse(
            br##"{"text":"a\"b\u00e9","ts":1,"kind":"#load","from":"x","id":2,"type":"msg"}"##,
        )
        .unwrap();
        assert!(matches!(inc.text, Some(Str(Cow::Owned(_)))));
        assert_eq!(
            inc.event().unwrap(),
            Some(Event::Msg {
                id: 2,
                from: "x",
                kind: Kind::Room("#load"),
                ts_ms: 1,
                body: "a\"bé".as_bytes(),
            })
        );
    }

    #[test]
    fn replies_translate_to_native_events() {
        assert_eq!(
            parse(br#"{"type":"ack","id":7,"queued":99,"missing":[]}"#)
                .unwrap()
                .event()
                .unwrap(),
            Some(Event::Ack {
                id: 7,
                queued: 99,
                missing: None
            })
        );
        assert_eq!(
            parse(br#"{"type":"ack","id":7,"queued":1,"missing":["bob"],"ref":{"a":[1]}}"#)
                .unwrap()
                .event()
                .unwrap(),
            Some(Event::Ack {
                id: 7,
                queued: 1,
                missing: None
            })
        );
        let ok = event_of(r#"{"type":"ok","op":"name","name":"lg-17"}"#).unwrap();
        assert_eq!(ok.as_deref(), Some(r#"NameOk { name: "lg-17" }"#));
        let ok = event_of(r##"{"type":"ok","op":"join","room":"#load","members":3}"##).unwrap();
        assert_eq!(
            ok.as_deref(),
            Some(r##"JoinOk { room: "#load", members: 3 }"##)
        );
        assert_eq!(
            parse(br#"{"type":"error","code":"NAME_TAKEN","text":"taken"}"#)
                .unwrap()
                .event()
                .unwrap(),
            Some(Event::Err {
                code: ErrorCode::NameTaken,
                args: None,
                text: "taken"
            })
        );
        assert_eq!(
            parse(br#"{"type":"error","code":"RATE_LIMITED","text":"slow down"}"#)
                .unwrap()
                .event()
                .unwrap(),
            Some(Event::Err {
                code: ErrorCode::RateLimited,
                args: None,
                text: "slow down"
            })
        );
        assert_eq!(
            parse(br#"{"type":"left","name":"lg-4","reason":"slow"}"#)
                .unwrap()
                .event()
                .unwrap(),
            Some(Event::Left {
                name: "lg-4",
                reason: LeftReason::Slow
            })
        );
        assert_eq!(
            parse(br#"{"type":"shutdown","text":"bye now"}"#)
                .unwrap()
                .event()
                .unwrap(),
            Some(Event::Shutdown { text: "bye now" })
        );
        assert!(matches!(
            event_of(r#"{"type":"hello","server":"chat","version":1}"#),
            Ok(Some(_))
        ));
        assert!(matches!(
            event_of(r#"{"type":"joined","name":"lg-9"}"#),
            Ok(Some(_))
        ));
        // Nothing to act on.
        for json in [
            r#"{"type":"users","count":2,"names":["a","b"]}"#,
            r#"{"type":"rcpt","id":3,"by":"bob"}"#,
            r#"{"type":"ok","op":"register","name":"x"}"#,
            r#"{"type":"something-new"}"#,
        ] {
            assert_eq!(event_of(json), Ok(None), "{json}");
        }
        // Broken contract.
        for json in [
            r#"{"type":"msg","id":1,"from":"a","kind":"all","ts":1}"#,
            r#"{"type":"msg","id":1,"from":"a","kind":"sideways","ts":1,"text":""}"#,
            r#"{"type":"ack","id":1}"#,
            r#"{"type":"ok","name":"x"}"#,
            r#"{"type":"error","code":"NO_SUCH_CODE","text":""}"#,
        ] {
            assert!(event_of(json).unwrap_err().contains("without"), "{json}");
        }
        for json in [
            "",
            "{",
            "[]",
            r#"{"op":"send"}"#,
            r#"{"type":1}"#,
            r#"{"type":"ack","id":-1,"queued":1}"#,
            r#"{"type":"ack","id":"7","queued":1}"#,
        ] {
            assert!(parse(json.as_bytes()).is_err(), "{json}");
        }
    }
}
