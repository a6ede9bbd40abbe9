//! What a person watching a run sees on stderr: the scenario header first
//! (what will run, and where), then progress. On a terminal progress is one
//! line redrawn in place; when stderr is a file or a pipe it is one plain
//! line per second, so a log reads top to bottom without carriage returns.

use crate::args::{Mode, Settings, ROOM};
use crate::report::fmt_f;
use std::fmt;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// The scenario header: what will run and against what (`addrs`, one per
/// node), in the same two-column layout as the summary that follows it.
pub fn scenario(s: &Settings, addrs: &[SocketAddr], in_process: bool) -> String {
    let others = s.clients.saturating_sub(1);
    let whom = match s.mode {
        Mode::All => format!("every message to all {others} others"),
        Mode::Direct => "every message to one random other client".to_string(),
        Mode::Multi => format!("every message to {} random others", s.targets),
        Mode::Room => format!("all in {}, every message to the {others} others", ROOM),
    };
    let several = addrs.len() > 1;
    let servers = if several { "servers" } else { "server" };
    let server = match (in_process, s.broker_pids.as_slice()) {
        (true, _) => "in-process broker, rate limits off".to_string(),
        (false, []) => format!("external {servers}"),
        (false, [pid]) => format!("external {servers}, pid {pid}"),
        (false, pids) => {
            let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
            format!("external {servers}, pids {}", pids.join(", "))
        }
    };
    let addr = addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let nodes = if several {
        let n = addrs.len();
        format!(
            "\x20 nodes             {n}: client i on address i mod {n}; latency also \
             reported apart for same-node and cross-node deliveries\n"
        )
    } else {
        String::new()
    };
    let pacing = match s.rate {
        Some(r) => format!("open loop, {} messages/s per sender", fmt_f(r)),
        None => format!("closed loop, window {}, refill {}", s.window, s.refill),
    };
    let threads = if s.threads == 1 { "thread" } else { "threads" };
    let over = if s.tls.is_some() { " over TLS" } else { "" };
    let warmup = if s.warmup.is_zero() {
        "no warm-up".to_string()
    } else {
        format!("{} s warm-up", fmt_f(s.warmup.as_secs_f64()))
    };
    format!(
        "loadgen: {} clients ({} sending), mode {}: {whom}, {} B bodies\n\
         \x20 target            {} door{over} at {addr} ({server})\n\
         \x20 timing            {warmup}, {} s measured, then up to {} s for messages still on their way\n\
         \x20 pacing            {pacing}; {} network {threads}\n{nodes}",
        s.clients,
        s.senders,
        s.mode.as_str(),
        s.size,
        s.door.as_str(),
        fmt_f(s.duration.as_secs_f64()),
        fmt_f(s.drain.as_secs_f64()),
        s.threads,
    )
}

/// The part of the run a progress reading was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sending, not yet measured.
    WarmUp,
    /// Sending, measured.
    Measuring,
    /// Senders stopped; waiting for what is still on its way.
    Draining,
}

/// One look at the counters, as the progress line shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// Clients are still connecting and registering.
    Registering {
        /// Clients registered so far.
        registered: usize,
        /// Clients asked for.
        clients: usize,
    },
    /// Senders have started.
    Sending {
        /// Which part of the run.
        phase: Phase,
        /// Seconds since sending started.
        elapsed_s: f64,
        /// Messages sent so far.
        sent: u64,
        /// Deliveries received so far.
        delivered: u64,
        /// Deliveries promised so far.
        expected: u64,
        /// Deliveries per second since the previous reading.
        per_sec: f64,
    },
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reading::Registering {
                registered,
                clients,
            } => write!(f, "registering {registered}/{clients} clients"),
            Reading::Sending {
                phase,
                elapsed_s,
                sent,
                delivered,
                expected,
                per_sec,
            } => {
                let name = match phase {
                    Phase::WarmUp => "warm-up",
                    Phase::Measuring => "measuring",
                    Phase::Draining => "draining",
                };
                write!(
                    f,
                    "{name:<9} {elapsed_s:5.1} s  sent {sent}  delivered {delivered}  \
                     {per_sec:.0} deliveries/s"
                )?;
                // While sending, deliveries run ahead of the ACKs that
                // promise them; only once senders stop is the gap a count
                // of what is still to come.
                let owed = expected.saturating_sub(delivered);
                if phase == Phase::Draining && owed > 0 {
                    write!(f, "  {owed} still on their way")?;
                }
                Ok(())
            }
        }
    }
}

/// How progress is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A terminal: one line, redrawn in place four times a second.
    Live,
    /// A file or a pipe: one plain line per second.
    Lines,
}

impl Style {
    /// `Live` if stderr is a terminal, `Lines` otherwise.
    pub fn for_stderr() -> Style {
        if std::io::stderr().is_terminal() {
            Style::Live
        } else {
            Style::Lines
        }
    }

    /// Nanoseconds between two readings.
    pub fn every_ns(self) -> u64 {
        match self {
            Style::Live => 250_000_000,
            Style::Lines => 1_000_000_000,
        }
    }
}

/// Writes the header and the progress readings to stderr. Write errors are
/// ignored: a closed stderr must not stop a load test.
#[derive(Debug)]
pub struct Console {
    style: Style,
    /// A live line is on the screen and has to be cleared.
    drawn: bool,
}

impl Console {
    /// A console writing progress in `style`.
    pub fn new(style: Style) -> Console {
        Console {
            style,
            drawn: false,
        }
    }

    /// The style progress is written in.
    pub fn style(&self) -> Style {
        self.style
    }

    /// Prints the scenario header (before any progress).
    pub fn header(&mut self, text: &str) {
        self.clear();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    /// Shows one reading: redraws the live line, or writes a line.
    pub fn show(&mut self, reading: &Reading) {
        let mut err = std::io::stderr().lock();
        let _ = match self.style {
            Style::Live => write!(err, "\r\x1b[K{reading}"),
            Style::Lines => writeln!(err, "{reading}"),
        };
        let _ = err.flush();
        self.drawn = self.style == Style::Live;
    }

    /// Clears the live line, so that what follows starts on a clean line.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

/// True when stdout and stderr are the same file: one terminal, or a log
/// taken with `> log 2>&1`. The header printed on stderr is then already
/// right above the summary, which need not repeat it.
pub fn stdout_is_stderr() -> bool {
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        let meta = File::from(fd.try_clone_to_owned().ok()?).metadata().ok()?;
        Some((meta.dev(), meta.ino(), meta.rdev()))
    };
    let out = std::io::stdout();
    let err = std::io::stderr();
    match (id(out.as_fd()), id(err.as_fd())) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Args;
    use clap::Parser;

    fn settings(args: &[&str]) -> Settings {
        let mut v = vec!["loadgen"];
        v.extend_from_slice(args);
        Args::try_parse_from(v).unwrap().settings().unwrap()
    }

    #[test]
    fn the_header_says_what_will_run_and_where() {
        let addr: SocketAddr = ([127, 0, 0, 1], 40_001).into();
        let addr = &[addr][..];
        let h = scenario(&settings(&[]), addr, true);
        assert!(h.starts_with("loadgen: 100 clients (10 sending), mode all: every message to all 99 others, 100 B bodies\n"), "{h}");
        assert!(
            h.contains("native door at 127.0.0.1:40001 (in-process broker"),
            "{h}"
        );
        assert!(
            h.contains("1 s warm-up, 5 s measured, then up to 5 s"),
            "{h}"
        );
        assert!(
            h.contains("closed loop, window 8, refill 1; 2 network threads"),
            "{h}"
        );
        assert_eq!(h.lines().count(), 4, "{h}");

        let s = settings(&[
            "--door",
            "irc",
            "--mode",
            "room",
            "--clients",
            "30",
            "--rate",
            "250",
            "--threads",
            "1",
            "--broker-pid",
            "77",
        ]);
        let h = scenario(&s, &[([127, 0, 0, 1], 6667).into()], false);
        assert!(
            h.contains("mode room: all in #load, every message to the 29 others"),
            "{h}"
        );
        assert!(
            h.contains("irc door at 127.0.0.1:6667 (external server, pid 77)"),
            "{h}"
        );
        assert!(
            h.contains("open loop, 250 messages/s per sender; 1 network thread\n"),
            "{h}"
        );
        let h = scenario(&settings(&["--warmup", "0"]), addr, true);
        assert!(h.contains("no warm-up, 5 s measured"), "{h}");
        let h = scenario(&settings(&["--tls", "--door", "web"]), addr, true);
        assert!(
            h.contains("web door over TLS at 127.0.0.1:40001 (in-process"),
            "{h}"
        );
    }

    #[test]
    fn the_header_names_every_node() {
        let list = "127.0.0.1:7831,127.0.0.1:7832,127.0.0.1:7833";
        let s = settings(&["--addr", list, "--broker-pid", "11,12,13"]);
        let h = scenario(&s, &s.addrs, false);
        assert!(
            h.contains(
                "native door at 127.0.0.1:7831, 127.0.0.1:7832, 127.0.0.1:7833 \
                 (external servers, pids 11, 12, 13)\n"
            ),
            "{h}"
        );
        assert!(
            h.contains("  nodes             3: client i on address i mod 3;"),
            "{h}"
        );
        assert_eq!(h.lines().count(), 5, "{h}");
        let s = settings(&["--addr", "127.0.0.1:7831", "--broker-pid", "11"]);
        let h = scenario(&s, &s.addrs, false);
        assert!(
            h.contains("at 127.0.0.1:7831 (external server, pid 11)\n"),
            "{h}"
        );
        assert_eq!(h.lines().count(), 4, "{h}");
    }

    #[test]
    fn readings_are_one_plain_line() {
        let r = Reading::Registering {
            registered: 3,
            clients: 10,
        };
        assert_eq!(r.to_string(), "registering 3/10 clients");
        let r = Reading::Sending {
            phase: Phase::Measuring,
            elapsed_s: 2.04,
            sent: 120,
            delivered: 1000,
            expected: 1080,
            per_sec: 499.6,
        };
        assert_eq!(
            r.to_string(),
            "measuring   2.0 s  sent 120  delivered 1000  500 deliveries/s"
        );
        assert!(!r.to_string().contains(['\r', '\n']));
        let draining = |delivered| Reading::Sending {
            phase: Phase::Draining,
            elapsed_s: 3.0,
            sent: 120,
            delivered,
            expected: 1080,
            per_sec: 20.0,
        };
        assert!(draining(1000)
            .to_string()
            .ends_with("  80 still on their way"));
        assert!(draining(1080).to_string().ends_with("20 deliveries/s"));
    }

    #[test]
    fn a_file_gets_a_line_a_second() {
        assert_eq!(Style::Lines.every_ns(), 1_000_000_000);
        assert!(Style::Live.every_ns() < Style::Lines.every_ns());
    }
}
