//! The routing core: names, rooms, presence, message routing, limits and
//! the slow-consumer policy, the same for every door.
//!
//! Nothing here knows a socket or a wire format's commands: a door decodes
//! its protocol into the operations below (`take_name`, `deliver`,
//! `join_room`, `part_room`, `close`, …) and answers their results in its
//! own terms. Messages and presence go out as `route::Note`s, which
//! `route::Fan` encodes once per door among the recipients. Frames go onto
//! connection queues through an `Outbox`, so everything here can be driven
//! without sockets (see the unit tests and `bench_support`).
//!
//! Later kinds of destination (a recipient on another node, an offline
//! account's mailbox) are more arms of `deliver` and `Fan`, not changes to
//! the doors.

pub(crate) mod conn;
pub(crate) mod outbound;
pub(crate) mod registry;
pub(crate) mod rooms;
pub(crate) mod route;

use self::conn::{Conn, Door, Frame, Pushed};
use self::outbound::Outbox;
use self::rooms::{Room, RoomError};
use self::route::{error_frame, frame, Fan, Note};
use crate::cluster::link::Target;
use crate::cluster::wire::Item;
use crate::metrics::{CloseReason, MessageKind, Metrics};
use crate::msg::WorkerMsg;
use crate::{log_debug, log_info, Shared};
use protocol::{validate_name, validate_room, ErrorCode, Event, Kind, Targets};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
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
    /// Receipts already sent for messages to everyone or to rooms (those
    /// have no per-reader record to use up).
    receipted: conn::Ring,
    /// Set by a request whose answer comes from another thread (a login
    /// checked by the accounts thread, a message stored before its `ACK`):
    /// the connection is not read until that thread is done, so its
    /// answers stay in order. (Boxed: rare, and every connection has a
    /// `Session`.)
    held: Option<Box<Hold>>,
}

/// A connection waiting for another thread (see `Session::hold`).
pub(crate) struct Hold {
    /// [`hold::WAITING`] until the other thread sets [`hold::DONE`] or
    /// [`hold::FAILED`].
    pub state: Arc<std::sync::atomic::AtomicU8>,
    /// Frames to queue when it is over: the first if it is done, the
    /// second if it failed (a stored message's `ACK`, without and with
    /// the names it could not be stored for).
    pub then: Option<[Frame; 2]>,
}

/// The rate limits, read on every frame: kept apart from the live
/// configuration in plain atomics, so a frame costs no `ArcSwap` load
/// (SIGHUP sets them with the rest, [`Rates::set`]).
pub(crate) struct Rates {
    per_sec: AtomicU32,
    burst: AtomicU32,
    bytes_per_sec: AtomicU64,
    bytes_burst: AtomicU64,
}

impl Rates {
    /// The rates of `config`.
    pub fn new(config: &crate::config::Config) -> Rates {
        let rates = Rates {
            per_sec: AtomicU32::new(0),
            burst: AtomicU32::new(0),
            bytes_per_sec: AtomicU64::new(0),
            bytes_burst: AtomicU64::new(0),
        };
        rates.set(config);
        rates
    }

    /// Takes the rates of a reloaded `config`. Each value is read on its
    /// own, so a frame may see one new value and one old for a moment.
    pub fn set(&self, config: &crate::config::Config) {
        self.per_sec.store(config.rate_per_sec, Ordering::Relaxed);
        self.burst.store(config.rate_burst, Ordering::Relaxed);
        self.bytes_per_sec
            .store(config.rate_bytes_per_sec, Ordering::Relaxed);
        self.bytes_burst
            .store(config.rate_bytes_burst, Ordering::Relaxed);
    }

    fn per_sec(&self) -> u32 {
        self.per_sec.load(Ordering::Relaxed)
    }

    fn burst(&self) -> u32 {
        self.burst.load(Ordering::Relaxed)
    }

    fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec.load(Ordering::Relaxed)
    }

    fn bytes_burst(&self) -> u64 {
        self.bytes_burst.load(Ordering::Relaxed)
    }
}

/// The states of a [`Hold`].
pub(crate) mod hold {
    /// The other thread is at work.
    pub const WAITING: u8 = 1;
    /// It is done.
    pub const DONE: u8 = 0;
    /// It failed.
    pub const FAILED: u8 = 2;
    /// It could not be done now (the cluster's Redis is away): try again.
    pub const UNAVAILABLE: u8 = 3;
}

impl Session {
    /// A fresh session with full buckets.
    pub fn new(shared: &Shared, now: Instant) -> Session {
        let rates = &shared.rates;
        Session {
            bucket: f64::from(rates.burst()),
            last_refill: now,
            strikes: 0,
            last_strike: now,
            budget: rates.bytes_burst() as f64,
            budget_at: now,
            receipted: conn::Ring::default(),
            held: None,
        }
    }

    /// Holds the connection until another thread moves `state` on from
    /// [`hold::WAITING`]; then `then` is queued to it.
    pub fn hold(&mut self, state: Arc<std::sync::atomic::AtomicU8>, then: Option<[Frame; 2]>) {
        self.held = Some(Box::new(Hold { state, then }));
    }

    /// The hold set by the last request, if any.
    pub fn take_hold(&mut self) -> Option<Hold> {
        self.held.take().map(|h| *h)
    }

    /// Takes one token; false if the connection is over its rate.
    pub fn take_token(&mut self, shared: &Shared, now: Instant) -> bool {
        let rate = shared.rates.per_sec();
        if rate == 0 {
            return true;
        }
        let burst = f64::from(shared.rates.burst().max(1));
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

    /// True the first time (within the last `RECEIPT_RING`) this reader
    /// receipts message `id` from connection `from`.
    fn first_receipt(&mut self, id: u64, from: u64) -> bool {
        if self.receipted.find(id) == Some(from) {
            return false;
        }
        self.receipted.remember((id, from));
        true
    }

    /// Charges `bytes` of fan-out to the byte budget (it may go below zero:
    /// a message is never refused for its size, the sender waits after it).
    pub fn spend(&mut self, shared: &Shared, bytes: u64, now: Instant) {
        let rate = shared.rates.bytes_per_sec();
        if rate == 0 || bytes == 0 {
            return;
        }
        self.refill_budget(shared, now);
        self.budget -= bytes as f64;
    }

    fn refill_budget(&mut self, shared: &Shared, now: Instant) {
        let rate = shared.rates.bytes_per_sec() as f64;
        let elapsed = now.saturating_duration_since(self.budget_at).as_secs_f64();
        self.budget_at = now;
        self.budget = (self.budget + elapsed * rate).min(shared.rates.bytes_burst() as f64);
    }

    /// How long the sender must wait until its byte budget is out of debt;
    /// `None` if it may go on now.
    pub fn debt(&mut self, shared: &Shared, now: Instant) -> Option<Duration> {
        let rate = shared.rates.bytes_per_sec();
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

/// Sends `ERR <code> [<args>] :<text>` (in the connection's door's form)
/// and counts it.
pub(crate) fn error(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    code: ErrorCode,
    args: Option<&str>,
    text: &str,
) {
    shared.metrics.error(code);
    out.push(conn, &error_frame(shared, conn, code, args, text));
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
    // Pairs with the fence in `take_name`: either it sees this close, or
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
        // The writer has let go (or the close is abortive): nothing more
        // can be written.
        conn.abort();
    }
    out.schedule(conn);
    // Its rooms' members hear of it through the global LEFT, not PARTED;
    // IRC users outside #all hear of it if they shared a room.
    let roommates = shared.rooms.leave_all(conn);
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
                        let note = Note::Left {
                            name,
                            reason: left,
                            text: conn.quit_text(),
                        };
                        let mut fan = Fan::new(note, &shared.config.server_name).also(&roommates);
                        broadcast(shared, out, conn.id, &mut fan);
                        if let Some(node) = shared.cluster.get() {
                            node.left(name, left, conn.quit_text());
                        }
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
    let err = route::closing_frame(
        conn,
        ErrorCode::SlowConsumer,
        "you are not reading your messages; closing",
    );
    close(shared, out, conn, CloseReason::Slow, Some(&err))
}

/// Queues `frame` to everyone registered except connection `except`;
/// returns how many got it.
pub(crate) fn broadcast(shared: &Shared, out: &mut Outbox, except: u64, fan: &mut Fan<'_>) -> u64 {
    let everyone = shared.registry.everyone();
    let mut queued = 0;
    for c in &everyone.conns {
        if c.id != except && fan.push(out, c) {
            queued += 1;
        }
    }
    queued
}

/// Queues a note to each of `members` but connection `except`; returns how
/// many got it.
pub(crate) fn fan_out(
    members: &[Arc<Conn>],
    except: u64,
    out: &mut Outbox,
    fan: &mut Fan<'_>,
) -> u64 {
    let mut queued = 0;
    for c in members {
        if c.id != except && fan.push(out, c) {
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

/// `RECV <id> <from>`: forwards `RCPT <id> <by>` to the sender, only for a
/// message that was really queued to this connection, and only once.
/// Returns true if it was forwarded.
pub(crate) fn receipt(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    id: u64,
    from: &str,
) -> bool {
    let Some(by) = conn.name() else {
        return false;
    };
    let Some(to) = shared.registry.get(from) else {
        return remote_receipt(shared, conn, id, from, by);
    };
    // Addressed to it by name: its own ring says so (and forgets, so once).
    // To everyone or a room: the sender's ring has the id and its scope,
    // and this reader was registered (or in the room) before the id was
    // given; the session remembers what it already receipted.
    let delivered = conn.take_receipt(id, to.id)
        || (to.sent_scope(id).is_some_and(|scope| match scope {
            0 => conn.registered_before(id),
            room => conn.member_since(room).is_some_and(|since| since <= id),
        }) && session.first_receipt(id, to.id));
    if !delivered {
        log_debug!("{by}: RECV {id} {from} ignored: no such message was delivered to it");
        return false;
    }
    // IRC has no receipts: the receipt is used up, nothing is sent.
    if to.door != Door::Irc {
        out.push(&to, &route::reply_frame(&to, &Event::Rcpt { id, by }));
    }
    true
}

/// `RECV <id> <from>` for a sender on another node: its reader's ring
/// here says whether the message was delivered to it (once); the `RCPT`
/// goes to the sender's node.
fn remote_receipt(shared: &Shared, conn: &Conn, id: u64, from: &str, by: &str) -> bool {
    let Some(node) = shared.cluster.get() else {
        return false;
    };
    let Some(at) = node.remote_node(from) else {
        return false;
    };
    if !conn.take_receipt(id, crate::cluster::node::remote_sender_id(from)) {
        log_debug!("{by}: RECV {id} {from} ignored: no such message was delivered to it");
        return false;
    }
    let item = Item::Rcpt {
        id,
        by: by.to_string(),
        to: from.to_string(),
    };
    node.publish(Target::Node(at), item)
}

/// A frame over the rate: dropped with `ERR RATE_LIMITED`, and after
/// `rate_kick_after` of them (within 10 s of each other) the connection is
/// closed as kicked.
pub(crate) fn strike(
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
    let kick = shared.live().rate_kick_after;
    if kick > 0 && session.strikes >= kick {
        shared.metrics.error(ErrorCode::RateLimited);
        let err = match conn.door {
            Door::Native => frame(&Event::Err {
                code: ErrorCode::RateLimited,
                args: None,
                text: "too many frames: disconnected for flooding",
            }),
            Door::Irc => route::irc_error_line("Closing link: Excess flood"),
            Door::Web => route::closing_frame(
                conn,
                ErrorCode::RateLimited,
                "too many frames: disconnected for flooding",
            ),
        };
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

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameError {
    /// This connection already has one.
    Already,
    /// It breaks the naming rules (why, for people).
    Bad(&'static str),
    /// Someone has it, on any door, in any case.
    Taken,
}

/// Registers `conn` as `name` for every door: the name is checked, `ok`
/// queues the door's confirmation before the name is visible to anyone (so
/// it is always the user's first frame of the chat), then everyone else is
/// told it joined.
pub(crate) fn take_name(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    name: &str,
    ok: impl FnOnce(&mut Outbox),
) -> Result<(), NameError> {
    if conn.name().is_some() {
        return Err(NameError::Already);
    }
    validate_name(name).map_err(NameError::Bad)?;
    let _membership = shared.registry.membership.lock();
    if shared.registry.contains(name) {
        return Err(NameError::Taken);
    }
    conn.set_name(name);
    ok(out);
    // Every insert happens under `membership`, so this can't fail.
    shared.registry.insert(name, conn);
    // Messages to everyone with an id from here on see this user.
    conn.set_registered_at(shared.peek_message_id());
    // Pairs with the fence in `close`: a close that raced this and saw no
    // name is caught here, so no ghost stays in the registry.
    fence(Ordering::SeqCst);
    if conn.is_closing() {
        shared.registry.remove(name, conn.id);
        return Ok(());
    }
    log_info!("{} is now {name} ({} door)", conn.peer, conn.door.as_str());
    let note = Note::Joined { name, room: None };
    broadcast(
        shared,
        out,
        conn.id,
        &mut Fan::new(note, &shared.config.server_name),
    );
    Ok(())
}

/// A message the core accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Its id.
    pub id: u64,
    /// Recipients it was queued for.
    pub queued: u64,
    /// Named targets not online, comma-separated as given ("" if none).
    pub missing: String,
    /// Bytes queued over all recipients (what the byte budget is charged).
    pub bytes: u64,
    /// How it was addressed.
    pub kind: MessageKind,
    /// Offline accounts it is being stored for, if any.
    pub stored: Option<StoredFor>,
}

/// A message on its way into offline accounts' mailboxes: its `ACK` waits
/// until the store has it on disk.
#[derive(Debug, Clone)]
pub(crate) struct StoredFor {
    /// The names, as given.
    pub names: Vec<String>,
    /// [`hold::WAITING`] until the store has committed it, then
    /// [`hold::DONE`] or [`hold::FAILED`].
    pub state: Arc<std::sync::atomic::AtomicU8>,
}

impl PartialEq for StoredFor {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names && Arc::ptr_eq(&self.state, &other.state)
    }
}
impl Eq for StoredFor {}

/// Why a message went nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// None of the named targets is online (the names, comma-separated).
    NoSuchUser(String),
    /// The room name breaks the rules (why, for people).
    BadRoom(&'static str),
    /// The sender is not in that room (or it doesn't exist).
    NotInRoom,
    /// It can't go now, and nothing was delivered: it is for an offline
    /// account and the message store is too busy to take it, or it is for
    /// users on other nodes and the cluster's Redis is away.
    Unavailable(Busy),
}

/// What a message that can't go now is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The message store (an offline account's mailbox).
    Store,
    /// The cluster (recipients on other nodes).
    Cluster,
}

impl Busy {
    /// `ERR UNAVAILABLE`'s text.
    pub fn text(self) -> &'static str {
        match self {
            Busy::Store => "the message store is busy; nothing was sent, try again",
            Busy::Cluster => "the cluster is unreachable; nothing was sent, try again",
        }
    }
}

/// Routes a message from `conn` to `targets`, for every door: encoded once
/// per door among its recipients.
pub(crate) fn deliver(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    targets: Targets<'_>,
    body: &[u8],
    notice: bool,
) -> Result<Sent, SendError> {
    let sent = route_message(shared, out, conn, targets, body, notice)?;
    shared.metrics.message(sent.kind);
    Metrics::add(&shared.metrics.deliveries, sent.queued);
    Ok(sent)
}

fn route_message(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    targets: Targets<'_>,
    body: &[u8],
    notice: bool,
) -> Result<Sent, SendError> {
    let from = conn.name().unwrap_or_default();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let server = &shared.config.server_name;
    let (id, kind, queued, missing) = match targets {
        Targets::Room(room) => {
            validate_room(room).map_err(SendError::BadRoom)?;
            let r = shared
                .rooms
                .member_of(room, conn)
                .ok_or(SendError::NotInRoom)?;
            let id = shared.next_message_id();
            let kind = Kind::Room(&r.name);
            // The other nodes first: if members elsewhere can't be
            // reached, nobody gets it. Every node gets every room message
            // (to keep the room's history for whoever joins there later),
            // and the publisher keeps it in the room's history in Redis.
            let mut queued = 0;
            if let Some(node) = shared.cluster.get() {
                let remote = node.remote_members(&r.name);
                let msg = remote_msg(node, id, from, kind, ts, body, notice, Vec::new());
                if node.publish(Target::All, msg) {
                    queued += remote;
                } else if remote > 0 {
                    return Err(SendError::Unavailable(Busy::Cluster));
                }
            }
            conn.remember_sent(id, r.id);
            if shared.config.room_history > 0 {
                let stored = stored_room_message(&r.name, id, from, ts, body);
                remember_room_message(shared, stored, true);
            }
            let mut fan = Fan::new(msg_note(id, from, conn, kind, ts, body, notice), server);
            queued += fan_out(&r.members(), conn.id, out, &mut fan);
            return Ok(sent(
                id,
                queued,
                String::new(),
                kind,
                msg_size(from, kind, body),
            ));
        }
        Targets::All => {
            let id = shared.next_message_id();
            let mut queued = 0;
            if let Some(node) = shared.cluster.get() {
                // One item for every other node; each knows its own users.
                // If there are users elsewhere and they can't be reached,
                // nobody gets it.
                let remote = node.remote_count();
                let msg = remote_msg(node, id, from, Kind::All, ts, body, notice, Vec::new());
                if node.publish(Target::All, msg) {
                    queued += remote;
                } else if remote > 0 {
                    return Err(SendError::Unavailable(Busy::Cluster));
                }
            }
            conn.remember_sent(id, 0);
            let mut fan = Fan::new(
                msg_note(id, from, conn, Kind::All, ts, body, notice),
                server,
            );
            queued += broadcast(shared, out, conn.id, &mut fan);
            (id, Kind::All, queued, String::new())
        }
        Targets::Names(one) if !one.contains(',') => {
            // The common case, without building target lists.
            let Some(target) = shared.registry.get(one) else {
                // Offline: perhaps an account to store it for.
                return deliver_multi(shared, out, conn, targets, body, ts, notice);
            };
            let id = shared.next_message_id();
            let note = msg_note(id, from, conn, Kind::Direct, ts, body, notice);
            let queued = u64::from(Fan::new(note, server).push(out, &target));
            (id, Kind::Direct, queued, String::new())
        }
        Targets::Names(_) => return deliver_multi(shared, out, conn, targets, body, ts, notice),
    };
    Ok(sent(id, queued, missing, kind, msg_size(from, kind, body)))
}

fn sent(id: u64, queued: u64, missing: String, kind: Kind<'_>, size: u64) -> Sent {
    Sent {
        id,
        queued,
        missing,
        bytes: queued * size,
        stored: None,
        kind: match kind {
            Kind::Direct => MessageKind::Direct,
            Kind::Multi => MessageKind::Multi,
            Kind::All => MessageKind::All,
            Kind::Room(_) => MessageKind::Room,
        },
    }
}

/// A message to a list of names.
fn deliver_multi(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    targets: Targets<'_>,
    body: &[u8],
    ts: u64,
    notice: bool,
) -> Result<Sent, SendError> {
    let from = conn.name().unwrap_or_default();
    // Distinct names (any case), in the order given. A user has one name,
    // so the users found are told apart by connection id (a compare of two
    // integers); only names nobody has are compared as text.
    let mut online = std::mem::take(&mut out.targets);
    let mut missing = String::new();
    let mut distinct_missing = 0usize;
    // Offline accounts, folded and as given.
    let mut offline: Vec<(String, String)> = Vec::new();
    // Users on other nodes: per node, their folded names.
    let mut remote: Vec<(String, Vec<String>)> = Vec::new();
    let cluster = shared.cluster.get();
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
            None if cluster.is_some_and(|n| n.remote(name).is_some()) => {
                if let Some(r) = cluster.and_then(|n| n.remote(name)) {
                    let folded = protocol::fold_name(name);
                    match remote.iter_mut().find(|(n, _)| *n == r.node) {
                        Some((_, names)) if !names.contains(&folded) => names.push(folded),
                        Some(_) => {}
                        None => remote.push((r.node, vec![folded])),
                    }
                }
            }
            None if shared.accounts.as_ref().is_some_and(|a| a.owned(name)) => {
                let folded = protocol::fold_name(name);
                if !offline.iter().any(|(f, _)| *f == folded) {
                    offline.push((folded, name.to_string()));
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
    let remote_count: usize = remote.iter().map(|(_, n)| n.len()).sum();
    if online.is_empty() && offline.is_empty() && remote_count == 0 {
        out.targets = online;
        return Err(SendError::NoSuchUser(missing));
    }
    if remote_count > 0 && !cluster.is_some_and(|n| n.is_up()) {
        // Cross-node work while Redis is away: refused, nothing sent.
        online.clear();
        out.targets = online;
        return Err(SendError::Unavailable(Busy::Cluster));
    }
    let kind = if online.len() + offline.len() + remote_count + distinct_missing == 1 {
        Kind::Direct
    } else {
        Kind::Multi
    };
    let id = shared.next_message_id();
    // Into the mailboxes first: if the store can't take it, nobody gets it.
    let stored = match store_for(shared, conn, &offline, || crate::store::Stored {
        id,
        from: from.to_string(),
        kind: if kind == Kind::Direct {
            crate::store::StoredKind::Direct
        } else {
            crate::store::StoredKind::Multi
        },
        ts_ms: ts,
        body: body.to_vec(),
    }) {
        Ok(s) => s,
        Err(e) => {
            online.clear();
            out.targets = online;
            return Err(e);
        }
    };
    // The other nodes first: if one can't be reached now (its queue is
    // full, or Redis went away since the check), nobody here gets it
    // either. (Mailboxes already have it: they are told apart in the
    // ACK's stored part.)
    let mut queued_remote = 0u64;
    if let Some(node) = cluster {
        for (at, names) in remote {
            let n = names.len() as u64;
            let msg = remote_msg(node, id, from, kind, ts, body, notice, names);
            if !node.publish(Target::Node(at), msg) {
                online.clear();
                out.targets = online;
                return Err(SendError::Unavailable(Busy::Cluster));
            }
            queued_remote += n;
        }
    }
    let mut fan = Fan::new(
        msg_note(id, from, conn, kind, ts, body, notice),
        &shared.config.server_name,
    );
    let mut queued = 0;
    for c in &online {
        if fan.push(out, c) {
            queued += 1;
        }
    }
    // Keep the buffer for the next message, without the handles.
    online.clear();
    out.targets = online;
    let mut s = sent(id, queued, missing, kind, msg_size(from, kind, body));
    s.queued += offline.len() as u64 + queued_remote;
    s.stored = stored;
    Ok(s)
}

/// A message's item for other nodes.
#[allow(clippy::too_many_arguments)]
fn remote_msg(
    node: &crate::cluster::node::Node,
    id: u64,
    from: &str,
    kind: Kind<'_>,
    ts: u64,
    body: &[u8],
    notice: bool,
    to: Vec<String>,
) -> crate::cluster::wire::Item {
    crate::cluster::wire::Item::Msg(crate::cluster::wire::Msg {
        id,
        from: from.to_string(),
        from_node: node.name().to_string(),
        kind: crate::cluster::wire::MsgKind::from_kind(kind),
        ts,
        body: body.to_vec(),
        notice,
        to,
    })
}

/// Hands a message for offline accounts to the store (in a cluster, to
/// the cluster's Redis, off this thread); its state moves on when the
/// store has committed it (Redis has it).
fn store_for(
    shared: &Shared,
    conn: &Conn,
    offline: &[(String, String)],
    msg: impl FnOnce() -> crate::store::Stored,
) -> Result<Option<StoredFor>, SendError> {
    if offline.is_empty() {
        return Ok(None);
    }
    let cluster = shared.accounts.as_ref().and_then(|a| a.cluster());
    if cluster.is_none() && shared.store.is_none() {
        return Ok(None);
    }
    let state = Arc::new(std::sync::atomic::AtomicU8::new(hold::WAITING));
    let done = Arc::clone(&state);
    let releaser = shared.workers.get(conn.worker).map(|w| w.releaser());
    let done: crate::store::DoneFn = Box::new(move |r: Result<(), String>| {
        let s = if r.is_ok() { hold::DONE } else { hold::FAILED };
        done.store(s, Ordering::Release);
        if let Some(r) = releaser {
            r.release();
        }
    });
    let msg = msg();
    let to = offline.iter().map(|(f, _)| f.clone()).collect();
    let appended = match (cluster, shared.store.as_ref()) {
        // Never into this node's store: the accounts are the cluster's.
        (Some(c), _) => c.try_append(to, msg, done).map_err(|e| match e {
            crate::cluster::link::LinkError::Full => Busy::Store,
            _ => Busy::Cluster,
        }),
        (None, Some(store)) => store.try_append(to, msg, done).map_err(|_| Busy::Store),
        (None, None) => return Ok(None),
    };
    match appended {
        Ok(()) => Ok(Some(StoredFor {
            names: offline.iter().map(|(_, n)| n.clone()).collect(),
            state,
        })),
        Err(busy) => Err(SendError::Unavailable(busy)),
    }
}

/// A message from `conn` as a core note.
fn msg_note<'a>(
    id: u64,
    from: &'a str,
    conn: &Conn,
    kind: Kind<'a>,
    ts: u64,
    body: &'a [u8],
    notice: bool,
) -> Note<'a> {
    Note::Msg {
        id,
        from,
        from_conn: conn.id,
        kind,
        ts,
        body,
        notice,
    }
}

/// About the bytes one copy of a message takes on the wire (its native
/// size), for the byte budget.
fn msg_size(from: &str, kind: Kind<'_>, body: &[u8]) -> u64 {
    (48 + from.len() + kind.as_str().len() + body.len()) as u64
}

/// Puts `conn` in `room` (a valid room name) for every door: `ok` queues
/// the door's confirmation before the joiner is visible to senders (so it
/// comes before any of the room's messages), then the other members are
/// told it joined.
pub(crate) fn join_room(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    room: &str,
    ok: impl FnOnce(&mut Outbox, &Room, usize),
) -> Result<Arc<Room>, RoomError> {
    let max = shared.live().max_rooms_per_user;
    let node = shared.cluster.get();
    // A room with members on other nodes keeps the name it has there, and
    // its members there count.
    let there = node.and_then(|n| n.room_name(room));
    let remote = node.map_or(0, |n| n.remote_members(room) as usize);
    let j = shared.rooms.join(
        there.as_deref().unwrap_or(room),
        conn,
        max,
        remote == 0,
        || shared.peek_message_id(),
        |r, members| ok(out, r, members + remote),
    )?;
    let name = conn.name().unwrap_or_default();
    let note = Note::Joined {
        name,
        room: Some(&j.room.name),
    };
    let mut fan = Fan::new(note, &shared.config.server_name);
    fan_out(&j.others, conn.id, out, &mut fan);
    if let Some(node) = node {
        let item = Item::Joined {
            name: name.to_string(),
            node: node.name().to_string(),
            room: Some(j.room.name.to_string()),
        };
        node.room_changed(shared, conn, item);
    }
    Ok(j.room)
}

/// Most rooms whose history is kept in memory.
const HISTORY_ROOMS: usize = 10_000;

/// Most bytes of history one room keeps in memory, whatever
/// `room_history` says (the oldest lines go first).
const HISTORY_BYTES: usize = 1 << 20;

/// A room message as its history keeps it.
pub(crate) fn stored_room_message(
    room: &str,
    id: u64,
    from: &str,
    ts: u64,
    body: &[u8],
) -> crate::store::Stored {
    crate::store::Stored {
        id,
        from: from.to_string(),
        kind: crate::store::StoredKind::Room(room.to_string()),
        ts_ms: ts,
        body: body.to_vec(),
    }
}

/// Keeps a room message in the room's history: in memory for `JOIN`, and
/// if `store`, in the store across restarts (a cluster keeps it in Redis
/// as well, from the node it was sent on).
pub(crate) fn remember_room_message(shared: &Shared, msg: crate::store::Stored, store: bool) {
    let keep = shared.config.room_history;
    let crate::store::StoredKind::Room(room) = &msg.kind else {
        return;
    };
    if keep == 0 {
        return;
    }
    let folded = protocol::fold_name(room);
    if let Some(s) = shared.store.as_ref().filter(|_| store) {
        if s.try_append_history(&folded, msg.clone()).is_err() {
            log_debug!("room history of {room}: the store is busy; kept in memory only");
        }
    }
    let mut history = shared.history.lock();
    if history.len() >= HISTORY_ROOMS && !history.contains_key(&folded) {
        // Memory stays bounded: the room whose history went quiet first
        // keeps it in the store only.
        let quietest = history
            .iter()
            .min_by_key(|(_, lines)| lines.back().map_or(0, |m| m.ts_ms))
            .map(|(room, _)| room.clone());
        if let Some(room) = quietest {
            history.remove(&room);
        }
    }
    let lines = history.entry(folded).or_default();
    lines.push_back(msg);
    trim_history(lines, keep);
}

/// Drops a history's oldest lines past `keep` lines or `HISTORY_BYTES`.
fn trim_history(lines: &mut std::collections::VecDeque<crate::store::Stored>, keep: usize) {
    let mut bytes: usize = lines.iter().map(|m| m.body.len()).sum();
    while lines.len() > keep || (bytes > HISTORY_BYTES && lines.len() > 1) {
        if let Some(old) = lines.pop_front() {
            bytes -= old.body.len();
        }
    }
}

/// Merges a room's history as the cluster has it (read from Redis) into
/// this node's: every message once (by id), in the order they were sent
/// (time, then id), the last `room_history` kept.
pub(crate) fn merge_history(
    shared: &Shared,
    folded: &str,
    from_cluster: Vec<crate::store::Stored>,
) {
    let keep = shared.config.room_history;
    if keep == 0 || from_cluster.is_empty() {
        return;
    }
    let mut history = shared.history.lock();
    if history.len() >= HISTORY_ROOMS && !history.contains_key(folded) {
        return;
    }
    let lines = history.entry(folded.to_string()).or_default();
    let mut all: Vec<crate::store::Stored> = lines.drain(..).chain(from_cluster).collect();
    all.sort_by_key(|m| (m.ts_ms, m.id));
    all.dedup_by_key(|m| m.id);
    lines.extend(all);
    trim_history(lines, keep);
}

/// Queues a room's history to a connection that just joined it, as the
/// messages it would have seen (original ids and times).
pub(crate) fn replay_history(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    let lines: Vec<crate::store::Stored> =
        match shared.history.lock().get(&protocol::fold_name(room)) {
            Some(lines) => lines.iter().cloned().collect(),
            None => return,
        };
    for m in &lines {
        crate::accounts::deliver_stored(shared, out, conn, m);
    }
}

/// Takes `conn` out of `room` for every door; the others in it are told.
pub(crate) fn part_room(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    room: &str,
    text: Option<&[u8]>,
) -> Result<Arc<Room>, RoomError> {
    let (r, left) = shared.rooms.part(room, conn)?;
    let name = conn.name().unwrap_or_default();
    let note = Note::Parted {
        name,
        room: &r.name,
        text,
    };
    let mut fan = Fan::new(note, &shared.config.server_name);
    fan_out(&left, conn.id, out, &mut fan);
    if let Some(node) = shared.cluster.get() {
        let item = Item::Parted {
            name: name.to_string(),
            room: r.name.to_string(),
            text: text.map(<[u8]>::to_vec),
        };
        node.room_changed(shared, conn, item);
    }
    Ok(r)
}

/// The names of a room's members on every node, sorted
/// case-insensitively.
pub(crate) fn member_names(shared: &Shared, r: &Room) -> Vec<String> {
    let mut names: Vec<String> = r
        .members()
        .iter()
        .filter_map(|c| c.name())
        .map(str::to_string)
        .collect();
    if let Some(node) = shared.cluster.get() {
        names.extend(node.room_members(&r.name));
    }
    sort_names(&mut names);
    names
}

/// Everyone in the chat, on every node, sorted case-insensitively.
pub(crate) fn everyone_names(shared: &Shared) -> Vec<String> {
    let mut names = shared.registry.names_sorted();
    if let Some(node) = shared.cluster.get() {
        names.extend(node.remote_names());
        sort_names(&mut names);
    }
    names
}

/// Every room, on every node, with its members: shown names sorted
/// case-insensitively.
pub(crate) fn all_rooms(shared: &Shared) -> Vec<(String, usize)> {
    let mut rooms: Vec<(String, usize)> = shared
        .rooms
        .names_sorted()
        .into_iter()
        .filter_map(|n| shared.rooms.get(&n).map(|r| (n, r.members().len())))
        .collect();
    if let Some(node) = shared.cluster.get() {
        for (name, n) in node.rooms() {
            match rooms
                .iter_mut()
                .find(|(r, _)| r.eq_ignore_ascii_case(&name))
            {
                Some((_, count)) => *count += n,
                None => rooms.push((name, n)),
            }
        }
        rooms.sort_by_cached_key(|(r, _)| r.to_ascii_lowercase());
    }
    rooms
}

/// The name of user `name` (any case) as shown, on whatever node it is.
pub(crate) fn shown_name(shared: &Shared, name: &str) -> Option<String> {
    if let Some(c) = shared.registry.get(name) {
        return c.name().map(str::to_string);
    }
    shared.cluster.get()?.remote(name).map(|r| r.name)
}

/// Sorts names case-insensitively (the order of `LIST` and `NAMES`).
pub(crate) fn sort_names(names: &mut [String]) {
    names.sort_by(|a, b| cmp_folded(a, b));
}

/// The order of [`sort_names`] for two names, compared without copying.
pub(crate) fn cmp_folded(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.bytes().map(|c| c.to_ascii_lowercase());
    a.cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// Ends a batch: closes the slow consumers found in it (which may queue
/// `LEFT`s and find more), then wakes each writer that has work. Every
/// thread that routes calls this, not `Outbox::wake_writers` alone.
pub(crate) fn flush(shared: &Shared, out: &mut Outbox) {
    while let Some(conn) = out.slow.pop() {
        close_slow(shared, out, &conn);
    }
    out.wake_writers(shared);
}
