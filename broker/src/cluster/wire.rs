//! The cluster wire: what nodes tell each other through Redis, as bytes.
//!
//! Pure: bytes in, a [`Batch`] or a [`WireError`] out; no sockets, clocks
//! or globals. One Redis pub/sub message is one batch: a version byte, the
//! publishing node, then items back to back until the end of the message
//! (Redis delivers whole messages, so there is no "need more bytes" state:
//! a message that ends inside an item is [`WireError::Truncated`]).
//!
//! ```text
//! batch  = VERSION(u8 = 2) node:str run:var seq:var item*
//!          (run: the publishing process, seq: its count of batches;
//!           0 0 for a batch outside that count)
//! item   = tag:u8 fields
//!   1 Msg     id:var ts:var flags:u8 kind:u8 [room:str] from:str
//!             from_node:str body:bytes n:var to:str{n}
//!             (flags bit 0: notice; kind 0 direct, 1 multi, 2 all, 3 room)
//!   2 Joined  name:str node:str room:opt<str>
//!   3 Left    name:str reason:u8 node:str text:opt<bytes>
//!             (reason: its index in `LeftReason::ALL`)
//!   4 Parted  name:str room:str text:opt<bytes>
//!   5 Rcpt    id:var by:str to:str
//!   6 Account folded:str exists:u8 (1 registered, 0 deleted)
//! var    = unsigned LEB128, at most 10 bytes
//! str    = len:var UTF-8 bytes (at most MAX_STR)
//! bytes  = len:var bytes (at most MAX_BYTES)
//! opt<T> = 0 | 1 T
//! ```
//!
//! Every length is checked against its limit and against the bytes left
//! before anything is allocated, and nothing is sized from a count off the
//! wire, so no message can make a node allocate much more than its own
//! size. A node that receives a newer version drops that batch (counted)
//! rather than guessing.
//!
//! `run` and `seq` let a receiver drop a batch it already has: a node
//! publishes again what it published just before Redis went away (Redis
//! may have taken it and died before passing it on), with the same
//! numbers, and a receiver that had it keeps only the first.
//!
//! A new item gets a new tag, not a new version: a node that does not know
//! the tag drops the batch it is in (counted), and the items of other
//! batches still reach it. That is why `Account` is published in a batch of
//! its own (see `cluster::accounts`).

use protocol::LeftReason;
use std::fmt;

/// The version this node writes and reads.
pub(crate) const VERSION: u8 = 2;
/// Longest name, node or room name on the wire, in bytes (names and rooms
/// are far shorter by the protocol's rules; node names are checked when the
/// link starts).
pub(crate) const MAX_STR: usize = 255;
/// Longest body or quit/part text on the wire, in bytes: far above any
/// frame limit, so only a corrupt message ever reaches it.
pub(crate) const MAX_BYTES: usize = 16 << 20;

/// How a message was addressed (the owned form of `protocol::Kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MsgKind {
    /// One distinct named target.
    Direct,
    /// Several named targets.
    Multi,
    /// Everyone else.
    All,
    /// A room, by its shown name (`#room`).
    Room(String),
}

impl MsgKind {
    /// The borrowed form the core routes with.
    pub fn as_kind(&self) -> protocol::Kind<'_> {
        match self {
            MsgKind::Direct => protocol::Kind::Direct,
            MsgKind::Multi => protocol::Kind::Multi,
            MsgKind::All => protocol::Kind::All,
            MsgKind::Room(r) => protocol::Kind::Room(r),
        }
    }

    /// The owned form of a core `Kind`.
    pub fn from_kind(kind: protocol::Kind<'_>) -> MsgKind {
        match kind {
            protocol::Kind::Direct => MsgKind::Direct,
            protocol::Kind::Multi => MsgKind::Multi,
            protocol::Kind::All => MsgKind::All,
            protocol::Kind::Room(r) => MsgKind::Room(r.to_string()),
        }
    }
}

/// A message for users on the receiving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    /// Cluster-unique id.
    pub id: u64,
    /// The sender's name as shown.
    pub from: String,
    /// The sender's node (where `RCPT`s go).
    pub from_node: String,
    /// How it was addressed.
    pub kind: MsgKind,
    /// Receive time on the sender's node, Unix ms.
    pub ts: u64,
    /// The bytes.
    pub body: Vec<u8>,
    /// Sent as an IRC `NOTICE`.
    pub notice: bool,
    /// The recipients on the receiving node, folded: for `direct` and
    /// `multi`; empty for `all` and rooms (the receiving node knows its
    /// own members).
    pub to: Vec<String>,
}

/// One thing a node tells others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A message.
    Msg(Msg),
    /// Someone registered (`room: None`) or entered a room.
    Joined {
        /// Who, as shown.
        name: String,
        /// Their node.
        node: String,
        /// The room's shown name, for a room.
        room: Option<String>,
    },
    /// Someone left the chat.
    Left {
        /// Who, as shown.
        name: String,
        /// Why.
        reason: LeftReason,
        /// Their node.
        node: String,
        /// What they said when they quit, if anything (IRC shows it).
        text: Option<Vec<u8>>,
    },
    /// Someone left a room.
    Parted {
        /// Who, as shown.
        name: String,
        /// The room's shown name.
        room: String,
        /// What they said, if anything.
        text: Option<Vec<u8>>,
    },
    /// `RCPT <id> <by>` for a sender on the receiving node.
    Rcpt {
        /// The message's id.
        id: u64,
        /// Who showed it.
        by: String,
        /// The sender's name.
        to: String,
    },
    /// An account was registered (`exists`) or deleted, on any node or by
    /// `broker account delete`: every node keeps the set of owned names.
    Account {
        /// The account's name, folded.
        folded: String,
        /// True once registered, false once deleted.
        exists: bool,
    },
}

/// One Redis message: the items one node published together, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The node that published it.
    pub node: String,
    /// Which run of that node's process (0: not numbered).
    pub run: u64,
    /// The batch's number in that run, counting from 1 (0: not numbered).
    pub seq: u64,
    /// Its items, in the order they were queued.
    pub items: Vec<Item>,
}

/// Why bytes are not a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// Not a version this node reads (the first byte).
    Version(u8),
    /// The message ends inside a field.
    Truncated,
    /// A length over its limit.
    TooLong,
    /// A number that does not fit in 64 bits.
    Overflow,
    /// An item tag this version does not know.
    BadTag(u8),
    /// A field with a value it can't have (kind, reason, flags, option).
    BadValue,
    /// A string that is not UTF-8.
    BadUtf8,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Version(v) => write!(f, "unknown version {v}"),
            WireError::Truncated => f.write_str("truncated"),
            WireError::TooLong => f.write_str("a field is over its limit"),
            WireError::Overflow => f.write_str("a number is over 64 bits"),
            WireError::BadTag(t) => write!(f, "unknown item tag {t}"),
            WireError::BadValue => f.write_str("a field has an impossible value"),
            WireError::BadUtf8 => f.write_str("a string is not UTF-8"),
        }
    }
}

const TAG_MSG: u8 = 1;
const TAG_JOINED: u8 = 2;
const TAG_LEFT: u8 = 3;
const TAG_PARTED: u8 = 4;
const TAG_RCPT: u8 = 5;
const TAG_ACCOUNT: u8 = 6;

const KIND_DIRECT: u8 = 0;
const KIND_MULTI: u8 = 1;
const KIND_ALL: u8 = 2;
const KIND_ROOM: u8 = 3;

const FLAG_NOTICE: u8 = 1;

/// Starts a batch from `node` in `out` (which is cleared); append items
/// with [`encode_item`].
pub(crate) fn begin_batch(node: &str, out: &mut Vec<u8>) {
    begin_numbered(node, 0, 0, out);
}

/// Starts batch `seq` of run `run` of `node` in `out` (which is cleared).
pub(crate) fn begin_numbered(node: &str, run: u64, seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.push(VERSION);
    put_str(out, node);
    put_var(out, run);
    put_var(out, seq);
}

/// A batch's header alone: its node, run and number, and the bytes of its
/// items (not read yet, so a batch already had is dropped without
/// decoding them; [`decode_items`] reads them).
pub(crate) fn decode_header(bytes: &[u8]) -> Result<(String, u64, u64, &[u8]), WireError> {
    let mut r = Reader { rest: bytes };
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let node = r.str()?;
    let run = r.var()?;
    let seq = r.var()?;
    Ok((node, run, seq, r.rest))
}

/// The items of a batch, after its header ([`decode_header`]).
pub(crate) fn decode_items(bytes: &[u8]) -> Result<Vec<Item>, WireError> {
    let mut r = Reader { rest: bytes };
    let mut items = Vec::new();
    while !r.rest.is_empty() {
        items.push(r.item()?);
    }
    Ok(items)
}

/// A whole batch from `node` in `out` (which is cleared).
#[cfg(test)]
pub(crate) fn encode_batch(node: &str, items: &[Item], out: &mut Vec<u8>) {
    begin_batch(node, out);
    for item in items {
        encode_item(item, out);
    }
}

/// Appends one item to a batch begun with [`begin_batch`].
pub(crate) fn encode_item(item: &Item, out: &mut Vec<u8>) {
    match item {
        Item::Msg(m) => {
            out.push(TAG_MSG);
            put_var(out, m.id);
            put_var(out, m.ts);
            out.push(if m.notice { FLAG_NOTICE } else { 0 });
            match &m.kind {
                MsgKind::Direct => out.push(KIND_DIRECT),
                MsgKind::Multi => out.push(KIND_MULTI),
                MsgKind::All => out.push(KIND_ALL),
                MsgKind::Room(room) => {
                    out.push(KIND_ROOM);
                    put_str(out, room);
                }
            }
            put_str(out, &m.from);
            put_str(out, &m.from_node);
            put_bytes(out, &m.body);
            put_var(out, m.to.len() as u64);
            for t in &m.to {
                put_str(out, t);
            }
        }
        Item::Joined { name, node, room } => {
            out.push(TAG_JOINED);
            put_str(out, name);
            put_str(out, node);
            put_opt(out, room.as_deref().map(str::as_bytes));
        }
        Item::Left {
            name,
            reason,
            node,
            text,
        } => {
            out.push(TAG_LEFT);
            put_str(out, name);
            out.push(reason_index(*reason));
            put_str(out, node);
            put_opt(out, text.as_deref());
        }
        Item::Parted { name, room, text } => {
            out.push(TAG_PARTED);
            put_str(out, name);
            put_str(out, room);
            put_opt(out, text.as_deref());
        }
        Item::Rcpt { id, by, to } => {
            out.push(TAG_RCPT);
            put_var(out, *id);
            put_str(out, by);
            put_str(out, to);
        }
        Item::Account { folded, exists } => {
            out.push(TAG_ACCOUNT);
            put_str(out, folded);
            out.push(u8::from(*exists));
        }
    }
}

/// Decodes one Redis message. Never panics, whatever the bytes.
pub(crate) fn decode_batch(bytes: &[u8]) -> Result<Batch, WireError> {
    let (node, run, seq, rest) = decode_header(bytes)?;
    let items = decode_items(rest)?;
    Ok(Batch {
        node,
        run,
        seq,
        items,
    })
}

fn reason_index(reason: LeftReason) -> u8 {
    LeftReason::ALL
        .iter()
        .position(|r| *r == reason)
        .map_or(0, |i| i as u8)
}

fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_var(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// The bytes not yet decoded.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.rest.split_first().ok_or(WireError::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    fn var(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte holds bit 63 only.
            if shift == 63 && bits > 1 {
                return Err(WireError::Overflow);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Overflow)
    }

    /// A length: within `max` and within what is left.
    fn len(&mut self, max: usize) -> Result<usize, WireError> {
        let n = usize::try_from(self.var()?).map_err(|_| WireError::TooLong)?;
        if n > max {
            return Err(WireError::TooLong);
        }
        if n > self.rest.len() {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (b, rest) = self.rest.split_at_checked(n).ok_or(WireError::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.len(MAX_BYTES)?;
        Ok(self.take(n)?.to_vec())
    }

    fn str(&mut self) -> Result<String, WireError> {
        let n = self.len(MAX_STR)?;
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::BadUtf8)
    }

    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(WireError::BadValue),
        }
    }

    fn item(&mut self) -> Result<Item, WireError> {
        match self.u8()? {
            TAG_MSG => self.msg().map(Item::Msg),
            TAG_JOINED => Ok(Item::Joined {
                name: self.str()?,
                node: self.str()?,
                room: self.opt(Self::str)?,
            }),
            TAG_LEFT => {
                let name = self.str()?;
                let reason = *LeftReason::ALL
                    .get(usize::from(self.u8()?))
                    .ok_or(WireError::BadValue)?;
                Ok(Item::Left {
                    name,
                    reason,
                    node: self.str()?,
                    text: self.opt(Self::bytes)?,
                })
            }
            TAG_PARTED => Ok(Item::Parted {
                name: self.str()?,
                room: self.str()?,
                text: self.opt(Self::bytes)?,
            }),
            TAG_RCPT => Ok(Item::Rcpt {
                id: self.var()?,
                by: self.str()?,
                to: self.str()?,
            }),
            TAG_ACCOUNT => Ok(Item::Account {
                folded: self.str()?,
                exists: match self.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::BadValue),
                },
            }),
            tag => Err(WireError::BadTag(tag)),
        }
    }

    fn msg(&mut self) -> Result<Msg, WireError> {
        let id = self.var()?;
        let ts = self.var()?;
        let notice = match self.u8()? {
            0 => false,
            FLAG_NOTICE => true,
            _ => return Err(WireError::BadValue),
        };
        let kind = match self.u8()? {
            KIND_DIRECT => MsgKind::Direct,
            KIND_MULTI => MsgKind::Multi,
            KIND_ALL => MsgKind::All,
            KIND_ROOM => MsgKind::Room(self.str()?),
            _ => return Err(WireError::BadValue),
        };
        let from = self.str()?;
        let from_node = self.str()?;
        let body = self.bytes()?;
        let n = self.var()?;
        // Each name takes at least its length byte: a count past the bytes
        // left is a lie, and the list grows as names are read, never from
        // the count.
        if n > self.rest.len() as u64 {
            return Err(WireError::Truncated);
        }
        let mut to = Vec::new();
        for _ in 0..n {
            to.push(self.str()?);
        }
        Ok(Msg {
            id,
            from,
            from_node,
            kind,
            ts,
            body,
            notice,
            to,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    fn msg(id: u64, kind: MsgKind, to: &[&str]) -> Item {
        Item::Msg(Msg {
            id,
            from: "Alice".into(),
            from_node: "n1".into(),
            kind,
            ts: 1_700_000_000_000,
            body: b"hi\nthere".to_vec(),
            notice: false,
            to: to.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn every_kind() -> Vec<Item> {
        vec![
            msg(1, MsgKind::Direct, &["bob"]),
            msg(u64::MAX, MsgKind::Multi, &["bob", "carol"]),
            msg(3, MsgKind::All, &[]),
            msg(4, MsgKind::Room("#Rust".into()), &[]),
            Item::Joined {
                name: "Dave".into(),
                node: "n2".into(),
                room: None,
            },
            Item::Joined {
                name: "Dave".into(),
                node: "n2".into(),
                room: Some("#r".into()),
            },
            Item::Left {
                name: "Eve".into(),
                reason: LeftReason::Timeout,
                node: "n3".into(),
                text: None,
            },
            Item::Left {
                name: "Eve".into(),
                reason: LeftReason::Quit,
                node: "n3".into(),
                text: Some(b"lunch".to_vec()),
            },
            Item::Parted {
                name: "Eve".into(),
                room: "#r".into(),
                text: Some(Vec::new()),
            },
            Item::Rcpt {
                id: 300,
                by: "bob".into(),
                to: "Alice".into(),
            },
            Item::Account {
                folded: "dana".into(),
                exists: true,
            },
            Item::Account {
                folded: "dana".into(),
                exists: false,
            },
        ]
    }

    #[test]
    fn every_item_round_trips_in_one_batch() {
        let items = every_kind();
        let mut buf = Vec::new();
        encode_batch("n1", &items, &mut buf);
        let b = decode_batch(&buf).unwrap();
        assert_eq!(b.node, "n1");
        assert_eq!(b.items, items);
    }

    #[test]
    fn a_numbered_batch_carries_its_run_and_number() {
        let mut buf = Vec::new();
        begin_numbered("n1", 1 << 40, 300, &mut buf);
        encode_item(&every_kind()[0], &mut buf);
        let b = decode_batch(&buf).unwrap();
        assert_eq!((b.run, b.seq, b.items.len()), (1 << 40, 300, 1));
    }

    #[test]
    fn the_header_alone_reads_as_the_whole_batch_does() {
        let mut buf = Vec::new();
        begin_numbered("n7", 9, 42, &mut buf);
        encode_item(&every_kind()[0], &mut buf);
        let (node, run, seq, rest) = decode_header(&buf).unwrap();
        assert_eq!((node.as_str(), run, seq), ("n7", 9, 42));
        assert_eq!(decode_items(rest).unwrap(), vec![every_kind()[0].clone()]);
        assert_eq!(decode_header(&buf[..3]), Err(WireError::Truncated));
        assert_eq!(decode_header(&[1, 0]), Err(WireError::Version(1)));
    }

    #[test]
    fn an_empty_batch_is_a_batch() {
        let mut buf = Vec::new();
        encode_batch("n1", &[], &mut buf);
        assert_eq!(buf, b"\x02\x02n1\x00\x00");
        assert_eq!(decode_batch(&buf).unwrap().items, Vec::<Item>::new());
    }

    #[test]
    fn the_layout_is_as_documented() {
        let mut buf = Vec::new();
        encode_batch(
            "n",
            &[Item::Rcpt {
                id: 300,
                by: "b".into(),
                to: "a".into(),
            }],
            &mut buf,
        );
        // 300 = 0b10_0101100: LEB128 0xAC 0x02.
        assert_eq!(buf, b"\x02\x01n\x00\x00\x05\xac\x02\x01b\x01a");
    }

    #[test]
    fn an_account_item_is_laid_out_as_documented_and_round_trips() {
        let item = Item::Account {
            folded: "dana".into(),
            exists: true,
        };
        let mut buf = Vec::new();
        encode_batch("(admin)", std::slice::from_ref(&item), &mut buf);
        assert_eq!(buf, b"\x02\x07(admin)\x00\x00\x06\x04dana\x01");
        let b = decode_batch(&buf).unwrap();
        assert_eq!((b.node.as_str(), b.items), ("(admin)", vec![item]));
    }

    #[test]
    fn a_cut_anywhere_is_an_error_never_a_shorter_batch() {
        let mut buf = Vec::new();
        encode_batch("n1", &every_kind(), &mut buf);
        let mut item_starts = vec![];
        // Where each item ends is a valid cut (fewer items); any other cut
        // inside an item is an error.
        let mut probe = Vec::new();
        begin_batch("n1", &mut probe);
        item_starts.push(probe.len());
        for item in every_kind() {
            encode_item(&item, &mut probe);
            item_starts.push(probe.len());
        }
        for cut in 0..buf.len() {
            let r = decode_batch(&buf[..cut]);
            if item_starts.contains(&cut) {
                assert!(r.is_ok(), "cut at an item boundary {cut}");
            } else {
                assert!(r.is_err(), "cut at {cut} decoded: {r:?}");
            }
        }
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        // A body claiming 2^40 bytes in a tiny message.
        let mut buf = vec![
            VERSION, 1, b'n', 0, 0, TAG_MSG, 1, 1, 0, KIND_ALL, 1, b'a', 1, b'n',
        ];
        put_var(&mut buf, 1 << 40);
        assert_eq!(decode_batch(&buf), Err(WireError::TooLong));
        // A name over MAX_STR.
        let mut buf = vec![VERSION];
        put_var(&mut buf, MAX_STR as u64 + 1);
        buf.extend(std::iter::repeat_n(b'x', MAX_STR + 1));
        assert_eq!(decode_batch(&buf), Err(WireError::TooLong));
        // A recipient count far past the bytes left.
        let mut buf = Vec::new();
        encode_batch("n", &[msg(1, MsgKind::Multi, &[])], &mut buf);
        buf.pop();
        put_var(&mut buf, u64::MAX);
        assert_eq!(decode_batch(&buf), Err(WireError::Truncated));
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(decode_batch(&[]), Err(WireError::Truncated));
        assert_eq!(decode_batch(&[1, 0]), Err(WireError::Version(1)));
        assert_eq!(decode_batch(&[3, 0]), Err(WireError::Version(3)));
        assert_eq!(decode_batch(&[2, 0, 0, 0, 9]), Err(WireError::BadTag(9)));
        assert_eq!(decode_batch(&[2, 0, 0, 0, 7]), Err(WireError::BadTag(7)));
        assert_eq!(decode_batch(&[2, 1, 0xff]), Err(WireError::BadUtf8));
        // A Left with reason 6 (there are six: 0..=5).
        assert_eq!(
            decode_batch(&[2, 0, 0, 0, TAG_LEFT, 1, b'a', 6, 0, 0]),
            Err(WireError::BadValue)
        );
        // An option that is neither 0 nor 1.
        assert_eq!(
            decode_batch(&[2, 0, 0, 0, TAG_JOINED, 1, b'a', 0, 2]),
            Err(WireError::BadValue)
        );
        // An account that is neither registered nor deleted.
        assert_eq!(
            decode_batch(&[2, 0, 0, 0, TAG_ACCOUNT, 1, b'a', 2]),
            Err(WireError::BadValue)
        );
        // Eleven continuation bytes.
        let mut buf = vec![2, 0, 0, 0, TAG_RCPT];
        buf.extend([0xff; 11]);
        assert_eq!(decode_batch(&buf), Err(WireError::Overflow));
        // Bit 64.
        let mut buf = vec![2, 0, 0, 0, TAG_RCPT];
        buf.extend([0xff; 9]);
        buf.push(0x02);
        assert_eq!(decode_batch(&buf), Err(WireError::Overflow));
    }

    #[test]
    fn kinds_convert_both_ways() {
        for k in [
            protocol::Kind::Direct,
            protocol::Kind::Multi,
            protocol::Kind::All,
            protocol::Kind::Room("#a"),
        ] {
            assert_eq!(MsgKind::from_kind(k).as_kind(), k);
        }
    }

    fn name() -> impl Strategy<Value = String> {
        // Any UTF-8 up to the limit in bytes (a char is at most 4 bytes).
        proptest::string::string_regex(".{0,63}").unwrap()
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }

    fn kind() -> impl Strategy<Value = MsgKind> {
        prop_oneof![
            Just(MsgKind::Direct),
            Just(MsgKind::Multi),
            Just(MsgKind::All),
            name().prop_map(MsgKind::Room),
        ]
    }

    fn reason() -> impl Strategy<Value = LeftReason> {
        proptest::sample::select(LeftReason::ALL.to_vec())
    }

    fn item() -> impl Strategy<Value = Item> {
        let m = (
            any::<u64>(),
            name(),
            name(),
            kind(),
            any::<u64>(),
            bytes(),
            any::<bool>(),
            proptest::collection::vec(name(), 0..4),
        )
            .prop_map(|(id, from, from_node, kind, ts, body, notice, to)| {
                Item::Msg(Msg {
                    id,
                    from,
                    from_node,
                    kind,
                    ts,
                    body,
                    notice,
                    to,
                })
            });
        prop_oneof![
            m,
            (name(), name(), proptest::option::of(name()))
                .prop_map(|(name, node, room)| Item::Joined { name, node, room }),
            (name(), reason(), name(), proptest::option::of(bytes())).prop_map(
                |(name, reason, node, text)| Item::Left {
                    name,
                    reason,
                    node,
                    text
                }
            ),
            (name(), name(), proptest::option::of(bytes()))
                .prop_map(|(name, room, text)| Item::Parted { name, room, text }),
            (any::<u64>(), name(), name()).prop_map(|(id, by, to)| Item::Rcpt { id, by, to }),
            (name(), any::<bool>()).prop_map(|(folded, exists)| Item::Account { folded, exists }),
        ]
    }

    proptest! {
        #[test]
        fn batches_round_trip(node in name(), items in proptest::collection::vec(item(), 0..8)) {
            let mut buf = Vec::new();
            encode_batch(&node, &items, &mut buf);
            let b = decode_batch(&buf).unwrap();
            prop_assert_eq!(b.node, node);
            prop_assert_eq!(b.items, items);
        }

        #[test]
        fn any_bytes_decode_without_panicking(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_batch(&buf);
            // The same with a valid header, so the item decoder is reached.
            let mut with_header = vec![VERSION, 0, 0, 0];
            with_header.extend_from_slice(&buf);
            let _ = decode_batch(&with_header);
        }

        #[test]
        fn damaged_batches_decode_without_panicking(
            items in proptest::collection::vec(item(), 1..4),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut buf = Vec::new();
            encode_batch("n1", &items, &mut buf);
            for (at, b) in flips {
                let i = at.index(buf.len());
                buf[i] = b;
            }
            let _ = decode_batch(&buf);
        }
    }
}
