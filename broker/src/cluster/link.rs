//! The Redis link: one node's connections to the cluster's Redis, each on
//! a thread of its own, so a slow or absent Redis never holds up a caller.
//!
//! ```text
//!  callers ── try_publish ──> bounded queue ──> publisher ── PUBLISH ─┐
//!  (never blocks: full or down is Err)          (batches per channel, │
//!                                                one pipeline a round)│
//!                                                                     v
//!  Events::batch <── decode <── subscriber <── SUBSCRIBE node + all   Redis
//!  Events::status (Up/Down, all threads)                              ^
//!  Events::node_gone <── heartbeat ── SET alive PX, SADD nodes, ──────┘
//!                        (every `heartbeat`; frees dead nodes' names)
//!  claim/release ── EVAL on a connection of their own (caller's thread)
//! ```
//!
//! Each thread reconnects on its own with back-off; the link is `Up` when
//! all three are connected (and this node's heartbeat key is set), and
//! `Down` as soon as one of them fails. While it is down nothing is queued
//! (`try_publish` is `Err(Down)`) and claims fail, so callers answer
//! `ERR UNAVAILABLE` at once instead of waiting.

use super::wire::{self, Item};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::{Condvar, Mutex, RwLock};
use redis::{Connection, ConnectionLike, RedisResult};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a thread waiting for work looks whether the link is closing.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// The first wait before reconnecting; it doubles up to the heartbeat.
const FIRST_RETRY: Duration = Duration::from_millis(20);
/// Most items the publisher takes from its queue for one round.
const MAX_ROUND: usize = 4096;
/// A batch is closed once it is past this many bytes (one Redis message
/// stays small enough not to hold Redis up delivering it).
const MAX_BATCH_BYTES: usize = 256 << 10;

/// What a link needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `redis://…` or `rediss://…`.
    pub url: String,
    /// The cluster's name: every key and channel starts `chat:<cluster>:`,
    /// so several clusters can share one Redis.
    pub cluster: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// How often this node says it is alive (and looks at the others).
    pub heartbeat: Duration,
    /// How long after its last heartbeat a node is taken for dead, at
    /// most (at least two heartbeats).
    pub node_timeout: Duration,
    /// Items that may wait for the publisher.
    pub queue: usize,
    /// Room messages each room's history keeps in Redis (0: none).
    pub history: usize,
}

impl Settings {
    /// The defaults of `cluster.md`: heartbeat 2 s, node timeout 6 s.
    pub fn new(url: &str, cluster: &str, node: &str) -> Settings {
        Settings {
            url: url.to_string(),
            cluster: cluster.to_string(),
            node: node.to_string(),
            heartbeat: Duration::from_secs(2),
            node_timeout: Duration::from_secs(6),
            queue: 65_536,
            history: 100,
        }
    }

    fn validate(&self) -> Result<(), LinkError> {
        let bad = |s: &str| LinkError::Settings(s.to_string());
        if !usable_name(&self.cluster) {
            return Err(bad("the cluster name is 1-64 of A-Z a-z 0-9 _ - . :"));
        }
        if !usable_name(&self.node) {
            return Err(bad("the node name is 1-64 of A-Z a-z 0-9 _ - . :"));
        }
        if self.heartbeat.is_zero() || self.node_timeout < self.heartbeat * 2 {
            return Err(bad(
                "the node timeout must be at least two heartbeats (and the heartbeat above 0)",
            ));
        }
        if self.queue == 0 {
            return Err(bad("the cluster queue must hold at least one item"));
        }
        Ok(())
    }

    /// How long a heartbeat key lives: the timeout less one heartbeat, so
    /// that the others, who look once a heartbeat, notice a dead node
    /// within the timeout (its last key expires at most `lease` after it
    /// died, and someone looks at most a heartbeat later).
    fn lease(&self) -> Duration {
        self.node_timeout.saturating_sub(self.heartbeat)
    }

    /// Longest one Redis command may take before its connection is taken
    /// for broken: a Redis slower than the lease is as good as gone.
    pub(crate) fn io_timeout(&self) -> Duration {
        self.lease()
            .clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// Names that are safe inside Redis keys and patterns (no glob characters,
/// no spaces), and fit the wire's limit.
fn usable_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// Where an item goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The node with this name (its users are the recipients).
    Node(String),
    /// Every other node.
    All,
}

/// The link's health, as reported to [`Events::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Every connection is up and this node's heartbeat is set.
    Up,
    /// At least one connection failed; it is being retried.
    Down,
}

/// Why a link call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkError {
    /// The settings can't work (why, for people).
    Settings(String),
    /// The URL is not a Redis URL.
    BadUrl(String),
    /// Redis is not reachable now (or the link is closing).
    Down,
    /// The publisher's queue is full.
    Full,
    /// Redis answered with an error, or the connection broke mid-call.
    Redis(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Settings(s) => write!(f, "cluster settings: {s}"),
            LinkError::BadUrl(s) => write!(f, "cluster URL: {s}"),
            LinkError::Down => f.write_str("the cluster's Redis is not reachable"),
            LinkError::Full => f.write_str("the cluster queue is full"),
            LinkError::Redis(s) => write!(f, "Redis: {s}"),
        }
    }
}

impl From<redis::RedisError> for LinkError {
    fn from(e: redis::RedisError) -> LinkError {
        LinkError::Redis(e.to_string())
    }
}

/// What the link tells its owner. Called on the link's threads: each call
/// must return soon (route, queue, note) and never wait for the link
/// itself, or the link stalls.
pub(crate) trait Events: Send + Sync + 'static {
    /// A batch another node published to this node or to all, in the
    /// order it was published (batches from this node are not handed
    /// back). On the subscriber thread.
    fn batch(&self, node: &str, items: Vec<Item>);
    /// The link went up or down. Reports come in order; the first is
    /// `Up`, or `Down` if the first try to connect failed.
    fn status(&self, status: Status);
    /// A node this one knew is gone (its heartbeat expired), or this node
    /// freed a dead node's names: `freed` are those names as shown, given
    /// to exactly one node in the cluster (the one whose heartbeat found
    /// them first); every other node gets it with `freed` empty. Once per
    /// disappearance per node. On the heartbeat thread.
    fn node_gone(&self, node: &str, freed: Vec<String>);
}

/// What the link has done (monotonic counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkStats {
    /// Items accepted by `try_publish`.
    pub queued: u64,
    /// `PUBLISH` commands sent.
    pub publishes: u64,
    /// Items in them.
    pub published: u64,
    /// Items accepted but lost because the connection broke.
    pub lost: u64,
    /// Batches handed to `Events::batch`.
    pub batches_in: u64,
    /// Items in them.
    pub items_in: u64,
    /// Messages that did not decode (dropped).
    pub bad_batches: u64,
    /// Batches had before, published again after a break (dropped).
    pub duplicates: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    publishes: AtomicU64,
    published: AtomicU64,
    lost: AtomicU64,
    batches_in: AtomicU64,
    items_in: AtomicU64,
    bad_batches: AtomicU64,
    duplicates: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Redis key and channel names, all under `chat:<cluster>:`.
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of cluster `cluster`.
    pub fn new(cluster: &str) -> Keys {
        Keys {
            prefix: format!("chat:{cluster}:"),
        }
    }
    /// `alive:<node>`: the node's heartbeat (Unix ms), expiring.
    pub fn alive(&self, node: &str) -> String {
        format!("{}alive:{node}", self.prefix)
    }
    /// `nodes`: the set of nodes that have beaten and were not cleaned up.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }
    /// `name:<folded>`: who has a name (the node's name).
    pub fn name(&self, folded: &str) -> String {
        format!("{}name:{folded}", self.prefix)
    }
    /// `names:<node>`: a node's names, folded → as shown.
    pub fn names(&self, node: &str) -> String {
        format!("{}names:{node}", self.prefix)
    }
    /// `history:<room>`: a room's last messages, oldest first, each a
    /// one-item batch.
    pub fn history(&self, room_folded: &str) -> String {
        format!("{}history:{room_folded}", self.prefix)
    }

    /// `rooms:<node>`: the rooms of a node's users, folded name → the
    /// rooms' shown names, space-separated.
    pub fn rooms(&self, node: &str) -> String {
        format!("{}rooms:{node}", self.prefix)
    }
    /// `slots`: each node name's slot in message ids, node → number.
    pub fn slots(&self) -> String {
        format!("{}slots", self.prefix)
    }
    /// `slot_owners`: the other way round, number → node.
    pub fn slot_owners(&self) -> String {
        format!("{}slot_owners", self.prefix)
    }
    /// The channel of one node.
    pub fn node_channel(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }
    /// The channel every node listens to.
    pub fn all_channel(&self) -> String {
        format!("{}all", self.prefix)
    }
    /// `account:<folded>`: an account, a hash `name`, `hash`, `created`.
    pub fn account(&self, folded: &str) -> String {
        format!("{}account:{folded}", self.prefix)
    }
    /// `accounts`: the set of every account's folded name.
    pub fn accounts(&self) -> String {
        format!("{}accounts", self.prefix)
    }
    /// `mailbox:<folded>`: an absent account's stored messages, a list of
    /// encoded messages, oldest first.
    pub fn mailbox(&self, folded: &str) -> String {
        format!("{}mailbox:{folded}", self.prefix)
    }
    /// `live:<folded>`: the node where an account is logged in and has had
    /// its mailbox delivered, so new messages go there instead.
    pub fn live(&self, folded: &str) -> String {
        format!("{}live:{folded}", self.prefix)
    }
}

/// Takes a name for this node if it is free or already this node's;
/// refuses (-1) if this node's own heartbeat is not set, so a claim can't
/// slip in while others are freeing this node's names. A dead node's
/// names stay taken until a heartbeat frees them (and so has them
/// announced as left) first. KEYS: `name`, `names:<me>`, `alive:<me>`.
/// ARGV: me, folded, shown.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
";

/// Gives a name back if this node has it, and with it the account's
/// `live` mark if this node set it (its messages go to the mailbox again).
/// KEYS: `name`, `names:<me>`, `rooms:<me>`, `live`. ARGV: me, folded.
const RELEASE: &str = r"
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
  return 1
end
return 0
";

/// Frees every name of a node whose heartbeat is gone (or of this node
/// when it leaves: force) and forgets the node; returns the names freed,
/// as shown, and the `live` marks it set. Only one caller gets them: the
/// next finds nothing. KEYS: `names:<node>`, `alive:<node>`, `nodes`,
/// `rooms:<node>`. ARGV: node, prefix, force.
const RELEASE_ALL: &str = r"
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local all = redis.call('HGETALL', KEYS[1])
local freed = {}
for i = 1, #all, 2 do
  local key = ARGV[2] .. 'name:' .. all[i]
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    table.insert(freed, all[i + 1])
  end
  local live = ARGV[2] .. 'live:' .. all[i]
  if redis.call('GET', live) == ARGV[1] then redis.call('DEL', live) end
end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[3], ARGV[1])
if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end
return freed
";

/// A node's slot in message ids: the one Redis has for it; else the one
/// it had before (`want`, after Redis lost everything) if still free; else
/// the lowest free number. Each number has one node (`slot_owners`), so
/// no two nodes share a slot. KEYS: `slots`, `slot_owners`. ARGV: node,
/// want (-1: none), most.
const SLOT: &str = r"
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s then return tonumber(s) end
local want = tonumber(ARGV[2])
if want < 0 or redis.call('HSETNX', KEYS[2], want, ARGV[1]) == 0 then
  want = 0
  while want < tonumber(ARGV[3]) and redis.call('HSETNX', KEYS[2], want, ARGV[1]) == 0 do
    want = want + 1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], want)
return want
";

/// Which thread a health change is about.
#[derive(Debug, Clone, Copy)]
enum Part {
    Publisher = 1,
    Subscriber = 2,
    Heartbeat = 4,
}
const ALL_PARTS: u8 = 7;

/// Which connections are up, and the last status reported.
///
/// When one thread finds its connection broken, every connection is taken
/// for suspect (Redis probably went away under all of them, and an idle
/// one would only find out when it fails a command): all are marked down
/// and `breaks` moves on. Each thread then proves its connection again (a
/// command that works after the break, or a new connection) before it
/// counts as up; the link is up when all three have.
struct Health {
    /// Threads up since the last break (`Part` bits), and the last status
    /// reported.
    state: Mutex<(u8, Option<Status>)>,
    up: AtomicBool,
    /// How many times a connection was found broken.
    breaks: AtomicU64,
}

impl Health {
    /// `part`'s connection worked after `made` breaks; it counts only if
    /// there was no break since (else false: prove it again).
    fn works(&self, part: Part, made: u64, events: &dyn Events) -> bool {
        let mut s = self.state.lock();
        if self.breaks() != made {
            return false;
        }
        s.0 |= part as u8;
        if s.0 == ALL_PARTS {
            self.up.store(true, Ordering::Release);
            report(&mut s.1, Status::Up, events);
        }
        true
    }

    /// `part`'s connection is broken (or could not be made).
    fn broken(&self, events: &dyn Events) {
        let mut s = self.state.lock();
        if s.0 != 0 {
            s.0 = 0;
            self.breaks.fetch_add(1, Ordering::AcqRel);
        }
        self.up.store(false, Ordering::Release);
        // Also the first failure to connect at all is news.
        report(&mut s.1, Status::Down, events);
    }

    fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn breaks(&self) -> u64 {
        self.breaks.load(Ordering::Acquire)
    }
}

/// Reports `now` if it is a change. Under the health lock, so reports
/// come in the order they happen.
fn report(last: &mut Option<Status>, now: Status, events: &dyn Events) {
    if *last != Some(now) {
        *last = Some(now);
        events.status(now);
    }
}

/// The stop signal, with sleeps that end when it is given.
struct Stop {
    flag: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Stop {
    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        let _g = self.lock.lock();
        self.cv.notify_all();
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sleeps `d` or until stopped; true if still running.
    fn sleep(&self, d: Duration) -> bool {
        let mut g = self.lock.lock();
        if self.is_set() {
            return false;
        }
        self.cv.wait_for(&mut g, d);
        !self.is_set()
    }
}

/// Waits between reconnects: doubling, up to a limit.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            next: FIRST_RETRY,
            max: max.max(FIRST_RETRY),
        }
    }
    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }
}

/// What the link's threads share.
struct Inner {
    settings: Settings,
    keys: Keys,
    client: redis::Client,
    events: Arc<dyn Events>,
    health: Health,
    stop: Stop,
    /// Set by `shutdown`: nothing more is queued, and the publisher ends
    /// once its queue is empty (or its connection fails).
    draining: AtomicBool,
    /// The nodes this node takes for alive (itself included), sorted.
    view: RwLock<Vec<String>>,
    /// The connection for claims, made when first needed, and the
    /// `Health::breaks` before it was made.
    claims: Mutex<Option<(Connection, u64)>>,
    counters: Counters,
    /// Holds the publisher before it drains its queue (tests fill the
    /// queue first to see batching).
    #[cfg(test)]
    gate: Mutex<()>,
}

impl Inner {
    fn connect(&self, read_timeout: Duration) -> RedisResult<Connection> {
        let io = self.settings.io_timeout();
        let c = self.client.get_connection_with_timeout(io)?;
        c.set_read_timeout(Some(read_timeout))?;
        c.set_write_timeout(Some(io))?;
        Ok(c)
    }

    fn lost(&self, part: Part, was_up: bool, e: &dyn fmt::Display) {
        if was_up {
            crate::log_warn!("cluster: {part:?} lost Redis: {e}");
        } else {
            crate::log_debug!("cluster: {part:?} cannot reach Redis: {e}");
        }
        self.health.broken(&*self.events);
    }

    /// Sleeps `d`, or less if a connection broke since `made` (so the
    /// caller proves its own at once); false once the link stops.
    fn pause(&self, d: Duration, made: u64) -> bool {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.health.breaks() != made {
                return !self.stop.is_set();
            }
            if !self.stop.sleep(left.min(STOP_CHECK)) {
                return false;
            }
        }
    }
}

/// One node's link to the cluster. Dropping it stops its threads at once,
/// leaving its heartbeat to expire (as if the node had died); `shutdown`
/// leaves cleanly.
pub(crate) struct Link {
    inner: Arc<Inner>,
    tx: Option<Sender<(Target, Item)>>,
    publisher: Option<JoinHandle<()>>,
    others: Vec<JoinHandle<()>>,
}

impl Link {
    /// Starts the link's threads. Fails only on settings or a URL that
    /// can't work; an unreachable Redis is retried (and reported `Down`).
    pub fn start(settings: Settings, events: Arc<dyn Events>) -> Result<Link, LinkError> {
        settings.validate()?;
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| LinkError::BadUrl(e.to_string()))?;
        let (tx, rx) = crossbeam_channel::bounded(settings.queue);
        let inner = Arc::new(Inner {
            keys: Keys::new(&settings.cluster),
            settings,
            client,
            events,
            health: Health {
                state: Mutex::new((0, None)),
                up: AtomicBool::new(false),
                breaks: AtomicU64::new(0),
            },
            stop: Stop {
                flag: AtomicBool::new(false),
                lock: Mutex::new(()),
                cv: Condvar::new(),
            },
            draining: AtomicBool::new(false),
            view: RwLock::new(Vec::new()),
            claims: Mutex::new(None),
            counters: Counters::default(),
            #[cfg(test)]
            gate: Mutex::new(()),
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| LinkError::Settings(format!("cannot start a thread: {e}")))
        };
        let mut link = Link {
            inner: Arc::clone(&inner),
            tx: Some(tx),
            publisher: None,
            others: Vec::new(),
        };
        let i = Arc::clone(&inner);
        link.publisher = Some(spawn("cluster-pub", Box::new(move || publisher(&i, &rx)))?);
        let i = Arc::clone(&inner);
        link.others
            .push(spawn("cluster-sub", Box::new(move || subscriber(&i)))?);
        let i = Arc::clone(&inner);
        link.others
            .push(spawn("cluster-beat", Box::new(move || heartbeat(&i)))?);
        Ok(link)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.settings.node
    }

    /// True while every connection is up.
    pub fn is_up(&self) -> bool {
        self.inner.health.up()
    }

    /// Queues `item` for `to`; never blocks. `Err(Down)` while Redis is not
    /// reachable, `Err(Full)` if the publisher is that far behind: the
    /// caller answers `ERR UNAVAILABLE`.
    pub fn try_publish(&self, to: Target, item: Item) -> Result<(), LinkError> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(LinkError::Down);
        };
        if !self.inner.health.up() || self.inner.draining.load(Ordering::Acquire) {
            return Err(LinkError::Down);
        }
        match tx.try_send((to, item)) {
            Ok(()) => {
                add(&self.inner.counters.queued, 1);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(LinkError::Full),
            Err(TrySendError::Disconnected(_)) => Err(LinkError::Down),
        }
    }

    /// The nodes taken for alive, this one included, sorted (as of the
    /// last heartbeat; no I/O).
    pub fn nodes(&self) -> Vec<String> {
        self.inner.view.read().clone()
    }

    /// Claims a name (folded, and as shown) for this node, atomically
    /// across the cluster: true if it is this node's now (it was free, or
    /// already this node's), false if another node has it (a dead node's
    /// names are freed by a heartbeat within the node timeout). Blocks the
    /// calling thread for one Redis round trip.
    pub fn claim(&self, folded: &str, shown: &str) -> Result<bool, LinkError> {
        let k = &self.inner.keys;
        let me = self.node();
        let n: i64 = self.eval(
            CLAIM,
            &[&k.name(folded), &k.names(me), &k.alive(me)],
            &[me, folded, shown],
        )?;
        match n {
            1 => Ok(true),
            0 => Ok(false),
            // This node's heartbeat is not set: it is (re)joining.
            _ => Err(LinkError::Down),
        }
    }

    /// Gives back a name this node claimed; true if it had it (another
    /// node's name is never touched).
    pub fn release(&self, folded: &str) -> Result<bool, LinkError> {
        let k = &self.inner.keys;
        let me = self.node();
        let n: i64 = self.eval(
            RELEASE,
            &[&k.name(folded), &k.names(me), &k.rooms(me), &k.live(folded)],
            &[me, folded],
        )?;
        Ok(n == 1)
    }

    /// Frees the names of `node` if its heartbeat is gone, and forgets it;
    /// returns the names freed, as shown (empty if it is alive, or someone
    /// freed them first). The heartbeat thread does this for every dead
    /// node it finds (see [`Events::node_gone`]).
    #[cfg(test)]
    pub fn release_all(&self, node: &str) -> Result<Vec<String>, LinkError> {
        let k = &self.inner.keys;
        self.eval(
            RELEASE_ALL,
            &[&k.names(node), &k.alive(node), &k.nodes(), &k.rooms(node)],
            &[node, &k.prefix, "0"],
        )
    }

    /// The names `node` has claimed, as shown (for rebuilding a view of
    /// who is where after the link was down).
    #[cfg(test)]
    pub fn names_of(&self, node: &str) -> Result<Vec<String>, LinkError> {
        let key = self.inner.keys.names(node);
        self.with_claims(|c| redis::cmd("HVALS").arg(&key).query(c))
    }

    /// Each user of `node` (folded → as shown) with the rooms it is in
    /// (shown names): what the other nodes rebuild their mirror from.
    pub fn users_of(&self, node: &str) -> Result<Vec<(String, String, String)>, LinkError> {
        let k = &self.inner.keys;
        let (names, rooms): (
            std::collections::HashMap<String, String>,
            std::collections::HashMap<String, String>,
        ) = self.with_claims(|c| {
            redis::pipe()
                .cmd("HGETALL")
                .arg(k.names(node))
                .cmd("HGETALL")
                .arg(k.rooms(node))
                .query(c)
        })?;
        Ok(names
            .into_iter()
            .map(|(folded, shown)| {
                let rooms = rooms.get(&folded).cloned().unwrap_or_default();
                (folded, shown, rooms)
            })
            .collect())
    }

    /// Every room's history in Redis: (room folded, its messages, oldest
    /// first). An entry published again after a break may be there twice
    /// (the caller drops repeated ids); one that does not decode is skipped.
    pub fn histories(&self) -> Result<Vec<(String, Vec<Item>)>, LinkError> {
        let prefix = self.inner.keys.history("");
        self.with_claims(|c| {
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                keys.extend(found);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            keys.sort();
            keys.dedup();
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("LRANGE").arg(k).arg(0).arg(-1);
            }
            let lists: Vec<Vec<Vec<u8>>> = pipe.query(c)?;
            Ok(keys
                .iter()
                .zip(lists)
                .filter_map(|(k, entries)| {
                    let room = k.strip_prefix(&prefix)?.to_string();
                    let items = entries
                        .iter()
                        .filter_map(|e| wire::decode_batch(e).ok())
                        .flat_map(|b| b.items)
                        .collect();
                    Some((room, items))
                })
                .collect())
        })
    }

    /// The nodes in Redis's `nodes` set now (one round trip; `nodes` is
    /// the view of the last heartbeat). A node's names are freed and it
    /// leaves the set in one script, so a user whose node is not here is
    /// gone with its node.
    pub fn nodes_now(&self) -> Result<Vec<String>, LinkError> {
        let key = self.inner.keys.nodes();
        self.with_claims(|c| redis::cmd("SMEMBERS").arg(&key).query(c))
    }

    /// Records the rooms a local user is in (`rooms`: shown names,
    /// space-separated; empty: none).
    pub fn set_rooms(&self, folded: &str, rooms: &str) -> Result<(), LinkError> {
        let key = self.inner.keys.rooms(self.node());
        self.with_claims(|c| {
            if rooms.is_empty() {
                redis::cmd("HDEL").arg(&key).arg(folded).exec(c)
            } else {
                redis::cmd("HSET").arg(&key).arg(folded).arg(rooms).exec(c)
            }
        })
    }

    /// This node's slot in message ids (see [`SLOT`]), below `most`;
    /// `had` is the one it had, if any.
    pub fn slot(&self, had: Option<u64>, most: u64) -> Result<u64, LinkError> {
        let k = &self.inner.keys;
        let want = had.map_or("-1".to_string(), |s| s.to_string());
        self.eval(
            SLOT,
            &[&k.slots(), &k.slot_owners()],
            &[self.node(), &want, &most.to_string()],
        )
    }

    /// Holds the publisher before its next round until the guard is
    /// dropped (a test queues many items, then lets them go at once).
    #[cfg(test)]
    pub fn hold_publisher(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.inner.gate.lock()
    }

    /// The counters.
    pub fn stats(&self) -> LinkStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            queued: l(&c.queued),
            publishes: l(&c.publishes),
            published: l(&c.published),
            lost: l(&c.lost),
            batches_in: l(&c.batches_in),
            items_in: l(&c.items_in),
            bad_batches: l(&c.bad_batches),
            duplicates: l(&c.duplicates),
        }
    }

    /// Leaves the cluster cleanly: publishes what is queued, stops the
    /// threads, then deletes this node's heartbeat and frees its names, so
    /// the others see it gone at their next heartbeat with nothing to free.
    /// The owner publishes its users' `Left`s before calling this.
    #[cfg(test)]
    pub fn shutdown(mut self) {
        self.inner.draining.store(true, Ordering::Release);
        // The publisher ends when its queue is empty and closed.
        self.tx = None;
        if let Some(p) = self.publisher.take() {
            let _ = p.join();
        }
        self.stop_threads();
        let k = &self.inner.keys;
        let me = self.node();
        let left: Result<Vec<String>, _> = self.eval(
            RELEASE_ALL,
            &[&k.names(me), &k.alive(me), &k.nodes(), &k.rooms(me)],
            &[me, &k.prefix, "1"],
        );
        if let Err(e) = left {
            crate::log_warn!(
                "cluster: could not leave cleanly ({e}); the others will time this node out"
            );
        }
    }

    /// Leaves the cluster cleanly from a shared reference (the owner has
    /// published its users' `Left`s and waited for them): nothing more is
    /// queued, the threads stop, and this node's heartbeat and names go,
    /// so the others find nothing to free. The threads are joined when the
    /// link is dropped.
    pub fn close(&self) {
        self.inner.draining.store(true, Ordering::Release);
        self.inner.stop.set();
        let k = &self.inner.keys;
        let me = self.node();
        let left: Result<Vec<String>, _> = self.eval(
            RELEASE_ALL,
            &[&k.names(me), &k.alive(me), &k.nodes(), &k.rooms(me)],
            &[me, &k.prefix, "1"],
        );
        if let Err(e) = left {
            crate::log_warn!(
                "cluster: could not leave cleanly ({e}); the others will time this node out"
            );
        }
    }

    fn stop_threads(&mut self) {
        self.inner.stop.set();
        self.tx = None;
        for t in self
            .publisher
            .take()
            .into_iter()
            .chain(self.others.drain(..))
        {
            let _ = t.join();
        }
    }

    /// Runs a Lua script on the claims connection.
    fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, LinkError> {
        let mut c = redis::cmd("EVAL");
        c.arg(script).arg(keys.len()).arg(keys).arg(args);
        self.with_claims(|conn| c.query(conn))
    }

    /// Runs `f` on the claims connection (made if needed); a broken
    /// connection is dropped, to be made again next time.
    fn with_claims<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, LinkError> {
        let inner = &self.inner;
        if !inner.health.up() && !inner.draining.load(Ordering::Acquire) {
            return Err(LinkError::Down);
        }
        let mut slot = inner.claims.lock();
        let breaks = inner.health.breaks();
        if slot.as_ref().is_some_and(|(_, made)| *made != breaks) {
            *slot = None;
        }
        let (conn, _) = match slot.as_mut() {
            Some(c) => c,
            None => {
                let c = inner
                    .connect(inner.settings.io_timeout())
                    .map_err(|_| LinkError::Down)?;
                slot.insert((c, breaks))
            }
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_unrecoverable_error() || !conn.is_open() {
                    *slot = None;
                }
                Err(e.into())
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// The publisher: takes what is queued, as batches, to Redis.
fn publisher(inner: &Inner, rx: &Receiver<(Target, Item)>) {
    let mut conn: Option<Connection> = None;
    let mut backoff = Backoff::new(inner.settings.heartbeat);
    let mut round: Vec<(Target, Item)> = Vec::new();
    let mut out = Outgoing::new(&inner.settings.node);
    // Batches that were taken (and answered) but that a broken connection
    // did not publish, or published just before it broke: they go first
    // when Redis is back, before anything queued after them, once the
    // nodes they are for listen again.
    let mut retry: Vec<Publish> = Vec::new();
    // When the connection came back with `retry` waiting.
    let mut back_at: Option<Instant> = None;
    let mut was_up = false;
    // `Health::breaks` when the connection last proved to work.
    let mut made = 0;
    while !inner.stop.is_set() {
        let breaks = inner.health.breaks();
        match conn.as_mut() {
            // A connection broke somewhere since this one last worked.
            Some(c) if made != breaks => match redis::cmd("PING").exec(c) {
                Ok(()) => {
                    made = breaks;
                    inner.health.works(Part::Publisher, made, &*inner.events);
                    // Redis may have gone and come back meanwhile: what
                    // it took just before may never have reached anyone.
                    out.replay_into(&mut retry);
                }
                Err(e) => {
                    conn = None;
                    out.replay_into(&mut retry);
                    inner.lost(Part::Publisher, was_up, &e);
                    was_up = false;
                }
            },
            Some(c) if !retry.is_empty() => {
                let since = *back_at.get_or_insert_with(Instant::now);
                match listening(inner, c, &retry) {
                    Ok(true) => {}
                    // Not yet (their subscribers reconnect on their own
                    // back-off): wait, up to a node timeout.
                    Ok(false) if since.elapsed() < inner.settings.node_timeout => {
                        inner.stop.sleep(RETRY_CHECK);
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        conn = None;
                        out.replay_into(&mut retry);
                        inner.lost(Part::Publisher, true, &e);
                        was_up = false;
                        continue;
                    }
                }
                back_at = None;
                if let Err(e) = out.send(inner, c, &mut retry) {
                    conn = None;
                    out.replay_into(&mut retry);
                    inner.lost(Part::Publisher, true, &e);
                    was_up = false;
                }
            }
            Some(c) => {
                match rx.recv_timeout(STOP_CHECK) {
                    Ok(first) => round.push(first),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                #[cfg(test)]
                drop(inner.gate.lock());
                round.extend(rx.try_iter().take(MAX_ROUND - 1));
                let mut batches = Vec::new();
                out.build(inner, &round, &mut batches);
                round.clear();
                if let Err(e) = out.send(inner, c, &mut batches) {
                    conn = None;
                    // Older than anything in `retry` (which is empty here:
                    // it goes first), newer than what was just published.
                    retry.append(&mut batches);
                    out.replay_into(&mut retry);
                    inner.lost(Part::Publisher, true, &e);
                    was_up = false;
                }
            }
            None => match inner.connect(inner.settings.io_timeout()) {
                Ok(c) => {
                    conn = Some(c);
                    made = breaks;
                    backoff.reset();
                    was_up = true;
                    inner.health.works(Part::Publisher, made, &*inner.events);
                }
                Err(e) => {
                    inner.lost(Part::Publisher, was_up, &e);
                    was_up = false;
                    // What was queued waits for Redis (nothing more is
                    // queued while the link is down); at shutdown it is
                    // dropped, counted.
                    round.extend(rx.try_iter());
                    out.build(inner, &round, &mut retry);
                    round.clear();
                    if inner.draining.load(Ordering::Acquire) || !inner.stop.sleep(backoff.next()) {
                        let lost: usize = retry.iter().map(|p| p.items).sum();
                        add(&inner.counters.lost, lost as u64);
                        return;
                    }
                }
            },
        }
    }
}

/// How often a publisher with items to publish again looks whether their
/// nodes listen again.
const RETRY_CHECK: Duration = Duration::from_millis(20);
/// How long a published batch is kept to be published again if the
/// connection is found broken: Redis may have answered the `PUBLISH` and
/// gone before passing the message on. A break is noticed within a
/// `STOP_CHECK` or so of the first thread that sees it.
const REPLAY_FOR: Duration = Duration::from_secs(1);
/// Most bytes kept for that (the oldest go first).
const MAX_REPLAY_BYTES: usize = 64 << 20;

/// One `PUBLISH`: a numbered batch for one channel; or one room message
/// for the room's history (`RPUSH` to the list, trimmed to its length).
struct Publish {
    /// For the all channel (else a node's).
    to_all: bool,
    /// A history entry: `channel` is the list's key.
    history: bool,
    channel: String,
    payload: Vec<u8>,
    /// How many items.
    items: usize,
}

/// The publisher's numbering and its recent batches.
///
/// Every batch gets the next number of this run, so a receiver can drop
/// one it already has; the batches published in the last [`REPLAY_FOR`]
/// are kept, to be published again (same numbers) after a break.
struct Outgoing {
    node: String,
    run: u64,
    seq: u64,
    recent: std::collections::VecDeque<(Instant, Publish)>,
    recent_bytes: usize,
}

impl Outgoing {
    fn new(node: &str) -> Outgoing {
        Outgoing {
            node: node.to_string(),
            run: new_run(),
            seq: 0,
            recent: Default::default(),
            recent_bytes: 0,
        }
    }

    /// Turns one round of queued items into numbered batches on `to`.
    /// Items for one node go in one batch to its channel, items for all in
    /// one batch to the all channel, except that the queue's order is kept
    /// between the two: a node's subscriber gets both channels on one
    /// connection, in publish order, so a run for all is published before
    /// the items queued after it, and after those queued before.
    fn build(&mut self, inner: &Inner, round: &[(Target, Item)], to: &mut Vec<Publish>) {
        for run in round.chunk_by(|a, b| (a.0 == Target::All) == (b.0 == Target::All)) {
            if run.first().is_some_and(|(t, _)| *t == Target::All) {
                let channel = inner.keys.all_channel();
                self.batches(true, &channel, run.iter().map(|(_, i)| i), to);
                self.history(inner, run.iter().map(|(_, i)| i), to);
                continue;
            }
            // Per node, in queue order (few nodes: a list is enough).
            let mut per_node: Vec<(&str, Vec<&Item>)> = Vec::new();
            for (t, item) in run {
                let Target::Node(node) = t else { continue };
                match per_node.iter_mut().find(|(n, _)| n == node) {
                    Some((_, items)) => items.push(item),
                    None => per_node.push((node, vec![item])),
                }
            }
            for (node, items) in per_node {
                let channel = inner.keys.node_channel(node);
                self.batches(false, &channel, items.into_iter(), to);
            }
        }
    }

    /// `items` as batches for `channel` on `to` (more than one if they are
    /// many bytes).
    fn batches<'a>(
        &mut self,
        to_all: bool,
        channel: &str,
        items: impl Iterator<Item = &'a Item>,
        to: &mut Vec<Publish>,
    ) {
        let mut open: Option<Publish> = None;
        for item in items {
            if open
                .as_ref()
                .is_some_and(|p| p.payload.len() >= MAX_BATCH_BYTES)
            {
                to.extend(open.take());
            }
            let p = open.get_or_insert_with(|| {
                self.seq += 1;
                let mut payload = Vec::new();
                wire::begin_numbered(&self.node, self.run, self.seq, &mut payload);
                Publish {
                    to_all,
                    history: false,
                    channel: channel.to_string(),
                    payload,
                    items: 0,
                }
            });
            wire::encode_item(item, &mut p.payload);
            p.items += 1;
        }
        to.extend(open);
    }

    /// The room messages among `items`, each as an entry for its room's
    /// history (a batch of one, not numbered).
    fn history<'a>(
        &self,
        inner: &Inner,
        items: impl Iterator<Item = &'a Item>,
        to: &mut Vec<Publish>,
    ) {
        if inner.settings.history == 0 {
            return;
        }
        for item in items {
            let Item::Msg(m) = item else { continue };
            let wire::MsgKind::Room(room) = &m.kind else {
                continue;
            };
            let mut payload = Vec::new();
            wire::begin_batch(&self.node, &mut payload);
            wire::encode_item(item, &mut payload);
            to.push(Publish {
                to_all: false,
                history: true,
                channel: inner.keys.history(&protocol::fold_name(room)),
                payload,
                items: 0,
            });
        }
    }

    /// Publishes `batches` in one pipeline; on success they are kept as
    /// recent and `batches` is emptied; on error it is left as it was.
    fn send(
        &mut self,
        inner: &Inner,
        c: &mut Connection,
        batches: &mut Vec<Publish>,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        let keep = -(inner.settings.history as i64);
        for p in batches.iter() {
            if p.history {
                pipe.cmd("RPUSH")
                    .arg(&p.channel)
                    .arg(&p.payload[..])
                    .ignore();
                pipe.cmd("LTRIM").arg(&p.channel).arg(keep).arg(-1).ignore();
            } else {
                pipe.cmd("PUBLISH")
                    .arg(&p.channel)
                    .arg(&p.payload[..])
                    .ignore();
            }
        }
        pipe.exec(c)?;
        let publishes = batches.iter().filter(|p| !p.history).count();
        add(&inner.counters.publishes, publishes as u64);
        let items: usize = batches.iter().map(|p| p.items).sum();
        add(&inner.counters.published, items as u64);
        let now = Instant::now();
        for p in batches.drain(..) {
            self.recent_bytes += p.payload.len();
            self.recent.push_back((now, p));
        }
        while let Some((at, p)) = self.recent.front() {
            if at.elapsed() <= REPLAY_FOR && self.recent_bytes <= MAX_REPLAY_BYTES {
                break;
            }
            self.recent_bytes -= p.payload.len();
            self.recent.pop_front();
        }
        Ok(())
    }

    /// Puts the batches published in the last [`REPLAY_FOR`] in front of
    /// `retry` (they are older), to be published again; receivers drop the
    /// ones they had.
    fn replay_into(&mut self, retry: &mut Vec<Publish>) {
        let mut again: Vec<Publish> = self
            .recent
            .drain(..)
            .filter(|(at, _)| at.elapsed() <= REPLAY_FOR)
            .map(|(_, p)| p)
            .collect();
        self.recent_bytes = 0;
        if !again.is_empty() {
            again.append(retry);
            *retry = again;
        }
    }
}

/// A number for this run of the process, never 0 (0 is "not numbered"):
/// the time it started, in nanoseconds, mixed with the process id.
fn new_run() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 48)).max(1)
}

/// True once every channel the batches go to has as many subscribers as
/// it should: a node's channel one, the all channel one per node this
/// node takes for alive (itself included).
fn listening(inner: &Inner, c: &mut Connection, batches: &[Publish]) -> RedisResult<bool> {
    let mut channels: Vec<(&str, usize)> = Vec::new();
    for p in batches.iter().filter(|p| !p.history) {
        let want = if p.to_all {
            inner.view.read().len().max(1)
        } else {
            1
        };
        if !channels.iter().any(|(ch, _)| *ch == p.channel) {
            channels.push((&p.channel, want));
        }
    }
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("NUMSUB");
    for (ch, _) in &channels {
        cmd.arg(*ch);
    }
    let counts: Vec<(String, usize)> = cmd.query(c)?;
    Ok(channels
        .iter()
        .all(|(ch, want)| counts.iter().any(|(k, n)| k == ch && n >= want)))
}

/// The subscriber: this node's channel and the all channel, decoded and
/// handed to `Events::batch`.
fn subscriber(inner: &Inner) {
    let mut backoff = Backoff::new(inner.settings.heartbeat);
    let mut was_up = false;
    // The last numbered batch had from each node (kept across
    // reconnections: batches published again after one are dropped here
    // if they came before it).
    let mut seen = Seen::default();
    while !inner.stop.is_set() {
        match listen(inner, &mut backoff, &mut was_up, &mut seen) {
            Ok(()) => return,
            Err(e) => {
                inner.lost(Part::Subscriber, was_up, &e);
                was_up = false;
                if !inner.stop.sleep(backoff.next()) {
                    return;
                }
            }
        }
    }
}

/// One subscription, until it breaks (`Err`) or the link stops (`Ok`).
fn listen(
    inner: &Inner,
    backoff: &mut Backoff,
    was_up: &mut bool,
    seen: &mut Seen,
) -> RedisResult<()> {
    let io = inner.settings.io_timeout();
    let mut made = inner.health.breaks();
    let mut conn = inner.connect(io)?;
    let mut ps = conn.as_pubsub();
    ps.subscribe(&[
        inner.keys.node_channel(&inner.settings.node),
        inner.keys.all_channel(),
    ])?;
    // Short reads from here on, to notice the stop; a ping when quiet, to
    // notice a Redis that hangs without closing the connection, and after
    // another connection broke, to prove this one.
    ps.set_read_timeout(Some(STOP_CHECK))?;
    backoff.reset();
    *was_up = true;
    inner.health.works(Part::Subscriber, made, &*inner.events);
    let mut heard = Instant::now();
    while !inner.stop.is_set() {
        match ps.get_message() {
            Ok(msg) => {
                heard = Instant::now();
                hand_over(inner, msg.get_payload_bytes(), seen);
            }
            Err(e) if e.is_timeout() => {
                let breaks = inner.health.breaks();
                if heard.elapsed() >= inner.settings.heartbeat || breaks != made {
                    ps.set_read_timeout(Some(io))?;
                    ps.ping::<redis::Value>()?;
                    ps.set_read_timeout(Some(STOP_CHECK))?;
                    heard = Instant::now();
                    made = breaks;
                    inner.health.works(Part::Subscriber, made, &*inner.events);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The last numbered batch had from each node: (node, run, seq).
#[derive(Default)]
struct Seen(Vec<(String, u64, u64)>);

impl Seen {
    /// True for a batch not had before: not numbered, from a new run of
    /// its node, or numbered past the last one had from that run. Each
    /// node publishes on one connection and Redis passes its messages on
    /// in order, so numbers only go back when batches are published again.
    fn first_time(&mut self, node: &str, run: u64, seq: u64) -> bool {
        if seq == 0 {
            return true;
        }
        match self.0.iter_mut().find(|(n, _, _)| n == node) {
            Some((_, r, s)) if *r == run && *s >= seq => false,
            Some((_, r, s)) => {
                (*r, *s) = (run, seq);
                true
            }
            None => {
                self.0.push((node.to_string(), run, seq));
                true
            }
        }
    }
}

fn hand_over(inner: &Inner, payload: &[u8], seen: &mut Seen) {
    // The header first: a batch of this node's own, or one had before
    // (published again after a break), is dropped without reading its items.
    let decoded = wire::decode_header(payload).and_then(|(node, run, seq, rest)| {
        if node == inner.settings.node {
            return Ok(None);
        }
        if !seen.first_time(&node, run, seq) {
            add(&inner.counters.duplicates, 1);
            return Ok(None);
        }
        Ok(Some((node, wire::decode_items(rest)?)))
    });
    match decoded {
        Ok(None) => {}
        Ok(Some((node, items))) => {
            add(&inner.counters.batches_in, 1);
            add(&inner.counters.items_in, items.len() as u64);
            inner.events.batch(&node, items);
        }
        Err(e) => {
            add(&inner.counters.bad_batches, 1);
            crate::log_warn!("cluster: dropped a message that does not decode: {e}");
        }
    }
}

/// The heartbeat: says this node is alive, looks at the others, frees the
/// names of dead ones.
fn heartbeat(inner: &Inner) {
    let mut conn: Option<Connection> = None;
    let mut backoff = Backoff::new(inner.settings.heartbeat);
    let mut was_up = false;
    let mut first = true;
    let mut up_since = Instant::now();
    let mut believed: Vec<String> = Vec::new();
    while !inner.stop.is_set() {
        let Some(c) = conn.as_mut() else {
            match inner.connect(inner.settings.io_timeout()) {
                Ok(c) => {
                    conn = Some(c);
                    up_since = Instant::now();
                }
                Err(e) => {
                    inner.lost(Part::Heartbeat, was_up, &e);
                    was_up = false;
                    if !inner.stop.sleep(backoff.next()) {
                        return;
                    }
                }
            }
            continue;
        };
        if first {
            // Names left from an earlier life of this node (it died and
            // nobody freed them) are not anyone's now.
            if let Err(e) = clean_slate(inner, c) {
                conn = None;
                inner.lost(Part::Heartbeat, was_up, &e);
                continue;
            }
            first = false;
        }
        let made = inner.health.breaks();
        match beat(inner, c, &mut believed, up_since) {
            Ok(gone) => {
                backoff.reset();
                was_up = true;
                inner.health.works(Part::Heartbeat, made, &*inner.events);
                for (node, freed) in gone {
                    inner.events.node_gone(&node, freed);
                }
                // Beats again early if a connection breaks meanwhile, to
                // prove this one.
                if !inner.pause(inner.settings.heartbeat, made) {
                    return;
                }
            }
            Err(e) => {
                conn = None;
                inner.lost(Part::Heartbeat, was_up, &e);
                was_up = false;
                if !inner.stop.sleep(backoff.next()) {
                    return;
                }
            }
        }
    }
}

fn clean_slate(inner: &Inner, c: &mut Connection) -> RedisResult<()> {
    let k = &inner.keys;
    let me = &inner.settings.node;
    let stale: Vec<String> = redis::cmd("EVAL")
        .arg(RELEASE_ALL)
        .arg(4)
        .arg(&[k.names(me), k.alive(me), k.nodes(), k.rooms(me)])
        .arg(&[me.as_str(), &k.prefix, "1"])
        .query(c)?;
    if !stale.is_empty() {
        crate::log_info!(
            "cluster: freed {} names left from this node's last run",
            stale.len()
        );
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One heartbeat: set this node's key, find who is alive, free the dead's
/// names. Returns the nodes gone since the last beat, with the names this
/// node freed.
fn beat(
    inner: &Inner,
    c: &mut Connection,
    believed: &mut Vec<String>,
    up_since: Instant,
) -> RedisResult<Vec<(String, Vec<String>)>> {
    let k = &inner.keys;
    let me = &inner.settings.node;
    let lease = inner.settings.lease().as_millis() as u64;
    redis::pipe()
        .cmd("SET")
        .arg(k.alive(me))
        .arg(now_ms())
        .arg("PX")
        .arg(lease)
        .ignore()
        .cmd("SADD")
        .arg(k.nodes())
        .arg(me)
        .ignore()
        .exec(c)?;
    let known: Vec<String> = redis::cmd("SMEMBERS").arg(k.nodes()).query(c)?;
    let mut exists = redis::pipe();
    for n in &known {
        exists.cmd("EXISTS").arg(k.alive(n));
    }
    let alive: Vec<bool> = exists.query(c)?;
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for (n, a) in known.into_iter().zip(alive) {
        if a || n == *me {
            live.push(n);
            continue;
        }
        // In the set without a heartbeat: dead. Whoever frees its names
        // first gets them.
        let freed: Vec<String> = redis::cmd("EVAL")
            .arg(RELEASE_ALL)
            .arg(4)
            .arg(&[k.names(&n), k.alive(&n), k.nodes(), k.rooms(&n)])
            .arg(&[n.as_str(), &k.prefix, "0"])
            .query(c)?;
        if !freed.is_empty() || believed.contains(&n) {
            believed.retain(|b| *b != n);
            gone.push((n, freed));
        }
    }
    // A node that was alive and now is not (someone else freed it first)
    // is gone too; but only once this node has been connected for a lease,
    // so that after Redis restarts empty the others have had time to beat
    // again before anyone is taken for dead.
    let settled = up_since.elapsed() >= inner.settings.lease();
    believed.retain(|b| {
        if live.contains(b) || !settled {
            return true;
        }
        gone.push((b.clone(), Vec::new()));
        false
    });
    for n in live {
        if !believed.contains(&n) {
            believed.push(n);
        }
    }
    believed.sort();
    *inner.view.write() = believed.clone();
    Ok(gone)
}
