//! The soak test (ignored by default; run it with
//! `cargo test --release -p broker --test broker -- --ignored soak`).
//!
//! Hundreds of clients join, leave and vanish while messages flow for a few
//! minutes (`SOAK_SECS`, default 180). Asserts: the broker never stops
//! answering, clients that stayed lose nothing and see every sender in
//! order, and when everyone has left no connection, user or writer stream
//! is left behind and memory is back near where it started.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{start_with, wait_for, Peer};

const SENDERS: usize = 4;
const STAYERS: usize = 16;
const CHURN_THREADS: usize = 8;
const CHURN_OPEN: usize = 40;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One churning connection's fate.
fn churn(addr: SocketAddr, thread: usize, stop: &AtomicBool, cycles: &AtomicU64) {
    let mut open: Vec<Peer> = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let mut c = Peer::connect(addr);
        c.send(&format!("NAME churn-{thread}-{i}\n"));
        // Say something now and then, to a stayer and to everyone.
        if i.is_multiple_of(3) {
            c.send(&format!(
                "SEND stay-{} :hello from churn\nSEND * :hi\n",
                i % STAYERS as u64
            ));
        }
        open.push(c);
        if open.len() >= CHURN_OPEN {
            let c = open.remove((i as usize * 7) % open.len());
            match i % 4 {
                0 => {
                    c.stream.shutdown(Shutdown::Both).ok();
                }
                1 => {
                    let mut c = c;
                    c.send("QUIT :bye\n");
                }
                2 => {
                    // Leave without reading anything, without QUIT.
                    drop(c);
                }
                _ => {
                    let mut c = c;
                    c.send("LIST\nPING x\n");
                    drop(c);
                }
            }
            cycles.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
#[ignore = "runs for minutes; cargo test --release -p broker --test broker -- --ignored soak"]
fn soak() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let b = start_with(|c| {
        // Churn from one address is the point here, not flood control.
        c.rate_per_sec = 0;
        c.rate_bytes_per_sec = 0;
        c.conn_rate_per_sec = 0;
        c.stats_interval_secs = 10;
        c.log_level = "info".into();
    });
    broker::log::set_level(broker::log::Level::Warn);
    let addr = b.local_addr();
    let baseline = rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));

    // Stayers: read everything, check each sender's sequence is whole and in
    // order.
    let mut stayers = Vec::new();
    for s in 0..STAYERS {
        let mut c = Peer::named(addr, &format!("stay-{s}"));
        stayers.push(std::thread::spawn(move || {
            let mut next: HashMap<String, u64> = HashMap::new();
            let mut done = 0;
            while done < SENDERS {
                let m = c.next();
                if !m.line.starts_with("MSG ") || !m.field(2).starts_with("sender-") {
                    continue;
                }
                let body = m.body_str();
                if body == "done" {
                    done += 1;
                    continue;
                }
                let seq: u64 = body.parse().unwrap();
                let want = next.entry(m.field(2).to_string()).or_insert(0);
                assert_eq!(seq, *want, "stay-{s}: gap or reorder from {}", m.field(2));
                *want += 1;
            }
            c.send("QUIT\n");
            next
        }));
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let stop = Arc::clone(&stop);
        let mut c = Peer::named(addr, &format!("sender-{s}"));
        senders.push(std::thread::spawn(move || {
            let mut seq = 0u64;
            let mut reader = c.stream.try_clone().unwrap();
            // Drain whatever comes back (ACKs, JOINED, LEFT, churn messages)
            // so this sender is never a slow consumer itself.
            let drain = std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            });
            while !stop.load(Ordering::Relaxed) {
                let mut batch = String::new();
                for _ in 0..10 {
                    batch.push_str(&format!("SEND * :{seq}\n"));
                    seq += 1;
                }
                c.send(&batch);
                std::thread::sleep(Duration::from_millis(20));
            }
            c.send("SEND * :done\nQUIT\n");
            drain.join().unwrap();
            seq
        }));
    }
    let mut churners = Vec::new();
    for t in 0..CHURN_THREADS {
        let (stop, cycles) = (Arc::clone(&stop), Arc::clone(&cycles));
        churners.push(std::thread::spawn(move || churn(addr, t, &stop, &cycles)));
    }

    let end = Instant::now() + Duration::from_secs(secs);
    let mut peak = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(rss_kib());
        // The broker keeps answering throughout.
        let mut probe = Peer::connect(addr);
        probe.send("PING alive\n");
        probe.expect("PONG alive");
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    let sent: Vec<u64> = senders.into_iter().map(|h| h.join().unwrap()).collect();
    for h in stayers {
        let got = h.join().unwrap();
        for (s, n) in sent.iter().enumerate() {
            assert_eq!(got.get(&format!("sender-{s}")).copied().unwrap_or(0), *n);
        }
    }
    wait_for("everyone gone", || {
        let s = b.stats();
        s.connections == 0 && s.users == 0
    });
    let stats = b.stats();
    let after = rss_kib();
    eprintln!(
        "soak: {secs}s, {} churn cycles, {} messages, {} deliveries, rss baseline {} MiB, peak {} MiB, after {} MiB;{}",
        cycles.load(Ordering::Relaxed),
        stats.messages,
        stats.deliveries,
        baseline / 1024,
        peak / 1024,
        after / 1024,
        stats.breakdown()
    );
    assert!(cycles.load(Ordering::Relaxed) > 100);
    assert!(
        after < baseline + 64 * 1024,
        "memory not back near baseline: {after} KiB vs {baseline} KiB"
    );
    let report = b.shutdown();
    assert_eq!(report.notified, 0);
}
