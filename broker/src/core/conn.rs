//! The shared handle of one connection: its outbound queue, state and name.
//!
//! A `Conn` is shared (in `Arc`s) by the worker that reads the socket, the
//! writer that drains the queue, the registry, and any worker that routes a
//! message to it. The socket itself is not in here: only the owning worker
//! and writer hold it (see `Sock`), so a stale handle in a broadcast snapshot
//! never keeps a file descriptor open.

use crate::metrics::CloseReason;
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// One encoded frame, shared by every connection it is queued to.
///
/// One pointer wide: the length lives in the shared allocation with the
/// bytes and the reference count, so every queue holds 8 bytes a frame
/// (`Arc<[u8]>` is a pointer and a length, 16). Queue buffers are most of
/// what an idle connection costs after a burst.
#[derive(Clone)]
pub(crate) struct Frame(triomphe::ThinArc<(), u8>);

impl Frame {
    fn new(bytes: &[u8]) -> Frame {
        Frame(triomphe::ThinArc::from_header_and_slice((), bytes))
    }

    /// True if both handles share one allocation (one encoding).
    #[cfg(test)]
    pub fn ptr_eq(a: &Frame, b: &Frame) -> bool {
        std::ptr::eq(a.as_ptr(), b.as_ptr())
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.0.slice
    }
}

impl From<&[u8]> for Frame {
    fn from(bytes: &[u8]) -> Frame {
        Frame::new(bytes)
    }
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Frame {
        Frame::new(&bytes)
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({:?})", String::from_utf8_lossy(self))
    }
}

/// Connection life cycle, stored in `Conn::state`.
pub(crate) const OPEN: u8 = 0;
/// Closing gracefully: the writer flushes what is queued, then closes.
pub(crate) const CLOSING: u8 = 1;
/// Closing abortively: queued output is dropped.
pub(crate) const ABORTED: u8 = 2;
/// A close is claimed but not yet published: ordinary pushes are refused
/// while the closing frame is queued; the writer treats it as open.
pub(crate) const CLAIMED: u8 = 3;

/// Which protocol a connection speaks: the door it came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// The native line protocol (docs/protocol.md).
    Native,
    /// IRC (docs/irc.md).
    Irc,
    /// HTTP, and WebSocket with JSON after an upgrade (docs/web.md).
    Web,
}

impl Door {
    /// Every door, in the order metrics list them.
    pub const ALL: [Door; 3] = [Door::Native, Door::Irc, Door::Web];

    /// Its label in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Native => "native",
            Door::Irc => "irc",
            Door::Web => "web",
        }
    }
}

/// `Conn::flags` bits a connection sets for the threads that route to it.
pub(crate) mod flag {
    /// Wants `@time=` tags (IRCv3 `server-time`).
    pub const SERVER_TIME: u8 = 1;
    /// Wants its own messages back (IRCv3 `echo-message`).
    pub const ECHO: u8 = 2;
    /// Sits in `#all`: sees everyone's messages and presence.
    pub const IN_ALL: u8 = 4;
    /// Wants every prefix in NAMES (IRCv3 `multi-prefix`).
    pub const MULTI_PREFIX: u8 = 8;
    /// A web connection past its WebSocket upgrade: it takes WebSocket
    /// frames, not HTTP responses.
    pub const UPGRADED: u8 = 16;
}

/// What a push onto a connection's queue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The frame is queued.
    Queued,
    /// The frame is queued, but the queue is now over `queue_bytes`: the
    /// sender should wait until this reader is back under it.
    Over,
    /// The connection is closing or closed; the frame was dropped.
    Closed,
    /// The queue is over twice `queue_bytes`: the frame was dropped and the
    /// connection is a slow consumer.
    Overflow,
}

/// Receipts a connection can still send: the ids (and senders) of the last
/// this many messages queued to it.
pub(crate) const RECEIPT_RING: usize = 128;

/// Most frames an idle queue keeps room for: a burst's larger buffer is
/// let go once the writer has drained it, so idle connections stay small.
pub(crate) const KEEP_FRAMES: usize = 64;

/// A connection's outbound queue.
///
/// Routing threads push under a short lock; the writer takes every frame
/// at once by swapping in its spare (empty) buffer, so it pays one lock per
/// batch rather than a channel operation per frame.
struct Queue {
    frames: Vec<Frame>,
    /// Bytes accepted and not yet written: those in `frames` and those the
    /// writer has taken but not yet written. Bounded by `Conn::limit`.
    bytes: usize,
    /// False once the writer has let go: pushes are refused.
    open: bool,
    /// Bytes ever written to the socket: a waiting sender compares two
    /// readings to tell a slow reader from a stuck one.
    drained: u64,
    /// Set by a slow-consumer close: the writer drops what it has taken,
    /// except the rest of a frame it has begun writing.
    discard: bool,
    /// `(message id, sender's connection id)` of recent messages addressed
    /// to this reader by name (direct and multi), so a `RECV` is honoured
    /// only for a message this reader got.
    receipts: Ring,
}

/// A ring of the last `RECEIPT_RING` pairs, allocated at the first one:
/// one pointer until then (every connection has three of these, and most
/// never use them all).
#[derive(Default)]
pub(crate) struct Ring(Option<Box<RingBuf>>);

const _: () = assert!(std::mem::size_of::<Ring>() == std::mem::size_of::<usize>());

struct RingBuf {
    items: [(u64, u64); RECEIPT_RING],
    /// Slots in use (all of them once the ring has gone round).
    len: usize,
    /// The slot the next pair overwrites once the ring is full.
    next: usize,
}

impl Ring {
    /// Adds a pair, overwriting the oldest once full.
    #[inline]
    pub fn remember(&mut self, r: (u64, u64)) {
        let ring = self.0.get_or_insert_with(|| {
            Box::new(RingBuf {
                items: [(0, 0); RECEIPT_RING],
                len: 0,
                next: 0,
            })
        });
        if ring.len < RECEIPT_RING {
            if let Some(slot) = ring.items.get_mut(ring.len) {
                *slot = r;
            }
            ring.len += 1;
        } else if let Some(slot) = ring.items.get_mut(ring.next) {
            *slot = r;
            ring.next = (ring.next + 1) % RECEIPT_RING;
        }
    }

    /// The pairs remembered.
    fn items(&self) -> &[(u64, u64)] {
        self.0
            .as_ref()
            .map_or(&[], |r| r.items.get(..r.len).unwrap_or_default())
    }

    /// The second half of the pair whose first is `key`, if remembered.
    pub fn find(&self, key: u64) -> Option<u64> {
        self.items().iter().find(|r| r.0 == key).map(|r| r.1)
    }

    /// Removes `r` if remembered; true if it was.
    pub fn take(&mut self, r: (u64, u64)) -> bool {
        let Some(ring) = self.0.as_mut() else {
            return false;
        };
        let len = ring.len;
        match ring.items.iter_mut().take(len).find(|x| **x == r) {
            Some(slot) => {
                // Ids start at 1: nobody's receipt matches this.
                *slot = (0, 0);
                true
            }
            None => false,
        }
    }
}

/// One room a connection is in.
pub(crate) struct Membership {
    /// The room's folded name.
    pub folded: Box<str>,
    /// The room's id (`Room::id`).
    pub room: u64,
    /// The message-id counter once the join was visible: the room's
    /// messages from here on reached this member.
    pub since: u64,
}

/// What an IRC user said about itself (`USER`, `AWAY`), for others'
/// `WHO`, `WHOIS`, `USERHOST` and `301`. Boxed behind one pointer in
/// [`Conn`] and made only for IRC connections: the other doors show their
/// name as user and real name, and can't be away.
#[derive(Debug)]
pub(crate) struct IrcInfo {
    /// The user name from `USER`, then the real name: one allocation.
    names: Box<str>,
    /// Where the real name begins in `names`.
    split: usize,
    /// The `AWAY` text while away. Changed only by the owning worker; read
    /// (and cloned out) by anyone routing to or looking up the user.
    away: Mutex<Option<Box<str>>>,
}

impl IrcInfo {
    /// A user as `USER` described it, not away.
    pub fn new(user: &str, real: &str) -> IrcInfo {
        IrcInfo {
            names: [user, real].concat().into_boxed_str(),
            split: user.len(),
            away: Mutex::new(None),
        }
    }

    /// The user name from `USER`.
    pub fn user(&self) -> &str {
        self.names.get(..self.split).unwrap_or_default()
    }

    /// The real name from `USER`.
    pub fn real(&self) -> &str {
        self.names.get(self.split..).unwrap_or_default()
    }

    /// The away text, if away.
    pub fn away(&self) -> Option<Box<str>> {
        self.away.lock().clone()
    }

    /// Marks the user away with `text`, or back with `None`. Returns 1 if
    /// it went away, -1 if it came back, 0 if neither (for
    /// `Registry::note_away`).
    pub fn set_away(&self, text: Option<&str>) -> isize {
        let mut away = self.away.lock();
        let was = away.is_some();
        *away = text.map(Box::from);
        isize::from(away.is_some()) - isize::from(was)
    }
}

// What `IrcInfo` adds to every connection, whatever its door: one slot.
// Memory per connection is compared with other servers; keep it this small.
const _: () = assert!(std::mem::size_of::<OnceLock<Box<IrcInfo>>>() <= 16);

/// The shared handle of one connection.
pub(crate) struct Conn {
    /// Broker-wide unique id (also the poll token).
    pub id: u64,
    /// Index of the worker that reads this connection.
    pub worker: usize,
    /// Index of the writer that drains its queue.
    pub writer: usize,
    /// Peer address, for logs.
    pub peer: SocketAddr,
    /// The protocol it speaks.
    pub door: Door,
    /// Per-door routing flags (`flag::*`), set by the owning worker.
    flags: AtomicU8,
    queue: Mutex<Queue>,
    limit: usize,
    /// True while the writer has a wake-up for this connection pending.
    scheduled: AtomicBool,
    state: AtomicU8,
    reason: OnceLock<CloseReason>,
    name: OnceLock<Box<str>>,
    /// What it said when it quit (`QUIT :<reason>`), for IRC's `QUIT`.
    quit_text: OnceLock<Box<[u8]>>,
    /// An IRC user's `USER` and `AWAY` (16 bytes here; the rest is
    /// allocated only for IRC users, once `USER` is in).
    irc: OnceLock<Box<IrcInfo>>,
    /// The rooms this connection is in (changed only under `Rooms`' lock;
    /// read by its worker to check membership).
    pub rooms: Mutex<Vec<Membership>>,
    /// The message-id counter once its name was visible: every message to
    /// everyone from here on reached it. `u64::MAX` until registered.
    registered_at: AtomicU64,
    /// `(message id, scope)` of its recent messages to everyone (scope 0)
    /// and to rooms (scope = the room's id): a receipt for one of those is
    /// checked against the reader's registration or membership, so a
    /// broadcast costs one entry here, not one per recipient.
    sent: Mutex<Ring>,
}

impl Conn {
    /// A new open connection whose queue holds at most `limit` unwritten
    /// bytes.
    pub fn new(
        id: u64,
        worker: usize,
        writer: usize,
        peer: SocketAddr,
        door: Door,
        limit: usize,
    ) -> Arc<Conn> {
        let conn = Conn {
            id,
            worker,
            writer,
            peer,
            door,
            flags: AtomicU8::new(0),
            queue: Mutex::new(Queue {
                frames: Vec::new(),
                bytes: 0,
                open: true,
                drained: 0,
                discard: false,
                receipts: Ring::default(),
            }),
            limit,
            scheduled: AtomicBool::new(false),
            state: AtomicU8::new(OPEN),
            reason: OnceLock::new(),
            name: OnceLock::new(),
            rooms: Mutex::new(Vec::new()),
            registered_at: AtomicU64::new(u64::MAX),
            sent: Mutex::new(Ring::default()),
            quit_text: OnceLock::new(),
            irc: OnceLock::new(),
        };
        Arc::new(conn)
    }

    /// Records what the client said when it quit (once).
    pub fn set_quit_text(&self, text: &[u8]) {
        let _ = self.quit_text.set(text.into());
    }

    /// What the client said when it quit, if anything.
    pub fn quit_text(&self) -> Option<&[u8]> {
        self.quit_text.get().map(|t| &**t)
    }

    /// An IRC user's `USER` and `AWAY` details, once `USER` is in.
    pub fn irc_info(&self) -> Option<&IrcInfo> {
        self.irc.get().map(|i| &**i)
    }

    /// Records an IRC user's `USER` details (once); false if already set.
    pub fn set_irc_info(&self, info: IrcInfo) -> bool {
        self.irc.set(Box::new(info)).is_ok()
    }

    /// True if every bit of `f` (`flag::*`) is set.
    #[inline]
    pub fn has(&self, f: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & f == f
    }

    /// Sets or clears the bits of `f`.
    pub fn set_flag(&self, f: u8, on: bool) {
        if on {
            self.flags.fetch_or(f, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!f, Ordering::Relaxed);
        }
    }

    /// The registered name, as first given.
    pub fn name(&self) -> Option<&str> {
        self.name.get().map(|n| &**n)
    }

    /// Records the name; false if one was already set.
    pub fn set_name(&self, name: &str) -> bool {
        self.name.set(name.into()).is_ok()
    }

    /// The connection's state (`OPEN`, `CLAIMED`, `CLOSING` or `ABORTED`).
    pub fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Claims the close, once: true for the caller that won and must finish
    /// it (closing frame, `publish_close`, registry, `LEFT`, counters).
    pub fn begin_close(&self, reason: CloseReason) -> bool {
        if self.reason.set(reason).is_err() {
            return false;
        }
        // From here other threads' pushes are refused, so nothing lands
        // after the closing frame queued next.
        self.state.store(CLAIMED, Ordering::Release);
        true
    }

    /// True once a close has been claimed.
    pub fn is_closing(&self) -> bool {
        self.reason.get().is_some()
    }

    /// Makes the close visible to the writer. Called after the closing
    /// frame is queued: a writer that sees `CLOSING` and then finds the
    /// queue empty may shut the socket, so the frame must already be there.
    pub fn publish_close(&self, reason: CloseReason) {
        let state = if reason.flushes() { CLOSING } else { ABORTED };
        self.state.store(state, Ordering::Release);
    }

    /// Turns a graceful close into an abortive one (a reader that won't
    /// take its data when time is up).
    pub fn abort(&self) {
        self.state.store(ABORTED, Ordering::Release);
    }

    /// Queues a frame unless the connection is closing or far over its
    /// limit (see [`Pushed`]).
    #[inline]
    pub fn push(&self, frame: &Frame) -> Pushed {
        if self.state.load(Ordering::Acquire) != OPEN {
            return Pushed::Closed;
        }
        self.push_any(frame, None)
    }

    /// Queues message `id` from connection `from` like [`Conn::push`], and
    /// remembers it so this reader's `RECV` for it is honoured.
    #[inline]
    pub fn push_msg(&self, frame: &Frame, id: u64, from: u64) -> Pushed {
        if self.state.load(Ordering::Acquire) != OPEN {
            return Pushed::Closed;
        }
        self.push_any(frame, Some((id, from)))
    }

    /// Queues a closing frame (`BYE`, a fatal `ERR`, `SHUTDOWN`) unless the
    /// connection is aborted. Room for it is always reserved: one closing
    /// frame per connection may go past the byte limit.
    pub fn push_final(&self, frame: &Frame) -> Pushed {
        if self.state.load(Ordering::Acquire) == ABORTED {
            return Pushed::Closed;
        }
        let mut q = self.queue.lock();
        if !q.open {
            return Pushed::Closed;
        }
        q.bytes = q.bytes.saturating_add(frame.len());
        q.frames.push(Frame::clone(frame));
        Pushed::Queued
    }

    /// For a slow-consumer close: drops everything queued (the writer drops
    /// what it took, but finishes a frame it has begun), so the closing
    /// `ERR SLOW_CONSUMER` queued next is the reader's next whole frame.
    pub fn discard_queued(&self) {
        let dropped = {
            let mut q = self.queue.lock();
            q.discard = true;
            std::mem::take(&mut q.frames)
        };
        drop(dropped);
    }

    fn push_any(&self, frame: &Frame, receipt: Option<(u64, u64)>) -> Pushed {
        let len = frame.len();
        let mut q = self.queue.lock();
        if !q.open {
            return Pushed::Closed;
        }
        let bytes = q.bytes.saturating_add(len);
        if bytes > self.limit.saturating_mul(2) {
            return Pushed::Overflow;
        }
        q.bytes = bytes;
        q.frames.push(Frame::clone(frame));
        if let Some(r) = receipt {
            q.receipts.remember(r);
        }
        if bytes > self.limit {
            Pushed::Over
        } else {
            Pushed::Queued
        }
    }

    /// Bytes queued and not yet written, and bytes ever written: what a
    /// sender waiting on this reader looks at.
    pub fn backlog(&self) -> (usize, u64) {
        let q = self.queue.lock();
        (q.bytes, q.drained)
    }

    /// True if the backlog is within `queue_bytes` again.
    pub fn under_limit(&self, bytes: usize) -> bool {
        bytes <= self.limit
    }

    /// Consumes the receipt for message `id` from connection `from`: true
    /// (once) if that message was queued to this connection recently.
    pub fn take_receipt(&self, id: u64, from: u64) -> bool {
        self.queue.lock().receipts.take((id, from))
    }

    /// Records that its name became visible when the message-id counter
    /// read `at`.
    pub fn set_registered_at(&self, at: u64) {
        self.registered_at.store(at, Ordering::Release);
    }

    /// True if this connection was registered before message `id` got its
    /// id (so a message to everyone with that id reached it).
    pub fn registered_before(&self, id: u64) -> bool {
        self.registered_at.load(Ordering::Acquire) <= id
    }

    /// Records a message this connection sent to everyone (`scope` 0) or
    /// to a room (`scope` = its id).
    pub fn remember_sent(&self, id: u64, scope: u64) {
        self.sent.lock().remember((id, scope));
    }

    /// The scope of message `id` if this connection sent it to everyone or
    /// to a room recently.
    pub fn sent_scope(&self, id: u64) -> Option<u64> {
        self.sent.lock().find(id)
    }

    /// The message-id counter when this connection joined room `room`, if
    /// it is in it.
    pub fn member_since(&self, room: u64) -> Option<u64> {
        self.rooms
            .lock()
            .iter()
            .find(|m| m.room == room)
            .map(|m| m.since)
    }

    /// For the writer: swaps everything queued into `spare`, which must be
    /// empty, leaving `spare`'s old buffer as the queue (so the caller keeps
    /// it at most `KEEP_FRAMES` long). The frames still count against the
    /// limit until `written` says they went out.
    ///
    /// True if a slow-consumer close asked the writer to drop what it had
    /// taken before (see [`Conn::discard_queued`]).
    pub fn take(&self, spare: &mut Vec<Frame>) -> bool {
        debug_assert!(spare.is_empty());
        let mut q = self.queue.lock();
        std::mem::swap(&mut q.frames, spare);
        std::mem::take(&mut q.discard)
    }

    /// For the writer: `bytes` of taken frames are written.
    pub fn written(&self, bytes: usize) {
        let mut q = self.queue.lock();
        q.bytes = q.bytes.saturating_sub(bytes);
        q.drained = q.drained.wrapping_add(bytes as u64);
    }

    /// For the writer, when it lets go of the connection: later pushes are
    /// refused, and whatever is queued is dropped.
    pub fn close_queue(&self) {
        let dropped = {
            let mut q = self.queue.lock();
            q.open = false;
            q.bytes = 0;
            std::mem::take(&mut q.frames)
        };
        drop(dropped);
    }

    /// Claims the right to schedule the writer: true if no wake-up was
    /// pending (the caller must send one).
    pub fn schedule(&self) -> bool {
        // The writer clears the flag and then takes the queue (under its
        // lock); the pusher queues (under the lock) and then reads the flag.
        // If the writer's take came after our push, it has our frame.
        // Otherwise its clearing store came before its unlock, which came
        // before our lock, so our load sees `false` (or a later `true` whose
        // setter announces the connection). Most pushes find a wake-up
        // already pending: the load answers that without taking the cache
        // line for writing; the swap settles a race between two pushers.
        // SeqCst costs nothing extra here (a locked swap on x86).
        !self.scheduled.load(Ordering::SeqCst) && !self.scheduled.swap(true, Ordering::SeqCst)
    }

    /// Called by the writer before it drains, so later pushes schedule again.
    pub fn unschedule(&self) {
        self.scheduled.store(false, Ordering::SeqCst);
    }
}

/// The socket of one connection, held by its worker and its writer. When
/// both let go, the descriptor closes and the connection stops counting
/// against `max_connections`.
pub(crate) struct Sock {
    /// The non-blocking stream.
    pub stream: TcpStream,
    /// The TLS session, on a TLS listener's connections (`net::tls`).
    /// Boxed: a session is about a kilobyte, which plain connections (most
    /// of them) would otherwise carry unused.
    pub tls: Option<Box<parking_lot::Mutex<rustls::ServerConnection>>>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Sock {
    /// Wraps a stream (and its TLS session, if any) with a callback run
    /// when the last holder drops it.
    pub fn new(
        stream: TcpStream,
        tls: Option<rustls::ServerConnection>,
        on_drop: Box<dyn FnOnce() + Send + Sync>,
    ) -> Arc<Sock> {
        Arc::new(Sock {
            stream,
            tls: tls.map(|t| Box::new(parking_lot::Mutex::new(t))),
            on_drop: Some(on_drop),
        })
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn conn(limit: usize) -> Arc<Conn> {
        Conn::new(1, 0, 0, "127.0.0.1:1".parse().unwrap(), Door::Native, limit)
    }

    fn frame(len: usize) -> Frame {
        Frame::from(vec![b'x'; len])
    }

    #[test]
    fn past_the_bound_is_over_past_twice_is_overflow() {
        let c = conn(1000);
        assert_eq!(c.push(&frame(600)), Pushed::Queued);
        assert_eq!(c.push(&frame(400)), Pushed::Queued); // exactly the bound
        assert_eq!(c.push(&frame(1)), Pushed::Over);
        assert_eq!(c.push(&frame(998)), Pushed::Over); // 1999
        assert_eq!(c.push(&frame(2)), Pushed::Overflow); // would be 2001
        assert_eq!(c.backlog(), (1999, 0));
        // The writer takes and writes some: progress shows, and the queue
        // comes back under the bound.
        let mut spare = Vec::new();
        assert!(!c.take(&mut spare));
        assert_eq!(spare.len(), 4);
        c.written(1000);
        let (bytes, drained) = c.backlog();
        assert_eq!((bytes, drained), (999, 1000));
        assert!(c.under_limit(bytes));
    }

    #[test]
    fn a_closing_frame_always_has_room_and_a_slow_close_discards_the_backlog() {
        let c = conn(1000);
        assert_eq!(c.push(&frame(1500)), Pushed::Over);
        assert_eq!(c.push(&frame(600)), Pushed::Overflow);
        c.discard_queued();
        assert_eq!(c.push_final(&frame(50)), Pushed::Queued);
        let mut spare = Vec::new();
        // The writer is told to drop what it took before, and finds only
        // the closing frame.
        assert!(c.take(&mut spare));
        assert_eq!(spare.len(), 1);
        assert_eq!(spare[0].len(), 50);
    }

    #[test]
    fn a_receipt_is_honoured_once_for_a_message_queued_here_from_that_sender() {
        let c = conn(1 << 20);
        assert_eq!(c.push_msg(&frame(10), 7, 42), Pushed::Queued);
        assert!(!c.take_receipt(7, 43), "wrong sender");
        assert!(!c.take_receipt(8, 42), "never queued here");
        assert!(c.take_receipt(7, 42));
        assert!(!c.take_receipt(7, 42), "only once");
        // A plain push (JOINED, ACK, ...) leaves nothing to receipt.
        c.push(&frame(10));
        assert!(!c.take_receipt(0, 42));
    }

    #[test]
    fn irc_info_keeps_user_and_real_name_apart() {
        let i = IrcInfo::new("zoe", "Zoë Ü. Smith");
        assert_eq!((i.user(), i.real()), ("zoe", "Zoë Ü. Smith"));
        let i = IrcInfo::new("", "");
        assert_eq!((i.user(), i.real()), ("", ""));
    }

    #[test]
    fn the_receipt_ring_keeps_the_latest_messages() {
        let c = conn(1 << 30);
        let n = RECEIPT_RING as u64 + 10;
        for id in 1..=n {
            c.push_msg(&frame(1), id, 5);
        }
        // The oldest ten were overwritten; every later one is still there.
        for id in 1..=10 {
            assert!(!c.take_receipt(id, 5), "{id}");
        }
        for id in 11..=n {
            assert!(c.take_receipt(id, 5), "{id}");
        }
    }
}
