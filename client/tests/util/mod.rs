//! Test helpers for the client binary: the broker it talks to (from
//! `testkit`) and the built client driven through pipes. Every wait is
//! bounded by a deadline; nothing sleeps for a fixed time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use testkit::DEADLINE;

/// Starts a broker for the client tests: no rate limit, since a script
/// types far faster than a person.
pub fn broker() -> broker::Broker {
    testkit::start_with(|c| c.rate_per_sec = 0)
}

/// A broker as [`broker`] starts it, and the configuration it runs with,
/// for starting it again ([`broker_at`]).
pub fn restartable() -> (broker::Broker, broker::Config) {
    let mut used = None;
    let b = testkit::start_with(|c| {
        c.rate_per_sec = 0;
        used = Some(c.clone());
    });
    (b, used.unwrap())
}

/// A broker on `addr`, where one with `config` was stopped: the restart the
/// client should come back to. (The configuration is testkit's own, so the
/// new broker is as test-friendly as the first, whatever keys the broker
/// grows.) Starting waits (bounded) for the old listeners to be gone: the
/// native one, and any other `config` names by its port.
pub fn broker_at(addr: SocketAddr, config: broker::Config) -> broker::Broker {
    let mut started = None;
    testkit::wait_for("the old broker's addresses to be free", || {
        started = broker::bind(addr)
            .ok()
            .and_then(|listener| broker::start(listener, config.clone()).ok());
        started.is_some()
    });
    started.unwrap()
}

/// A broker with accounts and stored messages (a fresh `data_dir`) and
/// TLS on a fresh self-signed certificate: the broker, its configuration
/// (for [`broker_at`]) and the certificate's directory.
pub fn trusted_broker() -> (broker::Broker, broker::Config, PathBuf) {
    let certs = testkit::tls::cert_dir();
    let data = testkit::data_dir();
    let mut used = None;
    let b = testkit::start_with(|c| {
        c.rate_per_sec = 0;
        c.data_dir = data;
        testkit::tls::use_certs(c, &certs);
        used = Some(c.clone());
    });
    (b, used.unwrap(), certs)
}

/// `--ca DIR/cert.pem`: trust the certificate in `dir`.
pub fn ca_flag(dir: &Path) -> [String; 2] {
    [
        "--ca".to_string(),
        dir.join("cert.pem").display().to_string(),
    ]
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

/// The client binary with `--addr` and, if given, `--name`.
pub fn client_cmd(addr: SocketAddr, name: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_client"));
    // Whatever the environment running the tests holds.
    cmd.env_remove("CHAT_PASSWORD");
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
        Client::start_with(addr, name, &[])
    }

    /// Starts the client as `name` with more flags.
    pub fn start_with(addr: SocketAddr, name: Option<&str>, flags: &[&str]) -> Client {
        let mut cmd = client_cmd(addr, name);
        cmd.args(flags);
        Client::start_cmd(cmd)
    }

    /// Starts the client as `name` with more flags and `CHAT_PASSWORD`.
    pub fn start_with_password(
        addr: SocketAddr,
        name: &str,
        flags: &[&str],
        password: &str,
    ) -> Client {
        let mut cmd = client_cmd(addr, Some(name));
        cmd.args(flags).env("CHAT_PASSWORD", password);
        Client::start_cmd(cmd)
    }

    /// Starts `cmd` (made with [`client_cmd`]) with its standard streams
    /// piped.
    pub fn start_cmd(mut cmd: Command) -> Client {
        let mut child = cmd
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
        Client::signed_in_with(addr, name, &[])
    }

    /// Starts the client with more flags and waits until it is signed in.
    pub fn signed_in_with(addr: SocketAddr, name: &str, flags: &[&str]) -> Client {
        let mut c = Client::start_with(addr, Some(name), flags);
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

    /// Closes stdin and waits for the client to exit.
    pub fn finish(&mut self) -> ExitStatus {
        self.close_stdin();
        self.wait()
    }

    /// Closes stdin, waits for the exit and returns its code.
    pub fn finish_code(&mut self) -> Option<i32> {
        self.finish().code()
    }

    /// How many stdout lines seen so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
