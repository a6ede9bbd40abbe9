//! The broker's storage: accounts, the mailboxes of offline accounts and
//! each room's history, in one embedded database file, `data_dir/chat.redb`.
//!
//! # Why redb
//!
//! [redb](https://www.redb.org) is pure Rust (no C toolchain, no bundled
//! SQLite to build), keeps everything in one file (a backup is a copy of it
//! while the broker is stopped), is ACID with durable commits (a commit
//! returns after `fsync`, and a crash, even `kill -9` or a power cut, leaves
//! the last committed state), and its readers are MVCC snapshots that never
//! block the writer nor wait for it. We need no SQL: every access is a
//! key lookup or a range in key order.
//!
//! # Threads
//!
//! ```text
//!  routing threads --try_append / try_append_history--+   (bounded queue:
//!  accounts thread --create/set/delete/take/reserve---+    Full at once for
//!                        (wait for their answer)      |    try_*, a wait
//!                                                     v    for the others)
//!                                      +-------------------------------+
//!                                      | store writer thread: takes    |
//!                                      | whatever is queued, applies   |
//!                                      | it in ONE write transaction,  |
//!                                      | commits (fsync), then calls   |
//!                                      | each `done` / sends answers   |
//!                                      +-------------------------------+
//!  any thread --account / accounts / histories / last_id--> read snapshot
//! ```
//!
//! Every change goes through the one writer thread, so the batch shares one
//! `fsync`, the in-memory counters have a single writer, and a change
//! queued after an append sees it: `take_mailbox` returns every message
//! queued for that account before the call.
//!
//! # Tables
//!
//! | table | key | value |
//! |---|---|---|
//! | `accounts` | folded name | [`Account`] record (see `codec`) |
//! | `mailbox` | (folded account, message id) | [`Stored`] record |
//! | `mailbox_len` | folded account | messages in its mailbox |
//! | `history` | (folded room, message id) | [`Stored`] record |
//! | `history_len` | folded room | messages kept for it |
//! | `meta` | `schema`, `ids` | layout version, highest reserved id |
//!
//! Mailboxes and histories are keyed by message id, so they are read in
//! id order (ids only grow, across restarts too), and appending a message
//! whose id is already there replaces it: putting back a taken message
//! restores its place and never makes a duplicate.
//!
//! # Durability and failures
//!
//! - Every commit is `Durability::Immediate` with two-phase commit (see
//!   `writer`): when a `done(Ok)` runs or a synchronous call returns, the
//!   change survives `kill -9` and a power cut (as far as the disk honours
//!   `fsync`).
//! - `open` checks the whole file (`set_check_integrity_on_open`): a
//!   damaged file is an error at start, not a panic later. It reads the
//!   whole file: about 0.8 s for 1 M stored messages (470 MB) here.
//! - Only one process may have the file open: a second broker (or a
//!   command run while the broker runs) gets "in use by another process".
//! - A write that fails (a full disk) fails its whole batch: each `done`
//!   and caller gets the reason, nothing of the batch is on disk. redb
//!   then refuses the handle, so the writer reopens the file (see `slot`)
//!   and goes on once there is room again.

pub(crate) mod codec;
mod password;
mod slot;
#[cfg(test)]
mod tests;
mod writer;

pub(crate) use password::{hash_password, verify_password};
pub(crate) use writer::Done;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use slot::DbSlot;
use std::collections::HashMap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use writer::{Answer, Job, Op};

/// The database file's name inside `data_dir`.
pub(crate) const FILE_NAME: &str = "chat.redb";

/// The table layout this code reads and writes (`meta` key `schema`).
const SCHEMA: u64 = 1;

/// The most memory redb may use to cache pages (its default is 1 GiB,
/// too much for a small box; everything hot is also in the broker's memory).
const CACHE_BYTES: usize = 64 * 1024 * 1024;

const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const MAILBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("mailbox");
const MAILBOX_LEN: TableDefinition<&str, u64> = TableDefinition::new("mailbox_len");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
const HISTORY_LEN: TableDefinition<&str, u64> = TableDefinition::new("history_len");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `meta` key: the table layout version.
const META_SCHEMA: &str = "schema";
/// `meta` key: the highest message id reserved so far.
const META_IDS: &str = "ids";

/// A message as stored: a direct or multi message kept for an offline
/// account, or one of a room's last messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The broker-wide message id (also the key's order in a mailbox).
    pub id: u64,
    /// The sender's name, as shown.
    pub from: String,
    /// What kind of message it was.
    pub kind: StoredKind,
    /// When the broker accepted it (Unix milliseconds); `mailbox_days`
    /// counts from here.
    pub ts_ms: u64,
    /// The body, as sent.
    pub body: Vec<u8>,
}

/// The `<kind>` of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredKind {
    /// To one name.
    Direct,
    /// To several names.
    Multi,
    /// To a room; the room's name as shown (`#Rust`).
    Room(String),
}

/// An account: a name someone owns with a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    /// The name as registered (shown form; the key is its folded form).
    pub name: String,
    /// The argon2id PHC string of the password ([`hash_password`]).
    pub hash: String,
    /// When it was registered (Unix milliseconds).
    pub created_ms: u64,
}

/// The store's limits (from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Messages kept per account; past it the oldest is dropped (counted
    /// in [`Store::dropped_count`]). 0 keeps none.
    pub mailbox_max: usize,
    /// Days a stored message is kept (older ones are dropped when taken,
    /// and from the front of a mailbox when it is appended to); 0 keeps
    /// them until taken.
    pub mailbox_days: u64,
    /// Messages kept per room. 0 keeps none.
    pub room_history: usize,
    /// Jobs the writer thread's queue holds; past it `try_append` and
    /// `try_append_history` return [`Full`]. At least 1.
    pub queue_len: usize,
}

/// What `try_append` calls once the message is on disk (`Ok`) or could
/// not be stored (`Err(reason)`); it runs on the writer thread.
pub(crate) type DoneFn = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The writer's queue is full (or the store is closed): the message was
/// not taken, and its `done` will not be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// Counters shared by the store and its writer thread.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Messages in all mailboxes now.
    stored: AtomicU64,
    /// Messages dropped because a mailbox was past `mailbox_max`.
    dropped: AtomicU64,
    /// Messages dropped because they were older than `mailbox_days`.
    expired: AtomicU64,
}

/// The open database and its writer thread. Shareable (`Arc<Store>`):
/// every method takes `&self`.
pub(crate) struct Store {
    slot: Arc<DbSlot>,
    path: PathBuf,
    limits: Limits,
    tx: crossbeam_channel::Sender<Job>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Opens (creating if missing) `dir/chat.redb`, creating `dir` if
    /// missing, checks the whole file (so a corrupt file is an error here,
    /// not a panic later) and starts the writer thread.
    ///
    /// Errors are sentences that name the path: a directory that can't be
    /// created or written, a file that is not a database or is corrupt, a
    /// full disk, another broker using the file. Never panics.
    pub fn open(dir: &Path, limits: Limits) -> Result<Store, String> {
        let limits = Limits {
            queue_len: limits.queue_len.max(1),
            ..limits
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {}",
                dir.display(),
                io_reason(&e)
            )
        })?;
        let path = dir.join(FILE_NAME);
        let db = open_db(&path)?;
        let stored = init(&db).map_err(|e| {
            format!(
                "cannot prepare the database {}: {}",
                path.display(),
                describe(&e)
            )
        })?;
        let slot = Arc::new(DbSlot::new(path.clone(), db));
        let counters = Arc::new(Counters {
            stored: AtomicU64::new(stored),
            ..Counters::default()
        });
        let (tx, rx) = crossbeam_channel::bounded(limits.queue_len);
        let thread = writer::spawn(Arc::clone(&slot), limits, rx, Arc::clone(&counters))
            .map_err(|e| format!("cannot start the store's writer thread: {e}"))?;
        Ok(Store {
            slot,
            path,
            limits,
            tx,
            counters,
            closed: AtomicBool::new(false),
            thread: parking_lot::Mutex::new(Some(thread)),
        })
    }

    /// The database file's path (for messages and logs).
    pub fn path(&self) -> &Path {
        &self.path
    }

    // ---- accounts (synchronous: for the accounts thread and the operator) ----

    /// The account with this folded name, if any (a read snapshot: never
    /// waits for the writer).
    pub fn account(&self, folded: &str) -> Result<Option<Account>, String> {
        let what = || format!("read account {folded:?}");
        let record = self.read(what, |txn| {
            let table = txn.open_table(ACCOUNTS)?;
            let record = table.get(folded)?.map(|v| v.value().to_vec());
            Ok(record)
        })?;
        record
            .map(|r| codec::decode_account(&r))
            .transpose()
            .map_err(|e| {
                format!(
                    "cannot {} in {}: the record is unreadable: {e}",
                    what(),
                    self.path.display()
                )
            })
    }

    /// Makes `folded` an account shown as `name`, with the password hash
    /// `hash`; false (and nothing changes) if it is one already. Durable
    /// when it returns.
    pub fn create_account(&self, folded: &str, name: &str, hash: &str) -> Result<bool, String> {
        let op = Op::CreateAccount {
            folded: folded.to_string(),
            name: name.to_string(),
            hash: hash.to_string(),
        };
        self.call(op)?.boolean()
    }

    /// Replaces an account's password hash; false if there is no such
    /// account. Durable when it returns.
    pub fn set_password(&self, folded: &str, hash: &str) -> Result<bool, String> {
        let op = Op::SetPassword {
            folded: folded.to_string(),
            hash: hash.to_string(),
        };
        self.call(op)?.boolean()
    }

    /// Deletes an account and its mailbox; false if there was no such
    /// account. Messages queued for it and not yet written are not kept.
    /// Durable when it returns.
    pub fn delete_account(&self, folded: &str) -> Result<bool, String> {
        self.call(Op::DeleteAccount {
            folded: folded.to_string(),
        })?
        .boolean()
    }

    /// Every account, in folded-name order. A record that can't be read is
    /// logged and left out.
    pub fn accounts(&self) -> Result<Vec<Account>, String> {
        self.read(
            || "list the accounts".to_string(),
            |txn| {
                let table = txn.open_table(ACCOUNTS)?;
                let mut out = Vec::new();
                for entry in table.iter()? {
                    let (k, v) = entry?;
                    match codec::decode_account(v.value()) {
                        Ok(a) => out.push(a),
                        Err(e) => {
                            crate::log_error!("store: account {:?} is unreadable: {e}", k.value())
                        }
                    }
                }
                Ok(out)
            },
        )
    }

    // ---- mailboxes ----

    /// Queues `msg` for the mailboxes of `to_folded` (accounts that are
    /// offline). It is written in the writer's next batch; after that
    /// batch's durable commit, `done(Ok(()))` is called on the writer
    /// thread (or `done(Err(reason))` if the batch failed), exactly once.
    /// Keep `done` short and never call the store from it.
    ///
    /// A name that is not an account when the batch runs is skipped. Past
    /// `mailbox_max` the oldest message of that mailbox is dropped.
    ///
    /// Never blocks: a full queue (or a closed store) is `Err(Full)` at
    /// once, and then `done` is never called.
    pub fn try_append(
        &self,
        to_folded: Vec<String>,
        msg: Stored,
        done: DoneFn,
    ) -> Result<(), Full> {
        self.try_queue(Job::Append {
            to: to_folded,
            msg,
            done: Done::new(done),
        })
    }

    /// Takes an account's stored messages: reads and deletes them in one
    /// durable transaction, oldest (lowest id) first, leaving out those
    /// older than `mailbox_days`. Runs in queue order, so it includes every
    /// message queued for the account before this call. Waits for the
    /// writer (for room in its queue, then for the commit).
    pub fn take_mailbox(&self, folded: &str) -> Result<Vec<Stored>, String> {
        match self.call(Op::Take {
            folded: folded.to_string(),
        })? {
            Answer::Taken(v) => Ok(v),
            other => Err(format!(
                "store: unexpected answer {other:?} to take_mailbox"
            )),
        }
    }

    /// Messages in all mailboxes now (for the `chat_stored_messages`
    /// gauge): a counter, cheap to read.
    pub fn stored_count(&self) -> u64 {
        self.counters.stored.load(Ordering::Relaxed)
    }

    /// Messages dropped since the store opened because a mailbox was past
    /// `mailbox_max` (the oldest goes).
    pub fn dropped_count(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Messages dropped since the store opened because they were older
    /// than `mailbox_days`.
    pub fn expired_count(&self) -> u64 {
        self.counters.expired.load(Ordering::Relaxed)
    }

    // ---- room history ----

    /// Queues `msg` for the history of the room `room_folded`; the room
    /// keeps its last `room_history` messages. Never blocks: a full queue
    /// (or a closed store) is `Err(Full)` at once. A failed batch is
    /// logged by the writer.
    pub fn try_append_history(&self, room_folded: &str, msg: Stored) -> Result<(), Full> {
        if self.limits.room_history == 0 {
            return Ok(());
        }
        self.try_queue(Job::History {
            room: room_folded.to_string(),
            msg,
        })
    }

    /// The last `room_history` messages of every room (by folded name),
    /// oldest first: read at start to fill the in-memory copy. A record
    /// that can't be read is logged and left out.
    pub fn histories(&self) -> Result<HashMap<String, Vec<Stored>>, String> {
        let mut out = self.read(
            || "read the room histories".to_string(),
            |txn| {
                let table = txn.open_table(HISTORY)?;
                let mut out: HashMap<String, Vec<Stored>> = HashMap::new();
                for entry in table.iter()? {
                    let (k, v) = entry?;
                    let (room, id) = k.value();
                    match codec::decode_message(v.value()) {
                        Ok(m) => out.entry(room.to_string()).or_default().push(m),
                        Err(e) => crate::log_error!(
                            "store: history of {room:?}, message {id}, is unreadable: {e}"
                        ),
                    }
                }
                Ok(out)
            },
        )?;
        // A smaller room_history than when they were written: the last ones.
        let keep = self.limits.room_history;
        out.retain(|_, v| {
            let extra = v.len().saturating_sub(keep);
            v.drain(..extra);
            !v.is_empty()
        });
        Ok(out)
    }

    // ---- message ids ----

    /// The highest message id ever reserved (0 on a new database); the
    /// broker starts at this + 1.
    pub fn last_id(&self) -> Result<u64, String> {
        self.read(
            || "read the last message id".to_string(),
            |txn| {
                let table = txn.open_table(META)?;
                let id = table.get(META_IDS)?;
                Ok(id.map_or(0, |g| g.value()))
            },
        )
    }

    /// Records that ids up to `up_to` may be used (a lower value than the
    /// one recorded changes nothing). Durable when it returns; it waits for
    /// the writer's queue and a commit, so reserve in blocks well ahead.
    pub fn reserve_ids(&self, up_to: u64) -> Result<(), String> {
        match self.call(Op::ReserveIds { up_to })? {
            Answer::Unit => Ok(()),
            other => Err(format!("store: unexpected answer {other:?} to reserve_ids")),
        }
    }

    // ---- life cycle ----

    /// Writes everything queued, stops the writer thread and waits for it
    /// (shutdown). Later `try_*` calls get `Full` and later changes an
    /// error; reads still work until the store is dropped. Calling it again
    /// does nothing; dropping the store calls it.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // A blocking send: the writer drains its queue, so there will be
        // room; an error means it is gone already.
        let _ = self.tx.send(Job::Stop);
        if let Some(thread) = self.thread.lock().take() {
            // Closed (or dropped) from a `done` on the writer thread itself:
            // it will stop after this batch; joining itself would fail.
            if thread.thread().id() == std::thread::current().id() {
                return;
            }
            if thread.join().is_err() {
                crate::log_error!("store: the writer thread ended with a panic");
            }
        }
    }

    /// Runs `f` on a read snapshot. An I/O failure marks the database for
    /// the writer to reopen; the error names `what` and the file.
    fn read<T>(
        &self,
        what: impl Fn() -> String,
        f: impl FnOnce(&ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, String> {
        let fail = |e: String| format!("cannot {} in {}: {e}", what(), self.path.display());
        let db = self.slot.get().map_err(fail)?;
        let result = db
            .begin_read()
            .map_err(redb::Error::from)
            .and_then(|txn| f(&txn));
        result.map_err(|e| {
            self.slot.check(&e);
            fail(describe(&e))
        })
    }

    fn try_queue(&self, job: Job) -> Result<(), Full> {
        if self.closed.load(Ordering::Acquire) {
            job.disarm();
            return Err(Full);
        }
        self.tx.try_send(job).map_err(|e| {
            e.into_inner().disarm();
            Full
        })
    }

    /// Queues `op` (waiting for room) and waits for its answer.
    fn call(&self, op: Op) -> Result<Answer, String> {
        let closed = || format!("the store {} is closed", self.path.display());
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.tx
            .send(Job::Call { op, reply })
            .map_err(|_| closed())?;
        answer.recv().map_err(|_| closed())?
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

impl Answer {
    fn boolean(self) -> Result<bool, String> {
        match self {
            Answer::Bool(b) => Ok(b),
            other => Err(format!("store: unexpected answer {other:?}")),
        }
    }
}

/// Opens or creates the file, turning every failure (and a panic inside
/// redb on a damaged file) into a sentence.
pub(super) fn open_db(path: &Path) -> Result<Database, String> {
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create(path)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(_) => Err(format!(
            "{} is corrupt (reading it failed); restore it from a backup or move it away",
            path.display()
        )),
    }
}

/// Makes sure every table exists and the layout is one we know; returns
/// how many messages the mailboxes hold.
fn init(db: &Database) -> Result<u64, redb::Error> {
    let txn = db.begin_write()?;
    let stored = {
        let mut meta = txn.open_table(META)?;
        let schema = meta.get(META_SCHEMA)?.map(|g| g.value());
        match schema {
            None => {
                meta.insert(META_SCHEMA, SCHEMA)?;
            }
            Some(SCHEMA) => {}
            Some(v) => {
                return Err(redb::Error::Corrupted(format!(
                    "its layout is version {v}, newer than this broker's ({SCHEMA}); run a newer broker"
                )))
            }
        }
        txn.open_table(ACCOUNTS)?;
        txn.open_table(MAILBOX_LEN)?;
        txn.open_table(HISTORY)?;
        txn.open_table(HISTORY_LEN)?;
        let mailbox = txn.open_table(MAILBOX)?;
        mailbox.len()?
    };
    txn.commit()?;
    Ok(stored)
}

/// A database error as a sentence (I/O errors in words to act on).
fn describe(e: &redb::Error) -> String {
    match e {
        redb::Error::Io(io) => io_reason(io),
        redb::Error::PreviousIo => {
            "an earlier write failed; the database is being reopened".to_string()
        }
        redb::Error::Corrupted(why) => why.clone(),
        other => other.to_string(),
    }
}

/// What went wrong opening `path`, as a sentence.
fn open_error(path: &Path, e: redb::DatabaseError) -> String {
    let p = path.display();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            format!(
                "{p} is in use by another process (is another broker running with this data_dir?)"
            )
        }
        redb::DatabaseError::UpgradeRequired(v) => {
            format!("{p} is in an older redb file format ({v}) that must be upgraded first")
        }
        redb::DatabaseError::RepairAborted => {
            format!("{p} needs a repair that could not be done (is the file read-only?)")
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == io::ErrorKind::InvalidData =>
        {
            format!("{p} is not a chat database (not a redb file); move it away or set another data_dir")
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            format!("cannot open {p}: {}", io_reason(&io))
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => {
            format!("{p} is corrupt ({why}); restore it from a backup or move it away")
        }
        other => format!("cannot open {p}: {other}"),
    }
}

/// An I/O error in words a person running the broker can act on.
fn io_reason(e: &io::Error) -> String {
    let code = e
        .raw_os_error()
        .map(|n| format!(" (os error {n})"))
        .unwrap_or_default();
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            format!("permission denied{code}; the broker must be able to read and write it")
        }
        io::ErrorKind::ReadOnlyFilesystem => format!("the file system is read-only{code}"),
        io::ErrorKind::StorageFull => format!("the disk is full{code}"),
        io::ErrorKind::QuotaExceeded => format!("the disk quota is exceeded{code}"),
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
            format!("it is not a directory{code}")
        }
        _ => e.to_string(),
    }
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
