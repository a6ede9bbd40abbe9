//! Worker threads: read sockets, decode frames, apply them.
//!
//! Each worker owns a fixed share of the connections (handed over by the
//! acceptor) and a mio poller. Reads are edge-triggered, so a readable
//! socket is read until `WouldBlock`; a socket that still has data after a
//! fair share of reads goes on the `hot` list and is read again on the next
//! turn. Frames are decoded in place from a per-worker buffer; only a
//! partial frame is copied into the connection's own buffer, so an idle
//! connection holds no read buffer at all.

use crate::core::conn::{Conn, Door, Sock, ABORTED, OPEN};
use crate::core::outbound::Outbox;
use crate::core::route::{closing_frame, frame};
use crate::core::{self, Flow, Session};
use crate::doors::{self, One};
use crate::metrics::CloseReason;
use crate::msg::{Stream, Via, WorkerMsg, WriterMsg};
use crate::{log_debug, log_info, log_warn, Shared};
use crossbeam_channel::Receiver;
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
/// How often paused senders look at the readers they wait for.
const PAUSE_CHECK: Duration = Duration::from_millis(5);
/// Name time a connection has left, at least, when a hold ends.
const HELD_NAME_GRACE: Duration = Duration::from_secs(10);
/// A read buffer holding a partial frame keeps at most this much spare
/// room once the socket is drained.
const KEEP_INBUF: usize = 4096;
/// Frames a batch may queue before the writers are woken (see
/// `Worker::flush_if_full`).
const FLUSH_FRAMES: usize = 4096;

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
    /// When the unfinished frame in `inbuf` began (the first read that
    /// left bytes over after the last whole frame).
    partial_since: Option<Instant>,
    /// Set while the sender is paused: its socket is not read. (Boxed:
    /// few connections are paused at a time.)
    pause: Option<Box<Pause>>,
    /// An IRC connection's registration state (`None` on other doors).
    irc: Option<Box<crate::doors::irc::IrcSession>>,
    /// A web connection's state (`None` on other doors).
    web: Option<Box<crate::doors::web::WebSession>>,
}

/// Why a sender is paused ("the sender pays"): its last message took
/// readers past `queue_bytes`, or its byte budget is in debt. Its socket is
/// not read until every reason is gone, so TCP pushes back on it alone.
struct Pause {
    /// The byte budget is out of debt at this time.
    until: Option<Instant>,
    /// Another thread answers this sender's last request (a login, a
    /// stored message's `ACK`).
    held: Option<core::Hold>,
    /// Readers over `queue_bytes` that it waits for.
    waits: Vec<Wait>,
}

/// One reader a paused sender waits for.
struct Wait {
    conn: Arc<Conn>,
    /// The reader's bytes written when last looked at.
    drained: u64,
    /// When `drained` last moved (or the wait began).
    since: Instant,
    /// When the wait began: a reader that keeps a sender waiting for
    /// `DRIP_WAITS` times `slow_after_secs`, however little it reads now
    /// and then, is too slow to wait for.
    began: Instant,
}

/// How many times `slow_after_secs` one wait may last in all, even while
/// the reader takes a few bytes now and then (a reader "dripping" a byte
/// every few seconds must not hold its senders for ever).
const DRIP_WAITS: u32 = 2;

/// What applying a buffer of frames ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Every whole frame is applied; read more.
    More,
    /// The connection is closing: stop reading frames.
    Closed,
    /// The sender is paused: keep the rest for later, stop reading.
    Paused,
}

/// A worker thread's state.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    index: usize,
    poll: Poll,
    inbox: Receiver<WorkerMsg>,
    /// Boxed: a table of entries would be up to twice the connections'
    /// count in slots (the map grows by doubling), each the size of an
    /// entry, where boxes leave a pointer per slot.
    conns: HashMap<u64, Box<Entry>>,
    hot: Vec<u64>,
    /// Paused senders (see `Pause`).
    paused: Vec<u64>,
    out: Outbox,
    read_buf: Vec<u8>,
    /// A hold ended: look at the paused connections at once.
    released: bool,
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
            paused: Vec::new(),
            out: Outbox::new(writers, Some(index)),
            read_buf: vec![0; READ_CHUNK],
            released: false,
        }
    }

    /// Runs until shutdown, then sends `SHUTDOWN` to every connection it
    /// owns (after all workers stopped routing) and returns how many.
    pub fn run(mut self, stopped: Arc<Barrier>) -> usize {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        let mut next_pause_check = Instant::now();
        loop {
            let timeout = if !self.hot.is_empty() {
                Duration::ZERO
            } else if !self.paused.is_empty() {
                next_tick
                    .min(next_pause_check)
                    .saturating_duration_since(Instant::now())
            } else {
                next_tick.saturating_duration_since(Instant::now())
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
                        self.read(id);
                        self.flush_if_full();
                    }
                }
            }
            for id in std::mem::take(&mut self.hot) {
                self.read(id);
                self.flush_if_full();
            }
            if !self.paused.is_empty() {
                let now = Instant::now();
                if now >= next_pause_check || std::mem::take(&mut self.released) {
                    self.check_paused(now);
                    next_pause_check = now + PAUSE_CHECK;
                }
            }
            core::flush(&self.shared, &mut self.out);
            if std::mem::take(&mut self.out.wake_self) {
                self.drain_inbox();
                core::flush(&self.shared, &mut self.out);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                core::flush(&self.shared, &mut self.out);
                if std::mem::take(&mut self.out.wake_self) {
                    self.drain_inbox();
                    core::flush(&self.shared, &mut self.out);
                }
                next_tick = now + TICK;
            }
        }
        // Shutdown: no worker reads or routes past this barrier, so nothing
        // can be queued after the SHUTDOWN notices.
        stopped.wait();
        self.drain_inbox();
        const BYE: &str = "server is shutting down";
        let notice = frame(&Event::Shutdown { text: BYE });
        let irc_notice = crate::core::route::irc_error_line(&format!("Closing link: {BYE}"));
        let mut notified = 0;
        for e in self.conns.values() {
            let web_notice;
            let last = match e.conn.door {
                Door::Native => &notice,
                Door::Irc => &irc_notice,
                Door::Web => {
                    web_notice = doors::web::shutdown_frame(&e.conn, BYE);
                    &web_notice
                }
            };
            if e.conn.state() == OPEN
                && core::close(
                    &self.shared,
                    &mut self.out,
                    &e.conn,
                    CloseReason::Shutdown,
                    Some(last),
                )
            {
                notified += 1;
            }
        }
        core::flush(&self.shared, &mut self.out);
        for (_, e) in self.conns.drain() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&e.sock.stream.as_raw_fd()));
        }
        notified
    }

    /// Wakes the writers before the end of the batch once it has queued
    /// `FLUSH_FRAMES` frames (a burst of joins, each told to everyone), so
    /// queues drain while the batch goes on rather than all grow at once.
    #[inline]
    fn flush_if_full(&mut self) {
        if self.out.queued >= FLUSH_FRAMES {
            core::flush(&self.shared, &mut self.out);
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                WorkerMsg::NewConn(stream, peer, via) => self.adopt(stream, peer, via),
                WorkerMsg::Closed(id) => self.closed_elsewhere(id),
                WorkerMsg::Released => self.released = true,
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
    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr, via: Via) {
        let shared = &self.shared;
        let door = via.door;
        let tls = if via.tls {
            let Some(config) = shared.tls.load_full() else {
                return;
            };
            match rustls::ServerConnection::new(config) {
                Ok(t) => Some(t),
                Err(e) => {
                    log_warn!("cannot start TLS with {peer}: {e}");
                    return;
                }
            }
        } else {
            None
        };
        let id = shared.next_conn_id();
        let writer = (id as usize) % shared.writers.len().max(1);
        let conn = Conn::new(
            id,
            self.index,
            writer,
            peer,
            door,
            shared.live().queue_bytes,
        );
        let fd = stream.as_raw_fd();
        let owner = Arc::clone(shared);
        let door_index = Door::ALL.iter().position(|d| *d == door).unwrap_or(0);
        shared.metrics.door(door_index, true);
        let sock = Sock::new(
            stream,
            tls,
            Box::new(move || {
                owner.metrics.door(door_index, false);
                owner.give_slot(peer)
            }),
        );
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
        let name_deadline = (shared.live().name_timeout_secs > 0)
            .then(|| now + Duration::from_secs(shared.live().name_timeout_secs));
        if door == Door::Native {
            self.out.push(&conn, &shared.hello);
        }
        log_info!("{} connection {id} from {peer}", door.as_str());
        self.conns.insert(
            id,
            Box::new(Entry {
                conn,
                sock,
                session: Session::new(shared, now),
                inbuf: Vec::new(),
                name_deadline,
                linger_until: None,
                peer_closed: false,
                eof: false,
                flushed: false,
                partial_since: None,
                pause: None,
                irc: (door == Door::Irc).then(|| Box::new(crate::doors::irc::IrcSession::new(now))),
                web: (door == Door::Web).then(|| Box::new(crate::doors::web::WebSession::new())),
            }),
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
        if e.pause.is_some() {
            // Read again when the pause ends (`check_paused`).
            return;
        }
        let now = Instant::now();
        let mut gone = false;
        let mut drained = false;
        let mut paused = false;
        // Held apart from `e` (borrowed mutably below) only for TLS: a plain
        // read costs no reference count.
        let sock = e.sock.tls.is_some().then(|| Arc::clone(&e.sock));
        let tls = sock.as_ref().and_then(|s| s.tls.as_ref());
        for _ in 0..READS_PER_TURN {
            let got = match tls {
                Some(session) => {
                    let got = crate::net::tls::read(session, &e.sock.stream, &mut self.read_buf);
                    if crate::net::tls::wants_write(session) {
                        // Handshake records or an alert: the writer sends them.
                        self.out.schedule(&e.conn);
                    }
                    got
                }
                None => (&e.sock.stream).read(&mut self.read_buf),
            };
            let n = match got {
                Ok(0) => {
                    // The peer is done sending: deliver what is queued, then
                    // close (a half-closed socket still gets its replies).
                    // The socket is let go once the writer reports it
                    // flushed, or when the linger time is up if the peer
                    // never reads.
                    core::close(
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
                    // (Not over TLS: a short read of plaintext says nothing
                    // about the socket.)
                    if n < self.read_buf.len() && !e.peer_closed && tls.is_none() {
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
                    core::close(shared, &mut self.out, &e.conn, reason, None);
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
            let step = if e.inbuf.is_empty() {
                let (used, frames, step) = apply(shared, &mut self.out, e, fresh, now);
                e.inbuf
                    .extend_from_slice(fresh.get(used..).unwrap_or_default());
                e.note_partial(frames, now);
                step
            } else {
                e.inbuf.extend_from_slice(fresh);
                apply_inbuf(shared, &mut self.out, e, now)
            };
            match step {
                Step::Closed => {
                    e.inbuf = Vec::new();
                    e.linger_until = Some(now + LINGER);
                }
                Step::Paused => {
                    paused = true;
                    self.paused.push(id);
                    break;
                }
                Step::More => {}
            }
            if drained {
                e.shrink_inbuf();
                break;
            }
        }
        if gone {
            self.forget(id);
        } else if !drained && !paused {
            self.hot.push(id);
        }
    }

    /// Ends the pauses whose reasons are gone, then reads those senders
    /// again: first what they had sent already, then their sockets (they
    /// bring no new readiness event for data that waited). A reader that a
    /// sender waits for and that has taken nothing for `slow_after_secs` is
    /// closed as a slow consumer.
    fn check_paused(&mut self, now: Instant) {
        let stuck_after = Duration::from_secs(self.shared.live().slow_after_secs);
        let too_long = stuck_after * DRIP_WAITS;
        let mut resume = Vec::new();
        let shared = &self.shared;
        let out = &mut self.out;
        self.paused.retain(|&id| {
            let Some(e) = self.conns.get_mut(&id) else {
                return false;
            };
            let Some(p) = e.pause.as_mut() else {
                return false;
            };
            let closing = e.linger_until.is_some() || e.conn.is_closing();
            if !closing {
                p.waits.retain_mut(|w| {
                    if w.conn.is_closing() {
                        return false;
                    }
                    let (bytes, drained) = w.conn.backlog();
                    if w.conn.under_limit(bytes) {
                        return false;
                    }
                    if drained != w.drained {
                        w.drained = drained;
                        w.since = now;
                    }
                    let stuck = now.saturating_duration_since(w.since) >= stuck_after;
                    if stuck || now.saturating_duration_since(w.began) >= too_long {
                        log_debug!(
                            "{} is too slow to wait for ({})",
                            w.conn.peer,
                            if stuck { "no progress" } else { "too little" }
                        );
                        core::close_slow(shared, out, &w.conn);
                        return false;
                    }
                    true
                });
                let state = p
                    .held
                    .as_ref()
                    .map(|h| h.state.load(std::sync::atomic::Ordering::Acquire));
                if state == Some(core::hold::WAITING)
                    || !p.waits.is_empty()
                    || p.until.is_some_and(|t| now < t)
                {
                    return true;
                }
                if let Some([done, failed]) = p.held.take().and_then(|h| h.then) {
                    let frame = if state == Some(core::hold::FAILED) {
                        failed
                    } else {
                        done
                    };
                    out.push(&e.conn, &frame);
                }
            }
            e.pause = None;
            resume.push(id);
            false
        });
        for id in resume {
            self.resume(id, now);
        }
    }

    /// Applies what a sender sent while it was paused, then reads on.
    fn resume(&mut self, id: u64, now: Instant) {
        let shared = &self.shared;
        let Some(e) = self.conns.get_mut(&id) else {
            return;
        };
        if e.linger_until.is_some() || e.conn.is_closing() {
            // Closed while paused (perhaps as the slow reader it waited
            // on itself): what it had sent is not applied.
            e.inbuf = Vec::new();
        }
        e.partial_since = None;
        if let Some(t) = e.name_deadline.as_mut() {
            // A hold (a login's delay) doesn't eat the name time: what is
            // left of it after the hold is at least a few seconds.
            *t = (*t).max(now + HELD_NAME_GRACE);
        }
        if let Some(irc) = e.irc.as_deref_mut() {
            // A password check for the IRC door may be what it waited on.
            self.out.over.clear();
            doors::irc::after_hold(shared, &mut self.out, &e.conn, &mut e.session, irc);
            if let Some(pause) = pause_for(shared, &mut self.out, e, now) {
                // Registration went on to another check.
                e.pause = Some(pause);
                self.paused.push(id);
                return;
            }
        }
        if !e.inbuf.is_empty() {
            match apply_inbuf(shared, &mut self.out, e, now) {
                Step::Closed => {
                    e.inbuf = Vec::new();
                    e.linger_until = Some(now + LINGER);
                }
                Step::Paused => {
                    self.paused.push(id);
                    return;
                }
                Step::More => {}
            }
        }
        self.read(id);
    }

    /// Enforces deadlines: the name timeout and the end of lingering closes.
    fn tick(&mut self, now: Instant) {
        let shared = &self.shared;
        let frame_timeout = Duration::from_secs(shared.live().frame_timeout_secs);
        let mut expired = Vec::new();
        for (id, e) in &mut self.conns {
            if let Some(t) = e.linger_until {
                if now >= t {
                    e.conn.abort();
                    self.out.schedule(&e.conn);
                    expired.push(*id);
                }
            } else if e.pause.is_none()
                && frame_timeout > Duration::ZERO
                && e.partial_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= frame_timeout)
            {
                shared.metrics.error(ErrorCode::Timeout);
                let err = closing_frame(
                    &e.conn,
                    ErrorCode::Timeout,
                    "frame not finished in time; closing",
                );
                log_info!("closing {}: frame not finished in time", e.conn.peer);
                core::close(
                    shared,
                    &mut self.out,
                    &e.conn,
                    CloseReason::FrameTimeout,
                    Some(&err),
                );
                e.inbuf = Vec::new();
                e.partial_since = None;
                e.linger_until = Some(now + LINGER);
            } else if let Some(irc) = e.irc.as_deref_mut().filter(|i| i.registered()) {
                if crate::doors::irc::tick(shared, &mut self.out, &e.conn, irc, now) {
                    e.linger_until = Some(now + LINGER);
                }
            } else if let Some(t) = e.name_deadline.filter(|_| e.pause.is_none()) {
                // (Not while held: a login waiting out its delay is no
                // connection that fails to give a name.)
                if e.conn.name().is_some() {
                    e.name_deadline = None;
                } else if now >= t {
                    shared.metrics.error(ErrorCode::NotRegistered);
                    let err = closing_frame(
                        &e.conn,
                        ErrorCode::NotRegistered,
                        "no name given in time; closing",
                    );
                    core::close(
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

impl Entry {
    /// Starts or stops the unfinished-frame clock after a read: it runs
    /// from the first read that left bytes over after the last whole frame.
    fn note_partial(&mut self, frames: usize, now: Instant) {
        if self.inbuf.is_empty() {
            self.partial_since = None;
        } else if frames > 0 || self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// Lets go of read-buffer room a large frame left behind.
    fn shrink_inbuf(&mut self) {
        if self.inbuf.is_empty() {
            if self.inbuf.capacity() > 0 {
                self.inbuf = Vec::new();
            }
        } else if self.inbuf.capacity() > self.inbuf.len().max(KEEP_INBUF) * 2 {
            self.inbuf.shrink_to(self.inbuf.len().max(KEEP_INBUF));
        }
    }
}

/// Applies the whole frames in `e.inbuf`, keeping the rest there.
fn apply_inbuf(shared: &Shared, out: &mut Outbox, e: &mut Entry, now: Instant) -> Step {
    let buf = std::mem::take(&mut e.inbuf);
    let (used, frames, step) = apply(shared, out, e, &buf, now);
    e.inbuf = buf;
    e.inbuf.drain(..used.min(e.inbuf.len()));
    e.note_partial(frames, now);
    step
}

/// Decodes and applies every whole frame at the front of `buf`; returns the
/// bytes used, how many frames were whole, and how it ended. Every frame
/// counts against the rate limit: blank lines and rejected frames too.
fn apply(
    shared: &Shared,
    out: &mut Outbox,
    e: &mut Entry,
    buf: &[u8],
    now: Instant,
) -> (usize, usize, Step) {
    let mut used = 0;
    let mut frames = 0;
    while let Some(rest) = buf.get(used..) {
        if rest.is_empty() {
            break;
        }
        // Only this frame's pushes decide whether its sender pauses (a
        // LEFT queued by a close elsewhere in the batch doesn't count).
        out.over.clear();
        let one = match e.conn.door {
            Door::Native => native_one(shared, out, e, rest, now),
            Door::Irc => irc_one(shared, out, e, rest, now),
            Door::Web => match e.web.as_deref_mut() {
                Some(web) => doors::web::one(shared, out, &e.conn, &mut e.session, web, rest, now),
                None => One::Fatal,
            },
        };
        let flow = match one {
            One::Need => break,
            One::Fatal => return (buf.len(), frames, Step::Closed),
            One::Done { consumed, flow } => {
                used += consumed;
                flow
            }
        };
        frames += 1;
        if flow == Flow::Closed {
            return (used, frames, Step::Closed);
        }
        if let Some(pause) = pause_for(shared, out, e, now) {
            log_debug!(
                "pausing {}: waits for {} readers, budget {:?}",
                e.conn.peer,
                pause.waits.len(),
                pause.until.map(|t| t.saturating_duration_since(now))
            );
            e.pause = Some(pause);
            return (used, frames, Step::Paused);
        }
    }
    (used, frames, Step::More)
}

/// One native frame. Every frame counts against the rate limit: blank
/// lines and rejected frames too.
fn native_one(shared: &Shared, out: &mut Outbox, e: &mut Entry, rest: &[u8], now: Instant) -> One {
    let blank = protocol::leading_blank_lines(rest);
    if blank > 0 {
        for _ in rest.iter().take(blank).filter(|&&b| b == b'\n') {
            let flow = core::charge_other(shared, out, &e.conn, &mut e.session, now, None);
            if flow == Flow::Closed {
                return One::Fatal;
            }
        }
        return One::Done {
            consumed: blank,
            flow: Flow::Continue,
        };
    }
    match Request::decode(rest, &shared.limits) {
        Decoded::Incomplete => One::Need,
        Decoded::Frame { frame, consumed } => One::Done {
            consumed,
            flow: doors::native::handle(shared, out, &e.conn, &mut e.session, frame, now),
        },
        Decoded::Invalid { error, consumed } => One::Done {
            consumed,
            flow: core::charge_other(shared, out, &e.conn, &mut e.session, now, Some(error)),
        },
        Decoded::Fatal(error) => {
            shared.metrics.error(error.code);
            log_info!("closing {}: {}", e.conn.peer, error);
            let err = closing_frame(&e.conn, error.code, error.reason);
            core::close(shared, out, &e.conn, CloseReason::Error, Some(&err));
            One::Fatal
        }
    }
}

/// One IRC line. Blank, oversized and unparseable lines count against the
/// rate limit like any other.
fn irc_one(shared: &Shared, out: &mut Outbox, e: &mut Entry, rest: &[u8], now: Instant) -> One {
    use protocol::irc::IrcDecoded;
    let Some(irc) = e.irc.as_deref_mut() else {
        return One::Fatal;
    };
    match protocol::irc::decode(rest) {
        IrcDecoded::Incomplete => One::Need,
        IrcDecoded::Message { msg, consumed } => One::Done {
            consumed,
            flow: doors::irc::handle(shared, out, &e.conn, &mut e.session, irc, &msg, now),
        },
        IrcDecoded::Empty { consumed } | IrcDecoded::Invalid { consumed } => One::Done {
            consumed,
            flow: core::charge_other(shared, out, &e.conn, &mut e.session, now, None),
        },
        IrcDecoded::TooLong { consumed } => {
            let flow = core::charge_other(shared, out, &e.conn, &mut e.session, now, None);
            if flow == Flow::Continue {
                crate::doors::irc::too_long(shared, out, &e.conn);
            }
            One::Done { consumed, flow }
        }
        IrcDecoded::Fatal => {
            shared.metrics.error(ErrorCode::TooLong);
            log_info!("closing {}: IRC line over the limit", e.conn.peer);
            let err = closing_frame(&e.conn, ErrorCode::TooLong, "Input line was too long");
            core::close(shared, out, &e.conn, CloseReason::Error, Some(&err));
            One::Fatal
        }
    }
}

/// After a frame: should its sender stop here? Yes if it took readers past
/// `queue_bytes` (it waits for them) or put its byte budget in debt.
fn pause_for(shared: &Shared, out: &mut Outbox, e: &mut Entry, now: Instant) -> Option<Box<Pause>> {
    let debt = e.session.debt(shared, now);
    let held = e.session.take_hold();
    if out.over.is_empty() && debt.is_none() && held.is_none() {
        return None;
    }
    let waits = out
        .over
        .drain(..)
        .map(|conn| {
            let (_, drained) = conn.backlog();
            Wait {
                conn,
                drained,
                since: now,
                began: now,
            }
        })
        .collect();
    Some(Box::new(Pause {
        until: debt.map(|d| now + d),
        held,
        waits,
    }))
}
