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
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// One encoded frame, shared by every connection it is queued to.
pub(crate) type Frame = Arc<[u8]>;

/// Connection life cycle, stored in `Conn::state`.
pub(crate) const OPEN: u8 = 0;
/// Closing gracefully: the writer flushes what is queued, then closes.
pub(crate) const CLOSING: u8 = 1;
/// Closing abortively: queued output is dropped.
pub(crate) const ABORTED: u8 = 2;
/// A close is claimed but not yet published: ordinary pushes are refused
/// while the closing frame is queued; the writer treats it as open.
pub(crate) const CLAIMED: u8 = 3;

/// What a push onto a connection's queue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The frame is queued.
    Queued,
    /// The connection is closing or closed; the frame was dropped.
    Closed,
    /// The queue is over `queue_bytes`: the connection is a slow consumer.
    Overflow,
}

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
}

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
    queue: Mutex<Queue>,
    limit: usize,
    /// True while the writer has a wake-up for this connection pending.
    scheduled: AtomicBool,
    state: AtomicU8,
    reason: OnceLock<CloseReason>,
    name: OnceLock<Box<str>>,
}

impl Conn {
    /// A new open connection whose queue holds at most `limit` unwritten
    /// bytes.
    pub fn new(id: u64, worker: usize, writer: usize, peer: SocketAddr, limit: usize) -> Arc<Conn> {
        let conn = Conn {
            id,
            worker,
            writer,
            peer,
            queue: Mutex::new(Queue {
                frames: Vec::new(),
                bytes: 0,
                open: true,
            }),
            limit,
            scheduled: AtomicBool::new(false),
            state: AtomicU8::new(OPEN),
            reason: OnceLock::new(),
            name: OnceLock::new(),
        };
        Arc::new(conn)
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

    /// Queues a frame unless the connection is closing or over its limit.
    pub fn push(&self, frame: &Frame) -> Pushed {
        if self.state.load(Ordering::Acquire) != OPEN {
            return Pushed::Closed;
        }
        self.push_any(frame)
    }

    /// Queues a closing frame (`BYE`, a fatal `ERR`, `SHUTDOWN`) unless the
    /// connection is aborted, still within the byte limit.
    pub fn push_final(&self, frame: &Frame) -> Pushed {
        if self.state.load(Ordering::Acquire) == ABORTED {
            return Pushed::Closed;
        }
        self.push_any(frame)
    }

    fn push_any(&self, frame: &Frame) -> Pushed {
        let len = frame.len();
        let mut q = self.queue.lock();
        if !q.open {
            return Pushed::Closed;
        }
        if q.bytes.saturating_add(len) > self.limit {
            return Pushed::Overflow;
        }
        q.bytes += len;
        q.frames.push(Frame::clone(frame));
        Pushed::Queued
    }

    /// For the writer: swaps everything queued into `spare`, which must be
    /// empty, leaving `spare`'s old buffer as the queue (so the caller keeps
    /// it at most `KEEP_FRAMES` long). The frames still count against the
    /// limit until `written` says they went out.
    pub fn take(&self, spare: &mut Vec<Frame>) {
        debug_assert!(spare.is_empty());
        let mut q = self.queue.lock();
        std::mem::swap(&mut q.frames, spare);
    }

    /// For the writer: `bytes` of taken frames are written.
    pub fn written(&self, bytes: usize) {
        let mut q = self.queue.lock();
        q.bytes = q.bytes.saturating_sub(bytes);
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
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Sock {
    /// Wraps a stream with a callback run when the last holder drops it.
    pub fn new(stream: TcpStream, on_drop: Box<dyn FnOnce() + Send + Sync>) -> Arc<Sock> {
        Arc::new(Sock {
            stream,
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
