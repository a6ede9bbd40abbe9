//! Commands against the registry: what each client frame does.
//!
//! Nothing here touches a socket: frames go onto connection queues through
//! an `Outbox`, so the handler works the same for every thread and can be
//! driven without sockets.

use crate::conn::{Conn, Frame, Pushed};
use crate::metrics::{CloseReason, Metrics};
use crate::outbound::Outbox;
use crate::worker::WorkerMsg;
use crate::{log_debug, log_info, Shared};
use protocol::{
    encode_msg, validate_name, validate_room, ErrorCode, Event, Kind, Request, Targets,
};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Per-connection state only the reading worker touches.
pub(crate) struct Session {
    bucket: f64,
    last_refill: Instant,
    strikes: u32,
    last_strike: Instant,
    /// Bytes of fan-out this connection may still cause; below zero it is
    /// in debt and its socket is not read until the debt is paid.
    budget: f64,
    budget_at: Instant,
}

impl Session {
    /// A fresh session with full buckets.
    pub fn new(shared: &Shared, now: Instant) -> Session {
        Session {
            bucket: f64::from(shared.config.rate_burst),
            last_refill: now,
            strikes: 0,
            last_strike: now,
            budget: shared.config.rate_bytes_burst as f64,
            budget_at: now,
        }
    }

    /// Takes one token; false if the connection is over its rate.
    fn take_token(&mut self, shared: &Shared, now: Instant) -> bool {
        let rate = shared.config.rate_per_sec;
        if rate == 0 {
            return true;
        }
        let burst = f64::from(shared.config.rate_burst.max(1));
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.last_refill = now;
        self.bucket = (self.bucket + elapsed * f64::from(rate)).min(burst);
        if self.bucket >= 1.0 {
            self.bucket -= 1.0;
            true
        } else {
            false
        }
    }

    /// Charges `bytes` of fan-out to the byte budget (it may go below zero:
    /// a message is never refused for its size, the sender waits after it).
    fn spend(&mut self, shared: &Shared, bytes: u64, now: Instant) {
        let rate = shared.config.rate_bytes_per_sec;
        if rate == 0 || bytes == 0 {
            return;
        }
        self.refill_budget(shared, now);
        self.budget -= bytes as f64;
    }

    fn refill_budget(&mut self, shared: &Shared, now: Instant) {
        let rate = shared.config.rate_bytes_per_sec as f64;
        let elapsed = now.saturating_duration_since(self.budget_at).as_secs_f64();
        self.budget_at = now;
        self.budget = (self.budget + elapsed * rate).min(shared.config.rate_bytes_burst as f64);
    }

    /// How long the sender must wait until its byte budget is out of debt;
    /// `None` if it may go on now.
    pub fn debt(&mut self, shared: &Shared, now: Instant) -> Option<Duration> {
        let rate = shared.config.rate_bytes_per_sec;
        if rate == 0 || self.budget >= 0.0 {
            return None;
        }
        self.refill_budget(shared, now);
        (self.budget < 0.0).then(|| Duration::from_secs_f64(-self.budget / rate as f64))
    }
}

/// What the reader should do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// The connection is closing: stop reading frames.
    Closed,
}

thread_local! {
    /// Encoding space reused by every frame this thread builds.
    static ENCODE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
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

/// Sends one event to one connection.
pub(crate) fn reply(out: &mut Outbox, conn: &Arc<Conn>, event: &Event<'_>) {
    out.push(conn, &frame(event));
}

/// Sends `ERR <code> [<args>] :<text>` and counts it.
pub(crate) fn error(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    code: ErrorCode,
    args: Option<&str>,
    text: &str,
) {
    shared.metrics.error(code);
    reply(out, conn, &Event::Err { code, args, text });
}

/// Closes a connection once, for one reason: queue the closing frame (if
/// any), take the name out of the registry, tell everyone else `LEFT`
/// (never during shutdown), and tell the owning worker to let go of the
/// socket. Returns true if this call closed it and its closing frame (if
/// any) is queued.
pub(crate) fn close(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    reason: CloseReason,
    last: Option<&Frame>,
) -> bool {
    if !conn.begin_close(reason) {
        return false;
    }
    // Pairs with the fence in `register`: either it sees this close, or
    // this sees its name (and takes it out of the registry).
    fence(Ordering::SeqCst);
    shared.metrics.closed(reason);
    let mut queued = true;
    if let Some(last) = last {
        if reason.flushes() {
            if reason == CloseReason::Slow {
                // The reader is told why before anything else it would
                // have to wade through: the backlog goes, the notice stays.
                conn.discard_queued();
            }
            queued = conn.push_final(last) == Pushed::Queued;
        }
    }
    conn.publish_close(reason);
    if !queued {
        // Not even the closing frame fits: it is a slow consumer by now.
        conn.abort();
    }
    out.schedule(conn);
    // Its rooms' members hear of it through the global LEFT, not PARTED.
    shared.rooms.leave_all(conn);
    match conn.name() {
        Some(name) => {
            let _membership = shared.registry.membership.lock();
            // False if `register` already took it back out (it saw this
            // close): then nobody was told it joined.
            if shared.registry.remove(name, conn.id) {
                if reason == CloseReason::Shutdown {
                    log_debug!("{name} closed at shutdown");
                } else {
                    log_info!("{name} left ({}) from {}", reason.as_str(), conn.peer);
                }
                if let Some(left) = reason.left() {
                    if !shared.stopping() {
                        let f = frame(&Event::Left { name, reason: left });
                        broadcast(shared, out, conn.id, &f);
                    }
                }
            }
        }
        None => log_debug!(
            "connection {} from {} closed ({})",
            conn.id,
            conn.peer,
            reason.as_str()
        ),
    }
    // Always through the inbox, even from the owning worker itself: the
    // worker lets go of the socket (and shuts it down if aborted) in one
    // place, after the frame it is handling now.
    if let Some(w) = shared.workers.get(conn.worker) {
        // The worker owns its inbox for the broker's lifetime.
        let _ = w.tx.send(WorkerMsg::Closed(conn.id));
        if out.worker != Some(conn.worker) {
            let _ = w.waker.wake();
        } else {
            out.wake_self = true;
        }
    }
    queued
}

/// Closes a reader that fell too far behind: `ERR SLOW_CONSUMER` is the
/// last frame it gets (room for it is reserved), then `LEFT <name> slow`.
pub(crate) fn close_slow(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>) -> bool {
    if conn.is_closing() {
        return false;
    }
    shared.metrics.error(ErrorCode::SlowConsumer);
    let err = frame(&Event::Err {
        code: ErrorCode::SlowConsumer,
        args: None,
        text: "you are not reading your messages; closing",
    });
    close(shared, out, conn, CloseReason::Slow, Some(&err))
}

/// Queues `frame` to everyone registered except connection `except`;
/// returns how many got it.
pub(crate) fn broadcast(shared: &Shared, out: &mut Outbox, except: u64, frame: &Frame) -> u64 {
    let everyone = shared.registry.everyone();
    let mut queued = 0;
    for c in &everyone.conns {
        if c.id != except && out.push(c, frame) {
            queued += 1;
        }
    }
    queued
}

/// Queues message `id` (from connection `from`) to everyone registered but
/// the sender; returns how many got it.
fn broadcast_msg(shared: &Shared, out: &mut Outbox, from: u64, id: u64, frame: &Frame) -> u64 {
    let everyone = shared.registry.everyone();
    let mut queued = 0;
    for c in &everyone.conns {
        if c.id != from && out.push_msg(c, frame, id, from) {
            queued += 1;
        }
    }
    queued
}

/// Charges one frame that is not a command (a blank line, or a frame the
/// decoder rejected) to the rate limit: every frame counts, so errors and
/// empty lines can't be sent for free. `Some(error)` also replies with it.
pub(crate) fn charge_other(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    now: Instant,
    error: Option<protocol::ProtoError>,
) -> Flow {
    if !session.take_token(shared, now) {
        return strike(shared, out, conn, session, now);
    }
    if let Some(e) = error {
        self::error(shared, out, conn, e.code, None, e.reason);
    }
    Flow::Continue
}

/// Applies one decoded frame. `now` is the time the batch was read.
pub(crate) fn handle(
    shared: &Shared,
    out: &mut Outbox,
    scratch: &mut Vec<u8>,
    conn: &Arc<Conn>,
    session: &mut Session,
    req: Request<'_>,
    now: Instant,
) -> Flow {
    // QUIT always works: leaving is never a flood.
    if !matches!(req, Request::Quit { .. }) && !session.take_token(shared, now) {
        return rate_limited(shared, out, conn, session, req, now);
    }
    let named = conn.name().is_some();
    match req {
        Request::Name { name } => register(shared, out, conn, name),
        Request::Ping { token } => reply(out, conn, &Event::Pong { token }),
        Request::Help => reply(out, conn, &Event::Info { text: &shared.help }),
        Request::Quit { .. } => {
            close(
                shared,
                out,
                conn,
                CloseReason::Quit,
                Some(&frame(&Event::Bye)),
            );
            return Flow::Closed;
        }
        _ if !named => error(
            shared,
            out,
            conn,
            ErrorCode::NotRegistered,
            None,
            "choose a name first: NAME <name>",
        ),
        Request::List { room: None } => {
            let names = shared.registry.names_sorted();
            let joined = names.join(" ");
            let users = Event::Users {
                count: names.len(),
                room: None,
                names: &joined,
            };
            reply(out, conn, &users);
        }
        Request::List { room: Some(room) } => list_room(shared, out, conn, room),
        Request::Join { room } => join(shared, out, conn, room),
        Request::Part { room, .. } => part(shared, out, conn, room),
        Request::Rooms => {
            let rooms = shared.rooms.names_sorted();
            let joined = rooms.join(" ");
            let rooms = Event::Rooms {
                count: rooms.len(),
                rooms: &joined,
            };
            reply(out, conn, &rooms);
        }
        Request::Send { targets, body } => {
            let cost = send(shared, out, scratch, conn, targets, body);
            session.spend(shared, cost, now);
        }
        Request::Recv { id, from } => {
            receipt(shared, out, conn, id, from);
        }
    }
    Flow::Continue
}

/// `RECV <id> <from>`: forwards `RCPT <id> <by>` to the sender, only for a
/// message that was really queued to this connection, and only once.
/// Returns true if it was forwarded.
fn receipt(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, id: u64, from: &str) -> bool {
    let (Some(to), Some(by)) = (shared.registry.get(from), conn.name()) else {
        return false;
    };
    if !conn.take_receipt(id, to.id) {
        log_debug!("{by}: RECV {id} {from} ignored: no such message was delivered to it");
        return false;
    }
    reply(out, &to, &Event::Rcpt { id, by });
    true
}

fn rate_limited(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    req: Request<'_>,
    now: Instant,
) -> Flow {
    // A receipt for a message this reader really got is still honoured
    // over the limit: there is at most one per message delivered, so a
    // reader showing a flood of messages isn't punished for it. Forged or
    // repeated receipts are strikes like any other frame.
    if let Request::Recv { id, from } = req {
        if conn.name().is_some() && receipt(shared, out, conn, id, from) {
            return Flow::Continue;
        }
    }
    strike(shared, out, conn, session, now)
}

/// A frame over the rate: dropped with `ERR RATE_LIMITED`, and after
/// `rate_kick_after` of them (within 10 s of each other) the connection is
/// closed as kicked.
fn strike(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    now: Instant,
) -> Flow {
    if now.saturating_duration_since(session.last_strike).as_secs() >= 10 {
        session.strikes = 0;
    }
    session.strikes += 1;
    session.last_strike = now;
    let kick = shared.config.rate_kick_after;
    if kick > 0 && session.strikes >= kick {
        shared.metrics.error(ErrorCode::RateLimited);
        let err = frame(&Event::Err {
            code: ErrorCode::RateLimited,
            args: None,
            text: "too many frames: disconnected for flooding",
        });
        close(shared, out, conn, CloseReason::Kicked, Some(&err));
        return Flow::Closed;
    }
    error(
        shared,
        out,
        conn,
        ErrorCode::RateLimited,
        None,
        "too many frames; this one was dropped",
    );
    Flow::Continue
}

fn register(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, name: &str) {
    if conn.name().is_some() {
        return error(
            shared,
            out,
            conn,
            ErrorCode::AlreadyNamed,
            None,
            "this connection already has a name",
        );
    }
    if let Err(why) = validate_name(name) {
        return error(shared, out, conn, ErrorCode::BadName, None, why);
    }
    let _membership = shared.registry.membership.lock();
    if shared.registry.contains(name) {
        return error(
            shared,
            out,
            conn,
            ErrorCode::NameTaken,
            None,
            "that name is in use",
        );
    }
    // OK NAME is queued before the name is visible to anyone, so it is
    // always the new user's first frame after HELLO.
    conn.set_name(name);
    reply(out, conn, &Event::NameOk { name });
    // Every insert happens under `membership`, so this can't fail.
    shared.registry.insert(name, conn);
    // Pairs with the fence in `close`: a close that raced this and saw no
    // name is caught here, so no ghost stays in the registry.
    fence(Ordering::SeqCst);
    if conn.is_closing() {
        shared.registry.remove(name, conn.id);
        return;
    }
    log_info!("{} is now {name}", conn.peer);
    broadcast(
        shared,
        out,
        conn.id,
        &frame(&Event::Joined { name, room: None }),
    );
}

/// Applies a `SEND`; returns the bytes it queued over all recipients (what
/// the sender's byte budget is charged).
fn send(
    shared: &Shared,
    out: &mut Outbox,
    scratch: &mut Vec<u8>,
    conn: &Arc<Conn>,
    targets: Targets<'_>,
    body: &[u8],
) -> u64 {
    let from = conn.name().unwrap_or_default();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if let Targets::Room(room) = targets {
        return send_room(shared, out, scratch, conn, room, ts, body);
    }
    if let Targets::All = targets {
        let id = shared.next_message_id();
        scratch.clear();
        encode_msg(scratch, id, from, Kind::All, ts, body);
        let msg = Frame::from(&scratch[..]);
        let queued = broadcast_msg(shared, out, conn.id, id, &msg);
        accepted(shared, out, conn, id, queued, None);
        return queued * msg.len() as u64;
    }
    if let Targets::Names(one) = targets {
        if !one.contains(',') {
            return send_direct(shared, out, scratch, conn, from, one, ts, body);
        }
    }
    // Distinct names (any case), in the order given. A user has one name,
    // so the users found are told apart by connection id (a compare of two
    // integers); only names nobody has are compared as text.
    let mut online = std::mem::take(&mut out.targets);
    let mut missing = String::new();
    let mut distinct_missing = 0usize;
    // (A name repeated while its user joins or leaves is looked up twice;
    // the text checks keep it out of one list once it is in the other.)
    let listed = |missing: &str, name: &str| {
        !missing.is_empty() && missing.split(',').any(|m| m.eq_ignore_ascii_case(name))
    };
    for name in targets.names() {
        match shared.registry.get(name) {
            Some(c) => {
                if !online.iter().any(|o| o.id == c.id) && !listed(&missing, name) {
                    online.push(c);
                }
            }
            None => {
                let found = || {
                    online
                        .iter()
                        .any(|o| o.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                };
                if !listed(&missing, name) && !found() {
                    if !missing.is_empty() {
                        missing.push(',');
                    }
                    missing.push_str(name);
                    distinct_missing += 1;
                }
            }
        }
    }
    if online.is_empty() {
        out.targets = online;
        error(
            shared,
            out,
            conn,
            ErrorCode::NoSuchUser,
            Some(&missing),
            "no such user online",
        );
        return 0;
    }
    let kind = if online.len() + distinct_missing == 1 {
        Kind::Direct
    } else {
        Kind::Multi
    };
    let id = shared.next_message_id();
    scratch.clear();
    encode_msg(scratch, id, from, kind, ts, body);
    let msg = Frame::from(&scratch[..]);
    let mut queued = 0;
    for c in &online {
        if out.push_msg(c, &msg, id, conn.id) {
            queued += 1;
        }
    }
    // Keep the buffer for the next message, without the handles.
    online.clear();
    out.targets = online;
    let missing = (!missing.is_empty()).then_some(missing.as_str());
    accepted(shared, out, conn, id, queued, missing);
    queued * msg.len() as u64
}

/// `SEND <one name>`: the common case, without building target lists.
/// Returns the bytes queued, as `send` does.
#[allow(clippy::too_many_arguments)]
fn send_direct(
    shared: &Shared,
    out: &mut Outbox,
    scratch: &mut Vec<u8>,
    conn: &Arc<Conn>,
    from: &str,
    to: &str,
    ts: u64,
    body: &[u8],
) -> u64 {
    let Some(target) = shared.registry.get(to) else {
        error(
            shared,
            out,
            conn,
            ErrorCode::NoSuchUser,
            Some(to),
            "no such user online",
        );
        return 0;
    };
    let id = shared.next_message_id();
    scratch.clear();
    encode_msg(scratch, id, from, Kind::Direct, ts, body);
    let msg = Frame::from(&scratch[..]);
    let queued = u64::from(out.push_msg(&target, &msg, id, conn.id));
    accepted(shared, out, conn, id, queued, None);
    queued * msg.len() as u64
}

fn accepted(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    id: u64,
    queued: u64,
    missing: Option<&str>,
) {
    Metrics::add(&shared.metrics.messages, 1);
    Metrics::add(&shared.metrics.deliveries, queued);
    reply(
        out,
        conn,
        &Event::Ack {
            id,
            queued,
            missing,
        },
    );
}

/// Checks a room name from the wire; on a bad one, replies `BAD_NAME`.
fn room_ok(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) -> bool {
    match validate_room(room) {
        Ok(()) => true,
        Err(why) => {
            error(shared, out, conn, ErrorCode::BadName, None, why);
            false
        }
    }
}

fn not_in_room(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    error(
        shared,
        out,
        conn,
        ErrorCode::NotInRoom,
        Some(room),
        "you are not in that room",
    );
}

/// `JOIN #room`: `OK JOIN #room <members>` to the joiner (before any of the
/// room's messages), `JOINED <name> #room` to the others.
fn join(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    if !room_ok(shared, out, conn, room) {
        return;
    }
    let max = shared.config.max_rooms_per_user;
    let joined = shared.rooms.join(room, conn, max, |r, members| {
        reply(
            out,
            conn,
            &Event::JoinOk {
                room: &r.name,
                members,
            },
        );
    });
    match joined {
        Ok(j) => {
            let name = conn.name().unwrap_or_default();
            let f = frame(&Event::Joined {
                name,
                room: Some(&j.room.name),
            });
            crate::rooms::fan_out(&j.others, conn.id, &f, |c, f| out.push(c, f));
        }
        Err(e) => room_error(shared, out, conn, room, e),
    }
}

fn room_error(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    room: &str,
    e: crate::rooms::RoomError,
) {
    use crate::rooms::RoomError;
    let text = match e {
        RoomError::AlreadyIn => "you are already in that room",
        RoomError::NotIn => "you are not in that room",
        RoomError::TooMany => "you are in as many rooms as allowed; PART one first",
        RoomError::Closing => return,
    };
    if let Some(code) = e.code() {
        let args = (code != ErrorCode::TooManyRooms).then_some(room);
        error(shared, out, conn, code, args, text);
    }
}

/// `PART #room`: `OK PART #room`, and `PARTED <name> #room` to the others.
fn part(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    if !room_ok(shared, out, conn, room) {
        return;
    }
    match shared.rooms.part(room, conn) {
        Ok((r, left)) => {
            reply(out, conn, &Event::PartOk { room: &r.name });
            let name = conn.name().unwrap_or_default();
            let f = frame(&Event::Parted {
                name,
                room: &r.name,
            });
            crate::rooms::fan_out(&left, conn.id, &f, |c, f| out.push(c, f));
        }
        Err(e) => room_error(shared, out, conn, room, e),
    }
}

/// `LIST #room`: `USERS <count> #room :<names>`, for members only.
fn list_room(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    if !room_ok(shared, out, conn, room) {
        return;
    }
    let Some(r) = shared.rooms.member_of(room, conn) else {
        return not_in_room(shared, out, conn, room);
    };
    let mut names: Vec<(String, &str)> = Vec::new();
    let members = r.members();
    for c in members.iter() {
        if let Some(n) = c.name() {
            names.push((n.to_ascii_lowercase(), n));
        }
    }
    names.sort_unstable();
    let joined = names.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(" ");
    reply(
        out,
        conn,
        &Event::Users {
            count: names.len(),
            room: Some(&r.name),
            names: &joined,
        },
    );
}

/// `SEND #room`: one `MSG` of kind `#room` to every other member. Returns
/// the bytes queued, as `send` does.
fn send_room(
    shared: &Shared,
    out: &mut Outbox,
    scratch: &mut Vec<u8>,
    conn: &Arc<Conn>,
    room: &str,
    ts: u64,
    body: &[u8],
) -> u64 {
    if !room_ok(shared, out, conn, room) {
        return 0;
    }
    let Some(r) = shared.rooms.member_of(room, conn) else {
        not_in_room(shared, out, conn, room);
        return 0;
    };
    let from = conn.name().unwrap_or_default();
    let id = shared.next_message_id();
    scratch.clear();
    encode_msg(scratch, id, from, Kind::Room(&r.name), ts, body);
    let msg = Frame::from(&scratch[..]);
    let members = r.members();
    let queued = crate::rooms::fan_out(&members, conn.id, &msg, |c, f| {
        out.push_msg(c, f, id, conn.id)
    });
    accepted(shared, out, conn, id, queued, None);
    queued * msg.len() as u64
}
