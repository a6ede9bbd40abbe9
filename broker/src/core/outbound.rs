//! Getting frames to writers: queue, schedule, and one wake-up per writer
//! per batch.
//!
//! A thread that routes frames (a worker, or a writer announcing a `LEFT`)
//! owns an `Outbox`. Pushing a frame queues it on the recipient's queue
//! and, if the recipient's writer has no wake-up pending for it, notes the
//! connection for that writer. At the end of the batch `core::flush`
//! sends each writer its `Ready`s and wakes it once: the "send, then wake"
//! hand-off.

use crate::core::conn::{Conn, Frame, Pushed};
use crate::msg::WriterMsg;
use crate::Shared;
use std::sync::Arc;

/// Per-thread routing state: which writers to wake, which connections
/// overflowed.
pub(crate) struct Outbox {
    /// Per writer: connections scheduled during this batch, announced in
    /// `flush`.
    ready: Vec<Vec<u64>>,
    any: bool,
    /// Frames queued since the writers were last woken.
    pub queued: usize,
    /// Connections whose queue overflowed during this batch.
    pub slow: Vec<Arc<Conn>>,
    /// Readers that went over `queue_bytes` in the current frame: the
    /// worker pauses the sender until they are back under it. Only a
    /// worker's outbox collects them (a writer's pushes are presence).
    pub over: Vec<Arc<Conn>>,
    /// The worker this outbox belongs to, if any.
    pub worker: Option<usize>,
    /// The owning worker has messages in its own inbox to handle.
    pub wake_self: bool,
    /// Scratch space for the recipients of one multi-target `SEND` (empty
    /// between messages; kept for its buffer).
    pub targets: Vec<Arc<Conn>>,
}

impl Outbox {
    /// An outbox for a thread; `worker` is its index if it is a worker.
    pub fn new(writers: usize, worker: Option<usize>) -> Outbox {
        Outbox {
            ready: vec![Vec::new(); writers],
            any: false,
            queued: 0,
            slow: Vec::new(),
            over: Vec::new(),
            worker,
            wake_self: false,
            targets: Vec::new(),
        }
    }

    /// Queues `frame` to `conn`; true if queued.
    #[inline]
    pub fn push(&mut self, conn: &Arc<Conn>, frame: &Frame) -> bool {
        let pushed = conn.push(frame);
        self.pushed(conn, pushed)
    }

    /// Queues message `id` from connection `from` to `conn` (a `MSG`, which
    /// the reader may send a receipt for); true if queued.
    #[inline]
    pub fn push_msg(&mut self, conn: &Arc<Conn>, frame: &Frame, id: u64, from: u64) -> bool {
        let pushed = conn.push_msg(frame, id, from);
        self.pushed(conn, pushed)
    }

    #[inline]
    fn pushed(&mut self, conn: &Arc<Conn>, pushed: Pushed) -> bool {
        match pushed {
            Pushed::Queued => {
                self.queued += 1;
                self.schedule(conn);
                true
            }
            Pushed::Over => {
                self.queued += 1;
                self.schedule(conn);
                // One push per recipient per frame, and the worker empties
                // the list after every frame: no duplicates to weed out.
                if self.worker.is_some() {
                    self.over.push(Arc::clone(conn));
                }
                true
            }
            Pushed::Overflow => {
                self.slow.push(Arc::clone(conn));
                false
            }
            Pushed::Closed => false,
        }
    }

    /// Makes sure `conn`'s writer will look at it (after this batch).
    ///
    /// The writer hears of the connection only in `flush`, so everything
    /// the batch queues for it goes out in one write: a writer told at the
    /// first frame, while this thread is still routing, would often write
    /// that frame alone. Other threads pushing meanwhile see the flag set
    /// and rely on this announcement, which comes at the end of the batch.
    #[inline]
    pub fn schedule(&mut self, conn: &Conn) {
        if conn.schedule() {
            if let Some(ids) = self.ready.get_mut(conn.writer) {
                ids.push(conn.id);
                self.any = true;
            }
        }
    }

    /// Ends a batch for the writers: sends each writer the `Ready`s noted
    /// for it and wakes it once. `core::flush` closes the batch's slow
    /// consumers first; call that.
    pub fn wake_writers(&mut self, shared: &Shared) {
        self.queued = 0;
        if !self.any {
            return;
        }
        self.any = false;
        for (i, ids) in self.ready.iter_mut().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let Some(w) = shared.writers.get(i) else {
                ids.clear();
                continue;
            };
            for id in ids.drain(..) {
                // The writer owns the receiver for the broker's lifetime.
                let _ = w.tx.send(WriterMsg::Ready(id));
            }
            w.wake();
        }
    }
}
