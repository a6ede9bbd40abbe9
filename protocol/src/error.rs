//! Error codes of the wire contract and the codec's error value.

use std::fmt;

/// Every `ERR <CODE>` of the contract (docs/protocol.md, "Error codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The verb is not one the broker knows.
    UnknownCommand,
    /// Missing or malformed fields.
    BadFrame,
    /// A line or body over its limit (the connection is closed).
    TooLong,
    /// A command that needs a name, sent before `NAME`.
    NotRegistered,
    /// The name is in use (case-insensitively).
    NameTaken,
    /// The name breaks the naming rules or is reserved.
    BadName,
    /// This connection already has a name.
    AlreadyNamed,
    /// None of the named targets is online.
    NoSuchUser,
    /// More target names than `max_targets`.
    TooManyTargets,
    /// The connection is sending frames faster than its rate limit.
    RateLimited,
    /// The broker is at `max_connections` (the connection is closed).
    ServerFull,
    /// The last frame a reader gets when it is dropped for not reading.
    SlowConsumer,
    /// A frame left unfinished, or a silent peer (the connection is closed).
    Timeout,
    /// `SEND`/`LIST`/`PART` on a room this connection is not in.
    NotInRoom,
    /// `JOIN` of a room this connection is already in.
    AlreadyInRoom,
    /// `JOIN` past `max_rooms_per_user`.
    TooManyRooms,
    /// `NAME <name>` without a password for a name that is an account.
    NameOwned,
    /// A wrong password, or one that breaks the password rules.
    BadPassword,
    /// `REGISTER` of a name that is an account already.
    AlreadyRegistered,
    /// The broker can't do this now (a busy message store, an unreachable
    /// cluster); try again later.
    Unavailable,
}

impl ErrorCode {
    /// All codes, in the order the contract lists them.
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::UnknownCommand,
        ErrorCode::BadFrame,
        ErrorCode::TooLong,
        ErrorCode::NotRegistered,
        ErrorCode::NameTaken,
        ErrorCode::BadName,
        ErrorCode::AlreadyNamed,
        ErrorCode::NoSuchUser,
        ErrorCode::TooManyTargets,
        ErrorCode::RateLimited,
        ErrorCode::ServerFull,
        ErrorCode::SlowConsumer,
        ErrorCode::Timeout,
        ErrorCode::NotInRoom,
        ErrorCode::AlreadyInRoom,
        ErrorCode::TooManyRooms,
        ErrorCode::NameOwned,
        ErrorCode::BadPassword,
        ErrorCode::AlreadyRegistered,
        ErrorCode::Unavailable,
    ];

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownCommand => "UNKNOWN_COMMAND",
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::TooLong => "TOO_LONG",
            ErrorCode::NotRegistered => "NOT_REGISTERED",
            ErrorCode::NameTaken => "NAME_TAKEN",
            ErrorCode::BadName => "BAD_NAME",
            ErrorCode::AlreadyNamed => "ALREADY_NAMED",
            ErrorCode::NoSuchUser => "NO_SUCH_USER",
            ErrorCode::TooManyTargets => "TOO_MANY_TARGETS",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::ServerFull => "SERVER_FULL",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::NotInRoom => "NOT_IN_ROOM",
            ErrorCode::AlreadyInRoom => "ALREADY_IN_ROOM",
            ErrorCode::TooManyRooms => "TOO_MANY_ROOMS",
            ErrorCode::NameOwned => "NAME_OWNED",
            ErrorCode::BadPassword => "BAD_PASSWORD",
            ErrorCode::AlreadyRegistered => "ALREADY_REGISTERED",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// Parses a code as written on the wire.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Position in [`ErrorCode::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error the decoder found: the code to send and a reason for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoError {
    /// The contract's error code.
    pub code: ErrorCode,
    /// Human-readable detail, sent as the `:<text>` of `ERR`.
    pub reason: &'static str,
}

impl ProtoError {
    /// An error with its code and the text for people.
    pub const fn new(code: ErrorCode, reason: &'static str) -> Self {
        ProtoError { code, reason }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for ProtoError {}
