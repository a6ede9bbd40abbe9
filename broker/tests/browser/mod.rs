//! The chat page in a real browser (docs/doors.md "Web door"):
//! `e2e/browser.mjs` drives headless Chromium pages (alice, bob, erin) and
//! native users on raw TCP against this in-process broker, which has a
//! database: names registered in the pages, a message stored for a closed
//! page, a room's history. Then the test stops the broker under the pages
//! and starts another on the same web address and the same database, and
//! the pages must come back by themselves, logged in to their accounts.
//!
//! The script tells us its phase on stdout (`READY-FOR-SHUTDOWN`,
//! `READY-FOR-RESTART`); everything it prints is shown if it fails.
//! Screenshots land in `target/browser-shots/`. It needs node, Chromium at
//! `/usr/bin/chromium` and `e2e/node_modules`: `./test.sh` installs them,
//! and without them this test fails (it never skips silently).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one phase of the script may take: far above the few seconds it
/// needs, below the script's own 90 s limit for all of it.
const PHASE: Duration = Duration::from_secs(60);

/// The repository root: the script, its packages and `target/` are there.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Fails with one clear message if anything the browser test needs is missing.
fn needs(root: &Path) {
    let mut missing = Vec::new();
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node".to_string());
    }
    if !root.join("e2e/node_modules/playwright-core").is_dir() {
        missing.push("e2e/node_modules/playwright-core (npm ci in e2e/)".to_string());
    }
    if !Path::new("/usr/bin/chromium").exists() {
        missing.push("/usr/bin/chromium".to_string());
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}: run ./test.sh, which installs them",
        missing.join(", ")
    );
}

/// The running script: its stdout lines one by one, and everything it
/// printed (both streams) for the failure message. Killed when dropped.
struct Script {
    child: Child,
    lines: Receiver<String>,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Script {
    fn spawn(root: &Path, page: &str, native: SocketAddr, shots: &Path) -> Script {
        let mut child = Command::new("node")
            .arg(root.join("e2e/browser.mjs"))
            .arg(page)
            .arg(native.to_string())
            .arg(shots)
            .current_dir(root.join("e2e"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out = Arc::clone(&output);
        let r1 = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                out.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let err = Arc::clone(&output);
        let r2 = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            for line in text.lines() {
                err.lock().unwrap().push_str(&format!("stderr: {line}\n"));
            }
        });
        Script {
            child,
            lines,
            output,
            readers: vec![r1, r2],
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits for the line `marker` on stdout.
    fn wait_line(&mut self, marker: &str) {
        let deadline = Instant::now() + PHASE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == marker => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {marker} within {PHASE:?}; the script said:\n{}",
                        self.output()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    self.join_readers();
                    panic!(
                        "the script ended ({status}) before {marker}; it said:\n{}",
                        self.output()
                    )
                }
            }
        }
    }

    /// Waits for the script to exit; returns its status.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PHASE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.join_readers();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the script did not finish within {PHASE:?}; it said:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chat_page_in_a_real_browser() {
    let root = root();
    needs(&root);
    let shots = root.join("target/browser-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let started = Instant::now();

    // Accounts, stored messages and room history need a database; the
    // broker after the restart opens the same one.
    let data_dir = testkit::data_dir();
    let broker = testkit::start_with(|c| c.data_dir = data_dir.clone());
    let web = broker.http_addr().expect("the web door is open");
    let mut script = Script::spawn(
        &root,
        &format!("http://{web}/"),
        broker.local_addr(),
        &shots,
    );

    // Phase 1 is the chat itself; then the pages must see the shutdown.
    script.wait_line("READY-FOR-SHUTDOWN");
    let report = broker.shutdown();
    assert_eq!(report.cut_off, 0, "{report:?}");
    assert!(report.notified >= 3, "alice, bob and carol: {report:?}");

    // Phase 2 has shown the banner; a broker on the same address brings
    // the pages back.
    script.wait_line("READY-FOR-RESTART");
    let again = testkit::start_with(|c| {
        c.http_listen = web.to_string();
        c.data_dir = data_dir.clone();
    });
    assert_eq!(
        again.http_addr(),
        Some(web),
        "the web address is free again"
    );

    let status = script.wait_exit();
    let output = script.output();
    println!("{output}");
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{output}"
    );
    println!("browser test: {:.1} s", started.elapsed().as_secs_f64());
    drop(again);
    let _ = std::fs::remove_dir_all(&data_dir);
}
