//! The command parser: one typed line in, one [`Command`] out. Pure: no I/O,
//! no state, so every accepted form and every edge case is a unit test.
//!
//! The forms come from the systems this client replaces (IRC-style slash
//! commands, `@name` mentions, the old `send`/`MSG`/`GET_NAMES` clients and
//! the wire verbs people type into `nc`). Anything that is not one of them is
//! chat to the current target ([`Command::Say`]: the room you are talking
//! in, else everyone), except a line starting with `/`: a mistyped command
//! is never sent as chat (`//text` says `/text`).
//!
//! The parser knows nothing about which rooms you are in: `/part` without a
//! room or `/names` alone are resolved against the session by `app`.

use crate::password::Secret;
use std::fmt;

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// Everyone else online (`SEND *`).
    Everyone,
    /// One or more distinct, valid names, in the order given.
    Names(Vec<String>),
    /// Every other member of one room (`SEND #room`), as typed (`#rust`).
    Room(String),
}

/// What a typed line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send `text` to `to`.
    Send {
        /// The recipients.
        to: To,
        /// The message, quotes around the whole text already stripped.
        text: String,
    },
    /// Plain text: send it to the current target (the room you are talking
    /// in, else everyone).
    Say {
        /// The message, quotes around the whole text already stripped.
        text: String,
    },
    /// Ask who is online.
    List,
    /// `/names [#room]`, `/list #room`: who is in a room; `None` means the
    /// current room (or everyone online when talking to everyone).
    Names {
        /// The room as typed, `#` added if it was left out.
        room: Option<String>,
    },
    /// `/join #room`.
    Join {
        /// The room as typed, `#` added if it was left out.
        room: String,
    },
    /// `/part [#room] [reason]`: `None` means the current room.
    Part {
        /// The room as typed, `#` added if it was left out.
        room: Option<String>,
        /// Words after the room, passed on to the broker.
        reason: Option<String>,
    },
    /// `/switch #room`: talk in a room you are in; `None` (`/switch *`,
    /// `/all` alone) means back to everyone.
    Switch {
        /// The room as typed, `#` added if it was left out.
        room: Option<String>,
    },
    /// `/rooms`: which rooms exist.
    Rooms,
    /// `/name alice2`: sign in with this name when ours was taken while the
    /// client was reconnecting.
    Name {
        /// The new name, checked against the naming rules.
        name: String,
    },
    /// `/register [password]`: make our name an account. Without the
    /// password, a terminal asks for it (twice, without echo); a script
    /// must give it.
    Register {
        /// The password, if typed on the line.
        password: Option<Secret>,
    },
    /// Show the local help.
    Help,
    /// Leave.
    Quit,
    /// A blank line: do nothing.
    Nothing,
}

/// Why a line is not a command we can carry out; shown to the user, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Text or names are missing: the usage line of that form.
    Usage(&'static str),
    /// A `/command` we don't know, with the closest one we do.
    Unknown {
        /// What was typed after the `/`.
        command: String,
        /// A known command that looks like it (`"/msg"`).
        suggestion: Option<&'static str>,
    },
    /// A target that can't be anybody's name.
    BadName {
        /// The target as typed.
        name: String,
        /// Which naming rule it breaks.
        why: &'static str,
    },
    /// `all` (or `*`) given together with names.
    MixedAll,
    /// A room given together with names, `all` or another room.
    MixedRoom,
    /// A password the wire can't carry (a space, a control character).
    BadPassword(&'static str),
    /// Something that can't be a room's name.
    BadRoom {
        /// The room as typed.
        room: String,
        /// Which rule it breaks.
        why: &'static str,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Usage(usage) => write!(f, "usage: {usage}"),
            ParseError::Unknown {
                command,
                suggestion: Some(s),
            } => write!(f, "unknown command /{command}; did you mean {s}? (/help lists all)"),
            ParseError::Unknown {
                command,
                suggestion: None,
            } => write!(
                f,
                "unknown command /{command}; /help lists all (start with // to send a line beginning with /)"
            ),
            ParseError::BadName { name, why } => write!(f, "{name:?} is not a valid name: {why}"),
            ParseError::MixedAll => {
                f.write_str("\"all\" means everyone; send to all or to names, not both")
            }
            ParseError::MixedRoom => {
                f.write_str("a message goes to one room, or to names, not both")
            }
            ParseError::BadPassword(why) => write!(f, "{why}; usage: {USAGE_REGISTER}"),
            ParseError::BadRoom { room, why } => {
                write!(f, "{room:?} is not a valid room: {why}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

const USAGE_MSG: &str =
    "/msg <name>[,<name>...] <text> or /msg #room <text>   e.g. /msg bob hi, /msg bob,carol hi";
const USAGE_UPPER_MSG: &str = "MSG <name> <text>   e.g. MSG bob hi";
const USAGE_ALL: &str = "/all <text>   e.g. /all hello everyone";
const USAGE_AT: &str = "@<name> <text>   e.g. @bob hi, @bob: hi";
const USAGE_SEND: &str =
    "send <name>: <text>, send <name> <name> : <text> or send all <text>   e.g. send bob: hi";
const USAGE_TEXT: &str = "<text> sends to where you are talking; /help lists the commands";
const USAGE_JOIN: &str = "/join #room   e.g. /join #rust";
const USAGE_SWITCH: &str = "/switch #room (a room you are in) or /switch * (everyone)";
const USAGE_NAME: &str =
    "/name <new name>   e.g. /name alice2 (when your name was taken while reconnecting)";
/// Also what a script is told for `/register` alone.
pub const USAGE_REGISTER: &str =
    "/register (asks for the password) or, in a script, /register <password>";

/// Every slash command, for suggestions and tab completion.
pub const SLASH_COMMANDS: [&str; 20] = [
    "/msg",
    "/pm",
    "/dm",
    "/all",
    "/bm",
    "/join",
    "/part",
    "/leave",
    "/switch",
    "/rooms",
    "/list",
    "/users",
    "/who",
    "/names",
    "/name",
    "/nick",
    "/register",
    "/help",
    "/quit",
    "/exit",
];

/// The slash commands whose first argument is a room you are in (or, for
/// `/join`, any room), for tab completion.
pub const ROOM_COMMANDS: [&str; 5] = ["/part", "/leave", "/switch", "/names", "/list"];
/// The slash commands whose first argument is a name or a room you are in.
pub const MSG_COMMANDS: [&str; 3] = ["/msg", "/pm", "/dm"];

/// The text `/help` shows: every command with an example. It lists every
/// form docs/client.md lists (a unit test reads the doc's table).
pub const HELP: &str = "\
Commands, each with an example:
  to one person     /msg bob hi   /pm bob hi   /dm bob hi   @bob hi   @bob: hi
                    send bob: hi   MSG bob hi
  to several        /msg bob,carol hi   /msg bob, carol hi   @bob @carol hi
                    send bob carol dan : hi
  to everyone       /all hi   /bm hi   send all hi   (just type it when talking to everyone)
  rooms             /join #rust   /join rust   /j #rust   enter a room and talk there
                    /part   /leave   leave the room you are talking in
                    /part #rust [reason]   leave another room
                    /switch #rust   talk in a room you are in
                    /switch *   /switch all   /all   talk to everyone again
                    /msg #rust hi   send #rust: hi   MSG #rust hi   to a room, staying where you are
                    /rooms   which rooms exist
                    /names   /names #rust   /list #rust   /who #rust   who is in a room
  who is online     /list   /users   /who   get_list   GET_NAMES
  your name         /name alice2   /nick alice2   sign in with another name when yours
                    was taken while the client was reconnecting
                    /register   make your name yours: an account with a password (asked
                    twice, not shown); messages to it wait while you are away
                    /register <password>   the same in a script
  help              /help
  leave             /quit   /exit   quit   EXIT   Ctrl-D (Ctrl-C twice)
Plain text goes where the prompt says: the room you are talking in (the one
you joined or switched to last), else everyone.
Quotes around the whole text are removed: /dm bob \"hello there\" sends hello there.
Start a line with // to say a line starting with a single /.
Tab completes names, rooms and commands; up arrow recalls earlier lines.";

/// Parses one typed line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(rest) = line.strip_prefix("//") {
        return chat(&format!("/{rest}"));
    }
    if let Some(rest) = line.strip_prefix('/') {
        return slash(rest);
    }
    if line
        .strip_prefix('@')
        .and_then(|r| r.chars().next())
        .is_some_and(is_name_char)
    {
        return at_form(line);
    }
    let (word, rest) = split_word(line);
    match word {
        // Lower case as the old client wrote them, upper case as on the
        // wire; `Send me the file` is a sentence, so mixed case is chat.
        "send" | "SEND" => send_form(rest),
        "MSG" | "msg" => msg_form(rest, USAGE_UPPER_MSG),
        _ if word.eq_ignore_ascii_case("get_list") || word.eq_ignore_ascii_case("get_names") => {
            Ok(Command::List)
        }
        _ if rest.is_empty()
            && (word.eq_ignore_ascii_case("quit") || word.eq_ignore_ascii_case("exit")) =>
        {
            Ok(Command::Quit)
        }
        _ => chat(line),
    }
}

/// Plain text for the current target.
fn chat(text: &str) -> Result<Command, ParseError> {
    let text = unquote(text.trim());
    if text.is_empty() {
        return Err(ParseError::Usage(USAGE_TEXT));
    }
    Ok(Command::Say {
        text: text.to_string(),
    })
}

fn slash(rest: &str) -> Result<Command, ParseError> {
    // `/ hi` is no command at all, not a command named `hi`.
    let (cmd, args) = match rest.starts_with(char::is_whitespace) {
        true => ("", rest),
        false => split_word(rest),
    };
    match cmd.to_ascii_lowercase().as_str() {
        "msg" | "pm" | "dm" => msg_form(args, USAGE_MSG),
        // `/all` alone: back to talking to everyone.
        "all" if args.is_empty() => Ok(Command::Switch { room: None }),
        "all" | "bm" => say(To::Everyone, args, USAGE_ALL),
        "join" | "j" => match split_word(args) {
            ("", _) => Err(ParseError::Usage(USAGE_JOIN)),
            (room, _) => Ok(Command::Join {
                room: room_arg(room)?,
            }),
        },
        "part" | "leave" => match split_word(args) {
            ("", _) => Ok(Command::Part {
                room: None,
                reason: None,
            }),
            (room, reason) => Ok(Command::Part {
                room: Some(room_arg(room)?),
                reason: (!reason.is_empty()).then(|| reason.to_string()),
            }),
        },
        "switch" => match split_word(args) {
            ("", _) => Err(ParseError::Usage(USAGE_SWITCH)),
            ("*", _) => Ok(Command::Switch { room: None }),
            (w, _) if w.eq_ignore_ascii_case("all") || w.eq_ignore_ascii_case("everyone") => {
                Ok(Command::Switch { room: None })
            }
            (room, _) => Ok(Command::Switch {
                room: Some(room_arg(room)?),
            }),
        },
        "rooms" => Ok(Command::Rooms),
        // `/names` alone is the current room's members (as on IRC).
        "names" if args.is_empty() => Ok(Command::Names { room: None }),
        // A `#room` argument lists that room; other arguments are ignored:
        // people type `/who bob`.
        "list" | "users" | "who" | "names" => match split_word(args) {
            (room, _) if room.starts_with('#') => Ok(Command::Names {
                room: Some(room_arg(room)?),
            }),
            _ => Ok(Command::List),
        },
        "name" | "nick" => match split_word(args) {
            ("", _) => Err(ParseError::Usage(USAGE_NAME)),
            (name, "") => {
                protocol::validate_name(name).map_err(|why| ParseError::BadName {
                    name: name.to_string(),
                    why,
                })?;
                Ok(Command::Name {
                    name: name.to_string(),
                })
            }
            _ => Err(ParseError::Usage(USAGE_NAME)),
        },
        "register" => match split_word(args) {
            ("", _) => Ok(Command::Register { password: None }),
            (password, "") => Ok(Command::Register {
                password: Some(Secret::new(password).map_err(ParseError::BadPassword)?),
            }),
            _ => Err(ParseError::BadPassword("a password has no spaces")),
        },
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        _ => Err(ParseError::Unknown {
            command: cmd.to_string(),
            suggestion: suggest(cmd),
        }),
    }
}

/// `<targets> <text>` where targets are comma-joined names; a first word
/// ending in `,` continues into the next (`/msg bob, carol hi`), and a
/// trailing `:` is allowed (`/msg bob: hi`).
fn msg_form(args: &str, usage: &'static str) -> Result<Command, ParseError> {
    let mut names = Vec::new();
    let mut rest = args;
    loop {
        let (word, after) = split_word(rest);
        if word.is_empty() {
            break;
        }
        rest = after;
        if let Some((name, text)) = word.split_once(':') {
            // `bob:hi` or `bob:` — the colon ends the names.
            names.push(name);
            if !text.is_empty() {
                // Keep the original spacing: the text starts right after
                // the colon in `args`.
                return finish(&names, tail_from(args, text), usage);
            }
            break;
        }
        names.push(word);
        if !word.ends_with(',') {
            break;
        }
    }
    finish(&names, rest, usage)
}

/// `@bob hi`, `@bob: hi`, `@bob,carol hi`, `@bob @carol hi`, `@bob:hi`.
fn at_form(line: &str) -> Result<Command, ParseError> {
    let mut names = Vec::new();
    let mut rest = line;
    loop {
        let (word, after) = split_word(rest);
        let Some(word) = word.strip_prefix('@') else {
            break;
        };
        rest = after;
        if let Some((name, text)) = word.split_once(':') {
            names.push(name);
            if !text.is_empty() {
                return finish(&names, tail_from(line, text), USAGE_AT);
            }
            break;
        }
        names.push(word);
    }
    finish(&names, rest, USAGE_AT)
}

/// The `send` family: `send bob: hi`, `send bob carol dan : hi`,
/// `send all hi`, `send bob hi`, and the wire's own `SEND bob :hi`.
fn send_form(args: &str) -> Result<Command, ParseError> {
    let words = word_spans(args);
    let Some(&(first_start, first_end)) = words.first() else {
        return Err(ParseError::Usage(USAGE_SEND));
    };
    let word = |(s, e): (usize, usize)| args.get(s..e).unwrap_or_default();
    let after = |pos: usize| args.get(pos..).unwrap_or_default();
    // A lone `:` ends the list of names.
    if let Some(k) = words.iter().position(|&w| word(w) == ":") {
        let names: Vec<&str> = words.iter().take(k).map(|&w| word(w)).collect();
        let colon_end = words.get(k).map_or(args.len(), |&(_, e)| e);
        return finish(&names, after(colon_end), USAGE_SEND);
    }
    let first = word((first_start, first_end));
    // `send bob: hi`, `send bob,carol:hi`.
    if let Some(colon) = first.find(':') {
        let name = first.get(..colon).unwrap_or_default();
        return finish(&[name], after(first_start + colon + 1), USAGE_SEND);
    }
    // `SEND bob :hi there`, as typed on the wire.
    if let Some(&(s, e)) = words.get(1) {
        if word((s, e)).starts_with(':') {
            return finish(&[first], after(s + 1), USAGE_SEND);
        }
    }
    finish(&[first], after(first_end), USAGE_SEND)
}

/// Turns the target words and the text into a `Send`, or says what's wrong.
fn finish(words: &[&str], text: &str, usage: &'static str) -> Result<Command, ParseError> {
    let to = targets(words, usage)?;
    say(to, text, usage)
}

fn say(to: To, text: &str, usage: &'static str) -> Result<Command, ParseError> {
    let text = unquote(text.trim());
    if text.is_empty() {
        return Err(ParseError::Usage(usage));
    }
    Ok(Command::Send {
        to,
        text: text.to_string(),
    })
}

/// A room argument: `#rust`, or `rust` taken as `#rust` (as IRC clients
/// do for `/join`), checked against the room rules.
fn room_arg(word: &str) -> Result<String, ParseError> {
    let room = match word.starts_with('#') {
        true => word.to_string(),
        false => format!("#{word}"),
    };
    protocol::validate_room(&room).map_err(|why| ParseError::BadRoom {
        room: word.to_string(),
        why,
    })?;
    Ok(room)
}

/// Names from words that may hold comma lists and a trailing `:`. Empty
/// pieces are dropped, repeats (any case) count once, `all`/`*` alone
/// means everyone, a `#room` alone means that room.
fn targets(words: &[&str], usage: &'static str) -> Result<To, ParseError> {
    let mut names: Vec<String> = Vec::new();
    let mut everyone = false;
    let mut room: Option<String> = None;
    for piece in words
        .iter()
        .flat_map(|w| w.split(','))
        .map(|p| p.trim().trim_end_matches(':'))
        .filter(|p| !p.is_empty())
    {
        if piece == "*" || piece.eq_ignore_ascii_case("all") {
            everyone = true;
            continue;
        }
        if piece.starts_with('#') {
            protocol::validate_room(piece).map_err(|why| ParseError::BadRoom {
                room: piece.to_string(),
                why,
            })?;
            match &room {
                Some(r) if !r.eq_ignore_ascii_case(piece) => return Err(ParseError::MixedRoom),
                _ => room = Some(piece.to_string()),
            }
            continue;
        }
        protocol::validate_name(piece).map_err(|why| ParseError::BadName {
            name: piece.to_string(),
            why,
        })?;
        if !names.iter().any(|n| n.eq_ignore_ascii_case(piece)) {
            names.push(piece.to_string());
        }
    }
    if let Some(room) = room {
        return match everyone || !names.is_empty() {
            true => Err(ParseError::MixedRoom),
            false => Ok(To::Room(room)),
        };
    }
    match (everyone, names.is_empty()) {
        (true, true) => Ok(To::Everyone),
        (true, false) => Err(ParseError::MixedAll),
        (false, true) => Err(ParseError::Usage(usage)),
        (false, false) => Ok(To::Names(names)),
    }
}

/// Strips one pair of double quotes around the whole text.
fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

/// The first whitespace-separated word and the rest, leading spaces trimmed.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => {
            let (word, rest) = s.split_at(i);
            (word, rest.trim_start())
        }
        None => (s, ""),
    }
}

/// `(start, end)` byte spans of the whitespace-separated words of `s`.
fn word_spans(s: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(st)) => {
                spans.push((st, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        spans.push((st, s.len()));
    }
    spans
}

/// The rest of `whole` from where its sub-slice `part` begins.
fn tail_from<'a>(whole: &'a str, part: &'a str) -> &'a str {
    let offset = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    whole.get(offset..).unwrap_or(part)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The known command closest to a mistyped one: a unique prefix match, or
/// within two edits.
fn suggest(typed: &str) -> Option<&'static str> {
    let typed = typed.to_ascii_lowercase();
    if typed.is_empty() {
        return None;
    }
    let mut prefixed = SLASH_COMMANDS
        .iter()
        .filter(|c| c.get(1..).is_some_and(|c| c.starts_with(&typed)));
    if let (Some(only), None) = (prefixed.next(), prefixed.next()) {
        return Some(only);
    }
    SLASH_COMMANDS
        .iter()
        .map(|c| (distance(&typed, c.get(1..).unwrap_or_default()), *c))
        .filter(|&(d, _)| d <= 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        if let Some(first) = row.first_mut() {
            *first = i;
        }
    }
    if let Some(row) = rows.first_mut() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = j;
        }
    }
    let at = |rows: &Vec<Vec<usize>>, i: usize, j: usize| {
        rows.get(i)
            .and_then(|r| r.get(j))
            .copied()
            .unwrap_or(usize::MAX / 2)
    };
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let (ca, cb) = (a.get(i - 1), b.get(j - 1));
            let cost = usize::from(ca != cb);
            let mut d = (at(&rows, i - 1, j) + 1)
                .min(at(&rows, i, j - 1) + 1)
                .min(at(&rows, i - 1, j - 1) + cost);
            if i > 1 && j > 1 && ca == b.get(j - 2) && a.get(i - 2) == cb {
                d = d.min(at(&rows, i - 2, j - 2) + 1);
            }
            if let Some(cell) = rows.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = d;
            }
        }
    }
    at(&rows, a.len(), b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(names: &[&str]) -> To {
        To::Names(names.iter().map(|n| n.to_string()).collect())
    }

    fn send(names: &[&str], text: &str) -> Result<Command, ParseError> {
        Ok(Command::Send {
            to: to(names),
            text: text.to_string(),
        })
    }

    fn all(text: &str) -> Result<Command, ParseError> {
        Ok(Command::Send {
            to: To::Everyone,
            text: text.to_string(),
        })
    }

    /// Plain text, for wherever the user is talking.
    fn chat(text: &str) -> Result<Command, ParseError> {
        Ok(Command::Say {
            text: text.to_string(),
        })
    }

    fn room(room: &str, text: &str) -> Result<Command, ParseError> {
        Ok(Command::Send {
            to: To::Room(room.to_string()),
            text: text.to_string(),
        })
    }

    #[test]
    fn to_one_person_every_form() {
        for line in [
            "/msg bob hi",
            "/pm bob hi",
            "/dm bob hi",
            "@bob hi",
            "@bob: hi",
            "send bob: hi",
            "MSG bob hi",
            "msg bob hi",
            "/MSG bob hi",
            "/Dm bob hi",
            "@bob:hi",
            "send bob:hi",
            "SEND bob :hi",
            "send bob hi",
            "/msg bob: hi",
        ] {
            assert_eq!(parse(line), send(&["bob"], "hi"), "{line}");
        }
    }

    #[test]
    fn to_several_every_form() {
        for line in [
            "/msg bob,carol hi",
            "/msg bob, carol hi",
            "/pm bob,carol: hi",
            "@bob,carol hi",
            "@bob @carol hi",
            "@bob @carol: hi",
            "send bob carol : hi",
            "send bob,carol: hi",
            "SEND bob,carol :hi",
        ] {
            assert_eq!(parse(line), send(&["bob", "carol"], "hi"), "{line}");
        }
        assert_eq!(
            parse("send bob carol dan : hi"),
            send(&["bob", "carol", "dan"], "hi")
        );
    }

    #[test]
    fn to_everyone_every_form() {
        for line in [
            "/all hi",
            "/bm hi",
            "send all hi",
            "send ALL hi",
            "send all: hi",
            "send * hi",
            "SEND * :hi",
            "/msg all hi",
            "@all hi",
        ] {
            assert_eq!(parse(line), all("hi"), "{line}");
        }
    }

    #[test]
    fn plain_text_goes_to_the_current_target() {
        assert_eq!(parse("hi"), chat("hi"));
        assert_eq!(parse("  hi  "), chat("hi"));
        assert_eq!(parse("hello there world"), chat("hello there world"));
        assert_eq!(parse("#rust is great"), chat("#rust is great"));
    }

    #[test]
    fn to_a_room_every_form() {
        for line in [
            "/msg #rust hi",
            "/pm #rust: hi",
            "/msg #rust:hi",
            "send #rust: hi",
            "SEND #rust :hi",
            "send #rust hi",
            "MSG #rust hi",
            "/msg #rust,#rust hi",
        ] {
            assert_eq!(parse(line), room("#rust", "hi"), "{line}");
        }
        assert_eq!(parse("/msg #Rust a b"), room("#Rust", "a b"));
        for line in [
            "/msg #rust,bob hi",
            "/msg bob,#rust hi",
            "/msg #rust,all hi",
            "/msg #a,#b hi",
            "send #a bob : hi",
        ] {
            assert_eq!(parse(line), Err(ParseError::MixedRoom), "{line}");
        }
        assert!(matches!(
            parse("/msg #a!b hi"),
            Err(ParseError::BadRoom { room, .. }) if room == "#a!b"
        ));
        assert!(matches!(
            parse("/msg #all hi"),
            Err(ParseError::BadRoom { .. })
        ));
        assert_eq!(parse("/msg #rust"), Err(ParseError::Usage(USAGE_MSG)));
    }

    #[test]
    fn room_commands() {
        let join = |r: &str| {
            Ok(Command::Join {
                room: r.to_string(),
            })
        };
        assert_eq!(parse("/join #rust"), join("#rust"));
        assert_eq!(parse("/JOIN #Rust"), join("#Rust"));
        assert_eq!(parse("/join rust"), join("#rust"));
        assert_eq!(parse("/j #rust"), join("#rust"));
        assert_eq!(parse("/join"), Err(ParseError::Usage(USAGE_JOIN)));
        for bad in ["/join #", "/join #all", "/join #a!", "/join all"] {
            assert!(
                matches!(parse(bad), Err(ParseError::BadRoom { .. })),
                "{bad}"
            );
        }
        let part = |r: Option<&str>, why: Option<&str>| {
            Ok(Command::Part {
                room: r.map(String::from),
                reason: why.map(String::from),
            })
        };
        assert_eq!(parse("/part"), part(None, None));
        assert_eq!(parse("/leave"), part(None, None));
        assert_eq!(parse("/part #rust"), part(Some("#rust"), None));
        assert_eq!(parse("/part rust"), part(Some("#rust"), None));
        assert_eq!(
            parse("/part #rust see  you"),
            part(Some("#rust"), Some("see  you"))
        );
        let switch = |r: Option<&str>| {
            Ok(Command::Switch {
                room: r.map(String::from),
            })
        };
        assert_eq!(parse("/switch #rust"), switch(Some("#rust")));
        assert_eq!(parse("/switch rust"), switch(Some("#rust")));
        for line in [
            "/switch *",
            "/switch all",
            "/switch everyone",
            "/all",
            "/ALL  ",
        ] {
            assert_eq!(parse(line), switch(None), "{line}");
        }
        assert_eq!(parse("/switch"), Err(ParseError::Usage(USAGE_SWITCH)));
        assert_eq!(parse("/rooms"), Ok(Command::Rooms));
        let names = |r: Option<&str>| {
            Ok(Command::Names {
                room: r.map(String::from),
            })
        };
        assert_eq!(parse("/names"), names(None));
        assert_eq!(parse("/names #rust"), names(Some("#rust")));
        assert_eq!(parse("/list #rust"), names(Some("#rust")));
        assert_eq!(parse("/who #rust"), names(Some("#rust")));
        assert!(matches!(
            parse("/names #a!"),
            Err(ParseError::BadRoom { .. })
        ));
        // A room command mistyped is a hint, never chat.
        assert!(matches!(
            parse("/jion #rust"),
            Err(ParseError::Unknown {
                suggestion: Some("/join"),
                ..
            })
        ));
        assert!(matches!(
            parse("/swtich #rust"),
            Err(ParseError::Unknown {
                suggestion: Some("/switch"),
                ..
            })
        ));
    }

    #[test]
    fn who_is_online_every_form() {
        for line in [
            "/list",
            "/users",
            "/who",
            "get_list",
            "GET_NAMES",
            "GET_LIST",
            "get_names",
            "/LIST",
            "/who bob",
        ] {
            assert_eq!(parse(line), Ok(Command::List), "{line}");
        }
    }

    #[test]
    fn help_and_quit() {
        assert_eq!(parse("/help"), Ok(Command::Help));
        assert_eq!(parse("/HELP"), Ok(Command::Help));
        for line in ["/quit", "quit", "EXIT", "exit", "QUIT", "/exit", " quit "] {
            assert_eq!(parse(line), Ok(Command::Quit), "{line}");
        }
        // A sentence that starts with the word is chat.
        assert_eq!(parse("quit smoking"), chat("quit smoking"));
        assert_eq!(parse("exit 3 is closed"), chat("exit 3 is closed"));
    }

    #[test]
    fn blank_lines_do_nothing() {
        for line in ["", "   ", "\t", "\r"] {
            assert_eq!(parse(line), Ok(Command::Nothing), "{line:?}");
        }
    }

    #[test]
    fn quotes_around_the_whole_text_are_stripped() {
        assert_eq!(
            parse("/dm bob \"hello there\""),
            send(&["bob"], "hello there")
        );
        assert_eq!(parse("\"hello there\""), chat("hello there"));
        assert_eq!(parse("send bob: \"a b\""), send(&["bob"], "a b"));
        assert_eq!(parse("@bob \"x\""), send(&["bob"], "x"));
        // Only one pair, only around the whole text.
        assert_eq!(parse("/dm bob \"\"hi\"\""), send(&["bob"], "\"hi\""));
        assert_eq!(parse("/dm bob say \"hi\""), send(&["bob"], "say \"hi\""));
        assert_eq!(parse("/dm bob \"hi"), send(&["bob"], "\"hi"));
        assert_eq!(parse("\""), chat("\""));
        assert_eq!(parse("/dm bob \"\""), Err(ParseError::Usage(USAGE_MSG)));
    }

    #[test]
    fn inner_spacing_is_kept_and_outer_trimmed() {
        assert_eq!(
            parse("/msg   bob    hi   there  "),
            send(&["bob"], "hi   there")
        );
        assert_eq!(parse("send  bob   :   hi  you"), send(&["bob"], "hi  you"));
        assert_eq!(parse("@bob:   hi  you"), send(&["bob"], "hi  you"));
        assert_eq!(parse("/msg\tbob\thi"), send(&["bob"], "hi"));
        assert_eq!(parse("send bob : a : b"), send(&["bob"], "a : b"));
        assert_eq!(parse("send bob see: this"), send(&["bob"], "see: this"));
    }

    #[test]
    fn missing_text_gives_usage() {
        for (line, usage) in [
            ("/msg bob", USAGE_MSG),
            ("/msg bob   ", USAGE_MSG),
            ("/msg", USAGE_MSG),
            ("/pm bob:", USAGE_MSG),
            ("/dm bob,carol", USAGE_MSG),
            ("@bob", USAGE_AT),
            ("@bob:", USAGE_AT),
            ("@bob @carol", USAGE_AT),
            ("send bob:", USAGE_SEND),
            ("send bob carol :", USAGE_SEND),
            ("send", USAGE_SEND),
            ("send all", USAGE_SEND),
            ("MSG bob", USAGE_UPPER_MSG),
            ("MSG", USAGE_UPPER_MSG),
            ("/bm", USAGE_ALL),
            ("/bm   ", USAGE_ALL),
        ] {
            assert_eq!(parse(line), Err(ParseError::Usage(usage)), "{line}");
        }
    }

    #[test]
    fn missing_or_empty_names_give_usage() {
        for (line, usage) in [
            ("/msg , hi", USAGE_MSG),
            ("/msg ,,, hi", USAGE_MSG),
            // A trailing comma continues the list into the next word.
            ("/msg bob,carol, hi", USAGE_MSG),
            ("send : hi", USAGE_SEND),
            ("send :hi", USAGE_SEND),
            ("send ,: hi", USAGE_SEND),
        ] {
            assert_eq!(parse(line), Err(ParseError::Usage(usage)), "{line}");
        }
        // `@` not followed by a name is just chat.
        assert_eq!(parse("@: hi"), chat("@: hi"));
        assert_eq!(parse("@ hi"), chat("@ hi"));
    }

    #[test]
    fn empty_and_repeated_names_are_folded() {
        assert_eq!(parse("/msg bob,,carol hi"), send(&["bob", "carol"], "hi"));
        assert_eq!(parse("/msg ,bob hi"), send(&["bob"], "hi"));
        assert_eq!(parse("/msg bob,Bob,BOB hi"), send(&["bob"], "hi"));
        assert_eq!(parse("@bob @BOB hi"), send(&["bob"], "hi"));
        assert_eq!(
            parse("send bob carol bob : hi"),
            send(&["bob", "carol"], "hi")
        );
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(
            parse("/msg b!ob hi"),
            Err(ParseError::BadName { name, .. }) if name == "b!ob"
        ));
        assert!(matches!(
            parse("@bob! hi"),
            Err(ParseError::BadName { name, .. }) if name == "bob!"
        ));
        assert!(matches!(
            parse("/msg server hi"),
            Err(ParseError::BadName { .. })
        ));
        assert!(matches!(
            parse(&format!("/msg {} hi", "x".repeat(33))),
            Err(ParseError::BadName { .. })
        ));
        assert_eq!(parse("/msg bob,all hi"), Err(ParseError::MixedAll));
        assert_eq!(parse("send all bob : hi"), Err(ParseError::MixedAll));
    }

    #[test]
    fn unknown_commands_get_a_hint_and_are_never_chat() {
        for (line, hint) in [
            ("/mgs bob hi", Some("/msg")),
            ("/lsit", Some("/list")),
            ("/hepl", Some("/help")),
            ("/quti", Some("/quit")),
            ("/li", Some("/list")),
            ("/us", Some("/users")),
            ("/xyzzy", None),
            ("/", None),
            ("/ hi", None),
        ] {
            match parse(line) {
                Err(ParseError::Unknown { suggestion, .. }) => {
                    assert_eq!(suggestion, hint, "{line}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        let shown = parse("/mgs bob hi").unwrap_err().to_string();
        assert!(shown.contains("/mgs") && shown.contains("/msg"), "{shown}");
    }

    #[test]
    fn double_slash_sends_a_literal_slash() {
        assert_eq!(parse("//shrug"), chat("/shrug"));
        assert_eq!(parse("// hi"), chat("/ hi"));
    }

    #[test]
    fn mixed_case_words_are_chat_not_commands() {
        assert_eq!(parse("Send me the file"), chat("Send me the file"));
        assert_eq!(parse("Msg received"), chat("Msg received"));
        assert_eq!(parse("sender: me"), chat("sender: me"));
    }

    #[test]
    fn text_may_hold_anything() {
        assert_eq!(parse("/msg bob a:b,c @d"), send(&["bob"], "a:b,c @d"));
        assert_eq!(parse("@bob héllo ✓"), send(&["bob"], "héllo ✓"));
        assert_eq!(parse("send bob: x\u{1b}[2J"), send(&["bob"], "x\u{1b}[2J"));
    }

    /// Every form in docs/client.md's table of commands.
    fn documented_forms() -> Vec<String> {
        let doc = include_str!("../../docs/client.md");
        let table = doc
            .split("## Commands")
            .nth(1)
            .expect("docs/client.md has a Commands section");
        let mut forms = Vec::new();
        for row in table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
        {
            let accepted = row.split('|').nth(2).expect("a second column");
            forms.extend(accepted.split('`').skip(1).step_by(2).map(String::from));
        }
        forms
    }

    #[test]
    fn help_lists_every_documented_form_and_each_parses() {
        let forms = documented_forms();
        assert!(forms.len() > 40, "{forms:?}");
        for form in &forms {
            assert!(HELP.contains(form.as_str()), "/help lacks {form}");
            assert!(parse(form).is_ok(), "{form}: {:?}", parse(form));
        }
        for more in ["Ctrl-D", "Ctrl-C twice", "//"] {
            assert!(HELP.contains(more), "{more}");
        }
    }

    #[test]
    fn name_takes_one_valid_name() {
        let name = |n: &str| {
            Ok(Command::Name {
                name: n.to_string(),
            })
        };
        assert_eq!(parse("/name alice2"), name("alice2"));
        assert_eq!(parse("/NICK alice2"), name("alice2"));
        assert_eq!(parse("/name"), Err(ParseError::Usage(USAGE_NAME)));
        assert_eq!(parse("/name two words"), Err(ParseError::Usage(USAGE_NAME)));
        assert!(matches!(
            parse("/name b!b"),
            Err(ParseError::BadName { .. })
        ));
    }

    #[test]
    fn register_takes_one_password_or_none() {
        assert_eq!(parse("/register"), Ok(Command::Register { password: None }));
        assert_eq!(
            parse("/REGISTER s3cret-pw"),
            Ok(Command::Register {
                password: Some(Secret::new("s3cret-pw").unwrap())
            })
        );
        let e = parse("/register two words").unwrap_err();
        assert!(matches!(e, ParseError::BadPassword(_)));
        assert!(e.to_string().contains("no spaces"), "{e}");
        assert_eq!(suggest("regsiter"), Some("/register"));
        // Never shown: not even in a debug print of the command.
        assert!(!format!("{:?}", parse("/register s3cret-pw")).contains("s3cret"));
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("msg", "msg"), 0);
        assert_eq!(distance("mgs", "msg"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
