//! The acceptor thread: accept connections and hand them to workers.
//!
//! It accepts until `WouldBlock` on every readiness event, applies the
//! connection limits, sets the socket options, and passes each socket to a
//! worker round-robin with "send, then wake". It never waits on a worker.

use crate::worker::WorkerMsg;
use crate::{log_debug, log_warn, Shared};
use mio::{Events, Poll, Token};
use protocol::{ErrorCode, Event};
use socket2::{SockRef, TcpKeepalive};
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Poll token of the listening socket.
pub(crate) const LISTENER: Token = Token(0);
/// Poll token of the acceptor's waker (shutdown).
pub(crate) const WAKE: Token = Token(1);

/// Runs until shutdown; the listener closes when this returns.
pub(crate) fn run(shared: Arc<Shared>, listener: TcpListener, mut poll: Poll) {
    let mut events = Events::with_capacity(64);
    let mut next_worker = 0usize;
    let mut last_warning: Option<Instant> = None;
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != ErrorKind::Interrupted {
                log_warn!("acceptor: poll failed: {e}");
            }
            continue;
        }
        loop {
            if shared.stopping() {
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    if admit(&shared, &stream, peer) {
                        let count = shared.workers.len().max(1);
                        let index = next_worker % count;
                        next_worker = next_worker.wrapping_add(1);
                        if let Some(w) = shared.workers.get(index) {
                            // The worker owns its inbox for the broker's lifetime.
                            let _ = w.tx.send(WorkerMsg::NewConn(stream, peer));
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
                        last_warning = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Checks limits and prepares the socket; false if it was turned away.
fn admit(shared: &Shared, stream: &TcpStream, peer: SocketAddr) -> bool {
    if let Err(why) = shared.take_slot(peer) {
        shared.metrics.error(ErrorCode::ServerFull);
        log_debug!("turned away {peer}: {why}");
        let mut line = Vec::new();
        Event::Err {
            code: ErrorCode::ServerFull,
            args: None,
            text: why,
        }
        .encode(&mut line);
        // A fresh socket has an empty send buffer: this short write does
        // not block. Then close, letting the error reach the client.
        let _ = (&*stream).write_all(&line);
        let _ = stream.shutdown(Shutdown::Write);
        return false;
    }
    let sock = SockRef::from(stream);
    let _ = sock.set_nodelay(true);
    let keepalive = shared.config.keepalive_secs;
    if keepalive > 0 {
        let probe = Duration::from_secs(keepalive.clamp(1, 10));
        let ka = TcpKeepalive::new()
            .with_time(Duration::from_secs(keepalive))
            .with_interval(probe)
            .with_retries(3);
        let _ = sock.set_tcp_keepalive(&ka);
    }
    if let Err(e) = stream.set_nonblocking(true) {
        log_warn!("cannot use connection from {peer}: {e}");
        shared.give_slot(peer);
        return false;
    }
    true
}
