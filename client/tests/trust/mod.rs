//! TLS, accounts and stored messages (issue 14): the client against a
//! broker with TLS listeners on a generated certificate and a database of
//! its own, checked against what raw TCP peers see.

use crate::pty::{exit_code, spawn, upto};
use crate::util::{broker_at, ca_flag, trusted_broker, Client};
use std::net::SocketAddr;
use testkit::Peer;

/// Makes `name` an account with `password`, and leaves.
fn make_account(addr: SocketAddr, name: &str, password: &str) {
    let mut p = Peer::named(addr, name);
    p.send(&format!("REGISTER {password}\n"));
    p.expect(&format!("OK REGISTER {name}"));
    p.send("QUIT\n");
    p.expect("BYE");
}

fn flags(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

#[test]
fn over_tls_with_ca_the_client_chats_with_plain_peers() {
    let (b, _, certs) = trusted_broker();
    let tls = b.tls_addr().unwrap();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let ca = ca_flag(&certs);
    let mut alice = Client::signed_in_with(tls, "alice", &flags(&ca));
    alice.type_line("@bob over tls");
    let m = bob.next_msg();
    assert_eq!((m.field(2), m.field(3)), ("alice", "direct"));
    assert_eq!(m.body_str(), "over tls");
    alice.expect_line("[private] you -> bob: over tls (#");
    bob.send("SEND alice :back in plain\n");
    let id = bob.skip_until_verb("ACK").field(1).to_string();
    alice.expect_line("[private] bob: back in plain");
    // The receipt goes back over TLS too.
    assert_eq!(bob.skip_until_verb("RCPT").line, format!("RCPT {id} alice"));
    // Messages of many TLS records each way: the largest the broker takes.
    let big = "x".repeat(65_536);
    alice.type_line(&format!("@bob {big}"));
    assert_eq!(bob.next_msg().body_str(), big);
    bob.send(&format!("SEND alice 65536\n{big}\n"));
    alice.expect_line(&format!("[private] bob: {big}"));
    assert!(alice.finish().success(), "{:#?}", alice.seen);
    bob.skip_until_line("LEFT alice quit");
}

#[test]
fn a_certificate_that_does_not_verify_is_one_sentence_and_1() {
    let (b, _, _) = trusted_broker();
    let tls = b.tls_addr().unwrap();
    let refused = |addr: SocketAddr, flags: &[&str]| {
        let mut c = Client::start_with(addr, Some("alice"), flags);
        assert_eq!(c.wait().code(), Some(1), "{:#?}", c.seen);
        assert!(c.seen.is_empty(), "{:#?}", c.seen);
        assert_eq!(c.errors.len(), 1, "one sentence: {:#?}", c.errors);
        c.errors.concat()
    };
    // Another certificate than the broker's.
    let other = ca_flag(&testkit::tls::cert_dir());
    let err = refused(tls, &flags(&other));
    assert_eq!(
        err.trim_end(),
        format!(
            "cannot connect to {tls} with TLS: the server's certificate is not signed by anyone this client trusts; if it is the broker's own (broker gen-cert), pass it with --ca FILE"
        )
    );
    // TLS to the plain port.
    let mut ca = ca_flag(&testkit::tls::cert_dir()).to_vec();
    ca.insert(0, "--tls".to_string());
    let err = refused(b.local_addr(), &flags(&ca));
    assert!(err.contains("the server did not answer in TLS"), "{err}");
    // A --ca file that is not there: a usage error, before connecting.
    let mut c = Client::start_with(tls, Some("alice"), &["--ca", "/nonexistent/cert.pem"]);
    assert_eq!(c.wait().code(), Some(2));
    assert!(c.errors.concat().contains("--ca /nonexistent/cert.pem: "));
}

#[test]
fn a_password_signs_in_to_an_account_and_scripts_say_when_it_is_missing_or_wrong() {
    let (b, _, _) = trusted_broker();
    let addr = b.local_addr();
    make_account(addr, "dora", "dora-pass");
    let code6 = |mut c: Client, says: &str| {
        assert_eq!(c.wait().code(), Some(6), "{:#?}", c.seen);
        let err = c.errors.concat();
        assert!(err.contains(says), "{err}");
    };
    code6(
        Client::start(addr, Some("dora")),
        "the name dora is an account: it needs its password; give it with --password or CHAT_PASSWORD",
    );
    code6(
        Client::start_with(addr, Some("dora"), &["--password", "not-the-pw"]),
        "the server refused the password for dora: ",
    );
    let mut dora = Client::signed_in_with(addr, "dora", &["--password", "dora-pass"]);
    dora.type_line("/list");
    dora.expect_line("online (1): dora");
    assert!(dora.finish().success());
    let mut dora = Client::start_with_password(addr, "dora", &[], "dora-pass");
    dora.expect_line("signed in as dora");
    assert!(dora.finish().success());
    // A password for a name that is no account doesn't get in the way.
    let mut erin = Client::start_with_password(addr, "erin", &[], "dora-pass");
    erin.expect_line("signed in as erin");
    assert!(erin.finish().success());
}

#[test]
fn register_in_a_script_makes_the_name_owned() {
    let (b, _, _) = trusted_broker();
    let addr = b.local_addr();
    let mut alice = Client::signed_in(addr, "alice");
    // Nobody to ask for it.
    alice.type_line("/register");
    alice.expect_line(
        "! usage: /register (asks for the password) or, in a script, /register <password>",
    );
    alice.type_line("/register s3cret-pw");
    alice.expect_line("*** alice is registered: the name is yours now");
    let mut thief = Peer::connect(addr);
    thief.send("NAME alice\n");
    thief.expect_prefix("ERR NAME_OWNED");
    alice.type_line("/register other-pw");
    alice.expect_line("! alice is an account already");
    // The bare /register and the second one were not carried out.
    assert_eq!(alice.finish_code(), Some(2));
    assert!(
        !alice.seen.concat().contains("s3cret-pw"),
        "{:#?}",
        alice.seen
    );
    let mut again = Client::signed_in_with(addr, "alice", &["--password", "s3cret-pw"]);
    assert!(again.finish().success());
}

#[test]
fn stored_messages_and_room_history_are_marked_and_receipted() {
    let (b, _, _) = trusted_broker();
    let addr = b.local_addr();
    make_account(addr, "dora", "dora-pass");
    let mut bob = Peer::named(addr, "bob");
    bob.send("SEND dora :while you were away\n");
    let ack = bob.skip_until_verb("ACK");
    // Stored: dora counts as reached.
    assert_eq!(ack.field(2), "1", "{}", ack.line);
    let stored = ack.field(1).to_string();
    bob.send("JOIN #r\n");
    bob.expect("OK JOIN #r 1");
    bob.send("SEND #r :said before\n");
    bob.skip_until_verb("ACK");

    let mut dora = Client::signed_in_with(addr, "dora", &["--password", "dora-pass"]);
    dora.expect_line("[private] bob (delivered late): while you were away");
    assert_eq!(
        bob.skip_until_verb("RCPT").line,
        format!("RCPT {stored} dora")
    );
    dora.type_line("/join #r");
    dora.expect_line("--> you joined #r (2 members); talking in #r");
    dora.expect_line("[#r] bob (history): said before");
    // Live ones are not marked.
    bob.send("SEND #r :said now\n");
    dora.expect_line("[#r] bob: said now");
    bob.send("SEND dora :live\n");
    dora.expect_line("[private] bob: live");
    assert!(dora.finish().success(), "{:#?}", dora.seen);
    assert_eq!(dora.count("(delivered late)"), 1, "{:#?}", dora.seen);
    assert_eq!(dora.count("(history)"), 1, "{:#?}", dora.seen);
}

#[test]
fn over_tls_a_reconnect_signs_in_with_the_password_and_shows_no_history_twice() {
    let (b, mut config, certs) = trusted_broker();
    let (addr, tls) = (b.local_addr(), b.tls_addr().unwrap());
    make_account(addr, "dora", "dora-pass");
    // The same TLS port after the restart.
    config.tls_listen = tls.to_string();
    let mut list = ca_flag(&certs).to_vec();
    list.push("--reconnect".to_string());
    let mut dora = Client::start_with_password(tls, "dora", &flags(&list), "dora-pass");
    dora.expect_line("signed in as dora");
    dora.type_line("/join #r");
    dora.expect_line("--> you joined #r (just you); talking in #r");
    let mut bob = Peer::named(addr, "bob");
    bob.send("JOIN #r\nSEND #r :before the restart\n");
    dora.expect_line("[#r] bob: before the restart");
    drop(bob);
    b.shutdown();
    dora.expect_line("*** the server is shutting down");
    // A try failed while the broker was down.
    dora.expect_line("*** reconnecting: ");
    let _b = broker_at(addr, config);
    // The name is an account on the new broker too: only the password
    // gets it back.
    dora.expect_line(&format!(
        "*** reconnected to {tls} as dora; joining #r again"
    ));
    dora.expect_line("--> back in #r (just you)");
    let mut bob = Peer::named(addr, "bob");
    bob.send("JOIN #r\n");
    // bob is shown the room's history; dora, who saw it, is not again.
    bob.skip_until_verb("OK");
    bob.send("SEND #r :after the restart\n");
    dora.expect_line("[#r] bob: after the restart");
    assert_eq!(dora.count("before the restart"), 1, "{:#?}", dora.seen);
    dora.type_line("back");
    let m = std::iter::repeat_with(|| bob.next_msg())
        .find(|m| m.body_str() != "before the restart")
        .unwrap();
    assert_eq!((m.field(2), m.body_str().as_str()), ("dora", "back"));
    assert!(dora.finish().success(), "{:#?}", dora.seen);
}

#[test]
fn at_a_terminal_an_owned_name_asks_for_its_password_without_echo() {
    let (b, _, _) = trusted_broker();
    let addr = b.local_addr();
    make_account(addr, "dora", "dora-pass");
    let mut s = spawn(addr, "dora");
    s.expect("! the name dora is an account: it needs its password")
        .unwrap();
    s.expect("Password for dora: ").unwrap();
    s.send("wrong-pass\r").unwrap();
    s.expect("! the server refused the password for dora: ")
        .unwrap();
    s.expect("Password for dora: ").unwrap();
    s.send("dora-pass\r").unwrap();
    let seen = upto(&mut s, "Signed in as dora.");
    assert!(!seen.contains("wrong-pass"), "echoed: {seen}");
    assert!(!seen.contains("dora-pass"), "echoed: {seen}");
    s.expect("online (1): dora").unwrap();
    s.send("/quit\r").unwrap();
    assert_eq!(exit_code(&s), 0);
}

#[test]
fn at_a_terminal_register_asks_twice_without_echo() {
    let (b, _, _) = trusted_broker();
    let addr = b.local_addr();
    let mut s = spawn(addr, "erin");
    s.expect("erin> ").unwrap();
    s.send("/register\r").unwrap();
    s.expect("New password for erin: ").unwrap();
    s.send("erin-pass-1\r").unwrap();
    s.expect("The same password again: ").unwrap();
    s.send("erin-pass-2\r").unwrap();
    s.expect("! the two passwords differ; not registered")
        .unwrap();
    s.send("/register\r").unwrap();
    s.expect("New password for erin: ").unwrap();
    s.send("erin-pass-1\r").unwrap();
    s.expect("The same password again: ").unwrap();
    s.send("erin-pass-1\r").unwrap();
    let seen = upto(&mut s, "*** erin is registered: the name is yours now");
    assert!(!seen.contains("erin-pass"), "echoed: {seen}");
    let mut thief = Peer::connect(addr);
    thief.send("NAME erin\n");
    thief.expect_prefix("ERR NAME_OWNED");
    s.send("/quit\r").unwrap();
    assert_eq!(exit_code(&s), 0);
}
