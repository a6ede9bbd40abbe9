//! The connection's life: reaching the broker and reading its greeting,
//! signing in, the link thread that shows what arrives and sends receipts,
//! and reconnecting when the connection drops or the broker restarts.
//!
//! ```text
//!   connect (TLS) ──▶ HELLO ──▶ NAME [password] ──▶ JOIN each room again ──▶ online: show events
//!      ▲                         │ taken, refused: wait for /name                   │ lost, SHUTDOWN
//!      │                         ▼                                                  ▼
//!      └──── wait: 1 s doubling to 30 s, jittered ◀──────────────── (unless --no-reconnect)
//! ```
//!
//! **Why the link thread reconnects, not the input loop.** The input loop
//! is blocked in the line editor (or on stdin) most of the time, with
//! whatever the user is typing in the editor's buffer; the link thread is
//! the one that sees the connection end. So it waits, connects, signs in
//! and joins the rooms again on its own, then installs the new connection
//! in the shared [`Writer`]; the editor never stops, and the half-typed
//! line stays where it is. While the link is away the session's
//! [`Status`] says so, and nothing is written (see [`crate::app`]).
//!
//! **Back-off.** The first try comes about a second after the loss, then
//! the wait doubles up to 30 s. Each wait is drawn between half the step
//! and the whole step ("equal jitter"), so the clients of a restarted
//! broker don't all come back in the same instant, and no wait is longer
//! than the step it was drawn from. Every failed try prints one line with
//! the reason and when the next one comes.
//!
//! **Who we are again.** A reconnect signs in with the name we had, and
//! the password if we have one (given at start, typed at the prompt, or
//! set by `/register`), without asking again. [`sign_in`] sends `NAME`
//! alone first and the password only if the broker says the name is an
//! account (`NAME_OWNED`): a name that is no account signs in as before
//! even when `CHAT_PASSWORD` is set, the password goes only where it is
//! needed, and a broker without accounts sees the frames it always saw.
//! If someone else has the name by then, or the broker refuses the
//! password, the link does not guess: it says so and waits for the user's
//! `/name` (a script, with nobody to ask, ends: 1 for a taken name, 6 for
//! a password).

use crate::app::{now_ms, Exit, Shared, Ui};
use crate::net::{ConnectError, Dialer, ReadError, Reader, Stream, Writer};
use crate::password::Secret;
use crate::render::{self, Style};
use crate::session::{code, Asked, End, Status};
use protocol::{ErrorCode, Event, Request};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Who we sign in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name to register.
    pub name: String,
    /// The account's password, sent if the broker says the name is one.
    pub password: Option<Secret>,
}

/// Signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The name as the broker registered it.
    pub name: String,
    /// The local time just before `NAME` was sent: a message older than
    /// this was sent while we were away (stored, see [`crate::session`]).
    pub since_ms: u64,
    /// The password that signed us in (kept for reconnecting).
    pub password: Option<Secret>,
}

/// Why the broker refused to sign us in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Someone else has the name (`NAME_TAKEN`).
    Taken,
    /// The name is an account and we have no password for it
    /// (`NAME_OWNED`).
    Owned,
    /// The broker refused our password (`BAD_PASSWORD`).
    Password,
    /// The broker can't sign anyone in now (`UNAVAILABLE`): try later.
    Unavailable,
    /// Anything else (`BAD_NAME`, …).
    Other,
}

impl Refusal {
    /// A password would (or a better one might) sign us in.
    pub fn wants_password(self) -> bool {
        matches!(self, Refusal::Owned | Refusal::Password)
    }
}

/// How signing in failed.
#[derive(Debug)]
pub enum SignIn {
    /// The broker refused; why, in words.
    Refused {
        /// The reason, with the broker's words.
        why: String,
        /// Which kind of refusal.
        reason: Refusal,
    },
    /// The broker is shutting down; the line that says so.
    Shutdown(String),
    /// The connection failed; why.
    Lost(String),
}

/// Why a connection could not be opened: a few words for the reconnect
/// line (the address was said already), and the sentence for a failure at
/// start.
#[derive(Debug)]
struct NoConnection {
    short: String,
    long: String,
}

/// Connects with `dialer` and reads the broker's greeting: returns the
/// reader, the stream to write on and the server's name.
pub fn open(dialer: &Dialer) -> Result<(Reader, Stream, String), Exit> {
    dial(dialer).map_err(|e| Exit::fail(e.long))
}

fn dial(dialer: &Dialer) -> Result<(Reader, Stream, String), NoConnection> {
    let addr = dialer.addr();
    let (mut reader, stream) = dialer.connect().map_err(|e| match e {
        ConnectError::Io(e) => NoConnection {
            short: plain(&e),
            long: format!("cannot connect to {addr}: {e}"),
        },
        ConnectError::Tls(why) => NoConnection {
            long: format!("cannot connect to {addr} with TLS: {why}"),
            short: why,
        },
    })?;
    let server = greet(&mut reader, addr)?;
    Ok((reader, stream, server))
}

/// An I/O error in a few words: "connection refused" rather than
/// "Connection refused (os error 111)", where the kind says it all.
fn plain(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::TimedOut
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::AddrNotAvailable
        | K::NotConnected => e.kind().to_string(),
        _ => e.to_string(),
    }
}

/// Reads the broker's greeting. Returns the server's name.
fn greet(reader: &mut Reader, addr: &str) -> Result<String, NoConnection> {
    loop {
        match reader.next_event() {
            Ok(Event::Hello { server, .. }) => return Ok(server.to_string()),
            Ok(Event::Err {
                code: ErrorCode::ServerFull,
                text,
                ..
            }) => {
                let text = render::escape(text, Style::PLAIN);
                return Err(NoConnection {
                    short: format!("the server is full: {text}"),
                    long: format!("{addr} is full, try again later: {text}"),
                });
            }
            Ok(_) | Err(ReadError::Skipped(_)) => continue,
            Err(e) => {
                return Err(NoConnection {
                    short: format!("no greeting: {e}"),
                    long: format!("no greeting from {addr}: {e}"),
                })
            }
        }
    }
}

/// The broker's answer to `NAME`: the registered name, or the error's
/// code and text.
fn answer(reader: &mut Reader) -> Result<Result<String, (ErrorCode, String)>, SignIn> {
    loop {
        match reader.next_event() {
            Ok(Event::NameOk { name }) => return Ok(Ok(name.to_string())),
            Ok(Event::Err { code, text, .. }) => return Ok(Err((code, text.to_string()))),
            Ok(Event::Shutdown { text }) => {
                return Err(SignIn::Shutdown(render::shutdown(
                    Style::PLAIN,
                    now_ms(),
                    text,
                )))
            }
            Ok(_) | Err(ReadError::Skipped(_)) => continue,
            Err(e) => return Err(SignIn::Lost(e.to_string())),
        }
    }
}

/// A refusal of `name` in words (the broker's text escaped).
fn refusal(code: ErrorCode, text: &str, name: &str) -> SignIn {
    let name = render::escape(name, Style::PLAIN);
    let text = render::escape(text, Style::PLAIN);
    let (reason, why) = match code {
        ErrorCode::NameTaken => (Refusal::Taken, format!("the name {name} is taken: {text}")),
        ErrorCode::BadName => (
            Refusal::Other,
            format!("the name {name} can't be used: {text}"),
        ),
        ErrorCode::NameOwned => (
            Refusal::Owned,
            format!("the name {name} is an account: it needs its password"),
        ),
        ErrorCode::BadPassword => (
            Refusal::Password,
            format!("the server refused the password for {name}: {text}"),
        ),
        ErrorCode::Unavailable => (
            Refusal::Unavailable,
            format!("the server can't sign anyone in now: {text} ({code})"),
        ),
        _ => (Refusal::Other, format!("{text}: {code}")),
    };
    SignIn::Refused { why, reason }
}

/// Signs in as `who` on a greeted connection: `NAME`, and if the broker
/// says the name is an account, `NAME <name> <password>` (see the module
/// docs for why not at once).
pub fn sign_in(reader: &mut Reader, writer: &Writer, who: &Identity) -> Result<SignedIn, SignIn> {
    let name = who.name.as_str();
    let lost = |e: std::io::Error| SignIn::Lost(e.to_string());
    let since_ms = now_ms();
    writer.send(&Request::Name { name }).map_err(lost)?;
    let (code, text) = match answer(reader)? {
        Ok(name) => {
            return Ok(SignedIn {
                name,
                since_ms,
                password: None,
            })
        }
        Err(refused) => refused,
    };
    let password = match (&who.password, code) {
        (Some(password), ErrorCode::NameOwned) => password,
        _ => return Err(refusal(code, &text, name)),
    };
    let login = Request::Login {
        name,
        password: password.expose(),
    };
    writer.send(&login).map_err(lost)?;
    match answer(reader)? {
        Ok(name) => Ok(SignedIn {
            name,
            since_ms,
            password: Some(password.clone()),
        }),
        Err((code, text)) => Err(refusal(code, &text, name)),
    }
}

/// Asks for the password of the account named.
pub type AskPassword = dyn FnMut(&str) -> Option<Secret>;

/// How the client signs in at start.
pub struct Start<'a> {
    /// The name from `--name`; otherwise asked for.
    pub name: Option<String>,
    /// The password from `--password` or `CHAT_PASSWORD`.
    pub password: Option<Secret>,
    /// Asks for a name (`None`: the user gave up).
    pub ask_name: &'a mut dyn FnMut() -> Option<String>,
    /// At a terminal: asks for the password of the account named (`None`:
    /// the user gave none). Scripts have nobody to ask.
    pub ask_password: Option<&'a mut AskPassword>,
    /// Shows why a name or password was refused.
    pub say: &'a mut dyn FnMut(String),
    /// Ask again after a refused `--name` (a terminal), rather than end.
    pub ask_again: bool,
}

/// Signs in at start: the name given, else whatever `ask_name` returns;
/// the password given, else, for an account at a terminal, whatever
/// `ask_password` returns, again after a wrong one. A script ends: 1 for a
/// refused name, 6 when the password is missing or wrong.
pub fn register(reader: &mut Reader, writer: &Writer, start: Start<'_>) -> Result<SignedIn, Exit> {
    let Start {
        name,
        mut password,
        ask_name,
        mut ask_password,
        say,
        ask_again,
    } = start;
    let mut next = name.or_else(&mut *ask_name);
    loop {
        let Some(candidate) = next.take() else {
            let _ = writer.send(&Request::Quit { reason: None });
            return Err(Exit {
                code: code::OK,
                message: None,
            });
        };
        let candidate = candidate.trim().to_string();
        if candidate.is_empty() {
            say("a name needs 1 to 32 letters, digits, '_', '-' or '.'".to_string());
            next = ask_name();
            continue;
        }
        let who = Identity {
            name: candidate,
            password: password.clone(),
        };
        match sign_in(reader, writer, &who) {
            Ok(signed) => return Ok(signed),
            Err(SignIn::Refused { why, reason }) if reason.wants_password() => {
                let Some(ask) = ask_password.as_mut() else {
                    let hint = match reason {
                        Refusal::Owned => {
                            format!("; give it with --password or {}", crate::password::ENV)
                        }
                        _ => String::new(),
                    };
                    return Err(Exit {
                        code: code::PASSWORD,
                        message: Some(format!("{why}{hint}")),
                    });
                };
                say(why);
                password = ask(&who.name);
                if password.is_some() {
                    next = Some(who.name);
                    continue;
                }
                // No password: another name, then.
            }
            Err(SignIn::Refused { why, .. }) => say(why),
            // The broker stopped before we were in: nothing was done.
            Err(SignIn::Shutdown(line)) => return Err(Exit::fail(line)),
            Err(SignIn::Lost(why)) => return Err(Exit::fail(format!("connection lost: {why}"))),
        }
        if !ask_again {
            return Err(Exit {
                code: code::CONNECTION,
                message: None,
            });
        }
        next = ask_name();
    }
}

/// Why the link thread stopped after we sent `QUIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The broker said `BYE` (or `SHUTDOWN`).
    Ended(End),
    /// The connection closed without a word, or was not there.
    Closed,
}

/// The wait before each reconnect: 1 s doubling to 30 s, each wait drawn
/// between half the step and the whole step.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
}

impl Backoff {
    /// The first step.
    pub const FIRST: Duration = Duration::from_secs(1);
    /// The longest step.
    pub const MAX: Duration = Duration::from_secs(30);

    /// Starts at [`Backoff::FIRST`].
    pub fn new() -> Backoff {
        Backoff { step: Self::FIRST }
    }

    /// The wait before the next try (`random` is any random number), then
    /// the step doubles, up to [`Backoff::MAX`].
    pub fn next_wait(&mut self, random: u64) -> Duration {
        let step = self.step;
        self.step = step.saturating_mul(2).min(Self::MAX);
        let half = step / 2;
        let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(random % spread.saturating_add(1))
    }
}

/// A random number for the jitter: std's hasher keys are random per
/// process and per call, which is all jitter needs (no crate for it).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

/// "1 s", "30 s": a wait in whole seconds, at least 1.
fn seconds(wait: Duration) -> String {
    format!("{} s", wait.as_millis().div_ceil(1000).max(1))
}

/// How one connection ended.
enum Ended {
    /// `BYE`.
    Bye,
    /// `SHUTDOWN`, and the line that says so.
    Shutdown(Option<String>),
    /// The connection dropped; why.
    Lost(String),
}

/// Why one reconnect try failed.
enum Attempt {
    /// The broker refused to sign us in now (the name taken, the password
    /// refused).
    Refused {
        /// What happened, in words.
        why: String,
        /// A script's exit code for it.
        exit: i32,
        /// What the user can do, after "pick another name with /name".
        or: &'static str,
    },
    /// Anything else; why, in words.
    Failed(String),
}

/// The link thread's setup.
pub struct Link {
    /// How to reach the broker (its address, TLS).
    pub dialer: Dialer,
    /// The shared writer, given each new connection once it is signed in.
    pub writer: Writer,
    /// The session both threads see.
    pub shared: Arc<Shared>,
    /// Where lines go.
    pub ui: Arc<dyn Ui>,
    /// How lines are drawn.
    pub style: Style,
    /// Reconnect when the connection ends; else the process ends with it.
    pub reconnect: bool,
    /// A person is watching: a taken name can be replaced with `/name`, a
    /// shutdown without reconnecting is a normal end (0), and after a
    /// reconnect the client asks who is online, as it does at start.
    pub interactive: bool,
}

/// Runs the link thread on a signed-in connection: shows every event,
/// sends receipts, reconnects when the connection ends (or ends the
/// process), and, once we are quitting, reports on the returned channel
/// and stops.
pub fn spawn(reader: Reader, link: Link) -> std::io::Result<Receiver<Stopped>> {
    let (stopped, stopped_rx) = std::sync::mpsc::channel::<Stopped>();
    std::thread::Builder::new()
        .name("link".to_string())
        .spawn(move || link.run(reader, &stopped))?;
    Ok(stopped_rx)
}

impl Link {
    fn run(&self, mut reader: Reader, stopped: &Sender<Stopped>) {
        loop {
            let ended = self.pump(&mut reader);
            if self.shared.lock().quitting() {
                let why = match ended {
                    Ended::Bye => Stopped::Ended(End::Bye),
                    Ended::Shutdown(line) => {
                        if let Some(line) = line {
                            self.ui.print(line);
                        }
                        Stopped::Ended(End::Shutdown)
                    }
                    Ended::Lost(_) => Stopped::Closed,
                };
                let _ = stopped.send(why);
                return;
            }
            self.writer.disconnect();
            let (said, lost) = match ended {
                Ended::Shutdown(line) => (line, None),
                Ended::Lost(why) => (None, Some(why)),
                Ended::Bye => (None, Some("the server said goodbye".to_string())),
            };
            if !self.reconnect {
                self.end(said, lost);
            }
            // Reconnecting: the shutdown line first (the broker's last
            // word), then what may not have happened.
            let lines = self.shared.lock().connection_lost(self.style, now_ms());
            for line in said.into_iter().chain(lines) {
                self.ui.print(line);
            }
            match self.reconnect(lost) {
                Some(r) => reader = r,
                None => {
                    let _ = stopped.send(Stopped::Closed);
                    return;
                }
            }
        }
    }

    /// Shows events until the connection ends.
    fn pump(&self, reader: &mut Reader) -> Ended {
        loop {
            let reaction = match reader.next_event() {
                Ok(event) => self.shared.lock().on_event(&event, self.style, now_ms()),
                Err(ReadError::Skipped(e)) => {
                    self.ui
                        .print(render::error(self.style, now_ms(), &e.to_string()));
                    continue;
                }
                Err(e) => return Ended::Lost(e.to_string()),
            };
            let mut lines = reaction.lines;
            // The line that ends the conversation is shown by whoever acts
            // on the end: with the exit it is sure to reach the screen
            // (see `Ui::finish`).
            let last = match reaction.end {
                Some(_) => lines.pop(),
                None => None,
            };
            for line in lines {
                self.ui.print(line);
            }
            // Receipt only once the message is on its way to the screen.
            if let Some((id, from)) = reaction.receipt {
                let _ = self.writer.send(&Request::Recv { id, from: &from });
            }
            // An answer waited for is handled and on its way to the screen.
            self.shared.notify();
            match reaction.end {
                Some(End::Bye) => return Ended::Bye,
                Some(End::Shutdown) => return Ended::Shutdown(last),
                None => {}
            }
        }
    }

    /// Ends the process because the connection ended and we don't
    /// reconnect: a shutdown is a normal end at a terminal; for a script it
    /// means the input was not all carried out.
    fn end(&self, said: Option<String>, lost: Option<String>) -> ! {
        match lost {
            None => {
                let code = match self.interactive {
                    true => code::OK,
                    false => code::CONNECTION,
                };
                self.ui.finish(code, said)
            }
            Some(why) => {
                let line = render::error(
                    self.style,
                    now_ms(),
                    &format!("connection to {} lost: {why}", self.dialer.addr()),
                );
                self.ui.finish(code::CONNECTION, Some(line))
            }
        }
    }

    /// Sets when the next try is.
    fn next_try(&self, wait: Duration) -> u64 {
        let at = now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        self.shared
            .lock()
            .set_status(Status::Reconnecting { next_ms: at });
        self.shared.notify();
        at
    }

    /// Tries until signed in again (the new reader) or we are quitting.
    fn reconnect(&self, lost: Option<String>) -> Option<Reader> {
        let stop = match self.interactive {
            true => " (/quit to stop)",
            false => "",
        };
        let mut backoff = Backoff::new();
        let wait = backoff.next_wait(random());
        self.next_try(wait);
        let line = match lost {
            Some(why) => render::error(
                self.style,
                now_ms(),
                &format!(
                    "connection to {} lost: {why}; reconnecting in {}{stop}",
                    self.dialer.addr(),
                    seconds(wait)
                ),
            ),
            None => render::notice(
                self.style,
                now_ms(),
                &format!(
                    "*** reconnecting to {} in {}{stop}",
                    self.dialer.addr(),
                    seconds(wait)
                ),
            ),
        };
        self.ui.print(line);
        loop {
            if !self.shared.wait_for_retry() {
                return None;
            }
            let who = {
                let session = self.shared.lock();
                Identity {
                    name: session.me().to_string(),
                    password: session.password().cloned(),
                }
            };
            match self.attempt(&who) {
                Ok(reader) => return Some(reader),
                Err(Attempt::Refused { why, exit, or }) => {
                    let line = format!("reconnected, but {why}");
                    if !self.interactive {
                        let line = format!("{line}; giving up");
                        self.ui
                            .finish(exit, Some(render::error(self.style, now_ms(), &line)));
                    }
                    self.shared.lock().set_status(Status::NameTaken);
                    self.shared.notify();
                    self.ui.print(render::error(
                        self.style,
                        now_ms(),
                        &format!("{line}; pick another name with /name <new name>, or {or}"),
                    ));
                    // The new name is tried at once; failures after it
                    // back off from the start.
                    backoff = Backoff::new();
                }
                Err(Attempt::Failed(why)) => {
                    let wait = backoff.next_wait(random());
                    let at = self.next_try(wait);
                    self.ui.print(render::notice(
                        self.style,
                        now_ms(),
                        &format!(
                            "*** reconnecting: {why}; next try in {}, at {}",
                            seconds(wait),
                            render::clock(at)
                        ),
                    ));
                }
            }
        }
    }

    /// One try: connect, sign in as `who`, and ask to be in our rooms
    /// again. Those `JOIN`s (and, at a terminal, `LIST`) are written before
    /// the connection is handed to the input loop, so whatever is typed
    /// next reaches the broker after them: a line for the room goes to the
    /// room. Their answers arrive through [`Link::pump`].
    fn attempt(&self, who: &Identity) -> Result<Reader, Attempt> {
        let (mut reader, stream, _server) =
            dial(&self.dialer).map_err(|e| Attempt::Failed(e.short))?;
        let writer = Writer::new(stream.clone());
        let signed = match sign_in(&mut reader, &writer, who) {
            Ok(signed) => signed,
            Err(SignIn::Refused { why, reason }) => {
                writer.disconnect();
                let name = render::escape(&who.name, Style::PLAIN);
                let refused = |why, exit, or| Attempt::Refused { why, exit, or };
                return Err(match reason {
                    Refusal::Taken => refused(
                        format!("someone else has signed in as {name} while you were away"),
                        code::CONNECTION,
                        "/quit",
                    ),
                    Refusal::Owned => refused(
                        format!("{name} has become someone's account while you were away"),
                        code::PASSWORD,
                        "/quit",
                    ),
                    Refusal::Password => refused(
                        why,
                        code::PASSWORD,
                        "/quit and start again with the right password",
                    ),
                    // Maybe better in a moment: keep trying.
                    Refusal::Unavailable => Attempt::Failed(why),
                    Refusal::Other => refused(why, code::CONNECTION, "/quit"),
                });
            }
            Err(SignIn::Shutdown(_)) => {
                return Err(Attempt::Failed("the server is shutting down".to_string()))
            }
            Err(SignIn::Lost(why)) => return Err(Attempt::Failed(why)),
        };
        let me = signed.name.clone();
        let rooms = {
            let mut session = self.shared.lock();
            session.signed_in(&me, signed.since_ms);
            let rooms = session.rejoin(now_ms());
            if self.interactive {
                session.queue(Asked::List);
            }
            rooms
        };
        let mut asked = rooms
            .iter()
            .try_for_each(|room| writer.send(&Request::Join { room }));
        if self.interactive {
            asked = asked.and_then(|()| writer.send(&Request::List { room: None }));
        }
        if let Err(e) = asked {
            // Those requests will get no answer.
            self.shared.lock().connection_lost(self.style, now_ms());
            return Err(Attempt::Failed(e.to_string()));
        }
        self.writer.install(stream);
        let mut line = format!("*** reconnected to {} as {me}", self.dialer.addr());
        if !rooms.is_empty() {
            line.push_str(&format!("; joining {} again", rooms.join(" ")));
        }
        self.ui.print(render::notice(self.style, now_ms(), &line));
        self.shared.lock().set_status(Status::Online);
        self.shared.notify();
        Ok(reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_30_s_with_jitter_below_the_step() {
        let mut b = Backoff::new();
        let steps = [1, 2, 4, 8, 16, 30, 30, 30];
        for (i, step) in steps.iter().enumerate() {
            let step = Duration::from_secs(*step);
            // The lowest and the highest draw of each step.
            let mut low = b.clone();
            let mut high = b.clone();
            assert_eq!(low.next_wait(0), step / 2, "try {i}");
            let top = u64::try_from((step / 2).as_millis()).unwrap();
            assert_eq!(high.next_wait(top), step, "try {i}");
            let w = b.next_wait(random());
            assert!(w >= step / 2 && w <= step, "try {i}: {w:?}");
        }
    }

    #[test]
    fn waits_read_in_whole_seconds() {
        assert_eq!(seconds(Duration::from_millis(400)), "1 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "2 s");
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
    }
}
