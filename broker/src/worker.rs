//! Worker threads: read sockets, decode frames, apply them.
//!
//! Each worker owns a fixed share of the connections (handed over by the
//! acceptor) and a mio poller. Reads are edge-triggered, so a readable
//! socket is read until `WouldBlock`; a socket that still has data after a
//! fair share of reads goes on the `hot` list and is read again on the next
//! turn. Frames are decoded in place from a per-worker buffer; only a
//! partial frame is copied into the connection's own buffer, so an idle
//! connection holds no read buffer at all.

use crate::conn::{Conn, Sock, ABORTED, OPEN};
use crate::handler::{self, Flow, Session};
use crate::metrics::CloseReason;
use crate::outbound::{Outbox, WriterMsg};
use crate::writer::Stream;
use crate::{log_debug, log_info, log_warn, Shared};
use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use protocol::{Decoded, ErrorCode, Event, Request};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The poll token of a worker's waker.
pub(crate) const WAKE: Token = Token(usize::MAX);
/// Reads of 64 KiB one connection gets per turn before others go first.
const READS_PER_TURN: usize = 8;
const READ_CHUNK: usize = 64 * 1024;
/// How often deadlines (name timeout, lingering closes) are checked.
const TICK: Duration = Duration::from_millis(200);
/// How long a closing connection may take to read its last frames.
const LINGER: Duration = Duration::from_secs(10);

/// A message to a worker.
pub(crate) enum WorkerMsg {
    /// A freshly accepted socket to own.
    NewConn(TcpStream, SocketAddr),
    /// Another thread closed connection `id`: let go of its socket.
    Closed(u64),
    /// The writer has let go of closing connection `id` (delivered
    /// everything, or gave up on a peer that vanished).
    Flushed(u64),
}

/// How other threads reach one worker.
pub(crate) struct WorkerHandle {
    pub tx: Sender<WorkerMsg>,
    pub waker: mio::Waker,
}

/// One connection as its worker sees it.
struct Entry {
    conn: Arc<Conn>,
    sock: Arc<Sock>,
    session: Session,
    /// Bytes of an incomplete frame carried over to the next read.
    inbuf: Vec<u8>,
    /// Until when it may stay without a name.
    name_deadline: Option<Instant>,
    /// Set once closing: input is discarded until EOF or this time.
    linger_until: Option<Instant>,
    /// The poller reported the peer's FIN (or an error): read to the end
    /// even after a short read.
    peer_closed: bool,
    /// The peer's end-of-stream has been read.
    eof: bool,
    /// The writer has let go of this closing connection.
    flushed: bool,
}

/// A worker thread's state.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    index: usize,
    poll: Poll,
    inbox: Receiver<WorkerMsg>,
    conns: HashMap<u64, Entry>,
    hot: Vec<u64>,
    out: Outbox,
    read_buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl Worker {
    /// A worker that will own the connections sent to `inbox`.
    pub fn new(
        shared: Arc<Shared>,
        index: usize,
        poll: Poll,
        inbox: Receiver<WorkerMsg>,
    ) -> Worker {
        let writers = shared.writers.len();
        Worker {
            shared,
            index,
            poll,
            inbox,
            conns: HashMap::new(),
            hot: Vec::new(),
            out: Outbox::new(writers, Some(index)),
            read_buf: vec![0; READ_CHUNK],
            scratch: Vec::with_capacity(1024),
        }
    }

    /// Runs until shutdown, then sends `SHUTDOWN` to every connection it
    /// owns (after all workers stopped routing) and returns how many.
    pub fn run(mut self, stopped: Arc<Barrier>) -> usize {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = if self.hot.is_empty() {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    log_warn!("worker {}: poll failed: {e}", self.index);
                }
                continue;
            }
            if self.shared.stopping() {
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKE => self.drain_inbox(),
                    Token(id) => {
                        let id = id as u64;
                        if ev.is_read_closed() || ev.is_error() {
                            if let Some(e) = self.conns.get_mut(&id) {
                                e.peer_closed = true;
                            }
                        }
                        self.read(id)
                    }
                }
            }
            for id in std::mem::take(&mut self.hot) {
                self.read(id);
            }
            self.out.flush(&self.shared);
            if std::mem::take(&mut self.out.wake_self) {
                self.drain_inbox();
                self.out.flush(&self.shared);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                self.out.flush(&self.shared);
                if std::mem::take(&mut self.out.wake_self) {
                    self.drain_inbox();
                    self.out.flush(&self.shared);
                }
                next_tick = now + TICK;
            }
        }
        // Shutdown: no worker reads or routes past this barrier, so nothing
        // can be queued after the SHUTDOWN notices.
        stopped.wait();
        self.drain_inbox();
        let notice = handler::frame(&Event::Shutdown {
            text: "server is shutting down",
        });
        let mut notified = 0;
        for e in self.conns.values() {
            if e.conn.state() == OPEN
                && handler::close(
                    &self.shared,
                    &mut self.out,
                    &e.conn,
                    CloseReason::Shutdown,
                    Some(&notice),
                )
            {
                notified += 1;
            }
        }
        self.out.flush(&self.shared);
        for (_, e) in self.conns.drain() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&e.sock.stream.as_raw_fd()));
        }
        notified
    }

    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                WorkerMsg::NewConn(stream, peer) => self.adopt(stream, peer),
                WorkerMsg::Closed(id) => self.closed_elsewhere(id),
                WorkerMsg::Flushed(id) => {
                    if let Some(e) = self.conns.get_mut(&id) {
                        e.flushed = true;
                        if e.eof {
                            self.forget(id);
                        }
                    }
                }
            }
        }
    }

    /// Takes over a new socket: register it for reading, hand its queue to a
    /// writer, greet it.
    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr) {
        let shared = &self.shared;
        let id = shared.next_conn_id();
        let writer = (id as usize) % shared.writers.len().max(1);
        let conn = Conn::new(id, self.index, writer, peer, shared.config.queue_bytes);
        let fd = stream.as_raw_fd();
        let owner = Arc::clone(shared);
        let sock = Sock::new(stream, Box::new(move || owner.give_slot(peer)));
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(id as usize),
            Interest::READABLE,
        ) {
            log_warn!("cannot watch connection from {peer}: {e}");
            return;
        }
        let stream = Stream {
            conn: Arc::clone(&conn),
            sock: Arc::clone(&sock),
        };
        if let Some(w) = shared.writers.get(writer) {
            let _ = w.tx.send(WriterMsg::Add(Box::new(stream)));
        }
        let now = Instant::now();
        let name_deadline = (shared.config.name_timeout_secs > 0)
            .then(|| now + Duration::from_secs(shared.config.name_timeout_secs));
        self.out.push(&conn, &shared.hello);
        log_info!("connection {id} from {peer}");
        self.conns.insert(
            id,
            Entry {
                conn,
                sock,
                session: Session::new(shared, now),
                inbuf: Vec::new(),
                name_deadline,
                linger_until: None,
                peer_closed: false,
                eof: false,
                flushed: false,
            },
        );
    }

    fn closed_elsewhere(&mut self, id: u64) {
        let Some(e) = self.conns.get_mut(&id) else {
            return;
        };
        if e.conn.state() == ABORTED {
            // Let the peer know at once; its data is being thrown away.
            let _ = e.sock.stream.shutdown(Shutdown::Both);
            self.forget(id);
        } else if e.linger_until.is_none() {
            e.linger_until = Some(Instant::now() + LINGER);
        }
    }

    fn forget(&mut self, id: u64) {
        if let Some(e) = self.conns.remove(&id) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&e.sock.stream.as_raw_fd()));
        }
    }

    /// Reads what a connection has sent and applies every whole frame.
    fn read(&mut self, id: u64) {
        let shared = &self.shared;
        let Some(e) = self.conns.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let mut gone = false;
        let mut drained = false;
        for _ in 0..READS_PER_TURN {
            let n = match (&e.sock.stream).read(&mut self.read_buf) {
                Ok(0) => {
                    // The peer is done sending: deliver what is queued, then
                    // close (a half-closed socket still gets its replies).
                    // The socket is let go once the writer reports it
                    // flushed, or when the linger time is up if the peer
                    // never reads.
                    handler::close(
                        shared,
                        &mut self.out,
                        &e.conn,
                        CloseReason::Disconnect,
                        None,
                    );
                    e.eof = true;
                    if e.flushed || e.conn.state() == ABORTED {
                        gone = true;
                    } else if e.linger_until.is_none() {
                        e.linger_until = Some(now + LINGER);
                    }
                    drained = true;
                    break;
                }
                Ok(n) => {
                    // A short read emptied the socket: with edge-triggered
                    // polling, new data brings a new event, so skip the read
                    // that would only say WouldBlock. (A FIN that is already
                    // queued brings no new event: `peer_closed` covers it.)
                    if n < self.read_buf.len() && !e.peer_closed {
                        drained = true;
                    }
                    n
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    if e.inbuf.is_empty() && e.inbuf.capacity() > 0 {
                        e.inbuf = Vec::new();
                    }
                    drained = true;
                    break;
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    let reason = if err.kind() == ErrorKind::TimedOut {
                        CloseReason::Timeout
                    } else {
                        CloseReason::Disconnect
                    };
                    log_debug!("read from {} failed: {err}", e.conn.peer);
                    handler::close(shared, &mut self.out, &e.conn, reason, None);
                    e.conn.abort();
                    self.out.schedule(&e.conn);
                    gone = true;
                    break;
                }
            };
            if e.linger_until.is_some() {
                continue; // closing: discard input
            }
            let fresh = self.read_buf.get(..n).unwrap_or_default();
            let flow = if e.inbuf.is_empty() {
                let (used, flow) = apply(shared, &mut self.out, &mut self.scratch, e, fresh, now);
                e.inbuf
                    .extend_from_slice(fresh.get(used..).unwrap_or_default());
                flow
            } else {
                e.inbuf.extend_from_slice(fresh);
                let buf = std::mem::take(&mut e.inbuf);
                let (used, flow) = apply(shared, &mut self.out, &mut self.scratch, e, &buf, now);
                e.inbuf = buf;
                e.inbuf.drain(..used.min(e.inbuf.len()));
                flow
            };
            if flow == Flow::Closed {
                e.inbuf = Vec::new();
                e.linger_until = Some(now + LINGER);
            }
            if drained {
                if e.inbuf.is_empty() && e.inbuf.capacity() > 0 {
                    e.inbuf = Vec::new();
                }
                break;
            }
        }
        if gone {
            self.forget(id);
        } else if !drained {
            self.hot.push(id);
        }
    }

    /// Enforces deadlines: the name timeout and the end of lingering closes.
    fn tick(&mut self, now: Instant) {
        let shared = &self.shared;
        let mut expired = Vec::new();
        for (id, e) in &mut self.conns {
            if let Some(t) = e.linger_until {
                if now >= t {
                    e.conn.abort();
                    self.out.schedule(&e.conn);
                    expired.push(*id);
                }
            } else if let Some(t) = e.name_deadline {
                if e.conn.name().is_some() {
                    e.name_deadline = None;
                } else if now >= t {
                    shared.metrics.error(ErrorCode::NotRegistered);
                    let err = handler::frame(&Event::Err {
                        code: ErrorCode::NotRegistered,
                        args: None,
                        text: "no name given in time; closing",
                    });
                    handler::close(
                        shared,
                        &mut self.out,
                        &e.conn,
                        CloseReason::NameTimeout,
                        Some(&err),
                    );
                    e.linger_until = Some(now + LINGER);
                }
            }
        }
        for id in expired {
            self.forget(id);
        }
    }
}

/// Decodes and applies every whole frame at the front of `buf`; returns the
/// bytes used and whether the connection is closing.
fn apply(
    shared: &Shared,
    out: &mut Outbox,
    scratch: &mut Vec<u8>,
    e: &mut Entry,
    buf: &[u8],
    now: Instant,
) -> (usize, Flow) {
    let mut used = 0;
    while let Some(rest) = buf.get(used..) {
        if rest.is_empty() {
            break;
        }
        match Request::decode(rest, &shared.limits) {
            Decoded::Incomplete => {
                used += protocol::leading_blank_lines(rest);
                break;
            }
            Decoded::Frame { frame, consumed } => {
                used += consumed;
                let flow =
                    handler::handle(shared, out, scratch, &e.conn, &mut e.session, frame, now);
                if flow == Flow::Closed {
                    return (used, flow);
                }
            }
            Decoded::Invalid { error, consumed } => {
                used += consumed;
                handler::error(shared, out, &e.conn, error.code, None, error.reason);
            }
            Decoded::Fatal(error) => {
                shared.metrics.error(error.code);
                log_info!("closing {}: {}", e.conn.peer, error);
                let err = handler::frame(&Event::Err {
                    code: error.code,
                    args: None,
                    text: error.reason,
                });
                handler::close(shared, out, &e.conn, CloseReason::Error, Some(&err));
                return (buf.len(), Flow::Closed);
            }
        }
    }
    (used, Flow::Continue)
}
