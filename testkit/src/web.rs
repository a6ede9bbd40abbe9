//! A WebSocket peer for the web door, and a one-shot HTTP GET.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::should_implement_trait
)]

use crate::DEADLINE;
use protocol::web::ws::{self, WsDecoded, WsOp};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Bytes both ways: a plain socket or a TLS stream.
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// A browser-like client of `/ws`: masked frames out, JSON in.
pub struct WsPeer {
    /// The socket (for timeouts, and raw writes on a plain connection).
    pub stream: TcpStream,
    io: Box<dyn Io>,
    label: String,
    buf: Vec<u8>,
}

/// A frame as the peer got it.
#[derive(Debug)]
pub enum Got {
    /// A text message's JSON.
    Json(Value),
    /// A `Close` with its code.
    Close(Option<u16>),
    /// Any other frame.
    Other(WsOp, Vec<u8>),
}

impl WsPeer {
    /// Connects and upgrades; returns after `101`, before `hello`.
    pub fn connect_raw(addr: SocketAddr) -> WsPeer {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        let io = Box::new(stream.try_clone().unwrap());
        WsPeer::upgrade(addr, stream, io)
    }

    /// Connects over TLS (wss) and upgrades; returns after `101`.
    pub fn connect_tls(addr: SocketAddr, config: &std::sync::Arc<rustls::ClientConfig>) -> WsPeer {
        let tls = crate::tls::connect(addr, config);
        let stream = tls.sock.try_clone().unwrap();
        WsPeer::upgrade(addr, stream, Box::new(tls))
    }

    fn upgrade(addr: SocketAddr, stream: TcpStream, mut io: Box<dyn Io>) -> WsPeer {
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        io.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        buf.drain(..end);
        let label = format!("ws {}", stream.local_addr().unwrap());
        WsPeer {
            stream,
            io,
            label,
            buf,
        }
    }

    /// Connects and reads the `hello`.
    pub fn connect(addr: SocketAddr) -> WsPeer {
        let mut p = WsPeer::connect_raw(addr);
        let hello = p.next();
        assert_eq!(hello["type"], "hello", "{hello}");
        p
    }

    /// Connects and takes `name`; returns after its `ok`.
    pub fn named(addr: SocketAddr, name: &str) -> WsPeer {
        let mut p = WsPeer::connect(addr);
        p.send(&serde_json::json!({"op": "name", "name": name}));
        let ok = p.next();
        assert_eq!(
            ok,
            serde_json::json!({"type": "ok", "op": "name", "name": name})
        );
        p.label = name.to_string();
        p
    }

    /// Sends one JSON request.
    pub fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    /// Sends one text message.
    pub fn send_text(&mut self, text: &str) {
        self.send_frame(WsOp::Text, true, text.as_bytes());
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, op: WsOp, fin: bool, payload: &[u8]) {
        let mut b = Vec::new();
        ws::push_client_frame(&mut b, op, fin, payload, [0x37, 0xfa, 0x21, 0x3d]);
        self.io.write_all(&b).unwrap();
    }

    /// The next frame, within `wait`.
    pub fn try_frame(&mut self, wait: Duration) -> Option<Got> {
        let until = Instant::now() + wait;
        loop {
            match ws::decode(&self.buf, usize::MAX) {
                WsDecoded::Frame {
                    op,
                    payload,
                    mask,
                    consumed,
                    ..
                } => {
                    assert!(mask.is_none(), "{}: the broker masked a frame", self.label);
                    let payload = payload.to_vec();
                    self.buf.drain(..consumed);
                    return Some(match op {
                        WsOp::Text => {
                            Got::Json(serde_json::from_slice(&payload).unwrap_or_else(|e| {
                                panic!("{}: not JSON ({e}): {:?}", self.label, payload)
                            }))
                        }
                        WsOp::Close => Got::Close(ws::close_code(&payload)),
                        op => Got::Other(op, payload),
                    });
                }
                WsDecoded::Incomplete => {}
                other => panic!("{}: bad frame from the broker: {other:?}", self.label),
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            let r = self.io.read(&mut chunk);
            self.stream.set_read_timeout(Some(DEADLINE)).unwrap();
            match r {
                Ok(0) => panic!("{}: the broker closed without a Close frame", self.label),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("{}: read failed: {e}", self.label),
            }
        }
    }

    /// The next frame; panics after [`DEADLINE`].
    pub fn frame(&mut self) -> Got {
        self.try_frame(DEADLINE)
            .unwrap_or_else(|| panic!("{}: nothing within {DEADLINE:?}", self.label))
    }

    /// The next JSON message; panics on anything else.
    pub fn next(&mut self) -> Value {
        match self.frame() {
            Got::Json(v) => v,
            other => panic!("{}: expected JSON, got {other:?}", self.label),
        }
    }

    /// Skips JSON messages until one of type `kind`.
    pub fn skip_until(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next();
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// The next frame is a `Close`; returns its code. The socket then ends.
    pub fn expect_close(&mut self) -> Option<u16> {
        match self.frame() {
            Got::Close(code) => code,
            other => panic!("{}: expected a Close, got {other:?}", self.label),
        }
    }

    /// Nothing arrives for a short while.
    pub fn expect_quiet(&mut self) {
        if let Some(got) = self.try_frame(Duration::from_millis(200)) {
            panic!("{}: expected nothing, got {got:?}", self.label);
        }
    }
}

/// One HTTP response: status, head (as text) and body.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head, status line and header lines.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// A header's value (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends raw request bytes and reads the response up to the close.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // The broker may answer (and close) before taking all of a large
    // request: a failed write is fine, the answer is what counts.
    let _ = stream.write_all(request);
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    Response {
        status,
        head,
        body: all[end + 4..].to_vec(),
    }
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}
