//! Accounts, stored messages and room history (docs/protocol.md,
//! "Accounts" and "Stored messages"): names people own, messages kept for
//! them while they are away, rooms that remember, across restarts.

use serde_json::json;
use std::time::{Duration, Instant};
use testkit::web::WsPeer;
use testkit::{data_dir, start_with, Peer};

fn broker_in(dir: &str) -> broker::Broker {
    let dir = dir.to_string();
    start_with(move |c| c.data_dir = dir)
}

/// Registers `name` with `password` and leaves.
fn make_account(addr: std::net::SocketAddr, name: &str, password: &str) {
    let mut p = Peer::named(addr, name);
    p.send(&format!("REGISTER {password}\n"));
    p.expect(&format!("OK REGISTER {name}"));
    p.send("QUIT\n");
    p.expect("BYE");
}

#[test]
fn a_registered_name_is_owned_on_every_door() {
    let b = broker_in(&data_dir());
    let (addr, web) = (b.local_addr(), b.http_addr().unwrap());
    let mut p = Peer::connect(addr);
    p.send("REGISTER hunter22\n");
    p.expect_prefix("ERR NOT_REGISTERED");
    p.send("NAME Alice\n");
    p.expect("OK NAME Alice");
    for bad in ["short", &"x".repeat(129)] {
        p.send(&format!("REGISTER {bad}\n"));
        p.expect_prefix("ERR BAD_PASSWORD");
    }
    p.send("REGISTER hunter22\n");
    p.expect("OK REGISTER Alice");
    p.send("REGISTER hunter22\n");
    p.expect_prefix("ERR ALREADY_REGISTERED");
    p.send("QUIT\n");
    p.expect("BYE");

    // Without the password, the name is owned, in any case, on any door.
    let mut q = Peer::connect(addr);
    q.send("NAME alice\n");
    q.expect_prefix("ERR NAME_OWNED");
    let mut w = WsPeer::connect(web);
    w.send(&json!({"op":"name","name":"ALICE"}));
    assert_eq!(w.next()["code"], "NAME_OWNED");
    // A wrong password, then the right one: shown as registered.
    q.send("NAME alice wrong-password\n");
    q.expect_prefix("ERR BAD_PASSWORD");
    w.send(&json!({"op":"name","name":"alice","password":"hunter22","ref":1}));
    assert_eq!(
        w.next(),
        json!({"type":"ok","op":"name","name":"Alice","ref":1})
    );
    q.send("NAME alice hunter22\n");
    q.expect_prefix("ERR NAME_TAKEN");
    // The web can register too.
    let mut w2 = WsPeer::named(web, "webby");
    w2.send(&json!({"op":"register","password":"correct-horse"}));
    assert_eq!(
        w2.next(),
        json!({"type":"ok","op":"register","name":"webby"})
    );
}

#[test]
fn wrong_passwords_are_answered_ever_more_slowly() {
    let b = broker_in(&data_dir());
    let addr = b.local_addr();
    make_account(addr, "carol", "s3cret-pw");
    let mut p = Peer::connect(addr);
    let mut took = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        p.send("NAME carol not-the-pw\n");
        p.expect_prefix("ERR BAD_PASSWORD");
        took.push(t.elapsed());
    }
    // No faster than the delays (250 ms, then 500 ms): lower bounds only.
    assert!(took[1] >= Duration::from_millis(250), "{took:?}");
    assert!(took[2] >= Duration::from_millis(500), "{took:?}");
    // Requests behind a login wait for it, in order.
    p.send("NAME carol s3cret-pw\nLIST\n");
    p.expect("OK NAME carol");
    p.expect("USERS 1 :carol");
}

#[test]
fn messages_to_an_offline_account_wait_for_it_in_order() {
    let b = broker_in(&data_dir());
    let addr = b.local_addr();
    make_account(addr, "dora", "dora-pass");
    let mut bob = Peer::named(addr, "bob");
    let mut ids = Vec::new();
    for (i, to) in ["dora", "dora,zed", "DORA,bob"].iter().enumerate() {
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
    let mut dora = Peer::connect(addr);
    dora.send("NAME dora dora-pass\n");
    dora.expect("OK NAME dora");
    let kinds = ["direct", "multi", "multi"];
    for (i, id) in ids.iter().enumerate() {
        let m = dora.next_msg();
        assert_eq!(m.field(1), id.to_string());
        assert_eq!((m.field(2), m.field(3)), ("bob", kinds[i]));
        assert_eq!(m.body_str(), format!("note {i}"));
    }
    // Shown: the sender gets its receipt. Delivered once: a new login
    // finds nothing.
    dora.send(&format!("RECV {} bob\n", ids[0]));
    bob.skip_until(&format!("RCPT {} dora", ids[0]));
    dora.send("QUIT\n");
    dora.expect("BYE");
    let mut again = Peer::connect(addr);
    again.send("NAME dora dora-pass\n");
    again.expect("OK NAME dora");
    again.expect_quiet();
}

#[test]
fn accounts_mail_history_and_ids_survive_a_restart() {
    let dir = data_dir();
    let (room_ids, last_id);
    {
        let b = broker_in(&dir);
        let addr = b.local_addr();
        make_account(addr, "erin", "erin-pass");
        let mut frank = Peer::named(addr, "frank");
        frank.send("JOIN #keep\n");
        frank.expect_prefix("OK JOIN #keep");
        let mut ids = Vec::new();
        for i in 0..3 {
            frank.send(&format!("SEND #keep :line {i}\n"));
            ids.push(
                frank
                    .expect_prefix("ACK ")
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .to_string(),
            );
        }
        room_ids = ids;
        frank.send("SEND erin :while you were out\n");
        last_id = frank
            .expect_prefix("ACK ")
            .split(' ')
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap();
        b.shutdown();
    }
    let b = broker_in(&dir);
    let addr = b.local_addr();
    let mut erin = Peer::connect(addr);
    erin.send("NAME erin\n");
    erin.expect_prefix("ERR NAME_OWNED");
    erin.send("NAME erin erin-pass\n");
    erin.expect("OK NAME erin");
    assert_eq!(erin.next_msg().body_str(), "while you were out");
    // The room is gone (it emptied), its history is not.
    erin.send("JOIN #keep\n");
    erin.expect("OK JOIN #keep 1");
    for (i, id) in room_ids.iter().enumerate() {
        let m = erin.next_msg();
        assert_eq!((m.field(1), m.field(3)), (id.as_str(), "#keep"));
        assert_eq!(m.body_str(), format!("line {i}"));
    }
    // Ids keep increasing.
    erin.send("SEND #keep :new\n");
    let id: u64 = erin
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(id > last_id, "{id} after {last_id}");
}

#[test]
fn room_history_is_replayed_on_join_and_bounded() {
    let b = start_with(|c| c.room_history = 3);
    let addr = b.local_addr();
    let mut gus = Peer::named(addr, "gus");
    gus.send("JOIN #h\n");
    gus.expect_prefix("OK JOIN #h");
    for i in 0..5 {
        gus.send(&format!("SEND #h :m{i}\n"));
        gus.expect_prefix("ACK ");
    }
    let mut hal = Peer::named(addr, "hal");
    hal.send("JOIN #H\n");
    hal.expect("OK JOIN #h 2");
    for i in 2..5 {
        assert_eq!(hal.next_msg().body_str(), format!("m{i}"));
    }
    hal.expect_quiet();
}

#[test]
fn without_a_data_dir_accounts_are_unavailable() {
    let b = start_with(|_| {});
    let mut p = Peer::named(b.local_addr(), "ivy");
    p.send("REGISTER long-enough\n");
    p.expect_prefix("ERR UNAVAILABLE");
    let mut q = Peer::connect(b.local_addr());
    q.send("NAME ivy2 long-enough\n");
    q.expect_prefix("ERR UNAVAILABLE");
}

#[test]
fn irc_users_log_in_with_sasl_plain_or_pass() {
    use super::irc::Irc;
    let b = broker_in(&data_dir());
    let (addr, irc) = (b.local_addr(), b.irc_addr().unwrap());
    make_account(addr, "Ida", "ida-pass-1");
    let mut bob = Peer::named(addr, "bob");
    bob.send("SEND ida :kept for you\n");
    bob.expect_prefix("ACK ");

    // Without a password the owned nick is refused (433: pick another).
    let mut c = Irc::connect(irc, "ida");
    c.send("NICK ida");
    c.send("USER ida 0 * :Ida");
    c.until(" 433 * ida :Nickname is an account");
    // PASS with a wrong password: 464; the right one registers.
    let mut c = Irc::connect(irc, "ida");
    c.send("PASS wrong-pass-1");
    c.send("NICK ida");
    c.send("USER ida 0 * :Ida");
    c.until(" 464 ");
    let mut c = Irc::connect(irc, "ida");
    c.send("PASS ida-pass-1");
    c.send("NICK IDA");
    c.send("USER ida 0 * :Ida");
    c.until(" 001 Ida ");
    // The message kept while away, after the welcome.
    c.until(":bob!bob@chat PRIVMSG Ida :kept for you");
    c.send("QUIT :bye");
    bob.skip_until("LEFT Ida quit");

    // SASL PLAIN, the way irssi and WeeChat do it.
    use base64::Engine as _;
    let mut s = Irc::connect(irc, "ida");
    s.send("CAP LS 302");
    s.send("NICK ida");
    s.send("USER ida 0 * :Ida");
    let ls = s.until(" CAP * LS ");
    assert!(ls.contains("sasl=PLAIN"), "{ls}");
    s.send("CAP REQ :sasl");
    s.until(" ACK ");
    s.send("AUTHENTICATE PLAIN");
    s.until("AUTHENTICATE +");
    let wrong = base64::engine::general_purpose::STANDARD.encode("ida\0ida\0nope-nope-1");
    s.send(&format!("AUTHENTICATE {wrong}"));
    s.until(" 904 ");
    s.send("AUTHENTICATE PLAIN");
    s.until("AUTHENTICATE +");
    let right = base64::engine::general_purpose::STANDARD.encode("ida\0ida\0ida-pass-1");
    s.send(&format!("AUTHENTICATE {right}"));
    s.until(" 900 ");
    s.until(" 903 ");
    s.send("CAP END");
    s.until(" 001 Ida ");
    bob.skip_until("JOINED Ida");
}

#[test]
fn a_login_held_past_the_name_timeout_still_gets_its_answer() {
    let dir = data_dir();
    let b = start_with(move |c| {
        c.data_dir = dir;
        c.name_timeout_secs = 1;
    });
    let addr = b.local_addr();
    make_account(addr, "kim", "kim-pass-1");
    let mut p = Peer::connect(addr);
    // Three wrong ones (the delays grow to 1 s), then the right one, held
    // for its delay past the 1 s name timeout: answered, not closed.
    for _ in 0..3 {
        p.send("NAME kim wrong-pass\n");
        p.expect_prefix("ERR BAD_PASSWORD");
    }
    p.send("NAME kim kim-pass-1\n");
    p.expect("OK NAME kim");
}
