//! A real `redis-server` for cluster tests: started on a free loopback
//! port in a directory of its own, with nothing persisted, and killed when
//! dropped. `stop` and `start` again on the same port stand for "Redis went
//! away and came back" (empty, as a restarted Redis without persistence
//! is); `freeze` and `thaw` stand for a Redis that hangs without closing
//! its connections.
//!
//! `redis-server` must be installed: `./test.sh` installs it (and `.ci/run`
//! does in CI). A test that needs it and can't find it fails loudly; it is
//! never skipped.
//!
//! ```no_run
//! let redis = testkit::redis::RedisServer::start_new();
//! assert_eq!(redis.command(&["PING"]), "PONG");
//! let url = redis.url(); // redis://127.0.0.1:<port>
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::DEADLINE;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a test that needs Redis says when it is not installed.
const MISSING: &str = "redis-server is not installed: run ./test.sh, which installs redis-server";

/// A `redis-server` process owned by a test.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers
    /// `PING`.
    pub fn start_new() -> RedisServer {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "broker-redis-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port: 0,
            dir,
            child: None,
        };
        // A port that was free a moment ago may be taken by the time Redis
        // binds it: then try another.
        for _ in 0..5 {
            server.port = free_port();
            if server.try_start() {
                return server;
            }
        }
        let log = std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default();
        panic!("redis-server did not come up on any of 5 free ports; its log:\n{log}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same across `stop`/`start`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True while the process runs (between `start` and `stop`).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL: its connections are cut, as when Redis
    /// dies) and waits until it is gone. Nothing is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty) and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        // The old process is gone, but the port may take a moment to be
        // free for a new listener: retry until the deadline.
        let until = Instant::now() + DEADLINE;
        while !self.try_start() {
            assert!(
                Instant::now() < until,
                "redis-server did not come back on port {} (see {:?})",
                self.port,
                self.dir.join("redis.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGSTOP) without closing its connections: clients
    /// see a Redis that no longer answers.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            assert!(signal(child, "-STOP"), "cannot SIGSTOP redis-server");
        }
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            assert!(signal(child, "-CONT"), "cannot SIGCONT redis-server");
        }
    }

    /// Sends one command and returns its reply as text: a simple or bulk
    /// string as it is, an integer in decimal, an array as its elements one
    /// a line, nil as "", an error as "ERR …". For checks such as
    /// `command(&["INFO", "commandstats"])` or `command(&["GET", key])`.
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = connect(self.port)
            .unwrap_or_else(|e| panic!("cannot reach redis-server on port {}: {e}", self.port));
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).unwrap();
        read_reply(&mut BufReader::new(s)).unwrap()
    }

    /// `INFO <section>`'s field `key` as a number (0 if it is not there):
    /// e.g. `info_u64("commandstats", "cmdstat_publish")` is the `calls=`
    /// of that line.
    pub fn info_u64(&self, section: &str, key: &str) -> u64 {
        let info = self.command(&["INFO", section]);
        for line in info.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k != key {
                continue;
            }
            // `cmdstat_x:calls=N,usec=…` or `key:N`.
            let v = v.strip_prefix("calls=").unwrap_or(v);
            let v = v.split(',').next().unwrap_or("0");
            return v.trim().parse().unwrap_or(0);
        }
        0
    }

    fn try_start(&mut self) -> bool {
        let port = self.port.to_string();
        let log = self.dir.join("redis.log");
        let spawned = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let until = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                // It exited: most likely the port was taken.
                return false;
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `sig` to the process with `kill`.
fn signal(child: &Child, sig: &str) -> bool {
    Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )?;
    s.set_read_timeout(Some(DEADLINE))?;
    s.set_write_timeout(Some(DEADLINE))?;
    Ok(s)
}

/// True if a server on `port` answers `PING` with `PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = connect(port) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut r = BufReader::new(s);
    matches!(read_reply(&mut r).as_deref(), Ok("PONG"))
}

/// Reads one RESP2 reply as text (see [`RedisServer::command`]).
fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.to_string());
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Ok(rest.to_string()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0; len as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(bad()),
    }
}
