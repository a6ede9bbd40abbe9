//! Accounts: names people own with a password (docs/protocol.md,
//! "Accounts"), checked on a thread of their own.
//!
//! Password hashes are slow on purpose (argon2id), and wrong passwords are
//! answered after a growing delay, so neither may run on a routing thread.
//! A door turns `NAME <name> <password>` or `REGISTER <password>` into a
//! [`Job`] and holds the connection (its socket is not read, so its later
//! requests wait their turn); this thread does the work, answers in the
//! connection's door's form, takes the name through the core as any door
//! would, delivers the account's stored messages right after `OK NAME`,
//! and lets the connection go on.
//!
//! Which names are owned is also kept in memory ([`Accounts::owned`]), so a
//! plain `NAME` of an owned name gets `NAME_OWNED` at once, on the worker.
//!
//! Where accounts and mailboxes live is a [`Home`]: the store, or in a
//! cluster the cluster's Redis (`cluster::accounts`), so that every node
//! has the same accounts. A node of a cluster never falls back to its own
//! store: while Redis is unreachable a login or a registration is answered
//! `UNAVAILABLE`, or the nodes' accounts would part ways.

use crate::cluster::accounts::ClusterAccounts;
use crate::cluster::link::LinkError;
use crate::core::conn::Conn;
use crate::core::outbound::Outbox;
use crate::core::route::{reply_frame, with_reply_ref, Fan, Note};
use crate::core::{self, NameError};
use crate::store::{Account, Store, Stored, StoredKind};
use crate::{log_debug, log_info, log_warn, Shared};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::RwLock;
use protocol::{fold_name, ErrorCode, Event, Kind};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Shortest and longest password, in bytes.
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;
/// The delay after the first wrong password; it doubles with each more.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Wrong passwords older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// How often the thread looks whether the broker is stopping.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// Jobs that may wait for this thread; past it a login is `UNAVAILABLE`.
const QUEUE: usize = 4096;

/// Work for the accounts thread.
pub(crate) enum Job {
    /// `NAME <name> <password>`.
    Login {
        /// Who asks.
        conn: Arc<Conn>,
        /// The name asked for.
        name: String,
        /// The password given.
        password: String,
    },
    /// An IRC client's `PASS` or SASL `PLAIN`: only checks the password
    /// (and takes the account's stored messages); the IRC door registers
    /// the nick itself, with its welcome, when the hold is over.
    Verify {
        /// Who asks.
        conn: Arc<Conn>,
        /// The account.
        name: String,
        /// The password given.
        password: String,
        /// Filled on success.
        slot: Arc<parking_lot::Mutex<Option<Verified>>>,
    },
    /// `REGISTER <password>` by a connection that has a name.
    Register {
        /// Who asks.
        conn: Arc<Conn>,
        /// The password to set.
        password: String,
    },
}

/// A password checked for the IRC door: the account's name as registered,
/// and its stored messages, to deliver after the welcome.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    /// The account's name as shown.
    pub name: String,
    /// Its stored messages, oldest first.
    pub stored: Vec<Stored>,
}

/// A job with what every job carries: the web request's `ref` and the
/// connection's hold, released when it is answered.
pub(crate) struct Ticket {
    job: Job,
    reference: Option<serde_json::Value>,
    held: Arc<AtomicU8>,
}

/// The owned names (folded), and while they are being read again from
/// the cluster, the changes heard meanwhile (applied over what was read,
/// which may be older than they are).
#[derive(Default)]
struct Owned {
    names: HashSet<String>,
    heard: Option<Vec<(String, bool)>>,
}

impl Owned {
    fn set(&mut self, folded: &str, exists: bool) {
        if exists {
            self.names.insert(folded.to_string());
        } else {
            self.names.remove(folded);
        }
        if let Some(heard) = self.heard.as_mut() {
            heard.push((folded.to_string(), exists));
        }
    }
}

/// The accounts side of the broker: the owned names and the thread's inbox.
pub(crate) struct Accounts {
    owned: RwLock<Owned>,
    tx: Sender<Ticket>,
    /// In a cluster, where the accounts live instead of the store (set
    /// once, when the node starts, before the accounts thread does).
    cluster: OnceLock<Arc<ClusterAccounts>>,
}

impl Accounts {
    /// The accounts in `store`, and the inbox of the thread that
    /// [`run`] will serve.
    pub fn new(store: &Store) -> Result<(Accounts, Receiver<Ticket>), String> {
        let names = store
            .accounts()?
            .into_iter()
            .map(|a| fold_name(&a.name))
            .collect();
        Ok(Accounts::with(names))
    }

    /// A cluster node's accounts: none known until the node reads them
    /// from Redis (see [`Accounts::set_cluster`]).
    pub fn clustered() -> (Accounts, Receiver<Ticket>) {
        Accounts::with(HashSet::new())
    }

    fn with(names: HashSet<String>) -> (Accounts, Receiver<Ticket>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let owned = Owned { names, heard: None };
        (
            Accounts {
                owned: RwLock::new(owned),
                tx,
                cluster: OnceLock::new(),
            },
            rx,
        )
    }

    /// From now on the accounts live in the cluster's Redis.
    pub fn set_cluster(&self, cluster: Arc<ClusterAccounts>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster's accounts, if this broker is a node of one.
    pub fn cluster(&self) -> Option<&Arc<ClusterAccounts>> {
        self.cluster.get()
    }

    /// How many accounts there are.
    pub fn count(&self) -> usize {
        self.owned.read().names.len()
    }

    /// True if `name` (any case) is an account.
    pub fn owned(&self, name: &str) -> bool {
        self.owned.read().names.contains(&fold_name(name))
    }

    /// Another node (or `broker account`) registered (`exists`) or deleted
    /// the account `folded`.
    pub fn heard(&self, folded: &str, exists: bool) {
        self.owned.write().set(folded, exists);
    }

    /// The owned names are about to be read again: changes heard from now
    /// on are kept, to apply over what is read.
    pub fn reload_begin(&self) {
        self.owned.write().heard = Some(Vec::new());
    }

    /// The owned names as read (`None`: they could not be), with the
    /// changes heard since [`Accounts::reload_begin`] applied over them.
    pub fn reload_end(&self, names: Option<HashSet<String>>) {
        let mut owned = self.owned.write();
        let heard = owned.heard.take().unwrap_or_default();
        if let Some(names) = names {
            owned.names = names;
            for (folded, exists) in heard {
                owned.set(&folded, exists);
            }
        }
    }

    /// Hands a job to the thread; false if its queue is full.
    pub fn submit(
        &self,
        job: Job,
        reference: Option<serde_json::Value>,
        held: Arc<AtomicU8>,
    ) -> bool {
        self.tx
            .try_send(Ticket {
                job,
                reference,
                held,
            })
            .is_ok()
    }
}

/// Checks the password rules: 8 to 128 bytes, no spaces.
pub(crate) fn password_ok(password: &str) -> Result<(), &'static str> {
    if !PASSWORD_LEN.contains(&password.len()) {
        return Err("a password is 8 to 128 bytes");
    }
    if password.contains(' ') {
        return Err("a password has no spaces");
    }
    Ok(())
}

/// Wrong passwords per name or address: how many, and the last one.
#[derive(Default)]
struct Failures {
    by_name: HashMap<String, (u32, Instant)>,
    by_ip: HashMap<IpAddr, (u32, Instant)>,
}

impl Failures {
    /// How long the next attempt for `name` from `ip` must wait.
    fn delay(&mut self, name: &str, ip: IpAddr, now: Instant) -> Duration {
        self.forget(now);
        // Failures older than FORGET_AFTER no longer count: a name guessed
        // at once is free of its delay a quarter of an hour later.
        let recent = |f: Option<&(u32, Instant)>| {
            f.filter(|f| now.saturating_duration_since(f.1) < FORGET_AFTER)
                .map_or(0, |f| f.0)
        };
        let n = recent(self.by_name.get(name)).max(recent(self.by_ip.get(&ip)));

        if n == 0 {
            return Duration::ZERO;
        }
        FIRST_DELAY
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(MAX_DELAY)
    }

    fn failed(&mut self, name: &str, ip: IpAddr, now: Instant) {
        let bump = |e: &mut (u32, Instant)| {
            let before = if now.saturating_duration_since(e.1) < FORGET_AFTER {
                e.0
            } else {
                0
            };
            *e = (before.saturating_add(1), now);
        };
        bump(self.by_name.entry(name.to_string()).or_insert((0, now)));
        bump(self.by_ip.entry(ip).or_insert((0, now)));
    }

    fn succeeded(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    fn forget(&mut self, now: Instant) {
        if self.by_name.len() + self.by_ip.len() < 10_000 {
            return;
        }
        self.by_name
            .retain(|_, f| now.saturating_duration_since(f.1) < FORGET_AFTER);
        self.by_ip
            .retain(|_, f| now.saturating_duration_since(f.1) < FORGET_AFTER);
    }
}

/// A ticket waiting out its delay.
struct Due {
    at: Instant,
    seq: u64,
    ticket: Ticket,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The accounts thread: runs until the broker's inbox closes.
pub(crate) fn run(shared: Arc<Shared>, inbox: Receiver<Ticket>) {
    let Some(accounts) = shared.accounts.as_ref() else {
        return;
    };
    let home = match (accounts.cluster(), shared.store.as_ref()) {
        (Some(cluster), _) => Home::Cluster(cluster),
        (None, Some(store)) => Home::Local(store),
        (None, None) => return,
    };
    let writers = shared.writers.len();
    let mut failures = Failures::default();
    let mut waiting: BinaryHeap<Due> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while waiting.peek().is_some_and(|d| d.at <= now) {
            if let Some(due) = waiting.pop() {
                let mut out = Outbox::new(writers, None);
                serve(&shared, accounts, home, &mut failures, &mut out, due.ticket);
                core::flush(&shared, &mut out);
            }
        }
        let wait = waiting.peek().map_or(STOP_CHECK, |d| {
            d.at.saturating_duration_since(now).min(STOP_CHECK)
        });
        let next = inbox.recv_timeout(wait);
        match next {
            Ok(ticket) => {
                // A login waits out the delay its name and address earned
                // before it is even checked: guessing costs time, and the
                // hashing costs this thread nothing meanwhile.
                let now = Instant::now();
                let delay = match &ticket.job {
                    Job::Login { conn, name, .. } | Job::Verify { conn, name, .. } => {
                        failures.delay(&fold_name(name), conn.peer.ip(), now)
                    }
                    Job::Register { .. } => Duration::ZERO,
                };
                seq += 1;
                waiting.push(Due {
                    at: now + delay,
                    seq,
                    ticket,
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if shared.stopping() {
            // Answer nothing more: the connections are being closed.
            for due in waiting.drain() {
                due.ticket.held.store(core::hold::DONE, Ordering::Release);
            }
            while let Ok(t) = inbox.try_recv() {
                t.held.store(core::hold::DONE, Ordering::Release);
            }
            return;
        }
    }
}

/// Where the accounts and their mailboxes live.
#[derive(Clone, Copy)]
enum Home<'a> {
    /// This broker's store (a single broker).
    Local(&'a Store),
    /// The cluster's Redis, the same for every node.
    Cluster(&'a ClusterAccounts),
}

/// Why an account could not be read or written: what to log, and whether
/// it was because the cluster's Redis is unreachable.
struct Trouble {
    why: String,
    unreachable: bool,
}

impl From<String> for Trouble {
    fn from(why: String) -> Trouble {
        Trouble {
            why,
            unreachable: false,
        }
    }
}

impl From<LinkError> for Trouble {
    fn from(e: LinkError) -> Trouble {
        Trouble {
            unreachable: e == LinkError::Down,
            why: e.to_string(),
        }
    }
}

impl Trouble {
    /// `ERR UNAVAILABLE`'s text for a read (`write` false) or a write.
    fn text(&self, write: bool) -> &'static str {
        match (self.unreachable, write) {
            (false, false) => "accounts can't be read now; try again",
            (false, true) => "accounts can't be written now; try again",
            (true, false) => "accounts can't be read now: the cluster is unreachable; try again",
            (true, true) => "accounts can't be written now: the cluster is unreachable; try again",
        }
    }
}

impl Home<'_> {
    /// The account with this folded name, if any.
    fn account(self, folded: &str) -> Result<Option<Account>, Trouble> {
        match self {
            Home::Local(store) => Ok(store.account(folded)?),
            Home::Cluster(c) => Ok(c.book()?.account(folded)?),
        }
    }

    /// Makes `folded` an account; false if it is one already.
    fn create(self, folded: &str, name: &str, hash: &str) -> Result<bool, Trouble> {
        match self {
            Home::Local(store) => Ok(store.create_account(folded, name, hash)?),
            Home::Cluster(c) => Ok(c.book()?.create(folded, name, hash)?),
        }
    }

    /// Takes an account's stored messages, oldest first. `again`: the
    /// second take of a login, once the name is this connection's here
    /// (in a cluster, from then on new messages for it come to this node).
    fn take(self, folded: &str, again: bool) -> Result<Vec<Stored>, Trouble> {
        match self {
            Home::Local(store) => Ok(store.take_mailbox(folded)?),
            Home::Cluster(c) => {
                let live = again.then(|| c.node_name());
                Ok(c.book()?.take(folded, live)?)
            }
        }
    }
}

/// Does one job and releases its connection.
fn serve(
    shared: &Shared,
    accounts: &Accounts,
    home: Home<'_>,
    failures: &mut Failures,
    out: &mut Outbox,
    ticket: Ticket,
) {
    let Ticket {
        job,
        reference,
        held,
    } = ticket;
    let conn = match &job {
        Job::Login { conn, .. } | Job::Verify { conn, .. } | Job::Register { conn, .. } => {
            Arc::clone(conn)
        }
    };
    let mut state = core::hold::DONE;
    if !conn.is_closing() {
        with_reply_ref(conn.id, reference, || match job {
            Job::Login {
                conn,
                name,
                password,
            } => login(shared, home, failures, out, &conn, &name, &password),
            Job::Verify {
                conn,
                name,
                password,
                slot,
            } => state = verify(home, failures, &conn, &name, &password, &slot),
            Job::Register { conn, password } => {
                register(shared, accounts, home, out, &conn, &password)
            }
        });
    }
    held.store(state, Ordering::Release);
    if let Some(w) = shared.workers.get(conn.worker) {
        w.releaser().release();
    }
}

/// Checks a password for the IRC door; on success fills `slot` with the
/// account's name and stored messages. Returns the hold's end:
/// `DONE`, `FAILED` (no such account or a wrong password) or
/// `UNAVAILABLE` (the accounts could not be read).
fn verify(
    home: Home<'_>,
    failures: &mut Failures,
    conn: &Conn,
    name: &str,
    password: &str,
    slot: &parking_lot::Mutex<Option<Verified>>,
) -> u8 {
    let folded = fold_name(name);
    let account = match home.account(&folded) {
        Ok(a) => a,
        Err(e) => {
            // Not a wrong password: no delay is earned for it.
            log_warn!("accounts: cannot read {name}: {}", e.why);
            return core::hold::UNAVAILABLE;
        }
    };
    let Some(account) = account.filter(|a| crate::store::verify_password(password, &a.hash)) else {
        failures.failed(&folded, conn.peer.ip(), Instant::now());
        log_info!("{}: wrong password for {name}", conn.peer);
        return core::hold::FAILED;
    };
    failures.succeeded(&folded);
    let stored = home.take(&folded, false).unwrap_or_else(|e| {
        log_warn!(
            "accounts: cannot read {}'s stored messages: {}",
            account.name,
            e.why
        );
        Vec::new()
    });
    *slot.lock() = Some(Verified {
        name: account.name,
        stored,
    });
    core::hold::DONE
}

fn error(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, code: ErrorCode, text: &str) {
    core::error(shared, out, conn, code, None, text);
}

/// `NAME <name> <password>`: the name if the password is right, then the
/// messages stored for it, oldest first, before anything newer.
fn login(
    shared: &Shared,
    home: Home<'_>,
    failures: &mut Failures,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    name: &str,
    password: &str,
) {
    let folded = fold_name(name);
    let account = match home.account(&folded) {
        Ok(a) => a,
        Err(e) => {
            log_warn!("accounts: cannot read {name}: {}", e.why);
            return error(shared, out, conn, ErrorCode::Unavailable, e.text(false));
        }
    };
    let Some(account) = account.filter(|a| crate::store::verify_password(password, &a.hash)) else {
        failures.failed(&folded, conn.peer.ip(), Instant::now());
        log_info!("{}: wrong password for {name}", conn.peer);
        return error(
            shared,
            out,
            conn,
            ErrorCode::BadPassword,
            "wrong name or password",
        );
    };
    failures.succeeded(&folded);
    // In a cluster the name is claimed in Redis first, as any `NAME` is.
    let node = shared.cluster.get();
    if let Some(node) = node {
        match node.claim(&folded, &account.name) {
            Ok(true) => {}
            Ok(false) => {
                return error(
                    shared,
                    out,
                    conn,
                    ErrorCode::NameTaken,
                    "that name is in use",
                )
            }
            Err(_) => {
                return error(
                    shared,
                    out,
                    conn,
                    ErrorCode::Unavailable,
                    crate::cluster::node::UNREACHABLE,
                )
            }
        }
    }
    let stored = match home.take(&folded, false) {
        Ok(m) => m,
        Err(e) => {
            log_warn!(
                "accounts: cannot read {}'s stored messages: {}",
                account.name,
                e.why
            );
            Vec::new()
        }
    };
    let taken = core::take_name(shared, out, conn, &account.name, |out| {
        out.push(
            conn,
            &reply_frame(
                conn,
                &Event::NameOk {
                    name: &account.name,
                },
            ),
        );
        for m in &stored {
            deliver_stored(shared, out, conn, m);
        }
    });
    if let Some(node) = node {
        match taken {
            Ok(()) => node.joined(&account.name),
            Err(_) => node.release(&folded),
        }
    }
    let why = match taken {
        Ok(()) if conn.is_closing() => {
            // Gone as it logged in: the messages never left the broker.
            return put_back(shared, &folded, stored);
        }
        Ok(()) => {
            // A message routed while this login was under way (the name was
            // not yet online) went to the mailbox: deliver it now.
            match home.take(&folded, true) {
                Ok(late) => {
                    for m in &late {
                        deliver_stored(shared, out, conn, m);
                    }
                }
                Err(e) => log_warn!(
                    "accounts: cannot read {}'s stored messages: {}",
                    account.name,
                    e.why
                ),
            }
            log_debug!(
                "{} logged in as {} ({} stored)",
                conn.peer,
                account.name,
                stored.len()
            );
            return;
        }
        Err(NameError::Already) => (
            ErrorCode::AlreadyNamed,
            "this connection already has a name",
        ),
        Err(NameError::Bad(why)) => (ErrorCode::BadName, why),
        Err(NameError::Taken) => (ErrorCode::NameTaken, "that name is in use"),
    };
    put_back(shared, &folded, stored);
    error(shared, out, conn, why.0, why.1);
}

/// Stored messages taken for a login that did not get them after all (the
/// name was taken, the connection closed): back into the mailbox, in
/// their places (mailboxes are ordered by id).
pub(crate) fn put_back(shared: &Shared, folded: &str, stored: Vec<Stored>) {
    if let Some(cluster) = shared.accounts.as_ref().and_then(Accounts::cluster) {
        let n = stored.len();
        if !cluster.put_back(folded, stored) {
            log_warn!("accounts: {n} stored messages for {folded} could not be put back");
        }
        return;
    }
    let Some(store) = shared.store.as_ref() else {
        return;
    };
    for m in stored {
        if store
            .try_append(vec![folded.to_string()], m, Box::new(|_| {}))
            .is_err()
        {
            log_warn!("accounts: a stored message for {folded} could not be put back");
        }
    }
}

/// One stored message, as a live one would have reached this connection.
pub(crate) fn deliver_stored(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, m: &Stored) {
    let kind = match &m.kind {
        StoredKind::Direct => Kind::Direct,
        StoredKind::Multi => Kind::Multi,
        StoredKind::Room(room) => Kind::Room(room),
    };
    // A receipt goes to the sender if it is online now: here, or in a
    // cluster on whatever node it is on then (its receipts are told apart
    // by its name there, as for a live message from another node).
    let from_conn = match shared.registry.get(&m.from) {
        Some(c) => c.id,
        None if shared.cluster.get().is_some() => crate::cluster::node::remote_sender_id(&m.from),
        None => 0,
    };
    let note = Note::Msg {
        id: m.id,
        from: &m.from,
        from_conn,
        kind,
        ts: m.ts_ms,
        body: &m.body,
        notice: false,
    };
    Fan::new(note, &shared.config.server_name).push(out, conn);
}

/// `REGISTER <password>`: the connection's name becomes an account.
fn register(
    shared: &Shared,
    accounts: &Accounts,
    home: Home<'_>,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    password: &str,
) {
    let Some(name) = conn.name().map(str::to_string) else {
        return error(
            shared,
            out,
            conn,
            ErrorCode::NotRegistered,
            "choose a name first: NAME <name>",
        );
    };
    let folded = fold_name(&name);
    let hash = match crate::store::hash_password(password) {
        Ok(h) => h,
        Err(e) => {
            log_warn!("accounts: cannot hash a password: {e}");
            return error(
                shared,
                out,
                conn,
                ErrorCode::Unavailable,
                "accounts can't be written now; try again",
            );
        }
    };
    match home.create(&folded, &name, &hash) {
        Ok(true) => {
            // (The other nodes hear of it from Redis, this one does not.)
            accounts.heard(&folded, true);
            log_info!("{name} is now an account");
            out.push(conn, &reply_frame(conn, &Event::RegisterOk { name: &name }));
        }
        Ok(false) => error(
            shared,
            out,
            conn,
            ErrorCode::AlreadyRegistered,
            "this name is an account already",
        ),
        Err(e) => {
            log_warn!("accounts: cannot create {name}: {}", e.why);
            error(shared, out, conn, ErrorCode::Unavailable, e.text(true));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reload_keeps_what_was_heard_while_it_read() {
        let (a, _rx) = Accounts::clustered();
        a.heard("old", true);
        a.reload_begin();
        // Heard while Redis was read: newer than what the read may return.
        a.heard("new", true);
        a.heard("gone", false);
        let read: HashSet<String> = ["read", "gone"].map(String::from).into();
        a.reload_end(Some(read));
        assert!(a.owned("READ") && a.owned("new"));
        assert!(!a.owned("gone") && !a.owned("old"));
        // A read that failed changes nothing, and stops keeping changes.
        a.reload_begin();
        a.heard("later", true);
        a.reload_end(None);
        assert!(a.owned("later") && a.owned("read"));
        assert!(a.owned.read().heard.is_none());
        assert_eq!(a.count(), 3);
    }

    #[test]
    fn password_rules() {
        assert!(password_ok("12345678").is_ok());
        assert!(password_ok("1234567").is_err());
        assert!(password_ok(&"x".repeat(129)).is_err());
        assert!(password_ok(&"x".repeat(128)).is_ok());
        assert!(password_ok("has a space").is_err());
    }

    #[test]
    fn delays_grow_per_name_and_per_address_and_are_capped() {
        let mut f = Failures::default();
        let now = Instant::now();
        let (ip, other): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap());
        assert_eq!(f.delay("bob", ip, now), Duration::ZERO);
        f.failed("bob", ip, now);
        assert_eq!(f.delay("bob", other, now), FIRST_DELAY);
        assert_eq!(f.delay("carol", ip, now), FIRST_DELAY);
        f.failed("bob", ip, now);
        f.failed("bob", ip, now);
        assert_eq!(f.delay("bob", other, now), FIRST_DELAY * 4);
        for _ in 0..40 {
            f.failed("bob", ip, now);
        }
        assert_eq!(f.delay("bob", ip, now), MAX_DELAY);
        f.succeeded("bob");
        // The address still has its count.
        assert_eq!(f.delay("bob", ip, now), MAX_DELAY);
        assert_eq!(f.delay("bob", other, now), Duration::ZERO);
        // A quarter of an hour later the address is free again.
        let later = now + FORGET_AFTER;
        assert_eq!(f.delay("bob", ip, later), Duration::ZERO);
        f.failed("bob", ip, later);
        assert_eq!(f.delay("bob", ip, later), FIRST_DELAY);
    }
}
