//! This broker as one node of a cluster: the link's events routed to local
//! users, names claimed cluster-wide off the routing threads, and a mirror
//! of the users on other nodes for `LIST` and routing.

use super::link::{Events, Link, LinkError, Settings, Status, Target};
use super::wire::{Item, Msg, MsgKind};
use crate::core::conn::Conn;
use crate::core::outbound::Outbox;
use crate::core::route::{reply_frame, with_reply_ref, Fan, Note};
use crate::core::{self, NameError};
use crate::{log_info, log_warn, Shared};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::RwLock;
use protocol::{fold_name, ErrorCode, Event, LeftReason};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// A user on another node.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// The name as shown.
    pub name: String,
    /// Its node.
    pub node: String,
}

/// Work for the cluster thread (Redis calls never run on a routing
/// thread).
pub(crate) enum Job {
    /// `NAME`: claim it cluster-wide, then take it here.
    Claim {
        conn: Arc<Conn>,
        name: String,
        reference: Option<serde_json::Value>,
        held: Arc<AtomicU8>,
    },
    /// A door's registration (IRC) claims the name cluster-wide and goes
    /// on itself: `held` becomes DONE if it is this node's, FAILED if not.
    ClaimOnly {
        conn: Arc<Conn>,
        folded: String,
        shown: String,
        held: Arc<AtomicU8>,
    },
    /// A local user left: free the name.
    Release(String),
    /// Connected: learn who is on the other nodes.
    Resync,
    /// Reconnected: claim this node's names again (Redis may have lost
    /// them), tell the others who is here, learn who is there.
    Rejoin,
}

/// The cluster side of the broker.
pub(crate) struct Node {
    /// The Redis link (set once it has started).
    link: OnceLock<Link>,
    /// Users on other nodes, by folded name.
    remote: RwLock<HashMap<String, Remote>>,
    jobs: Sender<Job>,
}

impl Node {
    /// The node's name.
    pub fn name(&self) -> &str {
        self.link.get().map_or("", |l| l.node())
    }

    /// True if Redis is reachable.
    pub fn is_up(&self) -> bool {
        self.link.get().is_some_and(Link::is_up)
    }

    /// The user `name` (any case) on another node, if any.
    pub fn remote(&self, name: &str) -> Option<Remote> {
        self.remote.read().get(&fold_name(name)).cloned()
    }

    /// Everyone on other nodes, as shown.
    pub fn remote_names(&self) -> Vec<String> {
        self.remote
            .read()
            .values()
            .map(|r| r.name.clone())
            .collect()
    }

    /// How many users are on other nodes.
    pub fn remote_count(&self) -> u64 {
        self.remote.read().len() as u64
    }

    /// Queues an item for other nodes; false if it can't go now.
    pub fn publish(&self, to: Target, item: Item) -> bool {
        self.link
            .get()
            .is_some_and(|l| l.try_publish(to, item).is_ok())
    }

    /// Tells the other nodes a local user took `name`.
    pub fn joined(&self, name: &str) {
        self.publish(
            Target::All,
            Item::Joined {
                name: name.to_string(),
                node: self.name().to_string(),
                room: None,
            },
        );
    }

    /// Hands a job to the cluster thread; false if it can't take it.
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.try_send(job).is_ok()
    }

    /// Leaves the cluster cleanly at shutdown: the other nodes hear that
    /// each of `names` quit, and the names are free at once.
    pub fn leave(&self, names: &[String]) {
        let Some(link) = self.link.get() else {
            return;
        };
        for name in names {
            let _ = link.try_publish(
                Target::All,
                Item::Left {
                    name: name.clone(),
                    reason: LeftReason::Quit,
                    node: link.node().to_string(),
                    text: None,
                },
            );
            let _ = link.release(&fold_name(name));
        }
        // Let the publisher send them before the process goes (bounded).
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            let s = link.stats();
            if s.published + s.lost >= s.queued {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Starts the node: its link and its thread. `shared` is how the link's
/// events reach the core.
pub(crate) fn start(
    settings: Settings,
    shared: Weak<Shared>,
) -> Result<(Arc<Node>, Receiver<Job>), LinkError> {
    let (jobs, inbox) = crossbeam_channel::bounded(4096);
    let node = Arc::new(Node {
        link: OnceLock::new(),
        remote: RwLock::new(HashMap::new()),
        jobs,
    });
    let events = Arc::new(Router {
        shared,
        node: Arc::downgrade(&node),
        was_down: std::sync::atomic::AtomicBool::new(false),
    });
    let link = Link::start(settings, events)?;
    let _ = node.link.set(link);
    Ok((node, inbox))
}

/// The link's events, routed into the core.
struct Router {
    shared: Weak<Shared>,
    node: Weak<Node>,
    /// The link has been down since it was first up.
    was_down: std::sync::atomic::AtomicBool,
}

impl Events for Router {
    fn batch(&self, _from: &str, items: Vec<Item>) {
        let (Some(shared), Some(node)) = (self.shared.upgrade(), self.node.upgrade()) else {
            return;
        };
        let mut out = Outbox::new(shared.writers.len(), None);
        for item in items {
            route(&shared, &node, &mut out, item);
        }
        core::flush(&shared, &mut out);
    }

    fn status(&self, status: Status) {
        match status {
            Status::Up => {
                log_info!("cluster: connected to Redis");
                if let Some(node) = self.node.upgrade() {
                    // Who is where now; after a Down, also this node's
                    // names again (whatever was published while it was
                    // away is gone, and Redis may have lost everything).
                    let job = if self.was_down.swap(false, Ordering::AcqRel) {
                        Job::Rejoin
                    } else {
                        Job::Resync
                    };
                    let _ = node.jobs.try_send(job);
                }
            }
            Status::Down => {
                self.was_down.store(true, Ordering::Release);
                log_warn!(
                    "cluster: Redis is unreachable; serving local users only (cross-node work gets UNAVAILABLE)"
                )
            }
        }
    }

    fn node_gone(&self, gone: &str, _freed: Vec<String>) {
        let (Some(shared), Some(node)) = (self.shared.upgrade(), self.node.upgrade()) else {
            return;
        };
        // Each node tells its own users, once: the users it knew there.
        let left: Vec<String> = {
            let mut remote = node.remote.write();
            let names: Vec<String> = remote
                .iter()
                .filter(|(_, r)| r.node == gone)
                .map(|(k, _)| k.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|k| remote.remove(&k).map(|r| r.name))
                .collect()
        };
        log_info!("cluster: node {gone} is gone ({} users)", left.len());
        let mut out = Outbox::new(shared.writers.len(), None);
        for name in &left {
            let note = Note::Left {
                name,
                reason: LeftReason::Timeout,
                text: None,
            };
            core::broadcast(
                &shared,
                &mut out,
                0,
                &mut Fan::new(note, &shared.config.server_name),
            );
        }
        core::flush(&shared, &mut out);
    }
}

/// One item from another node, to this node's users.
fn route(shared: &Shared, node: &Node, out: &mut Outbox, item: Item) {
    let server = &shared.config.server_name;
    match item {
        Item::Msg(m) => deliver(shared, out, &m),
        Item::Joined {
            name,
            node: at,
            room: None,
        } => {
            let before = node.remote.write().insert(
                fold_name(&name),
                Remote {
                    name: name.clone(),
                    node: at.clone(),
                },
            );
            // Told again (a node rejoining after Redis came back): once.
            if before.is_none_or(|b| b.node != at) {
                let note = Note::Joined {
                    name: &name,
                    room: None,
                };
                core::broadcast(shared, out, 0, &mut Fan::new(note, server));
            }
        }
        Item::Left {
            name, reason, text, ..
        } => {
            let known = node.remote.write().remove(&fold_name(&name)).is_some();
            if known {
                let note = Note::Left {
                    name: &name,
                    reason,
                    text: text.as_deref(),
                };
                core::broadcast(shared, out, 0, &mut Fan::new(note, server));
            }
        }
        // Rooms and receipts across nodes come with the next step.
        Item::Joined { .. } | Item::Parted { .. } | Item::Rcpt { .. } => {}
    }
}

/// A message from another node to this node's users.
fn deliver(shared: &Shared, out: &mut Outbox, m: &Msg) {
    let note = Note::Msg {
        id: m.id,
        from: &m.from,
        from_conn: 0,
        kind: m.kind.as_kind(),
        ts: m.ts,
        body: &m.body,
        notice: m.notice,
    };
    let mut fan = Fan::new(note, &shared.config.server_name);
    match &m.kind {
        MsgKind::All => {
            core::broadcast(shared, out, 0, &mut fan);
        }
        MsgKind::Direct | MsgKind::Multi => {
            for name in &m.to {
                if let Some(c) = shared.registry.get(name) {
                    fan.push(out, &c);
                }
            }
        }
        MsgKind::Room(_) => {}
    }
}

/// How often the mirror of remote users is checked against Redis.
const RESYNC: Duration = Duration::from_secs(2);

/// The cluster thread: name claims and releases, and the mirror of who is
/// where after (re)connecting.
pub(crate) fn run(shared: Arc<Shared>, node: Arc<Node>, inbox: Receiver<Job>) {
    let mut next_resync = std::time::Instant::now() + RESYNC;
    loop {
        let job = match inbox.recv_timeout(Duration::from_millis(100)) {
            Ok(job) => job,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.stopping() {
                    return;
                }
                // Presence travels by pub/sub, which keeps nothing for a
                // node that was away: the mirror is checked against Redis
                // now and then, so it heals by itself.
                if std::time::Instant::now() >= next_resync {
                    next_resync = std::time::Instant::now() + RESYNC;
                    if let Some(link) = node.link.get().filter(|l| l.is_up()) {
                        resync(&node, link);
                    }
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let Some(link) = node.link.get() else {
            continue;
        };
        // A node that has just started (or lost Redis a moment ago) gets a
        // little time before a claim is refused as UNAVAILABLE.
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while !link.is_up() && std::time::Instant::now() < until && !shared.stopping() {
            std::thread::sleep(Duration::from_millis(10));
        }
        match job {
            Job::Claim {
                conn,
                name,
                reference,
                held,
            } => {
                let mut out = Outbox::new(shared.writers.len(), None);
                with_reply_ref(conn.id, reference, || {
                    claim(&shared, &node, link, &mut out, &conn, &name)
                });
                core::flush(&shared, &mut out);
                held.store(core::hold::DONE, Ordering::Release);
                if let Some(w) = shared.workers.get(conn.worker) {
                    w.releaser().release();
                }
            }
            Job::Rejoin => {
                rejoin(&shared, &node, link);
                resync(&node, link);
            }
            Job::Resync => resync(&node, link),
            Job::ClaimOnly {
                conn,
                folded,
                shown,
                held,
            } => {
                let state = match link.claim(&folded, &shown) {
                    Ok(true) => core::hold::DONE,
                    _ => core::hold::FAILED,
                };
                held.store(state, Ordering::Release);
                if let Some(w) = shared.workers.get(conn.worker) {
                    w.releaser().release();
                }
            }
            Job::Release(name) => {
                if let Err(e) = link.release(&name) {
                    log_warn!("cluster: cannot free the name {name}: {e}");
                }
            }
        }
    }
}

/// Claims every local user's name again and tells the other nodes: after
/// Redis came back (empty, perhaps) whatever was published meanwhile is
/// gone. A name another node took in the meantime: that local user is
/// told `NAME_TAKEN` and closed.
fn rejoin(shared: &Shared, node: &Node, link: &Link) {
    let mut out = Outbox::new(shared.writers.len(), None);
    for name in shared.registry.names_sorted() {
        match link.claim(&fold_name(&name), &name) {
            Ok(true) => node.joined(&name),
            Ok(false) => {
                if let Some(conn) = shared.registry.get(&name) {
                    log_warn!("cluster: {name} was taken on another node while Redis was away");
                    let text = "your name was taken on another node while the cluster was apart";
                    let last = crate::core::route::closing_frame(&conn, ErrorCode::NameTaken, text);
                    core::close(
                        shared,
                        &mut out,
                        &conn,
                        crate::metrics::CloseReason::Error,
                        Some(&last),
                    );
                }
            }
            Err(e) => log_warn!("cluster: cannot claim {name} again: {e}"),
        }
    }
    core::flush(shared, &mut out);
}

/// Rebuilds the mirror of remote users from Redis.
fn resync(node: &Node, link: &Link) {
    let me = link.node().to_string();
    let mut fresh = HashMap::new();
    for other in link.nodes().into_iter().filter(|n| *n != me) {
        if let Ok(names) = link.names_of(&other) {
            for name in names {
                fresh.insert(
                    fold_name(&name),
                    Remote {
                        name,
                        node: other.clone(),
                    },
                );
            }
        }
    }
    *node.remote.write() = fresh;
}

/// `NAME` in a cluster: the claim in Redis first (exactly one node wins a
/// race), then the name here, then the other nodes are told.
fn claim(
    shared: &Shared,
    node: &Node,
    link: &Link,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    name: &str,
) {
    if conn.is_closing() {
        return;
    }
    let folded = fold_name(name);
    let error = |out: &mut Outbox, code, text| core::error(shared, out, conn, code, None, text);
    match link.claim(&folded, name) {
        Ok(true) => {}
        Ok(false) => return error(out, ErrorCode::NameTaken, "that name is in use"),
        Err(_) => {
            return error(
                out,
                ErrorCode::Unavailable,
                "the cluster is unreachable; try again",
            )
        }
    }
    let taken = core::take_name(shared, out, conn, name, |out| {
        out.push(conn, &reply_frame(conn, &Event::NameOk { name }));
    });
    match taken {
        Ok(()) => node.joined(name),
        Err(e) => {
            let _ = link.release(&folded);
            let (code, text) = match e {
                NameError::Already => (
                    ErrorCode::AlreadyNamed,
                    "this connection already has a name",
                ),
                NameError::Bad(why) => (ErrorCode::BadName, why),
                NameError::Taken => (ErrorCode::NameTaken, "that name is in use"),
            };
            error(out, code, text);
        }
    }
}

/// A local message's remote part: one item per node with recipients
/// (`to` named), or one for all.
pub(crate) fn publish_msg(node: &Node, msg: Msg, to: Target) -> bool {
    node.publish(to, Item::Msg(msg))
}
