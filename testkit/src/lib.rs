//! Test support shared by the integration suites: start the real broker
//! in-process on `127.0.0.1:0` and talk to it as a raw peer that speaks the
//! wire protocol by hand (docs/protocol.md). Every wait is bounded by
//! [`DEADLINE`]; nothing sleeps for a fixed time.
//!
//! ```
//! let b = testkit::start();
//! let mut alice = testkit::Peer::named(b.local_addr(), "alice");
//! alice.send("PING hi\n");
//! alice.expect("PONG hi");
//! ```
//!
//! Set `BROKER_TEST_LOG` (error, warn, info, debug) to see the broker's log
//! while a test runs; the default is `warn`.

// Test-only crate: failing loudly is the point. A helper that cannot do its
// job panics, and that fails the test that called it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod redis;
pub mod tls;
pub mod web;

use broker::{Broker, Config};
use protocol::{Decoded, Event, Limits};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any single expectation may wait.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What a peer accepts from the broker: far above anything the broker
/// sends, so the limits never get in a test's way.
const LIMITS: Limits = Limits {
    max_line: 1 << 20,
    max_body: 1 << 20,
    max_targets: 1000,
};

/// Starts a broker with test-friendly settings (no stats lines), changed by
/// `tweak`. The log level comes from `BROKER_TEST_LOG` (default `warn`).
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Broker {
    let mut config = Config {
        stats_interval_secs: 0,
        log_level: "warn".into(),
        // Each test broker opens its IRC door on a port of its own.
        irc_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        // No database unless a test asks for one (`data_dir()`).
        data_dir: String::new(),
        ..Config::default()
    };
    tweak(&mut config);
    broker::log::set_level(
        broker::log::Level::parse(&std::env::var("BROKER_TEST_LOG").unwrap_or_default())
            .unwrap_or(broker::log::Level::Warn),
    );
    let listener = broker::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    broker::start(listener, config).unwrap()
}

/// A fresh, empty directory for a broker's database.
pub fn data_dir() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "broker-test-data-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir.display().to_string()
}

/// Starts a broker with the built-in defaults (as [`start_with`] sets them).
pub fn start() -> Broker {
    start_with(|_| {})
}

/// Polls `f` until it is true or the deadline passes.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One frame as received: its header line and its body, if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    /// The header line, without its LF.
    pub line: String,
    /// The exact body bytes of a `MSG` or `INFO`; `None` for other frames.
    pub body: Option<Vec<u8>>,
}

impl Got {
    /// The body as text (lossy), or `""` if there is none.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
    }

    /// The `i`-th space-separated field of the header line, or `""`.
    pub fn field(&self, i: usize) -> &str {
        self.line.split(' ').nth(i).unwrap_or("")
    }

    /// The frame's verb: `MSG`, `ACK`, `JOINED`, ...
    pub fn verb(&self) -> &str {
        self.field(0)
    }
}

/// Why a read ended without a frame.
enum Miss {
    /// Nothing whole arrived in time.
    Deadline,
    /// The broker closed the connection.
    Eof,
    /// An undecodable frame or a failed read.
    Broken(String),
}

/// A raw TCP client speaking the wire protocol by hand.
pub struct Peer {
    /// The socket, for tests that need it raw (a shutdown, a second reader
    /// on a clone). Between calls its read timeout is [`DEADLINE`].
    pub stream: TcpStream,
    /// Who this is in panic messages: the name once registered.
    label: String,
    /// Bytes read but not yet decoded.
    buf: Vec<u8>,
}

impl Peer {
    /// Connects without reading anything.
    pub fn connect_raw(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        let label = format!("peer {}", stream.local_addr().unwrap());
        Peer {
            stream,
            label,
            buf: Vec::new(),
        }
    }

    /// Connects and reads the `HELLO`.
    pub fn connect(addr: SocketAddr) -> Peer {
        let mut p = Peer::connect_raw(addr);
        let hello = p.next();
        assert!(hello.line.starts_with("HELLO "), "{hello:?}");
        p
    }

    /// Connects and registers `name`; returns after `OK NAME`.
    pub fn named(addr: SocketAddr, name: &str) -> Peer {
        let mut p = Peer::connect(addr);
        p.send(&format!("NAME {name}\n"));
        p.expect(&format!("OK NAME {name}"));
        p.label = name.to_string();
        p
    }

    /// Writes raw text.
    pub fn send(&mut self, s: &str) {
        self.send_bytes(s.as_bytes());
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).unwrap();
    }

    /// Reads until one whole frame is buffered, for at most `wait`.
    fn read_frame(&mut self, wait: Duration) -> Result<Got, Miss> {
        let deadline = Instant::now() + wait;
        let mut timeout_changed = false;
        let result = loop {
            match Event::decode(&self.buf, &LIMITS) {
                Decoded::Frame { consumed, frame } => {
                    let body = match frame {
                        Event::Msg { body, .. } | Event::Info { text: body } => Some(body.to_vec()),
                        _ => None,
                    };
                    let line_end = self.buf.iter().position(|&b| b == b'\n').unwrap();
                    let line = String::from_utf8(self.buf[..line_end].to_vec()).unwrap();
                    self.buf.drain(..consumed);
                    break Ok(Got { line, body });
                }
                Decoded::Incomplete => {}
                other => {
                    break Err(Miss::Broken(format!(
                        "undecodable frame: {other:?} in {:?}",
                        self.buf
                    )))
                }
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break Err(Miss::Deadline);
            };
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            timeout_changed = true;
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => break Err(Miss::Eof),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // Timed out: the deadline check above ends the loop.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(Miss::Broken(format!("read failed: {e}"))),
            }
        };
        if timeout_changed {
            // Raw readers of `stream` (expect_eof, a cloned reader) rely on it.
            self.stream.set_read_timeout(Some(DEADLINE)).unwrap();
        }
        result
    }

    /// The next frame, or a panic at the deadline, at EOF or on an
    /// undecodable frame.
    // Not an `Iterator`: it never ends with `None`, it fails the test.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Got {
        match self.read_frame(DEADLINE) {
            Ok(got) => got,
            Err(Miss::Deadline) => panic!(
                "{}: no frame within {DEADLINE:?}; have {:?}",
                self.label,
                String::from_utf8_lossy(&self.buf)
            ),
            Err(Miss::Eof) => panic!(
                "{}: EOF; have {:?}",
                self.label,
                String::from_utf8_lossy(&self.buf)
            ),
            Err(Miss::Broken(why)) => panic!("{}: {why}", self.label),
        }
    }

    /// The next frame within `wait`, or `None` at the deadline or EOF; a
    /// panic on an undecodable frame.
    pub fn try_next(&mut self, wait: Duration) -> Option<Got> {
        match self.read_frame(wait) {
            Ok(got) => Some(got),
            Err(Miss::Deadline | Miss::Eof) => None,
            Err(Miss::Broken(why)) => panic!("{}: {why}", self.label),
        }
    }

    /// The next frame's header line.
    pub fn line(&mut self) -> String {
        self.next().line
    }

    /// Asserts the next frame's header line is `line`.
    pub fn expect(&mut self, line: &str) {
        assert_eq!(self.line(), line);
    }

    /// Asserts the next frame's header line starts with `prefix`; returns it.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// Reads frames until one that `wanted` accepts; returns it.
    fn skip_to(&mut self, wanted: impl Fn(&Got) -> bool) -> Got {
        loop {
            let got = self.next();
            if wanted(&got) {
                return got;
            }
        }
    }

    /// Skips frames until one whose line starts with `prefix`; returns it.
    pub fn skip_until(&mut self, prefix: &str) -> Got {
        self.skip_to(|g| g.line.starts_with(prefix))
    }

    /// Skips frames until one with verb `verb`; returns it.
    pub fn skip_until_verb(&mut self, verb: &str) -> Got {
        self.skip_to(|g| g.verb() == verb)
    }

    /// Skips frames until one whose header line is exactly `line`; returns it.
    pub fn skip_until_line(&mut self, line: &str) -> Got {
        self.skip_to(|g| g.line == line)
    }

    /// The next `MSG`, skipping everything else.
    pub fn next_msg(&mut self) -> Got {
        self.skip_until_verb("MSG")
    }

    /// Asserts that nothing else arrived first: a PING round trip is the
    /// barrier (no fixed sleep).
    pub fn expect_quiet(&mut self) {
        self.send("PING quiet-check\n");
        self.expect("PONG quiet-check");
    }

    /// Asserts the broker closed the connection (after any buffered frames
    /// have been read).
    pub fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "{}: unread bytes: {:?}",
            self.label,
            String::from_utf8_lossy(&self.buf)
        );
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "{}: expected EOF, got {:?}",
                    self.label,
                    String::from_utf8_lossy(&chunk[..n])
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("{}: expected EOF, got error {e}", self.label),
            }
        }
    }

    /// Shuts down the sending side; replies can still be read.
    pub fn half_close(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}
