//! The web door's adapter (docs/web.md): one HTTP request per connection
//! for the chat page, `/metrics` and `/healthz`, or a WebSocket upgrade on
//! `/ws`, after which each JSON request is applied as the native frame it
//! means (`doors::native::handle`) and every reply and message goes out as
//! JSON in a WebSocket text frame (`core::route`).

use crate::core::conn::{flag, Conn, Door, Frame};
use crate::core::outbound::Outbox;
use crate::core::route::{closing_frame, reply_frame, web_closing, with_reply_ref};
use crate::core::{self, Flow, Session};
use crate::doors::{native, One};
use crate::metrics::{CloseReason, MessageKind};
use crate::prom::{Exposition, CONTENT_TYPE};
use crate::{log_debug, log_info, Shared};
use protocol::web::http::{self, Head, Parsed};
use protocol::web::ws::{self, WsDecoded, WsOp};
use protocol::web::WebRequest;
use protocol::{ErrorCode, Event, ProtoError};
use std::sync::Arc;
use std::time::Instant;

/// The chat page's files, built into the binary.
const PAGES: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// Keeps the page's own scripts and styles the only ones it runs, so even
/// a bug that put a user's text into the page as HTML would run nothing.
const PAGE_HEADERS: &str = "Content-Security-Policy: default-src 'self'; \
     connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'\r\n";

/// Room a WebSocket message may take beyond `max_body`: its JSON around
/// the text, and escapes (`\n`, `\"`, `\u0001`) in it.
const ENVELOPE: usize = 4096;

/// A web connection's state between reads.
#[derive(Default)]
pub(crate) struct WebSession {
    /// The fragments of a message that is still arriving, unmasked.
    partial: Vec<u8>,
    /// The kind of that message (text or binary), while it arrives.
    partial_op: Option<WsOp>,
}

impl WebSession {
    /// A connection that has not sent its request yet.
    pub fn new() -> WebSession {
        WebSession::default()
    }
}

/// Decodes and applies one request head, or after the upgrade one
/// WebSocket frame, at the front of `rest`.
pub(crate) fn one(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    web: &mut WebSession,
    rest: &[u8],
    now: Instant,
) -> One {
    if conn.has(flag::UPGRADED) {
        return frame(shared, out, conn, session, web, rest, now);
    }
    match http::parse(rest) {
        Parsed::Incomplete => One::Need,
        Parsed::TooLarge => {
            shared.metrics.error(ErrorCode::TooLong);
            respond_text(shared, out, conn, 431, "request head over 8 KiB")
        }
        Parsed::Bad => respond_text(shared, out, conn, 400, "not an HTTP/1.1 request"),
        Parsed::Head(head) => request(shared, out, conn, &head),
    }
}

/// Answers one HTTP request.
fn request(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, head: &Head<'_>) -> One {
    log_debug!("{} {} {}", conn.peer, head.method, head.path);
    if head.path == "/ws" && head.method == "GET" {
        return upgrade(shared, out, conn, head);
    }
    let mut b = Vec::new();
    match head.method {
        "GET" | "HEAD" => page(shared, head.path, &mut b),
        _ => http::push_response(
            &mut b,
            405,
            "text/plain; charset=utf-8",
            "Allow: GET, HEAD\r\n",
            b"only GET and HEAD are served here\n",
        ),
    }
    if head.method == "HEAD" {
        // The same head, without the body (its length stays announced).
        if let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") {
            b.truncate(end + 4);
        }
    }
    respond(shared, out, conn, b)
}

/// The response to `GET path`.
fn page(shared: &Shared, path: &str, b: &mut Vec<u8>) {
    if let Some((_, kind, body)) = PAGES
        .iter()
        .find(|(p, _, _)| *p == path || (*p == "/" && path == "/index.html"))
    {
        http::push_response(b, 200, kind, PAGE_HEADERS, body.as_bytes());
        return;
    }
    match path {
        "/healthz" if shared.stopping() => http::push_text(b, 503, "shutting down"),
        "/healthz" => http::push_text(b, 200, "ok"),
        "/metrics" => http::push_response(b, 200, CONTENT_TYPE, "", metrics(shared).as_bytes()),
        "/ws" => http::push_response(
            b,
            426,
            "text/plain; charset=utf-8",
            "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            b"this is the chat's WebSocket endpoint: connect with a WebSocket (version 13)\n",
        ),
        _ => http::push_text(b, 404, "no such page"),
    }
}

/// `GET /ws`: `101 Switching Protocols`, then `hello`.
fn upgrade(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, head: &Head<'_>) -> One {
    let key = match head.ws_key {
        Some(key) if head.upgrade && head.ws_version_13 => key,
        _ => {
            let mut b = Vec::new();
            page(shared, "/ws", &mut b);
            return respond(shared, out, conn, b);
        }
    };
    let mut b = Vec::with_capacity(256);
    http::push_upgrade(&mut b, key);
    out.push(conn, &Frame::from(b));
    conn.set_flag(flag::UPGRADED, true);
    let hello = Event::Hello {
        server: &shared.config.server_name,
        version: protocol::VERSION,
        text: "Welcome. Choose a name with {\"op\":\"name\",\"name\":\"…\"}",
    };
    out.push(conn, &reply_frame(conn, &hello));
    One::Done {
        consumed: head.consumed,
        flow: Flow::Continue,
    }
}

/// Sends a whole HTTP response and closes: one request per connection.
fn respond(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, response: Vec<u8>) -> One {
    let last = Frame::from(response);
    core::close(shared, out, conn, CloseReason::Served, Some(&last));
    One::Fatal
}

fn respond_text(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    status: u16,
    text: &str,
) -> One {
    let mut b = Vec::new();
    http::push_text(&mut b, status, text);
    respond(shared, out, conn, b)
}

/// One WebSocket frame from the browser.
fn frame(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    web: &mut WebSession,
    rest: &[u8],
    now: Instant,
) -> One {
    let max = shared.limits.max_body.saturating_add(ENVELOPE);
    let (op, fin, payload, mask, consumed) = match ws::decode(rest, max) {
        WsDecoded::Incomplete => return One::Need,
        WsDecoded::TooBig => return fail(shared, out, conn, ErrorCode::TooLong, "message too big"),
        WsDecoded::Bad(why) => return fail(shared, out, conn, ErrorCode::BadFrame, why),
        WsDecoded::Frame {
            op,
            fin,
            payload,
            mask,
            consumed,
        } => (op, fin, payload, mask, consumed),
    };
    let Some(mask) = mask else {
        return fail(
            shared,
            out,
            conn,
            ErrorCode::BadFrame,
            "frames from a client must be masked",
        );
    };
    let done = |flow| One::Done { consumed, flow };
    match op {
        WsOp::Ping => {
            let mut pong = Vec::new();
            let mut data = Vec::with_capacity(payload.len());
            ws::unmask_into(&mut data, payload, mask);
            ws::push_frame(&mut pong, WsOp::Pong, &data);
            out.push(conn, &Frame::from(pong));
            done(core::charge_other(shared, out, conn, session, now, None))
        }
        WsOp::Pong => done(core::charge_other(shared, out, conn, session, now, None)),
        WsOp::Close => {
            // The browser is leaving (a closed tab, a reload): answer its
            // close and go, as a dropped connection.
            let mut b = Vec::new();
            ws::push_close(&mut b, ws::close::NORMAL, "");
            core::close(
                shared,
                out,
                conn,
                CloseReason::Disconnect,
                Some(&Frame::from(b)),
            );
            One::Fatal
        }
        WsOp::Text | WsOp::Binary | WsOp::Continue => {
            let starts = op != WsOp::Continue;
            if starts == web.partial_op.is_some() {
                let why = if starts {
                    "a new message began before the last one ended"
                } else {
                    "a continuation frame with no message to continue"
                };
                return fail(shared, out, conn, ErrorCode::BadFrame, why);
            }
            if starts {
                web.partial_op = Some(op);
            }
            if web.partial.len().saturating_add(payload.len()) > max {
                return fail(shared, out, conn, ErrorCode::TooLong, "message too big");
            }
            ws::unmask_into(&mut web.partial, payload, mask);
            if !fin {
                // Every frame counts against the rate, fragments too.
                return done(core::charge_other(shared, out, conn, session, now, None));
            }
            let whole = std::mem::take(&mut web.partial);
            let kind = web.partial_op.take();
            let flow = message(shared, out, conn, session, kind, &whole, now);
            if flow == Flow::Continue && whole.capacity() <= ENVELOPE {
                // Keep a small buffer for the next message.
                web.partial = whole;
                web.partial.clear();
            }
            done(flow)
        }
    }
}

/// One whole message from the browser: a JSON request.
fn message(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    kind: Option<WsOp>,
    text: &[u8],
    now: Instant,
) -> Flow {
    if kind == Some(WsOp::Binary) {
        let e = ProtoError::new(ErrorCode::BadFrame, "send JSON in text messages");
        return core::charge_other(shared, out, conn, session, now, Some(e));
    }
    if std::str::from_utf8(text).is_err() {
        // RFC 6455: a text message must be UTF-8.
        let mut b = Vec::new();
        ws::push_close(&mut b, ws::close::BAD_DATA, "text is not UTF-8");
        log_info!("closing {}: WebSocket text that is not UTF-8", conn.peer);
        core::close(shared, out, conn, CloseReason::Error, Some(&Frame::from(b)));
        return Flow::Closed;
    }
    match WebRequest::parse(text) {
        Ok(mut req) => {
            let reference = req.take_reference();
            with_reply_ref(conn.id, reference, || match req.request(&shared.limits) {
                Ok(r) => native::handle(shared, out, conn, session, r, now),
                Err(e) => core::charge_other(shared, out, conn, session, now, Some(e)),
            })
        }
        Err(rejected) => with_reply_ref(conn.id, rejected.reference, || {
            core::charge_other(shared, out, conn, session, now, Some(rejected.error))
        }),
    }
}

/// A broken frame or an oversized message: `error`, a `Close` with its code,
/// then the close.
fn fail(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, code: ErrorCode, why: &str) -> One {
    shared.metrics.error(code);
    log_info!("closing {}: {why}", conn.peer);
    let last = closing_frame(conn, code, why);
    core::close(shared, out, conn, CloseReason::Error, Some(&last));
    One::Fatal
}

/// The last bytes of a web connection at shutdown.
pub(crate) fn shutdown_frame(conn: &Conn, text: &str) -> Frame {
    web_closing(conn, &Event::Shutdown { text }, ws::close::GOING_AWAY, text)
}

/// One scrape of `/metrics`.
fn metrics(shared: &Shared) -> String {
    let stats = shared.metrics.snapshot(shared.registry.len());
    let everyone = shared.registry.everyone();
    let queued: usize = everyone.conns.iter().map(|c| c.backlog().0).sum();
    let mut e = Exposition::new();
    let doors: Vec<(&[(&str, &str)], f64)> = Door::ALL
        .iter()
        .zip(stats.by_door)
        .map(|(d, n)| (door_label(*d), n as f64))
        .collect();
    e.gauge("chat_connections", "Open connections, by door.", &doors);
    e.gauge(
        "chat_users",
        "Users with a name (on every door).",
        &[(&[], stats.users as f64)],
    );
    e.gauge(
        "chat_rooms",
        "Rooms that exist.",
        &[(&[], shared.rooms.len() as f64)],
    );
    let kinds: Vec<(&[(&str, &str)], u64)> = MessageKind::ALL
        .iter()
        .zip(stats.by_kind)
        .map(|(k, n)| (kind_label(*k), n))
        .collect();
    e.counter(
        "chat_messages_total",
        "Messages accepted (sends that got an ack), by how they were addressed.",
        &kinds,
    );
    e.counter(
        "chat_deliveries_total",
        "Message copies queued to recipients.",
        &[(&[], stats.deliveries)],
    );
    let reasons: Vec<&str> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
    let closes = by_label("reason", &reasons, &stats.closes);
    e.counter(
        "chat_closed_total",
        "Connections closed, by reason.",
        &samples(&closes),
    );
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let errors = by_label("code", &codes, &stats.errors);
    e.counter(
        "chat_errors_total",
        "Errors sent, by code.",
        &samples(&errors),
    );
    e.gauge(
        "chat_queue_bytes",
        "Bytes queued to users and not yet written.",
        &[(&[], queued as f64)],
    );
    let store = shared.store.as_deref();
    e.gauge(
        "chat_stored_messages",
        "Messages stored for offline accounts, waiting for them to log in.",
        &[(&[], store.map_or(0, |s| s.stored_count()) as f64)],
    );
    e.counter(
        "chat_stored_dropped_total",
        "Stored messages dropped: a mailbox past mailbox_max (full), or older than mailbox_days (expired).",
        &[
            (&[("reason", "full")], store.map_or(0, |s| s.dropped_count())),
            (&[("reason", "expired")], store.map_or(0, |s| s.expired_count())),
        ],
    );
    e.gauge(
        "chat_uptime_seconds",
        "Seconds since the broker started.",
        &[(&[], shared.started.elapsed().as_secs_f64().floor())],
    );
    e.counter(
        "chat_accepted_total",
        "Connections accepted past the connection limits.",
        &[(&[], stats.accepted)],
    );
    e.counter(
        "chat_bytes_out_total",
        "Bytes written to sockets.",
        &[(&[], stats.bytes_out)],
    );
    e.finish()
}

/// One label set per value, with its count.
fn by_label<'a>(
    key: &'a str,
    values: &[&'a str],
    counts: &[u64],
) -> Vec<([(&'a str, &'a str); 1], u64)> {
    values
        .iter()
        .zip(counts)
        .map(|(v, n)| ([(key, *v)], *n))
        .collect()
}

/// The samples of [`by_label`]'s label sets.
fn samples<'a>(sets: &'a [([(&'a str, &'a str); 1], u64)]) -> Vec<(&'a [(&'a str, &'a str)], u64)> {
    sets.iter().map(|(l, n)| (&l[..], *n)).collect()
}

fn door_label(door: Door) -> &'static [(&'static str, &'static str)] {
    match door {
        Door::Native => &[("door", "native")],
        Door::Irc => &[("door", "irc")],
        Door::Web => &[("door", "web")],
    }
}

fn kind_label(kind: MessageKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        MessageKind::Direct => &[("kind", "direct")],
        MessageKind::Multi => &[("kind", "multi")],
        MessageKind::All => &[("kind", "all")],
        MessageKind::Room => &[("kind", "room")],
    }
}
