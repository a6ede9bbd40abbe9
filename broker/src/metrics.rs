//! Counters: one per close reason and per error code, plus traffic totals.
//! Shown in the periodic stats line, and read by tests and the load
//! generator through `Broker::stats`.

use protocol::{ErrorCode, LeftReason};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection closed: exactly one per connection, logged once and
/// counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Sent `QUIT`.
    Quit,
    /// The peer closed or reset the connection.
    Disconnect,
    /// TCP keepalive found the peer dead.
    Timeout,
    /// A slow consumer: its queue passed twice `queue_bytes`, or stayed
    /// over `queue_bytes` without progress for `slow_after_secs`.
    Slow,
    /// A fatal protocol error (`TOO_LONG`, a counted body without LF).
    Error,
    /// Kept flooding after `RATE_LIMITED`.
    Kicked,
    /// Never registered within `name_timeout_secs`.
    NameTimeout,
    /// Left a frame unfinished for `frame_timeout_secs` (told `ERR TIMEOUT`).
    FrameTimeout,
    /// An IRC client that didn't answer the broker's PING (told `ERROR`).
    PingTimeout,
    /// The broker is shutting down.
    Shutdown,
    /// A web request was answered (a page, `/metrics`, an error status):
    /// HTTP connections close after one response.
    Served,
}

impl CloseReason {
    /// Every reason, in counter order.
    pub const ALL: [CloseReason; 11] = [
        CloseReason::Quit,
        CloseReason::Disconnect,
        CloseReason::Timeout,
        CloseReason::Slow,
        CloseReason::Error,
        CloseReason::Kicked,
        CloseReason::NameTimeout,
        CloseReason::FrameTimeout,
        CloseReason::PingTimeout,
        CloseReason::Shutdown,
        CloseReason::Served,
    ];

    /// Short label for logs and the stats line.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::NameTimeout => "name_timeout",
            CloseReason::FrameTimeout => "frame_timeout",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Served => "served",
            other => other.left().map_or("?", LeftReason::as_str),
        }
    }

    /// The `LEFT` reason others are told, if any (none at shutdown).
    pub fn left(self) -> Option<LeftReason> {
        match self {
            CloseReason::Quit => Some(LeftReason::Quit),
            CloseReason::Disconnect => Some(LeftReason::Disconnect),
            CloseReason::Timeout | CloseReason::FrameTimeout | CloseReason::PingTimeout => {
                Some(LeftReason::Timeout)
            }
            CloseReason::Slow => Some(LeftReason::Slow),
            CloseReason::Error => Some(LeftReason::Error),
            CloseReason::Kicked => Some(LeftReason::Kicked),
            CloseReason::NameTimeout | CloseReason::Shutdown | CloseReason::Served => None,
        }
    }

    /// True if the closing frame (and, but for a slow consumer, whatever is
    /// queued) is still delivered before the socket closes. A peer found
    /// dead by keepalive gets nothing more.
    pub fn flushes(self) -> bool {
        !matches!(self, CloseReason::Timeout)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Live counters, updated with relaxed atomics.
#[derive(Default)]
pub(crate) struct Metrics {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub messages: AtomicU64,
    pub deliveries: AtomicU64,
    pub bytes_out: AtomicU64,
    pub writes: AtomicU64,
    closes: [AtomicU64; CloseReason::ALL.len()],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    /// Open connections per door, in `Door::ALL` order.
    by_door: [AtomicU64; 3],
    /// Messages accepted per kind, in `MessageKind::ALL` order.
    by_kind: [AtomicU64; 4],
}

/// How a message was addressed, for `chat_messages_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// To one person.
    Direct,
    /// To several people.
    Multi,
    /// To everyone.
    All,
    /// To a room.
    Room,
}

impl MessageKind {
    /// Every kind, in counter order.
    pub const ALL: [MessageKind; 4] = [
        MessageKind::Direct,
        MessageKind::Multi,
        MessageKind::All,
        MessageKind::Room,
    ];

    /// Its label.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Direct => "direct",
            MessageKind::Multi => "multi",
            MessageKind::All => "all",
            MessageKind::Room => "room",
        }
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn closed(&self, reason: CloseReason) {
        if let Some(c) = self.closes.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(c) = self.errors.get(code.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection by `door` (an index into `Door::ALL`) opened or closed.
    pub fn door(&self, door: usize, opened: bool) {
        if let Some(c) = self.by_door.get(door) {
            if opened {
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// A message was accepted.
    pub fn message(&self, kind: MessageKind) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.by_kind.get(kind as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self, users: usize) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut stats = Stats {
            connections: get(&self.connections),
            accepted: get(&self.accepted),
            users: users as u64,
            messages: get(&self.messages),
            deliveries: get(&self.deliveries),
            bytes_out: get(&self.bytes_out),
            writes: get(&self.writes),
            ..Stats::default()
        };
        for (dst, src) in stats.closes.iter_mut().zip(&self.closes) {
            *dst = get(src);
        }
        for (dst, src) in stats.errors.iter_mut().zip(&self.errors) {
            *dst = get(src);
        }
        for (dst, src) in stats.by_door.iter_mut().zip(&self.by_door) {
            *dst = get(src);
        }
        for (dst, src) in stats.by_kind.iter_mut().zip(&self.by_kind) {
            *dst = get(src);
        }
        stats.slow_consumers = stats.closed(CloseReason::Slow);
        stats
    }
}

/// A snapshot of the broker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections, named or not.
    pub connections: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Registered users.
    pub users: u64,
    /// Messages accepted (`SEND`s that got an `ACK`).
    pub messages: u64,
    /// Message copies queued to recipients.
    pub deliveries: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Socket write calls (`bytes_out / writes` shows how well writes batch).
    pub writes: u64,
    /// Connections closed as slow consumers.
    pub slow_consumers: u64,
    /// Closed connections per reason, in `CloseReason::ALL` order.
    pub closes: [u64; CloseReason::ALL.len()],
    /// Errors sent per code, in `ErrorCode::ALL` order.
    pub errors: [u64; ErrorCode::ALL.len()],
    /// Open connections per door: native, IRC, web.
    pub by_door: [u64; 3],
    /// Messages accepted per kind, in `MessageKind::ALL` order.
    pub by_kind: [u64; 4],
}

impl Stats {
    /// Connections closed for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closes.get(reason.index()).copied().unwrap_or(0)
    }

    /// Errors sent with `code`.
    pub fn errors_sent(&self, code: ErrorCode) -> u64 {
        self.errors.get(code.index()).copied().unwrap_or(0)
    }

    /// Non-zero close and error counters as `name=count` pairs.
    pub fn breakdown(&self) -> String {
        let mut out = String::new();
        for r in CloseReason::ALL {
            let n = self.closed(r);
            if n > 0 {
                out.push_str(&format!(" closed_{}={n}", r.as_str()));
            }
        }
        for c in ErrorCode::ALL {
            let n = self.errors_sent(c);
            if n > 0 {
                out.push_str(&format!(" err_{}={n}", c.as_str().to_ascii_lowercase()));
            }
        }
        out
    }
}
