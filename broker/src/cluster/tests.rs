//! The link against a real `redis-server` (from testkit): several links
//! in one process stand for several nodes. Waits are deadline-bounded
//! polls; nothing asserts how fast anything is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::link::{Events, Link, LinkError, Settings, Status, Target};
use super::wire::{Item, Msg, MsgKind};
use parking_lot::Mutex;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use testkit::redis::RedisServer;

/// What one node's link reported.
#[derive(Default)]
struct Seen {
    items: Mutex<Vec<(String, Item)>>,
    statuses: Mutex<Vec<Status>>,
    gone: Mutex<Vec<(String, Vec<String>)>>,
}

impl Events for Seen {
    fn batch(&self, node: &str, items: Vec<Item>) {
        let mut seen = self.items.lock();
        seen.extend(items.into_iter().map(|i| (node.to_string(), i)));
    }
    fn status(&self, status: Status) {
        self.statuses.lock().push(status);
    }
    fn node_gone(&self, node: &str, mut freed: Vec<String>) {
        freed.sort();
        self.gone.lock().push((node.to_string(), freed));
    }
}

impl Seen {
    fn last_status(&self) -> Option<Status> {
        self.statuses.lock().last().copied()
    }

    /// The ids of the messages received, in order.
    fn ids(&self) -> Vec<u64> {
        self.items
            .lock()
            .iter()
            .filter_map(|(_, i)| match i {
                Item::Msg(m) => Some(m.id),
                _ => None,
            })
            .collect()
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + testkit::DEADLINE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn settings(redis: &RedisServer, node: &str) -> Settings {
    Settings {
        // Short, so that dead nodes are found soon; the timeout not too
        // short, so that a loaded machine does not look like a dead Redis.
        heartbeat: Duration::from_millis(100),
        node_timeout: Duration::from_secs(2),
        queue: 100_000,
        ..Settings::new(&redis.url(), "t", node)
    }
}

/// A node's link, not yet necessarily up.
fn link(redis: &RedisServer, node: &str) -> (Link, Arc<Seen>) {
    if let Some(level) = std::env::var("BROKER_TEST_LOG")
        .ok()
        .and_then(|l| crate::log::Level::parse(&l))
    {
        crate::log::set_level(level);
    }
    let seen = Arc::new(Seen::default());
    let events: Arc<dyn Events> = Arc::clone(&seen) as Arc<dyn Events>;
    let link = Link::start(settings(redis, node), events).unwrap();
    (link, seen)
}

/// A node's link, up, and seen by the others in `peers`.
fn node(redis: &RedisServer, name: &str, peers: &[&Link]) -> (Link, Arc<Seen>) {
    let (l, seen) = link(redis, name);
    wait_until(&format!("{name} is up"), || l.is_up());
    for p in peers {
        wait_until(&format!("{} sees {name}", p.node()), || {
            p.nodes().iter().any(|n| n == name)
        });
    }
    (l, seen)
}

fn msg(id: u64, from_node: &str, kind: MsgKind, to: &[&str]) -> Item {
    Item::Msg(Msg {
        id,
        from: "alice".into(),
        from_node: from_node.into(),
        kind,
        ts: 0,
        body: format!("body {id}").into_bytes(),
        notice: false,
        to: to.iter().map(|s| s.to_string()).collect(),
    })
}

fn to(node: &str) -> Target {
    Target::Node(node.to_string())
}

#[test]
fn items_reach_their_nodes_in_the_order_they_were_queued() {
    let redis = RedisServer::start_new();
    let (a, a_seen) = node(&redis, "a", &[]);
    let (b, b_seen) = node(&redis, "b", &[&a]);
    let (_c, c_seen) = node(&redis, "c", &[&a, &b]);
    // A mix: to b, to c and to everyone, interleaved.
    let mut for_b = Vec::new();
    let mut for_c = Vec::new();
    for id in 1..=600u64 {
        let (target, item) = match id % 3 {
            0 => (Target::All, msg(id, "a", MsgKind::All, &[])),
            1 => (to("b"), msg(id, "a", MsgKind::Direct, &["bob"])),
            _ => (to("c"), msg(id, "a", MsgKind::Multi, &["carol", "dave"])),
        };
        if id % 3 != 2 {
            for_b.push(id);
        }
        if id % 3 != 1 {
            for_c.push(id);
        }
        a.try_publish(target, item).unwrap();
    }
    wait_until("b has its 400", || b_seen.ids().len() >= for_b.len());
    wait_until("c has its 400", || c_seen.ids().len() >= for_c.len());
    assert_eq!(b_seen.ids(), for_b);
    assert_eq!(c_seen.ids(), for_c);
    // Told who published, and the items whole.
    let first = b_seen.items.lock().first().cloned().unwrap();
    assert_eq!(
        first,
        ("a".to_string(), msg(1, "a", MsgKind::Direct, &["bob"]))
    );
    // Nothing of its own comes back to a.
    b.try_publish(Target::All, msg(9999, "b", MsgKind::All, &[]))
        .unwrap();
    wait_until("a has b's item", || a_seen.ids() == [9999]);
    assert!(b_seen.ids().iter().all(|id| *id != 9999));
    assert_eq!(a.stats().lost, 0);
}

#[test]
fn a_round_of_items_goes_in_one_publish_per_channel_and_run() {
    let redis = RedisServer::start_new();
    let (a, _) = node(&redis, "a", &[]);
    let (b, b_seen) = node(&redis, "b", &[&a]);
    let (c, c_seen) = node(&redis, "c", &[&a, &b]);
    let publishes = || redis.info_u64("commandstats", "cmdstat_publish");
    let (before, stats_before) = (publishes(), a.stats().publishes);
    {
        let _held = a.hold_publisher();
        // 1000 to b, 500 to c, then everyone, then b again.
        for id in 1..=1500u64 {
            let t = if id % 3 == 0 { to("c") } else { to("b") };
            a.try_publish(t, msg(id, "a", MsgKind::Direct, &["x"]))
                .unwrap();
        }
        for id in 1501..=1600 {
            a.try_publish(Target::All, msg(id, "a", MsgKind::All, &[]))
                .unwrap();
        }
        for id in 1601..=1700 {
            a.try_publish(to("b"), msg(id, "a", MsgKind::Direct, &["x"]))
                .unwrap();
        }
    }
    wait_until("b has everything", || {
        b_seen.ids().len() == 1000 + 100 + 100
    });
    wait_until("c has everything", || c_seen.ids().len() == 500 + 100);
    // One round: b and c (first run), all, b (after the run for all).
    assert_eq!(a.stats().publishes - stats_before, 4);
    assert_eq!(publishes() - before, 4);
    let b_ids = b_seen.ids();
    assert!(b_ids.windows(2).all(|w| w[0] < w[1]), "b in order");
    let c_ids = c_seen.ids();
    assert!(c_ids.windows(2).all(|w| w[0] < w[1]), "c in order");
    drop(c);
}

#[test]
fn a_full_queue_is_refused_at_once() {
    let redis = RedisServer::start_new();
    let seen = Arc::new(Seen::default());
    let s = Settings {
        queue: 8,
        ..settings(&redis, "a")
    };
    let a = Link::start(s, Arc::clone(&seen) as Arc<dyn Events>).unwrap();
    wait_until("a is up", || a.is_up());
    let _held = a.hold_publisher();
    let mut results = Vec::new();
    // The publisher may take a round before it waits at the gate, so the
    // queue's 8 fill up a little later than the 9th item, but they fill:
    // past them every item is refused at once.
    for id in 0..40 {
        results.push(a.try_publish(Target::All, msg(id, "a", MsgKind::All, &[])));
    }
    assert_eq!(results.last(), Some(&Err(LinkError::Full)), "{results:?}");
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!((8..=24).contains(&ok), "{ok} taken: {results:?}");
}

#[test]
fn two_nodes_racing_for_a_name_have_one_winner() {
    let redis = RedisServer::start_new();
    let (a, _) = node(&redis, "a", &[]);
    let (b, _) = node(&redis, "b", &[&a]);
    const ROUNDS: usize = 200;
    let barrier = Barrier::new(2);
    let race = |l: &Link| {
        (0..ROUNDS)
            .map(|i| {
                barrier.wait();
                let name = format!("user{i}");
                l.claim(&name, &name.to_uppercase()).unwrap()
            })
            .collect::<Vec<bool>>()
    };
    let (wa, wb) = std::thread::scope(|s| {
        let ta = s.spawn(|| race(&a));
        let tb = s.spawn(|| race(&b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for i in 0..ROUNDS {
        assert!(wa[i] != wb[i], "round {i}: a {} b {}", wa[i], wb[i]);
    }
    // The names are where the claims say, as shown.
    let mut a_names = a.names_of("a").unwrap();
    a_names.sort();
    let mut expect: Vec<String> = (0..ROUNDS)
        .filter(|i| wa[*i])
        .map(|i| format!("USER{i}"))
        .collect();
    expect.sort();
    assert_eq!(a_names, expect);
}

#[test]
fn only_the_owner_releases_a_name() {
    let redis = RedisServer::start_new();
    let (a, _) = node(&redis, "a", &[]);
    let (b, _) = node(&redis, "b", &[&a]);
    assert!(a.claim("alice", "Alice").unwrap());
    // Claiming again is fine for the owner (a node re-claims after Redis
    // was away), not for anyone else.
    assert!(a.claim("alice", "Alice").unwrap());
    assert!(!b.claim("alice", "ALICE").unwrap());
    assert!(!b.release("alice").unwrap());
    assert!(!b.claim("alice", "ALICE").unwrap());
    assert_eq!(redis.command(&["GET", "chat:t:name:alice"]), "a");
    assert!(a.release("alice").unwrap());
    assert!(!a.release("alice").unwrap());
    assert!(b.claim("alice", "ALICE").unwrap());
    assert_eq!(b.names_of("b").unwrap(), ["ALICE"]);
    assert!(a.names_of("a").unwrap().is_empty());
    // A live node's names are not freed by anyone else.
    assert!(a.release_all("b").unwrap().is_empty());
    assert!(!a.claim("alice", "alice").unwrap());
}

#[test]
fn a_dead_node_is_noticed_once_and_its_names_are_freed() {
    let redis = RedisServer::start_new();
    let (a, _) = node(&redis, "a", &[]);
    let (b, b_seen) = node(&redis, "b", &[&a]);
    let (c, c_seen) = node(&redis, "c", &[&a, &b]);
    wait_until("a sees everyone", || a.nodes() == ["a", "b", "c"]);
    assert!(a.claim("alice", "Alice").unwrap());
    assert!(a.claim("bob", "bob").unwrap());
    // As if killed: the threads stop, the heartbeat is left to expire.
    drop(a);
    wait_until("b and c saw a go", || {
        !b_seen.gone.lock().is_empty() && !c_seen.gone.lock().is_empty()
    });
    let (gb, gc) = (b_seen.gone.lock().clone(), c_seen.gone.lock().clone());
    assert_eq!(gb.len(), 1, "{gb:?}");
    assert_eq!(gc.len(), 1, "{gc:?}");
    assert_eq!((gb[0].0.as_str(), gc[0].0.as_str()), ("a", "a"));
    // Exactly one of them freed the names.
    let mut freed = [gb[0].1.clone(), gc[0].1.clone()];
    freed.sort();
    assert_eq!(
        freed,
        [vec![], vec!["Alice".to_string(), "bob".to_string()]]
    );
    assert_eq!(b.nodes(), ["b", "c"]);
    assert!(b.claim("alice", "alice").unwrap());
    assert!(c.claim("bob", "bob").unwrap());
    // Reported once, however many heartbeats pass.
    let smembers = || redis.info_u64("commandstats", "cmdstat_smembers");
    let now = smembers();
    wait_until("a few more heartbeats", || smembers() >= now + 20);
    assert_eq!(b_seen.gone.lock().len() + c_seen.gone.lock().len(), 2);
}

#[test]
fn names_left_behind_are_freed() {
    let redis = RedisServer::start_new();
    // A node that died while no other node was there to notice.
    redis.command(&["SADD", "chat:t:nodes", "ghost"]);
    redis.command(&["SET", "chat:t:name:zed", "ghost"]);
    redis.command(&["HSET", "chat:t:names:ghost", "zed", "Zed"]);
    // And a name this node held in its last run.
    redis.command(&["SET", "chat:t:name:old", "a"]);
    redis.command(&["HSET", "chat:t:names:a", "old", "Old"]);
    let (a, a_seen) = node(&redis, "a", &[]);
    assert_eq!(redis.command(&["GET", "chat:t:name:old"]), "");
    // The first heartbeat found the ghost dead and freed its names.
    wait_until("a freed the ghost's names", || {
        !a_seen.gone.lock().is_empty()
    });
    assert_eq!(
        *a_seen.gone.lock(),
        [("ghost".to_string(), vec!["Zed".to_string()])]
    );
    assert!(a.claim("zed", "Zed").unwrap());
    assert_eq!(a.names_of("a").unwrap(), ["Zed"]);
    assert_eq!(redis.command(&["SMEMBERS", "chat:t:nodes"]), "a");
}

#[test]
fn a_clean_shutdown_leaves_nothing_behind() {
    let redis = RedisServer::start_new();
    let (a, _) = node(&redis, "a", &[]);
    let (b, b_seen) = node(&redis, "b", &[&a]);
    assert!(a.claim("alice", "Alice").unwrap());
    // What is queued before the shutdown still goes out.
    for id in 1..=50 {
        a.try_publish(to("b"), msg(id, "a", MsgKind::Direct, &["bob"]))
            .unwrap();
    }
    a.shutdown();
    assert_eq!(redis.command(&["EXISTS", "chat:t:alive:a"]), "0");
    assert_eq!(redis.command(&["EXISTS", "chat:t:name:alice"]), "0");
    wait_until("b saw a go", || !b_seen.gone.lock().is_empty());
    assert_eq!(*b_seen.gone.lock(), [("a".to_string(), vec![])]);
    assert_eq!(b_seen.ids(), (1..=50).collect::<Vec<u64>>());
    assert!(b.claim("alice", "alice").unwrap());
}

#[test]
fn redis_going_away_is_down_and_coming_back_is_up() {
    let mut redis = RedisServer::start_new();
    let (a, a_seen) = node(&redis, "a", &[]);
    let (b, b_seen) = node(&redis, "b", &[&a]);
    assert_eq!(a_seen.statuses.lock().as_slice(), [Status::Up]);
    assert!(a.claim("alice", "Alice").unwrap());
    redis.stop();
    wait_until("a is down", || a_seen.last_status() == Some(Status::Down));
    wait_until("b is down", || b_seen.last_status() == Some(Status::Down));
    assert!(!a.is_up());
    assert_eq!(
        a.try_publish(to("b"), msg(1, "a", MsgKind::Direct, &["bob"])),
        Err(LinkError::Down)
    );
    assert!(a.claim("carol", "carol").is_err());
    redis.start();
    wait_until("a is up again", || a_seen.last_status() == Some(Status::Up));
    wait_until("b is up again", || b_seen.last_status() == Some(Status::Up));
    assert_eq!(
        a_seen.statuses.lock().as_slice(),
        [Status::Up, Status::Down, Status::Up]
    );
    // Traffic flows again.
    a.try_publish(to("b"), msg(2, "a", MsgKind::Direct, &["bob"]))
        .unwrap();
    wait_until("b has it", || b_seen.ids() == [2]);
    // Redis came back empty: the owner claims its names again.
    assert!(a.claim("alice", "Alice").unwrap());
    assert!(!b.claim("alice", "alice").unwrap());
    // Nobody was taken for dead meanwhile.
    assert!(a_seen.gone.lock().is_empty());
    assert!(b_seen.gone.lock().is_empty());
}

#[test]
fn what_was_published_just_before_redis_went_away_comes_once() {
    let mut redis = RedisServer::start_new();
    let (a, a_seen) = node(&redis, "a", &[]);
    let (b, b_seen) = node(&redis, "b", &[&a]);
    a.try_publish(to("b"), msg(1, "a", MsgKind::Direct, &["bob"]))
        .unwrap();
    wait_until("b has it", || b_seen.ids() == [1]);
    // Redis may have answered a PUBLISH and died before passing it on, so
    // a publishes the last second's batches again once Redis is back; b
    // had this one and drops it.
    redis.stop();
    wait_until("a is down", || a_seen.last_status() == Some(Status::Down));
    redis.start();
    wait_until("b dropped the batch published again", || {
        b.stats().duplicates >= 1
    });
    wait_until("a is up again", || a.is_up());
    a.try_publish(to("b"), msg(2, "a", MsgKind::Direct, &["bob"]))
        .unwrap();
    wait_until("b has the next", || b_seen.ids().len() >= 2);
    assert_eq!(b_seen.ids(), [1, 2]);
}

#[test]
fn a_redis_that_hangs_is_down_too() {
    let redis = RedisServer::start_new();
    let (a, a_seen) = node(&redis, "a", &[]);
    redis.freeze();
    wait_until("a is down", || a_seen.last_status() == Some(Status::Down));
    assert!(a
        .try_publish(Target::All, msg(1, "a", MsgKind::All, &[]))
        .is_err());
    redis.thaw();
    wait_until("a is up again", || a_seen.last_status() == Some(Status::Up));
}

#[test]
fn a_link_started_without_redis_says_down_then_up() {
    let mut redis = RedisServer::start_new();
    redis.stop();
    let (a, a_seen) = link(&redis, "a");
    wait_until("a is down", || a_seen.last_status() == Some(Status::Down));
    assert_eq!(a.claim("x", "x"), Err(LinkError::Down));
    redis.start();
    wait_until("a is up", || a.is_up());
    assert_eq!(
        a_seen.statuses.lock().as_slice(),
        [Status::Down, Status::Up]
    );
}

#[test]
fn each_node_name_gets_its_own_id_slot_for_good() {
    let redis = RedisServer::start_new();
    let (a, _) = node(&redis, "a", &[]);
    let (b, _) = node(&redis, "b", &[&a]);
    assert_eq!(a.slot(None, 4096).unwrap(), 0);
    assert_eq!(b.slot(None, 4096).unwrap(), 1);
    // Asked again (a restart under the same name): the same slot.
    assert_eq!(a.slot(None, 4096).unwrap(), 0);
    assert_eq!(b.slot(Some(7), 4096).unwrap(), 1);
    // Redis lost everything: a newcomer asks first and may not take a
    // number another node still uses once that node asks for it back.
    redis.command(&["FLUSHALL"]);
    let (c, _) = node(&redis, "c", &[&a]);
    assert_eq!(b.slot(Some(1), 4096).unwrap(), 1);
    assert_eq!(c.slot(None, 4096).unwrap(), 0);
    assert_eq!(a.slot(Some(0), 4096).unwrap(), 2);
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let seen = || Arc::new(Seen::default()) as Arc<dyn Events>;
    let base = Settings::new("redis://127.0.0.1:1", "t", "a");
    let bad = |s: Settings| matches!(Link::start(s, seen()), Err(LinkError::Settings(_)));
    assert!(bad(Settings {
        node: "a b".into(),
        ..base.clone()
    }));
    assert!(bad(Settings {
        cluster: "t*".into(),
        ..base.clone()
    }));
    assert!(bad(Settings {
        node_timeout: Duration::from_secs(3),
        ..base.clone()
    }));
    assert!(matches!(
        Link::start(
            Settings {
                url: "http://x".into(),
                ..base.clone()
            },
            seen()
        ),
        Err(LinkError::BadUrl(_))
    ));
}
