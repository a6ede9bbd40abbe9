//! A fake web door, thread per connection, built on the shared codec
//! (`protocol::web`): it upgrades `GET /ws`, answers `name`, `join` and
//! `send` in JSON, and uses the parts of RFC 6455 our broker may never
//! send: it fragments its hello and every 7th delivery, pings every
//! client, and can refuse the upgrade or close a client mid-run.

use protocol::web::ws::{self, WsDecoded, WsOp};
use protocol::web::{http, push_event, push_msg, WebRequest};
use protocol::{Event, Kind, Limits, Request, Targets};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// What the fake web door does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebFault {
    /// Nothing (but fragments and pings, which are right).
    None,
    /// Answers the upgrade with `404 Not Found`.
    NotFound,
    /// Answers `101` with a wrong `Sec-WebSocket-Accept`.
    BadAccept,
    /// Sends a `Close` (1001) to `lg-2` at the 100th delivery.
    CloseOne,
}

struct State {
    fault: WebFault,
    /// Writers by name.
    names: Mutex<HashMap<String, Arc<Mutex<TcpStream>>>>,
    /// Members of `#load`.
    room: Mutex<HashSet<String>>,
    deliveries: AtomicU64,
    /// Pongs that carried the ping's payload back.
    pongs: AtomicU64,
}

/// The server; its threads live as long as the test process.
pub struct FakeWeb {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FakeWeb {
    pub fn start(fault: WebFault) -> FakeWeb {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            fault,
            names: Mutex::new(HashMap::new()),
            room: Mutex::new(HashSet::new()),
            deliveries: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
        });
        let s = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let s = s.clone();
                thread::spawn(move || serve(stream, &s));
            }
        });
        FakeWeb { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Clients that answered the server's ping with its payload.
    pub fn pongs(&self) -> u64 {
        self.state.pongs.load(Ordering::SeqCst)
    }
}

fn write(w: &Mutex<TcpStream>, bytes: &[u8]) {
    let _ = w.lock().unwrap().write_all(bytes);
}

/// One event as a text message, in `parts` fragments.
fn event_frames(json: &[u8], parts: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let step = json.len().div_ceil(parts).max(1);
    let chunks: Vec<&[u8]> = json.chunks(step).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let header = FrameHeader {
            is_final: i + 1 == chunks.len(),
            opcode: if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            },
            ..FrameHeader::default()
        };
        header.format(chunk.len() as u64, &mut out).unwrap();
        out.extend_from_slice(chunk);
    }
    out
}

fn send_event(w: &Mutex<TcpStream>, event: &Event<'_>) {
    let mut json = Vec::new();
    push_event(&mut json, event, None);
    write(w, &event_frames(&json, 1));
}

fn serve(mut stream: TcpStream, state: &State) {
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0;
    // The upgrade.
    let key = loop {
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        len += n;
        match http::parse(&buf[..len]) {
            http::Parsed::Incomplete => continue,
            http::Parsed::Head(head) => {
                assert_eq!((head.method, head.path), ("GET", "/ws"));
                assert!(head.upgrade && head.ws_version_13, "{head:?}");
                let (key, consumed) = (head.ws_key.unwrap().to_string(), head.consumed);
                buf.copy_within(consumed..len, 0);
                len -= consumed;
                break key;
            }
            other => panic!("{other:?}"),
        }
    };
    let mut answer = Vec::new();
    match state.fault {
        WebFault::NotFound => {
            http::push_text(&mut answer, 404, "not found");
            let _ = stream.write_all(&answer);
            return;
        }
        WebFault::BadAccept => http::push_upgrade(&mut answer, "not-the-key"),
        _ => http::push_upgrade(&mut answer, &key),
    }
    let me = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    write(&me, &answer);
    let mut hello = Vec::new();
    push_event(
        &mut hello,
        &Event::Hello {
            server: "fake",
            version: 1,
            text: "a fragmented hello",
        },
        None,
    );
    write(&me, &event_frames(&hello, 3));
    let mut name = String::new();
    loop {
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        len += n;
        let mut pos = 0;
        loop {
            let (op, payload, mask, consumed) = match ws::decode(&buf[pos..len], 1 << 20) {
                WsDecoded::Incomplete => break,
                WsDecoded::Frame {
                    op,
                    fin: true,
                    payload,
                    mask: Some(mask),
                    consumed,
                } => (op, payload, mask, consumed),
                other => panic!("not a whole masked client frame: {other:?}"),
            };
            let mut plain = Vec::new();
            ws::unmask_into(&mut plain, payload, mask);
            pos += consumed;
            match op {
                WsOp::Pong if plain == format!("check-{name}").as_bytes() => {
                    state.pongs.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                WsOp::Text => {}
                _ => continue,
            }
            let req = WebRequest::parse(&plain).unwrap();
            match req.request(&Limits::default()).unwrap() {
                Request::Name { name: n } => {
                    name = n.to_string();
                    state.names.lock().unwrap().insert(name.clone(), me.clone());
                    send_event(&me, &Event::NameOk { name: &name });
                    let mut ping = Vec::new();
                    ws::push_frame(&mut ping, WsOp::Ping, format!("check-{name}").as_bytes());
                    write(&me, &ping);
                }
                Request::Join { room } => {
                    let mut members = state.room.lock().unwrap();
                    members.insert(name.clone());
                    send_event(
                        &me,
                        &Event::JoinOk {
                            room,
                            members: members.len(),
                        },
                    );
                }
                Request::Send { targets, body } => {
                    relay(state, &me, &name, targets, body);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        buf.copy_within(pos..len, 0);
        len -= pos;
    }
    state.names.lock().unwrap().remove(&name);
    state.room.lock().unwrap().remove(&name);
}

fn relay(state: &State, me: &Mutex<TcpStream>, from: &str, targets: Targets<'_>, body: &[u8]) {
    let names = state.names.lock().unwrap();
    let (to, kind): (Vec<String>, Kind<'_>) = match targets {
        Targets::All => (
            names.keys().filter(|n| *n != from).cloned().collect(),
            Kind::All,
        ),
        Targets::Room(room) => (
            state
                .room
                .lock()
                .unwrap()
                .iter()
                .filter(|n| *n != from)
                .cloned()
                .collect(),
            Kind::Room(room),
        ),
        Targets::Names(list) => {
            let to: Vec<String> = list.split(',').map(str::to_string).collect();
            let kind = if to.len() > 1 {
                Kind::Multi
            } else {
                Kind::Direct
            };
            (to, kind)
        }
    };
    send_event(
        me,
        &Event::Ack {
            id: 1,
            queued: to.len() as u64,
            missing: None,
        },
    );
    let mut json = Vec::new();
    push_msg(&mut json, 1, from, kind, 0, body);
    for t in to {
        let d = state.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(w) = names.get(&t) else { continue };
        if state.fault == WebFault::CloseOne && d == 100 {
            let mut close = Vec::new();
            ws::push_close(&mut close, ws::close::GOING_AWAY, "bye");
            write(names.get("lg-2").unwrap(), &close);
        }
        write(
            w,
            &event_frames(&json, if d.is_multiple_of(7) { 2 } else { 1 }),
        );
    }
}
