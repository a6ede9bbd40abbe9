//! The doors: one adapter per protocol, each turning its decoded requests
//! into core operations and the core's answers into its own bytes. A door
//! imports the core and its codec (in the `protocol` crate), never another
//! door.

pub(crate) mod irc;
pub(crate) mod native;
