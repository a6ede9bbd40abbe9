#![allow(missing_docs)]
//! TODO(fan-out bench): routing one message to N in-memory connection
//! queues, N = 10, 100, 1k, 10k — the broker's routing core without
//! sockets, to show the cost per recipient (one shared `Arc<[u8]>` frame,
//! one queue push and one writer wake-up per batch).
//!
//! Not written yet: it needs a broker-internal API that the lead will expose
//! (a registry that can be filled with N socket-less connections, and the
//! `SEND *` / multi routing call that pushes onto their queues). Until then
//! this target only says it was skipped; it deliberately measures nothing,
//! so no number can be mistaken for a fan-out result.
//!
//! Plan once the API exists:
//! ```text
//! for n in [10, 100, 1_000, 10_000]:
//!     registry with n in-memory conns (queue_bytes large enough)
//!     Throughput::Elements(n)  // deliveries per routed message
//!     iter: route one 100-byte MSG to `*`, then drain the n queues
//!           (draining outside the timed part via iter_batched)
//! ```

fn main() {
    eprintln!(
        "fanout: skipped — needs a broker-internal routing API (see benches/benches/fanout.rs)"
    );
}
