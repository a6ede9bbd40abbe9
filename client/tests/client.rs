#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! The client binary against a real broker started in-process: scripted
//! mode through pipes, and the interactive mode in a pseudo-terminal; TLS,
//! accounts and stored messages in [`trust`].

mod trust;
mod util;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;
use testkit::{Peer, DEADLINE};
use util::{broker, broker_at, restartable, Client};

/// The body of every `MSG` the peer gets until it has `n` of them.
fn msgs(peer: &mut Peer, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let m = peer.next_msg();
            (m.field(3).to_string(), m.body_str())
        })
        .collect()
}

#[test]
fn every_form_for_one_person_reaches_them_as_direct() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    let forms = [
        "/msg bob one",
        "/pm bob two",
        "/dm bob three",
        "@bob four",
        "@bob: five",
        "send bob: six",
        "MSG bob seven",
        "/dm bob \"eight and more\"",
    ];
    for f in forms {
        alice.type_line(f);
    }
    let got = msgs(&mut bob, forms.len());
    let want = [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight and more",
    ];
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, &("direct".to_string(), w.to_string()));
    }
    assert!(alice.finish().success());
    let echoes = alice
        .seen
        .iter()
        .filter(|l| l.contains("[private] you -> bob:") && l.contains("sent to 1)"))
        .count();
    assert_eq!(echoes, forms.len(), "{:#?}", alice.seen);
    bob.skip_until_line("LEFT alice quit");
}

#[test]
fn group_and_everyone_forms() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut carol = Peer::named(b.local_addr(), "carol");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    for f in [
        "/msg bob,carol g1",
        "send bob carol : g2",
        "plain e1",
        "/all e2",
        "/bm e3",
        "send all e4",
    ] {
        alice.type_line(f);
    }
    let want: Vec<(String, String)> = [
        ("multi", "g1"),
        ("multi", "g2"),
        ("all", "plain e1"),
        ("all", "e2"),
        ("all", "e3"),
        ("all", "e4"),
    ]
    .iter()
    .map(|(k, t)| (k.to_string(), t.to_string()))
    .collect();
    assert_eq!(msgs(&mut bob, 6), want);
    assert_eq!(msgs(&mut carol, 6), want);
    alice.expect_line("[everyone] you: e4 (#");
    // Someone not online is named in the delivery state.
    alice.type_line("send bob dan : g3");
    let line = alice.expect_line("you -> bob,dan: g3");
    assert!(line.contains("sent to 1; not online: dan"), "{line}");
    // Partly delivered: the script says so with its exit code.
    assert_eq!(alice.finish_code(), Some(4));
}

#[test]
fn every_who_is_online_form_lists_the_names() {
    let b = broker();
    let _bob = Peer::named(b.local_addr(), "bob");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    for f in ["/list", "/users", "/who", "get_list", "GET_NAMES"] {
        alice.type_line(f);
        alice.expect_line("online (2): alice bob");
    }
    assert!(alice.finish().success());
}

#[test]
fn receives_shows_safely_and_sends_receipts() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    assert_eq!(bob.skip_until_verb("JOINED").line, "JOINED alice");

    // A direct message full of terminal tricks: shown escaped, receipted.
    bob.send("SEND alice :\x1b[2J\x1b]0;owned\x07hi\u{202e}x\n");
    let id = bob.skip_until_verb("ACK").field(1).to_string();
    let line = alice.expect_line("[private] bob: ");
    assert!(
        line.ends_with("[private] bob: ^[[2J^[]0;owned^Ghi<U+202E>x"),
        "{line:?}"
    );
    assert_eq!(bob.skip_until_verb("RCPT").line, format!("RCPT {id} alice"));

    // Group messages are receipted too; broadcasts are not.
    let _carol = Peer::named(b.local_addr(), "carol");
    alice.expect_line("--> carol joined");
    bob.send("SEND * :to all\n");
    let all_id: u64 = bob.skip_until_verb("ACK").field(1).parse().unwrap();
    alice.expect_line("[everyone] bob: to all");
    bob.send("SEND alice,carol :to two\n");
    let group_id = bob.skip_until_verb("ACK").field(1).to_string();
    alice.expect_line("[group] bob: to two");
    let rcpt = bob.skip_until_verb("RCPT");
    assert_eq!(rcpt.line, format!("RCPT {group_id} alice"));
    assert_ne!(rcpt.field(1), all_id.to_string());

    // A counted body with line breaks stays one line in a script.
    bob.send("SEND alice 9\nline\nnext\n");
    alice.expect_line("[private] bob: line^Jnext");

    drop(_carol);
    alice.expect_line("<-- carol left (disconnected)");

    assert!(alice.finish().success());
    assert!(!alice.raw.contains(&0x1b), "raw escape in output");
    assert!(!alice.raw.contains(&0x07), "raw bell in output");
    bob.skip_until_line("LEFT alice quit");
}

#[test]
fn own_messages_get_their_receipts() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut carol = Peer::named(b.local_addr(), "carol");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    alice.type_line("/msg bob,carol hello both");
    let m = bob.next_msg();
    assert_eq!(m.body_str(), "hello both");
    let id = m.field(1).to_string();
    alice.expect_line(&format!("(#{id} sent to 2)"));
    bob.send(&format!("RECV {id} alice\n"));
    alice.expect_line(&format!("[read] bob read #{id} (1/2) \"hello both\""));
    carol.next_msg();
    carol.send(&format!("RECV {id} alice\n"));
    alice.expect_line(&format!("[read] carol read #{id} (2/2)"));
    assert!(alice.finish().success());
}

#[test]
fn mistyped_commands_and_missing_parts_are_never_sent() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    alice.type_line("/mgs bob oops");
    let hint = alice.expect_line("unknown command /mgs");
    assert!(hint.contains("did you mean /msg?"), "{hint}");
    for (line, expect) in [
        ("/msg bob", "usage: /msg"),
        ("@bob", "usage: @<name>"),
        ("send bob:", "usage: send"),
        ("/bm", "usage: /all"),
        ("/join #a!", "not a valid room"),
        ("/msg #room,bob hi", "one room, or to names"),
        ("/switch #nowhere", "you are not in #nowhere"),
        ("/part", "name it: /part #room"),
        ("/msg b!b hi", "not a valid name"),
        ("/xyzzy", "unknown command /xyzzy"),
    ] {
        alice.type_line(line);
        alice.expect_line(expect);
    }
    alice.type_line("/help");
    alice.expect_line("send bob carol dan : hi");
    alice.type_line("/msg bob fine");
    // The first and only message bob gets is the good one.
    let m = bob.next_msg();
    assert_eq!(m.body_str(), "fine");
    // Lines that were not carried out: a usage failure.
    assert_eq!(alice.finish_code(), Some(2));
    assert!(bob
        .try_next(Duration::from_millis(200))
        .is_some_and(|g| g.verb() == "LEFT"));
}

#[test]
fn rooms_join_talk_switch_and_part() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    bob.send("JOIN #room\n");
    bob.expect("OK JOIN #room 1");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    // Typed back to back: the line after /join goes to the room, because
    // /join waits for its answer.
    alice.type_line("/join #ROOM");
    alice.type_line("plain words");
    let m = bob.next_msg();
    assert_eq!((m.field(2), m.field(3)), ("alice", "#room"));
    assert_eq!(m.body_str(), "plain words");
    alice.expect_line("--> you joined #room (2 members); talking in #room");
    alice.expect_line("[#room] you: plain words (#");
    // A room message from someone else shows its room and is receipted.
    bob.send("SEND #room :hi\n");
    let id = bob.skip_until_verb("ACK").field(1).to_string();
    alice.expect_line("[#room] bob: hi");
    assert_eq!(bob.skip_until_verb("RCPT").line, format!("RCPT {id} alice"));

    alice.type_line("/names");
    alice.expect_line("#room (2): alice bob");
    alice.type_line("/rooms");
    alice.expect_line("rooms (1): #room");
    // To everyone without leaving the room, then switching back and forth.
    alice.type_line("/all to everyone");
    assert_eq!(bob.next_msg().field(3), "all");
    alice.type_line("/switch *");
    alice.expect_line("now talking to everyone");
    alice.type_line("after the switch");
    let m = bob.next_msg();
    assert_eq!(
        (m.field(3), m.body_str().as_str()),
        ("all", "after the switch")
    );
    alice.type_line("/switch #Room");
    alice.expect_line("now talking in #room");
    alice.type_line("/msg #elsewhere psst");
    alice.expect_line("not sent \"psst\": you are not in #elsewhere (/join #elsewhere first)");
    alice.type_line("/part");
    alice.type_line("after the part");
    assert_eq!(bob.skip_until_verb("PARTED").line, "PARTED alice #room");
    let m = bob.next_msg();
    assert_eq!(
        (m.field(3), m.body_str().as_str()),
        ("all", "after the part")
    );
    alice.expect_line("<-- you left #room; talking to everyone");
    alice.type_line("/part #room");
    alice.expect_line("! you are not in #room");
    // The broker refused the message to #elsewhere and that /part.
    assert_eq!(alice.finish_code(), Some(3));
}

#[test]
fn room_presence_is_shown() {
    let b = broker();
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    alice.type_line("/join room");
    alice.expect_line("--> you joined #room (just you); talking in #room");
    let mut bob = Peer::named(b.local_addr(), "bob");
    bob.send("JOIN #room\n");
    bob.expect("OK JOIN #room 2");
    alice.expect_line("--> bob joined #room");
    bob.send("SEND #room :\x1b[2Jhey\n");
    alice.expect_line("[#room] bob: ^[[2Jhey");
    bob.send("PART #room\n");
    alice.expect_line("<-- bob left #room");
    alice.type_line("alone now");
    let line = alice.expect_line("[#room] you: alone now (#");
    assert!(
        line.ends_with("sent to 0: nobody else is in #room)"),
        "{line}"
    );
    // It reached nobody.
    assert_eq!(alice.finish_code(), Some(3));
    assert!(!alice.raw.contains(&0x1b), "raw escape in output");
}

#[test]
fn no_such_user_is_reported_with_the_text() {
    let b = broker();
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    alice.type_line("/msg nobody are you there");
    let line = alice.expect_line("not sent");
    assert!(
        line.contains("\"are you there\"") && line.contains("not online: nobody"),
        "{line}"
    );
    assert_eq!(alice.finish_code(), Some(3));
}

#[test]
fn asks_again_for_a_taken_or_bad_name() {
    let b = broker();
    let _bob = Peer::named(b.local_addr(), "bob");
    let mut c = Client::start(b.local_addr(), None);
    c.expect_line("Enter your name:");
    c.type_line("Bob");
    c.expect_line("is taken");
    c.expect_line("Enter your name:");
    c.type_line("no spaces allowed");
    c.expect_line("can't be used");
    c.expect_line("Enter your name:");
    c.type_line("");
    c.expect_line("a name needs");
    c.type_line("alice");
    c.expect_line("signed in as alice");
    c.type_line("/list");
    c.expect_line("online (2): alice bob");
    assert!(c.finish().success());
}

#[test]
fn a_refused_name_flag_ends_a_script_with_1() {
    let b = broker();
    let _bob = Peer::named(b.local_addr(), "bob");
    let mut c = Client::start(b.local_addr(), Some("bob"));
    c.expect_line("is taken");
    assert_eq!(c.wait().code(), Some(1));
}

#[test]
fn end_of_input_quits_and_shows_what_still_arrives() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    alice.type_line("/msg bob last words");
    alice.close_stdin();
    bob.skip_until_line("LEFT alice quit");
    assert!(alice.wait().success());
    // The ACK came before BYE and was shown.
    assert!(
        alice.seen.iter().any(|l| l.contains("last words (#")),
        "{:#?}",
        alice.seen
    );
}

#[test]
fn quit_forms_leave() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    for (i, form) in ["/quit", "quit", "EXIT", "/exit"].iter().enumerate() {
        let name = format!("a{i}");
        let mut c = Client::signed_in(b.local_addr(), &name);
        c.type_line(form);
        assert!(c.wait().success(), "{form}");
        assert_eq!(
            bob.skip_until_verb("LEFT").line,
            format!("LEFT {name} quit")
        );
    }
}

#[test]
fn a_shutdown_ends_a_script_with_1_saying_so_once() {
    let b = broker();
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    alice.type_line("/list");
    alice.expect_line("online (1): alice");
    b.shutdown();
    // Its input did not end: not all of it was carried out.
    assert_eq!(alice.wait().code(), Some(1));
    let err = alice.errors.join("");
    assert_eq!(err.matches("shutting down").count(), 1, "{err}");
    assert!(err.contains("*** the server is shutting down\n"), "{err}");
}

#[test]
fn a_lost_connection_says_so_and_exits_1() {
    // A fake broker that greets, registers and hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"HELLO fake 1 :hi\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"NAME alice\n");
        s.write_all(b"OK NAME alice\n").unwrap();
    });
    let mut alice = Client::start(addr, Some("alice"));
    alice.expect_line("signed in as alice");
    server.join().unwrap();
    let status = alice.wait();
    assert_eq!(status.code(), Some(1));
    let err = alice.errors.join("");
    assert!(
        err.contains("connection to") && err.contains("lost"),
        "{err}"
    );
}

#[test]
fn no_broker_means_a_clear_error_and_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = Client::start(addr, Some("alice"));
    assert_eq!(c.wait().code(), Some(1));
    let err = c.errors.join("");
    assert!(err.contains("cannot connect to"), "{err}");
}

/// A script's exit code, for lines typed against a broker where only bob
/// is online; `flags` are extra client flags.
fn script_code(lines: &[&str], flags: &[&str]) -> (Option<i32>, Client) {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut alice = Client::signed_in_with(b.local_addr(), "alice", flags);
    for l in lines {
        alice.type_line(l);
    }
    alice.close_stdin();
    bob.skip_until_line("LEFT alice quit");
    (alice.wait().code(), alice)
}

#[test]
fn scripted_exit_codes_tell_delivered_from_not() {
    // Delivered to everyone it was for (and a message to everyone, and
    // room traffic that reached someone).
    let (code, c) = script_code(&["/msg bob hi", "hello all"], &[]);
    assert_eq!(code, Some(0), "{:#?}", c.seen);
    // To nobody online: ERR NO_SUCH_USER.
    let (code, c) = script_code(&["/msg nobody hi"], &[]);
    assert_eq!(code, Some(3), "{:#?}", c.seen);
    assert_eq!(c.count("not online: nobody"), 1, "{:#?}", c.seen);
    // To bob and someone not online: partly delivered.
    let (code, c) = script_code(&["/msg bob,nobody hi"], &[]);
    assert_eq!(code, Some(4), "{:#?}", c.seen);
    assert_eq!(c.count("sent to 1; not online: nobody"), 1);
    // A line that is no command: nothing sent for it.
    let (code, _) = script_code(&["/mgs bob hi", "/msg bob fine"], &[]);
    assert_eq!(code, Some(2));
    // Several: the lowest code wins.
    let (code, _) = script_code(&["/msg bob,nobody a", "/msg nobody b"], &[]);
    assert_eq!(code, Some(3));
    let (code, _) = script_code(&["/msg nobody b", "/mgs x"], &[]);
    assert_eq!(code, Some(2));
}

#[test]
fn wait_receipts_exits_0_once_the_reader_has_shown_it() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut alice = Client::signed_in_with(b.local_addr(), "alice", &["--wait-receipts", "10"]);
    alice.type_line("/msg bob did you see this?");
    alice.type_line("and a line to everyone, which gets no receipts");
    alice.close_stdin();
    let m = bob.next_msg();
    assert_eq!(m.body_str(), "did you see this?");
    assert_eq!(bob.next_msg().field(3), "all");
    // Only now the receipt: the client waited for it before saying QUIT
    // (its receipt line below shows it was still there to get it).
    bob.send(&format!("RECV {} alice\n", m.field(1)));
    bob.skip_until_line("LEFT alice quit");
    assert_eq!(alice.wait().code(), Some(0), "{:#?}", alice.seen);
    assert_eq!(alice.count("[read] bob read #"), 1, "{:#?}", alice.seen);
}

#[test]
fn wait_receipts_exits_5_when_a_reader_never_shows_it() {
    let b = broker();
    let mut bob = Peer::named(b.local_addr(), "bob");
    let mut carol = Peer::named(b.local_addr(), "carol");
    let mut alice = Client::signed_in_with(b.local_addr(), "alice", &["--wait-receipts", "0.5"]);
    alice.type_line("/msg bob,carol read me");
    alice.close_stdin();
    // carol shows it, bob never does.
    let m = carol.next_msg();
    carol.send(&format!("RECV {} alice\n", m.field(1)));
    bob.next_msg();
    bob.skip_until_line("LEFT alice quit");
    assert_eq!(alice.wait().code(), Some(5), "{:#?}", alice.seen);
    let id = m.field(1);
    assert_eq!(
        alice.count(&format!(
            "! not shown by everyone within 0.5 s: #{id} \"read me\" (1/2 read)"
        )),
        1,
        "{:#?}",
        alice.seen
    );
}

#[test]
fn a_script_with_reconnect_comes_back_to_a_restarted_broker_and_its_room() {
    let (b, config) = restartable();
    let addr = b.local_addr();
    let mut ci = Client::signed_in_with(addr, "ci", &["--reconnect"]);
    ci.type_line("/join #ci");
    ci.expect_line("--> you joined #ci (just you); talking in #ci");
    b.shutdown();
    ci.expect_line("*** the server is shutting down");
    ci.expect_line(&format!("*** reconnecting to {addr} in "));
    // Read while the link is away: carried out once it is back, in the
    // room (a room message from a non-member would be refused, so the
    // echo shows the JOIN went first).
    ci.type_line("typed while away");
    ci.expect_line("*** reconnecting: ");
    let _b = broker_at(addr, config);
    ci.expect_line(&format!(
        "*** reconnected to {addr} as ci; joining #ci again"
    ));
    ci.expect_line("--> back in #ci (just you)");
    let line = ci.expect_line("[#ci] you: typed while away (#");
    assert!(
        line.ends_with("sent to 0: nobody else is in #ci)"),
        "{line}"
    );
    // Plain text still goes to the room.
    let mut bob = Peer::named(addr, "bob");
    bob.send("JOIN #ci\n");
    bob.expect("OK JOIN #ci 2");
    ci.expect_line("--> bob joined #ci");
    ci.type_line("build is green");
    // (A broker that keeps room history may show bob the earlier line
    // first.)
    let m = std::iter::repeat_with(|| bob.next_msg())
        .find(|m| m.body_str() != "typed while away")
        .unwrap();
    assert_eq!((m.field(2), m.field(3)), ("ci", "#ci"));
    assert_eq!(m.body_str(), "build is green");
    // The line typed while away reached nobody.
    assert_eq!(ci.finish_code(), Some(3), "{:#?}", ci.seen);
    assert_eq!(ci.count("shutting down"), 1, "{:#?}", ci.seen);
}

#[test]
fn a_script_whose_name_is_taken_on_reconnect_gives_up_with_1() {
    let (b, config) = restartable();
    let addr = b.local_addr();
    let mut ci = Client::signed_in_with(addr, "ci", &["--reconnect"]);
    b.shutdown();
    ci.expect_line("*** the server is shutting down");
    // A try failed while the broker was down: the next is at least half a
    // second away, time enough for someone else to take the name.
    ci.expect_line("*** reconnecting: ");
    let _b = broker_at(addr, config);
    let _thief = Peer::named(addr, "ci");
    assert_eq!(ci.wait().code(), Some(1));
    let err = ci.errors.join("");
    assert!(
        err.contains(
            "reconnected, but someone else has signed in as ci while you were away; giving up"
        ),
        "{err}"
    );
}

mod pty {
    //! The interactive client in a pseudo-terminal.
    use super::*;
    use expectrl::{Eof, Session, WaitStatus};

    pub(crate) fn spawn(addr: std::net::SocketAddr, name: &str) -> Session {
        spawn_with(addr, name, &[])
    }

    pub(crate) fn spawn_with(addr: std::net::SocketAddr, name: &str, flags: &[&str]) -> Session {
        let mut cmd = util::client_cmd(addr, Some(name));
        cmd.args(flags).env("TERM", "xterm").env("NO_COLOR", "1");
        let mut s = Session::spawn(cmd).unwrap();
        s.set_expect_timeout(Some(DEADLINE));
        s
    }

    pub(crate) fn exit_code(s: &Session) -> i32 {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            // `status` reaps the child once it has exited: ask only once per
            // state change, never after an `Exited`.
            match s.get_process().status().unwrap() {
                WaitStatus::StillAlive => {}
                WaitStatus::Exited(_, code) => return code,
                other => panic!("{other:?}"),
            }
            assert!(std::time::Instant::now() < deadline, "client did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_message_arriving_mid_line_keeps_the_half_typed_line() {
        let b = broker();
        let mut bob = Peer::named(b.local_addr(), "bob");
        let mut s = spawn(b.local_addr(), "alice");
        s.expect("alice> ").unwrap();
        assert_eq!(bob.skip_until_verb("JOINED").line, "JOINED alice");
        s.send("hello wor").unwrap();
        s.expect("hello wor").unwrap();

        bob.send("SEND alice :ping from bob\n");
        s.expect("[private] bob: ping from bob").unwrap();
        // The editor redraws the prompt and the half-typed line below it.
        s.expect("alice> hello wor").unwrap();
        assert_eq!(bob.skip_until_verb("RCPT").field(2), "alice");

        s.send("ld\r").unwrap();
        let m = bob.next_msg();
        assert_eq!(m.field(3), "all");
        assert_eq!(m.body_str(), "hello world");
        s.expect("[everyone] you: hello world (#").unwrap();

        // Up arrow recalls it; Ctrl-U clears; Ctrl-D leaves.
        s.send("\x1b[A").unwrap();
        s.expect("hello world").unwrap();
        s.send("\x15\x04").unwrap();
        bob.skip_until_line("LEFT alice quit");
        assert_eq!(exit_code(&s), 0);
    }

    #[test]
    fn rooms_in_the_prompt_and_tab_completion() {
        let b = broker();
        let mut bob = Peer::named(b.local_addr(), "bob");
        bob.send("JOIN #room\n");
        bob.expect("OK JOIN #room 1");
        let mut s = spawn(b.local_addr(), "alice");
        s.expect("alice> ").unwrap();
        // The room comes from the last /rooms list.
        s.send("/rooms\r").unwrap();
        s.expect("rooms (1): #room").unwrap();
        s.send("/join #r\t").unwrap();
        s.expect("#room").unwrap();
        s.send("\r").unwrap();
        s.expect("you joined #room (2 members); talking in #room")
            .unwrap();
        s.expect("alice #room> ").unwrap();
        bob.skip_until_line("JOINED alice #room");

        bob.send("SEND #room :hi\n");
        s.expect("[#room] bob: hi").unwrap();
        s.send("hello room\r").unwrap();
        let m = bob.next_msg();
        assert_eq!((m.field(2), m.field(3)), ("alice", "#room"));
        assert_eq!(m.body_str(), "hello room");
        s.expect("[#room] you: hello room (#").unwrap();

        s.send("/part #\t").unwrap();
        s.expect("#room").unwrap();
        s.send("\r").unwrap();
        s.expect("you left #room; talking to everyone").unwrap();
        assert_eq!(bob.skip_until_verb("PARTED").line, "PARTED alice #room");
        s.expect("alice> ").unwrap();
        s.send("/quit\r").unwrap();
        assert_eq!(exit_code(&s), 0);
    }

    #[test]
    fn tab_completes_names() {
        let b = broker();
        let mut bob = Peer::named(b.local_addr(), "bobby");
        let mut s = spawn(b.local_addr(), "alice");
        s.expect("online (2): alice bobby").unwrap();
        s.send("@bo\t").unwrap();
        s.expect("bobby").unwrap();
        s.send("hi\r").unwrap();
        let m = bob.next_msg();
        assert_eq!(m.field(2), "alice");
        assert_eq!(m.field(3), "direct");
        assert_eq!(m.body_str(), "hi");
        s.send("/quit\r").unwrap();
        assert_eq!(exit_code(&s), 0);
    }

    /// alice's client run through a shell (so the terminal's mode can be
    /// read with `stty -a` after it exits), with a half-typed line on screen.
    fn typing_in_a_shell(addr: std::net::SocketAddr, flags: &str) -> Session {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "'{}' --addr {addr} --name alice {flags}; echo EXIT=$?; stty -a",
                env!("CARGO_BIN_EXE_client"),
            ))
            .env("TERM", "xterm")
            .env("NO_COLOR", "1");
        let mut s = Session::spawn(cmd).unwrap();
        s.set_expect_timeout(Some(DEADLINE));
        s.expect("alice> ").unwrap();
        s.send("half a thou").unwrap();
        s.expect("half a thou").unwrap();
        s
    }

    #[test]
    fn no_reconnect_exits_0_on_shutdown_while_typing_and_restores_the_terminal() {
        let b = broker();
        let mut s = typing_in_a_shell(b.local_addr(), "--no-reconnect");
        b.shutdown();
        s.expect("*** the server is shutting down").unwrap();
        let rest = s.expect("EXIT=0").unwrap();
        // Said once, in plain words.
        let rest = String::from_utf8_lossy(rest.before()).to_string();
        assert!(!rest.contains("shutting down"), "{rest:?}");
        // Cooked mode again (raw mode would show `-icanon -isig`).
        s.expect("isig icanon").unwrap();
        s.expect(Eof).unwrap();
    }

    #[test]
    fn sigterm_while_typing_restores_the_terminal() {
        let b = broker();
        let mut s = typing_in_a_shell(b.local_addr(), "");
        // The client is the shell's only child.
        let shell = s.get_process().pid().to_string();
        let child = std::process::Command::new("pgrep")
            .args(["-P", &shell])
            .output()
            .unwrap();
        let pid = String::from_utf8(child.stdout).unwrap().trim().to_string();
        assert!(!pid.is_empty(), "no client process under the shell");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        s.expect("terminated by a signal").unwrap();
        s.expect("EXIT=130").unwrap();
        // Cooked mode again (raw mode would show `-icanon -isig`).
        s.expect("isig icanon").unwrap();
        s.expect(Eof).unwrap();
    }

    #[test]
    fn no_reconnect_exits_1_when_the_connection_drops() {
        // A fake broker that greets, registers and hangs up.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"HELLO fake 1 :hi\nOK NAME alice\n").unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).unwrap();
            // Hang up once the client has asked who is online.
        });
        let mut s = spawn_with(addr, "alice", &["--no-reconnect"]);
        s.expect("alice> ").unwrap();
        server.join().unwrap();
        s.expect("connection to").unwrap();
        s.expect("lost").unwrap();
        assert_eq!(exit_code(&s), 1);
    }

    /// Text seen up to and including `needle`, for checks on what came
    /// before it.
    pub(crate) fn upto(s: &mut Session, needle: &str) -> String {
        let found = s.expect(needle).unwrap();
        let mut text = String::from_utf8_lossy(found.before()).to_string();
        text.push_str(needle);
        text
    }

    #[test]
    fn reconnects_after_a_restart_keeping_the_half_typed_line_and_the_room() {
        let (b, config) = restartable();
        let addr = b.local_addr();
        let mut s = spawn(addr, "alice");
        s.expect("alice> ").unwrap();
        s.send("/join #room\r").unwrap();
        s.expect("talking in #room").unwrap();
        s.expect("alice #room> ").unwrap();
        s.send("half a li").unwrap();
        s.expect("half a li").unwrap();

        b.shutdown();
        s.expect("*** the server is shutting down").unwrap();
        s.expect(format!("*** reconnecting to {addr} in ").as_str())
            .unwrap();
        // The broker is not back yet: a failed try says why and when the
        // next one comes; the half-typed line is redrawn under it.
        let seen = upto(&mut s, "next try in ");
        s.expect("alice #room> half a li").unwrap();
        let b2 = broker_at(addr, config);
        let mut bob = Peer::named(addr, "bob");
        bob.send("JOIN #room\n");
        assert!(bob.skip_until_verb("OK").line.starts_with("OK JOIN #room "));
        let mut more = upto(
            &mut s,
            &format!("*** reconnected to {addr} as alice; joining #room again"),
        );
        more.push_str(&upto(&mut s, "--> back in #room"));
        s.expect("alice #room> half a li").unwrap();
        assert!(
            !format!("{seen}{more}").contains("shutting down"),
            "said twice: {seen}{more}"
        );

        // The line, finished now, goes to the room on the new broker.
        s.send("ne\r").unwrap();
        let m = bob.next_msg();
        assert_eq!((m.field(2), m.field(3)), ("alice", "#room"));
        assert_eq!(m.body_str(), "half a line");
        s.expect("[#room] you: half a line (#").unwrap();
        s.send("/quit\r").unwrap();
        assert_eq!(exit_code(&s), 0);
        drop(b2);
    }

    #[test]
    fn a_name_taken_while_away_is_said_and_another_can_be_picked() {
        let (b, config) = restartable();
        let addr = b.local_addr();
        let mut s = spawn(addr, "alice");
        s.expect("alice> ").unwrap();
        b.shutdown();
        s.expect("*** the server is shutting down").unwrap();
        // A try failed while the broker was down: the next is at least
        // half a second away, time enough for someone to take the name.
        s.expect("next try in").unwrap();
        let _b = broker_at(addr, config);
        let mut thief = Peer::named(addr, "alice");
        s.expect("reconnected, but someone else has signed in as alice while you were away")
            .unwrap();
        s.expect("pick another name with /name <new name>, or /quit")
            .unwrap();
        // No more tries on its own: it waits for the user.
        // A message typed now is not sent, and is kept in the editor.
        s.send("hello?\r").unwrap();
        s.expect("not signed in").unwrap();
        s.expect("alice> hello?").unwrap();
        s.send("\x15/name alice2\r").unwrap();
        s.expect("signing in as alice2").unwrap();
        s.expect(format!("*** reconnected to {addr} as alice2").as_str())
            .unwrap();
        thief.skip_until_line("JOINED alice2");
        s.expect("alice2> ").unwrap();
        s.send("/name alice3\r").unwrap();
        s.expect("you are signed in as alice2").unwrap();
        s.send("back\r").unwrap();
        let m = thief.next_msg();
        assert_eq!((m.field(2), m.body_str().as_str()), ("alice2", "back"));
        s.send("/quit\r").unwrap();
        assert_eq!(exit_code(&s), 0);
    }

    #[test]
    fn quit_while_reconnecting_leaves_at_once() {
        let b = broker();
        let addr = b.local_addr();
        let mut s = spawn(addr, "alice");
        s.expect("alice> ").unwrap();
        b.shutdown();
        s.expect(format!("*** reconnecting to {addr} in ").as_str())
            .unwrap();
        s.send("/quit\r").unwrap();
        assert_eq!(exit_code(&s), 0);
    }
}
