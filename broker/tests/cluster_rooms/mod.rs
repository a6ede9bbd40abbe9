//! Rooms, receipts, ids, accounts and the IRC views across the nodes of a
//! cluster (docs/cluster.md §2): in-process brokers over a real
//! `redis-server` that testkit starts on a free port.

use super::cluster::node;
use super::irc::Irc;
use testkit::redis::RedisServer;
use testkit::{start_with, wait_for, Peer};

/// Waits until `peer` on its node sees `line` as the answer to `ask`
/// (presence crosses nodes through Redis, a moment later).
fn until_answer(peer: &mut Peer, ask: &str, line: &str) {
    // Each ask's answer, passing over anything else that arrives meanwhile
    // (a JOINED from another node), so answers never shift.
    let verb = line.split(' ').next().unwrap_or_default();
    wait_for(line, || {
        peer.send(ask);
        peer.skip_until_verb(verb).line == line
    });
}

#[test]
fn a_room_spans_the_nodes() {
    let redis = RedisServer::start_new();
    let (n1, n2, n3) = (node(&redis, "m1"), node(&redis, "m2"), node(&redis, "m3"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    // Two nodes' news reach a third in no set order: bob first, then carol.
    alice.skip_until("JOINED bob");
    let mut carol = Peer::named(n3.local_addr(), "carol");
    alice.skip_until("JOINED carol");
    bob.skip_until("JOINED carol");
    // The room is created on n1 as #Rust; joiners elsewhere see that name
    // and count every member.
    alice.send("JOIN #Rust\n");
    alice.expect("OK JOIN #Rust 1");
    until_answer(&mut bob, "ROOMS\n", "ROOMS 1 :#Rust");
    bob.send("JOIN #rust\n");
    bob.expect("OK JOIN #Rust 2");
    alice.expect("JOINED bob #Rust");
    until_answer(&mut carol, "ROOMS\n", "ROOMS 1 :#Rust");
    // Nodes hear of each other's joins a moment later: a message from bob
    // travels after his join on the same Redis connection, so once carol
    // has it her node knows he is in the room.
    bob.send("SEND carol :in\n");
    bob.expect_prefix("ACK ");
    assert_eq!(carol.next_msg().body_str(), "in");
    carol.send("JOIN #RUST\n");
    carol.expect("OK JOIN #Rust 3");
    alice.expect("JOINED carol #Rust");
    bob.expect("JOINED carol #Rust");
    // LIST #room is the whole room, for members only.
    until_answer(&mut bob, "LIST #rust\n", "USERS 3 #Rust :alice bob carol");
    // Room messages reach every member on every node, in order, counted.
    for i in 0..30 {
        alice.send(&format!("SEND #rust :r{i}\n"));
        assert!(alice.expect_prefix("ACK ").ends_with(" 2"));
    }
    for i in 0..30 {
        let m = bob.next_msg();
        assert_eq!(m.field(3), "#Rust", "{}", m.line);
        assert_eq!(m.body_str(), format!("r{i}"));
        assert_eq!(carol.next_msg().body_str(), format!("r{i}"));
    }
    // A part is seen on the other nodes; the parted member gets nothing
    // more of the room.
    carol.send("PART #rust\n");
    carol.expect("OK PART #Rust");
    alice.expect("PARTED carol #Rust");
    bob.expect("PARTED carol #Rust");
    bob.send("SEND #rust :after carol\n");
    assert!(bob.expect_prefix("ACK ").ends_with(" 1"));
    assert_eq!(alice.next_msg().body_str(), "after carol");
    carol.expect_quiet();
    // A member whose connection ends leaves the room everywhere.
    bob.send("QUIT\n");
    bob.expect("BYE");
    alice.expect("LEFT bob quit");
    until_answer(&mut alice, "LIST #rust\n", "USERS 1 #Rust :alice");
    let _ = (n2, n3);
}

#[test]
fn a_receipt_goes_back_to_the_senders_node_once() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "p1"), node(&redis, "p2"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    alice.skip_until("JOINED bob");
    alice.send("SEND bob :read me\n");
    let id = alice
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    let m = bob.next_msg();
    assert_eq!(m.field(1), id);
    bob.send(&format!("RECV {id} alice\n"));
    alice.expect(&format!("RCPT {id} bob"));
    // Once only; and a receipt for a message never delivered is dropped.
    bob.send(&format!("RECV {id} alice\n"));
    bob.send("RECV 999999999 alice\n");
    alice.expect_quiet();
    // Also for a message to everyone.
    alice.send("SEND * :all of you\n");
    let id = alice
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(bob.next_msg().body_str(), "all of you");
    bob.send(&format!("RECV {id} alice\n"));
    alice.expect(&format!("RCPT {id} bob"));
}

#[test]
fn message_ids_are_unique_across_nodes_and_increase_per_sender() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "q1"), node(&redis, "q2"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    alice.skip_until("JOINED bob");
    // Both nodes have their slot once connected (a first message to
    // everyone crosses only then).
    until_answer(&mut alice, "LIST\n", "USERS 2 :alice bob");
    until_answer(&mut bob, "LIST\n", "USERS 2 :alice bob");
    let mut ids = std::collections::HashSet::new();
    let (mut last_a, mut last_b) = (0u64, 0u64);
    for i in 0..50 {
        alice.send(&format!("SEND bob :a{i}\n"));
        bob.send(&format!("SEND alice :b{i}\n"));
        let a: u64 = alice.skip_until("ACK ").field(1).parse().unwrap();
        let b: u64 = bob.skip_until("ACK ").field(1).parse().unwrap();
        assert!(a > last_a && b > last_b, "ids go up per sender");
        (last_a, last_b) = (a, b);
        assert!(ids.insert(a), "id {a} used twice");
        assert!(ids.insert(b), "id {b} used twice");
    }
}

#[test]
fn an_account_login_is_claimed_across_the_cluster() {
    let redis = RedisServer::start_new();
    let dir = testkit::data_dir();
    let url = redis.url();
    let n1 = start_with(move |c| {
        c.cluster = url;
        c.node = "k1".into();
        c.cluster_heartbeat_secs = 1;
        c.cluster_node_timeout_secs = 3;
        c.rate_per_sec = 0;
        c.data_dir = dir;
    });
    let n2 = node(&redis, "k2");
    let mut watcher = Peer::named(n2.local_addr(), "watcher");
    let mut dana = Peer::named(n1.local_addr(), "dana");
    dana.send("REGISTER correct-horse-battery\n");
    // (watcher's JOINED may reach n1 after dana has her name.)
    dana.skip_until_line("OK REGISTER dana");
    dana.send("QUIT\n");
    dana.skip_until_line("BYE");
    watcher.skip_until("LEFT dana quit");
    let mut again = Peer::connect(n1.local_addr());
    again.send("NAME dana correct-horse-battery\n");
    again.expect("OK NAME dana");
    // The other node sees the login and refuses the name: the account is
    // the cluster's (owned there too), and its login is claimed.
    watcher.skip_until("JOINED dana");
    let mut thief = Peer::connect(n2.local_addr());
    thief.send("NAME dana\n");
    thief.expect_prefix("ERR NAME_OWNED");
    thief.send("NAME dana correct-horse-battery\n");
    thief.expect_prefix("ERR NAME_TAKEN");
    until_answer(&mut watcher, "LIST\n", "USERS 2 :dana watcher");
}

#[test]
fn irc_sees_the_whole_cluster() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "w1"), node(&redis, "w2"));
    let mut bob = Peer::named(n2.local_addr(), "bob");
    bob.send("JOIN #ops\n");
    bob.expect("OK JOIN #ops 1");
    let mut ian = Irc::registered(n1.irc_addr().unwrap(), "ian", "");
    bob.skip_until("JOINED ian");
    // Presence may take a moment to cross; ISON asks until it has.
    wait_for("ISON to see bob", || {
        ian.send("ISON bob nobody");
        ian.until(" 303 ").ends_with(":bob")
    });
    ian.send("WHOIS bob");
    ian.until(" 311 ian bob bob ");
    ian.until(" 318 ");
    ian.send("NAMES #all");
    let names = ian.until(" 353 ");
    assert!(names.contains("bob") && names.contains("ian"), "{names}");
    // bob's room crosses a moment after bob himself: LIST until it has.
    wait_for("LIST to show #ops with bob", || {
        ian.send("LIST");
        let mut ops = false;
        loop {
            let line = ian.until(" 32");
            if line.contains(" 323 ") {
                return ops;
            }
            ops |= line.contains(" 322 ian #ops 1 ");
        }
    });
    ian.send("LUSERS");
    let l = ian.until(" 251 ");
    assert!(
        l.contains("There are 2 users") && l.contains("on 2 servers"),
        "{l}"
    );
    // An IRC join of a room that has members on the other node: its NAMES
    // has them, and channel messages cross both ways.
    ian.send("JOIN #ops");
    let names = ian.until(" 353 ");
    assert!(names.contains("bob") && names.contains("ian"), "{names}");
    // bob founded #ops on w2: ian, first in it on w1, is no operator.
    assert!(!names.contains("@ian"), "{names}");
    bob.expect("JOINED ian #ops");
    ian.send("PRIVMSG #ops :hello ops");
    let m = bob.next_msg();
    assert_eq!((m.field(3), m.body_str().as_str()), ("#ops", "hello ops"));
    bob.send("SEND #ops :hi ian\n");
    bob.skip_until("ACK ");
    ian.until(":bob!bob@chat PRIVMSG #ops :hi ian");
}

#[test]
fn while_redis_is_away_cross_node_work_is_refused_with_its_own_reason() {
    let mut redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "v1"), node(&redis, "v2"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    alice.skip_until("JOINED bob");
    alice.send("JOIN #r\n");
    alice.expect("OK JOIN #r 1");
    until_answer(&mut bob, "ROOMS\n", "ROOMS 1 :#r");
    bob.send("JOIN #r\n");
    bob.expect("OK JOIN #r 2");
    alice.expect("JOINED bob #r");
    redis.stop();
    wait_for("SEND * to be refused", || {
        alice.send("SEND * :everyone?\n");
        let f = alice.next();
        if f.line.starts_with("ERR UNAVAILABLE") {
            assert!(f.line.contains("cluster is unreachable"), "{}", f.line);
            return true;
        }
        false
    });
    alice.send("SEND #r :room?\n");
    let f = alice.next();
    assert!(f.line.starts_with("ERR UNAVAILABLE"), "{}", f.line);
    // Nothing reached bob of what was refused; he left meanwhile.
    bob.send("QUIT\n");
    bob.expect("BYE");
    // When Redis is back, n1 hears that bob left: n2's LEFT waited for
    // Redis (`quit`), or, if n1 was not listening yet when n2 sent it,
    // n1's check finds him gone (`timeout`). And the name is free again.
    redis.start();
    let left = alice.skip_until("LEFT bob ");
    assert!(
        left.line == "LEFT bob quit" || left.line == "LEFT bob timeout",
        "{}",
        left.line
    );
    let mut bob2 = Peer::connect(n1.local_addr());
    wait_for("bob's name to be free", || {
        bob2.send("NAME bob\n");
        bob2.next().line == "OK NAME bob"
    });
    let _ = n2;
}

/// Joins `room` until its history has `want` messages (a node that has
/// just come up reads the rooms' history from Redis a moment later);
/// returns the history's bodies.
fn join_for_history(p: &mut Peer, room: &str, want: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    wait_for(&format!("{want} messages of history in {room}"), || {
        p.send(&format!("JOIN {room}\n"));
        p.expect_prefix(&format!("OK JOIN {room} "));
        bodies.clear();
        while let Some(f) = p.try_next(std::time::Duration::from_millis(300)) {
            if f.verb() == "MSG" {
                bodies.push(f.body_str());
            }
        }
        if bodies.len() == want {
            return true;
        }
        p.send(&format!("PART {room}\n"));
        p.skip_until(&format!("OK PART {room}"));
        false
    });
    bodies
}

#[test]
fn room_history_is_the_clusters() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "h1"), node(&redis, "h2"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    alice.skip_until("JOINED bob");
    // alice talks in #hist on n1, where nobody on n2 is a member.
    alice.send("JOIN #hist\n");
    alice.expect("OK JOIN #hist 1");
    for i in 0..3 {
        alice.send(&format!("SEND #hist :h{i}\n"));
        alice.expect_prefix("ACK ");
    }
    // A direct message travels after them: once bob has it, his node has
    // the room's messages too.
    alice.send("SEND bob :sync\n");
    alice.expect_prefix("ACK ");
    assert_eq!(bob.next_msg().body_str(), "sync");
    // bob joins on n2: the history comes right after OK JOIN, in order,
    // with the room's name and the original ids.
    bob.send("JOIN #HIST\n");
    bob.expect("OK JOIN #hist 2");
    for i in 0..3 {
        let m = bob.next_msg();
        assert_eq!((m.field(3), m.body_str()), ("#hist", format!("h{i}")));
    }
    // The room empties; a node started afterwards still has its history
    // (read from Redis), and so does n2 for a newcomer.
    alice.skip_until("JOINED bob #hist");
    alice.send("PART #hist\n");
    alice.expect("OK PART #hist");
    bob.send("PART #hist\n");
    bob.skip_until("OK PART #hist");
    let n3 = node(&redis, "h3");
    let mut carol = Peer::named(n3.local_addr(), "carol");
    assert_eq!(join_for_history(&mut carol, "#hist", 3), ["h0", "h1", "h2"]);
    let mut dave = Peer::named(n2.local_addr(), "dave");
    assert_eq!(join_for_history(&mut dave, "#hist", 3), ["h0", "h1", "h2"]);
    // Redis keeps the room's last room_history messages.
    assert_eq!(redis.command(&["LLEN", "chat:main:history:#hist"]), "3");
}
