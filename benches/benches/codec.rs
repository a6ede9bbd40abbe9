#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Codec throughput: decoding `MSG` (what every client does per delivery)
//! and `SEND` (what the broker does per message), and encoding both. Each
//! case runs twice, once reported as frames/s and once as bytes/s, because
//! criterion shows one throughput unit per benchmark.

use benches::{body, decode_events, decode_requests, msg_stream, send_stream};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol::{encode_msg, Kind, Limits, Request, Targets};
use std::time::Duration;

/// Body sizes: a chat line, a paragraph, a page, a large paste.
const SIZES: [usize; 4] = [16, 128, 1024, 16 * 1024];
/// Frames per iteration: enough to amortise loop overhead, small enough to
/// stay in cache for the small sizes.
const FRAMES: usize = 1000;

fn groups(
    c: &mut Criterion,
    name: &str,
    mut run: impl FnMut(&mut Criterion, Throughput, &str, usize, usize),
) {
    for &size in &SIZES {
        let wire = msg_stream(1, size).len();
        run(
            c,
            Throughput::Elements(FRAMES as u64),
            &format!("{name}/frames"),
            size,
            wire,
        );
        run(
            c,
            Throughput::Bytes((FRAMES * wire) as u64),
            &format!("{name}/bytes"),
            size,
            wire,
        );
    }
}

fn configure<'a>(
    c: &'a mut Criterion,
    group: &str,
    t: Throughput,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(group);
    g.throughput(t)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

fn decode_msg(c: &mut Criterion) {
    let limits = Limits::default();
    groups(c, "decode_msg", |c, t, group, size, _| {
        let buf = msg_stream(FRAMES, size);
        let mut g = configure(c, group, t);
        g.bench_with_input(BenchmarkId::from_parameter(size), &buf, |b, buf| {
            b.iter(|| assert_eq!(decode_events(black_box(buf), &limits), FRAMES));
        });
        g.finish();
    });
}

fn decode_send(c: &mut Criterion) {
    let limits = Limits::default();
    groups(c, "decode_send", |c, t, group, size, _| {
        let buf = send_stream(FRAMES, size);
        let t = match t {
            Throughput::Bytes(_) => Throughput::Bytes(buf.len() as u64),
            other => other,
        };
        let mut g = configure(c, group, t);
        g.bench_with_input(BenchmarkId::from_parameter(size), &buf, |b, buf| {
            b.iter(|| assert_eq!(decode_requests(black_box(buf), &limits), FRAMES));
        });
        g.finish();
    });
}

fn encode_msg_frames(c: &mut Criterion) {
    groups(c, "encode_msg", |c, t, group, size, _| {
        let payload = body(size);
        let mut out = Vec::with_capacity(FRAMES * (size + 64));
        let mut g = configure(c, group, t);
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| {
                out.clear();
                for id in 0..FRAMES as u64 {
                    encode_msg(
                        &mut out,
                        id + 1_000_000,
                        "sender-1",
                        Kind::All,
                        1_763_812_345_678,
                        payload,
                    );
                }
                black_box(out.len())
            });
        });
        g.finish();
    });
}

fn encode_send(c: &mut Criterion) {
    groups(c, "encode_send", |c, t, group, size, _| {
        let payload = body(size);
        let per = send_stream(1, size).len();
        let t = match t {
            Throughput::Bytes(_) => Throughput::Bytes((FRAMES * per) as u64),
            other => other,
        };
        let mut out = Vec::with_capacity(FRAMES * (size + 64));
        let mut g = configure(c, group, t);
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| {
                out.clear();
                for _ in 0..FRAMES {
                    Request::Send {
                        targets: Targets::Names("alice,bob,carol"),
                        body: payload,
                    }
                    .encode(&mut out);
                }
                black_box(out.len())
            });
        });
        g.finish();
    });
}

criterion_group!(
    codec,
    decode_msg,
    decode_send,
    encode_msg_frames,
    encode_send
);
criterion_main!(codec);
