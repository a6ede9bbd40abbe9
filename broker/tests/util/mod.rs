//! Test helpers: start the real broker in-process on 127.0.0.1:0 and talk
//! to it over raw sockets. Every wait is bounded by a deadline.

use broker::{Broker, Config};
use protocol::{Decoded, Event, Limits};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any single expectation may wait.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Starts a broker with test-friendly settings changed by `tweak`.
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Broker {
    let mut config = Config {
        stats_interval_secs: 0,
        log_level: "warn".into(),
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

/// Starts a broker with the built-in defaults.
pub fn start() -> Broker {
    start_with(|_| {})
}

/// One frame as received: its header line and its body, if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub line: String,
    pub body: Option<Vec<u8>>,
}

impl Got {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
    }
    pub fn field(&self, i: usize) -> &str {
        self.line.split(' ').nth(i).unwrap_or("")
    }
}

/// A raw client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    limits: Limits,
}

impl Client {
    /// Connects without reading anything.
    pub fn connect_raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            limits: Limits {
                max_line: 1 << 20,
                max_body: 1 << 20,
                max_targets: 1000,
            },
        }
    }

    /// Connects and reads the `HELLO`.
    pub fn connect(addr: SocketAddr) -> Client {
        let mut c = Client::connect_raw(addr);
        let hello = c.next();
        assert!(hello.line.starts_with("HELLO "), "{hello:?}");
        c
    }

    /// Connects and registers; returns after `OK NAME`.
    pub fn named(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::connect(addr);
        c.send(&format!("NAME {name}\n"));
        c.expect(&format!("OK NAME {name}"));
        c
    }

    /// Writes raw bytes.
    pub fn send(&mut self, s: &str) {
        self.send_bytes(s.as_bytes());
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).unwrap();
    }

    /// Reads until one whole frame is buffered, or fails at the deadline.
    pub fn try_next(&mut self) -> Result<Got, String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match Event::decode(&self.buf, &self.limits) {
                Decoded::Frame { consumed, frame } => {
                    let body = match frame {
                        Event::Msg { body, .. } | Event::Info { text: body } => Some(body.to_vec()),
                        _ => None,
                    };
                    let line_end = self.buf.iter().position(|&b| b == b'\n').unwrap();
                    let line = String::from_utf8(self.buf[..line_end].to_vec()).unwrap();
                    self.buf.drain(..consumed);
                    return Ok(Got { line, body });
                }
                Decoded::Incomplete => {}
                other => return Err(format!("undecodable frame: {other:?} in {:?}", self.buf)),
            }
            if Instant::now() > deadline {
                return Err(format!("no frame within {DEADLINE:?}; have {:?}", self.buf));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "EOF; have {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// The next frame.
    pub fn next(&mut self) -> Got {
        self.try_next().unwrap()
    }

    /// The next frame's header line.
    pub fn line(&mut self) -> String {
        self.next().line
    }

    /// Asserts the next frame's header line.
    pub fn expect(&mut self, line: &str) {
        assert_eq!(self.line(), line);
    }

    /// Asserts the next frame's header line starts with `prefix`.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// Skips frames until one whose line starts with `prefix`.
    pub fn skip_until(&mut self, prefix: &str) -> Got {
        loop {
            let got = self.next();
            if got.line.starts_with(prefix) {
                return got;
            }
        }
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
            "unread bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected EOF, got {:?}",
                    String::from_utf8_lossy(&chunk[..n])
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("expected EOF, got error {e}"),
            }
        }
    }

    pub fn half_close(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// Polls `f` until it is true or the deadline passes.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
