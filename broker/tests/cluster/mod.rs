//! Several brokers over one real Redis act as one chat (docs/cluster.md,
//! first step: names, presence, direct/multi/all messages and LIST across
//! nodes; faults of Redis). Every broker runs in this process; Redis is a
//! real `redis-server` that testkit starts on a free port.

use std::sync::{Arc, Barrier};
use testkit::redis::RedisServer;
use testkit::{start_with, wait_for, Peer};

fn node(redis: &RedisServer, name: &str) -> broker::Broker {
    let url = redis.url();
    let name = name.to_string();
    start_with(move |c| {
        c.cluster = url;
        c.node = name;
        c.cluster_heartbeat_secs = 1;
        c.cluster_node_timeout_secs = 3;
        c.rate_per_sec = 0;
    })
}

#[test]
fn three_nodes_are_one_chat() {
    let redis = RedisServer::start_new();
    let (n1, n2, n3) = (node(&redis, "n1"), node(&redis, "n2"), node(&redis, "n3"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    alice.skip_until("JOINED bob");
    let mut carol = Peer::named(n3.local_addr(), "carol");
    // Presence crosses nodes through Redis: a JOINED for someone who came
    // just before may reach a newcomer too.
    alice.skip_until("JOINED carol");
    bob.skip_until("JOINED carol");
    // Names are one namespace: no node gives a name another has.
    let mut other = Peer::connect(n3.local_addr());
    other.send("NAME ALICE\n");
    other.expect_prefix("ERR NAME_TAKEN");
    // LIST is the whole cluster.
    carol.send("LIST\n");
    carol.expect("USERS 3 :alice bob carol");
    // direct, multi and everyone across nodes, in order, counted.
    for i in 0..50 {
        alice.send(&format!("SEND bob :d{i}\n"));
        assert!(alice.expect_prefix("ACK ").ends_with(" 1"));
    }
    for i in 0..50 {
        assert_eq!(bob.next_msg().body_str(), format!("d{i}"));
    }
    alice.send("SEND bob,carol,zed :two of you\n");
    assert!(alice.expect_prefix("ACK ").ends_with(" 2 zed"));
    let m = bob.next_msg();
    assert!(m.line.contains(" alice multi "), "{}", m.line);
    assert_eq!(carol.next_msg().body_str(), "two of you");
    bob.send("SEND * :to everyone\n");
    assert!(bob.expect_prefix("ACK ").ends_with(" 2"));
    assert_eq!(alice.next_msg().body_str(), "to everyone");
    assert_eq!(carol.next_msg().body_str(), "to everyone");
    // Leaving is seen everywhere, once, and frees the name.
    carol.send("QUIT\n");
    carol.expect("BYE");
    alice.expect("LEFT carol quit");
    bob.expect("LEFT carol quit");
    let mut carol2 = Peer::connect(n1.local_addr());
    carol2.send("NAME carol\n");
    carol2.expect("OK NAME carol");
    alice.expect("JOINED carol");
    bob.expect("JOINED carol");
    // A node that shuts down: its users are seen leaving.
    drop(n2);
    alice.expect("LEFT bob quit");
    carol2.expect("LEFT bob quit");
    let mut bob2 = Peer::connect(n3.local_addr());
    bob2.send("NAME bob\n");
    bob2.expect("OK NAME bob");
}

#[test]
fn a_name_race_across_nodes_has_exactly_one_winner() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "r1"), node(&redis, "r2"));
    for round in 0..30 {
        let name = format!("racer{round}");
        let go = Arc::new(Barrier::new(2));
        let race = |addr: std::net::SocketAddr| {
            let go = Arc::clone(&go);
            let name = name.clone();
            std::thread::spawn(move || {
                let mut p = Peer::connect(addr);
                go.wait();
                p.send(&format!("NAME {name}\n"));
                let won = p.next().line.starts_with("OK NAME");
                (won, p)
            })
        };
        let (a, b) = (race(n1.local_addr()), race(n2.local_addr()));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(
            a.0 ^ b.0,
            "round {round}: exactly one winner ({} {})",
            a.0,
            b.0
        );
    }
}

#[test]
fn without_redis_a_node_serves_its_own_and_refuses_cross_node_work() {
    let mut redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "u1"), node(&redis, "u2"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    alice.expect("JOINED bob");
    let mut amy = Peer::named(n1.local_addr(), "amy");
    alice.expect("JOINED amy");
    redis.stop();
    wait_for("the send to bob to be refused", || {
        alice.send("SEND bob :hello?\n");
        let f = alice.next();
        f.line.starts_with("ERR UNAVAILABLE")
    });
    // Local work goes on.
    alice.send("SEND amy :still here\n");
    alice.skip_until("ACK ");
    assert_eq!(amy.next_msg().body_str(), "still here");
    redis.start();
    wait_for("the cluster to be back", || {
        alice.send("SEND bob :back\n");
        alice.next().line.starts_with("ACK ")
    });
    assert_eq!(bob.skip_until("MSG ").line.split(' ').nth(2), Some("alice"));
    let _ = n2;
}

#[test]
fn an_irc_user_and_a_native_user_on_two_nodes() {
    use super::irc::Irc;
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "i1"), node(&redis, "i2"));
    let mut bob = Peer::named(n2.local_addr(), "bob");
    // The nick is claimed cluster-wide before the welcome.
    let mut taken = Irc::connect(n1.irc_addr().unwrap(), "bob");
    taken.send("NICK bob");
    taken.send("USER bob 0 * :Bob");
    taken.until(" 433 ");
    let mut ian = Irc::registered(n1.irc_addr().unwrap(), "ian", "");
    bob.expect("JOINED ian");
    bob.send("SEND ian :hi ian\n");
    bob.skip_until("ACK ");
    ian.until(":bob!bob@chat PRIVMSG ian :hi ian");
    ian.send("PRIVMSG bob :hi bob");
    assert_eq!(bob.next_msg().body_str(), "hi bob");
}
