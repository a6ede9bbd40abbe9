//! This broker as one node of a cluster: the link's events routed to local
//! users, names claimed cluster-wide off the routing threads, and a mirror
//! of the users on other nodes for `LIST` and routing.

use super::link::{Events, Link, LinkError, Settings, Status, Target};
use super::wire::{Item, Msg, MsgKind};
use crate::core::conn::Conn;
use crate::core::conn::Door;
use crate::core::outbound::Outbox;
use crate::core::route::{reply_frame, with_reply_ref, Fan, Note};
use crate::core::{self, NameError};
use crate::{log_debug, log_info, log_warn, Shared};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use protocol::{fold_name, ErrorCode, Event, LeftReason};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// A user on another node.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// The name as shown.
    pub name: String,
    /// Its node.
    pub node: String,
    /// The rooms it is in, as shown.
    pub rooms: Vec<String>,
    /// When an item last changed its rooms: the check leaves them alone
    /// for a while (Redis learns of a join a moment after the item).
    pub rooms_changed: Option<Instant>,
}

/// A room as the other nodes have it: its shown name and its members
/// there (folded names).
#[derive(Debug, Default)]
struct RemoteRoom {
    name: String,
    members: Vec<String>,
}

/// What this node knows of the users on the other nodes: kept from the
/// items they publish, and checked against Redis every [`RESYNC`].
#[derive(Default)]
struct Mirror {
    /// By folded name.
    users: HashMap<String, Remote>,
    /// By folded room name: the rooms that have members elsewhere.
    rooms: HashMap<String, RemoteRoom>,
    /// Users a `Left` took out a moment ago: the check does not bring them
    /// back from Redis, where their node may not have freed them yet.
    gone: HashMap<String, Instant>,
    /// Users the last check did not find in Redis; the next check that
    /// does not either takes them out (a `Left` may be on its way).
    missing: HashMap<String, Instant>,
}

/// How long a `Left` keeps the check from adding its user back.
const GONE_FOR: Duration = Duration::from_secs(10);

impl Mirror {
    /// Adds a user (true if it is new, or moved node).
    fn add(&mut self, name: &str, node: &str) -> bool {
        let folded = fold_name(name);
        self.gone.remove(&folded);
        self.missing.remove(&folded);
        match self.users.get_mut(&folded) {
            Some(u) if u.node == node => {
                u.name = name.to_string();
                false
            }
            Some(_) => {
                self.remove(&folded);
                self.insert(folded, name, node);
                true
            }
            None => {
                self.insert(folded, name, node);
                true
            }
        }
    }

    fn insert(&mut self, folded: String, name: &str, node: &str) {
        self.users.insert(
            folded,
            Remote {
                name: name.to_string(),
                node: node.to_string(),
                rooms: Vec::new(),
                rooms_changed: None,
            },
        );
    }

    /// Takes a user out, and out of its rooms.
    fn remove(&mut self, folded: &str) -> Option<Remote> {
        let user = self.users.remove(folded)?;
        self.missing.remove(folded);
        for room in &user.rooms {
            self.drop_member(&fold_name(room), folded);
        }
        Some(user)
    }

    fn drop_member(&mut self, room: &str, user: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.members.retain(|m| m != user);
            if r.members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// `user` (folded) entered `room` (shown); true if that is news.
    fn join(&mut self, user: &str, room: &str) -> bool {
        let Some(u) = self.users.get_mut(user) else {
            return false;
        };
        u.rooms_changed = Some(Instant::now());
        if u.rooms.iter().any(|r| r.eq_ignore_ascii_case(room)) {
            return false;
        }
        u.rooms.push(room.to_string());
        let r = self.rooms.entry(fold_name(room)).or_default();
        if r.name.is_empty() {
            r.name = room.to_string();
        }
        r.members.push(user.to_string());
        true
    }

    /// `user` (folded) left `room`; true if it was in it.
    fn part(&mut self, user: &str, room: &str) -> bool {
        let Some(u) = self.users.get_mut(user) else {
            return false;
        };
        u.rooms_changed = Some(Instant::now());
        let before = u.rooms.len();
        u.rooms.retain(|r| !r.eq_ignore_ascii_case(room));
        if u.rooms.len() == before {
            return false;
        }
        self.drop_member(&fold_name(room), user);
        true
    }

    /// Sets a user's rooms to `rooms` (shown names, as Redis has them),
    /// silently; not while an item changed them a moment ago.
    fn set_rooms(&mut self, user: &str, rooms: &[String]) {
        let Some(u) = self.users.get(user) else {
            return;
        };
        let changed = u.rooms_changed;
        if changed.is_some_and(|at| at.elapsed() < GONE_FOR) {
            return;
        }
        let had = u.rooms.clone();
        for r in had.iter().filter(|r| !rooms.contains(r)) {
            self.part(user, r);
        }
        for r in rooms.iter().filter(|r| !had.contains(r)) {
            self.join(user, r);
        }
        // (Not a change by an item.)
        if let Some(u) = self.users.get_mut(user) {
            u.rooms_changed = changed;
        }
    }
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
    /// Another thread's claim (an account login), answered on `reply`.
    /// Claims and releases all run here, in order, so a release never
    /// overtakes a claim of the same name.
    ClaimFor {
        folded: String,
        shown: String,
        reply: Sender<Result<bool, LinkError>>,
    },
    /// A name claimed for nothing: free it.
    Release(String),
    /// A local user left: free the name, then tell the other nodes.
    Left(Item),
    /// A local user's rooms changed: the user (folded) and its rooms now
    /// (shown, space-separated).
    Rooms(String, String),
    /// Connected: learn who is on the other nodes.
    Resync,
    /// Reconnected: claim this node's names again (Redis may have lost
    /// them), tell the others who is here, learn who is there.
    Rejoin,
}

/// Most `Left`s kept while Redis is away, to be published when it is back.
const MAX_PENDING: usize = 100_000;

/// The cluster side of the broker.
pub(crate) struct Node {
    /// The Redis link (set once it has started).
    link: OnceLock<Link>,
    /// The users on other nodes, and their rooms.
    mirror: RwLock<Mirror>,
    /// `Left`s that could not be published (Redis was away): published on
    /// rejoining, so the others hear why each user left.
    pending: Mutex<Vec<Item>>,
    jobs: Sender<Job>,
    /// How long a user may be missing from Redis before the check takes
    /// it for gone: the node timeout, so that after Redis lost everything
    /// each node has had time to come back and say who is there.
    absent_for: Duration,
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
        self.mirror.read().users.get(&fold_name(name)).cloned()
    }

    /// The node of user `name` (any case) if it is on another node.
    pub fn remote_node(&self, name: &str) -> Option<String> {
        self.mirror
            .read()
            .users
            .get(&fold_name(name))
            .map(|r| r.node.clone())
    }

    /// Everyone on other nodes, as shown.
    pub fn remote_names(&self) -> Vec<String> {
        self.mirror
            .read()
            .users
            .values()
            .map(|r| r.name.clone())
            .collect()
    }

    /// How many nodes are alive, this one included (as of the last
    /// heartbeat).
    pub fn node_count(&self) -> usize {
        let seen = self.link.get().map_or(1, |l| l.nodes().len());
        // Nodes whose users are known, if the heartbeat has not seen them
        // yet.
        let mut with_users: Vec<&str> = Vec::new();
        let m = self.mirror.read();
        for u in m.users.values() {
            if !with_users.contains(&u.node.as_str()) {
                with_users.push(&u.node);
            }
        }
        seen.max(with_users.len() + 1)
    }

    /// How many users are on other nodes.
    pub fn remote_count(&self) -> u64 {
        self.mirror.read().users.len() as u64
    }

    /// The members of `room` (any case) on other nodes, as shown.
    pub fn room_members(&self, room: &str) -> Vec<String> {
        let m = self.mirror.read();
        m.rooms.get(&fold_name(room)).map_or(Vec::new(), |r| {
            r.members
                .iter()
                .filter_map(|u| m.users.get(u).map(|u| u.name.clone()))
                .collect()
        })
    }

    /// How many members `room` has on other nodes.
    pub fn remote_members(&self, room: &str) -> u64 {
        let m = self.mirror.read();
        m.rooms.get(&fold_name(room)).map_or(0, |r| {
            r.members
                .iter()
                .filter(|u| m.users.contains_key(*u))
                .count() as u64
        })
    }

    /// The rooms with members on other nodes: shown name, members there.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        self.mirror
            .read()
            .rooms
            .values()
            .map(|r| (r.name.clone(), r.members.len()))
            .collect()
    }

    /// The shown name of `room` on the other nodes, if it has members
    /// there (a room is shown as first created, cluster-wide as far as
    /// this node knows).
    pub fn room_name(&self, room: &str) -> Option<String> {
        self.mirror
            .read()
            .rooms
            .get(&fold_name(room))
            .map(|r| r.name.clone())
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

    /// Tells the other nodes a local user entered or left a room, and
    /// records its rooms in Redis (for nodes that rebuild their mirror).
    pub fn room_changed(&self, shared: &Shared, conn: &Conn, item: Item) {
        let Some(name) = conn.name() else {
            return;
        };
        self.publish(Target::All, item);
        let rooms: Vec<String> = conn
            .rooms
            .lock()
            .iter()
            .filter_map(|m| shared.rooms.get(&m.folded).map(|r| r.name.to_string()))
            .collect();
        self.submit(Job::Rooms(fold_name(name), rooms.join(" ")));
    }

    /// A local user left the chat: the other nodes are told, and its name
    /// is given back. While Redis is away both wait for it to come back.
    pub fn left(&self, name: &str, reason: LeftReason, text: Option<&[u8]>) {
        let item = Item::Left {
            name: name.to_string(),
            reason,
            node: self.name().to_string(),
            text: text.map(<[u8]>::to_vec),
        };
        // The name is given back before the others hear the `Left`, so
        // whoever sees `LEFT` can take the name at once, on any node.
        if let Err(full) = self.jobs.try_send(Job::Left(item)) {
            if let Job::Left(item) = full.into_inner() {
                self.publish_left(item);
            }
        }
    }

    /// Publishes a local user's `Left`, or keeps it for when Redis is back.
    fn publish_left(&self, item: Item) {
        if !self.publish(Target::All, item.clone()) {
            let mut pending = self.pending.lock();
            if pending.len() < MAX_PENDING {
                pending.push(item);
            }
        }
    }

    /// Hands a job to the cluster thread; false if it can't take it.
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.try_send(job).is_ok()
    }

    /// Claims a name cluster-wide for a thread that may wait (not a
    /// routing thread): the cluster thread does it and answers.
    pub fn claim(&self, folded: &str, shown: &str) -> Result<bool, LinkError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let job = Job::ClaimFor {
            folded: folded.to_string(),
            shown: shown.to_string(),
            reply,
        };
        if !self.submit(job) {
            return Err(LinkError::Full);
        }
        answer.recv_timeout(CONNECTING * 2).unwrap_or_else(|_| {
            // Too late for the caller: if the claim goes through after
            // all, it is given back.
            self.release(folded);
            Err(LinkError::Down)
        })
    }

    /// Gives a claimed name back (a claim whose name could not be taken
    /// here after all), unless a local user has it.
    pub fn release(&self, folded: &str) {
        self.submit(Job::Release(folded.to_string()));
    }

    /// Leaves the cluster cleanly at shutdown: the other nodes hear that
    /// each of `names` quit, and the names are free at once.
    pub fn leave(&self, names: &[String]) {
        let Some(link) = self.link.get() else {
            return;
        };
        for name in names {
            let _ = link.release(&fold_name(name));
            let _ = link.try_publish(
                Target::All,
                Item::Left {
                    name: name.clone(),
                    reason: LeftReason::Quit,
                    node: link.node().to_string(),
                    text: None,
                },
            );
        }
        // Let the publisher send them before the process goes (bounded).
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let s = link.stats();
            if s.published + s.lost >= s.queued {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// How long a claim waits for a link that is (re)connecting before it is
/// refused as UNAVAILABLE.
const CONNECTING: Duration = Duration::from_secs(2);

/// The connection id that stands for a sender on another node in its
/// readers' receipt rings: a hash of its folded name with the top bit set
/// (local connection ids count up from 1 and never get there).
pub(crate) fn remote_sender_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | (1 << 63)
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
        mirror: RwLock::new(Mirror::default()),
        pending: Mutex::new(Vec::new()),
        jobs,
        absent_for: settings.node_timeout,
    });
    let events = Arc::new(Router {
        shared,
        node: Arc::downgrade(&node),
        was_down: AtomicBool::new(false),
    });
    let link = Link::start(settings, events)?;
    let _ = node.link.set(link);
    Ok((node, inbox))
}

/// Ends the link cleanly (the owner has published its users' `Left`s):
/// what is queued is published, the heartbeat key goes.
pub(crate) fn stop(node: &Node) {
    // The link is shut down where it is owned; a node shared elsewhere
    // (a worker still holding it) only lets its threads go when dropped.
    if let Some(link) = node.link.get() {
        link.close();
    }
}

/// The link's events, routed into the core.
struct Router {
    shared: Weak<Shared>,
    node: Weak<Node>,
    /// The link has been down since it was first up.
    was_down: AtomicBool,
}

impl Events for Router {
    fn batch(&self, from: &str, items: Vec<Item>) {
        let (Some(shared), Some(node)) = (self.shared.upgrade(), self.node.upgrade()) else {
            return;
        };
        let mut out = Outbox::new(shared.writers.len(), None);
        for item in items {
            route(&shared, &node, &mut out, from, item);
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
        let left: Vec<Remote> = {
            let mut m = node.mirror.write();
            let names: Vec<String> = m
                .users
                .iter()
                .filter(|(_, r)| r.node == gone)
                .map(|(k, _)| k.clone())
                .collect();
            names.iter().filter_map(|k| m.remove(k)).collect()
        };
        log_info!("cluster: node {gone} is gone ({} users)", left.len());
        let mut out = Outbox::new(shared.writers.len(), None);
        for user in &left {
            announce_left(&shared, &mut out, user, LeftReason::Timeout, None);
        }
        core::flush(&shared, &mut out);
    }
}

/// Tells this node's users that `user` (of another node) left the chat:
/// everyone in `#all`, and IRC users outside it who shared a room with it.
fn announce_left(
    shared: &Shared,
    out: &mut Outbox,
    user: &Remote,
    reason: LeftReason,
    text: Option<&[u8]>,
) {
    let mut mates: Vec<u64> = user
        .rooms
        .iter()
        .filter_map(|r| shared.rooms.get(r))
        .flat_map(|r| r.members().iter().map(|c| c.id).collect::<Vec<_>>())
        .collect();
    mates.sort_unstable();
    mates.dedup();
    let note = Note::Left {
        name: &user.name,
        reason,
        text,
    };
    let mut fan = Fan::new(note, &shared.config.server_name).also(&mates);
    core::broadcast(shared, out, 0, &mut fan);
}

/// Tells this node's members of `room` that `name` (of another node)
/// entered it (`parted` None) or left it (`Some(text)`).
fn to_room(
    shared: &Shared,
    out: &mut Outbox,
    room: &str,
    name: &str,
    parted: Option<Option<&[u8]>>,
) {
    if let Some(r) = shared.rooms.get(room) {
        let note = match parted {
            None => Note::Joined {
                name,
                room: Some(&r.name),
            },
            Some(text) => Note::Parted {
                name,
                room: &r.name,
                text,
            },
        };
        let mut fan = Fan::new(note, &shared.config.server_name);
        core::fan_out(&r.members(), 0, out, &mut fan);
    }
}

/// One item from node `from`, to this node's users.
fn route(shared: &Shared, node: &Node, out: &mut Outbox, from: &str, item: Item) {
    let server = &shared.config.server_name;
    match item {
        Item::Msg(m) => deliver(shared, out, &m),
        Item::Joined {
            name,
            node: at,
            room: None,
        } => {
            // Told again (a node rejoining after Redis came back): once.
            if node.mirror.write().add(&name, &at) {
                let note = Note::Joined {
                    name: &name,
                    room: None,
                };
                core::broadcast(shared, out, 0, &mut Fan::new(note, server));
            }
        }
        Item::Joined {
            name,
            node: at,
            room: Some(room),
        } => {
            let news = {
                let mut m = node.mirror.write();
                if m.add(&name, &at) {
                    // Its JOINED was lost (or is behind this one): the
                    // check will announce it; the room can't wait.
                }
                m.join(&fold_name(&name), &room)
            };
            if news {
                to_room(shared, out, &room, &name, None);
            }
        }
        Item::Parted { name, room, text } => {
            if node.mirror.write().part(&fold_name(&name), &room) {
                to_room(shared, out, &room, &name, Some(text.as_deref()));
            }
        }
        Item::Left {
            name, reason, text, ..
        } => {
            let folded = fold_name(&name);
            let user = {
                let mut m = node.mirror.write();
                m.gone.insert(folded.clone(), Instant::now());
                m.remove(&folded)
            };
            if let Some(user) = user {
                announce_left(shared, out, &user, reason, text.as_deref());
            }
        }
        Item::Rcpt { id, by, to } => {
            // From the reader's node, which checked the receipt.
            if let Some(c) = shared.registry.get(&to) {
                if c.door != Door::Irc {
                    out.push(&c, &reply_frame(&c, &Event::Rcpt { id, by: &by }));
                }
            }
            let _ = from;
        }
        Item::Account { folded, exists } => {
            if let Some(accounts) = shared.accounts.as_ref() {
                accounts.heard(&folded, exists);
            }
        }
    }
}

/// A message from another node to this node's users. Each reader
/// remembers it for its `RECV` (the sender's ring is on its node).
fn deliver(shared: &Shared, out: &mut Outbox, m: &Msg) {
    let note = Note::Msg {
        id: m.id,
        from: &m.from,
        from_conn: remote_sender_id(&m.from),
        kind: m.kind.as_kind(),
        ts: m.ts,
        body: &m.body,
        notice: m.notice,
    };
    let mut fan = Fan::new(note, &shared.config.server_name).receipted();
    match &m.kind {
        MsgKind::All => {
            core::broadcast(shared, out, 0, &mut fan);
        }
        MsgKind::Direct | MsgKind::Multi => {
            let mut absent = Vec::new();
            for name in &m.to {
                match shared.registry.get(name) {
                    Some(c) => {
                        fan.push(out, &c);
                    }
                    None => absent.push(name.clone()),
                }
            }
            // Gone a moment ago (or not quite here yet): an account keeps
            // it in its mailbox, as if the sender had known.
            super::accounts::keep_for_absent(shared, m, absent);
        }
        MsgKind::Room(room) => {
            if let Some(r) = shared.rooms.get(room) {
                core::fan_out(&r.members(), 0, out, &mut fan);
            }
            // Kept for whoever joins here later (Redis has it too: the
            // sender's node put it in the room's history list).
            if shared.config.room_history > 0 {
                let stored = core::stored_room_message(room, m.id, &m.from, m.ts, &m.body);
                core::remember_room_message(shared, stored, false);
            }
        }
    }
}

/// Reads every room's history from Redis into this node's (merged: what
/// this node had stays, nothing comes twice). False if Redis could not
/// be read.
fn read_histories(shared: &Shared, link: &Link) -> bool {
    if shared.config.room_history == 0 {
        return true;
    }
    match link.histories() {
        Ok(rooms) => {
            for (folded, items) in rooms {
                let lines = items
                    .into_iter()
                    .filter_map(|i| match i {
                        Item::Msg(m) => match &m.kind {
                            MsgKind::Room(room) => Some(core::stored_room_message(
                                room, m.id, &m.from, m.ts, &m.body,
                            )),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect();
                core::merge_history(shared, &folded, lines);
            }
            true
        }
        Err(e) => {
            log_warn!("cluster: cannot read the rooms' history: {e}");
            false
        }
    }
}

/// How often the mirror of remote users is checked against Redis.
const RESYNC: Duration = Duration::from_secs(2);

/// The cluster thread: name claims and releases, rooms in Redis, and the
/// mirror of who is where.
pub(crate) fn run(shared: Arc<Shared>, node: Arc<Node>, inbox: Receiver<Job>) {
    let mut next_resync = Instant::now() + RESYNC;
    let mut slot: Option<u64> = None;
    let mut histories_read = false;
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
                if Instant::now() >= next_resync {
                    next_resync = Instant::now() + RESYNC;
                    if let Some(link) = node.link.get().filter(|l| l.is_up()) {
                        // A read of the rooms' history that failed is tried
                        // again here.
                        if !histories_read {
                            histories_read = read_histories(&shared, link);
                        }
                        resync(&shared, &node, link);
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
        if matches!(
            job,
            Job::Claim { .. } | Job::ClaimOnly { .. } | Job::ClaimFor { .. }
        ) {
            let until = Instant::now() + CONNECTING;
            while !link.is_up() && Instant::now() < until && !shared.stopping() {
                std::thread::sleep(Duration::from_millis(10));
            }
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
            Job::Rejoin | Job::Resync => {
                // This node's own slot in message ids when it first
                // connects, and again after Redis was away (it may have
                // lost them all: the node asks for the one it had).
                if slot.is_none() || matches!(job, Job::Rejoin) {
                    match link.slot(slot, crate::ID_SLOTS) {
                        Ok(s) => {
                            shared.set_id_slot(s);
                            slot = Some(s);
                        }
                        Err(e) => log_warn!("cluster: cannot get this node's id slot: {e}"),
                    }
                }
                if matches!(job, Job::Rejoin) {
                    rejoin(&shared, &node, link);
                    // Room messages published while this node was away.
                    histories_read = false;
                }
                if !histories_read {
                    histories_read = read_histories(&shared, link);
                }
                resync(&shared, &node, link);
            }
            Job::ClaimOnly {
                conn,
                folded,
                shown,
                held,
            } => {
                let state = match link.claim(&folded, &shown) {
                    Ok(true) => core::hold::DONE,
                    Ok(false) => core::hold::FAILED,
                    Err(_) => core::hold::UNAVAILABLE,
                };
                held.store(state, Ordering::Release);
                if let Some(w) = shared.workers.get(conn.worker) {
                    w.releaser().release();
                }
            }
            Job::ClaimFor {
                folded,
                shown,
                reply,
            } => {
                let _ = reply.send(link.claim(&folded, &shown));
            }
            Job::Release(name) => {
                // Taken again here meanwhile (a quick reconnect): keep it.
                if shared.registry.contains(&name) {
                    continue;
                }
                if let Err(e) = link.release(&name) {
                    // Rejoining frees it: whatever names Redis has for
                    // this node that nobody here has.
                    log_debug!("cluster: cannot free the name {name} now: {e}");
                }
            }
            Job::Left(item) => {
                if let Item::Left { name, .. } = &item {
                    let folded = fold_name(name);
                    if !shared.registry.contains(&folded) {
                        if let Err(e) = link.release(&folded) {
                            log_debug!("cluster: cannot free the name {folded} now: {e}");
                        }
                    }
                }
                node.publish_left(item);
            }
            Job::Rooms(user, rooms) => {
                if shared.registry.contains(&user) {
                    // Rejoining records every user's rooms again.
                    let _ = link.set_rooms(&user, &rooms);
                }
            }
        }
    }
}

/// Comes back after Redis was away: publishes the `Left`s that waited,
/// frees the names Redis still has for users who left meanwhile, claims
/// every local user's name again and tells the other nodes who is here
/// and in which rooms (whatever was published meanwhile is gone, and
/// Redis may have lost everything). A name another node took in the
/// meantime: that local user is told `NAME_TAKEN` and closed.
fn rejoin(shared: &Shared, node: &Node, link: &Link) {
    let pending = std::mem::take(&mut *node.pending.lock());
    for item in pending {
        let _ = link.try_publish(Target::All, item);
    }
    match link.users_of(link.node()) {
        Ok(users) => {
            for (folded, _, _) in users {
                if !shared.registry.contains(&folded) {
                    if let Err(e) = link.release(&folded) {
                        log_warn!("cluster: cannot free the name {folded}: {e}");
                    }
                }
            }
        }
        Err(e) => log_warn!("cluster: cannot read this node's names: {e}"),
    }
    let mut out = Outbox::new(shared.writers.len(), None);
    for name in shared.registry.names_sorted() {
        match link.claim(&fold_name(&name), &name) {
            Ok(true) => {
                node.joined(&name);
                if let Some(conn) = shared.registry.get(&name) {
                    let rooms: Vec<String> = conn
                        .rooms
                        .lock()
                        .iter()
                        .filter_map(|m| shared.rooms.get(&m.folded).map(|r| r.name.to_string()))
                        .collect();
                    let _ = link.set_rooms(&fold_name(&name), &rooms.join(" "));
                    for room in rooms {
                        node.publish(
                            Target::All,
                            Item::Joined {
                                name: name.clone(),
                                node: link.node().to_string(),
                                room: Some(room),
                            },
                        );
                    }
                }
            }
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

/// Checks the mirror of remote users against Redis and tells this node's
/// users what it missed: a user it did not know is announced `JOINED`; a
/// user Redis no longer has is announced `LEFT … timeout` (its node is
/// gone, or its `Left` was lost while Redis was away) once it has been
/// missing for the node timeout (a `LEFT` may be on its way, or Redis may
/// have restarted empty and its node not be back yet). Rooms are set
/// silently.
fn resync(shared: &Shared, node: &Node, link: &Link) {
    let me = link.node().to_string();
    let Ok(nodes) = link.nodes_now() else {
        return;
    };
    let mut fresh: HashMap<String, (String, String, Vec<String>)> = HashMap::new();
    for other in nodes.iter().filter(|n| **n != me) {
        let Ok(users) = link.users_of(other) else {
            return;
        };
        for (folded, shown, rooms) in users {
            let rooms = rooms.split_whitespace().map(str::to_string).collect();
            fresh.insert(folded, (shown, other.clone(), rooms));
        }
    }
    let mut joined = Vec::new();
    let mut left = Vec::new();
    {
        let mut m = node.mirror.write();
        let now = Instant::now();
        m.gone.retain(|_, at| now.duration_since(*at) < GONE_FOR);
        for (folded, (shown, at, rooms)) in &fresh {
            if m.gone.contains_key(folded) {
                continue;
            }
            if m.add(shown, at) {
                joined.push(shown.clone());
            }
            m.set_rooms(folded, rooms);
        }
        let absent: Vec<String> = m
            .users
            .keys()
            .filter(|k| !fresh.contains_key(*k))
            .cloned()
            .collect();
        let mut still = HashMap::new();
        for folded in absent {
            let since = m.missing.get(&folded).copied().unwrap_or(now);
            if now.duration_since(since) >= node.absent_for {
                if let Some(u) = m.remove(&folded) {
                    left.push(u);
                }
            } else {
                still.insert(folded, since);
            }
        }
        m.missing = still;
    }
    if joined.is_empty() && left.is_empty() {
        return;
    }
    let mut out = Outbox::new(shared.writers.len(), None);
    let server = &shared.config.server_name;
    for name in &joined {
        let note = Note::Joined { name, room: None };
        core::broadcast(shared, &mut out, 0, &mut Fan::new(note, server));
    }
    for user in &left {
        announce_left(shared, &mut out, user, LeftReason::Timeout, None);
    }
    core::flush(shared, &mut out);
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
        Err(_) => return error(out, ErrorCode::Unavailable, UNREACHABLE),
    }
    let taken = core::take_name(shared, out, conn, name, |out| {
        out.push(conn, &reply_frame(conn, &Event::NameOk { name }));
    });
    match taken {
        Ok(()) => node.joined(name),
        Err(e) => {
            // (Unless a user here has it: then the claim was theirs.)
            node.release(&folded);
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

/// The text of `ERR UNAVAILABLE` for work that needs the other nodes.
pub(crate) const UNREACHABLE: &str = "the cluster is unreachable; try again";
