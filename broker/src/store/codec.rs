//! How a [`Stored`] message and an [`Account`] are laid out as bytes in the
//! database: a leading version byte, fixed-width little-endian integers,
//! length-prefixed strings. Decoding checks every length and returns an
//! error on a bad record; it never panics and never allocates more than
//! the record holds.
//!
//! ```text
//! message v1: 01 | id u64 | ts_ms u64 | kind u8 (0 direct, 1 multi, 2 room)
//!             | from_len u16 | from | [room_len u16 | room]  (kind 2 only)
//!             | body (the rest of the record)
//! account v1: 01 | created_ms u64 | name_len u16 | name | hash (the rest, UTF-8)
//! ```
//! A new layout gets a new version byte and a decoder arm next to this one,
//! so records written by an older broker stay readable.
//!
//! In a cluster the same message records are the items of the Redis
//! mailboxes (`cluster::accounts`), so nodes of different versions read
//! each other's records the same way.

use super::{Account, Stored, StoredKind};

/// The version byte of the current message layout.
const MESSAGE_V1: u8 = 1;
/// The version byte of the current account layout.
const ACCOUNT_V1: u8 = 1;

const KIND_DIRECT: u8 = 0;
const KIND_MULTI: u8 = 1;
const KIND_ROOM: u8 = 2;

/// Appends `s` with a `u16` length prefix; names and rooms are short, so a
/// longer string is cut at 65535 bytes (on a char boundary) rather than
/// making the record unreadable.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = s.get(..end).unwrap_or_default();
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes of one message.
pub(crate) fn encode_message(m: &Stored) -> Vec<u8> {
    let room = match &m.kind {
        StoredKind::Room(r) => r.len() + 2,
        _ => 0,
    };
    let mut out = Vec::with_capacity(1 + 8 + 8 + 1 + 2 + m.from.len() + room + m.body.len());
    out.push(MESSAGE_V1);
    out.extend_from_slice(&m.id.to_le_bytes());
    out.extend_from_slice(&m.ts_ms.to_le_bytes());
    match &m.kind {
        StoredKind::Direct => out.push(KIND_DIRECT),
        StoredKind::Multi => out.push(KIND_MULTI),
        StoredKind::Room(_) => out.push(KIND_ROOM),
    }
    put_str(&mut out, &m.from);
    if let StoredKind::Room(r) = &m.kind {
        put_str(&mut out, r);
    }
    out.extend_from_slice(&m.body);
    out
}

/// Reads a message back.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<Stored, String> {
    let mut r = Reader(bytes);
    match r.u8()? {
        MESSAGE_V1 => {}
        v => return Err(format!("unknown message record version {v}")),
    }
    let id = r.u64()?;
    let ts_ms = r.u64()?;
    let kind = r.u8()?;
    let from = r.str()?;
    let kind = match kind {
        KIND_DIRECT => StoredKind::Direct,
        KIND_MULTI => StoredKind::Multi,
        KIND_ROOM => StoredKind::Room(r.str()?),
        k => return Err(format!("unknown message kind {k}")),
    };
    Ok(Stored {
        id,
        from,
        kind,
        ts_ms,
        body: r.0.to_vec(),
    })
}

/// The time of a message record without decoding the rest (for expiry);
/// `None` if the record is not one this version can read.
pub(super) fn message_ts(bytes: &[u8]) -> Option<u64> {
    let mut r = Reader(bytes);
    if r.u8().ok()? != MESSAGE_V1 {
        return None;
    }
    r.u64().ok()?;
    r.u64().ok()
}

/// The bytes of one account.
pub(super) fn encode_account(a: &Account) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 2 + a.name.len() + a.hash.len());
    out.push(ACCOUNT_V1);
    out.extend_from_slice(&a.created_ms.to_le_bytes());
    put_str(&mut out, &a.name);
    out.extend_from_slice(a.hash.as_bytes());
    out
}

/// Reads an account back.
pub(super) fn decode_account(bytes: &[u8]) -> Result<Account, String> {
    let mut r = Reader(bytes);
    match r.u8()? {
        ACCOUNT_V1 => {}
        v => return Err(format!("unknown account record version {v}")),
    }
    let created_ms = r.u64()?;
    let name = r.str()?;
    let hash = String::from_utf8(r.0.to_vec()).map_err(|_| "the password hash is not UTF-8")?;
    Ok(Account {
        name,
        hash,
        created_ms,
    })
}

/// A cursor over a record that refuses to read past its end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(|| {
            format!(
                "the record ends early (wanted {n} more bytes, {} left)",
                self.0.len()
            )
        })?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        let b = self.take(1)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| "bad u64")?;
        Ok(u64::from_le_bytes(b))
    }

    fn str(&mut self) -> Result<String, String> {
        let b: [u8; 2] = self.take(2)?.try_into().map_err(|_| "bad length")?;
        let len = usize::from(u16::from_le_bytes(b));
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| "a name in the record is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: StoredKind) -> Stored {
        Stored {
            id: 42,
            from: "alice".into(),
            kind,
            ts_ms: 1_763_812_345_678,
            body: b"hi\nthere\0".to_vec(),
        }
    }

    #[test]
    fn messages_round_trip() {
        for kind in [
            StoredKind::Direct,
            StoredKind::Multi,
            StoredKind::Room("#Rust".into()),
        ] {
            let m = sample(kind);
            let bytes = encode_message(&m);
            assert_eq!(bytes[0], MESSAGE_V1);
            assert_eq!(decode_message(&bytes).unwrap(), m);
            assert_eq!(message_ts(&bytes), Some(m.ts_ms));
        }
    }

    #[test]
    fn accounts_round_trip() {
        let a = Account {
            name: "Alice".into(),
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_ms: 7,
        };
        assert_eq!(decode_account(&encode_account(&a)).unwrap(), a);
    }

    #[test]
    fn every_truncation_and_bad_byte_is_an_error_not_a_panic() {
        let full = encode_message(&sample(StoredKind::Room("#r".into())));
        // Cut inside the header: always an error (the body may be empty, so
        // cuts at or past the header are valid shorter bodies).
        let header = 1 + 8 + 8 + 1 + 2 + 5 + 2 + 2;
        for cut in 0..header {
            assert!(decode_message(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = full.clone();
        bad[0] = 9;
        assert!(decode_message(&bad).unwrap_err().contains("version 9"));
        assert_eq!(message_ts(&bad), None);
        let mut bad = full.clone();
        bad[17] = 7;
        assert!(decode_message(&bad).unwrap_err().contains("kind 7"));
        let mut bad = full;
        bad[18] = 0xff; // from_len says 0x..ff bytes
        assert!(decode_message(&bad).is_err());
        assert!(decode_account(&[]).is_err());
        assert!(decode_account(&[1, 0, 0]).is_err());
        assert!(decode_account(&[2]).is_err());
        // A name that is not UTF-8.
        let mut a = vec![1];
        a.extend_from_slice(&0u64.to_le_bytes());
        a.extend_from_slice(&[1, 0, 0xff]);
        assert!(decode_account(&a).is_err());
    }

    #[test]
    fn overlong_strings_are_cut_on_a_char_boundary() {
        let mut out = Vec::new();
        let s = "é".repeat(40_000); // 80_000 bytes
        put_str(&mut out, &s);
        let mut r = Reader(&out);
        let back = r.str().unwrap();
        assert!(back.len() <= usize::from(u16::MAX));
        assert!(back.chars().all(|c| c == 'é'));
    }
}
