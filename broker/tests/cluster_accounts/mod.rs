//! Accounts and stored messages across the nodes of a cluster
//! (shared/cluster.md: "Accounts, stored messages and room history are
//! cluster-wide"): in-process brokers over a real `redis-server` that
//! testkit starts on a free port. The accounts live in Redis, so an
//! account registered on one node logs in on every node, and a message for
//! an absent account waits for it whatever node it comes back on.

use super::cluster::{node, node_in};
use super::irc::Irc;
use testkit::redis::RedisServer;
use testkit::{wait_for, Peer};

/// Registers `name` on `addr` with `password`, and leaves (presence
/// from other nodes may arrive meanwhile).
fn make_account(addr: std::net::SocketAddr, name: &str, password: &str) {
    let mut p = Peer::named(addr, name);
    p.send(&format!("REGISTER {password}\n"));
    p.skip_until_line(&format!("OK REGISTER {name}"));
    p.send("QUIT\n");
    p.skip_until_line("BYE");
}

/// The configuration `broker account …` would read on a node.
fn admin_config(redis: &RedisServer) -> broker::Config {
    broker::Config {
        cluster: redis.url(),
        data_dir: String::new(),
        ..broker::Config::default()
    }
}

/// The next `OK` or `ERR` line (presence lines are skipped).
fn answer(p: &mut Peer) -> String {
    loop {
        let f = p.next();
        if f.line.starts_with("OK ") || f.line.starts_with("ERR ") {
            return f.line;
        }
    }
}

#[test]
fn an_account_registered_on_one_node_logs_in_on_the_others() {
    let redis = RedisServer::start_new();
    let n1 = node_in(&redis, "a1", Some(testkit::data_dir()));
    let (n2, n3) = (node(&redis, "a2"), node(&redis, "a3"));
    let mut watcher = Peer::named(n3.local_addr(), "watcher");
    let mut dana = Peer::named(n1.local_addr(), "Dana");
    dana.send("REGISTER correct-horse\n");
    dana.skip_until_line("OK REGISTER Dana");
    dana.send("QUIT\n");
    dana.skip_until_line("BYE");
    watcher.skip_until("LEFT Dana quit");
    // Every node knows the account by the time it has seen its owner
    // leave: the plain name is owned, not free.
    let mut thief = Peer::connect(n3.local_addr());
    thief.send("NAME DANA\n");
    thief.expect_prefix("ERR NAME_OWNED");
    // A wrong password on another node, then the right one: shown as
    // registered.
    let mut p = Peer::connect(n2.local_addr());
    p.send("NAME dana wrong-horse\n");
    p.expect_prefix("ERR BAD_PASSWORD");
    p.send("NAME dana correct-horse\n");
    p.expect("OK NAME Dana");
    watcher.skip_until("JOINED Dana");
    // Held on n2: a login on n1 finds the name in use.
    let mut again = Peer::connect(n1.local_addr());
    again.send("NAME dana correct-horse\n");
    again.expect_prefix("ERR NAME_TAKEN");
    // A name that is not an account is a wrong password anywhere.
    again.send("NAME nobody some-password\n");
    again.expect_prefix("ERR BAD_PASSWORD");
    // Registered once, cluster-wide: REGISTER again on n2 is refused.
    p.send("REGISTER another-horse\n");
    p.expect_prefix("ERR ALREADY_REGISTERED");
}

#[test]
fn a_message_for_an_absent_account_waits_for_it_on_any_node() {
    let redis = RedisServer::start_new();
    let (n1, n2, n3) = (node(&redis, "b1"), node(&redis, "b2"), node(&redis, "b3"));
    make_account(n1.local_addr(), "dora", "dora-pass");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    let mut carl = Peer::named(n1.local_addr(), "carl");
    bob.skip_until("JOINED carl");
    // Counted as for one broker: the absent account is queued, not missing.
    let mut ids = Vec::new();
    for (i, to) in ["dora", "dora,zed", "DORA,carl"].iter().enumerate() {
        bob.send(&format!("SEND {to} :note {i}\n"));
        let ack = bob.skip_until("ACK ");
        let f: Vec<&str> = ack.line.split(' ').collect();
        ids.push(f[1].parse::<u64>().unwrap());
        match i {
            0 => assert_eq!(ack.line, format!("ACK {} 1", ids[0])),
            1 => assert_eq!(ack.line, format!("ACK {} 1 zed", ids[1])),
            _ => assert_eq!(ack.line, format!("ACK {} 2", ids[2])),
        }
    }
    assert_eq!(carl.next_msg().body_str(), "note 2");
    // In Redis, not in a node.
    assert_eq!(redis.command(&["LLEN", "chat:main:mailbox:dora"]), "3");
    // Delivered on a third node, in order, with their ids, right after OK.
    let mut dora = Peer::connect(n3.local_addr());
    dora.send("NAME dora dora-pass\n");
    dora.expect("OK NAME dora");
    let kinds = ["direct", "multi", "multi"];
    for (i, id) in ids.iter().enumerate() {
        let m = dora.next_msg();
        assert_eq!(m.field(1), id.to_string());
        assert_eq!((m.field(2), m.field(3)), ("bob", kinds[i]));
        assert_eq!(m.body_str(), format!("note {i}"));
    }
    // Shown: the sender's node gets the receipt.
    dora.send(&format!("RECV {} bob\n", ids[0]));
    bob.skip_until(&format!("RCPT {} dora", ids[0]));
    // Delivered once: a login on another node finds nothing.
    dora.send("QUIT\n");
    dora.expect("BYE");
    bob.skip_until("LEFT dora quit");
    assert_eq!(redis.command(&["EXISTS", "chat:main:mailbox:dora"]), "0");
    let mut again = Peer::connect(n1.local_addr());
    again.send("NAME dora dora-pass\n");
    again.expect("OK NAME dora");
    again.expect_quiet();
}

#[test]
fn a_message_sent_as_the_account_logs_in_elsewhere_is_not_stranded() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "c1"), node(&redis, "c2"));
    make_account(n1.local_addr(), "erin", "erin-pass");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    for round in 0..5 {
        // bob sends without waiting for erin's JOINED (nor, the round
        // before, for her name to be given back): n2 may take her for
        // absent and store the messages, or Redis still have her on n1;
        // each reaches her anyway, in the login's mailbox or sent on to
        // her node, once.
        let mut erin = Peer::connect(n1.local_addr());
        erin.send("NAME erin erin-pass\n");
        for i in 0..20 {
            bob.send(&format!("SEND erin :r{round} m{i}\n"));
        }
        for _ in 0..20 {
            let ack = bob.skip_until("ACK ");
            assert!(ack.line.ends_with(" 1"), "{}", ack.line);
        }
        erin.expect("OK NAME erin");
        let mut got: Vec<String> = (0..20).map(|_| erin.next_msg().body_str()).collect();
        got.sort_by_key(|b| b.split('m').nth(1).and_then(|n| n.parse::<u32>().ok()));
        let want: Vec<String> = (0..20).map(|i| format!("r{round} m{i}")).collect();
        assert_eq!(got, want);
        erin.send("QUIT\n");
        erin.expect("BYE");
        bob.skip_until("LEFT erin quit");
    }
    assert_eq!(redis.command(&["EXISTS", "chat:main:mailbox:erin"]), "0");
    // Gone with the name: stored again from now on.
    wait_for("erin's live mark to go", || {
        redis.command(&["EXISTS", "chat:main:live:erin"]) == "0"
    });
}

#[test]
fn two_nodes_registering_one_name_at_once_have_one_winner() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "d1"), node(&redis, "d2"));
    for i in 0..10 {
        let name = format!("zed{i}");
        let mut a = Peer::named(n1.local_addr(), &name);
        // Free the claim behind n1's back, as if the cluster had been
        // apart: then n2 gives the name out too, and both users have it.
        redis.command(&["DEL", &format!("chat:main:name:{name}")]);
        let mut b = Peer::named(n2.local_addr(), &name);
        a.send("REGISTER first-pass\n");
        b.send("REGISTER second-pass\n");
        let answers = [answer(&mut a), answer(&mut b)];
        let wins = answers
            .iter()
            .filter(|l| l.starts_with("OK REGISTER"))
            .count();
        let losses = answers
            .iter()
            .filter(|l| l.starts_with("ERR ALREADY_REGISTERED"))
            .count();
        assert_eq!((wins, losses), (1, 1), "{answers:?}");
        // The winner's password is the account's, on either node.
        let pass = if answers[0].starts_with("OK") {
            "first-pass"
        } else {
            "second-pass"
        };
        for p in [&mut a, &mut b] {
            p.send("QUIT\n");
            p.skip_until_line("BYE");
        }
        let mut c = Peer::connect(n2.local_addr());
        wait_for("the name to be free", || {
            c.send(&format!("NAME {name} {pass}\n"));
            c.next().line == format!("OK NAME {name}")
        });
    }
}

#[test]
fn without_redis_logins_registrations_and_stored_messages_are_unavailable() {
    let mut redis = RedisServer::start_new();
    let n1 = node_in(&redis, "e1", Some(testkit::data_dir()));
    make_account(n1.local_addr(), "fay", "fay-pass-1");
    let mut gus = Peer::named(n1.local_addr(), "gus");
    redis.stop();
    // Never from the node's own store: the cluster's accounts are away.
    let mut p = Peer::connect(n1.local_addr());
    p.send("NAME fay fay-pass-1\n");
    let line = p.expect_prefix("ERR UNAVAILABLE ");
    assert!(line.contains("cluster is unreachable"), "{line}");
    gus.send("REGISTER gus-pass-1\n");
    let line = gus.expect_prefix("ERR UNAVAILABLE ");
    assert!(line.contains("cluster is unreachable"), "{line}");
    // On IRC, PASS and SASL say the accounts are out of reach, not that
    // the password is wrong.
    let irc = n1.irc_addr().unwrap();
    let mut c = Irc::connect(irc, "fay");
    c.send("PASS fay-pass-1");
    c.send("NICK fay");
    c.send("USER fay 0 * :Fay");
    let line = c.until(" 437 ");
    assert!(line.contains("accounts are unreachable"), "{line}");
    use base64::Engine as _;
    let mut s = Irc::connect(irc, "fay");
    s.send("CAP LS 302");
    s.send("NICK fay");
    s.send("USER fay 0 * :Fay");
    s.until(" CAP * LS ");
    s.send("CAP REQ :sasl");
    s.until(" ACK ");
    s.send("AUTHENTICATE PLAIN");
    s.until("AUTHENTICATE +");
    let plain = base64::engine::general_purpose::STANDARD.encode("fay\0fay\0fay-pass-1");
    s.send(&format!("AUTHENTICATE {plain}"));
    let line = s.until(" 904 ");
    assert!(line.contains("accounts are unreachable"), "{line}");
    // A message for the absent account is refused, never counted: while
    // the node has not yet noticed, its ACK names fay as missed.
    wait_for("a message for fay to be refused", || {
        gus.send("SEND fay :are you there\n");
        let f = gus.next();
        assert!(
            f.line.starts_with("ERR UNAVAILABLE") || f.line.ends_with(" 0 fay"),
            "{}",
            f.line
        );
        f.line.starts_with("ERR UNAVAILABLE")
    });
    // Local messages still go.
    gus.send("SEND gus :me\n");
    gus.skip_until("ACK ");
    // Back (empty, as a Redis without persistence restarts): the node
    // works with the cluster's accounts again, which are none now.
    redis.start();
    let mut q = Peer::connect(n1.local_addr());
    wait_for("Redis to be reachable again", || {
        q.send("NAME fay fay-pass-1\n");
        q.next().line.starts_with("ERR BAD_PASSWORD")
    });
    gus.send("REGISTER gus-pass-1\n");
    gus.skip_until_line("OK REGISTER gus");
}

#[test]
fn broker_account_manages_the_clusters_accounts() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "f1"), node(&redis, "f2"));
    make_account(n1.local_addr(), "Hal", "hal-pass-1");
    make_account(n2.local_addr(), "ivy", "ivy-pass-1");
    let config = admin_config(&redis);
    let list = broker::admin::list(&config).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("Hal\tregistered "), "{list}");
    assert!(lines[1].starts_with("ivy\tregistered "), "{list}");
    assert_eq!(lines[2], "2 accounts");
    // A new password works on every node.
    broker::admin::reset_password(&config, "HAL", "hal-pass-2").unwrap();
    let mut p = Peer::connect(n2.local_addr());
    p.send("NAME hal hal-pass-1\n");
    p.expect_prefix("ERR BAD_PASSWORD");
    p.send("NAME hal hal-pass-2\n");
    p.expect("OK NAME Hal");
    // A stored message goes with its account; the nodes hear of the
    // deletion and the name is free again.
    p.send("SEND ivy :for ivy\n");
    p.expect_prefix("ACK ");
    assert_eq!(redis.command(&["LLEN", "chat:main:mailbox:ivy"]), "1");
    assert!(broker::admin::delete(&config, "ivy").is_ok());
    assert!(broker::admin::delete(&config, "ivy").is_err());
    assert_eq!(redis.command(&["EXISTS", "chat:main:mailbox:ivy"]), "0");
    let mut q = Peer::connect(n1.local_addr());
    wait_for("ivy to be free on n1", || {
        q.send("NAME ivy\n");
        q.next().line == "OK NAME ivy"
    });
    assert!(broker::admin::reset_password(&config, "nobody", "some-pass-1").is_err());
    // Without Redis, the error says so.
    drop(redis);
    let e = broker::admin::list(&config).unwrap_err();
    assert!(e.contains("not reachable"), "{e}");
}
