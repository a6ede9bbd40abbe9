//! State shared between the monitor (the main thread) and the network
//! threads. Everything is an atomic written by one side and read by the
//! other, except the first failure message (a mutex touched at most once
//! per failing client).

use mio::Waker;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// `start_ns` before the monitor has started the senders.
pub const NOT_STARTED: u64 = u64::MAX;

/// Keeps a value on its own cache line, so that counters one thread writes
/// don't slow down another thread's counters.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Padded<T>(pub T);

/// Counters a network thread republishes after every poll iteration, for
/// the progress line and the monitor's "everything delivered?" check.
#[derive(Debug, Default)]
pub struct ThreadLive {
    /// The thread's kernel id, for CPU accounting (0 until known).
    pub tid: AtomicU32,
    /// Set while the thread sleeps with a closed-loop sender out of window
    /// room; other threads then wake it when they credit deliveries.
    pub waiting: AtomicBool,
    /// The thread has passed the end of the sending period.
    pub done_sending: AtomicBool,
    /// Messages its senders wrote.
    pub sent: AtomicU64,
    /// Deliveries promised by ACKs to its senders.
    pub expected: AtomicU64,
    /// ACK or ERR replies its senders got (stored after `expected`).
    pub replies: AtomicU64,
    /// Loadgen MSGs its receivers got.
    pub received: AtomicU64,
    /// Of those, not duplicates.
    pub unique: AtomicU64,
}

/// The run's shared state.
#[derive(Debug)]
pub struct Shared {
    /// Time zero: payload send times and all phase times count from here.
    pub epoch: Instant,
    /// When sending starts (ns since epoch), or [`NOT_STARTED`]; stored
    /// last, with Release, after the two phase ends below.
    pub start_ns: AtomicU64,
    /// End of warm-up, start of the measured window.
    pub warm_end_ns: AtomicU64,
    /// End of the measured window: senders stop.
    pub send_end_ns: AtomicU64,
    /// Tells the network threads to finish.
    pub stop: AtomicBool,
    /// Clients that got `OK NAME`.
    pub registered: AtomicUsize,
    /// Clients that failed to connect or register.
    pub failed: AtomicUsize,
    /// When the last client registered (ns since epoch).
    pub last_registered_ns: AtomicU64,
    /// Several nodes: set by the monitor once every client registered.
    /// Then one client per node asks its node for `LIST` until every
    /// client is on it: presence spreads between nodes a little after
    /// `OK NAME`, and a `SEND lg-7` on a node that doesn't know lg-7 yet
    /// would be refused.
    pub settle: AtomicBool,
    /// Nodes whose `LIST` named every client.
    pub settled: AtomicUsize,
    /// The first failure, for the report.
    pub failure: Mutex<Option<String>>,
    /// Per sender index: deliveries of its messages received by any client
    /// (the closed-loop window's credit).
    pub delivered: Vec<Padded<AtomicU64>>,
    /// Per network thread.
    pub threads: Vec<Padded<ThreadLive>>,
    /// Per network thread: wakes its poller.
    pub wakers: Vec<Waker>,
}

impl Shared {
    /// Shared state for `senders` senders served by one thread per waker.
    pub fn new(senders: usize, wakers: Vec<Waker>) -> Shared {
        Shared {
            epoch: Instant::now(),
            start_ns: AtomicU64::new(NOT_STARTED),
            warm_end_ns: AtomicU64::new(NOT_STARTED),
            send_end_ns: AtomicU64::new(NOT_STARTED),
            stop: AtomicBool::new(false),
            registered: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            last_registered_ns: AtomicU64::new(0),
            settle: AtomicBool::new(false),
            settled: AtomicUsize::new(0),
            failure: Mutex::new(None),
            delivered: (0..senders).map(|_| Padded::default()).collect(),
            threads: (0..wakers.len()).map(|_| Padded::default()).collect(),
            wakers,
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that a client could not connect or register.
    pub fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(why);
        }
    }

    /// Wakes every network thread (phase changes, stop).
    pub fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}
