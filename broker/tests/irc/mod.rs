//! The IRC door (docs/irc.md): a raw-socket IRC client against the real
//! broker, talking with native users in every direction.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::{data_dir, start_with, Peer, DEADLINE};

/// A raw IRC client: writes lines, reads lines.
pub(crate) struct Irc {
    w: TcpStream,
    r: BufReader<TcpStream>,
    nick: String,
}

impl Irc {
    pub(crate) fn connect(addr: SocketAddr, nick: &str) -> Irc {
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(DEADLINE)).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Irc {
            w,
            r,
            nick: nick.to_string(),
        }
    }

    /// Connects and registers the way irssi does, with the given caps;
    /// returns after the welcome burst and the `#all` NAMES.
    pub(crate) fn registered(addr: SocketAddr, nick: &str, caps: &str) -> Irc {
        let mut c = Irc::connect(addr, nick);
        c.send("CAP LS 302");
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :{nick} the tester"));
        c.until(" CAP * LS ");
        if !caps.is_empty() {
            c.send(&format!("CAP REQ :{caps}"));
            c.until(" ACK ");
        }
        c.send("CAP END");
        c.until(" 001 ");
        c.until(" 005 ");
        c.until(&format!(" 366 {nick} #all "));
        c
    }

    pub(crate) fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }

    /// The next line, without CR LF; panics at the deadline or EOF.
    fn line(&mut self) -> String {
        self.try_line(DEADLINE)
            .unwrap_or_else(|| panic!("{}: no line within {DEADLINE:?}", self.nick))
    }

    fn try_line(&mut self, wait: Duration) -> Option<String> {
        self.w.set_read_timeout(Some(wait)).unwrap();
        let mut s = String::new();
        let got = match self.r.read_line(&mut s) {
            Ok(0) => None,
            Ok(_) => {
                assert!(
                    s.ends_with("\r\n"),
                    "{}: line without CR LF: {s:?}",
                    self.nick
                );
                Some(s.trim_end_matches("\r\n").to_string())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("{}: read failed: {e}", self.nick),
        };
        self.w.set_read_timeout(Some(DEADLINE)).unwrap();
        got
    }

    /// Skips lines until one containing `needle`; returns it.
    pub(crate) fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(
                Instant::now() < deadline,
                "{}: never saw {needle:?}",
                self.nick
            );
            let l = self.line();
            if l.contains(needle) {
                return l;
            }
        }
    }

    /// A PING round trip: nothing else arrived before the PONG.
    fn expect_quiet(&mut self) {
        self.send("PING :quiet-check");
        let l = self.line();
        assert!(
            l.ends_with("PONG chat :quiet-check") || l.contains(" PONG chat :quiet-check"),
            "{}: expected only the PONG, got {l:?}",
            self.nick
        );
    }

    fn expect_eof(&mut self) {
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) => {}
            Ok(_) => panic!("{}: expected EOF, got {s:?}", self.nick),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{}: expected EOF, got {e}", self.nick),
        }
    }
}

fn broker() -> (broker::Broker, SocketAddr, SocketAddr) {
    let b = start_with(|c| c.rate_per_sec = 0);
    let native = b.local_addr();
    let irc = b.irc_addr().expect("the IRC door is open");
    (b, native, irc)
}

#[test]
fn registration_welcome_burst_and_all() {
    let (_b, _native, addr) = broker();
    let mut c = Irc::connect(addr, "bob");
    c.send("CAP LS 302");
    let ls = c.line();
    assert!(ls.starts_with(":chat CAP * LS :"), "{ls}");
    for cap in [
        "server-time",
        "echo-message",
        "message-tags",
        "multi-prefix",
    ] {
        assert!(ls.contains(cap), "{ls}");
    }
    c.send("NICK bob");
    c.send("USER bob 0 * :Bob B");
    c.send("CAP REQ :server-time nonsense");
    assert!(c.line().contains(" CAP * NAK :server-time nonsense"));
    c.send("CAP REQ :server-time echo-message");
    assert!(c.line().contains(" CAP * ACK :server-time echo-message"));
    // Registration waits for CAP END.
    c.send("CAP END");
    let mut numerics = Vec::new();
    loop {
        let l = c.line();
        let code = l.split(' ').nth(1).unwrap_or_default().to_string();
        numerics.push(code.clone());
        if code == "005" {
            assert!(l.contains("CASEMAPPING=ascii"), "{l}");
            assert!(l.contains("CHANTYPES=#"), "{l}");
            assert!(l.contains("NICKLEN=32"), "{l}");
            assert!(l.contains("TARGMAX=PRIVMSG:100,NOTICE:100"), "{l}");
            assert!(l.contains("NETWORK=chat"), "{l}");
            assert!(l.contains("PREFIX=(o)@"), "{l}");
            // max_rooms_per_user
            assert!(l.contains("CHANLIMIT=#:50"), "{l}");
        }
        if code == "004" {
            assert!(l.starts_with(":chat 004 bob chat "), "{l}");
        }
        if code == "366" {
            break;
        }
    }
    assert_eq!(&numerics[..6], ["001", "002", "003", "004", "005", "422"]);
    c.send("PING :abc");
    let pong = c.line();
    assert!(pong.ends_with("PONG chat :abc"), "{pong}");
    // server-time: presence and pongs carry @time.
    assert!(pong.starts_with("@time="), "{pong}");
}

#[test]
fn before_registration_only_registration_commands() {
    let (_b, _native, addr) = broker();
    let mut c = Irc::connect(addr, "x");
    c.send("PRIVMSG bob :hi");
    assert!(c.line().starts_with(":chat 451 * "));
    c.send("PING");
    assert!(c.line().starts_with(":chat 409 * "));
    c.send("NICK -bad");
    assert!(c.line().starts_with(":chat 432 * -bad "));
    c.send("QUIT");
    assert!(c.line().starts_with("ERROR :Closing link"));
    c.expect_eof();
}

#[test]
fn native_and_irc_talk_in_every_direction() {
    let (_b, native, addr) = broker();
    let mut alice = Peer::named(native, "alice");
    let mut bob = Irc::registered(addr, "bob", "");
    let mut carol = Irc::registered(addr, "carol", "");
    alice.expect("JOINED bob");
    alice.expect("JOINED carol");
    bob.until(":carol!carol@chat JOIN #all");
    // Direct, native -> IRC.
    alice.send("SEND bob :hi bob\n");
    alice.expect_prefix("ACK ");
    assert_eq!(bob.line(), ":alice!alice@chat PRIVMSG bob :hi bob");
    // Direct, IRC -> native.
    bob.send("PRIVMSG alice :hello alice");
    let m = alice.next_msg();
    assert_eq!((m.field(2), m.field(3)), ("bob", "direct"));
    assert_eq!(m.body_str(), "hello alice");
    // Multi, native -> IRC: each sees it addressed to itself.
    alice.send("SEND bob,carol :to you both\n");
    assert_eq!(bob.line(), ":alice!alice@chat PRIVMSG bob :to you both");
    assert_eq!(carol.line(), ":alice!alice@chat PRIVMSG carol :to you both");
    // Multi, IRC -> native and IRC.
    bob.send("PRIVMSG alice,carol :from bob");
    let m = alice.next_msg();
    assert_eq!((m.field(3), m.body_str().as_str()), ("multi", "from bob"));
    assert_eq!(carol.line(), ":bob!bob@chat PRIVMSG carol :from bob");
    // Everyone: native SEND * is #all; PRIVMSG #all is kind all.
    alice.send("SEND * :hi all\n");
    assert_eq!(bob.line(), ":alice!alice@chat PRIVMSG #all :hi all");
    assert_eq!(carol.line(), ":alice!alice@chat PRIVMSG #all :hi all");
    carol.send("PRIVMSG #all :carol to all");
    let m = alice.next_msg();
    assert_eq!((m.field(2), m.field(3)), ("carol", "all"));
    assert_eq!(bob.line(), ":carol!carol@chat PRIVMSG #all :carol to all");
    // Receipts from native to an IRC sender go nowhere, silently.
    alice.send(&format!("RECV {} bob\n", m.field(1)));
    alice.expect_quiet();
    bob.expect_quiet();
    carol.expect_quiet();
}

#[test]
fn rooms_across_doors() {
    let (_b, native, addr) = broker();
    let mut alice = Peer::named(native, "alice");
    let mut bob = Irc::registered(addr, "bob", "");
    alice.expect("JOINED bob");
    bob.send("JOIN #Rust");
    assert_eq!(bob.line(), ":bob!bob@chat JOIN #Rust");
    assert!(bob.line().starts_with(":chat 331 bob #Rust "));
    assert_eq!(bob.line(), ":chat 353 bob = #Rust :@bob");
    assert!(bob.line().starts_with(":chat 366 bob #Rust "));
    alice.send("JOIN #rust\n");
    alice.expect("OK JOIN #Rust 2");
    assert_eq!(bob.line(), ":alice!alice@chat JOIN #Rust");
    alice.send("SEND #rust :native in the room\n");
    assert_eq!(
        bob.line(),
        ":alice!alice@chat PRIVMSG #Rust :native in the room"
    );
    bob.send("PRIVMSG #rust :irc in the room");
    let m = alice.next_msg();
    assert_eq!((m.field(2), m.field(3)), ("bob", "#Rust"));
    bob.send("NAMES #rust");
    assert_eq!(bob.line(), ":chat 353 bob = #Rust :alice @bob");
    bob.until(" 366 ");
    bob.send("LIST");
    assert!(bob.line().contains(" 321 "));
    assert!(bob.line().contains(" 322 bob #all 2 "));
    assert!(bob.line().contains(" 322 bob #Rust 2 "));
    assert!(bob.line().contains(" 323 "));
    bob.send("PART #rust :bye now");
    assert_eq!(bob.line(), ":bob!bob@chat PART #Rust :bye now");
    alice.expect("PARTED bob #Rust");
    alice.send("PART #rust\n");
    alice.expect("OK PART #Rust");
    bob.send("PART #rust");
    assert!(bob.line().starts_with(":chat 403 bob #rust "));
    bob.expect_quiet();
}

#[test]
fn presence_crosses_doors() {
    let (_b, native, addr) = broker();
    let mut bob = Irc::registered(addr, "bob", "");
    let mut alice = Peer::named(native, "alice");
    assert_eq!(bob.line(), ":alice!alice@chat JOIN #all");
    let mut carol = Irc::registered(addr, "carol", "");
    alice.expect("JOINED carol");
    assert_eq!(bob.line(), ":carol!carol@chat JOIN #all");
    carol.send("QUIT :off to lunch");
    assert!(carol.line().starts_with("ERROR :Closing link"));
    carol.expect_eof();
    alice.expect("LEFT carol quit");
    assert_eq!(bob.line(), ":carol!carol@chat QUIT :Quit: off to lunch");
    alice.send("QUIT\n");
    assert_eq!(bob.line(), ":alice!alice@chat QUIT :Quit");
    let mut dave = Peer::named(native, "dave");
    bob.until("dave!dave@chat JOIN #all");
    drop(dave.stream.try_clone());
    dave.send("QUIT\n");
    bob.until("dave!dave@chat QUIT");
}

#[test]
fn nicks_and_names_are_one_namespace() {
    let (_b, native, addr) = broker();
    let _alice = Peer::named(native, "alice");
    let mut c = Irc::connect(addr, "x");
    c.send("NICK ALICE");
    c.send("USER x 0 * :x");
    assert!(c.line().starts_with(":chat 433 * ALICE "));
    c.send("NICK bob");
    c.until(" 001 bob ");
    c.until(" 366 bob #all ");
    let mut n = Peer::connect(native);
    n.send("NAME BOB\n");
    n.expect_prefix("ERR NAME_TAKEN");
    c.send("NICK robert");
    assert!(c.line().contains(" 400 bob NICK "));
}

#[test]
fn a_body_with_newlines_and_control_bytes_never_injects_irc_lines() {
    let (_b, native, addr) = broker();
    let mut alice = Peer::named(native, "alice");
    let mut bob = Irc::registered(addr, "bob", "");
    alice.expect("JOINED bob");
    let body = "line one\nQUIT :pwned\r\nline\0three";
    alice.send(&format!("SEND bob {}\n{body}\n", body.len()));
    alice.expect_prefix("ACK ");
    assert_eq!(bob.line(), ":alice!alice@chat PRIVMSG bob :line one");
    let second = bob.line();
    assert!(
        second.starts_with(":alice!alice@chat PRIVMSG bob :QUIT :pwned"),
        "{second}"
    );
    let third = bob.line();
    assert!(
        third.starts_with(":alice!alice@chat PRIVMSG bob :line"),
        "{third}"
    );
    assert!(!third.contains('\0'));
    bob.expect_quiet();
}

#[test]
fn irc_errors_are_numerics() {
    let (_b, native, addr) = broker();
    let _alice = Peer::named(native, "alice");
    let mut bob = Irc::registered(addr, "bob", "echo-message");
    bob.send("PRIVMSG ghost :x");
    assert!(bob.line().starts_with(":chat 401 bob ghost "));
    bob.send("PRIVMSG #nowhere :x");
    assert!(bob.line().starts_with(":chat 403 bob #nowhere "));
    bob.send("PRIVMSG alice");
    assert!(bob.line().starts_with(":chat 412 bob "));
    bob.send("PRIVMSG");
    assert!(bob.line().starts_with(":chat 411 bob "));
    bob.send("FROBNICATE");
    assert!(bob.line().starts_with(":chat 421 bob FROBNICATE "));
    bob.send("PART #nowhere");
    assert!(bob.line().starts_with(":chat 403 bob #nowhere "));
    bob.send(&format!("PRIVMSG alice :{}", "x".repeat(600)));
    assert!(bob.line().starts_with(":chat 417 bob "));
    // NOTICE never gets an error back.
    bob.send("NOTICE ghost :x");
    // echo-message: our own message comes back.
    bob.send("PRIVMSG alice :echo me");
    assert_eq!(bob.line(), ":bob!bob@chat PRIVMSG alice :echo me");
    bob.send("WHOIS alice");
    assert!(bob.line().starts_with(":chat 311 bob alice alice chat * "));
    bob.until(" 318 bob alice ");
    bob.send("ISON alice ghost bob");
    assert_eq!(bob.line(), ":chat 303 bob :alice bob");
    bob.send("MODE bob");
    assert!(bob.line().starts_with(":chat 221 bob "));
    bob.send("TOPIC #all");
    assert!(bob.line().starts_with(":chat 331 bob #all "));
    bob.expect_quiet();
}

#[test]
fn shutdown_delivers_then_error_then_close() {
    let (b, native, addr) = broker();
    let mut alice = Peer::named(native, "alice");
    let mut bob = Irc::registered(addr, "bob", "");
    alice.expect("JOINED bob");
    alice.send("SEND bob :last words\n");
    alice.expect_prefix("ACK ");
    let report = b.shutdown();
    assert_eq!(report.notified, 2);
    assert_eq!(bob.line(), ":alice!alice@chat PRIVMSG bob :last words");
    assert!(bob
        .line()
        .starts_with("ERROR :Closing link: server is shutting down"));
    bob.expect_eof();
    alice.expect_prefix("SHUTDOWN :");
}

#[test]
fn limits_and_quiet_commands_hold_on_irc_too() {
    let b = start_with(|c| {
        c.rate_per_sec = 0;
        c.max_targets = 2;
        c.keepalive_secs = 1;
    });
    let native = b.local_addr();
    let addr = b.irc_addr().unwrap();
    let _n1 = Peer::named(native, "n1");
    let mut n2 = Peer::named(native, "n2");
    let mut bob = Irc::registered(addr, "bob", "");
    // TARGMAX is max_targets, and enforced.
    bob.send("PRIVMSG n1,n2,bob :three");
    assert!(bob.line().starts_with(":chat 407 bob "));
    // A NOTICE stays a NOTICE for IRC users, a MSG for natives.
    let mut carol = Irc::registered(addr, "carol", "");
    bob.until(":carol!carol@chat JOIN #all");
    bob.send("NOTICE carol,n2 :psst");
    assert_eq!(carol.line(), ":bob!bob@chat NOTICE carol :psst");
    n2.skip_until("JOINED carol");
    assert_eq!(n2.next_msg().body_str(), "psst");
    // Tags-only messages and WHOWAS get no 421.
    bob.send("@+typing=active TAGMSG #all");
    bob.send("WHOWAS nobody");
    assert!(bob.line().starts_with(":chat 406 bob nobody "));
    assert!(bob.line().starts_with(":chat 369 bob nobody "));
    // Messages from IRC are counted like any other.
    assert!(b.stats().messages >= 1);
    // The broker pings a silent client, then closes it with a reason.
    let mut quiet = Irc::registered(addr, "quiet", "");
    quiet.until("PING :chat");
    assert!(quiet
        .until("ERROR")
        .starts_with("ERROR :Closing link: Ping timeout"));
    quiet.expect_eof();
}

#[test]
fn a_room_operator_is_its_creator_only() {
    let (_b, native, addr) = broker();
    let mut alice = Peer::named(native, "alice");
    alice.send("JOIN #r\n");
    alice.expect("OK JOIN #r 1");
    let mut bob = Irc::registered(addr, "bob", "");
    bob.send("JOIN #r");
    bob.until(":chat 353 bob = #r :@alice bob");
    alice.send("PART #r :bye\n");
    assert_eq!(bob.until("PART"), ":alice!alice@chat PART #r :bye");
    bob.send("NAMES #r");
    assert_eq!(bob.line(), ":chat 353 bob = #r :bob");
}

#[test]
fn cap_ls_gives_values_only_to_cap_302_clients() {
    // With a data_dir there are accounts, so `sasl` is offered.
    let b = start_with(|c| {
        c.rate_per_sec = 0;
        c.data_dir = data_dir();
    });
    let addr = b.irc_addr().unwrap();
    let mut old = Irc::connect(addr, "old");
    old.send("CAP LS");
    let ls = old.line();
    assert!(ls.starts_with(":chat CAP * LS :"), "{ls}");
    assert!(ls.split(' ').any(|c| c == "sasl"), "{ls}");
    assert!(!ls.contains('='), "a 3.1 client gets names only: {ls}");
    let mut new = Irc::connect(addr, "new");
    new.send("CAP LS 302");
    let ls = new.line();
    assert!(ls.contains(" sasl=PLAIN"), "{ls}");
}

#[test]
fn cap_list_shows_what_is_on_and_a_minus_turns_it_off() {
    let (_b, _native, addr) = broker();
    let mut dan = Irc::registered(addr, "dan", "");
    let mut cara = Irc::registered(addr, "cara", "echo-message server-time");
    dan.until(" JOIN ");
    cara.send("CAP LIST");
    let l = cara.until(" CAP cara LIST ");
    assert!(l.ends_with(" :server-time echo-message"), "{l}");
    // echo-message: her own message comes back to her, as dan gets it.
    cara.send("PRIVMSG dan :one");
    let echo = cara.until(" PRIVMSG dan ");
    assert!(
        echo.starts_with("@time=") && echo.ends_with(":one"),
        "{echo}"
    );
    assert!(dan.until(" PRIVMSG dan ").ends_with(":one"));
    cara.send("CAP REQ :-echo-message");
    assert!(cara.until(" CAP cara ").ends_with(" ACK :-echo-message"));
    cara.send("CAP LIST");
    let l = cara.until(" CAP cara LIST ");
    assert!(l.ends_with(" :server-time"), "{l}");
    // No echo now: the next line she gets is the answer to her PING.
    cara.send("PRIVMSG dan :two");
    assert!(dan.until(" PRIVMSG dan ").ends_with(":two"));
    cara.send("PING :after");
    let next = cara.line();
    assert!(next.ends_with("PONG chat :after"), "{next}");
}

#[test]
fn user_needs_every_parameter_and_a_realname() {
    let (_b, _native, addr) = broker();
    let mut c = Irc::connect(addr, "bob");
    c.send("NICK bob");
    c.send("USER bob * * :");
    assert_eq!(c.line(), ":chat 461 * USER :Not enough parameters");
    c.send("USER bob 0");
    assert_eq!(c.line(), ":chat 461 * USER :Not enough parameters");
    c.send("USER bob 0 *");
    assert_eq!(c.line(), ":chat 461 * USER :Not enough parameters");
    c.send("USER bob 0 * :Bob B");
    assert!(c.line().starts_with(":chat 001 bob "));
}

#[test]
fn client_tags_over_4094_bytes_get_417() {
    let (_b, native, addr) = broker();
    let mut alice = Peer::named(native, "alice");
    let mut bob = Irc::registered(addr, "bob", "message-tags");
    alice.expect("JOINED bob");
    // 4094 bytes of tag data (without the '@' and the space): accepted.
    let tags = |n: usize| format!("@+t={}", "x".repeat(n - 3));
    bob.send(&format!("{} PRIVMSG alice :at the limit", tags(4094)));
    assert_eq!(alice.next_msg().body_str(), "at the limit");
    bob.send(&format!("{} PRIVMSG alice :over it", tags(4095)));
    assert_eq!(bob.line(), ":chat 417 bob :Input line was too long");
    // Dropped, not relayed; the connection goes on.
    bob.send("PRIVMSG alice :after");
    assert_eq!(alice.next_msg().body_str(), "after");
    bob.expect_quiet();
}

#[test]
fn lusers_gives_current_and_peak_counts() {
    let (_b, _native, addr) = broker();
    let mut bob = Irc::registered(addr, "bob", "");
    let mut carol = Irc::registered(addr, "carol", "");
    bob.until(":carol!carol@chat JOIN #all");
    carol.send("LUSERS");
    assert!(carol
        .line()
        .starts_with(":chat 251 carol :There are 2 users "));
    assert!(carol
        .line()
        .starts_with(":chat 255 carol :I have 2 clients "));
    assert!(carol.line().starts_with(":chat 265 carol 2 2 :"));
    assert!(carol.line().starts_with(":chat 266 carol 2 2 :"));
    carol.send("QUIT");
    bob.until(":carol!carol@chat QUIT");
    bob.send("LUSERS");
    assert!(bob.line().starts_with(":chat 251 bob :There are 1 users "));
    assert!(bob.line().starts_with(":chat 255 bob :I have 1 clients "));
    assert!(bob.line().starts_with(":chat 265 bob 1 2 :"));
    assert!(bob.line().starts_with(":chat 266 bob 1 2 :"));
}

#[test]
fn who_and_whois_show_user_realname_and_operators() {
    let (_b, native, addr) = broker();
    let mut alice = Peer::named(native, "alice");
    let mut bob = Irc::connect(addr, "bob");
    bob.send("NICK bob");
    bob.send("USER bobuser 0 * :Bob the Builder");
    bob.until(" 366 bob #all ");
    let mut carol = Irc::registered(addr, "carol", "");
    bob.send("JOIN #r");
    bob.until(" 366 bob #r ");
    carol.send("JOIN #r");
    carol.until(" 366 carol #r ");
    alice.skip_until("JOINED carol");
    alice.send("JOIN #r\n");
    alice.expect("OK JOIN #r 3");
    carol.until(":alice!alice@chat JOIN #r");
    // A channel: `@` for its operator (its creator), `H` for here; a
    // native user's name is its user and real name.
    carol.send("WHO #R");
    let mut lines = vec![carol.line(), carol.line(), carol.line()];
    lines.sort();
    assert_eq!(
        lines,
        [
            ":chat 352 carol #r alice chat chat alice H :0 alice",
            ":chat 352 carol #r bobuser chat chat bob H@ :0 Bob the Builder",
            ":chat 352 carol #r carol chat chat carol H :0 carol the tester",
        ]
    );
    assert_eq!(carol.line(), ":chat 315 carol #R :End of WHO list");
    // A nick, exactly or by mask (any case): channel `*`, no `@`.
    for mask in ["bob", "BO*", "b?b"] {
        carol.send(&format!("WHO {mask}"));
        assert_eq!(
            carol.line(),
            ":chat 352 carol * bobuser chat chat bob H :0 Bob the Builder"
        );
        assert_eq!(
            carol.line(),
            format!(":chat 315 carol {mask} :End of WHO list")
        );
    }
    // `*`: everyone the asker can see (all of #all here).
    carol.send("WHO *");
    for nick in ["alice", "bob", "carol"] {
        assert!(carol.line().contains(&format!(" chat {nick} H :0 ")));
    }
    assert!(carol.line().starts_with(":chat 315 carol * "));
    carol.send("WHO nobody*");
    assert!(carol.line().starts_with(":chat 315 carol nobody* "));
    carol.send("WHOIS bob");
    assert_eq!(
        carol.line(),
        ":chat 311 carol bob bobuser chat * :Bob the Builder"
    );
    carol.until(" 318 carol bob ");
    carol.send("WHOIS alice");
    assert_eq!(carol.line(), ":chat 311 carol alice alice chat * :alice");
    carol.until(" 318 carol alice ");
    carol.expect_quiet();
}

#[test]
fn away_is_shown_to_others() {
    let (_b, native, addr) = broker();
    let _alice = Peer::named(native, "alice");
    let mut bob = Irc::registered(addr, "bob", "");
    let mut carol = Irc::registered(addr, "carol", "");
    bob.until(":carol!carol@chat JOIN #all");
    bob.send("AWAY :gone to lunch");
    assert_eq!(
        bob.line(),
        ":chat 306 bob :You have been marked as being away"
    );
    // A PRIVMSG is delivered and answered with 301; a NOTICE is not.
    carol.send("PRIVMSG bob,alice :hi");
    assert_eq!(carol.line(), ":chat 301 carol bob :gone to lunch");
    assert_eq!(bob.line(), ":carol!carol@chat PRIVMSG bob :hi");
    carol.send("NOTICE bob :psst");
    assert_eq!(bob.line(), ":carol!carol@chat NOTICE bob :psst");
    carol.expect_quiet();
    carol.send("WHOIS bob");
    carol.until(" 312 carol bob ");
    assert_eq!(carol.line(), ":chat 301 carol bob :gone to lunch");
    carol.until(" 318 carol bob ");
    carol.send("WHO bob");
    assert!(carol.line().contains(" chat bob G :0 bob the tester"));
    carol.until(" 315 ");
    carol.send("USERHOST bob alice");
    assert_eq!(
        carol.line(),
        ":chat 302 carol :bob=-bob@chat alice=+alice@chat"
    );
    bob.send("AWAY");
    assert_eq!(
        bob.line(),
        ":chat 305 bob :You are no longer marked as being away"
    );
    carol.send("WHO bob");
    assert!(carol.line().contains(" chat bob H :0 bob the tester"));
    carol.until(" 315 ");
    carol.send("PRIVMSG bob :back?");
    carol.expect_quiet();
}

#[test]
fn list_with_channels_lists_only_those() {
    let (_b, _native, addr) = broker();
    let mut bob = Irc::registered(addr, "bob", "");
    bob.send("JOIN #a,#b");
    bob.until(" 366 bob #b ");
    bob.send("LIST #B,#nope,#all");
    assert!(bob.line().contains(" 321 "));
    assert_eq!(bob.line(), ":chat 322 bob #b 1 :");
    assert_eq!(bob.line(), ":chat 322 bob #all 1 :everyone");
    assert!(bob.line().contains(" 323 "));
    bob.send("LIST #nonexistent");
    assert!(bob.line().contains(" 321 "));
    assert!(bob.line().contains(" 323 "));
    bob.expect_quiet();
}
