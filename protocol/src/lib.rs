//! The pure wire codec of the chat protocol, version 1 (see `docs/protocol.md`).
//!
//! Bytes in, frames out: nothing here touches a socket, a clock or a global.
//! The broker decodes [`Request`]s and encodes [`Event`]s; the client and the
//! load generator do the opposite. Both directions live here so every program
//! speaks exactly the same wire, and so the round trip can be tested.
//!
//! Every decoder takes a byte buffer that starts at a frame boundary and
//! answers with a [`Decoded`]:
//! - [`Decoded::Incomplete`]: not enough bytes yet; read more and call again
//!   with the same buffer start.
//! - [`Decoded::Frame`]: one frame and how many bytes it used (including any
//!   blank lines before it).
//! - [`Decoded::Invalid`]: the bytes form a frame that is wrong; reply with
//!   the error, skip `consumed` bytes and go on (docs/protocol.md, "Errors").
//! - [`Decoded::Fatal`]: framing can no longer be trusted (a line or body over
//!   its limit, a counted body without its LF); reply and close.
//!
//! Limits are checked before anything is buffered: a decoder never asks for
//! more than `max_line + 2` header bytes or `max_body + 2` body bytes.

mod error;
mod event;
mod framing;
pub mod irc;
mod name;
mod num;
mod request;
pub mod web;

pub use error::{ErrorCode, ProtoError};
pub use event::{encode_msg, Event, Kind, LeftReason};
pub use framing::leading_blank_lines;
pub use name::{fold_name, validate_name, validate_room, MAX_NAME_LEN};
pub use num::push_u64;
pub use request::{Request, Targets};

/// The protocol version this crate speaks (the `1` in `HELLO <server> 1`).
pub const VERSION: u32 = 1;

/// Size limits the decoder enforces (docs/protocol.md, "Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest header line in bytes, not counting its CR LF.
    pub max_line: usize,
    /// Longest body in bytes.
    pub max_body: usize,
    /// Most names in one `SEND` target list.
    pub max_targets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 1024,
            max_body: 65536,
            max_targets: 100,
        }
    }
}

impl Limits {
    /// The most bytes one frame can occupy on the wire (header, CR LF, body,
    /// CR LF): a reader never needs to buffer more than this for one frame.
    pub fn max_frame(&self) -> usize {
        self.max_line
            .saturating_add(2)
            .saturating_add(self.max_body)
            .saturating_add(2)
    }
}

/// The result of one decode step; see the crate documentation.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// More bytes are needed before anything can be said.
    Incomplete,
    /// A whole frame, and the number of bytes it used.
    Frame {
        /// The decoded frame, borrowing from the input buffer.
        frame: T,
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
    },
    /// A complete but invalid frame: answer with `error`, skip `consumed`
    /// bytes and carry on.
    Invalid {
        /// What to tell the peer.
        error: ProtoError,
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
    },
    /// The stream can't be trusted any more: answer with the error and close.
    Fatal(ProtoError),
}
