//! The IRC door's codec: RFC 1459/2812 client protocol lines, with the
//! IRCv3 message-tags framing in front (docs/irc.md).
//!
//! Like the native codec it is pure: [`decode`] takes bytes that start at a
//! line boundary and answers with an [`IrcDecoded`] (a message and the bytes
//! it used, a line to skip, or "need more"); the `push_*` encoders append
//! whole lines to a `Vec<u8>`. Nothing here touches a socket, a clock or a
//! global, so the broker's IRC door and the load generator share one wire.
//!
//! Framing, as decoded:
//! - A line ends at LF; one CR right before the LF is dropped. Any other CR,
//!   and any NUL, makes the line [`IrcDecoded::Invalid`] (RFC 2812 also lets
//!   a lone CR end a line; real clients send CR LF, and treating a bare CR
//!   as an end would make a line's meaning depend on where a read stops).
//! - `[@<tags> ]` + `[:<prefix> ]` + `<command>` + params. The tag section
//!   (from `@` through its space) may take up to [`MAX_TAGS`] bytes; the rest
//!   of the line up to [`MAX_LINE`] bytes counting a CR LF, i.e. 510 bytes
//!   before the terminator whether or not the client sent the CR. Over
//!   either limit the line is [`IrcDecoded::TooLong`] (reply 417, go on). No
//!   LF within [`MAX_BUFFERED`] bytes is [`IrcDecoded::Fatal`]: a reader never
//!   holds more than that for one line.
//! - Runs of spaces separate fields, and leading or trailing spaces are
//!   ignored, as servers do. A param starting with `:` is the trailing one
//!   and takes the rest of the line (spaces and all, possibly empty). After
//!   14 middle params the rest of the line is the 15th, with or without its
//!   `:` (RFC 2812's grammar), so there are never more than 15.
//! - The command is ASCII letters or exactly three digits; tags and prefix
//!   must be UTF-8. Params are bytes: whether they must be UTF-8 is the
//!   broker's call ([`IrcMessage::param_str`]).
//!
//! Encoding never writes a line over [`MAX_LINE`] bytes (not counting the
//! tags) and never a CR, LF or NUL inside a line; see [`push_message`],
//! [`push_numeric`] and [`push_command`] for what happens to bytes that would.

use crate::num::push_u64;
use std::fmt;

/// The longest line in bytes per RFC 1459/2812, counting its CR LF and not
/// counting an IRCv3 tag section: 510 bytes of message and the terminator.
pub const MAX_LINE: usize = 512;

/// The longest IRCv3 tag section a client may send, in bytes, counting its
/// `@` and the space after it: the message-tags spec limits a client's tag
/// data to 4094 bytes (the 8191 of a server's lines leave room for the
/// tags a server adds). A longer section is refused with 417, as the spec
/// asks, rather than accepted and cut when relayed.
pub const MAX_TAGS: usize = 4094 + 2;

/// The most bytes one line can occupy on the wire (tags, message, CR LF):
/// [`decode`] answers [`IrcDecoded::Incomplete`] only for fewer bytes than
/// this, so it is also the most a reader ever buffers for one line.
pub const MAX_BUFFERED: usize = MAX_TAGS + MAX_LINE;

/// The most params one message has (RFC 2812).
const MAX_PARAMS: usize = 15;

/// Bytes of a line between its tag section and its CR LF.
const MAX_BODY: usize = MAX_LINE - 2;

/// Caps on the fixed parts of a [`push_message`] line, in bytes. They are far
/// beyond any name the broker allows (32) and leave at least 87 bytes of
/// every line for the text: 510 - (1+64+1+64+1+128+1+32+1+128+2).
const NICK_CAP: usize = 64;
const HOST_CAP: usize = 128;
const COMMAND_CAP: usize = 32;
const TARGET_CAP: usize = 128;

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// One decoded IRC line, borrowing from the input buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IrcMessage<'a> {
    /// The raw tag section without its `@` (not parsed further; the broker
    /// may ignore it). `Some("")` for a bare `@`.
    pub tags: Option<&'a str>,
    /// The prefix without its `:`; never empty when present.
    pub prefix: Option<&'a str>,
    /// The command as sent: ASCII letters or three digits. Compare it with
    /// `eq_ignore_ascii_case`, clients may send it in lower case.
    pub command: &'a str,
    /// Params in order; slots past `len` are always empty, so the derived
    /// equality only sees the used ones.
    params: [&'a [u8]; MAX_PARAMS],
    len: usize,
    /// The last param was written with a leading `:`.
    trailing: bool,
}

impl<'a> IrcMessage<'a> {
    /// All params in order, the trailing one included, as bytes.
    pub fn params(&self) -> &[&'a [u8]] {
        self.params.get(..self.len).unwrap_or_default()
    }

    /// Param `i` (0-based), or `None` when there are not that many.
    pub fn param(&self, i: usize) -> Option<&'a [u8]> {
        self.params().get(i).copied()
    }

    /// Param `i` as text; `None` when missing or not UTF-8.
    pub fn param_str(&self, i: usize) -> Option<&'a str> {
        self.param(i).and_then(|p| std::str::from_utf8(p).ok())
    }

    /// True when the last param was written with a leading `:` (a trailing
    /// param, which may be empty or hold spaces). `PRIVMSG bob :` has two
    /// params, the second empty, and this is true; `PRIVMSG bob` has one.
    pub fn has_trailing(&self) -> bool {
        self.trailing
    }

    fn push_param(&mut self, p: &'a [u8]) {
        if let Some(slot) = self.params.get_mut(self.len) {
            *slot = p;
            self.len += 1;
        }
    }
}

impl fmt::Debug for IrcMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<_> = self
            .params()
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect();
        f.debug_struct("IrcMessage")
            .field("tags", &self.tags)
            .field("prefix", &self.prefix)
            .field("command", &self.command)
            .field("params", &params)
            .field("has_trailing", &self.trailing)
            .finish()
    }
}

/// The answer of one [`decode`] step. Every variant with `consumed` tells
/// how many bytes to drop from the front of the buffer (always > 0, up to
/// and including the line's LF).
// The message (15 param slices, ~300 bytes) dwarfs the other variants on
// purpose: it is returned by value once per line, and boxing it would cost
// an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrcDecoded<'a> {
    /// No LF yet and fewer than [`MAX_BUFFERED`] bytes: read more and call
    /// again with the same buffer start.
    Incomplete,
    /// A well-formed line.
    Message {
        /// The message, borrowing from the buffer.
        msg: IrcMessage<'a>,
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
    },
    /// A blank line (LF or CR LF alone): skip it silently.
    Empty {
        /// Bytes to drop (1 or 2).
        consumed: usize,
    },
    /// A whole line over [`MAX_TAGS`] or [`MAX_LINE`]: reply 417 and go on.
    TooLong {
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
    },
    /// A whole line that is not a message: no command, a command that is not
    /// letters or three digits, an empty or non-UTF-8 prefix, non-UTF-8 tags,
    /// a NUL or a CR other than the one before LF. Ignore it or reply 421;
    /// the broker decides.
    Invalid {
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
    },
    /// No LF within [`MAX_BUFFERED`] bytes: the line can't be found any more.
    /// Reply 417 or `ERROR` and close.
    Fatal,
}

/// Decodes the line at the front of `buf` (see the module docs for the
/// rules). Looks at no more than [`MAX_BUFFERED`] bytes, and the answer
/// depends only on the bytes up to the first LF: a buffer cut anywhere after
/// it gives the same answer, a buffer cut before it `Incomplete`.
pub fn decode(buf: &[u8]) -> IrcDecoded<'_> {
    let window = buf.get(..MAX_BUFFERED).unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_BUFFERED {
            IrcDecoded::Fatal
        } else {
            IrcDecoded::Incomplete
        };
    };
    let consumed = lf + 1;
    let raw = buf.get(..lf).unwrap_or_default();
    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
    if line.is_empty() {
        return IrcDecoded::Empty { consumed };
    }
    if over_limit(line) {
        return IrcDecoded::TooLong { consumed };
    }
    match parse(line) {
        Some(msg) => IrcDecoded::Message { msg, consumed },
        None => IrcDecoded::Invalid { consumed },
    }
}

/// True when the tag section or the rest of the line is over its limit.
fn over_limit(line: &[u8]) -> bool {
    if line.first() != Some(&b'@') {
        return line.len() > MAX_BODY;
    }
    match line.iter().position(|&b| b == b' ') {
        // The section counts its '@' and its space.
        Some(sp) => sp + 1 > MAX_TAGS || line.len() - (sp + 1) > MAX_BODY,
        // Tags only (Invalid anyway): over if even the tags don't fit.
        None => line.len() + 1 > MAX_TAGS,
    }
}

/// Parses one line without its terminator; `None` if it is not a message.
fn parse(line: &[u8]) -> Option<IrcMessage<'_>> {
    if line.iter().any(|&b| b == 0 || b == b'\r') {
        return None;
    }
    let mut rest = line;
    let mut tags = None;
    if let Some(after) = rest.strip_prefix(b"@") {
        let (t, r) = split_word(after);
        tags = Some(std::str::from_utf8(t).ok()?);
        rest = r;
    }
    rest = skip_spaces(rest);
    let mut prefix = None;
    if let Some(after) = rest.strip_prefix(b":") {
        let (p, r) = split_word(after);
        if p.is_empty() {
            return None;
        }
        prefix = Some(std::str::from_utf8(p).ok()?);
        rest = skip_spaces(r);
    }
    let (command, r) = split_word(rest);
    if !is_command(command) {
        return None;
    }
    let mut msg = IrcMessage {
        tags,
        prefix,
        command: std::str::from_utf8(command).ok()?,
        params: [&[]; MAX_PARAMS],
        len: 0,
        trailing: false,
    };
    rest = r;
    loop {
        rest = skip_spaces(rest);
        if rest.is_empty() {
            break;
        }
        let last = msg.len + 1 == MAX_PARAMS;
        if let Some(text) = rest.strip_prefix(b":") {
            msg.push_param(text);
            msg.trailing = true;
            break;
        }
        if last {
            // RFC 2812: after 14 middles the rest is the last param, ':' or not.
            msg.push_param(rest);
            break;
        }
        let (word, r) = split_word(rest);
        msg.push_param(word);
        rest = r;
    }
    Some(msg)
}

/// Splits at the first space: the word before it, and the rest from it on.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(sp) => (
            s.get(..sp).unwrap_or_default(),
            s.get(sp..).unwrap_or_default(),
        ),
        None => (s, &[]),
    }
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    s.get(n..).unwrap_or_default()
}

/// ASCII letters, or exactly three digits.
fn is_command(c: &[u8]) -> bool {
    (!c.is_empty() && c.iter().all(u8::is_ascii_alphabetic))
        || (c.len() == 3 && c.iter().all(u8::is_ascii_digit))
}

// ---------------------------------------------------------------------------
// Helpers for the broker
// ---------------------------------------------------------------------------

/// True for a channel name: it starts with `#` (`CHANTYPES=#`). Whether the
/// rest is a valid room name is `validate_room`'s business.
pub fn is_channel(s: &str) -> bool {
    s.starts_with('#')
}

/// Compares two nicks (or channels) the way `CASEMAPPING=ascii` says: only
/// `A`–`Z` fold to `a`–`z`.
pub fn eq_nick(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// True if `name` matches the `WHO`-style `mask`: `*` is any run of
/// characters, `?` any one, everything else itself (compared as
/// `CASEMAPPING=ascii` says). Linear backtracking on the last `*`, so a
/// mask of many stars costs at most `mask.len() * name.len()` steps.
pub fn mask_matches(mask: &str, name: &str) -> bool {
    let (m, n) = (mask.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    // Where the last `*` was, and the name position it has taken up to.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match (m.get(i), n.get(j)) {
            (Some(b'*'), _) => {
                star = Some((i, j));
                i += 1;
            }
            (Some(&p), Some(&c)) if p == b'?' || p.eq_ignore_ascii_case(&c) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    m.get(i..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

/// The items of a comma list such as `bob,carol` or `#a,#b`; empty items
/// (`bob,,carol`, a trailing comma) are skipped, so a list of nothing but
/// commas yields nothing (411 for `PRIVMSG`).
pub fn split_targets(list: &str) -> impl Iterator<Item = &str> + '_ {
    list.split(',').filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Appends the IRCv3 server-time tag section for `unix_ms`, including its
/// `@` and the space after it: `@time=YYYY-MM-DDThh:mm:ss.sssZ `. The date
/// is the proleptic Gregorian calendar in UTC; years past 9999 get more
/// digits.
pub fn push_time_tag(out: &mut Vec<u8>, unix_ms: u64) {
    let days = unix_ms / 86_400_000;
    let in_day = unix_ms % 86_400_000;
    let (y, m, d) = civil_from_days(days);
    out.extend_from_slice(b"@time=");
    push_padded(out, y, 4);
    out.push(b'-');
    push_padded(out, m, 2);
    out.push(b'-');
    push_padded(out, d, 2);
    out.push(b'T');
    push_padded(out, in_day / 3_600_000, 2);
    out.push(b':');
    push_padded(out, in_day / 60_000 % 60, 2);
    out.push(b':');
    push_padded(out, in_day / 1000 % 60, 2);
    out.push(b'.');
    push_padded(out, in_day % 1000, 3);
    out.extend_from_slice(b"Z ");
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's
/// `civil_from_days`, restricted to days >= 0 so it stays in `u64`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Appends `n` in decimal with leading zeros up to `width` digits.
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = 1;
    let mut m = n;
    while m >= 10 {
        m /= 10;
        digits += 1;
    }
    for _ in digits..width {
        out.push(b'0');
    }
    push_u64(out, n);
}

/// Appends one or more `[@time=… ]:<nick>!<nick>@<host> <command> <target>
/// :<line>\r\n` lines carrying `body` (a `PRIVMSG` or `NOTICE` from the
/// core to an IRC client).
///
/// - `body` is split at LF, a CR right before an LF is dropped, and each
///   line becomes one message. Empty lines are skipped; a body with no
///   non-empty line at all (`""`, `"\n"`) still sends one message with an
///   empty trailing (`:`), so the client sees that something was said.
/// - A NUL or any other CR becomes a space (one byte for one, so splitting
///   and reassembly stay predictable). Other bytes, invalid UTF-8 included,
///   are passed through.
/// - A line that doesn't fit in [`MAX_LINE`] bytes is cut into several
///   messages at UTF-8 character boundaries; their texts concatenate back to
///   the line.
/// - `time_ms` adds the server-time tag ([`push_time_tag`]) to every line.
/// - `nick`, `host`, `command` and `target` are written as single words: a
///   space, CR, LF or NUL in them becomes `_`, a leading `:` too, and an
///   empty one is `*`. They are cut (at a character boundary) to 64, 128, 32
///   and 128 bytes, far beyond any name the broker allows, so every line
///   keeps room for at least 87 bytes of text.
pub fn push_message(
    out: &mut Vec<u8>,
    time_ms: Option<u64>,
    nick: &str,
    host: &str,
    command: &str,
    target: &str,
    body: &[u8],
) {
    let head = Head {
        nick: clip_str(nick, NICK_CAP),
        host: clip_str(host, HOST_CAP),
        command: clip_str(command, COMMAND_CAP),
        target: clip_str(target, TARGET_CAP),
    };
    let budget = MAX_BODY.saturating_sub(head.len()).max(1);
    let mut sent = false;
    for line in body.split(|&b| b == b'\n') {
        let mut rest = line.strip_suffix(b"\r").unwrap_or(line);
        while !rest.is_empty() {
            let cut = match clip(rest, budget) {
                0 => budget.min(rest.len()), // no boundary fits: cut anyway
                c => c,
            };
            let (chunk, tail) = rest.split_at_checked(cut).unwrap_or((rest, &[]));
            head.push_line(out, time_ms, chunk);
            rest = tail;
            sent = true;
        }
    }
    if !sent {
        head.push_line(out, time_ms, b"");
    }
}

/// The fixed part of a [`push_message`] line.
struct Head<'s> {
    nick: &'s str,
    host: &'s str,
    command: &'s str,
    target: &'s str,
}

impl Head<'_> {
    /// Bytes of `:<nick>!<nick>@<host> <command> <target> :` as written.
    fn len(&self) -> usize {
        let w = |s: &str| s.len().max(1); // an empty word is written as '*'
        1 + w(self.nick)
            + 1
            + w(self.nick)
            + 1
            + w(self.host)
            + 1
            + w(self.command)
            + 1
            + w(self.target)
            + 2
    }

    fn push_line(&self, out: &mut Vec<u8>, time_ms: Option<u64>, text: &[u8]) {
        if let Some(ms) = time_ms {
            push_time_tag(out, ms);
        }
        out.push(b':');
        push_word(out, self.nick);
        out.push(b'!');
        push_word(out, self.nick);
        out.push(b'@');
        push_word(out, self.host);
        out.push(b' ');
        push_word(out, self.command);
        out.push(b' ');
        push_word(out, self.target);
        out.extend_from_slice(b" :");
        push_text(out, text);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a numeric reply `:<server> <code> <target> <params…>
/// [:<trailing>]\r\n`, the code as three digits (`001`; codes over 999
/// don't exist and are written as `999`).
///
/// `server`, `target` and `params` are single words, written as in
/// [`push_command`]. A CR, LF or NUL in `trailing` becomes a space, and the
/// trailing is cut (at a character boundary) to fit the line in
/// [`MAX_LINE`] bytes: a reply that can be long (`353` NAMES) is the
/// caller's to split over several lines.
pub fn push_numeric(
    out: &mut Vec<u8>,
    server: &str,
    code: u16,
    target: &str,
    params: &[&str],
    trailing: Option<&str>,
) {
    let c = code.min(999);
    let digits = [
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ];
    let code = std::str::from_utf8(&digits).unwrap_or("999");
    let params = std::iter::once(target).chain(params.iter().copied());
    push_line(out, Some(server), code, params, trailing);
}

/// Appends `[@time=… ][:<prefix> ]<command> <params…> [:<trailing>]\r\n`:
/// `JOIN`, `PART`, `QUIT`, `PING`, `PONG`, `ERROR`, `CAP`, `MODE`, `NICK`…
/// With `prefix` `None` there is no prefix (`ERROR :Closing link`,
/// `PING :token`).
///
/// `prefix`, `command` and each of `params` are written as single words: a
/// space, CR, LF or NUL in them becomes `_`, so does a leading `:` (it
/// would start the trailing) and a command's leading `@` (it would start
/// tags), and an empty one is written as `*`. A CR, LF
/// or NUL in `trailing` becomes a space; the trailing is always written
/// with its `:` and cut (at a character boundary) to fit the line in
/// [`MAX_LINE`] bytes. Should the words alone not fit, the line is cut at
/// 510 bytes: never longer, never a CR, LF or NUL inside.
pub fn push_command(
    out: &mut Vec<u8>,
    time_ms: Option<u64>,
    prefix: Option<&str>,
    command: &str,
    params: &[&str],
    trailing: Option<&str>,
) {
    if let Some(ms) = time_ms {
        push_time_tag(out, ms);
    }
    push_line(out, prefix, command, params.iter().copied(), trailing);
}

/// Writes one line after its tags; the shared body of the encoders.
fn push_line<'p>(
    out: &mut Vec<u8>,
    prefix: Option<&str>,
    command: &str,
    params: impl Iterator<Item = &'p str>,
    trailing: Option<&str>,
) {
    let start = out.len();
    if let Some(p) = prefix {
        out.push(b':');
        push_word(out, p);
        out.push(b' ');
    }
    // A line that starts with '@' would be read as tags.
    match command.strip_prefix('@') {
        Some(rest) => {
            out.push(b'_');
            out.extend(rest.bytes().map(word_byte));
        }
        None => push_word(out, command),
    }
    for p in params {
        out.push(b' ');
        push_word(out, p);
    }
    if let Some(t) = trailing {
        out.extend_from_slice(b" :");
        let room = MAX_BODY.saturating_sub(out.len().saturating_sub(start));
        let t = t.as_bytes();
        push_text(out, t.get(..clip(t, room)).unwrap_or_default());
    }
    // Backstop for words that don't fit by themselves.
    let written = out.get(start..).unwrap_or_default();
    if written.len() > MAX_BODY {
        let keep = match clip(written, MAX_BODY) {
            0 => MAX_BODY,
            c => c,
        };
        out.truncate(start + keep);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a word that must stay one middle param.
fn push_word(out: &mut Vec<u8>, word: &str) {
    if word.is_empty() {
        out.push(b'*');
        return;
    }
    match word.strip_prefix(':') {
        Some(rest) => {
            out.push(b'_');
            out.extend(rest.bytes().map(word_byte));
        }
        None => out.extend(word.bytes().map(word_byte)),
    }
}

/// A byte of a word, with those that would end it turned into `_`.
fn word_byte(b: u8) -> u8 {
    match b {
        b' ' | b'\r' | b'\n' | 0 => b'_',
        _ => b,
    }
}

/// Appends trailing text with CR, LF and NUL turned into spaces.
fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(text.iter().map(|&b| match b {
        b'\r' | b'\n' | 0 => b' ',
        _ => b,
    }));
}

/// The longest prefix of `bytes` of at most `max` bytes that doesn't end
/// inside a UTF-8 character. Bytes that are not UTF-8 count as characters
/// of their own (a run of more than three continuation bytes can be cut
/// anywhere). May be 0 when `max` < 4.
fn clip(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let is_cont = |cut: usize| bytes.get(cut).is_some_and(|&b| b & 0xC0 == 0x80);
    let mut cut = max;
    for _ in 0..3 {
        if cut > 0 && is_cont(cut) {
            cut -= 1;
        }
    }
    if is_cont(cut) {
        max
    } else {
        cut
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn clip_str(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1; // 0 is always a boundary
    }
    s.get(..cut).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_respects_utf8() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        assert_eq!(clip(s, 100), 10);
        assert_eq!(clip(s, 1), 1);
        assert_eq!(clip(s, 2), 1);
        assert_eq!(clip(s, 3), 3);
        assert_eq!(clip(s, 5), 3);
        assert_eq!(clip(s, 6), 6);
        assert_eq!(clip(s, 9), 6);
        assert_eq!(clip("😀".as_bytes(), 3), 0);
        // Invalid runs of continuation bytes are cut where they are.
        assert_eq!(clip(&[0x80; 8], 5), 5);
        assert_eq!(clip(&[b'a', 0x80, 0x80, 0x80, 0x80, 0x80], 5), 5);
    }

    #[test]
    fn clip_str_respects_utf8() {
        assert_eq!(clip_str("aé", 2), "a");
        assert_eq!(clip_str("aé", 3), "aé");
        assert_eq!(clip_str("", 3), "");
    }

    #[test]
    fn head_len_matches_what_is_written() {
        for (n, h, c, t) in [
            ("alice", "irc.example", "PRIVMSG", "#rust"),
            ("", "", "", ""),
            ("a b", ":x", "NOTICE", "bob"),
        ] {
            let head = Head {
                nick: n,
                host: h,
                command: c,
                target: t,
            };
            let mut out = Vec::new();
            head.push_line(&mut out, None, b"");
            assert_eq!(out.len(), head.len() + 2, "{out:?}");
        }
        let max = Head {
            nick: &"n".repeat(NICK_CAP),
            host: &"h".repeat(HOST_CAP),
            command: &"C".repeat(COMMAND_CAP),
            target: &"t".repeat(TARGET_CAP),
        };
        assert_eq!(MAX_BODY - max.len(), 87);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(365), (1971, 1, 1));
    }

    #[test]
    fn padded_numbers() {
        let mut v = Vec::new();
        push_padded(&mut v, 7, 3);
        push_padded(&mut v, 12345, 4);
        push_padded(&mut v, 0, 2);
        assert_eq!(v, b"0071234500");
    }
}
