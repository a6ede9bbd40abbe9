//! What both front ends share: the greeting and name registration, the
//! reader thread that shows events and sends receipts, turning a parsed
//! command into requests, and leaving.
//!
//! ```text
//!  keyboard / stdin ──▶ main thread ── parse ──▶ Writer ──▶ broker
//!                          │ queue ▲ wait (JOIN/PART)  ▲
//!                          ▼       │                   │ RECV
//!                     Shared: Session + Condvar ◀── on_event ── reader thread ◀── broker
//!                                                      │
//!                                                      ▼ lines
//!                                               Ui (printer / stdout)
//! ```
//!
//! `/join` and `/part` wait (at most [`ANSWER_WAIT`]) for the broker's
//! answer before the next line is read: the answer moves the current
//! target, so the line typed next goes where the prompt then says, in a
//! script as much as at a keyboard.

use crate::command::{Command, To};
use crate::net::{self, ReadError, Reader, Writer};
use crate::render::{self, Style};
use crate::session::{Asked, End, Session};
use protocol::{ErrorCode, Event, Request, Targets};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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

/// The session, shared by the reader thread and the input loop, with a
/// signal for "an event was handled" so the input loop can wait for the
/// answer to a request.
#[derive(Debug)]
pub struct Shared {
    session: Mutex<Session>,
    handled: Condvar,
}

impl Shared {
    /// The shared session for the registered name `me`.
    pub fn new(me: &str) -> Shared {
        Shared {
            session: Mutex::new(Session::new(me)),
            handled: Condvar::new(),
        }
    }

    /// Locks the session, recovering from a panicked holder (the data is
    /// only display state; better to go on than to die).
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes whoever waits for an answer (after an event's lines are shown).
    fn notify(&self) {
        self.handled.notify_all();
    }

    /// Waits until the broker has answered request `seq`, at most `wait`.
    fn wait_answered(&self, seq: u64, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut session = self.lock();
        while !session.answered(seq) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            session = match self.handled.wait_timeout(session, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

/// How the conversation could not start or go on.
#[derive(Debug)]
pub struct Exit {
    /// Process exit code.
    pub code: i32,
    /// What to tell the user, if anything.
    pub message: Option<String>,
}

impl Exit {
    fn fail(message: String) -> Exit {
        Exit {
            code: 1,
            message: Some(message),
        }
    }
}

/// Reads the broker's greeting. Returns the server's name.
pub fn greet(reader: &mut Reader, addr: &str) -> Result<String, Exit> {
    loop {
        match reader.next_event() {
            Ok(Event::Hello { server, .. }) => return Ok(server.to_string()),
            Ok(Event::Err {
                code: ErrorCode::ServerFull,
                text,
                ..
            }) => {
                return Err(Exit::fail(format!(
                    "{addr} is full, try again later: {}",
                    render::escape(text, Style::PLAIN)
                )))
            }
            Ok(_) | Err(ReadError::Skipped(_)) => continue,
            Err(e) => return Err(Exit::fail(format!("no greeting from {addr}: {e}"))),
        }
    }
}

/// Registers a name: `name` first if given, then whatever `ask` returns
/// (`None`: the user gave up). `say` shows the broker's reason when a name
/// is refused. When `ask_again` is false, a refused `name` ends the client.
pub fn register(
    reader: &mut Reader,
    writer: &Writer,
    name: Option<String>,
    ask: &mut dyn FnMut() -> Option<String>,
    say: &mut dyn FnMut(String),
    ask_again: bool,
) -> Result<String, Exit> {
    let mut next = name.or_else(&mut *ask);
    loop {
        let Some(candidate) = next.take() else {
            let _ = writer.send(&Request::Quit { reason: None });
            return Err(Exit {
                code: 0,
                message: None,
            });
        };
        let candidate = candidate.trim().to_string();
        if candidate.is_empty() {
            say("a name needs 1 to 32 letters, digits, '_', '-' or '.'".to_string());
            next = ask();
            continue;
        }
        writer
            .send(&Request::Name { name: &candidate })
            .map_err(|e| Exit::fail(format!("connection lost: {e}")))?;
        let refused = loop {
            match reader.next_event() {
                Ok(Event::NameOk { name }) => return Ok(name.to_string()),
                Ok(Event::Err {
                    code: code @ (ErrorCode::NameTaken | ErrorCode::BadName),
                    text,
                    ..
                }) => {
                    let why = match code {
                        ErrorCode::NameTaken => "is taken",
                        _ => "can't be used",
                    };
                    break format!(
                        "the name {} {why}: {}",
                        render::escape(&candidate, Style::PLAIN),
                        render::escape(text, Style::PLAIN)
                    );
                }
                Ok(Event::Err { text, code, .. }) => {
                    break format!("{}: {code}", render::escape(text, Style::PLAIN))
                }
                Ok(Event::Shutdown { text }) => {
                    return Err(Exit {
                        code: 0,
                        message: Some(format!(
                            "*** the server is shutting down: {}",
                            render::escape(text, Style::PLAIN)
                        )),
                    })
                }
                Ok(_) | Err(ReadError::Skipped(_)) => continue,
                Err(e) => return Err(Exit::fail(format!("connection lost: {e}"))),
            }
        };
        say(refused);
        if !ask_again {
            return Err(Exit {
                code: 1,
                message: None,
            });
        }
        next = ask();
    }
}

/// Why the reader thread stopped after we sent `QUIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The broker said `BYE` (or `SHUTDOWN`).
    Ended(End),
    /// The connection closed without a word.
    Closed,
}

/// Runs the reader: shows every event, sends receipts, and ends the
/// process when the broker does (unless we are quitting, then it reports
/// on the returned channel and stops).
pub fn spawn_reader(
    mut reader: Reader,
    writer: Writer,
    session: Arc<Shared>,
    ui: Arc<dyn Ui>,
    style: Style,
    addr: String,
) -> std::io::Result<Receiver<Stopped>> {
    let (stopped, stopped_rx) = std::sync::mpsc::channel::<Stopped>();
    std::thread::Builder::new()
        .name("reader".to_string())
        .spawn(move || loop {
            let reaction = match reader.next_event() {
                Ok(event) => session.lock().on_event(&event, style, now_ms()),
                Err(ReadError::Skipped(e)) => {
                    ui.print(render::error(style, now_ms(), &e.to_string()));
                    continue;
                }
                Err(e) => {
                    if session.lock().quitting() {
                        let _ = stopped.send(Stopped::Closed);
                        return;
                    }
                    let message =
                        render::error(style, now_ms(), &format!("connection to {addr} lost: {e}"));
                    ui.finish(1, Some(message));
                }
            };
            // If the broker ends the session without our asking (SHUTDOWN),
            // the process ends here, and the last line goes out with the
            // exit, which guarantees it is on screen (see `Ui::finish`).
            let ours = reaction
                .end
                .map(|end| end == End::Bye || session.lock().quitting());
            let mut lines = reaction.lines;
            let last = if ours == Some(false) {
                lines.pop()
            } else {
                None
            };
            for line in lines {
                ui.print(line);
            }
            // Receipt only once the message is on its way to the screen.
            if let Some((id, from)) = reaction.receipt {
                let _ = writer.send(&Request::Recv { id, from: &from });
            }
            // An answer waited for is handled and on its way to the screen.
            session.notify();
            if let Some(end) = reaction.end {
                if ours == Some(true) {
                    let _ = stopped.send(Stopped::Ended(end));
                    return;
                }
                ui.finish(0, last);
            }
        })?;
    Ok(stopped_rx)
}

/// Carries out a command; returns false when it is time to leave.
pub fn execute(
    command: Command,
    writer: &Writer,
    shared: &Shared,
    ui: &dyn Ui,
    style: Style,
) -> bool {
    let hint = |text: &str| ui.print(render::hint(style, text));
    match command {
        Command::Nothing => {}
        // One print, so the editor redraws the prompt once.
        Command::Help => ui.print(crate::command::HELP.to_string()),
        Command::List => {
            if let Err(why) = ask(Asked::List, &Request::List { room: None }, writer, shared) {
                hint(&format!("could not ask: {why}"));
            }
        }
        Command::Names { room } => {
            let room = room.or_else(|| shared.lock().current_room().map(String::from));
            let asked = match &room {
                Some(r) => ask(
                    Asked::Names(r.clone()),
                    &Request::List { room: Some(r) },
                    writer,
                    shared,
                ),
                None => ask(Asked::List, &Request::List { room: None }, writer, shared),
            };
            if let Err(why) = asked {
                hint(&format!("could not ask: {why}"));
            }
        }
        Command::Rooms => {
            if let Err(why) = ask(Asked::Rooms, &Request::Rooms, writer, shared) {
                hint(&format!("could not ask: {why}"));
            }
        }
        Command::Join { room } => {
            // Already in it: talk there, as an IRC client shows the window.
            let shown = shared.lock().find_room(&room).map(String::from);
            if let Some(shown) = shown {
                switch(Some(&shown), shared, ui, style);
                return true;
            }
            let request = Request::Join { room: &room };
            match ask(Asked::Join(room.clone()), &request, writer, shared) {
                Ok(seq) => wait(seq, &format!("/join {room}"), shared, ui, style),
                Err(why) => hint(&format!("could not ask: {why}")),
            }
        }
        Command::Part { room, reason } => {
            let room = room.or_else(|| shared.lock().current_room().map(String::from));
            let Some(room) = room else {
                hint("you are talking to everyone, not in a room; name it: /part #room");
                return true;
            };
            let request = Request::Part {
                room: &room,
                reason: reason.as_deref().map(str::as_bytes),
            };
            match ask(Asked::Part(room.clone()), &request, writer, shared) {
                Ok(seq) => wait(seq, &format!("/part {room}"), shared, ui, style),
                Err(why) => hint(&format!("could not ask: {why}")),
            }
        }
        Command::Switch { room } => switch(room.as_deref(), shared, ui, style),
        Command::Quit => return false,
        Command::Say { text } => {
            let to = match shared.lock().current_room() {
                Some(room) => To::Room(room.to_string()),
                None => To::Everyone,
            };
            if let Err(why) = send(to, &text, writer, shared) {
                hint(&why);
            }
        }
        Command::Send { to, text } => {
            // A room we are in is shown as the broker shows it.
            let to = match to {
                To::Room(r) => To::Room(shared.lock().find_room(&r).map_or(r, String::from)),
                to => to,
            };
            if let Err(why) = send(to, &text, writer, shared) {
                hint(&why);
            }
        }
    }
    true
}

/// Records a request, then writes it; returns its number.
fn ask(
    asked: Asked,
    request: &Request<'_>,
    writer: &Writer,
    shared: &Shared,
) -> std::io::Result<u64> {
    let seq = shared.lock().queue(asked);
    writer
        .send(request)
        .inspect_err(|_| shared.lock().unqueue(seq))?;
    Ok(seq)
}

/// Waits for the answer to `seq` (`what` was typed to ask for it).
fn wait(seq: u64, what: &str, shared: &Shared, ui: &dyn Ui, style: Style) {
    if !shared.wait_answered(seq, ANSWER_WAIT) {
        let here = render::target(Style::PLAIN, shared.lock().current_room());
        ui.print(render::hint(
            style,
            &format!("no answer to {what} yet; still {here}"),
        ));
    }
}

/// `/switch`: shows where plain text goes now, or why it can't go there.
fn switch(room: Option<&str>, shared: &Shared, ui: &dyn Ui, style: Style) {
    let switched = shared.lock().switch(room);
    match switched {
        Ok(target) => ui.print(render::notice(
            style,
            now_ms(),
            &format!("now {}", render::target(style, target.as_deref())),
        )),
        Err(why) => ui.print(render::hint(style, &why)),
    }
}

/// Sends a message, after the checks that keep the broker from closing the
/// connection on us (a body or header line over its limits).
fn send(to: To, text: &str, writer: &Writer, shared: &Shared) -> Result<(), String> {
    if text.len() > net::MAX_TEXT {
        return Err(format!(
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
        return Err("too many names in one message (not sent)".to_string());
    }
    let request = Request::Send {
        targets,
        body: text.as_bytes(),
    };
    let asked = Asked::Send {
        to: to.clone(),
        text: text.to_string(),
    };
    ask(asked, &request, writer, shared)
        .map(|_| ())
        .map_err(|e| format!("not sent: {e}"))
}

/// Says goodbye: `QUIT`, then waits (bounded) for `BYE` while the reader
/// keeps showing what still arrives.
pub fn quit(writer: &Writer, session: &Shared, stopped: &Receiver<Stopped>) {
    session.lock().set_quitting();
    if writer.send(&Request::Quit { reason: None }).is_ok() {
        let _ = stopped.recv_timeout(BYE_WAIT);
    }
    writer.close();
}
