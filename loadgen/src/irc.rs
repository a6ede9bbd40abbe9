//! The load generator as an IRC client (`--door irc`): the lines it writes
//! and what it makes of the lines a server sends, on top of the shared codec
//! `protocol::irc`.
//!
//! Only plain RFC 2812 is used, so the same clients load the broker's IRC
//! door, ngIRCd or InspIRCd (`benches/irc-compare.sh`):
//!
//! ```text
//! connect ─► NICK lg-<i> + USER lg-<i> 0 * :lg-<i>
//!        ◄── 001 … (whatever else the server sends: MOTD, JOIN #all, NOTICE)
//!        ─► [JOIN #load] + PING :lg-ready
//!        ◄── … PONG <server> :lg-ready        ready: everything before it is done
//! run    ─► PRIVMSG <lg-<j> | #load | #all> :<payload>
//!        ◄── :lg-<k>!<user>@<host> PRIVMSG <target> :<payload>
//! ```
//!
//! The PING after 001 is the barrier: a server answers it only after what
//! came before (registration, the broker's `#all` join and NAMES, our
//! `JOIN`), so a client that has its PONG is in every channel it will be
//! in, without knowing which numerics a particular server sends. A `PING`
//! from the server is answered with `PONG` at any time.
//!
//! IRC has no per-message reply, so a sender takes every message it writes
//! to be owed to its whole fan-out (the native door's `ACK` says how many),
//! and an error numeric answering a `PRIVMSG` takes that back.

use protocol::irc::{push_command, IrcMessage};
use protocol::push_u64;

/// The token of the PING that ends a client's registration.
pub const READY_TOKEN: &str = "lg-ready";

/// Largest `--size` over IRC. The longest relayed line is
/// `:<nick>!<user>@<host> PRIVMSG <target> :<payload>\r\n`: with 9-byte
/// nicks and users, a host of up to 63 bytes and the 8-byte `lg-99999`
/// target that is about 105 bytes before the payload, so 400 bytes of
/// payload stay inside IRC's 512 and no server has to cut them.
pub const MAX_SIZE: usize = 400;

/// Appends the registration: `NICK lg-<idx>` and `USER lg-<idx> 0 * :lg-<idx>`.
pub fn push_register(out: &mut Vec<u8>, idx: u32) {
    push_nick(out, idx);
    out.extend_from_slice(b"USER ");
    push_nick_name(out, idx);
    out.extend_from_slice(b" 0 * :");
    push_nick_name(out, idx);
    out.extend_from_slice(b"\r\n");
}

/// Appends `NICK lg-<idx>` (again, after 433 "nickname in use": the nick
/// of a previous run's client may still be on its way out).
pub fn push_nick(out: &mut Vec<u8>, idx: u32) {
    out.extend_from_slice(b"NICK ");
    push_nick_name(out, idx);
    out.extend_from_slice(b"\r\n");
}

/// Appends what a client sends once welcomed: `JOIN <room>` if it has one,
/// then the ready barrier `PING :lg-ready`.
pub fn push_ready(out: &mut Vec<u8>, room: Option<&str>) {
    if let Some(room) = room {
        push_command(out, None, None, "JOIN", &[room], None);
    }
    push_command(out, None, None, "PING", &[], Some(READY_TOKEN));
}

/// Appends the answer to a server's `PING <token>`. A token that is not
/// UTF-8 (never seen from a real server) is answered without one.
pub fn push_pong(out: &mut Vec<u8>, token: &[u8]) {
    let token = std::str::from_utf8(token).unwrap_or_default();
    push_command(out, None, None, "PONG", &[], Some(token));
}

/// Appends a client's nick, `lg-<idx>`.
pub fn push_nick_name(out: &mut Vec<u8>, idx: u32) {
    out.extend_from_slice(b"lg-");
    push_u64(out, u64::from(idx));
}

/// What one line from the server means to a load-generator client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `001`: registered.
    Welcome,
    /// `PING [<token>]`: answer with a PONG carrying the token (its last
    /// param, empty if it has none).
    Ping(&'a [u8]),
    /// `PONG`: its last param (our token comes back there).
    Pong(&'a [u8]),
    /// `PRIVMSG <target> :<text>` from someone: the text (empty if the
    /// line has none; the payload parser then calls it foreign).
    Privmsg(&'a [u8]),
    /// `QUIT` or `PART` of the user with this nick.
    Departed(&'a str),
    /// `433`/`437`: the nick is taken (or held) for now.
    NickInUse,
    /// `ERROR :<text>`: the server is closing the link.
    Error(&'a [u8]),
    /// Any other numeric from 400 to 599 (an error reply), with its last
    /// param. `422` (no MOTD) is not one: servers send it at every welcome.
    Refused {
        /// The three digits.
        code: &'a str,
        /// The human text (last param).
        text: &'a [u8],
    },
    /// Anything else: NOTICE, JOIN, MODE, the welcome numerics, NAMES...
    Other,
}

/// Classifies one decoded line.
pub fn classify<'a>(msg: &IrcMessage<'a>) -> Line<'a> {
    let last = || msg.params().last().copied().unwrap_or_default();
    let cmd = msg.command;
    if cmd.len() == 3 && cmd.bytes().all(|b| b.is_ascii_digit()) {
        return match cmd {
            "001" => Line::Welcome,
            "433" | "437" => Line::NickInUse,
            "422" => Line::Other,
            c if c.parse::<u16>().is_ok_and(|n| (400..600).contains(&n)) => Line::Refused {
                code: c,
                text: last(),
            },
            _ => Line::Other,
        };
    }
    if cmd.eq_ignore_ascii_case("PRIVMSG") {
        Line::Privmsg(msg.param(1).unwrap_or_default())
    } else if cmd.eq_ignore_ascii_case("PING") {
        Line::Ping(last())
    } else if cmd.eq_ignore_ascii_case("PONG") {
        Line::Pong(last())
    } else if cmd.eq_ignore_ascii_case("QUIT") || cmd.eq_ignore_ascii_case("PART") {
        Line::Departed(nick_of(msg.prefix.unwrap_or_default()))
    } else if cmd.eq_ignore_ascii_case("ERROR") {
        Line::Error(last())
    } else {
        Line::Other
    }
}

/// The nick in a `nick!user@host` prefix (all of it if it has no `!`).
pub fn nick_of(prefix: &str) -> &str {
    prefix.split_once('!').map_or(prefix, |(nick, _)| nick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{self, Stamp, MIN_SIZE};
    use protocol::irc::{decode, push_message, IrcDecoded, MAX_LINE};

    /// Decodes exactly one line.
    fn one(bytes: &[u8]) -> IrcMessage<'_> {
        match decode(bytes) {
            IrcDecoded::Message { msg, consumed } => {
                assert_eq!(
                    consumed,
                    bytes.len(),
                    "{:?}",
                    String::from_utf8_lossy(bytes)
                );
                msg
            }
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn class(line: &str) -> Line<'_> {
        classify(&one(line.as_bytes()))
    }

    #[test]
    fn client_lines_are_plain_rfc2812() {
        let mut out = Vec::new();
        push_register(&mut out, 42);
        assert_eq!(out, b"NICK lg-42\r\nUSER lg-42 0 * :lg-42\r\n");
        out.clear();
        push_ready(&mut out, Some("#load"));
        assert_eq!(out, b"JOIN #load\r\nPING :lg-ready\r\n");
        out.clear();
        push_ready(&mut out, None);
        assert_eq!(out, b"PING :lg-ready\r\n");
        out.clear();
        push_pong(&mut out, b"irc.example.net");
        assert_eq!(out, b"PONG :irc.example.net\r\n");
        out.clear();
        push_nick(&mut out, 99_999);
        assert_eq!(out, b"NICK lg-99999\r\n");
    }

    #[test]
    fn server_lines_from_three_servers() {
        // The broker's IRC door.
        assert_eq!(
            class(":chat 001 lg-1 :Welcome to chat, lg-1\r\n"),
            Line::Welcome
        );
        assert_eq!(
            class(":chat PONG chat :lg-ready\r\n"),
            Line::Pong(b"lg-ready")
        );
        assert_eq!(
            class(":lg-3!lg-3@chat PRIVMSG #load :3:7:99:....\r\n"),
            Line::Privmsg(b"3:7:99:....")
        );
        assert_eq!(
            class(":chat 422 lg-1 :MOTD File is missing\r\n"),
            Line::Other
        );
        assert_eq!(class(":lg-1!lg-1@chat JOIN #all\r\n"), Line::Other);
        assert_eq!(
            class(":chat 366 lg-1 #all :End of /NAMES list\r\n"),
            Line::Other
        );
        // ngIRCd: tilde users, IP hosts, its own PING, a QUIT.
        assert_eq!(
            class(":lg-3!~lg-3@127.0.0.1 PRIVMSG lg-9 :3:0:5:\r\n"),
            Line::Privmsg(b"3:0:5:")
        );
        assert_eq!(
            class("PING :irc.example.net\r\n"),
            Line::Ping(b"irc.example.net")
        );
        assert_eq!(
            class(":irc.example.net PONG irc.example.net :lg-ready\r\n"),
            Line::Pong(b"lg-ready")
        );
        assert_eq!(
            class(":lg-7!~lg-7@127.0.0.1 QUIT :Client closed connection\r\n"),
            Line::Departed("lg-7")
        );
        assert_eq!(
            class(":irc.example.net 433 * lg-2 :Nickname already in use\r\n"),
            Line::NickInUse
        );
        // InspIRCd: notices before registration, PART, an error reply.
        assert_eq!(
            class(":irc.local NOTICE * :*** Looking up your hostname...\r\n"),
            Line::Other
        );
        assert_eq!(
            class(":lg-5!lg-5@127.0.0.1 PART #load\r\n"),
            Line::Departed("lg-5")
        );
        assert_eq!(
            class(":irc.local 401 lg-1 lg-77 :No such nick\r\n"),
            Line::Refused {
                code: "401",
                text: b"No such nick"
            }
        );
        assert_eq!(
            class("ERROR :Closing link: (lg-1@127.0.0.1) [Excess Flood]\r\n"),
            Line::Error(b"Closing link: (lg-1@127.0.0.1) [Excess Flood]")
        );
        // Odd but legal shapes.
        assert_eq!(class("PING\r\n"), Line::Ping(b""));
        assert_eq!(class("ping tok\r\n"), Line::Ping(b"tok"));
        assert_eq!(class(":x!y@z PRIVMSG lg-1\r\n"), Line::Privmsg(b""));
        assert_eq!(class(":srv 600 lg-1 :not an error\r\n"), Line::Other);
        assert_eq!(class(":srv 399 lg-1 :not an error\r\n"), Line::Other);
    }

    #[test]
    fn nick_of_prefixes() {
        assert_eq!(nick_of("lg-1!~lg-1@127.0.0.1"), "lg-1");
        assert_eq!(nick_of("irc.local"), "irc.local");
        assert_eq!(nick_of(""), "");
    }

    /// The loadgen payload is printable ASCII (digits, `:`, `.`), so it
    /// goes into a PRIVMSG as it is: through the broker's encoder of
    /// relayed lines and back through the decoder, at the largest size and
    /// with the longest names, it arrives whole and parses.
    #[test]
    fn payload_survives_irc_at_the_largest_size() {
        let stamp = Stamp {
            sender: 99_999,
            seq: u64::MAX,
            send_ns: u64::MAX,
        };
        for size in [MIN_SIZE, 100, MAX_SIZE] {
            let mut body = Vec::new();
            payload::write(&mut body, stamp, size);
            assert!(
                body.iter().all(|&b| b.is_ascii_graphic()),
                "payload is IRC-safe"
            );
            // As a client writes it.
            let mut line = b"PRIVMSG lg-99999 :".to_vec();
            line.extend_from_slice(&body);
            line.extend_from_slice(b"\r\n");
            assert!(line.len() <= MAX_LINE);
            assert_eq!(classify(&one(&line)), Line::Privmsg(&body));
            // As a server relays it, with a 63-byte host in the prefix.
            let host = format!("{}.example.net", "h".repeat(51));
            assert_eq!(host.len(), 63);
            let mut relayed = Vec::new();
            push_message(
                &mut relayed,
                None,
                "lg-99999",
                &host,
                "PRIVMSG",
                "lg-99998",
                &body,
            );
            assert!(relayed.len() <= MAX_LINE, "{}", relayed.len());
            let msg = one(&relayed);
            let Line::Privmsg(text) = classify(&msg) else {
                panic!("{msg:?}");
            };
            assert_eq!(text, &body[..]);
            assert_eq!(payload::parse(text), Some(stamp));
        }
    }
}
