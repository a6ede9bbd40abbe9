//! The scripted front end (stdin is not a terminal): the same commands, one
//! per line; plain output, one line per event, no escape codes. `/join` and
//! `/part` wait for their answer (see [`crate::app`]), so a line after
//! `/join #room` goes to the room. At the end of input it says `QUIT`, shows
//! what still arrives until `BYE` (bounded wait) and exits 0.

use crate::app::{self, Exit, Shared, Ui};
use crate::command;
use crate::net::{Reader, Writer};
use crate::render::{self, Style};
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

/// Runs the scripted client on a connected, greeted stream.
pub fn run(mut reader: Reader, writer: Writer, addr: &str, name: Option<String>) -> i32 {
    let style = Style::PLAIN;
    let ui = Arc::new(PlainUi);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    // A refused --name ends a script (its next line is a command, not a
    // name); without --name, names are read from the first lines.
    let ask_again = name.is_none();
    let mut ask = || {
        ui.print("Enter your name:".to_string());
        read_line(&mut input)
    };
    let mut say = |s: String| ui.print(render::hint(style, &s));
    let registered = app::register(&mut reader, &writer, name, &mut ask, &mut say, ask_again);
    let me = match registered {
        Ok(me) => me,
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
    ui.print(format!("signed in as {me}"));
    let session = Arc::new(Shared::new(&me));
    let stopped = match app::spawn_reader(
        reader,
        writer.clone(),
        Arc::clone(&session),
        ui.clone(),
        style,
        addr.to_string(),
    ) {
        Ok(stopped) => stopped,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return 1;
        }
    };
    while let Some(line) = read_line(&mut input) {
        match command::parse(&line) {
            Ok(c) => {
                if !app::execute(c, &writer, &session, ui.as_ref(), style) {
                    break;
                }
            }
            Err(e) => ui.print(render::hint(style, &e.to_string())),
        }
    }
    app::quit(&writer, &session, &stopped);
    0
}
