//! `client`: chat from a terminal, or from a script, with the broker's v1
//! wire contract (see `docs/client.md`).
//!
//! Modules: [`command`] parses typed lines, [`render`] draws events safely,
//! [`session`] remembers the conversation, [`net`] owns the socket (and
//! TLS), [`link`] keeps the connection (signing in, reading, reconnecting),
//! [`password`] gets and guards passwords, [`app`] ties them together for
//! the two front ends, [`terminal`] (a line editor with an external
//! printer) and [`script`] (plain lines on stdin/stdout).

mod app;
mod command;
mod link;
mod net;
mod password;
mod render;
mod script;
mod session;
mod sys;
mod terminal;

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The password of your account, sent if the broker says the name is
    /// one. Other users of this machine can read it with `ps`: prefer the
    /// CHAT_PASSWORD environment variable, or, at a terminal, the prompt
    /// (no echo) that appears when it is needed.
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
    /// Connect with TLS (to the broker's tls_listen port), checking the
    /// broker's certificate against the system's trusted roots, or --ca.
    #[arg(long)]
    tls: bool,
    /// With TLS, trust the certificates in this PEM file instead of the
    /// system's roots: the broker's own (cert.pem from `broker gen-cert`)
    /// or the CA that signed it. Implies --tls.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// When the connection drops or the broker restarts, connect again
    /// (waiting 1 s, doubling to 30 s) and take the same name and rooms.
    /// The default at a terminal; scripts turn it on with this flag.
    #[arg(long, overrides_with = "no_reconnect")]
    reconnect: bool,
    /// Exit when the connection ends instead of reconnecting. The default
    /// for scripts (stdin not a terminal).
    #[arg(long, overrides_with = "reconnect")]
    no_reconnect: bool,
    /// Scripts: after the last line, wait up to SECS seconds until everyone
    /// a message reached has shown it (their receipts), and exit 5 if some
    /// never did. Messages to everyone get no receipts and are not waited
    /// for.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    wait_receipts: Option<Duration>,
}

/// A number of seconds, whole or not (`5`, `0.5`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("expected a number of seconds ≥ 0 (like 5 or 0.5), not {s:?}"))
}

fn main() {
    let args = Args::parse();
    std::process::exit(run(args));
}

fn run(args: Args) -> i32 {
    let interactive = std::io::stdin().is_terminal();
    let reconnect = match (args.reconnect, args.no_reconnect) {
        (true, _) => true,
        (_, true) => false,
        // A script's exit code is its only report, and a broker that may
        // never come back would hang it: scripts opt in (docs/client.md).
        _ => interactive,
    };
    // A bad --ca, --addr for TLS or password is a usage error (2), as
    // clap's own are.
    let dialer = match args.tls || args.ca.is_some() {
        true => match net::Dialer::tls(&args.addr, args.ca.as_deref()) {
            Ok(d) => d,
            Err(why) => return usage(&why),
        },
        false => net::Dialer::plain(&args.addr),
    };
    let password = match password::from_args(args.password.as_deref()) {
        Ok(p) => p,
        Err(why) => return usage(&why),
    };
    let (reader, stream, server) = match link::open(&dialer) {
        Ok(opened) => opened,
        Err(app::Exit { code, message }) => {
            if let Some(m) = message {
                eprintln!("{m}");
            }
            return code;
        }
    };
    let writer = net::Writer::new(stream);
    let options = app::Options {
        dialer,
        name: args.name,
        password,
        reconnect,
        wait_receipts: args.wait_receipts,
    };
    if interactive {
        let style = terminal::style(std::io::stdout().is_terminal());
        terminal::run(reader, writer, &server, options, style)
    } else {
        script::run(reader, writer, options)
    }
}

/// A usage error: said on stderr, exit 2.
fn usage(why: &str) -> i32 {
    eprintln!("client: {why}");
    session::code::USAGE
}
