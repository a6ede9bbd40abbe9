//! The messages threads send each other, and how they reach each other:
//! a leaf module, so the acceptor, workers, writers and the core don't
//! import one another for their inboxes.

use crate::core::conn::{Conn, Door, Sock};
use crossbeam_channel::Sender;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

/// Which listener a connection came in by: its door, and whether that
/// listener speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Via {
    /// The protocol.
    pub door: Door,
    /// TLS below it.
    pub tls: bool,
}

/// A message to a worker.
pub(crate) enum WorkerMsg {
    /// A freshly accepted socket to own, and the listener it came in by.
    NewConn(TcpStream, SocketAddr, Via),
    /// Another thread closed connection `id`: let go of its socket.
    Closed(u64),
    /// The writer has let go of closing connection `id` (delivered
    /// everything, or gave up on a peer that vanished).
    Flushed(u64),
    /// A hold is over (a login answered, a message stored): look at the
    /// held connections now.
    Released,
}

/// How other threads reach one worker.
pub(crate) struct WorkerHandle {
    pub tx: Sender<WorkerMsg>,
    pub waker: Arc<mio::Waker>,
}

impl WorkerHandle {
    /// A handle another thread can keep to tell this worker that a hold is
    /// over (`WorkerMsg::Released`), so it reads that connection again at
    /// once rather than at its next look.
    pub fn releaser(&self) -> Releaser {
        Releaser {
            tx: self.tx.clone(),
            waker: Arc::clone(&self.waker),
        }
    }
}

/// See [`WorkerHandle::releaser`].
#[derive(Clone)]
pub(crate) struct Releaser {
    tx: Sender<WorkerMsg>,
    waker: Arc<mio::Waker>,
}

impl Releaser {
    /// Wakes the worker to look at its held connections now.
    pub fn release(&self) {
        if self.tx.send(WorkerMsg::Released).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// A message to a writer thread.
pub(crate) enum WriterMsg {
    /// Take over a new connection's socket and queue.
    Add(Box<Stream>),
    /// Connection `id` has frames queued (or changed state).
    Ready(u64),
    /// Stop now: cut off whatever is left.
    Stop,
}

/// How other threads reach one writer.
pub(crate) struct WriterHandle {
    pub tx: Sender<WriterMsg>,
    pub waker: mio::Waker,
    /// Set by the writer just before it sleeps in `poll`.
    pub sleeping: AtomicBool,
}

impl WriterHandle {
    /// Wakes the writer if it is (about to be) asleep.
    pub fn wake(&self) {
        // Pairs with the fence in the writer between setting `sleeping` and
        // re-checking its channel: either it sees our message, or we see it
        // sleeping and wake it.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            // A failed wake means the poller is gone: the writer has exited.
            let _ = self.waker.wake();
        }
    }
}

/// The sending side of one connection, handed from its worker to its writer.
pub(crate) struct Stream {
    /// The shared handle (with the outbound queue).
    pub conn: Arc<Conn>,
    /// Its socket.
    pub sock: Arc<Sock>,
}

impl Drop for Stream {
    /// However the writer lets go (done, failed, stopped, never added), the
    /// queue stops taking frames that nobody would write.
    fn drop(&mut self) {
        self.conn.close_queue();
    }
}
