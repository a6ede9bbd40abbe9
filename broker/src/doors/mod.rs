//! The doors: one adapter per protocol, each turning its decoded requests
//! into core operations and the core's answers into its own bytes. A door
//! imports the core and its codec (in the `protocol` crate), and no other
//! door, with one exception: the web door's JSON requests *are* native
//! requests, so `web` applies them with `native::handle` (its replies are
//! turned into JSON by `core::route`, by the connection's door).

pub(crate) mod irc;
pub(crate) mod native;
pub(crate) mod web;

use crate::core::Flow;

/// What decoding and applying one frame at the front of a buffer did.
pub(crate) enum One {
    /// Not a whole frame yet.
    Need,
    /// `consumed` bytes were one frame (or a run of blank lines).
    Done {
        /// Bytes to drop from the front of the buffer.
        consumed: usize,
        /// Whether the connection goes on.
        flow: Flow,
    },
    /// Framing can't be trusted, or the door's exchange is over: the
    /// connection is closing.
    Fatal,
}
