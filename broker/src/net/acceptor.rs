//! The acceptor thread: accept connections and hand them to workers.
//!
//! It accepts until `WouldBlock` on every readiness event, applies the
//! connection limits (the per-address connection rate, then the connection
//! slots), sets the socket options, and passes each socket to a worker
//! round-robin with "send, then wake". It never waits on a worker.

use crate::core::conn::Door;
use crate::msg::{Via, WorkerMsg};
use crate::{log_debug, log_warn, Shared};
use mio::{Events, Poll, Token};
use protocol::{ErrorCode, Event};
use socket2::{SockRef, TcpKeepalive};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Poll token of the acceptor's waker (shutdown). Listener `i` (in the
/// order given to `run`) has token `FIRST_LISTENER + i`.
pub(crate) const WAKE: Token = Token(0);
/// Poll token of the first listening socket.
pub(crate) const FIRST_LISTENER: usize = 1;

/// Runs until shutdown; the listeners close when this returns. Each
/// listener is a door: its connections speak that door's protocol.
pub(crate) fn run(shared: Arc<Shared>, listeners: Vec<(TcpListener, Via)>, mut poll: Poll) {
    let mut events = Events::with_capacity(64);
    let mut next_worker = 0usize;
    let mut last_warning: Option<Instant> = None;
    let mut rate = ConnRate::new(
        shared.live().conn_rate_per_sec,
        shared.live().conn_rate_burst,
        Instant::now(),
    );
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != ErrorKind::Interrupted {
                log_warn!("acceptor: poll failed: {e}");
            }
            continue;
        }
        for ev in events.iter() {
            let Some((listener, via)) = ev
                .token()
                .0
                .checked_sub(FIRST_LISTENER)
                .and_then(|i| listeners.get(i))
            else {
                continue;
            };
            {
                // A reload (SIGHUP) may have changed the rate.
                let live = shared.live();
                rate.tune(live.conn_rate_per_sec, live.conn_rate_burst);
            }
            accept_all(
                &shared,
                listener,
                *via,
                &mut rate,
                &mut next_worker,
                &mut last_warning,
            );
        }
        if shared.stopping() {
            return;
        }
    }
}

/// Accepts from one listener until `WouldBlock` (edge-triggered: anything
/// left would not be reported again).
fn accept_all(
    shared: &Shared,
    listener: &TcpListener,
    via: Via,
    rate: &mut ConnRate,
    next_worker: &mut usize,
    last_warning: &mut Option<Instant>,
) {
    {
        loop {
            if shared.stopping() {
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    if admit(shared, rate, &stream, peer, via) {
                        let count = shared.workers.len().max(1);
                        let index = *next_worker % count;
                        *next_worker = next_worker.wrapping_add(1);
                        if let Some(w) = shared.workers.get(index) {
                            // The worker owns its inbox for the broker's lifetime.
                            let _ = w.tx.send(WorkerMsg::NewConn(stream, peer, via));
                            let _ = w.waker.wake();
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors or similar. Connections may already
                    // wait in the backlog and bring no new event, so retry
                    // shortly (warning at most once a second).
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log_warn!("accept failed: {e}; retrying");
                        *last_warning = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Checks limits and prepares the socket; false if it was turned away.
///
/// The rate is checked first, so a connection over it never takes a slot
/// (and a refused connection still spends a token: attempts are what the
/// rate limits).
fn admit(
    shared: &Shared,
    rate: &mut ConnRate,
    stream: &TcpStream,
    peer: SocketAddr,
    via: Via,
) -> bool {
    if !rate.allow(peer.ip(), Instant::now()) {
        refuse(
            shared,
            stream,
            peer,
            via,
            "too many new connections from your address; slow down",
        );
        return false;
    }
    if let Err(why) = shared.take_slot(peer) {
        refuse(shared, stream, peer, via, why);
        return false;
    }
    let sock = SockRef::from(stream);
    let _ = sock.set_nodelay(true);
    let keepalive = shared.live().keepalive_secs;
    if keepalive > 0 {
        let probe = Duration::from_secs(keepalive.clamp(1, 10));
        let ka = TcpKeepalive::new()
            .with_time(Duration::from_secs(keepalive))
            .with_interval(probe)
            .with_retries(3);
        let _ = sock.set_tcp_keepalive(&ka);
        // Keepalive probes only an idle connection. A peer that vanished
        // while output to it was unacknowledged would otherwise take the
        // kernel's retransmissions (about 15 minutes) to find: bound that by
        // the same time keepalive takes.
        #[cfg(target_os = "linux")]
        let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(keepalive) + probe * 3));
    }
    if let Err(e) = stream.set_nonblocking(true) {
        log_warn!("cannot use connection from {peer}: {e}");
        shared.give_slot(peer);
        return false;
    }
    true
}

/// Turns a connection away with `ERR SERVER_FULL :<why>` (on IRC,
/// `ERROR :Closing link: <why>`), counted; the caller drops the socket.
fn refuse(shared: &Shared, stream: &TcpStream, peer: SocketAddr, via: Via, why: &str) {
    shared.metrics.error(ErrorCode::ServerFull);
    log_debug!("turned away {peer}: {why}");
    if via.tls {
        // Nothing can be said before a handshake: the close is the answer.
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let mut line = Vec::new();
    match via.door {
        Door::Native => Event::Err {
            code: ErrorCode::ServerFull,
            args: None,
            text: why,
        }
        .encode(&mut line),
        Door::Irc => protocol::irc::push_command(
            &mut line,
            None,
            None,
            "ERROR",
            &[],
            Some(&format!("Closing link: {why}")),
        ),
        Door::Web => protocol::web::http::push_text(&mut line, 503, why),
    }
    // A fresh socket has an empty send buffer: this short write does
    // not block. Then close, letting the error reach the client.
    let _ = (&*stream).write_all(&line);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Addresses tracked at most; past it, new addresses go unlimited until a
/// sweep makes room (see [`ConnRate::allow`]).
const MAX_TRACKED: usize = 100_000;

/// How often at most the idle buckets are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One address's token bucket: `tokens` as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The per-address connection rate (`conn_rate_per_sec`, `conn_rate_burst`):
/// a token bucket per IP address, owned by the acceptor thread alone, so
/// no lock.
///
/// Memory stays bounded: an address whose bucket has refilled to the burst
/// is indistinguishable from one never seen, so the sweep (at most once a
/// second) drops it. The map thus holds only the addresses that connected
/// within the last `burst / rate` seconds (plus one), and never more than
/// [`MAX_TRACKED`].
#[derive(Debug)]
struct ConnRate {
    /// Tokens per second; 0 turns the limit off.
    per_sec: f64,
    /// Bucket size.
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Instant,
    /// When the map was last found full (for a warning at most once a
    /// second).
    last_full_warning: Option<Instant>,
}

impl ConnRate {
    fn new(per_sec: u32, burst: u32, now: Instant) -> ConnRate {
        ConnRate {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
            last_sweep: now,
            last_full_warning: None,
        }
    }

    /// Takes a new rate and burst (after a reload); buckets keep their
    /// tokens, capped at the new burst when next refilled.
    fn tune(&mut self, per_sec: u32, burst: u32) {
        self.per_sec = f64::from(per_sec);
        self.burst = f64::from(burst.max(1));
    }

    /// Whether `ip` may open a connection at `now`; if so, spends a token.
    ///
    /// When [`MAX_TRACKED`] addresses are tracked even after a sweep, a new
    /// address is let through untracked (the connection slots still apply):
    /// that many addresses at once defeat any per-address limit anyway, and
    /// refusing every new address would turn the limit into a way to lock
    /// everyone out.
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.sweep(now);
        }
        let (per_sec, burst) = (self.per_sec, self.burst);
        if let Some(b) = self.buckets.get_mut(&ip) {
            let tokens = refill(b, per_sec, burst, now);
            b.at = now;
            if tokens < 1.0 {
                b.tokens = tokens;
                return false;
            }
            b.tokens = tokens - 1.0;
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED {
            if self
                .last_full_warning
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
            {
                log_warn!(
                    "connection rate: {MAX_TRACKED} addresses tracked; \
                     new addresses are not limited until some go idle"
                );
                self.last_full_warning = Some(now);
            }
            return true;
        }
        self.buckets.insert(
            ip,
            Bucket {
                tokens: burst - 1.0,
                at: now,
            },
        );
        true
    }

    /// Drops every bucket that has refilled to the burst.
    fn sweep(&mut self, now: Instant) {
        let (per_sec, burst) = (self.per_sec, self.burst);
        self.buckets
            .retain(|_, b| refill(b, per_sec, burst, now) < burst);
        self.last_sweep = now;
    }
}

/// The tokens `b` holds at `now` (capped at `burst`).
fn refill(b: &Bucket, per_sec: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * per_sec).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn burst_then_refused_then_refilled() {
        let t0 = Instant::now();
        let mut r = ConnRate::new(2, 3, t0);
        assert!(r.allow(ip(1), t0));
        assert!(r.allow(ip(1), t0));
        assert!(r.allow(ip(1), t0));
        assert!(!r.allow(ip(1), t0));
        // Another address has its own bucket.
        assert!(r.allow(ip(2), t0));
        // Half a second at 2/s buys one connection.
        let t1 = t0 + Duration::from_millis(500);
        assert!(r.allow(ip(1), t1));
        assert!(!r.allow(ip(1), t1));
    }

    #[test]
    fn refused_attempts_do_not_build_credit() {
        let t0 = Instant::now();
        let mut r = ConnRate::new(1, 1, t0);
        assert!(r.allow(ip(1), t0));
        for ms in [100, 200, 300, 400] {
            assert!(!r.allow(ip(1), t0 + Duration::from_millis(ms)));
        }
        assert!(r.allow(ip(1), t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn zero_rate_is_no_limit() {
        let t0 = Instant::now();
        let mut r = ConnRate::new(0, 1, t0);
        for _ in 0..1000 {
            assert!(r.allow(ip(1), t0));
        }
        assert!(r.buckets.is_empty());
    }

    #[test]
    fn full_buckets_are_swept() {
        let t0 = Instant::now();
        let mut r = ConnRate::new(1, 5, t0);
        for i in 0..=255 {
            assert!(r.allow(ip(i), t0));
        }
        // One address spends its whole burst; the others refill within 1 s.
        for _ in 0..4 {
            assert!(r.allow(ip(7), t0));
        }
        assert_eq!(r.buckets.len(), 256);
        let t1 = t0 + Duration::from_secs(1);
        assert!(r.allow(ip(9), t1));
        assert_eq!(r.buckets.len(), 2, "{:?}", r.buckets.keys());
        assert!(r.buckets.contains_key(&ip(7)));
        // Not swept again within the second.
        assert!(r.allow(ip(1), t1 + Duration::from_millis(10)));
        assert_eq!(r.buckets.len(), 3);
    }

    #[test]
    fn the_map_is_capped() {
        let t0 = Instant::now();
        let mut r = ConnRate::new(1, 1, t0);
        for i in 0..MAX_TRACKED as u32 {
            assert!(r.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        let extra = IpAddr::from([255, 255, 255, 255]);
        // Untracked past the cap: let through, every time.
        assert!(r.allow(extra, t0));
        assert!(r.allow(extra, t0));
        assert_eq!(r.buckets.len(), MAX_TRACKED);
        // Once they refill, the sweep makes room again.
        let t1 = t0 + Duration::from_secs(2);
        assert!(r.allow(extra, t1));
        assert!(!r.allow(extra, t1));
        assert_eq!(r.buckets.len(), 1);
    }
}
