//! Integration tests: the real broker in-process, raw sockets, every row of
//! docs/protocol.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod abuse;
mod accounts;
mod browser;
mod cluster;
mod cluster_accounts;
mod cluster_rooms;
mod connrate;
mod irc;
mod rooms;
mod signals;
mod soak;
mod tls;
mod web;

use broker::CloseReason;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use testkit::{start, start_with, wait_for, Peer};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---- Greeting and names (protocol.md "Names", NAME) ----

#[test]
fn hello_is_the_first_line() {
    let b = start_with(|c| c.server_name = "testchat".into());
    let mut c = Peer::connect_raw(b.local_addr());
    c.expect("HELLO testchat 1 :Welcome. Choose a name with NAME <name>");
}

#[test]
fn name_registers_and_rules_are_enforced() {
    let b = start();
    let mut c = Peer::connect(b.local_addr());
    for bad in [
        "-lead",
        ".dot",
        "has two spaces",
        "sl/ash",
        "all",
        "ALL",
        "Server",
        "*",
        "\u{430}lice",
        "this_name_is_far_too_long_for_chat",
    ] {
        c.send(&format!("NAME {bad}\n"));
        c.expect_prefix("ERR BAD_NAME :");
    }
    c.send("NAME\n");
    c.expect_prefix("ERR BAD_FRAME");
    // Two words are a name and a password (accounts): a short password
    // breaks the password rules.
    c.send("NAME has space\n");
    c.expect_prefix("ERR BAD_PASSWORD :");
    c.send("NAME x_-.9\n");
    c.expect("OK NAME x_-.9");
    c.send("NAME other\n");
    c.expect_prefix("ERR ALREADY_NAMED");
}

#[test]
fn names_are_unique_case_insensitively_and_shown_as_first_registered() {
    let b = start();
    let mut bob = Peer::named(b.local_addr(), "Bob");
    let mut other = Peer::connect(b.local_addr());
    other.send("NAME bOB\n");
    other.expect_prefix("ERR NAME_TAKEN");
    other.send("NAME carol\n");
    other.expect("OK NAME carol");
    bob.expect("JOINED carol");
    other.send("LIST\n");
    other.expect("USERS 2 :Bob carol");
}

#[test]
fn thirty_two_characters_is_the_longest_name() {
    let b = start();
    let mut c = Peer::connect(b.local_addr());
    let long = "n".repeat(33);
    c.send(&format!("NAME {long}\n"));
    c.expect_prefix("ERR BAD_NAME");
    let ok = "n".repeat(32);
    c.send(&format!("NAME {ok}\n"));
    c.expect(&format!("OK NAME {ok}"));
}

#[test]
fn only_name_ping_help_quit_before_registering() {
    let b = start();
    let mut c = Peer::connect(b.local_addr());
    for cmd in ["LIST", "SEND bob :hi", "SEND * :hi", "RECV 1 bob"] {
        c.send(&format!("{cmd}\n"));
        c.expect_prefix("ERR NOT_REGISTERED");
    }
    // A counted body is consumed even when the command isn't allowed yet.
    c.send("SEND bob 5\nLIST\n\n");
    c.expect_prefix("ERR NOT_REGISTERED");
    c.send("PING\n");
    c.expect("PONG");
    c.send("HELP\n");
    let info = c.next();
    assert!(info.line.starts_with("INFO "));
    assert!(info.body_str().contains("SEND"));
    c.send("FROB\n");
    c.expect_prefix("ERR UNKNOWN_COMMAND");
    c.send("QUIT\n");
    c.expect("BYE");
    c.expect_eof();
}

// ---- LIST ----

#[test]
fn list_is_sorted_case_insensitively_and_includes_you() {
    let b = start();
    let _z = Peer::named(b.local_addr(), "zed");
    let _a = Peer::named(b.local_addr(), "Alice");
    let _c = Peer::named(b.local_addr(), "carol");
    let mut bob = Peer::named(b.local_addr(), "bob");
    bob.send("list\n");
    bob.expect("USERS 4 :Alice bob carol zed");
    bob.send("LIST extra\n");
    bob.expect_prefix("ERR BAD_FRAME");
}

// ---- SEND / MSG / ACK ----

#[test]
fn send_direct_inline_and_counted() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    let before = now_ms();
    alice.send("SEND bob :hi there\n");
    let ack = alice.expect_prefix("ACK ");
    let id: u64 = ack.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(ack, format!("ACK {id} 1"));
    let m = bob.next();
    assert_eq!(m.field(0), "MSG");
    assert_eq!(m.field(1), id.to_string());
    assert_eq!(m.field(2), "alice");
    assert_eq!(m.field(3), "direct");
    let ts: u64 = m.field(4).parse().unwrap();
    assert!(
        ts >= before.saturating_sub(1000) && ts <= now_ms() + 1000,
        "{ts}"
    );
    assert_eq!(m.field(5), "8");
    assert_eq!(m.body_str(), "hi there");

    // Counted body with an LF inside, CRLF line endings, lower-case verb.
    alice.send("send bob 11\r\nhello\nworld\r\n");
    let ack = alice.expect_prefix("ACK ");
    let id2: u64 = ack.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(id2 > id, "ids increase");
    let m = bob.next();
    assert_eq!(m.field(3), "direct");
    assert_eq!(m.body_str(), "hello\nworld");
}

#[test]
fn broker_writes_exact_bytes_for_a_message() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    alice.send("SEND bob :x\n");
    alice.expect_prefix("ACK");
    let m = bob.next();
    let ts = m.field(4).to_string();
    let id = m.field(1).to_string();
    assert_eq!(m.line, format!("MSG {id} alice direct {ts} 1"));
    assert_eq!(m.body.unwrap(), b"x");
}

#[test]
fn send_to_several_reports_missing_names_and_counts_repeats_once() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut carol = Peer::named(b.local_addr(), "carol");
    alice.skip_until("JOINED carol");
    bob.expect("JOINED carol");

    alice.send("SEND bob,carol,dave,BOB,eve :hello all\n");
    let ack = alice.expect_prefix("ACK ");
    let parts: Vec<&str> = ack.split(' ').collect();
    assert_eq!(parts[2], "2");
    assert_eq!(parts[3], "dave,eve");
    for c in [&mut bob, &mut carol] {
        let m = c.next();
        assert_eq!(m.field(3), "multi");
        assert_eq!(m.body_str(), "hello all");
    }
    // Repeated names (any case) count once: one distinct name is direct.
    alice.send("SEND bob,Bob,BOB :once\n");
    alice.expect_prefix("ACK ");
    let m = bob.next();
    assert_eq!(m.field(3), "direct");
    bob.expect_quiet();
    // The kind is by names given, online or not.
    alice.send("SEND bob,nobody :k\n");
    let ack = alice.expect_prefix("ACK ");
    assert!(ack.ends_with(" 1 nobody"), "{ack}");
    assert_eq!(bob.next().field(3), "multi");
    // A missing name repeated in any case is listed once, as first given,
    // and a user repeated around it still gets one copy.
    alice.send("SEND Dave,bob,DAVE,BOB,dave :m\n");
    let ack = alice.expect_prefix("ACK ");
    assert!(ack.ends_with(" 1 Dave"), "{ack}");
    assert_eq!(bob.next().field(3), "multi");
    bob.expect_quiet();
}

#[test]
fn send_to_nobody_online_is_no_such_user_and_sends_nothing() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    alice.send("SEND ghost :boo\n");
    alice.expect_prefix("ERR NO_SUCH_USER ghost :");
    alice.send("SEND ghost,spook :boo\n");
    alice.expect_prefix("ERR NO_SUCH_USER ghost,spook :");
    alice.send("SEND b@d :boo\n");
    alice.expect_prefix("ERR NO_SUCH_USER b@d");
    // `all` is nobody's name: the error says how to reach everyone.
    alice.send("SEND all :hi\n");
    let line = alice.expect_prefix("ERR NO_SUCH_USER all :");
    assert!(line.contains("SEND * :<text>"), "{line}");
    bob.expect_quiet();
}

#[test]
fn send_all_reaches_everyone_else_but_not_the_sender() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    alice.send("SEND * :anyone?\n");
    let ack = alice.expect_prefix("ACK ");
    assert!(ack.ends_with(" 0"), "{ack}");
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut carol = Peer::named(b.local_addr(), "carol");
    alice.skip_until("JOINED carol");
    bob.expect("JOINED carol");
    alice.send("SEND * 3\nhey\n");
    let ack = alice.expect_prefix("ACK ");
    assert!(ack.ends_with(" 2"), "{ack}");
    for c in [&mut bob, &mut carol] {
        let m = c.next();
        assert_eq!(m.field(2), "alice");
        assert_eq!(m.field(3), "all");
        assert_eq!(m.body_str(), "hey");
    }
    alice.expect_quiet();
}

#[test]
fn sending_to_yourself_delivers_to_you() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    alice.send("SEND ALICE :note to self\n");
    let mut got = vec![alice.line(), alice.line()];
    got.sort();
    assert!(
        got[0].starts_with("ACK ") && got[0].ends_with(" 1"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("MSG ") && got[1].contains(" alice direct "),
        "{got:?}"
    );
}

#[test]
fn target_list_shape_errors() {
    let b = start_with(|c| c.max_targets = 3);
    let mut alice = Peer::named(b.local_addr(), "alice");
    for bad in ["*,bob", "bob,*", "bob,,carol", ",", "bob,", ",bob"] {
        alice.send(&format!("SEND {bad} :x\n"));
        alice.expect_prefix("ERR BAD_FRAME");
    }
    alice.send("SEND a,b,c,d :x\n");
    alice.expect_prefix("ERR TOO_MANY_TARGETS");
    // Too many names counts names given, before folding repeats.
    alice.send("SEND a,a,a,a :x\n");
    alice.expect_prefix("ERR TOO_MANY_TARGETS");
    // A bad header with a counted body: the body is consumed first.
    alice.send("SEND *,bob 4\nLIST\n");
    alice.expect_prefix("ERR BAD_FRAME");
    alice.send("SEND bob\n");
    alice.expect_prefix("ERR BAD_FRAME");
    alice.send("SEND bob +5\n");
    alice.expect_prefix("ERR BAD_FRAME");
    alice.send("SEND bob 5x\n");
    alice.expect_prefix("ERR BAD_FRAME");
    alice.expect_quiet();
}

// ---- RECV / RCPT ----

#[test]
fn receipts_reach_the_sender() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    alice.send("SEND bob :read me\n");
    let id = alice
        .expect_prefix("ACK ")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    let m = bob.next();
    assert_eq!(m.field(1), id);
    bob.send(&format!("RECV {id} alice\n"));
    alice.expect(&format!("RCPT {id} bob"));
    // A receipt for someone offline goes nowhere and gets no reply.
    bob.send(&format!("RECV {id} ghost\n"));
    bob.expect_quiet();
    bob.send("RECV x alice\n");
    bob.expect_prefix("ERR BAD_FRAME");
    bob.send("RECV 1\n");
    bob.expect_prefix("ERR BAD_FRAME");
}

// ---- PING, HELP, QUIT, unknown, blank lines ----

#[test]
fn ping_pong_help_and_blank_lines() {
    let b = start();
    let mut c = Peer::named(b.local_addr(), "pinger");
    c.send("\n\r\n\nPING\n");
    c.expect("PONG");
    c.send("ping abc123\n");
    c.expect("PONG abc123");
    c.send("HELP\n");
    let info = c.next();
    let len: usize = info.field(1).parse().unwrap();
    assert_eq!(info.body.as_ref().unwrap().len(), len);
    c.send("WHAT is this\n");
    c.expect_prefix("ERR UNKNOWN_COMMAND");
}

#[test]
fn quit_says_bye_closes_and_others_see_left_quit() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    bob.send("QUIT :off to lunch\n");
    bob.expect("BYE");
    bob.expect_eof();
    alice.expect("LEFT bob quit");
    drop(bob);
    wait_for("bob's slot released", || b.stats().connections == 1);
    alice.send("LIST\n");
    alice.expect("USERS 1 :alice");
    // The name is free again.
    let _bob2 = Peer::named(b.local_addr(), "BOB");
}

#[test]
fn abrupt_disconnect_is_announced() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    drop(bob);
    alice.expect("LEFT bob disconnect");
    // The slot is free at once, not after the lingering time.
    wait_for("bob's slot released", || b.stats().connections == 1);
}

#[test]
fn a_reset_in_the_middle_of_a_write_is_a_disconnect() {
    let b = start_with(|c| c.rate_per_sec = 0);
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut watcher = Peer::named(b.local_addr(), "watcher");
    let victim = Peer::named(b.local_addr(), "victim");
    alice.skip_until("JOINED victim");
    watcher.expect("JOINED victim");
    // Several MiB for a reader that never reads: the broker is blocked in
    // the middle of writing to it (well under the 8 MiB queue limit).
    let body = "r".repeat(60_000);
    for _ in 0..100 {
        alice.send(&format!("SEND victim {}\n{body}\n", body.len()));
        alice.expect_prefix("ACK ");
    }
    // SO_LINGER 0: closing sends a reset instead of a FIN.
    socket2::SockRef::from(&victim.stream)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(victim);
    watcher.expect("LEFT victim disconnect");
    alice.expect("LEFT victim disconnect");
    alice.expect_quiet();
    wait_for("the victim's slot released", || b.stats().connections == 2);
    assert_eq!(b.stats().closed(CloseReason::Disconnect), 1);
}

#[test]
fn half_closed_socket_still_gets_its_replies() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut c = Peer::connect(b.local_addr());
    c.send("NAME halfway\nLIST\nPING last\n");
    c.half_close();
    c.expect("OK NAME halfway");
    c.expect("USERS 2 :alice halfway");
    c.expect("PONG last");
    c.expect_eof();
    alice.expect("JOINED halfway");
    alice.expect("LEFT halfway disconnect");
}

#[test]
fn any_number_of_blank_lines_is_ignored() {
    let b = start_with(|c| c.rate_per_sec = 0);
    let mut c = Peer::connect(b.local_addr());
    // Far more newlines than any frame may hold: still nothing but blank
    // lines, so no error and the connection goes on.
    let blank = "\r\n".repeat(64 * 1024);
    for _ in 0..8 {
        c.send(&blank);
    }
    c.send("PING still-here\n");
    c.expect("PONG still-here");
}

#[test]
fn one_byte_per_packet_and_many_frames_per_packet() {
    let b = start();
    let mut c = Peer::connect(b.local_addr());
    for byte in b"NAME slowpoke\r\nSEND slowpoke 2\r\nhi\r\n" {
        c.send_bytes(&[*byte]);
    }
    c.expect("OK NAME slowpoke");
    let mut got = vec![c.line(), c.line()];
    got.sort();
    assert!(got[0].starts_with("ACK "), "{got:?}");
    assert!(got[1].starts_with("MSG "), "{got:?}");
    c.send(&"PING\n".repeat(50));
    for _ in 0..50 {
        c.expect("PONG");
    }
}

// ---- Limits and fatal errors ----

#[test]
fn overlong_line_is_too_long_then_closed_as_error() {
    let b = start();
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bad = Peer::named(b.local_addr(), "bad");
    alice.expect("JOINED bad");
    // 1024 bytes is fine: an unknown command, not too long.
    bad.send(&format!("{}\n", "X".repeat(1024)));
    bad.expect_prefix("ERR UNKNOWN_COMMAND");
    bad.send(&format!("{}\n", "X".repeat(1025)));
    bad.expect_prefix("ERR TOO_LONG");
    bad.expect_eof();
    alice.expect("LEFT bad error");
}

#[test]
fn endless_line_without_lf_is_cut_at_the_limit() {
    let b = start();
    let mut c = Peer::connect(b.local_addr());
    c.send(&"Y".repeat(5000));
    c.expect_prefix("ERR TOO_LONG");
    c.expect_eof();
}

#[test]
fn body_over_the_limit_is_too_long() {
    let b = start_with(|c| c.max_body = 16);
    let mut alice = Peer::named(b.local_addr(), "alice");
    alice.send("SEND alice 16\n0123456789abcdef\n");
    let mut got = vec![alice.line(), alice.line()];
    got.sort();
    assert!(got[0].starts_with("ACK "), "{got:?}");
    alice.send("SEND alice 17\n");
    alice.expect_prefix("ERR TOO_LONG");
    alice.expect_eof();
    let mut c = Peer::named(b.local_addr(), "huge");
    c.send("SEND huge 99999999999999999999999999\n");
    c.expect_prefix("ERR TOO_LONG");
    c.expect_eof();
}

#[test]
fn counted_body_without_lf_closes() {
    let b = start();
    let mut c = Peer::named(b.local_addr(), "nolf");
    c.send("SEND nolf 2\nhiX");
    c.expect_prefix("ERR BAD_FRAME");
    c.expect_eof();
}

#[test]
fn invalid_utf8_and_nul_bytes_get_errors_not_crashes() {
    let b = start();
    let mut c = Peer::named(b.local_addr(), "bytes");
    c.send_bytes(b"NAME \xff\xfe\n");
    c.expect_prefix("ERR BAD_NAME");
    c.send_bytes(b"SEND \xff :x\n");
    c.expect_prefix("ERR BAD_FRAME");
    c.send_bytes(b"\xff\xfe\n");
    c.expect_prefix("ERR UNKNOWN_COMMAND");
    c.send_bytes(b"SEND bytes :nul\0inside\n");
    let mut got = [c.next(), c.next()];
    got.sort_by(|a, b| a.line.cmp(&b.line));
    assert_eq!(got[1].body.as_deref().unwrap(), b"nul\0inside");
    let mut fresh = Peer::connect(b.local_addr());
    fresh.send_bytes(b"NAME bad\0name\n");
    fresh.expect_prefix("ERR BAD_NAME");
    fresh.send_bytes(b"NAME \xc3\xa9t\xc3\xa9\n");
    fresh.expect_prefix("ERR BAD_NAME");
}

#[test]
fn server_full_gets_only_the_error() {
    let b = start_with(|c| c.max_connections = 2);
    let _one = Peer::connect(b.local_addr());
    let _two = Peer::connect(b.local_addr());
    let mut three = Peer::connect_raw(b.local_addr());
    three.expect_prefix("ERR SERVER_FULL :");
    three.expect_eof();
    drop(_one);
    wait_for("a free slot", || b.stats().connections < 2);
    let _four = Peer::connect(b.local_addr());
}

#[test]
fn connections_per_ip_are_limited_when_configured() {
    let b = start_with(|c| c.max_connections_per_ip = 2);
    let one = Peer::connect(b.local_addr());
    let _two = Peer::connect(b.local_addr());
    let mut three = Peer::connect_raw(b.local_addr());
    three.expect_prefix("ERR SERVER_FULL :too many connections from your address");
    three.expect_eof();
    drop(one);
    wait_for("a free slot", || b.stats().connections < 2);
    let _four = Peer::connect(b.local_addr());
}

#[test]
fn unnamed_connection_times_out() {
    let b = start_with(|c| c.name_timeout_secs = 1);
    let mut c = Peer::connect(b.local_addr());
    c.expect_prefix("ERR NOT_REGISTERED");
    c.expect_eof();
    assert_eq!(b.stats().closed(CloseReason::NameTimeout), 1);
}

#[test]
fn flooding_is_rate_limited_then_kicked() {
    let b = start_with(|c| {
        c.rate_per_sec = 1;
        c.rate_burst = 3;
        c.rate_kick_after = 3;
    });
    let mut watcher = Peer::named(b.local_addr(), "watcher");
    let mut flood = Peer::connect(b.local_addr());
    // NAME takes the first token.
    flood.send("NAME flood\nPING 1\nPING 2\nPING 3\nPING 4\nPING 5\n");
    flood.expect("OK NAME flood");
    flood.expect("PONG 1");
    flood.expect("PONG 2");
    flood.expect_prefix("ERR RATE_LIMITED");
    flood.expect_prefix("ERR RATE_LIMITED");
    flood.expect_prefix("ERR RATE_LIMITED");
    flood.expect_eof();
    watcher.expect("JOINED flood");
    watcher.expect("LEFT flood kicked");
}

// ---- Guarantees ----

#[test]
fn order_is_kept_over_thousands_of_messages() {
    let b = start_with(|c| c.rate_per_sec = 0);
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut carol = Peer::named(b.local_addr(), "carol");
    alice.skip_until("JOINED carol");
    bob.expect("JOINED carol");
    const N: usize = 5000;
    let writer = std::thread::spawn(move || {
        let mut batch = String::new();
        for i in 0..N {
            let to = match i % 3 {
                0 => "bob",
                1 => "bob,carol",
                _ => "*",
            };
            batch.push_str(&format!("SEND {to} :{i}\n"));
        }
        alice.send(&batch);
        for _ in 0..N {
            alice.expect_prefix("ACK ");
        }
    });
    let mut last_id = 0;
    for i in 0..N {
        let m = bob.next();
        assert_eq!(m.body_str(), i.to_string());
        let id: u64 = m.field(1).parse().unwrap();
        assert!(id > last_id);
        last_id = id;
    }
    for i in (0..N).filter(|i| i % 3 != 0) {
        assert_eq!(carol.next().body_str(), i.to_string());
    }
    writer.join().unwrap();
}

#[test]
fn shutdown_delivers_queued_messages_then_the_notice() {
    let b = start_with(|c| c.rate_per_sec = 0);
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    for i in 0..200 {
        alice.send(&format!("SEND bob :queued {i}\n"));
    }
    for _ in 0..200 {
        alice.expect_prefix("ACK ");
    }
    let report = std::thread::spawn(move || b.shutdown());
    for i in 0..200 {
        assert_eq!(bob.next().body_str(), format!("queued {i}"));
    }
    bob.expect_prefix("SHUTDOWN :");
    bob.expect_eof();
    alice.expect_prefix("SHUTDOWN :");
    alice.expect_eof();
    let report = report.join().unwrap();
    assert_eq!(report.notified, 2);
    assert_eq!(report.cut_off, 0);
}

#[test]
fn shutdown_with_an_unnamed_connection_and_no_left_frames() {
    let b = start();
    let mut anon = Peer::connect(b.local_addr());
    let mut alice = Peer::named(b.local_addr(), "alice");
    let mut bob = Peer::named(b.local_addr(), "bob");
    alice.expect("JOINED bob");
    let report = b.shutdown();
    assert_eq!(report.notified, 3);
    for c in [&mut anon, &mut alice, &mut bob] {
        c.expect_prefix("SHUTDOWN :");
        c.expect_eof();
    }
}

#[test]
fn a_reader_that_never_reads_is_closed_as_slow_and_others_get_everything() {
    let b = start_with(|c| {
        c.rate_per_sec = 0;
        c.queue_bytes = 256 * 1024;
    });
    let addr = b.local_addr();
    let mut sender = Peer::named(addr, "sender");
    let stuck = Peer::named(addr, "stuck");
    let mut good = Peer::named(addr, "good");
    sender.skip_until("JOINED good");
    let body = "z".repeat(60_000);
    // The good reader tells the sender each time a message arrived, so the
    // sender never outruns it: only the stuck reader falls behind.
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut seen = 0u64;
        loop {
            let m = good.next();
            assert!(
                !m.line.starts_with("LEFT good"),
                "good reader closed: {m:?}"
            );
            if m.line.starts_with("MSG ") {
                assert_eq!(m.field(2), "sender");
                seen += 1;
                if m.body.as_deref() == Some(b"stop") {
                    return seen;
                }
                assert_eq!(m.body_str().len(), 60_000);
                arrived_tx.send(()).unwrap();
            }
        }
    });
    let mut acked_for_good = 0u64;
    let mut saw_slow = false;
    for _ in 0..2000 {
        sender.send(&format!("SEND stuck,good {}\n{}\n", body.len(), body));
        loop {
            let f = sender.next();
            if f.line == "LEFT stuck slow" {
                saw_slow = true;
            }
            if f.line.starts_with("ACK ") {
                acked_for_good += 1;
                break;
            }
        }
        arrived
            .recv_timeout(testkit::DEADLINE)
            .expect("good reader got the message");
        if saw_slow {
            break;
        }
    }
    assert!(saw_slow, "the stuck reader was never closed");
    sender.send("SEND good :stop\n");
    sender.expect_prefix("ACK ");
    let seen = reader.join().unwrap();
    // Everything queued for the good reader arrived (plus the stop message).
    assert_eq!(seen, acked_for_good + 1);
    assert_eq!(b.stats().slow_consumers, 1);
    drop(stuck);
}

#[test]
fn ids_are_unique_across_senders() {
    let b = start_with(|c| c.rate_per_sec = 0);
    let addr = b.local_addr();
    let mut sink = Peer::named(addr, "sink");
    let mut handles = Vec::new();
    for s in 0..4 {
        handles.push(std::thread::spawn(move || {
            let mut c = Peer::named(addr, &format!("s{s}"));
            let mut ids = Vec::new();
            for i in 0..200 {
                c.send(&format!("SEND sink :{i}\n"));
                let ack = c.skip_until("ACK ");
                ids.push(ack.field(1).parse::<u64>().unwrap());
            }
            ids
        }));
    }
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n);
    // Per-sender order at the sink.
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut got = 0;
    while got < 800 {
        let m = sink.next();
        if !m.line.starts_with("MSG ") {
            continue;
        }
        got += 1;
        let seq: i64 = m.body_str().parse().unwrap();
        let prev = last.insert(m.field(2).to_string(), seq).unwrap_or(-1);
        assert_eq!(seq, prev + 1);
    }
}

#[test]
fn stats_count_closes_and_errors() {
    let b = start();
    let mut c = Peer::named(b.local_addr(), "counted");
    c.send("NOPE\n");
    c.expect_prefix("ERR UNKNOWN_COMMAND");
    c.send("QUIT\n");
    c.expect("BYE");
    wait_for("close counted", || b.stats().closed(CloseReason::Quit) == 1);
    let s = b.stats();
    assert_eq!(s.errors_sent(protocol::ErrorCode::UnknownCommand), 1);
    assert!(s.breakdown().contains("closed_quit=1"), "{}", s.breakdown());
}
