//! Hooks for the criterion benchmarks (not a stable API): the routing core
//! driven in memory, without sockets or threads.

use crate::core::conn::{Conn, Door, Frame};
use crate::core::outbound::Outbox;
use crate::core::{self, Session};
use crate::doors;
use crate::msg::{WorkerHandle, WorkerMsg, WriterHandle, WriterMsg};
use crate::{Config, Shared};
use crossbeam_channel::Receiver;
use mio::{Poll, Waker};
use protocol::{Request, Targets};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// `N` registered connections with in-memory queues, and one sender: a
/// `SEND *` through the real handler is one fan-out to `N` queues.
pub struct Fanout {
    shared: Arc<Shared>,
    sender: Arc<Conn>,
    session: Session,
    out: Outbox,
    queues: Vec<Arc<Conn>>,
    spare: Vec<Frame>,
    writer_rx: Receiver<WriterMsg>,
    _worker_rx: Receiver<WorkerMsg>,
    _polls: (Poll, Poll),
}

impl Fanout {
    /// Registers `n` receivers and a sender.
    pub fn new(n: usize) -> io::Result<Fanout> {
        let writer_poll = Poll::new()?;
        let worker_poll = Poll::new()?;
        let (wtx, writer_rx) = crossbeam_channel::unbounded();
        let (ktx, worker_rx) = crossbeam_channel::unbounded();
        let writers = vec![WriterHandle {
            tx: wtx,
            waker: Waker::new(writer_poll.registry(), crate::net::writer::WAKE)?,
            sleeping: AtomicBool::new(false),
        }];
        let workers = vec![WorkerHandle {
            tx: ktx,
            waker: std::sync::Arc::new(Waker::new(
                worker_poll.registry(),
                crate::net::worker::WAKE,
            )?),
        }];
        let config = Config {
            rate_per_sec: 0,
            rate_bytes_per_sec: 0,
            queue_bytes: usize::MAX / 2,
            ..Config::default()
        };
        let shared = Arc::new(Shared::new(
            config,
            workers,
            writers,
            None,
            crate::Kept::none(),
        ));
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        let mut out = Outbox::new(1, Some(0));
        let mut queues = Vec::with_capacity(n);
        for i in 0..n {
            let conn = Conn::new(i as u64 + 1, 0, 0, peer, Door::Native, usize::MAX / 2);
            let name = format!("user{i}");
            let _membership = shared.registry.membership.lock();
            conn.set_name(&name);
            shared.registry.insert(&name, &conn);
            queues.push(conn);
        }
        let sender = Conn::new(0, 0, 0, peer, Door::Native, usize::MAX / 2);
        sender.set_name("sender");
        shared.registry.insert("sender", &sender);
        queues.push(Arc::clone(&sender));
        let session = Session::new(&shared, Instant::now());
        crate::core::flush(&shared, &mut out);
        let mut f = Fanout {
            shared,
            sender,
            session,
            out,
            queues,
            spare: Vec::new(),
            writer_rx,
            _worker_rx: worker_rx,
            _polls: (writer_poll, worker_poll),
        };
        f.drain();
        Ok(f)
    }

    /// One `SEND * <body>` through the handler: encode once, push to every
    /// receiver's queue, queue the ACK, schedule the writer.
    pub fn send_all(&mut self, body: &[u8]) {
        let req = Request::Send {
            targets: Targets::All,
            body,
        };
        doors::native::handle(
            &self.shared,
            &mut self.out,
            &self.sender,
            &mut self.session,
            req,
            Instant::now(),
        );
        core::flush(&self.shared, &mut self.out);
    }

    /// Empties every queue, as writers would; returns the frames taken.
    pub fn drain(&mut self) -> usize {
        let mut frames = 0;
        while self.writer_rx.try_recv().is_ok() {}
        for conn in &self.queues {
            conn.unschedule();
            conn.take(&mut self.spare);
            frames += self.spare.len();
            conn.written(self.spare.iter().map(|f| f.len()).sum());
            self.spare.clear();
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_send_reaches_every_queue_once() {
        let mut f = Fanout::new(10).unwrap();
        f.send_all(b"hello");
        // 10 MSG frames and the sender's ACK.
        assert_eq!(f.drain(), 11);
        assert_eq!(f.drain(), 0);
    }
}
