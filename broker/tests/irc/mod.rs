//! The IRC door (docs/irc.md): a raw-socket IRC client against the real
//! broker, talking with native users in every direction.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::{start_with, Peer, DEADLINE};

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
