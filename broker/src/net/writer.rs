//! Writer threads: drain connection queues onto sockets, many frames per
//! system call (`sendmsg` with up to 64 buffers).
//!
//! Each writer owns the sending side of a fixed share of the connections.
//! Routing threads queue frames and send the writer a `Ready(id)` once per
//! batch; the writer takes everything queued in one swap (see
//! `Conn::take`) and hands up to 64 frames to each `sendmsg`. The frames
//! are the shared encoded bytes (no copy per recipient). Taken frames count
//! against the connection's `queue_bytes` until they are written. When the
//! socket is full the connection is `blocked` and waits for its
//! edge-triggered writable event; it is never polled in a loop.

use crate::core;
use crate::core::conn::{Frame, ABORTED, CLOSING, KEEP_FRAMES, OPEN};
use crate::core::outbound::Outbox;
use crate::metrics::{CloseReason, Metrics};
use crate::msg::{Stream, WriterMsg};
use crate::net::tls;
use crate::{log_debug, log_warn, Shared};
use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::SockRef;
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, IoSlice, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The poll token of a writer's waker.
pub(crate) const WAKE: Token = Token(usize::MAX);
/// Most frames the buffer a writer lends as `State::pending` keeps room
/// for between streams (a larger one, after a burst, is let go).
const KEEP_PENDING: usize = 1024;

struct State {
    s: Stream,
    /// Frames taken off the queue, not yet fully written. While the stream
    /// is written this is the writer's buffer (`Bufs::pending`), lent; it
    /// stays with the stream only while frames are left over (a full
    /// socket), so an idle connection holds no buffer here.
    pending: VecDeque<Frame>,
    /// Bytes of the first pending frame already written.
    offset: usize,
    /// The socket said `WouldBlock`; wait for writable.
    blocked: bool,
}

/// A writer thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    index: usize,
    poll: Poll,
    inbox: Receiver<WriterMsg>,
    streams: HashMap<u64, State>,
    /// How many streams wait for a writable event.
    blocked: usize,
    out: Outbox,
    bufs: Bufs,
}

/// A writer's buffers, used for one stream at a time: a connection holds
/// only its queue's buffer, not one per stage of the hand-off.
#[derive(Default)]
struct Bufs {
    /// An empty buffer, swapped for a queue's on every take (the queue
    /// keeps this one; the queue's, emptied, is the next take's spare).
    spare: Vec<Frame>,
    /// An empty buffer, lent to the stream being written as its `pending`.
    pending: VecDeque<Frame>,
}

/// What servicing a stream ended with.
enum Done {
    /// Nothing more to do now.
    Idle,
    /// The stream is finished: drop it.
    Finished,
}

impl Writer {
    /// A writer fed by `inbox`.
    pub fn new(
        shared: Arc<Shared>,
        index: usize,
        poll: Poll,
        inbox: Receiver<WriterMsg>,
    ) -> Writer {
        let writers = shared.writers.len();
        Writer {
            shared,
            index,
            poll,
            inbox,
            streams: HashMap::new(),
            blocked: 0,
            out: Outbox::new(writers, None),
            bufs: Bufs::default(),
        }
    }

    /// Runs until told to stop; returns how many connections it cut off.
    pub fn run(mut self) -> usize {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut busy = false;
            while let Ok(msg) = self.inbox.try_recv() {
                busy = true;
                match msg {
                    WriterMsg::Add(stream) => self.add(*stream),
                    WriterMsg::Ready(id) => self.service(id),
                    WriterMsg::Stop => return self.stop(),
                }
                // A failed write closes its connection, which queues `LEFT`
                // for everyone; those connections are announced only when
                // this outbox flushes. Under steady load the inbox may never
                // run dry, so flush here (a flag test when nothing closed)
                // rather than after the loop.
                core::flush(&self.shared, &mut self.out);
            }
            if busy && self.blocked == 0 {
                // Nothing waits for writable: skip the poll while work keeps
                // coming.
                continue;
            }
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                let handle = self.shared.writers.get(self.index);
                if let Some(h) = handle {
                    h.sleeping.store(true, Ordering::Relaxed);
                }
                // Pairs with the fence in `WriterHandle::wake`.
                fence(Ordering::SeqCst);
                if self.inbox.is_empty() {
                    None
                } else {
                    Some(Duration::ZERO)
                }
            };
            let polled = self.poll.poll(&mut events, timeout);
            if let Some(h) = self.shared.writers.get(self.index) {
                h.sleeping.store(false, Ordering::Relaxed);
            }
            if let Err(e) = polled {
                if e.kind() != ErrorKind::Interrupted {
                    log_warn!("writer {}: poll failed: {e}", self.index);
                }
                continue;
            }
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                let id = ev.token().0 as u64;
                if let Some(st) = self.streams.get_mut(&id) {
                    if std::mem::take(&mut st.blocked) {
                        self.blocked -= 1;
                    }
                }
                self.service(id);
            }
            core::flush(&self.shared, &mut self.out);
        }
    }

    fn add(&mut self, s: Stream) {
        let id = s.conn.id;
        let fd = s.sock.stream.as_raw_fd();
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(id as usize),
            Interest::WRITABLE,
        ) {
            log_warn!("writer {}: cannot watch connection {id}: {e}", self.index);
            // Nothing could ever be written to it: close it rather than
            // leave a user who gets no output.
            core::close(
                &self.shared,
                &mut self.out,
                &s.conn,
                CloseReason::Disconnect,
                None,
            );
            s.conn.abort();
            return;
        }
        self.shared.writer_streams.fetch_add(1, Ordering::AcqRel);
        self.streams.insert(
            id,
            State {
                s,
                pending: VecDeque::new(),
                offset: 0,
                blocked: false,
            },
        );
    }

    fn remove(&mut self, id: u64) {
        if let Some(st) = self.streams.remove(&id) {
            if st.blocked {
                self.blocked -= 1;
            }
            let fd = st.s.sock.stream.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            // Bytes still queued no longer count against anyone.
            self.shared.writer_streams.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn stop(mut self) -> usize {
        let cut = self.streams.len();
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(st) = self.streams.get(&id) {
                st.s.conn.abort();
                let _ = st.s.sock.stream.shutdown(Shutdown::Both);
            }
            self.remove(id);
        }
        cut
    }

    /// Writes what connection `id` has queued, as far as the socket takes.
    fn service(&mut self, id: u64) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        st.s.conn.unschedule();
        let done = if st.s.conn.state() == ABORTED {
            Done::Finished
        } else if st.blocked {
            Done::Idle
        } else {
            let done = flush(&self.shared, &mut self.out, st, &mut self.bufs);
            if st.blocked {
                self.blocked += 1;
            }
            done
        };
        if let Done::Finished = done {
            let conn = self.streams.get(&id).map(|st| Arc::clone(&st.s.conn));
            self.remove(id);
            // Tell the reading worker it may let go of the socket now
            // (whether it was flushed or the peer vanished mid-write).
            if let Some(conn) = conn.filter(|c| c.state() != OPEN) {
                if let Some(w) = self.shared.workers.get(conn.worker) {
                    let _ = w.tx.send(crate::msg::WorkerMsg::Flushed(conn.id));
                    let _ = w.waker.wake();
                }
            }
        }
    }
}

/// Moves everything queued to the end of `pending`: one lock for the
/// batch, not one channel operation per frame.
fn refill(st: &mut State, spare: &mut Vec<Frame>) {
    if st.s.conn.take(spare) {
        // A slow-consumer close: drop the backlog taken earlier, but finish
        // a frame already begun so the reader's stream stays whole.
        let begun = if st.offset > 0 {
            st.pending.pop_front()
        } else {
            None
        };
        st.pending.clear();
        st.pending.extend(begun);
    }
    st.pending.extend(spare.drain(..));
    // The spare becomes a queue's buffer at the next take: a burst's
    // large one is let go here, once, so idle queues stay small.
    if spare.capacity() > KEEP_FRAMES {
        *spare = Vec::new();
    }
}

/// Takes what is queued into `pending`. With nothing to write: `Idle`, or
/// `Finished` if the connection is closing (the caller ends the stream).
fn take_queue(st: &mut State, spare: &mut Vec<Frame>) -> Option<Done> {
    refill(st, spare);
    if !st.pending.is_empty() {
        return None;
    }
    // Load the state only now: a closing frame is queued before the state
    // changes, so if we see CLOSING the re-check finds it.
    if st.s.conn.state() != CLOSING {
        return Some(Done::Idle);
    }
    refill(st, spare);
    st.pending.is_empty().then_some(Done::Finished)
}

fn flush(shared: &Shared, out: &mut Outbox, st: &mut State, bufs: &mut Bufs) -> Done {
    lend(st, bufs);
    let sock = Arc::clone(&st.s.sock);
    let done = match &sock.tls {
        Some(session) => flush_tls(shared, out, st, &mut bufs.spare, session),
        None => flush_plain(shared, out, st, &mut bufs.spare),
    };
    give_back(st, bufs);
    done
}

/// Before writing: a stream with nothing left over from before writes
/// from the writer's buffer.
fn lend(st: &mut State, bufs: &mut Bufs) {
    if st.pending.is_empty() {
        std::mem::swap(&mut st.pending, &mut bufs.pending);
    }
}

/// After writing: if everything was written, the larger of the two
/// buffers goes back to the writer (at most `KEEP_PENDING` long) and the
/// stream keeps none; frames left over stay with the stream.
fn give_back(st: &mut State, bufs: &mut Bufs) {
    if !st.pending.is_empty() {
        return;
    }
    if st.pending.capacity() > bufs.pending.capacity() {
        std::mem::swap(&mut st.pending, &mut bufs.pending);
    }
    if st.pending.capacity() > 0 {
        st.pending = VecDeque::new();
    }
    if bufs.pending.capacity() > KEEP_PENDING {
        bufs.pending = VecDeque::new();
    }
}

/// `flush` for a plain TCP connection.
fn flush_plain(shared: &Shared, out: &mut Outbox, st: &mut State, spare: &mut Vec<Frame>) -> Done {
    loop {
        if let Some(done) = take_queue(st, spare) {
            if let Done::Finished = done {
                let _ = st.s.sock.stream.shutdown(Shutdown::Write);
            }
            return done;
        }
        let written = {
            let mut iov: [IoSlice<'_>; 64] = [IoSlice::new(&[]); 64];
            let slices = gather(st, &mut iov, usize::MAX);
            // sendmsg, not writev: it skips the VFS layer and the file
            // position lock (about 6% of broker CPU in a profile), and
            // MSG_NOSIGNAL means a closed peer is an error, not SIGPIPE.
            SockRef::from(&st.s.sock.stream).send_vectored(slices)
        };
        match written {
            Ok(0) => return fail(shared, out, st, std::io::Error::from(ErrorKind::WriteZero)),
            Ok(n) => {
                Metrics::add(&shared.metrics.bytes_out, n as u64);
                Metrics::add(&shared.metrics.writes, 1);
                let asked: usize =
                    st.pending.iter().take(64).map(|f| f.len()).sum::<usize>() - st.offset;
                if n < asked {
                    // A short write filled the socket buffer: the kernel
                    // reports writable again on its own (edge), so don't ask
                    // it for a WouldBlock now.
                    st.blocked = true;
                }
                consume(st, n);
                if st.blocked {
                    return Done::Idle;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                st.blocked = true;
                return Done::Idle;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return fail(shared, out, st, e),
        }
    }
}

/// `flush` for a TLS connection: frames go into the session as plaintext,
/// at most [`tls::PLAINTEXT_BATCH`] at a time, and come out as records
/// written to the socket. Handshake records and alerts the worker left in
/// the session are written here too.
fn flush_tls(
    shared: &Shared,
    out: &mut Outbox,
    st: &mut State,
    spare: &mut Vec<Frame>,
    session: &tls::Session,
) -> Done {
    let mut tls = session.lock();
    loop {
        // What the session holds goes first.
        while tls.wants_write() {
            let mut to: &std::net::TcpStream = &st.s.sock.stream;
            match tls.write_tls(&mut to) {
                Ok(0) => return fail(shared, out, st, ErrorKind::WriteZero.into()),
                Ok(n) => {
                    Metrics::add(&shared.metrics.bytes_out, n as u64);
                    Metrics::add(&shared.metrics.writes, 1);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    st.blocked = true;
                    return Done::Idle;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return fail(shared, out, st, e),
            }
        }
        if let Some(done) = take_queue(st, spare) {
            if let Done::Finished = done {
                tls.send_close_notify();
                let mut to: &std::net::TcpStream = &st.s.sock.stream;
                let _ = tls.write_tls(&mut to);
                let _ = st.s.sock.stream.shutdown(Shutdown::Write);
            }
            return done;
        }
        // Encrypt a batch, every queued frame (up to 64, and up to
        // PLAINTEXT_BATCH bytes) in one call: rustls packs them into shared
        // records (one record per frame cost half the TLS fan-out's speed).
        // Before the handshake is done the session keeps the plaintext and
        // sends it once it can.
        let moved = {
            let mut iov: [IoSlice<'_>; 64] = [IoSlice::new(&[]); 64];
            let slices = gather(st, &mut iov, tls::PLAINTEXT_BATCH);
            match tls.writer().write_vectored(slices) {
                Ok(n) => n,
                Err(e) => return fail(shared, out, st, e),
            }
        };
        consume(st, moved);
        if moved == 0 && !tls.wants_write() {
            // Waiting for the handshake: the worker wakes us when it moves.
            return Done::Idle;
        }
    }
}

/// The pending frames as slices (the first from its unwritten part), up to
/// 64 of them and, past the first, up to `max` bytes.
fn gather<'a>(st: &'a State, iov: &'a mut [IoSlice<'a>; 64], max: usize) -> &'a [IoSlice<'a>] {
    let mut n_iov = 0;
    let mut sum = 0usize;
    for (i, (slot, f)) in iov.iter_mut().zip(st.pending.iter()).enumerate() {
        if i > 0 && sum >= max {
            break;
        }
        let bytes: &[u8] = if i == 0 {
            f.get(st.offset..).unwrap_or_default()
        } else {
            f
        };
        sum = sum.saturating_add(bytes.len());
        *slot = IoSlice::new(bytes);
        n_iov += 1;
    }
    iov.get(..n_iov).unwrap_or_default()
}

/// Drops the frames `n` written bytes covered from `pending` (keeping the
/// offset into a frame begun) and counts them as written.
fn consume(st: &mut State, mut n: usize) {
    let mut done = 0;
    while let Some(f) = st.pending.front() {
        let rest = f.len() - st.offset;
        if n >= rest {
            n -= rest;
            st.offset = 0;
            done += f.len();
            st.pending.pop_front();
        } else {
            st.offset += n;
            break;
        }
    }
    if done > 0 {
        st.s.conn.written(done);
    }
}

/// A write failed: the peer is gone. Close (abortively) and drop the stream.
fn fail(shared: &Shared, out: &mut Outbox, st: &mut State, err: std::io::Error) -> Done {
    log_debug!("write to {} failed: {err}", st.s.conn.peer);
    let reason = if err.kind() == ErrorKind::TimedOut {
        CloseReason::Timeout
    } else {
        CloseReason::Disconnect
    };
    core::close(shared, out, &st.s.conn, reason, None);
    st.s.conn.abort();
    Done::Finished
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::core::conn::{Conn, Door, Sock};
    use std::net::{TcpListener, TcpStream};

    fn state() -> State {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let peer = stream.local_addr().unwrap();
        State {
            s: Stream {
                conn: Conn::new(1, 0, 0, peer, Door::Irc, 1 << 20),
                sock: Sock::new(stream, None, Box::new(|| {})),
            },
            pending: VecDeque::new(),
            offset: 0,
            blocked: false,
        }
    }

    fn frame(len: usize) -> Frame {
        Frame::from(vec![b'x'; len])
    }

    #[test]
    fn a_stream_keeps_no_buffer_once_everything_is_written() {
        let (mut st, mut bufs) = (state(), Bufs::default());
        for _ in 0..10 {
            st.s.conn.push(&frame(8));
        }
        lend(&mut st, &mut bufs);
        assert!(take_queue(&mut st, &mut bufs.spare).is_none());
        assert_eq!(st.pending.len(), 10);
        // The queue got the writer's (empty) spare; the writer has the
        // queue's buffer as its next spare.
        assert!(bufs.spare.is_empty() && bufs.spare.capacity() >= 10);
        consume(&mut st, 80);
        give_back(&mut st, &mut bufs);
        assert_eq!(st.pending.capacity(), 0);
        assert!(bufs.pending.capacity() >= 10);
    }

    #[test]
    fn frames_left_over_stay_with_the_stream_and_the_writer_gets_a_buffer_back() {
        let (mut st, mut bufs) = (state(), Bufs::default());
        for _ in 0..10 {
            st.s.conn.push(&frame(8));
        }
        lend(&mut st, &mut bufs);
        assert!(take_queue(&mut st, &mut bufs.spare).is_none());
        // A short write: three frames and a half went out.
        consume(&mut st, 28);
        give_back(&mut st, &mut bufs);
        assert_eq!((st.pending.len(), st.offset), (7, 4));
        assert!(bufs.pending.is_empty());
        // The next write goes on from what the stream kept, and frames
        // queued since come after it.
        st.s.conn.push(&frame(5));
        lend(&mut st, &mut bufs);
        assert!(take_queue(&mut st, &mut bufs.spare).is_none());
        assert_eq!(st.pending.len(), 8);
        consume(&mut st, 4 + 6 * 8 + 5);
        give_back(&mut st, &mut bufs);
        assert_eq!((st.pending.capacity(), st.offset), (0, 0));
        assert!(bufs.pending.capacity() >= 8);
        assert_eq!(st.s.conn.backlog(), (0, 85));
    }

    #[test]
    fn a_burst_s_buffers_are_let_go() {
        let (mut st, mut bufs) = (state(), Bufs::default());
        for _ in 0..(KEEP_PENDING + 1) {
            st.s.conn.push(&frame(1));
        }
        lend(&mut st, &mut bufs);
        assert!(take_queue(&mut st, &mut bufs.spare).is_none());
        // Both the queue's buffer (now the spare) and the pending one are
        // over their bounds.
        assert_eq!(bufs.spare.capacity(), 0);
        consume(&mut st, KEEP_PENDING + 1);
        give_back(&mut st, &mut bufs);
        assert_eq!((st.pending.capacity(), bufs.pending.capacity()), (0, 0));
    }
}
