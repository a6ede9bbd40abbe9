//! What both front ends share: the session both threads see, turning a
//! parsed command into requests, and leaving. The connection itself (the
//! greeting, signing in, the link thread, reconnecting) is
//! [`crate::link`].
//!
//! ```text
//!  keyboard / stdin ──▶ main thread ── parse ──▶ Writer ──▶ broker
//!                          │ queue ▲ wait (JOIN/PART, online)  ▲
//!                          ▼       │                           │ RECV, JOIN again
//!                     Shared: Session + Condvar ◀── on_event ── link thread ◀── broker
//!                                                      │         (reconnects)
//!                                                      ▼ lines
//!                                               Ui (printer / stdout)
//! ```
//!
//! `/join` and `/part` wait (at most [`ANSWER_WAIT`]) for the broker's
//! answer before the next line is read: the answer moves the current
//! target, so the line typed next goes where the prompt then says, in a
//! script as much as at a keyboard.
//!
//! While the link is reconnecting nothing is written: a command that needs
//! the broker comes back as [`Outcome::Offline`], and the front end keeps
//! the line (the terminal puts it back in the editor, a script waits until
//! the link is back and carries it out then).

use crate::command::{Command, To, USAGE_REGISTER};
use crate::link::{SignedIn, Stopped};
use crate::net::{self, Dialer, Writer};
use crate::password::Secret;
use crate::render::{self, Style};
use crate::session::{Asked, Session, Status};
use protocol::{Request, Targets};
use std::sync::mpsc::Receiver;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait for `BYE` after `QUIT` before leaving anyway.
pub const BYE_WAIT: Duration = Duration::from_secs(3);
/// How long `/join` and `/part` wait for the broker's answer before the
/// next line is read anyway.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Where lines go, and how the process ends when the broker ends it.
pub trait Ui: Send + Sync {
    /// Shows one line (which may hold indented continuation lines).
    fn print(&self, line: String);
    /// Shows `message` (if any) after every line printed before it, and
    /// exits with `code`, leaving the terminal as it was found.
    fn finish(&self, code: i32, message: Option<String>) -> !;
}

/// The local time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The session, shared by the link thread and the input loop, with a
/// signal for "the session changed" (an event was handled, the link's
/// status changed, we are quitting) so either side can wait for the other.
#[derive(Debug)]
pub struct Shared {
    session: Mutex<Session>,
    changed: Condvar,
}

impl Shared {
    /// The shared session for who we signed in as.
    pub fn new(signed: &SignedIn) -> Shared {
        let mut session = Session::new(&signed.name);
        session.signed_in(&signed.name, signed.since_ms);
        session.set_password(signed.password.clone());
        Shared {
            session: Mutex::new(session),
            changed: Condvar::new(),
        }
    }

    /// Locks the session, recovering from a panicked holder (the data is
    /// only display state; better to go on than to die).
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link's status if the session is free right now. For the editor's
    /// thread, which is the one that empties the printer's queue: if it
    /// waited for the lock, a holder that prints (nothing does today, by
    /// rule: lines are printed after the lock is let go) would wait for it
    /// in turn. A prompt's colour is not worth that risk.
    pub fn try_status(&self) -> Option<Status> {
        self.session.try_lock().ok().map(|s| s.status())
    }

    /// Wakes whoever waits (after an event's lines are shown).
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// We are leaving: nothing more is asked, the link stops reconnecting.
    pub fn set_quitting(&self) {
        self.lock().set_quitting();
        self.notify();
    }

    /// Waits until `done` says yes (`Some(true)`) or no (`Some(false)`)
    /// about the session, at most until `deadline`; `None` at the deadline.
    /// `done` also says how long at most to wait before asking again.
    fn wait_for<T>(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&Session) -> Result<T, Option<Duration>>,
    ) -> Option<T> {
        let mut session = self.lock();
        loop {
            let again = match done(&session) {
                Ok(answer) => return Some(answer),
                Err(again) => again,
            };
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            let wait = again
                .map_or(left, |a| a.min(left))
                .max(Duration::from_millis(1));
            session = match self.changed.wait_timeout(session, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Waits until the broker has answered request `seq`, at most `wait`.
    fn wait_answered(&self, seq: u64, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        self.wait_for(Some(deadline), |s| match s.answered(seq) {
            true => Ok(()),
            false => Err(None),
        })
        .is_some()
    }

    /// Waits until we are signed in (true) or leaving (false).
    pub fn wait_online(&self) -> bool {
        self.wait_for(None, |s| match (s.quitting(), s.status()) {
            (true, _) => Ok(false),
            (false, Status::Online) => Ok(true),
            _ => Err(None),
        })
        .unwrap_or(false)
    }

    /// For the link: waits until it is time to try again (true; a new name
    /// from `/name` makes it time at once) or we are leaving (false).
    pub fn wait_for_retry(&self) -> bool {
        self.wait_for(None, |s| {
            if s.quitting() {
                return Ok(false);
            }
            match s.status() {
                Status::Online => Ok(true),
                Status::NameTaken => Err(None),
                Status::Reconnecting { next_ms } => match next_ms.checked_sub(now_ms()) {
                    None | Some(0) => Ok(true),
                    Some(ms) => Err(Some(Duration::from_millis(ms))),
                },
            }
        })
        .unwrap_or(false)
    }

    /// Waits until every message of ours is answered and shown by all its
    /// recipients, at most `wait`; true if they were.
    pub fn wait_all_read(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        self.wait_for(Some(deadline), |s| match s.all_read() {
            true => Ok(()),
            false => Err(None),
        })
        .is_some()
    }
}

/// What the command line asked for.
#[derive(Clone)]
pub struct Options {
    /// How to reach the broker (its address, TLS).
    pub dialer: Dialer,
    /// The name to sign in with; asked for if `None`.
    pub name: Option<String>,
    /// The password (`--password`, `CHAT_PASSWORD`), sent if the name is
    /// an account.
    pub password: Option<Secret>,
    /// Reconnect when the connection ends.
    pub reconnect: bool,
    /// Scripts: how long to wait for receipts after the last line.
    pub wait_receipts: Option<Duration>,
}

/// How the process ends, and what to say first.
#[derive(Debug)]
pub struct Exit {
    /// Process exit code.
    pub code: i32,
    /// What to tell the user, if anything.
    pub message: Option<String>,
}

impl Exit {
    /// Ends with code 1 and `message`.
    pub fn fail(message: String) -> Exit {
        Exit {
            code: crate::session::code::CONNECTION,
            message: Some(message),
        }
    }
}

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or on its way to the broker.
    Done,
    /// Refused here (a local `!` line said why); nothing was sent.
    Refused,
    /// Not sent: we are not connected (the link is reconnecting). The
    /// front end keeps the line.
    Offline,
    /// Time to leave.
    Quit,
}

/// Why a line typed now can't go out, and that it is kept.
pub fn offline_hint(shared: &Shared) -> String {
    let status = shared.lock().status();
    match status {
        Status::Reconnecting { next_ms } => format!(
            "not connected: reconnecting, next try at {}; the line is kept, press Enter to send it once reconnected",
            render::clock(next_ms)
        ),
        Status::NameTaken => "not signed in: your name was taken (or its password refused) while you were away; pick another with /name <new name> (the line is kept)".to_string(),
        Status::Online => "not sent: the connection was lost; the line is kept, press Enter to send it once reconnected".to_string(),
    }
}

/// Carries out a command.
pub fn execute(
    command: Command,
    writer: &Writer,
    shared: &Shared,
    ui: &dyn Ui,
    style: Style,
) -> Outcome {
    let refuse = |text: &str| {
        ui.print(render::hint(style, text));
        Outcome::Refused
    };
    let asked = |sent: Result<u64, Offline>| match sent {
        Ok(_) => Outcome::Done,
        Err(Offline) => Outcome::Offline,
    };
    match command {
        Command::Nothing => Outcome::Done,
        Command::Help => {
            // One print, so the editor redraws the prompt once.
            ui.print(crate::command::HELP.to_string());
            Outcome::Done
        }
        Command::List => asked(ask(
            Asked::List,
            &Request::List { room: None },
            writer,
            shared,
        )),
        Command::Names { room } => {
            let room = room.or_else(|| shared.lock().current_room().map(String::from));
            asked(match &room {
                Some(r) => ask(
                    Asked::Names(r.clone()),
                    &Request::List { room: Some(r) },
                    writer,
                    shared,
                ),
                None => ask(Asked::List, &Request::List { room: None }, writer, shared),
            })
        }
        Command::Rooms => asked(ask(Asked::Rooms, &Request::Rooms, writer, shared)),
        Command::Join { room } => {
            // Already in it: talk there, as an IRC client shows the window.
            let shown = shared.lock().find_room(&room).map(String::from);
            if let Some(shown) = shown {
                return switch(Some(&shown), shared, ui, style);
            }
            let request = Request::Join { room: &room };
            // Older messages of the room are its history.
            shared.lock().joining(&room, now_ms());
            match ask(Asked::Join(room.clone()), &request, writer, shared) {
                Ok(seq) => wait(seq, &format!("/join {room}"), shared, ui, style),
                Err(Offline) => Outcome::Offline,
            }
        }
        Command::Part { room, reason } => {
            let room = room.or_else(|| shared.lock().current_room().map(String::from));
            let Some(room) = room else {
                return refuse("you are talking to everyone, not in a room; name it: /part #room");
            };
            let request = Request::Part {
                room: &room,
                reason: reason.as_deref().map(str::as_bytes),
            };
            match ask(Asked::Part(room.clone()), &request, writer, shared) {
                Ok(seq) => wait(seq, &format!("/part {room}"), shared, ui, style),
                Err(Offline) => Outcome::Offline,
            }
        }
        Command::Switch { room } => switch(room.as_deref(), shared, ui, style),
        Command::Name { name } => rename(&name, shared, ui, style),
        Command::Register { password } => {
            let Some(password) = password else {
                return refuse(&format!("usage: {USAGE_REGISTER}"));
            };
            if let Some(why) = registered_already(shared) {
                return refuse(&why);
            }
            let request = Request::Register {
                password: password.expose(),
            };
            match ask(Asked::Register(password.clone()), &request, writer, shared) {
                Ok(seq) => wait(seq, "/register", shared, ui, style),
                Err(Offline) => Outcome::Offline,
            }
        }
        Command::Quit => Outcome::Quit,
        Command::Say { text } => {
            let to = match shared.lock().current_room() {
                Some(room) => To::Room(room.to_string()),
                None => To::Everyone,
            };
            send(to, &text, writer, shared, ui, style)
        }
        Command::Send { to, text } => {
            // A room we are in is shown as the broker shows it.
            let to = match to {
                To::Room(r) => To::Room(shared.lock().find_room(&r).map_or(r, String::from)),
                to => to,
            };
            send(to, &text, writer, shared, ui, style)
        }
    }
}

/// Why `/register` is pointless now: we signed in to our account (or
/// registered it) with its password.
pub fn registered_already(shared: &Shared) -> Option<String> {
    let session = shared.lock();
    session
        .password()
        .is_some()
        .then(|| format!("{} is an account already", session.me()))
}

/// A request could not be written: we are not connected.
#[derive(Debug)]
struct Offline;

/// Records a request, then writes it; returns its number. Nothing is
/// written unless we are signed in (while the link reconnects, the new
/// connection is not ours to write on before it has signed in again).
fn ask(
    asked: Asked,
    request: &Request<'_>,
    writer: &Writer,
    shared: &Shared,
) -> Result<u64, Offline> {
    let seq = {
        let mut session = shared.lock();
        if session.status() != Status::Online {
            return Err(Offline);
        }
        session.queue(asked)
    };
    writer.send(request).map_err(|_| {
        shared.lock().unqueue(seq);
        Offline
    })?;
    Ok(seq)
}

/// Waits for the answer to `seq` (`what` was typed to ask for it).
fn wait(seq: u64, what: &str, shared: &Shared, ui: &dyn Ui, style: Style) -> Outcome {
    if !shared.wait_answered(seq, ANSWER_WAIT) {
        let here = render::target(Style::PLAIN, shared.lock().current_room());
        ui.print(render::hint(
            style,
            &format!("no answer to {what} yet; still {here}"),
        ));
    }
    Outcome::Done
}

/// `/switch`: shows where plain text goes now, or why it can't go there.
fn switch(room: Option<&str>, shared: &Shared, ui: &dyn Ui, style: Style) -> Outcome {
    let switched = shared.lock().switch(room);
    match switched {
        Ok(target) => {
            ui.print(render::notice(
                style,
                now_ms(),
                &format!("now {}", render::target(style, target.as_deref())),
            ));
            Outcome::Done
        }
        Err(why) => {
            ui.print(render::hint(style, &why));
            Outcome::Refused
        }
    }
}

/// `/name`: the name to sign in with when ours was taken while we were
/// away. A connected client keeps its name (the broker registers a name
/// once per connection).
fn rename(name: &str, shared: &Shared, ui: &dyn Ui, style: Style) -> Outcome {
    let line = {
        let mut session = shared.lock();
        match session.status() {
            Status::Online => Err(format!(
                "you are signed in as {}; the name can't change while connected",
                session.me()
            )),
            Status::NameTaken => {
                session.set_name(name);
                session.set_status(Status::Reconnecting { next_ms: now_ms() });
                Ok(format!("signing in as {name}"))
            }
            Status::Reconnecting { .. } => {
                session.set_name(name);
                Ok(format!("will sign in as {name} when reconnected"))
            }
        }
    };
    shared.notify();
    match line {
        Ok(line) => {
            ui.print(render::notice(style, now_ms(), &line));
            Outcome::Done
        }
        Err(why) => {
            ui.print(render::hint(style, &why));
            Outcome::Refused
        }
    }
}

/// Sends a message, after the checks that keep the broker from closing the
/// connection on us (a body or header line over its limits).
fn send(
    to: To,
    text: &str,
    writer: &Writer,
    shared: &Shared,
    ui: &dyn Ui,
    style: Style,
) -> Outcome {
    let refuse = |text: &str| {
        ui.print(render::hint(style, text));
        Outcome::Refused
    };
    if text.len() > net::MAX_TEXT {
        return refuse(&format!(
            "message too long: {} bytes, at most {} (not sent)",
            text.len(),
            net::MAX_TEXT
        ));
    }
    let list;
    let targets = match &to {
        To::Everyone => Targets::All,
        To::Names(names) => {
            list = names.join(",");
            Targets::Names(&list)
        }
        To::Room(room) => Targets::Room(room),
    };
    // "SEND " + targets + " " + length
    if targets.as_str().len() + 16 > net::MAX_LINE {
        return refuse("too many names in one message (not sent)");
    }
    let request = Request::Send {
        targets,
        body: text.as_bytes(),
    };
    let asked = Asked::Send {
        to: to.clone(),
        text: text.to_string(),
    };
    match ask(asked, &request, writer, shared) {
        Ok(_) => Outcome::Done,
        Err(Offline) => Outcome::Offline,
    }
}

/// Says goodbye: `QUIT`, then waits (bounded) for `BYE` while the link
/// keeps showing what still arrives. While reconnecting there is nobody to
/// say it to: the link just stops.
pub fn quit(writer: &Writer, shared: &Shared, stopped: &Receiver<Stopped>) {
    shared.set_quitting();
    if writer.send(&Request::Quit { reason: None }).is_ok() {
        let _ = stopped.recv_timeout(BYE_WAIT);
    }
    writer.close();
}
