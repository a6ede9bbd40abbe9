//! Shared helpers for the criterion benchmarks in `benches/benches/`:
//! ready-made wire streams for the codec benches and a minimal blocking
//! client for the end-to-end bench.
//!
//! | bench | what it measures |
//! |---|---|
//! | `codec` | decode and encode of `MSG` and `SEND` frames (frames/s and bytes/s) |
//! | `e2e` | one sender, ten receivers over loopback against an in-process broker |
//! | `fanout` | routing one `SEND *` to N in-memory connection queues (N = 10 … 10k) |
//!
//! Run with `cargo bench -p benches`; results land in `target/criterion/`
//! (copy notable ones into `benches/results/` with the machine described).

use protocol::{encode_msg, Decoded, Event, Kind, Limits, Request, Targets};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A body of `len` bytes of printable filler.
pub fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `count` `MSG` frames with `body_len`-byte bodies, as the broker writes
/// them.
pub fn msg_stream(count: usize, body_len: usize) -> Vec<u8> {
    let b = body(body_len);
    let mut out = Vec::with_capacity(count * (body_len + 48));
    for id in 0..count as u64 {
        encode_msg(
            &mut out,
            id + 1_000_000,
            "sender-1",
            Kind::All,
            1_763_812_345_678,
            &b,
        );
    }
    out
}

/// `count` counted `SEND` frames to three names, as a client writes them.
pub fn send_stream(count: usize, body_len: usize) -> Vec<u8> {
    let b = body(body_len);
    let mut out = Vec::with_capacity(count * (body_len + 32));
    for _ in 0..count {
        Request::Send {
            targets: Targets::Names("alice,bob,carol"),
            body: &b,
        }
        .encode(&mut out);
    }
    out
}

/// Decodes every event in `buf`; returns how many frames there were.
pub fn decode_events(buf: &[u8], limits: &Limits) -> usize {
    let mut pos = 0;
    let mut frames = 0;
    while let Some(rest) = buf.get(pos..) {
        match Event::decode(rest, limits) {
            Decoded::Frame { consumed, .. } | Decoded::Invalid { consumed, .. } => {
                pos += consumed;
                frames += 1;
            }
            Decoded::Incomplete | Decoded::Fatal(_) => break,
        }
    }
    frames
}

/// Decodes every request in `buf`; returns how many frames there were.
pub fn decode_requests(buf: &[u8], limits: &Limits) -> usize {
    let mut pos = 0;
    let mut frames = 0;
    while let Some(rest) = buf.get(pos..) {
        match Request::decode(rest, limits) {
            Decoded::Frame { consumed, .. } | Decoded::Invalid { consumed, .. } => {
                pos += consumed;
                frames += 1;
            }
            Decoded::Incomplete | Decoded::Fatal(_) => break,
        }
    }
    frames
}

/// A blocking test client: registers, then counts the frames it cares about.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    len: usize,
    limits: Limits,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Client {
    /// Connects and registers as `name` (waits for `OK NAME`).
    pub fn connect(addr: SocketAddr, name: &str) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        // A lost frame fails the bench instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Client {
            stream,
            buf: vec![0; 1 << 20],
            len: 0,
            limits: Limits::default(),
        };
        c.stream.write_all(format!("NAME {name}\n").as_bytes())?;
        c.until(1, |e| matches!(e, Event::NameOk { .. }))?;
        Ok(c)
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads until `count` frames matching `want` have arrived, skipping
    /// everything else.
    pub fn until(
        &mut self,
        count: usize,
        mut want: impl FnMut(&Event<'_>) -> bool,
    ) -> io::Result<()> {
        let mut seen = 0;
        while seen < count {
            let mut pos = 0;
            loop {
                let rest = self.buf.get(pos..self.len).unwrap_or_default();
                match Event::decode(rest, &self.limits) {
                    Decoded::Frame { frame, consumed } => {
                        pos += consumed;
                        if want(&frame) {
                            seen += 1;
                            if seen == count {
                                break;
                            }
                        }
                        if let Event::Err { .. } = frame {
                            return Err(bad("broker sent ERR"));
                        }
                    }
                    Decoded::Invalid { consumed, .. } => pos += consumed,
                    Decoded::Incomplete => break,
                    Decoded::Fatal(_) => return Err(bad("unreadable broker stream")),
                }
            }
            self.buf.copy_within(pos..self.len, 0);
            self.len -= pos;
            if seen == count {
                break;
            }
            let free = self.buf.get_mut(self.len..).unwrap_or_default();
            let n = self.stream.read(free)?;
            if n == 0 {
                return Err(bad("broker closed the connection"));
            }
            self.len += n;
        }
        Ok(())
    }

    /// Reads until `count` `MSG` frames have arrived.
    pub fn msgs(&mut self, count: usize) -> io::Result<()> {
        self.until(count, |e| matches!(e, Event::Msg { .. }))
    }

    /// Reads until `count` `ACK` frames have arrived.
    pub fn acks(&mut self, count: usize) -> io::Result<()> {
        self.until(count, |e| matches!(e, Event::Ack { .. }))
    }
}

/// Starts an in-process broker on a free loopback port, rate limiting and
/// the stats line off, logging only warnings.
pub fn start_broker() -> io::Result<broker::Broker> {
    broker::log::set_level(broker::log::Level::Warn);
    let listener = broker::bind(([127, 0, 0, 1], 0).into())?;
    let config = broker::Config {
        rate_per_sec: 0,
        rate_bytes_per_sec: 0,
        conn_rate_per_sec: 0,
        irc_listen: String::new(),
        http_listen: String::new(),
        data_dir: String::new(),
        stats_interval_secs: 0,
        log_level: "warn".into(),
        ..broker::Config::default()
    };
    broker::start(listener, config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn streams_decode_to_the_right_count() {
        let limits = Limits::default();
        assert_eq!(decode_events(&msg_stream(100, 64), &limits), 100);
        assert_eq!(decode_requests(&send_stream(100, 64), &limits), 100);
    }

    #[test]
    fn client_round_trip() {
        let b = start_broker().unwrap();
        let mut rx = Client::connect(b.local_addr(), "rx").unwrap();
        let mut tx = Client::connect(b.local_addr(), "tx").unwrap();
        let mut frames = Vec::new();
        for _ in 0..5 {
            Request::Send {
                targets: Targets::All,
                body: b"hi",
            }
            .encode(&mut frames);
        }
        tx.send_raw(&frames).unwrap();
        rx.msgs(5).unwrap();
        tx.acks(5).unwrap();
        b.shutdown();
    }
}
