//! One network thread: a mio poller over its share of the clients (client
//! `i` belongs to thread `i % threads`). It connects and registers them,
//! makes its senders send, and checks every message its receivers get.
//!
//! Several nodes (`--addr a,b,c`): client `i` connects to node
//! `i % nodes` ([`node_of`]), whatever its thread. A receiver tells a
//! cross-node delivery by the sender index in the payload, which is the
//! sender's client index: the same modulo, no lookup, no allocation. Same-
//! and cross-node latency go to two histograms, merged into the overall
//! one at the end. Before sending starts, client `k` asks node `k` for
//! `LIST` (every 10 ms) until it names every client ([`Shared::settle`]);
//! the IRC door has no cluster-wide list, so IRC clients don't wait.
//!
//! The hot path allocates nothing. Each thread reads into one scratch
//! buffer and decodes `MSG` frames in place with [`Event::decode`]; only the
//! tail of a frame cut by a read is copied into that connection's `carry`
//! buffer, which keeps its capacity. `SEND` frames are written straight into
//! the connection's reused output buffer.
//!
//! Closed-loop window: each sender may have at most `window * fanout`
//! deliveries outstanding, where "outstanding" is the deliveries promised
//! for its messages (the ACK's `<queued>`, or the expected fan-out while the
//! ACK is still on its way) minus the deliveries any receiver has counted
//! for it. Once per round (poll iteration) it writes whatever fits, in one
//! write, if that is at least `refill` messages (1 by default: a sliding
//! window). Receivers add to a per-sender atomic once per round; if the
//! sender lives on another thread that is asleep waiting for room, they
//! wake it.
//!
//! Doors: a native client registers with `NAME` (and in room mode then
//! `JOIN #load`) and reads frames with [`Event::decode`]; an IRC client
//! (`--door irc`) registers as [`crate::irc`] describes and reads lines
//! with `protocol::irc::decode`; a web client (`--door web`) upgrades to a
//! WebSocket first, then does what a native client does in JSON, whose
//! objects [`crate::web`] turns back into the native events a native
//! client handles.
//! All stamp and check the same payload.
//!
//! TLS (`--tls`): a connection has a [`tls::Session`] between its buffers
//! and its socket, used by this same thread: the handshake is the state
//! `Handshaking` between the TCP connect and the door's first bytes; reads
//! go through [`tls::Session::read`] where a plain read would be, into the
//! same scratch buffer, and a flush hands the whole pending output to
//! [`tls::Session::write`], so a round's `SEND`s leave as one record in
//! one write. Bytes rustls still holds count as queued output, so the
//! writable edge flushes them as it does a plain connection's.

use crate::args::{node_of, Door, Mode, Settings, ROOM};
use crate::irc::{self, Line};
use crate::payload::{self, Stamp};
use crate::rng::{pick_distinct, Rng};
use crate::shared::{Shared, NOT_STARTED};
use crate::tls;
use crate::web::{self, Upgrade};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use protocol::irc::{decode as irc_decode, IrcDecoded};
use protocol::web::ws::WsOp;
use protocol::{push_u64, Decoded, ErrorCode, Event, Limits};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Token of the thread's waker.
pub const WAKE: Token = Token(usize::MAX);

/// Open loop: stop generating for a sender whose unwritten output exceeds
/// this; its intended send times keep running, so the backlog shows up as
/// latency instead of as unbounded memory.
const MAX_PENDING_OUT: usize = 256 * 1024;

/// `ERR NAME_TAKEN` (IRC: 433) is retried this often, this many times: right
/// after a previous run against the same broker, its `lg-<n>` may still be
/// on the way out.
const NAME_RETRY_NS: u64 = 50_000_000;
const NAME_RETRIES: u32 = 60;

/// Longest sleep in `poll`: bounds how late a phase change is noticed even if
/// a wake-up were lost.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// How often a node is asked for `LIST` again until it names every client.
const LIST_RETRY_NS: u64 = 10_000_000;

/// Longest line read from the broker when nodes settle: a `USERS` line
/// names every client (under 1 MiB at [`crate::payload::MAX_CLIENTS`]).
const MAX_LIST_LINE: usize = 1 << 20;

/// Latency histogram range: 1 ns to 1 hour, 3 significant digits.
const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// Where a node's probe client (client `k` for node `k`) is in asking
/// its node whether it knows every client yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Not a probe client.
    No,
    /// `LIST` to be sent at this time (ns since the epoch).
    Due(u64),
    /// `LIST` sent, `USERS` awaited.
    Asked,
    /// Its node listed every client.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// TCP connect in progress.
    Connecting,
    /// `--tls`: connected, the TLS handshake under way.
    Handshaking,
    /// Web: `GET /ws` sent, waiting for `101 Switching Protocols`.
    Upgrading,
    /// `NAME` sent, waiting for `OK NAME` (IRC: `NICK`/`USER` sent,
    /// waiting for 001).
    Registering,
    /// Room mode: `JOIN #load` sent, waiting for `OK JOIN` (IRC, every
    /// mode: `[JOIN #load +] PING :lg-ready` sent, waiting for its PONG).
    Joining,
    /// Registered.
    Ready,
    /// Gone; events are ignored.
    Closed,
}

struct Conn {
    /// Client index (`lg-<idx>`).
    idx: u32,
    /// The node it connects to (index into `Worker::nodes`).
    node: u32,
    /// Index into `Worker::conns` (its poll token).
    token: usize,
    /// `NAME` attempts refused with `NAME_TAKEN` so far.
    name_tries: u32,
    stream: TcpStream,
    state: State,
    /// Bytes of a frame that a read cut in two.
    carry: Vec<u8>,
    /// Bytes to write, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Per sender index: last sequence number seen + 1 (0 = none yet).
    seen: Vec<u32>,
    /// Index into `Worker::senders` if this client sends.
    sender: Option<usize>,
    /// Web: the WebSocket's upgrade key, fragments and masks.
    web: web::Session,
    /// `--tls`: the connection's TLS session.
    tls: Option<tls::Session>,
    /// Whether it asks its node for `LIST` before sending starts.
    probe: Probe,
}

struct Sender {
    /// Index into `Worker::conns`.
    conn: usize,
    /// Client index.
    idx: u32,
    /// Messages written so far (= the next sequence number).
    seq: u64,
    /// ACK or ERR replies received.
    replies: u64,
    /// Sum of ACK `<queued>`.
    queued: u64,
    /// Open loop: offset of this sender's first intended send time.
    phase_ns: u64,
}

/// Receive-side counters and the latency histogram.
struct Rx {
    received: u64,
    duplicates: u64,
    reordered: u64,
    foreign: u64,
    /// Messages that came before the run started (room history).
    replayed: u64,
    protocol_errors: u64,
    left: u64,
    disconnects: u64,
    send_errors: u64,
    ack_mismatches: u64,
    window_deliveries: u64,
    window_bytes: u64,
    /// Latency of every delivery, or of same-node ones when there are
    /// several nodes.
    hist: Histogram<u64>,
    /// Several nodes: latency of deliveries whose sender is on another
    /// node than the receiver.
    hist_cross: Option<Histogram<u64>>,
    /// Nodes the clients are spread over (at least 1).
    nodes: u32,
    /// Clients in the run (`lg-0` to `lg-<clients - 1>`).
    clients: u32,
    /// The first refusal of a message, as the broker put it.
    first_send_error: Option<String>,
    /// An ACK owes the whole fan-out, not its `<queued>`
    /// ([`Settings::ack_owes_fanout`]).
    owe_fanout: bool,
    /// Per sender index: deliveries counted since the last flush.
    pending: Vec<u64>,
    /// Sender indexes with a non-zero `pending`.
    dirty: Vec<u32>,
    warm_end: u64,
    send_end: u64,
    fanout: u64,
    stopping: bool,
    /// Clients registered since the worker last looked.
    handshakes_done: usize,
    /// `(when, token)`: `NAME` to send again after `NAME_TAKEN`.
    name_retries: Vec<(u64, usize)>,
    /// Sending has started (LEFT frames before that are old news).
    started: bool,
    /// The clients' door.
    door: Door,
    /// Room mode: clients join [`ROOM`] before they count as ready.
    room: bool,
}

/// What one network thread counted, handed to the monitor at the end.
#[derive(Debug)]
pub struct ThreadResult {
    /// Messages written.
    pub sent: u64,
    /// ACK/ERR replies.
    pub replies: u64,
    /// Sum of ACK `<queued>`.
    pub expected: u64,
    /// Loadgen MSGs received.
    pub received: u64,
    /// Same sequence number twice in a row for one pair.
    pub duplicates: u64,
    /// Older sequence number than one already seen for one pair.
    pub reordered: u64,
    /// MSGs without a loadgen payload.
    pub foreign: u64,
    /// Malformed broker frames.
    pub protocol_errors: u64,
    /// LEFT frames naming one of our clients.
    pub left: u64,
    /// Registered connections lost during the run.
    pub disconnects: u64,
    /// ERR replies to SEND.
    pub send_errors: u64,
    /// ACKs with `<queued>` other than the fan-out.
    pub ack_mismatches: u64,
    /// Deliveries that arrived inside the measured window.
    pub window_deliveries: u64,
    /// Their payload bytes.
    pub window_bytes: u64,
    /// Latency (ns) of deliveries of messages sent in the measured window.
    pub hist: Histogram<u64>,
    /// Several nodes: the part of `hist` where sender and receiver were on
    /// the same node.
    pub hist_same: Option<Histogram<u64>>,
    /// Several nodes: the part of `hist` where they were on different nodes.
    pub hist_cross: Option<Histogram<u64>>,
    /// The first refusal of a message (`ERR …`, an IRC numeric).
    pub first_send_error: Option<String>,
}

/// One broker node the clients connect to.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its address for the clients' door.
    pub addr: SocketAddr,
    /// `--tls`: what every connection's session to it starts from.
    pub tls: Option<tls::Client>,
}

/// A network thread's state.
pub struct Worker {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    /// The nodes; client `i` connects to `nodes[i % nodes.len()]`.
    nodes: Vec<Node>,
    limits: Limits,
    conns: Vec<Conn>,
    senders: Vec<Sender>,
    /// Client indexes this thread still has to connect.
    to_connect: std::vec::IntoIter<u32>,
    /// Tokens of this thread's probe clients (see [`Probe`]).
    probes: Vec<usize>,
    handshaking: usize,
    rx: Rx,
    scratch: Vec<u8>,
    rng: Rng,
    perm: Vec<u32>,
    started: bool,
    start_ns: u64,
}

/// An empty latency histogram (ns): 1 ns to 1 hour, 3 significant digits.
pub fn latency_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
}

impl Worker {
    /// A worker for thread `id` of `settings.threads`, using `poll` (whose
    /// waker is `shared.wakers[id]`), connecting each client to its node of
    /// `nodes` (not empty) and recording latency into `hist`.
    pub fn new(
        id: usize,
        poll: Poll,
        shared: Arc<Shared>,
        settings: Arc<Settings>,
        nodes: Vec<Node>,
        hist: Histogram<u64>,
    ) -> Worker {
        let mine: Vec<u32> = (0..settings.clients)
            .filter(|i| i % settings.threads == id)
            .map(|i| i as u32)
            .collect();
        // Nodes settle by `LIST` (not over IRC): its answer may be long.
        let settles = nodes.len() > 1 && settings.door != Door::Irc;
        let limits = Limits {
            max_line: if settles {
                MAX_LIST_LINE
            } else {
                Limits::default().max_line
            },
            ..Limits::default()
        };
        let senders = settings.senders;
        let clients = settings.clients;
        let rx = Rx {
            received: 0,
            duplicates: 0,
            reordered: 0,
            foreign: 0,
            replayed: 0,
            protocol_errors: 0,
            left: 0,
            disconnects: 0,
            send_errors: 0,
            ack_mismatches: 0,
            window_deliveries: 0,
            window_bytes: 0,
            hist_cross: (nodes.len() > 1).then(|| Histogram::new_from(&hist)),
            hist,
            nodes: u32::try_from(nodes.len()).unwrap_or(u32::MAX).max(1),
            clients: u32::try_from(clients).unwrap_or(u32::MAX),
            first_send_error: None,
            owe_fanout: settings.ack_owes_fanout(),
            pending: vec![0; senders],
            dirty: Vec::with_capacity(senders),
            warm_end: NOT_STARTED,
            send_end: NOT_STARTED,
            fanout: settings.fanout(),
            stopping: false,
            handshakes_done: 0,
            name_retries: Vec::new(),
            started: false,
            door: settings.door,
            room: settings.mode == Mode::Room,
        };
        Worker {
            id,
            poll,
            shared,
            nodes,
            // Two whole frames fit, so a cut frame plus a fresh read always do.
            scratch: vec![0; scratch_len(&limits, settings.door)],
            limits,
            conns: Vec::with_capacity(mine.len()),
            senders: Vec::new(),
            to_connect: mine.into_iter(),
            probes: Vec::new(),
            handshaking: 0,
            rx,
            rng: Rng::new(id as u64 ^ u64::from(std::process::id()) << 20),
            perm: (0..clients as u32).collect(),
            settings,
            started: false,
            start_ns: NOT_STARTED,
        }
    }

    /// Runs until the monitor says stop; returns the counts. Connections
    /// stay open until the worker is dropped.
    pub fn run(&mut self) -> ThreadResult {
        let live = self.id;
        if let (Some(t), Some(tid)) = (self.shared.threads.get(live), crate::procfs::current_tid())
        {
            t.0.tid.store(tid, Ordering::Release);
        }
        let mut events = Events::with_capacity(1024);
        let mut done_sending = false;
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            self.connect_more();
            self.check_phase();
            let now = self.shared.now_ns();
            if !self.started
                && !self.probes.is_empty()
                && self.shared.settle.load(Ordering::Acquire)
            {
                self.ask_lists(now);
            }
            if !self.rx.name_retries.is_empty() {
                self.retry_names(now);
            }
            let (blocked, mut next_due) = self.pump_all();
            if blocked {
                // Announce that we sleep for window room, then look once more:
                // a receiver that credited us before seeing the flag has
                // already made room (SeqCst on both sides; see `flush_delivered`).
                if let Some(t) = self.shared.threads.get(live) {
                    t.0.waiting.store(true, Ordering::SeqCst);
                }
                (_, next_due) = self.pump_all();
            }
            let timeout = self.timeout(next_due);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.shared.fail(format!("poll failed: {e}"));
                    break;
                }
            }
            if let Some(t) = self.shared.threads.get(live) {
                t.0.waiting.store(false, Ordering::Relaxed);
            }
            // Senders on other threads may have started while we slept:
            // classify what we receive with the right phase times.
            self.check_phase();
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKE {
                    continue;
                }
                self.on_event(token.0, ev.is_read_closed() || ev.is_error());
            }
            self.flush_delivered();
            if !done_sending && self.started && self.shared.now_ns() >= self.rx.send_end {
                done_sending = true;
                if let Some(t) = self.shared.threads.get(live) {
                    // Publish the final sent count before the flag.
                    self.publish();
                    t.0.done_sending.store(true, Ordering::Release);
                }
            }
            self.publish();
        }
        self.rx.stopping = true;
        self.result()
    }

    /// Opens connections up to the handshake limit.
    fn connect_more(&mut self) {
        // At most `--handshakes` connecting or registering at once: keeps
        // the server's accept backlog from overflowing (which costs
        // SYN / SYN-ACK retransmits of a second and more) when thousands of
        // clients start together.
        while self.handshaking < self.settings.handshakes {
            let Some(idx) = self.to_connect.next() else {
                return;
            };
            let token = self.conns.len();
            let node = node_of(idx, self.rx.nodes);
            let Some(target) = self.nodes.get(node as usize) else {
                self.shared
                    .fail(format!("lg-{idx}: no address for node {node}"));
                continue;
            };
            let session = match target.tls.as_ref().map(tls::Client::session).transpose() {
                Ok(s) => s,
                Err(e) => {
                    self.shared.fail(format!("lg-{idx}: TLS: {e}"));
                    continue;
                }
            };
            let mut stream = match TcpStream::connect(target.addr) {
                Ok(s) => s,
                Err(e) => {
                    self.shared
                        .fail(format!("lg-{idx}: connect to {}: {e}", target.addr));
                    continue;
                }
            };
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.shared
                    .fail(format!("lg-{idx}: register with poller: {e}"));
                continue;
            }
            let sender = if (idx as usize) < self.settings.senders {
                self.senders.push(Sender {
                    conn: token,
                    idx,
                    seq: 0,
                    replies: 0,
                    queued: 0,
                    phase_ns: 0,
                });
                Some(self.senders.len() - 1)
            } else {
                None
            };
            // Client k < nodes is on node k: it asks that node for LIST.
            let settles = self.nodes.len() > 1 && self.settings.door != Door::Irc;
            let probe = if settles && idx < self.rx.nodes {
                self.probes.push(token);
                Probe::Due(0)
            } else {
                Probe::No
            };
            self.conns.push(Conn {
                probe,
                idx,
                node,
                token,
                name_tries: 0,
                stream,
                state: State::Connecting,
                carry: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                seen: vec![0; self.settings.senders],
                sender,
                web: web::Session::new(self.rng.next_u64()),
                tls: session,
            });
            self.handshaking += 1;
        }
    }

    /// Sends `NAME` again for clients whose retry time has come.
    fn retry_names(&mut self, now: u64) {
        let mut i = 0;
        while let Some(&(due, token)) = self.rx.name_retries.get(i) {
            if due > now {
                i += 1;
                continue;
            }
            self.rx.name_retries.swap_remove(i);
            if let Some(conn) = self.conns.get_mut(token) {
                if conn.state == State::Registering {
                    match self.settings.door {
                        Door::Native | Door::Web => push_name(conn, self.settings.door),
                        Door::Irc => irc::push_nick(&mut conn.out, conn.idx),
                    }
                    flush(conn);
                }
            }
        }
    }

    /// Sends `LIST` for each probe client whose time has come.
    fn ask_lists(&mut self, now: u64) {
        for &token in &self.probes {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.state != State::Ready || !matches!(conn.probe, Probe::Due(t) if t <= now) {
                continue;
            }
            if self.settings.door == Door::Web {
                web::push_list(&mut conn.out, conn.web.next_mask());
            } else {
                conn.out.extend_from_slice(b"LIST\n");
            }
            conn.probe = Probe::Asked;
            flush(conn);
        }
    }

    /// Picks up the phase times once the monitor has published them.
    fn check_phase(&mut self) {
        if self.started {
            return;
        }
        let start = self.shared.start_ns.load(Ordering::Acquire);
        if start == NOT_STARTED {
            return;
        }
        self.started = true;
        self.rx.started = true;
        self.start_ns = start;
        self.rx.warm_end = self.shared.warm_end_ns.load(Ordering::Acquire);
        self.rx.send_end = self.shared.send_end_ns.load(Ordering::Acquire);
        if let Some(rate) = self.settings.rate {
            // Stagger open-loop senders evenly over one interval.
            let interval = 1e9 / rate;
            let k = self.settings.senders as f64;
            for s in &mut self.senders {
                s.phase_ns = (interval * f64::from(s.idx) / k) as u64;
            }
        }
    }

    fn timeout(&self, next_due: Option<u64>) -> Duration {
        let now = self.shared.now_ns();
        let mut t = MAX_SLEEP;
        if self.started && now < self.rx.send_end {
            t = t.min(Duration::from_nanos(self.rx.send_end - now));
        }
        if let Some(due) = next_due {
            t = t.min(Duration::from_nanos(due.saturating_sub(now)));
        }
        t
    }

    /// Lets every sender send what it may. Returns whether some closed-loop
    /// sender is out of window room, and the earliest open-loop due time.
    fn pump_all(&mut self) -> (bool, Option<u64>) {
        let mut blocked = false;
        let mut next_due: Option<u64> = None;
        for s in 0..self.senders.len() {
            // Read the clock for each sender: a closed-loop message is
            // stamped with the time it is written, and writing a round's
            // worth of senders takes a millisecond or more.
            let now = self.shared.now_ns();
            let (b, due) = self.pump(s, now);
            blocked |= b;
            if let Some(d) = due {
                next_due = Some(next_due.map_or(d, |n| n.min(d)));
            }
        }
        (blocked, next_due)
    }

    /// Writes as many messages for sender `s` as its window or schedule
    /// allows, then flushes.
    fn pump(&mut self, s: usize, now: u64) -> (bool, Option<u64>) {
        let Worker {
            conns,
            senders,
            shared,
            settings,
            rng,
            perm,
            rx,
            start_ns,
            started,
            ..
        } = self;
        if !*started || now >= rx.send_end {
            return (false, None);
        }
        let Some(sender) = senders.get_mut(s) else {
            return (false, None);
        };
        let Some(conn) = conns.get_mut(sender.conn) else {
            return (false, None);
        };
        if conn.state != State::Ready {
            return (false, None);
        }
        // Per-pair order is tracked in u32: stop a sender long before wrap.
        const MAX_SEQ: u64 = u32::MAX as u64 - 1;
        let mut blocked = false;
        let mut next_due = None;
        let before = conn.out.len();
        match settings.rate {
            None => {
                let fanout = rx.fanout.max(1);
                let delivered = shared
                    .delivered
                    .get(sender.idx as usize)
                    .map_or(0, |d| d.0.load(Ordering::SeqCst));
                let unacked = sender.seq - sender.replies;
                let promised = sender.queued + unacked * fanout;
                let outstanding = promised.saturating_sub(delivered);
                let cap = settings.window * fanout;
                let room = cap.saturating_sub(outstanding) / fanout;
                let room = room.min(MAX_SEQ.saturating_sub(sender.seq));
                let room = if room < settings.refill { 0 } else { room };
                for _ in 0..room {
                    write_send(conn, sender, settings, rng, perm, now);
                }
                blocked = room == 0;
            }
            Some(rate) => {
                let interval = 1e9 / rate;
                loop {
                    let due = self_due(*start_ns, sender, interval);
                    if due > now || due >= rx.send_end || sender.seq >= MAX_SEQ {
                        if due < rx.send_end {
                            next_due = Some(due);
                        }
                        break;
                    }
                    if conn.out.len() - conn.out_pos > MAX_PENDING_OUT {
                        // Writing is behind; the socket's writable event
                        // resumes us, a short sleep otherwise.
                        next_due = Some(now + 1_000_000);
                        break;
                    }
                    write_send(conn, sender, settings, rng, perm, due);
                }
            }
        }
        if conn.out.len() > before {
            flush(conn);
        }
        (blocked, next_due)
    }

    /// Handles a readiness event; `peer_closed`: the poller saw the
    /// broker's FIN or an error, so reading must go on to the end.
    fn on_event(&mut self, token: usize, peer_closed: bool) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let addr = node_addr(&self.nodes, conn);
        match conn.state {
            State::Closed => return,
            State::Connecting => match connected(&conn.stream) {
                Ok(false) => return,
                Ok(true) => {
                    let _ = conn.stream.set_nodelay(true);
                    if conn.tls.is_some() {
                        // The ClientHello goes out with the flush below;
                        // the door's first bytes wait for the handshake.
                        conn.state = State::Handshaking;
                    } else {
                        begin(conn, self.settings.door, addr);
                    }
                }
                Err(e) => {
                    let why = format!("lg-{}: connect to {addr}: {e}", conn.idx);
                    self.close(token, Some(why));
                    return;
                }
            },
            State::Handshaking
            | State::Upgrading
            | State::Registering
            | State::Joining
            | State::Ready => {}
        }
        self.read(token, peer_closed);
        if let Some(conn) = self.conns.get_mut(token) {
            let shaken = conn.tls.as_ref().is_some_and(|t| !t.is_handshaking());
            if conn.state == State::Handshaking && shaken {
                begin(conn, self.settings.door, addr);
            }
            if conn.state != State::Closed && has_output(conn) {
                flush(conn);
            }
        }
        // A registration frees a handshake slot: connect the next client.
        let done = std::mem::take(&mut self.rx.handshakes_done);
        if done > 0 {
            self.handshaking = self.handshaking.saturating_sub(done);
            self.connect_more();
        }
        // Output may have room again: an open-loop sender resumes here. (A
        // closed-loop sender waits for the next round: refilling on every
        // event would split its refill over more writes.)
        if self.settings.rate.is_some() {
            if let Some(s) = self.conns.get(token).and_then(|c| c.sender) {
                let now = self.shared.now_ns();
                let _ = self.pump(s, now);
            }
        }
    }

    /// Reads until the socket is empty, handling every complete frame. A
    /// read shorter than the buffer emptied it: edge-triggered polling
    /// reports any later data, so the read that would only say WouldBlock
    /// is skipped (it was half of all reads). A FIN already queued brings no
    /// new event, so with `peer_closed` reading goes on to the end.
    fn read(&mut self, token: usize, peer_closed: bool) {
        let Worker {
            conns,
            senders,
            rx,
            scratch,
            shared,
            limits,
            nodes,
            ..
        } = self;
        let Some(conn) = conns.get_mut(token) else {
            return;
        };
        let addr = node_addr(nodes, conn);
        let mut len = conn.carry.len();
        match scratch.get_mut(..len) {
            Some(dst) => dst.copy_from_slice(&conn.carry),
            None => {
                conn.state = State::Closed;
                rx.protocol_errors += 1;
                return;
            }
        }
        conn.carry.clear();
        let mut closed: Option<String> = None;
        loop {
            let Some(free) = scratch.get_mut(len..).filter(|f| !f.is_empty()) else {
                // A frame larger than two maximum frames can't happen: the
                // decoder reports Fatal first.
                rx.protocol_errors += 1;
                closed = Some("frame larger than the read buffer".into());
                break;
            };
            // With TLS a short read of plaintext says nothing about the
            // socket: the session tells whether its last socket read
            // emptied it.
            let got = match conn.tls.as_mut() {
                None => conn.stream.read(free).map(|n| (n, n < free.len())),
                Some(t) => t
                    .read(&mut conn.stream, free, peer_closed)
                    .map(|n| (n, t.drained())),
            };
            match got {
                Ok((0, _)) => {
                    closed = Some(format!("lg-{}: the broker closed the connection", conn.idx));
                    break;
                }
                Ok((n, short)) => {
                    let drained = short && !peer_closed;
                    len += n;
                    let now = shared.now_ns();
                    let data = scratch.get(..len).unwrap_or_default();
                    let (used, stop) = match rx.door {
                        Door::Native => handle_frames(data, limits, conn, senders, rx, shared, now),
                        Door::Irc => handle_lines(data, conn, senders, rx, shared, now),
                        Door::Web => handle_ws(data, conn, senders, rx, shared, now),
                    };
                    scratch.copy_within(used..len, 0);
                    len -= used;
                    if let Some(why) = stop {
                        closed = Some(why);
                        break;
                    }
                    if drained {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if conn.state == State::Handshaking => {
                    closed = Some(format!("lg-{}: TLS handshake with {addr}: {e}", conn.idx));
                    break;
                }
                Err(e) => {
                    closed = Some(format!("lg-{}: read: {e}", conn.idx));
                    break;
                }
            }
        }
        if let Some(tail) = scratch.get(..len) {
            conn.carry.extend_from_slice(tail);
        }
        if let Some(why) = closed {
            self.close(token, Some(why));
        }
    }

    fn close(&mut self, token: usize, why: Option<String>) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let was = conn.state;
        if was == State::Closed {
            return;
        }
        conn.state = State::Closed;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        let why = why.unwrap_or_else(|| format!("lg-{} closed", conn.idx));
        match was {
            State::Connecting
            | State::Handshaking
            | State::Upgrading
            | State::Registering
            | State::Joining => {
                self.handshaking = self.handshaking.saturating_sub(1);
                self.shared.fail(why);
            }
            State::Ready => {
                if !self.rx.stopping {
                    self.rx.disconnects += 1;
                    if self.rx.disconnects == 1 {
                        self.shared.fail(why);
                    }
                }
            }
            State::Closed => {}
        }
    }

    /// Adds this iteration's per-sender delivery counts to the shared window
    /// credit, waking sleeping owner threads.
    fn flush_delivered(&mut self) {
        let threads = self.settings.threads;
        let mut wake: u32 = 0;
        for &s in &self.rx.dirty {
            let Some(n) = self.rx.pending.get_mut(s as usize) else {
                continue;
            };
            if let Some(d) = self.shared.delivered.get(s as usize) {
                // SeqCst pairs with the owner's `waiting` store: either it
                // sees this credit or we see its flag.
                d.0.fetch_add(*n, Ordering::SeqCst);
            }
            *n = 0;
            let owner = s as usize % threads;
            if owner != self.id {
                wake |= 1 << owner;
            }
        }
        self.rx.dirty.clear();
        for owner in 0..threads {
            if wake & (1 << owner) == 0 {
                continue;
            }
            let sleeping = self
                .shared
                .threads
                .get(owner)
                .is_some_and(|t| t.0.waiting.load(Ordering::SeqCst));
            if sleeping {
                if let Some(w) = self.shared.wakers.get(owner) {
                    let _ = w.wake();
                }
            }
        }
    }

    fn totals(&self) -> (u64, u64, u64) {
        self.senders.iter().fold((0, 0, 0), |(s, r, q), x| {
            (s + x.seq, r + x.replies, q + x.queued)
        })
    }

    /// Republishes the live counters for the monitor.
    fn publish(&self) {
        let Some(t) = self.shared.threads.get(self.id) else {
            return;
        };
        let (sent, replies, expected) = self.totals();
        let t = &t.0;
        t.sent.store(sent, Ordering::Relaxed);
        t.expected.store(expected, Ordering::Relaxed);
        t.replies.store(replies, Ordering::Release);
        t.received.store(self.rx.received, Ordering::Relaxed);
        t.unique
            .store(self.rx.received - self.rx.duplicates, Ordering::Relaxed);
    }

    fn result(&mut self) -> ThreadResult {
        let (sent, replies, expected) = self.totals();
        let rx = &mut self.rx;
        let empty = Histogram::new_from(&rx.hist);
        let first = std::mem::replace(&mut rx.hist, empty);
        // Several nodes: `hist` held the same-node deliveries; the overall
        // histogram is both.
        let (hist, hist_same, hist_cross) = match rx.hist_cross.take() {
            None => (first, None, None),
            Some(cross) => {
                let mut all = first.clone();
                let _ = all.add(&cross);
                (all, Some(first), Some(cross))
            }
        };
        ThreadResult {
            sent,
            replies,
            expected,
            received: rx.received,
            duplicates: rx.duplicates,
            reordered: rx.reordered,
            foreign: rx.foreign,
            protocol_errors: rx.protocol_errors,
            left: rx.left,
            disconnects: rx.disconnects,
            send_errors: rx.send_errors,
            ack_mismatches: rx.ack_mismatches,
            window_deliveries: rx.window_deliveries,
            window_bytes: rx.window_bytes,
            hist,
            hist_same,
            hist_cross,
            first_send_error: rx.first_send_error.take(),
        }
    }
}

/// The address of `conn`'s node (for the web upgrade's `Host` and for
/// error messages).
fn node_addr(nodes: &[Node], conn: &Conn) -> SocketAddr {
    match nodes.get(conn.node as usize).or(nodes.first()) {
        Some(n) => n.addr,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// The intended send time of a sender's next message in open loop.
fn self_due(start_ns: u64, s: &Sender, interval_ns: f64) -> u64 {
    start_ns
        .saturating_add(s.phase_ns)
        .saturating_add((s.seq as f64 * interval_ns) as u64)
}

/// Queues what a client of `door` says first, once connected (and past
/// the TLS handshake): `NAME`, IRC's `NICK`/`USER`, or the WebSocket
/// upgrade to `addr`.
fn begin(conn: &mut Conn, door: Door, addr: SocketAddr) {
    conn.state = State::Registering;
    match door {
        Door::Native => push_name(conn, Door::Native),
        Door::Irc => irc::push_register(&mut conn.out, conn.idx),
        Door::Web => {
            // NAME follows the 101 (see `handle_ws`).
            let key = web::new_key();
            conn.web.accept = web::accept_for(&key);
            web::push_upgrade(&mut conn.out, &addr.to_string(), &key);
            conn.state = State::Upgrading;
        }
    }
}

/// Whether `conn` has output queued: bytes not yet handed on, or records
/// its TLS session holds for the socket.
fn has_output(conn: &Conn) -> bool {
    conn.out.len() > conn.out_pos || conn.tls.as_ref().is_some_and(tls::Session::wants_write)
}

/// Queues `NAME lg-<idx>` (web: `{"op":"name",...}`).
fn push_name(conn: &mut Conn, door: Door) {
    if door == Door::Web {
        web::push_name(&mut conn.out, conn.idx, conn.web.next_mask());
        return;
    }
    conn.out.extend_from_slice(b"NAME lg-");
    push_u64(&mut conn.out, u64::from(conn.idx));
    conn.out.push(b'\n');
}

/// Queues `JOIN #load` (web: `{"op":"join",...}`).
fn push_join(conn: &mut Conn, door: Door) {
    if door == Door::Web {
        web::push_join(&mut conn.out, ROOM, conn.web.next_mask());
        return;
    }
    conn.out.extend_from_slice(b"JOIN ");
    conn.out.extend_from_slice(ROOM.as_bytes());
    conn.out.push(b'\n');
}

/// The read buffer: two of the largest frames the door can send, so a
/// frame cut by a read plus a fresh read always fit.
fn scratch_len(limits: &Limits, door: Door) -> usize {
    let frame = match door {
        Door::Web => web::MAX_FRAME.max(web::MAX_HEAD),
        Door::Native | Door::Irc => limits.max_frame(),
    };
    frame.saturating_mul(2).max(256 * 1024)
}

/// Counts `conn` as registered (and in the room, in room mode): sending
/// starts once every client is.
fn ready(conn: &mut Conn, rx: &mut Rx, shared: &Shared, now: u64) {
    conn.state = State::Ready;
    rx.handshakes_done += 1;
    shared.registered.fetch_add(1, Ordering::AcqRel);
    shared.last_registered_ns.fetch_max(now, Ordering::AcqRel);
}

/// Whether a non-blocking connect has finished (`Ok(false)`: not yet).
fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Appends one `SEND` (IRC: `PRIVMSG`; web: `{"op":"send",...}` in a
/// text frame) with a fresh payload for `sender`.
fn write_send(
    conn: &mut Conn,
    sender: &mut Sender,
    settings: &Settings,
    rng: &mut Rng,
    perm: &mut [u32],
    send_ns: u64,
) {
    if conn.out_pos > 0 && conn.out_pos == conn.out.len() {
        conn.out.clear();
        conn.out_pos = 0;
    }
    let stamp = Stamp {
        sender: sender.idx,
        seq: sender.seq,
        send_ns,
    };
    let out = &mut conn.out;
    match settings.door {
        Door::Native => {
            out.extend_from_slice(b"SEND ");
            push_targets(out, Door::Native, settings, stamp.sender, rng, perm);
            out.push(b' ');
            push_u64(out, settings.size as u64);
            out.push(b'\n');
            payload::write(out, stamp, settings.size);
            out.push(b'\n');
        }
        Door::Irc => {
            out.extend_from_slice(b"PRIVMSG ");
            push_targets(out, Door::Irc, settings, stamp.sender, rng, perm);
            // The payload is printable ASCII and at most `irc::MAX_SIZE`
            // bytes: it goes into the trailing param as it is.
            out.extend_from_slice(b" :");
            payload::write(out, stamp, settings.size);
            out.extend_from_slice(b"\r\n");
            // No ACK will come: the message is owed to its whole fan-out now.
            sender.replies += 1;
            sender.queued += settings.fanout();
        }
        Door::Web => {
            // The payload is digits, `:` and `.`: a JSON string as it is.
            web::push_text(out, conn.web.next_mask(), |out| {
                out.extend_from_slice(br#"{"op":"send","to":"#);
                push_targets(out, Door::Web, settings, stamp.sender, rng, perm);
                out.extend_from_slice(br#","text":""#);
                payload::write(out, stamp, settings.size);
                out.extend_from_slice(br#""}"#);
            });
        }
    }
    sender.seq += 1;
}

/// Appends whom one message of client `me` goes to, as `door` writes it:
/// natively `*`, `#load`, `lg-3` or `lg-3,lg-9`; over IRC `#all` for
/// everyone; on the web JSON strings, and a list for several names.
fn push_targets(
    out: &mut Vec<u8>,
    door: Door,
    settings: &Settings,
    me: u32,
    rng: &mut Rng,
    perm: &mut [u32],
) {
    let quote = |out: &mut Vec<u8>| {
        if door == Door::Web {
            out.push(b'"');
        }
    };
    match settings.mode {
        Mode::All => out.extend_from_slice(match door {
            Door::Native => b"*",
            Door::Irc => b"#all",
            Door::Web => br#""*""#,
        }),
        Mode::Room => {
            quote(out);
            out.extend_from_slice(ROOM.as_bytes());
            quote(out);
        }
        Mode::Direct => {
            let others = settings.clients as u64 - 1;
            let mut t = rng.below(others) as u32;
            if t >= me {
                t += 1;
            }
            quote(out);
            out.extend_from_slice(b"lg-");
            push_u64(out, u64::from(t));
            quote(out);
        }
        Mode::Multi => {
            if door == Door::Web {
                out.push(b'[');
            }
            let mut first = true;
            pick_distinct(rng, perm, me, settings.targets, |t| {
                if !first {
                    out.push(b',');
                }
                first = false;
                quote(out);
                out.extend_from_slice(b"lg-");
                push_u64(out, u64::from(t));
                quote(out);
            });
            if door == Door::Web {
                out.push(b']');
            }
        }
    }
}

/// Writes queued output until done or WouldBlock. Over TLS all of it goes
/// to the session at once, which encrypts it into as few records as its
/// size allows and writes them in one vectored call.
fn flush(conn: &mut Conn) {
    match conn.tls.as_mut() {
        Some(t) => {
            let pending = conn.out.get(conn.out_pos..).unwrap_or_default();
            // An error is followed by a read error or EOF, which closes
            // and counts the connection (as a plain write's below).
            if let Ok(n) = t.write(&mut conn.stream, pending) {
                conn.out_pos += n;
            }
        }
        None => {
            while let Some(pending) = conn.out.get(conn.out_pos..).filter(|p| !p.is_empty()) {
                match conn.stream.write(pending) {
                    Ok(0) => break,
                    Ok(n) => conn.out_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // A write error is followed by a read error or EOF,
                    // which closes and counts the connection.
                    Err(_) => break,
                }
            }
        }
    }
    if conn.out_pos == conn.out.len() {
        conn.out.clear();
        conn.out_pos = 0;
    } else if conn.out_pos > MAX_PENDING_OUT {
        // Keep the buffer from creeping: drop what's written (a memmove).
        conn.out.drain(..conn.out_pos);
        conn.out_pos = 0;
    }
}

/// Decodes and handles every complete frame in `data`; returns the bytes
/// used and, if the connection must close, why.
fn handle_frames(
    data: &[u8],
    limits: &Limits,
    conn: &mut Conn,
    senders: &mut [Sender],
    rx: &mut Rx,
    shared: &Shared,
    now: u64,
) -> (usize, Option<String>) {
    let mut pos = 0;
    while let Some(rest) = data.get(pos..) {
        match Event::decode(rest, limits) {
            Decoded::Incomplete => break,
            Decoded::Frame { frame, consumed } => {
                pos += consumed;
                if let Some(why) = on_frame(frame, conn, senders, rx, shared, now) {
                    return (pos, Some(why));
                }
            }
            Decoded::Invalid { consumed, .. } => {
                pos += consumed;
                rx.protocol_errors += 1;
            }
            Decoded::Fatal(e) => {
                rx.protocol_errors += 1;
                return (
                    pos,
                    Some(format!("lg-{}: unreadable broker stream: {e}", conn.idx)),
                );
            }
        }
    }
    (pos, None)
}

/// The IRC door's [`handle_frames`]: decodes and handles every complete
/// line in `data`; returns the bytes used and, if the connection must close,
/// why.
fn handle_lines(
    data: &[u8],
    conn: &mut Conn,
    senders: &mut [Sender],
    rx: &mut Rx,
    shared: &Shared,
    now: u64,
) -> (usize, Option<String>) {
    let mut pos = 0;
    while let Some(rest) = data.get(pos..) {
        match irc_decode(rest) {
            IrcDecoded::Incomplete => break,
            IrcDecoded::Message { msg, consumed } => {
                pos += consumed;
                if let Some(why) = on_line(irc::classify(&msg), conn, senders, rx, shared, now) {
                    return (pos, Some(why));
                }
            }
            IrcDecoded::Empty { consumed } => pos += consumed,
            IrcDecoded::TooLong { consumed } | IrcDecoded::Invalid { consumed } => {
                pos += consumed;
                rx.protocol_errors += 1;
            }
            IrcDecoded::Fatal => {
                rx.protocol_errors += 1;
                return (
                    pos,
                    Some(format!(
                        "lg-{}: unreadable IRC stream (no line end)",
                        conn.idx
                    )),
                );
            }
        }
    }
    (pos, None)
}

/// The web door's [`handle_frames`]: reads the answer to the upgrade
/// first (and sends `NAME` once it came), then decodes and handles every
/// complete WebSocket frame in `data`; returns the bytes used and, if the
/// connection must close, why.
fn handle_ws(
    data: &[u8],
    conn: &mut Conn,
    senders: &mut [Sender],
    rx: &mut Rx,
    shared: &Shared,
    now: u64,
) -> (usize, Option<String>) {
    let mut pos = 0;
    if conn.state == State::Upgrading {
        match web::parse_upgrade(data, &conn.web.accept) {
            Upgrade::Incomplete => return (0, None),
            Upgrade::Refused(why) => {
                let why = format!("lg-{}: WebSocket upgrade refused: {why}", conn.idx);
                return (data.len(), Some(why));
            }
            Upgrade::Accepted { consumed } => {
                pos = consumed;
                conn.web.accept = String::new();
                conn.state = State::Registering;
                push_name(conn, Door::Web);
            }
        }
    }
    while let Some(rest) = data.get(pos..) {
        let (op, fin, payload) = match web::decode_frame(rest) {
            web::Frame::Incomplete => break,
            web::Frame::Fatal(why) => {
                rx.protocol_errors += 1;
                let why = format!("lg-{}: unreadable WebSocket stream: {why}", conn.idx);
                return (pos, Some(why));
            }
            web::Frame::Whole {
                op,
                fin,
                payload,
                consumed,
            } => {
                pos += consumed;
                (op, fin, payload)
            }
        };
        let stop = match op {
            // The usual case: a whole text message, read where it lies.
            WsOp::Text if fin && !conn.web.fragments.is_open() => {
                on_json(payload, conn, senders, rx, shared, now)
            }
            WsOp::Text | WsOp::Binary | WsOp::Continue => {
                let mut fragments = std::mem::take(&mut conn.web.fragments);
                let stop = match fragments.push(op, fin, payload) {
                    Ok(true) => on_json(fragments.message(), conn, senders, rx, shared, now),
                    Ok(false) => None,
                    Err(why) => {
                        rx.protocol_errors += 1;
                        Some(format!(
                            "lg-{}: unreadable WebSocket stream: {why}",
                            conn.idx
                        ))
                    }
                };
                conn.web.fragments = fragments;
                stop
            }
            WsOp::Ping => {
                let mask = conn.web.next_mask();
                web::push_pong(&mut conn.out, payload, mask);
                None
            }
            WsOp::Pong => None,
            WsOp::Close => {
                // Answer it (RFC 6455, 5.5.1), then this client is done.
                let mask = conn.web.next_mask();
                web::push_close(&mut conn.out, payload, mask);
                flush(conn);
                let code = protocol::web::ws::close_code(payload).unwrap_or(1005);
                Some(format!(
                    "lg-{}: the broker closed the WebSocket ({code})",
                    conn.idx
                ))
            }
        };
        if stop.is_some() {
            return (pos, stop);
        }
    }
    (pos, None)
}

/// Handles one JSON object from the web door as the native event it
/// stands for.
fn on_json(
    json: &[u8],
    conn: &mut Conn,
    senders: &mut [Sender],
    rx: &mut Rx,
    shared: &Shared,
    now: u64,
) -> Option<String> {
    if let Some(msg) = web::fast_msg(json) {
        return on_frame(msg, conn, senders, rx, shared, now);
    }
    let Ok(incoming) = web::parse(json) else {
        rx.protocol_errors += 1;
        return None;
    };
    if incoming.kind.0 == "users" {
        if conn.probe == Probe::Asked && incoming.room.is_none() {
            let names = incoming.names.iter().flatten().map(|n| n.0.as_ref());
            listed(conn, count_ours(names, rx.clients), rx, shared, now);
        }
        return None;
    }
    match incoming.event() {
        Ok(Some(event)) => on_frame(event, conn, senders, rx, shared, now),
        Ok(None) => None,
        Err(_) => {
            rx.protocol_errors += 1;
            None
        }
    }
}

/// Handles one IRC line for `conn`.
fn on_line(
    line: Line<'_>,
    conn: &mut Conn,
    senders: &mut [Sender],
    rx: &mut Rx,
    shared: &Shared,
    now: u64,
) -> Option<String> {
    match line {
        Line::Privmsg(_) if before_start(shared) => rx.replayed += 1,
        Line::Privmsg(text) => on_msg(text, conn, rx, now),
        Line::Ping(token) => irc::push_pong(&mut conn.out, token),
        Line::Welcome if conn.state == State::Registering => {
            irc::push_ready(&mut conn.out, rx.room.then_some(ROOM));
            conn.state = State::Joining;
        }
        Line::Pong(token)
            if conn.state == State::Joining && token == irc::READY_TOKEN.as_bytes() =>
        {
            ready(conn, rx, shared, now);
        }
        Line::NickInUse if conn.state == State::Registering => {
            if conn.name_tries >= NAME_RETRIES {
                return Some(format!("lg-{}: NICK refused: nickname in use", conn.idx));
            }
            conn.name_tries += 1;
            rx.name_retries.push((now + NAME_RETRY_NS, conn.token));
        }
        Line::Error(text) => {
            return Some(format!(
                "lg-{}: the server closed the link: {}",
                conn.idx,
                String::from_utf8_lossy(text)
            ));
        }
        Line::Refused { code, text } => match conn.state {
            State::Ready => match conn.sender.and_then(|s| senders.get_mut(s)) {
                // An error answers one of our PRIVMSGs: that message is
                // owed to nobody after all.
                Some(s) => {
                    rx.send_errors += 1;
                    s.queued = s.queued.saturating_sub(rx.fanout);
                    if rx.first_send_error.is_none() {
                        let text = String::from_utf8_lossy(text);
                        rx.first_send_error = Some(format!("{code} {text}"));
                    }
                }
                None => rx.protocol_errors += 1,
            },
            _ => {
                return Some(format!(
                    "lg-{}: refused while registering: {code} {}",
                    conn.idx,
                    String::from_utf8_lossy(text)
                ));
            }
        },
        Line::Departed(nick) if rx.started && !rx.stopping && nick.starts_with("lg-") => {
            rx.left += 1;
        }
        _ => {}
    }
    None
}

/// Handles one broker frame for `conn`.
fn on_frame(
    frame: Event<'_>,
    conn: &mut Conn,
    senders: &mut [Sender],
    rx: &mut Rx,
    shared: &Shared,
    now: u64,
) -> Option<String> {
    match frame {
        Event::Msg { body, .. } => {
            if before_start(shared) {
                // A room's history, replayed on JOIN (a broker that
                // served an earlier run): not this run's.
                rx.replayed += 1;
            } else {
                on_msg(body, conn, rx, now);
            }
            None
        }
        Event::Ack { queued, .. } => {
            if let Some(s) = conn.sender.and_then(|s| senders.get_mut(s)) {
                s.replies += 1;
                // More than the fan-out means users that aren't ours are
                // online (`SEND *` reaches them too): expect only our share,
                // so strangers don't look like losses. Fewer is real: one
                // of ours is gone, and that is reported on its own. Over
                // several nodes a `SEND *` is owed to everyone anyway: the
                // ACK counts the other nodes' users as its node last knew
                // them (see `Settings::ack_owes_fanout`).
                s.queued += if rx.owe_fanout {
                    rx.fanout
                } else {
                    queued.min(rx.fanout)
                };
                if queued != rx.fanout {
                    rx.ack_mismatches += 1;
                }
            }
            None
        }
        Event::NameOk { .. } if conn.state == State::Registering => {
            if rx.room {
                push_join(conn, rx.door);
                conn.state = State::Joining;
            } else {
                ready(conn, rx, shared, now);
            }
            None
        }
        Event::JoinOk { room, .. } if conn.state == State::Joining && room == ROOM => {
            ready(conn, rx, shared, now);
            None
        }
        Event::Err { code, args, text } => {
            if conn.state == State::Joining {
                let args = args.unwrap_or_default();
                return Some(format!(
                    "lg-{}: JOIN {ROOM} refused: {code} {args} {text}",
                    conn.idx
                ));
            }
            if conn.state == State::Registering {
                if code == ErrorCode::NameTaken && conn.name_tries < NAME_RETRIES {
                    conn.name_tries += 1;
                    rx.name_retries.push((now + NAME_RETRY_NS, conn.token));
                    return None;
                }
                let args = args.unwrap_or_default();
                return Some(format!(
                    "lg-{}: NAME refused: {code} {args} {text}",
                    conn.idx
                ));
            }
            match conn.sender.and_then(|s| senders.get_mut(s)) {
                // Replies come in order, so an ERR answers the oldest SEND.
                Some(s) => {
                    s.replies += 1;
                    rx.send_errors += 1;
                    if rx.first_send_error.is_none() {
                        let args = args.unwrap_or_default();
                        rx.first_send_error = Some(format!("ERR {code} {args} :{text}"));
                    }
                }
                None => rx.protocol_errors += 1,
            }
            None
        }
        Event::Left { name, .. } | Event::Parted { name, .. } => {
            if rx.started && !rx.stopping && name.starts_with("lg-") {
                rx.left += 1;
            }
            None
        }
        Event::Users {
            room: None, names, ..
        } if conn.probe == Probe::Asked => {
            listed(
                conn,
                count_ours(names.split(' '), rx.clients),
                rx,
                shared,
                now,
            );
            None
        }
        Event::Shutdown { .. } => Some(format!("lg-{}: the broker is shutting down", conn.idx)),
        // HELLO, JOINED, PONG, INFO, RCPT, USERS, BYE: nothing to check.
        _ => None,
    }
}

/// How many of `names` are clients of this run (`lg-<i>`, `i < clients`);
/// each name is listed once.
fn count_ours<'a>(names: impl Iterator<Item = &'a str>, clients: u32) -> u32 {
    let ours = |n: &str| {
        n.strip_prefix("lg-")
            .and_then(|i| i.parse::<u32>().ok())
            .is_some_and(|i| i < clients)
    };
    let n = names.filter(|n| ours(n)).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A probe client's node listed `ours` of the run's clients: done if that
/// is all of them, asked again a little later otherwise.
fn listed(conn: &mut Conn, ours: u32, rx: &Rx, shared: &Shared, now: u64) {
    if ours >= rx.clients {
        conn.probe = Probe::Done;
        shared.settled.fetch_add(1, Ordering::AcqRel);
    } else {
        conn.probe = Probe::Due(now + LIST_RETRY_NS);
    }
}

/// True until the senders are started: nothing of this run can arrive
/// yet, so a message now is an earlier run's, replayed as room history.
fn before_start(shared: &Shared) -> bool {
    shared.start_ns.load(Ordering::Acquire) == NOT_STARTED
}

/// Checks one `MSG` body: counts it, its order on its sender→receiver pair,
/// and its latency.
fn on_msg(body: &[u8], conn: &mut Conn, rx: &mut Rx, now: u64) {
    let Some(stamp) = payload::parse(body) else {
        rx.foreign += 1;
        return;
    };
    let sender = stamp.sender as usize;
    let Some(last) = conn.seen.get_mut(sender) else {
        rx.foreign += 1;
        return;
    };
    rx.received += 1;
    if let Some(p) = rx.pending.get_mut(sender) {
        if *p == 0 {
            rx.dirty.push(stamp.sender);
        }
        *p += 1;
    }
    let next = u32::try_from(stamp.seq.saturating_add(1)).unwrap_or(u32::MAX);
    if next > *last {
        *last = next;
    } else if next == *last {
        rx.duplicates += 1;
    } else {
        rx.reordered += 1;
    }
    if now >= rx.warm_end && now < rx.send_end {
        rx.window_deliveries += 1;
        rx.window_bytes += body.len() as u64;
    }
    if stamp.send_ns >= rx.warm_end && stamp.send_ns < rx.send_end {
        let ns = now.saturating_sub(stamp.send_ns).max(1);
        // Senders are the first clients, so the payload's sender index is
        // the sender's client index, and its node is `node_of` it.
        match rx.hist_cross.as_mut() {
            Some(cross) if node_of(stamp.sender, rx.nodes) != conn.node => {
                cross.saturating_record(ns);
            }
            _ => rx.hist.saturating_record(ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use protocol::web::ws::{self, WsDecoded};
    use protocol::web::WebRequest;
    use protocol::{Request, Targets};

    fn settings(args: &[&str]) -> Settings {
        let mut v = vec!["loadgen"];
        v.extend_from_slice(args);
        crate::Args::try_parse_from(v).unwrap().settings().unwrap()
    }

    /// A client connection to a throwaway loopback listener (nothing is
    /// sent: `write_send` only fills the output buffer).
    fn conn(listener: &std::net::TcpListener) -> Conn {
        Conn {
            idx: 3,
            node: 0,
            token: 0,
            name_tries: 0,
            stream: TcpStream::connect(listener.local_addr().unwrap()).unwrap(),
            state: State::Ready,
            carry: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            seen: Vec::new(),
            sender: Some(0),
            web: web::Session::new(1),
            tls: None,
            probe: Probe::No,
        }
    }

    /// A worker over `nodes` loopback addresses (nothing is connected),
    /// its phase times set so that every delivery is measured.
    fn worker(args: &[&str], nodes: usize) -> Worker {
        let list: Vec<String> = (0..nodes)
            .map(|i| format!("127.0.0.1:{}", 7831 + i))
            .collect();
        let list = list.join(",");
        let mut args = args.to_vec();
        args.extend_from_slice(&["--addr", &list]);
        let s = settings(&args);
        let nodes = s
            .addrs
            .iter()
            .map(|&addr| Node { addr, tls: None })
            .collect();
        let shared = Arc::new(Shared::new(s.senders, Vec::new()));
        let hist = latency_histogram().unwrap();
        let mut w = Worker::new(0, Poll::new().unwrap(), shared, Arc::new(s), nodes, hist);
        w.rx.warm_end = 0;
        w.rx.send_end = u64::MAX;
        w
    }

    /// A loadgen body from `sender`, sent at 1000 ns.
    fn body(sender: u32, seq: u64) -> Vec<u8> {
        let mut b = Vec::new();
        let stamp = Stamp {
            sender,
            seq,
            send_ns: 1000,
        };
        payload::write(&mut b, stamp, 64);
        b
    }

    /// With several nodes, a delivery is same-node or cross-node by the
    /// sender index in its payload against the receiver's node, and the
    /// overall histogram is both.
    #[test]
    fn deliveries_are_split_by_node() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = worker(&["--clients", "9", "--senders", "6"], 3);
        // lg-3 is on node 0 (3 mod 3): from senders 0 and 3 same-node,
        // from 1, 2, 4, 5 cross-node.
        let mut c = conn(&listener);
        c.seen = vec![0; 6];
        for sender in 0..6 {
            on_msg(&body(sender, 0), &mut c, &mut w.rx, 3000);
        }
        // lg-4 is on node 1: sender 4 is the same node.
        let mut c4 = conn(&listener);
        (c4.idx, c4.node, c4.seen) = (4, node_of(4, 3), vec![0; 6]);
        on_msg(&body(4, 1), &mut c4, &mut w.rx, 5000);
        let r = w.result();
        let (same, cross) = (r.hist_same.unwrap(), r.hist_cross.unwrap());
        assert_eq!((same.len(), cross.len(), r.hist.len()), (3, 4, 7));
        assert_eq!(r.received, 7);
        // Latency is now minus the stamp, whichever histogram.
        assert!(same.equivalent(same.max(), 4000));
        assert!(cross.equivalent(cross.max(), 2000));
    }

    /// One node: one histogram, as before.
    #[test]
    fn one_node_keeps_one_histogram() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = worker(&["--clients", "9", "--senders", "6"], 1);
        let mut c = conn(&listener);
        c.seen = vec![0; 6];
        for sender in 0..6 {
            on_msg(&body(sender, 0), &mut c, &mut w.rx, 3000);
        }
        let r = w.result();
        assert!(r.hist_same.is_none() && r.hist_cross.is_none());
        assert_eq!(r.hist.len(), 6);
    }

    /// `SEND *` over several nodes owes the whole fan-out whatever the
    /// ACK's count; elsewhere the ACK's count, at most the fan-out.
    #[test]
    fn acks_over_several_nodes_in_all_mode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ack = |queued| Event::Ack {
            id: 1,
            queued,
            missing: None,
        };
        for (args, nodes, acked, owed) in [
            (&["--clients", "10", "--mode", "all"][..], 2, 7, 9),
            (&["--clients", "10", "--mode", "all"], 2, 12, 9),
            (&["--clients", "10", "--mode", "all"], 1, 7, 7),
            (&["--clients", "10", "--mode", "all"], 1, 12, 9),
            (&["--clients", "10", "--mode", "direct"], 2, 0, 0),
        ] {
            let mut w = worker(args, nodes);
            let mut c = conn(&listener);
            let mut senders = vec![Sender {
                conn: 0,
                idx: 3,
                seq: 1,
                replies: 0,
                queued: 0,
                phase_ns: 0,
            }];
            let shared = w.shared.clone();
            on_frame(ack(acked), &mut c, &mut senders, &mut w.rx, &shared, 0);
            assert_eq!(
                senders[0].queued, owed,
                "{args:?} over {nodes}: ACK {acked}"
            );
            assert_eq!(senders[0].replies, 1);
        }
    }

    /// A node counts as settled once its `LIST` names every client of the
    /// run; strangers and names out of range don't count.
    #[test]
    fn a_node_settles_when_it_lists_every_client() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = worker(&["--clients", "4"], 2);
        let shared = w.shared.clone();
        let mut c = conn(&listener);
        c.probe = Probe::Asked;
        let users = |names| Event::Users {
            count: 4,
            room: None,
            names,
        };
        on_frame(
            users("bob lg-0 lg-1 lg-2 lg-9"),
            &mut c,
            &mut [],
            &mut w.rx,
            &shared,
            100,
        );
        assert_eq!(c.probe, Probe::Due(100 + LIST_RETRY_NS));
        assert_eq!(shared.settled.load(Ordering::Relaxed), 0);
        // Only an asked probe takes a USERS.
        on_frame(
            users("lg-0 lg-1 lg-2 lg-3"),
            &mut c,
            &mut [],
            &mut w.rx,
            &shared,
            200,
        );
        assert_eq!(shared.settled.load(Ordering::Relaxed), 0);
        c.probe = Probe::Asked;
        on_frame(
            users("lg-0 lg-1 lg-2 lg-3"),
            &mut c,
            &mut [],
            &mut w.rx,
            &shared,
            300,
        );
        assert_eq!(c.probe, Probe::Done);
        assert_eq!(shared.settled.load(Ordering::Relaxed), 1);
        // The web door's list is a JSON array.
        let mut c = conn(&listener);
        c.probe = Probe::Asked;
        let json = br#"{"type":"users","count":4,"names":["lg-0","lg-1","lg-2","lg-3"]}"#;
        on_json(json, &mut c, &mut [], &mut w.rx, &shared, 400);
        assert_eq!(c.probe, Probe::Done);
        assert_eq!(shared.settled.load(Ordering::Relaxed), 2);
        assert_eq!(w.rx.protocol_errors, 0);
    }

    /// What the web door's parser makes of the client frames in `out`.
    fn sends(out: &[u8]) -> Vec<(String, Stamp)> {
        let mut found = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            let WsDecoded::Frame {
                op: WsOp::Text,
                fin: true,
                payload,
                mask: Some(mask),
                consumed,
            } = ws::decode(&out[pos..], web::MAX_MESSAGE)
            else {
                panic!("not one masked text frame at {pos}");
            };
            pos += consumed;
            let mut json = Vec::new();
            ws::unmask_into(&mut json, payload, mask);
            let req = WebRequest::parse(&json).unwrap();
            let Ok(Request::Send { targets, body }) = req.request(&protocol::Limits::default())
            else {
                panic!("{}", String::from_utf8_lossy(&json));
            };
            let to = match targets {
                Targets::All => "*".to_string(),
                Targets::Names(names) | Targets::Room(names) => names.to_string(),
            };
            found.push((to, payload::parse(body).unwrap()));
        }
        found
    }

    /// Every mode's `send` over the web door is one masked text frame that
    /// the broker's own codec reads as the native `SEND` of that mode,
    /// with the payload whole.
    #[test]
    fn web_sends_are_what_the_web_door_reads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for (mode, check) in [
            ("all", (|to: &str| to == "*") as fn(&str) -> bool),
            ("room", |to| to == ROOM),
            ("direct", |to| to.starts_with("lg-") && to != "lg-3"),
            ("multi", |to| {
                let names: Vec<&str> = to.split(',').collect();
                names.len() == 4 && names.iter().all(|n| n.starts_with("lg-") && *n != "lg-3")
            }),
        ] {
            let s = settings(&[
                "--door",
                "web",
                "--mode",
                mode,
                "--clients",
                "50",
                "--targets",
                "4",
                "--size",
                "120",
            ]);
            let mut c = conn(&listener);
            let mut sender = Sender {
                conn: 0,
                idx: 3,
                seq: 0,
                replies: 0,
                queued: 0,
                phase_ns: 0,
            };
            let mut rng = Rng::new(5);
            let mut perm: Vec<u32> = (0..50).collect();
            for send_ns in [10, 20, 30] {
                write_send(&mut c, &mut sender, &s, &mut rng, &mut perm, send_ns);
            }
            let got = sends(&c.out);
            assert_eq!(got.len(), 3, "{mode}");
            for (seq, (to, stamp)) in got.iter().enumerate() {
                assert!(check(to), "{mode}: {to}");
                assert_eq!(
                    *stamp,
                    Stamp {
                        sender: 3,
                        seq: seq as u64,
                        send_ns: 10 * (seq as u64 + 1),
                    }
                );
            }
            // The web door answers with an ACK: nothing is owed yet.
            assert_eq!((sender.seq, sender.replies, sender.queued), (3, 0, 0));
        }
    }
}
