//! What the client remembers while it runs, and how each broker event
//! changes it: who is online (for tab completion), which of our messages
//! still wait for their `ACK`, and which were read by whom.
//!
//! No sockets and no terminal here: [`Session::on_event`] takes an event and
//! the time and answers with the lines to show and what to do next, so it is
//! unit-tested frame by frame.

use crate::command::To;
use crate::render::{self, Style};
use protocol::{ErrorCode, Event};
use std::collections::{HashMap, VecDeque};

/// How many of our own sent messages we remember for their receipts.
const REMEMBER_SENT: usize = 4096;

/// A `SEND` of ours that has no `ACK` (or `ERR`) yet. The broker answers a
/// connection's frames in order, so the oldest one is the next answered.
#[derive(Debug)]
struct Pending {
    to: To,
    text: String,
}

/// A message of ours the broker accepted.
#[derive(Debug)]
struct Sent {
    snippet: String,
    queued: u64,
    read: usize,
}

/// The conversation ended from the broker's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `BYE`: the answer to our `QUIT`.
    Bye,
    /// `SHUTDOWN`: the broker is stopping.
    Shutdown,
}

/// What to do about one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaction {
    /// Lines to show, in order.
    pub lines: Vec<String>,
    /// Send `RECV <id> <from>` once the lines are shown.
    pub receipt: Option<(u64, String)>,
    /// The broker ended the conversation.
    pub end: Option<End>,
}

/// The client's memory of the conversation.
#[derive(Debug)]
pub struct Session {
    names: Vec<String>,
    pending: VecDeque<Pending>,
    sent: HashMap<u64, Sent>,
    sent_order: VecDeque<u64>,
    quitting: bool,
}

impl Session {
    /// A session for the registered name `me`.
    pub fn new(me: &str) -> Session {
        Session {
            names: vec![me.to_string()],
            pending: VecDeque::new(),
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            quitting: false,
        }
    }

    /// Everyone known to be online (us included), sorted case-insensitively.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Records a `SEND` about to be written, so its `ACK` finds it. Call
    /// before writing the frame: the answer may come back at once.
    pub fn queue_send(&mut self, to: &To, text: &str) {
        self.pending.push_back(Pending {
            to: to.clone(),
            text: text.to_string(),
        });
    }

    /// Forgets the last queued send (its frame could not be written).
    pub fn unqueue_send(&mut self) {
        self.pending.pop_back();
    }

    /// We sent `QUIT`: the connection closing is now expected.
    pub fn set_quitting(&mut self) {
        self.quitting = true;
    }

    /// Whether we sent `QUIT`.
    pub fn quitting(&self) -> bool {
        self.quitting
    }

    fn add_name(&mut self, name: &str) {
        if !self.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            self.names.push(name.to_string());
            self.names.sort_by_key(|n| n.to_ascii_lowercase());
        }
    }

    fn remember(&mut self, id: u64, sent: Sent) {
        if self.sent_order.len() >= REMEMBER_SENT {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent_order.push_back(id);
        self.sent.insert(id, sent);
    }

    /// Applies one broker event; `now_ms` is the local time in Unix ms.
    pub fn on_event(&mut self, event: &Event<'_>, style: Style, now_ms: u64) -> Reaction {
        let mut r = Reaction::default();
        match *event {
            Event::Msg {
                id,
                from,
                kind,
                ts_ms,
                body,
            } => {
                r.lines
                    .push(render::message(style, ts_ms, from, kind, body));
                if kind != protocol::Kind::All {
                    r.receipt = Some((id, from.to_string()));
                }
            }
            Event::Ack {
                id,
                queued,
                missing,
            } => match self.pending.pop_front() {
                Some(p) => {
                    r.lines.push(render::sent(
                        style,
                        now_ms,
                        &p.to,
                        &p.text,
                        (id, queued, missing),
                    ));
                    let snippet = render::snippet(&p.text);
                    self.remember(
                        id,
                        Sent {
                            snippet,
                            queued,
                            read: 0,
                        },
                    );
                }
                None => r
                    .lines
                    .push(render::ack_only(style, now_ms, id, queued, missing)),
            },
            Event::Rcpt { id, by } => {
                let (count, quote) = match self.sent.get_mut(&id) {
                    Some(s) => {
                        s.read = s.read.saturating_add(1);
                        (Some((s.read, s.queued)), Some(s.snippet.as_str()))
                    }
                    None => (None, None),
                };
                r.lines
                    .push(render::receipt(style, now_ms, id, by, count, quote));
            }
            Event::Users {
                count,
                names,
                room: None,
            } => {
                self.names = names
                    .split(' ')
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect();
                self.names.sort_by_key(|n| n.to_ascii_lowercase());
                r.lines.push(render::users(style, now_ms, count, names));
            }
            Event::Joined { name, room: None } => {
                self.add_name(name);
                r.lines.push(render::joined(style, now_ms, name));
            }
            Event::Left { name, reason } => {
                self.names.retain(|n| !n.eq_ignore_ascii_case(name));
                r.lines.push(render::left(style, now_ms, name, reason));
            }
            Event::Err { code, args, text } => {
                r.lines.push(self.on_error(code, args, text, style, now_ms));
            }
            Event::Info { text } => r.lines.push(render::info(style, now_ms, text)),
            Event::Shutdown { text } => {
                r.lines.push(render::notice(
                    style,
                    now_ms,
                    &format!(
                        "*** the server is shutting down: {}",
                        render::escape(text, style)
                    ),
                ));
                r.end = Some(End::Shutdown);
            }
            Event::Bye => r.end = Some(End::Bye),
            Event::Users {
                count,
                names,
                room: Some(room),
            } => r.lines.push(render::notice(
                style,
                now_ms,
                &render::escape(&format!("*** {room}: {count} in the room: {names}"), style),
            )),
            Event::Joined {
                name,
                room: Some(room),
            } => r.lines.push(render::notice(
                style,
                now_ms,
                &render::escape(&format!("*** {name} joined {room}"), style),
            )),
            Event::Parted { name, room } => r.lines.push(render::notice(
                style,
                now_ms,
                &render::escape(&format!("*** {name} left {room}"), style),
            )),
            Event::JoinOk { room, members } => r.lines.push(render::notice(
                style,
                now_ms,
                &render::escape(&format!("*** you joined {room} ({members} in it)"), style),
            )),
            Event::PartOk { room } => r.lines.push(render::notice(
                style,
                now_ms,
                &render::escape(&format!("*** you left {room}"), style),
            )),
            Event::Rooms { count, rooms } => r.lines.push(render::notice(
                style,
                now_ms,
                &render::escape(&format!("*** {count} rooms: {rooms}"), style),
            )),
            // Not expected once registered; nothing to show.
            Event::Hello { .. } | Event::NameOk { .. } | Event::Pong { .. } => {}
        }
        r
    }

    fn on_error(
        &mut self,
        code: ErrorCode,
        args: Option<&str>,
        text: &str,
        style: Style,
        now_ms: u64,
    ) -> String {
        // Errors a SEND can get. RATE_LIMITED could also answer a RECV; we
        // send those only for messages a person has read, far below any
        // sane rate, so the oldest waiting SEND is the best guess.
        let about_send = matches!(
            code,
            ErrorCode::NoSuchUser
                | ErrorCode::TooManyTargets
                | ErrorCode::BadFrame
                | ErrorCode::RateLimited
                | ErrorCode::TooLong
        );
        let detail = match args {
            Some(a) => format!("{text} ({code} {a})"),
            None => format!("{text} ({code})"),
        };
        match about_send.then(|| self.pending.pop_front()).flatten() {
            Some(p) => {
                let why = match code {
                    ErrorCode::NoSuchUser => {
                        format!(
                            "not online: {}",
                            args.unwrap_or_default().replace(',', ", ")
                        )
                    }
                    _ => detail,
                };
                render::error(
                    style,
                    now_ms,
                    &format!("not sent \"{}\": {why}", render::snippet(&p.text)),
                )
            }
            None => render::error(style, now_ms, &detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Kind, LeftReason};

    const S: Style = Style::PLAIN;

    fn body(line: &str) -> &str {
        line.get(9..).unwrap_or_default()
    }

    fn lines(r: &Reaction) -> Vec<&str> {
        r.lines.iter().map(|l| body(l)).collect()
    }

    fn bob() -> To {
        To::Names(vec!["bob".into()])
    }

    #[test]
    fn direct_and_group_messages_get_receipts_broadcasts_do_not() {
        let mut s = Session::new("alice");
        for (kind, receipt) in [
            (Kind::Direct, true),
            (Kind::Multi, true),
            (Kind::All, false),
        ] {
            let ev = Event::Msg {
                id: 7,
                from: "bob",
                kind,
                ts_ms: 0,
                body: b"hi",
            };
            let r = s.on_event(&ev, S, 0);
            assert_eq!(r.lines.len(), 1);
            assert_eq!(
                r.receipt,
                receipt.then(|| (7, "bob".to_string())),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn acks_match_sends_in_order_and_receipts_count_up() {
        let mut s = Session::new("alice");
        let two = To::Names(vec!["bob".into(), "carol".into(), "dan".into()]);
        s.queue_send(&bob(), "first");
        s.queue_send(&two, "second");
        let r = s.on_event(
            &Event::Ack {
                id: 1,
                queued: 1,
                missing: None,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["[private] you -> bob: first (#1 sent to 1)"]);
        let r = s.on_event(
            &Event::Ack {
                id: 2,
                queued: 2,
                missing: Some("dan"),
            },
            S,
            0,
        );
        assert_eq!(
            lines(&r),
            ["[group] you -> bob,carol,dan: second (#2 sent to 2; not online: dan)"]
        );
        let r = s.on_event(&Event::Rcpt { id: 2, by: "bob" }, S, 0);
        assert_eq!(lines(&r), ["[read] bob read #2 (1/2) \"second\""]);
        let r = s.on_event(&Event::Rcpt { id: 2, by: "carol" }, S, 0);
        assert_eq!(lines(&r), ["[read] carol read #2 (2/2) \"second\""]);
        let r = s.on_event(
            &Event::Rcpt {
                id: 99,
                by: "carol",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["[read] carol read #99"]);
    }

    #[test]
    fn a_refused_send_is_reported_with_its_text() {
        let mut s = Session::new("alice");
        s.queue_send(&bob(), "hello");
        s.queue_send(&bob(), "again");
        let r = s.on_event(
            &Event::Err {
                code: ErrorCode::NoSuchUser,
                args: Some("bob"),
                text: "no such user",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["! not sent \"hello\": not online: bob"]);
        // The next ACK belongs to the next send.
        let r = s.on_event(
            &Event::Ack {
                id: 5,
                queued: 1,
                missing: None,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["[private] you -> bob: again (#5 sent to 1)"]);
        // Errors that can't be about a send leave nothing waiting behind.
        let r = s.on_event(
            &Event::Err {
                code: ErrorCode::AlreadyNamed,
                args: None,
                text: "already named",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["! already named (ALREADY_NAMED)"]);
    }

    #[test]
    fn names_follow_list_joined_and_left() {
        let mut s = Session::new("alice");
        assert_eq!(s.names(), ["alice"]);
        let r = s.on_event(
            &Event::Users {
                count: 3,
                room: None,
                names: "alice Bob carol",
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["online (3): alice Bob carol"]);
        assert_eq!(s.names(), ["alice", "Bob", "carol"]);
        s.on_event(
            &Event::Joined {
                name: "Abe",
                room: None,
            },
            S,
            0,
        );
        s.on_event(
            &Event::Joined {
                name: "abe",
                room: None,
            },
            S,
            0,
        );
        assert_eq!(s.names(), ["Abe", "alice", "Bob", "carol"]);
        let r = s.on_event(
            &Event::Left {
                name: "bob",
                reason: LeftReason::Timeout,
            },
            S,
            0,
        );
        assert_eq!(lines(&r), ["<-- bob left (timed out)"]);
        assert_eq!(s.names(), ["Abe", "alice", "carol"]);
    }

    #[test]
    fn shutdown_and_bye_end_the_session() {
        let mut s = Session::new("alice");
        let r = s.on_event(
            &Event::Shutdown {
                text: "maintenance\u{1b}[2J",
            },
            S,
            0,
        );
        assert_eq!(r.end, Some(End::Shutdown));
        assert_eq!(
            lines(&r),
            ["*** the server is shutting down: maintenance^[[2J"]
        );
        assert_eq!(s.on_event(&Event::Bye, S, 0).end, Some(End::Bye));
    }

    #[test]
    fn remembers_a_bounded_number_of_sent_messages() {
        let mut s = Session::new("alice");
        for id in 0..(REMEMBER_SENT as u64 + 10) {
            s.queue_send(&bob(), "x");
            s.on_event(
                &Event::Ack {
                    id,
                    queued: 1,
                    missing: None,
                },
                S,
                0,
            );
        }
        assert_eq!(s.sent.len(), REMEMBER_SENT);
        assert!(!s.sent.contains_key(&0));
    }
}
