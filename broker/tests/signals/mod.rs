//! Signals against the real `broker` binary: one SIGINT shuts down
//! gracefully and exits 0; a second one during the grace time, while a
//! client that never reads holds the shutdown up, stops the process at once
//! with exit code 130 (docs/operations.md §3).
//!
//! The binary runs as a child process on `127.0.0.1:0`; its port comes from
//! the `listening on` log line. Every wait is deadline-bounded polling, and
//! the child is killed whatever happens to the test.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::Peer;

/// The grace time the broker is given: the tests pass only if it exits well
/// before it.
const GRACE_SECS: u64 = 60;
/// How long the broker may take to start, or to exit once it should: far
/// above what a loaded machine needs, and half the grace time.
const WAIT: Duration = Duration::from_secs(30);

/// A `broker` child process with its stderr collected line by line; killed
/// (and its config file removed) when dropped.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    config: PathBuf,
    addr: SocketAddr,
}

impl Proc {
    /// Writes a config with a long grace time and no rate limits, starts the
    /// binary with it on port 0, and waits for its `listening on` line.
    fn start() -> Proc {
        Proc::start_in("")
    }

    /// As [`Proc::start`], with its database in `data_dir` ("" for none).
    fn start_in(data_dir: &str) -> Proc {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let config = std::env::temp_dir().join(format!(
            "broker-signals-{}-{}.toml",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // slow_after_secs is long so the stuck reader is not closed as a slow
        // consumer before the test signals; frame_timeout_secs = 0 so a frame
        // cut short by a paused sender is never timed out.
        std::fs::write(
            &config,
            format!(
                "shutdown_grace_secs = {GRACE_SECS}\n\
                 rate_per_sec = 0\n\
                 rate_bytes_per_sec = 0\n\
                 queue_bytes = 1048576\n\
                 slow_after_secs = 3600\n\
                 frame_timeout_secs = 0\n\
                 stats_interval_secs = 0\n\
                 irc_listen = \"127.0.0.1:0\"\n\
                 http_listen = \"127.0.0.1:0\"\n\
                 data_dir = \"{data_dir}\"\n\
                 log_level = \"info\"\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        let mut p = Proc {
            child,
            log,
            config,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let line = p.wait_log("listening on ");
        let addr = line.split("listening on ").nth(1).unwrap_or_default();
        p.addr = addr
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        p
    }

    /// Sends SIGINT, as Ctrl-C would.
    fn interrupt(&self) {
        self.signal("-INT");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .arg(which)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {which} failed: {status}");
    }

    /// Every stderr line so far.
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a stderr line containing `needle`; returns it.
    fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "broker exited ({status}) before logging {needle:?}; log:\n{}",
                    self.log().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {WAIT:?}; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit; fails if it takes longer than [`WAIT`]
    /// (which is well under the grace time).
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "broker still running {WAIT:?} after the signal (grace {GRACE_SECS} s); log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the stderr reader to reach end of file (the process has
    /// exited, so it is near), then returns the whole log.
    fn final_log(&self) -> String {
        let deadline = Instant::now() + WAIT;
        while Arc::strong_count(&self.log) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.log().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Has `sender` send 60 kB messages to `stuck` (which never reads) until the
/// broker stops reading the sender: `stuck`'s socket buffers are full and
/// more than `queue_bytes` waits in its queue, so a graceful shutdown cannot
/// finish before the grace time.
fn flood(sender: &mut Peer, to: &str) {
    let body = vec![b'x'; 60_000];
    let mut frame = format!("SEND {to} {}\n", body.len()).into_bytes();
    frame.extend_from_slice(&body);
    frame.push(b'\n');
    sender
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // 2000 frames (120 MB) is far more than the socket buffers and the
    // 1 MiB queue hold; the broker pauses the sender long before that.
    for _ in 0..2000 {
        match sender.stream.write_all(&frame) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            Err(e) => panic!("sender write failed: {e}"),
        }
    }
    panic!("the broker never paused the sender: is {to} still connected?");
}

#[test]
fn second_sigint_stops_at_once_with_130() {
    let mut b = Proc::start();
    let _stuck = Peer::named(b.addr, "stuck");
    let mut sender = Peer::named(b.addr, "sender");
    flood(&mut sender, "stuck");

    b.interrupt();
    b.wait_log("signal received: shutting down");
    b.interrupt();
    let status = b.wait_exit();
    let log = b.final_log();
    assert_eq!(status.code(), Some(130), "{status}; log:\n{log}");
    assert!(
        log.contains("WARN  second signal: stopping now without waiting for slow readers"),
        "{log}"
    );
    assert!(!log.contains("shut down:"), "{log}");
}

#[test]
fn one_sigint_shuts_down_gracefully_with_0() {
    let mut b = Proc::start();
    let mut alice = Peer::named(b.addr, "alice");

    b.interrupt();
    alice.skip_until_line("SHUTDOWN :server is shutting down");
    let status = b.wait_exit();
    let log = b.final_log();
    assert_eq!(status.code(), Some(0), "{status}; log:\n{log}");
    assert!(
        log.contains("INFO  signal received: shutting down (grace 60 s)"),
        "{log}"
    );
    assert!(
        log.contains("shut down: 1 clients notified, 0 cut off at the end of the grace time"),
        "{log}"
    );
    assert!(!log.contains("second signal"), "{log}");
}

#[test]
fn check_config_says_ok_or_names_the_key_without_listening() {
    let good = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args([
            "--check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../config/broker.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    assert!(String::from_utf8_lossy(&good.stdout).contains("config OK"));
    let path = std::env::temp_dir().join(format!("broker-check-{}.toml", std::process::id()));
    std::fs::write(&path, "queue_bytes = 1\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_broker"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("queue_bytes"));
}

#[test]
fn sighup_applies_a_new_rate_limit_to_connected_clients_and_keeps_what_takes_a_restart() {
    let mut b = Proc::start();
    let mut alice = Peer::named(b.addr, "alice");
    // No rate limit yet: a burst of pings is answered in full.
    alice.send(&"PING\n".repeat(50));
    for _ in 0..50 {
        alice.expect("PONG");
    }
    let text = std::fs::read_to_string(&b.config).unwrap();
    let text = text
        .replace("rate_per_sec = 0", "rate_per_sec = 1\nrate_burst = 5")
        .replace(
            "log_level = \"info\"",
            "log_level = \"info\"\nmax_body = 1000",
        );
    std::fs::write(&b.config, text).unwrap();
    b.signal("-HUP");
    b.wait_log("SIGHUP: reloaded");
    let log = b.log().join("\n");
    assert!(log.contains("rate_per_sec 0 -> 1"), "{log}");
    assert!(
        log.contains("`max_body` changed (65536 -> 1000) but takes a restart; keeping 65536"),
        "{log}"
    );
    // The same connection now gets RATE_LIMITED past the burst; a body
    // over the new (not applied) max_body still goes through.
    alice.send(&"PING\n".repeat(20));
    alice.skip_until_verb("ERR");
    let mut bob = Peer::named(b.addr, "bob");
    bob.send(&format!("SEND bob 2000\n{}\n", "x".repeat(2000)));
    bob.skip_until("ACK ");
    // A broken file changes nothing.
    std::fs::write(&b.config, "rate_per_sec = \"fast\"\n").unwrap();
    b.signal("-HUP");
    b.wait_log("keeping the running config");
    bob.send("PING\n");
    bob.expect("PONG");
}

#[test]
fn kill_9_loses_no_acked_message_for_an_offline_account() {
    let dir = testkit::data_dir();
    let mut b = Proc::start_in(&dir);
    {
        let mut inbox = Peer::named(b.addr, "inbox");
        inbox.send("REGISTER inbox-pass\nQUIT\n");
        inbox.expect("OK REGISTER inbox");
        inbox.expect("BYE");
    }
    // The sender pipelines messages to the offline account; the broker is
    // killed while they flow. Every ACK it saw is a promise.
    let mut sender = Peer::named(b.addr, "sender");
    let writer = sender.stream.try_clone().unwrap();
    let pump = std::thread::spawn(move || {
        let mut w = writer;
        for i in 0..5000 {
            if w.write_all(format!("SEND inbox :m{i}\n").as_bytes())
                .is_err()
            {
                return;
            }
        }
    });
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut sent_bodies = 0usize;
    while acked.len() < 200 {
        let f = sender.next();
        if f.verb() == "ACK" {
            assert_eq!(f.field(2), "1", "{}", f.line);
            acked.push((f.field(1).parse().unwrap(), format!("m{sent_bodies}")));
            sent_bodies += 1;
        }
    }
    let _ = b.child.kill(); // SIGKILL
    let _ = b.child.wait();
    let _ = pump.join();
    drop(b);

    let b = Proc::start_in(&dir);
    let mut inbox = Peer::connect(b.addr);
    inbox.send("NAME inbox inbox-pass\n");
    inbox.expect("OK NAME inbox");
    let mut got: Vec<(u64, String)> = Vec::new();
    while let Some(f) = inbox.try_next(Duration::from_secs(2)) {
        assert_eq!(f.verb(), "MSG", "{}", f.line);
        got.push((f.field(1).parse().unwrap(), f.body_str()));
    }
    // In order, each at most once, and every ACKed one there.
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "out of order");
    for (id, body) in &acked {
        let n = got.iter().filter(|(g, _)| g == id).count();
        assert_eq!(n, 1, "ACKed message {id} ({body}) delivered {n} times");
        assert!(got.iter().any(|(g, b)| g == id && b == body), "{id} {body}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_or_unusable_database_stops_the_broker_with_a_clear_error() {
    let dir = testkit::data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/chat.redb"), b"this is not a database at all").unwrap();
    let run = |data_dir: &str| {
        Command::new(env!("CARGO_BIN_EXE_broker"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--irc-listen",
                "",
                "--http-listen",
                "",
            ])
            .arg("--config")
            .arg({
                let p = std::env::temp_dir().join(format!("broker-db-{}.toml", std::process::id()));
                std::fs::write(&p, format!("data_dir = \"{data_dir}\"\n")).unwrap();
                p
            })
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{dir}/chat.redb")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A data_dir that is a file, not a directory.
    let file = format!("{dir}/chat.redb");
    let out = run(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&file), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
