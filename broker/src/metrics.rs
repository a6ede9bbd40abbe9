//! Counters for the stats line, tests and the load generator.

/// A snapshot of the broker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections, named or not.
    pub connections: u64,
    /// Registered users.
    pub users: u64,
    /// Messages accepted (`SEND`s that got an `ACK`).
    pub messages: u64,
    /// Message copies queued to recipients.
    pub deliveries: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Connections closed as slow consumers.
    pub slow_consumers: u64,
}
