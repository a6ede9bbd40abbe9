//! Turning events into display lines: time stamps, labels, colours (only
//! when a person is watching a terminal) and, above all, making every
//! character that came from someone else harmless.
//!
//! Nothing another user sends reaches the terminal raw: C0 and C1 control
//! characters are shown in caret notation (ESC as `^[`, DEL as `^?`, the C1
//! CSI as `M-^[`), and the invisible Unicode format characters that can
//! reorder or hide text (bidi overrides, zero-width joiners) as `<U+202E>`.
//! So no message can clear the screen, move the cursor, set the window
//! title or make one line look like another.

use crate::command::To;
use protocol::{Kind, LeftReason};

/// How lines are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours (a terminal is watching and `NO_COLOR` is unset).
    pub color: bool,
    /// Show line breaks inside a message as indented lines; otherwise every
    /// event is exactly one line and a line break shows as `^J`.
    pub multiline: bool,
}

impl Style {
    /// Plain text, one line per event: for scripts and pipes.
    pub const PLAIN: Style = Style {
        color: false,
        multiline: false,
    };
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const PRIVATE: &str = "\x1b[1;35m";
const GROUP: &str = "\x1b[1;36m";
const EVERYONE: &str = "\x1b[1;32m";
/// Room messages: bold blue, apart from the three kinds above and from the
/// yellow notices (a room's name is the label, so the colour only has to
/// say "a room").
const ROOM: &str = "\x1b[1;34m";
const NOTICE: &str = "\x1b[33m";
const ERROR: &str = "\x1b[1;31m";
const RECEIPT: &str = "\x1b[32m";
/// Continuation lines of a multi-line message start under its text.
const INDENT: &str = "           ";

/// What people call each kind of message (a room by its name).
pub fn kind_label<'a>(kind: Kind<'a>) -> &'a str {
    match kind {
        Kind::Direct => "private",
        Kind::Multi => "group",
        Kind::All => "everyone",
        Kind::Room(room) => room,
    }
}

fn kind_color(kind: Kind<'_>) -> &'static str {
    match kind {
        Kind::Direct => PRIVATE,
        Kind::Multi => GROUP,
        Kind::All => EVERYONE,
        Kind::Room(_) => ROOM,
    }
}

/// The kind a message to `to` will have, by the contract's rule.
pub fn kind_of(to: &To) -> Kind<'_> {
    match to {
        To::Everyone => Kind::All,
        To::Names(names) if names.len() == 1 => Kind::Direct,
        To::Names(_) => Kind::Multi,
        To::Room(room) => Kind::Room(room),
    }
}

/// Why someone left, in words.
pub fn left_reason(reason: LeftReason) -> &'static str {
    match reason {
        LeftReason::Quit => "quit",
        LeftReason::Disconnect => "disconnected",
        LeftReason::Timeout => "timed out",
        LeftReason::Slow => "too slow to keep up",
        LeftReason::Error => "protocol error",
        LeftReason::Kicked => "kicked for flooding",
    }
}

/// `HH:MM:SS` in local time for a Unix time in milliseconds.
pub fn clock(unix_ms: u64) -> String {
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    let (h, m, s) = crate::sys::local_hms(secs);
    format!("{h:02}:{m:02}:{s:02}")
}

fn paint(style: Style, color: &str, text: &str) -> String {
    if style.color {
        format!("{color}{text}{RESET}")
    } else {
        text.to_string()
    }
}

fn stamp(style: Style, unix_ms: u64) -> String {
    paint(style, DIM, &clock(unix_ms))
}

/// Whether a character must not reach the terminal as it is: C0/C1
/// controls (except a line break, handled by the caller) and the invisible
/// format characters that reorder or hide text.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Appends `text` with every dangerous character made visible.
fn escape_into(out: &mut String, text: &str, style: Style) {
    let visible = |out: &mut String, shown: &str| {
        if style.color {
            // Reverse video tells an escaped `^[` from a typed one.
            out.push_str("\x1b[7m");
            out.push_str(shown);
            out.push_str("\x1b[27m");
        } else {
            out.push_str(shown);
        }
    };
    for c in text.chars() {
        let code = u32::from(c);
        match c {
            '\n' if style.multiline => {
                out.push('\n');
                out.push_str(INDENT);
            }
            '\t' => out.push_str("    "),
            _ if code < 0x20 || code == 0x7f => {
                let shown = char::from_u32(code ^ 0x40).unwrap_or('?');
                visible(out, &format!("^{shown}"));
            }
            _ if (0x80..0xa0).contains(&code) => {
                let shown = char::from_u32((code - 0x80) ^ 0x40).unwrap_or('?');
                visible(out, &format!("M-^{shown}"));
            }
            _ if is_format_char(c) => visible(out, &format!("<U+{code:04X}>")),
            _ => out.push(c),
        }
    }
}

/// `text` with every dangerous character made visible.
pub fn escape(text: &str, style: Style) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text, style);
    out
}

/// Like [`escape`] for bytes off the wire; invalid UTF-8 shows as `�`.
pub fn escape_bytes(bytes: &[u8], style: Style) -> String {
    escape(&String::from_utf8_lossy(bytes), style)
}

/// A short, single-line, escaped quote of a message for receipts.
pub fn snippet(text: &str) -> String {
    const MAX: usize = 24;
    let mut out = escape(text, Style::PLAIN);
    if let Some((cut, _)) = out.char_indices().nth(MAX) {
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// How a message from before we came reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    /// Stored for us while we were away, delivered when we signed in.
    Stored,
    /// A room's earlier messages, replayed when we joined it.
    History,
}

/// A received message's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    /// When the broker took it (Unix ms): the time shown.
    pub ts_ms: u64,
    /// Now (Unix ms): an old message from another day shows its date.
    pub now_ms: u64,
    /// From before we came, and how; `None`: live.
    pub late: Option<Late>,
}

/// `(delivered late)`, `(history)`, with the date when it is not today's.
fn late_marker(late: Late, ts_ms: u64, now_ms: u64) -> String {
    let secs = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let day = crate::sys::local_date(secs(ts_ms));
    let date = match day == crate::sys::local_date(secs(now_ms)) {
        true => String::new(),
        false => format!("{:04}-{:02}-{:02}", day.0, day.1, day.2),
    };
    match (late, date.is_empty()) {
        (Late::Stored, true) => "(delivered late)".to_string(),
        (Late::Stored, false) => format!("(delivered late, sent {date})"),
        (Late::History, true) => "(history)".to_string(),
        (Late::History, false) => format!("(history, {date})"),
    }
}

/// A received message: `12:00:03 [private] bob: hi`, `[#rust] bob: hi`;
/// one from before we came says so before the text, where no text can
/// imitate it (a name has no spaces): `[private] bob (delivered late): hi`,
/// `[#rust] bob (history): hi`.
pub fn message(style: Style, when: When, from: &str, kind: Kind, body: &[u8]) -> String {
    let mut head = format!(
        "[{}] {}",
        escape(kind_label(kind), style),
        escape(from, style)
    );
    if let Some(late) = when.late {
        head.push(' ');
        head.push_str(&late_marker(late, when.ts_ms, when.now_ms));
    }
    head.push(':');
    format!(
        "{} {} {}",
        stamp(style, when.ts_ms),
        paint(style, kind_color(kind), &head),
        escape_bytes(body, style)
    )
}

/// `OK REGISTER`: `*** alice is registered: ...`.
pub fn registered(style: Style, now_ms: u64, name: &str) -> String {
    let name = escape(name, style);
    notice(
        style,
        now_ms,
        &format!(
            "*** {name} is registered: the name is yours now, and messages to {name} wait for you while you are away; sign in with its password from now on"
        ),
    )
}

/// Delivery state of a message of ours that could go nowhere yet (not
/// acknowledged): only used if the broker acknowledges something we don't
/// remember sending.
pub fn ack_only(style: Style, now_ms: u64, id: u64, queued: u64, missing: Option<&str>) -> String {
    format!(
        "{} {}",
        stamp(style, now_ms),
        paint(style, DIM, &delivery(style, None, id, queued, missing))
    )
}

fn delivery(
    style: Style,
    room: Option<&str>,
    id: u64,
    queued: u64,
    missing: Option<&str>,
) -> String {
    let mut s = format!("(#{id} sent to {queued}");
    if let Some(m) = missing.filter(|m| !m.is_empty()) {
        s.push_str("; not online: ");
        s.push_str(&escape(&m.replace(',', ", "), style));
    }
    if queued == 0 && missing.is_none() {
        match room {
            Some(r) => {
                s.push_str(": nobody else is in ");
                s.push_str(&escape(r, style));
            }
            None => s.push_str(": nobody else is online"),
        }
    }
    s.push(')');
    s
}

/// Our own message echoed with its delivery state:
/// `12:00:03 [private] you -> bob: hi (#17 sent to 1)`,
/// `12:00:03 [#rust] you: hi (#18 sent to 2)`.
pub fn sent(
    style: Style,
    now_ms: u64,
    to: &To,
    text: &str,
    ack: (u64, u64, Option<&str>),
) -> String {
    let (id, queued, missing) = ack;
    let kind = kind_of(to);
    let (head, room) = match to {
        To::Everyone => (format!("[{}] you:", kind_label(kind)), None),
        To::Names(names) => (
            format!("[{}] you -> {}:", kind_label(kind), names.join(",")),
            None,
        ),
        To::Room(room) => (
            format!("[{}] you:", escape(room, style)),
            Some(room.as_str()),
        ),
    };
    format!(
        "{} {} {} {}",
        stamp(style, now_ms),
        paint(style, kind_color(kind), &head),
        escape(text, style),
        paint(style, DIM, &delivery(style, room, id, queued, missing))
    )
}

/// One recipient has shown our message: `12:00:04 ✓ bob read #17 (1/2) "hi"`.
pub fn receipt(
    style: Style,
    now_ms: u64,
    id: u64,
    by: &str,
    count: Option<(usize, u64)>,
    quote: Option<&str>,
) -> String {
    let mark = if style.color { "✓" } else { "[read]" };
    let mut s = format!("{mark} {} read #{id}", escape(by, style));
    if let Some((read, queued)) = count {
        s.push_str(&format!(" ({read}/{queued})"));
    }
    if let Some(q) = quote {
        s.push_str(&format!(" \"{q}\""));
    }
    format!("{} {}", stamp(style, now_ms), paint(style, RECEIPT, &s))
}

/// A notice from the client or the broker: joins, leaves, who is online.
pub fn notice(style: Style, now_ms: u64, text: &str) -> String {
    format!("{} {}", stamp(style, now_ms), paint(style, NOTICE, text))
}

/// `--> bob joined`.
pub fn joined(style: Style, now_ms: u64, name: &str) -> String {
    notice(
        style,
        now_ms,
        &format!("--> {} joined", escape(name, style)),
    )
}

/// `<-- bob left (quit)`.
pub fn left(style: Style, now_ms: u64, name: &str, reason: LeftReason) -> String {
    notice(
        style,
        now_ms,
        &format!("<-- {} left ({})", escape(name, style), left_reason(reason)),
    )
}

/// `online (2): alice bob`.
pub fn users(style: Style, now_ms: u64, count: usize, names: &str) -> String {
    notice(
        style,
        now_ms,
        &format!("online ({count}): {}", escape(names, style)),
    )
}

/// `--> bob joined #rust`.
pub fn room_joined(style: Style, now_ms: u64, name: &str, room: &str) -> String {
    notice(
        style,
        now_ms,
        &format!("--> {} joined {}", escape(name, style), escape(room, style)),
    )
}

/// `<-- bob left #rust`.
pub fn room_parted(style: Style, now_ms: u64, name: &str, room: &str) -> String {
    notice(
        style,
        now_ms,
        &format!("<-- {} left {}", escape(name, style), escape(room, style)),
    )
}

/// Where plain text goes now: `talking in #rust`, `talking to everyone`.
pub fn target(style: Style, room: Option<&str>) -> String {
    match room {
        Some(r) => format!("talking in {}", escape(r, style)),
        None => "talking to everyone".to_string(),
    }
}

/// `OK JOIN`: `--> you joined #rust (3 members); talking in #rust`.
pub fn you_joined(style: Style, now_ms: u64, room: &str, members: usize) -> String {
    let who = match members {
        0 | 1 => "just you".to_string(),
        n => format!("{n} members"),
    };
    notice(
        style,
        now_ms,
        &format!(
            "--> you joined {} ({who}); {}",
            escape(room, style),
            target(style, Some(room))
        ),
    )
}

/// `OK PART`: `<-- you left #rust`, and where plain text goes now if that
/// changed.
pub fn you_left(style: Style, now_ms: u64, room: &str, now: Option<Option<&str>>) -> String {
    let mut s = format!("<-- you left {}", escape(room, style));
    if let Some(now) = now {
        s.push_str("; ");
        s.push_str(&target(style, now));
    }
    notice(style, now_ms, &s)
}

/// After a reconnect, `OK JOIN` for a room we were in:
/// `--> back in #rust (3 members)`.
pub fn rejoined(style: Style, now_ms: u64, room: &str, members: usize) -> String {
    let who = match members {
        0 | 1 => "just you".to_string(),
        n => format!("{n} members"),
    };
    notice(
        style,
        now_ms,
        &format!("--> back in {} ({who})", escape(room, style)),
    )
}

/// `SHUTDOWN`: `*** the server is shutting down`, with the broker's text
/// only when it says more than that (the broker's own text is "server is
/// shutting down", which would say it twice).
pub fn shutdown(style: Style, now_ms: u64, text: &str) -> String {
    let plain = text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_lowercase();
    let plain = plain.strip_prefix("the ").unwrap_or(&plain);
    let says_more = !plain.is_empty() && plain != "server is shutting down";
    let line = match says_more {
        true => format!("*** the server is shutting down: {}", escape(text, style)),
        false => "*** the server is shutting down".to_string(),
    };
    notice(style, now_ms, &line)
}

/// A room's members: `#rust (2): alice bob`.
pub fn room_users(style: Style, now_ms: u64, room: &str, count: usize, names: &str) -> String {
    notice(
        style,
        now_ms,
        &format!(
            "{} ({count}): {}",
            escape(room, style),
            escape(names, style)
        ),
    )
}

/// The rooms that exist: `rooms (2): #go #rust`.
pub fn rooms(style: Style, now_ms: u64, count: usize, rooms: &str) -> String {
    let text = match count {
        0 => "rooms (0): none yet; /join #name starts one".to_string(),
        _ => format!("rooms ({count}): {}", escape(rooms, style)),
    };
    notice(style, now_ms, &text)
}

/// Text for people from the broker (`INFO`).
pub fn info(style: Style, now_ms: u64, text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    notice(
        style,
        now_ms,
        &format!("[info] {}", escape(text.trim_end(), style)),
    )
}

/// Something went wrong: `12:00:07 ! ...`. `text` is escaped here.
pub fn error(style: Style, now_ms: u64, text: &str) -> String {
    format!(
        "{} {}",
        stamp(style, now_ms),
        paint(style, ERROR, &format!("! {}", escape(text, style)))
    )
}

/// A local hint (usage line, unknown command): no time stamp, the user just
/// typed the line it is about.
pub fn hint(style: Style, text: &str) -> String {
    paint(style, ERROR, &format!("! {}", escape(text, style)))
}

/// The prompt, coloured when a person is watching: bold, or bold red
/// while not connected.
pub fn prompt(style: Style, prompt: &str, online: bool) -> String {
    match online {
        true => paint(style, "\x1b[1m", prompt),
        false => paint(style, ERROR, prompt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLOR: Style = Style {
        color: true,
        multiline: true,
    };

    /// Strips the time stamp so tests don't depend on the time zone.
    fn body(line: &str) -> &str {
        line.get(9..).unwrap_or_default()
    }

    fn live(ts_ms: u64) -> When {
        When {
            ts_ms,
            now_ms: ts_ms,
            late: None,
        }
    }

    #[test]
    fn messages_from_before_we_came_are_marked_where_text_cannot_imitate_it() {
        let ts = 1_763_812_345_678;
        let late = |late, now_ms| When {
            ts_ms: ts,
            now_ms,
            late: Some(late),
        };
        let s = Style::PLAIN;
        let line = message(
            s,
            late(Late::Stored, ts + 60_000),
            "bob",
            Kind::Direct,
            b"hi",
        );
        assert_eq!(body(&line), "[private] bob (delivered late): hi");
        // The time shown is the message's own.
        assert_eq!(
            line.get(..8),
            message(s, live(ts), "bob", Kind::Direct, b"").get(..8)
        );
        let line = message(
            s,
            late(Late::History, ts + 1),
            "bob",
            Kind::Room("#r"),
            b"hi",
        );
        assert_eq!(body(&line), "[#r] bob (history): hi");
        // From another day: the date too.
        let (y, m, d) = crate::sys::local_date(1_763_812_345);
        let date = format!("{y:04}-{m:02}-{d:02}");
        let week = 7 * 86_400_000;
        let line = message(s, late(Late::Stored, ts + week), "bob", Kind::Multi, b"hi");
        assert_eq!(
            body(&line),
            format!("[group] bob (delivered late, sent {date}): hi")
        );
        let line = message(
            s,
            late(Late::History, ts + week),
            "bob",
            Kind::Room("#r"),
            b"x",
        );
        assert_eq!(body(&line), format!("[#r] bob (history, {date}): x"));
    }

    #[test]
    fn controls_are_made_visible() {
        let s = Style::PLAIN;
        assert_eq!(escape("a\u{1b}[2Jb", s), "a^[[2Jb");
        assert_eq!(escape("\u{7}\u{8}\r\0\u{7f}", s), "^G^H^M^@^?");
        assert_eq!(escape("x\u{9b}31m", s), "xM-^[31m");
        assert_eq!(escape("\u{1b}]0;pwned\u{7}", s), "^[]0;pwned^G");
        assert_eq!(escape("a\nb", s), "a^Jb");
        assert_eq!(escape("a\tb", s), "a    b");
        assert_eq!(escape("abc\u{202e}cba", s), "abc<U+202E>cba");
        assert_eq!(escape("zero\u{200b}width", s), "zero<U+200B>width");
        assert_eq!(escape("héllo ✓ 日本", s), "héllo ✓ 日本");
    }

    #[test]
    fn nothing_escaped_ever_holds_a_control_character() {
        for style in [Style::PLAIN, COLOR] {
            let all: String = (0u32..0x300).filter_map(char::from_u32).collect();
            let out = escape(&all, style);
            for c in out.chars() {
                let code = u32::from(c);
                let ok = c == '\n' && style.multiline
                    || (code >= 0x20 && code != 0x7f && !(0x80..0xa0).contains(&code))
                    // our own reverse-video markers
                    || (style.color && c == '\u{1b}');
                assert!(ok, "{code:#x} in {style:?}");
            }
            if style.color {
                // Only our own SGR sequences appear.
                let stripped = out.replace("\x1b[7m", "").replace("\x1b[27m", "");
                assert!(!stripped.contains('\u{1b}'));
            }
        }
    }

    #[test]
    fn multiline_messages_indent_in_a_terminal_and_stay_one_line_in_scripts() {
        let line = message(COLOR, live(0), "bob", Kind::Direct, b"one\ntwo");
        assert!(line.contains(&format!("one\n{INDENT}two")), "{line:?}");
        let line = message(Style::PLAIN, live(0), "bob", Kind::Direct, b"one\ntwo");
        assert!(!line.contains('\n'));
        assert!(line.ends_with("one^Jtwo"), "{line}");
    }

    #[test]
    fn plain_lines_have_time_sender_kind_text() {
        let line = message(
            Style::PLAIN,
            live(1_763_812_345_678),
            "bob",
            Kind::Direct,
            b"hi",
        );
        assert_eq!(body(&line), "[private] bob: hi");
        let time = line.get(..8).unwrap();
        assert!(time.bytes().enumerate().all(|(i, b)| if i == 2 || i == 5 {
            b == b':'
        } else {
            b.is_ascii_digit()
        }));
        assert_eq!(
            body(&message(Style::PLAIN, live(0), "bob", Kind::Multi, b"x")),
            "[group] bob: x"
        );
        assert_eq!(
            body(&message(Style::PLAIN, live(0), "bob", Kind::All, b"x")),
            "[everyone] bob: x"
        );
        assert!(!message(Style::PLAIN, live(0), "b", Kind::All, b"\x1b").contains('\u{1b}'));
    }

    #[test]
    fn each_kind_has_its_own_colour() {
        let kinds = [Kind::Direct, Kind::Multi, Kind::All, Kind::Room("#rust")];
        for k in kinds {
            let line = message(COLOR, live(0), "bob", k, b"hi");
            let label = format!("{}[{}] bob:", kind_color(k), kind_label(k));
            assert!(line.contains(&label), "{line:?}");
            for other in kinds.into_iter().filter(|&o| o != k) {
                assert_ne!(kind_color(k), kind_color(other));
            }
            assert_ne!(kind_color(k), NOTICE);
        }
        // Every room shares the room colour; the label tells them apart.
        assert_eq!(kind_color(Kind::Room("#a")), kind_color(Kind::Room("#b")));
    }

    #[test]
    fn room_messages_and_notices() {
        let s = Style::PLAIN;
        assert_eq!(
            body(&message(s, live(0), "bob", Kind::Room("#rust"), b"hi")),
            "[#rust] bob: hi"
        );
        // A hostile broker's room name can't reach the terminal raw.
        assert_eq!(
            body(&message(
                s,
                live(0),
                "bob",
                Kind::Room("#a\u{1b}[2J"),
                b"hi"
            )),
            "[#a^[[2J] bob: hi"
        );
        let to = To::Room("#rust".into());
        assert_eq!(
            body(&sent(s, 0, &to, "hi", (5, 2, None))),
            "[#rust] you: hi (#5 sent to 2)"
        );
        assert_eq!(
            body(&sent(s, 0, &to, "hi", (6, 0, None))),
            "[#rust] you: hi (#6 sent to 0: nobody else is in #rust)"
        );
        assert_eq!(
            body(&room_joined(s, 0, "bob", "#rust")),
            "--> bob joined #rust"
        );
        assert_eq!(
            body(&room_parted(s, 0, "bob\u{7}", "#rust")),
            "<-- bob^G left #rust"
        );
        assert_eq!(
            body(&you_joined(s, 0, "#rust", 1)),
            "--> you joined #rust (just you); talking in #rust"
        );
        assert_eq!(
            body(&you_joined(s, 0, "#rust", 3)),
            "--> you joined #rust (3 members); talking in #rust"
        );
        assert_eq!(body(&you_left(s, 0, "#go", None)), "<-- you left #go");
        assert_eq!(
            body(&you_left(s, 0, "#rust", Some(None))),
            "<-- you left #rust; talking to everyone"
        );
        assert_eq!(
            body(&you_left(s, 0, "#rust", Some(Some("#go")))),
            "<-- you left #rust; talking in #go"
        );
        assert_eq!(
            body(&room_users(s, 0, "#rust", 2, "alice bob")),
            "#rust (2): alice bob"
        );
        assert_eq!(body(&rooms(s, 0, 2, "#go #rust")), "rooms (2): #go #rust");
        assert_eq!(
            body(&rooms(s, 0, 0, "")),
            "rooms (0): none yet; /join #name starts one"
        );
    }

    #[test]
    fn own_messages_show_delivery() {
        let to = To::Names(vec!["bob".into(), "carol".into()]);
        let line = sent(Style::PLAIN, 0, &to, "hello", (18, 1, Some("carol")));
        assert_eq!(
            body(&line),
            "[group] you -> bob,carol: hello (#18 sent to 1; not online: carol)"
        );
        let line = sent(Style::PLAIN, 0, &To::Everyone, "hi", (19, 0, None));
        assert_eq!(
            body(&line),
            "[everyone] you: hi (#19 sent to 0: nobody else is online)"
        );
        let to = To::Names(vec!["bob".into()]);
        let line = sent(Style::PLAIN, 0, &to, "hi", (17, 1, None));
        assert_eq!(body(&line), "[private] you -> bob: hi (#17 sent to 1)");
    }

    #[test]
    fn receipts_and_notices() {
        assert_eq!(
            body(&receipt(
                Style::PLAIN,
                0,
                17,
                "bob",
                Some((1, 2)),
                Some("hi")
            )),
            "[read] bob read #17 (1/2) \"hi\""
        );
        assert!(receipt(COLOR, 0, 17, "bob", None, None).contains('✓'));
        assert_eq!(body(&joined(Style::PLAIN, 0, "bob")), "--> bob joined");
        assert_eq!(
            body(&left(Style::PLAIN, 0, "bob", LeftReason::Quit)),
            "<-- bob left (quit)"
        );
        assert_eq!(
            body(&left(Style::PLAIN, 0, "bob", LeftReason::Disconnect)),
            "<-- bob left (disconnected)"
        );
        assert_eq!(
            body(&users(Style::PLAIN, 0, 2, "alice bob")),
            "online (2): alice bob"
        );
        assert_eq!(body(&info(Style::PLAIN, 0, b"a\nb\n")), "[info] a^Jb");
    }

    #[test]
    fn shutdown_says_it_once_and_rejoins_are_short() {
        for text in [
            "server is shutting down",
            "The server is shutting down.",
            "",
        ] {
            assert_eq!(
                body(&shutdown(Style::PLAIN, 0, text)),
                "*** the server is shutting down",
                "{text:?}"
            );
        }
        assert_eq!(
            body(&shutdown(Style::PLAIN, 0, "back at 5\u{1b}[2J")),
            "*** the server is shutting down: back at 5^[[2J"
        );
        assert_eq!(
            body(&rejoined(Style::PLAIN, 0, "#rust", 3)),
            "--> back in #rust (3 members)"
        );
        // Colour changes, width doesn't: the editor measured the prompt.
        let (on, off) = (prompt(COLOR, "a> ", true), prompt(COLOR, "a> ", false));
        assert_ne!(on, off);
        assert!(on.contains("a> ") && off.contains("a> "));
    }

    #[test]
    fn snippets_are_short_and_safe() {
        assert_eq!(snippet("hi"), "hi");
        assert_eq!(snippet(&"x".repeat(30)), format!("{}…", "x".repeat(24)));
        assert_eq!(snippet("a\u{1b}b"), "a^[b");
        assert_eq!(snippet(&"é".repeat(30)).chars().count(), 25);
    }

    #[test]
    fn no_colour_means_no_escape_codes() {
        let to = To::Names(vec!["bob".into()]);
        for line in [
            message(Style::PLAIN, live(0), "bob", Kind::Direct, b"hi"),
            sent(Style::PLAIN, 0, &to, "hi", (1, 1, None)),
            receipt(Style::PLAIN, 0, 1, "bob", None, None),
            joined(Style::PLAIN, 0, "bob"),
            error(Style::PLAIN, 0, "oops"),
            hint(Style::PLAIN, "usage"),
            prompt(Style::PLAIN, "alice> ", true),
            prompt(Style::PLAIN, "alice> ", false),
            shutdown(Style::PLAIN, 0, "going"),
            rejoined(Style::PLAIN, 0, "#rust", 2),
        ] {
            assert!(!line.contains('\u{1b}'), "{line:?}");
        }
    }
}
