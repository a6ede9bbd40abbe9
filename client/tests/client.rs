#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! The client binary against a real broker started in-process: scripted
//! mode through pipes, and the interactive mode in a pseudo-terminal.

mod util;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;
use testkit::{Peer, DEADLINE};
use util::{broker, Client};

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
    assert!(alice.finish().success());
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
    assert!(alice.finish().success());
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
    assert!(alice.finish().success());
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
    assert!(alice.finish().success());
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
    assert!(alice.finish().success());
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
fn broker_shutdown_is_shown_and_exits_0() {
    let b = broker();
    let mut alice = Client::signed_in(b.local_addr(), "alice");
    alice.type_line("/list");
    alice.expect_line("online (1): alice");
    b.shutdown();
    alice.expect_line("*** the server is shutting down: ");
    assert_eq!(alice.wait().code(), Some(0));
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

mod pty {
    //! The interactive client in a pseudo-terminal.
    use super::*;
    use expectrl::{Eof, Session, WaitStatus};

    fn spawn(addr: std::net::SocketAddr, name: &str) -> Session {
        let mut cmd = util::client_cmd(addr, Some(name));
        cmd.env("TERM", "xterm").env("NO_COLOR", "1");
        let mut s = Session::spawn(cmd).unwrap();
        s.set_expect_timeout(Some(DEADLINE));
        s
    }

    fn exit_code(s: &Session) -> i32 {
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
    fn typing_in_a_shell(addr: std::net::SocketAddr) -> Session {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "'{}' --addr {addr} --name alice; echo EXIT=$?; stty -a",
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
    fn shutdown_while_typing_exits_0_and_restores_the_terminal() {
        let b = broker();
        let mut s = typing_in_a_shell(b.local_addr());
        b.shutdown();
        s.expect("*** the server is shutting down").unwrap();
        s.expect("EXIT=0").unwrap();
        // Cooked mode again (raw mode would show `-icanon -isig`).
        s.expect("isig icanon").unwrap();
        s.expect(Eof).unwrap();
    }

    #[test]
    fn sigterm_while_typing_restores_the_terminal() {
        let b = broker();
        let mut s = typing_in_a_shell(b.local_addr());
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
}
