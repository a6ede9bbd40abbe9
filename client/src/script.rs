//! The scripted front end (stdin is not a terminal): the same commands, one
//! per line; plain output, one line per event, no escape codes. `/join` and
//! `/part` wait for their answer (see [`crate::app`]), so a line after
//! `/join #room` goes to the room. At the end of input it waits for
//! receipts if asked to (`--wait-receipts`), says `QUIT`, shows what still
//! arrives until `BYE` (bounded wait) and exits with the worst thing that
//! happened ([`crate::session::code`]), so a script can tell a message that
//! reached nobody from one that was delivered.
//!
//! Without `--reconnect` the end of the connection ends the script (exit
//! 1). With it, a line read while the link is away waits until the link is
//! back, then is carried out: stdin is not read meanwhile.

use crate::app::{self, Exit, Options, Outcome, Shared, Ui};
use crate::command;
use crate::link::{self, Link};
use crate::net::{Reader, Writer};
use crate::render::{self, Style};
use crate::session::code;
use std::io::{BufRead, Write};
use std::sync::Arc;

/// Lines go to stdout; the end of the conversation ends the process.
struct PlainUi;

impl Ui for PlainUi {
    fn print(&self, line: String) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn finish(&self, code: i32, message: Option<String>) -> ! {
        if let Some(m) = message {
            if code == 0 {
                self.print(m);
            } else {
                eprintln!("{m}");
            }
        }
        let _ = std::io::stdout().flush();
        std::process::exit(code)
    }
}

/// One line of stdin, invalid UTF-8 replaced; `None` at the end.
fn read_line(input: &mut dyn BufRead) -> Option<String> {
    let mut buf = Vec::new();
    match input.read_until(b'\n', &mut buf) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(&buf)
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
    }
}

/// Runs the scripted client on a connected, greeted stream; returns the
/// exit code.
pub fn run(mut reader: Reader, writer: Writer, options: Options) -> i32 {
    let style = Style::PLAIN;
    let ui = Arc::new(PlainUi);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    // A refused --name ends a script (its next line is a command, not a
    // name); without --name, names are read from the first lines.
    let ask_again = options.name.is_none();
    let mut ask = || {
        ui.print("Enter your name:".to_string());
        read_line(&mut input)
    };
    let mut say = |s: String| ui.print(render::hint(style, &s));
    let start = link::Start {
        name: options.name.clone(),
        password: options.password.clone(),
        ask_name: &mut ask,
        // Nobody to ask: a password comes from --password or
        // CHAT_PASSWORD, or the script ends (code 6).
        ask_password: None,
        say: &mut say,
        ask_again,
    };
    let signed = match link::register(&mut reader, &writer, start) {
        Ok(signed) => signed,
        Err(Exit { code, message }) => {
            if let Some(m) = message {
                match code {
                    0 => println!("{m}"),
                    _ => eprintln!("{m}"),
                }
            }
            return code;
        }
    };
    ui.print(format!("signed in as {}", signed.name));
    let shared = Arc::new(Shared::new(&signed));
    if options.wait_receipts.is_some() {
        shared.lock().keep_until_read();
    }
    let stopped = match link::spawn(
        reader,
        Link {
            dialer: options.dialer.clone(),
            writer: writer.clone(),
            shared: Arc::clone(&shared),
            ui: ui.clone(),
            style,
            reconnect: options.reconnect,
            interactive: false,
        },
    ) {
        Ok(stopped) => stopped,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return code::CONNECTION;
        }
    };
    'lines: while let Some(line) = read_line(&mut input) {
        let command = match command::parse(&line) {
            Ok(c) => c,
            Err(e) => {
                ui.print(render::hint(style, &e.to_string()));
                shared.lock().fail(code::USAGE);
                continue;
            }
        };
        loop {
            match app::execute(command.clone(), &writer, &shared, ui.as_ref(), style) {
                Outcome::Done => break,
                Outcome::Refused => {
                    shared.lock().fail(code::USAGE);
                    break;
                }
                Outcome::Quit => break 'lines,
                // The link is reconnecting: carry the line out once it is
                // back (or, without --reconnect, the link ends the process).
                Outcome::Offline => {
                    if !shared.wait_online() {
                        break 'lines;
                    }
                }
            }
        }
    }
    if let Some(wait) = options.wait_receipts {
        wait_for_receipts(&shared, ui.as_ref(), wait);
    }
    app::quit(&writer, &shared, &stopped);
    let code = shared.lock().result();
    code
}

/// `--wait-receipts`: waits until everyone our messages reached has shown
/// them, at most `wait`; says which were not shown by all.
fn wait_for_receipts(shared: &Shared, ui: &dyn Ui, wait: std::time::Duration) {
    if shared.wait_all_read(wait) {
        return;
    }
    let lines: Vec<String> = {
        let session = shared.lock();
        session
            .unread()
            .into_iter()
            .map(|(id, read, queued, snippet)| {
                format!(
                    "not shown by everyone within {} s: #{id} \"{snippet}\" ({read}/{queued} read)",
                    wait.as_secs_f64()
                )
            })
            .collect()
    };
    shared.lock().fail(code::NO_RECEIPT);
    if lines.is_empty() {
        let line = format!(
            "the server did not answer every message within {} s",
            wait.as_secs_f64()
        );
        ui.print(render::error(Style::PLAIN, app::now_ms(), &line));
    }
    for line in lines {
        ui.print(render::error(Style::PLAIN, app::now_ms(), &line));
    }
}
