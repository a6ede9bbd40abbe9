//! The web door's wire (docs/web.md): HTTP request heads, WebSocket frames,
//! and the JSON mapping of the native protocol.
//!
//! A browser sends one JSON object per WebSocket text message: `op` is a
//! native verb in lower case and the fields are named (`{"op":"send",
//! "to":"bob","text":"hi"}`). [`WebRequest::parse`] reads one and
//! [`WebRequest::request`] lends it out as the native [`Request`] it means,
//! so the broker applies it exactly as it would the native frame. Replies
//! and messages go the other way: [`push_event`] writes a native [`Event`]
//! as JSON, `type` being its verb in lower case. An optional `ref` on a
//! request (any JSON value) is copied onto its reply.

pub mod http;
pub mod ws;

use crate::{ErrorCode, Event, Kind, Limits, ProtoError, Request, Targets};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

const NOT_JSON: ProtoError = ProtoError::new(ErrorCode::BadFrame, "not a JSON object");
const NO_OP: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "a request is a JSON object with a string \"op\"",
);
const BAD_FIELD: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "a field has the wrong type (see docs/web.md)",
);
const UNKNOWN_OP: ProtoError = ProtoError::new(
    ErrorCode::UnknownCommand,
    "unknown op; ops are name, register, list, send, join, part, rooms, recv, ping, help, quit",
);
const NEED_NAME: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "usage: {\"op\":\"name\",\"name\":\"alice\"}",
);
const NEED_PASSWORD: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "usage: {\"op\":\"register\",\"password\":\"…\"}",
);
const NEED_ROOM: ProtoError = ProtoError::new(ErrorCode::BadFrame, "this op needs \"room\"");
const NEED_SEND: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "usage: {\"op\":\"send\",\"to\":\"*\" or \"bob\" or [\"bob\",\"carol\"] or \"#room\",\"text\":\"hi\"}",
);
const BAD_TO: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "\"to\" is \"*\", a name, a list of names, or one \"#room\"",
);
const NEED_RECV: ProtoError = ProtoError::new(
    ErrorCode::BadFrame,
    "usage: {\"op\":\"recv\",\"id\":17,\"from\":\"bob\"}",
);
const TOO_LONG: ProtoError = ProtoError::new(ErrorCode::TooLong, "text is over the body limit");

/// The fields a request may have; which are needed depends on `op`.
#[derive(Debug, Default, Deserialize)]
struct Fields {
    op: String,
    name: Option<String>,
    password: Option<String>,
    room: Option<String>,
    to: Option<To>,
    text: Option<String>,
    id: Option<u64>,
    from: Option<String>,
    token: Option<String>,
    reason: Option<String>,
}

/// `"to"`: one target, or a list of names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum To {
    One(String),
    Many(Vec<String>),
}

/// One request from a browser, owned; see [`WebRequest::request`].
#[derive(Debug)]
pub struct WebRequest {
    fields: Fields,
    /// `to` as the native target list (`bob,carol`).
    targets: String,
    reference: Option<Value>,
}

/// A request that could not be read, with the `ref` to answer it with if
/// one was found.
#[derive(Debug)]
pub struct Rejected {
    /// What to tell the browser.
    pub error: ProtoError,
    /// The request's `ref`, if it had one.
    pub reference: Option<Value>,
}

impl WebRequest {
    /// Reads one request from a text message.
    pub fn parse(text: &[u8]) -> Result<WebRequest, Rejected> {
        let rejected = |error, reference| Rejected { error, reference };
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(text) else {
            return Err(rejected(NOT_JSON, None));
        };
        let reference = map.remove("ref");
        if !matches!(map.get("op"), Some(Value::String(_))) {
            return Err(rejected(NO_OP, reference));
        }
        let fields = match Fields::deserialize(Value::Object(map)) {
            Ok(f) => f,
            Err(_) => return Err(rejected(BAD_FIELD, reference)),
        };
        let targets = match &fields.to {
            Some(To::One(t)) => t.clone(),
            Some(To::Many(names)) => names.join(","),
            None => String::new(),
        };
        Ok(WebRequest {
            fields,
            targets,
            reference,
        })
    }

    /// The request's `ref`, copied onto its reply.
    pub fn reference(&self) -> Option<&Value> {
        self.reference.as_ref()
    }

    /// Gives up the `ref`.
    pub fn take_reference(&mut self) -> Option<Value> {
        self.reference.take()
    }

    /// The native request this one means, or the error to answer.
    pub fn request(&self, limits: &Limits) -> Result<Request<'_>, ProtoError> {
        let f = &self.fields;
        let room = || f.room.as_deref().ok_or(NEED_ROOM);
        Ok(match f.op.as_str() {
            "name" => {
                let name = f
                    .name
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .ok_or(NEED_NAME)?;
                match f.password.as_deref() {
                    Some(password) => Request::Login { name, password },
                    None => Request::Name { name },
                }
            }
            "register" => Request::Register {
                password: f.password.as_deref().ok_or(NEED_PASSWORD)?,
            },
            "list" => Request::List {
                room: f.room.as_deref(),
            },
            "send" => {
                let (Some(to), Some(text)) = (&f.to, &f.text) else {
                    return Err(NEED_SEND);
                };
                if matches!(to, To::Many(names) if names.is_empty()) {
                    return Err(BAD_TO);
                }
                if text.len() > limits.max_body {
                    return Err(TOO_LONG);
                }
                let targets = Targets::parse(&self.targets, limits).map_err(|e| {
                    if e.code == ErrorCode::BadFrame {
                        BAD_TO
                    } else {
                        e
                    }
                })?;
                Request::Send {
                    targets,
                    body: text.as_bytes(),
                }
            }
            "join" => Request::Join { room: room()? },
            "part" => Request::Part {
                room: room()?,
                reason: f.reason.as_deref().map(str::as_bytes),
            },
            "rooms" => Request::Rooms,
            "recv" => match (f.id, f.from.as_deref()) {
                (Some(id), Some(from)) => Request::Recv { id, from },
                _ => return Err(NEED_RECV),
            },
            "ping" => Request::Ping {
                token: f.token.as_deref(),
            },
            "help" => Request::Help,
            "quit" => Request::Quit {
                reason: f.reason.as_deref().map(str::as_bytes),
            },
            _ => return Err(UNKNOWN_OP),
        })
    }
}

/// A space- or comma-separated list, written as a JSON array.
struct List<'a>(&'a str, char);

impl Serialize for List<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.split(self.1).filter(|n| !n.is_empty()))
    }
}

/// The JSON form of each native event.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Out<'a> {
    Hello {
        server: &'a str,
        version: u32,
        text: &'a str,
    },
    Ok {
        op: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        members: Option<usize>,
    },
    Users {
        count: usize,
        names: List<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
    },
    Rooms {
        rooms: List<'a>,
    },
    Msg {
        id: u64,
        from: &'a str,
        kind: &'a str,
        ts: u64,
        text: Cow<'a, str>,
    },
    Ack {
        id: u64,
        queued: u64,
        missing: List<'a>,
    },
    Rcpt {
        id: u64,
        by: &'a str,
    },
    Joined {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
    },
    Parted {
        name: &'a str,
        room: &'a str,
    },
    Left {
        name: &'a str,
        reason: &'static str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
    },
    Info {
        text: Cow<'a, str>,
    },
    Error {
        code: &'static str,
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        args: Option<&'a str>,
    },
    Bye,
    Shutdown {
        text: &'a str,
    },
}

/// An event with the `ref` of the request it answers.
#[derive(Serialize)]
struct Reply<'a> {
    #[serde(flatten)]
    out: Out<'a>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
}

impl<'a> Out<'a> {
    fn of(event: &Event<'a>) -> Out<'a> {
        match *event {
            Event::Hello {
                server,
                version,
                text,
            } => Out::Hello {
                server,
                version,
                text,
            },
            Event::NameOk { name } => Out::Ok {
                op: "name",
                name: Some(name),
                room: None,
                members: None,
            },
            Event::RegisterOk { name } => Out::Ok {
                op: "register",
                name: Some(name),
                room: None,
                members: None,
            },
            Event::JoinOk { room, members } => Out::Ok {
                op: "join",
                name: None,
                room: Some(room),
                members: Some(members),
            },
            Event::PartOk { room } => Out::Ok {
                op: "part",
                name: None,
                room: Some(room),
                members: None,
            },
            Event::Users { count, room, names } => Out::Users {
                count,
                names: List(names, ' '),
                room,
            },
            Event::Rooms { rooms, .. } => Out::Rooms {
                rooms: List(rooms, ' '),
            },
            Event::Msg {
                id,
                from,
                kind,
                ts_ms,
                body,
            } => Out::Msg {
                id,
                from,
                kind: kind.as_str(),
                ts: ts_ms,
                text: String::from_utf8_lossy(body),
            },
            Event::Ack {
                id,
                queued,
                missing,
            } => Out::Ack {
                id,
                queued,
                missing: List(missing.unwrap_or(""), ','),
            },
            Event::Rcpt { id, by } => Out::Rcpt { id, by },
            Event::Joined { name, room } => Out::Joined { name, room },
            Event::Parted { name, room } => Out::Parted { name, room },
            Event::Left { name, reason } => Out::Left {
                name,
                reason: reason.as_str(),
            },
            Event::Pong { token } => Out::Pong { token },
            Event::Info { text } => Out::Info {
                text: String::from_utf8_lossy(text),
            },
            Event::Err { code, args, text } => Out::Error {
                code: code.as_str(),
                text,
                args,
            },
            Event::Bye => Out::Bye,
            Event::Shutdown { text } => Out::Shutdown { text },
        }
    }
}

/// Appends the JSON form of `event`, with `reference` as its `ref`.
pub fn push_event(out: &mut Vec<u8>, event: &Event<'_>, reference: Option<&Value>) {
    let reply = Reply {
        out: Out::of(event),
        reference,
    };
    // Writing plain data to a Vec can't fail.
    let _ = serde_json::to_writer(out, &reply);
}

/// Appends the JSON form of a message (the fan-out's hot path: no `ref`).
pub fn push_msg(out: &mut Vec<u8>, id: u64, from: &str, kind: Kind<'_>, ts_ms: u64, body: &[u8]) {
    let msg = Out::Msg {
        id,
        from,
        kind: kind.as_str(),
        ts: ts_ms,
        text: String::from_utf8_lossy(body),
    };
    let _ = serde_json::to_writer(out, &msg);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::LeftReason;

    fn req(text: &str) -> Result<Request<'static>, ProtoError> {
        // Leaked so the borrowed request can outlive this helper in tests.
        let r = Box::leak(Box::new(
            WebRequest::parse(text.as_bytes()).map_err(|r| r.error)?,
        ));
        r.request(&Limits::default())
    }

    fn json(event: &Event<'_>, reference: Option<&Value>) -> Value {
        let mut out = Vec::new();
        push_event(&mut out, event, reference);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn every_op_maps_to_its_native_request() {
        assert_eq!(
            req(r#"{"op":"name","name":"alice","password":"x"}"#),
            Ok(Request::Login {
                name: "alice",
                password: "x"
            })
        );
        assert_eq!(
            req(r#"{"op":"name","name":"alice"}"#),
            Ok(Request::Name { name: "alice" })
        );
        assert_eq!(
            req(r#"{"op":"register","password":"s3cret-pw"}"#),
            Ok(Request::Register {
                password: "s3cret-pw"
            })
        );
        assert_eq!(req(r#"{"op":"list"}"#), Ok(Request::List { room: None }));
        assert_eq!(
            req(r##"{"op":"list","room":"#r"}"##),
            Ok(Request::List { room: Some("#r") })
        );
        assert_eq!(
            req(r#"{"op":"send","to":"*","text":"hi"}"#),
            Ok(Request::Send {
                targets: Targets::All,
                body: b"hi"
            })
        );
        assert_eq!(
            req(r#"{"op":"send","to":["bob","carol"],"text":"a\nb"}"#),
            Ok(Request::Send {
                targets: Targets::Names("bob,carol"),
                body: b"a\nb"
            })
        );
        assert_eq!(
            req(r##"{"op":"send","to":"#r","text":""}"##),
            Ok(Request::Send {
                targets: Targets::Room("#r"),
                body: b""
            })
        );
        assert_eq!(
            req(r##"{"op":"join","room":"#r"}"##),
            Ok(Request::Join { room: "#r" })
        );
        assert_eq!(
            req(r##"{"op":"part","room":"#r","reason":"bye"}"##),
            Ok(Request::Part {
                room: "#r",
                reason: Some(b"bye")
            })
        );
        assert_eq!(req(r#"{"op":"rooms"}"#), Ok(Request::Rooms));
        assert_eq!(
            req(r#"{"op":"recv","id":17,"from":"bob"}"#),
            Ok(Request::Recv {
                id: 17,
                from: "bob"
            })
        );
        assert_eq!(req(r#"{"op":"ping"}"#), Ok(Request::Ping { token: None }));
        assert_eq!(req(r#"{"op":"help"}"#), Ok(Request::Help));
        assert_eq!(req(r#"{"op":"quit"}"#), Ok(Request::Quit { reason: None }));
    }

    #[test]
    fn bad_requests_get_errors_with_their_ref() {
        let code = |t: &str| req(t).unwrap_err().code;
        assert_eq!(code("{"), ErrorCode::BadFrame);
        assert_eq!(code("[1]"), ErrorCode::BadFrame);
        assert_eq!(code(r#"{"op":5}"#), ErrorCode::BadFrame);
        assert_eq!(code(r#"{"op":"fly"}"#), ErrorCode::UnknownCommand);
        assert_eq!(code(r#"{"op":"send","to":"bob"}"#), ErrorCode::BadFrame);
        assert_eq!(
            code(r#"{"op":"send","to":[],"text":"x"}"#),
            ErrorCode::BadFrame
        );
        assert_eq!(
            code(r##"{"op":"send","to":["#r","bob"],"text":"x"}"##),
            ErrorCode::BadFrame
        );
        assert_eq!(
            code(r#"{"op":"send","to":"a b","text":"x"}"#),
            ErrorCode::BadFrame
        );
        let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        let t = serde_json::json!({"op":"send","to":many,"text":"x"}).to_string();
        assert_eq!(code(&t), ErrorCode::TooManyTargets);
        let long = serde_json::json!({"op":"send","to":"bob","text":"x".repeat(65537)});
        assert_eq!(code(&long.to_string()), ErrorCode::TooLong);
        assert_eq!(
            code(r#"{"op":"recv","id":-1,"from":"b"}"#),
            ErrorCode::BadFrame
        );
        let r = WebRequest::parse(br#"{"op":"name","name":7,"ref":{"n":1}}"#).unwrap_err();
        assert_eq!(r.error.code, ErrorCode::BadFrame);
        assert_eq!(r.reference, Some(serde_json::json!({"n":1})));
        let mut ok = WebRequest::parse(br#"{"op":"ping","ref":"a"}"#).unwrap();
        assert_eq!(ok.take_reference(), Some(Value::from("a")));
    }

    #[test]
    fn events_as_the_contract_names_them() {
        let r = Value::from(3);
        assert_eq!(
            json(
                &Event::Ack {
                    id: 9,
                    queued: 1,
                    missing: Some("bob,carol")
                },
                Some(&r)
            ),
            serde_json::json!({"type":"ack","id":9,"queued":1,"missing":["bob","carol"],"ref":3})
        );
        assert_eq!(
            json(
                &Event::Ack {
                    id: 9,
                    queued: 1,
                    missing: None
                },
                None
            ),
            serde_json::json!({"type":"ack","id":9,"queued":1,"missing":[]})
        );
        assert_eq!(
            json(
                &Event::Msg {
                    id: 4,
                    from: "bob",
                    kind: Kind::Room("#r"),
                    ts_ms: 12,
                    body: b"<b>\xff"
                },
                None
            ),
            serde_json::json!({"type":"msg","id":4,"from":"bob","kind":"#r","ts":12,"text":"<b>\u{fffd}"})
        );
        assert_eq!(
            json(
                &Event::Users {
                    count: 2,
                    room: None,
                    names: "a b"
                },
                None
            ),
            serde_json::json!({"type":"users","count":2,"names":["a","b"]})
        );
        assert_eq!(
            json(
                &Event::Rooms {
                    count: 0,
                    rooms: ""
                },
                None
            ),
            serde_json::json!({"type":"rooms","rooms":[]})
        );
        assert_eq!(
            json(
                &Event::JoinOk {
                    room: "#r",
                    members: 3
                },
                None
            ),
            serde_json::json!({"type":"ok","op":"join","room":"#r","members":3})
        );
        assert_eq!(
            json(
                &Event::Left {
                    name: "bob",
                    reason: LeftReason::Slow
                },
                None
            ),
            serde_json::json!({"type":"left","name":"bob","reason":"slow"})
        );
        assert_eq!(json(&Event::Bye, None), serde_json::json!({"type":"bye"}));
        assert_eq!(
            json(
                &Event::Err {
                    code: ErrorCode::NoSuchUser,
                    args: Some("bob"),
                    text: "no"
                },
                None
            ),
            serde_json::json!({"type":"error","code":"NO_SUCH_USER","text":"no","args":"bob"})
        );
        let mut m = Vec::new();
        push_msg(&mut m, 1, "a", Kind::All, 2, b"x\"y");
        assert_eq!(
            serde_json::from_slice::<Value>(&m).unwrap(),
            serde_json::json!({"type":"msg","id":1,"from":"a","kind":"all","ts":2,"text":"x\"y"})
        );
    }
}
