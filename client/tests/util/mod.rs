//! Test helpers: a real broker in-process on 127.0.0.1:0, raw TCP peers,
//! and the built client binary driven through pipes. Every wait is bounded
//! by a deadline; nothing sleeps for a fixed time.
#![allow(dead_code)]

use protocol::{Decoded, Event, Limits};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long any single expectation may wait.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Starts a broker for tests: no rate limit, no stats lines, quiet log.
pub fn broker() -> broker::Broker {
    let config = broker::Config {
        rate_per_sec: 0,
        stats_interval_secs: 0,
        log_level: "error".into(),
        ..broker::Config::default()
    };
    broker::log::set_level(broker::log::Level::Error);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    broker::start(listener, config).unwrap()
}

/// One frame a raw peer received: header line and body (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub line: String,
    pub body: Option<String>,
}

impl Got {
    pub fn field(&self, i: usize) -> &str {
        self.line.split(' ').nth(i).unwrap_or("")
    }
    pub fn verb(&self) -> &str {
        self.field(0)
    }
}

/// A raw TCP client speaking the wire protocol by hand.
pub struct Peer {
    pub name: String,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    /// Connects, reads `HELLO`, registers `name`.
    pub fn join(addr: SocketAddr, name: &str) -> Peer {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut p = Peer {
            name: name.to_string(),
            stream,
            buf: Vec::new(),
        };
        assert_eq!(p.next().verb(), "HELLO");
        p.send(&format!("NAME {name}\n"));
        assert_eq!(p.next().line, format!("OK NAME {name}"));
        p
    }

    pub fn send(&mut self, wire: &str) {
        self.stream.write_all(wire.as_bytes()).unwrap();
    }

    /// The next frame, or a panic at the deadline.
    pub fn next(&mut self) -> Got {
        self.try_next(DEADLINE)
            .unwrap_or_else(|| panic!("{}: no frame within {DEADLINE:?}", self.name))
    }

    /// The next frame within `wait`, or `None`.
    pub fn try_next(&mut self, wait: Duration) -> Option<Got> {
        let deadline = Instant::now() + wait;
        let limits = Limits {
            max_line: 1 << 20,
            max_body: 1 << 20,
            max_targets: 1000,
        };
        loop {
            match Event::decode(&self.buf, &limits) {
                Decoded::Frame { consumed, frame } => {
                    let body = match frame {
                        Event::Msg { body, .. } | Event::Info { text: body } => {
                            Some(String::from_utf8_lossy(body).into_owned())
                        }
                        _ => None,
                    };
                    let raw = String::from_utf8_lossy(&self.buf[..consumed]).into_owned();
                    let line = raw.lines().next().unwrap_or("").to_string();
                    self.buf.drain(..consumed);
                    return Some(Got { line, body });
                }
                Decoded::Incomplete => {}
                other => panic!("{}: bad frame {other:?}", self.name),
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("{}: {e}", self.name),
            }
        }
    }

    /// Reads frames until one with verb `verb`; returns it.
    pub fn expect(&mut self, verb: &str) -> Got {
        loop {
            let got = self.next();
            if got.verb() == verb {
                return got;
            }
        }
    }

    /// Reads frames until the header line is exactly `line`.
    pub fn expect_line(&mut self, line: &str) -> Got {
        loop {
            let got = self.next();
            if got.line == line {
                return got;
            }
        }
    }

    /// The next `MSG`, skipping everything else.
    pub fn next_msg(&mut self) -> Got {
        self.expect("MSG")
    }
}

/// The client binary, run with stdin/stdout/stderr piped (scripted mode).
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    err_lines: Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
    /// Raw stdout bytes seen so far, to check for escape codes.
    pub raw: Vec<u8>,
    /// Every stderr line, collected by [`Client::wait`].
    pub errors: Vec<String>,
}

pub fn client_cmd(addr: SocketAddr, name: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_client"));
    cmd.arg("--addr").arg(addr.to_string());
    if let Some(n) = name {
        cmd.arg("--name").arg(n);
    }
    cmd
}

fn pump(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx
                        .send(String::from_utf8_lossy(&line).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    rx
}

impl Client {
    /// Starts the client as `name` (or without `--name`).
    pub fn start(addr: SocketAddr, name: Option<&str>) -> Client {
        let mut child = client_cmd(addr, name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = pump(child.stdout.take().unwrap());
        let err_lines = pump(child.stderr.take().unwrap());
        Client {
            child,
            stdin,
            lines,
            err_lines,
            seen: Vec::new(),
            raw: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Starts the client and waits until it is signed in.
    pub fn signed_in(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::start(addr, Some(name));
        c.expect_line(&format!("signed in as {name}"));
        c
    }

    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Ends the script: the client should QUIT and exit.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line containing `needle`; returns it.
    pub fn expect_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.raw.extend_from_slice(line.as_bytes());
                    let line = line.trim_end_matches('\n').to_string();
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no line containing {needle:?} within {DEADLINE:?}; saw:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr_now().join("")
                ),
            }
        }
    }

    /// Everything on stderr so far.
    pub fn stderr_now(&mut self) -> Vec<String> {
        self.err_lines.try_iter().collect()
    }

    /// Waits for the process to end; collects the rest of stdout.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // stdout and stderr are closed now: drain what is left.
                while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
                    self.raw.extend_from_slice(line.as_bytes());
                    self.seen.push(line.trim_end_matches('\n').to_string());
                }
                while let Ok(line) = self.err_lines.recv_timeout(DEADLINE) {
                    self.errors.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("client did not exit; saw:\n{}", self.seen.join("\n"));
            }
            // Deadline-bounded polling of the child's state.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes stdin and waits for a clean exit.
    pub fn finish(&mut self) -> ExitStatus {
        self.close_stdin();
        self.wait()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
