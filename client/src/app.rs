//! What both front ends share: the greeting and name registration, the
//! reader thread that shows events and sends receipts, turning a parsed
//! command into requests, and leaving.
//!
//! ```text
//!  keyboard / stdin ──▶ main thread ── parse ──▶ Writer ──▶ broker
//!                          │ queue_send                ▲
//!                          ▼                           │ RECV
//!                     Session (Mutex) ◀── on_event ── reader thread ◀── broker
//!                                                      │
//!                                                      ▼ lines
//!                                               Ui (printer / stdout)
//! ```

use crate::command::{Command, To};
use crate::net::{self, ReadError, Reader, Writer};
use crate::render::{self, Style};
use crate::session::{End, Session};
use protocol::{ErrorCode, Event, Request, Targets};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long to wait for `BYE` after `QUIT` before leaving anyway.
pub const BYE_WAIT: Duration = Duration::from_secs(3);

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

/// Locks the session, recovering from a panicked holder (the data is only
/// display state; better to go on than to die).
pub fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|e| e.into_inner())
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
    session: Arc<Mutex<Session>>,
    ui: Arc<dyn Ui>,
    style: Style,
    addr: String,
) -> std::io::Result<Receiver<Stopped>> {
    let (stopped, stopped_rx) = std::sync::mpsc::channel::<Stopped>();
    std::thread::Builder::new()
        .name("reader".to_string())
        .spawn(move || loop {
            let reaction = match reader.next_event() {
                Ok(event) => lock(&session).on_event(&event, style, now_ms()),
                Err(ReadError::Skipped(e)) => {
                    ui.print(render::error(style, now_ms(), &e.to_string()));
                    continue;
                }
                Err(e) => {
                    if lock(&session).quitting() {
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
                .map(|end| end == End::Bye || lock(&session).quitting());
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
    session: &Mutex<Session>,
    ui: &dyn Ui,
    style: Style,
) -> bool {
    match command {
        Command::Nothing => {}
        // One print, so the editor redraws the prompt once.
        Command::Help => ui.print(crate::command::HELP.to_string()),
        Command::List => {
            if let Err(e) = writer.send(&Request::List { room: None }) {
                ui.print(render::hint(style, &format!("could not ask: {e}")));
            }
        }
        Command::Quit => return false,
        Command::Send { to, text } => {
            if let Err(why) = send(&to, &text, writer, session) {
                ui.print(render::hint(style, &why));
            }
        }
    }
    true
}

/// Sends a message, after the checks that keep the broker from closing the
/// connection on us (a body or header line over its limits).
fn send(to: &To, text: &str, writer: &Writer, session: &Mutex<Session>) -> Result<(), String> {
    if text.len() > net::MAX_TEXT {
        return Err(format!(
            "message too long: {} bytes, at most {} (not sent)",
            text.len(),
            net::MAX_TEXT
        ));
    }
    let list;
    let targets = match to {
        To::Everyone => Targets::All,
        To::Names(names) => {
            list = names.join(",");
            Targets::Names(&list)
        }
    };
    // "SEND " + targets + " " + length
    if targets.as_str().len() + 16 > net::MAX_LINE {
        return Err("too many names in one message (not sent)".to_string());
    }
    lock(session).queue_send(to, text);
    let request = Request::Send {
        targets,
        body: text.as_bytes(),
    };
    writer.send(&request).map_err(|e| {
        lock(session).unqueue_send();
        format!("not sent: {e}")
    })
}

/// Says goodbye: `QUIT`, then waits (bounded) for `BYE` while the reader
/// keeps showing what still arrives.
pub fn quit(writer: &Writer, session: &Mutex<Session>, stopped: &Receiver<Stopped>) {
    lock(session).set_quitting();
    if writer.send(&Request::Quit { reason: None }).is_ok() {
        let _ = stopped.recv_timeout(BYE_WAIT);
    }
    writer.close();
}
