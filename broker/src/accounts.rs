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

use crate::core::conn::Conn;
use crate::core::outbound::Outbox;
use crate::core::route::{reply_frame, with_reply_ref, Fan, Note};
use crate::core::{self, NameError};
use crate::store::{Store, Stored, StoredKind};
use crate::{log_debug, log_info, log_warn, Shared};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::RwLock;
use protocol::{fold_name, ErrorCode, Event, Kind};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
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

/// The accounts side of the broker: the owned names and the thread's inbox.
pub(crate) struct Accounts {
    owned: RwLock<HashSet<String>>,
    tx: Sender<Ticket>,
}

impl Accounts {
    /// The accounts in `store`, and the inbox of the thread that
    /// [`run`] will serve.
    pub fn new(store: &Store) -> Result<(Accounts, Receiver<Ticket>), String> {
        let owned = store
            .accounts()?
            .into_iter()
            .map(|a| fold_name(&a.name))
            .collect();
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        Ok((
            Accounts {
                owned: RwLock::new(owned),
                tx,
            },
            rx,
        ))
    }

    /// How many accounts there are.
    pub fn count(&self) -> usize {
        self.owned.read().len()
    }

    /// True if `name` (any case) is an account.
    pub fn owned(&self, name: &str) -> bool {
        self.owned.read().contains(&fold_name(name))
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
    let (Some(accounts), Some(store)) = (shared.accounts.as_ref(), shared.store.as_ref()) else {
        return;
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
                serve(
                    &shared,
                    accounts,
                    store,
                    &mut failures,
                    &mut out,
                    due.ticket,
                );
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

/// Does one job and releases its connection.
fn serve(
    shared: &Shared,
    accounts: &Accounts,
    store: &Store,
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
            } => login(shared, store, failures, out, &conn, &name, &password),
            Job::Verify {
                conn,
                name,
                password,
                slot,
            } => {
                if !verify(store, failures, &conn, &name, &password, &slot) {
                    state = core::hold::FAILED;
                }
            }
            Job::Register { conn, password } => {
                register(shared, accounts, store, out, &conn, &password)
            }
        });
    }
    held.store(state, Ordering::Release);
    if let Some(w) = shared.workers.get(conn.worker) {
        w.releaser().release();
    }
}

/// Checks a password for the IRC door; on success fills `slot` with the
/// account's name and stored messages.
fn verify(
    store: &Store,
    failures: &mut Failures,
    conn: &Conn,
    name: &str,
    password: &str,
    slot: &parking_lot::Mutex<Option<Verified>>,
) -> bool {
    let folded = fold_name(name);
    let account = store.account(&folded).ok().flatten();
    let Some(account) = account.filter(|a| crate::store::verify_password(password, &a.hash)) else {
        failures.failed(&folded, conn.peer.ip(), Instant::now());
        log_info!("{}: wrong password for {name}", conn.peer);
        return false;
    };
    failures.succeeded(&folded);
    let stored = store.take_mailbox(&folded).unwrap_or_else(|e| {
        log_warn!(
            "accounts: cannot read {}'s stored messages: {e}",
            account.name
        );
        Vec::new()
    });
    *slot.lock() = Some(Verified {
        name: account.name,
        stored,
    });
    true
}

fn error(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, code: ErrorCode, text: &str) {
    core::error(shared, out, conn, code, None, text);
}

/// `NAME <name> <password>`: the name if the password is right, then the
/// messages stored for it, oldest first, before anything newer.
fn login(
    shared: &Shared,
    store: &Store,
    failures: &mut Failures,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    name: &str,
    password: &str,
) {
    let folded = fold_name(name);
    let account = match store.account(&folded) {
        Ok(a) => a,
        Err(e) => {
            log_warn!("accounts: cannot read {name}: {e}");
            return error(
                shared,
                out,
                conn,
                ErrorCode::Unavailable,
                "accounts can't be read now; try again",
            );
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
    let stored = match store.take_mailbox(&folded) {
        Ok(m) => m,
        Err(e) => {
            log_warn!(
                "accounts: cannot read {}'s stored messages: {e}",
                account.name
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
            match store.take_mailbox(&folded) {
                Ok(late) => {
                    for m in &late {
                        deliver_stored(shared, out, conn, m);
                    }
                }
                Err(e) => log_warn!(
                    "accounts: cannot read {}'s stored messages: {e}",
                    account.name
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
    // A receipt goes to the sender if it is online now.
    let from_conn = shared.registry.get(&m.from).map_or(0, |c| c.id);
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
    store: &Store,
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
    match store.create_account(&folded, &name, &hash) {
        Ok(true) => {
            accounts.owned.write().insert(folded);
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
            log_warn!("accounts: cannot create {name}: {e}");
            error(
                shared,
                out,
                conn,
                ErrorCode::Unavailable,
                "accounts can't be written now; try again",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
