//! The chat broker: one chat with several doors. The native line protocol
//! (`docs/protocol.md`) and IRC (`docs/irc.md`) lead into one routing core.
//!
//! # Thread model
//!
//! ```text
//!  native :7878 --+   +-----------+  NewConn(socket, door) + wake
//!  IRC    :6667 --+-->| acceptor  |--------------------------------+
//!                     +-----------+  (conn rate, slots; round robin)|
//!                                                                   v
//!  sockets (read) ==> +----------+ decode with the conn's door codec,
//!                     | worker 0 | then the door adapter calls the core
//!                     | worker 1 |------------------+
//!                     +----------+                  v
//!                          |      +----------------------------------+
//!                          |      | core: registry (DashMap by name, |
//!                          |      | snapshot of everyone), rooms     |
//!                          |      | (copy-on-write members), route:  |
//!                          |      | a Fan encodes each note once per |
//!                          |      | door among its recipients        |
//!                          |      +----------------------------------+
//!                          | push the door's frame onto each recipient's
//!                          | bounded queue; Ready(id) to its writer, one
//!                          | wake per batch; a sender whose push passed a
//!                          | reader's bound is paused (not read) for a while
//!                          v
//!                     +----------+  sendmsg of up to 64 shared frames
//!                     | writer 0 |=====================> sockets (write)
//!                     | writer 1 |
//!                     +----------+
//! ```
//!
//! The number of threads is fixed at start (`1 + workers + writers`, plus
//! the optional stats thread), whatever the number of connections and
//! doors.
//!
//! # Modules
//! - [`config`]: settings, defaults and the TOML file.
//! - `net`: sockets and readiness. `acceptor` (one thread, every door's
//!   listener, connection limits), `worker` (reads, decodes with the
//!   connection's door, pauses senders, deadlines), `writer` (drains queues
//!   onto sockets in batches).
//! - `doors`: one adapter per protocol, from its codec (in the `protocol`
//!   crate) to core calls and back: `native`, `irc`. A door never imports
//!   another door.
//! - `core`: names, rooms, presence, routing, limits and the slow-consumer
//!   policy, with no sockets and no door: `conn` (a connection's shared
//!   handle and queue), `outbound` (queueing, waking writers), `registry`,
//!   `rooms`, `route` (notes and their bytes per door).
//! - `msg`: what threads send each other (a leaf, so nothing above imports
//!   another thread's module for its inbox).
//! - [`metrics`]: counters and the stats line.
//! - [`log`]: the logger.
//! - [`sys`]: the open-file limit.

pub mod config;
pub mod log;
pub mod metrics;
pub mod sys;

mod accounts;
pub mod admin;
#[doc(hidden)]
pub mod bench_support;
pub(crate) mod cluster;
mod core;
mod doors;
mod msg;
mod net;
mod prom;
pub(crate) mod store;

pub use config::{Config, ConfigError};
pub use metrics::{CloseReason, Stats};

use crate::core::conn::{Door, Frame};
use crate::core::registry::Registry;
use crate::msg::{Via, WorkerHandle, WorkerMsg, WriterHandle, WriterMsg};
use metrics::Metrics;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token, Waker};
use parking_lot::{Condvar, Mutex};
use protocol::{Event, Limits};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const HELP: &str = "\
Commands (verbs in any case; a body is inline after ':' or counted):
  NAME <name>               take a name (1-32 of A-Z a-z 0-9 _ - .)
  NAME <name> <password>    take a name that is your account
  REGISTER <password>       make your name an account (8-128 bytes, no spaces)
  LIST                      who is online
  SEND <name> :<text>       message one person
  SEND <a>,<b> :<text>      message several people
  SEND * :<text>            message everyone else
  SEND <targets> <len>      then <len> bytes and a newline (counted body)
  RECV <id> <from>          tell <from> you have shown message <id>
  PING [<token>]            liveness check, answered with PONG
  JOIN #room                enter a room (created if it doesn't exist)
  PART #room                leave a room
  SEND #room :<text>        message everyone else in a room
  LIST #room                who is in a room
  ROOMS                     which rooms exist
  HELP                      this text
  QUIT [:<reason>]          leave";

/// State shared by every thread of one broker.
pub(crate) struct Shared {
    /// The configuration the broker started with: what can't change while
    /// it runs (addresses, threads, server name, frame limits) is read here.
    pub config: Config,
    /// The configuration as last reloaded (SIGHUP): limits, rates, timeouts
    /// and the log level are read here, so a reload applies at once.
    live: arc_swap::ArcSwap<Config>,
    /// The embedded database (accounts, stored messages, room history),
    /// if `data_dir` is set.
    pub store: Option<Arc<crate::store::Store>>,
    /// Accounts, if there is a store.
    pub accounts: Option<crate::accounts::Accounts>,
    /// This broker's part in a cluster, if `cluster` is set.
    pub cluster: std::sync::OnceLock<Arc<cluster::node::Node>>,
    /// Each room's last messages (by folded room name), replayed on JOIN;
    /// the store keeps them across restarts.
    pub history: Mutex<HashMap<String, std::collections::VecDeque<crate::store::Stored>>>,
    /// The TLS server side (certificate and key), if a TLS listener is
    /// set; replaced when SIGHUP re-reads the files.
    pub tls: arc_swap::ArcSwapOption<rustls::ServerConfig>,
    pub limits: Limits,
    /// The rate limits of `live`, read on every frame.
    pub rates: crate::core::Rates,
    pub registry: Registry,
    pub rooms: crate::core::rooms::Rooms,
    pub metrics: Metrics,
    pub writers: Vec<WriterHandle>,
    pub workers: Vec<WorkerHandle>,
    /// The pre-encoded `HELLO` greeting.
    pub hello: Frame,
    /// The `HELP` text.
    pub help: Vec<u8>,
    /// When the broker started (for `chat_uptime_seconds`).
    pub started: Instant,
    /// Streams writers still hold (graceful shutdown waits for zero).
    pub writer_streams: AtomicUsize,
    next_message: AtomicU64,
    /// In a cluster, this node's slot in message ids (see
    /// [`Shared::set_id_slot`]); `NO_SLOT` on a single node.
    id_slot: AtomicU64,
    /// Ids on record in the store as used (so ids keep increasing across
    /// restarts).
    ids: Arc<Ids>,
    next_conn: AtomicU64,
    stopping: AtomicBool,
    stop_at: Mutex<Option<Instant>>,
    stop_cv: Condvar,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Shared {
    /// The shared state for threads reached through these handles.
    fn new(
        config: Config,
        workers: Vec<WorkerHandle>,
        writers: Vec<WriterHandle>,
        tls: Option<Arc<rustls::ServerConfig>>,
        parts: Kept,
    ) -> Shared {
        let mut hello = Vec::new();
        Event::Hello {
            server: &config.server_name,
            version: protocol::VERSION,
            text: "Welcome. Choose a name with NAME <name>",
        }
        .encode(&mut hello);
        Shared {
            limits: config.limits(),
            rates: crate::core::Rates::new(&config),
            registry: Registry::new(),
            rooms: crate::core::rooms::Rooms::new(),
            metrics: Metrics::default(),
            writers,
            workers,
            hello: Frame::from(hello),
            help: HELP.as_bytes().to_vec(),
            started: Instant::now(),
            writer_streams: AtomicUsize::new(0),
            next_message: AtomicU64::new(parts.first_id),
            id_slot: AtomicU64::new(NO_SLOT),
            ids: Arc::new(Ids {
                reserved: AtomicU64::new(parts.ids_reserved),
                reserving: AtomicBool::new(false),
            }),
            store: parts.store,
            accounts: parts.accounts,
            cluster: std::sync::OnceLock::new(),
            history: Mutex::new(parts.history),
            next_conn: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            stop_at: Mutex::new(None),
            stop_cv: Condvar::new(),
            per_ip: Mutex::new(HashMap::new()),
            live: arc_swap::ArcSwap::from_pointee(config.clone()),
            tls: arc_swap::ArcSwapOption::new(tls),
            config,
        }
    }

    /// The live configuration (see `live`).
    pub fn live(&self) -> arc_swap::Guard<Arc<Config>> {
        self.live.load()
    }

    /// True once shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Makes message ids cluster-unique: from now on an id is the node's
    /// counter times [`ID_SLOTS`] plus `slot`, the node's own number (each
    /// node name gets one from Redis, for good). Ids still increase (the
    /// counter does), and two nodes never hand out the same one. Set once,
    /// at start, before anything is routed.
    pub fn set_id_slot(&self, slot: u64) {
        self.id_slot.store(slot % ID_SLOTS, Ordering::SeqCst);
    }

    /// The id for counter value `n`.
    fn id_of(&self, n: u64) -> u64 {
        match self.id_slot.load(Ordering::Relaxed) {
            NO_SLOT => n,
            slot => n.saturating_mul(ID_SLOTS) | slot,
        }
    }

    /// The next broker-wide message id (increasing, from 1; in a cluster,
    /// unique across the nodes).
    pub fn next_message_id(&self) -> u64 {
        // SeqCst (the same locked add on x86): receipts compare ids with
        // `peek_message_id` readings taken after a join became visible.
        let id = self.next_message.fetch_add(1, Ordering::SeqCst);
        let reserved = self.ids.reserved.load(Ordering::Relaxed);
        if id >= reserved.saturating_sub(ID_BLOCK / 2)
            && !self.ids.reserving.swap(true, Ordering::AcqRel)
        {
            self.reserve_more(reserved);
        }
        self.id_of(id)
    }

    /// Records the next block of ids in the store, on a thread of its own
    /// (a durable write must not hold up a routing thread). Half a block
    /// is left when it starts: far more than can be used meanwhile.
    fn reserve_more(&self, reserved: u64) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let ids = Arc::clone(&self.ids);
        let next = reserved.saturating_add(ID_BLOCK);
        let spawned = std::thread::Builder::new()
            .name("ids".into())
            .spawn(move || {
                match store.reserve_ids(next) {
                    Ok(()) => ids.reserved.store(next, Ordering::Relaxed),
                    Err(e) => log_error!(
                    "cannot record more message ids in the store ({e}); ids stay below {reserved}"
                ),
                }
                ids.reserving.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.ids.reserving.store(false, Ordering::Release);
        }
    }

    /// The id the next message will get (nothing is taken).
    pub fn peek_message_id(&self) -> u64 {
        self.id_of(self.next_message.load(Ordering::SeqCst))
    }

    /// The next connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a new connection against the limits, or says why not.
    /// Connections per address are counted even while that limit is off,
    /// so a reload that turns it on finds the counts right.
    pub fn take_slot(&self, peer: SocketAddr) -> Result<(), &'static str> {
        let live = self.live();
        let max = live.max_connections as u64;
        let open = self.metrics.connections.fetch_add(1, Ordering::AcqRel);
        if open >= max {
            self.metrics.connections.fetch_sub(1, Ordering::AcqRel);
            return Err("the server is full; try again later");
        }
        let per_ip = live.max_connections_per_ip;
        let mut map = self.per_ip.lock();
        let n = map.entry(peer.ip()).or_insert(0);
        if per_ip > 0 && *n >= per_ip {
            drop(map);
            self.metrics.connections.fetch_sub(1, Ordering::AcqRel);
            return Err("too many connections from your address");
        }
        *n += 1;
        drop(map);
        Metrics::add(&self.metrics.accepted, 1);
        Ok(())
    }

    /// Releases what `take_slot` counted.
    pub fn give_slot(&self, peer: SocketAddr) {
        self.metrics.connections.fetch_sub(1, Ordering::AcqRel);
        let mut map = self.per_ip.lock();
        if let Some(n) = map.get_mut(&peer.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&peer.ip());
            }
        }
    }

    fn request_stop(&self) {
        let mut at = self.stop_at.lock();
        if at.is_none() {
            *at = Some(Instant::now());
            self.stopping.store(true, Ordering::Release);
            for w in &self.workers {
                let _ = w.waker.wake();
            }
            self.stop_cv.notify_all();
        }
    }
}

/// Binds a listener the way the broker wants it: SO_REUSEADDR and a
/// backlog of 1024.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Starts the broker on an already-bound listener (tests bind
/// `127.0.0.1:0`). Threads run in the background until shutdown.
pub fn start(listener: TcpListener, config: Config) -> io::Result<Broker> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let tls = tls_config(&config)?;
    let plain = |door| Via { door, tls: false };
    let secure = |door| Via { door, tls: true };
    let mut listeners = vec![(listener, plain(Door::Native))];
    // A door that can't open is logged and left closed: the chat still runs
    // on the others.
    let irc_addr = open_door(&config.irc_listen, plain(Door::Irc), "IRC", &mut listeners);
    let http_addr = open_door(&config.http_listen, plain(Door::Web), "web", &mut listeners);
    let tls_addr = open_door(
        &config.tls_listen,
        secure(Door::Native),
        "TLS",
        &mut listeners,
    );
    let irc_tls_addr = open_door(
        &config.irc_tls_listen,
        secure(Door::Irc),
        "IRC TLS",
        &mut listeners,
    );
    let https_addr = open_door(
        &config.https_listen,
        secure(Door::Web),
        "https",
        &mut listeners,
    );

    let mut worker_polls = Vec::new();
    let mut workers = Vec::new();
    let mut worker_rxs = Vec::new();
    for _ in 0..config.worker_threads() {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), net::worker::WAKE)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        workers.push(WorkerHandle {
            tx,
            waker: Arc::new(waker),
        });
        worker_polls.push(poll);
        worker_rxs.push(rx);
    }
    let mut writer_polls = Vec::new();
    let mut writers = Vec::new();
    let mut writer_rxs = Vec::new();
    for _ in 0..config.writer_threads() {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), net::writer::WAKE)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        writers.push(WriterHandle {
            tx,
            waker,
            sleeping: AtomicBool::new(false),
        });
        writer_polls.push(poll);
        writer_rxs.push(rx);
    }
    let acceptor_poll = Poll::new()?;
    let acceptor_waker = Arc::new(Waker::new(acceptor_poll.registry(), net::acceptor::WAKE)?);
    for (i, (l, _)) in listeners.iter().enumerate() {
        acceptor_poll.registry().register(
            &mut SourceFd(&l.as_raw_fd()),
            Token(net::acceptor::FIRST_LISTENER + i),
            Interest::READABLE,
        )?;
    }

    let (kept, accounts_inbox) = open_store(&config)?;
    let shared = Arc::new(Shared::new(config, workers, writers, tls, kept));
    let cluster_thread = start_cluster(&shared, addr)?;
    let accounts_thread = match accounts_inbox {
        Some(inbox) => {
            let shared = Arc::clone(&shared);
            Some(
                std::thread::Builder::new()
                    .name("accounts".into())
                    .spawn(move || accounts::run(shared, inbox))?,
            )
        }
        None => None,
    };

    let mut writer_threads = Vec::new();
    for (i, (poll, rx)) in writer_polls.into_iter().zip(writer_rxs).enumerate() {
        let w = net::writer::Writer::new(Arc::clone(&shared), i, poll, rx);
        writer_threads.push(
            std::thread::Builder::new()
                .name(format!("writer-{i}"))
                .spawn(move || w.run())?,
        );
    }
    // Workers and the acceptor meet here at shutdown: once all have arrived
    // nobody accepts, reads or routes, and every accepted socket is in a
    // worker's inbox.
    let stopped = Arc::new(Barrier::new(shared.workers.len() + 1));
    let mut worker_threads = Vec::new();
    for (i, (poll, rx)) in worker_polls.into_iter().zip(worker_rxs).enumerate() {
        let w = net::worker::Worker::new(Arc::clone(&shared), i, poll, rx);
        let stopped = Arc::clone(&stopped);
        worker_threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || w.run(stopped))?,
        );
    }
    let acceptor = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || {
                net::acceptor::run(shared, listeners, acceptor_poll);
                stopped.wait();
            })?
    };
    let stats = if shared.config.stats_interval_secs > 0 {
        let shared = Arc::clone(&shared);
        Some(
            std::thread::Builder::new()
                .name("stats".into())
                .spawn(move || stats_loop(&shared))?,
        )
    } else {
        None
    };
    Ok(Broker {
        shared,
        addr,
        irc_addr,
        http_addr,
        tls_addr,
        irc_tls_addr,
        https_addr,
        acceptor_waker,
        acceptor: Some(acceptor),
        workers: worker_threads,
        writers: writer_threads,
        stats,
        accounts: accounts_thread,
        cluster: cluster_thread,
        report: None,
    })
}

/// How far message ids are on record (see `Shared::next_message_id`).
struct Ids {
    /// Ids below this are on record in the store as used; `u64::MAX`
    /// without a store.
    reserved: AtomicU64,
    /// A reservation of more ids is under way.
    reserving: AtomicBool,
}

/// Joins the cluster if `cluster` is set: the Redis link and the cluster
/// thread. An unreachable Redis is not an error (the node serves its own
/// users and joins when Redis is back); a bad URL or node name is.
fn start_cluster(shared: &Arc<Shared>, addr: SocketAddr) -> io::Result<Option<JoinHandle<()>>> {
    let config = &shared.config;
    if config.cluster.is_empty() {
        return Ok(None);
    }
    let node_name = if config.node.is_empty() {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_string());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{host}-{}", addr.port())
    } else {
        config.node.clone()
    };
    let mut settings = cluster::link::Settings::new(&config.cluster, "main", &node_name);
    settings.heartbeat = Duration::from_secs(config.cluster_heartbeat_secs);
    settings.node_timeout = Duration::from_secs(config.cluster_node_timeout_secs);
    settings.history = config.room_history;
    let io_timeout = settings.io_timeout();
    let bad =
        |e: cluster::link::LinkError| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    let (node, inbox) = cluster::node::start(settings, Arc::downgrade(shared)).map_err(bad)?;
    log_info!(
        "cluster: node {node_name} of {}",
        cluster::without_password(&config.cluster)
    );
    // Until Redis hands this node its own slot (when it first connects),
    // one from its name: ids stay increasing when the slot changes.
    shared.set_id_slot(cluster::node::remote_sender_id(&node_name));
    let _ = shared.cluster.set(Arc::clone(&node));
    // Accounts and stored messages are the cluster's: in Redis, read and
    // written on connections of their own (the accounts thread's, and the
    // post thread's for messages to absent accounts).
    let mut posts = None;
    if let Some(accounts) = shared.accounts.as_ref() {
        let limits = cluster::accounts::Limits {
            mailbox_max: config.mailbox_max,
            mailbox_days: config.mailbox_days,
        };
        let book = || {
            cluster::accounts::Book::open(&config.cluster, "main", &node_name, io_timeout, limits)
                .map_err(bad)
        };
        let theirs = Arc::new(cluster::accounts::ClusterAccounts::new(
            book()?,
            Arc::clone(&node),
        ));
        accounts.set_cluster(Arc::clone(&theirs));
        posts = Some(cluster::accounts::start(shared, &theirs, book()?)?);
    }
    let shared = Arc::clone(shared);
    Ok(Some(
        std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || {
                cluster::node::run(shared, node, inbox);
                if let Some(p) = posts {
                    let _ = p.join();
                }
            })?,
    ))
}

/// Slots in cluster message ids: a power of two, so an id is the counter
/// shifted left and the slot in the low bits. (A cluster of more nodes
/// than this shares slots, and ids may repeat.)
pub(crate) const ID_SLOTS: u64 = 1 << 12;
const NO_SLOT: u64 = u64::MAX;

/// Ids recorded in the store at a time (see `Shared::next_message_id`).
const ID_BLOCK: u64 = 1 << 32;

/// What the store gives the broker at start.
pub(crate) struct Kept {
    store: Option<Arc<store::Store>>,
    accounts: Option<accounts::Accounts>,
    history: HashMap<String, std::collections::VecDeque<store::Stored>>,
    first_id: u64,
    ids_reserved: u64,
}

impl Kept {
    /// Nothing kept: no `data_dir`.
    pub(crate) fn none() -> Kept {
        Kept {
            store: None,
            accounts: None,
            history: HashMap::new(),
            first_id: 1,
            ids_reserved: u64::MAX,
        }
    }
}

/// Opens the store in `data_dir`, if set: the accounts, the rooms'
/// history, and the first message id (past every id used before).
///
/// In a cluster the accounts and their stored messages are the cluster's
/// (in Redis, `cluster::accounts`, wired in `start_cluster`), with or
/// without a `data_dir`; the store keeps the room history and the ids.
fn open_store(
    config: &Config,
) -> io::Result<(Kept, Option<crossbeam_channel::Receiver<accounts::Ticket>>)> {
    let clustered = !config.cluster.is_empty();
    if config.data_dir.is_empty() {
        if clustered {
            let (accounts, inbox) = accounts::Accounts::clustered();
            let kept = Kept {
                accounts: Some(accounts),
                ..Kept::none()
            };
            return Ok((kept, Some(inbox)));
        }
        return Ok((Kept::none(), None));
    }
    let bad = |e: String| io::Error::other(e);
    let limits = store::Limits {
        mailbox_max: config.mailbox_max,
        mailbox_days: config.mailbox_days,
        room_history: config.room_history,
        queue_len: STORE_QUEUE,
    };
    let store =
        Arc::new(store::Store::open(std::path::Path::new(&config.data_dir), limits).map_err(bad)?);
    let last = store.last_id().map_err(bad)?;
    let first_id = last.saturating_add(1);
    let ids_reserved = first_id.saturating_add(ID_BLOCK);
    store.reserve_ids(ids_reserved).map_err(bad)?;
    let history = store
        .histories()
        .map_err(bad)?
        .into_iter()
        .map(|(room, msgs)| (room, msgs.into_iter().collect()))
        .collect();
    let (accounts, inbox) = if clustered {
        let here = store.accounts().map_err(bad)?.len();
        if here > 0 {
            log_warn!(
                "{}: its {here} accounts are not used in a cluster (the cluster's are in Redis)",
                store.path().display()
            );
        }
        log_info!(
            "data in {}: room history (accounts and stored messages are the cluster's)",
            store.path().display()
        );
        accounts::Accounts::clustered()
    } else {
        let (accounts, inbox) = accounts::Accounts::new(&store).map_err(bad)?;
        log_info!(
            "data in {}: {} accounts, {} stored messages",
            store.path().display(),
            accounts.count(),
            store.stored_count()
        );
        (accounts, inbox)
    };
    Ok((
        Kept {
            store: Some(store),
            accounts: Some(accounts),
            history,
            first_id,
            ids_reserved,
        },
        Some(inbox),
    ))
}

/// Messages and room lines that may wait for the store's writer; past it a
/// message for an offline account is refused with `UNAVAILABLE`.
const STORE_QUEUE: usize = 65_536;

/// Writes a self-signed certificate for `localhost` and `127.0.0.1` into
/// `dir` (`cert.pem`, `key.pem`, the key readable by its owner only);
/// returns their paths. `broker gen-cert --out DIR`.
pub fn gen_cert(dir: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    net::tls::generate(dir)
}

/// Reads the TLS certificate and key if any TLS listener is set; the error
/// names the file.
pub fn tls_config(config: &Config) -> io::Result<Option<Arc<rustls::ServerConfig>>> {
    if !config.wants_tls() {
        return Ok(None);
    }
    net::tls::server_config(
        std::path::Path::new(&config.tls_cert),
        std::path::Path::new(&config.tls_key),
    )
    .map(Some)
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Binds a door's listener if `addr` is set; a door that can't open is
/// logged and left closed. Returns the bound address.
fn open_door(
    addr: &str,
    via: Via,
    label: &str,
    listeners: &mut Vec<(TcpListener, Via)>,
) -> Option<SocketAddr> {
    let a = addr.parse::<SocketAddr>().ok()?;
    match bind(a).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
        Ok(l) => {
            let bound = l.local_addr().ok();
            listeners.push((l, via));
            bound
        }
        Err(e) => {
            log_error!("cannot open the {label} door on {a}: {e}; running without it");
            None
        }
    }
}

/// Logs one stats line every `stats_interval_secs` until shutdown.
fn stats_loop(shared: &Shared) {
    let every = Duration::from_secs(shared.config.stats_interval_secs);
    let mut last = shared.metrics.snapshot(shared.registry.len());
    let mut last_at = Instant::now();
    loop {
        {
            let mut at = shared.stop_at.lock();
            if at.is_none() {
                shared.stop_cv.wait_for(&mut at, every);
            }
            if at.is_some() {
                return;
            }
        }
        let now = shared.metrics.snapshot(shared.registry.len());
        let secs = last_at.elapsed().as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
        log_info!(
            "stats: connections={} users={} msgs/s={:.0} deliveries/s={:.0} out={:.2}MiB/s writes/s={:.0} slow={}{}",
            now.connections,
            now.users,
            rate(now.messages, last.messages),
            rate(now.deliveries, last.deliveries),
            rate(now.bytes_out, last.bytes_out) / (1024.0 * 1024.0),
            rate(now.writes, last.writes),
            now.slow_consumers,
            now.breakdown()
        );
        last = now;
        last_at = Instant::now();
    }
}

/// A running broker. Dropping it shuts it down gracefully.
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    irc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    irc_tls_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    acceptor_waker: Arc<Waker>,
    acceptor: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<usize>>,
    writers: Vec<JoinHandle<usize>>,
    stats: Option<JoinHandle<()>>,
    accounts: Option<JoinHandle<()>>,
    cluster: Option<JoinHandle<()>>,
    report: Option<ShutdownReport>,
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that were sent `SHUTDOWN`.
    pub notified: usize,
    /// Connections cut off when the grace time ran out.
    pub cut_off: usize,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose new values now apply.
    pub applied: Vec<config::Change>,
    /// Keys that changed in the file but need a restart; their running
    /// values were kept.
    pub kept: Vec<config::Change>,
}

/// Applies a new configuration to a running broker (SIGHUP).
#[derive(Clone)]
pub struct ReloadHandle {
    shared: Arc<Shared>,
}

impl ReloadHandle {
    /// Applies `new`: limits, rates, timeouts and the log level take effect
    /// at once for everyone connected (`queue_bytes` and `keepalive_secs`
    /// for new connections); the [`config::RESTART_KEYS`] keep their
    /// running values. A configuration that doesn't validate changes
    /// nothing.
    pub fn reload(&self, new: Config) -> Result<Reloaded, config::ConfigError> {
        new.validate()?;
        let running = self.shared.live();
        let kept = new
            .changes(&running)
            .into_iter()
            .filter(|c| config::RESTART_KEYS.contains(&c.key.as_str()))
            .map(|c| config::Change {
                key: c.key,
                from: c.to,
                to: c.from,
            })
            .collect();
        let new = new.keeping_restart_keys(&running);
        // The certificate files are read again even if their names did not
        // change: that is how a renewed certificate is taken in.
        let tls = tls_config(&new).map_err(|e| config::ConfigError(e.to_string()))?;
        let applied = running.changes(&new);
        if tls.is_some() {
            self.shared.tls.store(tls);
        }
        if let Some(level) = log::Level::parse(&new.log_level) {
            log::set_level(level);
        }
        drop(running);
        self.shared.rates.set(&new);
        self.shared.live.store(Arc::new(new));
        Ok(Reloaded { applied, kept })
    }
}

/// Triggers a graceful shutdown from another thread (a signal handler).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    acceptor_waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the broker to stop; returns at once (in a cluster, once the
    /// other nodes have been told this node's users quit).
    pub fn trigger(&self) {
        if let Some(node) = self.shared.cluster.get() {
            // Before anyone is closed: the names are all still here.
            if !self.shared.stopping() {
                node.leave(&self.shared.registry.names_sorted());
                cluster::node::stop(node);
            }
        }
        self.shared.request_stop();
        let _ = self.acceptor_waker.wake();
    }
}

impl Broker {
    /// The address the broker listens on (the native door).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The IRC door's address, if it is open.
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        self.irc_addr
    }

    /// The web door's address, if it is open.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The native door's TLS address, if it is open.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The IRC door's TLS address, if it is open.
    pub fn irc_tls_addr(&self) -> Option<SocketAddr> {
        self.irc_tls_addr
    }

    /// The web door's TLS (https, wss) address, if it is open.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> Stats {
        self.shared.metrics.snapshot(self.shared.registry.len())
    }

    /// A handle that applies a new configuration while the broker runs.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A handle that can stop the broker from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            acceptor_waker: Arc::clone(&self.acceptor_waker),
        }
    }

    /// Stops gracefully and waits until done.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shutdown_handle().trigger();
        self.finish()
    }

    /// Waits until a shutdown triggered elsewhere (a signal) has finished.
    pub fn wait(mut self) -> ShutdownReport {
        {
            let mut at = self.shared.stop_at.lock();
            while at.is_none() {
                self.shared.stop_cv.wait(&mut at);
            }
        }
        self.finish()
    }

    /// The shutdown sequence: stop accepting, stop reading (workers meet at
    /// a barrier), queue `SHUTDOWN` after everything else, let writers
    /// flush until the grace time ends, then cut off the rest.
    fn finish(&mut self) -> ShutdownReport {
        if let Some(r) = self.report {
            return r;
        }
        let _ = self.acceptor_waker.wake();
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let notified = self.workers.drain(..).map(|w| w.join().unwrap_or(0)).sum();
        let started = self.shared.stop_at.lock().unwrap_or_else(Instant::now);
        let grace = Duration::from_secs(self.shared.live().shutdown_grace_secs);
        while self.shared.writer_streams.load(Ordering::Acquire) > 0 && started.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        for w in &self.shared.writers {
            let _ = w.tx.send(WriterMsg::Stop);
            let _ = w.waker.wake();
        }
        let cut_off = self.writers.drain(..).map(|w| w.join().unwrap_or(0)).sum();
        if let Some(s) = self.stats.take() {
            let _ = s.join();
        }
        if let Some(a) = self.accounts.take() {
            let _ = a.join();
        }
        if let Some(c) = self.cluster.take() {
            let _ = c.join();
        }
        if let Some(store) = &self.shared.store {
            // Whatever is queued for the mailboxes and histories is written.
            store.close();
        }
        let report = ShutdownReport { notified, cut_off };
        self.report = Some(report);
        report
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.report.is_none() {
            self.shutdown_handle().trigger();
            self.finish();
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Shared>();
    let _ = WorkerMsg::Closed(0);
}
