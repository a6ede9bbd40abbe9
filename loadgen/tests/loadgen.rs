#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Drives the real `loadgen` binary: short runs against its own in-process
//! broker in every mode (integrity must be perfect), runs against a tiny
//! fake broker that drops, duplicates or reorders one delivery on purpose
//! (the loadgen must notice and exit non-zero), and runs spread over two
//! clustered brokers on a real Redis (`--addr a,b`).

mod util;

use std::process::Command;
use testkit::redis::RedisServer;
use util::irc::{FakeIrc, IrcFault};
use util::web::{FakeWeb, WebFault};
use util::{json, FakeBroker, Fault, Json};

/// Runs loadgen with `args`; returns the exit code, stdout and stderr.
fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The single JSON object printed with `--json`, with every key the issue
/// asks for present.
fn report(stdout: &str) -> Json {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {stdout}");
    let v = json::parse(lines[0]).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));
    for k in [
        "clients",
        "senders",
        "mode",
        "size",
        "duration_s",
        "sent",
        "expected",
        "received",
        "lost",
        "duplicates",
        "reordered",
        "deliveries_per_sec",
        "mb_per_sec",
        "latency_us",
        "connect_ms",
        "loadgen_cpu_s",
        "broker_cpu_s",
        "broker_rss_mib",
        "deliveries_per_broker_cpu_s",
    ] {
        assert!(v.get(k).is_some(), "key {k} missing: {stdout}");
    }
    v
}

fn u(v: &Json, k: &str) -> u64 {
    v.get(k)
        .and_then(Json::as_f64)
        .unwrap_or_else(|| panic!("{k} is not a number: {v:?}")) as u64
}

/// A clean run: nothing lost, duplicated or reordered, everything promised
/// arrived, exit code 0.
fn assert_clean(args: &[&str]) -> Json {
    let (code, stdout, stderr) = loadgen(args);
    let v = report(&stdout);
    assert_eq!(code, 0, "exit code; stdout {stdout}\nstderr {stderr}");
    assert_eq!(u(&v, "lost"), 0, "{stdout}");
    assert_eq!(u(&v, "duplicates"), 0, "{stdout}");
    assert_eq!(u(&v, "reordered"), 0, "{stdout}");
    assert!(u(&v, "expected") > 0, "{stdout}");
    assert_eq!(u(&v, "received"), u(&v, "expected"), "{stdout}");
    let lat = v.get("latency_us").unwrap();
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(lat.get(k).and_then(Json::as_f64).unwrap() > 0.0, "{stdout}");
    }
    assert!(
        v.get("connect_ms").and_then(Json::as_f64).is_some(),
        "{stdout}"
    );
    v
}

const SMALL: [&str; 10] = [
    "--clients",
    "20",
    "--senders",
    "2",
    "--duration",
    "1",
    "--warmup",
    "0",
    "--json",
    "--threads=2",
];

fn small(extra: &[&str]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = SMALL.to_vec();
    for e in extra {
        v.push(Box::leak(e.to_string().into_boxed_str()));
    }
    v
}

#[test]
fn all_mode_in_process() {
    let v = assert_clean(&small(&["--mode", "all"]));
    assert_eq!(v.get("mode").and_then(Json::as_str), Some("all"));
    // Every message reaches the 19 other clients.
    assert_eq!(u(&v, "expected"), u(&v, "sent") * 19);
    assert_eq!(u(&v, "clients"), 20);
    assert_eq!(u(&v, "senders"), 2);
    // In-process, the broker's CPU is measured; its RSS can't be separated.
    assert!(v.get("broker_cpu_s").and_then(Json::as_f64).is_some());
    assert!(v.get("broker_rss_mib").unwrap().is_null());
    // One node: no same/cross split.
    assert_eq!(u(&v, "nodes"), 1);
    assert!(v.get("latency_cross_us").is_none() && v.get("latency_same_us").is_none());
}

#[test]
fn direct_mode_in_process() {
    let v = assert_clean(&small(&["--mode", "direct"]));
    assert_eq!(u(&v, "expected"), u(&v, "sent"));
}

#[test]
fn multi_mode_in_process() {
    let v = assert_clean(&small(&["--mode", "multi", "--targets", "3"]));
    assert_eq!(u(&v, "expected"), u(&v, "sent") * 3);
}

#[test]
fn room_mode_in_process() {
    let v = assert_clean(&small(&["--mode", "room"]));
    assert_eq!(v.get("mode").and_then(Json::as_str), Some("room"));
    assert_eq!(v.get("door").and_then(Json::as_str), Some("native"));
    // Every message reaches the 19 other members of #load.
    assert_eq!(u(&v, "expected"), u(&v, "sent") * 19);
    assert_eq!(u(&v, "ack_mismatches"), 0);
}

#[test]
fn irc_door_in_every_irc_mode() {
    // IRC clients against the in-process broker's IRC door: #all, a
    // channel, and nick to nick. No ACKs over IRC: every PRIVMSG is owed
    // to its whole fan-out, and all of it must arrive.
    for (mode, fanout) in [("all", 19), ("room", 19), ("direct", 1)] {
        let v = assert_clean(&small(&["--door", "irc", "--mode", mode]));
        assert_eq!(v.get("door").and_then(Json::as_str), Some("irc"));
        assert_eq!(u(&v, "expected"), u(&v, "sent") * fanout, "{mode}");
        assert_eq!(u(&v, "registered"), 20);
        assert_eq!(u(&v, "foreign"), 0, "{mode}");
        assert_eq!(u(&v, "protocol_errors"), 0, "{mode}");
    }
}

#[test]
fn web_door_in_every_mode() {
    // WebSocket clients against the in-process broker's web door: the
    // native verbs in JSON, ACKs included, so the accounting is the
    // native door's.
    for (mode, fanout) in [("all", 19), ("room", 19), ("direct", 1), ("multi", 3)] {
        let v = assert_clean(&small(&["--door", "web", "--mode", mode, "--targets", "3"]));
        assert_eq!(v.get("door").and_then(Json::as_str), Some("web"));
        assert_eq!(u(&v, "expected"), u(&v, "sent") * fanout, "{mode}");
        assert_eq!(u(&v, "registered"), 20);
        assert_eq!(u(&v, "unacked"), 0, "{mode}");
        for k in [
            "foreign",
            "protocol_errors",
            "ack_mismatches",
            "send_errors",
        ] {
            assert_eq!(u(&v, k), 0, "{mode}: {k}");
        }
    }
}

/// Runs web clients against the fake web door.
fn against_fake_web(fault: WebFault, mode: &str) -> (i32, Json, FakeWeb) {
    let fake = FakeWeb::start(fault);
    let addr = fake.addr().to_string();
    let (code, stdout, stderr) = loadgen(&[
        "--door",
        "web",
        "--web-addr",
        &addr,
        "--mode",
        mode,
        "--clients",
        "6",
        "--senders",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--drain",
        "1",
        "--json",
    ]);
    let v = report(&stdout);
    let _ = stderr;
    (code, v, fake)
}

#[test]
fn fake_web_door_fragments_and_pings_are_handled() {
    // Fragmented messages (the hello, every 7th delivery) are put back
    // together, every ping gets its pong, and integrity is perfect.
    for mode in ["all", "room", "multi"] {
        let (code, v, fake) = against_fake_web(WebFault::None, mode);
        assert_eq!(code, 0, "{mode}: {v:?}");
        assert!(u(&v, "expected") > 0, "{v:?}");
        assert_eq!(u(&v, "received"), u(&v, "expected"), "{v:?}");
        assert_eq!(u(&v, "protocol_errors"), 0, "{v:?}");
        assert_eq!(fake.pongs(), 6, "{mode}");
    }
}

#[test]
fn a_refused_upgrade_fails_the_run() {
    for (fault, says) in [
        (WebFault::NotFound, "404"),
        (WebFault::BadAccept, "Sec-WebSocket-Accept"),
    ] {
        let (code, v, _) = against_fake_web(fault, "all");
        assert_eq!(code, 1, "{v:?}");
        assert_eq!(u(&v, "registered"), 0);
        let problems = format!("{:?}", v.get("problems").unwrap());
        assert!(problems.contains("upgrade refused"), "{problems}");
        assert!(problems.contains(says), "{problems}");
    }
}

#[test]
fn a_close_from_the_web_door_is_a_disconnect() {
    let (code, v, _) = against_fake_web(WebFault::CloseOne, "all");
    assert_eq!(code, 1, "{v:?}");
    assert_eq!(u(&v, "disconnects"), 1, "{v:?}");
    let problems = format!("{:?}", v.get("problems").unwrap());
    assert!(
        problems.contains("closed the WebSocket (1001)"),
        "{problems}"
    );
}

#[test]
fn web_door_flags() {
    for args in [
        &["--door", "web", "--addr", "127.0.0.1:7878"][..],
        &["--web-addr", "127.0.0.1:7880"],
        &["--door", "web", "--web-addr", "192.0.2.1:7880"],
    ] {
        let (code, stdout, stderr) = loadgen(args);
        assert_eq!(code, 2, "{args:?}: {stdout} {stderr}");
        assert!(stdout.is_empty());
    }
}

#[test]
fn irc_door_refuses_multi_and_long_bodies() {
    for args in [
        &["--door", "irc", "--mode", "multi"][..],
        &["--door", "irc", "--size", "401"],
        &["--door", "irc", "--addr", "127.0.0.1:7878"],
    ] {
        let (code, stdout, stderr) = loadgen(args);
        assert_eq!(code, 2, "{args:?}: {stdout} {stderr}");
        assert!(stdout.is_empty());
    }
}

#[test]
fn pipelined_refill_writes_whole_windows() {
    // With --refill equal to --window a sender only ever writes a whole
    // window at once, so each sender's count (and the total) is a multiple
    // of it; a sliding window would stop at any count.
    let v = assert_clean(&small(&[
        "--mode", "direct", "--window", "7", "--refill", "7",
    ]));
    assert_eq!(u(&v, "refill"), 7);
    let sent = u(&v, "sent");
    assert!(sent > 0 && sent.is_multiple_of(7), "sent {sent}");
}

#[test]
fn fixed_rate_in_process() {
    let v = assert_clean(&small(&["--mode", "all", "--rate", "200", "--threads=1"]));
    // 2 senders × 200/s × 1 s = 400 intended sends (closed loop would send
    // thousands). A few at the very end may be skipped if the thread wakes
    // after the window closed on a loaded machine; none may be extra.
    let sent = u(&v, "sent");
    assert!((300..=400).contains(&sent), "sent {sent}");
}

#[test]
fn broker_pid_reports_cpu_and_rss() {
    // With --broker-pid pointing at ourselves (the broker runs in-process),
    // the /proc path is exercised: RSS becomes a number.
    let pid = std::process::id().to_string();
    let (code, stdout, _) = loadgen(&small(&["--broker-pid", &pid, "--duration", "0.5"]));
    assert_eq!(code, 0, "{stdout}");
    let v = report(&stdout);
    assert!(v.get("broker_rss_mib").and_then(Json::as_f64).unwrap() > 0.0);
    assert!(v.get("broker_cpu_s").and_then(Json::as_f64).is_some());
}

#[test]
fn refuses_non_loopback_addresses() {
    let (code, stdout, stderr) = loadgen(&["--addr", "192.0.2.1:7878", "--json"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("non-loopback"), "{stderr}");
}

#[test]
fn human_summary_without_json() {
    let (code, stdout, _) = loadgen(&["--clients", "5", "--duration", "0.3", "--warmup", "0"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("latency (us)"), "{stdout}");
    assert!(stdout.contains("result            OK"), "{stdout}");
}

/// The scenario header's first line, as the in-process broker's run with
/// `clients` clients prints it.
fn is_header(line: &str, clients: usize) -> bool {
    line.starts_with(&format!("loadgen: {clients} clients ("))
}

/// A progress line: what the monitor shows every second when stderr is not
/// a terminal.
fn is_progress(line: &str) -> bool {
    ["registering ", "warm-up ", "measuring ", "draining "]
        .iter()
        .any(|p| line.starts_with(p))
}

#[test]
fn redirected_stderr_gets_the_header_then_a_plain_line_a_second() {
    // stderr is a pipe here: no live line, one plain line per second.
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = loadgen(&["--duration", "2", "--clients", "10"]);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stderr.contains(['\r', '\x1b']), "{stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    // What will run comes first: clients, door and address, timing, pacing.
    assert!(is_header(lines[0], 10), "{stderr}");
    assert!(lines[1].contains("native door at 127.0.0.1:"), "{stderr}");
    assert!(lines[2].contains("1 s warm-up, 2 s measured"), "{stderr}");
    assert!(
        lines[3].contains("closed loop, window 8, refill 1"),
        "{stderr}"
    );
    let first = lines
        .iter()
        .position(|l| is_progress(l))
        .unwrap_or_else(|| {
            panic!("no progress line: {stderr}");
        });
    assert_eq!(first, 4, "the header, then progress: {stderr}");
    let progress: Vec<&&str> = lines[first..].iter().filter(|l| is_progress(l)).collect();
    // Sending lasts 3 s (1 s warm-up + 2 s), so at least two lines; never
    // more than one a second.
    assert!(progress.len() >= 2, "{stderr}");
    assert!(
        progress.len() as f64 <= wall + 1.0,
        "{} lines in {wall} s",
        progress.len()
    );
    assert!(
        progress.iter().any(|l| l.starts_with("measuring ")),
        "{stderr}"
    );
    // The summary on its own stream repeats the header, so a saved summary
    // says what it measured.
    assert!(
        is_header(stdout.lines().next().unwrap_or(""), 10),
        "{stdout}"
    );
    assert!(stdout.contains("result            OK"), "{stdout}");
}

#[test]
fn one_log_for_both_streams_reads_top_to_bottom() {
    // `loadgen > log 2>&1`: the header once, then progress, then results.
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("loadgen-both-{}.log", std::process::id()));
    let log = std::fs::File::create(&path).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--clients", "5", "--duration", "1.5", "--warmup", "0"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(is_header(lines[0], 5), "{text}");
    assert!(lines[2].contains("no warm-up, 1.500 s measured"), "{text}");
    assert_eq!(
        lines.iter().filter(|l| is_header(l, 5)).count(),
        1,
        "{text}"
    );
    let last_progress = lines.iter().rposition(|l| is_progress(l));
    let results = lines
        .iter()
        .position(|l| l.starts_with("  connect+register"));
    assert!(last_progress.is_some() && results > last_progress, "{text}");
    assert_eq!(
        lines.last().copied(),
        Some("  result            OK"),
        "{text}"
    );
}

#[test]
fn json_keeps_stdout_to_one_object_and_the_header_on_stderr() {
    let (code, stdout, stderr) = loadgen(&small(&[]));
    assert_eq!(code, 0, "{stderr}");
    report(&stdout);
    assert!(
        is_header(stderr.lines().next().unwrap_or(""), 20),
        "{stderr}"
    );
}

#[test]
fn help_shows_a_default_for_every_flag_that_has_one() {
    for flag in ["--help", "-h"] {
        let (code, help, _) = loadgen(&[flag]);
        assert_eq!(code, 0);
        // Cut the help into one block per option.
        let mut blocks: Vec<String> = Vec::new();
        for line in help.lines() {
            let t = line.trim_start();
            if t.starts_with("--") || t.starts_with("-h") || t.starts_with("-V") {
                blocks.push(String::new());
            }
            if let Some(b) = blocks.last_mut() {
                b.push_str(line);
                b.push('\n');
            }
        }
        assert!(blocks.len() >= 20, "{help}");
        for b in &blocks {
            let spec = b.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            // Only flags that take a value have a default; switches don't.
            let takes_value = spec.contains(" <");
            assert_eq!(
                b.matches("[default: ").count(),
                usize::from(takes_value),
                "{flag}: {b}"
            );
            assert!(!b.contains("Default:"), "{flag}: {b}");
        }
        let block = |name: &str| {
            blocks
                .iter()
                .find(|b| b.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {help}"))
                .clone()
        };
        assert!(
            block("--window").contains("sent and not yet seen arrive"),
            "{help}"
        );
        assert!(block("--window").contains("[default: 8]"), "{help}");
        assert!(block("--refill").contains("[default: 1]"), "{help}");
        assert!(block("--senders").contains("[default: 10, or --clients if fewer]"));
    }
}

/// Runs against a fake broker that misbehaves once.
fn against_fake(fault: Fault) -> (i32, Json) {
    let fake = FakeBroker::start(fault);
    let addr = fake.addr().to_string();
    // Reordering is judged per sender: with one sender the swapped pair is
    // always from the same sender (with two, the delivery released after the
    // held one may come from the other sender and show no reorder).
    let senders = if matches!(fault, Fault::Swap) {
        "1"
    } else {
        "2"
    };
    let (code, stdout, stderr) = loadgen(&[
        "--addr",
        &addr,
        "--clients",
        "6",
        "--senders",
        senders,
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--drain",
        "0.5",
        "--json",
    ]);
    let v = report(&stdout);
    assert!(u(&v, "sent") > 0, "{stdout}\n{stderr}");
    (code, v)
}

#[test]
fn fake_broker_without_faults_is_clean() {
    let (code, v) = against_fake(Fault::None);
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(u(&v, "received"), u(&v, "expected"));
    // An external broker without --broker-pid: not measured.
    assert!(v.get("broker_cpu_s").unwrap().is_null());
    assert!(v.get("deliveries_per_broker_cpu_s").unwrap().is_null());
}

#[test]
fn a_dropped_delivery_is_lost() {
    let (code, v) = against_fake(Fault::Drop);
    assert_eq!(code, 1);
    assert_eq!(u(&v, "lost"), 1, "{v:?}");
    assert_eq!(u(&v, "duplicates"), 0);
    assert_eq!(u(&v, "reordered"), 0);
}

#[test]
fn a_repeated_delivery_is_a_duplicate() {
    let (code, v) = against_fake(Fault::Duplicate);
    assert_eq!(code, 1);
    assert_eq!(u(&v, "duplicates"), 1, "{v:?}");
    assert_eq!(u(&v, "lost"), 0);
    assert_eq!(u(&v, "reordered"), 0);
}

#[test]
fn swapped_deliveries_are_reordered() {
    let (code, v) = against_fake(Fault::Swap);
    assert_eq!(code, 1);
    assert_eq!(u(&v, "reordered"), 1, "{v:?}");
    assert_eq!(u(&v, "lost"), 0);
    assert_eq!(u(&v, "duplicates"), 0);
}

#[test]
fn a_refused_name_fails_the_run() {
    let fake = FakeBroker::start(Fault::RefuseName);
    let addr = fake.addr().to_string();
    let (code, stdout, _) = loadgen(&["--addr", &addr, "--clients", "4", "--json"]);
    assert_eq!(code, 1);
    let v = report(&stdout);
    assert!(u(&v, "registered") < 4);
    let problems = format!("{:?}", v.get("problems").unwrap());
    assert!(problems.contains("BAD_NAME"), "{problems}");
}

#[test]
fn a_taken_name_is_retried() {
    // Right after a previous run, its names may still be registered for a
    // moment: NAME_TAKEN is retried, and the run goes on.
    let (code, v) = against_fake(Fault::TakenTwice);
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(u(&v, "registered"), 6);
}

/// Runs IRC clients against a fake IRC server that is not our broker.
fn against_fake_irc(fault: IrcFault, mode: &str) -> (i32, Json, FakeIrc) {
    let fake = FakeIrc::start(fault);
    let addr = fake.addr().to_string();
    let (code, stdout, stderr) = loadgen(&[
        "--door",
        "irc",
        "--irc-addr",
        &addr,
        "--mode",
        mode,
        "--clients",
        "6",
        "--senders",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--drain",
        "0.5",
        "--json",
    ]);
    let v = report(&stdout);
    assert!(
        u(&v, "sent") > 0 || fault == IrcFault::BadNick,
        "{stdout}\n{stderr}"
    );
    (code, v, fake)
}

#[test]
fn fake_irc_server_room_and_direct_are_clean() {
    for (mode, fanout) in [("room", 5), ("direct", 1)] {
        let (code, v, fake) = against_fake_irc(IrcFault::None, mode);
        assert_eq!(code, 0, "{mode}: {v:?}");
        assert_eq!(u(&v, "expected"), u(&v, "sent") * fanout, "{mode}");
        assert_eq!(u(&v, "received"), u(&v, "expected"), "{mode}");
        // Every client answered the server's own PING, and its NOTICE, 422
        // and channel numerics were taken in stride.
        assert_eq!(fake.pongs(), 6, "{mode}");
        assert_eq!(u(&v, "protocol_errors"), 0, "{mode}");
        assert_eq!(u(&v, "foreign"), 0, "{mode}");
    }
}

#[test]
fn fake_irc_server_dropping_a_delivery_is_caught() {
    let (code, v, _) = against_fake_irc(IrcFault::Drop, "room");
    assert_eq!(code, 1);
    assert_eq!(u(&v, "lost"), 1, "{v:?}");
    assert_eq!(u(&v, "duplicates") + u(&v, "reordered"), 0);
}

#[test]
fn an_irc_error_reply_takes_the_message_back() {
    // A 401 answers some PRIVMSGs: they are send errors (a failed run), and
    // owed to nobody, so they are not counted as lost too.
    let (code, v, _) = against_fake_irc(IrcFault::NoSuchNick, "direct");
    assert_eq!(code, 1);
    assert!(u(&v, "send_errors") > 0, "{v:?}");
    assert_eq!(u(&v, "lost"), 0, "{v:?}");
    assert_eq!(u(&v, "received"), u(&v, "expected"));
    assert_eq!(u(&v, "expected"), u(&v, "sent") - u(&v, "send_errors"));
}

#[test]
fn an_irc_nick_in_use_is_retried_and_a_bad_one_fails() {
    let (code, v, _) = against_fake_irc(IrcFault::NickTakenTwice, "direct");
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(u(&v, "registered"), 6);
    let (code, v, _) = against_fake_irc(IrcFault::BadNick, "direct");
    assert_eq!(code, 1);
    assert!(u(&v, "registered") < 6);
    let problems = format!("{:?}", v.get("problems").unwrap());
    assert!(problems.contains("432"), "{problems}");
}

/// A fresh directory under the system's temporary one.
fn temp_dir(what: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "loadgen-test-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A broker in this process with its native TLS listener on a free port
/// and a certificate made for it in `dir`; flood control off as for the
/// in-process broker.
fn tls_broker(dir: &std::path::Path) -> broker::Broker {
    let (cert, key) = broker::gen_cert(dir).unwrap();
    broker::log::set_level(broker::log::Level::Warn);
    let listener = broker::bind(([127, 0, 0, 1], 0).into()).unwrap();
    let config = broker::Config {
        listen: listener.local_addr().unwrap().to_string(),
        tls_listen: "127.0.0.1:0".into(),
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        irc_listen: String::new(),
        http_listen: String::new(),
        data_dir: String::new(),
        rate_per_sec: 0,
        rate_bytes_per_sec: 0,
        conn_rate_per_sec: 0,
        stats_interval_secs: 0,
        log_level: "warn".into(),
        ..broker::Config::default()
    };
    broker::start(listener, config).unwrap()
}

#[test]
fn tls_in_process_on_every_door() {
    // The in-process broker opens its TLS listeners on a certificate made
    // for the run, and every door's clients go through them.
    let v = assert_clean(&small(&["--tls", "--duration", "2"]));
    assert_eq!(v.get("tls"), Some(&Json::Bool(true)));
    assert_eq!(u(&v, "registered"), 20);
    assert_eq!(u(&v, "expected"), u(&v, "sent") * 19);
    for k in ["protocol_errors", "disconnects", "unacked", "send_errors"] {
        assert_eq!(u(&v, k), 0, "{k}");
    }
    for door in ["irc", "web"] {
        let v = assert_clean(&small(&["--tls", "--door", door, "--duration", "0.5"]));
        assert_eq!(v.get("door").and_then(Json::as_str), Some(door));
        assert_eq!(v.get("tls"), Some(&Json::Bool(true)), "{door}");
        assert_eq!(u(&v, "expected"), u(&v, "sent") * 19, "{door}");
    }
    // Plain runs say so.
    let v = assert_clean(&small(&["--duration", "0.3"]));
    assert_eq!(v.get("tls"), Some(&Json::Bool(false)));
}

#[test]
fn tls_against_a_broker_at_an_address() {
    let dir = temp_dir("tls");
    let b = tls_broker(&dir);
    let tls_addr = b.tls_addr().unwrap().to_string();
    let ca = dir.join("cert.pem").display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--addr",
            &tls_addr,
            "--clients",
            "6",
            "--senders",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--drain",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = loadgen(&args);
        (code, report(&stdout), stderr)
    };

    // Trusting the broker's certificate: a clean run, by IP or by name.
    let (code, v, stderr) = run(&["--tls", "--ca", &ca]);
    assert_eq!(code, 0, "{v:?} {stderr}");
    assert_eq!(u(&v, "lost"), 0);
    assert_eq!(u(&v, "received"), u(&v, "expected"));
    assert!(stderr.contains("native door over TLS at"), "{stderr}");
    let by_name = tls_addr.replace("127.0.0.1", "localhost");
    let (code, stdout, _) = loadgen(&[
        "--addr",
        &by_name,
        "--tls",
        "--ca",
        &ca,
        "--clients",
        "4",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}");

    // Another certificate: every handshake fails, and the report says why.
    let other = temp_dir("other-ca");
    let (other_cert, _) = broker::gen_cert(&other).unwrap();
    let other_cert = other_cert.display().to_string();
    let (code, v, _) = run(&["--tls", "--ca", &other_cert]);
    assert_eq!(code, 1, "{v:?}");
    assert_eq!(u(&v, "registered"), 0);
    let problems = format!("{:?}", v.get("problems").unwrap());
    assert!(problems.contains("TLS handshake with"), "{problems}");
    assert!(problems.contains("certificate"), "{problems}");

    // Plain text on the TLS port: the broker closes without a word.
    let (code, v, _) = run(&[]);
    assert_eq!(code, 1, "{v:?}");
    assert_eq!(u(&v, "registered"), 0);

    let _ = b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn tls_flags_that_do_not_go_together() {
    for (args, says) in [
        (&["--ca", "cert.pem"][..], "--ca needs --tls"),
        (&["--tls", "--addr", "127.0.0.1:7879"], "needs --ca FILE"),
        (&["--tls", "--ca", "cert.pem"], "in-process"),
        (
            &[
                "--tls",
                "--addr",
                "127.0.0.1:7879",
                "--ca",
                "/nonexistent/c.pem",
            ],
            "cannot read --ca /nonexistent/c.pem",
        ),
    ] {
        let (code, stdout, stderr) = loadgen(args);
        assert_eq!(code, 2, "{args:?}: {stdout} {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A broker node of a cluster on `redis`, in this process, on free
/// loopback ports (every door), flood control off as for the in-process
/// broker.
fn cluster_node(redis: &RedisServer, name: &str) -> broker::Broker {
    let (url, name) = (redis.url(), name.to_string());
    testkit::start_with(move |c| {
        c.cluster = url;
        c.node = name;
        c.cluster_heartbeat_secs = 1;
        c.cluster_node_timeout_secs = 3;
        c.rate_per_sec = 0;
        c.rate_bytes_per_sec = 0;
        c.conn_rate_per_sec = 0;
    })
}

/// The same-node or cross-node latency object of a report over several
/// nodes: present, with samples, every percentile above zero.
fn split_latency<'a>(v: &'a Json, key: &str) -> &'a Json {
    let l = v.get(key).unwrap_or_else(|| panic!("{key} missing: {v:?}"));
    for k in ["p50", "p90", "p99", "p999", "max", "samples"] {
        let x = l.get(k).and_then(Json::as_f64);
        assert!(x.is_some_and(|x| x > 0.0), "{key}.{k}: {v:?}");
    }
    l
}

#[test]
fn clients_spread_over_two_clustered_brokers() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (cluster_node(&redis, "lg1"), cluster_node(&redis, "lg2"));
    let run = |door: &str, flag: &str, list: &str, mode: &str| {
        let (d, l) = (format!("--door={door}"), format!("--{flag}={list}"));
        let m = format!("--mode={mode}");
        let v = assert_clean(&small(&[&d, &l, &m, "--senders=4", "--duration=1"]));
        assert_eq!(u(&v, "nodes"), 2, "{door} {mode}");
        assert_eq!(u(&v, "registered"), 20, "{door} {mode}");
        // Sending waited until both nodes listed all 20 clients.
        assert!(v.get("settle_ms").and_then(Json::as_f64).is_some(), "{v:?}");
        for k in ["protocol_errors", "disconnects", "unacked", "send_errors"] {
            assert_eq!(u(&v, k), 0, "{door} {mode}: {k}");
        }
        // Both kinds of delivery happened, and together they are all of
        // them.
        let same = u(split_latency(&v, "latency_same_us"), "samples");
        let cross = u(split_latency(&v, "latency_cross_us"), "samples");
        assert_eq!(same + cross, u(v.get("latency_us").unwrap(), "samples"));
        v
    };
    let native = format!("{},{}", n1.local_addr(), n2.local_addr());
    // `SEND *` reaches every client on both nodes: owed to all 19 others,
    // whatever each ACK counted, and all of it arrives.
    let v = run("native", "addr", &native, "all");
    assert_eq!(u(&v, "expected"), u(&v, "sent") * 19);
    // With lg-i on node i mod 2, a message from lg-0 reaches 9 clients on
    // its own node and 10 on the other: about half the samples cross.
    let v = run("native", "addr", &native, "direct");
    assert!(u(&v, "expected") > 0);
    // The web door is spread the same way.
    let web = format!("{},{}", n1.http_addr().unwrap(), n2.http_addr().unwrap());
    let v = run("web", "web-addr", &web, "all");
    assert_eq!(u(&v, "expected"), u(&v, "sent") * 19);
}
