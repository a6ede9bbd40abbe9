//! Several brokers over one real Redis act as one chat (docs/cluster.md,
//! first step: names, presence, direct/multi/all messages and LIST across
//! nodes; a node killed with SIGKILL; faults of Redis, also under load).
//! The brokers run in this process, except a node that is to be killed,
//! which runs as a child process of the `broker` binary; Redis is a real
//! `redis-server` that testkit starts on a free port.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use testkit::redis::RedisServer;
use testkit::{start_with, wait_for, Peer, DEADLINE};

/// A node of the cluster on `redis` (short heartbeat and timeout, no
/// flood control); `data_dir` too if `dir` is set. The cluster test
/// modules all start their nodes here.
pub(crate) fn node_in(redis: &RedisServer, name: &str, dir: Option<String>) -> broker::Broker {
    let url = redis.url();
    let name = name.to_string();
    start_with(move |c| {
        c.cluster = url;
        c.node = name;
        c.cluster_heartbeat_secs = 1;
        c.cluster_node_timeout_secs = 3;
        c.rate_per_sec = 0;
        if let Some(dir) = dir {
            c.data_dir = dir;
        }
    })
}

/// A node of the cluster on `redis`, without a data directory.
pub(crate) fn node(redis: &RedisServer, name: &str) -> broker::Broker {
    node_in(redis, name, None)
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

// ---- Faults and races with whole brokers ----

/// A cluster node run as a child process of the `broker` binary (as the
/// signals tests run it), so it can be killed with SIGKILL: its config
/// lives in a temp dir of its own, its port comes from the `listening on`
/// log line. Killed (and its dir removed) when dropped.
struct ChildNode {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
    addr: SocketAddr,
}

impl ChildNode {
    /// Starts node `name` of the cluster on `redis` and waits until it
    /// listens.
    fn start(redis: &RedisServer, name: &str) -> ChildNode {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "broker-cluster-node-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("broker.toml");
        std::fs::write(
            &config,
            format!(
                "cluster = \"{}\"\n\
                 node = \"{name}\"\n\
                 cluster_heartbeat_secs = 1\n\
                 cluster_node_timeout_secs = 3\n\
                 listen = \"127.0.0.1:0\"\n\
                 irc_listen = \"\"\n\
                 http_listen = \"\"\n\
                 data_dir = \"\"\n\
                 rate_per_sec = 0\n\
                 stats_interval_secs = 0\n\
                 log_level = \"info\"\n",
                redis.url()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .arg("--config")
            .arg(&config)
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
        let mut node = ChildNode {
            child,
            log,
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let deadline = Instant::now() + DEADLINE;
        let line = loop {
            let found = node
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("listening on "))
                .cloned();
            if let Some(l) = found {
                break l;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("node {name} exited ({status}); log:\n{}", node.log());
            }
            assert!(
                Instant::now() < deadline,
                "node {name} did not listen within {DEADLINE:?}; log:\n{}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let addr = line.split("listening on ").nth(1).unwrap_or_default();
        node.addr = addr
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        node
    }

    /// Its stderr so far.
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL: no goodbye to Redis, no `SHUTDOWN` to its users.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asks `LIST` until the answer is `want` (presence crosses nodes through
/// Redis, a moment later); skips whatever else arrives meanwhile.
fn wait_list(peer: &mut Peer, want: &str) {
    wait_for(want, || {
        peer.send("LIST\n");
        peer.skip_until_verb("USERS").line == want
    });
}

/// Every frame `peer` gets until `deadline` (header lines).
fn frames_until(peer: &mut Peer, deadline: Instant) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match peer.try_next(left) {
            Some(f) => got.push(f.line),
            None => break,
        }
    }
    got
}

#[test]
fn kill_9_of_a_node_times_its_users_out_once_everywhere_and_frees_their_names() {
    let redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "k1"), node(&redis, "k2"));
    let mut n3 = ChildNode::start(&redis, "k3");
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    alice.skip_until("JOINED bob");
    let kira = Peer::named(n3.addr, "kira");
    let kurt = Peer::named(n3.addr, "kurt");
    for p in [&mut alice, &mut bob] {
        // One node publishes in order: kira's JOINED comes before kurt's.
        p.skip_until("JOINED kira");
        p.skip_until("JOINED kurt");
        p.send("PING settled\n");
        p.skip_until_line("PONG settled");
    }
    wait_list(&mut alice, "USERS 4 :alice bob kira kurt");
    wait_list(&mut bob, "USERS 4 :alice bob kira kurt");

    let killed = Instant::now();
    n3.kill_9();
    drop((kira, kurt));
    // Within the node timeout (3 s) plus a heartbeat or so; the bound is
    // generous (10 s) so a loaded machine doesn't fail it.
    let bound = killed + DEADLINE;
    let mut seen = Vec::new();
    for p in [&mut alice, &mut bob] {
        let mut lines = Vec::new();
        while !(lines.iter().any(|l| l == "LEFT kira timeout")
            && lines.iter().any(|l| l == "LEFT kurt timeout"))
        {
            let left = bound.saturating_duration_since(Instant::now());
            let Some(f) = p.try_next(left) else {
                panic!(
                    "no LEFT … timeout for both killed users within {DEADLINE:?} of the kill; \
                     got {lines:?}; killed node's log:\n{}",
                    n3.log()
                );
            };
            lines.push(f.line);
        }
        seen.push((lines, killed.elapsed()));
    }
    // Nothing more about them (no second LEFT) for a second after.
    let quiet_until = Instant::now() + Duration::from_secs(1);
    for ((lines, took), p) in seen.iter_mut().zip([&mut alice, &mut bob]) {
        let late = frames_until(p, quiet_until);
        eprintln!("kill -9: LEFTs seen {took:?} after the kill: {lines:?}; then {late:?}");
        lines.extend(late);
        lines.sort();
        assert_eq!(
            *lines,
            ["LEFT kira timeout", "LEFT kurt timeout"],
            "each killed user LEFT … timeout exactly once, and nothing else"
        );
    }
    // LIST no longer shows them, on either node.
    alice.send("LIST\n");
    alice.expect("USERS 2 :alice bob");
    bob.send("LIST\n");
    bob.expect("USERS 2 :alice bob");
    // Their names are free again, on the surviving nodes.
    let mut kira2 = Peer::connect(n1.local_addr());
    kira2.send("NAME kira\n");
    kira2.expect("OK NAME kira");
    let mut kurt2 = Peer::connect(n2.local_addr());
    kurt2.send("NAME kurt\n");
    kurt2.expect("OK NAME kurt");
    for p in [&mut alice, &mut bob] {
        let mut joined = vec![p.line(), p.line()];
        joined.sort();
        assert_eq!(joined, ["JOINED kira", "JOINED kurt"]);
        p.send("LIST\n");
        p.expect("USERS 4 :alice bob kira kurt");
    }
    // The rest goes on.
    alice.send("SEND bob :still here\n");
    assert!(alice.expect_prefix("ACK ").ends_with(" 1"));
    let m = bob.next();
    assert_eq!(m.verb(), "MSG", "{}", m.line);
    assert_eq!(m.field(2), "alice");
    assert_eq!(m.body_str(), "still here");
    alice.expect_quiet();
    bob.expect_quiet();
}

#[test]
fn a_name_race_across_three_nodes_has_exactly_one_winner_every_round() {
    let redis = RedisServer::start_new();
    let nodes = [node(&redis, "t1"), node(&redis, "t2"), node(&redis, "t3")];
    for round in 0..30 {
        let name = format!("x{round}");
        let go = Arc::new(Barrier::new(nodes.len()));
        let racers: Vec<_> = nodes
            .iter()
            .map(|n| {
                let addr = n.local_addr();
                let go = Arc::clone(&go);
                let name = name.clone();
                std::thread::spawn(move || {
                    let mut p = Peer::connect(addr);
                    go.wait();
                    p.send(&format!("NAME {name}\n"));
                    (p.line(), p)
                })
            })
            .collect();
        let results: Vec<(String, Peer)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let lines: Vec<&str> = results.iter().map(|(l, _)| l.as_str()).collect();
        let won = lines
            .iter()
            .filter(|l| **l == format!("OK NAME {name}"))
            .count();
        let lost = lines
            .iter()
            .filter(|l| l.starts_with("ERR NAME_TAKEN"))
            .count();
        assert_eq!(
            (won, lost),
            (1, 2),
            "round {round}: one OK NAME and two NAME_TAKEN: {lines:?}"
        );
    }
}

#[test]
fn every_message_kind_crosses_nodes_in_order_and_counted() {
    let redis = RedisServer::start_new();
    let (n1, n2, n3) = (node(&redis, "e1"), node(&redis, "e2"), node(&redis, "e3"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let mut amy = Peer::named(n1.local_addr(), "amy");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    let mut carol = Peer::named(n3.local_addr(), "carol");
    // The sender's node must know everyone before the counts can be right.
    wait_list(&mut alice, "USERS 4 :alice amy bob carol");
    alice.expect_quiet();

    const N: usize = 300;
    let kind = |i: usize| match i % 3 {
        0 => ("bob", "direct", 1),
        1 => ("bob,carol,amy", "multi", 3),
        _ => ("*", "all", 3),
    };
    let mut batch = String::new();
    for i in 0..N {
        let (to, k, _) = kind(i);
        batch.push_str(&format!("SEND {to} :{i} {k}\n"));
    }
    batch.push_str("SEND bob,carol,amy :end\n");
    alice.send(&batch);
    let mut last_ack = 0u64;
    for i in 0..=N {
        let ack = alice.next();
        let count = if i < N { kind(i).2 } else { 3 };
        let id: u64 = ack
            .field(1)
            .parse()
            .unwrap_or_else(|_| panic!("{i}: {ack:?}"));
        assert_eq!(ack.line, format!("ACK {id} {count}"), "message {i}");
        assert!(id > last_ack, "message {i}: ids increase: {}", ack.line);
        last_ack = id;
    }
    // The sender is not among `*`'s recipients.
    alice.expect_quiet();

    let expected = |who: &str| -> Vec<String> {
        (0..N)
            .filter(|&i| kind(i).0 == "*" || kind(i).0.split(',').any(|t| t == who))
            .map(|i| format!("{i} {}", kind(i).1))
            .collect()
    };
    for (who, p) in [("bob", &mut bob), ("carol", &mut carol), ("amy", &mut amy)] {
        let mut got = Vec::new();
        let mut last_id = 0u64;
        for _ in 0..=N {
            let m = p.next_msg();
            assert_eq!(m.field(2), "alice", "{who}: {}", m.line);
            let id: u64 = m.field(1).parse().unwrap();
            assert!(id > last_id, "{who}: ids increase: {}", m.line);
            last_id = id;
            let body = m.body_str();
            if body == "end" {
                break;
            }
            let k = body.split(' ').nth(1).unwrap_or_default().to_string();
            assert_eq!(m.field(3), k, "{who}: kind of {body:?}");
            got.push(body);
        }
        let want = expected(who);
        assert_eq!(got.len(), want.len(), "{who}: how many arrived");
        assert_eq!(got, want, "{who}: exactly its messages, in order");
        p.expect_quiet();
    }
}

/// The reply to the command just sent (`ACK` or `ERR`); the frames before
/// it go to `others`.
fn reply(p: &mut Peer, others: &mut Vec<String>) -> String {
    loop {
        let f = p.next();
        if matches!(f.verb(), "ACK" | "ERR") {
            return f.line;
        }
        others.push(f.line);
    }
}

/// What the load thread saw for one message.
#[derive(Debug, Clone)]
struct Sent {
    seq: usize,
    /// To a user on the sender's own node.
    local: bool,
    /// The phase when it was sent: 0 Redis up, 1 stopped, 2 started again.
    phase: u8,
    reply: String,
}

impl Sent {
    fn acked(&self) -> bool {
        self.reply.starts_with("ACK ")
    }
    fn unavailable(&self) -> bool {
        self.reply.starts_with("ERR UNAVAILABLE")
    }
}

#[test]
fn redis_stopped_and_restarted_under_load_loses_no_acked_message() {
    let mut redis = RedisServer::start_new();
    let (n1, n2) = (node(&redis, "s1"), node(&redis, "s2"));
    let mut alice = Peer::named(n1.local_addr(), "alice");
    let amy = Peer::named(n1.local_addr(), "amy");
    let mut bob = Peer::named(n2.local_addr(), "bob");
    wait_list(&mut alice, "USERS 3 :alice amy bob");
    wait_list(&mut bob, "USERS 3 :alice amy bob");

    // The recipients read all along, so nothing piles up at them. Each
    // stops at the message `end`, or at the latest 10 s after the sender's
    // 15 s: an `end` that never comes is reported, not waited for forever.
    let reader = |mut p: Peer| {
        std::thread::spawn(move || {
            let mut msgs = Vec::new();
            let mut other = Vec::new();
            let until = Instant::now() + Duration::from_secs(25);
            while let Some(f) = p.try_next(until.saturating_duration_since(Instant::now())) {
                if f.verb() != "MSG" {
                    other.push(f.line);
                    continue;
                }
                let body = f.body_str();
                if body == "end" {
                    return (msgs, other, true, p);
                }
                msgs.push(body);
            }
            (msgs, other, false, p)
        })
    };
    let bob_reader = reader(bob);
    let amy_reader = reader(amy);

    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let sender = {
        let (phase, stop, log) = (Arc::clone(&phase), Arc::clone(&stop), Arc::clone(&log));
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(15);
            let mut others = Vec::new();
            for seq in 0..2000 {
                if stop.load(Ordering::Acquire) || Instant::now() >= until {
                    break;
                }
                let local = seq % 5 == 4;
                let to = if local { "amy" } else { "bob" };
                let phase = phase.load(Ordering::Acquire);
                alice.send(&format!("SEND {to} :s{seq}\n"));
                let reply = reply(&mut alice, &mut others);
                let refused = reply.starts_with("ERR UNAVAILABLE");
                log.lock().unwrap().push(Sent {
                    seq,
                    local,
                    phase,
                    reply,
                });
                // A steady load, backing off a little while refused.
                let pause = if refused { 10 } else { 1 };
                std::thread::sleep(Duration::from_millis(pause));
            }
            (alice, others)
        })
    };
    let snapshot = || log.lock().unwrap().clone();

    wait_for("50 cross-node ACKs before the stop", || {
        snapshot().iter().filter(|s| !s.local && s.acked()).count() >= 50
    });
    phase.store(1, Ordering::Release);
    redis.stop();
    wait_for("a cross-node send refused with UNAVAILABLE", || {
        snapshot().iter().any(|s| !s.local && s.unavailable())
    });
    wait_for(
        "a local send ACKed after a refusal, Redis still down",
        || {
            let sent = snapshot();
            let first = sent.iter().position(|s| s.unavailable()).unwrap();
            sent[first..].iter().any(|s| s.local && s.acked())
        },
    );
    phase.store(2, Ordering::Release);
    redis.start();
    let restarted = Instant::now();
    wait_for("a cross-node ACK after Redis is back", || {
        snapshot()
            .iter()
            .any(|s| s.phase == 2 && !s.local && s.acked())
    });
    let back_after = restarted.elapsed();
    wait_for("100 cross-node ACKs after Redis is back", || {
        let sent = snapshot();
        sent.iter()
            .filter(|s| s.phase == 2 && !s.local && s.acked())
            .count()
            >= 100
    });
    stop.store(true, Ordering::Release);
    let (mut alice, mut alice_others) = sender.join().unwrap();
    let sent = snapshot();
    // The end marks: sent until ACKed (Redis is back, but a refusal is
    // for the checks below to report, not for this to hang on).
    let mut end_replies = Vec::new();
    for to in ["bob", "amy"] {
        let until = Instant::now() + DEADLINE;
        while Instant::now() < until {
            alice.send(&format!("SEND {to} :end\n"));
            let reply = reply(&mut alice, &mut alice_others);
            let acked = reply.starts_with("ACK ");
            end_replies.push(format!("{to}: {reply}"));
            if acked {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (bob_msgs, bob_others, bob_ended, mut bob) = bob_reader.join().unwrap();
    let (amy_msgs, amy_others, amy_ended, _amy) = amy_reader.join().unwrap();
    let count = |f: &dyn Fn(&Sent) -> bool| sent.iter().filter(|s| f(s)).count();
    eprintln!(
        "redis restart: {} sent ({} cross ACKed, {} UNAVAILABLE, {} local ACKed); \
         cross ACKs again {back_after:?} after the restart; bob got {} MSG; \
         other frames: alice {alice_others:?}, bob {bob_others:?}, amy {amy_others:?}",
        sent.len(),
        count(&|s| !s.local && s.acked()),
        count(&|s| s.unavailable()),
        count(&|s| s.local && s.acked()),
        bob_msgs.len()
    );

    // Every check below is made and the failures reported together, so
    // one broken guarantee does not hide another.
    let mut failures: Vec<String> = Vec::new();
    if !(bob_ended && amy_ended) {
        failures.push(format!(
            "the end marks did not arrive (bob {bob_ended}, amy {amy_ended}); \
             the replies to them: {end_replies:?}"
        ));
    }
    // Local sends are ACKed whatever Redis does.
    for s in sent.iter().filter(|s| s.local && !s.acked()) {
        failures.push(format!("local send {} got {:?}", s.seq, s.reply));
    }
    // Cross-node: ACK or UNAVAILABLE; never refused before the stop; once
    // refused, refused until Redis was started again.
    let first_refused = sent.iter().position(Sent::unavailable).unwrap();
    for (at, s) in sent.iter().enumerate().filter(|(_, s)| !s.local) {
        let ok = match s.phase {
            0 => s.acked(),
            1 if at > first_refused => s.unavailable(),
            _ => s.acked() || s.unavailable(),
        };
        if !ok {
            failures.push(format!(
                "cross-node send {} in phase {} got {:?}",
                s.seq, s.phase, s.reply
            ));
        }
    }
    // Everything ACKed arrived, in order, and nothing refused did.
    let bodies = |local: bool| -> Vec<String> {
        sent.iter()
            .filter(|s| s.local == local && s.acked())
            .map(|s| format!("s{}", s.seq))
            .collect()
    };
    if amy_msgs != bodies(true) {
        failures.push(format!(
            "amy (local) got {amy_msgs:?}, ACKed for her {:?}",
            bodies(true)
        ));
    }
    let acked = bodies(false);
    let missing: Vec<&Sent> = sent
        .iter()
        .filter(|s| !s.local && s.acked() && !bob_msgs.contains(&format!("s{}", s.seq)))
        .collect();
    let extra: Vec<&String> = bob_msgs.iter().filter(|b| !acked.contains(b)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        // The sends around each lost one, to tell when it was lost.
        let around: Vec<String> = sent
            .iter()
            .filter(|s| {
                missing
                    .iter()
                    .any(|m| s.seq + 3 >= m.seq && s.seq <= m.seq + 3)
            })
            .map(|s| format!("{s:?}"))
            .collect();
        failures.push(format!(
            "bob: ACKed but never arrived: {missing:?}; arrived though refused: {extra:?}; \
             the sends around the lost ones: {around:?}"
        ));
    } else if bob_msgs != acked {
        failures.push(format!("bob: out of order: {bob_msgs:?}"));
    }
    // Nobody left: no LEFT (nor a JOINED again) for anyone on either node;
    // amy saw bob join at the start.
    for (who, frames) in [
        ("alice", &alice_others),
        ("bob", &bob_others),
        ("amy", &amy_others),
    ] {
        let presence: Vec<&String> = frames
            .iter()
            .filter(|l| l.starts_with("LEFT ") || (l.starts_with("JOINED ") && *l != "JOINED bob"))
            .collect();
        if !presence.is_empty() {
            failures.push(format!(
                "{who} saw users who never left leave and come back: {presence:?}"
            ));
        }
    }

    // Names are unique after the restart: once each node has claimed its
    // users' names again (docs/cluster.md §4: `name:<folded>`), nobody on
    // another node can take them.
    let claimed_by = |user: &str| redis.command(&["GET", &format!("chat:main:name:{user}")]);
    let until = Instant::now() + DEADLINE;
    for (user, owner) in [("alice", "s1"), ("amy", "s1"), ("bob", "s2")] {
        while claimed_by(user) != owner && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if claimed_by(user) != owner {
            failures.push(format!(
                "{user}'s name not claimed again by {owner} within {DEADLINE:?} \
                 of the end: Redis has {:?}",
                claimed_by(user)
            ));
        }
    }
    let mut others = [
        Peer::connect(n1.local_addr()),
        Peer::connect(n2.local_addr()),
    ];
    for (on, name) in [(1, "alice"), (1, "AMY"), (0, "Bob")] {
        let p = &mut others[on];
        p.send(&format!("NAME {name}\n"));
        let got = p.line();
        if !got.starts_with("ERR NAME_TAKEN") {
            failures.push(format!(
                "NAME {name} on the other node after the restart: {got:?}"
            ));
        }
    }
    // LIST on both nodes shows everyone.
    for (who, p) in [("alice", &mut alice), ("bob", &mut bob)] {
        p.send("LIST\n");
        let list = p.skip_until_verb("USERS").line;
        if list != "USERS 3 :alice amy bob" {
            failures.push(format!("LIST for {who} after the restart: {list:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
