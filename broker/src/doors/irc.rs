//! The IRC door's adapter: IRC commands in, core calls, numerics out.
//!
//! The codec is `protocol::irc` (pure, fuzzed); this module keeps each IRC
//! connection's registration state and turns its commands into the same
//! core operations the native door uses (`core::take_name`,
//! `core::deliver`, `core::join_room`, …), so names, rooms, presence
//! and limits are shared. What comes back from the core is answered in IRC
//! terms: numerics for replies and errors, `ERROR` before a close. Messages
//! and presence from others reach IRC users through `route::Fan`, which
//! encodes them as `PRIVMSG`/`JOIN`/`PART`/`QUIT`. docs/irc.md has the
//! mapping.

use crate::accounts::Verified;
use crate::core::conn::{flag, Conn, Frame, IrcInfo};
use crate::core::outbound::Outbox;
use crate::core::rooms::RoomError;
use crate::core::route::{irc_error_line, irc_prefix, now_ms};
use crate::core::{self, Flow, NameError, SendError, Session};
use crate::metrics::CloseReason;
use crate::{log_debug, Shared};
use protocol::irc::{self as wire, IrcMessage};
use protocol::{validate_name, validate_room, ErrorCode, Targets};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Capabilities offered in `CAP LS`, with the flag each one sets.
const CAPS: [(&str, u8); 5] = [
    ("server-time", flag::SERVER_TIME),
    ("echo-message", flag::ECHO),
    ("message-tags", 0),
    ("multi-prefix", flag::MULTI_PREFIX),
    ("sasl", 0),
];

/// One IRC connection's state, owned by its worker.
#[derive(Debug)]
pub(crate) struct IrcSession {
    /// The nick asked for, until registered (then it is the connection's
    /// name).
    nick: Option<String>,
    /// `CAP LS`/`REQ` was seen and `CAP END` not yet: registration waits.
    cap_open: bool,
    /// Registered: the nick is the connection's name.
    registered: bool,
    /// Capabilities enabled: bit `i` for `CAPS[i]`.
    caps: u8,
    /// When the client last sent anything.
    pub last_heard: Instant,
    /// When the broker pinged it, if it hasn't answered since.
    pub pinged: Option<Instant>,
    /// Logging in, and a cluster's claim of the nick: boxed, made only
    /// when needed (most connections never log in, and every IRC
    /// connection carries this struct).
    login: Option<Box<Login>>,
}

// `caps` has a bit for each.
const _: () = assert!(CAPS.len() <= 8);

/// What an IRC connection logging in (or claiming its nick across a
/// cluster) keeps.
#[derive(Debug, Default)]
struct Login {
    /// `PASS` given before registering: an account's password.
    password: Option<String>,
    /// `AUTHENTICATE PLAIN` seen: the credentials come next.
    sasl_started: bool,
    /// A password check (or a claim) under way on another thread.
    pending: Option<Pending>,
    /// The account this connection has proved it owns.
    verified: Option<Verified>,
    /// The nick (folded) this connection has claimed cluster-wide.
    claimed: Option<String>,
}

/// A password check the accounts thread is doing for this connection
/// (which is held, not read, meanwhile: see `after_hold`).
#[derive(Debug)]
struct Pending {
    state: Arc<AtomicU8>,
    slot: Arc<parking_lot::Mutex<Option<Verified>>>,
    /// From SASL (answered 903/904) or from `PASS` (registration goes on,
    /// or 464).
    by_sasl: bool,
    /// A cluster-wide claim of the nick, not a password (registration goes
    /// on, or 433).
    claim: Option<String>,
}

impl IrcSession {
    /// A connection that has just come in.
    pub fn new(now: Instant) -> IrcSession {
        IrcSession {
            nick: None,
            cap_open: false,
            registered: false,
            caps: 0,
            last_heard: now,
            pinged: None,
            login: None,
        }
    }

    /// The login state, made at first use.
    fn login(&mut self) -> &mut Login {
        self.login.get_or_insert_with(Box::default)
    }

    /// True if capability `name` is enabled.
    fn has_cap(&self, name: &str) -> bool {
        let bit = CAPS.iter().position(|(n, _)| *n == name);
        bit.is_some_and(|i| self.caps & (1 << i) != 0)
    }

    /// True once registered.
    pub fn registered(&self) -> bool {
        self.registered
    }
}

/// What a handler needs of the connection, in one place.
struct Ctx<'a> {
    shared: &'a Shared,
    out: &'a mut Outbox,
    conn: &'a Arc<Conn>,
    session: &'a mut Session,
    irc: &'a mut IrcSession,
}

impl Ctx<'_> {
    fn server(&self) -> &str {
        &self.shared.config.server_name
    }

    /// The nick numerics address: the registered one, or `*`.
    fn me(&self) -> String {
        self.conn.name().unwrap_or("*").to_string()
    }

    fn send(&mut self, bytes: Vec<u8>) {
        self.out.push(self.conn, &Frame::from(bytes));
    }

    fn numeric(&mut self, code: u16, params: &[&str], trailing: Option<&str>) {
        let mut b = Vec::with_capacity(64);
        let me = self.me();
        wire::push_numeric(&mut b, self.server(), code, &me, params, trailing);
        self.send(b);
    }

    /// A line from the server itself (`:server CMD …`) or from the user.
    fn command(
        &mut self,
        prefix: Option<&str>,
        cmd: &str,
        params: &[&str],
        trailing: Option<&str>,
    ) {
        let mut b = Vec::with_capacity(64);
        let time = self.conn.has(flag::SERVER_TIME).then(now_ms);
        wire::push_command(&mut b, time, prefix, cmd, params, trailing);
        self.send(b);
    }

    fn my_prefix(&self) -> String {
        irc_prefix(&self.me(), self.server())
    }
}

/// Applies one IRC message. `now` is when the batch was read.
pub(crate) fn handle(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    irc: &mut IrcSession,
    msg: &IrcMessage<'_>,
    now: Instant,
) -> Flow {
    irc.last_heard = now;
    irc.pinged = None;
    let cmd = msg.command.to_ascii_uppercase();
    let mut cx = Ctx {
        shared,
        out,
        conn,
        session,
        irc,
    };
    if cmd != "QUIT" && !cx.session.take_token(shared, now) {
        return core::strike(shared, cx.out, conn, cx.session, now);
    }
    match cmd.as_str() {
        "CAP" => cap(&mut cx, msg),
        "PASS" if cx.irc.registered => cx.numeric(462, &[], Some("You may not reregister")),
        "PASS" => cx.irc.login().password = msg.param_str(0).map(str::to_string),
        "AUTHENTICATE" => authenticate(&mut cx, msg),
        "NICK" => nick(&mut cx, msg),
        "USER" => user(&mut cx, msg),
        "PING" => match msg.param_str(0) {
            Some(token) if !token.is_empty() => {
                let server = cx.server().to_string();
                cx.command(Some(&server), "PONG", &[&server], Some(token));
            }
            _ => cx.numeric(409, &[], Some("No origin specified")),
        },
        "PONG" => {}
        "QUIT" => return quit(&mut cx, msg),
        _ if !cx.irc.registered => cx.numeric(451, &[], Some("You have not registered")),
        "PRIVMSG" | "NOTICE" => {
            let cost = privmsg(&mut cx, msg, cmd == "NOTICE");
            cx.session.spend(shared, cost, now);
        }
        "JOIN" => join(&mut cx, msg),
        "PART" => part(&mut cx, msg),
        "NAMES" => match msg.param_str(0) {
            Some(list) => {
                for chan in wire::split_targets(list) {
                    names(&mut cx, chan);
                }
            }
            None => cx.numeric(366, &["*"], Some("End of /NAMES list")),
        },
        "LIST" => list(&mut cx, msg),
        "WHO" => who(&mut cx, msg),
        "WHOIS" => whois(&mut cx, msg),
        "ISON" => ison(&mut cx, msg),
        "USERHOST" => userhost(&mut cx, msg),
        "MODE" => mode(&mut cx, msg),
        "TOPIC" => topic(&mut cx, msg),
        "AWAY" => away(&mut cx, msg),
        "MOTD" => cx.numeric(422, &[], Some("MOTD File is missing")),
        // Client-only tags (typing notices and the like) are not relayed.
        "TAGMSG" => {}
        "WHOWAS" => {
            let nick = msg.param_str(0).unwrap_or("*").to_string();
            cx.numeric(406, &[&nick], Some("There was no such nickname"));
            cx.numeric(369, &[&nick], Some("End of WHOWAS"));
        }
        "LUSERS" => lusers(&mut cx),
        "VERSION" => {
            let server = cx.server().to_string();
            cx.numeric(351, &[&version(), &server], Some("chat broker"));
        }
        _ => {
            let c = msg.command.to_string();
            cx.numeric(421, &[&c], Some("Unknown command"));
        }
    }
    Flow::Continue
}

/// The longest user name kept from `USER` (as `NICKLEN`): the rest is cut,
/// as servers do, so a `352`/`311` stays well within 512 bytes.
const USERLEN: usize = 32;

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// `AWAY :text` marks the user away (`306`), `AWAY` marks it back (`305`);
/// others see it in `WHO` (`G`), `WHOIS` and `USERHOST` (`301`, `-`), and
/// get `301` when they `PRIVMSG` it.
fn away(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let text = msg
        .param(0)
        .filter(|t| !t.is_empty())
        .map(String::from_utf8_lossy);
    if let Some(info) = cx.conn.irc_info() {
        cx.shared.registry.note_away(info.set_away(text.as_deref()));
    }
    match text {
        Some(_) => cx.numeric(306, &[], Some("You have been marked as being away")),
        None => cx.numeric(305, &[], Some("You are no longer marked as being away")),
    }
}

/// What `WHO`, `WHOIS` and `USERHOST` show of a user: its user name, real
/// name and away text. An IRC user's come from `USER` and `AWAY`; anyone
/// else (another door, another node) shows its name for both and is never
/// away.
struct Who {
    user: String,
    real: String,
    away: Option<Box<str>>,
}

fn who_is(shared: &Shared, shown: &str) -> Who {
    let conn = shared.registry.get(shown);
    match conn.as_deref().and_then(Conn::irc_info) {
        Some(info) => Who {
            user: info.user().to_string(),
            real: info.real().to_string(),
            away: info.away(),
        },
        None => Who {
            user: shown.to_string(),
            real: shown.to_string(),
            away: None,
        },
    }
}

fn version() -> String {
    format!("chat-broker-{}", env!("CARGO_PKG_VERSION"))
}

fn cap(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let me = cx.me();
    let server = cx.server().to_string();
    match msg.param_str(0).map(str::to_ascii_uppercase).as_deref() {
        Some("LS") => {
            if !cx.irc.registered {
                cx.irc.cap_open = true;
            }
            // SASL only where there are accounts to log in to.
            let accounts = cx.shared.accounts.is_some();
            // Values (`sasl=PLAIN`) only for CAP 302 clients: a 3.1 client
            // would take `sasl=PLAIN` for the name of a capability it
            // doesn't know.
            let values = msg
                .param_str(1)
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| v >= 302);
            let offered: Vec<&str> = CAPS
                .iter()
                .filter(|(c, _)| *c != "sasl" || accounts)
                .map(|&(c, _)| {
                    if c == "sasl" && values {
                        "sasl=PLAIN"
                    } else {
                        c
                    }
                })
                .collect();
            let offered = offered.join(" ");
            cx.command(Some(&server), "CAP", &[&me, "LS"], Some(&offered));
        }
        Some("LIST") => {
            let on: Vec<&str> = CAPS
                .iter()
                .enumerate()
                .filter(|&(i, _)| cx.irc.caps & (1 << i) != 0)
                .map(|(_, &(c, _))| c)
                .collect();
            let on = on.join(" ");
            cx.command(Some(&server), "CAP", &[&me, "LIST"], Some(&on));
        }
        Some("REQ") => {
            if !cx.irc.registered {
                cx.irc.cap_open = true;
            }
            let asked = msg.param_str(1).unwrap_or_default();
            let accounts = cx.shared.accounts.is_some();
            let known = |c: &str| {
                let c = c.trim_start_matches('-');
                CAPS.iter()
                    .enumerate()
                    .find(|(_, (n, _))| *n == c && (*n != "sasl" || accounts))
            };
            let all_known = asked
                .split(' ')
                .filter(|c| !c.is_empty())
                .all(|c| known(c).is_some());
            if !all_known || asked.trim().is_empty() {
                cx.command(Some(&server), "CAP", &[&me, "NAK"], Some(asked));
                return;
            }
            for c in asked.split(' ').filter(|c| !c.is_empty()) {
                let Some((i, &(_, bit))) = known(c) else {
                    continue;
                };
                let on = !c.starts_with('-');
                cx.conn.set_flag(bit, on);
                if on {
                    cx.irc.caps |= 1 << i;
                } else {
                    cx.irc.caps &= !(1 << i);
                }
            }
            cx.command(Some(&server), "CAP", &[&me, "ACK"], Some(asked));
        }
        Some("END") => {
            cx.irc.cap_open = false;
            try_register(cx);
        }
        _ => {
            let sub = msg.param_str(0).unwrap_or_default().to_string();
            cx.numeric(410, &[&sub], Some("Invalid CAP command"));
        }
    }
}

fn nick(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let Some(nick) = msg.param_str(0).filter(|n| !n.is_empty()) else {
        return cx.numeric(431, &[], Some("No nickname given"));
    };
    if cx.irc.registered {
        if cx.conn.name().is_some_and(|n| n == nick) {
            return;
        }
        return cx.numeric(400, &["NICK"], Some("Nick changes are not supported here"));
    }
    if validate_name(nick).is_err() {
        return cx.numeric(432, &[nick], Some("Erroneous nickname"));
    }
    if cx.shared.registry.contains(nick) {
        return cx.numeric(433, &[nick], Some("Nickname is already in use"));
    }
    cx.irc.nick = Some(nick.to_string());
    try_register(cx);
}

fn user(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    if cx.irc.registered {
        return cx.numeric(462, &[], Some("You may not reregister"));
    }
    // `USER <user> <mode> <unused> :<realname>`: all four, and neither the
    // user nor the realname empty (`USER u * * :` is a client that forgot
    // its realname, not a registration).
    let empty = |i: usize| msg.param(i).is_none_or(|p| p.is_empty());
    if msg.params().len() < 4 || empty(0) || empty(3) {
        return cx.numeric(461, &["USER"], Some("Not enough parameters"));
    }
    let user = String::from_utf8_lossy(msg.param(0).unwrap_or_default());
    let real = String::from_utf8_lossy(msg.param(3).unwrap_or_default());
    // A second USER before registration changes nothing: the first stands.
    cx.conn
        .set_irc_info(IrcInfo::new(cut(&user, USERLEN), &real));
    try_register(cx);
}

/// Registers once `NICK` and `USER` are in and CAP negotiation is over:
/// the welcome burst goes out before anyone can see the new user.
fn try_register(cx: &mut Ctx<'_>) {
    if cx.irc.registered || cx.irc.cap_open || cx.conn.irc_info().is_none() {
        return;
    }
    if cx.irc.login.as_ref().is_some_and(|l| l.pending.is_some()) {
        return;
    }
    let Some(mut nick) = cx.irc.nick.clone() else {
        return;
    };
    let mut stored = Vec::new();
    if let Some(v) = cx
        .irc
        .login
        .as_mut()
        .and_then(|l| l.verified.as_mut())
        .filter(|v| !v.name.eq_ignore_ascii_case(&nick))
    {
        // Logged in (SASL) as another account than the nick: its messages
        // wait for a login that uses its name.
        let folded = protocol::fold_name(&v.name);
        crate::accounts::put_back(cx.shared, &folded, std::mem::take(&mut v.stored));
    }
    if cx.shared.accounts.as_ref().is_some_and(|a| a.owned(&nick)) {
        match cx.irc.login.as_mut().and_then(|l| l.verified.take()) {
            Some(v) if v.name.eq_ignore_ascii_case(&nick) => {
                nick = v.name;
                stored = v.stored;
            }
            other => {
                if other.is_some() {
                    cx.irc.login().verified = other;
                }
                if let Some(password) = cx.irc.login.as_mut().and_then(|l| l.password.take()) {
                    // PASS: checked first; registration goes on after.
                    return check_password(cx, &nick, password, false);
                }
                cx.irc.nick = None;
                return cx.numeric(
                    433,
                    &[&nick],
                    Some("Nickname is an account: log in with SASL PLAIN or PASS"),
                );
            }
        }
    }
    if let Some(node) = cx.shared.cluster.get() {
        let folded = protocol::fold_name(&nick);
        let claimed = cx.irc.login.as_ref().and_then(|l| l.claimed.as_deref());
        if claimed != Some(folded.as_str()) {
            // Claimed cluster-wide first, off this thread; registration goes
            // on in `after_hold`.
            let state = Arc::new(AtomicU8::new(core::hold::WAITING));
            let job = crate::cluster::node::Job::ClaimOnly {
                conn: Arc::clone(cx.conn),
                folded: folded.clone(),
                shown: nick.clone(),
                held: Arc::clone(&state),
            };
            if !node.submit(job) {
                cx.irc.nick = None;
                return cx.numeric(437, &[&nick], Some(NICK_UNAVAILABLE));
            }
            cx.session.hold(Arc::clone(&state), None);
            cx.irc.login().pending = Some(Pending {
                state,
                slot: Arc::new(parking_lot::Mutex::new(None)),
                by_sasl: false,
                claim: Some(folded),
            });
            return;
        }
    }
    let server = cx.server().to_string();
    let join_all = cx.shared.live().irc_join_all;
    let shared = cx.shared;
    let conn = Arc::clone(cx.conn);
    let max_targets = cx.shared.config.max_targets;
    let max_rooms = cx.shared.live().max_rooms_per_user;
    let time = conn.has(flag::SERVER_TIME).then(now_ms);
    let taken = core::take_name(cx.shared, cx.out, cx.conn, &nick, |out| {
        let mut b = Vec::with_capacity(1024);
        welcome(&mut b, &server, &nick, max_targets, max_rooms);
        if join_all {
            // In #all before anyone can see us, and our own JOIN and NAMES
            // queued before any of #all's traffic: clients want their JOIN
            // first.
            conn.set_flag(flag::IN_ALL, true);
            let prefix = irc_prefix(&nick, &server);
            wire::push_command(&mut b, time, Some(&prefix), "JOIN", &["#all"], None);
            // Names borrowed from the registry's snapshot, not copied: a
            // burst of registrations made two small allocations per name
            // per registration here.
            let snap = shared.registry.everyone();
            let remote = shared.cluster.get().map(|n| n.remote_names());
            let mut everyone: Vec<&str> = snap
                .conns
                .iter()
                .filter_map(|c| c.name())
                .chain(remote.iter().flatten().map(String::as_str))
                .chain(std::iter::once(nick.as_str()))
                .collect();
            everyone.sort_unstable_by(|x, y| core::cmp_folded(x, y));
            b.reserve(everyone.iter().map(|n| n.len() + 1).sum::<usize>() * 5 / 4);
            names_lines(
                &mut b,
                &server,
                &nick,
                "#all",
                everyone.iter().map(|n| ("", *n)),
            );
        }
        out.push(&conn, &Frame::from(b));
        // An account's messages kept while it was away, before anything new.
        for m in &stored {
            crate::accounts::deliver_stored(shared, out, &conn, m);
        }
    });
    if taken.is_err() || cx.conn.is_closing() {
        // The account's messages were not delivered after all.
        crate::accounts::put_back(cx.shared, &protocol::fold_name(&nick), stored);
    }
    if let Some(node) = cx.shared.cluster.get() {
        if taken.is_ok() {
            node.joined(&nick);
        } else if let Some(folded) = cx.irc.login.as_mut().and_then(|l| l.claimed.take()) {
            node.submit(crate::cluster::node::Job::Release(folded));
        }
    }
    match taken {
        Ok(()) => {
            // From here on the nick is the connection's name (`me`).
            cx.irc.registered = true;
            cx.irc.nick = None;
        }
        Err(NameError::Taken) => {
            cx.irc.nick = None;
            cx.numeric(433, &[&nick], Some("Nickname is already in use"));
        }
        Err(NameError::Bad(_)) => {
            cx.irc.nick = None;
            cx.numeric(432, &[&nick], Some("Erroneous nickname"));
        }
        Err(NameError::Already) => {}
    }
}

/// `AUTHENTICATE`: SASL `PLAIN` (RFC 4616) for an account.
fn authenticate(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    if cx.irc.registered {
        return cx.numeric(907, &[], Some("You have already authenticated"));
    }
    if !cx.irc.has_cap("sasl") {
        return cx.numeric(
            904,
            &[],
            Some("SASL authentication failed: CAP REQ :sasl first"),
        );
    }
    let arg = msg.param_str(0).unwrap_or_default();
    if arg == "*" {
        cx.irc.login().sasl_started = false;
        return cx.numeric(906, &[], Some("SASL authentication aborted"));
    }
    if !cx.irc.login().sasl_started {
        if arg.eq_ignore_ascii_case("PLAIN") {
            cx.irc.login().sasl_started = true;
            return cx.command(None, "AUTHENTICATE", &["+"], None);
        }
        cx.numeric(908, &["PLAIN"], Some("are available SASL mechanisms"));
        return cx.numeric(904, &[], Some("SASL authentication failed"));
    }
    cx.irc.login().sasl_started = false;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(arg)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    // authzid NUL authcid NUL password
    let parts: Option<(String, String)> = decoded.as_deref().and_then(|d| {
        let mut it = d.split('\0');
        let (_, who, password) = (it.next()?, it.next()?, it.next()?);
        Some((who.to_string(), password.to_string()))
    });
    match parts {
        Some((who, password)) if !who.is_empty() => check_password(cx, &who, password, true),
        _ => cx.numeric(904, &[], Some("SASL authentication failed")),
    }
}

/// Hands a password to the accounts thread; the connection is held until
/// it has answered, then `after_hold` goes on.
fn check_password(cx: &mut Ctx<'_>, name: &str, password: String, by_sasl: bool) {
    let failed = |cx: &mut Ctx<'_>| {
        if by_sasl {
            cx.numeric(904, &[], Some("SASL authentication failed"));
        } else {
            cx.numeric(464, &[], Some("Password incorrect"));
        }
    };
    let Some(accounts) = cx.shared.accounts.as_ref() else {
        return failed(cx);
    };
    if crate::accounts::password_ok(&password).is_err() {
        return failed(cx);
    }
    let state = Arc::new(AtomicU8::new(core::hold::WAITING));
    let slot = Arc::new(parking_lot::Mutex::new(None));
    let job = crate::accounts::Job::Verify {
        conn: Arc::clone(cx.conn),
        name: name.to_string(),
        password,
        slot: Arc::clone(&slot),
    };
    if !accounts.submit(job, None, Arc::clone(&state)) {
        return failed(cx);
    }
    cx.session.hold(Arc::clone(&state), None);
    cx.irc.login().pending = Some(Pending {
        state,
        slot,
        by_sasl,
        claim: None,
    });
}

/// After a hold: answers a finished password check (SASL: 900 and 903,
/// or 904; `PASS`: registration goes on, or 464).
pub(crate) fn after_hold(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    irc: &mut IrcSession,
) {
    let Some(p) = irc.login.as_mut().and_then(|l| l.pending.take()) else {
        return;
    };
    let state = p.state.load(Ordering::Acquire);
    if state == core::hold::WAITING {
        irc.login().pending = Some(p);
        return;
    }
    let mut cx = Ctx {
        shared,
        out,
        conn,
        session,
        irc,
    };
    if let Some(folded) = p.claim {
        match state {
            core::hold::DONE => {
                cx.irc.login().claimed = Some(folded);
                try_register(&mut cx);
            }
            core::hold::UNAVAILABLE => {
                let nick = cx_nick(cx.irc);
                cx.numeric(437, &[&nick], Some(NICK_UNAVAILABLE));
            }
            _ => {
                let nick = cx_nick(cx.irc);
                cx.numeric(433, &[&nick], Some("Nickname is already in use"));
            }
        }
        return;
    }
    let verified = p.slot.lock().take();
    match (state, verified) {
        (core::hold::DONE, Some(v)) => {
            if p.by_sasl {
                let me = cx.me();
                let mask = irc_prefix(&v.name, cx.server());
                let text = format!("You are now logged in as {}", v.name);
                cx.numeric(900, &[&me, &mask, &v.name], Some(&text));
                cx.numeric(903, &[], Some("SASL authentication successful"));
                cx.irc.login().verified = Some(v);
            } else {
                cx.irc.login().verified = Some(v);
                try_register(&mut cx);
            }
        }
        // The accounts could not be read (a cluster's Redis away): not a
        // wrong password, and said so.
        (core::hold::UNAVAILABLE, _) if p.by_sasl => {
            let text = format!("SASL authentication failed: {ACCOUNTS_UNAVAILABLE}");
            cx.numeric(904, &[], Some(&text));
        }
        (core::hold::UNAVAILABLE, _) => {
            let nick = cx_nick(cx.irc);
            cx.irc.nick = None;
            cx.numeric(437, &[&nick], Some(ACCOUNTS_UNAVAILABLE));
        }
        _ if p.by_sasl => cx.numeric(904, &[], Some("SASL authentication failed")),
        _ => {
            cx.irc.nick = None;
            cx.numeric(464, &[], Some("Password incorrect"));
        }
    }
}

/// Why a password could not be checked: the accounts are out of reach.
const ACCOUNTS_UNAVAILABLE: &str =
    "accounts are unreachable now (the store, or a cluster's Redis); try again";

/// A message that can't go now: `404` while the store is busy, `437`
/// (temporarily unavailable) while the cluster is unreachable.
fn unavailable(cx: &mut Ctx<'_>, target: &str, busy: core::Busy) {
    let numeric = match busy {
        core::Busy::Store => 404,
        core::Busy::Cluster => 437,
    };
    cx.numeric(numeric, &[target], Some(busy.text()));
}

/// `437`'s text when a nick can't be claimed in the cluster now.
const NICK_UNAVAILABLE: &str =
    "Nick is temporarily unavailable: the cluster is unreachable; try again";

/// Takes the nick a registration was waiting for (it is not this
/// connection's after all).
fn cx_nick(irc: &mut IrcSession) -> String {
    irc.nick.take().unwrap_or_default()
}

/// 001–005 and 422: what every IRC client waits for after registering.
fn welcome(b: &mut Vec<u8>, server: &str, nick: &str, max_targets: usize, max_rooms: usize) {
    let welcome = format!("Welcome to {server}, {nick}!{nick}@{server}");
    let targmax = format!("TARGMAX=PRIVMSG:{max_targets},NOTICE:{max_targets}");
    // `max_rooms_per_user`; `#all` is not a room and doesn't count.
    let chanlimit = format!("CHANLIMIT=#:{max_rooms}");
    wire::push_numeric(b, server, 1, nick, &[], Some(&welcome));
    let host = format!("Your host is {server}, running version {}", version());
    wire::push_numeric(b, server, 2, nick, &[], Some(&host));
    wire::push_numeric(
        b,
        server,
        3,
        nick,
        &[],
        Some("This server was created today"),
    );
    wire::push_numeric(b, server, 4, nick, &[server, &version(), "i", "o"], None);
    let network = format!("NETWORK={server}");
    wire::push_numeric(
        b,
        server,
        5,
        nick,
        &[
            "CASEMAPPING=ascii",
            "CHANTYPES=#",
            "NICKLEN=32",
            "CHANNELLEN=33",
            &targmax,
            &chanlimit,
            "PREFIX=(o)@",
            "CHANMODES=,,,",
            &network,
        ],
        Some("are supported by this server"),
    );
    wire::push_numeric(b, server, 422, nick, &[], Some("MOTD File is missing"));
}

fn quit(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) -> Flow {
    let reason = msg.param(0).filter(|r| !r.is_empty());
    if let Some(r) = reason {
        cx.conn.set_quit_text(r);
    }
    let text = match reason {
        Some(r) => format!(
            "Closing link: {} (Quit: {})",
            cx.server(),
            String::from_utf8_lossy(r)
        ),
        None => "Closing link".to_string(),
    };
    core::close(
        cx.shared,
        cx.out,
        cx.conn,
        CloseReason::Quit,
        Some(&irc_error_line(&text)),
    );
    Flow::Closed
}

/// `PRIVMSG`/`NOTICE`: each channel target is a message of its own; the
/// nicks together are one (direct or multi). A `NOTICE` never gets an
/// error back (RFC 2812). Returns the bytes queued, for the byte budget.
fn privmsg(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>, notice: bool) -> u64 {
    let cmd = if notice { "NOTICE" } else { "PRIVMSG" };
    let Some(targets) = msg.param_str(0).filter(|t| !t.is_empty()) else {
        if !notice {
            cx.numeric(411, &[], Some(&format!("No recipient given ({cmd})")));
        }
        return 0;
    };
    let Some(text) = msg.param(1).filter(|t| !t.is_empty()) else {
        if !notice {
            cx.numeric(412, &[], Some("No text to send"));
        }
        return 0;
    };
    // No list is built per message: the targets are walked where they
    // are, and the nicks among them go to the core as one comma list (the
    // parameter itself when it names only nicks, the usual case).
    let count = wire::split_targets(targets).count();
    if count > cx.shared.config.max_targets {
        if !notice {
            cx.numeric(407, &[targets], Some("Too many recipients"));
        }
        return 0;
    }
    let mut cost = 0;
    let mut nick_count = 0;
    for t in wire::split_targets(targets) {
        if !wire::is_channel(t) {
            nick_count += 1;
            continue;
        }
        let target = if t.eq_ignore_ascii_case("#all") {
            Targets::All
        } else {
            Targets::Room(t)
        };
        match core::deliver(cx.shared, cx.out, cx.conn, target, text, notice) {
            Ok(s) => {
                cost += s.bytes;
                echo(cx, cmd, t, text);
            }
            Err(SendError::BadRoom(_)) => {
                if !notice {
                    cx.numeric(403, &[t], Some("No such channel"));
                }
            }
            Err(SendError::Unavailable(busy)) => {
                if !notice {
                    unavailable(cx, t, busy);
                }
            }
            Err(SendError::NotInRoom | SendError::NoSuchUser(_)) => {
                if !notice {
                    if cx.shared.rooms.exists(t) {
                        cx.numeric(404, &[t], Some("Cannot send to channel"));
                    } else {
                        cx.numeric(403, &[t], Some("No such channel"));
                    }
                }
            }
        }
    }
    if nick_count == 0 {
        return cost;
    }
    let joined: Cow<'_, str> = if nick_count == targets.split(',').count() {
        Cow::Borrowed(targets)
    } else {
        let nicks = wire::split_targets(targets).filter(|t| !wire::is_channel(t));
        Cow::Owned(nicks.collect::<Vec<_>>().join(","))
    };
    let missing = match core::deliver(
        cx.shared,
        cx.out,
        cx.conn,
        Targets::Names(&joined),
        text,
        notice,
    ) {
        Ok(s) => {
            cost += s.bytes;
            for (i, n) in joined.split(',').enumerate() {
                let missing = s.missing.split(',').any(|m| m.eq_ignore_ascii_case(n));
                // Each nick once, however often the list names it.
                let again = joined.split(',').take(i).any(|e| e.eq_ignore_ascii_case(n));
                if !missing && !again {
                    echo(cx, cmd, n, text);
                    if !notice {
                        tell_away(cx, n);
                    }
                }
            }
            s.missing
        }
        Err(SendError::NoSuchUser(m)) => m,
        Err(SendError::Unavailable(busy)) => {
            if !notice {
                unavailable(cx, &joined, busy);
            }
            String::new()
        }
        Err(_) => String::new(),
    };
    if !notice {
        for m in missing.split(',').filter(|m| !m.is_empty()) {
            cx.numeric(401, &[m], Some("No such nick/channel"));
        }
    }
    cost
}

/// `301 <nick> :<away text>` to a sender whose `PRIVMSG` reached someone
/// away (never for a `NOTICE`: automatic replies must not loop).
fn tell_away(cx: &mut Ctx<'_>, nick: &str) {
    // Nobody away (the usual case): no second lookup of the recipient.
    if !cx.shared.registry.anyone_away() {
        return;
    }
    let Some(conn) = cx.shared.registry.get(nick) else {
        return;
    };
    let away = conn.irc_info().and_then(IrcInfo::away);
    if let (Some(shown), Some(away)) = (conn.name(), away) {
        let shown = shown.to_string();
        cx.numeric(301, &[&shown], Some(&away));
    }
}

/// `echo-message`: the sender's own message back, as others see it.
fn echo(cx: &mut Ctx<'_>, cmd: &str, target: &str, text: &[u8]) {
    if !cx.conn.has(flag::ECHO) {
        return;
    }
    let time = cx.conn.has(flag::SERVER_TIME).then(now_ms);
    let mut b = Vec::with_capacity(64 + text.len());
    let me = cx.me();
    wire::push_message(&mut b, time, &me, cx.server(), cmd, target, text);
    cx.send(b);
}

fn join(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let Some(list) = msg.param_str(0).filter(|l| !l.is_empty()) else {
        return cx.numeric(461, &["JOIN"], Some("Not enough parameters"));
    };
    if list == "0" {
        // JOIN 0: leave every channel.
        let mine: Vec<Box<str>> = cx
            .conn
            .rooms
            .lock()
            .iter()
            .map(|m| m.folded.clone())
            .collect();
        for folded in mine {
            if let Ok(r) = core::part_room(cx.shared, cx.out, cx.conn, &folded, None) {
                let prefix = cx.my_prefix();
                cx.command(Some(&prefix), "PART", &[&r.name], None);
            }
        }
        return;
    }
    for chan in wire::split_targets(list) {
        join_one(cx, chan);
    }
}

fn join_one(cx: &mut Ctx<'_>, chan: &str) {
    let prefix = cx.my_prefix();
    if chan.eq_ignore_ascii_case("#all") {
        if !cx.conn.has(flag::IN_ALL) {
            cx.conn.set_flag(flag::IN_ALL, true);
            cx.command(Some(&prefix), "JOIN", &["#all"], None);
            names(cx, "#all");
        }
        return;
    }
    if validate_room(chan).is_err() {
        return cx.numeric(403, &[chan], Some("No such channel"));
    }
    let time = cx.conn.has(flag::SERVER_TIME).then(now_ms);
    let conn = Arc::clone(cx.conn);
    let cx_shared = cx.shared;
    let joined = core::join_room(cx.shared, cx.out, cx.conn, chan, |out, r, _| {
        let mut b = Vec::with_capacity(64);
        wire::push_command(&mut b, time, Some(&prefix), "JOIN", &[&r.name], None);
        out.push(&conn, &Frame::from(b));
        core::replay_history(cx_shared, out, &conn, &r.name);
    });
    match joined {
        Ok(r) => {
            let name = r.name.to_string();
            cx.numeric(331, &[&name], Some("No topic is set"));
            names(cx, &name);
        }
        Err(RoomError::AlreadyIn | RoomError::Closing) => {}
        Err(RoomError::TooMany) => {
            cx.numeric(405, &[chan], Some("You have joined too many channels"))
        }
        Err(RoomError::NotIn) => cx.numeric(403, &[chan], Some("No such channel")),
    }
}

fn part(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let Some(list) = msg.param_str(0).filter(|l| !l.is_empty()) else {
        return cx.numeric(461, &["PART"], Some("Not enough parameters"));
    };
    let reason = msg.param(1).filter(|r| !r.is_empty());
    let why = reason.map(String::from_utf8_lossy);
    for chan in wire::split_targets(list) {
        let prefix = cx.my_prefix();
        if chan.eq_ignore_ascii_case("#all") {
            if cx.conn.has(flag::IN_ALL) {
                cx.conn.set_flag(flag::IN_ALL, false);
                cx.command(Some(&prefix), "PART", &["#all"], why.as_deref());
            } else {
                cx.numeric(442, &["#all"], Some("You're not on that channel"));
            }
            continue;
        }
        match core::part_room(cx.shared, cx.out, cx.conn, chan, reason) {
            Ok(r) => cx.command(Some(&prefix), "PART", &[&r.name], why.as_deref()),
            Err(_) if cx.shared.rooms.exists(chan) => {
                cx.numeric(442, &[chan], Some("You're not on that channel"))
            }
            Err(_) => cx.numeric(403, &[chan], Some("No such channel")),
        }
    }
}

/// Names in a channel, the operator marked: `#all` is everyone; a room's
/// creator is its operator (`@`) while it stays. `None` if there is no such
/// channel.
fn channel_names(cx: &Ctx<'_>, chan: &str) -> Option<(String, Vec<String>)> {
    if chan.eq_ignore_ascii_case("#all") {
        return Some(("#all".to_string(), core::everyone_names(cx.shared)));
    }
    let Some(room) = cx.shared.rooms.get(chan) else {
        // A room with members on other nodes only.
        let node = cx.shared.cluster.get()?;
        let shown = node.room_name(chan)?;
        let mut names = node.room_members(chan);
        core::sort_names(&mut names);
        return Some((shown, names));
    };
    let op = room
        .members()
        .iter()
        .find(|c| c.id == room.creator)
        .and_then(|c| c.name().map(str::to_string));
    let names = core::member_names(cx.shared, &room)
        .into_iter()
        .map(|n| {
            if Some(&n) == op.as_ref() {
                format!("@{n}")
            } else {
                n
            }
        })
        .collect();
    Some((room.name.to_string(), names))
}

/// `353` lines (each within 512 bytes) and `366`.
fn names(cx: &mut Ctx<'_>, chan: &str) {
    let me = cx.me();
    let mut b = Vec::with_capacity(256);
    let local = cx.shared.cluster.get().is_none() && !chan.eq_ignore_ascii_case("#all");
    if let Some(room) = local.then(|| cx.shared.rooms.get(chan)).flatten() {
        // A room of this broker alone, as every JOIN answers: the names
        // borrowed from its members, not copied (a burst of joins did
        // two small allocations per member per join here).
        let members = room.members();
        let mut shown: Vec<(&str, &str)> = members
            .iter()
            .filter_map(|c| Some((if c.id == room.creator { "@" } else { "" }, c.name()?)))
            .collect();
        shown.sort_unstable_by(|x, y| core::cmp_folded(x.1, y.1));
        names_lines(&mut b, cx.server(), &me, &room.name, shown);
        return cx.send(b);
    }
    match channel_names(cx, chan) {
        Some((shown, names)) => {
            let names = names.iter().map(|n| ("", n.as_str()));
            names_lines(&mut b, cx.server(), &me, &shown, names);
        }
        None => wire::push_numeric(
            &mut b,
            cx.server(),
            366,
            &me,
            &[chan],
            Some("End of /NAMES list"),
        ),
    }
    cx.send(b);
}

/// The `353` lines of a channel's names, each within 512 bytes, then `366`.
/// `names` are `(prefix, name)`: the prefix is `@` for an operator, or
/// empty.
fn names_lines<'n>(
    b: &mut Vec<u8>,
    server: &str,
    me: &str,
    shown: &str,
    names: impl IntoIterator<Item = (&'n str, &'n str)>,
) {
    let budget = 400usize.saturating_sub(me.len() + shown.len() + server.len());
    let mut line = String::new();
    for (prefix, n) in names {
        if !line.is_empty() && line.len() + prefix.len() + n.len() + 1 > budget {
            wire::push_numeric(b, server, 353, me, &["=", shown], Some(&line));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(prefix);
        line.push_str(n);
    }
    if !line.is_empty() {
        wire::push_numeric(b, server, 353, me, &["=", shown], Some(&line));
    }
    wire::push_numeric(b, server, 366, me, &[shown], Some("End of /NAMES list"));
}

/// `LIST`: `#all` and every room; `LIST #a,#b`: only those of them that
/// exist (RFC 2812 3.2.6). Other arguments (a server, `ELIST` conditions)
/// are not understood, and ignored.
fn list(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    cx.numeric(321, &["Channel"], Some("Users  Name"));
    let rooms = core::all_rooms(cx.shared);
    let shared = cx.shared;
    let everyone = || core::everyone_names(shared).len();
    match msg.param_str(0).filter(|p| wire::is_channel(p)) {
        None => {
            cx.numeric(322, &["#all", &everyone().to_string()], Some("everyone"));
            for (name, n) in rooms {
                cx.numeric(322, &[&name, &n.to_string()], Some(""));
            }
        }
        Some(asked) => {
            for chan in wire::split_targets(asked) {
                if chan.eq_ignore_ascii_case("#all") {
                    let n = everyone().to_string();
                    cx.numeric(322, &["#all", &n], Some("everyone"));
                } else if let Some((name, n)) =
                    rooms.iter().find(|(r, _)| r.eq_ignore_ascii_case(chan))
                {
                    cx.numeric(322, &[name, &n.to_string()], Some(""));
                }
            }
        }
    }
    cx.numeric(323, &[], Some("End of /LIST"));
}

/// `WHO #chan`: its members; `WHO nick`: that user; `WHO mask` (with `*`
/// or `?`): the users whose nick matches and whom the asker can see (all
/// IRC users are `+i`: everyone while it sits in `#all`, else itself and
/// those it shares a room with). A `352` each, then `315` with the mask as
/// given.
fn who(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let mask = msg.param_str(0).unwrap_or("*").to_string();
    let server = cx.server().to_string();
    // `<flags>`: H(ere) or G(one), then `@` for the channel's operator.
    let line = |cx: &mut Ctx<'_>, chan: &str, nick: &str, op: bool| {
        let w = who_is(cx.shared, nick);
        let mut flags = String::from(if w.away.is_some() { "G" } else { "H" });
        if op {
            flags.push('@');
        }
        let real = format!("0 {}", w.real);
        let params = [chan, &w.user, &server, &server, nick, &flags];
        cx.numeric(352, &params, Some(&real));
    };
    if wire::is_channel(&mask) {
        if let Some((shown, names)) = channel_names(cx, &mask) {
            for n in names {
                let op = n.starts_with('@');
                line(cx, &shown, n.trim_start_matches('@'), op);
            }
        }
    } else if mask.contains(['*', '?']) {
        for nick in visible_names(cx) {
            if wire::mask_matches(&mask, &nick) {
                line(cx, "*", &nick, false);
            }
        }
    } else if let Some(nick) = core::shown_name(cx.shared, &mask) {
        line(cx, "*", &nick, false);
    }
    cx.numeric(315, &[&mask], Some("End of WHO list"));
}

/// The users this connection can see, sorted: everyone while it sits in
/// `#all`; else itself and the members of its rooms.
fn visible_names(cx: &Ctx<'_>) -> Vec<String> {
    if cx.conn.has(flag::IN_ALL) {
        return core::everyone_names(cx.shared);
    }
    let mut names = vec![cx.me()];
    let mine: Vec<Box<str>> = cx
        .conn
        .rooms
        .lock()
        .iter()
        .map(|m| m.folded.clone())
        .collect();
    for folded in mine {
        if let Some((_, members)) = channel_names(cx, &folded) {
            names.extend(
                members
                    .into_iter()
                    .map(|n| n.trim_start_matches('@').to_string()),
            );
        }
    }
    core::sort_names(&mut names);
    names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    names
}

fn whois(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    // WHOIS [server] nick: the nick is the last parameter.
    let Some(nick) = msg
        .params()
        .last()
        .and_then(|p| std::str::from_utf8(p).ok())
    else {
        return cx.numeric(431, &[], Some("No nickname given"));
    };
    let nick = nick.to_string();
    let server = cx.server().to_string();
    match core::shown_name(cx.shared, &nick) {
        Some(shown) => {
            let w = who_is(cx.shared, &shown);
            cx.numeric(311, &[&shown, &w.user, &server, "*"], Some(&w.real));
            cx.numeric(312, &[&shown, &server], Some("chat broker"));
            if let Some(away) = w.away {
                cx.numeric(301, &[&shown], Some(&away));
            }
            cx.numeric(318, &[&shown], Some("End of /WHOIS list"));
        }
        None => {
            cx.numeric(401, &[&nick], Some("No such nick/channel"));
            cx.numeric(318, &[&nick], Some("End of /WHOIS list"));
        }
    }
}

fn ison(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let mut on = Vec::new();
    for p in msg.params() {
        for n in String::from_utf8_lossy(p).split(' ') {
            if let Some(shown) = core::shown_name(cx.shared, n) {
                on.push(shown);
            }
        }
    }
    cx.numeric(303, &[], Some(&on.join(" ")));
}

fn userhost(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let server = cx.server().to_string();
    let mut found = Vec::new();
    for p in msg.params().iter().take(5) {
        let n = String::from_utf8_lossy(p);
        if let Some(shown) = core::shown_name(cx.shared, &n) {
            // `-` for away, `+` for here (RFC 2812 6.2, 302).
            let w = who_is(cx.shared, &shown);
            let here = if w.away.is_some() { '-' } else { '+' };
            found.push(format!("{shown}={here}{}@{server}", w.user));
        }
    }
    cx.numeric(302, &[], Some(&found.join(" ")));
}

fn mode(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let Some(target) = msg.param_str(0).filter(|t| !t.is_empty()) else {
        return cx.numeric(461, &["MODE"], Some("Not enough parameters"));
    };
    let target = target.to_string();
    let change = msg.param_str(1).unwrap_or_default().to_string();
    if wire::is_channel(&target) {
        let Some((shown, _)) = channel_names(cx, &target) else {
            return cx.numeric(403, &[&target], Some("No such channel"));
        };
        match change.as_str() {
            "" => cx.numeric(324, &[&shown, "+"], None),
            "b" | "+b" => cx.numeric(368, &[&shown], Some("End of channel ban list")),
            _ => cx.numeric(482, &[&shown], Some("You're not channel operator")),
        }
        return;
    }
    let me = cx.me();
    if !wire::eq_nick(&target, &me) {
        return cx.numeric(502, &[], Some("Can't change mode for other users"));
    }
    match change.as_str() {
        "" => cx.numeric(221, &["+i"], None),
        // Everyone is invisible here already: accept +i quietly.
        "+i" => cx.command(Some(&me), "MODE", &[&me], Some("+i")),
        _ => cx.numeric(501, &[], Some("Unknown MODE flag")),
    }
}

fn topic(cx: &mut Ctx<'_>, msg: &IrcMessage<'_>) {
    let Some(chan) = msg.param_str(0).filter(|c| !c.is_empty()) else {
        return cx.numeric(461, &["TOPIC"], Some("Not enough parameters"));
    };
    let chan = chan.to_string();
    match channel_names(cx, &chan) {
        None => cx.numeric(403, &[&chan], Some("No such channel")),
        Some((shown, _)) if msg.params().len() < 2 => {
            cx.numeric(331, &[&shown], Some("No topic is set"))
        }
        Some((shown, _)) => cx.numeric(482, &[&shown], Some("Topics can't be set here")),
    }
}

fn lusers(cx: &mut Ctx<'_>) {
    let here = cx.shared.registry.len();
    let (n, servers) = match cx.shared.cluster.get() {
        Some(node) => (
            here + node.remote_count() as usize,
            node.node_count().max(1),
        ),
        None => (here, 1),
    };
    let others = servers - 1;
    cx.numeric(
        251,
        &[],
        Some(&format!(
            "There are {n} users and 0 invisible on {servers} servers"
        )),
    );
    cx.numeric(
        255,
        &[],
        Some(&format!("I have {here} clients and {others} servers")),
    );
    // 265/266 (Modern IRC): current and most-ever counts, here and in all.
    let local_max = cx.shared.registry.peak().max(here);
    let global_max = cx.shared.registry.global_peak(n);
    let (here_s, local_max_s) = (here.to_string(), local_max.to_string());
    let (n_s, global_max_s) = (n.to_string(), global_max.to_string());
    let text = format!("Current local users {here}, max {local_max}");
    cx.numeric(265, &[&here_s, &local_max_s], Some(&text));
    let text = format!("Current global users {n}, max {global_max}");
    cx.numeric(266, &[&n_s, &global_max_s], Some(&text));
}

/// `417`: a line over 512 bytes was dropped; the connection goes on.
pub(crate) fn too_long(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>) {
    shared.metrics.error(ErrorCode::TooLong);
    let mut b = Vec::with_capacity(64);
    let nick = conn.name().unwrap_or("*");
    wire::push_numeric(
        &mut b,
        &shared.config.server_name,
        417,
        nick,
        &[],
        Some("Input line was too long"),
    );
    out.push(conn, &Frame::from(b));
}

/// What the 200 ms tick does for an IRC connection: ping it after
/// `keepalive_secs` of silence, close it as `timeout` after as long again
/// without an answer. True if it was closed.
pub(crate) fn tick(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    irc: &mut IrcSession,
    now: Instant,
) -> bool {
    let every = shared.live().keepalive_secs;
    if every == 0 || !irc.registered {
        return false;
    }
    let every = Duration::from_secs(every);
    match irc.pinged {
        None if now.saturating_duration_since(irc.last_heard) >= every => {
            let mut b = Vec::with_capacity(32);
            wire::push_command(
                &mut b,
                None,
                None,
                "PING",
                &[],
                Some(&shared.config.server_name),
            );
            out.push(conn, &Frame::from(b));
            irc.pinged = Some(now);
            false
        }
        Some(at) if now.saturating_duration_since(at) >= every => {
            log_debug!("{}: no PONG in time", conn.peer);
            core::close(
                shared,
                out,
                conn,
                CloseReason::PingTimeout,
                Some(&irc_error_line("Closing link: Ping timeout")),
            );
            true
        }
        _ => false,
    }
}
