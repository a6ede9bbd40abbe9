//! Load generator for the chat broker (the `loadgen` binary's library).
//!
//! ```text
//!                main thread (monitor)
//!   args ──► rlimit ──► [in-process broker] ──► scenario header, phases,
//!                          │                    /proc sampling, progress, report
//!             spawn T network threads           ▲ atomics + Waker
//!        ┌─────────────────┴───────────────┐    │
//!   lg-net-0: mio Poll                lg-net-1: mio Poll   (client i on thread i % T)
//!    clients 0,2,4,...                 clients 1,3,5,...
//!    connect [→ TLS handshake]         (same)
//!      → NAME → OK NAME
//!    [room: JOIN #load → OK JOIN]      (--door irc: NICK/USER → 001 →
//!                                        [JOIN #load] PING → PONG;
//!                                       --door web: GET /ws → 101 →
//!                                        {"op":"name"} → {"type":"ok"})
//!    senders write SEND into reused buffers
//!    receivers decode MSG in place, check order, record latency
//!        └──── per-sender delivery credit (atomics) ────┘
//! ```
//!
//! Phases, driven by the monitor: connect and register all N clients (at
//! most `--handshakes`, 128 by default, in flight per thread) → warm-up
//! (sending, not measured) → measured window → drain (senders stop; wait,
//! bounded by `--drain`, for every SEND's reply and every promised
//! delivery) → stop.
//!
//! Accounting: the sum of the ACKs' `<queued>` is the number of deliveries
//! expected; each receiver counts loadgen MSGs and tracks, per sender, the
//! last sequence number seen: equal means duplicate, lower means reordered
//! (the broker keeps each sender's order per recipient).
//! `lost = expected - (received - duplicates)`.
//!
//! Over IRC (`--door irc`) there is no ACK: each message written is owed to
//! its whole fan-out, and an error numeric takes that back ([`irc`]). The
//! web door (`--door web`) has the native ACK in JSON: its objects are
//! read as the native events they stand for ([`web`]).
//!
//! Several nodes (`--addr a,b,c`, likewise `--irc-addr`, `--web-addr`):
//! client `i` connects to address `i mod N` whatever its thread. Before
//! sending starts, each node is asked for `LIST` until it names every
//! client (not over IRC), `all` mode owes every acknowledged `SEND *` to
//! the whole fan-out, and latency is also reported apart for deliveries
//! within one node and across nodes ([`worker`]). `--broker-pid` takes
//! the nodes' pids and sums their CPU and memory.
//!
//! With `--tls` every door's clients connect over TLS ([`tls`]): the
//! handshake is part of connecting, and each connection's bytes pass
//! through its rustls session on the same network thread, non-blocking,
//! so the rest of the client is the same over TLS as over plain TCP.
//!
//! Output: the scenario header on stderr first, then progress on stderr (a
//! line redrawn in place on a terminal, a plain line per second otherwise),
//! then the summary (or `--json`'s one object) on stdout ([`console`]).
//!
//! Modules: [`args`] (command line), [`console`] (header and progress),
//! [`payload`] (message body format),
//! [`irc`] (the IRC client's lines), [`web`] (the WebSocket client's
//! upgrade, frames and JSON), [`tls`] (`--tls`: a connection's rustls
//! session over its non-blocking socket),
//! [`worker`] (a network thread), [`shared`] (what threads share),
//! [`mod@run`] (the monitor), [`report`] (summary, JSON, verdict), [`procfs`]
//! (CPU/RSS from `/proc`), [`rlimit`] (open-file limit), [`rng`] (target
//! picking), [`error`].

pub mod args;
pub mod console;
pub mod error;
pub mod irc;
pub mod payload;
pub mod procfs;
pub mod report;
pub mod rlimit;
pub mod rng;
pub mod run;
pub mod shared;
pub mod tls;
pub mod web;
pub mod worker;

pub use args::{Args, Door, Mode, Settings, TlsTarget};
pub use error::Error;
pub use report::Report;
pub use run::run;
