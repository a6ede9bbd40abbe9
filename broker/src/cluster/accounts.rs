//! Accounts and stored messages cluster-wide (`shared/cluster.md`): in a
//! cluster they live in the cluster's Redis instead of each node's store,
//! so an account registered on one node logs in on every node, and a
//! message for an absent account waits in Redis for whichever node it
//! next logs in on. Without `cluster` none of this runs: the store keeps
//! them, as on a single broker.
//!
//! # What Redis holds
//!
//! Under `chat:<cluster>:`, beside the keys of [`super::link`]:
//!
//! | key | type | what |
//! |---|---|---|
//! | `account:<folded>` | hash | `name` (as registered), `hash` (argon2id PHC string), `created` (Unix ms) |
//! | `accounts` | set | every account's folded name |
//! | `mailbox:<folded>` | list | an absent account's stored messages, oldest first, each a record of `store::codec`; at most `mailbox_max` (the oldest goes), and it expires `mailbox_days` after its newest message |
//! | `live:<folded>` | string | the node where the account is logged in and has had its mailbox: a message stored for it from now on goes to that node instead |
//!
//! # Threads
//!
//! ```text
//!  accounts thread ── account / create / take ──> Book (a connection of
//!  (NAME <name> <pw>, REGISTER, IRC PASS/SASL)     its own; Down at once
//!                                                  while the link is down)
//!  routing threads ── try_append ──┐
//!  (never wait: Down or a full     ├─> bounded queue ──> post thread ──> Redis
//!   queue is ERR UNAVAILABLE)      │   (one pipeline a round; each message's
//!  accounts thread, IRC door,      │    `done` once Redis has it; a message
//!   subscriber ── put_back,  ──────┘    for an account live on a node goes
//!   keep_for_absent                     there; the owned names are read
//!                                       again each time the link comes up)
//! ```
//!
//! # Why each node knows every account at once
//!
//! Each node keeps the set of owned names in memory (`Accounts::owned`, read
//! on the workers). The registering node adds the name itself; the
//! `REGISTER` script creates the account and, in the same atomic step,
//! publishes an `Item::Account` on the all channel, in a batch of its own
//! (so a node too old to know the tag drops only that). Redis runs one
//! thing at a time, so every node hears of the account before anything the
//! registering node publishes after it, such as the owner's `LEFT`: a user
//! who saw the owner leave, on any node, and then tries the name gets
//! `NAME_OWNED`. `broker account delete` publishes the same way. Pub/sub
//! keeps nothing for a node that is away, so the post thread reads the
//! whole set again whenever the link comes up (items heard meanwhile are
//! applied over it, so a change that races the read is not lost).
//!
//! # Messages for absent accounts
//!
//! The `APPEND` script stores a message unless the account is `live` on the
//! node that has its name: then the post thread hands it to that node (the
//! recipient logged in after the sender's node last heard of it). A login
//! takes the mailbox twice, as on one broker: right after the claim (which
//! clears `live`) and again once the name is taken here (which sets it), so
//! a message is in the mailbox before the second take, or goes to the
//! user's node after it. A node that gets a message for an account that is
//! not there (it left a moment ago, and its name and `live` mark are not
//! yet given back) stores it ([`keep_for_absent`]): never lost, never twice.

use super::link::{Keys, LinkError, Target};
use super::node::Node;
use super::wire::{self, Item, Msg, MsgKind};
use crate::core::{self, outbound::Outbox};
use crate::store::codec::{decode_message, encode_message};
use crate::store::{Account, Done, DoneFn, Stored, StoredKind};
use crate::{log_debug, log_info, log_warn, Shared};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use redis::{Connection, ConnectionLike, RedisResult};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Messages and put-backs that may wait for the post thread; past it a
/// message for an absent account is refused with `UNAVAILABLE`.
const QUEUE: usize = 65_536;
/// Most jobs the post thread takes for one round (one pipeline).
const MAX_ROUND: usize = 1024;
/// How often the post thread looks at the link and whether the broker
/// stops.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// A connection idle this long is pinged before it is used: Redis may have
/// restarted under it, and a login must not fail for that.
const IDLE: Duration = Duration::from_secs(1);
/// How long a login waits for a link that has never been up (the node has
/// just started) before it is refused as `UNAVAILABLE`.
const CONNECTING: Duration = Duration::from_secs(2);
/// The node name on what `broker account` publishes: not a valid node
/// name, so no node takes the batch for its own.
pub(crate) const ADMIN: &str = "(admin)";

/// Creates an account unless the name is one already, and tells every
/// node, atomically. KEYS: `account`, `accounts`. ARGV: folded, name,
/// hash, created, all channel, announcement.
const REGISTER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'hash', ARGV[3], 'created', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
";

/// Replaces an account's password hash; 0 if there is no such account.
/// KEYS: `account`. ARGV: hash.
const SET_PASSWORD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'hash', ARGV[1])
return 1
";

/// Deletes an account, its mailbox and mark, and tells every node; 0 if
/// there was no such account. KEYS: `account`, `accounts`, `mailbox`,
/// `live`. ARGV: folded, all channel, announcement.
const DELETE: &str = r"
local had = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
if had == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return had
";

/// Stores one message for one account: `{'none'}` if it is not an account,
/// `{'live', node}` if it is logged in on that node and has had its
/// mailbox (unless ARGV force is 1), else `{'kept', dropped}` with how many
/// of the oldest went past `max`. KEYS: `mailbox`, `account`, `name`,
/// `live`. ARGV: record, max, ttl ms (0: none), force.
const APPEND: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return {'none'} end
if ARGV[4] ~= '1' then
  local at = redis.call('GET', KEYS[4])
  if at and redis.call('GET', KEYS[3]) == at then return {'live', at} end
end
local max = tonumber(ARGV[2])
if max == 0 then return {'kept', '1'} end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
local dropped = 0
if n > max then
  dropped = n - max
  redis.call('LTRIM', KEYS[1], -max, -1)
end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {'kept', tostring(dropped)}
";

/// Takes a mailbox (read and delete in one step), oldest first. ARGV mark
/// empty: the login has just claimed the name, any `live` mark is stale
/// and goes. ARGV mark a node: the login has taken the name there, which
/// becomes `live` (if that node still has the name). KEYS: `mailbox`,
/// `live`, `name`. ARGV: mark.
const TAKE: &str = r"
local all = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
if ARGV[1] == '' then
  redis.call('DEL', KEYS[2])
elseif redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1])
end
return all
";

/// Puts taken messages back at the front of a mailbox (a login that did
/// not get them after all), keeping at most `max`. KEYS: `mailbox`,
/// `account`. ARGV: max, ttl ms, records oldest first.
const PUT_BACK: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for i = #ARGV, 3, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
local max = tonumber(ARGV[1])
if max == 0 then
  redis.call('DEL', KEYS[1])
elseif redis.call('LLEN', KEYS[1]) > max then
  redis.call('LTRIM', KEYS[1], -max, -1)
end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

/// The mailbox limits (from the configuration), as the store has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Messages kept per account; past it the oldest goes. 0 keeps none.
    pub mailbox_max: usize,
    /// Days a stored message is kept; 0 keeps it until taken.
    pub mailbox_days: u64,
}

impl Limits {
    /// How long a mailbox lives after its newest message (0: for ever).
    fn ttl_ms(&self) -> u64 {
        self.mailbox_days.saturating_mul(86_400_000)
    }

    /// Messages older than this (Unix ms) are dropped when taken.
    fn cutoff(&self, now: u64) -> Option<u64> {
        (self.mailbox_days > 0).then(|| now.saturating_sub(self.ttl_ms()))
    }
}

/// Accounts and mailboxes in Redis, on one connection of its own, for a
/// thread that may wait (the accounts thread, the post thread,
/// `broker account`). Every call is one round trip or one pipeline.
pub(crate) struct Book {
    client: redis::Client,
    keys: Keys,
    /// Who publishes this book's announcements: the node, or [`ADMIN`].
    me: String,
    io: Duration,
    limits: Limits,
    /// The connection (made when first needed) and when it last worked.
    conn: Mutex<Option<(Connection, Instant)>>,
}

impl Book {
    /// A book on the Redis at `url` for cluster `cluster`; nothing is
    /// connected yet. `me` names the publisher of its announcements; `io`
    /// is the longest a command may take.
    pub fn open(
        url: &str,
        cluster: &str,
        me: &str,
        io: Duration,
        limits: Limits,
    ) -> Result<Book, LinkError> {
        let client = redis::Client::open(url).map_err(|e| LinkError::BadUrl(e.to_string()))?;
        Ok(Book {
            client,
            keys: Keys::new(cluster),
            me: me.to_string(),
            io,
            limits,
            conn: Mutex::new(None),
        })
    }

    /// The account with this folded name, if any.
    pub fn account(&self, folded: &str) -> Result<Option<Account>, LinkError> {
        let key = self.keys.account(folded);
        let fields: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        if fields.is_empty() {
            return Ok(None);
        }
        account_from(&fields)
            .map(Some)
            .map_err(|e| LinkError::Redis(format!("the account {folded:?} is unreadable: {e}")))
    }

    /// Makes `folded` an account shown as `name` with the password hash
    /// `hash`, and tells every node; false (and nothing changes) if it is
    /// one already. Of two nodes that register one name at once, exactly
    /// one gets true.
    pub fn create(&self, folded: &str, name: &str, hash: &str) -> Result<bool, LinkError> {
        let k = &self.keys;
        let news = announcement(&self.me, folded, true);
        let n: i64 = self.with(|c| {
            redis::cmd("EVAL")
                .arg(REGISTER)
                .arg(2)
                .arg(k.account(folded))
                .arg(k.accounts())
                .arg(folded)
                .arg(name)
                .arg(hash)
                .arg(now_ms())
                .arg(k.all_channel())
                .arg(news)
                .query(c)
        })?;
        Ok(n == 1)
    }

    /// Replaces an account's password hash; false if there is no such
    /// account.
    pub fn set_password(&self, folded: &str, hash: &str) -> Result<bool, LinkError> {
        let key = self.keys.account(folded);
        let n: i64 = self.with(|c| {
            redis::cmd("EVAL")
                .arg(SET_PASSWORD)
                .arg(1)
                .arg(&key)
                .arg(hash)
                .query(c)
        })?;
        Ok(n == 1)
    }

    /// Deletes an account and its stored messages, and tells every node;
    /// false if there was no such account.
    pub fn delete(&self, folded: &str) -> Result<bool, LinkError> {
        let k = &self.keys;
        let news = announcement(&self.me, folded, false);
        let n: i64 = self.with(|c| {
            redis::cmd("EVAL")
                .arg(DELETE)
                .arg(4)
                .arg(k.account(folded))
                .arg(k.accounts())
                .arg(k.mailbox(folded))
                .arg(k.live(folded))
                .arg(folded)
                .arg(k.all_channel())
                .arg(news)
                .query(c)
        })?;
        Ok(n == 1)
    }

    /// Every account's folded name.
    pub fn names(&self) -> Result<HashSet<String>, LinkError> {
        let key = self.keys.accounts();
        self.with(|c| redis::cmd("SMEMBERS").arg(&key).query(c))
    }

    /// Every account, in folded-name order. One that can't be read is
    /// logged and left out.
    pub fn accounts(&self) -> Result<Vec<Account>, LinkError> {
        let mut names: Vec<String> = self.names()?.into_iter().collect();
        names.sort();
        let mut pipe = redis::pipe();
        for n in &names {
            pipe.cmd("HGETALL").arg(self.keys.account(n));
        }
        let all: Vec<HashMap<String, String>> = self.with(|c| pipe.query(c))?;
        let mut out = Vec::with_capacity(all.len());
        for (name, fields) in names.iter().zip(all) {
            match account_from(&fields) {
                Ok(a) => out.push(a),
                Err(e) => crate::log_error!("cluster: the account {name:?} is unreadable: {e}"),
            }
        }
        Ok(out)
    }

    /// Takes an account's stored messages, oldest first, leaving out those
    /// older than `mailbox_days`. `live`: the node that has just taken the
    /// account's name (the second take of a login), from now on where its
    /// new messages go; `None` for the first take.
    pub fn take(&self, folded: &str, live: Option<&str>) -> Result<Vec<Stored>, LinkError> {
        let k = &self.keys;
        let records: Vec<Vec<u8>> = self.with(|c| {
            redis::cmd("EVAL")
                .arg(TAKE)
                .arg(3)
                .arg(k.mailbox(folded))
                .arg(k.live(folded))
                .arg(k.name(folded))
                .arg(live.unwrap_or(""))
                .query(c)
        })?;
        let (fresh, expired, bad) = sort_out(records, self.limits.cutoff(now_ms()));
        if expired > 0 {
            log_debug!("cluster: {expired} stored messages for {folded} were too old");
        }
        if bad > 0 {
            crate::log_error!(
                "cluster: {bad} stored messages for {folded} are unreadable; dropped"
            );
        }
        Ok(fresh)
    }

    /// Stores `record` for each folded name of `to`, in one pipeline;
    /// `force` stores even for an account that is live somewhere. One
    /// answer per name, in order.
    fn append(&self, to: &[(&str, &[u8])], force: bool) -> Result<Vec<Appended>, LinkError> {
        let k = &self.keys;
        let max = self.limits.mailbox_max.to_string();
        let ttl = self.limits.ttl_ms().to_string();
        let mut pipe = redis::pipe();
        for (folded, record) in to {
            pipe.cmd("EVAL")
                .arg(APPEND)
                .arg(4)
                .arg(k.mailbox(folded))
                .arg(k.account(folded))
                .arg(k.name(folded))
                .arg(k.live(folded))
                .arg(*record)
                .arg(&max)
                .arg(&ttl)
                .arg(if force { "1" } else { "0" });
        }
        let answers: Vec<Vec<String>> = self.with(|c| pipe.query(c))?;
        Ok(answers.iter().map(|a| appended(a)).collect())
    }

    /// Puts taken messages back at the front of a mailbox.
    fn put_back(&self, folded: &str, msgs: &[Stored]) -> Result<(), LinkError> {
        let k = &self.keys;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PUT_BACK)
            .arg(2)
            .arg(k.mailbox(folded))
            .arg(k.account(folded))
            .arg(self.limits.mailbox_max)
            .arg(self.limits.ttl_ms());
        for m in msgs {
            cmd.arg(encode_message(m));
        }
        self.with(|c| cmd.exec(c))
    }

    /// Runs `f` on the connection (made if needed; pinged first if it was
    /// idle). A connection that breaks is dropped, to be made again next
    /// time, and the call is `Down`.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, LinkError> {
        let mut slot = self.conn.lock();
        if let Some((c, used)) = slot.as_mut() {
            if used.elapsed() >= IDLE && redis::cmd("PING").exec(c).is_err() {
                *slot = None;
            }
        }
        let (c, used) = match slot.as_mut() {
            Some(s) => s,
            None => slot.insert((self.connect().map_err(|_| LinkError::Down)?, Instant::now())),
        };
        match f(c) {
            Ok(v) => {
                *used = Instant::now();
                Ok(v)
            }
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error() || !c.is_open() {
                    *slot = None;
                    return Err(LinkError::Down);
                }
                Err(e.into())
            }
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let c = self.client.get_connection_with_timeout(self.io)?;
        c.set_read_timeout(Some(self.io))?;
        c.set_write_timeout(Some(self.io))?;
        Ok(c)
    }
}

/// What `APPEND` did for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Appended {
    /// Stored; this many of the oldest went past `mailbox_max`.
    Kept { dropped: u64 },
    /// Not stored: the account is logged in on this node (and has had its
    /// mailbox), so the message goes there.
    Live(String),
    /// Not an account (deleted meanwhile): nothing to do.
    NotAccount,
}

/// Reads `APPEND`'s answer; anything else is taken as not stored.
fn appended(answer: &[String]) -> Appended {
    match answer {
        [kept, dropped] if kept == "kept" => Appended::Kept {
            dropped: dropped.parse().unwrap_or(0),
        },
        [live, node] if live == "live" => Appended::Live(node.clone()),
        _ => Appended::NotAccount,
    }
}

/// An account's hash fields as an [`Account`].
fn account_from(fields: &HashMap<String, String>) -> Result<Account, String> {
    let field = |f: &str| fields.get(f).ok_or_else(|| format!("it has no {f:?}"));
    Ok(Account {
        name: field("name")?.clone(),
        hash: field("hash")?.clone(),
        created_ms: field("created")?
            .parse()
            .map_err(|_| "its \"created\" is not a number".to_string())?,
    })
}

/// The Redis message that tells every node an account now exists (or no
/// longer does): a wire batch from `me` with that one item.
fn announcement(me: &str, folded: &str, exists: bool) -> Vec<u8> {
    let mut out = Vec::new();
    wire::begin_batch(me, &mut out);
    wire::encode_item(
        &Item::Account {
            folded: folded.to_string(),
            exists,
        },
        &mut out,
    );
    out
}

/// A taken mailbox's records as messages, leaving out those older than
/// `cutoff` and those that do not decode: (messages, too old, unreadable).
fn sort_out(records: Vec<Vec<u8>>, cutoff: Option<u64>) -> (Vec<Stored>, u64, u64) {
    let (mut fresh, mut expired, mut bad) = (Vec::with_capacity(records.len()), 0, 0);
    for r in records {
        match decode_message(&r) {
            Ok(m) if cutoff.is_some_and(|c| m.ts_ms < c) => expired += 1,
            Ok(m) => fresh.push(m),
            Err(_) => bad += 1,
        }
    }
    (fresh, expired, bad)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a message's callback fails if the post thread never gets to it.
const DROPPED: &str = "the message was not stored: the broker is stopping";

/// Work for the post thread.
enum Post {
    /// Store a message for these absent accounts (folded).
    Append {
        to: Vec<String>,
        msg: Stored,
        done: Done,
    },
    /// Put taken messages back into an account's mailbox.
    PutBack { folded: String, msgs: Vec<Stored> },
}

/// This node's side of the cluster's accounts: the accounts thread's
/// [`Book`] and the post thread's queue.
pub(crate) struct ClusterAccounts {
    book: Book,
    node: Arc<Node>,
    tx: Sender<Post>,
    /// The post thread's end of the queue, until it starts.
    rx: Mutex<Option<Receiver<Post>>>,
    /// The link has been up once: a login no longer waits for it.
    ever_up: AtomicBool,
}

impl ClusterAccounts {
    /// The accounts of the cluster `node` is part of, read and written
    /// through `book`.
    pub fn new(book: Book, node: Arc<Node>) -> ClusterAccounts {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        ClusterAccounts {
            book,
            node,
            tx,
            rx: Mutex::new(Some(rx)),
            ever_up: AtomicBool::new(false),
        }
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        self.node.name()
    }

    /// The book, for a thread that may wait: `Down` at once while the
    /// link is down, after a short wait if it has never been up (the
    /// node has just started).
    pub fn book(&self) -> Result<&Book, LinkError> {
        if !self.ever_up.load(Ordering::Acquire) {
            let until = Instant::now() + CONNECTING;
            while !self.node.is_up() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.node.is_up() {
            self.ever_up.store(true, Ordering::Release);
            Ok(&self.book)
        } else {
            Err(LinkError::Down)
        }
    }

    /// Queues `msg` for the mailboxes of `to` (absent accounts, folded);
    /// `done` runs on the post thread once Redis has it (or the
    /// recipient's node, if it has just logged in there), or with the
    /// reason it could not be. Never blocks: `Down` while Redis is
    /// unreachable and `Full` if the queue is, and then `done` is never
    /// called.
    pub fn try_append(&self, to: Vec<String>, msg: Stored, done: DoneFn) -> Result<(), LinkError> {
        if !self.node.is_up() {
            return Err(LinkError::Down);
        }
        let post = Post::Append {
            to,
            msg,
            done: Done::dropped_as(done, DROPPED),
        };
        self.tx.try_send(post).map_err(|e| {
            let (TrySendError::Full(p) | TrySendError::Disconnected(p)) = e;
            if let Post::Append { done, .. } = p {
                // Refused at once: the caller answers, not `done`.
                done.disarm();
            }
            LinkError::Full
        })
    }

    /// Puts messages taken for a login that did not get them after all
    /// back into the mailbox (later, on the post thread); false if the
    /// queue is full and they are lost.
    pub fn put_back(&self, folded: &str, msgs: Vec<Stored>) -> bool {
        if msgs.is_empty() {
            return true;
        }
        let post = Post::PutBack {
            folded: folded.to_string(),
            msgs,
        };
        self.tx.try_send(post).is_ok()
    }
}

/// A message from another node for names that are not here: a user who
/// left a moment ago (the sender's node had not heard yet, or Redis still
/// had the account `live` here), or an account whose login here is under
/// way. Those that are accounts get it in their mailbox, later, on the
/// post thread, as if the sender's node had known they were away: their
/// sender was told it was queued for them. Never blocks.
pub(crate) fn keep_for_absent(shared: &Shared, m: &Msg, absent: Vec<String>) {
    let Some(accounts) = shared.accounts.as_ref() else {
        return;
    };
    let Some(cluster) = accounts.cluster() else {
        return;
    };
    let to: Vec<String> = absent.into_iter().filter(|n| accounts.owned(n)).collect();
    if to.is_empty() {
        return;
    }
    let msg = Stored {
        id: m.id,
        from: m.from.clone(),
        kind: match m.kind {
            MsgKind::Direct => StoredKind::Direct,
            _ => StoredKind::Multi,
        },
        ts_ms: m.ts,
        body: m.body.clone(),
    };
    let (id, names) = (m.id, to.join(","));
    let done = Done::dropped_as(
        Box::new(move |r: Result<(), String>| {
            if let Err(e) = r {
                log_warn!("cluster: message {id} for {names}, who had just left, is lost: {e}");
            }
        }),
        DROPPED,
    );
    if let Err(e) = cluster.tx.try_send(Post::Append { to, msg, done }) {
        if let Post::Append { to, done, .. } = e.into_inner() {
            done.disarm();
            log_warn!(
                "cluster: message {} for {}, who had just left, is lost: the queue for Redis is full",
                m.id,
                to.join(",")
            );
        }
    }
}

/// Starts the post thread. It also reads the owned names each time the
/// link comes up; the first time it tries at once, so a node that can
/// reach Redis knows every account before its first user.
pub(crate) fn start(
    shared: &Arc<Shared>,
    cluster: &Arc<ClusterAccounts>,
    posts: Book,
) -> std::io::Result<JoinHandle<()>> {
    let Some(rx) = cluster.rx.lock().take() else {
        return Err(std::io::Error::other("the post thread is running already"));
    };
    let loaded = reload(shared, &posts);
    let (shared, cluster) = (Arc::clone(shared), Arc::clone(cluster));
    std::thread::Builder::new()
        .name("cluster-posts".into())
        .spawn(move || run(&shared, &cluster, &posts, &rx, loaded))
}

/// The post thread: appends and put-backs, a pipeline a round, until the
/// broker stops and its queue is empty.
fn run(
    shared: &Shared,
    cluster: &ClusterAccounts,
    book: &Book,
    rx: &Receiver<Post>,
    mut loaded: bool,
) {
    let mut round = Vec::new();
    let mut was_up = loaded;
    loop {
        // The owned names again once the link is (back) up: what was
        // published while this node was away did not reach it.
        let up = cluster.node.is_up();
        if up && !was_up {
            loaded = false;
        }
        was_up = up;
        if up && !loaded {
            cluster.ever_up.store(true, Ordering::Release);
            loaded = reload(shared, book);
        }
        match rx.recv_timeout(STOP_CHECK) {
            Ok(first) => round.push(first),
            Err(RecvTimeoutError::Timeout) if shared.stopping() => return,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        round.extend(rx.try_iter().take(MAX_ROUND - 1));
        post_round(shared, cluster, book, &mut round);
    }
}

/// Reads every owned name from Redis into `Accounts`; false if it could
/// not (tried again later).
fn reload(shared: &Shared, book: &Book) -> bool {
    let Some(accounts) = shared.accounts.as_ref() else {
        return true;
    };
    accounts.reload_begin();
    match book.names() {
        Ok(names) => {
            let n = names.len();
            accounts.reload_end(Some(names));
            log_info!("cluster: {n} accounts");
            true
        }
        Err(e) => {
            accounts.reload_end(None);
            log_debug!("cluster: cannot read the accounts yet: {e}");
            false
        }
    }
}

/// One round of the post thread: put-backs, then the appends in one
/// pipeline, then each append's `done`.
fn post_round(shared: &Shared, cluster: &ClusterAccounts, book: &Book, round: &mut Vec<Post>) {
    let mut jobs = Vec::new();
    for post in round.drain(..) {
        match post {
            Post::Append { to, msg, done } => jobs.push((to, msg, done)),
            Post::PutBack { folded, msgs } => {
                if let Err(e) = book.put_back(&folded, &msgs) {
                    log_warn!(
                        "cluster: {} stored messages for {folded} could not be put back: {e}",
                        msgs.len()
                    );
                }
            }
        }
    }
    if jobs.is_empty() {
        return;
    }
    let records: Vec<Vec<u8>> = jobs.iter().map(|(_, m, _)| encode_message(m)).collect();
    let calls: Vec<(&str, &[u8])> = jobs
        .iter()
        .zip(&records)
        .flat_map(|((to, _, _), r)| to.iter().map(move |f| (f.as_str(), r.as_slice())))
        .collect();
    let answers = match book.append(&calls, false) {
        Ok(a) => a,
        Err(e) => {
            log_warn!("cluster: cannot store messages for absent accounts: {e}");
            for (_, _, done) in jobs {
                done.call(Err(e.to_string()));
            }
            return;
        }
    };
    let mut answers = answers.into_iter();
    let mut out = Outbox::new(shared.writers.len(), None);
    for (to, msg, done) in jobs {
        let mut ok = true;
        // Accounts live on some node: that node's names.
        let mut live: Vec<(String, Vec<String>)> = Vec::new();
        for folded in to {
            match answers.next() {
                Some(Appended::Kept { dropped }) if dropped > 0 => {
                    log_debug!("cluster: {folded}'s mailbox is full; its oldest message went");
                }
                Some(Appended::Kept { .. } | Appended::NotAccount) => {}
                Some(Appended::Live(at)) => match live.iter_mut().find(|(n, _)| *n == at) {
                    Some((_, names)) => names.push(folded),
                    None => live.push((at, vec![folded])),
                },
                None => ok = false,
            }
        }
        for (at, names) in live {
            ok &= hand_on(shared, cluster, book, &mut out, &msg, &at, names);
        }
        done.call(if ok {
            Ok(())
        } else {
            Err("Redis did not answer for every account".to_string())
        });
    }
    core::flush(shared, &mut out);
}

/// A message for accounts logged in on node `at` (they logged in after
/// the sender's node last heard of them): to them, there or here. If that
/// can't be done now it is stored after all. True if it went somewhere.
fn hand_on(
    shared: &Shared,
    cluster: &ClusterAccounts,
    book: &Book,
    out: &mut Outbox,
    msg: &Stored,
    at: &str,
    names: Vec<String>,
) -> bool {
    log_debug!(
        "cluster: message {} for {} goes on to {at}, where they logged in",
        msg.id,
        names.join(",")
    );
    let mut store = Vec::new();
    if at == cluster.node_name() {
        for folded in names {
            match shared.registry.get(&folded) {
                Some(conn) => crate::accounts::deliver_stored(shared, out, &conn, msg),
                None => store.push(folded),
            }
        }
    } else {
        let kind = match msg.kind {
            StoredKind::Direct => MsgKind::Direct,
            _ => MsgKind::Multi,
        };
        let item = Item::Msg(Msg {
            id: msg.id,
            from: msg.from.clone(),
            from_node: cluster.node_name().to_string(),
            kind,
            ts: msg.ts_ms,
            body: msg.body.clone(),
            notice: false,
            to: names.clone(),
        });
        if !cluster.node.publish(Target::Node(at.to_string()), item) {
            store = names;
        }
    }
    if store.is_empty() {
        return true;
    }
    let record = encode_message(msg);
    let calls: Vec<(&str, &[u8])> = store
        .iter()
        .map(|f| (f.as_str(), record.as_slice()))
        .collect();
    book.append(&calls, true).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn msg(id: u64, ts_ms: u64) -> Stored {
        Stored {
            id,
            from: "alice".into(),
            kind: StoredKind::Direct,
            ts_ms,
            body: format!("m{id}").into_bytes(),
        }
    }

    #[test]
    fn an_account_reads_back_from_its_fields() {
        let fields: HashMap<String, String> = [
            ("name", "Dana"),
            ("hash", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            ("created", "1796408037155"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let a = account_from(&fields).unwrap();
        assert_eq!(a.name, "Dana");
        assert!(a.hash.starts_with("$argon2id$"));
        assert_eq!(a.created_ms, 1_796_408_037_155);
        let mut bad = fields.clone();
        bad.insert("created".into(), "soon".into());
        assert!(account_from(&bad).unwrap_err().contains("created"));
        let mut bad = fields;
        bad.remove("hash");
        assert!(account_from(&bad).unwrap_err().contains("hash"));
    }

    #[test]
    fn append_answers_are_read_and_anything_else_is_not_stored() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(appended(&s(&["kept", "0"])), Appended::Kept { dropped: 0 });
        assert_eq!(appended(&s(&["kept", "3"])), Appended::Kept { dropped: 3 });
        assert_eq!(appended(&s(&["live", "n2"])), Appended::Live("n2".into()));
        assert_eq!(appended(&s(&["none"])), Appended::NotAccount);
        assert_eq!(appended(&s(&[])), Appended::NotAccount);
        assert_eq!(appended(&s(&["what", "x"])), Appended::NotAccount);
    }

    #[test]
    fn a_taken_mailbox_keeps_order_and_drops_old_and_unreadable_records() {
        let records = vec![
            encode_message(&msg(1, 100)),
            vec![9, 9, 9],
            encode_message(&msg(2, 500)),
            encode_message(&msg(3, 900)),
        ];
        let (fresh, expired, bad) = sort_out(records.clone(), Some(400));
        assert_eq!(fresh, vec![msg(2, 500), msg(3, 900)]);
        assert_eq!((expired, bad), (1, 1));
        let (fresh, expired, _) = sort_out(records, None);
        assert_eq!(fresh.len(), 3);
        assert_eq!(expired, 0);
    }

    #[test]
    fn limits_give_the_ttl_and_the_cutoff() {
        let l = Limits {
            mailbox_max: 10,
            mailbox_days: 2,
        };
        assert_eq!(l.ttl_ms(), 172_800_000);
        assert_eq!(l.cutoff(200_000_000), Some(27_200_000));
        assert_eq!(l.cutoff(5), Some(0));
        let forever = Limits {
            mailbox_days: 0,
            ..l
        };
        assert_eq!(forever.ttl_ms(), 0);
        assert_eq!(forever.cutoff(5), None);
    }

    // ---- the scripts, against a real Redis ----

    fn book(redis: &testkit::redis::RedisServer, max: usize) -> Book {
        let limits = Limits {
            mailbox_max: max,
            mailbox_days: 30,
        };
        Book::open(&redis.url(), "main", "n1", Duration::from_secs(2), limits).unwrap()
    }

    fn bodies(v: &[Stored]) -> Vec<String> {
        v.iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect()
    }

    #[test]
    fn of_many_registering_one_name_at_once_exactly_one_wins() {
        let redis = testkit::redis::RedisServer::start_new();
        for round in 0..5 {
            let name = format!("zoe{round}");
            let start = Arc::new(std::sync::Barrier::new(8));
            let wins: Vec<bool> = (0..8)
                .map(|i| {
                    let (b, start, name) = (book(&redis, 10), Arc::clone(&start), name.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        b.create(&name, &name, &format!("hash{i}")).unwrap()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
            let b = book(&redis, 10);
            let a = b.account(&name).unwrap().unwrap();
            let winner = wins.iter().position(|w| *w).unwrap();
            assert_eq!(a.hash, format!("hash{winner}"));
            assert!(b.names().unwrap().contains(&name));
        }
    }

    #[test]
    fn mailboxes_keep_the_newest_and_take_once_in_order() {
        let redis = testkit::redis::RedisServer::start_new();
        let b = book(&redis, 3);
        assert!(b.create("amy", "Amy", "h").unwrap());
        assert!(!b.create("amy", "AMY", "h2").unwrap());
        let recs: Vec<Vec<u8>> = (1..=5).map(|i| encode_message(&msg(i, now_ms()))).collect();
        for r in &recs {
            let got = b.append(&[("amy", r), ("ghost", r)], false).unwrap();
            assert_eq!(got[1], Appended::NotAccount);
        }
        // Past mailbox_max the oldest went.
        let taken = b.take("amy", None).unwrap();
        assert_eq!(bodies(&taken), ["m3", "m4", "m5"]);
        assert!(b.take("amy", None).unwrap().is_empty());
        // Put back before anything newer, still within the limit.
        b.append(&[("amy", &recs[0])], false).unwrap();
        b.put_back("amy", &taken).unwrap();
        assert_eq!(bodies(&b.take("amy", None).unwrap()), ["m4", "m5", "m1"]);
        // Too old to deliver: dropped when taken.
        let old = encode_message(&msg(9, 1));
        b.append(&[("amy", &old)], false).unwrap();
        assert!(b.take("amy", None).unwrap().is_empty());
    }

    #[test]
    fn a_live_account_is_sent_on_until_its_name_is_given_back() {
        let redis = testkit::redis::RedisServer::start_new();
        let b = book(&redis, 10);
        assert!(b.create("bo", "bo", "h").unwrap());
        let r = encode_message(&msg(1, now_ms()));
        // Logged in on n2 (its name claimed there), mailbox taken twice.
        redis.command(&["SET", "chat:main:name:bo", "n2"]);
        assert!(b.take("bo", None).unwrap().is_empty());
        assert_eq!(
            b.append(&[("bo", &r)], false).unwrap(),
            [Appended::Kept { dropped: 0 }]
        );
        assert_eq!(b.take("bo", Some("n2")).unwrap().len(), 1);
        assert_eq!(redis.command(&["GET", "chat:main:live:bo"]), "n2");
        assert_eq!(
            b.append(&[("bo", &r)], false).unwrap(),
            [Appended::Live("n2".into())]
        );
        // Forced (n2 no longer has the user): stored.
        assert_eq!(
            b.append(&[("bo", &r)], true).unwrap(),
            [Appended::Kept { dropped: 0 }]
        );
        // The name elsewhere now: the mark is stale and ignored; a first
        // take clears it.
        redis.command(&["SET", "chat:main:name:bo", "n3"]);
        assert_eq!(
            b.append(&[("bo", &r)], false).unwrap(),
            [Appended::Kept { dropped: 0 }]
        );
        assert_eq!(b.take("bo", None).unwrap().len(), 2);
        assert_eq!(redis.command(&["EXISTS", "chat:main:live:bo"]), "0");
        // Deleted: the account, its mailbox and its mark go.
        b.append(&[("bo", &r)], false).unwrap();
        assert!(b.delete("bo").unwrap());
        assert!(!b.delete("bo").unwrap());
        assert_eq!(b.account("bo").unwrap(), None);
        assert_eq!(redis.command(&["EXISTS", "chat:main:mailbox:bo"]), "0");
        assert!(!b.set_password("bo", "h3").unwrap());
    }

    #[test]
    fn an_unreachable_redis_is_down() {
        let mut redis = testkit::redis::RedisServer::start_new();
        let b = book(&redis, 10);
        assert!(b.names().unwrap().is_empty());
        redis.stop();
        assert_eq!(b.account("x"), Err(LinkError::Down));
        assert_eq!(b.create("x", "x", "h"), Err(LinkError::Down));
        redis.start();
        // A new connection, made when next needed.
        assert_eq!(b.account("x"), Ok(None));
    }

    #[test]
    fn an_announcement_is_one_account_item_from_its_publisher() {
        let b = wire::decode_batch(&announcement(ADMIN, "dana", false)).unwrap();
        assert_eq!(b.node, ADMIN);
        assert_eq!(
            b.items,
            vec![Item::Account {
                folded: "dana".into(),
                exists: false
            }]
        );
    }
}
