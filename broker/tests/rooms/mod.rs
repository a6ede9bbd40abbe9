//! Rooms on the native door (docs/protocol.md, "Rooms").

use protocol::ErrorCode;
use testkit::{start, start_with, Peer};

/// `alice`, `bob` and `carol`, each having seen the others join.
fn three(addr: std::net::SocketAddr) -> (Peer, Peer, Peer) {
    let mut alice = Peer::named(addr, "alice");
    let mut bob = Peer::named(addr, "bob");
    let carol = Peer::named(addr, "carol");
    alice.skip_until("JOINED carol");
    bob.skip_until("JOINED carol");
    (alice, bob, carol)
}

#[test]
fn join_send_list_part_and_presence() {
    let b = start();
    let (mut alice, mut bob, mut carol) = three(b.local_addr());
    alice.send("JOIN #Rust\n");
    alice.expect("OK JOIN #Rust 1");
    // Case-insensitive, shown as first created.
    bob.send("join #rust\n");
    bob.expect("OK JOIN #Rust 2");
    alice.expect("JOINED bob #Rust");
    bob.send("SEND #rust :hello room\n");
    let ack = bob.expect_prefix("ACK ");
    assert!(ack.ends_with(" 1"), "{ack}");
    let m = alice.next_msg();
    assert_eq!(m.field(2), "bob");
    assert_eq!(m.field(3), "#Rust");
    assert_eq!(m.body_str(), "hello room");
    // Carol is not in it: nothing reaches her, and she can't send or list.
    carol.send("SEND #rust :let me in\n");
    carol.expect_prefix("ERR NOT_IN_ROOM #rust");
    carol.send("LIST #rust\n");
    carol.expect_prefix("ERR NOT_IN_ROOM #rust");
    carol.send("PART #rust\n");
    carol.expect_prefix("ERR NOT_IN_ROOM #rust");
    carol.expect_quiet();
    alice.send("LIST #RUST\n");
    alice.expect("USERS 2 #Rust :alice bob");
    alice.send("ROOMS\n");
    alice.expect("ROOMS 1 :#Rust");
    bob.send("PART #rust :later\n");
    bob.expect("OK PART #Rust");
    alice.expect("PARTED bob #Rust");
    alice.send("PART #rust\n");
    alice.expect("OK PART #Rust");
    // Empty rooms don't exist.
    carol.send("ROOMS\n");
    carol.expect("ROOMS 0 :");
    bob.expect_quiet();
}

#[test]
fn room_rules_and_errors() {
    let b = start_with(|c| c.max_rooms_per_user = 2);
    let addr = b.local_addr();
    let mut anon = Peer::connect(addr);
    anon.send("JOIN #a\n");
    anon.expect_prefix("ERR NOT_REGISTERED");
    let mut alice = Peer::named(addr, "alice");
    for bad in ["#", "#all", "#ALL", "#a b", "nohash", "#caf\u{e9}"] {
        alice.send(&format!("JOIN {bad}\n"));
        let line = alice.line();
        assert!(
            line.starts_with("ERR BAD_NAME") || line.starts_with("ERR BAD_FRAME"),
            "JOIN {bad}: {line}"
        );
    }
    alice.send(&format!("JOIN #{}\n", "r".repeat(33)));
    alice.expect_prefix("ERR BAD_NAME");
    alice.send("JOIN #a\nJOIN #A\n");
    alice.expect("OK JOIN #a 1");
    alice.expect_prefix("ERR ALREADY_IN_ROOM #A");
    alice.send("JOIN #b\nJOIN #c\n");
    alice.expect("OK JOIN #b 1");
    alice.expect_prefix("ERR TOO_MANY_ROOMS");
    // One room per SEND, not mixed with names or *.
    for bad in ["#a,#b", "#a,bob", "bob,#a"] {
        alice.send(&format!("SEND {bad} :x\n"));
        alice.expect_prefix("ERR BAD_FRAME");
    }
    alice.send("SEND #nope :x\n");
    alice.expect_prefix("ERR NOT_IN_ROOM #nope");
    // Alone in a room: the message is accepted for nobody.
    alice.send("SEND #a :echo?\n");
    let ack = alice.expect_prefix("ACK ");
    assert!(ack.ends_with(" 0"), "{ack}");
    alice.expect_quiet();
    assert!(b.stats().errors_sent(ErrorCode::TooManyRooms) == 1);
}

#[test]
fn leaving_the_chat_leaves_every_room_with_only_left() {
    let b = start();
    let (mut alice, mut bob, mut carol) = three(b.local_addr());
    for p in [&mut alice, &mut bob, &mut carol] {
        p.send("JOIN #x\n");
        p.expect_prefix("OK JOIN #x");
    }
    alice.skip_until("JOINED carol #x");
    bob.skip_until("JOINED carol #x");
    carol.send("QUIT\n");
    carol.expect("BYE");
    alice.expect("LEFT carol quit");
    bob.expect("LEFT carol quit");
    alice.send("LIST #x\n");
    alice.expect("USERS 2 #x :alice bob");
    drop(bob);
    alice.expect("LEFT bob disconnect");
    alice.send("LIST #x\n");
    alice.expect("USERS 1 #x :alice");
    alice.expect_quiet();
}

#[test]
fn a_room_message_reaches_every_member_in_order_and_acks_count_them() {
    let b = start_with(|c| c.rate_per_sec = 0);
    let addr = b.local_addr();
    let mut members: Vec<Peer> = (0..8)
        .map(|i| {
            let mut p = Peer::named(addr, &format!("m{i}"));
            p.send("JOIN #big\n");
            p.expect_prefix("OK JOIN #big");
            p
        })
        .collect();
    let mut outsider = Peer::named(addr, "outsider");
    let mut sender = members.remove(0);
    let n = 200;
    let mut wire = String::new();
    for k in 0..n {
        wire.push_str(&format!("SEND #big :{k}\n"));
    }
    sender.send(&wire);
    let mut acks = 0;
    while acks < n {
        let f = sender.next();
        if f.verb() == "ACK" {
            assert_eq!(f.field(2), "7");
            acks += 1;
        }
    }
    for m in &mut members {
        for k in 0..n {
            let msg = m.next_msg();
            assert_eq!(msg.field(3), "#big");
            assert_eq!(msg.body_str(), k.to_string());
        }
    }
    outsider.expect_quiet();
}
