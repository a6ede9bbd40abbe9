//! What the client remembers while it runs, and how each broker event
//! changes it: who is online (for tab completion), the rooms we are in and
//! the one we are talking in, which of our requests still wait for their
//! answer, and which of our messages were read by whom.
//!
//! No sockets and no terminal here: [`Session::on_event`] takes an event and
//! the time and answers with the lines to show and what to do next, so it is
//! unit-tested frame by frame.
//!
//! **Where plain text goes.** The current target is the room we joined or
//! switched to last, or everyone. It changes only on the broker's word
//! (`OK JOIN`, `OK PART`, and the `ALREADY_IN_ROOM`/`NOT_IN_ROOM` errors
//! that show we were wrong about a room) or a local `/switch`. Leaving the
//! room we are talking in goes back to where we talked before it: the
//! previous target if it was everyone or a room we are still in, else
//! everyone.
//!
//! **Across a reconnect** (see [`crate::link`]) the session stays: the
//! rooms we are in and the target are what we want back, so the link joins
//! each room again ([`Asked::Rejoin`], whose answer doesn't move the
//! target), and a room that can't be joined again is forgotten as after a
//! part. Requests that were waiting for an answer when the connection
//! dropped never get one ([`Session::connection_lost`]).
//!
//! **Messages from before we came.** A message whose time is older than
//! the moment we signed in (for a room: asked to join it) was sent while
//! we were away: stored for us and delivered at login, or a room's history
//! replayed on `JOIN`. It is shown with its own time and marked
//! ([`render::Late`]). The moment is our clock just before the request
//! left, and the broker stamps a message when it takes it, so on one
//! machine (or clocks within the network delay of each other) nothing
//! sent after we were in is ever marked. An old message we have shown
//! already (a room's history replayed again after a reconnect) is not
//! shown twice.
//!
//! **For scripts** the session also keeps the worst thing that happened
//! ([`Session::result`]: a refused request, a message that reached nobody
//! or only some of its recipients) and, with `--wait-receipts`, which
//! messages still wait for receipts.

use crate::command::To;
use crate::password::Secret;
use crate::render::{self, Late, Style};
use protocol::{ErrorCode, Event, Kind};
use std::collections::{HashMap, HashSet, VecDeque};

/// How many of our own sent messages we remember for their receipts.
const REMEMBER_SENT: usize = 4096;
/// How many earlier targets we remember for going back after a part.
const REMEMBER_TARGETS: usize = 64;
/// How many shown messages we remember, so that history replayed again
/// is not shown twice: a room keeps 100 by default, 50 rooms at most.
const REMEMBER_SHOWN: usize = 8192;

/// A request of ours that the broker answers (with `ERR` or its own reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// `SEND`: answered by `ACK`.
    Send {
        /// The recipients as typed.
        to: To,
        /// The text, for the echo and for "not sent" lines.
        text: String,
    },
    /// `LIST`: answered by `USERS`.
    List,
    /// `LIST #room`: answered by `USERS <n> #room`.
    Names(String),
    /// `JOIN #room`: answered by `OK JOIN`.
    Join(String),
    /// `PART #room`: answered by `OK PART`.
    Part(String),
    /// `ROOMS`: answered by `ROOMS`.
    Rooms,
    /// `JOIN #room` after a reconnect, for a room we were in: answered by
    /// `OK JOIN`, which doesn't move the target.
    Rejoin(String),
    /// `REGISTER <password>`: answered by `OK REGISTER`; the password is
    /// kept then, for signing in again.
    Register(Secret),
}

impl Asked {
    /// Whether this request named `room` (any case; `None`: any room).
    fn about_room(&self, room: Option<&str>) -> bool {
        let named = match self {
            Asked::Send {
                to: To::Room(r), ..
            }
            | Asked::Names(r)
            | Asked::Join(r)
            | Asked::Rejoin(r)
            | Asked::Part(r) => r,
            _ => return false,
        };
        room.is_none_or(|room| named.eq_ignore_ascii_case(room))
    }
}

/// A request that has no answer yet. The broker answers a connection's
/// frames in order, so the oldest one of a kind is the next of that kind
/// answered, and an `ERR` answers the oldest request it can be about.
#[derive(Debug)]
struct Pending {
    seq: u64,
    asked: Asked,
}

/// A message of ours the broker accepted.
#[derive(Debug)]
struct Sent {
    snippet: String,
    queued: u64,
    read: usize,
    /// Not to everyone: its recipients send receipts.
    receipted: bool,
}

/// Exit codes of a script (docs/client.md, "Scripted use"). When several
/// apply, the lowest wins: it is the more basic failure.
pub mod code {
    /// Everything asked for was done.
    pub const OK: i32 = 0;
    /// The broker could not be reached, the connection ended before the
    /// script did, or the name was refused.
    pub const CONNECTION: i32 = 1;
    /// A bad flag, or a line of the script the client could not carry out
    /// (not a command, missing text, a bad name); nothing was sent for it.
    pub const USAGE: i32 = 2;
    /// The broker refused a request, or a message reached nobody.
    pub const NOT_DELIVERED: i32 = 3;
    /// A message reached some of the names it was for, not all.
    pub const PARTLY: i32 = 4;
    /// `--wait-receipts`: not every recipient showed a message in time.
    pub const NO_RECEIPT: i32 = 5;
    /// Signing in needs a password the client doesn't have: the broker
    /// refused the one given (`BAD_PASSWORD`), or the name is an account
    /// and none was given (`NAME_OWNED`). Ends a script at once.
    pub const PASSWORD: i32 = 6;
}

/// Whether we can talk to the broker now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Signed in: requests can be written.
    Online,
    /// The connection is gone; the next attempt is at `next_ms` (Unix ms).
    Reconnecting {
        /// When the link tries next.
        next_ms: u64,
    },
    /// Reconnected, but the broker won't take us back as before: someone
    /// else has our name now (or made it an account), or it refused our
    /// password. Waiting for the user to pick another name (`/name`).
    NameTaken,
}

/// The conversation ended from the broker's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `BYE`: the answer to our `QUIT`.
    Bye,
    /// `SHUTDOWN`: the broker is stopping.
    Shutdown,
}

/// What to do about one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaction {
    /// Lines to show, in order.
    pub lines: Vec<String>,
    /// Send `RECV <id> <from>` once the lines are shown.
    pub receipt: Option<(u64, String)>,
    /// The broker ended the conversation.
    pub end: Option<End>,
}

/// The client's memory of the conversation.
#[derive(Debug)]
pub struct Session {
    /// Our name, as the broker registered it.
    me: String,
    status: Status,
    names: Vec<String>,
    pending: VecDeque<Pending>,
    next_seq: u64,
    sent: HashMap<u64, Sent>,
    sent_order: VecDeque<u64>,
    /// Rooms we are in, as the broker shows them, in the order we joined.
    joined: Vec<String>,
    /// The room plain text goes to; `None`: everyone.
    current: Option<String>,
    /// Earlier targets, the latest last (see the module docs).
    trail: Vec<Option<String>>,
    /// The rooms of the last `ROOMS` answer.
    listed: Vec<String>,
    quitting: bool,
    /// The lowest non-zero [`code`] that applies so far.
    result: i32,
    /// Keep every message until its receipts are in (`--wait-receipts`),
    /// rather than the last [`REMEMBER_SENT`].
    keep_until_read: bool,
    /// The account's password, for signing in again.
    password: Option<Secret>,
    /// Our local time just before we asked to sign in (Unix ms).
    since_ms: u64,
    /// The same for each room (lower case) we asked to join.
    room_since: HashMap<String, u64>,
    /// The last messages shown, `(id, time)`, oldest first, and as a set.
    shown: VecDeque<(u64, u64)>,
    shown_set: HashSet<(u64, u64)>,
}

impl Session {
    /// A session for the registered name `me`.
    pub fn new(me: &str) -> Session {
        Session {
            me: me.to_string(),
            status: Status::Online,
            names: vec![me.to_string()],
            pending: VecDeque::new(),
            next_seq: 0,
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            joined: Vec::new(),
            current: None,
            trail: Vec::new(),
            listed: Vec::new(),
            quitting: false,
            result: code::OK,
            keep_until_read: false,
            password: None,
            since_ms: 0,
            room_since: HashMap::new(),
            shown: VecDeque::new(),
            shown_set: HashSet::new(),
        }
    }

    /// Signed in (again) as `name`, having asked at `since_ms`.
    pub fn signed_in(&mut self, name: &str, since_ms: u64) {
        self.set_me(name);
        self.since_ms = since_ms;
    }

    /// `/name`: sign in as `name` next time. Our password is for our
    /// name only: it is not sent for another.
    pub fn set_name(&mut self, name: &str) {
        if !name.eq_ignore_ascii_case(&self.me) {
            self.password = None;
        }
        self.set_me(name);
    }

    /// The account's password, if we have one.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Sign in with `password` from now on.
    pub fn set_password(&mut self, password: Option<Secret>) {
        self.password = password;
    }

    /// We are about to ask to join `room`: older messages of it are its
    /// history.
    pub fn joining(&mut self, room: &str, now_ms: u64) {
        self.room_since.insert(room.to_ascii_lowercase(), now_ms);
    }

    /// Whether a message is from before we came, and how; `None`: live.
    fn late(&self, kind: Kind<'_>, ts_ms: u64) -> Option<Late> {
        match kind {
            Kind::Room(room) => {
                let since = self
                    .room_since
                    .get(&room.to_ascii_lowercase())
                    .copied()
                    .unwrap_or(self.since_ms);
                (ts_ms < since).then_some(Late::History)
            }
            _ => (ts_ms < self.since_ms).then_some(Late::Stored),
        }
    }

    /// Remembers a shown message; false if it was shown before.
    fn first_showing(&mut self, id: u64, ts_ms: u64) -> bool {
        if !self.shown_set.insert((id, ts_ms)) {
            return false;
        }
        if self.shown.len() >= REMEMBER_SHOWN {
            if let Some(old) = self.shown.pop_front() {
                self.shown_set.remove(&old);
            }
        }
        self.shown.push_back((id, ts_ms));
        true
    }

    /// Our name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether we can talk to the broker now.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The link's state changed.
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
    }

    /// Sign in as `name` next time (the old one was taken).
    pub fn set_me(&mut self, name: &str) {
        self.names.retain(|n| !n.eq_ignore_ascii_case(&self.me));
        self.me = name.to_string();
        self.add_name(name);
    }

    /// Notes something that went wrong, for a script's exit code.
    pub fn fail(&mut self, code: i32) {
        if code != code::OK && (self.result == code::OK || code < self.result) {
            self.result = code;
        }
    }

    /// The exit code a script ends with, so far (see [`code`]).
    pub fn result(&self) -> i32 {
        self.result
    }

    /// Remember every message until all its receipts are in.
    pub fn keep_until_read(&mut self) {
        self.keep_until_read = true;
    }

    /// Whether every message of ours is answered and shown by everyone it
    /// reached (messages to everyone get no receipts, so only their `ACK`
    /// counts).
    pub fn all_read(&self) -> bool {
        !self
            .pending
            .iter()
            .any(|p| matches!(p.asked, Asked::Send { .. }))
            && self.unread().is_empty()
    }

    /// Our messages that not every recipient has shown yet: `(id, read,
    /// queued, snippet)`, oldest first.
    pub fn unread(&self) -> Vec<(u64, usize, u64, &str)> {
        self.sent_order
            .iter()
            .filter_map(|id| self.sent.get(id).map(|s| (*id, s)))
            .filter(|(_, s)| s.receipted && (s.read as u64) < s.queued)
            .map(|(id, s)| (id, s.read, s.queued, s.snippet.as_str()))
            .collect()
    }

    /// The connection dropped: no request still waiting will be answered.
    /// Returns the lines that say which of them may not have happened.
    pub fn connection_lost(&mut self, style: Style, now_ms: u64) -> Vec<String> {
        let mut lines = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let line = match p.asked {
                Asked::Send { text, .. } => {
                    self.fail(code::NOT_DELIVERED);
                    format!(
                        "\"{}\" may not have been sent: the connection was lost before the server answered",
                        render::snippet(&text)
                    )
                }
                Asked::Join(r) => format!("no answer to /join {r}: the connection was lost"),
                Asked::Register(_) => {
                    "no answer to /register: the connection was lost; try again once back"
                        .to_string()
                }
                Asked::Part(r) => format!("no answer to /part {r}: the connection was lost"),
                Asked::List | Asked::Names(_) | Asked::Rooms | Asked::Rejoin(_) => continue,
            };
            lines.push(render::error(style, now_ms, &line));
        }
        lines
    }

    /// Signed in again after a reconnect: records the `JOIN`s that take us
    /// back into our rooms (about to be written at `now_ms`) and returns
    /// them, to be written in this order before anything else.
    pub fn rejoin(&mut self, now_ms: u64) -> Vec<String> {
        let rooms = self.joined.clone();
        for room in &rooms {
            self.joining(room, now_ms);
            self.queue(Asked::Rejoin(room.clone()));
        }
        rooms
    }

    /// Everyone known to be online (us included), sorted case-insensitively.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The room plain text goes to, as the broker shows it; `None`: everyone.
    pub fn current_room(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// The rooms we are in, as the broker shows them, in the order joined.
    pub fn joined(&self) -> &[String] {
        &self.joined
    }

    /// Every room we know of (ours and the last `ROOMS` list), sorted
    /// case-insensitively, each once.
    pub fn known_rooms(&self) -> Vec<String> {
        let mut all: Vec<String> = self.joined.clone();
        for r in &self.listed {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(r)) {
                all.push(r.clone());
            }
        }
        all.sort_by_key(|r| r.to_ascii_lowercase());
        all
    }

    /// The room we are in that `room` names (any case), as shown.
    pub fn find_room(&self, room: &str) -> Option<&str> {
        self.joined
            .iter()
            .find(|r| r.eq_ignore_ascii_case(room))
            .map(String::as_str)
    }

    /// `/switch`: talk in `room` (one we are in) or, for `None`, to
    /// everyone. Returns the new target, or why it can't be.
    pub fn switch(&mut self, room: Option<&str>) -> Result<Option<String>, String> {
        let target = match room {
            None => None,
            Some(r) => match self.find_room(r) {
                Some(shown) => Some(shown.to_string()),
                None => return Err(format!("you are not in {r}; /join {r} first")),
            },
        };
        self.set_target(target.clone());
        Ok(target)
    }

    fn set_target(&mut self, target: Option<String>) {
        if self.current == target {
            return;
        }
        let old = std::mem::replace(&mut self.current, target);
        if self.trail.len() >= REMEMBER_TARGETS {
            self.trail.remove(0);
        }
        self.trail.push(old);
    }

    /// We are in the room shown as `shown` now: it becomes the target. A
    /// name that breaks the room rules (only a broken broker sends one) is
    /// not kept: we would write it back in `SEND` frames.
    fn enter(&mut self, shown: &str) {
        if protocol::validate_room(shown).is_err() {
            return;
        }
        self.joined.retain(|r| !r.eq_ignore_ascii_case(shown));
        self.joined.push(shown.to_string());
        self.set_target(Some(shown.to_string()));
    }

    /// We are in `ours` again after a reconnect, shown now as `shown`.
    fn rejoined(&mut self, ours: &str, shown: &str) {
        if protocol::validate_room(shown).is_err() {
            return;
        }
        for r in self.joined.iter_mut().chain(self.current.iter_mut()) {
            if r.eq_ignore_ascii_case(ours) {
                *r = shown.to_string();
            }
        }
    }

    /// We are not in `room` (any case). If we were talking there, goes back
    /// to where we talked before; returns the new target then.
    fn leave(&mut self, room: &str) -> Option<Option<String>> {
        self.joined.retain(|r| !r.eq_ignore_ascii_case(room));
        let here = self
            .current
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(room));
        if !here {
            return None;
        }
        let back = loop {
            match self.trail.pop() {
                None | Some(None) => break None,
                Some(Some(r)) => {
                    if let Some(shown) = self.find_room(&r) {
                        break Some(shown.to_string());
                    }
                }
            }
        };
        self.current = back.clone();
        Some(back)
    }

    /// Records a request about to be written, so its answer finds it; call
    /// before writing the frame (the answer may come back at once). Returns
    /// its number for [`Session::answered`] and [`Session::unqueue`].
    pub fn queue(&mut self, asked: Asked) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.pending.push_back(Pending { seq, asked });
        seq
    }

    /// Forgets a queued request (its frame could not be written).
    pub fn unqueue(&mut self, seq: u64) {
        self.pending.retain(|p| p.seq != seq);
    }

    /// Whether the broker has answered request `seq`.
    pub fn answered(&self, seq: u64) -> bool {
        !self.pending.iter().any(|p| p.seq == seq)
    }

    /// Takes the oldest waiting request that `fits`.
    fn take(&mut self, fits: impl Fn(&Asked) -> bool) -> Option<Asked> {
        let i = self.pending.iter().position(|p| fits(&p.asked))?;
        self.pending.remove(i).map(|p| p.asked)
    }

    /// Takes the request a room reply answers: the oldest of its `kind`
    /// about `room`, else (the broker's name for it differs from ours) the
    /// oldest of its kind.
    fn take_reply(&mut self, kind: fn(&Asked) -> bool, room: &str) -> Option<Asked> {
        self.take(|a| kind(a) && a.about_room(Some(room)))
            .or_else(|| self.take(kind))
    }

    /// We sent `QUIT`: the connection closing is now expected.
    pub fn set_quitting(&mut self) {
        self.quitting = true;
    }

    /// Whether we sent `QUIT`.
    pub fn quitting(&self) -> bool {
        self.quitting
    }

    fn add_name(&mut self, name: &str) {
        if !self.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            self.names.push(name.to_string());
            self.names.sort_by_key(|n| n.to_ascii_lowercase());
        }
    }

    fn remember(&mut self, id: u64, sent: Sent) {
        if self.sent_order.len() >= REMEMBER_SENT && !self.keep_until_read {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent_order.push_back(id);
        self.sent.insert(id, sent);
    }

    /// Applies one broker event; `now_ms` is the local time in Unix ms.
    pub fn on_event(&mut self, event: &Event<'_>, style: Style, now_ms: u64) -> Reaction {
        let mut r = Reaction::default();
        match *event {
            Event::Msg {
                id,
                from,
                kind,
                ts_ms,
                body,
            } => {
                let late = self.late(kind, ts_ms);
                // Replayed again (a room's history after a reconnect):
                // shown and receipted the first time already. A live
                // message is always shown: a broker without a store may
                // use an id again after a restart.
                if !self.first_showing(id, ts_ms) && late.is_some() {
                    return r;
                }
                let when = render::When {
                    ts_ms,
                    now_ms,
                    late,
                };
                r.lines.push(render::message(style, when, from, kind, body));
                if kind != Kind::All {
                    r.receipt = Some((id, from.to_string()));
                }
            }
            Event::RegisterOk { name } => {
                if let Some(Asked::Register(password)) =
                    self.take(|a| matches!(a, Asked::Register(_)))
                {
                    self.password = Some(password);
                }
                r.lines.push(render::registered(style, now_ms, name));
            }
            Event::Ack {
                id,
                queued,
                missing,
            } => match self.take(|a| matches!(a, Asked::Send { .. })) {
                Some(Asked::Send { to, text }) => {
                    r.lines.push(render::sent(
                        style,
                        now_ms,
                        &to,
                        &text,
                        (id, queued, missing),
                    ));
                    if queued == 0 {
                        self.fail(code::NOT_DELIVERED);
                    } else if missing.is_some_and(|m| !m.is_empty()) {
                        self.fail(code::PARTLY);
                    }
                    let snippet = render::snippet(&text);
                    self.remember(
                        id,
                        Sent {
                            snippet,
                            queued,
                            read: 0,
                            receipted: to != To::Everyone,
                        },
                    );
                }
                _ => r
                    .lines
                    .push(render::ack_only(style, now_ms, id, queued, missing)),
            },
            Event::Rcpt { id, by } => {
                let (count, quote) = match self.sent.get_mut(&id) {
                    Some(s) => {
                        s.read = s.read.saturating_add(1);
                        (Some((s.read, s.queued)), Some(s.snippet.as_str()))
                    }
                    None => (None, None),
                };
                r.lines
                    .push(render::receipt(style, now_ms, id, by, count, quote));
            }
            Event::Users {
                count,
                names,
                room: None,
            } => {
                self.take(|a| *a == Asked::List);
                self.names = names
                    .split(' ')
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect();
                self.names.sort_by_key(|n| n.to_ascii_lowercase());
                r.lines.push(render::users(style, now_ms, count, names));
            }
            Event::Joined { name, room: None } => {
                self.add_name(name);
                r.lines.push(render::joined(style, now_ms, name));
            }
            Event::Left { name, reason } => {
                self.names.retain(|n| !n.eq_ignore_ascii_case(name));
                r.lines.push(render::left(style, now_ms, name, reason));
            }
            Event::Err { code, args, text } => {
                r.lines.push(self.on_error(code, args, text, style, now_ms));
            }
            Event::Info { text } => r.lines.push(render::info(style, now_ms, text)),
            Event::Shutdown { text } => {
                r.lines.push(render::shutdown(style, now_ms, text));
                r.end = Some(End::Shutdown);
            }
            Event::Bye => r.end = Some(End::Bye),
            Event::Users {
                count,
                names,
                room: Some(room),
            } => {
                self.take_reply(|a| matches!(a, Asked::Names(_)), room);
                r.lines
                    .push(render::room_users(style, now_ms, room, count, names));
            }
            Event::Joined {
                name,
                room: Some(room),
            } => {
                self.add_name(name);
                r.lines.push(render::room_joined(style, now_ms, name, room));
            }
            Event::Parted { name, room } => {
                r.lines.push(render::room_parted(style, now_ms, name, room));
            }
            Event::JoinOk { room, members } => {
                let joins = |a: &Asked| matches!(a, Asked::Join(_) | Asked::Rejoin(_));
                if let Some(Asked::Rejoin(ours)) = self.take_reply(joins, room) {
                    // Back where we were: the target stays.
                    self.rejoined(&ours, room);
                    r.lines.push(render::rejoined(style, now_ms, room, members));
                } else {
                    self.enter(room);
                    r.lines
                        .push(render::you_joined(style, now_ms, room, members));
                }
            }
            Event::PartOk { room } => {
                self.take_reply(|a| matches!(a, Asked::Part(_)), room);
                let now = self.leave(room);
                let now = now.as_ref().map(|t| t.as_deref());
                r.lines.push(render::you_left(style, now_ms, room, now));
            }
            Event::Rooms { count, rooms } => {
                self.take(|a| *a == Asked::Rooms);
                // For tab completion, which types them into the line.
                self.listed = rooms
                    .split(' ')
                    .filter(|r| protocol::validate_room(r).is_ok())
                    .map(String::from)
                    .collect();
                r.lines.push(render::rooms(style, now_ms, count, rooms));
            }
            // Not expected once registered (`HELLO`, `OK NAME`), answers
            // to requests this client doesn't make (`PONG`, and the
            // account frames being added to the protocol): nothing to
            // show. A wildcard, so a new broker frame never stops the
            // client from building; one it should show gets its own arm.
            _ => {}
        }
        r
    }

    fn on_error(
        &mut self,
        code: ErrorCode,
        args: Option<&str>,
        text: &str,
        style: Style,
        now_ms: u64,
    ) -> String {
        let answered = match code {
            ErrorCode::NoSuchUser | ErrorCode::TooManyTargets => {
                self.take(|a| matches!(a, Asked::Send { .. }))
            }
            ErrorCode::NotInRoom => {
                self.take(|a| !matches!(a, Asked::Join(_) | Asked::Rejoin(_)) && a.about_room(args))
            }
            ErrorCode::AlreadyInRoom | ErrorCode::TooManyRooms => {
                self.take(|a| matches!(a, Asked::Join(_) | Asked::Rejoin(_)) && a.about_room(args))
            }
            ErrorCode::AlreadyRegistered | ErrorCode::BadPassword | ErrorCode::NotRegistered => {
                self.take(|a| matches!(a, Asked::Register(_)))
            }
            // Errors any request can get: they answer the oldest one. (A
            // RATE_LIMITED could also answer a RECV, which waits for no
            // answer; we send those only for messages a person has read,
            // far below any sane rate.)
            ErrorCode::BadFrame
            | ErrorCode::RateLimited
            | ErrorCode::TooLong
            | ErrorCode::BadName
            | ErrorCode::Unavailable
            | ErrorCode::UnknownCommand => self.take(|_| true),
            _ => None,
        };
        let detail = match args {
            Some(a) => format!("{text} ({code} {a})"),
            None => format!("{text} ({code})"),
        };
        // The room the error is about, as we know it.
        let room = match &answered {
            Some(
                Asked::Send {
                    to: To::Room(r), ..
                }
                | Asked::Names(r)
                | Asked::Join(r)
                | Asked::Rejoin(r)
                | Asked::Part(r),
            ) => Some(r.clone()),
            _ => args.map(String::from),
        };
        let room = room.unwrap_or_else(|| "that room".to_string());
        let rejoin = matches!(answered, Some(Asked::Rejoin(_)));
        if code == ErrorCode::AlreadyInRoom && rejoin {
            return render::notice(
                style,
                now_ms,
                &format!("--> back in {}", render::escape(&room, style)),
            );
        }
        if code == ErrorCode::AlreadyInRoom {
            // We are in it after all: do what the /join was for.
            let shown = self.find_room(&room).unwrap_or(&room).to_string();
            self.enter(&shown);
            return render::notice(
                style,
                now_ms,
                &format!(
                    "you are already in {}; {}",
                    render::escape(&shown, style),
                    render::target(style, Some(&shown))
                ),
            );
        }
        if answered.is_some() {
            self.fail(code::NOT_DELIVERED);
        }
        let mut why = match code {
            ErrorCode::NoSuchUser => format!(
                "not online: {}",
                args.unwrap_or_default().replace(',', ", ")
            ),
            ErrorCode::NotInRoom => format!("you are not in {room}"),
            ErrorCode::TooManyRooms => {
                "you are in as many rooms as the server allows; /part one first".to_string()
            }
            ErrorCode::UnknownCommand
                if answered
                    .as_ref()
                    .is_some_and(|a| a.about_room(None) || *a == Asked::Rooms) =>
            {
                format!("this server has no rooms ({code})")
            }
            ErrorCode::UnknownCommand if matches!(answered, Some(Asked::Register(_))) => {
                format!("this server has no accounts ({code})")
            }
            _ => detail,
        };
        if code == ErrorCode::NotInRoom {
            if matches!(answered, Some(Asked::Send { .. })) {
                why.push_str(&format!(" (/join {room} first)"));
            }
            // The broker knows best: forget the room if we thought we were in.
            if let Some(now) = self.leave(&room) {
                why.push_str("; ");
                why.push_str(&render::target(Style::PLAIN, now.as_deref()));
            }
        }
        if rejoin {
            // Not in the room any more: as after a part.
            if let Some(now) = self.leave(&room) {
                why.push_str("; ");
                why.push_str(&render::target(Style::PLAIN, now.as_deref()));
            }
        }
        let line = match &answered {
            Some(Asked::Send { text, .. }) => {
                format!("not sent \"{}\": {why}", render::snippet(text))
            }
            Some(Asked::Join(r)) => format!("not joined {r}: {why}"),
            Some(Asked::Rejoin(r)) => format!("not back in {r}: {why}"),
            Some(Asked::Part(_)) if code == ErrorCode::NotInRoom => why,
            Some(Asked::Part(r)) => format!("not left {r}: {why}"),
            Some(Asked::Register(_)) => format!("not registered: {why}"),
            Some(Asked::Names(_)) if code == ErrorCode::NotInRoom => {
                format!("{why}; only its members can list it")
            }
            _ => why,
        };
        render::error(style, now_ms, &line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Kind, LeftReason};

    const S: Style = Style::PLAIN;

    fn body(line: &str) -> &str {
        line.get(9..).unwrap_or_default()
    }

    fn lines(r: &Reaction) -> Vec<&str> {
        r.lines.iter().map(|l| body(l)).collect()
    }

    fn bob() -> To {
        To::Names(vec!["bob".into()])
    }

    fn send(s: &mut Session, to: To, text: &str) -> u64 {
        s.queue(Asked::Send {
            to,
            text: text.to_string(),
        })
    }

    fn room(r: &str) -> To {
        To::Room(r.to_string())
    }

    fn err<'a>(code: ErrorCode, args: Option<&'a str>) -> Event<'a> {
        Event::Err {
            code,
            args,
            text: "from the broker",
        }
    }

    /// `/join room`, answered with `OK JOIN shown members`.
    fn join(s: &mut Session, room: &str, shown: &str, members: usize) -> Vec<String> {
        let seq = s.queue(Asked::Join(room.to_string()));
        let r = s.on_event(
            &Event::JoinOk {
                room: shown,
                members,
            },
            S,
            0,
        );
        assert!(s.answered(seq));
        lines(&r).into_iter().map(String::from).collect()
    }

    /// `/part room`, answered with `OK PART shown`.
    fn part(s: &mut Session, room: &str, shown: &str) -> Vec<String> {
        let seq = s.queue(Asked::Part(room.to_string()));
        let r = s.on_event(&Event::PartOk { room: shown }, S, 0);
        assert!(s.answered(seq));
        lines(&r).into_iter().map(String::from).collect()
    }

    #[test]
    fn joining_makes_the_room_current_and_parting_goes_back() {
        let mut s = Session::new("alice");
        assert_eq!(s.current_room(), None);
        assert_eq!(
            join(&mut s, "#rust", "#Rust", 1),
            ["--> you joined #Rust (just you); talking in #Rust"]
        );
        assert_eq!(s.current_room(), Some("#Rust"));
        join(&mut s, "#go", "#go", 3);
        assert_eq!(s.current_room(), Some("#go"));
        assert_eq!(s.joined(), ["#Rust", "#go"]);
        // Leaving a room we are not talking in keeps the target.
        assert_eq!(part(&mut s, "#rust", "#Rust"), ["<-- you left #Rust"]);
        assert_eq!(s.current_room(), Some("#go"));
        // Leaving the current room goes back to where we talked before it
        // (everyone here: #Rust is gone).
        assert_eq!(
            part(&mut s, "#go", "#go"),
            ["<-- you left #go; talking to everyone"]
        );
        assert_eq!(s.current_room(), None);
        assert!(s.joined().is_empty());
    }

    #[test]
    fn parting_the_current_room_returns_to_the_previous_target() {
        let mut s = Session::new("alice");
        join(&mut s, "#a", "#a", 1);
        join(&mut s, "#b", "#b", 1);
        assert_eq!(part(&mut s, "#b", "#b"), ["<-- you left #b; talking in #a"]);
        assert_eq!(s.current_room(), Some("#a"));
        // Everyone counts as a place we talked.
        join(&mut s, "#b", "#b", 1);
        assert_eq!(s.switch(None), Ok(None));
        assert_eq!(s.switch(Some("#B")), Ok(Some("#b".to_string())));
        assert_eq!(
            part(&mut s, "#b", "#b"),
            ["<-- you left #b; talking to everyone"]
        );
        assert_eq!(s.current_room(), None);
    }

    #[test]
    fn switching_needs_a_room_we_are_in() {
        let mut s = Session::new("alice");
        assert_eq!(
            s.switch(Some("#rust")),
            Err("you are not in #rust; /join #rust first".to_string())
        );
        assert_eq!(s.current_room(), None);
        join(&mut s, "#rust", "#Rust", 2);
        assert_eq!(s.switch(None), Ok(None));
        assert_eq!(s.current_room(), None);
        assert_eq!(s.switch(Some("#RUST")), Ok(Some("#Rust".to_string())));
        assert_eq!(s.current_room(), Some("#Rust"));
        assert_eq!(s.find_room("#rust"), Some("#Rust"));
    }

    #[test]
    fn room_messages_show_their_room_and_get_receipts() {
        let mut s = Session::new("alice");
        join(&mut s, "#rust", "#rust", 2);
        let ev = Event::Msg {
            id: 9,
            from: "bob",
            kind: Kind::Room("#rust"),
            ts_ms: 0,
            body: b"hi",
        };
        let r = s.on_event(&ev, S, 0);
        assert_eq!(lines(&r), ["[#rust] bob: hi"]);
        assert_eq!(r.receipt, Some((9, "bob".to_string())));
        send(&mut s, room("#rust"), "hello room");
        let r = s.on_event(
            &Event::Ack {
                id: 10,
                queued: 1,
                missing: None,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["[#rust] you: hello room (#10 sent to 1)"]);
    }

    #[test]
    fn room_notices() {
        let mut s = Session::new("alice");
        let r = s.on_event(
            &Event::Joined {
                name: "bob",
                room: Some("#rust"),
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["--> bob joined #rust"]);
        let r = s.on_event(
            &Event::Parted {
                name: "bob\u{1b}[2J",
                room: "#rust",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["<-- bob^[[2J left #rust"]);
        let seq = s.queue(Asked::Names("#rust".into()));
        let r = s.on_event(
            &Event::Users {
                count: 2,
                room: Some("#Rust"),
                names: "alice bob",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["#Rust (2): alice bob"]);
        assert!(s.answered(seq));
        // A room's list does not replace who is online.
        assert_eq!(s.names(), ["alice", "bob"]);
        let seq = s.queue(Asked::Rooms);
        let r = s.on_event(
            &Event::Rooms {
                count: 2,
                rooms: "#go #rust",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["rooms (2): #go #rust"]);
        assert!(s.answered(seq));
        join(&mut s, "#zig", "#zig", 1);
        assert_eq!(s.known_rooms(), ["#go", "#rust", "#zig"]);
        // Names we could not write back are shown, never kept.
        s.on_event(
            &Event::Rooms {
                count: 2,
                rooms: "#ok #b\u{1b}d",
            },
            S,
            0,
        );
        assert_eq!(s.known_rooms(), ["#ok", "#zig"]);
        join(&mut s, "#x", "#x\u{7}", 1);
        assert_eq!(s.current_room(), Some("#zig"));
    }

    #[test]
    fn room_errors_are_friendly_and_answer_the_right_request() {
        let mut s = Session::new("alice");
        // In flight, in order: a PART of a room we are not in, then a
        // message to it. Each ERR answers its own request.
        let p = s.queue(Asked::Part("#go".into()));
        let m = send(&mut s, room("#go"), "hi go");
        let r = s.on_event(&err(ErrorCode::NotInRoom, Some("#go")), S, 0);
        assert_eq!(lines(&r), ["! you are not in #go"]);
        assert!(s.answered(p) && !s.answered(m));
        let r = s.on_event(&err(ErrorCode::NotInRoom, Some("#go")), S, 0);
        assert_eq!(
            lines(&r),
            ["! not sent \"hi go\": you are not in #go (/join #go first)"]
        );
        assert!(s.answered(m));
        let n = s.queue(Asked::Names("#go".into()));
        let r = s.on_event(&err(ErrorCode::NotInRoom, Some("#go")), S, 0);
        assert_eq!(
            lines(&r),
            ["! you are not in #go; only its members can list it"]
        );
        assert!(s.answered(n));

        // ALREADY_IN_ROOM: we are in it, so talk there.
        let j = s.queue(Asked::Join("#rust".into()));
        let r = s.on_event(&err(ErrorCode::AlreadyInRoom, Some("#rust")), S, 0);
        assert_eq!(lines(&r), ["you are already in #rust; talking in #rust"]);
        assert!(s.answered(j));
        assert_eq!(s.current_room(), Some("#rust"));

        // TOO_MANY_ROOMS has no room in it; the JOIN it answers does.
        let j = s.queue(Asked::Join("#more".into()));
        let r = s.on_event(&err(ErrorCode::TooManyRooms, None), S, 0);
        assert_eq!(
            lines(&r),
            ["! not joined #more: you are in as many rooms as the server allows; /part one first"]
        );
        assert!(s.answered(j));
        assert_eq!(s.current_room(), Some("#rust"));

        // The broker says we are not in the room we talk in: believe it.
        let m = send(&mut s, room("#rust"), "still here?");
        let r = s.on_event(&err(ErrorCode::NotInRoom, Some("#rust")), S, 0);
        assert_eq!(
            lines(&r),
            ["! not sent \"still here?\": you are not in #rust (/join #rust first); talking to everyone"]
        );
        assert!(s.answered(m));
        assert_eq!(s.current_room(), None);
        assert!(s.joined().is_empty());
    }

    #[test]
    fn an_old_broker_without_rooms_is_recognised() {
        let mut s = Session::new("alice");
        let j = s.queue(Asked::Join("#rust".into()));
        let r = s.on_event(&err(ErrorCode::UnknownCommand, None), S, 0);
        assert_eq!(
            lines(&r),
            ["! not joined #rust: this server has no rooms (UNKNOWN_COMMAND)"]
        );
        assert!(s.answered(j));
        assert_eq!(s.current_room(), None);
    }

    #[test]
    fn generic_errors_answer_the_oldest_request_of_any_kind() {
        let mut s = Session::new("alice");
        let l = s.queue(Asked::List);
        let m = send(&mut s, bob(), "hi");
        let r = s.on_event(&err(ErrorCode::RateLimited, None), S, 0);
        assert_eq!(lines(&r), ["! from the broker (RATE_LIMITED)"]);
        assert!(s.answered(l) && !s.answered(m));
        s.unqueue(m);
        assert!(s.answered(m));
    }

    #[test]
    fn direct_and_group_messages_get_receipts_broadcasts_do_not() {
        let mut s = Session::new("alice");
        for (kind, receipt) in [
            (Kind::Direct, true),
            (Kind::Multi, true),
            (Kind::All, false),
        ] {
            let ev = Event::Msg {
                id: 7,
                from: "bob",
                kind,
                ts_ms: 0,
                body: b"hi",
            };
            let r = s.on_event(&ev, S, 0);
            assert_eq!(r.lines.len(), 1);
            assert_eq!(
                r.receipt,
                receipt.then(|| (7, "bob".to_string())),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn acks_match_sends_in_order_and_receipts_count_up() {
        let mut s = Session::new("alice");
        let two = To::Names(vec!["bob".into(), "carol".into(), "dan".into()]);
        send(&mut s, bob(), "first");
        send(&mut s, two, "second");
        let r = s.on_event(
            &Event::Ack {
                id: 1,
                queued: 1,
                missing: None,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["[private] you -> bob: first (#1 sent to 1)"]);
        let r = s.on_event(
            &Event::Ack {
                id: 2,
                queued: 2,
                missing: Some("dan"),
            },
            S,
            0,
        );
        assert_eq!(
            lines(&r),
            ["[group] you -> bob,carol,dan: second (#2 sent to 2; not online: dan)"]
        );
        let r = s.on_event(&Event::Rcpt { id: 2, by: "bob" }, S, 0);
        assert_eq!(lines(&r), ["[read] bob read #2 (1/2) \"second\""]);
        let r = s.on_event(&Event::Rcpt { id: 2, by: "carol" }, S, 0);
        assert_eq!(lines(&r), ["[read] carol read #2 (2/2) \"second\""]);
        let r = s.on_event(
            &Event::Rcpt {
                id: 99,
                by: "carol",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["[read] carol read #99"]);
    }

    #[test]
    fn a_refused_send_is_reported_with_its_text() {
        let mut s = Session::new("alice");
        send(&mut s, bob(), "hello");
        send(&mut s, bob(), "again");
        let r = s.on_event(
            &Event::Err {
                code: ErrorCode::NoSuchUser,
                args: Some("bob"),
                text: "no such user",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["! not sent \"hello\": not online: bob"]);
        // The next ACK belongs to the next send.
        let r = s.on_event(
            &Event::Ack {
                id: 5,
                queued: 1,
                missing: None,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["[private] you -> bob: again (#5 sent to 1)"]);
        // Errors that can't be about a send leave nothing waiting behind.
        let r = s.on_event(
            &Event::Err {
                code: ErrorCode::AlreadyNamed,
                args: None,
                text: "already named",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["! already named (ALREADY_NAMED)"]);
    }

    #[test]
    fn names_follow_list_joined_and_left() {
        let mut s = Session::new("alice");
        assert_eq!(s.names(), ["alice"]);
        let r = s.on_event(
            &Event::Users {
                count: 3,
                room: None,
                names: "alice Bob carol",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["online (3): alice Bob carol"]);
        assert_eq!(s.names(), ["alice", "Bob", "carol"]);
        s.on_event(
            &Event::Joined {
                name: "Abe",
                room: None,
            },
            S,
            0,
        );
        s.on_event(
            &Event::Joined {
                name: "abe",
                room: None,
            },
            S,
            0,
        );
        assert_eq!(s.names(), ["Abe", "alice", "Bob", "carol"]);
        let r = s.on_event(
            &Event::Left {
                name: "bob",
                reason: LeftReason::Timeout,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["<-- bob left (timed out)"]);
        assert_eq!(s.names(), ["Abe", "alice", "carol"]);
    }

    #[test]
    fn shutdown_and_bye_end_the_session() {
        let mut s = Session::new("alice");
        let r = s.on_event(
            &Event::Shutdown {
                text: "maintenance\u{1b}[2J",
            },
            S,
            0,
        );
        assert_eq!(r.end, Some(End::Shutdown));
        assert_eq!(
            lines(&r),
            ["*** the server is shutting down: maintenance^[[2J"]
        );
        // The broker's own text would say it twice.
        let r = s.on_event(
            &Event::Shutdown {
                text: "server is shutting down",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["*** the server is shutting down"]);
        assert_eq!(s.on_event(&Event::Bye, S, 0).end, Some(End::Bye));
    }

    #[test]
    fn remembers_a_bounded_number_of_sent_messages() {
        let mut s = Session::new("alice");
        for id in 0..(REMEMBER_SENT as u64 + 10) {
            send(&mut s, bob(), "x");
            s.on_event(
                &Event::Ack {
                    id,
                    queued: 1,
                    missing: None,
                },
                S,
                0,
            );
        }
        assert_eq!(s.sent.len(), REMEMBER_SENT);
        assert!(!s.sent.contains_key(&0));
    }

    #[test]
    fn a_reconnect_joins_the_rooms_again_and_keeps_the_target() {
        let mut s = Session::new("alice");
        join(&mut s, "#a", "#a", 1);
        join(&mut s, "#b", "#b", 2);
        s.switch(Some("#a")).unwrap();
        // A /join in flight is lost with the connection and says so.
        let j = s.queue(Asked::Join("#c".into()));
        let lost = s.connection_lost(S, 0);
        assert_eq!(
            lost.iter().map(|l| body(l)).collect::<Vec<_>>(),
            ["! no answer to /join #c: the connection was lost"]
        );
        assert!(s.answered(j));
        assert_eq!(s.rejoin(0), ["#a", "#b"]);
        // The broker shows #b in another case now; #a comes back as it was.
        let r = s.on_event(
            &Event::JoinOk {
                room: "#a",
                members: 1,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["--> back in #a (just you)"]);
        let r = s.on_event(
            &Event::JoinOk {
                room: "#B",
                members: 3,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["--> back in #B (3 members)"]);
        assert_eq!(s.current_room(), Some("#a"));
        assert_eq!(s.joined(), ["#a", "#B"]);
        assert_eq!(s.result(), code::OK);
    }

    #[test]
    fn a_room_that_cannot_be_joined_again_is_forgotten() {
        let mut s = Session::new("alice");
        join(&mut s, "#a", "#a", 1);
        join(&mut s, "#b", "#b", 1);
        s.connection_lost(S, 0);
        assert_eq!(s.rejoin(0), ["#a", "#b"]);
        let r = s.on_event(
            &Event::JoinOk {
                room: "#a",
                members: 1,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["--> back in #a (just you)"]);
        // We were talking in #b: back to #a, where we talked before.
        let r = s.on_event(&err(ErrorCode::TooManyRooms, None), S, 0);
        assert_eq!(
            lines(&r),
            ["! not back in #b: you are in as many rooms as the server allows; /part one first; talking in #a"]
        );
        assert_eq!(s.current_room(), Some("#a"));
        assert_eq!(s.joined(), ["#a"]);
    }

    #[test]
    fn a_send_lost_with_the_connection_may_not_have_gone() {
        let mut s = Session::new("alice");
        send(&mut s, bob(), "are you there");
        s.queue(Asked::List);
        let lost = s.connection_lost(S, 0);
        assert_eq!(
            lost.iter().map(|l| body(l)).collect::<Vec<_>>(),
            ["! \"are you there\" may not have been sent: the connection was lost before the server answered"]
        );
        assert_eq!(s.result(), code::NOT_DELIVERED);
        assert!(s.all_read());
    }

    #[test]
    fn a_script_result_is_the_lowest_code_that_applies() {
        let ack = |s: &mut Session, to: To, queued: u64, missing: Option<&str>| {
            send(s, to, "x");
            s.on_event(
                &Event::Ack {
                    id: 1,
                    queued,
                    missing,
                },
                S,
                0,
            );
        };
        let mut s = Session::new("alice");
        ack(&mut s, bob(), 1, None);
        ack(&mut s, To::Everyone, 3, None);
        assert_eq!(s.result(), code::OK);
        ack(
            &mut s,
            To::Names(vec!["bob".into(), "dan".into()]),
            1,
            Some("dan"),
        );
        assert_eq!(s.result(), code::PARTLY);
        // Alone in a room, or alone online: it reached nobody.
        ack(&mut s, room("#a"), 0, None);
        assert_eq!(s.result(), code::NOT_DELIVERED);
        ack(&mut s, bob(), 1, Some("x"));
        assert_eq!(s.result(), code::NOT_DELIVERED);
        s.fail(code::USAGE);
        s.fail(code::NO_RECEIPT);
        assert_eq!(s.result(), code::USAGE);

        // Any refusal of a request counts as not done.
        let mut s = Session::new("alice");
        s.queue(Asked::Rooms);
        s.on_event(&err(ErrorCode::RateLimited, None), S, 0);
        assert_eq!(s.result(), code::NOT_DELIVERED);
    }

    #[test]
    fn receipts_due_are_counted_until_everyone_has_read() {
        let mut s = Session::new("alice");
        s.keep_until_read();
        send(
            &mut s,
            To::Names(vec!["bob".into(), "carol".into()]),
            "both",
        );
        send(&mut s, To::Everyone, "all");
        assert!(!s.all_read(), "ACKs not in yet");
        for (id, queued) in [(7, 2), (8, 5)] {
            s.on_event(
                &Event::Ack {
                    id,
                    queued,
                    missing: None,
                },
                S,
                0,
            );
        }
        // Messages to everyone get no receipts: only #7 is waited for.
        assert_eq!(s.unread(), [(7, 0, 2, "both")]);
        s.on_event(&Event::Rcpt { id: 7, by: "bob" }, S, 0);
        assert_eq!(s.unread(), [(7, 1, 2, "both")]);
        assert!(!s.all_read());
        s.on_event(&Event::Rcpt { id: 7, by: "carol" }, S, 0);
        assert!(s.all_read());
        // Kept past the usual memory while waiting.
        for id in 100..(REMEMBER_SENT as u64 + 200) {
            send(&mut s, bob(), "x");
            s.on_event(
                &Event::Ack {
                    id,
                    queued: 1,
                    missing: None,
                },
                S,
                0,
            );
        }
        assert_eq!(s.unread().first().map(|u| u.0), Some(100));
    }

    fn msg<'a>(id: u64, kind: Kind<'a>, ts_ms: u64) -> Event<'a> {
        Event::Msg {
            id,
            from: "bob",
            kind,
            ts_ms,
            body: b"hi",
        }
    }

    #[test]
    fn messages_from_before_we_came_are_marked_and_receipted() {
        let mut s = Session::new("alice");
        s.signed_in("alice", 1_000);
        // Stored while we were away: marked, and receipted like any other.
        let r = s.on_event(&msg(1, Kind::Direct, 900), S, 1_500);
        assert_eq!(lines(&r), ["[private] bob (delivered late): hi"]);
        assert_eq!(r.receipt, Some((1, "bob".to_string())));
        let r = s.on_event(&msg(2, Kind::Multi, 999), S, 1_500);
        assert_eq!(lines(&r), ["[group] bob (delivered late): hi"]);
        // Sent once we had asked to sign in: live.
        let r = s.on_event(&msg(3, Kind::Direct, 1_000), S, 1_500);
        assert_eq!(lines(&r), ["[private] bob: hi"]);
        // A room's history is older than our asking to join it, which may
        // be long after signing in.
        s.joining("#Rust", 5_000);
        join(&mut s, "#rust", "#rust", 2);
        let r = s.on_event(&msg(4, Kind::Room("#rust"), 4_000), S, 5_100);
        assert_eq!(lines(&r), ["[#rust] bob (history): hi"]);
        assert_eq!(r.receipt, Some((4, "bob".to_string())));
        let r = s.on_event(&msg(5, Kind::Room("#rust"), 5_050), S, 5_100);
        assert_eq!(lines(&r), ["[#rust] bob: hi"]);
    }

    #[test]
    fn history_replayed_again_after_a_reconnect_is_not_shown_twice() {
        let mut s = Session::new("alice");
        s.signed_in("alice", 1_000);
        s.joining("#r", 1_000);
        join(&mut s, "#r", "#r", 2);
        assert_eq!(
            s.on_event(&msg(7, Kind::Room("#r"), 500), S, 0).lines.len(),
            1
        );
        assert_eq!(
            s.on_event(&msg(8, Kind::Room("#r"), 2_000), S, 0)
                .lines
                .len(),
            1
        );
        // Back after a restart: the JOIN replays both; neither shows again
        // nor is receipted again, and newer history does show.
        s.connection_lost(S, 0);
        s.signed_in("alice", 9_000);
        assert_eq!(s.rejoin(9_000), ["#r"]);
        for id in [7, 8] {
            let ts = if id == 7 { 500 } else { 2_000 };
            let r = s.on_event(&msg(id, Kind::Room("#r"), ts), S, 0);
            assert_eq!(r, Reaction::default(), "#{id}");
        }
        let r = s.on_event(&msg(9, Kind::Room("#r"), 8_000), S, 0);
        assert_eq!(lines(&r), ["[#r] bob (history): hi"]);
        // A broker without a store may use an id again after a restart:
        // a live message is always shown.
        let r = s.on_event(&msg(7, Kind::Room("#r"), 500), S, 0);
        assert!(r.lines.is_empty());
        let r = s.on_event(&msg(8, Kind::Direct, 2_000), S, 0);
        assert!(r.lines.is_empty(), "same id and time: the same message");
        let r = s.on_event(&msg(7, Kind::Direct, 9_500), S, 0);
        assert_eq!(lines(&r), ["[private] bob: hi"]);
    }

    #[test]
    fn register_keeps_the_password_once_the_broker_has_it() {
        let mut s = Session::new("alice");
        let pw = Secret::new("s3cret-pw").unwrap();
        let q = s.queue(Asked::Register(pw.clone()));
        let r = s.on_event(&err(ErrorCode::BadPassword, None), S, 0);
        assert_eq!(
            lines(&r),
            ["! not registered: from the broker (BAD_PASSWORD)"]
        );
        assert!(s.answered(q) && s.password().is_none());
        assert_eq!(s.result(), code::NOT_DELIVERED);

        let mut s = Session::new("alice");
        s.queue(Asked::Register(pw.clone()));
        let r = s.on_event(&Event::RegisterOk { name: "alice" }, S, 0);
        assert!(lines(&r)[0].starts_with("*** alice is registered: the name is yours now"));
        assert_eq!(s.password(), Some(&pw));
        assert_eq!(s.result(), code::OK);

        // An old broker, and one without a store.
        let mut s = Session::new("alice");
        s.queue(Asked::Register(pw.clone()));
        let r = s.on_event(&err(ErrorCode::UnknownCommand, None), S, 0);
        assert_eq!(
            lines(&r),
            ["! not registered: this server has no accounts (UNKNOWN_COMMAND)"]
        );
        s.queue(Asked::Register(pw));
        let r = s.on_event(&err(ErrorCode::Unavailable, None), S, 0);
        assert_eq!(
            lines(&r),
            ["! not registered: from the broker (UNAVAILABLE)"]
        );
        s.queue(Asked::Register(Secret::new("again-pw").unwrap()));
        let lost = s.connection_lost(S, 0);
        assert_eq!(
            lost.iter().map(|l| body(l)).collect::<Vec<_>>(),
            ["! no answer to /register: the connection was lost; try again once back"]
        );
    }

    #[test]
    fn a_new_name_replaces_ours() {
        let mut s = Session::new("alice");
        s.set_me("alice2");
        assert_eq!(s.me(), "alice2");
        assert_eq!(s.names(), ["alice2"]);
        // The password stays with its name.
        s.set_password(Some(Secret::new("alice-pw").unwrap()));
        s.set_name("ALICE2");
        assert!(s.password().is_some());
        s.set_name("alice3");
        assert!(s.password().is_none());
    }
}
