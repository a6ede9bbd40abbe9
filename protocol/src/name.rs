//! User names: the rules of docs/protocol.md, "Names".

/// Longest name in characters (all allowed characters are one byte).
pub const MAX_NAME_LEN: usize = 32;

const RESERVED: [&str; 3] = ["all", "server", "*"];

/// Checks a name against the contract: 1 to 32 characters from
/// `A-Z a-z 0-9 _ - .`, not starting with `-` or `.`, and not reserved
/// (`all`, `server`, `*`, in any case). The error says why, for people.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err("a name needs 1 to 32 characters");
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err("a name has at most 32 characters");
    }
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err("a name uses only letters A-Z a-z, digits, '_', '-' and '.'");
    }
    if first == b'-' || first == b'.' {
        return Err("a name must not start with '-' or '.'");
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err("that name is reserved");
    }
    Ok(())
}

/// Checks a room name: `#` and then 1 to 32 characters from
/// `A-Z a-z 0-9 _ - .`; `#all` (any case) is reserved for everyone.
pub fn validate_room(room: &str) -> Result<(), &'static str> {
    let Some(rest) = room.strip_prefix('#') else {
        return Err("a room name starts with '#'");
    };
    if rest.is_empty() || rest.len() > MAX_NAME_LEN {
        return Err("a room name has 1 to 32 characters after '#'");
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err("a room name uses only letters A-Z a-z, digits, '_', '-' and '.'");
    }
    if rest.eq_ignore_ascii_case("all") {
        return Err("#all is everyone: send to * instead");
    }
    Ok(())
}

/// The case-folded form used for uniqueness and sorting (ASCII folding).
pub fn fold_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in [
            "a",
            "Bob",
            "x_1",
            "a-b.c",
            "_lead",
            "9lives",
            &"z".repeat(32),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            &"z".repeat(33),
            "-x",
            ".x",
            "a b",
            "a,b",
            "a:b",
            "*",
            "all",
            "ALL",
            "Server",
            "bob\u{1b}",
            "bob\0",
            "b\u{f8}b",
            "\u{430}lice", // Cyrillic a: a look-alike outside the allowed set
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn room_names() {
        for ok in ["#a", "#Room_1", "#a-b.c", &format!("#{}", "r".repeat(32))] {
            assert_eq!(validate_room(ok), Ok(()), "{ok}");
        }
        for bad in [
            "#",
            "room",
            "##a",
            "#a b",
            "#a,b",
            "#all",
            "#ALL",
            &format!("#{}", "r".repeat(33)),
            "#caf\u{e9}",
        ] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn folds_ascii_only() {
        assert_eq!(fold_name("BoB_1"), "bob_1");
    }
}
