//! The interactive front end: a line editor (rustyline) with an external
//! printer, so messages appear above the input line while you type.
//!
//! Why a line editor and not a split-screen UI: the conversation stays in
//! the terminal's own scrollback (scroll, search and copy work as in any
//! shell), there is no screen state to corrupt or redraw on resize, it
//! degrades to plain lines on a dumb terminal, and rustyline brings
//! history, Emacs/vi keys and completion. The external printer clears the
//! input line, prints the message and redraws the half-typed line with the
//! cursor where it was, from the editor's own thread, so a line being typed
//! is never broken, duplicated or lost.
//!
//! Ending while the editor waits for a key (the broker shut down, the
//! connection dropped) needs care: the editor holds the terminal in raw
//! mode on the main thread, and lines the link thread handed to the
//! printer just before the end may not be on screen yet (the printer is a
//! queue the editor works through, one line and one redraw at a time). So
//! the link thread waits [`EXIT_GRACE`] for the editor to print them,
//! then takes the exit ([`ExitFlag`]; from then on the editor's next redraw
//! stops in our highlighter instead of drawing), clears the prompt row,
//! puts the terminal back (see [`crate::sys`]), prints the last line
//! itself and ends the process. (Ending on the editor's first redraw after
//! the request, as we did before, could end after an earlier queued line's
//! redraw, with the last line still in the queue.)
//!
//! Reconnecting (see [`crate::link`]) happens behind the editor's back, so
//! the line being typed is never touched. Each step prints a line (lost,
//! each failed try with the time of the next, back); in colour the prompt
//! turns red while the client is not connected (the editor redraws it
//! with every printed line, and colour doesn't change its width, which the
//! editor measured once). A line entered while not connected is put back
//! into the editor as it was, to be sent with Enter once the client is back.

use crate::app::{self, Exit, Options, Outcome, Shared, Ui};
use crate::command::{self, Command, MSG_COMMANDS, ROOM_COMMANDS, SLASH_COMMANDS};
use crate::link::{self, Link};
use crate::net::{Reader, Writer};
use crate::password;
use crate::render::{self, Style};
use crate::session::{code, Status};
use crate::sys;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{ColorMode, CompletionType, Config, Editor, ExternalPrinter, Helper};
use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the link thread lets the editor print the lines queued before
/// the end, before it takes the exit.
const EXIT_GRACE: Duration = Duration::from_millis(100);

/// Taken by the thread that ends the process while the editor runs; the
/// editor checks it on every redraw.
#[derive(Debug)]
pub struct ExitFlag(AtomicBool);

impl ExitFlag {
    fn new() -> ExitFlag {
        ExitFlag(AtomicBool::new(false))
    }

    /// True for the one caller that takes the exit.
    fn take(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn taken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// On the editor's thread: once another thread is ending the process,
    /// draw nothing more (it exits within moments).
    fn act(&self) {
        while self.taken() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The editor's helper: completes names, rooms and commands, colours the
/// prompt, and is the hook through which the link thread ends the process.
struct ChatHelper {
    session: Option<Arc<Shared>>,
    exit: Arc<ExitFlag>,
    style: Style,
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let known = match &self.session {
            Some(s) => {
                let s = s.lock();
                Known {
                    names: s.names().to_vec(),
                    joined: s.joined().to_vec(),
                    rooms: s.known_rooms(),
                }
            }
            None => Known::default(),
        };
        let (start, words) = completions(line, pos, &known);
        let pairs = words
            .into_iter()
            .map(|w| Pair {
                display: w.trim_end().to_string(),
                replacement: w,
            })
            .collect();
        Ok((start, pairs))
    }
}

/// What tab completion can offer.
#[derive(Debug, Default)]
pub struct Known {
    /// Everyone online.
    pub names: Vec<String>,
    /// The rooms we are in.
    pub joined: Vec<String>,
    /// Every room we know of: ours and the last `/rooms` list.
    pub rooms: Vec<String>,
}

/// Completions for the word ending at `pos`: a slash command at the start
/// of the line; a room after `/join` (any room we know of), after `/part`,
/// `/switch`, `/names` (a room we are in) or wherever the word starts with
/// `#`; a name or a room we are in after `/msg`; otherwise a name (after a
/// space, a comma or `@`). Returns where the word starts and the
/// replacements.
pub fn completions(line: &str, pos: usize, known: &Known) -> (usize, Vec<String>) {
    let before = line.get(..pos).unwrap_or(line);
    let start = before
        .rfind(|c: char| c.is_whitespace() || c == ',' || c == '@')
        .map_or(0, |i| i + 1);
    let word = before.get(start..).unwrap_or_default();
    let at_end = pos >= line.len();
    let space = if at_end { " " } else { "" };
    let lower = word.to_ascii_lowercase();
    if start == 0 && word.starts_with('/') {
        let found = SLASH_COMMANDS
            .iter()
            .filter(|c| c.starts_with(&lower))
            .map(|c| format!("{c}{space}"))
            .collect();
        return (start, found);
    }
    // The command, when the word is its first argument.
    let command = before
        .get(..start)
        .map(str::trim_end)
        .filter(|c| c.starts_with('/') && !c.contains(char::is_whitespace))
        .map(str::to_ascii_lowercase);
    let command = command.as_deref();
    let names = || known.names.iter();
    let joined = || known.joined.iter();
    let candidates: Vec<&String> = match command {
        Some("/join" | "/j") => known.rooms.iter().collect(),
        Some(c) if ROOM_COMMANDS.contains(&c) => joined().collect(),
        Some(c) if MSG_COMMANDS.contains(&c) => names().chain(joined()).collect(),
        _ if word.starts_with('#') => known.rooms.iter().collect(),
        _ => names().collect(),
    };
    let found = candidates
        .into_iter()
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            // `/join ru` finds `#rust`.
            n.starts_with(&lower) || n.strip_prefix('#').is_some_and(|r| r.starts_with(&lower))
        })
        .map(|n| format!("{n}{space}"))
        .collect();
    (start, found)
}

/// The prompt: who you are and, when talking in a room, which one
/// (`alice> `, `alice #rust> `).
fn prompt(me: &str, room: Option<&str>) -> String {
    match room {
        Some(r) => format!("{me} {}> ", render::escape(r, Style::PLAIN)),
        None => format!("{me}> "),
    }
}

impl Highlighter for ChatHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        // Called on every redraw, on the editor's thread, before anything
        // is drawn: stop here once the process is ending (module docs).
        self.exit.act();
        if self.style.color {
            let online = match &self.session {
                Some(s) => s.try_status().is_none_or(|s| s == Status::Online),
                None => true,
            };
            Cow::Owned(render::prompt(self.style, prompt, online))
        } else {
            Cow::Borrowed(prompt)
        }
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}

impl Validator for ChatHelper {}

impl Helper for ChatHelper {}

/// Lines go through the editor's external printer while it runs.
struct TermUi {
    printer: Option<Mutex<Box<dyn ExternalPrinter + Send>>>,
    exit: Arc<ExitFlag>,
    /// The terminal understands "clear to end of line".
    clear_line: bool,
}

impl Ui for TermUi {
    fn print(&self, line: String) {
        match &self.printer {
            Some(p) => {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                if p.print(format!("{line}\n")).is_err() {
                    println!("{line}");
                }
            }
            None => println!("{line}"),
        }
    }

    fn finish(&self, code: i32, message: Option<String>) -> ! {
        if self.printer.is_some() {
            // Let the editor print what was queued before the end, then
            // stop it drawing and clear the prompt it redrew last.
            std::thread::sleep(EXIT_GRACE);
            if !self.exit.take() {
                // Another thread is already ending the process: wait for
                // it, as the editor does.
                loop {
                    self.exit.act();
                }
            }
            if self.clear_line {
                print!("\r\x1b[K");
            }
        }
        sys::restore_terminal();
        if let Some(m) = message {
            println!("{m}");
        }
        let _ = std::io::stdout().flush();
        std::process::exit(code)
    }
}

/// The style for a terminal: colours unless `NO_COLOR` is set or the
/// terminal is dumb (or stdout is not a terminal at all).
pub fn style(stdout_is_tty: bool) -> Style {
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    Style {
        color: stdout_is_tty && !dumb && !no_color,
        multiline: stdout_is_tty,
    }
}

/// Runs the interactive client on a connected, greeted stream.
pub fn run(
    mut reader: Reader,
    writer: Writer,
    server: &str,
    options: Options,
    style: Style,
) -> i32 {
    let addr = options.dialer.addr();
    sys::save_terminal();
    // SIGTERM or SIGHUP (or a SIGINT sent from outside: in raw mode Ctrl-C is
    // a key, not a signal) while the line editor holds the terminal in raw
    // mode: put the terminal back before leaving, or the shell is left
    // unusable. ctrlc runs this on its own thread, not in signal context.
    let _ = ctrlc::set_handler(|| {
        sys::restore_terminal();
        eprintln!("\r\n*** terminated by a signal");
        std::process::exit(130);
    });
    let exit = Arc::new(ExitFlag::new());
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        // Forced, so the highlighter (our exit hook) runs on every redraw.
        .color_mode(ColorMode::Forced)
        .history_ignore_dups(true)
        .and_then(|b| b.max_history_size(1000))
        .map(|b| b.build());
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot set up the line editor: {e}")),
    };
    let mut editor: Editor<ChatHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => return fail(&format!("cannot set up the line editor: {e}")),
    };
    editor.set_helper(Some(ChatHelper {
        session: None,
        exit: Arc::clone(&exit),
        style,
    }));

    let tls = match options.dialer.is_tls() {
        true => " over TLS",
        false => "",
    };
    println!(
        "Connected to {} at {addr}{tls}.",
        render::escape(server, style)
    );
    let mut ask = || loop {
        match editor.readline("Enter your name: ") {
            Ok(line) => return Some(line),
            Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => return None,
            Err(ReadlineError::Signal(_)) => continue,
            Err(_) => return None,
        }
    };
    let mut say = |s: String| println!("{}", render::hint(style, &s));
    let mut ask_password = |name: &str| password::prompt(&format!("Password for {name}: "));
    let start = link::Start {
        name: options.name.clone(),
        password: options.password.clone(),
        ask_name: &mut ask,
        ask_password: Some(&mut ask_password),
        say: &mut say,
        ask_again: true,
    };
    let signed = match link::register(&mut reader, &writer, start) {
        Ok(signed) => signed,
        Err(Exit { code, message }) => {
            if let Some(m) = message {
                println!("{m}");
            }
            return code;
        }
    };
    let me = signed.name.clone();
    let session = Arc::new(Shared::new(&signed));
    editor.set_helper(Some(ChatHelper {
        session: Some(Arc::clone(&session)),
        exit: Arc::clone(&exit),
        style,
    }));
    let printer = editor
        .create_external_printer()
        .ok()
        .map(|p| Mutex::new(Box::new(p) as Box<dyn ExternalPrinter + Send>));
    let ui = Arc::new(TermUi {
        printer,
        exit: Arc::clone(&exit),
        clear_line: style.multiline && !std::env::var("TERM").is_ok_and(|t| t == "dumb"),
    });
    println!(
        "Signed in as {}. Type a message to send it to everyone, /join #room to talk in a room, /help for commands, /quit to leave.",
        render::escape(&me, style)
    );
    let stopped = match link::spawn(
        reader,
        Link {
            dialer: options.dialer.clone(),
            writer: writer.clone(),
            shared: Arc::clone(&session),
            ui: ui.clone(),
            style,
            reconnect: options.reconnect,
            interactive: true,
        },
    ) {
        Ok(stopped) => stopped,
        Err(e) => {
            return fail(&format!("cannot start: {e}"));
        }
    };
    app::execute(Command::List, &writer, &session, ui.as_ref(), style);

    let mut interrupted = false;
    // A line entered while not connected, put back into the editor.
    let mut kept = String::new();
    loop {
        exit.act();
        // The target moves only on our own commands, so it is current here.
        let prompt = {
            let s = session.lock();
            prompt(s.me(), s.current_room())
        };
        let line = match editor.readline_with_initial(&prompt, (&std::mem::take(&mut kept), "")) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                if interrupted {
                    break;
                }
                interrupted = true;
                ui.print(render::hint(
                    style,
                    "press Ctrl-C again, Ctrl-D or type /quit to leave",
                ));
                continue;
            }
            Err(ReadlineError::Signal(_)) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                ui.print(render::hint(style, &format!("input failed: {e}")));
                break;
            }
        };
        interrupted = false;
        let command = command::parse(&line);
        // A password typed on the line stays out of the history.
        let secret = matches!(command, Ok(Command::Register { .. }))
            || line
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("/register");
        if !line.trim().is_empty() && !secret {
            let _ = editor.add_history_entry(line.as_str());
        }
        let command = match command {
            Ok(Command::Register { password: None }) => {
                if let Some(why) = app::registered_already(&session) {
                    ui.print(render::hint(style, &why));
                    continue;
                }
                let me = session.lock().me().to_string();
                match password::prompt_new(&me) {
                    Ok(p) => Command::Register { password: Some(p) },
                    Err(why) => {
                        ui.print(render::hint(style, &format!("{why}; not registered")));
                        continue;
                    }
                }
            }
            Ok(c) => c,
            Err(e) => {
                ui.print(render::hint(style, &e.to_string()));
                continue;
            }
        };
        match app::execute(command, &writer, &session, ui.as_ref(), style) {
            Outcome::Done | Outcome::Refused => {}
            Outcome::Quit => break,
            Outcome::Offline => {
                ui.print(render::hint(style, &app::offline_hint(&session)));
                kept = line;
            }
        }
    }
    app::quit(&writer, &session, &stopped);
    code::OK
}

fn fail(message: &str) -> i32 {
    eprintln!("{message}");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn names() -> Known {
        Known {
            names: strings(&["alice", "Bob", "bobby", "carol"]),
            joined: strings(&["#rust"]),
            rooms: strings(&["#go", "#rust", "#ruby"]),
        }
    }

    #[test]
    fn completes_rooms_after_room_commands_and_hash() {
        let k = names();
        assert_eq!(
            completions("/join #ru", 9, &k),
            (6, strings(&["#rust ", "#ruby "]))
        );
        assert_eq!(
            completions("/join ", 6, &k),
            (6, strings(&["#go ", "#rust ", "#ruby "]))
        );
        assert_eq!(completions("/join g", 7, &k), (6, strings(&["#go "])));
        // Only rooms we are in can be left, switched to or listed.
        for cmd in ["/part ", "/switch ", "/names "] {
            assert_eq!(
                completions(cmd, cmd.len(), &k),
                (cmd.len(), strings(&["#rust "])),
                "{cmd}"
            );
        }
        assert_eq!(
            completions("/msg ", 5, &k),
            (
                5,
                strings(&["alice ", "Bob ", "bobby ", "carol ", "#rust "])
            )
        );
        assert_eq!(completions("/msg #", 6, &k), (5, strings(&["#rust "])));
        // Only the first argument is a room; the text after it is names.
        assert_eq!(
            completions("/join #go b", 11, &k),
            (10, strings(&["Bob ", "bobby "]))
        );
        // A `#` word anywhere is a room.
        assert_eq!(completions("see #g", 6, &k), (4, strings(&["#go "])));
    }

    #[test]
    fn the_prompt_shows_the_room() {
        assert_eq!(prompt("alice", None), "alice> ");
        assert_eq!(prompt("alice", Some("#rust")), "alice #rust> ");
        assert_eq!(prompt("alice", Some("#a\u{1b}")), "alice #a^[> ");
    }

    #[test]
    fn completes_names_after_at_space_and_comma() {
        assert_eq!(
            completions("@bo", 3, &names()),
            (1, vec!["Bob ".to_string(), "bobby ".to_string()])
        );
        assert_eq!(
            completions("/msg alice,ca", 13, &names()),
            (11, vec!["carol ".to_string()])
        );
        assert_eq!(
            completions("/msg c", 6, &names()),
            (5, vec!["carol ".to_string()])
        );
        // In the middle of a line, no space is added.
        assert_eq!(
            completions("/msg c hi", 6, &names()),
            (5, vec!["carol".to_string()])
        );
        assert_eq!(completions("hello x", 7, &names()), (6, vec![]));
    }

    #[test]
    fn completes_commands_at_the_start() {
        assert_eq!(
            completions("/ms", 3, &names()),
            (0, vec!["/msg ".to_string()])
        );
        assert_eq!(
            completions("/Q", 2, &names()),
            (0, vec!["/quit ".to_string()])
        );
        let (_, all) = completions("/", 1, &names());
        assert_eq!(all.len(), SLASH_COMMANDS.len());
    }

    #[test]
    fn exit_is_taken_once() {
        let f = ExitFlag::new();
        assert!(!f.taken());
        assert!(f.take());
        assert!(f.taken());
        assert!(!f.take());
    }
}
