//! The per-address connection rate (`conn_rate_per_sec`,
//! `conn_rate_burst`): a token bucket per IP address in the acceptor. Over
//! it a new connection gets `ERR SERVER_FULL` and is closed, without taking
//! a slot and without disturbing anyone already connected.

use protocol::ErrorCode;
use std::time::{Duration, Instant};
use testkit::{start_with, wait_for, Peer, DEADLINE};

const REFUSED: &str = "ERR SERVER_FULL :too many new connections from your address; slow down";

#[test]
fn over_the_rate_is_refused_then_refilled() {
    let b = start_with(|c| {
        c.conn_rate_per_sec = 1;
        c.conn_rate_burst = 3;
    });
    let addr = b.local_addr();
    // The burst: the bystander and two more.
    let mut bystander = Peer::named(addr, "bystander");
    let _second = Peer::connect(addr);
    let _third = Peer::connect(addr);

    // The fourth in a row (well within a second of the first).
    let mut fourth = Peer::connect_raw(addr);
    fourth.expect(REFUSED);
    fourth.expect_eof();
    wait_for("the refusal to be counted", || {
        b.stats().errors_sent(ErrorCode::ServerFull) == 1
    });
    // It took no slot: three open, three accepted.
    let s = b.stats();
    assert_eq!((s.connections, s.accepted), (3, 3));

    // The bystander is unaffected and heard of no one joining.
    bystander.send("PING still-here\n");
    bystander.expect("PONG still-here");
    bystander.expect_quiet();

    // Refilled (one token a second): a new connection gets HELLO again.
    let deadline = Instant::now() + DEADLINE;
    let mut refused = 0u64;
    let mut admitted = loop {
        assert!(Instant::now() < deadline, "never admitted after refill");
        let mut p = Peer::connect_raw(addr);
        let first = p.next();
        if first.line.starts_with("HELLO ") {
            break p;
        }
        assert_eq!(first.line, REFUSED);
        refused += 1;
        p.expect_eof();
        std::thread::sleep(Duration::from_millis(100));
    };
    admitted.send("NAME latecomer\n");
    admitted.expect("OK NAME latecomer");
    bystander.expect("JOINED latecomer");
    assert_eq!(
        b.stats().errors_sent(ErrorCode::ServerFull),
        1 + refused,
        "every refusal counted once"
    );
}

#[test]
fn zero_rate_is_no_limit() {
    let b = start_with(|c| {
        c.conn_rate_per_sec = 0;
        c.conn_rate_burst = 1;
    });
    let peers: Vec<Peer> = (0..50).map(|_| Peer::connect(b.local_addr())).collect();
    assert_eq!(peers.len(), 50);
    assert_eq!(b.stats().errors_sent(ErrorCode::ServerFull), 0);
}
