#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! End to end over loopback: one sender and ten receivers against an
//! in-process broker. Each iteration the sender writes a batch of `SEND *`
//! frames in one write; the iteration ends when every receiver has read
//! every `MSG` (and the sender its ACKs, so nothing piles up between
//! iterations). Throughput is in deliveries (messages × receivers).
//!
//! The `single` case is one message per iteration: its time is the latency
//! of one fan-out to ten clients, including the clients' reads.

use benches::{start_broker, Client};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol::{Request, Targets};
use std::time::{Duration, Instant};

const RECEIVERS: usize = 10;
const BODY: usize = 100;

fn e2e(c: &mut Criterion) {
    let broker = start_broker().expect("start broker");
    let addr = broker.local_addr();
    let mut receivers: Vec<Client> = (0..RECEIVERS)
        .map(|i| Client::connect(addr, &format!("rx-{i}")).expect("receiver"))
        .collect();
    let mut sender = Client::connect(addr, "tx").expect("sender");
    let body = benches::body(BODY);

    let mut g = c.benchmark_group("e2e_all_1x10");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for batch in [1usize, 100, 1000] {
        let mut frames = Vec::new();
        for _ in 0..batch {
            Request::Send {
                targets: Targets::All,
                body: &body,
            }
            .encode(&mut frames);
        }
        g.throughput(Throughput::Elements((batch * RECEIVERS) as u64));
        let name = if batch == 1 {
            "single".to_string()
        } else {
            format!("batch_{batch}")
        };
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    sender.send_raw(&frames).expect("send");
                    for r in &mut receivers {
                        r.msgs(batch).expect("deliveries");
                    }
                    total += t0.elapsed();
                    // Outside the timed part: the sender's ACKs.
                    sender.acks(batch).expect("acks");
                }
                total
            });
        });
    }
    g.finish();
    drop(receivers);
    drop(sender);
    broker.shutdown();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
