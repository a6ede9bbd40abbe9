//! Passwords: where they come from (`--password`, `CHAT_PASSWORD`, a prompt
//! without echo), what the wire can carry, and a type that keeps them out
//! of every `Debug` line.
//!
//! The broker is the judge of its password rules (8 to 128 bytes, no
//! spaces: docs/protocol.md, *Accounts*) and says why it refuses one. The
//! client refuses locally only what can't go on the wire at all: a space
//! would split `NAME <name> <password>` differently, and a line break would
//! end the frame and start another.

use crate::sys;
use std::io::Write;

/// The environment variable a script can give its password in (safer than
/// `--password`, which any user on the machine can read with `ps`).
pub const ENV: &str = "CHAT_PASSWORD";

/// The longest password we send: far above the broker's 128 bytes, and
/// short enough that `NAME <name> <password>` stays under its line limit.
const MAX_LEN: usize = 512;

/// A password. Shown nowhere: its `Debug` is `Secret(..)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Checks `text` for what the wire can carry (see the module docs).
    pub fn new(text: &str) -> Result<Secret, &'static str> {
        if text.is_empty() {
            return Err("the password is empty");
        }
        if text.len() > MAX_LEN {
            return Err("the password is too long");
        }
        if text.chars().any(|c| c == ' ' || c.is_control()) {
            return Err("a password has no spaces or control characters");
        }
        Ok(Secret(text.to_string()))
    }

    /// The password itself, to put in a frame.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The password from `--password`, else from [`ENV`] (an empty variable is
/// none); an error names where the bad one came from.
pub fn from_args(flag: Option<&str>) -> Result<Option<Secret>, String> {
    let (text, source) = match flag {
        Some(p) => (p.to_string(), "--password"),
        None => match std::env::var(ENV) {
            Ok(p) if !p.is_empty() => (p, ENV),
            _ => return Ok(None),
        },
    };
    Secret::new(&text)
        .map(Some)
        .map_err(|why| format!("{source}: {why}"))
}

/// Asks for a password at the terminal without echo; `None` if the user
/// gave none (an empty line or Ctrl-D), or if this is no terminal. A
/// password the wire can't carry is said and asked again.
pub fn prompt(label: &str) -> Option<Secret> {
    loop {
        print!("{label}");
        let _ = std::io::stdout().flush();
        let line = sys::read_hidden_line()?;
        if line.is_empty() {
            return None;
        }
        match Secret::new(&line) {
            Ok(s) => return Some(s),
            Err(why) => println!("! {why}; try again (Enter alone to give up)"),
        }
    }
}

/// `/register` at a terminal: the new password twice, without echo; the
/// error says why there is none (none given, or the two differ).
pub fn prompt_new(name: &str) -> Result<Secret, &'static str> {
    let first = prompt(&format!("New password for {name}: ")).ok_or("no password given")?;
    let again = prompt("The same password again: ").ok_or("no password given")?;
    match first == again {
        true => Ok(first),
        false => Err("the two passwords differ"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_wire_cannot_carry_is_refused_here() {
        assert!(Secret::new("hunter22").is_ok());
        // Short ones are the broker's to refuse, with its reason.
        assert!(Secret::new("short").is_ok());
        assert!(Secret::new("").is_err());
        assert!(Secret::new("two words").is_err());
        assert!(Secret::new("line\nNAME x").is_err());
        assert!(Secret::new("tab\there").is_err());
        assert!(Secret::new(&"x".repeat(MAX_LEN + 1)).is_err());
        assert!(Secret::new("pässwörd✓").is_ok());
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret::new("hunter22").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(..))");
        assert_eq!(s.expose(), "hunter22");
    }
}
