//! The chat broker: a multi-client TCP chat service speaking the v1 wire
//! contract (`docs/protocol.md`).
//! (Thread model and module map: see the crate docs once the internals land.)

pub mod config;
pub mod log;
pub mod metrics;

pub use config::{Config, ConfigError};
pub use metrics::Stats;

use std::io;
use std::net::{SocketAddr, TcpListener};

/// Binds a listener the way the broker wants it: SO_REUSEADDR, backlog 1024.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let _ = addr;
    Err(io::Error::other("not yet"))
}

/// Starts the broker on an already-bound listener (tests bind `127.0.0.1:0`).
pub fn start(listener: TcpListener, config: Config) -> io::Result<Broker> {
    let _ = (listener, config);
    Err(io::Error::other("not yet"))
}

/// A running broker.
pub struct Broker {
    addr: SocketAddr,
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that were sent `SHUTDOWN`.
    pub notified: usize,
    /// Connections cut off when the grace time ran out.
    pub cut_off: usize,
}

/// Triggers a graceful shutdown from another thread (a signal handler).
#[derive(Clone)]
pub struct ShutdownHandle {}

impl ShutdownHandle {
    /// Asks the broker to stop; returns at once.
    pub fn trigger(&self) {}
}

impl Broker {
    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> Stats {
        Stats::default()
    }
    /// A handle that can stop the broker from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {}
    }
    /// Stops gracefully and waits until done.
    pub fn shutdown(self) -> ShutdownReport {
        ShutdownReport::default()
    }
    /// Waits until a shutdown triggered elsewhere has finished.
    pub fn wait(self) -> ShutdownReport {
        ShutdownReport::default()
    }
}
