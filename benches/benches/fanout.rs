#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Routing fan-out: one `SEND *` through the broker's real handler to N
//! registered connections with in-memory queues (N = 10, 100, 1k, 10k), no
//! sockets and no threads (`broker::bench_support::Fanout`). This is the
//! routing core's cost per recipient: the frame is encoded once and shared,
//! then pushed onto N queues, plus the ACK and one writer hand-off.
//!
//! Only the routing call is timed; emptying the queues (what writer threads
//! would do) happens between iterations, outside the measurement, and checks
//! that exactly N deliveries + 1 ACK were queued.

use broker::bench_support::Fanout;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};

const BODY: usize = 100;

fn fanout(c: &mut Criterion) {
    let body = benches::body(BODY);
    let mut g = c.benchmark_group("fanout_send_all");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [10usize, 100, 1_000, 10_000] {
        let mut f = Fanout::new(n).expect("fan-out harness");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    f.send_all(black_box(&body));
                    total += t0.elapsed();
                    // N MSG frames and the sender's ACK; not timed.
                    assert_eq!(f.drain(), n + 1);
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
