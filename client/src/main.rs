//! `client`: chat from a terminal, or from a script, with the broker's v1
//! wire contract (see `docs/client.md`).
//!
//! Modules: [`command`] parses typed lines, [`render`] draws events safely,
//! [`session`] remembers the conversation, [`net`] owns the socket, [`app`]
//! ties them together for the two front ends, [`terminal`] (a line editor
//! with an external printer) and [`script`] (plain lines on stdin/stdout).

mod app;
mod command;
mod net;
mod render;
mod script;
mod session;
mod sys;
mod terminal;

use clap::Parser;
use std::io::IsTerminal;

/// Chat from a terminal. Without a terminal on stdin, reads one command per
/// line and prints one line per event.
#[derive(Parser, Debug)]
#[command(name = "client", version, about)]
struct Args {
    /// Broker address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: String,
    /// Your name; asked for if not given.
    #[arg(long)]
    name: Option<String>,
}

fn main() {
    let args = Args::parse();
    std::process::exit(run(args));
}

fn run(args: Args) -> i32 {
    let interactive = std::io::stdin().is_terminal();
    let stream = match net::connect(&args.addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot connect to {}: {e}", args.addr);
            return 1;
        }
    };
    let read_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot use the connection: {e}");
            return 1;
        }
    };
    let mut reader = net::Reader::new(read_half);
    let writer = net::Writer::new(stream);
    let server = match app::greet(&mut reader, &args.addr) {
        Ok(s) => s,
        Err(app::Exit { code, message }) => {
            if let Some(m) = message {
                eprintln!("{m}");
            }
            return code;
        }
    };
    if interactive {
        let style = terminal::style(std::io::stdout().is_terminal());
        terminal::run(reader, writer, &args.addr, &server, args.name, style)
    } else {
        script::run(reader, writer, &args.addr, args.name)
    }
}
