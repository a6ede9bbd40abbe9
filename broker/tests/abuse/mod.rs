//! One user must not be able to hurt the others (docs/security.md): each
//! test has an abuser and bystanders who must lose nothing.
//!
//! The scenario suite at the end runs every abuse at once against chatting
//! bystanders: briefly in every `cargo test`, and for a minute with
//! `cargo test --release -p broker --test broker -- --ignored abuse_scenarios_full`.

use protocol::ErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{start_with, wait_for, Peer};

/// Reads frames until `MSG`s numbered `0..n` from `from` arrived in order
/// (the body is `<number> <padding>`); panics on a `LEFT <me> …` or a gap.
fn read_numbered(p: &mut Peer, from: &str, n: usize, pause_per_msg: Duration) {
    let mut next = 0usize;
    while next < n {
        let m = p.next();
        if m.verb() != "MSG" || m.field(2) != from {
            continue;
        }
        let body = m.body_str();
        let k: usize = body.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(k, next, "message lost or out of order");
        next += 1;
        if !pause_per_msg.is_zero() {
            std::thread::sleep(pause_per_msg);
        }
    }
}

/// Sends `SEND <to> <len>` + a numbered body of about `size` bytes, `n`
/// times, then reads the `n` ACKs (skipping everything else); returns the
/// lines other than ACKs that arrived meanwhile.
fn send_numbered(p: &mut Peer, to: &str, n: usize, size: usize) -> Vec<String> {
    let pad = "x".repeat(size);
    let mut out = String::new();
    for k in 0..n {
        let body = format!("{k} {pad}");
        out.push_str(&format!("SEND {to} {}\n{body}\n", body.len()));
    }
    let writer = {
        let mut s = p.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            s.write_all(out.as_bytes()).unwrap();
        })
    };
    let mut acks = 0;
    let mut other = Vec::new();
    while acks < n {
        let f = p.next();
        if f.verb() == "ACK" {
            acks += 1;
        } else {
            other.push(f.line);
        }
    }
    writer.join().unwrap();
    other
}

/// Sends `body` to `to` until the sender sees `LEFT <to> slow`; every
/// message gets its reply (the sender waits, nothing is refused).
pub(crate) fn send_until_dropped(sender: &mut Peer, to: &str, body: &str) {
    let deadline = Instant::now() + testkit::DEADLINE * 3;
    let left = format!("LEFT {to} slow");
    let mut gone = false;
    while !gone {
        assert!(Instant::now() < deadline, "{to} was never closed as slow");
        sender.send(&format!("SEND {to} {}\n{body}\n", body.len()));
        loop {
            let f = sender.next();
            gone |= f.line == left;
            if f.verb() == "ACK" || f.line.starts_with("ERR NO_SUCH_USER") {
                break;
            }
        }
    }
}

/// A registered connection that never reads, with a small receive buffer
/// so the broker's queue, not the kernel's buffers, takes the backlog.
fn stuck_reader(addr: std::net::SocketAddr, name: &str) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    use std::io::Write;
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    s.connect(&addr.into()).unwrap();
    let mut s: std::net::TcpStream = s.into();
    s.write_all(format!("NAME {name}\n").as_bytes()).unwrap();
    s
}

#[test]
fn a_burst_of_big_broadcasts_slows_the_sender_not_a_reader_who_reads() {
    let b = start_with(|c| {
        c.queue_bytes = 256 * 1024;
        c.slow_after_secs = 1;
    });
    let addr = b.local_addr();
    let mut sender = Peer::named(addr, "sender");
    // Reads about 6 MB/s: far slower than the burst arrives.
    let mut steady = Peer::named(addr, "steady");
    let stuck = stuck_reader(addr, "stuck");
    sender.skip_until("JOINED stuck");
    let n = 120;
    let reader = std::thread::spawn(move || {
        read_numbered(&mut steady, "sender", n, Duration::from_millis(10));
        steady.expect_quiet();
        steady
    });
    // 120 broadcasts of 60 kB: 28 times the queue bound of each reader,
    // more than the kernel's socket buffers hold for the stuck one.
    let other = send_numbered(&mut sender, "*", n, 60_000);
    assert!(
        !other.iter().any(|l| l.starts_with("LEFT steady")),
        "{other:?}"
    );
    let steady = reader.join().unwrap();
    drop(steady);
    // The reader that never reads was dropped, with its reason.
    if !other.iter().any(|l| l == "LEFT stuck slow") {
        sender.skip_until("LEFT stuck slow");
    }
    let stats = b.stats();
    assert_eq!(stats.slow_consumers, 1);
    assert_eq!(stats.errors_sent(ErrorCode::SlowConsumer), 1);
    drop(stuck);
}

#[test]
fn a_slow_consumer_gets_whole_frames_then_err_slow_consumer() {
    let b = start_with(|c| {
        c.queue_bytes = 64 * 1024;
        c.slow_after_secs = 1;
    });
    let addr = b.local_addr();
    let mut sender = Peer::named(addr, "sender");
    let mut stuck = Peer::named(addr, "stuck");
    sender.skip_until("JOINED stuck");
    // Keep sending until the broker gives up on the reader; every message
    // is acknowledged (the sender waits, nothing is refused).
    let body = "y".repeat(30_000);
    send_until_dropped(&mut sender, "stuck", &body);
    // Now read: only whole frames (never a cut one), ending with the reason.
    let mut last = String::new();
    while let Some(f) = stuck.try_next(testkit::DEADLINE) {
        if f.verb() == "MSG" {
            assert_eq!(f.body.as_ref().unwrap().len(), body.len());
        }
        last = f.line;
    }
    assert!(last.starts_with("ERR SLOW_CONSUMER"), "last frame: {last}");
}

#[test]
fn a_reader_dripping_a_few_bytes_now_and_then_is_dropped_too() {
    let b = start_with(|c| {
        c.queue_bytes = 64 * 1024;
        c.slow_after_secs = 1;
    });
    let addr = b.local_addr();
    let mut sender = Peer::named(addr, "sender");
    let mut drip = stuck_reader(addr, "drip");
    sender.skip_until("JOINED drip");
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            use std::io::Read;
            // 16 kB every 700 ms, against 60 kB messages. Whether the
            // broker sees no progress (the kernel's buffers hide a few
            // bytes) or too little (one message takes longer than twice
            // slow_after_secs to drain), the reader must go and the sender
            // must go on.
            let mut few = [0u8; 16 * 1024];
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(700));
                if matches!(drip.read(&mut few), Ok(0) | Err(_)) {
                    break;
                }
            }
        })
    };
    let body = "d".repeat(60_000);
    send_until_dropped(&mut sender, "drip", &body);
    stop.store(true, Ordering::Relaxed);
    dripper.join().unwrap();
    assert_eq!(b.stats().slow_consumers, 1);
}

#[test]
fn a_sender_over_its_byte_budget_waits_and_loses_nothing() {
    let b = start_with(|c| {
        c.rate_bytes_per_sec = 1024 * 1024;
        c.rate_bytes_burst = 128 * 1024;
    });
    let addr = b.local_addr();
    let mut sender = Peer::named(addr, "sender");
    let mut bob = Peer::named(addr, "bob");
    let mut carol = Peer::named(addr, "carol");
    sender.skip_until("JOINED carol");
    let n = 24;
    let r1 = std::thread::spawn(move || {
        read_numbered(&mut bob, "sender", n, Duration::ZERO);
        bob
    });
    let r2 = std::thread::spawn(move || {
        read_numbered(&mut carol, "sender", n, Duration::ZERO);
        carol
    });
    let started = Instant::now();
    // 24 messages of 50 kB to two readers: 2.4 MB of output against a
    // budget of 1 MiB/s after a 128 KiB burst.
    let other = send_numbered(&mut sender, "bob,carol", n, 50_000);
    assert!(other.iter().all(|l| !l.starts_with("ERR")), "{other:?}");
    let mut bob = r1.join().unwrap();
    let mut carol = r2.join().unwrap();
    // The budget paced the sender: a lower bound, so a slow machine can't
    // make this fail.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not paced: {:?}",
        started.elapsed()
    );
    bob.expect_quiet();
    carol.expect_quiet();
    sender.expect_quiet();
}

#[test]
fn error_floods_count_against_the_rate_and_end_in_a_kick() {
    let b = start_with(|c| {
        c.rate_per_sec = 1;
        c.rate_burst = 10;
        c.rate_kick_after = 5;
    });
    let addr = b.local_addr();
    let mut watcher = Peer::named(addr, "watcher");
    for (who, junk) in [
        ("unknown", "XYZ\n"),
        ("badlist", "LIST x\n"),
        ("blank", "\n"),
        ("crlf", "\r\n"),
        ("forger", "RECV 1 watcher\n"),
    ] {
        let mut p = Peer::named(addr, who);
        watcher.expect(&format!("JOINED {who}"));
        p.send(&junk.repeat(2000));
        let mut rate_limited = 0;
        let mut replies = 0;
        while let Some(f) = p.try_next(testkit::DEADLINE) {
            replies += 1;
            if f.line.starts_with("ERR RATE_LIMITED") {
                rate_limited += 1;
            }
        }
        // At most the burst of replies, then 5 strikes, then the close.
        assert_eq!(rate_limited, 5, "{who}");
        assert!(replies <= 9 + 5, "{who}: {replies} replies");
        watcher.expect(&format!("LEFT {who} kicked"));
    }
    // The forged receipts never reached the watcher as RCPT.
    watcher.expect_quiet();
}

#[test]
fn receipts_are_honoured_only_for_messages_delivered_to_you_and_once() {
    let b = start_with(|_| {});
    let addr = b.local_addr();
    let mut alice = Peer::named(addr, "alice");
    let mut bob = Peer::named(addr, "bob");
    let mut mallory = Peer::named(addr, "mallory");
    alice.skip_until("JOINED mallory");
    bob.skip_until("JOINED mallory");
    alice.send("SEND bob :for bob only\n");
    let id = alice
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    bob.next_msg();
    // Mallory never got message `id`: a forged receipt does nothing.
    mallory.send(&format!("RECV {id} alice\n"));
    mallory.expect_quiet();
    alice.expect_quiet();
    // Bob's is real: forwarded once, and a repeat is ignored.
    bob.send(&format!("RECV {id} alice\nRECV {id} alice\n"));
    bob.expect_quiet();
    alice.expect(&format!("RCPT {id} bob"));
    alice.expect_quiet();
    // A receipt naming the wrong sender does nothing either.
    mallory.send("SEND bob :from mallory\n");
    let mid = mallory
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    bob.next_msg();
    bob.send(&format!("RECV {mid} alice\nRECV {mid} mallory\n"));
    bob.expect_quiet();
    mallory.expect(&format!("RCPT {mid} bob"));
    alice.expect_quiet();
}

#[test]
fn a_frame_left_unfinished_times_out_and_a_slow_steady_one_does_not() {
    let b = start_with(|c| c.frame_timeout_secs = 1);
    let addr = b.local_addr();
    let mut watcher = Peer::named(addr, "watcher");
    // A body that never ends, a header that never ends.
    for (who, partial) in [("body", "SEND watcher 100\nabc"), ("header", "SEN")] {
        let mut p = Peer::named(addr, who);
        watcher.expect(&format!("JOINED {who}"));
        p.send(partial);
        p.expect_prefix("ERR TIMEOUT");
        p.expect_eof();
        watcher.expect(&format!("LEFT {who} timeout"));
    }
    // One byte a second forever, named or not: the same.
    let mut anon = Peer::connect(addr);
    anon.send("N");
    std::thread::sleep(Duration::from_millis(600));
    anon.send("A");
    anon.expect_prefix("ERR TIMEOUT");
    anon.expect_eof();
    // Each frame finishing within the time, though bytes are always pending:
    // never closed.
    let mut steady = Peer::named(addr, "steady");
    watcher.expect("JOINED steady");
    steady.send("PING 0\nPI");
    for k in 1..5 {
        std::thread::sleep(Duration::from_millis(400));
        steady.send(&format!("NG {k}\nPI"));
    }
    steady.send("NG end\n");
    for k in 0..5 {
        steady.expect(&format!("PONG {k}"));
    }
    steady.expect("PONG end");
    watcher.expect_quiet();
    assert_eq!(b.stats().errors_sent(ErrorCode::Timeout), 3);
}

// ---- The scenario suite ----

/// Two bystanders chat (numbered messages both ways, read as they come)
/// while abusers run every attack of docs/security.md at once, for `secs`.
/// Asserts the bystanders lost nothing, were never closed, and saw their
/// messages in order.
fn abuse_scenarios(secs: u64) {
    let b = start_with(|c| {
        c.queue_bytes = 1024 * 1024;
        c.slow_after_secs = 1;
        c.frame_timeout_secs = 1;
        c.rate_kick_after = 5;
        c.conn_rate_per_sec = 50;
        c.conn_rate_burst = 100;
    });
    let addr = b.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut threads = Vec::new();
    let spawn = |threads: &mut Vec<std::thread::JoinHandle<()>>, f: Box<dyn FnOnce() + Send>| {
        threads.push(std::thread::spawn(f));
    };
    // The bystanders and the burst senders come first: the churners soon
    // use up the address's connection budget.
    let mut alice = Peer::named(addr, "alice");
    let mut bob = Peer::named(addr, "bob");
    // Broadcast bursts of big bodies.
    for i in 0..2 {
        let stop = Arc::clone(&stop);
        let mut p = Peer::named(addr, &format!("burst{i}"));
        spawn(
            &mut threads,
            Box::new(move || {
                let body = "b".repeat(60_000);
                while !stop.load(Ordering::Relaxed) {
                    let mut out = String::new();
                    for _ in 0..20 {
                        out.push_str(&format!("SEND * {}\n{body}\n", body.len()));
                    }
                    p.send(&out);
                    // Each SEND gets one reply: ACK, or RATE_LIMITED when
                    // the budget let it go faster than the frame rate.
                    // Kicked for flooding, the thread just ends.
                    let mut replies = 0;
                    while replies < 20 {
                        let Some(f) = p.try_next(testkit::DEADLINE) else {
                            return;
                        };
                        if f.verb() == "ACK" || f.verb() == "ERR" {
                            replies += 1;
                        }
                    }
                }
            }),
        );
    }
    // Error, blank-line and forged-receipt floods; slowloris; churn; a
    // reader that never reads. Each reconnects when kicked or refused.
    let attacks: [&'static str; 6] = ["XYZ\n", "\n", "RECV 7 alice\n", "SEN", "churn", "stuck"];
    for (i, attack) in attacks.into_iter().enumerate() {
        let stop = Arc::clone(&stop);
        spawn(
            &mut threads,
            Box::new(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let Ok(s) = std::net::TcpStream::connect(addr) else {
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
                    let mut s = s;
                    use std::io::{Read, Write};
                    let name = format!("x{i}-{k}");
                    let _ = s.write_all(format!("NAME {name}\n").as_bytes());
                    match attack {
                        "churn" => {
                            let _ = s.write_all(b"QUIT\n");
                        }
                        "stuck" => {
                            // Sit there, reading nothing, until closed.
                            while !stop.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(50));
                                let mut one = [0u8; 1];
                                if s.peek(&mut one).map(|n| n == 0).unwrap_or(false) {
                                    break;
                                }
                            }
                        }
                        "SEN" => {
                            let _ = s.write_all(b"SEN");
                        }
                        junk => {
                            let _ = s.write_all(junk.repeat(5000).as_bytes());
                        }
                    }
                    if attack != "stuck" {
                        let mut sink = [0u8; 65536];
                        while let Ok(n) = s.read(&mut sink) {
                            if n == 0 || stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
            }),
        );
    }
    // The bystanders chat.
    let mut sent = 0usize;
    let mut got = [0usize; 2];
    while Instant::now() < until {
        alice.send(&format!("SEND bob :{sent} from alice\n"));
        bob.send(&format!("SEND alice :{sent} from bob\n"));
        sent += 1;
        for (k, (me, other)) in [(&mut alice, "bob"), (&mut bob, "alice")]
            .into_iter()
            .enumerate()
        {
            loop {
                let f = me.next();
                assert!(
                    !f.line.starts_with("LEFT alice") && !f.line.starts_with("LEFT bob"),
                    "a bystander was closed: {f:?}"
                );
                assert!(!f.line.starts_with("ERR"), "bystander got {f:?}");
                if f.verb() == "MSG" && f.field(2) == other {
                    let n: usize = f.body_str().split(' ').next().unwrap().parse().unwrap();
                    assert_eq!(n, got[k], "lost or reordered");
                    got[k] += 1;
                    break;
                }
            }
        }
        // Well under the default rate of 100 frames a second.
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(got, [sent, sent]);
    let stats = b.stats();
    eprintln!(
        "abuse scenarios: {sent} messages each way; {}",
        stats.breakdown()
    );
    assert!(stats.closed(broker::CloseReason::Kicked) > 0);
    assert!(stats.closed(broker::CloseReason::FrameTimeout) > 0);
    wait_for("the stuck readers to be dropped", || {
        b.stats().closed(broker::CloseReason::Slow) > 0
    });
}

#[test]
fn abuse_scenarios_short() {
    abuse_scenarios(4);
}

#[test]
#[ignore = "a minute of abuse; run with --ignored"]
fn abuse_scenarios_full() {
    abuse_scenarios(60);
}

#[test]
fn receipts_for_everyone_and_room_messages_need_the_reader_to_have_got_them() {
    let b = start_with(|_| {});
    let addr = b.local_addr();
    let mut alice = Peer::named(addr, "alice");
    let mut bob = Peer::named(addr, "bob");
    alice.skip_until("JOINED bob");
    for p in [&mut alice, &mut bob] {
        p.send("JOIN #r\n");
        p.expect_prefix("OK JOIN #r");
    }
    alice.skip_until("JOINED bob #r");
    alice.send("SEND * :to all\nSEND #r :to the room\n");
    let all = alice
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    let room = alice
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    bob.next_msg();
    bob.next_msg();
    // Mallory came later: she got neither live (the room message reaches
    // her as history on JOIN, which takes no receipts), so her receipts do
    // nothing.
    let mut mallory = Peer::named(addr, "mallory");
    alice.expect("JOINED mallory");
    mallory.send("JOIN #r\n");
    mallory.expect_prefix("OK JOIN #r");
    assert_eq!(mallory.next_msg().field(1), room);
    alice.expect("JOINED mallory #r");
    bob.skip_until("JOINED mallory #r");
    mallory.send(&format!("RECV {all} alice\nRECV {room} alice\n"));
    mallory.expect_quiet();
    alice.expect_quiet();
    // Bob got both: each receipt goes through once.
    bob.send(&format!(
        "RECV {all} alice\nRECV {room} alice\nRECV {all} alice\n"
    ));
    bob.expect_quiet();
    alice.expect(&format!("RCPT {all} bob"));
    alice.expect(&format!("RCPT {room} bob"));
    alice.expect_quiet();
}
